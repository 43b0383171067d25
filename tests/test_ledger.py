"""Tests for rankigi.ledger against real SQLite files."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import pytest

import rankigi.ledger as ledger_module
from rankigi._canonical import canonical_json, sha256_hex
from rankigi.ledger import (
    FIELDS,
    AppendResult,
    InvalidEventError,
    Ledger,
    LedgerError,
    LedgerNotFoundError,
    NotALedgerError,
    VerifyResult,
)

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "tests" / "data" / "rankigi-1.0.0-requests.jsonl"
HEX64 = re.compile(r"[0-9a-f]{64}")
UUID7 = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
)


def make_event(
    number: int = 0, agent_id: str = "agent-1", **fields: Any
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "agent_id": agent_id,
        "action": "tool_call",
        "tool": "search",
        "payload": {
            "input": {"query": f"q{number}"},
            "output": [number],
            "status": "ok",
        },
    }
    event.update(fields)
    return event


def sql(path: Path, statement: str, *parameters: Any) -> list[Any]:
    """Run one statement on the file with plain sqlite3, as an editor would."""
    with contextlib.closing(sqlite3.connect(path)) as database:
        rows = database.execute(statement, parameters).fetchall()
        database.commit()
    return rows


def edit_event(path: Path, column: str, value: Any, index: int = 3) -> None:
    """Set one column of agent-1's event at ``index``."""
    where = "agent_id = 'agent-1' AND chain_index = ?"
    sql(path, f"UPDATE events SET {column} = ? WHERE {where}", value, index)


def verify(path: Path, agent_id: str = "agent-1") -> VerifyResult:
    with Ledger(path, create=False) as ledger:
        return ledger.verify(agent_id)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def ledger(path: Path) -> Any:
    with Ledger(path) as opened:
        yield opened


# -- appending and the stored record ----------------------------------------


def test_append_links_chain(ledger: Ledger) -> None:
    results = ledger.append([make_event(i) for i in range(3)])
    assert [r.chain_index for r in results] == [0, 1, 2]
    assert results[0].previous_event_hash == ""
    assert results[1].previous_event_hash == results[0].event_hash
    assert results[2].previous_event_hash == results[1].event_hash
    assert all(HEX64.fullmatch(r.event_hash) for r in results)
    assert not any(r.duplicate for r in results)
    assert ledger.head("agent-1") == (2, results[2].event_hash)


def test_append_continues_across_calls(ledger: Ledger) -> None:
    first = ledger.append([make_event(0)])[0]
    second = ledger.append([make_event(1)])[0]
    assert second.chain_index == 1
    assert second.previous_event_hash == first.event_hash


def test_append_empty_batch(ledger: Ledger) -> None:
    assert ledger.append([]) == []
    assert ledger.agents() == []


def test_event_hash_matches_protocol(ledger: Ledger) -> None:
    ledger.append([make_event(i, severity="warn") for i in range(3)])
    for record in ledger.events("agent-1"):
        assert list(record) == list(FIELDS)
        without_hash = {k: v for k, v in record.items() if k != "event_hash"}
        assert record["event_hash"] == sha256_hex(without_hash)


def test_record_fields_from_wire_event(ledger: Ledger) -> None:
    event = make_event(
        event_id="evt-1",
        severity="critical",
        occurred_at="2026-01-02T03:04:05.678901+02:00",
        passport_id="passport-1",
        signature="c2lnbmF0dXJl",
    )
    result = ledger.append([event], received_at="2026-05-06T07:08:09Z")[0]
    record = ledger.events("agent-1")[0]
    assert record["event_id"] == "evt-1" == result.event_id
    assert record["agent_id"] == "agent-1"
    assert record["chain_index"] == 0
    assert record["previous_event_hash"] == ""
    assert record["event_hash"] == result.event_hash
    assert record["timestamp"] == "2026-01-02T01:04:05.678Z"
    assert record["server_received_at"] == "2026-05-06T07:08:09.000Z"
    assert record["action_type"] == "tool_call"
    assert record["tool_invoked"] == "search"
    assert record["severity"] == "critical"
    assert record["input_hash"] == sha256_hex({"query": "q0"})
    assert record["output_hash"] == sha256_hex([0])
    assert record["execution_result"] == "success"
    assert record["payload"] == event["payload"]
    assert record["data_quality_flag"] == "ok"
    assert record["passport_id"] == "passport-1"
    assert record["signature"] == "c2lnbmF0dXJl"


def test_optional_fields_default(ledger: Ledger) -> None:
    ledger.append([{"agent_id": "a", "action": "note", "payload": {}}])
    record = ledger.events("a")[0]
    assert UUID7.fullmatch(record["event_id"])
    assert record["tool_invoked"] is None
    assert record["severity"] == "info"
    assert record["input_hash"] is None
    assert record["output_hash"] is None
    assert record["execution_result"] == "unknown"
    assert record["passport_id"] is None
    assert record["signature"] is None
    assert record["timestamp"] == record["server_received_at"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["timestamp"])


def test_payload_stored_as_canonical_json(ledger: Ledger, path: Path) -> None:
    payload = {"b": 1.0, "a": "é", "c": [1.5, None, True]}
    ledger.append([make_event(payload=payload)])
    [(text,)] = sql(path, "SELECT payload FROM events")
    assert text == canonical_json(payload)
    assert text == '{"a":"é","b":1,"c":[1.5,null,true]}'


