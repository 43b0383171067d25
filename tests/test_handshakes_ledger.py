"""Agent-to-agent handshakes on the embedded ledger."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from rankigi import Rankigi, RankigiError
from rankigi.ledger import Ledger
from tests.sqlite_edit import edit


@pytest.fixture
def ledger_path(tmp_path: Path) -> str:
    return str(tmp_path / "shared.db")


@pytest.fixture
def pair(ledger_path: str) -> Any:
    buyer = Rankigi(agent_id="buyer", ledger_path=ledger_path)
    seller = Rankigi(agent_id="seller", ledger_path=ledger_path)
    yield buyer, seller
    buyer.close()
    seller.close()


def test_full_flow_between_two_clients(pair: Any, ledger_path: str) -> None:
    buyer, seller = pair
    buyer.track_tool_call("quote", {"sku": "A1"}, {"price": 10})
    pending = buyer.initiate_handshake("seller", "purchase", {"sku": "A1"})
    done = seller.complete_handshake(pending["id"], accepted=True)
    result = buyer.verify_handshake(pending["id"])

    assert pending["status"] == "pending"
    assert pending["initiator_agent_id"] == "buyer"
    assert pending["target_agent_id"] == "seller"
    assert pending["metadata"] == {"sku": "A1"}
    assert len(pending["handshake_hash"]) == 64
    assert done["status"] == "accepted"
    assert done["completed_at"] >= pending["created_at"]
    assert result["valid"] is True
    assert result["reason"] is None
    assert result["status"] == "accepted"
    assert seller.verify_handshake(pending["id"]) == result
    with Ledger(ledger_path, create=False) as ledger:
        buyer_chain = ledger.events("buyer")
        seller_chain = ledger.events("seller")
        assert ledger.verify("buyer").valid
        assert ledger.verify("seller").valid
    # The tool call tracked first comes first in the chain.
    assert [e["action_type"] for e in buyer_chain] == [
        "tool_call",
        "handshake.initiated",
    ]
    accepted = seller_chain[-1]
    assert accepted["action_type"] == "handshake.accepted"
    assert accepted["payload"]["initiator_event_hash"] == buyer_chain[-1]["event_hash"]
    assert result["initiator_event_hash"] == buyer_chain[-1]["event_hash"]
    assert result["target_event_hash"] == accepted["event_hash"]


def test_rejected_handshake_never_verifies(pair: Any) -> None:
    buyer, seller = pair
    pending = buyer.initiate_handshake("seller", "purchase")
    done = seller.complete_handshake(pending["id"], accepted=False)
    result = buyer.verify_handshake(pending["id"])

    assert done["status"] == "rejected"
    assert result["valid"] is False
    assert "rejected" in result["reason"]


def test_pending_handshake_does_not_verify(pair: Any) -> None:
    buyer, _ = pair
    pending = buyer.initiate_handshake("seller", "purchase")

    result = buyer.verify_handshake(pending["id"])
    assert result["valid"] is False
    assert result["status"] == "pending"


def test_second_completion_conflicts(pair: Any) -> None:
    buyer, seller = pair
    pending = buyer.initiate_handshake("seller", "purchase")
    seller.complete_handshake(pending["id"], accepted=True)

    with pytest.raises(RankigiError) as info:
        seller.complete_handshake(pending["id"], accepted=False)
    assert info.value.code == "CONFLICT"
    assert info.value.status_code == 409
    assert buyer.verify_handshake(pending["id"])["valid"] is True


def test_initiator_cannot_complete(pair: Any) -> None:
    buyer, _ = pair
    pending = buyer.initiate_handshake("seller", "purchase")

    with pytest.raises(RankigiError) as info:
        buyer.complete_handshake(pending["id"], accepted=True)
    assert info.value.code == "AUTH_FAILED"
    assert "only its target 'seller'" in info.value.message


def test_pending_handshake_expires(pair: Any) -> None:
    buyer, seller = pair
    pending = buyer.initiate_handshake("seller", "purchase", expires_in=0.2)
    time.sleep(0.4)

    with pytest.raises(RankigiError) as info:
        seller.complete_handshake(pending["id"], accepted=True)
    assert info.value.code == "EXPIRED"
    assert info.value.status_code == 410
    result = buyer.verify_handshake(pending["id"])
    assert result["valid"] is False
    assert result["status"] == "expired"
    with pytest.raises(RankigiError) as again:
        seller.complete_handshake(pending["id"], accepted=True)
    assert again.value.code == "CONFLICT"


def test_default_expiry_is_fifteen_minutes(pair: Any) -> None:
    buyer, _ = pair
    pending = buyer.initiate_handshake("seller", "purchase")

    created = pending["created_at"]
    expires = pending["expires_at"]
    from datetime import datetime

    def parse(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    assert (parse(expires) - parse(created)).total_seconds() == 900


def test_unknown_handshake_not_found(pair: Any) -> None:
    buyer, seller = pair
    with pytest.raises(RankigiError) as info:
        seller.complete_handshake("no-such-id", accepted=True)
    assert info.value.code == "NOT_FOUND"
    with pytest.raises(RankigiError) as verify:
        buyer.verify_handshake("no-such-id")
    assert verify.value.code == "NOT_FOUND"


@pytest.mark.parametrize(
    ("target", "purpose", "metadata", "expires_in", "message"),
    [
        ("buyer", "p", None, 900, "is the initiator itself"),
        ("", "p", None, 900, "target_agent_id '' is invalid"),
        ("seller", "", None, 900, "purpose '' is invalid"),
        ("seller", "p", ["not", "a", "dict"], 900, "metadata must be an object"),
        ("seller", "p", None, 0, "expires_in 0 is out of range"),
        ("seller", "p", None, "soon", "expires_in 'soon' is invalid"),
    ],
)
def test_invalid_initiation_rejected(
    pair: Any, target: Any, purpose: Any, metadata: Any, expires_in: Any, message: str
) -> None:
    buyer, _ = pair
    with pytest.raises(RankigiError) as info:
        buyer.initiate_handshake(target, purpose, metadata, expires_in=expires_in)
    assert info.value.code == "INVALID_REQUEST"
    assert message in info.value.message


def _accepted(pair: Any) -> str:
    buyer, seller = pair
    pending = buyer.initiate_handshake("seller", "purchase", {"sku": "A1"})
    seller.complete_handshake(pending["id"], accepted=True)
    assert buyer.verify_handshake(pending["id"])["valid"] is True
    return str(pending["id"])


def _edit_payload(path: str, agent_id: str, action: str, key: str, value: Any) -> None:
    with edit(path) as db:
        (text,) = db.execute(
            "SELECT payload FROM events WHERE agent_id = ? AND action_type = ?",
            (agent_id, action),
        ).fetchone()
        payload = json.loads(text)
        payload[key] = value
        db.execute(
            "UPDATE events SET payload = ? WHERE agent_id = ? AND action_type = ?",
            (json.dumps(payload), agent_id, action),
        )


def test_tampered_initiator_event_detected(pair: Any, ledger_path: str) -> None:
    handshake_id = _accepted(pair)
    _edit_payload(ledger_path, "buyer", "handshake.initiated", "purpose", "refund")

    result = pair[0].verify_handshake(handshake_id)
    assert result["valid"] is False
    assert "initiator's handshake event" in result["reason"]
    assert "altered" in result["reason"]


def test_tampered_target_event_detected(pair: Any, ledger_path: str) -> None:
    handshake_id = _accepted(pair)
    _edit_payload(ledger_path, "seller", "handshake.accepted", "accepted", False)

    result = pair[1].verify_handshake(handshake_id)
    assert result["valid"] is False
    assert "target's handshake event" in result["reason"]


def test_tampered_handshake_record_detected(pair: Any, ledger_path: str) -> None:
    handshake_id = _accepted(pair)
    with edit(ledger_path) as db:
        db.execute(
            "UPDATE handshakes SET purpose = 'other' WHERE id = ?", (handshake_id,)
        )

    result = pair[0].verify_handshake(handshake_id)
    assert result["valid"] is False
    assert "record was altered" in result["reason"]


def test_status_flipped_to_accepted_detected(pair: Any, ledger_path: str) -> None:
    buyer, seller = pair
    pending = buyer.initiate_handshake("seller", "purchase")
    seller.complete_handshake(pending["id"], accepted=False)
    with edit(ledger_path) as db:
        db.execute(
            "UPDATE handshakes SET status = 'accepted' WHERE id = ?", (pending["id"],)
        )

    result = buyer.verify_handshake(pending["id"])
    assert result["valid"] is False
    assert "not a handshake.accepted event" in result["reason"]


def _run(source: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_flow_between_two_processes(ledger_path: str) -> None:
    first = _run(
        f"""
        from rankigi import Rankigi
        with Rankigi(agent_id="planner", ledger_path={ledger_path!r}) as client:
            print(client.initiate_handshake("executor", "delegate task")["id"])
        """
    )
    assert first.returncode == 0, first.stderr
    handshake_id = first.stdout.strip()
    second = _run(
        f"""
        from rankigi import Rankigi
        with Rankigi(agent_id="executor", ledger_path={ledger_path!r}) as client:
            print(client.complete_handshake({handshake_id!r}, accepted=True)["status"])
        """
    )
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "accepted"

    with Rankigi(agent_id="auditor", ledger_path=ledger_path) as auditor:
        assert auditor.verify_handshake(handshake_id)["valid"] is True
    with Ledger(ledger_path, create=False) as ledger:
        assert all(result.valid for result in ledger.verify_all())


def test_ledger_rejects_metadata_without_json_form(ledger_path: str) -> None:
    # The clients snapshot metadata first; the ledger checks direct callers.
    from rankigi.ledger import HandshakeError, initiate_handshake

    with Ledger(ledger_path) as ledger, pytest.raises(HandshakeError) as info:
        initiate_handshake(ledger, "a", "b", "p", {"x": float("nan")})
    assert info.value.code == "INVALID_REQUEST"
    assert "metadata cannot be stored" in info.value.message
