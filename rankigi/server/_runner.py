"""Running the app under Uvicorn on a socket bound here, until a signal."""

from __future__ import annotations

import ipaddress
import logging
import signal
import socket
from types import FrameType
from typing import Optional, TextIO

from rankigi.server._settings import ServerSettings

__all__ = ["ServeError", "bind", "is_loopback", "run_server", "url_of"]

logger = logging.getLogger("rankigi.server")

# Longer than the SDK's default flush interval (5 s), so that a client's
# pooled connection is still open when its next batch is due.
_KEEP_ALIVE_S = 65
# How long a shutdown waits for requests in progress before cancelling them.
# A cancelled request was never acknowledged, so the client sends it again.
_GRACEFUL_SHUTDOWN_S = 30
# Uvicorn's default backlog of pending connections.
_BACKLOG = 2048


class ServeError(Exception):
    """An expected failure to start, such as an address already in use."""


class _Stop(Exception):
    """Raised by the SIGTERM handler once Uvicorn has finished its shutdown."""


def run_server(
    settings: ServerSettings,
    host: str,
    port: int,
    *,
    out: TextIO,
    generated_key: Optional[str] = None,
    access_log: bool = False,
    log_level: str = "info",
) -> None:
    """Serve ``settings`` on ``host``:``port`` until SIGINT or SIGTERM.

    Prints the address, the ledger path and a generated key (only when one
    was generated) to ``out`` once the socket listens.

    Raises:
        ServeError: the address cannot be bound.
        LedgerError: the ledger cannot be opened.
    """
    import uvicorn

    from rankigi.server._app import create_app

    app = create_app(settings)
    try:
        listener = bind(host, port)
    except BaseException:
        # The app's shutdown never runs without a server, so close its
        # ledger here.
        app.state.api.service.close()
        raise
    print(f"rankigi server listening on {url_of(listener)}", file=out)
    print(f"ledger: {app.state.api.service.path}", file=out)
    if generated_key is not None:
        print(f"API key (generated, shown only this once): {generated_key}", file=out)
    out.flush()
    config = uvicorn.Config(
        app,
        lifespan="on",
        ws="none",
        access_log=access_log,
        log_level=log_level,
        timeout_keep_alive=_KEEP_ALIVE_S,
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S,
    )
    server = uvicorn.Server(config)
    # Uvicorn handles SIGINT and SIGTERM itself: it stops accepting, finishes
    # the requests in progress and runs the app's shutdown, which closes the
    # ledger. Afterwards it raises the signal again for the previous handler,
    # which these handlers turn into a normal return.
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        server.run(sockets=[listener])
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        listener.close()


def bind(host: str, port: int) -> socket.socket:
    """Return a listening TCP socket on ``host``:``port`` (0 picks a free port).

    Raises:
        ServeError: the host is unknown or the address is taken.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ServeError(
            f"cannot resolve --host {host!r}: {exc.strerror}; pass an IP address "
            "such as 127.0.0.1"
        ) from exc
    family, kind, proto, _, address = infos[0]
    # The socket is made with the protocol number (IPPROTO_TCP), not 0 as
    # socket.create_server makes it: asyncio only sets TCP_NODELAY on
    # connections of such a socket. Without it, Nagle's algorithm delays each
    # response body until the client acknowledges the headers, about 40 ms
    # on Linux.
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(_BACKLOG)
    except OSError as exc:
        listener.close()
        raise ServeError(
            f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port, "
            "or stop the program that uses it"
        ) from exc
    return listener


def url_of(listener: socket.socket) -> str:
    """Return the http:// URL of a bound socket."""
    host, port = listener.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def is_loopback(host: str) -> bool:
    """Return whether ``host`` names only this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _raise_stop(signum: int, frame: Optional[FrameType]) -> None:
    raise _Stop(signum)
