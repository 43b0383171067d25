"""Results of appending to and verifying a ledger."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

__all__ = ["AppendResult", "VerifyResult"]


@dataclass(frozen=True)
class AppendResult:
    """Position and hashes of one appended event in its agent's chain.

    ``duplicate`` is true when the ledger already stored an event with the same
    ``(agent_id, event_id)``. The other fields then describe that stored event.
    """

    event_id: str
    chain_index: int
    event_hash: str
    previous_event_hash: str
    duplicate: bool

    def as_dict(self) -> dict[str, Any]:
        """Return the ingest response body for this event.

        The body has ``"duplicate": true`` only for a duplicate, so a fresh event
        gets the same body that a server without idempotency support sends.
        """
        body: dict[str, Any] = {
            "ok": True,
            "event_id": self.event_id,
            "chain_index": self.chain_index,
            "event_hash": self.event_hash,
            "previous_event_hash": self.previous_event_hash,
        }
        if self.duplicate:
            body["duplicate"] = True
        return body


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of verifying one agent's chain.

    ``event_count`` is the number of stored events of the agent. ``head_hash`` is
    the ``event_hash`` of the last event of an intact chain, and None for an empty
    or broken chain. ``broken_at`` is the first chain index that failed a check,
    and ``reason`` describes which check failed and why.
    """

    valid: bool
    agent_id: str
    event_count: int
    head_hash: Optional[str]
    broken_at: Optional[int]
    reason: Optional[str]

    def as_dict(self) -> dict[str, Any]:
        """Return the body of the agent verify endpoint."""
        return {
            "valid": self.valid,
            "agent_id": self.agent_id,
            "event_count": self.event_count,
            "head_hash": self.head_hash,
            "broken_at": self.broken_at,
            "reason": self.reason,
        }
