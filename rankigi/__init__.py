"""rankigi: tamper-evident, hash-chained audit trails for AI agents."""

from __future__ import annotations

import logging

from rankigi._client import Rankigi
from rankigi._config import ClientOptions
from rankigi._exceptions import RankigiError
from rankigi._version import __version__

__all__ = [
    "ClientOptions",
    "Rankigi",
    "RankigiError",
    "__version__",
]

# Silent unless the application configures logging.
logging.getLogger("rankigi").addHandler(logging.NullHandler())
