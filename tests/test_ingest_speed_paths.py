"""The fast paths of ingest: spliced record hashes, batched duplicate lookups,
member-wise payload encoding, the server's group commit and its response text.

Each fast path must give exactly what the straightforward code gives, so most
tests here compare the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rankigi._canonical import (
    MAX_DEPTH,
    CanonicalError,
    canonical_json,
    canonical_object,
    canonical_string,
    sha256_hex,
)
from rankigi.ledger import FIELDS, AppendResult, Ledger, LedgerError
from rankigi.ledger._record import compute_event_hash, prepare_events, seal
from rankigi.ledger._store import _LOOKUP_CHUNK
from rankigi.server._app import json_response, results_json
from rankigi.server._checkpoint import Checkpointer, disable_autocheckpoint
from rankigi.server._service import LedgerService
from rankigi.server._writer import GroupWriter
from tests.server_fixture import API_KEY, OTHER_API_KEY, LiveServer

ROOT = Path(__file__).resolve().parents[1]
RECEIVED = "2026-05-06T07:08:09.000Z"

# -- strategies ----------------------------------------------------------------

# Hypothesis leaves out lone surrogates by default, which the ledger rejects.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=16,
)
payloads = st.dictionaries(
    st.sampled_from(["input", "output", "status", "_ts", "\U0001f600", "é"])
    | st.text(max_size=6),
    json_values,
    max_size=6,
)
names = st.text(min_size=1, max_size=20)


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(item) for item in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(item) for item in value), default=0)
    return 0


def record_of(row: tuple[Any, ...]) -> dict[str, Any]:
    """Return the record that verification hashes: the row, payload parsed."""
    record = dict(zip(FIELDS, row))
    record["payload"] = json.loads(record["payload"])
    return record


def make_event(event_id: str, agent_id: str = "agent-1", **fields: Any) -> Any:
    event: dict[str, Any] = {
        "agent_id": agent_id,
        "action": "tool_call",
        "event_id": event_id,
        "payload": {"input": {"q": event_id}, "output": [1], "status": "ok"},
    }
    event.update(fields)
    return event


# -- the spliced record text ---------------------------------------------------


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    payload=payloads,
    agent_id=names,
    action=names,
    tool=st.none() | names,
    event_id=st.text(min_size=1, max_size=64),
    severity=st.sampled_from([None, "info", "warn", "critical", "bogus"]),
    passport_id=st.none() | st.text(max_size=20),
    signature=st.none() | st.text(max_size=20),
    chain_index=st.integers(min_value=0, max_value=2**53),
    previous_hash=st.text(max_size=70),
)
def test_spliced_text_is_canonical_record(
    payload: dict[str, Any],
    agent_id: str,
    action: str,
    tool: str | None,
    event_id: str,
    severity: str | None,
    passport_id: str | None,
    signature: str | None,
    chain_index: int,
    previous_hash: str,
) -> None:
    # The record puts one level around the payload.
    assume(depth_of(payload) < MAX_DEPTH)
    wire = {
        "agent_id": agent_id,
        "action": action,
        "tool": tool,
        "event_id": event_id,
        "severity": severity,
        "passport_id": passport_id,
        "signature": signature,
        "payload": payload,
    }
    (event,) = prepare_events([wire], RECEIVED)
    head, middle, tail = event.text_parts
    spliced = f"{head}{chain_index}{middle}{canonical_string(previous_hash)}{tail}"
    row, event_hash = seal(event, chain_index, previous_hash)
    record = record_of(row)
    without_hash = {k: v for k, v in record.items() if k != "event_hash"}

    assert spliced == canonical_json(without_hash)
    assert event_hash == compute_event_hash(record)
    assert event_hash == sha256_hex({**without_hash, "payload": payload})
    assert row[FIELDS.index("event_hash")] == event_hash
    assert row[FIELDS.index("chain_index")] == chain_index
    assert row[FIELDS.index("previous_event_hash")] == previous_hash


@settings(max_examples=300)
@given(payload=payloads)
def test_stored_payload_text_is_fixed_point(payload: dict[str, Any]) -> None:
    assume(depth_of(payload) < MAX_DEPTH)
    wire = {"agent_id": "a", "action": "custom", "payload": payload}
    (event,) = prepare_events([wire], RECEIVED)
    row, _ = seal(event, 0, "")
    stored = row[FIELDS.index("payload")]
    # The text the ledger stored before the splicing: the payload encoded
    # inside a wrapper object, which verification parses and encodes again.
    assert stored == canonical_json({"payload": payload})[len('{"payload":') : -1]
    assert canonical_json(json.loads(stored)) == stored


@settings(max_examples=200)
@given(payload=payloads)
def test_value_hashes_match_full_encoding(payload: dict[str, Any]) -> None:
    assume(depth_of(payload) < MAX_DEPTH)
    wire = {"agent_id": "a", "action": "tool_call", "payload": payload}
    (event,) = prepare_events([wire], RECEIVED)
    row, _ = seal(event, 0, "")
    for key in ("input", "output"):
        stored = row[FIELDS.index(f"{key}_hash")]
        if key in payload:
            assert stored == sha256_hex(payload[key])
        else:
            assert stored is None


def test_spliced_hash_with_float_payload() -> None:
    payload = {"input": {"x": 1.0, "y": 1e-7, "z": 1e21}, "output": [-0.0, 2.5]}
    (event,) = prepare_events(
        [{"agent_id": "a", "action": "tool_call", "payload": payload}], RECEIVED
    )
    row, event_hash = seal(event, 3, "f" * 64)
    stored = row[FIELDS.index("payload")]
    assert stored == (
        '{"input":{"x":1,"y":0.0000001,"z":1000000000000000000000},"output":[0,2.5]}'
    )
    assert event_hash == compute_event_hash(record_of(row))


def test_seal_rejects_unencodable_previous_hash() -> None:
    # Only a ledger edited outside rankigi can hold such a head.
    (event,) = prepare_events([make_event("e")], RECEIVED)
    with pytest.raises(UnicodeEncodeError):
        seal(event, 1, "\udcff")


# -- canonical_object ----------------------------------------------------------


@settings(max_examples=300)
@given(value=st.dictionaries(st.text(max_size=6), json_values, max_size=6))
def test_canonical_object_matches_canonical_json(value: dict[str, Any]) -> None:
    for depth in (0, 1, 3):
        wrapped: Any = value
        for _ in range(depth):
            wrapped = [wrapped]
        try:
            expected = canonical_json(wrapped)[depth : -depth or None]
        except CanonicalError:
            with pytest.raises(CanonicalError):
                canonical_object(value, depth)
            continue
        text, members = canonical_object(value, depth)
        assert text == expected
        assert members == {key: canonical_json(item) for key, item in value.items()}


def test_canonical_object_depth_limit() -> None:
    nested: dict[str, Any] = {"leaf": 1}
    for _ in range(MAX_DEPTH - 2):
        nested = {"n": nested}
    assert depth_of(nested) == MAX_DEPTH - 1
    canonical_object(nested, depth=1)
    with pytest.raises(CanonicalError, match="deeper than 10"):
        canonical_object(nested, depth=2)


def test_canonical_object_sorts_astral_keys_by_utf16() -> None:
    # U+FF61 sorts after U+1F600 in UTF-16 (0xFF61 > 0xD83D), before it by
    # code point.
    value = {"\uff61": 1, "\U0001f600": 2}
    text, _ = canonical_object(value)
    assert text == '{"\U0001f600":2,"\uff61":1}'


# -- duplicate lookups ---------------------------------------------------------


@pytest.fixture
def ledger(tmp_path: Path) -> Any:
    with Ledger(tmp_path / "ledger.db") as opened:
        yield opened


def test_duplicate_inside_batch(ledger: Ledger) -> None:
    results = ledger.append([make_event("a"), make_event("b"), make_event("a")])
    assert [r.duplicate for r in results] == [False, False, True]
    first, _, again = results
    assert (again.chain_index, again.event_hash) == (0, first.event_hash)
    assert again.previous_event_hash == first.previous_event_hash
    assert len(ledger.events("agent-1")) == 2
    assert ledger.verify("agent-1").valid


def test_duplicates_across_batches(ledger: Ledger) -> None:
    a, b = ledger.append([make_event("a"), make_event("b")])
    results = ledger.append([make_event("b"), make_event("c"), make_event("a")])
    assert [r.duplicate for r in results] == [True, False, True]
    assert results[0] == AppendResult("b", 1, b.event_hash, a.event_hash, True)
    assert results[2] == AppendResult("a", 0, a.event_hash, "", True)
    assert results[1].chain_index == 2
    assert results[1].previous_event_hash == b.event_hash
    assert ledger.verify("agent-1").event_count == 3


def test_stored_duplicate_repeated_in_batch(ledger: Ledger) -> None:
    (a,) = ledger.append([make_event("a")])
    results = ledger.append([make_event("a"), make_event("a")])
    assert results == [AppendResult("a", 0, a.event_hash, "", True)] * 2
    assert len(ledger.events("agent-1")) == 1


def test_same_event_id_in_two_agents(ledger: Ledger) -> None:
    results = ledger.append([make_event("a", "x"), make_event("a", "y")])
    assert [r.duplicate for r in results] == [False, False]
    again = ledger.append([make_event("a", "y"), make_event("a", "x")])
    assert [r.duplicate for r in again] == [True, True]
    assert again[0].event_hash == results[1].event_hash
    assert again[1].event_hash == results[0].event_hash
    assert ledger.verify("x").event_count == 1
    assert ledger.verify("y").event_count == 1


def test_duplicate_lookup_in_chunks(ledger: Ledger) -> None:
    count = 2 * _LOOKUP_CHUNK + 7
    first = ledger.append([make_event(f"e{n}") for n in range(count)])
    batch = [make_event(f"e{n}") for n in reversed(range(count))]
    batch.append(make_event("new"))
    again = ledger.append(batch)
    assert all(r.duplicate for r in again[:-1])
    assert [r.chain_index for r in again[:-1]] == list(reversed(range(count)))
    assert [r.event_hash for r in again[:-1]] == [r.event_hash for r in reversed(first)]
    assert not again[-1].duplicate
    assert again[-1].chain_index == count
    assert ledger.verify("agent-1").event_count == count + 1


def test_collision_names_failing_row(ledger: Ledger, tmp_path: Path) -> None:
    ledger.append([make_event("x0", "x"), make_event("x1", "x")])
    # A head set back by an editor makes the second new event of "x" collide
    # with the stored index 1; the event of "y" before it was inserted first.
    with sqlite3.connect(tmp_path / "ledger.db") as database:
        database.execute("UPDATE heads SET chain_index = 0 WHERE agent_id = 'x'")
    database.close()
    with pytest.raises(LedgerError, match="agent 'x' at chain index 1 ") as caught:
        ledger.append([make_event("y0", "y"), make_event("x2", "x")])
    assert "rankigi verify" in str(caught.value)
    assert ledger.events("y") == []
    assert len(ledger.events("x")) == 2


OVERLAPPING_WRITER = """
import json, os, sys, time
from rankigi.ledger import Ledger

