"""Delivery through network and server faults, against the real server.

Every test sends through ``FaultProxy`` to ``rankigi serve`` and then reads
the server's ledger: events that the client counts as sent must be stored
once, and events that never arrive must be counted and reported with the
reason of the fault.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest

from rankigi import Rankigi, RankigiError
from rankigi.ledger import Ledger
from tests.reliability.fault_proxy import FaultProxy, Seen
from tests.reliability.helpers import (
    API_KEY,
    LedgerFile,
    MakeClient,
    Server,
    assert_exactly_once,
    clean_environment,
    run_python,
    stored_ids,
    wait_for,
)
from tests.server_fixture import ServeProcess

# Extra seconds allowed past a timeout before a call counts as hung. It is
# generous because the machines are shared. A real hang would last for the
# retry budget or the 30 s request timeout that these tests configure.
MARGIN_S = 3.0


@dataclass(frozen=True)
class Fault:
    """A fault the proxy injects, and the drop reason it should produce."""

    name: str
    mode: str
    reason: str
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.name


FAULTS = [
    Fault("refuse", "refuse", "NETWORK_ERROR"),
    Fault("reset", "reset", "NETWORK_ERROR"),
    Fault("hang", "hang", "NETWORK_ERROR"),
    Fault("500", "status", "SERVER_ERROR", 500),
    Fault("503", "status", "SERVER_ERROR", 503),
    Fault("429", "status", "RATE_LIMITED", 429, {"Retry-After": "0.1"}),
    Fault("cut", "cut", "NETWORK_ERROR"),
    Fault("restart", "restart", "NETWORK_ERROR"),
]
# Faults that keep a retry waiting long: a 30 s Retry-After, and the rest.
SLOW_FAULTS = [
    Fault("429-long", "status", "RATE_LIMITED", 429, {"Retry-After": "30"})
    if f.name == "429"
    else f
    for f in FAULTS
]


def begin_outage(proxy: FaultProxy, fault: Fault, times: Optional[int]) -> None:
    """Start ``fault``: for ``times`` requests, or until ``end_outage``."""
    if fault.mode == "restart":
        proxy.restart(down_for=3600)
    else:
        proxy.set_mode(
            fault.mode, status=fault.status, headers=fault.headers, times=times
        )


def end_outage(proxy: FaultProxy) -> None:
    proxy.set_mode("pass")


@pytest.fixture
def timers() -> Iterator[list[threading.Timer]]:
    started: list[threading.Timer] = []
    yield started
    for timer in started:
        timer.cancel()
        timer.join()


def short_outage(
    proxy: FaultProxy, fault: Fault, timers: list[threading.Timer]
) -> None:
    """Fail two requests, or for refuse and restart, 0.4 s of connections."""
    if fault.mode == "restart":
        proxy.restart(down_for=0.4)
    elif fault.mode == "refuse":
        begin_outage(proxy, fault, None)
        timer = threading.Timer(0.4, end_outage, (proxy,))
        timers.append(timer)
        timer.start()
    else:
        begin_outage(proxy, fault, times=2)


def faulted(proxy: FaultProxy) -> list[Seen]:
    """Return the requests, health probes included, that met a fault."""
    return [seen for seen in proxy.seen(None) if seen.mode != "pass"]


def unaccounted(client: Rankigi) -> int:
    """Return how many events are neither sent nor counted as dropped."""
    stats = client.stats()
    return int(stats["enqueued"] - stats["sent"] - stats["dropped"])


def reported(errors: list[RankigiError]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for error in errors:
        counts[error.code] += error.event_count
    return dict(counts)


# -- outages shorter than the retry budget ----------------------------------


@pytest.mark.parametrize("fault", FAULTS, ids=str)
def test_short_outage_delivers_each_event_once(
    fault: Fault,
    make_client: MakeClient,
    proxy: FaultProxy,
    server: Server,
    agent_id: str,
    errors: list[RankigiError],
    timers: list[threading.Timer],
) -> None:
    # Six retries with backoff from 100 ms wait at least 3.1 s in total, far
    # longer than any outage here.
    client = make_client(
        batch_size=5, max_retries=6, retry_backoff_ms=100, request_timeout_ms=500
    )
    ids = [client.track_tool_call("warm-up", 0, 0)]
    assert client.flush(5)

    short_outage(proxy, fault, timers)
    ids += [client.track_tool_call("t", i, {"i": i}) for i in range(20)]

    assert client.flush(20)
    assert errors == []
    stats = client.stats()
    assert stats["dropped"] == 0
    assert stats["sent"] == 21
    # The fault really hit: requests failed and were retried.
    assert stats["retried"] >= 1
    if fault.mode not in ("refuse", "restart"):
        assert len(faulted(proxy)) == 2
    assert_exactly_once(server, agent_id, ids)


def test_cut_response_resent_and_stored_once(
    make_client: MakeClient,
    proxy: FaultProxy,
    server: Server,
    agent_id: str,
    errors: list[RankigiError],
) -> None:
    # The server stores each cut batch, but the client never sees the
    # response, so it must send the batch again and the server must drop
    # the copy by event_id.
    client = make_client(batch_size=5, max_retries=6)
    ids = [client.track_tool_call("warm-up", 0, 0)]
    assert client.flush(5)

    proxy.set_mode("cut", times=3)
    ids += [client.track_tool_call("t", i, i) for i in range(10)]
    assert client.flush(20)

    # One worker sends one batch at a time, so the first batch meets all
    # three cuts and then passes: four copies reach the server.
    first_batch = [event_id for event_id in ids[1:6] if event_id is not None]
    assert [seen.event_ids for seen in faulted(proxy)] == [first_batch] * 3
    forwarded = Counter(i for seen in proxy.seen() for i in seen.event_ids)
    assert [forwarded[event_id] for event_id in first_batch] == [4] * 5
    # The server stored the first copy and marked the other three duplicates.
    assert sum(seen.duplicates for seen in proxy.seen()) == 15
    assert errors == []
    assert_exactly_once(server, agent_id, ids)


def test_probe_outage_keeps_batching(
    make_client: MakeClient, proxy: FaultProxy, server: Server, agent_id: str
) -> None:
    # The capability probe is the first request; a 503 there is an outage,
    # not a statement about what the server supports.
    proxy.set_mode("status", status=503, times=1)
    client = make_client(batch_size=10)
    ids = [client.track_tool_call("t", i, i) for i in range(20)]
    assert client.flush(10)

    assert_exactly_once(server, agent_id, ids)
    assert [len(seen.event_ids) for seen in proxy.seen()] == [10, 10]


# -- outages longer than the retry budget -----------------------------------


@pytest.mark.parametrize("fault", FAULTS, ids=str)
def test_long_outage_counts_each_lost_event(
    fault: Fault,
    make_client: MakeClient,
    proxy: FaultProxy,
    server: Server,
    agent_id: str,
    errors: list[RankigiError],
) -> None:
    client = make_client(
        batch_size=5, max_retries=1, retry_backoff_ms=20, request_timeout_ms=300
    )
    before = [client.track_tool_call("before", i, i) for i in range(5)]
    assert client.flush(5)

    begin_outage(proxy, fault, times=None)
    during = [client.track_tool_call("during", i, i) for i in range(12)]
    assert client.flush(20)
    end_outage(proxy)
    after = [client.track_tool_call("after", i, i) for i in range(5)]
    assert client.flush(5)

    stored = set(stored_ids(server, agent_id))
    assert stored >= set(before) | set(after)
    stats = client.stats()
    assert stats["dropped_by_reason"] == {fault.reason: 12}
    assert reported(errors) == {fault.reason: 12}
    assert stats["sent"] + stats["dropped"] == stats["enqueued"]
    if fault.mode == "cut":
        # The server stored them, but no response reached the client, so it
        # can only report them as lost. A later resend would be a duplicate.
        assert set(during) <= stored
    else:
        assert stored.isdisjoint(during)
        assert len(set(before + during + after) - stored) == stats["dropped"]


# -- close() and interpreter exit in every fault state ----------------------


def slow_client(make_client: MakeClient, **options: Any) -> Rankigi:
    """Return a client whose retries alone would take minutes."""
    slow = {
        "batch_size": 10,
        "max_retries": 10,
        "retry_backoff_ms": 2_000,
        "retry_backoff_max_ms": 30_000,
        "request_timeout_ms": 30_000,
        "flush_interval_ms": 50,
    }
    return make_client(**{**slow, **options})


@pytest.mark.parametrize("warm_up", [True, False], ids=["warm", "cold"])
@pytest.mark.parametrize("fault", SLOW_FAULTS, ids=str)
def test_close_returns_within_timeout(
    fault: Fault,
    warm_up: bool,
    make_client: MakeClient,
    proxy: FaultProxy,
    errors: list[RankigiError],
) -> None:
    client = slow_client(make_client)
    if warm_up:
        assert client.track_tool_call("warm-up", 0, 0)
        assert client.flush(5)
    # Without the warm-up, the fault meets the capability probe first.
    begin_outage(proxy, fault, times=None)
    for i in range(50):
        client.track_tool_call("t", i, i)
    # Wait until the worker is inside a failing request or its backoff.
    assert wait_for(lambda: client.stats()["retried"] >= 1 or bool(faulted(proxy)))

    started = time.monotonic()
    done = client.close(timeout=1)
    elapsed = time.monotonic() - started

    assert elapsed < 1 + MARGIN_S
    stats = client.stats()
    assert stats["sent"] == int(warm_up)
    # A request that started before close() keeps its 30 s timeout, so at
    # most its one batch is still in flight; everything else is dropped.
    assert unaccounted(client) <= (10 if not done else 0)
    if fault.mode != "hang":
        # No request hangs, so the worker must give up the rest promptly
        # instead of sleeping out its backoff.
        assert wait_for(lambda: unaccounted(client) == 0, timeout=MARGIN_S)
    stats = client.stats()
    assert set(stats["dropped_by_reason"]) <= {"SHUTDOWN", fault.reason}
    assert sum(reported(errors).values()) == stats["dropped"]


def test_in_flight_batch_counted_once(
    make_client: MakeClient, proxy: FaultProxy, errors: list[RankigiError]
) -> None:
    # The hung request times out 2 s after it started, which is 1 s after
    # close() gave up on it. The worker then drops its batch, as it must.
    client = slow_client(make_client, request_timeout_ms=2_000)
    proxy.set_mode("hang")
    for i in range(30):
        client.track_tool_call("t", i, i)
    assert wait_for(lambda: bool(faulted(proxy)))
    assert client.close(timeout=1) is False

    time.sleep(2.5)
    stats = client.stats()
    assert stats["sent"] + stats["dropped"] == stats["enqueued"]
    assert sum(reported(errors).values()) == 30


EXIT_SCRIPT = """
    import sys, time
    from rankigi import Rankigi

    url, agent_id, key = sys.argv[1:4]
    client = Rankigi(
        api_key=key, agent_id=agent_id, base_url=url, shutdown_timeout_ms=500,
        max_retries=10, retry_backoff_ms=2000, request_timeout_ms=30000,
        flush_interval_ms=50, batch_size=10,
    )
    for i in range(50):
        client.track_tool_call("t", i, i)
    time.sleep(0.5)  # the worker is now inside a failing request or a backoff
    print(time.monotonic(), flush=True)
