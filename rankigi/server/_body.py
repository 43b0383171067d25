"""Reading and parsing ingest request bodies within the server's limits.

Every check here runs before anything is stored, so a body that fails one
leaves no trace in the ledger.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, NoReturn, Optional

from rankigi.server._errors import invalid_request, payload_too_large

__all__ = ["IngestBody", "check_content_type", "drain", "parse_ingest", "read_body"]

# When rejecting a body as too large, the server still reads up to this many
# times the limit before it responds. A client such as httpx writes the whole
# body before it reads the response, so it only sees the 413 (and splits its
# batch) if the server lets it finish writing; a larger body is cut off.
_DRAIN_FACTOR = 16


@dataclass(frozen=True)
class IngestBody:
    """The events of an ingest request and whether they came as a batch."""

    events: list[Any]
    batch: bool


def check_content_type(header: Optional[str]) -> None:
    """Raise a 415 unless the Content-Type is JSON (parameters allowed)."""
    media_type = (header or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        shown = header if header else "no Content-Type header"
        raise invalid_request(
            f"unsupported Content-Type {shown!r:.80}; send the body as JSON with "
            "'Content-Type: application/json'",
            status=415,
        )


async def read_body(
    chunks: AsyncIterator[bytes], content_length: Optional[str], limit: int
) -> bytes:
    """Return the request body, or raise a 413 if it is larger than ``limit``."""
    declared = _declared_length(content_length)
    if declared is not None and declared > limit:
        await drain(chunks, limit * _DRAIN_FACTOR)
        _too_large(f"{declared} bytes", limit)
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            await drain(chunks, limit * _DRAIN_FACTOR - len(body))
            _too_large(f"more than {limit} bytes", limit)
    return bytes(body)


async def drain(chunks: AsyncIterator[bytes], budget: int) -> None:
    """Read and discard up to ``budget`` more bytes of a body."""
    while budget > 0:
        try:
            chunk = await chunks.__anext__()
        except StopAsyncIteration:
            return
        budget -= len(chunk)


def parse_ingest(raw: bytes, max_events: int) -> IngestBody:
    """Parse an ingest body: one event object, or ``{"events": [...]}``.

    Raises:
        ApiError: 400 for a body that is not a JSON object of the right shape,
            413 for a batch of more than ``max_events`` events.
    """
    document = _parse_json(raw)
    if not isinstance(document, dict):
        raise invalid_request(
            f'the body must be a JSON object (one event, or {{"events": [...]}} '
            f"for a batch), got a JSON {_json_type(document)}"
        )
    if "events" not in document:
        return IngestBody([document], batch=False)
    events = document["events"]
    if not isinstance(events, list):
        raise invalid_request(
            f"events must be a JSON array of event objects, got a JSON "
            f"{_json_type(events)}",
            field="events",
        )
    if len(events) > max_events:
        raise payload_too_large(
            f"the batch has {len(events)} events, more than the limit of "
            f"{max_events}; send smaller batches"
        )
    return IngestBody(events, batch=True)


def _parse_json(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid_request(
            f"the body is not valid UTF-8 (byte {exc.start}); encode JSON as UTF-8"
        ) from exc
    if not text.strip():
        raise invalid_request("the body is empty; send a JSON event object")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise invalid_request(
            f"the body is not valid JSON: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno}"
        ) from exc
    except RecursionError as exc:
        raise invalid_request(
            "the body nests arrays or objects too deeply to parse; payloads may "
            "nest at most 10 levels"
        ) from exc


def _reject_constant(name: str) -> NoReturn:
    raise invalid_request(
        f"the body contains {name}, which JSON does not allow; send null or a "
        "string in its place"
    )


def _declared_length(header: Optional[str]) -> Optional[int]:
    if header is None:
        return None
    try:
        return int(header)
    except ValueError:
        return None


def _too_large(size: str, limit: int) -> NoReturn:
    raise payload_too_large(
        f"the body has {size}, more than the limit of {limit} bytes; send "
        "smaller batches or raise the server's --max-body-bytes"
    )


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "null" if value is None else "object"