path, name, shift, start, out = sys.argv[1:6]
ids = [f"e{n}" for n in range(60)]
ids = ids[int(shift):] + ids[:int(shift)]
while not os.path.exists(start):
    time.sleep(0.005)
seen = {}
with Ledger(path) as ledger:
    for begin in range(0, len(ids), 20):
        batch = [
            {"agent_id": "shared", "action": "step", "event_id": event_id,
             "payload": {"writer": name}}
            for event_id in ids[begin:begin + 20]
        ]
        batch.append({"agent_id": "own-" + name, "action": "step", "payload": {}})
        for event, result in zip(batch, ledger.append(batch)):
            if event["agent_id"] == "shared":
                seen[result.event_id] = [
                    result.chain_index, result.event_hash, result.duplicate
                ]
        time.sleep(0.002)
with open(out, "w") as file:
    json.dump(seen, file)
"""


def test_processes_store_overlapping_ids_once(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    start = tmp_path / "start"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [env.get("PYTHONPATH"), str(ROOT)])
    )
    outputs = [tmp_path / f"w{n}.json" for n in range(3)]
    processes = []
    for n, out in enumerate(outputs):
        # Each writer sends the same 60 ids, starting at a different one.
        arguments = [str(path), f"w{n}", str(n * 20), str(start), str(out)]
        processes.append(
            subprocess.Popen(
                [sys.executable, "-c", OVERLAPPING_WRITER, *arguments],
                env=env,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    start.touch()
    for process in processes:
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr

    seen = [json.loads(out.read_text()) for out in outputs]
    with Ledger(path, create=False) as ledger:
        results = {r.agent_id: r for r in ledger.verify_all()}
        stored = {r["event_id"]: r for r in ledger.events("shared")}
    assert all(result.valid for result in results.values()), results
    assert results["shared"].event_count == 60
    for n in range(3):
        assert results[f"own-w{n}"].event_count == 3
    for event_id, record in stored.items():
        answers = [writer[event_id] for writer in seen]
        assert {(a[0], a[1]) for a in answers} == {
            (record["chain_index"], record["event_hash"])
        }
        assert sorted(a[2] for a in answers) == [False, True, True], event_id


# -- the group writer ----------------------------------------------------------


class CountingLedger:
    """Count the write transactions of a real ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.path = ledger.path
        self.transactions = 0

    def write(self, operation: Callable[[sqlite3.Connection], Any]) -> Any:
        self.transactions += 1
        return self.ledger.write(operation)


