"""Record the OpenAI Python SDK's chat completions and responses calls.

Patched, on the sync and async resources: ``chat.completions.create``,
``.parse`` and ``.stream``, and ``responses.create``, ``.parse`` and
``.stream``. Each call is one ``llm_call`` event (see ``rankigi.integrations``
for the payload), including calls made through ``with_raw_response`` and
``with_streaming_response``. Streams and raw responses come back inside
proxies that keep the SDK objects' whole API.

This module does not import ``openai``; ``rankigi.instrument()`` applies it
when the SDK's modules are imported.
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

__all__ = ["patch_chat_completions", "patch_responses"]


class _Provider:
    """The OpenAI SDK's result types, and how one API's results read."""

    name = "openai"

    def __init__(self, api: str) -> None:
        self.api = api
        self.sync_streams = find_types("openai._streaming:Stream")
        self.async_streams = find_types("openai._streaming:AsyncStream")
        self.raw_responses = find_types(
            "openai._legacy_response:LegacyAPIResponse",
            "openai._response:APIResponse",
            "openai._response:AsyncAPIResponse",
        )

    def summarize(self, result: Any) -> Summary:
        if self.api == "chat":
            return chat_summary(result)
        return response_summary(result)

    def accumulator(self) -> Accumulator:
        if self.api == "chat":
            return _ChatChunks()
        return _ResponseEvents()


def patch_chat_completions(module: ModuleType, patches: Patches) -> None:
    """Patch ``openai.resources.chat.completions.completions``."""
    provider = _Provider("chat")
    _patch(patches, module.Completions, "chat.completions", provider, False)
    _patch(patches, module.AsyncCompletions, "chat.completions", provider, True)


def patch_responses(module: ModuleType, patches: Patches) -> None:
    """Patch ``openai.resources.responses.responses``."""
    provider = _Provider("responses")
    _patch(patches, module.Responses, "responses", provider, False)
    _patch(patches, module.AsyncResponses, "responses", provider, True)


def _patch(
    patches: Patches, owner: type, api: str, provider: _Provider, is_async: bool
) -> None:
    patches.wrap(
        owner, "create", call_handler(provider, f"openai.{api}.create", is_async)
    )
    # parse() came to these resources later than create() and stream().
    handler = call_handler(provider, f"openai.{api}.parse", is_async)
    patches.wrap_if_defined(owner, "parse", handler)
    handler = manager_handler(provider, f"openai.{api}.stream", is_async)
    patches.wrap(owner, "stream", handler)


# -- chat completions ---------------------------------------------------


def chat_summary(completion: Any) -> Summary:
    """Return the summary of a ``ChatCompletion``."""
    texts: list[Any] = []
    reasons: list[Any] = []
    tool_calls: list[dict[str, Any]] = []
    for choice in field(completion, "choices") or ():
        message = field(choice, "message")
        texts.append(field(message, "content"))
        reasons.append(field(choice, "finish_reason"))
        for call in field(message, "tool_calls") or ():
            tool_calls.append(_chat_tool_call(call))
    return {
        "model": field(completion, "model"),
        "response_id": field(completion, "id"),
        "output": _one_or_all(texts),
        "tool_calls": tool_calls,
        "stop_reason": _one_or_all(reasons),
        "usage": usage_dict(field(completion, "usage")),
    }


def _one_or_all(values: list[Any]) -> Any:
    # One choice unless the request set n > 1.
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _chat_tool_call(call: Any) -> dict[str, Any]:
    custom = field(call, "custom")
    if custom is not None:
        return {
            "id": field(call, "id"),
            "name": field(custom, "name"),
            "arguments": field(custom, "input"),
        }
    function = field(call, "function")
    return {
        "id": field(call, "id"),
        "name": field(function, "name"),
        "arguments": parse_arguments(field(function, "arguments")),
    }


class _ChatChunks:
    """Builds the summary of a stream of ``ChatCompletionChunk`` items."""

    def __init__(self) -> None:
        self.model: Optional[str] = None
        self.response_id: Optional[str] = None
        self.usage: Any = None
        self.texts: dict[int, list[str]] = {}
        self.reasons: dict[int, Any] = {}
        # (choice index, tool call index) -> id, name and argument text
        self.calls: dict[tuple[int, int], dict[str, Any]] = {}

    def add(self, chunk: Any) -> None:
        self.model = self.model or field(chunk, "model")
        self.response_id = self.response_id or field(chunk, "id")
        usage = field(chunk, "usage")
        if usage is not None:
            self.usage = usage
        for choice in field(chunk, "choices") or ():
            self._add_choice(choice)

    def _add_choice(self, choice: Any) -> None:
        index = field(choice, "index", 0) or 0
        delta = field(choice, "delta")
        content = field(delta, "content")
        if content:
            self.texts.setdefault(index, []).append(content)
        for call in field(delta, "tool_calls") or ():
            key = (index, field(call, "index", 0) or 0)
            entry = self.calls.setdefault(key, {"id": None, "name": "", "text": ""})
            entry["id"] = entry["id"] or field(call, "id")
            function = field(call, "function")
            entry["name"] += field(function, "name") or ""
            entry["text"] += field(function, "arguments") or ""
        reason = field(choice, "finish_reason")
        if reason is not None:
            self.reasons[index] = reason

    def summary(self) -> Summary:
        indexes = sorted(set(self.texts) | set(self.reasons)) or [0]
        tool_calls = [
            {
                "id": entry["id"],
                "name": entry["name"],
                "arguments": parse_arguments(entry["text"]),
            }
            for _, entry in sorted(self.calls.items())
        ]
        return {
            "model": self.model,
            "response_id": self.response_id,
            "output": _one_or_all(
                ["".join(self.texts[i]) if i in self.texts else None for i in indexes]
            ),
            "tool_calls": tool_calls,
            "stop_reason": _one_or_all([self.reasons.get(i) for i in indexes]),
            "usage": usage_dict(self.usage),
        }


# -- responses ----------------------------------------------------------


def response_summary(response: Any) -> Summary:
    """Return the summary of a ``Response``."""
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for item in field(response, "output") or ():
        _read_output_item(item, texts, tool_calls)
    reason = field(field(response, "incomplete_details"), "reason")
    return {
        "model": field(response, "model"),
        "response_id": field(response, "id"),
        "output": "".join(texts),
        "tool_calls": tool_calls,
        "stop_reason": reason or field(response, "status"),
        "usage": usage_dict(field(response, "usage")),
    }


def _read_output_item(
    item: Any, texts: list[str], tool_calls: list[dict[str, Any]]
) -> None:
    kind = field(item, "type")
    if kind == "message":
        for part in field(item, "content") or ():
            part_kind = field(part, "type")
            if part_kind == "output_text":
                texts.append(field(part, "text") or "")
            elif part_kind == "refusal":
                texts.append(field(part, "refusal") or "")
    elif kind == "function_call":
        tool_calls.append(
            {
                "id": field(item, "call_id"),
                "name": field(item, "name"),
                "arguments": parse_arguments(field(item, "arguments")),
            }
        )
    elif kind == "custom_tool_call":
        tool_calls.append(
            {
                "id": field(item, "call_id"),
                "name": field(item, "name"),
                "arguments": field(item, "input"),
            }
        )


# Events that carry the finished response.
_FINAL_EVENTS = ("response.completed", "response.incomplete", "response.failed")


class _ResponseEvents:
    """Builds the summary of a stream of Responses API events."""

    def __init__(self) -> None:
        self.final: Any = None
        self.started: Any = None
        self.texts: list[str] = []
        self.items: list[Any] = []

    def add(self, event: Any) -> None:
        kind = field(event, "type")
        if kind in _FINAL_EVENTS:
            self.final = field(event, "response")
        elif kind == "response.created":
            self.started = field(event, "response")
        elif kind == "response.output_text.delta":
            self.texts.append(field(event, "delta") or "")
        elif kind == "response.output_item.done":
            self.items.append(field(event, "item"))

    def summary(self) -> Summary:
        if self.final is not None:
            return response_summary(self.final)
        # Broken off before the end: what arrived so far.
        tool_calls: list[dict[str, Any]] = []
        for item in self.items:
            _read_output_item(item, [], tool_calls)
        return {
            "model": field(self.started, "model"),
            "response_id": field(self.started, "id"),
            "output": "".join(self.texts),
            "tool_calls": tool_calls,
        }