@pytest.mark.parametrize(
    ("occurred_at", "client_clock", "expected"),
    [
        (
            "2026-03-04T05:06:07.891Z",
            "2026-01-01T00:00:00+00:00",
            "2026-03-04T05:06:07.891Z",
        ),
        (None, "2026-12-04T15:59:29.363359+00:00", "2026-12-04T15:59:29.363Z"),
        (None, "not a time", "2026-07-01T00:00:00.000Z"),
        (None, 12345, "2026-07-01T00:00:00.000Z"),
        (None, None, "2026-07-01T00:00:00.000Z"),
    ],
)
def test_timestamp_sources(
    ledger: Ledger, occurred_at: Any, client_clock: Any, expected: str
) -> None:
    payload: dict[str, Any] = {} if client_clock is None else {"_ts": client_clock}
    event = make_event(payload=payload)
    if occurred_at is not None:
        event["occurred_at"] = occurred_at
    ledger.append([event], received_at="2026-07-01T00:00:00Z")
    assert ledger.events("agent-1")[0]["timestamp"] == expected


def test_invalid_received_at_rejected(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="received_at 'noon'"):
        ledger.append([make_event()], received_at="noon")
    assert ledger.agents() == []


@pytest.mark.parametrize(
    ("severity", "stored"),
    [
        ("info", "info"),
        ("warn", "warn"),
        ("critical", "critical"),
        ("error", "info"),
        ("WARN", "info"),
        (None, "info"),
    ],
)
def test_severity_mapping(ledger: Ledger, severity: Any, stored: str) -> None:
    ledger.append([make_event(severity=severity)])
    assert ledger.events("agent-1")[0]["severity"] == stored


def test_hashes_recomputed_not_trusted(ledger: Ledger) -> None:
    payload = {
        "input": {"q": "ü"},
        "output": "answer",
        "input_hash": "f" * 64,
        "output_hash": "e" * 64,
    }
    ledger.append([make_event(payload=payload)])
    record = ledger.events("agent-1")[0]
    assert record["input_hash"] == sha256_hex({"q": "ü"})
    assert record["output_hash"] == sha256_hex("answer")


def test_hash_only_capture_keeps_client_hashes(ledger: Ledger) -> None:
    payload = {"input_hash": "A" * 64, "output_hash": "b" * 64, "input_size": 3}
    ledger.append([make_event(payload=payload)])
    record = ledger.events("agent-1")[0]
    assert record["input_hash"] == "a" * 64
    assert record["output_hash"] == "b" * 64


@pytest.mark.parametrize("claimed", ["xyz", "a" * 63, "g" * 64, 12, None])
def test_invalid_client_hash_dropped(ledger: Ledger, claimed: Any) -> None:
    ledger.append([make_event(payload={"input_hash": claimed})])
    assert ledger.events("agent-1")[0]["input_hash"] is None


@pytest.mark.parametrize(
    ("action", "status", "expected"),
    [
        ("error", None, "error"),
        ("error", "ok", "error"),
        ("tool_call", "error", "error"),
        ("tool_call", "ok", "success"),
        ("tool_call", None, "unknown"),
        ("tool_call", "pending", "unknown"),
    ],
)
def test_execution_result(
    ledger: Ledger, action: str, status: Any, expected: str
) -> None:
    payload = {} if status is None else {"status": status}
    ledger.append([make_event(action=action, payload=payload)])
    assert ledger.events("agent-1")[0]["execution_result"] == expected


def test_intent_stored_in_payload(ledger: Ledger) -> None:
    intent = {"reasoning": "00:11:AA==", "intent_hash": "c" * 64}
    ledger.append([make_event(payload={"k": 1}, intent=intent)])
    record = ledger.events("agent-1")[0]
    assert record["payload"] == {"k": 1, "_intent": intent}
    assert ledger.verify("agent-1").valid


def test_append_does_not_mutate_input(ledger: Ledger) -> None:
    event = make_event(intent={"reasoning": "r", "intent_hash": "h"})
    snapshot = json.loads(json.dumps(event))
    ledger.append([event])
    assert event == snapshot


def test_agents_get_separate_chains(ledger: Ledger) -> None:
    batch = [
        make_event(0, "a"),
        make_event(1, "b"),
        make_event(2, "a"),
        make_event(3, "c"),
    ]
    results = ledger.append(batch)
    assert [r.chain_index for r in results] == [0, 0, 1, 0]
    assert results[2].previous_event_hash == results[0].event_hash
    assert ledger.agents() == ["a", "b", "c"]
    assert all(result.valid for result in ledger.verify_all())


# -- idempotency --------------------------------------------------------------


def test_duplicate_returns_stored_result(ledger: Ledger) -> None:
    first = ledger.append([make_event(event_id="evt-1")])[0]
    again = ledger.append([make_event(event_id="evt-1")])[0]
    assert again.duplicate
    assert again.event_id == first.event_id
    assert again.chain_index == first.chain_index
    assert again.event_hash == first.event_hash
    assert again.previous_event_hash == first.previous_event_hash
    assert len(ledger.events("agent-1")) == 1


