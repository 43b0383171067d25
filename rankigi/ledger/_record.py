"""Turning wire events into stored records, and hashing records.

A wire event is the ingest body of one event: ``agent_id``, ``action``,
``payload`` and the optional ``event_id``, ``tool``, ``severity``,
``occurred_at``, ``passport_id``, ``signature`` and ``intent``. Other keys are
ignored. A stored record has the fields in ``FIELDS``, and its ``event_hash`` is
the SHA-256 of the canonical JSON of every other field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rankigi._canonical import CanonicalError, canonical_json, sha256_hex
from rankigi._ids import format_timestamp, now_ns, parse_timestamp, uuid7
from rankigi.ledger._errors import InvalidEventError

__all__ = [
    "FIELDS",
    "PreparedEvent",
    "compute_event_hash",
    "prepare_events",
    "resolve_received_at",
    "seal",
]

# Field order of a stored record, as the protocol lists it. The hash does not
# depend on it (canonical JSON sorts keys); listings and exports use it.
FIELDS = (
    "event_id",
    "agent_id",
    "chain_index",
    "previous_event_hash",
    "event_hash",
    "timestamp",
    "server_received_at",
    "action_type",
    "tool_invoked",
    "severity",
    "input_hash",
    "output_hash",
    "execution_result",
    "payload",
    "data_quality_flag",
    "passport_id",
    "signature",
)

MAX_NAME_LENGTH = 256
MAX_EVENT_ID_LENGTH = 64
SEVERITIES = frozenset({"info", "warn", "critical"})

_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
_PAYLOAD_PREFIX = '{"payload":'


@dataclass(frozen=True)
class PreparedEvent:
    """A validated event: every stored field except the chain fields.

    ``fields`` has the parsed payload, ``payload_text`` its canonical JSON.
    """

    fields: dict[str, Any]
    payload_text: str

    @property
    def agent_id(self) -> str:
        return str(self.fields["agent_id"])

    @property
    def event_id(self) -> str:
        return str(self.fields["event_id"])


def resolve_received_at(received_at: str | None) -> str:
    """Return ``received_at`` normalized, or the current time when it is None."""
    if received_at is None:
        return format_timestamp(now_ns())
    normalized = parse_timestamp(received_at)
    if normalized is None:
        raise ValueError(
            f"received_at {received_at!r:.80} is not a timestamp with a time zone; "
            "pass RFC 3339 text such as '2026-01-31T12:00:00.000Z', or None"
        )
    return normalized


def prepare_events(
    events: Sequence[Mapping[str, Any]], received_at: str
) -> list[PreparedEvent]:
    """Validate a batch and build its records, raising on the first invalid event.

    Raises:
        InvalidEventError: with the position of the first invalid event.
    """
    if isinstance(events, (str, bytes, Mapping)):
        raise TypeError(
            f"events must be a sequence of event dicts, got {type(events).__name__}; "
            "wrap a single event in a list"
        )
    return [_prepare(event, index, received_at) for index, event in enumerate(events)]


def seal(event: PreparedEvent, chain_index: int, previous_hash: str) -> dict[str, Any]:
    """Return the full record of ``event`` at ``chain_index``, with its hash."""
    record = dict(event.fields)
    record["chain_index"] = chain_index
    record["previous_event_hash"] = previous_hash
    record["event_hash"] = compute_event_hash(record)
    return {name: record[name] for name in FIELDS}


def compute_event_hash(record: Mapping[str, Any]) -> str:
    """Return the SHA-256 of the canonical JSON of every field but ``event_hash``.

    Raises:
        CanonicalError: for a value without a canonical form.
        UnicodeEncodeError: for a string that is not valid Unicode.
    """
    return sha256_hex({k: v for k, v in record.items() if k != "event_hash"})


def _prepare(event: Any, index: int, received_at: str) -> PreparedEvent:
    if not isinstance(event, Mapping):
        raise InvalidEventError(
            index, "event", f"must be a JSON object, got {type(event).__name__}"
        )
    agent_id = _name(event, "agent_id", index, required=True)
    action = _name(event, "action", index, required=True)
    tool = _name(event, "tool", index, required=False)
    payload = _payload(event, index)
    payload_text, stored_payload = _canonical_payload(payload, index)
    fields: dict[str, Any] = {
        "event_id": _event_id(event, index),
        "agent_id": agent_id,
        "timestamp": _timestamp(event, payload, index) or received_at,
        "server_received_at": received_at,
        "action_type": action,
        "tool_invoked": tool,
        "severity": _severity(event, index),
        "input_hash": _value_hash(payload, "input"),
        "output_hash": _value_hash(payload, "output"),
        "execution_result": _execution_result(action, payload),
        "payload": stored_payload,
        "data_quality_flag": "ok",
        "passport_id": _optional_text(event, "passport_id", index),
        "signature": _optional_text(event, "signature", index),
    }
    return PreparedEvent(fields=fields, payload_text=payload_text)


def _name(event: Mapping[str, Any], field: str, index: int, *, required: bool) -> Any:
    value = event.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME_LENGTH:
        raise InvalidEventError(
            index,
            field,
            f"must be a non-empty string of at most {MAX_NAME_LENGTH} characters, "
            f"got {value!r:.80}",
        )
    _check_unicode(value, field, index)
    return value


def _event_id(event: Mapping[str, Any], index: int) -> str:
    value = event.get("event_id")
    if value is None:
        return uuid7()
    if not isinstance(value, str) or not 0 < len(value) <= MAX_EVENT_ID_LENGTH:
        raise InvalidEventError(
            index,
            "event_id",
            f"must be a non-empty string of at most {MAX_EVENT_ID_LENGTH} "
            f"characters such as a UUIDv7, or absent; got {value!r:.80}",
        )
    _check_unicode(value, "event_id", index)
    return value


def _optional_text(event: Mapping[str, Any], field: str, index: int) -> Any:
    value = event.get(field)
    if value is not None and not isinstance(value, str):
        raise InvalidEventError(
            index, field, f"must be a string or absent, got {value!r:.80}"
        )
    if value is not None:
        _check_unicode(value, field, index)
    return value


def _severity(event: Mapping[str, Any], index: int) -> str:
    value = _optional_text(event, "severity", index)
    # An unknown severity is stored as "info" instead of rejecting the event,
    # so a mistyped label never costs an audit record.
    return value if value in SEVERITIES else "info"


def _timestamp(event: Mapping[str, Any], payload: Mapping[str, Any], index: int) -> Any:
    occurred_at = event.get("occurred_at")
    if occurred_at is not None:
        normalized = parse_timestamp(occurred_at)
        if normalized is None:
            raise InvalidEventError(
                index,
                "occurred_at",
                "must be RFC 3339 text with a time zone such as "
                f"'2026-01-31T12:00:00.000Z', or absent; got {occurred_at!r:.80}",
            )
        return normalized
    # The 1.0.0 client sends its clock only as payload._ts. That field is
    # free-form payload data, so an unreadable value falls back to the receive
    # time instead of rejecting the event.
    client_clock = payload.get("_ts")
    return parse_timestamp(client_clock) if isinstance(client_clock, str) else None


def _payload(event: Mapping[str, Any], index: int) -> dict[str, Any]:
    payload = event.get("payload")
    if not isinstance(payload, dict):
        raise InvalidEventError(
            index, "payload", f"must be a JSON object, got {type(payload).__name__}"
        )
    intent = event.get("intent")
    if intent is None:
        return payload
    if not isinstance(intent, dict):
        raise InvalidEventError(
            index, "intent", f"must be a JSON object or absent, got {intent!r:.80}"
        )
    if "_intent" in payload:
        raise InvalidEventError(
            index,
            "payload",
            "must not contain the key '_intent' when the event carries an intent; "
            "rename that payload key",
        )
    # A stored record has no intent field, so the intent is kept in the payload
    # under "_intent". That way the event hash covers it like any other field.
    return {**payload, "_intent": intent}


def _canonical_payload(payload: dict[str, Any], index: int) -> tuple[str, Any]:
    """Return the payload's canonical JSON and the value parsed back from it.

    The payload is encoded at the depth it has inside a record, so a payload
    that passes here also passes when the whole record is hashed. Parsing the
    text back gives the exact value that verification will later hash.
    """
    try:
        wrapped = canonical_json({"payload": payload})
        wrapped.encode("utf-8")
    except CanonicalError as exc:
        # The depth limit counts the record around the payload as one level.
        raise InvalidEventError(
            index,
            "payload",
            f"has no canonical JSON form inside a stored record: {exc}",
        ) from exc
    except UnicodeEncodeError as exc:
        raise InvalidEventError(
            index,
            "payload",
            "contains a string that is not valid Unicode (a lone surrogate); "
            "encode binary data as base64 or hex text",
        ) from exc
    text = wrapped[len(_PAYLOAD_PREFIX) : -1]
    return text, json.loads(text)


def _value_hash(payload: Mapping[str, Any], key: str) -> str | None:
    # A value the server can see is hashed again here, so a client's claimed
    # hash is never stored in its place. In hash-only capture only the client's
    # hash travels, and it is kept when it looks like a SHA-256 hex digest.
    if key in payload:
        return sha256_hex(payload[key])
    claimed = payload.get(f"{key}_hash")
    if isinstance(claimed, str) and _HEX_DIGEST.fullmatch(claimed):
        return claimed.lower()
    return None


def _execution_result(action: str, payload: Mapping[str, Any]) -> str:
    status = payload.get("status")
    if action == "error" or status == "error":
        return "error"
    if status == "ok":
        return "success"
    return "unknown"


def _check_unicode(value: str, field: str, index: int) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidEventError(
            index,
            field,
            f"is not valid Unicode (contains a lone surrogate): {value!r:.80}",
        ) from exc
