"""Options of the local server, validated once when it starts."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Optional

__all__ = [
    "DEFAULT_MAX_BATCH_EVENTS",
    "DEFAULT_MAX_BODY_BYTES",
    "ServerSettings",
]

# 4 MiB fits a default SDK batch (100 events) even when each event carries
# tens of kilobytes of captured input and output. The SDK splits a batch that
# draws a 413, so a lower limit costs requests, never events.
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
# The SDK's largest batch_size.
DEFAULT_MAX_BATCH_EVENTS = 10_000


@dataclass(frozen=True)
class ServerSettings:
    """What the server stores where, which keys it accepts, and its limits.

    Args:
        ledger_path: the SQLite ledger file; created when missing.
        api_keys: the accepted Bearer keys. They stay out of the repr.
        max_body_bytes: largest request body; a larger one gets a 413.
        max_batch_events: maximum number of events in one batch; more get a 413.
        rate_limit: requests per second allowed to each key, or None for no
            limit. A key over its limit gets a 429 with ``Retry-After``.
        rate_burst: requests a key may send at once before ``rate_limit``
            applies; defaults to ``rate_limit`` rounded up.

    Raises:
        ValueError: an option is invalid; the message names it.
    """

    ledger_path: str
    api_keys: tuple[str, ...] = field(repr=False)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_batch_events: int = DEFAULT_MAX_BATCH_EVENTS
    rate_limit: Optional[float] = None
    rate_burst: Optional[int] = None

    def __post_init__(self) -> None:
        if not isinstance(self.ledger_path, (str, os.PathLike)) or not os.fspath(
            self.ledger_path
        ):
            raise ValueError(
                f"ledger_path={self.ledger_path!r} is invalid; pass a file path"
            )
        if not self.api_keys:
            raise ValueError("api_keys is empty; pass at least one API key")
        _check_count("max_body_bytes", self.max_body_bytes)
        _check_count("max_batch_events", self.max_batch_events)
        if self.rate_limit is not None:
            rate = self.rate_limit
            if isinstance(rate, bool) or not isinstance(rate, (int, float)):
                raise ValueError(
                    f"rate_limit={rate!r} is invalid; pass requests per second "
                    "as a number, or None for no limit"
                )
            if not (rate > 0 and math.isfinite(rate)):
                raise ValueError(
                    f"rate_limit={rate!r} is out of range; pass a positive number "
                    "of requests per second, or None for no limit"
                )
        if self.rate_burst is not None:
            _check_count("rate_burst", self.rate_burst)

    @property
    def burst(self) -> int:
        """Requests a key may send at once: ``rate_burst``, else the rate."""
        if self.rate_burst is not None:
            return self.rate_burst
        return max(1, math.ceil(self.rate_limit or 1))


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"{name}={value!r} is invalid; pass a whole number of 1 or more"
        )
