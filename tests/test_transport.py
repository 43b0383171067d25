"""The buffered HTTP transport against the real local server on loopback.

Every test sends to ``rankigi serve``'s app over a real ledger. Faults that
the real server cannot be made to produce on cue (5xx, a 429 with a given
``Retry-After``, a 400, a slow response) are scripted in front of it.
"""

from __future__ import annotations

import email.utils
import os
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any, Callable, Optional

import pytest

from rankigi import Rankigi
from tests.server_fixture import OTHER_API_KEY, LiveServer
from tests.stub_server import Reply, Request

Make = Callable[..., Rankigi]


@pytest.fixture
def make_client(make_server_client: Make) -> Make:
    """Clients of these tests send to the live server, not the stub."""
    return make_server_client


@pytest.fixture
def server(live_server: LiveServer) -> LiveServer:
    return live_server


def ingest_sizes(server: LiveServer) -> list[int]:
    sizes = []
    for request in server.ingest_requests():
        body = request.body
        sizes.append(len(body["events"]) if "events" in body else 1)
    return sizes


def fail_times(count: int, reply: Reply) -> Callable[[Request], Optional[Reply]]:
    """Answer the first ``count`` ingest requests with ``reply``."""
    state = {"left": count}
    lock = threading.Lock()

    def script(request: Request) -> Optional[Reply]:
        if request.path != "/api/ingest":
            return None
        with lock:
            if state["left"] <= 0:
                return None
            state["left"] -= 1
        return reply

    return script


def delay_ingest(seconds: float) -> Callable[[Request], Optional[Reply]]:
    """Hold every ingest request for ``seconds``, then pass it to the server."""

    def script(request: Request) -> Optional[Reply]:
        if request.path == "/api/ingest":
            time.sleep(seconds)
        return None

    return script


def test_batch_sent_when_size_reached(make_client: Make, server: LiveServer) -> None:
    client = make_client(batch_size=10, flush_interval_ms=60_000)
    for i in range(25):
        client.track_tool_call("search", {"q": i}, {"hits": i})

    assert server.wait_for(lambda: len(server.stored()) == 20)
    time.sleep(0.2)
    assert ingest_sizes(server) == [10, 10]
    assert client.flush(5)
    assert ingest_sizes(server) == [10, 10, 5]
    assert len(server.stored()) == 25


def test_batch_sent_when_interval_passes(make_client: Make, server: LiveServer) -> None:
    client = make_client(batch_size=100, flush_interval_ms=200)
    for i in range(3):
        client.track_tool_call("search", {"q": i}, None)

    assert server.wait_for(lambda: len(server.stored()) == 3, timeout=5)
    assert ingest_sizes(server) == [3]


def test_single_events_without_batch_capability(
    make_client: Make, server: LiveServer
) -> None:
    def no_batches(request: Request) -> Optional[Reply]:
        if request.path == "/api/health":
            return Reply(200, {"ok": True, "version": "1.0.0", "capabilities": []})
        return None

    server.script = no_batches
    client = make_client()
    for i in range(4):
        client.track_custom_event("step", None, {"i": i})

    assert client.flush(5)
    bodies = [r.body for r in server.ingest_requests()]
    assert len(bodies) == 4
    assert all("events" not in body for body in bodies)
    assert [body["payload"]["i"] for body in bodies] == [0, 1, 2, 3]
    records = list(server.stored("agent-1").values())
    assert [record["payload"]["i"] for record in records] == [0, 1, 2, 3]
    assert [record["chain_index"] for record in records] == [0, 1, 2, 3]


