"""Canonical JSON and SHA-256 hashing, matching the hosted RANKIGI service.

The rules: object keys sorted by UTF-16 code units; integral floats written as
integers; other numbers in the shortest round-trip decimal, never in exponent
notation; NaN and infinities rejected; only the JSON-mandated characters
escaped (control characters as lowercase ``\\u00xx``); no whitespace; UTF-8.
Containers nested deeper than ``MAX_DEPTH`` levels are rejected.
"""

from __future__ import annotations

import hashlib
import json
import math
from decimal import Decimal
from typing import Any, Callable

__all__ = [
    "MAX_DEPTH",
    "CanonicalError",
    "canonical_json",
    "canonical_object",
    "canonical_string",
    "sha256_hex",
    "sha256_text",
]

MAX_DEPTH = 10

# The C encoder escapes exactly the characters the canonical form escapes when
# ensure_ascii is off, so it does the string work in every path below.
_dumps = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
).encode
_encode_string = json.encoder.encode_basestring
# The canonical JSON text of a string, quotes included. A string with a lone
# surrogate gets text that cannot be encoded as UTF-8, so hashing it raises.
canonical_string: Callable[[str], str] = _encode_string
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
# The C encoder itself, without JSONEncoder.encode's Python layers; the
# arguments are JSONEncoder's for the settings above. CPython always has it.
_c_iterencode = (
    None
    if _c_make_encoder is None
    else _c_make_encoder(None, None, _encode_string, None, ":", ",", True, False, False)
)


# With OpenSSL 3, hashlib.sha256() looks the algorithm up on every call, which
# takes about as long as hashing a short text. Copying this unused object
# skips the lookup. It is never updated, so threads may copy it at once.
_SHA256 = hashlib.sha256()


def _dumps_plain(value: Any) -> str:
    if _c_iterencode is None:
        return _dumps(value)
    return "".join(_c_iterencode(value, 0))


class CanonicalError(ValueError):
    """Raised for a value that has no canonical JSON form."""


def canonical_json(value: Any) -> str:
    """Return the canonical JSON text of a JSON-compatible value.

    Raises:
        CanonicalError: for NaN, infinities, non-string keys, unsupported types
            or nesting deeper than ``MAX_DEPTH``.
    """
    if _is_plain(value, 0):
        return _dumps_plain(value)
    normalized, needs_slow_path = _normalize(value, 0)
    if needs_slow_path:
        return _encode(normalized)
    return _dumps(normalized)


def canonical_object(
    value: dict[str, Any], depth: int = 0
) -> tuple[str, dict[str, str]]:
    """Return the canonical JSON text of an object and of each member value.

    ``depth`` is the number of containers around the object in the value
    being encoded, which counts towards ``MAX_DEPTH``. The object's text
    equals what ``canonical_json`` writes for it at that depth. A member's
    text equals ``canonical_json`` of the member, so a caller can hash a
    member without encoding it again.

    Raises:
        CanonicalError: like ``canonical_json``, for the object at ``depth``.
    """
    if type(value) is dict and _is_plain(value, depth):
        members = {
            key: _encode_string(item) if type(item) is str else _dumps_plain(item)
            for key, item in value.items()
        }
        # _is_plain admits only keys that sort the same by code point as by
        # UTF-16 code unit, and the C encoder sorts by code point too.
        body = ",".join(
            [f"{_encode_string(key)}:{members[key]}" for key in sorted(members)]
        )
        return "{" + body + "}", members
    wrapped: Any = value
    for _ in range(depth):
        wrapped = [wrapped]
    text = canonical_json(wrapped)
    text = text[depth : len(text) - depth]
    return text, {key: canonical_json(item) for key, item in value.items()}


def sha256_hex(value: Any) -> str:
    """Return the lowercase hex SHA-256 of the canonical JSON of ``value``."""
    return sha256_text(canonical_json(value))


def sha256_text(text: str) -> str:
    """Return the lowercase hex SHA-256 of ``text`` encoded as UTF-8.

    Raises:
        UnicodeEncodeError: ``text`` contains a lone surrogate.
    """
    digest = _SHA256.copy()
    digest.update(text.encode("utf-8"))
    return digest.hexdigest()


