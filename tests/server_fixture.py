"""A real ``rankigi serve`` app on loopback, for transport and server tests.

``LiveServer`` runs the server's app under Uvicorn in a thread, over a ledger
in the test's temporary directory. A thin ASGI layer in front of the app
records every request and response, and lets a test respond to a request with a
scripted fault (the ``Reply`` of the stub server) before the app sees it.
Everything else reaches the real app and the real ledger.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import anyio
import anyio.to_thread
import httpx
import pytest
import uvicorn

from rankigi import Rankigi
from rankigi.ledger import Ledger
from rankigi.server import ServerSettings, create_app
from rankigi.server._runner import bind, url_of
from tests.stub_server import Reply, Request

__all__ = ["live_server", "make_server_client", "start_server"]

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "rk_test_key"
OTHER_API_KEY = "rk_other_key"

Script = Callable[[Request], Optional[Reply]]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]


@dataclass
class Exchange:
    """One request the server received and the response it sent."""

    request: Request
    status: int = 0
    response: Any = None


class LiveServer:
    """The real server app on 127.0.0.1, with recording and scripted faults."""

    def __init__(
        self,
        ledger_path: Path,
        *,
        api_keys: tuple[str, ...] = (API_KEY, OTHER_API_KEY),
        port: int = 0,
        **settings: Any,
    ) -> None:
        self.settings = ServerSettings(str(ledger_path), api_keys, **settings)
        self.api_key = api_keys[0]
        self.ledger_path = Path(ledger_path)
        self.script: Optional[Script] = None
        self.exchanges: list[Exchange] = []
        self.lock = threading.Lock()
        self._socket = bind("127.0.0.1", port)
        self.url = url_of(self._socket)
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(
            self._app(create_app(self.settings)),
            lifespan="on",
            ws="none",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name=f"live-server-{self.port}",
            daemon=True,
        )

    def start(self) -> LiveServer:
        self._thread.start()
        if not self.wait_for(lambda: self._server.started, timeout=10):
            raise RuntimeError("the live server did not start within 10 s")
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    # -- what a test reads -----------------------------------------------

    def ingest_requests(self) -> list[Request]:
        """Return every ingest request received, scripted ones included."""
        with self.lock:
            return [
                e.request for e in self.exchanges if e.request.path == "/api/ingest"
            ]

    def ingest_exchanges(self) -> list[Exchange]:
        with self.lock:
            return [e for e in self.exchanges if e.request.path == "/api/ingest"]

    def clear(self) -> None:
        """Forget the requests recorded so far."""
        with self.lock:
            self.exchanges.clear()

    def duplicates(self) -> int:
        """Return how many events the server reported as already stored."""
        count = 0
        for exchange in self.ingest_exchanges():
            body = exchange.response
            if not isinstance(body, dict):
                continue
            results = body.get("results", [body])
            count += sum(1 for result in results if result.get("duplicate"))
        return count

    def stored(self, agent_id: Optional[str] = None) -> dict[str, dict[str, Any]]:
        """Return the ledger's records by event id, in the order stored."""
        if not self.ledger_path.exists():
            return {}
        with Ledger(self.ledger_path, create=False) as ledger:
            records = ledger.events(agent_id)
        return {record["event_id"]: record for record in records}

    def post(self, path: str, body: Any, api_key: Optional[str] = None) -> Any:
        """Send ``body`` as JSON and return the httpx response."""
        headers = {"Authorization": f"Bearer {api_key or self.api_key}"}
        return httpx.post(self.url + path, json=body, headers=headers, timeout=10)

    def get(
        self,
        path: str,
        api_key: Optional[str] = None,
        params: Optional[dict[str, Any]] = None,
    ) -> Any:
        """Send a GET with the key and return the httpx response."""
        headers = {"Authorization": f"Bearer {api_key or self.api_key}"}
        return httpx.get(self.url + path, headers=headers, params=params, timeout=10)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()

    # -- the recording layer ---------------------------------------------

    def _app(self, app: Any) -> Any:
        async def recording(scope: Message, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            raw = await _read_all(receive)
            exchange = Exchange(_request(scope, raw))
            with self.lock:
                self.exchanges.append(exchange)
            script = self.script
            reply = None
            if script is not None:
                reply = await anyio.to_thread.run_sync(script, exchange.request)
            if reply is not None:
                await _send_reply(reply, exchange, send)
                return
            await app(scope, _replay(raw, receive), _recorder(exchange, send))

        return recording


async def _read_all(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _request(scope: Message, raw: bytes) -> Request:
    headers = {
        "-".join(part.capitalize() for part in name.decode().split("-")): value.decode()
        for name, value in scope["headers"]
    }
    try:
        body = json.loads(raw) if raw else None
    except (ValueError, RecursionError):
        body = raw
    return Request(scope["method"], scope["path"], headers, body, time.monotonic())


def _replay(raw: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return await receive()  # type: ignore[no-any-return]

    return replay


def _recorder(exchange: Exchange, send: Send) -> Send:
    chunks: list[bytes] = []

    async def record(message: Message) -> None:
        if message["type"] == "http.response.start":
            exchange.status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                try:
                    exchange.response = json.loads(b"".join(chunks))
                except ValueError:
                    exchange.response = b"".join(chunks)
        await send(message)

    return record


async def _send_reply(reply: Reply, exchange: Exchange, send: Send) -> None:
    if reply.delay:
        await anyio.sleep(reply.delay)
    data = json.dumps(reply.body).encode() if reply.body is not None else b""
    headers = [(b"content-type", b"application/json")]
    headers += [(k.lower().encode(), v.encode()) for k, v in reply.headers.items()]
    exchange.status = reply.status
    exchange.response = reply.body
    await send(
        {"type": "http.response.start", "status": reply.status, "headers": headers}
    )
    await send({"type": "http.response.body", "body": data})


class ServeProcess:
    """``rankigi serve`` in a subprocess on a free loopback port.

    ``args`` are extra command-line options. The address, the ledger path and
    a generated key (when ``generated_key`` is true) are read from its output.
    """

    def __init__(
        self,
        ledger_path: Path,
        *args: str,
        generated_key: bool = False,
        env: Optional[dict[str, str]] = None,
    ) -> None:
        environ = dict(os.environ if env is None else env)
        environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [environ.get("PYTHONPATH"), str(ROOT)])
        )
        command = [sys.executable, "-m", "rankigi", "serve", "--port", "0"]
        command += ["--ledger", str(ledger_path), *args]

        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environ,
        )
        # Threads drain both pipes, so a chatty server never blocks on them.
        self._out: queue.Queue[str] = queue.Queue()
        self._err: list[str] = []
        self._readers = [
            threading.Thread(
                target=self._read, args=(self.process.stdout, self._out.put)
            ),
            threading.Thread(
                target=self._read, args=(self.process.stderr, self._err.append)
            ),
        ]
        for reader in self._readers:
            reader.daemon = True
            reader.start()

        self.lines = [self._line() for _ in range(3 if generated_key else 2)]
        self.url = self.lines[0].rsplit(" ", 1)[-1]
        self.generated_key = self.lines[2].rsplit(" ", 1)[-1] if generated_key else None

    def stop(
        self, signum: int = signal.SIGTERM, timeout: float = 30
    ) -> tuple[int, str, str]:
        """Send ``signum``, wait, and return the status and the rest of the output."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        for reader in self._readers:
            reader.join(timeout=5)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()
        out = []
        while not self._out.empty():
            out.append(self._out.get())
        return self.process.returncode, "".join(out), "".join(self._err)

    @staticmethod
    def _read(pipe: Any, sink: Callable[[str], Any]) -> None:
        for line in pipe:
            sink(line)

    def _line(self, timeout: float = 30) -> str:
        try:
            return self._out.get(timeout=timeout).rstrip("\n")
        except queue.Empty:
            _, _, err = self.stop(signal.SIGKILL)
            raise RuntimeError(f"rankigi serve did not start: {err}") from None


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start live servers with the given settings; stop them after the test."""
    servers: list[LiveServer] = []

    def start(**settings: Any) -> LiveServer:
        settings.setdefault("ledger_path", tmp_path / f"server-{len(servers)}.db")
        server = LiveServer(**settings).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def live_server(start_server: Callable[..., LiveServer]) -> LiveServer:
    """A live server with the default settings and keys."""
    return start_server()


@pytest.fixture
def make_server_client(
    live_server: LiveServer, errors: Any
) -> Iterator[Callable[..., Rankigi]]:
    """Build clients that send to ``live_server``; close them after the test."""
    clients: list[Rankigi] = []

    def make(**options: Any) -> Rankigi:
        options.setdefault("api_key", live_server.api_key)
        options.setdefault("agent_id", "agent-1")
        options.setdefault("base_url", live_server.url)
        options.setdefault("retry_backoff_ms", 10)
        client = Rankigi(on_error=errors.append, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close(timeout=2)
