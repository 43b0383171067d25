"""Record LangChain tool runs (``langchain-core``) as ``tool_call`` events.

Patched on ``BaseTool``: ``invoke``, ``ainvoke``, ``run`` and ``arun``.
``invoke`` calls ``run``, and ``StructuredTool.ainvoke`` may call
``invoke`` or ``BaseTool.ainvoke``, but the nesting guard keeps one event
per tool run. The event's ``tool`` is the tool's ``name``, and ``input`` is
the tool input (the ``args`` of a tool call). ``output`` is what the tool
returned, or the ``content`` of the ``ToolMessage`` that a run with a tool
call id returns. A ``ToolMessage`` with status ``"error"`` (an error that
the tool's ``handle_tool_error`` turned into a reply) is recorded with
status ``"error"``. An exception is recorded and re-raised unchanged.

This module does not import ``langchain_core``; ``rankigi.instrument()``
applies it when ``langchain_core.tools.base`` is imported.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Optional

from rankigi.integrations._llm import field
from rankigi.integrations._patching import Handler, Patches
from rankigi.integrations._tools import ToolResult, run_tool

__all__ = ["patch_tools"]


def patch_tools(module: ModuleType, patches: Patches) -> None:
    """Patch ``langchain_core.tools.base``."""
    owner = module.BaseTool
    patches.wrap(owner, "invoke", _handler(_invoke_input, is_async=False))
    patches.wrap(owner, "ainvoke", _handler(_invoke_input, is_async=True))
    patches.wrap(owner, "run", _handler(_run_input, is_async=False))
    patches.wrap(owner, "arun", _handler(_run_input, is_async=True))


def _handler(read_input: Any, is_async: bool) -> Handler:
    def handler(
        wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        name = getattr(instance, "name", None)
        if not isinstance(name, str):
            return wrapped(*args, **kwargs)
        input_value, call_id = read_input(args, kwargs)
        extra: dict[str, Any] = {"integration": "langchain"}
        if call_id is not None:
            extra["tool_call_id"] = call_id
        return run_tool(
            name,
            input_value,
            extra,
            wrapped,
            args,
            kwargs,
            is_async=is_async,
            read=_read_output,
        )

    return handler


def _invoke_input(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, Optional[str]]:
    """Return the input and tool call id of ``invoke(input, config, **kwargs)``."""
    value = args[0] if args else kwargs.get("input")
    if isinstance(value, dict) and value.get("type") == "tool_call":
        return value.get("args"), value.get("id")
    return value, kwargs.get("tool_call_id")


def _run_input(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, Optional[str]]:
    """Return the input and tool call id of ``run(tool_input, ...)``."""
    value = args[0] if args else kwargs.get("tool_input")
    return value, kwargs.get("tool_call_id")


def _read_output(value: Any) -> ToolResult:
    # A run with a tool call id returns a ToolMessage wrapping the content.
    if type(value).__name__ != "ToolMessage":
        return ToolResult(value)
    content = field(value, "content")
    extra = None
    artifact = field(value, "artifact")
    if artifact is not None:
        extra = {"artifact": artifact}
    if field(value, "status") == "error":
        message = content if isinstance(content, str) else str(content)
        return ToolResult(content, error_message=message, extra=extra)
    return ToolResult(content, extra=extra)