def test_events_carry_wire_fields(make_client: Make, server: LiveServer) -> None:
    client = make_client()
    event_id = client.track_tool_call("stripe_refund", {"charge": "ch_1"}, {"ok": 1})
    assert event_id is not None
    assert client.flush(5)

    request = server.ingest_requests()[0]
    assert request.headers["Authorization"] == f"Bearer {server.api_key}"
    (event,) = request.body["events"]
    assert event["event_id"] == event_id
    assert event["agent_id"] == "agent-1"
    assert event["action"] == "tool_call"
    assert event["tool"] == "stripe_refund"
    assert event["severity"] == "info"
    assert event["occurred_at"].endswith("Z")
    assert event["payload"]["input"] == {"charge": "ch_1"}
    assert len(event["payload"]["input_hash"]) == 64
    assert event["payload"]["_sdk"].startswith("rankigi-python/")

    record = server.stored()[event_id]
    assert record["agent_id"] == "agent-1"
    assert record["action_type"] == "tool_call"
    assert record["tool_invoked"] == "stripe_refund"
    assert record["timestamp"] == event["occurred_at"]
    # The server hashes the input itself; the SDK's hash must agree with it.
    assert record["input_hash"] == event["payload"]["input_hash"]
    assert record["output_hash"] == event["payload"]["output_hash"]


def test_retry_after_seconds_is_honoured(make_client: Make, server: LiveServer) -> None:
    server.script = fail_times(1, Reply(429, None, {"Retry-After": "1"}))
    client = make_client()
    client.track_tool_call("search", 1, 2)

    assert client.flush(10)
    first, second = server.ingest_requests()
    assert second.at - first.at >= 0.9
    assert len(server.stored()) == 1
    assert client.stats()["retried"] == 1


def test_retry_after_http_date_is_honoured(
    make_client: Make, server: LiveServer
) -> None:
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    server.script = fail_times(1, Reply(429, None, {"Retry-After": when}))
    client = make_client()
    client.track_tool_call("search", 1, 2)

    assert client.flush(10)
    first, second = server.ingest_requests()
    # An HTTP date has whole seconds, so the wait is at least one second.
    assert second.at - first.at >= 0.9


def test_retry_after_is_capped(make_client: Make, server: LiveServer) -> None:
    server.script = fail_times(1, Reply(429, None, {"Retry-After": "3600"}))
    client = make_client(retry_after_max_ms=100)
    client.track_tool_call("search", 1, 2)

    assert client.flush(5)
    assert len(server.stored()) == 1


def test_real_rate_limit_is_retried(
    make_client: Make, start_server: Callable[..., LiveServer], errors: Any
) -> None:
    limited = start_server(rate_limit=1.0, rate_burst=1)
    client = make_client(base_url=limited.url, batch_size=1)
    ids = [client.track_tool_call("t", i, i) for i in range(2)]

    assert client.flush(10)
    assert set(limited.stored()) == set(ids)
    statuses = [e.status for e in limited.ingest_exchanges()]
    assert statuses.count(429) >= 1
    assert errors == []


@pytest.mark.parametrize("status", [400, 401, 403])
def test_client_errors_are_not_retried(
    make_client: Make, server: LiveServer, errors: Any, status: int
) -> None:
    options = {}
    if status == 400:
        server.script = fail_times(100, Reply(status, {"ok": False}))
    elif status == 401:
        options["api_key"] = "rk_unknown_key"
    else:
        # Another key writes agent-1 first, so it owns that agent.
        event = {"agent_id": "agent-1", "action": "setup", "payload": {}}
        assert server.post("/api/ingest", event, OTHER_API_KEY).status_code == 200
        server.clear()
    client = make_client(batch_size=1, **options)
    client.track_tool_call("search", 1, 2)

    assert client.flush(5)
    assert [e.status for e in server.ingest_exchanges()] == [status]
    expected = "INVALID_REQUEST" if status == 400 else "AUTH_FAILED"
    assert errors.codes() == [expected]
    assert errors[0].status_code == status
    assert client.stats()["dropped_by_reason"] == {expected: 1}
    assert [r["action_type"] for r in server.stored().values()] == (
        ["setup"] if status == 403 else []
    )


def test_auth_failure_error_hides_key(
    make_client: Make, server: LiveServer, errors: Any
) -> None:
    client = make_client(api_key="rk_secret_value")
    client.track_tool_call("search", 1, 2)
    assert client.flush(5)

    assert errors.codes() == ["AUTH_FAILED"]
    assert errors[0].status_code == 401
    assert "rk_secret_value" not in repr(errors[0])
    assert "rk_secret_value" not in repr(client)
    assert server.stored() == {}