def test_duplicate_with_other_content_stores_nothing(ledger: Ledger) -> None:
    first = ledger.append([make_event(1, event_id="evt-1")])[0]
    again = ledger.append([make_event(2, event_id="evt-1", action="changed")])[0]
    assert again.duplicate
    assert again.event_hash == first.event_hash
    [record] = ledger.events("agent-1")
    assert record["action_type"] == "tool_call"


def test_duplicate_within_batch(ledger: Ledger) -> None:
    batch = [
        make_event(0, event_id="e0"),
        make_event(1, event_id="e1"),
        make_event(0, event_id="e0"),
        make_event(2, event_id="e2"),
    ]
    results = ledger.append(batch)
    assert [r.duplicate for r in results] == [False, False, True, False]
    assert [r.chain_index for r in results] == [0, 1, 0, 2]
    assert results[2].event_hash == results[0].event_hash
    assert len(ledger.events("agent-1")) == 3
    assert ledger.verify("agent-1").valid


def test_duplicate_mixed_with_new_events(ledger: Ledger) -> None:
    ledger.append([make_event(0, event_id="e0")])
    results = ledger.append(
        [make_event(0, event_id="e0"), make_event(1, event_id="e1")]
    )
    assert [r.duplicate for r in results] == [True, False]
    assert [r.chain_index for r in results] == [0, 1]


def test_same_event_id_other_agent_stored(ledger: Ledger) -> None:
    results = ledger.append(
        [make_event(0, "a", event_id="x"), make_event(0, "b", event_id="x")]
    )
    assert [r.duplicate for r in results] == [False, False]
    assert ledger.agents() == ["a", "b"]


def test_append_result_as_dict(ledger: Ledger) -> None:
    fresh = ledger.append([make_event(event_id="e0")])[0]
    duplicate = ledger.append([make_event(event_id="e0")])[0]
    body = fresh.as_dict()
    assert body == {
        "ok": True,
        "event_id": "e0",
        "chain_index": 0,
        "event_hash": fresh.event_hash,
        "previous_event_hash": "",
    }
    assert duplicate.as_dict() == {**body, "duplicate": True}
    assert isinstance(fresh, AppendResult)


# -- validation and atomic batches -------------------------------------------


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels):
        value = {"a": value}
    return value


INVALID_EVENTS: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("no agent_id", lambda e: e.pop("agent_id"), "agent_id"),
    ("empty agent_id", lambda e: e.update(agent_id=""), "agent_id"),
    ("long agent_id", lambda e: e.update(agent_id="a" * 257), "agent_id"),
    ("int agent_id", lambda e: e.update(agent_id=7), "agent_id"),
    ("no action", lambda e: e.pop("action"), "action"),
    ("list action", lambda e: e.update(action=["x"]), "action"),
    ("int tool", lambda e: e.update(tool=5), "tool"),
    ("long tool", lambda e: e.update(tool="t" * 257), "tool"),
    ("no payload", lambda e: e.pop("payload"), "payload"),
    ("list payload", lambda e: e.update(payload=[1]), "payload"),
    ("nan in payload", lambda e: e.update(payload={"x": float("nan")}), "payload"),
    ("set in payload", lambda e: e.update(payload={"x": {1}}), "payload"),
    ("int key in payload", lambda e: e.update(payload={1: "x"}), "payload"),
    ("deep payload", lambda e: e.update(payload=_deep(9)), "payload"),
    ("surrogate in payload", lambda e: e.update(payload={"x": "\ud800"}), "payload"),
    ("surrogate in agent_id", lambda e: e.update(agent_id="a\udcff"), "agent_id"),
    ("long event_id", lambda e: e.update(event_id="e" * 65), "event_id"),
    ("empty event_id", lambda e: e.update(event_id=""), "event_id"),
    ("int event_id", lambda e: e.update(event_id=5), "event_id"),
    ("int severity", lambda e: e.update(severity=3), "severity"),
    ("bad occurred_at", lambda e: e.update(occurred_at="yesterday"), "occurred_at"),
    (
        "naive occurred_at",
        lambda e: e.update(occurred_at="2026-01-01T00:00:00"),
        "occurred_at",
    ),
    ("int occurred_at", lambda e: e.update(occurred_at=1700000000), "occurred_at"),
    ("int passport_id", lambda e: e.update(passport_id=5), "passport_id"),
    ("list signature", lambda e: e.update(signature=["x"]), "signature"),
    ("text intent", lambda e: e.update(intent="secret"), "intent"),
    (
        "intent and _intent",
        lambda e: e.update(intent={"reasoning": "r"}, payload={"_intent": 1}),
        "payload",
    ),
]


@pytest.mark.parametrize(
    ("modify", "field"),
    [case[1:] for case in INVALID_EVENTS],
    ids=[case[0] for case in INVALID_EVENTS],
)
def test_invalid_event_rejected(
    ledger: Ledger, modify: Callable[[dict[str, Any]], Any], field: str
) -> None:
    bad = make_event(1)
    modify(bad)
    with pytest.raises(InvalidEventError) as caught:
        ledger.append([make_event(0), bad, make_event(2)])
    assert caught.value.index == 1
    assert caught.value.field == field
    assert str(caught.value).startswith(f"event 1: {field} ")
    assert isinstance(caught.value, ValueError)
    assert ledger.agents() == []


