"""Handshakes through `rankigi serve`: the HTTP routes and the clients on them."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from typing import Any, Callable

import httpx
import pytest

from rankigi import AsyncRankigi, Rankigi, RankigiError
from rankigi.ledger import Ledger
from tests.server_fixture import API_KEY, OTHER_API_KEY, LiveServer
from tests.sqlite_edit import edit

Make = Callable[..., Rankigi]


@pytest.fixture
def parties(live_server: LiveServer) -> Any:
    """A buyer agent on one key and a seller agent on another."""
    buyer = Rankigi(api_key=API_KEY, agent_id="buyer", base_url=live_server.url)
    seller = Rankigi(api_key=OTHER_API_KEY, agent_id="seller", base_url=live_server.url)
    yield buyer, seller
    buyer.close(2)
    seller.close(2)


def test_health_announces_handshakes(live_server: LiveServer) -> None:
    health = httpx.get(live_server.url + "/api/health").json()
    assert "handshakes" in health["capabilities"]


def test_full_flow_across_two_keys(parties: Any, live_server: LiveServer) -> None:
    buyer, seller = parties
    buyer.track_tool_call("quote", {"sku": "A1"}, {"price": 10})
    pending = buyer.initiate_handshake("seller", "purchase", {"sku": "A1"})
    done = seller.complete_handshake(pending["id"], accepted=True)
    by_buyer = buyer.verify_handshake(pending["id"])
    by_seller = seller.verify_handshake(pending["id"])

    assert pending["status"] == "pending"
    assert len(pending["nonce"]) == 32
    assert done["status"] == "accepted"
    assert by_buyer["valid"] is True
    assert by_seller == by_buyer
    with Ledger(live_server.ledger_path, create=False) as ledger:
        buyer_chain = ledger.events("buyer")
        assert ledger.verify("buyer").valid
        assert ledger.verify("seller").valid
    assert [e["action_type"] for e in buyer_chain] == [
        "tool_call",
        "handshake.initiated",
    ]
    assert by_buyer["initiator_event_hash"] == buyer_chain[-1]["event_hash"]


def test_rejection_never_verifies(parties: Any) -> None:
    buyer, seller = parties
    pending = buyer.initiate_handshake("seller", "purchase")
    assert seller.complete_handshake(pending["id"], accepted=False)["status"] == (
        "rejected"
    )

    result = buyer.verify_handshake(pending["id"])
    assert result["valid"] is False
    assert "rejected" in result["reason"]


def test_second_completion_conflicts(parties: Any) -> None:
    buyer, seller = parties
    pending = buyer.initiate_handshake("seller", "purchase")
    seller.complete_handshake(pending["id"], accepted=True)

    with pytest.raises(RankigiError) as info:
        seller.complete_handshake(pending["id"], accepted=True)
    assert info.value.code == "CONFLICT"
    assert info.value.status_code == 409


def test_initiator_cannot_complete(parties: Any) -> None:
    buyer, _ = parties
    pending = buyer.initiate_handshake("seller", "purchase")

    with pytest.raises(RankigiError) as info:
        buyer.complete_handshake(pending["id"], accepted=True)
    assert info.value.code == "AUTH_FAILED"
    assert info.value.status_code == 403


def test_expired_handshake(parties: Any) -> None:
    buyer, seller = parties
    pending = buyer.initiate_handshake("seller", "purchase", expires_in=0.2)
    time.sleep(0.4)

    with pytest.raises(RankigiError) as info:
        seller.complete_handshake(pending["id"], accepted=True)
    assert info.value.code == "EXPIRED"
    assert info.value.status_code == 410
    assert buyer.verify_handshake(pending["id"])["valid"] is False


def test_unknown_handshake_not_found(parties: Any) -> None:
    _, seller = parties
    with pytest.raises(RankigiError) as info:
        seller.verify_handshake("01a241f6-0000-7000-8000-000000000000")
    assert info.value.code == "NOT_FOUND"


def test_key_owning_neither_party_sees_nothing(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(api_keys=(API_KEY, OTHER_API_KEY, "rk_third_key"))
    with Rankigi(api_key=API_KEY, agent_id="buyer", base_url=server.url) as buyer:
        pending = buyer.initiate_handshake("seller", "purchase")

    third = server.get(
        f"/api/handshakes/{pending['id']}/verify", api_key="rk_third_key"
    )
    unknown = server.get(f"/api/handshakes/{pending['id']}/verify", api_key="rk_nope")
    owner = server.get(f"/api/handshakes/{pending['id']}/verify", api_key=API_KEY)

    assert third.status_code == 404
    assert third.json()["error"]["code"] == "NOT_FOUND"
    assert unknown.status_code == 401
    assert owner.status_code == 200


def test_key_cannot_act_for_another_keys_agent(
    parties: Any, live_server: LiveServer
) -> None:
    buyer, seller = parties
    seller.track_tool_call("warmup", 1, 1)
    assert seller.flush(5)
    impostor = Rankigi(api_key=API_KEY, agent_id="seller", base_url=live_server.url)
    pending = buyer.initiate_handshake("seller", "purchase")
    try:
        with pytest.raises(RankigiError) as info:
            impostor.complete_handshake(pending["id"], accepted=True)
        assert info.value.code == "AUTH_FAILED"
        with pytest.raises(RankigiError) as start:
            impostor.initiate_handshake("buyer", "spoof")
        assert start.value.code == "AUTH_FAILED"
    finally:
        impostor.close(1)


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"target_agent_id": "s", "purpose": "p"}, 400, "initiator_agent_id"),
        (
            {"initiator_agent_id": "b", "target_agent_id": "b", "purpose": "p"},
            400,
            "initiator itself",
        ),
        (
            {
                "initiator_agent_id": "b",
                "target_agent_id": "s",
                "purpose": "p",
                "expires_in": -1,
            },
            400,
            "expires_in",
        ),
        ([1, 2], 400, "JSON object"),
    ],
)
def test_invalid_initiation_rejected(
    live_server: LiveServer, body: Any, status: int, fragment: str
) -> None:
    response = live_server.post("/api/handshakes", body)

    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == "INVALID_REQUEST"
    assert fragment in error["message"]


def test_tampered_event_reported(parties: Any, live_server: LiveServer) -> None:
    buyer, seller = parties
    pending = buyer.initiate_handshake("seller", "purchase")
    seller.complete_handshake(pending["id"], accepted=True)
    with edit(live_server.ledger_path) as db:
        (text,) = db.execute(
            "SELECT payload FROM events WHERE action_type = 'handshake.accepted'"
        ).fetchone()
        payload = dict(json.loads(text), accepted=False)
        db.execute(
            "UPDATE events SET payload = ? WHERE action_type = 'handshake.accepted'",
            (json.dumps(payload),),
        )

    result = buyer.verify_handshake(pending["id"])
    assert result["valid"] is False
    assert "target's handshake event" in result["reason"]


def test_async_clients_on_server(live_server: LiveServer) -> None:
    async def main() -> dict:
        async with (
            AsyncRankigi(
                api_key=API_KEY, agent_id="planner", base_url=live_server.url
            ) as planner,
            AsyncRankigi(
                api_key=OTHER_API_KEY, agent_id="executor", base_url=live_server.url
            ) as executor,
        ):
            pending = await planner.initiate_handshake("executor", "delegate")
            await executor.complete_handshake(pending["id"], accepted=True)
            with pytest.raises(RankigiError) as info:
                await executor.complete_handshake(pending["id"], accepted=True)
            assert info.value.code == "CONFLICT"
            return await planner.verify_handshake(pending["id"])

    assert asyncio.run(main())["valid"] is True


def test_two_processes_through_server(live_server: LiveServer) -> None:
    def run(source: str) -> str:
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(source)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    handshake_id = run(
        f"""
        from rankigi import Rankigi
        with Rankigi(api_key={API_KEY!r}, agent_id="p1",
                     base_url={live_server.url!r}) as client:
            print(client.initiate_handshake("p2", "delegate")["id"])
        """
    )
    status = run(
        f"""
        from rankigi import Rankigi
        with Rankigi(api_key={OTHER_API_KEY!r}, agent_id="p2",
                     base_url={live_server.url!r}) as client:
            print(client.complete_handshake({handshake_id!r}, True)["status"])
        """
    )
    assert status == "accepted"
    with Rankigi(api_key=API_KEY, agent_id="p1", base_url=live_server.url) as c:
        assert c.verify_handshake(handshake_id)["valid"] is True


def test_network_error_raised(tmp_path: Any) -> None:
    client = Rankigi(api_key="k", agent_id="a", base_url="http://127.0.0.1:9")
    try:
        with pytest.raises(RankigiError) as info:
            client.initiate_handshake("b", "p")
        assert info.value.code == "NETWORK_ERROR"
    finally:
        client.close(0.5)
