from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

import rankigi
import rankigi.testing
from rankigi.testing import Capture
from tests.integrations.stub_llm import TEXT, TEXT_PIECES, TOOL_ARGUMENTS, StubLLM

openai = pytest.importorskip("openai")

MESSAGES = [{"role": "user", "content": "Say hello"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
RESPONSES_TOOL = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture
def client(stub_llm: StubLLM) -> Any:
    return openai.OpenAI(
        api_key="sk-test", base_url=f"{stub_llm.url}/v1", max_retries=0
    )


@pytest.fixture
def async_client(stub_llm: StubLLM) -> Any:
    return openai.AsyncOpenAI(
        api_key="sk-test", base_url=f"{stub_llm.url}/v1", max_retries=0
    )


def llm_calls(events: Capture) -> list[dict[str, Any]]:
    return [event for event in events.events if event["action"] == "llm_call"]


def only_call(events: Capture) -> dict[str, Any]:
    calls = llm_calls(events)
    assert len(calls) == 1, calls
    return calls[0]


def test_chat_create_records_one_call(recorded: Capture, client: Any) -> None:
    completion = client.chat.completions.create(model="gpt-stub", messages=MESSAGES)

    assert type(completion).__name__ == "ChatCompletion"
    assert completion.choices[0].message.content == TEXT
    event = only_call(recorded)
    payload = event["payload"]
    assert event["tool"] == "openai.chat.completions.create"
    assert payload["provider"] == "openai"
    assert payload["model"] == "gpt-stub-0001"
    assert payload["input"] == {"model": "gpt-stub", "messages": MESSAGES}
    assert payload["output"] == TEXT
    assert payload["tool_calls"] == []
    assert payload["stop_reason"] == "stop"
    assert payload["usage"] == {
        "input_tokens": 12,
        "output_tokens": 5,
        "total_tokens": 17,
    }
    assert payload["response_id"] == "chatcmpl-stub1"
    assert payload["stream"] is False
    assert payload["status"] == "ok"
    assert payload["duration_ms"] >= 0
    assert "output_hash" in payload
    assert "tool_calls_hash" in payload


def test_chat_create_records_requested_tool_calls(
    recorded: Capture, client: Any
) -> None:
    completion = client.chat.completions.create(
        model="gpt-stub", messages=MESSAGES, tools=[WEATHER_TOOL]
    )

    assert completion.choices[0].message.tool_calls[0].function.name == "get_weather"
    payload = only_call(recorded)["payload"]
    assert payload["tool_calls"] == [
        {"id": "call_1", "name": "get_weather", "arguments": TOOL_ARGUMENTS}
    ]
    assert payload["output"] is None
    assert payload["stop_reason"] == "tool_calls"


def test_chat_error_is_recorded_and_reraised(recorded: Capture, client: Any) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="missing-model", messages=MESSAGES)

    assert raised.value.status_code == 404
    payload = only_call(recorded)["payload"]
    assert payload["status"] == "error"
    assert payload["error_type"] == "openai.NotFoundError"
    assert "missing-model" in payload["error_message"]
    assert payload["model"] == "missing-model"


def test_chat_stream_items_unchanged(recorded: Capture, client: Any) -> None:
    stream = client.chat.completions.create(
        model="gpt-stub",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    assert isinstance(stream, openai.Stream)
    chunks = list(stream)

    assert all(type(chunk).__name__ == "ChatCompletionChunk" for chunk in chunks)
    texts = [c.choices[0].delta.content for c in chunks if c.choices]
    assert "".join(t or "" for t in texts) == TEXT
    payload = only_call(recorded)["payload"]
    assert payload["stream"] is True
    assert payload["output"] == TEXT
    assert payload["chunk_count"] == len(chunks)
    assert payload["closed_early"] is False
    assert payload["usage"]["input_tokens"] == 12


def test_chat_stream_tool_call_deltas_joined(recorded: Capture, client: Any) -> None:
    with client.chat.completions.create(
        model="gpt-stub", messages=MESSAGES, tools=[WEATHER_TOOL], stream=True
    ) as stream:
        for _ in stream:
            pass

    payload = only_call(recorded)["payload"]
    assert payload["tool_calls"] == [
        {"id": "call_1", "name": "get_weather", "arguments": TOOL_ARGUMENTS}
    ]
    assert payload["stop_reason"] == "tool_calls"


def test_chat_stream_broken_off_records_once(recorded: Capture, client: Any) -> None:
    stream = client.chat.completions.create(
        model="gpt-stub", messages=MESSAGES, stream=True
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content == TEXT_PIECES[0]:
            break
    stream.close()
    assert stream.response.is_closed

    payload = only_call(recorded)["payload"]
    assert payload["closed_early"] is True
    assert payload["output"] == TEXT_PIECES[0]
    assert payload["status"] == "ok"


def test_chat_stream_next_and_close(recorded: Capture, client: Any) -> None:
    stream = client.chat.completions.create(
        model="gpt-stub", messages=MESSAGES, stream=True
    )
    first = next(stream)
    stream.close()

    assert first.choices[0].delta.role == "assistant"
    payload = only_call(recorded)["payload"]
    assert payload["chunk_count"] == 1
    assert payload["closed_early"] is True


def test_chat_stream_dropped_unread_records(recorded: Capture, client: Any) -> None:
    stream = client.chat.completions.create(
        model="gpt-stub", messages=MESSAGES, stream=True
    )
    stream.response.close()
    del stream
    gc.collect()

    payload = only_call(recorded)["payload"]
    assert payload["closed_early"] is True
    assert payload["chunk_count"] == 0


def test_chat_stream_error_midway(recorded: Capture, client: Any) -> None:
    stream = client.chat.completions.create(
        model="broken-stream", messages=MESSAGES, stream=True
    )
    with pytest.raises(openai.APIError, match="the stream broke"):
        for _ in stream:
            pass

    payload = only_call(recorded)["payload"]
    assert payload["status"] == "error"
    assert payload["error_message"] == "the stream broke"
    assert payload["chunk_count"] == 1


def test_chat_stream_helper_is_one_event(recorded: Capture, client: Any) -> None:
    with client.chat.completions.stream(
        model="gpt-stub", messages=MESSAGES, tools=[WEATHER_TOOL]
    ) as stream:
        assert type(stream).__name__ == "ChatCompletionStream"
        final = stream.get_final_completion()

    assert final.choices[0].message.tool_calls[0].function.name == "get_weather"
    event = only_call(recorded)
    assert event["tool"] == "openai.chat.completions.stream"
    payload = event["payload"]
    assert payload["tool_calls"][0]["arguments"] == TOOL_ARGUMENTS
    assert payload["closed_early"] is False


def test_chat_stream_helper_broken_off(recorded: Capture, client: Any) -> None:
    with client.chat.completions.stream(model="gpt-stub", messages=MESSAGES) as stream:
        for event in stream:
            if event.type == "content.delta" and event.delta == TEXT_PIECES[0]:
                break

    payload = only_call(recorded)["payload"]
    assert payload["closed_early"] is True
    assert payload["output"] == TEXT_PIECES[0]


def test_chat_parse_recorded(recorded: Capture, client: Any) -> None:
    completion = client.chat.completions.parse(model="gpt-stub", messages=MESSAGES)

    assert completion.choices[0].message.content == TEXT
    event = only_call(recorded)
    assert event["tool"] == "openai.chat.completions.parse"
    assert event["payload"]["output"] == TEXT


def test_raw_response_keeps_api(recorded: Capture, client: Any) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-stub", messages=MESSAGES
    )

    assert isinstance(raw, openai._legacy_response.LegacyAPIResponse)
    assert raw.http_request.url.path == "/v1/chat/completions"
    completion = raw.parse()
    assert raw.parse() is completion
    assert completion.choices[0].message.content == TEXT
    payload = only_call(recorded)["payload"]
    assert payload["raw_response"] is True
    assert payload["output"] == TEXT


def test_raw_stream_outlives_response(recorded: Capture, client: Any) -> None:
    stream = client.chat.completions.with_raw_response.create(
        model="gpt-stub", messages=MESSAGES, stream=True
    ).parse()
    gc.collect()
    chunks = list(stream)

    assert len(chunks) == 5
    payload = only_call(recorded)["payload"]
    assert payload["output"] == TEXT
    assert payload["closed_early"] is False


def test_streaming_response_stream_recorded(recorded: Capture, client: Any) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="gpt-stub", messages=MESSAGES, stream=True
    ) as response:
        assert response.status_code == 200
        chunks = list(response.parse())

    assert len(chunks) == 5
    payload = only_call(recorded)["payload"]
    assert payload["output"] == TEXT
    assert payload["raw_response"] is True


def test_streaming_response_unparsed_recorded(recorded: Capture, client: Any) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="gpt-stub", messages=MESSAGES
    ) as response:
        assert b"chatcmpl-stub1" in response.read()

    payload = only_call(recorded)["payload"]
    assert payload["raw_response"] is True
    assert "output" not in payload