def test_non_mapping_event_rejected(ledger: Ledger) -> None:
    with pytest.raises(InvalidEventError, match="event 0: event must be a JSON object"):
        ledger.append(["not an event"])  # type: ignore[list-item]


def test_single_event_not_in_list_rejected(ledger: Ledger) -> None:
    with pytest.raises(TypeError, match="wrap a single event in a list"):
        ledger.append(make_event())  # type: ignore[arg-type]


def test_payload_depth_limit(ledger: Ledger) -> None:
    ledger.append([make_event(payload=_deep(8))])
    assert ledger.verify("agent-1").valid
    with pytest.raises(InvalidEventError, match="nests deeper"):
        ledger.append([make_event(payload=_deep(9))])


def test_batch_with_invalid_third_event_stores_nothing(ledger: Ledger) -> None:
    ledger.append([make_event(0)])
    batch = [
        make_event(1),
        make_event(2, "other"),
        make_event(3, action=""),
        make_event(4),
    ]
    with pytest.raises(InvalidEventError) as caught:
        ledger.append(batch)
    assert caught.value.index == 2
    assert "action" in str(caught.value)
    assert len(ledger.events()) == 1
    assert ledger.agents() == ["agent-1"]
    assert ledger.head("agent-1") == (0, ledger.events("agent-1")[0]["event_hash"])


def test_failed_write_rolls_back_batch(ledger: Ledger, path: Path) -> None:
    ledger.append([make_event(0, "x")])
    # Without its head record, the next append to "x" collides with index 0.
    sql(path, "DELETE FROM heads WHERE agent_id = 'x'")
    with pytest.raises(LedgerError, match="chain index 0") as caught:
        ledger.append([make_event(0, "y"), make_event(1, "x")])
    assert "rankigi verify" in str(caught.value)
    assert ledger.events("y") == []
    assert ledger.head("y") is None


# -- published 1.0.0 client, unicode, size -----------------------------------


def test_vector_requests_stored(ledger: Ledger) -> None:
    bodies = [
        json.loads(json.loads(line)["body"])
        for line in VECTORS.read_text().splitlines()
    ]
    assert len(bodies) == 4
    for body in bodies:
        ledger.append([body])
    agent_id = bodies[0]["agent_id"]
    records = ledger.events(agent_id)
    assert len(records) == 4
    result = ledger.verify(agent_id)
    assert result.valid
    assert result.event_count == 4
    assert [r["action_type"] for r in records] == [b["action"] for b in bodies]
    assert [r["severity"] for r in records] == [b["severity"] for b in bodies]
    assert records[0]["timestamp"] == "2026-12-04T15:59:29.363Z"
    assert records[0]["tool_invoked"] == "web_search"
    assert records[0]["input_hash"] == bodies[0]["payload"]["input_hash"]
    assert records[0]["payload"]["_intent"] == bodies[0]["intent"]
    assert records[0]["passport_id"] == bodies[0]["passport_id"]
    assert records[0]["signature"] == bodies[0]["signature"]
    assert records[2]["execution_result"] == "error"


def test_vector_requests_as_one_batch(ledger: Ledger) -> None:
    bodies = [
        json.loads(json.loads(line)["body"])
        for line in VECTORS.read_text().splitlines()
    ]
    results = ledger.append(bodies)
    assert [r.chain_index for r in results] == [0, 1, 2, 3]
    assert ledger.verify(bodies[0]["agent_id"]).valid


def test_unicode_round_trip(ledger: Ledger) -> None:
    payload = {
        "é": "naïve café",
        "😀": ["🤖", "日本語", "\u0000\u001f\u007f", 'quote " backslash \\'],
        "\ue000": "private use sorts after the astral key in UTF-16",
        "nested": {"Ω": {"ß": "\u2028\u2029"}},
    }
    event = make_event(agent_id="агент-🤖", action="呼叫", tool="検索", payload=payload)
    ledger.append([event])
    [record] = ledger.events("агент-🤖")
    assert record["payload"] == payload
    assert record["action_type"] == "呼叫"
    assert ledger.verify("агент-🤖").valid
    assert ledger.agents() == ["агент-🤖"]


def test_large_payload(ledger: Ledger) -> None:
    payload = {"blob": "x" * 3_000_000, "items": list(range(50_000)), "float": 0.1}
    ledger.append([make_event(payload=payload), make_event(1)])
    [record, _] = ledger.events("agent-1")
    assert record["payload"] == payload
    assert ledger.verify("agent-1").valid


# -- reading -----------------------------------------------------------------


@pytest.fixture
def mixed(ledger: Ledger) -> Ledger:
    ledger.append(
        [
            make_event(0, "a", severity="warn"),
            make_event(1, "b", action="error", tool=None),
            make_event(2, "a", tool="fetch"),
            make_event(3, "a", severity="warn"),
            make_event(4, "b"),
        ]
    )
    return ledger


def test_events_filters(mixed: Ledger) -> None:
    assert len(mixed.events()) == 5
    assert [r["chain_index"] for r in mixed.events("a")] == [0, 1, 2]
    assert len(mixed.events(action="error")) == 1
    assert [r["agent_id"] for r in mixed.events(tool="fetch")] == ["a"]
    assert len(mixed.events("a", severity="warn")) == 2
    assert mixed.events("nobody") == []


