"""Event ids and timestamps."""

from __future__ import annotations

import os
import random
import re
import time
from datetime import datetime, timezone

__all__ = ["format_timestamp", "now_ns", "parse_timestamp", "uuid7"]

now_ns = time.time_ns

# A seeded Mersenne Twister instead of os.urandom: ids need uniqueness, not
# secrecy, and a system call per event costs more than the rest of capture.
# It is private, so random.seed() in user code cannot make ids repeat, and
# reseeded in a forked child, so parent and child never share a sequence.
_random = random.Random()
_getrandbits = _random.getrandbits
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_random.seed)


def uuid7() -> str:
    """Return a new UUIDv7 string (RFC 9562), ordered by creation time.

    The 12 bits after the millisecond timestamp hold the sub-millisecond
    fraction (RFC 9562 section 6.2, method 3), so ids made one after another
    sort in creation order without a lock; 62 bits are random.
    """
    ns = time.time_ns()
    ms, rest = divmod(ns, 1_000_000)
    fraction = (rest * 4096) // 1_000_000
    low = _getrandbits(62)
    return (
        f"{ms >> 16:08x}-{ms & 0xFFFF:04x}-{0x7000 | fraction:04x}-"
        f"{0x8000 | (low >> 48):04x}-{low & 0xFFFF_FFFF_FFFF:012x}"
    )


_second_cache: tuple[int, str] = (-1, "")


def format_timestamp(ns: int) -> str:
    """Format nanoseconds since the epoch as RFC 3339 UTC with milliseconds."""
    global _second_cache
    seconds, rest = divmod(ns, 1_000_000_000)
    cached_second, prefix = _second_cache
    if seconds != cached_second:
        # Events arrive many per second, so the date part is formatted once
        # per second; the tuple swap keeps threads from seeing half an update.
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _second_cache = (seconds, prefix)
    return f"{prefix}.{rest // 1_000_000:03d}Z"


_FRACTION = re.compile(r"(?<=:\d\d)\.(\d+)")


def _six_digits(match: re.Match[str]) -> str:
    return "." + (match.group(1) + "000000")[:6]


def parse_timestamp(text: str) -> str | None:
    """Normalize an ISO 8601 timestamp to RFC 3339 UTC with milliseconds.

    Returns None when ``text`` is not a timestamp with a time zone.
    """
    if not isinstance(text, str) or len(text) > 64:
        return None
    candidate = text.strip()
    if candidate.endswith(("Z", "z")):
        candidate = candidate[:-1] + "+00:00"
    # Python 3.9 and 3.10 parse only 3 or 6 fraction digits, so pad or cut
    # the fraction to 6 first.
    candidate = _FRACTION.sub(_six_digits, candidate, count=1)
    try:
        moment = datetime.fromisoformat(candidate)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
