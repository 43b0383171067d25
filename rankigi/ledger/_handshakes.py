"""Agent-to-agent handshakes stored beside the chains of a ledger.

A handshake is a row in the ``handshakes`` table plus one event in each
party's chain. Initiating appends ``handshake.initiated`` (carrying the
``handshake_hash``) to the initiator's chain; completing appends
``handshake.accepted`` or ``handshake.rejected`` (carrying the same hash and
the initiator event's ``event_hash``) to the target's chain, so each chain
vouches for the other. The row and its event are written in one transaction.

``handshake_hash`` is the SHA-256 of the canonical JSON of ``id``,
``initiator_agent_id``, ``target_agent_id``, ``purpose``, ``metadata``,
``nonce``, ``created_at`` and ``expires_at``.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
from collections.abc import Mapping
from typing import Any, NoReturn, Optional

from rankigi._canonical import CanonicalError, canonical_json, sha256_hex
from rankigi._ids import format_timestamp, now_ns, uuid7
from rankigi.ledger._errors import LedgerError
from rankigi.ledger._record import FIELDS, compute_event_hash, prepare_events
from rankigi.ledger._store import Ledger, append_batch

__all__ = [
    "DEFAULT_EXPIRES_IN",
    "HANDSHAKE_FIELDS",
    "HandshakeError",
    "complete_handshake",
    "get_handshake",
    "initiate_handshake",
    "verify_handshake",
]

DEFAULT_EXPIRES_IN = 900
MAX_EXPIRES_IN = 30 * 86_400
HANDSHAKE_FIELDS = (
    "id",
    "initiator_agent_id",
    "target_agent_id",
    "purpose",
    "metadata",
    "nonce",
    "created_at",
    "expires_at",
)
_COLUMNS = (
    *HANDSHAKE_FIELDS,
    "handshake_hash",
    "status",
    "completed_at",
    "initiator_event_id",
    "target_event_id",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS handshakes (
    id TEXT PRIMARY KEY,
    initiator_agent_id TEXT NOT NULL,
    target_agent_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    metadata TEXT NOT NULL,
    nonce TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    handshake_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    completed_at TEXT,
    initiator_event_id TEXT NOT NULL,
    target_event_id TEXT
)
"""
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM handshakes WHERE id = ?"
_SELECT_EVENT = (
    f"SELECT {', '.join(FIELDS)} FROM events WHERE agent_id = ? AND event_id = ?"
)


