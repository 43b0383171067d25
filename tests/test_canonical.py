"""Canonical JSON against the hosted service's vectors."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest

from rankigi._canonical import CanonicalError, canonical_json, sha256_hex

# A copy of the RANKIGI proxy's cross-language vectors, kept in the repository
# so the tests do not depend on files outside it.
VECTORS = Path(__file__).with_name("data") / "canonical_json.json"


def load_vectors() -> list[dict]:
    return json.loads(VECTORS.read_text(encoding="utf-8"))["vectors"]


@pytest.mark.parametrize("vector", load_vectors(), ids=lambda v: v["name"])
def test_vector_text_and_hash(vector: dict) -> None:
    text = canonical_json(vector["input"])

    assert text == vector["canonical"]
    assert sha256_hex(vector["input"]) == vector["sha256"]
    assert hashlib.sha256(text.encode()).hexdigest() == vector["sha256"]


def test_vectors_count() -> None:
    assert len(load_vectors()) == 8


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1e16, "10000000000000000"),
        (1.5e300, "15" + "0" * 299),
        (1e-7, "0.0000001"),
        (-2.5e-5, "-0.000025"),
        (123.456, "123.456"),
        (-0.0, "0"),
        (2.0**53, "9007199254740992"),
    ],
)
def test_numbers_never_use_exponent(value: float, expected: str) -> None:
    assert canonical_json(value) == expected


def test_keys_sorted_by_utf16_code_units() -> None:
    # U+1F600 is D83D DE00 in UTF-16, so it sorts before U+FFFF there,
    # although its code point is larger.
    value = {"\uffff": 1, "\U0001f600": 2, "a": 3}

    assert canonical_json(value) == '{"a":3,"\U0001f600":2,"\uffff":1}'


def test_non_ascii_written_raw() -> None:
    assert canonical_json({"k": "ünïcødé ✓"}) == '{"k":"ünïcødé ✓"}'


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_rejected(value: float) -> None:
    with pytest.raises(CanonicalError, match="NaN and infinities"):
        canonical_json({"x": value})


def test_depth_over_ten_rejected() -> None:
    ok: object = "leaf"
    for _ in range(10):
        ok = [ok]
    canonical_json(ok)

    with pytest.raises(CanonicalError, match="deeper than 10"):
        canonical_json([ok])


def test_non_string_key_rejected() -> None:
    with pytest.raises(CanonicalError, match="keys must be strings"):
        canonical_json({1: "x"})


def test_unsupported_type_named() -> None:
    with pytest.raises(CanonicalError, match="set"):
        canonical_json({"x": {1, 2}})