def test_responses_create_and_tool_call(recorded: Capture, client: Any) -> None:
    response = client.responses.create(model="gpt-stub", input="Say hello")
    called = client.responses.create(
        model="gpt-stub", input="Weather?", tools=[RESPONSES_TOOL]
    )

    assert response.output_text == TEXT
    assert called.output[0].name == "get_weather"
    text_event, tool_event = llm_calls(recorded)
    assert text_event["tool"] == "openai.responses.create"
    assert text_event["payload"]["output"] == TEXT
    assert text_event["payload"]["input"] == {"model": "gpt-stub", "input": "Say hello"}
    assert text_event["payload"]["stop_reason"] == "completed"
    assert tool_event["payload"]["tool_calls"] == [
        {"id": "call_1", "name": "get_weather", "arguments": TOOL_ARGUMENTS}
    ]


def test_responses_stream_create(recorded: Capture, client: Any) -> None:
    stream = client.responses.create(model="gpt-stub", input="Say hello", stream=True)
    kinds = [event.type for event in stream]

    assert kinds[-1] == "response.completed"
    payload = only_call(recorded)["payload"]
    assert payload["output"] == TEXT
    assert payload["chunk_count"] == len(kinds)


def test_responses_stream_helper(recorded: Capture, client: Any) -> None:
    with client.responses.stream(model="gpt-stub", input="Say hello") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()

    assert "".join(deltas) == TEXT
    assert final.output_text == TEXT
    event = only_call(recorded)
    assert event["tool"] == "openai.responses.stream"
    assert event["payload"]["output"] == TEXT
    assert event["payload"]["usage"]["output_tokens"] == 5


