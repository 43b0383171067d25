"""``rankigi serve``: a local server for the RANKIGI ingest protocol.

It stores events in the same SQLite ledger as the embedded default, keeps the
agents of each API key apart, and rejects bad input with the protocol's error
body. The server needs the ``server`` extra (Starlette and Uvicorn); importing
this package does not import them, ``create_app`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rankigi.server._settings import ServerSettings

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["ServerSettings", "create_app"]


def create_app(settings: ServerSettings) -> Starlette:
    """Return the server's ASGI app over an open ledger.

    Raises:
        ImportError: the ``server`` extra is not installed.
        LedgerError: the ledger cannot be created or opened.
    """
    from rankigi.server._app import create_app as build

    return build(settings)
