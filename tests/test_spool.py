"""The durable spool: undelivered events survive the process and are resent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from rankigi import Rankigi
from tests.stub_server import Reply, StubServer


def spool_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.jsonl"))


def client_for(stub: StubServer, spool: Path, **options: Any) -> Rankigi:
    options.setdefault("retry_backoff_ms", 10)
    return Rankigi(
        api_key="k", agent_id="a", base_url=stub.url, spool_dir=str(spool), **options
    )


def test_undeliverable_events_resent_by_next_client(
    stub: StubServer, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    stub.script = lambda request: Reply(503) if request.path == "/api/ingest" else None
    errors: list[Any] = []
    first = client_for(stub, spool, max_retries=1)
    first.on_error = errors.append
    ids = [first.track_tool_call("t", i, i) for i in range(5)]
    assert first.close(5)

    assert errors == []
    assert first.stats()["spooled"] == 5
    assert first.stats()["dropped"] == 0
    assert [name.startswith("ready-") for name in spool_files(spool)] == [True]

    stub.script = None
    second = client_for(stub, spool)
    assert stub.wait_for(lambda: len(stub.events) == 5)
    second.close(5)
    assert set(stub.events) == set(ids)
    assert stub.duplicates == 0
    assert second.stats()["replayed"] == 5
    assert spool_files(spool) == []


def test_events_queued_at_close_are_spooled(stub: StubServer, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    stub.script = lambda r: Reply(200, {}, delay=5) if r.path == "/api/ingest" else None
    first = client_for(stub, spool, flush_interval_ms=50, request_timeout_ms=3_000)
    ids = [first.track_tool_call("t", i, i) for i in range(3)]
    time.sleep(0.3)
    first.close(timeout=0.5)
    # close() returns at its deadline while the request is still out; the
    # worker parks the batch once that request fails.
    assert stub.wait_for(
        lambda: any(n.startswith("ready-") for n in spool_files(spool)), timeout=10
    )

    stub.script = None
    second = client_for(stub, spool)
    assert stub.wait_for(lambda: set(ids) <= set(stub.events))
    second.close(5)


def test_delivered_events_leave_no_files(stub: StubServer, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    client = client_for(stub, spool)
    for i in range(10):
        client.track_tool_call("t", i, i)
    assert client.close(5)

    assert len(stub.events) == 10
    assert spool_files(spool) == []
    assert client.stats()["spooled"] == 0


def test_concurrent_clients_claim_each_file_once(
    stub: StubServer, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    stub.script = lambda request: Reply(503) if request.path == "/api/ingest" else None
    ids = []
    for batch in range(4):
        client = client_for(stub, spool, max_retries=0)
        ids += [client.track_tool_call("t", batch, i) for i in range(5)]
        client.close(5)
    assert len(spool_files(spool)) == 4

    stub.script = None
    stub.requests.clear()
    clients = [client_for(stub, spool) for _ in range(3)]
    assert stub.wait_for(lambda: len(stub.events) == 20)
    for client in clients:
        client.close(5)
    assert set(stub.events) == set(ids)
    assert stub.duplicates == 0
    assert sum(c.stats()["replayed"] for c in clients) == 20


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_loses_at_most_one_flush_interval(
    stub: StubServer, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    # The server holds every request, so nothing is acknowledged before the
    # kill: whatever arrives later came from the spool.
    stub.script = lambda r: (
        Reply(200, {}, delay=30) if r.path == "/api/ingest" else None
    )
    source = f"""
        import sys, time
        from rankigi import Rankigi
        client = Rankigi(api_key="k", agent_id="a", base_url={stub.url!r},
                         spool_dir={str(spool)!r}, flush_interval_ms=200)
        early = [client.track_tool_call("early", i, i) for i in range(30)]
        time.sleep(1.0)  # five flush intervals
        late = [client.track_tool_call("late", i, i) for i in range(10)]
        print(",".join(early), flush=True)
        time.sleep(60)
    """
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(source)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        early = child.stdout.readline().strip().split(",")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        if child.stdout is not None:
            child.stdout.close()
    assert len(early) == 30

    stub.script = None
    replay = client_for(stub, spool)
    assert stub.wait_for(lambda: set(early) <= set(stub.events))
    replay.close(5)
    # Only events tracked in the last flush interval may be missing.
    tools = [event["tool"] for event in stub.events.values()]
    assert tools.count("early") == 30
    assert tools.count("late") <= 10
    assert stub.duplicates == 0


def test_spool_dir_from_environment(
    stub: StubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RANKIGI_SPOOL_DIR", str(tmp_path / "env-spool"))
    client = Rankigi(api_key="k", agent_id="a", base_url=stub.url)
    client.close(1)

    assert client.config.spool_dir == str(tmp_path / "env-spool")
    assert (tmp_path / "env-spool").is_dir()
