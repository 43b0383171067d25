"""Turning wire events into stored records, and hashing records.

A wire event is the ingest body of one event: ``agent_id``, ``action``,
``payload`` and the optional ``event_id``, ``tool``, ``severity``,
``occurred_at``, ``passport_id``, ``signature`` and ``intent``. Other keys are
ignored. A stored record has the fields in ``FIELDS``, and its ``event_hash`` is
the SHA-256 of the canonical JSON of every other field.

Appending hashes each record while the ledger's write lock is held, because
the hash covers the chain fields. So ``prepare_events`` does everything else
beforehand: it validates the event, encodes its payload once, and builds the
record's canonical JSON around the two chain values that only the append can
fill in. ``seal`` then only formats those two values and hashes the text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from rankigi._canonical import (
    CanonicalError,
    canonical_object,
    canonical_string,
    sha256_hex,
    sha256_text,
)
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

# The fields that only an append can fill in. They sit together in FIELDS, so
# a stored row is the prepared columns with these three spliced in at
# _CHAIN_START (_check_text_parts fails on import if they move apart).
_CHAIN_FIELDS = ("chain_index", "previous_event_hash", "event_hash")
_CHAIN_START = FIELDS.index(_CHAIN_FIELDS[0])
# The stored fields that prepare_events fills, in FIELDS order.
_COLUMN_FIELDS = tuple(name for name in FIELDS if name not in _CHAIN_FIELDS)


class PreparedEvent:
    """A validated event, ready to be chained.

    ``columns`` contains the stored values of ``_COLUMN_FIELDS`` (every field but
    the chain fields), with the payload as its canonical JSON text.
    ``text_parts`` is the record's canonical JSON without ``event_hash``, cut
    where the values of ``chain_index`` and ``previous_event_hash`` go.
    """

    __slots__ = ("agent_id", "columns", "event_id", "text_parts")

    def __init__(
        self,
        agent_id: str,
        event_id: str,
        columns: tuple[Any, ...],
        text_parts: tuple[str, str, str],
    ) -> None:
        self.agent_id = agent_id
        self.event_id = event_id
        self.columns = columns
        self.text_parts = text_parts

    def __repr__(self) -> str:
        return f"<PreparedEvent {self.agent_id!r:.80} {self.event_id!r:.80}>"


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
    # The events of one batch share a few client clock readings, so each
    # distinct timestamp text is parsed once per batch.
    timestamps: dict[str, Optional[str]] = {}
    return [
        _prepare(event, index, received_at, timestamps)
        for index, event in enumerate(events)
    ]


def seal(
    event: PreparedEvent, chain_index: int, previous_hash: str
) -> tuple[tuple[Any, ...], str]:
    """Return the stored row of ``event`` at ``chain_index``, and its event hash.

    The row has the values of ``FIELDS`` in order. The hash equals
    ``compute_event_hash`` of the record, because the text hashed here is the
    record's canonical JSON, which ``_check_text_parts`` checks on import.

    Raises:
        UnicodeEncodeError: ``previous_hash`` is not valid Unicode, which only
            a ledger file edited outside rankigi can cause.
    """
    head, middle, tail = event.text_parts
    text = f"{head}{chain_index}{middle}{canonical_string(previous_hash)}{tail}"
    event_hash = sha256_text(text)
    columns = event.columns
    row = (
        *columns[:_CHAIN_START],
        chain_index,
        previous_hash,
        event_hash,
        *columns[_CHAIN_START:],
    )
    return row, event_hash


def compute_event_hash(record: Mapping[str, Any]) -> str:
    """Return the SHA-256 of the canonical JSON of every field but ``event_hash``.

    Raises:
        CanonicalError: for a value without a canonical form.
        UnicodeEncodeError: for a string that is not valid Unicode.
    """
    return sha256_hex({k: v for k, v in record.items() if k != "event_hash"})


def _prepare(
    event: Any, index: int, received_at: str, timestamps: dict[str, Optional[str]]
) -> PreparedEvent:
    if not isinstance(event, Mapping):
        raise InvalidEventError(
            index, "event", f"must be a JSON object, got {type(event).__name__}"
        )
    agent_id = _name(event, "agent_id", index, required=True)
    action = _name(event, "action", index, required=True)
    tool = _name(event, "tool", index, required=False)
    payload = _payload(event, index)
    payload_text, members = _canonical_payload(payload, index)
    event_id = _event_id(event, index)
    timestamp = _timestamp(event, payload, index, timestamps) or received_at
    severity = _severity(event, index)
    # The values of _COLUMN_FIELDS, in that order.
    columns = (
        event_id,
        agent_id,
        timestamp,
        received_at,
        action,
        tool,
        severity,
        _value_hash(payload, members, "input"),
        _value_hash(payload, members, "output"),
        _execution_result(action, payload),
        payload_text,
        "ok",
        _optional_text(event, "passport_id", index),
        _optional_text(event, "signature", index),
    )
    return PreparedEvent(agent_id, event_id, columns, _text_parts(columns))


def _text_parts(columns: tuple[Any, ...]) -> tuple[str, str, str]:
    """Return the record's canonical JSON, cut where the two chain values go.

    The columns are those of ``_COLUMN_FIELDS``: strings or None, and the
    payload as canonical JSON text. Canonical JSON sorts keys by UTF-16 code
    units, which for these ASCII field names is alphabetical order, and
    ``_check_text_parts`` compares the result with ``canonical_json`` when
    this module is imported.
    """
    (
        event_id,
        agent_id,
        timestamp,
        received_at,
        action,
        tool,
        severity,
        input_hash,
        output_hash,
        execution_result,
        payload_text,
        data_quality_flag,
        passport_id,
        signature,
    ) = columns
    quote = canonical_string
    head = (
        f'{{"action_type":{quote(action)},"agent_id":{quote(agent_id)},"chain_index":'
    )
    middle = (
        f',"data_quality_flag":{quote(data_quality_flag)}'
        f',"event_id":{quote(event_id)}'
        f',"execution_result":{quote(execution_result)}'
        f',"input_hash":{"null" if input_hash is None else quote(input_hash)}'
        f',"output_hash":{"null" if output_hash is None else quote(output_hash)}'
        f',"passport_id":{"null" if passport_id is None else quote(passport_id)}'
        f',"payload":{payload_text},"previous_event_hash":'
    )
    tail = (
        f',"server_received_at":{quote(received_at)}'
        f',"severity":{quote(severity)}'
        f',"signature":{"null" if signature is None else quote(signature)}'
        f',"timestamp":{quote(timestamp)}'
        f',"tool_invoked":{"null" if tool is None else quote(tool)}}}'
    )
    return head, middle, tail


def _check_text_parts() -> None:
    """Raise if ``_text_parts`` and ``seal`` disagree with ``canonical_json``.

    This guards against a change of ``FIELDS`` that ``_text_parts`` misses.
    """
    # Each field's value is its name, so a field written in the wrong place
    # changes the text. The payload is JSON text and one field is None.
    values: dict[str, Any] = {name: name for name in _COLUMN_FIELDS}
    values["payload"] = '{"a":1}'
    values["tool_invoked"] = None
    columns = tuple(values[name] for name in _COLUMN_FIELDS)
    event = PreparedEvent("agent_id", "event_id", columns, _text_parts(columns))
    row, event_hash = seal(event, 7, "previous")
    record = dict(zip(FIELDS, row))
    record["payload"] = json.loads(record["payload"])
    if event_hash != compute_event_hash(record):
        raise RuntimeError(
            "the record text of rankigi.ledger._record._text_parts does not match "
            "canonical_json of FIELDS; update _text_parts to the fields"
        )


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


def _timestamp(
    event: Mapping[str, Any],
    payload: Mapping[str, Any],
    index: int,
    timestamps: dict[str, Optional[str]],
) -> Any:
    occurred_at = event.get("occurred_at")
    if occurred_at is not None:
        normalized = _parse_timestamp(occurred_at, timestamps)
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
    if not isinstance(client_clock, str):
        return None
    return _parse_timestamp(client_clock, timestamps)


def _parse_timestamp(text: Any, timestamps: dict[str, Optional[str]]) -> Optional[str]:
    """Return ``parse_timestamp(text)``, remembered in ``timestamps``."""
    if type(text) is not str:
        return parse_timestamp(text)
    if text in timestamps:
        return timestamps[text]
    normalized = timestamps[text] = parse_timestamp(text)
    return normalized


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


def _canonical_payload(
    payload: dict[str, Any], index: int
) -> tuple[str, dict[str, str]]:
    """Return the payload's canonical JSON text and that of each member value.

    The text is also the payload's stored form. The payload is encoded at the
    depth it has inside a record, so a payload that passes here also passes
    when verification hashes the whole record. Verification parses the stored
    text and encodes it again, which gives this same text back. Canonical
    JSON is a fixed point of parsing and encoding, because it writes every
    float in a form that parses back to a value encoded the same way.
    """
    try:
        text, members = canonical_object(payload, depth=1)
        if not text.isascii():
            text.encode("utf-8")
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
    return text, members


def _value_hash(
    payload: Mapping[str, Any], members: Mapping[str, str], key: str
) -> str | None:
    # A value the server can see is hashed again here, so a client's claimed
    # hash is never stored in its place. In hash-only capture only the client's
    # hash travels, and it is kept when it looks like a SHA-256 hex digest.
    if key in members:
        return sha256_text(members[key])
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
    if value.isascii():
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidEventError(
            index,
            field,
            f"is not valid Unicode (contains a lone surrogate): {value!r:.80}",
        ) from exc


_check_text_parts()
