"""Event ids and timestamps."""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timezone

__all__ = ["format_timestamp", "now_ns", "parse_timestamp", "uuid7"]

now_ns = time.time_ns

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def uuid7() -> str:
    """Return a new UUIDv7 string (RFC 9562), ordered by creation time.

    Within one millisecond a 12-bit counter keeps ids from this process in
    order; the remaining 62 bits are random.
    """
    global _last_ms, _counter
    ms = time.time_ns() // 1_000_000
    with _lock:
        if ms > _last_ms:
            _last_ms = ms
            _counter = int.from_bytes(os.urandom(2), "big") & 0x1FF
        else:
            # Same millisecond, or the clock stepped back: keep counting from
            # the last time used so ids stay monotonic in this process.
            ms = _last_ms
            _counter += 1
            if _counter > 0xFFF:
                _last_ms += 1
                ms = _last_ms
                _counter = 0
        counter = _counter
    rand = int.from_bytes(os.urandom(8), "big") & 0x3FFF_FFFF_FFFF_FFFF
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def format_timestamp(ns: int) -> str:
    """Format nanoseconds since the epoch as RFC 3339 UTC with milliseconds."""
    seconds, rest = divmod(ns, 1_000_000_000)
    moment = time.gmtime(seconds)
    return time.strftime("%Y-%m-%dT%H:%M:%S", moment) + f".{rest // 1_000_000:03d}Z"


def parse_timestamp(text: str) -> str | None:
    """Normalize an ISO 8601 timestamp to RFC 3339 UTC with milliseconds.

    Returns None when ``text`` is not a timestamp with a time zone.
    """
    if not isinstance(text, str) or len(text) > 64:
        return None
    candidate = text.strip()
    if candidate.endswith(("Z", "z")):
        candidate = candidate[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(candidate)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