def insert_agent(agent_id: str) -> Callable[[sqlite3.Connection], str]:
    """Return an operation that stores one head row and returns the agent."""

    def operation(connection: sqlite3.Connection) -> str:
        connection.execute(
            "INSERT INTO heads (agent_id, chain_index, event_hash) VALUES (?, 0, '')",
            (agent_id,),
        )
        return agent_id

    return operation


def stored_agents(ledger: Ledger) -> list[str]:
    return ledger.agents()


async def write_behind_gate(
    writer: GroupWriter, operations: list[Callable[[sqlite3.Connection], Any]]
) -> list[Any]:
    """Hold the writer in a first job while ``operations`` queue, then release."""
    started, gate = threading.Event(), threading.Event()

    def blocking(connection: sqlite3.Connection) -> str:
        started.set()
        gate.wait(10)
        return insert_agent("first")(connection)

    first = asyncio.ensure_future(writer.write(blocking, 1))
    await asyncio.to_thread(started.wait, 10)
    queued = [asyncio.ensure_future(writer.write(op, 1)) for op in operations]
    # Let every queued task put its job on the queue before the gate opens.
    await asyncio.sleep(0.05)
    gate.set()
    return await asyncio.gather(first, *queued, return_exceptions=True)


def test_group_writer_commits_queued_requests_together(ledger: Ledger) -> None:
    counting = CountingLedger(ledger)
    writer = GroupWriter(counting)  # type: ignore[arg-type]

    def failing(connection: sqlite3.Connection) -> None:
        insert_agent("rolled-back")(connection)
        raise ValueError("bad request")

    operations = [insert_agent("a"), failing, insert_agent("b")]
    try:
        outcomes = asyncio.run(write_behind_gate(writer, operations))
    finally:
        writer.close()
    assert outcomes[0] == "first"
    assert outcomes[1] == "a"
    assert isinstance(outcomes[2], ValueError)
    assert outcomes[3] == "b"
    # The first job alone, then the three that queued behind it in one.
    assert counting.transactions == 2
    assert stored_agents(ledger) == ["a", "b", "first"]