def test_events_order_and_paging(mixed: Ledger) -> None:
    stored = [(r["agent_id"], r["chain_index"]) for r in mixed.events()]
    assert stored == [("a", 0), ("b", 0), ("a", 1), ("a", 2), ("b", 1)]
    newest = [
        (r["agent_id"], r["chain_index"]) for r in mixed.events(newest_first=True)
    ]
    assert newest == stored[::-1]
    assert [r["chain_index"] for r in mixed.events("a", after=0)] == [1, 2]
    assert [r["chain_index"] for r in mixed.events("a", after=0, limit=1)] == [1]
    assert [
        r["chain_index"] for r in mixed.events("a", newest_first=True, limit=2)
    ] == [2, 1]
    assert mixed.events(limit=0) == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"after": 1}, "needs agent_id"),
        ({"agent_id": "a", "after": "1"}, "after must be"),
        ({"limit": -1}, "limit must be"),
        ({"limit": 2.5}, "limit must be"),
    ],
)
def test_events_invalid_arguments(mixed: Ledger, arguments: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mixed.events(**arguments)


def test_head_and_agents(mixed: Ledger) -> None:
    assert mixed.agents() == ["a", "b"]
    assert mixed.head("a") == (2, mixed.events("a")[-1]["event_hash"])
    assert mixed.head("nobody") is None


def test_verify_empty_agent(ledger: Ledger) -> None:
    result = ledger.verify("nobody")
    assert result == VerifyResult(True, "nobody", 0, None, None, None)
    assert ledger.verify_all() == []


def test_verify_result_as_dict(mixed: Ledger) -> None:
    body = mixed.verify("a").as_dict()
    assert body == {
        "valid": True,
        "agent_id": "a",
        "event_count": 3,
        "head_hash": mixed.head("a")[1],  # type: ignore[index]
        "broken_at": None,
        "reason": None,
    }


# -- opening files -----------------------------------------------------------


def test_create_makes_parent_directories(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "ledger.db"
    with Ledger(target) as ledger:
        assert ledger.path == target
    assert sql(target, "SELECT value FROM meta WHERE key = 'format'") == [
        ("rankigi-ledger",)
    ]
    assert sql(target, "PRAGMA journal_mode") == [("wal",)]
    assert sorted(p.name for p in target.parent.iterdir()) == ["ledger.db"]


def test_relative_path_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with Ledger("sub/ledger.db") as ledger:
        assert ledger.path == tmp_path / "sub" / "ledger.db"


def test_reopen_keeps_events(path: Path) -> None:
    with Ledger(path) as ledger:
        ledger.append([make_event(0)])
    with Ledger(path, create=False) as ledger:
        result = ledger.append([make_event(1)])[0]
        assert result.chain_index == 1
        assert ledger.verify("agent-1").event_count == 2


def test_missing_file_without_create(path: Path) -> None:
    with pytest.raises(LedgerNotFoundError) as caught:
        Ledger(path, create=False)
    assert caught.value.path == str(path)
    assert str(path) in str(caught.value)
    assert not path.exists()


def test_text_file_is_not_a_ledger(path: Path) -> None:
    path.write_text("hello\n")
    with pytest.raises(NotALedgerError) as caught:
        Ledger(path)
    message = str(caught.value)
    assert str(path) in message
    assert "not an SQLite database" in message
    assert "\n" not in message
    assert path.read_text() == "hello\n"


def test_empty_file_is_not_a_ledger(path: Path) -> None:
    path.touch()
    with pytest.raises(NotALedgerError, match="empty"):
        Ledger(path)
    assert path.stat().st_size == 0


def test_other_sqlite_database_untouched(path: Path) -> None:
    sql(path, "CREATE TABLE notes (body TEXT)")
    before = path.read_bytes()
    with pytest.raises(NotALedgerError, match="without a rankigi meta table") as caught:
        Ledger(path)
    assert caught.value.path == str(path)
    assert path.read_bytes() == before
    assert sql(path, "PRAGMA journal_mode") == [("delete",)]


def test_meta_of_other_format(path: Path) -> None:
    sql(path, "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    sql(path, "INSERT INTO meta VALUES ('format', 'other-app')")
    with pytest.raises(NotALedgerError, match="'other-app'"):
        Ledger(path)


def test_newer_schema_version(path: Path) -> None:
    Ledger(path).close()
    sql(path, "UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(LedgerError, match="upgrade rankigi") as caught:
        Ledger(path)
    assert not isinstance(caught.value, NotALedgerError)


def test_directory_is_not_a_ledger(tmp_path: Path) -> None:
    with pytest.raises(NotALedgerError, match="directory"):
        Ledger(tmp_path)


def test_close_is_idempotent(path: Path) -> None:
    ledger = Ledger(path)
    ledger.close()
    ledger.close()
    assert "closed" in repr(ledger)
    with pytest.raises(LedgerError, match="is closed"):
        ledger.append([make_event()])


@pytest.mark.parametrize("timeout", [-1, float("nan")])
def test_invalid_busy_timeout(path: Path, timeout: float) -> None:
    with pytest.raises(ValueError, match="busy_timeout"):
        Ledger(path, busy_timeout=timeout)


def test_public_names() -> None:
    expected = {
        "AppendResult",
        "InvalidEventError",
        "Ledger",
        "LedgerError",
        "LedgerNotFoundError",
        "NotALedgerError",
        "VerifyResult",
    }
    assert expected <= set(ledger_module.__all__)
    for name in ledger_module.__all__:
        assert hasattr(ledger_module, name)
    assert issubclass(NotALedgerError, LedgerError)
    assert issubclass(LedgerNotFoundError, LedgerError)
    assert issubclass(InvalidEventError, LedgerError)


# -- tampering ---------------------------------------------------------------

CHAIN_LENGTH = 6


@pytest.fixture
def chain(path: Path) -> Path:
    """A closed ledger: 6 events of agent-1 with every column filled, 3 of agent-2."""
    events = [
        make_event(
            i,
            event_id=f"evt-{i}",
            severity="warn",
            occurred_at=f"2026-01-01T00:00:0{i}.000Z",
            passport_id="passport-1",
            signature=f"sig-{i}",
            payload={"input": {"q": i}, "output": {"a": [i, "x"]}, "status": "ok"},
        )
        for i in range(CHAIN_LENGTH)
    ]
    with Ledger(path) as ledger:
        ledger.append(events[:3])
        ledger.append([make_event(i, "agent-2") for i in range(3)])
        ledger.append(events[3:])
    return path


def _forged_payload() -> str:
    return canonical_json(
        {"input": {"q": 3}, "output": {"a": [3, "y"]}, "status": "ok"}
    )


# Every column of the events table, with a forged value and the check that
# must catch it.
COLUMN_EDITS: list[tuple[str, Any, str]] = [
    ("event_id", "evt-forged", "hash mismatch"),
    ("agent_id", "agent-3", "index gap: expected 3, found 4"),
    ("chain_index", 99, "index gap: expected 3, found 4"),
    ("previous_event_hash", "0" * 64, "broken link"),
    ("event_hash", "0" * 64, "hash mismatch"),
    ("timestamp", "2020-01-01T00:00:00.000Z", "hash mismatch"),
    ("server_received_at", "2020-01-01T00:00:00.000Z", "hash mismatch"),
    ("action_type", "response_generated", "hash mismatch"),
    ("tool_invoked", "delete_everything", "hash mismatch"),
    ("severity", "info", "hash mismatch"),
    ("input_hash", "1" * 64, "hash mismatch"),
    ("output_hash", "2" * 64, "hash mismatch"),
    ("execution_result", "error", "hash mismatch"),
    ("payload", _forged_payload(), "hash mismatch"),
    ("data_quality_flag", "unverified", "hash mismatch"),
    ("passport_id", "passport-2", "hash mismatch"),
    ("signature", "sig-forged", "hash mismatch"),
]


def test_column_edits_cover_every_column(chain: Path) -> None:
    columns = [row[1] for row in sql(chain, "PRAGMA table_info(events)")]
    assert columns == list(FIELDS)
    assert [edit[0] for edit in COLUMN_EDITS] == columns


@pytest.mark.parametrize(
    ("column", "value", "reason"), COLUMN_EDITS, ids=[edit[0] for edit in COLUMN_EDITS]
)
def test_column_edit_detected(
    chain: Path, column: str, value: Any, reason: str
) -> None:
    edit_event(chain, column, value)
    result = verify(chain)
    assert not result.valid
    assert result.broken_at == 3
    assert result.reason is not None
    assert result.reason.startswith(reason)
    assert result.head_hash is None
    assert verify(chain, "agent-2").valid


@pytest.mark.parametrize("index", [0, CHAIN_LENGTH - 1])
@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("payload", '{"input":{"q":0},"output":{"a":[9,"x"]},"status":"ok"}'),
        ("severity", "critical"),
        ("timestamp", "2030-01-01T00:00:00.000Z"),
        ("tool_invoked", None),
        ("signature", None),
    ],
)
def test_edit_at_chain_ends_detected(
    chain: Path, index: int, column: str, value: Any
) -> None:
    edit_event(chain, column, value, index)
    result = verify(chain)
    assert result.broken_at == index
    assert result.reason is not None
    assert result.reason.startswith("hash mismatch")


@pytest.mark.parametrize(
    "payload",
    [
        '{"input":{"q":3},"output":{"a":[3,"x"]},"status":"ok","extra":1}',
        '{"input":{"q":3},"output":{"a":[3,"x"]}}',
        '{"input":{"q":3.5},"output":{"a":[3,"x"]},"status":"ok"}',
        "not json",
        "",
    ],
)
def test_payload_content_edit_detected(chain: Path, payload: str) -> None:
    edit_event(chain, "payload", payload)
    result = verify(chain)
    assert result.broken_at == 3
    assert result.reason is not None
    assert result.reason.startswith("hash mismatch")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        # Text sorts after every number in SQLite, so row 4 comes third.
        ("three", "index gap: expected 3, found 4"),
        (3.5, "index gap: expected 3, found 3.5"),
        (b"\x03", "index gap"),
    ],
)
def test_chain_index_of_other_type_detected(
    chain: Path, value: Any, reason: str
) -> None:
    edit_event(chain, "chain_index", value)
    result = verify(chain)
    assert result.broken_at == 3
    assert result.reason is not None
    assert result.reason.startswith(reason)


