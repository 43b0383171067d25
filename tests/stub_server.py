"""A scriptable ingest server on loopback, for transport tests.

It speaks enough of the ingest protocol to be a real peer: health with
capabilities, single and batch ingest, de-duplication by event id. Tests set
``script`` to a function that can answer a request with a fault instead.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float


Script = Callable[[Request], Optional[Reply]]


class StubServer:
    """Run an ingest server in a thread on 127.0.0.1."""

    def __init__(self, capabilities: tuple[str, ...] = ("batch", "idempotency")):
        self.capabilities = list(capabilities)
        self.script: Optional[Script] = None
        self.requests: list[Request] = []
        self.events: dict[str, dict[str, Any]] = {}  # event_id -> event
        self.duplicates = 0
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def ingest_requests(self) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.path == "/api/ingest"]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()

    def _answer(self, request: Request) -> Reply:
        with self.lock:
            self.requests.append(request)
        if self.script is not None:
            reply = self.script(request)
            if reply is not None:
                return reply
        if request.path == "/api/health":
            return Reply(
                200, {"ok": True, "version": "stub", "capabilities": self.capabilities}
            )
        if request.path != "/api/ingest" or request.method != "POST":
            return Reply(
                404,
                {"ok": False, "error": {"code": "NOT_FOUND", "message": "no route"}},
            )
        body = request.body
        events = (
            body["events"] if isinstance(body, dict) and "events" in body else [body]
        )
        results = []
        with self.lock:
            for event in events:
                duplicate = event["event_id"] in self.events
                if duplicate:
                    self.duplicates += 1
                else:
                    self.events[event["event_id"]] = event
                results.append(
                    {"ok": True, "event_id": event["event_id"], "duplicate": duplicate}
                )
        if "events" in (body or {}):
            return Reply(200, {"ok": True, "results": results})
        return Reply(200, results[0])

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                request = Request(
                    self.command, self.path, dict(self.headers), body, time.monotonic()
                )
                reply = stub._answer(request)
                if reply.delay:
                    time.sleep(reply.delay)
                data = (
                    json.dumps(reply.body).encode() if reply.body is not None else b""
                )
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _serve
            do_POST = _serve

        return Handler