def test_group_writer_failed_commit_fails_group(ledger: Ledger) -> None:
    writer = GroupWriter(ledger)

    def ending(connection: sqlite3.Connection) -> None:
        # Ending the transaction makes the writer's RELEASE fail, and with it
        # the whole transaction, including the job before this one.
        connection.execute("ROLLBACK")

    try:
        outcomes = asyncio.run(write_behind_gate(writer, [insert_agent("a"), ending]))
    finally:
        writer.close()
    assert outcomes[0] == "first"
    assert isinstance(outcomes[1], LedgerError)
    assert isinstance(outcomes[2], LedgerError)
    assert outcomes[1] is not outcomes[2]
    assert stored_agents(ledger) == ["first"]


def test_group_writer_wraps_sqlite_errors(ledger: Ledger) -> None:
    writer = GroupWriter(ledger)

    def invalid(connection: sqlite3.Connection) -> None:
        connection.execute("SELECT * FROM no_such_table")

    async def run() -> list[Any]:
        return list(
            await asyncio.gather(
                writer.write(invalid, 1),
                writer.write(insert_agent("a"), 1),
                return_exceptions=True,
            )
        )

    try:
        failed, stored = asyncio.run(run())
    finally:
        writer.close()
    assert isinstance(failed, LedgerError)
    assert "no_such_table" in str(failed)
    assert isinstance(failed.__cause__, sqlite3.OperationalError)
    assert stored == "a"