def test_invalid_utf8_detected(chain: Path) -> None:
    sql(
        chain,
        "UPDATE events SET action_type = CAST(X'ff' AS TEXT) "
        "WHERE agent_id = 'agent-1' AND chain_index = 3",
    )
    result = verify(chain)
    assert result.broken_at == 3
    assert result.reason == "hash mismatch: a stored field is not valid UTF-8"


def test_blob_value_detected(chain: Path) -> None:
    edit_event(chain, "severity", b"\x00")
    result = verify(chain)
    assert result.broken_at == 3
    assert result.reason is not None
    assert "no canonical JSON form" in result.reason


@pytest.mark.parametrize(
    ("deleted", "reason"),
    [
        (0, "index gap: expected 0, found 1"),
        (2, "index gap: expected 2, found 3"),
        (CHAIN_LENGTH - 2, "index gap: expected 4, found 5"),
        (CHAIN_LENGTH - 1, "missing events: the chain ends at index 4"),
    ],
    ids=["first", "middle", "last-but-one", "last"],
)
def test_deleted_event_detected(chain: Path, deleted: int, reason: str) -> None:
    sql(
        chain,
        "DELETE FROM events WHERE agent_id = 'agent-1' AND chain_index = ?",
        deleted,
    )
    result = verify(chain)
    assert not result.valid
    assert result.broken_at == deleted
    assert result.reason is not None
    assert result.reason.startswith(reason)
    assert result.event_count == CHAIN_LENGTH - 1


