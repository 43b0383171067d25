"""AsyncRankigi: the same client, awaitable, never blocking the event loop."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Optional

import pytest

import rankigi
from rankigi import AsyncRankigi, Rankigi, RankigiError
from rankigi._exporters import MemoryExporter
from rankigi.ledger import Ledger
from tests.sqlite_edit import edit
from tests.stub_server import Reply, Request, StubServer


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_tracking_and_flush() -> None:
    exporter = MemoryExporter()

    async def main() -> list[Optional[str]]:
        async with AsyncRankigi(agent_id="a", _exporter=exporter) as client:
            ids = [
                await client.track_tool_call("search", {"q": 1}, [1]),
                await client.track_agent_output("reply", "done"),
                await client.track_error("search", ValueError("x")),
                await client.track_custom_event("policy", None, {"ok": True}),
            ]
            assert await client.flush(5)
            return ids

    ids = run(main())
    assert [e["event_id"] for e in exporter.events] == ids
    actions = [e["action"] for e in exporter.events]
    assert actions == ["tool_call", "response_generated", "error", "policy"]
    assert exporter.events[0]["payload"]["input_hash"]


def test_same_options_and_validation_as_sync() -> None:
    with pytest.raises(ValueError, match="batch_size=0 is out of range"):
        AsyncRankigi(agent_id="a", batch_size=0)
    with pytest.raises(ValueError, match="agent_id is missing"):
        AsyncRankigi()


def test_track_returns_at_once_while_server_is_slow(stub: StubServer) -> None:
    stub.script = lambda r: Reply(200, {}, delay=1) if r.path == "/api/ingest" else None

    async def main() -> float:
        client = AsyncRankigi(
            api_key="k", agent_id="a", base_url=stub.url, batch_size=1
        )
        started = time.perf_counter()
        for i in range(50):
            await client.track_tool_call("t", i, i)
        elapsed = time.perf_counter() - started
        await client.close(5)
        return elapsed

    # Each send takes a second; tracking must not wait for any of them.
    assert run(main()) < 1.0


def test_loop_keeps_running_during_flush_to_slow_server(stub: StubServer) -> None:
    def slow(request: Request) -> Optional[Reply]:
        if request.path == "/api/ingest":
            return Reply(200, {"ok": True, "results": []}, delay=1.0)
        return None

    stub.script = slow

    async def main() -> tuple[bool, int]:
        client = AsyncRankigi(api_key="k", agent_id="a", base_url=stub.url)
        await client.track_tool_call("t", 1, 1)
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        flushed = await client.flush(10)
        stop.set()
        await task
        await client.close(5)
        return flushed, ticks

    flushed, ticks = run(main())
    assert flushed is True
    # A blocked loop would tick once; a free one about a hundred times.
    assert ticks > 20


def test_async_with_closes_and_activates() -> None:
    exporter = MemoryExporter()

    @rankigi.tool
    def lookup(order_id: str) -> str:
        return order_id.upper()

    async def main() -> AsyncRankigi:
        async with AsyncRankigi(agent_id="a", _exporter=exporter) as client:
            lookup("ord_1")
            assert rankigi.get_client() is client
        assert rankigi.get_client() is None
        return client

    client = run(main())
    assert [e["tool"] for e in exporter.events] == [lookup.__qualname__]
    assert run(client.track_tool_call("t", 1, 1)) is None
    assert client.stats()["dropped_by_reason"] == {"CLIENT_CLOSED": 1}


def test_close_is_idempotent() -> None:
    async def main() -> tuple[bool, bool]:
        client = AsyncRankigi(agent_id="a", _exporter=MemoryExporter())
        return await client.close(), await client.close()

    assert run(main()) == (True, True)


def test_sync_and_async_share_core_types() -> None:
    sync = Rankigi(agent_id="a", _exporter=MemoryExporter())
    asynchronous = AsyncRankigi(agent_id="a", _exporter=MemoryExporter())
    try:
        assert type(sync._core) is type(asynchronous._core)
        assert sync.config == asynchronous.config
    finally:
        sync.close()
        run(asynchronous.close())


# -- handshakes on the embedded ledger ---------------------------------------


@pytest.fixture
def ledger_path(tmp_path: Path) -> str:
    return str(tmp_path / "shared.db")


def test_handshake_flow(ledger_path: str) -> None:
    async def main() -> tuple[dict, dict, dict]:
        async with (
            AsyncRankigi(agent_id="buyer", ledger_path=ledger_path) as buyer,
            AsyncRankigi(agent_id="seller", ledger_path=ledger_path) as seller,
        ):
            pending = await buyer.initiate_handshake("seller", "purchase", {"n": 1})
            done = await seller.complete_handshake(pending["id"], accepted=True)
            verified = await buyer.verify_handshake(pending["id"])
            return pending, done, verified

    pending, done, verified = run(main())
    assert pending["status"] == "pending"
    assert done["status"] == "accepted"
    assert verified["valid"] is True
    with Ledger(ledger_path, create=False) as ledger:
        assert all(result.valid for result in ledger.verify_all())


@pytest.mark.parametrize(
    ("scenario", "code"),
    [
        ("reject_twice", "CONFLICT"),
        ("initiator_completes", "AUTH_FAILED"),
        ("expired", "EXPIRED"),
        ("unknown", "NOT_FOUND"),
    ],
)
def test_handshake_failures(ledger_path: str, scenario: str, code: str) -> None:
    async def main() -> None:
        async with (
            AsyncRankigi(agent_id="buyer", ledger_path=ledger_path) as buyer,
            AsyncRankigi(agent_id="seller", ledger_path=ledger_path) as seller,
        ):
            expires = 0.2 if scenario == "expired" else 900
            pending = await buyer.initiate_handshake(
                "seller", "purchase", expires_in=expires
            )
            if scenario == "reject_twice":
                await seller.complete_handshake(pending["id"], accepted=False)
                await seller.complete_handshake(pending["id"], accepted=False)
            elif scenario == "initiator_completes":
                await buyer.complete_handshake(pending["id"], accepted=True)
            elif scenario == "expired":
                await asyncio.sleep(0.4)
                await seller.complete_handshake(pending["id"], accepted=True)
            else:
                await seller.complete_handshake("missing", accepted=True)

    with pytest.raises(RankigiError) as info:
        run(main())
    assert info.value.code == code


def test_rejected_handshake_does_not_verify(ledger_path: str) -> None:
    async def main() -> dict:
        async with (
            AsyncRankigi(agent_id="buyer", ledger_path=ledger_path) as buyer,
            AsyncRankigi(agent_id="seller", ledger_path=ledger_path) as seller,
        ):
            pending = await buyer.initiate_handshake("seller", "purchase")
            await seller.complete_handshake(pending["id"], accepted=False)
            return await seller.verify_handshake(pending["id"])

    result = run(main())
    assert result["valid"] is False
    assert "rejected" in result["reason"]


def test_tampered_handshake_event_detected(ledger_path: str) -> None:
    import json

    async def accept() -> str:
        async with (
            AsyncRankigi(agent_id="buyer", ledger_path=ledger_path) as buyer,
            AsyncRankigi(agent_id="seller", ledger_path=ledger_path) as seller,
        ):
            pending = await buyer.initiate_handshake("seller", "purchase")
            await seller.complete_handshake(pending["id"], accepted=True)
            assert (await buyer.verify_handshake(pending["id"]))["valid"]
            return str(pending["id"])

    handshake_id = run(accept())
    with edit(ledger_path) as db:
        (text,) = db.execute(
            "SELECT payload FROM events WHERE action_type = 'handshake.initiated'"
        ).fetchone()
        payload = dict(json.loads(text), purpose="something else")
        db.execute(
            "UPDATE events SET payload = ? WHERE action_type = 'handshake.initiated'",
            (json.dumps(payload),),
        )

    async def verify() -> dict:
        async with AsyncRankigi(agent_id="auditor", ledger_path=ledger_path) as c:
            return await c.verify_handshake(handshake_id)

    result = run(verify())
    assert result["valid"] is False
    assert "initiator's handshake event" in result["reason"]
