"""A loopback HTTP proxy that injects network and server faults on request.

``FaultProxy`` reads HTTP/1.1 one request at a time, so the mode in force
when a request arrives decides its fate:

- ``pass`` forwards it;
- ``refuse`` stops listening and resets the open connections;
- ``reset`` resets the connection after reading the request;
- ``hang`` never responds;
- ``status`` sends a canned response, such as a 429 with ``Retry-After``;
- ``cut`` forwards the request, so the server stores it, then closes the
  connection after the first bytes of the response.

``restart`` drops everything and listens on the same port after a delay.
Messages need ``Content-Length``, as httpx requests and the server's
responses have; chunked bodies are not parsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import urlsplit

__all__ = ["MODES", "FaultProxy", "Seen"]

MODES = ("pass", "refuse", "reset", "hang", "status", "cut")
CUT_AFTER_BYTES = 12  # "HTTP/1.1 200" and nothing more


@dataclass
class Seen:
    """One request the proxy read, and what it did with it."""

    mode: str
    method: str
    path: str
    event_ids: list[str]
    duplicates: int = 0  # events the server's response marked as duplicates


@dataclass
class _Fault:
    mode: str = "pass"
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    times: Optional[int] = None  # requests left before "pass"; None: all


class FaultProxy:
    """Proxy requests to ``upstream`` (an http URL) with switchable faults."""

    def __init__(self, upstream: str) -> None:
        self._upstream = ("127.0.0.1", 0)
        self.set_upstream(upstream)
        self.port = 0
        self._fault = _Fault()
        self._lock = threading.Lock()
        self._seen: list[Seen] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fault-proxy", daemon=True
        )
        self._server: Optional[asyncio.AbstractServer] = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def set_mode(
        self,
        mode: str,
        *,
        status: int = 503,
        headers: Optional[dict[str, str]] = None,
        times: Optional[int] = None,
    ) -> None:
        """Apply ``mode`` to the next ``times`` requests (None: until changed).

        ``refuse`` lasts until the next call, because refused connections
        carry no request to count.
        """
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} is unknown; use one of {MODES}")
        with self._lock:
            self._fault = _Fault(mode, status, dict(headers or {}), times)
        self._call(self._go_down() if mode == "refuse" else self._listen())

    def set_upstream(self, upstream: str) -> None:
        """Forward later requests to ``upstream``, such as a restarted server."""
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)

    def restart(self, down_for: float) -> None:
        """Drop every connection now and listen again after ``down_for`` s."""
        self._call(self._go_down())
        self._loop.call_soon_threadsafe(self._loop.call_later, down_for, self._relisten)

    def seen(self, path: Optional[str] = "/api/ingest") -> list[Seen]:
        """Return the requests read so far for ``path`` (None: all), oldest first."""
        with self._lock:
            return [s for s in self._seen if path is None or s.path == path]

    # -- the event loop's side ------------------------------------------------

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    def _relisten(self) -> None:
        self._loop.create_task(self._listen())

    async def _listen(self) -> None:
        if self._server is None:
            # Binding the same port again works because asyncio sets
            # SO_REUSEADDR, which ignores the closed connections' TIME_WAIT.
            self._server = await asyncio.start_server(
                self._serve, "127.0.0.1", self.port
            )
            self.port = self._server.sockets[0].getsockname()[1]

    async def _go_down(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            _reset(writer)

    async def _shutdown(self) -> None:
        await self._go_down()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _take_fault(self) -> _Fault:
        with self._lock:
            fault = self._fault
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._fault = _Fault()
            return fault

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._writers.add(writer)
        try:
            keep_open = True
            while keep_open:
                request = await _read_message(reader)
                if request is None:
                    break
                keep_open = await self._handle(request, reader, writer)
        except (OSError, ValueError, asyncio.IncompleteReadError):
            pass  # the client or the proxy dropped the connection
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _handle(
        self,
        request: tuple[bytes, bytes],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Apply the current fault to one request; return whether to go on."""
        fault = self._take_fault()
        seen = _describe(fault.mode, *request)
        with self._lock:
            self._seen.append(seen)
        if fault.mode in ("refuse", "reset"):
            _reset(writer)
            return False
        if fault.mode == "hang":
            await reader.read()  # returns when the client gives up
            return False
        if fault.mode == "status":
            head, body = _canned(fault.status, fault.headers)
        else:
            head, body = await self._forward(request[0] + request[1])
            seen.duplicates = _count_duplicates(body)
        if fault.mode == "cut":
            head, body = head[:CUT_AFTER_BYTES], b""
        writer.write(head + body)
        await writer.drain()
        return fault.mode != "cut"

    async def _forward(self, raw: bytes) -> tuple[bytes, bytes]:
        # A connection per request: the server may close idle ones at any time.
        try:
            reader, writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            return _canned(502, {})
        try:
            writer.write(raw)
            await writer.drain()
            response = await _read_message(reader)
        finally:
            writer.close()
        return _canned(502, {}) if response is None else response


async def _read_message(reader: asyncio.StreamReader) -> Optional[tuple[bytes, bytes]]:
    """Read one HTTP message as (head, body); None at a clean end of stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    headers = head.lower()
    if b"transfer-encoding: chunked" in headers:
        raise ValueError("chunked bodies are not supported by the fault proxy")
    length = 0
    for line in headers.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head, await reader.readexactly(length)


def _items(body: bytes, key: str) -> list[Any]:
    """Return ``body[key]`` (a batch) or ``[body]`` (one object) from JSON."""
    try:
        data = json.loads(body) if body else None
    except ValueError:
        return []
    if not isinstance(data, dict):
        return []
    return [item for item in data.get(key, [data]) if isinstance(item, dict)]


def _describe(mode: str, head: bytes, body: bytes) -> Seen:
    method, path = head.split(b" ", 2)[:2]
    event_ids = [e["event_id"] for e in _items(body, "events") if "event_id" in e]
    return Seen(mode, method.decode(), path.decode(), event_ids)


def _count_duplicates(body: bytes) -> int:
    return sum(1 for result in _items(body, "results") if result.get("duplicate"))


def _canned(status: int, headers: dict[str, str]) -> tuple[bytes, bytes]:
    error = {"code": "FAULT", "message": f"injected {status}"}
    body = json.dumps({"ok": False, "error": error}).encode()
    lines = [f"HTTP/1.1 {status} Injected Fault", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), body


def _reset(writer: asyncio.StreamWriter) -> None:
    # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
    sock = writer.get_extra_info("socket")
    if sock is not None:
        # The socket may be closed already, when the peer went first.
        with contextlib.suppress(OSError):
            linger = struct.pack("ii", 1, 0)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    writer.transport.abort()