def _is_plain(value: Any, depth: int) -> bool:
    """Return whether the C encoder writes ``value`` canonically as it is.

    True for dicts, lists, strings, ints, booleans and None within the depth
    limit, with keys the C encoder sorts correctly. This check allocates
    nothing, which makes it much cheaper than ``_normalize`` for the usual
    payload without floats.
    """
    kind = type(value)
    if kind is dict:
        if depth >= MAX_DEPTH:
            return False
        for key, item in value.items():
            if type(key) is not str or (not key.isascii() and max(key) > "\ud7ff"):
                return False
            item_kind = type(item)
            if (
                item_kind is str
                or item_kind is int
                or item is None
                or item_kind is bool
            ):
                continue
            if not _is_plain(item, depth + 1):
                return False
        return True
    if kind is list:
        if depth >= MAX_DEPTH:
            return False
        for item in value:
            item_kind = type(item)
            if (
                item_kind is str
                or item_kind is int
                or item is None
                or item_kind is bool
            ):
                continue
            if not _is_plain(item, depth + 1):
                return False
        return True
    return kind is str or kind is int or value is None or kind is bool


def _normalize(value: Any, depth: int) -> tuple[Any, bool]:
    """Turn integral floats into ints and check types and depth.

    Returns the normalized value and whether the C encoder would write it
    differently from the canonical form (exponent floats, key order).
    """
    if value is None or value is True or value is False or type(value) is str:
        return value, False
    if type(value) is int:
        return value, False
    if isinstance(value, float):
        return _normalize_float(value)
    if isinstance(value, dict):
        return _normalize_dict(value, depth + 1)
    if isinstance(value, (list, tuple)):
        return _normalize_list(value, depth + 1)
    if isinstance(value, (str, int)):  # subclasses such as enums or bool-likes
        return (str(value) if isinstance(value, str) else int(value)), False
    raise CanonicalError(
        f"cannot encode {type(value).__name__} value {value!r:.80}; "
        "pass JSON types only (dict, list, str, int, float, bool, None)"
    )


def _normalize_float(value: float) -> tuple[Any, bool]:
    if math.isnan(value) or math.isinf(value):
        raise CanonicalError(
            f"cannot encode {value!r}: NaN and infinities have no JSON form"
        )
    text = repr(value)
    if value.is_integer() and abs(value) < 1e16:
        return int(value), False
    if "e" in text or "E" in text:
        return _FixedFloat(text), True
    return value, False


def _normalize_dict(value: dict[Any, Any], depth: int) -> tuple[Any, bool]:
    _check_depth(depth)
    out = {}
    slow = False
    for key, item in value.items():
        if type(key) is not str:
            raise CanonicalError(
                f"cannot encode key {key!r:.80}: object keys must be strings"
            )
        # Code-point order and UTF-16 order differ only between characters
        # above U+D7FF, so only such keys need the hand-written encoder.
        if not slow and key and max(key) > "\ud7ff":
            slow = True
        out[key], item_slow = _normalize(item, depth)
        slow = slow or item_slow
    return out, slow


def _normalize_list(value: Any, depth: int) -> tuple[Any, bool]:
    _check_depth(depth)
    out = []
    slow = False
    for item in value:
        normalized, item_slow = _normalize(item, depth)
        out.append(normalized)
        slow = slow or item_slow
    return out, slow


def _check_depth(depth: int) -> None:
    if depth > MAX_DEPTH:
        raise CanonicalError(
            f"value nests deeper than {MAX_DEPTH} levels; "
            "cap the depth of captured values before hashing"
        )


class _FixedFloat(str):
    """A float already written in fixed notation by ``_normalize_float``."""


def _fixed_notation(text: str) -> str:
    # repr() already contains the shortest round-trip digits, and Decimal
    # only moves the point, so large integral floats keep those digits.
    digits = format(Decimal(text), "f")
    if "." in digits:
        digits = digits.rstrip("0").rstrip(".")
    return digits


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be")


def _encode(value: Any) -> str:
    """Encode a normalized value by hand, for the cases the C encoder gets wrong."""
    if isinstance(value, _FixedFloat):
        return _fixed_notation(value)
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda item: _utf16_key(item[0]))
        body = ",".join(f"{_encode_string(k)}:{_encode(v)}" for k, v in items)
        return "{" + body + "}"
    if isinstance(value, list):
        return "[" + ",".join(_encode(item) for item in value) + "]"
    return _dumps(value)