def test_payload_too_large_splits_batch(
    make_client: Make, start_server: Callable[..., LiveServer]
) -> None:
    small = start_server(max_batch_events=3)
    client = make_client(base_url=small.url, batch_size=10, flush_interval_ms=60_000)
    ids = [client.track_tool_call("search", i, i) for i in range(10)]

    assert client.flush(5)
    assert list(small.stored()) == ids
    assert small.duplicates() == 0
    exchanges = small.ingest_exchanges()
    assert exchanges[0].status == 413
    accepted = [len(e.request.body["events"]) for e in exchanges if e.status == 200]
    assert sum(accepted) == 10
    assert max(accepted) <= 3


def test_single_event_too_large_is_dropped(
    make_client: Make, start_server: Callable[..., LiveServer], errors: Any
) -> None:
    small = start_server(max_body_bytes=3500)
    client = make_client(base_url=small.url, batch_size=10, flush_interval_ms=60_000)
    kept = [client.track_tool_call("t", i, i) for i in range(5)]
    client.track_tool_call("t", "x" * 4000, None)

    assert client.flush(5)
    assert list(small.stored()) == kept
    assert errors.codes() == ["PAYLOAD_TOO_LARGE"]
    assert 413 in [e.status for e in small.ingest_exchanges()]


def test_outage_within_retry_budget_loses_nothing(
    make_client: Make, server: LiveServer, errors: Any
) -> None:
    server.script = fail_times(2, Reply(503, None))
    client = make_client(batch_size=5, max_retries=3)
    ids = [client.track_tool_call("t", i, i) for i in range(12)]

    assert client.flush(10)
    assert list(server.stored()) == ids
    assert server.duplicates() == 0
    assert errors == []
    stats = client.stats()
    assert stats["sent"] == 12
    assert stats["retried"] == 2


def test_lost_response_retried_without_duplicate(
    make_client: Make, server: LiveServer, errors: Any
) -> None:
    # The server stores the batch, but its response never reaches the client,
    # which sends the batch again. The ledger must keep one copy.
    lost = threading.Event()

    def lose_first_response(request: Request) -> Optional[Reply]:
        if request.path != "/api/ingest" or lost.is_set():
            return None
        lost.set()
        # This copy passes the script, because ``lost`` is set by now.
        response = server.post("/api/ingest", request.body)
        assert response.status_code == 200
        return Reply(503, None)

    server.script = lose_first_response
    client = make_client(batch_size=5, max_retries=3)
    ids = [client.track_tool_call("t", i, i) for i in range(5)]

    assert client.flush(10)
    assert list(server.stored()) == ids
    assert server.duplicates() == 5
    assert errors == []


def test_connection_refused_then_recovery(
    start_server: Callable[..., LiveServer], errors: Any
) -> None:
    server = start_server()
    url, port, ledger_path = server.url, server.port, server.ledger_path
    server.stop()
    client = Rankigi(
        api_key=server.api_key,
        agent_id="a",
        base_url=url,
        on_error=errors.append,
        retry_backoff_ms=300,
        max_retries=5,
    )
    event_id = client.track_tool_call("t", 1, 1)
    time.sleep(0.5)
    # Start a fresh server on the same port and ledger; the retry succeeds.
    revived = start_server(port=port, ledger_path=ledger_path)
    try:
        assert client.flush(15)
        assert list(revived.stored()) == [event_id]
        assert errors == []
    finally:
        client.close(1)


def test_outage_beyond_budget_reports_drops(
    make_client: Make, server: LiveServer, errors: Any
) -> None:
    server.script = fail_times(1000, Reply(500, None))
    client = make_client(batch_size=5, max_retries=2)
    for i in range(7):
        client.track_tool_call("t", i, i)

    assert client.flush(10)
    assert len(server.ingest_requests()) == 6  # two batches, three tries each
    assert client.stats()["dropped_by_reason"] == {"SERVER_ERROR": 7}
    assert sum(e.event_count for e in errors) == 7
    assert server.stored() == {}


