"""Checking an agent's hash chain.

Each stored event must sit at the next chain index, link to the previous
event's hash (the empty string for the first), and hash to its stored
``event_hash``. The agent's recorded head must then point at the last event.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Optional

from rankigi._canonical import CanonicalError
from rankigi.ledger._record import FIELDS, compute_event_hash
from rankigi.ledger._results import VerifyResult

__all__ = ["verify_chain"]

# The first chain index that failed, and why.
_Failure = Optional[tuple[int, str]]


def verify_chain(
    agent_id: str, rows: Iterable[Sequence[Any]], head: Sequence[Any] | None
) -> VerifyResult:
    """Verify one agent's chain and report the first failure.

    Args:
        agent_id: the agent whose chain ``rows`` are.
        rows: stored events as tuples in ``FIELDS`` order with the payload as
            JSON text, sorted by chain index.
        head: the agent's recorded ``(chain_index, event_hash)``, or None.
    """
    count = 0
    previous_hash = ""
    failure: _Failure = None
    for row in rows:
        if failure is None:
            reason = _check_event(row, count, previous_hash)
            if reason is None:
                previous_hash = row[FIELDS.index("event_hash")]
            else:
                failure = (count, reason)
        # Rows after a failure are only counted, so event_count is always the
        # number of stored events.
        count += 1
    if failure is None:
        failure = _check_head(count, previous_hash, head)
    if failure is None:
        head_hash = previous_hash if count else None
        return VerifyResult(True, agent_id, count, head_hash, None, None)
    broken_at, reason = failure
    return VerifyResult(False, agent_id, count, None, broken_at, reason)


def _check_event(row: Sequence[Any], position: int, previous_hash: str) -> str | None:
    record = dict(zip(FIELDS, row))
    index = record["chain_index"]
    if type(index) is not int or index != position:
        return f"index gap: expected {position}, found {index!r:.40}"
    link = record["previous_event_hash"]
    if link != previous_hash:
        return _broken_link(link, position, previous_hash)
    return _check_hash(record)


def _broken_link(link: Any, position: int, previous_hash: str) -> str:
    if position == 0:
        return (
            f"broken link: previous_event_hash is {_show(link)}, "
            "but the first event must have ''"
        )
    return (
        f"broken link: previous_event_hash is {_show(link)}, "
        f"but event {position - 1} has event_hash {_show(previous_hash)}"
    )


def _check_hash(record: dict[str, Any]) -> str | None:
    try:
        record["payload"] = json.loads(record["payload"])
    except (TypeError, ValueError):
        return "hash mismatch: the stored payload is not valid JSON"
    try:
        recomputed = compute_event_hash(record)
    except CanonicalError as exc:
        return f"hash mismatch: a stored field has no canonical JSON form ({exc})"
    except UnicodeEncodeError:
        return "hash mismatch: a stored field is not valid UTF-8"
    stored = record["event_hash"]
    if recomputed != stored:
        return (
            f"hash mismatch: stored event_hash {_show(stored)}, "
            f"recomputed {_show(recomputed)}"
        )
    return None


def _check_head(count: int, last_hash: str, head: Sequence[Any] | None) -> _Failure:
    last_index = count - 1
    if head is None:
        if count == 0:
            return None
        return (
            last_index,
            f"missing head record: the agent has {count} events but no recorded "
            "head, so the ledger's heads table was edited",
        )
    head_index, head_hash = head
    if type(head_index) is not int:
        return (max(last_index, 0), f"invalid head record: index {head_index!r:.40}")
    if head_index > last_index:
        return (
            count,
            f"missing events: the chain ends at index {last_index}, but the "
            f"recorded head is index {head_index}, so events were deleted "
            "from the end",
        )
    if head_index < last_index:
        return (
            head_index + 1,
            f"unrecorded events: the recorded head is index {head_index}, but "
            f"the chain continues to index {last_index}",
        )
    if head_hash != last_hash:
        return (
            head_index,
            f"head mismatch: event {head_index} has event_hash {_show(last_hash)}, "
            f"but the recorded head hash is {_show(head_hash)}",
        )
    return None


def _show(value: Any) -> str:
    """Return a short form of a stored value for a message."""
    if isinstance(value, str) and len(value) > 16:
        return repr(value[:12] + "…")
    return f"{value!r:.40}"
