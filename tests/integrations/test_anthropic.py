from __future__ import annotations

import asyncio
from typing import Any

import pytest

import rankigi
from rankigi.testing import Capture
from tests.integrations.stub_llm import (
    TEXT,
    TEXT_PIECES,
    TOOL_ARGUMENTS,
    TOOL_PREFACE,
    StubLLM,
)

anthropic = pytest.importorskip("anthropic")

MESSAGES = [{"role": "user", "content": "Say hello"}]
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
REQUEST = {"model": "claude-stub", "max_tokens": 64, "messages": MESSAGES}


@pytest.fixture
def client(stub_llm: StubLLM) -> Any:
    return anthropic.Anthropic(api_key="sk-test", base_url=stub_llm.url, max_retries=0)


@pytest.fixture
def async_client(stub_llm: StubLLM) -> Any:
    return anthropic.AsyncAnthropic(
        api_key="sk-test", base_url=stub_llm.url, max_retries=0
    )


def llm_calls(events: Capture) -> list[dict[str, Any]]:
    return [event for event in events.events if event["action"] == "llm_call"]


def only_call(events: Capture) -> dict[str, Any]:
    calls = llm_calls(events)
    assert len(calls) == 1, calls
    return calls[0]


def test_create_records_one_call(recorded: Capture, client: Any) -> None:
    message = client.messages.create(**REQUEST)

    assert type(message).__name__ == "Message"
    assert message.content[0].text == TEXT
    event = only_call(recorded)
    payload = event["payload"]
    assert event["tool"] == "anthropic.messages.create"
    assert payload["provider"] == "anthropic"
    assert payload["model"] == "claude-stub-0001"
    assert payload["input"] == REQUEST
    assert payload["output"] == TEXT
    assert payload["tool_calls"] == []
    assert payload["stop_reason"] == "end_turn"
    assert payload["usage"]["input_tokens"] == 12
    assert payload["usage"]["output_tokens"] == 5
    assert payload["response_id"] == "msg_stub1"
    assert payload["stream"] is False
    assert payload["status"] == "ok"


def test_create_records_tool_use(recorded: Capture, client: Any) -> None:
    message = client.messages.create(**REQUEST, tools=[WEATHER_TOOL])

    assert message.stop_reason == "tool_use"
    payload = only_call(recorded)["payload"]
    assert payload["output"] == TOOL_PREFACE
    assert payload["tool_calls"] == [
        {"id": "toolu_1", "name": "get_weather", "arguments": TOOL_ARGUMENTS}
    ]


def test_create_error_reraised(recorded: Capture, client: Any) -> None:
    with pytest.raises(anthropic.NotFoundError) as raised:
        client.messages.create(**{**REQUEST, "model": "missing-model"})

    assert raised.value.status_code == 404
    payload = only_call(recorded)["payload"]
    assert payload["status"] == "error"
    assert payload["error_type"] == "anthropic.NotFoundError"


def test_create_stream_items_unchanged(recorded: Capture, client: Any) -> None:
    stream = client.messages.create(**REQUEST, tools=[WEATHER_TOOL], stream=True)
    assert isinstance(stream, anthropic.Stream)
    with stream:
        events = list(stream)

    kinds = [event.type for event in events]
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    payload = only_call(recorded)["payload"]
    assert payload["stream"] is True
    assert payload["chunk_count"] == len(events)
    assert payload["output"] == TOOL_PREFACE
    assert payload["tool_calls"] == [
        {"id": "toolu_1", "name": "get_weather", "arguments": TOOL_ARGUMENTS}
    ]
    assert payload["stop_reason"] == "tool_use"
    assert payload["usage"] == {"input_tokens": 12, "output_tokens": 5}
    assert payload["closed_early"] is False


def test_stream_helper_text_stream(recorded: Capture, client: Any) -> None:
    with client.messages.stream(**REQUEST) as stream:
        assert type(stream).__name__ == "MessageStream"
        assert stream.response.status_code == 200
        pieces = list(stream.text_stream)
        final = stream.get_final_message()

    assert pieces == list(TEXT_PIECES)
    assert final.content[0].text == TEXT
    event = only_call(recorded)
    assert event["tool"] == "anthropic.messages.stream"
    assert event["payload"]["output"] == TEXT
    assert event["payload"]["closed_early"] is False


def test_stream_helper_broken_off(recorded: Capture, client: Any) -> None:
    with client.messages.stream(**REQUEST) as stream:
        for text in stream.text_stream:
            assert text == TEXT_PIECES[0]
            break

    payload = only_call(recorded)["payload"]
    assert payload["closed_early"] is True
    assert payload["output"] == TEXT_PIECES[0]


def test_stream_error_midway(recorded: Capture, client: Any) -> None:
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"):  # noqa: SIM117
        with client.messages.stream(**{**REQUEST, "model": "broken-stream"}) as stream:
            stream.until_done()

    payload = only_call(recorded)["payload"]
    assert payload["status"] == "error"
    assert payload["chunk_count"] == 1


def test_raw_response_parse(recorded: Capture, client: Any) -> None:
    raw = client.messages.with_raw_response.create(**REQUEST)

    assert raw.headers["content-type"] == "application/json"
    message = raw.parse()
    assert message.content[0].text == TEXT
    payload = only_call(recorded)["payload"]
    assert payload["raw_response"] is True
    assert payload["output"] == TEXT


def test_async_create_and_stream(recorded: Capture, async_client: Any) -> None:
    async def run() -> tuple[Any, str, list[Any]]:
        message = await async_client.messages.create(**REQUEST)
        async with async_client.messages.stream(**REQUEST) as stream:
            text = await stream.get_final_text()
        raw_stream = await async_client.messages.create(**REQUEST, stream=True)
        events = [event async for event in raw_stream]
        return message, text, events

    message, text, events = asyncio.run(run())

    assert message.content[0].text == TEXT
    assert text == TEXT
    assert events[-1].type == "message_stop"
    created, streamed, raw = llm_calls(recorded)
    assert created["tool"] == "anthropic.messages.create"
    assert streamed["tool"] == "anthropic.messages.stream"
    assert streamed["payload"]["output"] == TEXT
    assert raw["payload"]["output"] == TEXT
    assert raw["payload"]["chunk_count"] == len(events)


def test_async_stream_broken_off(recorded: Capture, async_client: Any) -> None:
    async def run() -> str:
        async with async_client.messages.stream(**REQUEST) as stream:
            async for text in stream.text_stream:
                return str(text)
        return ""

    assert asyncio.run(run()) == TEXT_PIECES[0]
    payload = only_call(recorded)["payload"]
    assert payload["closed_early"] is True


def test_links_to_decorated_parent(recorded: Capture, client: Any) -> None:
    @rankigi.tool("ask_claude")
    def ask() -> str:
        return str(client.messages.create(**REQUEST).content[0].text)

    assert ask() == TEXT
    (parent,) = recorded.tool_calls("ask_claude")
    (child,) = recorded.children(parent)
    assert child["tool"] == "anthropic.messages.create"