def test_memory_bounded_while_server_down(
    make_client: Make, server: LiveServer, errors: Any
) -> None:
    server.script = fail_times(10**9, Reply(503, None))
    client = make_client(
        batch_size=10, max_queue_size=50, retry_backoff_ms=300, max_retries=1
    )
    for i in range(1000):
        client.track_tool_call("t", i, i)

    stats = client.stats()
    assert stats["queued"] <= 50
    assert stats["dropped_by_reason"]["BUFFER_FULL"] >= 1000 - 60
    assert stats["enqueued"] + stats["dropped_by_reason"]["BUFFER_FULL"] == 1000
    full = stats["dropped_by_reason"]["BUFFER_FULL"]

    def reported() -> int:
        return sum(e.event_count for e in list(errors) if e.code == "BUFFER_FULL")

    # The worker reports overflow between sends, so the report can lag.
    assert server.wait_for(lambda: reported() == full, timeout=15)


def test_flush_waits_for_in_flight_send(make_client: Make, server: LiveServer) -> None:
    server.script = delay_ingest(0.5)
    client = make_client(batch_size=1)
    event_id = client.track_tool_call("t", 1, 1)
    assert server.wait_for(lambda: len(server.ingest_requests()) == 1)

    assert client.flush(5)
    assert list(server.stored()) == [event_id]
    assert client.stats()["sent"] == 1


def test_flush_times_out_and_reports_false(
    make_client: Make, server: LiveServer
) -> None:
    server.script = delay_ingest(2)
    client = make_client()
    client.track_tool_call("t", 1, 1)

    assert client.flush(0.2) is False
    assert client.flush(10) is True
    assert len(server.stored()) == 1


def test_close_during_backoff_returns_promptly(
    make_client: Make, server: LiveServer, errors: Any
) -> None:
    server.script = fail_times(10**9, Reply(503, None))
    client = make_client(retry_backoff_ms=20_000, retry_backoff_max_ms=20_000)
    client.track_tool_call("t", 1, 1)
    client.track_tool_call("t", 2, 2)
    client.flush(0.01)
    assert server.wait_for(lambda: len(server.ingest_requests()) >= 1)

    started = time.monotonic()
    client.close(timeout=1)
    elapsed = time.monotonic() - started

    # The backoff alone would take 10 to 20 s.
    assert elapsed < 5
    assert "SHUTDOWN" in errors.codes() or "SERVER_ERROR" in errors.codes()
    assert client.stats()["dropped"] == 2


def test_close_is_idempotent(make_client: Make, server: LiveServer) -> None:
    client = make_client()
    client.track_tool_call("t", 1, 1)
    assert client.close(5) is True
    assert client.close(5) is True
    assert len(server.stored()) == 1


def test_tracking_after_close_is_dropped(
    make_client: Make, server: LiveServer, errors: Any
) -> None:
    client = make_client()
    client.close()

    assert client.track_tool_call("t", 1, 1) is None
    assert client.track_error("t", ValueError("x")) is None
    assert errors.codes() == ["CLIENT_CLOSED", "CLIENT_CLOSED"]
    assert client.stats()["dropped_by_reason"] == {"CLIENT_CLOSED": 2}
    assert server.stored() == {}


def test_context_manager_closes(server: LiveServer) -> None:
    with Rankigi(api_key=server.api_key, agent_id="a", base_url=server.url) as client:
        client.track_agent_output("reply", "hello")
    assert len(server.stored()) == 1
    assert client.track_agent_output("reply", "late") is None


def test_raising_on_error_is_contained(make_client: Make, server: LiveServer) -> None:
    calls = []

    def broken(error: Any) -> None:
        calls.append(error)
        raise RuntimeError("callback bug")

    server.script = fail_times(1, Reply(401, None))
    client = make_client(batch_size=1)
    client.on_error = broken
    client.track_tool_call("t", 1, 1)
    assert client.flush(5)
    second = client.track_tool_call("t", 2, 2)

    assert client.flush(5)
    assert len(calls) == 1
    assert list(server.stored()) == [second]


