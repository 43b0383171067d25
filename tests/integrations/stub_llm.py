"""A loopback HTTP server that responds like the OpenAI and Anthropic APIs.

It serves ``POST /v1/chat/completions``, ``POST /v1/responses`` and
``POST /v1/messages``, as JSON or, for ``"stream": true``, as server-sent
events in each API's shape. The response depends on the request:

- a request with ``tools`` gets a call of the first tool with the arguments
  ``{"city": "Paris"}`` (Anthropic also writes ``"Let me check."`` first);
  any other request gets the text ``"Hello from the stub."``;
- the model ``"missing-model"`` gets a 404 error in the API's error shape;
- the model ``"broken-stream"`` streams one item, then an error event.

The response names the requested model with ``"-0001"`` appended, so tests
can tell the two apart. ``requests`` keeps each request's path and body.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TEXT = "Hello from the stub."
TEXT_PIECES = ("Hello", " from", " the stub.")
TOOL_ARGUMENTS = {"city": "Paris"}
TOOL_PREFACE = "Let me check."
USAGE_IN, USAGE_OUT = 12, 5

Event = tuple[str, Any]  # (SSE event name or "", data)


class StubLLM:
    """Run the stub in a thread on 127.0.0.1 at a free port."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> StubLLM:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def paths(self) -> list[str]:
        with self.lock:
            return [path for path, _ in self.requests]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with stub.lock:
                    stub.requests.append((self.path, body))
                answer = _ROUTES.get(self.path)
                if answer is None:
                    self._send_json(404, {"error": {"message": "no such path"}})
                    return
                status, reply = answer(body)
                if isinstance(reply, dict):
                    self._send_json(status, reply)
                else:
                    self._send_events(reply)

            def _send_json(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _send_events(self, events: Iterator[Event]) -> None:
                # HTTP/1.0 without a length: the body ends when the
                # connection closes, which is how the stream ends.
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                try:
                    for name, data in events:
                        text = data if isinstance(data, str) else json.dumps(data)
                        prefix = f"event: {name}\n" if name else ""
                        self.wfile.write(f"{prefix}data: {text}\n\n".encode())
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client closed the stream early, as tests do

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        return Handler


def _reply_model(body: dict[str, Any]) -> str:
    return f"{body.get('model')}-0001"


def _first_tool(body: dict[str, Any]) -> Any:
    tools = body.get("tools") or []
    if not tools:
        return None
    tool = tools[0]
    return (tool.get("function") or tool).get("name")


# -- OpenAI chat completions -------------------------------------------


def _openai_error(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    message = f"The model {body.get('model')} does not exist"
    error = {"message": message, "type": "invalid_request_error", "code": "404"}
    return 404, {"error": error}


def _chat(body: dict[str, Any]) -> tuple[int, Any]:
    if body.get("model") == "missing-model":
        return _openai_error(body)
    if body.get("stream"):
        return 200, _chat_events(body)
    tool = _first_tool(body)
    message: dict[str, Any] = {"role": "assistant", "content": TEXT}
    reason = "stop"
    if tool is not None:
        arguments = json.dumps(TOOL_ARGUMENTS)
        function = {"name": tool, "arguments": arguments}
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_1", "type": "function", "function": function}],
        }
        reason = "tool_calls"
    return 200, {
        "id": "chatcmpl-stub1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": _reply_model(body),
        "choices": [
            {"index": 0, "message": message, "finish_reason": reason, "logprobs": None}
        ],
        "usage": {
            "prompt_tokens": USAGE_IN,
            "completion_tokens": USAGE_OUT,
            "total_tokens": USAGE_IN + USAGE_OUT,
        },
    }


def _chunk(body: dict[str, Any], delta: Any, reason: Any = None) -> Event:
    choice = {"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}
    return "", {
        "id": "chatcmpl-stub1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": _reply_model(body),
        "choices": [choice],
    }


def _chat_events(body: dict[str, Any]) -> Iterator[Event]:
    yield _chunk(body, {"role": "assistant", "content": ""})
    if body.get("model") == "broken-stream":
        yield "", {"error": {"message": "the stream broke", "type": "server_error"}}
        return
    tool = _first_tool(body)
    if tool is None:
        for piece in TEXT_PIECES:
            yield _chunk(body, {"content": piece})
        yield _chunk(body, {}, "stop")
    else:
        start = {"name": tool, "arguments": ""}
        yield _chunk(
            body,
            {
                "tool_calls": [
                    {"index": 0, "id": "call_1", "type": "function", "function": start}
                ]
            },
        )
        for piece in ('{"city": ', '"Paris"}'):
            yield _chunk(
                body, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
            )
        yield _chunk(body, {}, "tool_calls")
    if (body.get("stream_options") or {}).get("include_usage"):
        _, last = _chunk(body, {})
        last["choices"] = []
        last["usage"] = {
            "prompt_tokens": USAGE_IN,
            "completion_tokens": USAGE_OUT,
            "total_tokens": USAGE_IN + USAGE_OUT,
        }
        yield "", last
    yield "", "[DONE]"


# -- OpenAI responses ---------------------------------------------------


def _response_object(body: dict[str, Any], status: str, output: list[Any]) -> Any:
    return {
        "id": "resp_stub1",
        "object": "response",
        "created_at": 1_700_000_000,
        "model": _reply_model(body),
        "status": status,
        "output": output,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "metadata": {},
        "parallel_tool_calls": True,
        "temperature": 1.0,
        "top_p": 1.0,
        "tool_choice": "auto",
        "tools": body.get("tools") or [],
        "text": {"format": {"type": "text"}},
        "usage": {
            "input_tokens": USAGE_IN,
            "output_tokens": USAGE_OUT,
            "total_tokens": USAGE_IN + USAGE_OUT,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    }


def _message_item(text: str, status: str = "completed") -> Any:
    content = [{"type": "output_text", "text": text, "annotations": []}]
    return {
        "type": "message",
        "id": "msg_1",
        "status": status,
        "role": "assistant",
        "content": content if text else [],
    }


def _function_item(tool: str) -> Any:
    return {
        "type": "function_call",
        "id": "fc_1",
        "call_id": "call_1",
        "name": tool,
        "arguments": json.dumps(TOOL_ARGUMENTS),
        "status": "completed",
    }


def _responses(body: dict[str, Any]) -> tuple[int, Any]:
    if body.get("model") == "missing-model":
        return _openai_error(body)
    if body.get("stream"):
        return 200, _response_events(body)
    tool = _first_tool(body)
    item = _message_item(TEXT) if tool is None else _function_item(tool)
    return 200, _response_object(body, "completed", [item])


def _response_events(body: dict[str, Any]) -> Iterator[Event]:
    counter = iter(range(1000))

    def event(kind: str, **fields: Any) -> Event:
        return kind, {"type": kind, "sequence_number": next(counter), **fields}

    yield event("response.created", response=_response_object(body, "in_progress", []))
    if body.get("model") == "broken-stream":
        yield event(
            "error", code="server_error", message="the stream broke", param=None
        )
        return
    tool = _first_tool(body)
    if tool is not None:
        item = _function_item(tool)
        yield event("response.output_item.added", output_index=0, item=item)
        yield event("response.output_item.done", output_index=0, item=item)
        yield event(
            "response.completed", response=_response_object(body, "completed", [item])
        )
        return
    where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    part = {"type": "output_text", "text": "", "annotations": []}
    yield event(
        "response.output_item.added",
        output_index=0,
        item=_message_item("", "in_progress"),
    )
    yield event("response.content_part.added", part=part, **where)
    for piece in TEXT_PIECES:
        yield event("response.output_text.delta", delta=piece, logprobs=[], **where)
    yield event("response.output_text.done", text=TEXT, logprobs=[], **where)
    yield event("response.content_part.done", part={**part, "text": TEXT}, **where)
    yield event("response.output_item.done", output_index=0, item=_message_item(TEXT))
    final = _response_object(body, "completed", [_message_item(TEXT)])
    yield event("response.completed", response=final)


# -- Anthropic messages -------------------------------------------------


def _messages(body: dict[str, Any]) -> tuple[int, Any]:
    if body.get("model") == "missing-model":
        error = {"type": "not_found_error", "message": f"model: {body.get('model')}"}
        return 404, {"type": "error", "error": error}
    if body.get("stream"):
        return 200, _message_events(body)
    tool = _first_tool(body)
    content: list[Any] = [{"type": "text", "text": TEXT}]
    reason = "end_turn"
    if tool is not None:
        tool_use = {
            "type": "tool_use",
            "id": "toolu_1",
            "name": tool,
            "input": TOOL_ARGUMENTS,
        }
        content = [{"type": "text", "text": TOOL_PREFACE}, tool_use]
        reason = "tool_use"
    return 200, {
        "id": "msg_stub1",
        "type": "message",
        "role": "assistant",
        "model": _reply_model(body),
        "content": content,
        "stop_reason": reason,
        "stop_sequence": None,
        "usage": {"input_tokens": USAGE_IN, "output_tokens": USAGE_OUT},
    }


def _message_events(body: dict[str, Any]) -> Iterator[Event]:
    message: dict[str, Any] = {
        "id": "msg_stub1",
        "type": "message",
        "role": "assistant",
        "model": _reply_model(body),
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": USAGE_IN, "output_tokens": 1},
    }
    yield "message_start", {"type": "message_start", "message": message}
    if body.get("model") == "broken-stream":
        error = {"type": "overloaded_error", "message": "Overloaded"}
        yield "error", {"type": "error", "error": error}
        return

    tool = _first_tool(body)
    text = TEXT_PIECES if tool is None else (TOOL_PREFACE,)
    yield from _block(0, {"type": "text", "text": ""}, "text_delta", "text", text)
    yield "ping", {"type": "ping"}
    reason = "end_turn"
    if tool is not None:
        reason = "tool_use"
        start = {"type": "tool_use", "id": "toolu_1", "name": tool, "input": {}}
        pieces = ('{"city": ', '"Paris"}')
        yield from _block(1, start, "input_json_delta", "partial_json", pieces)

    end: dict[str, Any] = {"stop_reason": reason, "stop_sequence": None}
    usage = {"output_tokens": USAGE_OUT}
    yield "message_delta", {"type": "message_delta", "delta": end, "usage": usage}
    yield "message_stop", {"type": "message_stop"}


def _block(
    index: int, block: Any, delta_type: str, key: str, pieces: tuple[str, ...]
) -> Iterator[Event]:
    """Stream one content block: its start, one delta per piece, its stop."""
    start = {"type": "content_block_start", "index": index, "content_block": block}
    yield "content_block_start", start
    for piece in pieces:
        delta = {"type": delta_type, key: piece}
        yield (
            "content_block_delta",
            {"type": "content_block_delta", "index": index, "delta": delta},
        )
    yield "content_block_stop", {"type": "content_block_stop", "index": index}


_ROUTES = {
    "/v1/chat/completions": _chat,
    "/v1/responses": _responses,
    "/v1/messages": _messages,
}