class HandshakeError(LedgerError):
    """Raised when a handshake operation is rejected, with ``code`` and ``status``."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message


def initiate_handshake(
    ledger: Ledger,
    initiator_agent_id: str,
    target_agent_id: str,
    purpose: str,
    metadata: Optional[Mapping[str, Any]] = None,
    expires_in: float = DEFAULT_EXPIRES_IN,
    *,
    now: Optional[int] = None,
) -> dict[str, Any]:
    """Create a pending handshake and append its event to the initiator's chain.

    ``now`` is the time in nanoseconds since the epoch (tests pass their own).

    Raises:
        HandshakeError: INVALID_REQUEST for a bad argument.
    """
    _check_name("initiator_agent_id", initiator_agent_id)
    _check_name("target_agent_id", target_agent_id)
    _check_name("purpose", purpose, max_length=1024)
    if initiator_agent_id == target_agent_id:
        _invalid(f"target_agent_id {target_agent_id!r} is the initiator itself")
    meta = _check_metadata(metadata)
    seconds = _check_expires_in(expires_in)
    created = now_ns() if now is None else now
    handshake: dict[str, Any] = {
        "id": uuid7(),
        "initiator_agent_id": initiator_agent_id,
        "target_agent_id": target_agent_id,
        "purpose": purpose,
        "metadata": meta,
        "nonce": secrets.token_hex(16),
        "created_at": format_timestamp(created),
        "expires_at": format_timestamp(created + int(seconds * 1e9)),
    }
    handshake["handshake_hash"] = handshake_hash(handshake)
    event = _chain_event(
        initiator_agent_id,
        "handshake.initiated",
        handshake["created_at"],
        {
            "handshake_id": handshake["id"],
            "handshake_hash": handshake["handshake_hash"],
            "target_agent_id": target_agent_id,
            "purpose": purpose,
        },
    )

    def store(connection: sqlite3.Connection) -> None:
        _ensure_table(connection)
        append_batch(
            connection, prepare_events([event], event["occurred_at"]), ledger.path
        )
        row = {
            **handshake,
            "metadata": canonical_json(meta),
            "status": "pending",
            "completed_at": None,
            "initiator_event_id": event["event_id"],
            "target_event_id": None,
        }
        connection.execute(
            f"INSERT INTO handshakes ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(_COLUMNS))})",
            [row[name] for name in _COLUMNS],
        )

    ledger.write(store)
    return {**handshake, "status": "pending"}


def complete_handshake(
    ledger: Ledger,
    handshake_id: str,
    agent_id: str,
    accepted: bool,
    *,
    now: Optional[int] = None,
) -> dict[str, Any]:
    """Accept or reject a pending handshake as its target agent.

    Raises:
        HandshakeError: NOT_FOUND, AUTH_FAILED (not the target), CONFLICT
            (already completed) or EXPIRED.
    """
    if not isinstance(accepted, bool):
        _invalid(f"accepted must be true or false, not {accepted!r:.40}")
    moment = format_timestamp(now_ns() if now is None else now)

    def store(connection: sqlite3.Connection) -> tuple[dict[str, Any], bool]:
        _ensure_table(connection)
        row = _load(connection, handshake_id)
        if agent_id != row["target_agent_id"]:
            raise HandshakeError(
                "AUTH_FAILED",
                403,
                f"agent {agent_id!r} cannot complete handshake {handshake_id}; "
                f"only its target {row['target_agent_id']!r} may",
            )
        if row["status"] != "pending":
            raise HandshakeError(
                "CONFLICT",
                409,
                f"handshake {handshake_id} is already {row['status']}; "
                "a handshake completes once",
            )
        if moment > row["expires_at"]:
            connection.execute(
                "UPDATE handshakes SET status = 'expired' WHERE id = ?",
                (handshake_id,),
            )
            return row, True
        initiator = _stored_event(
            connection, row["initiator_agent_id"], row["initiator_event_id"]
        )
        status = "accepted" if accepted else "rejected"
        event = _chain_event(
            agent_id,
            f"handshake.{status}",
            moment,
            {
                "handshake_id": handshake_id,
                "handshake_hash": row["handshake_hash"],
                "initiator_event_hash": None
                if initiator is None
                else initiator["event_hash"],
                "accepted": accepted,
            },
        )
        append_batch(connection, prepare_events([event], moment), ledger.path)
        connection.execute(
            "UPDATE handshakes SET status = ?, completed_at = ?, target_event_id = ? "
            "WHERE id = ?",
            (status, moment, event["event_id"], handshake_id),
        )
        row.update(
            status=status, completed_at=moment, target_event_id=event["event_id"]
        )
        return row, False

    row, expired = ledger.write(store)
    if expired:
        # The expiry is committed first, so the handshake stays expired.
        raise HandshakeError(
            "EXPIRED",
            410,
            f"handshake {handshake_id} expired at {row['expires_at']}; "
            "initiate a new one",
        )
    return _public(row)


def get_handshake(ledger: Ledger, handshake_id: str) -> dict[str, Any]:
    """Return the handshake as the protocol shows it.

    Raises:
        HandshakeError: NOT_FOUND.
    """
    return _public(
        ledger.write(lambda connection: _load_with_table(connection, handshake_id))
    )


def verify_handshake(
    ledger: Ledger, handshake_id: str, *, now: Optional[int] = None
) -> dict[str, Any]:
    """Check a handshake against both chains.

    Valid only when it was accepted before it expired, its record still hashes
    to ``handshake_hash``, and both chain events exist, hash correctly and
    carry that hash. Returns the protocol's verify body; ``reason`` names the
    first check that failed.
    """

    def read(connection: sqlite3.Connection) -> dict[str, Any]:
        row = _load_with_table(connection, handshake_id)
        initiator = _stored_event(
            connection, row["initiator_agent_id"], row["initiator_event_id"]
        )
        target = None
        if row["target_event_id"]:
            target = _stored_event(
                connection, row["target_agent_id"], row["target_event_id"]
            )
        moment = format_timestamp(now_ns() if now is None else now)
        reason = _first_problem(row, initiator, target, moment)
        return {
            "valid": reason is None,
            "id": handshake_id,
            "status": _status(row, moment),
            "handshake_hash": row["handshake_hash"],
            "initiator_event_hash": None
            if initiator is None
            else initiator["event_hash"],
            "target_event_hash": None if target is None else target["event_hash"],
            "reason": reason,
        }

    return ledger.write(read)


def handshake_hash(handshake: Mapping[str, Any]) -> str:
    """Return the SHA-256 of the canonical JSON of the hashed handshake fields."""
    return sha256_hex({name: handshake[name] for name in HANDSHAKE_FIELDS})


# -- checks -------------------------------------------------------------------


def _first_problem(
    row: dict[str, Any],
    initiator: Optional[dict[str, Any]],
    target: Optional[dict[str, Any]],
    moment: str,
) -> Optional[str]:
    if handshake_hash(row) != row["handshake_hash"]:
        return (
            "the handshake record was altered: its fields no longer hash to "
            "handshake_hash"
        )
    status = _status(row, moment)
    if status != "accepted":
        return f"the handshake is {status}, not accepted"
    if row["completed_at"] is None or row["completed_at"] > row["expires_at"]:
        return "the handshake was completed after it expired"
    problem = _check_event(initiator, "initiator", "handshake.initiated", row)
    if problem:
        return problem
    problem = _check_event(target, "target", "handshake.accepted", row)
    if problem:
        return problem
    assert initiator is not None and target is not None
    if target["payload"].get("initiator_event_hash") != initiator["event_hash"]:
        return (
            "the target's handshake event does not carry the initiator event's "
            "hash, so the two chains disagree"
        )
    return None


def _check_event(
    event: Optional[dict[str, Any]], role: str, action: str, row: dict[str, Any]
) -> Optional[str]:
    if event is None:
        return f"the {role}'s handshake event is missing from its chain"
    where = f"the {role}'s handshake event (chain index {event['chain_index']})"
    try:
        recomputed = compute_event_hash(event)
    except (CanonicalError, UnicodeError, TypeError, ValueError):
        recomputed = None
    if recomputed != event["event_hash"]:
        return f"{where} was altered: its hash does not match"
    payload = event["payload"]
    if event["action_type"] != action or not isinstance(payload, dict):
        return f"{where} is not a {action} event"
    if payload.get("handshake_hash") != row["handshake_hash"]:
        return f"{where} carries a different handshake_hash"
    if payload.get("handshake_id") != row["id"]:
        return f"{where} names a different handshake"
    return None


def _status(row: Mapping[str, Any], moment: str) -> str:
    if row["status"] == "pending" and moment > row["expires_at"]:
        return "expired"
    return str(row["status"])


# -- storage ------------------------------------------------------------------


def _ensure_table(connection: sqlite3.Connection) -> None:
    # Ledgers created before handshakes existed lack the table.
    connection.execute(_SCHEMA)


def _load_with_table(
    connection: sqlite3.Connection, handshake_id: str
) -> dict[str, Any]:
    _ensure_table(connection)
    return _load(connection, handshake_id)


def _load(connection: sqlite3.Connection, handshake_id: Any) -> dict[str, Any]:
    row = None
    if isinstance(handshake_id, str):
        row = connection.execute(_SELECT, (handshake_id,)).fetchone()
    if row is None:
        raise HandshakeError(
            "NOT_FOUND",
            404,
            f"handshake {handshake_id!r:.80} not found; check the id that "
            "initiate_handshake returned",
        )
    record = dict(zip(_COLUMNS, row))
    # An edited row may hold invalid JSON; verification reports the mismatch.
    with contextlib.suppress(TypeError, ValueError):
        record["metadata"] = json.loads(record["metadata"])
    return record


def _stored_event(
    connection: sqlite3.Connection, agent_id: str, event_id: Optional[str]
) -> Optional[dict[str, Any]]:
    row = connection.execute(_SELECT_EVENT, (agent_id, event_id)).fetchone()
    if row is None:
        return None
    record = dict(zip(FIELDS, row))
    with contextlib.suppress(TypeError, ValueError):
        record["payload"] = json.loads(record["payload"])
    return record


def _public(row: Mapping[str, Any]) -> dict[str, Any]:
    keys = (*HANDSHAKE_FIELDS, "handshake_hash", "status", "completed_at")
    return {key: row[key] for key in keys}


def _chain_event(
    agent_id: str, action: str, occurred_at: str, payload: dict[str, Any]
) -> dict[str, Any]:
    return {
        "event_id": uuid7(),
        "agent_id": agent_id,
        "action": action,
        "tool": None,
        "severity": "info",
        "occurred_at": occurred_at,
        "payload": payload,
    }


# -- argument checks ----------------------------------------------------------


def _invalid(message: str) -> NoReturn:
    raise HandshakeError("INVALID_REQUEST", 400, message)


def _check_name(field: str, value: Any, max_length: int = 256) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        _invalid(
            f"{field} {value!r:.80} is invalid; pass a non-empty string of at "
            f"most {max_length} characters"
        )


def _check_metadata(metadata: Any) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        _invalid(f"metadata must be an object, not {type(metadata).__name__}")
    try:
        return dict(json.loads(canonical_json(dict(metadata))))
    except (CanonicalError, TypeError, ValueError) as exc:
        _invalid(f"metadata cannot be stored as JSON: {exc}")


def _check_expires_in(expires_in: Any) -> float:
    if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)):
        _invalid(f"expires_in {expires_in!r:.40} is invalid; pass seconds as a number")
    if not 0 < expires_in <= MAX_EXPIRES_IN:
        _invalid(
            f"expires_in {expires_in} is out of range; pass seconds from above 0 "
            f"to {MAX_EXPIRES_IN}"
        )
    return float(expires_in)
