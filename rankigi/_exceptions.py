"""The one exception type of the SDK and its stable error codes.

``RankigiError`` carries a ``code`` that callers can branch on. The tracking
path never raises it: transport failures reach ``client.on_error`` instead.
Handshake calls, which need an answer, raise it.
"""

from __future__ import annotations

from typing import Optional

__all__ = [
    "AUTH_FAILED",
    "BUFFER_FULL",
    "CAPTURE_FAILED",
    "CLIENT_CLOSED",
    "CONFLICT",
    "EXPIRED",
    "INVALID_REQUEST",
    "LEDGER_ERROR",
    "NETWORK_ERROR",
    "NOT_FOUND",
    "PAYLOAD_TOO_LARGE",
    "RATE_LIMITED",
    "SERVER_ERROR",
    "SHUTDOWN",
    "RankigiError",
]

AUTH_FAILED = "AUTH_FAILED"
RATE_LIMITED = "RATE_LIMITED"
NETWORK_ERROR = "NETWORK_ERROR"
SERVER_ERROR = "SERVER_ERROR"
INVALID_REQUEST = "INVALID_REQUEST"
PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
BUFFER_FULL = "BUFFER_FULL"
CLIENT_CLOSED = "CLIENT_CLOSED"
SHUTDOWN = "SHUTDOWN"
CAPTURE_FAILED = "CAPTURE_FAILED"
LEDGER_ERROR = "LEDGER_ERROR"
NOT_FOUND = "NOT_FOUND"
CONFLICT = "CONFLICT"
EXPIRED = "EXPIRED"


class RankigiError(Exception):
    """An SDK failure with a stable ``code``, a ``message`` and an HTTP status.

    ``event_count`` is the number of events the failure dropped (0 when it
    dropped none, as for a failed handshake call).
    """

    def __init__(
        self,
        code: str,
        message: str,
        status_code: Optional[int] = None,
        *,
        event_count: int = 0,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status_code = status_code
        self.event_count = event_count

    def __str__(self) -> str:
        status = f" (HTTP {self.status_code})" if self.status_code else ""
        return f"{self.code}{status}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"RankigiError(code={self.code!r}, message={self.message!r}, "
            f"status_code={self.status_code!r}, event_count={self.event_count!r})"
        )
