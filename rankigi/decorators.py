"""Decorators that record calls: ``tool``, ``action``, ``use`` and ``run``.

``@tool`` records one ``tool_call`` event per call, with the arguments by
parameter name, the return value, the duration and the status. A call that
raises records the exception in the same event (status ``"error"``) and
re-raises it unchanged. ``@action`` records the return value as an agent
output (``response_generated``); an action that raises records an ``error``
event instead. Both work on plain, async, generator and async generator
functions, methods, classmethods, staticmethods, callable instances and
``functools.partial`` objects. See ``docs/decorators.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar, Union, overload

from typing_extensions import Literal, ParamSpec, Protocol

from rankigi._context import active_client, default_client
from rankigi._decorators._drivers import DRIVERS
from rankigi._decorators._kinds import CALL, function_kind
from rankigi._decorators._recording import (
    ACTION,
    TOOL,
    Options,
    Spec,
    drive_recorded_call,
    start_call,
)
from rankigi._decorators._scopes import ClientScope, Run, RunScope, run, use

if TYPE_CHECKING:
    from rankigi._client import ClientBase

__all__ = [
    "CaptureMode",
    "ClientScope",
    "Decorator",
    "Run",
    "RunScope",
    "Severity",
    "action",
    "run",
    "tool",
    "use",
]

P = ParamSpec("P")
R = TypeVar("R")

Severity = Literal["info", "warn", "critical"]
# True or "full" records the value, "hash_only" its SHA-256 and size,
# False or "off" nothing.
CaptureMode = Union[bool, Literal["full", "hash_only", "off"]]


class Decorator(Protocol):
    """The decorator that ``tool(...)`` and ``action(...)`` return."""

    def __call__(self, func: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def tool(func: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def tool(
    name: Optional[str] = None,
    *,
    severity: Severity = "info",
    capture_input: CaptureMode = "full",
    capture_output: CaptureMode = "full",
    redact: Sequence[str] = (),
    redact_output: Sequence[str] = (),
    client: Optional[ClientBase] = None,
) -> Decorator: ...


def tool(
    name: Any = None,
    *,
    severity: Severity = "info",
    capture_input: CaptureMode = "full",
    capture_output: CaptureMode = "full",
    redact: Sequence[str] = (),
    redact_output: Sequence[str] = (),
    client: Optional[ClientBase] = None,
) -> Any:
    """Record each call of the decorated function as a ``tool_call`` event.

    Use it bare (``@tool``), called (``@tool()``) or with a name
    (``@tool("stripe_refund")``); the name defaults to the function's
    qualified name.

    Args:
        name: The tool name that events carry.
        severity: ``"info"``, ``"warn"`` or ``"critical"``.
        capture_input: How to record the arguments: True or ``"full"``,
            ``"hash_only"`` (SHA-256 and size), False or ``"off"``.
        capture_output: The same for the return value, or a generator's items.
        redact: Argument names or key paths below them, such as
            ``"card.number"`` or ``"items.*.ssn"``, whose values are replaced.
            The client's own redaction rules apply as well.
        redact_output: Key paths in the return value to replace.
        client: The client to record through, instead of the active one.

    Raises:
        ValueError: An option is invalid; the message names it.
    """
    options = Options(
        TOOL,
        None if _is_target(name) else name,
        severity,
        capture_input,
        capture_output,
        redact,
        redact_output,
        client,
    )
    if _is_target(name):
        return _decorate(options, name)
    return _decorator(options)


@overload
def action(func: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def action(
    name: Optional[str] = None,
    *,
    severity: Severity = "info",
    capture_input: CaptureMode = "off",
    capture_output: CaptureMode = "full",
    redact: Sequence[str] = (),
    redact_output: Sequence[str] = (),
    client: Optional[ClientBase] = None,
) -> Decorator: ...


def action(
    name: Any = None,
    *,
    severity: Severity = "info",
    capture_input: CaptureMode = "off",
    capture_output: CaptureMode = "full",
    redact: Sequence[str] = (),
    redact_output: Sequence[str] = (),
    client: Optional[ClientBase] = None,
) -> Any:
    """Record the return value of each call as an agent output.

    The event is ``response_generated`` with ``payload.action`` set to the
    name, as ``track_agent_output`` records it. A call that raises records an
    ``error`` event instead. The arguments are left out unless
    ``capture_input`` is set, and the other options are those of ``tool``.

    Raises:
        ValueError: An option is invalid; the message names it.
    """
    options = Options(
        ACTION,
        None if _is_target(name) else name,
        severity,
        capture_input,
        capture_output,
        redact,
        redact_output,
        client,
    )
    if _is_target(name):
        return _decorate(options, name)
    return _decorator(options)


def _decorator(options: Options) -> Decorator:
    def decorate(func: Callable[P, R], /) -> Callable[P, R]:
        decorated: Callable[P, R] = _decorate(options, func)
        return decorated

    return decorate


def _is_target(value: Any) -> bool:
    # classmethod objects are not callable, and staticmethod objects only
    # since Python 3.10, but both are what @tool above them receives.
    return callable(value) or isinstance(value, (classmethod, staticmethod))


def _decorate(options: Options, target: Any) -> Any:
    if not _is_target(target):
        raise TypeError(
            f"cannot decorate {target!r}: it is not callable; apply the "
            "decorator to a function, method or callable object"
        )
    spec = Spec(options, target)
    kind = function_kind(target)
    drive = drive_recorded_call if kind == CALL else DRIVERS[kind]
    explicit = options.client
    get_active = active_client.get
    default = default_client

    # The path with no client anywhere costs two lookups and the call;
    # nothing is bound or captured.
    def handler(
        wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        client = explicit
        if client is None:
            client = get_active()
            if client is None:
                client = default.client
                if client is None:
                    if not spec.noted_unrecorded:
                        spec.note_unrecorded()
                    return wrapped(*args, **kwargs)
        call = start_call(spec, client, instance, args, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        return drive(call, wrapped, args, kwargs)

    # Imported here, so that importing rankigi does not import wrapt.
    from rankigi._decorators._wrapper import wrap

    return wrap(target, handler)
