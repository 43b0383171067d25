"""rankigi: tamper-evident, hash-chained audit trails for AI agents."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from rankigi._client import Rankigi
from rankigi._config import ClientOptions
from rankigi._context import get_client, init
from rankigi._exceptions import RankigiError
from rankigi._version import __version__
from rankigi.decorators import action, run, tool, use
from rankigi.instrument import instrument, uninstrument

__all__ = [
    "AsyncRankigi",
    "ClientOptions",
    "Rankigi",
    "RankigiError",
    "__version__",
    "action",
    "get_client",
    "init",
    "instrument",
    "run",
    "tool",
    "uninstrument",
    "use",
]

if TYPE_CHECKING:
    from rankigi._async_client import AsyncRankigi


def __getattr__(name: str) -> Any:
    # AsyncRankigi pulls in asyncio, a third of the package's import time, so
    # it loads on first use.
    if name == "AsyncRankigi":
        from rankigi._async_client import AsyncRankigi

        return AsyncRankigi
    raise AttributeError(f"module 'rankigi' has no attribute {name!r}")


# Silent unless the application configures logging.
logging.getLogger("rankigi").addHandler(logging.NullHandler())
