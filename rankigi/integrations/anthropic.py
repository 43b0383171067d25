"""Record the Anthropic Python SDK's ``messages.create``, ``.parse`` and ``.stream``.

Patched on ``Messages`` and ``AsyncMessages``. Each call is one
``llm_call`` event (see ``rankigi.integrations`` for the payload),
including calls made through ``with_raw_response`` and
``with_streaming_response``. Streams and raw responses come back inside
proxies that keep the SDK objects' whole API; ``messages.stream()`` returns
the SDK's own ``MessageStream``, whose items are recorded as it reads them.

This module does not import ``anthropic``; ``rankigi.instrument()`` applies
it when the SDK's modules are imported.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Optional

from rankigi.integrations._llm import (
    Accumulator,
    Summary,
    call_handler,
    field,
    find_types,
    manager_handler,
    parse_arguments,
    usage_dict,
)
from rankigi.integrations._patching import Patches

__all__ = ["message_summary", "patch_messages"]

# Content block types that are tool calls the model requested.
_TOOL_USE = ("tool_use", "server_tool_use")


class _Provider:
    """The Anthropic SDK's result types, and how its messages read."""

    name = "anthropic"

    def __init__(self) -> None:
        self.sync_streams = find_types("anthropic._streaming:Stream")
        self.async_streams = find_types("anthropic._streaming:AsyncStream")
        # Older SDK versions return LegacyAPIResponse for with_raw_response;
        # find_types skips what this version lacks.
        self.raw_responses = find_types(
            "anthropic._legacy_response:LegacyAPIResponse",
            "anthropic._response:APIResponse",
            "anthropic._response:AsyncAPIResponse",
        )

    def summarize(self, result: Any) -> Summary:
        return message_summary(result)

    def accumulator(self) -> Accumulator:
        return _MessageEvents()


def patch_messages(module: ModuleType, patches: Patches) -> None:
    """Patch ``anthropic.resources.messages.messages``."""
    provider = _Provider()
    for owner, is_async in ((module.Messages, False), (module.AsyncMessages, True)):
        handler = call_handler(provider, "anthropic.messages.create", is_async)
        patches.wrap(owner, "create", handler)
        # parse() came to this resource later than create() and stream().
        handler = call_handler(provider, "anthropic.messages.parse", is_async)
        patches.wrap_if_defined(owner, "parse", handler)
        handler = manager_handler(provider, "anthropic.messages.stream", is_async)
        patches.wrap(owner, "stream", handler)


def message_summary(message: Any) -> Summary:
    """Return the summary of a ``Message``."""
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in field(message, "content") or ():
        kind = field(block, "type")
        if kind == "text":
            texts.append(field(block, "text") or "")
        elif kind in _TOOL_USE:
            tool_calls.append(
                {
                    "id": field(block, "id"),
                    "name": field(block, "name"),
                    "arguments": field(block, "input"),
                }
            )
    return {
        "model": field(message, "model"),
        "response_id": field(message, "id"),
        "output": "".join(texts),
        "tool_calls": tool_calls,
        "stop_reason": field(message, "stop_reason"),
        "usage": usage_dict(field(message, "usage")),
    }


class _MessageEvents:
    """Builds the summary of a stream of message events."""

    def __init__(self) -> None:
        self.model: Optional[str] = None
        self.response_id: Optional[str] = None
        self.stop_reason: Any = None
        self.usage: dict[str, Any] = {}
        # content block index -> {"type", "text"} or {"type", "id", "name", "json"}
        self.blocks: dict[int, dict[str, Any]] = {}

    def add(self, event: Any) -> None:
        kind = field(event, "type")
        if kind == "message_start":
            message = field(event, "message")
            self.model = field(message, "model")
            self.response_id = field(message, "id")
            self.usage.update(usage_dict(field(message, "usage")) or {})
        elif kind == "content_block_start":
            self._start_block(field(event, "index", 0), field(event, "content_block"))
        elif kind == "content_block_delta":
            self._add_delta(field(event, "index", 0), field(event, "delta"))
        elif kind == "message_delta":
            reason = field(field(event, "delta"), "stop_reason")
            self.stop_reason = reason or self.stop_reason
            self.usage.update(usage_dict(field(event, "usage")) or {})

    def _start_block(self, index: int, block: Any) -> None:
        kind = field(block, "type")
        if kind == "text":
            self.blocks[index] = {"type": "text", "text": field(block, "text") or ""}
        elif kind in _TOOL_USE:
            self.blocks[index] = {
                "type": "tool_use",
                "id": field(block, "id"),
                "name": field(block, "name"),
                "input": field(block, "input"),
                "json": "",
            }

    def _add_delta(self, index: int, delta: Any) -> None:
        block = self.blocks.get(index)
        if block is None:
            return
        kind = field(delta, "type")
        if kind == "text_delta":
            block["text"] += field(delta, "text") or ""
        elif kind == "input_json_delta":
            block["json"] += field(delta, "partial_json") or ""

    def summary(self) -> Summary:
        texts: list[str] = []
        tool_calls: list[dict[str, Any]] = []
        for _, block in sorted(self.blocks.items()):
            if block["type"] == "text":
                texts.append(block["text"])
                continue
            arguments = block["input"]
            if block["json"]:
                arguments = parse_arguments(block["json"])
            tool_calls.append(
                {"id": block["id"], "name": block["name"], "arguments": arguments}
            )
        return {
            "model": self.model,
            "response_id": self.response_id,
            "output": "".join(texts),
            "tool_calls": tool_calls,
            "stop_reason": self.stop_reason,
            "usage": self.usage or None,
        }
