"""Building events in the caller's thread and finishing them on the worker.

Capture is split in two so the caller pays only for what must happen at call
time. ``EventFactory`` snapshots the values (serialize and redact) and stamps
the id and clock. ``finish_event``, run on the transport's thread, adds the
hashes and timestamps and applies hash-only capture.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any, Callable, Optional

from rankigi._canonical import canonical_json, sha256_hex
from rankigi._config import Config
from rankigi._context import Links, current_links
from rankigi._ids import format_timestamp, now_ns, uuid7
from rankigi._redact import DEFAULT_SECRET_KEYS, Redactor
from rankigi._serialize import Limits, serialize, serialize_exception
from rankigi._version import __version__

__all__ = ["SDK_TAG", "SEVERITIES", "EventFactory", "finish_event"]

logger = logging.getLogger("rankigi.events")

SDK_TAG = f"rankigi-python/{__version__}"
SEVERITIES = frozenset({"info", "warn", "critical"})

# Keys of the internal event fields that never leave the process.
_HASHED = "_hashed"  # payload keys whose values get a *_hash companion
_CLOCK = "_ns"  # capture time in nanoseconds, formatted on the worker

_warned_severities: set[str] = set()
MAX_NAME_LENGTH = 256  # the ledger's limit on agent, action and tool names


class EventFactory:
    """Snapshot captured values into events for one agent."""

    def __init__(self, config: Config) -> None:
        self.agent_id = config.agent_id
        self.hash_only = config.capture == "hash_only"
        self.limits = Limits(
            max_depth=config.max_depth,
            max_items=config.max_items,
            max_string=config.max_string_length,
        )
        self.redactor: Optional[Redactor] = None
        if config.redact:
            self.redactor = Redactor(DEFAULT_SECRET_KEYS + config.redact_keys)
        # Sources of event ids, capture times (ns since the epoch) and call
        # durations (seconds); rankigi.testing replaces them with fixed ones.
        self.new_id: Callable[[], str] = uuid7
        self.now_ns: Callable[[], int] = now_ns
        self.perf_counter: Callable[[], float] = time.perf_counter

    def capture(self, value: Any, redactor: Optional[Redactor] = None) -> Any:
        """Snapshot ``value`` with this client's limits and redaction."""
        return serialize(value, self.limits, redactor or self.redactor)

    def tool_call(
        self, tool: Any, input: Any, output: Any, severity: Any, **extra: Any
    ) -> dict[str, Any]:
        name = _name(tool, "unknown")
        payload = {
            "tool": name,
            "input": self.capture(input),
            "output": self.capture(output),
            **extra,
        }
        return self.event("tool_call", name, payload, severity, ("input", "output"))

    def agent_output(self, action: Any, output: Any, severity: Any) -> dict[str, Any]:
        payload = {"action": _name(action, "response"), "output": self.capture(output)}
        return self.event("response_generated", None, payload, severity, ("output",))

    def error(self, tool: Any, error: Any, severity: Any) -> dict[str, Any]:
        name = _optional_name(tool)
        if isinstance(error, BaseException):
            details = serialize_exception(error, self.limits)
        else:
            details = {"type": "", "message": self.capture(error), "traceback": ""}
            if not isinstance(details["message"], str):
                details["message"] = canonical_json(details["message"])
        payload = {
            "tool": name,
            "error_type": details["type"],
            "error_message": details["message"],
            "traceback": details["traceback"],
        }
        return self.event("error", name, payload, severity, ("error",))

    def custom(
        self, action: Any, tool: Any, payload: Any, severity: Any
    ) -> dict[str, Any]:
        name = _name(action, "custom")
        captured = self.capture({} if payload is None else payload)
        if not isinstance(captured, dict):
            # The wire format needs an object, so other values are wrapped.
            captured = {"value": captured}
        return self.event(name, _optional_name(tool), captured, severity, ())

    def event(
        self,
        action: str,
        tool: Optional[str],
        payload: dict[str, Any],
        severity: Any,
        hashed: tuple[str, ...],
        *,
        event_id: Optional[str] = None,
        links: Optional[Links] = None,
    ) -> dict[str, Any]:
        """Wrap ``payload`` in an event.

        ``event_id`` is a pre-made id, for callers that hand it to nested
        calls before the event exists. ``links`` is the parent event id and
        the run; None takes both from the current context. They are added to
        the payload as ``parent_event_id``, ``run_id`` and ``run_name`` when
        set, because the top level of the wire format is fixed.
        """
        parent_id, run = current_links() if links is None else links
        if parent_id is not None:
            payload["parent_event_id"] = parent_id
        if run is not None:
            payload["run_id"], payload["run_name"] = run
        payload["_sdk"] = SDK_TAG
        return {
            "event_id": event_id or self.new_id(),
            "agent_id": self.agent_id,
            "action": action,
            "tool": tool,
            "severity": _severity(severity),
            "payload": payload,
            _CLOCK: self.now_ns(),
            _HASHED: hashed,
        }


def finish_event(event: dict[str, Any], hash_only: bool) -> dict[str, Any]:
    """Add timestamps and hashes, applying hash-only capture, on the worker.

    Raises ``CanonicalError`` for a payload with no canonical form, which the
    serializer's limits should make impossible.
    """
    event["occurred_at"] = format_timestamp(event.pop(_CLOCK))
    payload = event["payload"]
    for key in event.pop(_HASHED):
        if key == "error":
            _hash_error(payload, hash_only)
            continue
        data = canonical_json(payload[key]).encode("utf-8")
        payload[f"{key}_hash"] = hashlib.sha256(data).hexdigest()
        if hash_only:
            del payload[key]
            payload[f"{key}_size"] = len(data)
    return event


def _hash_error(payload: dict[str, Any], hash_only: bool) -> None:
    value = {
        "error_type": payload["error_type"],
        "error_message": payload["error_message"],
    }
    payload["error_hash"] = sha256_hex(value)
    if hash_only:
        # The message and traceback can quote arguments, so only the type
        # and the hash leave the process.
        payload["error_message_size"] = len(payload.pop("error_message").encode())
        del payload["traceback"]


def _name(value: Any, default: str) -> str:
    """Turn a tool or action name of any type into text the ledger accepts.

    Names are cut to 256 characters, the ledger's limit; lone surrogates are
    replaced, since the hash encodes UTF-8; an empty name becomes ``default``.
    """
    if type(value) is not str:
        value = _text_of(value) if value is not None else ""
    if not value.isascii():
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value[:MAX_NAME_LENGTH] or default


def _optional_name(value: Any) -> Optional[str]:
    name = _name(value, "")
    return name or None


def _text_of(value: Any) -> str:
    try:
        name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
        return name if isinstance(name, str) else str(value)
    except Exception:
        return f"<{type(value).__name__}>"


def _severity(value: Any) -> str:
    # The type check comes first: an unhashable or hostile value must not
    # reach the set lookup.
    if type(value) is str and value in SEVERITIES:
        return value
    try:
        text = repr(value)[:40]
    except Exception:
        text = f"<{type(value).__name__}>"
    if text not in _warned_severities and len(_warned_severities) < 100:
        _warned_severities.add(text)
        logger.warning(
            "severity %s is not one of info, warn, critical; recording it as info",
            text,
        )
    return "info"
