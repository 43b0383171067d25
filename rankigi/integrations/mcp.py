"""Record MCP tool calls (the ``mcp`` Python SDK) as ``tool_call`` events.

Patched: ``ClientSession.call_tool``. The event's ``tool`` is the MCP tool
name, ``input`` its arguments, ``output`` the ``CallToolResult``, and
``server`` the name the server gave when the session was initialized. A
result with ``isError`` set is recorded with status ``"error"`` and the
text of its content as ``error_message``. An exception (a timeout, a lost
connection) is recorded and re-raised unchanged.

This module does not import ``mcp``; ``rankigi.instrument()`` applies it
when ``mcp.client.session`` is imported.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Optional

from rankigi.integrations._llm import field
from rankigi.integrations._patching import Patches
from rankigi.integrations._tools import ToolResult, run_tool

__all__ = ["patch_client_session"]


def patch_client_session(module: ModuleType, patches: Patches) -> None:
    """Patch ``mcp.client.session``."""
    patches.wrap(module.ClientSession, "call_tool", _call_tool)


def _call_tool(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    name = args[0] if args else kwargs.get("name")
    if not isinstance(name, str):
        return wrapped(*args, **kwargs)
    arguments = args[1] if len(args) > 1 else kwargs.get("arguments")
    extra = {"integration": "mcp", "server": _server_name(instance)}
    return run_tool(
        name,
        arguments,
        extra,
        wrapped,
        args,
        kwargs,
        is_async=True,
        read=_read_result,
    )


def _server_name(session: Any) -> Optional[str]:
    # ``server_info`` exists from mcp 2; before, the session kept no name.
    try:
        info = getattr(session, "server_info", None)
    except Exception:
        return None
    name = field(info, "name")
    return name if isinstance(name, str) else None


def _read_result(result: Any) -> ToolResult:
    is_error = field(result, "is_error", None)
    if is_error is None:
        is_error = field(result, "isError", False)
    if not is_error:
        return ToolResult(result)
    texts = [
        field(item, "text")
        for item in field(result, "content") or ()
        if isinstance(field(item, "text"), str)
    ]
    return ToolResult(result, error_message="\n".join(texts))