def test_group_writer_close_finishes_queue(ledger: Ledger) -> None:
    writer = GroupWriter(ledger)

    async def run() -> list[Any]:
        pending = [writer.write(insert_agent(f"a{n}"), 1) for n in range(5)]
        tasks = [asyncio.ensure_future(p) for p in pending]
        await asyncio.sleep(0)
        await asyncio.to_thread(writer.close)
        done = await asyncio.gather(*tasks)
        with pytest.raises(LedgerError, match="closed"):
            await writer.write(insert_agent("late"), 1)
        return done

    assert asyncio.run(run()) == [f"a{n}" for n in range(5)]
    assert stored_agents(ledger) == [f"a{n}" for n in range(5)]
    writer.close()


def test_group_writer_caps_group_size(ledger: Ledger) -> None:
    counting = CountingLedger(ledger)
    writer = GroupWriter(counting, max_group_events=2)  # type: ignore[arg-type]
    operations = [insert_agent(f"a{n}") for n in range(4)]
    try:
        asyncio.run(write_behind_gate(writer, operations))
    finally:
        writer.close()
    # The first job alone, then two groups of two events.
    assert counting.transactions == 3
    assert len(stored_agents(ledger)) == 5


# -- the server ----------------------------------------------------------------


def test_results_json_matches_json_dumps() -> None:
    results = [
        AppendResult("01a2-ok", 0, "a" * 64, "", False),
        AppendResult("dup", 7, "b" * 64, "c" * 64, True),
        AppendResult('quote" é \U0001f600', 2**40, "\udcff", "\\", False),
    ]
    expected = bytes(
        json_response(
            {"ok": True, "results": [result.as_dict() for result in results]}
        ).body
    ).decode()
    assert results_json(results) == expected
    assert results_json([]) == '{"ok":true,"results":[]}'


def test_results_json_odd_stored_types() -> None:
    # SQLite keeps whatever type an editor wrote into a column.
    results = [
        AppendResult("e", "7", 5, None, True),  # type: ignore[arg-type]
        AppendResult("e", True, "h", "", True),
    ]
    expected = bytes(
        json_response(
            {"ok": True, "results": [result.as_dict() for result in results]}
        ).body
    ).decode()
    assert results_json(results) == expected


def test_server_batch_duplicates(live_server: LiveServer) -> None:
    first = live_server.post(
        "/api/ingest", {"events": [make_event("a"), make_event("b"), make_event("a")]}
    )
    assert first.status_code == 200
    results = first.json()["results"]
    assert ["duplicate" in r for r in results] == [False, False, True]
    assert results[2]["event_hash"] == results[0]["event_hash"]
    again = live_server.post(
        "/api/ingest", {"events": [make_event("b"), make_event("c")]}
    )
    assert again.status_code == 200
    second = again.json()["results"]
    assert second[0] == {**results[1], "duplicate": True}
    assert second[1]["chain_index"] == 2
    assert len(live_server.stored("agent-1")) == 3


