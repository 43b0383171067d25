"""Turn one decorated call into one event.

``Options`` contains a decorator's validated settings, ``Spec`` adds what is
known about the decorated function, and ``Call`` observes one call. The
event id, the parent, the run and the input are taken when the call starts,
so nested calls can name this one as their parent and a later change to an
argument cannot change the record. The event is built when the call ends.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable, Optional

from rankigi import _exceptions as codes
from rankigi._canonical import canonical_json
from rankigi._context import (
    Links,
    active_client,
    current_event_id,
    current_run,
    default_client,
    reset_var,
    suppress_recording,
)
from rankigi._core import ClientCore
from rankigi._decorators._binding import Binder, make_binder
from rankigi._decorators._kinds import default_name
from rankigi._events import SEVERITIES, EventFactory
from rankigi._exceptions import RankigiError
from rankigi._redact import Redactor
from rankigi._serialize import serialize_exception

if TYPE_CHECKING:
    from rankigi._client import ClientBase

__all__ = [
    "ACTION",
    "CAPTURE_MODES",
    "TOOL",
    "Call",
    "Options",
    "Spec",
    "check_client",
    "drive_recorded_call",
    "library_spec",
    "resolve_client",
    "start_call",
]

logger = logging.getLogger("rankigi.decorators")

TOOL = "tool"
ACTION = "action"

FULL = "full"
HASH_ONLY = "hash_only"
OFF = "off"
CAPTURE_MODES = (FULL, HASH_ONLY, OFF)

_ELLIPSIS = "…"


class Options:
    """A decorator's settings, validated when the decorator is created.

    Raises:
        ValueError: for a setting that is invalid; the message names it.
    """

    __slots__ = (
        "capture_input",
        "capture_output",
        "client",
        "kind",
        "name",
        "redact",
        "redact_output",
        "severity",
    )

    def __init__(
        self,
        kind: str,
        name: Optional[str],
        severity: str,
        capture_input: Any,
        capture_output: Any,
        redact: Sequence[str],
        redact_output: Sequence[str],
        client: Optional[ClientBase],
    ) -> None:
        self.kind = kind
        self.name = _check_name(name)
        self.severity = _check_severity(severity)
        self.capture_input = _capture_mode("capture_input", capture_input)
        self.capture_output = _capture_mode("capture_output", capture_output)
        self.redact = _check_paths("redact", redact)
        self.redact_output = _check_paths("redact_output", redact_output)
        self.client = check_client(client)


class Spec:
    """Options plus what belongs to one decorated function: name and binder."""

    __slots__ = (
        "_input_redactor",
        "_output_redactor",
        "binder",
        "capture_input",
        "capture_output",
        "client",
        "event_action",
        "is_tool",
        "name",
        "name_key",
        "noted_unrecorded",
        "redact",
        "redact_output",
        "severity",
    )

    def __init__(self, options: Options, target: Any) -> None:
        self.name = options.name or default_name(target)
        self.is_tool = options.kind == TOOL
        self.name_key = "tool" if self.is_tool else "action"  # the payload key
        self.event_action = "tool_call" if self.is_tool else "response_generated"
        self.severity = options.severity
        self.capture_input = options.capture_input
        self.capture_output = options.capture_output
        self.redact = options.redact
        self.redact_output = options.redact_output
        self.client = options.client
        self.binder: Binder = make_binder(target)
        self.noted_unrecorded = False
        # One cached redactor per direction, for the last factory seen: the
        # client's rules plus this decorator's paths.
        self._input_redactor: Optional[tuple[EventFactory, Redactor]] = None
        self._output_redactor: Optional[tuple[EventFactory, Redactor]] = None

    def note_unrecorded(self) -> None:
        if not self.noted_unrecorded:
            self.noted_unrecorded = True
            logger.debug(
                "%s ran unrecorded because no client is set; pass client=, "
                "activate one with rankigi.use(client) or call rankigi.init()",
                self.name,
            )

    def input_redactor(self, factory: EventFactory) -> Optional[Redactor]:
        if not self.redact:
            return None  # the factory's own rules apply
        cached = self._input_redactor
        if cached is None or cached[0] is not factory:
            cached = (factory, _merge(factory, self.redact))
            self._input_redactor = cached
        return cached[1]

    def output_redactor(self, factory: EventFactory) -> Optional[Redactor]:
        if not self.redact_output:
            return None
        cached = self._output_redactor
        if cached is None or cached[0] is not factory:
            cached = (factory, _merge(factory, self.redact_output))
            self._output_redactor = cached
        return cached[1]


def resolve_client(spec: Spec) -> Optional[ClientBase]:
    """Return the explicit, active or default client, in that order."""
    client = spec.client
    if client is None:
        client = active_client.get()
        if client is None:
            client = default_client.client
    return client


def start_call(
    spec: Spec,
    client: ClientBase,
    instance: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Optional[Call]:
    """Begin recording a call, or return None to run it unrecorded.

    Never raises: a failure to capture is reported through ``on_error`` and
    the call then runs unrecorded.
    """
    core: ClientCore = client._core
    if not core.config.enabled or suppress_recording.get():
        return None
    try:
        return Call(spec, core, instance, args, kwargs)
    except Exception as exc:
        logger.debug("starting to record %s failed", spec.name, exc_info=True)
        core.report(
            RankigiError(
                codes.CAPTURE_FAILED,
                f"dropped 1 event: capturing the call of {spec.name} "
                f"failed with {exc!r}",
                event_count=1,
            )
        )
        return None


class Call:
    """One decorated call from start to end; a driver ``Observer``."""

    __slots__ = (
        "core",
        "event_id",
        "factory",
        "input",
        "item_count",
        "items",
        "links",
        "spec",
        "started",
    )

    def __init__(
        self,
        spec: Spec,
        core: ClientCore,
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        factory = core.factory
        self.spec = spec
        self.core = core
        self.factory = factory
        self.event_id = factory.new_id()
        self.links: Links = (current_event_id.get(), current_run.get())
        self.input: Any = None
        if spec.capture_input != OFF:
            bound = spec.binder(instance, args, kwargs)
            self.input = factory.capture(bound, spec.input_redactor(factory))
        self.items: Optional[list[Any]] = None  # a generator's captured items
        self.item_count = 0
        self.started = factory.perf_counter()

    # -- Observer -------------------------------------------------------

    def enter(self) -> Any:
        return current_event_id.set(self.event_id)

    def exit(self, token: Any) -> None:
        reset_var(current_event_id, token)

    def returned(self, value: Any) -> None:
        self.core.record(_build_returned, self, value, self.factory.perf_counter())

    def yielded(self, value: Any) -> None:
        self.item_count += 1
        spec = self.spec
        if spec.capture_output == OFF:
            return
        items = self.items
        if items is None:
            items = self.items = []
        factory = self.factory
        if len(items) < factory.limits.max_items:
            # Each item is captured now, because the consumer may change it.
            items.append(factory.capture(value, spec.output_redactor(factory)))

    def ended(self, closed: bool) -> None:
        self.core.record(_build_ended, self, closed, self.factory.perf_counter())

    def failed(self, exc: BaseException) -> None:
        self.core.record(_build_failed, self, exc, self.factory.perf_counter())

    # -- building the event --------------------------------------------

    def payload(self) -> tuple[dict[str, Any], list[str]]:
        """Start the payload with the name and the input."""
        spec = self.spec
        payload: dict[str, Any] = {spec.name_key: spec.name}
        hashed: list[str] = []
        if spec.capture_input != OFF:
            _put(payload, hashed, "input", self.input, spec.capture_input)
        return payload, hashed

    def event(
        self,
        action: str,
        payload: dict[str, Any],
        hashed: list[str],
        status: str,
        ended: float,
    ) -> dict[str, Any]:
        """Finish the payload with the duration and status, and wrap it."""
        spec = self.spec
        payload["duration_ms"] = round((ended - self.started) * 1000, 3)
        payload["status"] = status
        return self.factory.event(
            action,
            spec.name if spec.is_tool else None,
            payload,
            spec.severity,
            tuple(hashed),
            event_id=self.event_id,
            links=self.links,
        )


def drive_recorded_call(
    call: Call,
    wrapped: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """Run a plain call as ``drive_call`` does, with the observer inlined.

    This is the common case, so it saves the four method calls. The token is
    reset in the same synchronous stretch that set it, so a plain ``reset``
    cannot fail.
    """
    token = current_event_id.set(call.event_id)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        current_event_id.reset(token)
        call.failed(exc)
        raise
    current_event_id.reset(token)
    call.core.record(_build_returned, call, result, call.factory.perf_counter())
    return result


def _build_returned(call: Call, value: Any, ended: float) -> dict[str, Any]:
    spec = call.spec
    payload, hashed = call.payload()
    if spec.capture_output != OFF:
        factory = call.factory
        output = factory.capture(value, spec.output_redactor(factory))
        _put(payload, hashed, "output", output, spec.capture_output)
    return call.event(spec.event_action, payload, hashed, "ok", ended)


def _build_ended(call: Call, closed: bool, ended: float) -> dict[str, Any]:
    spec = call.spec
    payload, hashed = call.payload()
    if spec.capture_output != OFF:
        items = list(call.items or ())
        if call.item_count > len(items):
            items.append(f"{_ELLIPSIS}[{call.item_count - len(items)} more items]")
        _put(payload, hashed, "output", items, spec.capture_output)
    payload["item_count"] = call.item_count
    payload["closed_early"] = closed
    return call.event(spec.event_action, payload, hashed, "ok", ended)


def _build_failed(call: Call, exc: BaseException, ended: float) -> dict[str, Any]:
    spec = call.spec
    payload, hashed = call.payload()
    if call.item_count:
        payload["item_count"] = call.item_count
    if not spec.is_tool:
        # An action that raised produced no output, so it is recorded as an
        # error event; the error schema names a tool, which it has not.
        payload["tool"] = None
    details = serialize_exception(exc, call.factory.limits)
    payload["error_type"] = details["type"]
    payload["error_message"] = details["message"]
    payload["traceback"] = details["traceback"]
    hashed.append("error")
    action = spec.event_action if spec.is_tool else "error"
    return call.event(action, payload, hashed, "error", ended)


def _put(
    payload: dict[str, Any], hashed: list[str], key: str, value: Any, mode: str
) -> None:
    """Add a captured value by ``mode``: whole, as hash and size, or not at all."""
    if mode == FULL:
        payload[key] = value
        hashed.append(key)
    elif mode == HASH_ONLY:
        # The same fields the transport writes for a hash-only client, made
        # here because only this decorator asked for them.
        data = canonical_json(value).encode("utf-8")
        payload[f"{key}_hash"] = hashlib.sha256(data).hexdigest()
        payload[f"{key}_size"] = len(data)


def _merge(factory: EventFactory, paths: tuple[str, ...]) -> Redactor:
    if factory.redactor is None:
        return Redactor(keys=(), paths=paths)
    return factory.redactor.with_extra(paths=paths)


def _check_name(name: Optional[str]) -> Optional[str]:
    if name is None:
        return None
    if not isinstance(name, str) or not name.strip():
        raise ValueError(
            f"name={name!r} is invalid; pass a non-empty string such as "
            "'stripe_refund', or leave it out to use the function's name"
        )
    return name


def _check_severity(severity: Any) -> str:
    if severity not in SEVERITIES:
        raise ValueError(
            f"severity={severity!r} is invalid; use one of: info, warn, critical"
        )
    return str(severity)


def _capture_mode(option: str, value: Any) -> str:
    if value is True or value == FULL:
        return FULL
    if value is False or value == OFF:
        return OFF
    if value == HASH_ONLY:
        return HASH_ONLY
    raise ValueError(
        f"{option}={value!r} is invalid; pass True or 'full' to record the "
        "value, 'hash_only' to record its SHA-256 and size, False or 'off' "
        "to leave it out"
    )


def _check_paths(option: str, paths: Sequence[str]) -> tuple[str, ...]:
    if isinstance(paths, str):
        raise ValueError(
            f"{option}={paths!r} is invalid; pass a list of names or key paths, "
            f"such as [{paths!r}]"
        )
    try:
        Redactor(keys=(), paths=paths)
    except ValueError as exc:
        raise ValueError(f"{option} is invalid: {exc}") from None
    return tuple(paths)


def check_client(client: Any) -> Optional[ClientBase]:
    if client is not None and not isinstance(
        getattr(client, "_core", None), ClientCore
    ):
        raise ValueError(
            f"client={client!r} is invalid; pass a rankigi.Rankigi or "
            "rankigi.AsyncRankigi, or leave "
            "it out to use the active or default client"
        )
    return client  # type: ignore[no-any-return]


def library_spec(name: str, binder: Binder) -> Spec:
    """Build the ``Spec`` under which an integration records a library call.

    The events are tool events named ``name`` with the defaults of ``tool()``.
    ``binder(instance, args, kwargs)`` returns the value recorded as the
    input, in place of the binding to parameter names that a decorated
    function gets, because library methods take many parameters that the
    call left at their defaults.
    """
    options = Options(TOOL, name, "info", FULL, FULL, (), (), None)
    spec = Spec(options, binder)
    spec.binder = binder
    return spec