def test_async_create_and_stream(recorded: Capture, async_client: Any) -> None:
    async def run() -> tuple[Any, list[Any]]:
        completion = await async_client.chat.completions.create(
            model="gpt-stub", messages=MESSAGES
        )
        stream = await async_client.chat.completions.create(
            model="gpt-stub", messages=MESSAGES, stream=True
        )
        async with stream:
            chunks = [chunk async for chunk in stream]
        return completion, chunks

    completion, chunks = asyncio.run(run())

    assert completion.choices[0].message.content == TEXT
    assert len(chunks) == 5
    plain, streamed = llm_calls(recorded)
    assert plain["payload"]["stream"] is False
    assert plain["payload"]["output"] == TEXT
    assert streamed["payload"]["stream"] is True
    assert streamed["payload"]["output"] == TEXT
    assert streamed["payload"]["closed_early"] is False


def test_async_stream_without_with(recorded: Capture, async_client: Any) -> None:
    async def run() -> Any:
        stream = await async_client.chat.completions.create(
            model="gpt-stub", messages=MESSAGES, stream=True
        )
        first = await stream.__anext__()
        await stream.aclose()
        return first

    first = asyncio.run(run())

    assert first.choices[0].delta.role == "assistant"
    payload = only_call(recorded)["payload"]
    assert payload["closed_early"] is True
    assert payload["chunk_count"] == 1


