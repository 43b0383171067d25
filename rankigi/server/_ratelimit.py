"""A token bucket per API key, for the optional request rate limit."""

from __future__ import annotations

import math
import threading
import time
from typing import Callable, Optional

__all__ = ["RateLimiter"]


class RateLimiter:
    """Allow each key ``rate`` requests per second, with bursts of ``burst``.

    ``check`` returns None when a request may pass, else the whole seconds
    to wait, for a ``Retry-After`` header.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._lock = threading.Lock()
        # key fingerprint -> (tokens left, time of the last update)
        self._buckets: dict[str, tuple[float, float]] = {}

    def check(self, key: str) -> Optional[int]:
        """Take one token from ``key``'s bucket, or return the seconds to wait."""
        now = self._clock()
        with self._lock:
            tokens, updated = self._buckets.get(key, (self._burst, now))
            tokens = min(self._burst, tokens + (now - updated) * self._rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return None
            self._buckets[key] = (tokens, now)
        # Round up, so a client that waits exactly this long finds a token.
        return max(1, math.ceil((1.0 - tokens) / self._rate))