def test_all_events_deleted_detected(chain: Path) -> None:
    sql(chain, "DELETE FROM events WHERE agent_id = 'agent-1'")
    with Ledger(chain) as ledger:
        assert ledger.agents() == ["agent-1", "agent-2"]
        result = ledger.verify("agent-1")
    assert result.broken_at == 0
    assert result.reason is not None
    assert result.reason.startswith("missing events")


def _shift_from(path: Path, start: int) -> None:
    """Renumber agent-1's events from ``start`` up by one, as an editor would."""
    where = "agent_id = 'agent-1' AND chain_index >= ?"
    sql(
        path, f"UPDATE events SET chain_index = -chain_index - 100 WHERE {where}", start
    )
    sql(
        path,
        "UPDATE events SET chain_index = -chain_index - 99 "
        "WHERE agent_id = 'agent-1' AND chain_index < 0",
    )


def _forge_after(path: Path, index: int, previous_hash: str) -> dict[str, Any]:
    """Return a record at ``index`` that links to ``previous_hash`` and hashes right."""
    with Ledger(path) as ledger:
        record = dict(ledger.events("agent-1")[0])
    record.update(
        event_id="evt-forged",
        chain_index=index,
        previous_event_hash=previous_hash,
        action_type="forged",
    )
    record["event_hash"] = sha256_hex(
        {k: v for k, v in record.items() if k != "event_hash"}
    )
    record["payload"] = canonical_json(record["payload"])
    return record


def _insert(path: Path, record: dict[str, Any]) -> None:
    columns = ", ".join(record)
    marks = ", ".join("?" * len(record))
    sql(path, f"INSERT INTO events ({columns}) VALUES ({marks})", *record.values())


def test_inserted_event_detected(chain: Path) -> None:
    [(hash_2,)] = sql(
        chain,
        "SELECT event_hash FROM events WHERE agent_id = 'agent-1' AND chain_index = 2",
    )
    _shift_from(chain, 3)
    _insert(chain, _forge_after(chain, 3, hash_2))
    result = verify(chain)
    # The forged event itself links and hashes correctly; the event after it
    # still points at event 2.
    assert result.broken_at == 4
    assert result.reason is not None
    assert result.reason.startswith("broken link")
    assert result.event_count == CHAIN_LENGTH + 1


def test_inserted_first_event_detected(chain: Path) -> None:
    _shift_from(chain, 0)
    _insert(chain, _forge_after(chain, 0, ""))
    result = verify(chain)
    assert result.broken_at == 1
    assert result.reason is not None
    assert result.reason.startswith("broken link: previous_event_hash is ''")


def test_appended_event_without_head_detected(chain: Path) -> None:
    with Ledger(chain) as ledger:
        head = ledger.head("agent-1")
    assert head is not None
    _insert(chain, _forge_after(chain, CHAIN_LENGTH, head[1]))
    result = verify(chain)
    assert result.broken_at == CHAIN_LENGTH
    assert result.reason is not None
    assert result.reason.startswith("unrecorded events")


@pytest.mark.parametrize(("first", "second"), [(1, 4), (0, 1), (4, 5)])
def test_swapped_events_detected(chain: Path, first: int, second: int) -> None:
    where = "agent_id = 'agent-1' AND chain_index = ?"
    sql(chain, f"UPDATE events SET chain_index = -1 WHERE {where}", first)
    sql(chain, f"UPDATE events SET chain_index = ? WHERE {where}", first, second)
    sql(chain, f"UPDATE events SET chain_index = ? WHERE {where}", second, -1)
    result = verify(chain)
    assert result.broken_at == first
    assert result.reason is not None
    assert result.reason.startswith("broken link")