def test_unserializable_value_never_reaches_caller(
    make_client: Make, server: LiveServer
) -> None:
    class Hostile:
        def __getattribute__(self, name: str) -> Any:
            raise RuntimeError("no attribute access")

        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    client = make_client()
    event_id = client.track_tool_call("t", Hostile(), {"x": Hostile()})
    after = client.track_tool_call("t", 1, 1)

    assert client.flush(5)
    assert list(server.stored()) == [event_id, after]


def test_failure_while_finishing_event_keeps_worker(
    make_client: Make, server: LiveServer, errors: Any, monkeypatch: Any
) -> None:
    import rankigi._transport as transport

    real = transport.finish_event

    def flaky(event: dict[str, Any], hash_only: bool) -> dict[str, Any]:
        if event["payload"].get("input") == "poison":
            raise ValueError("cannot finish")
        return real(event, hash_only)

    monkeypatch.setattr(transport, "finish_event", flaky)
    client = make_client()
    client.track_tool_call("t", "poison", None)
    good = client.track_tool_call("t", "fine", None)

    assert client.flush(5)
    assert list(server.stored()) == [good]
    assert errors.codes() == ["CAPTURE_FAILED"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_sends_only_its_own_events(server: LiveServer) -> None:
    client = Rankigi(
        api_key=server.api_key,
        agent_id="a",
        base_url=server.url,
        flush_interval_ms=60_000,
    )
    parent_ids = [client.track_tool_call("parent", i, i) for i in range(5)]

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            os.close(read_end)
            child_ids = [client.track_tool_call("child", i, i) for i in range(3)]
            ok = client.close(5)
            os.write(write_end, ",".join(child_ids).encode())
            code = 0 if ok else 1
        finally:
            os._exit(code)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    child_ids = os.read(read_end, 10_000).decode().split(",")
    os.close(read_end)
    assert status == 0

    assert client.close(5)
    stored = server.stored()
    assert set(stored) == set(parent_ids) | set(child_ids)
    assert server.duplicates() == 0
    tools = sorted(record["tool_invoked"] for record in stored.values())
    assert tools == ["child"] * 3 + ["parent"] * 5


def _run_script(source: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RANKIGI_")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_exit_flushes_unclosed_client(server: LiveServer) -> None:
    result = _run_script(
        f"""
        from rankigi import Rankigi
        client = Rankigi(api_key={server.api_key!r}, agent_id="a",
                         base_url={server.url!r}, flush_interval_ms=60_000)
        for i in range(7):
            client.track_tool_call("t", i, i)
        """
    )
    assert result.returncode == 0, result.stderr
    assert len(server.stored()) == 7


def test_exit_never_hangs_on_dead_server(server: LiveServer) -> None:
    server.script = lambda request: Reply(200, {}, delay=30)
    started = time.monotonic()
    result = _run_script(
        f"""
        from rankigi import Rankigi
        client = Rankigi(api_key={server.api_key!r}, agent_id="a",
                         base_url={server.url!r}, shutdown_timeout_ms=500)
        client.track_tool_call("t", 1, 1)
        """
    )
    assert result.returncode == 0, result.stderr
    # The server would hold the request for 30 s.
    assert time.monotonic() - started < 15


def test_exit_reports_batch_still_in_flight(server: LiveServer) -> None:
    server.script = lambda request: Reply(200, {}, delay=30)
    result = _run_script(
        f"""
        from rankigi import Rankigi
        client = Rankigi(api_key={server.api_key!r}, agent_id="a",
                         base_url={server.url!r}, shutdown_timeout_ms=500,
                         flush_interval_ms=10)
        client.on_error = lambda e: print(e.code, e.event_count, flush=True)
        for i in range(3):
            client.track_tool_call("t", i, i)
        import time
        time.sleep(0.5)  # the batch is now out, and the server holds it
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["SHUTDOWN", "3"]
