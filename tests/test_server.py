"""The local server's HTTP API, against the real app and ledger on loopback."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from rankigi._canonical import sha256_hex
from rankigi.ledger import Ledger
from tests.server_fixture import API_KEY, OTHER_API_KEY, LiveServer

DATA = Path(__file__).parent / "data"
Start = Callable[..., LiveServer]


def event(agent_id: str = "agent-1", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "agent_id": agent_id,
        "action": "tool_call",
        "tool": "search",
        "payload": {"input": {"q": "x"}, "output": [1, 2], "status": "ok"},
    }
    body.update(fields)
    return body


def post_raw(
    server: LiveServer,
    content: Any,
    content_type: str | None = "application/json",
    api_key: str = API_KEY,
    **headers: str,
) -> httpx.Response:
    sent = {"Authorization": f"Bearer {api_key}", **headers}
    if content_type is not None:
        sent["Content-Type"] = content_type
    return httpx.post(
        server.url + "/api/ingest", content=content, headers=sent, timeout=10
    )


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["ok"] is False
    error: dict[str, Any] = body["error"]
    assert set(error) >= {"code", "message"}
    return error


def assert_serving(server: LiveServer) -> None:
    """Check that the server still stores a valid event after a rejection."""
    response = server.post("/api/ingest", event("after-check"))
    assert response.status_code == 200, response.text
    assert server.get("/api/agents/after-check/verify").json()["valid"] is True


# -- health and routing ---------------------------------------------------


def test_health_needs_no_key(live_server: LiveServer) -> None:
    response = httpx.get(live_server.url + "/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert isinstance(body["version"], str)
    assert {"batch", "idempotency"} <= set(body["capabilities"])


def test_unknown_route_is_json_404(live_server: LiveServer) -> None:
    response = live_server.get("/api/nothing")
    assert response.status_code == 404
    assert error_of(response)["code"] == "NOT_FOUND"


def test_wrong_method_is_json_405(live_server: LiveServer) -> None:
    response = live_server.get("/api/ingest")
    assert response.status_code == 405
    assert error_of(response)["code"] == "INVALID_REQUEST"


# -- authentication and key separation ------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Basic cms6eA==", "Bearer", "Bearer rk_not_a_server_key"],
)
def test_ingest_rejects_bad_credentials(
    live_server: LiveServer, authorization: str | None
) -> None:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = httpx.post(
        live_server.url + "/api/ingest", json=event(), headers=headers
    )

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    error = error_of(response)
    assert error["code"] == "AUTH_FAILED"
    assert "rk_not_a_server_key" not in error["message"]
    assert live_server.stored() == {}


@pytest.mark.parametrize("route", ["events", "verify"])
def test_reads_need_a_key(live_server: LiveServer, route: str) -> None:
    response = httpx.get(f"{live_server.url}/api/agents/agent-1/{route}")
    assert response.status_code == 401
    assert error_of(response)["code"] == "AUTH_FAILED"


def test_key_cannot_read_other_keys_agent(live_server: LiveServer) -> None:
    assert live_server.post("/api/ingest", event("mine")).status_code == 200

    for route in ("events", "verify"):
        foreign = live_server.get(f"/api/agents/mine/{route}", OTHER_API_KEY)
        missing = live_server.get(f"/api/agents/nobody/{route}", OTHER_API_KEY)
        # The owner's agent looks exactly like one that does not exist.
        assert foreign.status_code == missing.status_code == 404
        assert error_of(foreign)["code"] == "NOT_FOUND"
        assert error_of(foreign)["message"] == error_of(missing)["message"].replace(
            "'nobody'", "'mine'"
        )


def test_key_cannot_write_other_keys_agent(live_server: LiveServer) -> None:
    first = live_server.post("/api/ingest", event("mine")).json()

    response = live_server.post("/api/ingest", event("mine"), OTHER_API_KEY)
    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "AUTH_FAILED"
    assert "'mine'" in error["message"]
    assert list(live_server.stored()) == [first["event_id"]]


def test_forbidden_batch_stores_and_claims_nothing(live_server: LiveServer) -> None:
    live_server.post("/api/ingest", event("mine"))
    batch = {"events": [event("theirs"), event("mine")]}

    response = live_server.post("/api/ingest", batch, OTHER_API_KEY)
    assert response.status_code == 403
    assert list(live_server.stored("theirs")) == []
    # "theirs" was not claimed by the rejected batch, so any key may take it.
    assert live_server.post("/api/ingest", event("theirs")).status_code == 200


def test_owner_table_holds_fingerprints_not_keys(live_server: LiveServer) -> None:
    live_server.post("/api/ingest", event("mine"))
    live_server.post("/api/ingest", event("theirs"), OTHER_API_KEY)

    with contextlib.closing(sqlite3.connect(live_server.ledger_path)) as database:
        rows = dict(
            database.execute("SELECT agent_id, key_fingerprint FROM agent_owners")
        )
    assert rows == {
        "mine": sha256_hex_text(API_KEY),
        "theirs": sha256_hex_text(OTHER_API_KEY),
    }
    for suffix in ("", "-wal"):
        path = Path(f"{live_server.ledger_path}{suffix}")
        if path.exists():
            assert API_KEY.encode() not in path.read_bytes()


def sha256_hex_text(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


# -- ingest ----------------------------------------------------------------


def test_single_event_response(live_server: LiveServer) -> None:
    response = live_server.post("/api/ingest", event(event_id="e-1"))

    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert body["event_id"] == "e-1"
    assert body["chain_index"] == 0
    assert body["previous_event_hash"] == ""
    assert len(body["event_hash"]) == 64
    assert "duplicate" not in body


def test_batch_extends_chain_in_order(live_server: LiveServer) -> None:
    batch = {"events": [event(event_id=f"e-{i}") for i in range(3)]}

    results = live_server.post("/api/ingest", batch).json()["results"]
    assert [r["chain_index"] for r in results] == [0, 1, 2]
    assert results[1]["previous_event_hash"] == results[0]["event_hash"]
    assert results[2]["previous_event_hash"] == results[1]["event_hash"]


def test_retried_event_is_not_stored_twice(live_server: LiveServer) -> None:
    first = live_server.post("/api/ingest", event(event_id="e-1")).json()
    again = live_server.post("/api/ingest", event(event_id="e-1")).json()

    assert again["duplicate"] is True
    assert again["event_hash"] == first["event_hash"]
    assert again["chain_index"] == first["chain_index"]
    assert len(live_server.stored()) == 1


def test_retried_batch_is_not_stored_twice(live_server: LiveServer) -> None:
    batch = {"events": [event(event_id=f"e-{i}") for i in range(3)]}
    live_server.post("/api/ingest", batch)
    batch["events"].append(event(event_id="e-3"))

    results = live_server.post("/api/ingest", batch).json()["results"]
    assert [r.get("duplicate", False) for r in results] == [True, True, True, False]
    assert [r["chain_index"] for r in results] == [0, 1, 2, 3]
    assert len(live_server.stored()) == 4


def test_invalid_event_rejects_whole_batch(live_server: LiveServer) -> None:
    bad = event()
    del bad["action"]
    batch = {"events": [event(), event(), bad, event()]}

    response = live_server.post("/api/ingest", batch)
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "INVALID_REQUEST"
    assert error["field"] == "action"
    assert error["index"] == 2
    assert "event 2: action" in error["message"]
    assert live_server.stored() == {}
    # The rejected batch claimed no agent either.
    assert live_server.post("/api/ingest", event(), OTHER_API_KEY).status_code == 200


def test_server_recomputes_client_hashes(live_server: LiveServer) -> None:
    forged = event(
        event_hash="f" * 64,
        chain_index=41,
        previous_event_hash="e" * 64,
        payload={"input": {"q": "x"}, "input_hash": "0" * 64, "output": 1},
    )
    body = live_server.post("/api/ingest", forged).json()

    record = live_server.stored()[body["event_id"]]
    assert record["chain_index"] == 0
    assert record["previous_event_hash"] == ""
    assert record["event_hash"] == body["event_hash"] != "f" * 64
    assert record["input_hash"] == sha256_hex({"q": "x"})
    assert live_server.get("/api/agents/agent-1/verify").json()["valid"] is True


def test_occurred_at_fallbacks(live_server: LiveServer) -> None:
    given = event(event_id="given", occurred_at="2026-01-02T03:04:05.678Z")
    from_ts = event(event_id="from-ts", payload={"_ts": "2026-01-02T03:04:05.9+00:00"})
    neither = event(event_id="neither", payload={})
    live_server.post("/api/ingest", {"events": [given, from_ts, neither]})

    stored = live_server.stored()
    assert stored["given"]["timestamp"] == "2026-01-02T03:04:05.678Z"
    assert stored["from-ts"]["timestamp"] == "2026-01-02T03:04:05.900Z"
    assert stored["neither"]["timestamp"] == stored["neither"]["server_received_at"]


def test_published_client_requests_are_stored(start_server: Start) -> None:
    lines = (DATA / "rankigi-1.0.0-requests.jsonl").read_text().splitlines()
    requests = [json.loads(line) for line in lines if line.strip()]
    key = requests[0]["authorization"].split(" ", 1)[1]
    server = start_server(api_keys=(key,))

    for request in requests:
        response = httpx.post(
            server.url + request["path"],
            content=request["body"].encode(),
            headers={
                "Authorization": request["authorization"],
                "Content-Type": "application/json",
            },
        )
        assert response.status_code == 200, response.text

    agent_id = json.loads(requests[0]["body"])["agent_id"]
    verify = server.get(f"/api/agents/{agent_id}/verify").json()
    assert verify["valid"] is True
    assert verify["event_count"] == len(requests)
    records = list(server.stored(agent_id).values())
    for request, record in zip(requests, records):
        sent = json.loads(request["body"])
        assert record["action_type"] == sent["action"]
        # 1.0.0 sends its clock only as payload._ts, with microseconds.
        assert record["timestamp"] == sent["payload"]["_ts"][:23] + "Z"
        assert record["signature"] == sent["signature"]


# -- bad input ---------------------------------------------------------------


def deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = {"next": value}
    return value


BAD_BODIES = [
    ("truncated JSON", b'{"agent_id": "a", ', 400, None),
    ("not UTF-8", b'{"agent_id": "\xff"}', 400, None),
    ("empty body", b"", 400, None),
    ("array body", b"[]", 400, None),
    ("string body", b'"event"', 400, None),
    ("null body", b"null", 400, None),
    ("NaN", b'{"agent_id": "a", "action": "x", "payload": {"v": NaN}}', 400, None),
    ("events not array", b'{"events": {"agent_id": "a"}}', 400, "events"),
    ("event not object", b'{"events": [1]}', 422, "event"),
    (
        "agent_id number",
        json.dumps({**event(), "agent_id": 5}).encode(),
        422,
        "agent_id",
    ),
    ("payload array", json.dumps(event(payload=[1])).encode(), 422, "payload"),
    ("payload missing", b'{"agent_id": "a", "action": "x"}', 422, "payload"),
    ("action missing", b'{"agent_id": "a", "payload": {}}', 422, "action"),
    (
        "bad occurred_at",
        json.dumps(event(occurred_at="soon")).encode(),
        422,
        "occurred_at",
    ),
    ("payload too deep", json.dumps(event(payload=deep(12))).encode(), 422, "payload"),
    (
        "body too deep",
        b'{"payload": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        400,
        None,
    ),
]


@pytest.mark.parametrize(
    ("content", "status", "field"),
    [case[1:] for case in BAD_BODIES],
    ids=[case[0] for case in BAD_BODIES],
)
def test_bad_body_rejected(
    live_server: LiveServer, content: bytes, status: int, field: str | None
) -> None:
    response = post_raw(live_server, content)

    assert response.status_code == status, response.text
    error = error_of(response)
    assert error["code"] == "INVALID_REQUEST"
    assert error.get("field") == field
    assert live_server.stored() == {}
    assert_serving(live_server)


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/jsonx"])
def test_wrong_content_type_rejected(
    live_server: LiveServer, content_type: str | None
) -> None:
    response = post_raw(live_server, json.dumps(event()), content_type)

    assert response.status_code == 415
    error = error_of(response)
    assert error["code"] == "INVALID_REQUEST"
    assert "application/json" in error["message"]
    assert live_server.stored() == {}


def test_json_with_charset_accepted(live_server: LiveServer) -> None:
    body = json.dumps(event()).encode()
    response = post_raw(live_server, body, "application/json; charset=utf-8")
    assert response.status_code == 200


def test_body_over_limit_rejected(start_server: Start) -> None:
    server = start_server(max_body_bytes=2000)
    body = json.dumps(event(payload={"text": "x" * 5000})).encode()

    response = post_raw(server, body)
    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "PAYLOAD_TOO_LARGE"
    assert "2000" in error["message"]
    assert server.stored() == {}
    assert_serving(server)


def test_streamed_body_over_limit_rejected(start_server: Start) -> None:
    server = start_server(max_body_bytes=2000)

    def chunks() -> Iterator[bytes]:
        # No Content-Length: the server counts bytes as they arrive.
        yield b'{"agent_id": "a", "action": "x", "payload": {"t": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}}'

    response = post_raw(server, chunks())
    assert response.status_code == 413
    assert error_of(response)["code"] == "PAYLOAD_TOO_LARGE"
    assert server.stored() == {}
    assert_serving(server)


def test_batch_over_event_limit_rejected(start_server: Start) -> None:
    server = start_server(max_batch_events=3)

    response = server.post("/api/ingest", {"events": [event()] * 4})
    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "PAYLOAD_TOO_LARGE"
    assert "4 events" in error["message"]
    assert server.stored() == {}


def test_single_event_message_has_no_index(live_server: LiveServer) -> None:
    response = live_server.post("/api/ingest", event(agent_id=""))
    message = error_of(response)["message"]
    assert message.startswith("agent_id must be a non-empty string")


# -- rate limit ----------------------------------------------------------------


def test_rate_limit_returns_429(start_server: Start) -> None:
    server = start_server(rate_limit=0.5, rate_burst=2)

    statuses = [server.post("/api/ingest", event()).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    limited = server.post("/api/ingest", event())
    assert limited.status_code == 429
    assert error_of(limited)["code"] == "RATE_LIMITED"
    assert int(limited.headers["Retry-After"]) >= 1
    # Each key has its own budget.
    other = server.post("/api/ingest", event("other-agent"), OTHER_API_KEY)
    assert other.status_code == 200
    assert len(server.stored()) == 3


# -- reads -----------------------------------------------------------------------


def test_events_pages_through_chain(live_server: LiveServer) -> None:
    ids = [f"e-{i}" for i in range(5)]
    live_server.post("/api/ingest", {"events": [event(event_id=i) for i in ids]})

    pages = []
    after = None
    while True:
        params = {"limit": 2} if after is None else {"limit": 2, "after": after}
        page = live_server.get("/api/agents/agent-1/events", params=params).json()
        pages.append([record["event_id"] for record in page["events"]])
        after = page["next_after"]
        if after is None:
            break
    assert pages == [["e-0", "e-1"], ["e-2", "e-3"], ["e-4"]]


def test_events_record_fields(live_server: LiveServer) -> None:
    sent = live_server.post("/api/ingest", event()).json()
    (record,) = live_server.get("/api/agents/agent-1/events").json()["events"]

    assert record["event_hash"] == sent["event_hash"]
    assert record["payload"] == {"input": {"q": "x"}, "output": [1, 2], "status": "ok"}
    assert record["execution_result"] == "success"


@pytest.mark.parametrize(
    ("name", "value"), [("limit", "0"), ("limit", "x"), ("after", "-1")]
)
def test_events_rejects_bad_query(
    live_server: LiveServer, name: str, value: str
) -> None:
    live_server.post("/api/ingest", event())
    response = live_server.get("/api/agents/agent-1/events", params={name: value})

    assert response.status_code == 400
    assert error_of(response)["field"] == name


def test_agent_id_with_slash_and_unicode(live_server: LiveServer) -> None:
    agent_id = "team/agent é"
    live_server.post("/api/ingest", event(agent_id))
    path = "/api/agents/" + httpx.URL("/" + agent_id).raw_path.decode()[1:]

    verify = live_server.get(path + "/verify").json()
    assert verify["agent_id"] == agent_id
    assert verify["event_count"] == 1


def test_verify_reports_intact_chain(live_server: LiveServer) -> None:
    results = live_server.post("/api/ingest", {"events": [event()] * 3}).json()

    verify = live_server.get("/api/agents/agent-1/verify").json()
    assert verify == {
        "valid": True,
        "agent_id": "agent-1",
        "event_count": 3,
        "head_hash": results["results"][-1]["event_hash"],
        "broken_at": None,
        "reason": None,
    }


def test_verify_reports_tampering(live_server: LiveServer) -> None:
    live_server.post("/api/ingest", {"events": [event()] * 3})
    with contextlib.closing(sqlite3.connect(live_server.ledger_path)) as database:
        database.execute(
            "UPDATE events SET severity = 'critical' WHERE chain_index = 1"
        )
        database.commit()

    verify = live_server.get("/api/agents/agent-1/verify").json()
    assert verify["valid"] is False
    assert verify["broken_at"] == 1
    assert verify["reason"].startswith("hash mismatch")


# -- concurrency and packaging -----------------------------------------------------


def test_concurrent_writers_keep_one_chain(live_server: LiveServer) -> None:
    def send(worker: int) -> None:
        with httpx.Client(
            headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
        ) as client:
            for batch in range(10):
                events = [event(event_id=f"w{worker}-b{batch}-{i}") for i in range(5)]
                response = client.post(
                    live_server.url + "/api/ingest", json={"events": events}
                )
                assert response.status_code == 200

    threads = [threading.Thread(target=send, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    with Ledger(live_server.ledger_path, create=False) as ledger:
        result = ledger.verify("agent-1")
    assert result.valid
    assert result.event_count == 6 * 10 * 5


def test_import_leaves_web_stack_unloaded() -> None:
    code = (
        "import sys, rankigi, rankigi.server, rankigi.cli; "
        "rankigi.cli.build_parser(); "
        "print(sorted({'starlette', 'uvicorn', 'anyio'} & set(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n"