def test_async_stream_helpers(recorded: Capture, async_client: Any) -> None:
    async def run() -> tuple[str, str]:
        async with async_client.chat.completions.stream(
            model="gpt-stub", messages=MESSAGES
        ) as stream:
            completion = await stream.get_final_completion()
        async with async_client.responses.stream(
            model="gpt-stub", input="Say hello"
        ) as responses:
            response = await responses.get_final_response()
        return completion.choices[0].message.content, response.output_text

    assert asyncio.run(run()) == (TEXT, TEXT)
    chat, responses = llm_calls(recorded)
    assert chat["tool"] == "openai.chat.completions.stream"
    assert chat["payload"]["output"] == TEXT
    assert responses["tool"] == "openai.responses.stream"
    assert responses["payload"]["output"] == TEXT


def test_async_error_recorded(recorded: Capture, async_client: Any) -> None:
    async def run() -> None:
        await async_client.responses.create(model="missing-model", input="hi")

    with pytest.raises(openai.NotFoundError):
        asyncio.run(run())

    payload = only_call(recorded)["payload"]
    assert payload["status"] == "error"


def test_links_to_decorated_parent(recorded: Capture, client: Any) -> None:
    @rankigi.tool("answer")
    def answer() -> str:
        completion = client.chat.completions.create(model="gpt-stub", messages=MESSAGES)
        return str(completion.choices[0].message.content)

    with rankigi.run("chat-run"):
        answer()

    (parent,) = recorded.tool_calls("answer")
    (child,) = recorded.children(parent)
    assert child["action"] == "llm_call"
    assert child["payload"]["run_id"] == parent["payload"]["run_id"]


def test_subclass_calling_super_is_one_event(recorded: Capture, client: Any) -> None:
    completions_type = type(client.chat.completions)

    class Shouting(completions_type):  # type: ignore[misc, valid-type]
        def create(self, **kwargs: Any) -> Any:
            return super().create(**kwargs)

    shouting = Shouting(client)
    assert shouting.create(model="gpt-stub", messages=MESSAGES).id == "chatcmpl-stub1"

    only_call(recorded)


def test_default_client_records_into_ledger(client: Any) -> None:
    from rankigi._context import default_client, set_default_client
    from rankigi.ledger import Ledger

    previous = default_client.client
    made = rankigi.instrument(agent_id="ledger-agent", only=["openai"])
    try:
        completion = client.chat.completions.create(model="gpt-stub", messages=MESSAGES)
        assert completion.choices[0].message.content == TEXT
        assert made.flush(10)
    finally:
        rankigi.uninstrument()
        set_default_client(previous)
        made.close()

    with Ledger(".rankigi/ledger.db") as ledger:
        (stored,) = ledger.events("ledger-agent")
        verdict = ledger.verify("ledger-agent")
    assert stored["action_type"] == "llm_call"
    assert stored["tool_invoked"] == "openai.chat.completions.create"
    assert stored["execution_result"] == "success"
    assert verdict.valid


def test_not_recorded_after_uninstrument(recorded: Capture, client: Any) -> None:
    rankigi.uninstrument()
    client.chat.completions.create(model="gpt-stub", messages=MESSAGES)

    assert llm_calls(recorded) == []


def test_hash_only_client_sends_hashes(client: Any) -> None:
    from rankigi._context import default_client, set_default_client

    previous = default_client.client
    with rankigi.testing.capture(capture="hash_only") as events:
        rankigi.instrument(client=events.client, only=["openai"])
        try:
            client.chat.completions.create(
                model="gpt-stub", messages=MESSAGES, tools=[WEATHER_TOOL]
            )
        finally:
            rankigi.uninstrument()
            set_default_client(previous)
        payload = only_call(events)["payload"]

    for key in ("input", "output", "tool_calls"):
        assert key not in payload
        assert len(payload[f"{key}_hash"]) == 64
        assert payload[f"{key}_size"] > 0
    assert payload["model"] == "gpt-stub-0001"
