"""A refund agent whose every step lands in a verifiable audit trail.

The tools do real local work: they read orders from a SQLite database, apply
a refund policy and write receipts to disk. With no API key set, the client
records into the embedded ledger (``.rankigi/ledger.db``); the script ends by
verifying that agent's hash chain.

Run it with ``make demo`` or ``python examples/quickstart.py``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

from rankigi import Rankigi
from rankigi.ledger import Ledger, LedgerError

AGENT_ID = "refund-agent"

ORDERS = [
    ("ord_1001", "alice@example.com", "49.90", "2026-11-28", "delivered"),
    ("ord_1002", "bob@example.com", "120.00", "2026-10-01", "delivered"),
    ("ord_1003", "carol@example.com", "15.50", "2026-12-01", "shipped"),
]

TICKETS = [
    {"order_id": "ord_1001", "reason": "damaged", "card_number": "4242424242424242"},
    {"order_id": "ord_1002", "reason": "changed my mind"},
    {"order_id": "ord_1003", "reason": "late"},
    {"order_id": "ord_9999", "reason": "never arrived"},
]


def open_orders() -> sqlite3.Connection:
    """Create the shop's order table in memory."""
    db = sqlite3.connect(":memory:")
    db.execute(
        "CREATE TABLE orders (id TEXT PRIMARY KEY, email TEXT, total TEXT, "
        "ordered_on TEXT, status TEXT)"
    )
    db.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?)", ORDERS)
    return db


def lookup_order(db: sqlite3.Connection, order_id: str) -> dict[str, str]:
    row = db.execute(
        "SELECT id, email, total, ordered_on, status FROM orders WHERE id = ?",
        (order_id,),
    ).fetchone()
    if row is None:
        raise LookupError(f"order {order_id!r} not found")
    return dict(zip(("id", "email", "total", "ordered_on", "status"), row))


def compute_refund(order: dict[str, str], reason: str) -> dict[str, object]:
    """Apply the refund policy: full refunds for damage, 30-day window else."""
    if order["status"] != "delivered":
        raise ValueError(f"order {order['id']} is {order['status']}, not delivered")
    total = Decimal(order["total"])
    share = Decimal("1.00") if reason == "damaged" else Decimal("0.80")
    return {"order_id": order["id"], "amount": total * share, "reason": reason}


def write_receipt(refund: dict[str, object], folder: Path) -> Path:
    path = folder / f"receipt-{refund['order_id']}.json"
    path.write_text(json.dumps(refund, default=str, indent=2))
    return path


def handle(client: Rankigi, db: sqlite3.Connection, ticket: dict, folder: Path) -> None:
    """Resolve one support ticket, recording each step."""
    try:
        order = lookup_order(db, ticket["order_id"])
        client.track_tool_call("lookup_order", ticket, order)
        refund = compute_refund(order, ticket["reason"])
        client.track_tool_call("compute_refund", {"order": order}, refund)
        receipt = write_receipt(refund, folder)
        client.track_tool_call("write_receipt", refund, {"path": receipt.name})
    except (LookupError, ValueError) as exc:
        client.track_error("refund_flow", exc, severity="warn")
        client.track_agent_output("reply", f"Sorry, no refund: {exc}")
        return
    client.track_agent_output("reply", f"Refunded {refund['amount']} to your card.")
    if refund["amount"] > Decimal("100"):
        client.track_custom_event(
            "policy_check", "compute_refund", {"rule": "large_refund", "passed": True}
        )


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    db = open_orders()
    # Secret-looking keys (password, token, ...) are redacted by default;
    # redact_keys adds this shop's own sensitive fields.
    client = Rankigi(agent_id=AGENT_ID, redact_keys=["card_number"])
    client.on_error = lambda error: print(f"audit trail problem: {error}")
    with client, tempfile.TemporaryDirectory() as folder:
        for ticket in TICKETS:
            handle(client, db, ticket, Path(folder))
    print(f"recorded {client.stats()['sent']} events for {AGENT_ID}")

    try:
        with Ledger(client.config.ledger_path, create=False) as ledger:
            result = ledger.verify(AGENT_ID)
    except LedgerError as exc:
        print(f"could not read the ledger: {exc}")
        return 2
    if result.valid:
        print(
            f"{AGENT_ID}: chain intact, {result.event_count} events, "
            f"head {result.head_hash}"
        )
        print("list them with: rankigi events --agent", AGENT_ID)
        return 0
    print(f"{AGENT_ID}: chain BROKEN at index {result.broken_at}: {result.reason}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
