"""Exceptions raised by the ledger.

LedgerError
├── NotALedgerError       the file exists but is not a rankigi ledger
├── LedgerNotFoundError   the file is missing and creating it was not allowed
└── InvalidEventError     an event failed validation (also a ValueError)
"""

from __future__ import annotations

import os

__all__ = [
    "InvalidEventError",
    "LedgerError",
    "LedgerNotFoundError",
    "NotALedgerError",
]


class LedgerError(Exception):
    """Base class for ledger errors.

    Each message names the path or value at fault and how to fix it.
    """


class NotALedgerError(LedgerError):
    """Raised when a file exists but is not a rankigi ledger.

    ``path`` is the file and ``reason`` describes what was found instead.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(
            f"{self.path} is not a rankigi ledger: {reason}; "
            "pass the path of a ledger file, or a new path to create one"
        )


class LedgerNotFoundError(LedgerError):
    """Raised when opening with ``create=False`` and the file does not exist."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        super().__init__(
            f"ledger file not found: {self.path}; check the path, "
            "or open it with create=True to start a new ledger"
        )


class InvalidEventError(LedgerError, ValueError):
    """Raised when an event fails validation. Nothing of its batch is stored.

    ``index`` is the event's position in the batch and ``field`` the field at fault.
    """

    def __init__(self, index: int, field: str, problem: str) -> None:
        self.index = index
        self.field = field
        super().__init__(f"event {index}: {field} {problem}")
