"""The server's parts on their own: settings, keys, rate limit, socket."""

from __future__ import annotations

import socket
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from rankigi.ledger import Ledger
from rankigi.server import ServerSettings
from rankigi.server._keys import (
    KeyRing,
    check_key,
    fingerprint,
    generate_key,
    keys_from_sources,
    read_key_file,
)
from rankigi.server._ratelimit import RateLimiter
from rankigi.server._runner import bind, url_of
from tests.server_fixture import API_KEY, OTHER_API_KEY, LiveServer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_allows_burst_then_waits() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1.0, burst=2, clock=clock)

    assert limiter.check("a") is None
    assert limiter.check("a") is None
    assert limiter.check("a") == 1
    assert limiter.check("b") is None
    clock.now += 1.0
    assert limiter.check("a") is None
    assert limiter.check("a") == 1


def test_rate_limiter_rounds_wait_up() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=0.4, burst=1, clock=clock)

    assert limiter.check("a") is None
    assert limiter.check("a") == 3  # 2.5 s until the next token
    clock.now += 2.5
    assert limiter.check("a") is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ledger_path": ""}, "ledger_path"),
        ({"api_keys": ()}, "api_keys is empty"),
        ({"max_body_bytes": 0}, "max_body_bytes=0"),
        ({"max_batch_events": True}, "max_batch_events=True"),
        ({"rate_limit": -1.0}, "rate_limit=-1.0"),
        ({"rate_limit": float("nan")}, "rate_limit=nan"),
        ({"rate_limit": "5"}, "rate_limit='5'"),
        ({"rate_burst": 0}, "rate_burst=0"),
    ],
)
def test_settings_reject_invalid_options(options: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"ledger_path": "x.db", "api_keys": ("k",)}
    arguments.update(options)
    with pytest.raises(ValueError, match=message):
        ServerSettings(**arguments)


def test_settings_repr_hides_keys() -> None:
    settings = ServerSettings("x.db", ("rk_hidden",))
    assert "rk_hidden" not in repr(settings)
    assert settings.burst == 1
    assert ServerSettings("x.db", ("k",), rate_limit=2.5).burst == 3


def test_keys_from_sources_merge_in_order(tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("# comment\nrk_b\n\nrk_c\n")
    environ = {"RANKIGI_SERVER_API_KEYS": "rk_d,, rk_a ,"}

    keys = keys_from_sources(["rk_a", "rk_b"], str(key_file), environ)
    assert keys == ["rk_a", "rk_b", "rk_c", "rk_d"]
    assert keys_from_sources([], None, {}) == []


def test_key_file_without_keys_is_rejected(tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("# only a comment\n\n")
    with pytest.raises(ValueError, match="contains no API key"):
        read_key_file(str(key_file))


@pytest.mark.parametrize("key", ["", "two words", "tab\tkey", "ключ", "bell\x07"])
def test_invalid_key_rejected_without_showing_it(key: str) -> None:
    with pytest.raises(ValueError) as raised:
        check_key(key, "--api-key")
    assert "--api-key" in str(raised.value)
    if key:
        assert key not in str(raised.value)


def test_key_ring_matches_by_fingerprint() -> None:
    ring = KeyRing(["rk_one", "rk_two"])
    assert ring.identify("rk_one") == fingerprint("rk_one")
    assert ring.identify("rk_three") is None
    assert len(ring) == 2


def test_generated_keys_differ() -> None:
    first, second = generate_key(), generate_key()
    assert first != second
    assert first.startswith("rk_local_")
    assert len(first) > 40
    assert check_key(first, "generated") == first


def test_bound_socket_uses_tcp_protocol() -> None:
    # asyncio sets TCP_NODELAY only on connections of such a socket.
    listener = bind("127.0.0.1", 0)
    try:
        assert listener.proto == socket.IPPROTO_TCP
        assert url_of(listener).startswith("http://127.0.0.1:")
    finally:
        listener.close()


def test_small_requests_are_not_delayed(live_server: LiveServer) -> None:
    with httpx.Client() as client:
        durations = []
        for _ in range(20):
            started = time.perf_counter()
            client.get(live_server.url + "/api/health")
            durations.append(time.perf_counter() - started)
    # Nagle's algorithm with delayed ACKs would delay each response ~40 ms.
    assert statistics.median(durations) < 0.025


def test_agent_stored_before_server_goes_to_first_writer(
    tmp_path: Path, start_server: Any
) -> None:
    ledger_path = tmp_path / "shared.db"
    with Ledger(ledger_path) as ledger:
        ledger.append([{"agent_id": "old", "action": "start", "payload": {}}])
    server = start_server(ledger_path=ledger_path)

    assert server.get("/api/agents/old/verify").status_code == 404
    event = {"agent_id": "old", "action": "next", "payload": {}}
    assert server.post("/api/ingest", event, OTHER_API_KEY).status_code == 200
    assert server.post("/api/ingest", event, API_KEY).status_code == 403
    verify = server.get("/api/agents/old/verify", OTHER_API_KEY).json()
    assert verify["event_count"] == 2
    assert verify["valid"] is True


def test_forbidden_batch_after_restart_claims_nothing(
    tmp_path: Path, start_server: Any
) -> None:
    ledger_path = tmp_path / "owners.db"
    first = start_server(ledger_path=ledger_path)
    event = {"agent_id": "mine", "action": "a", "payload": {}}
    assert first.post("/api/ingest", event).status_code == 200
    first.stop()
    # A new server has no cached owners, so the claim runs in the transaction.
    server = start_server(ledger_path=ledger_path)
    batch = {
        "events": [
            {"agent_id": "theirs", "action": "a", "payload": {}},
            {"agent_id": "mine", "action": "a", "payload": {}},
        ]
    }

    assert server.post("/api/ingest", batch, OTHER_API_KEY).status_code == 403
    assert server.stored("theirs") == {}
    event = {"agent_id": "theirs", "action": "a", "payload": {}}
    assert server.post("/api/ingest", event, API_KEY).status_code == 200
