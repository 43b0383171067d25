"""Record a library's tool run as one ``tool_call`` event.

The event has the shape of a decorated tool's: ``tool``, ``input``,
``output``, ``duration_ms``, ``status`` and, when the run raised, the
exception. An integration adds its own fields (``integration``, and for
example the MCP server) and may read a returned value as a failure, as an
MCP result with ``isError`` set is.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

from rankigi._decorators._drivers import drive_call, drive_coroutine
from rankigi._decorators._recording import Call
from rankigi.integrations._calls import TOOL, Scope, add_error, begin

__all__ = ["ToolResult", "run_tool"]


class ToolResult(NamedTuple):
    """A tool's return value as an integration reads it."""

    output: Any
    # The text of a failure that the tool returned instead of raising.
    error_message: Optional[str] = None
    extra: Optional[dict[str, Any]] = None


# read(returned value) -> ToolResult
Reader = Callable[[Any], ToolResult]


def _plain(value: Any) -> ToolResult:
    return ToolResult(value)


def run_tool(
    name: str,
    input_value: Any,
    extra: dict[str, Any],
    wrapped: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    is_async: bool,
    read: Reader = _plain,
) -> Any:
    """Call ``wrapped`` and record it as the tool ``name``; return its result.

    For ``is_async`` the result is the coroutine to await. Return values and
    exceptions pass through unchanged.
    """
    scope = begin(TOOL, name, input_value)
    if scope is None:
        return wrapped(*args, **kwargs)
    observer = _ToolObserver(scope, extra, read)
    drive = drive_coroutine if is_async else drive_call
    return drive(observer, wrapped, args, kwargs)


class _ToolObserver:
    """A driver observer that records the run when it ends."""

    __slots__ = ("extra", "read", "scope")

    def __init__(self, scope: Scope, extra: dict[str, Any], read: Reader) -> None:
        self.scope = scope
        self.extra = extra
        self.read = read

    def enter(self) -> Any:
        return self.scope.enter()

    def exit(self, token: Any) -> None:
        self.scope.exit(token)

    def returned(self, value: Any) -> None:
        self.scope.record(_build_returned, self.extra, self.read, value)

    def yielded(self, value: Any) -> None:
        pass  # tool runs are plain calls and coroutines

    def ended(self, closed: bool) -> None:
        pass

    def failed(self, exc: BaseException) -> None:
        self.scope.record(_build_failed, self.extra, exc)


def _build_returned(
    call: Call, extra: dict[str, Any], read: Reader, value: Any, ended: float
) -> dict[str, Any]:
    factory = call.factory
    payload, hashed = call.payload()
    payload.update(factory.capture(extra))
    result = read(value)
    payload["output"] = factory.capture(result.output)
    hashed.append("output")
    if result.extra:
        payload.update(factory.capture(result.extra))
    status = "ok"
    if result.error_message is not None:
        status = "error"
        payload["error_type"] = ""
        payload["error_message"] = factory.capture(result.error_message)
        payload["traceback"] = ""
        hashed.append("error")
    return call.event("tool_call", payload, hashed, status, ended)


def _build_failed(
    call: Call, extra: dict[str, Any], exc: BaseException, ended: float
) -> dict[str, Any]:
    payload, hashed = call.payload()
    payload.update(call.factory.capture(extra))
    add_error(call, payload, hashed, exc)
    return call.event("tool_call", payload, hashed, "error", ended)