"""


@pytest.mark.parametrize("fault", SLOW_FAULTS, ids=str)
def test_exit_without_close_never_hangs(
    fault: Fault, proxy: FaultProxy, agent_id: str
) -> None:
    begin_outage(proxy, fault, times=None)

    result = run_python(EXIT_SCRIPT, proxy.url, agent_id, API_KEY, timeout=60)
    exited = time.monotonic()

    assert result.returncode == 0, result.stderr
    # CLOCK_MONOTONIC is system-wide on Linux, so the child's clock compares.
    exit_took = exited - float(result.stdout.split()[-1])
    assert exit_took < 0.5 + MARGIN_S
    if fault.mode not in ("refuse", "restart"):
        assert faulted(proxy), "the fault never met a request"


# -- the spool across a long outage ------------------------------------------


@pytest.mark.parametrize("fault", [FAULTS[2], FAULTS[4], FAULTS[6]], ids=str)
def test_spool_delivers_outage_events_once_later(
    fault: Fault,
    make_client: MakeClient,
    proxy: FaultProxy,
    server: Server,
    agent_id: str,
    tmp_path: Path,
) -> None:
    spool = str(tmp_path / "spool")
    # A short request timeout ends the hung request soon after close(), so
    # its batch reaches the spool without a long wait.
    client = slow_client(make_client, spool_dir=spool, request_timeout_ms=500)
    begin_outage(proxy, fault, times=None)
    ids = [client.track_tool_call("t", i, i) for i in range(30)]
    assert wait_for(lambda: bool(faulted(proxy)))

    started = time.monotonic()
    client.close(timeout=1)
    assert time.monotonic() - started < 1 + MARGIN_S
    assert wait_for(lambda: client.stats()["spooled"] >= 30 - client.stats()["sent"])
    assert client.stats()["dropped"] == 0

    end_outage(proxy)
    successor = make_client(spool_dir=spool)
    assert wait_for(lambda: successor.stats()["replayed"] >= 1)
    assert successor.close(10)
    assert_exactly_once(server, agent_id, ids)


# -- the real server killed and started again --------------------------------


def test_server_killed_midway_loses_nothing(
    tmp_path: Path, agent_id: str, errors: list[RankigiError]
) -> None:
    ledger_path = tmp_path / "restarted.db"
    options = ("--api-key", API_KEY, "--log-level", "warning")
    first = ServeProcess(ledger_path, *options, env=clean_environment())
    proxy = FaultProxy(first.url).start()
    client = Rankigi(
        api_key=API_KEY,
        agent_id=agent_id,
        base_url=proxy.url,
        on_error=errors.append,
        batch_size=10,
        flush_interval_ms=20,
        max_retries=8,
        retry_backoff_ms=100,
        retry_backoff_max_ms=1_000,
    )
    ids: list[Optional[str]] = []

    def track() -> None:
        for i in range(300):
            ids.append(client.track_tool_call("t", i, {"i": i}))
            time.sleep(0.002)

    tracker = threading.Thread(target=track)
    tracker.start()
    second = None
    try:
        assert wait_for(lambda: len(proxy.seen()) >= 5)
        first.stop(signal.SIGKILL)
        second = ServeProcess(ledger_path, *options, env=clean_environment())
        proxy.set_upstream(second.url)
        tracker.join()
        assert client.flush(30)
    finally:
        tracker.join()
        client.close(2)
        proxy.stop()
        if second is not None:
            second.stop()

    assert errors == []
    assert client.stats()["retried"] >= 1
    assert_exactly_once(LedgerFile(ledger_path), agent_id, ids)


def test_reader_keeps_acked_events(
    tmp_path: Path, agent_id: str, errors: list[RankigiError]
) -> None:
    # Opening and closing the file in another process must leave the
    # server's write-ahead log alone, or a crash loses what it acknowledged.
    ledger_path = tmp_path / "read-while-serving.db"
    serve = ServeProcess(
        ledger_path,
        "--api-key",
        API_KEY,
        "--log-level",
        "warning",
        env=clean_environment(),
    )
    client = Rankigi(
        api_key=API_KEY, agent_id=agent_id, base_url=serve.url, on_error=errors.append
    )
    try:
        ids = [client.track_tool_call("before", i, i) for i in range(5)]
        assert client.flush(5)
        # A process that opens the file read-write, reads and closes it,
        # as a second client on the embedded ledger would.
        with Ledger(ledger_path, create=False) as reader:
            assert reader.verify(agent_id).valid
        ids += [client.track_tool_call("after", i, i) for i in range(5)]
        assert client.flush(5)
        assert errors == []
        # The server crashes after acknowledging every event.
        serve.stop(signal.SIGKILL)
    finally:
        client.close(1)
        serve.stop()

    assert_exactly_once(LedgerFile(ledger_path), agent_id, ids)
