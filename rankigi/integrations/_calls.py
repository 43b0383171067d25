"""Starting a recorded library call, and the nesting guard, for every integration.

A library call is recorded through the decorators' ``Call``: it takes the
event id, the parent event and the run when the call starts, captures the
input, and wraps the payload into an event when the call ends.

The guard makes one logical call one event. While an instrumented call
runs, a context variable names its kind ("llm" or "tool"), its name and its
event id. An instrumented call of the same kind that starts directly inside
it, with no other recorded call in between, is the same logical call seen
again: a method calling another patched method of the same library, a
subclass override calling ``super()``, or a LangChain tool backed by an MCP
tool of the same name. It runs unrecorded.
"""

from __future__ import annotations

import functools
import logging
from contextvars import ContextVar
from typing import Any, Callable, Optional

from rankigi._context import current_event_id, get_client, reset_var
from rankigi._decorators._binding import Binder
from rankigi._decorators._recording import Call, Spec, library_spec, start_call
from rankigi._serialize import serialize_exception

__all__ = [
    "LLM",
    "TOOL",
    "Scope",
    "add_error",
    "begin",
    "spec_for",
]

logger = logging.getLogger("rankigi.integrations")

LLM = "llm"
TOOL = "tool"

# (kind, name, event id) of the instrumented call running in this context.
_scope: ContextVar[Optional[tuple[str, str, str]]] = ContextVar(
    "rankigi_integration_scope", default=None
)

# Tool names come from user code, so the cache of specs is bounded.
_SPEC_CACHE_SIZE = 1024


def _input_argument(
    instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    # ``begin`` passes the value to record as the only argument.
    return args[0]


@functools.lru_cache(maxsize=_SPEC_CACHE_SIZE)
def spec_for(name: str) -> Spec:
    """Return the cached spec of calls recorded under ``name``."""
    binder: Binder = _input_argument
    return library_spec(name, binder)


def _is_repeat(kind: str, name: str) -> bool:
    scope = _scope.get()
    if scope is None or scope[0] != kind:
        return False
    if kind == TOOL and scope[1] != name:
        return False
    return scope[2] == current_event_id.get()


def begin(kind: str, name: str, input_value: Any) -> Optional[Scope]:
    """Start recording a library call named ``name``, or return None.

    None means the call runs unrecorded: no client is active or set as the
    default, recording is off or suppressed on this thread (the transport's
    own requests), or the call repeats the instrumented call around it.
    Never raises; a failed capture is reported through ``on_error``.
    """
    client = get_client()
    if client is None or _is_repeat(kind, name):
        return None
    call = start_call(spec_for(name), client, None, (input_value,), {})
    if call is None:
        return None
    return Scope(kind, name, call)


class Scope:
    """One recorded library call: its ``Call`` and the guard while it runs."""

    __slots__ = ("call", "kind", "name")

    def __init__(self, kind: str, name: str, call: Call) -> None:
        self.kind = kind
        self.name = name
        self.call = call

    def enter(self) -> Any:
        """Make this call the parent and the guard; return what ``exit`` needs."""
        call = self.call
        return call.enter(), _scope.set((self.kind, self.name, call.event_id))

    def exit(self, tokens: Any) -> None:
        event_token, scope_token = tokens
        reset_var(_scope, scope_token)
        self.call.exit(event_token)

    def record(self, build: Callable[..., dict[str, Any]], *args: Any) -> None:
        """Build the event with ``build(call, *args, ended)`` and queue it."""
        call = self.call
        call.core.record(build, call, *args, call.factory.perf_counter())


def add_error(
    call: Call, payload: dict[str, Any], hashed: list[str], exc: BaseException
) -> None:
    """Add an exception's type, message and traceback, as decorated calls do."""
    details = serialize_exception(exc, call.factory.limits)
    payload["error_type"] = details["type"]
    payload["error_message"] = details["message"]
    payload["traceback"] = details["traceback"]
    hashed.append("error")