def test_head_record_edits_detected(chain: Path) -> None:
    sql(chain, "UPDATE heads SET event_hash = ? WHERE agent_id = 'agent-1'", "f" * 64)
    result = verify(chain)
    assert result.broken_at == CHAIN_LENGTH - 1
    assert result.reason is not None
    assert result.reason.startswith("head mismatch")
    sql(chain, "DELETE FROM heads WHERE agent_id = 'agent-1'")
    result = verify(chain)
    assert result.reason is not None
    assert result.reason.startswith("missing head record")


def test_first_failure_reported(chain: Path) -> None:
    edit_event(chain, "severity", "critical", 4)
    edit_event(chain, "severity", "critical", 2)
    assert verify(chain).broken_at == 2


def test_verify_all_reports_each_agent(chain: Path) -> None:
    sql(chain, "UPDATE events SET severity = 'critical' WHERE agent_id = 'agent-2'")
    with Ledger(chain) as ledger:
        results = {r.agent_id: r for r in ledger.verify_all()}
    assert results["agent-1"].valid
    assert results["agent-1"].event_count == CHAIN_LENGTH
    assert results["agent-2"].broken_at == 0


# -- concurrency -------------------------------------------------------------

WRITER = """
import os, sys, time
from rankigi.ledger import Ledger

path, name, rounds, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
# Wait for the start file, so all writers begin together after their imports.
while not os.path.exists(start):
    time.sleep(0.005)
with Ledger(path) as ledger:
    for i in range(rounds):
        ledger.append([
            {"agent_id": "shared", "action": "step", "event_id": f"{name}-{i}",
             "payload": {"writer": name, "i": i}},
            {"agent_id": f"own-{name}", "action": "step", "payload": {"i": i}},
            {"agent_id": "shared-2", "action": "step", "payload": {"writer": name}},
        ])
        ledger.append([{"agent_id": "shared", "action": "single",
                        "payload": {"writer": name, "i": i}}])
        # Pause outside the transaction so the other writers get the lock.
        time.sleep(0.002)
"""


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [env.get("PYTHONPATH"), str(ROOT)])
    )
    return env


def test_processes_append_concurrently(path: Path) -> None:
    writers, rounds = 4, 30
    # The ledger file does not exist yet, so the writers also race to create it.
    start = path.with_name("start")
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), f"w{n}", str(rounds), str(start)],
            env=subprocess_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(writers)
    ]
    start.touch()

    for process in processes:
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
    with Ledger(path, create=False) as ledger:
        results = {r.agent_id: r for r in ledger.verify_all()}
        shared = ledger.events("shared")

    assert all(result.valid for result in results.values()), results
    assert results["shared"].event_count == writers * rounds * 2
    assert results["shared-2"].event_count == writers * rounds
    for n in range(writers):
        assert results[f"own-w{n}"].event_count == rounds
        steps = [r["payload"]["i"] for r in shared if r["payload"]["writer"] == f"w{n}"]
        assert steps == sorted(steps)
        assert len(steps) == rounds * 2

    # Without interleaved writers, this test would not exercise the locking.
    order = [r["payload"]["writer"] for r in shared]
    switches = sum(1 for a, b in zip(order, order[1:]) if a != b)
    assert switches > writers, order
    event_ids = {r["event_id"] for r in shared if r["action_type"] == "step"}
    assert event_ids == {f"w{n}-{i}" for n in range(writers) for i in range(rounds)}


def test_threads_append_concurrently(path: Path) -> None:
    threads_per_ledger, rounds = 4, 25
    errors: list[BaseException] = []

    def write(ledger: Ledger, name: str) -> None:
        try:
            for i in range(rounds):
                ledger.append([make_event(i, "shared"), make_event(i, name)])
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    with Ledger(path) as first, Ledger(path) as second:
        threads = [
            threading.Thread(target=write, args=(ledger, f"t{n}-{id(ledger)}"))
            for ledger in (first, second)
            for n in range(threads_per_ledger)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        results = first.verify_all()
    assert all(result.valid for result in results)
    counts = {r.agent_id: r.event_count for r in results}
    assert counts.pop("shared") == 2 * threads_per_ledger * rounds
    assert sorted(counts.values()) == [rounds] * (2 * threads_per_ledger)


def _wait_for_child(pid: int, timeout: float) -> int:
    """Return the child's exit code, killing it if it runs past ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        finished, status = os.waitpid(pid, os.WNOHANG)
        if finished:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"the forked child did not finish within {timeout} s")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_append_after_fork(path: Path) -> None:
    with Ledger(path) as ledger:
        ledger.append([make_event(0)])
        # Fork while the ledger's lock is held, as when another thread is in
        # the middle of an append: the child must not inherit the held lock.
        ledger._lock.acquire()
        with warnings.catch_warnings():
            # Python 3.12+ warns about fork() in a process with threads.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            status = 1
            try:
                ledger.append([make_event(i, "child") for i in range(5)])
                status = 0
            finally:
                os._exit(status)
        ledger._lock.release()
        ledger.append([make_event(i, "parent") for i in range(5)])
        assert _wait_for_child(pid, timeout=10) == 0
        results = {r.agent_id: r for r in ledger.verify_all()}
    assert results["child"].event_count == 5
    assert results["parent"].event_count == 5
    assert all(result.valid for result in results.values())
