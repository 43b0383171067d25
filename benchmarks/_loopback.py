"""Servers on 127.0.0.1 for the benchmarks: one responds with 200, one never responds.

``RespondingServer`` accepts any request the SDKs under test send (rankigi's
ingest, Sentry's envelopes, OTLP/HTTP spans) and responds with 200 at once, so
timings measure the client and not a real backend. ``HangingServer`` accepts
connections, reads and discards what arrives, and never sends a byte back.
"""

from __future__ import annotations

import json
import selectors
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["HangingServer", "RespondingServer"]

# rankigi sends batches only to a server whose /api/health announces them.
_HEALTH = json.dumps({"status": "ok", "capabilities": ["batch"]}).encode()
_ACCEPTED = b"{}"


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections open, as the SDKs' pools expect.
    protocol_version = "HTTP/1.1"
    # Headers and body leave in one write when the handler flushes, with
    # TCP_NODELAY set. Written apart, the body of a response on a kept-alive
    # connection can wait about 40 ms for the client's delayed ACK (Nagle's
    # algorithm), which made Sentry's flush take 43 ms per event here.
    wbufsize = 65536
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._respond(_HEALTH if self.path == "/api/health" else _ACCEPTED)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        server: Any = self.server
        with server.lock:
            server.requests += 1
        self._respond(_ACCEPTED)

    def _respond(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would flood the benchmark's output


class RespondingServer:
    """An HTTP server in a thread that responds to every request with 200."""

    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.lock = threading.Lock()  # type: ignore[attr-defined]
        self._server.requests = 0  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="responding-server", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> int:
        """The number of POST requests handled so far."""
        return int(self._server.requests)  # type: ignore[attr-defined]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class HangingServer:
    """A listening socket that accepts, reads and never responds."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self._listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="hanging-server", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"http://{host}:{port}"

    def _run(self) -> None:
        # Reading what arrives keeps the clients' sends from blocking on a
        # full socket buffer, so they wait where a hung server makes them:
        # for the response.
        while not self._stopped.is_set():
            for key, _ in self._selector.select(timeout=0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._listener:
                    self._accept()
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self._selector.unregister(sock)
                    sock.close()

    def _accept(self) -> None:
        try:
            connection, _ = self._listener.accept()
        except BlockingIOError:
            return
        connection.setblocking(False)
        self._selector.register(connection, selectors.EVENT_READ)

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        for key in list(self._selector.get_map().values()):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            sock.close()
        self._selector.close()