def test_server_contested_agent_has_one_owner(live_server: LiveServer) -> None:
    # Concurrent requests of two keys for a new agent: whichever commits
    # first owns it, and every request of the other key gets 403.
    requests = 12
    barrier = threading.Barrier(requests)
    statuses: dict[int, int] = {}

    def send(number: int) -> None:
        key = API_KEY if number % 2 else OTHER_API_KEY
        body = {"events": [make_event(f"e{number}", "contested")]}
        barrier.wait(10)
        response = httpx.post(
            live_server.url + "/api/ingest",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        statuses[number] = response.status_code

    threads = [threading.Thread(target=send, args=(n,)) for n in range(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    by_key = {
        key: {statuses[n] for n in range(requests) if (n % 2 == 1) == (key == API_KEY)}
        for key in (API_KEY, OTHER_API_KEY)
    }
    assert sorted(map(sorted, by_key.values())) == [[200], [403]], statuses
    stored = live_server.stored("contested")
    assert len(stored) == requests // 2
    with Ledger(live_server.ledger_path, create=False) as ledger:
        assert ledger.verify("contested").valid


# -- checkpoints off the commit path --------------------------------------------


def append_round(ledger: Ledger, number: int, count: int = 20) -> None:
    ledger.append(
        [
            make_event(f"r{number}-{n}", payload={"pad": "x" * 1000, "n": n})
            for n in range(count)
        ]
    )


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def checkpoint_after(checkpointer: Checkpointer) -> Callable[[], bool]:
    """Return a predicate that is true once another checkpoint has run."""
    done = checkpointer.checkpoints
    return lambda: checkpointer.checkpoints > done


def test_service_writer_skips_autocheckpoint(tmp_path: Path) -> None:
    service = LedgerService(str(tmp_path / "ledger.db"))
    try:
        writer = service.writer
        (pages,) = writer.write(
            lambda connection: connection.execute(
                "PRAGMA wal_autocheckpoint"
            ).fetchone()
        )
    finally:
        service.close()
    assert pages == 0


def test_checkpointer_copies_whole_log(ledger: Ledger) -> None:
    ledger.write(disable_autocheckpoint)
    for number in range(5):
        append_round(ledger, number)
    checkpointer = Checkpointer(ledger.path, interval=0.02)
    try:
        assert wait_until(lambda: checkpointer.checkpoints >= 1)
    finally:
        checkpointer.close()
    with contextlib.closing(sqlite3.connect(ledger.path)) as database:
        busy, log_pages, copied_pages = database.execute(
            "PRAGMA wal_checkpoint(PASSIVE)"
        ).fetchone()
    assert busy == 0
    assert log_pages > 0
    assert copied_pages == log_pages
    assert ledger.verify("agent-1").event_count == 100


def test_checkpointer_keeps_log_small(ledger: Ledger) -> None:
    ledger.write(disable_autocheckpoint)
    log = Path(f"{ledger.path}-wal")
    checkpointer = Checkpointer(ledger.path, interval=0.02)
    try:
        append_round(ledger, 0)
        first = log.stat().st_size
        for number in range(1, 20):
            # The next commit starts the log over once a checkpoint has
            # copied all of it.
            assert wait_until(checkpoint_after(checkpointer))
            append_round(ledger, number)
        last = log.stat().st_size
    finally:
        checkpointer.close()
    # Without checkpoints the log would hold all 20 rounds.
    assert last <= 3 * first, (first, last)
    assert ledger.verify("agent-1").event_count == 400


def test_checkpointer_close_twice(ledger: Ledger) -> None:
    checkpointer = Checkpointer(ledger.path, interval=0.02)
    checkpointer.close()
    checkpointer.close()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        checkpointer._connection.execute("SELECT 1")
