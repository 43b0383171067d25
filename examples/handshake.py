"""Two agents agree on a task through a handshake that both chains record.

A planner agent proposes a delegation to an executor agent; the executor
accepts it, does the work, and an auditor verifies the handshake against both
agents' chains. With no API key both agents share the embedded ledger
(``.rankigi/ledger.db``); with ``RANKIGI_API_KEY`` and ``RANKIGI_BASE_URL``
set, they use that server (``rankigi serve`` locally).

Run it with ``python examples/handshake.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys

from rankigi import AsyncRankigi, Rankigi, RankigiError


def checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


async def executor_accepts(handshake_id: str, document: str) -> str:
    """Accept the handshake as the executor, from asyncio code, and do the work."""
    async with AsyncRankigi(agent_id="executor") as executor:
        await executor.complete_handshake(handshake_id, accepted=True)
        digest = checksum(document)
        await executor.track_tool_call("checksum", {"length": len(document)}, digest)
        return digest


def main() -> int:
    document = "Quarterly refunds: 42 approved, 3 rejected.\n" * 20
    with Rankigi(agent_id="planner") as planner:
        handshake = planner.initiate_handshake(
            "executor", "checksum the quarterly report", {"bytes": len(document)}
        )
        print(f"planner proposed handshake {handshake['id']} (pending)")

    digest = asyncio.run(executor_accepts(handshake["id"], document))
    print(f"executor accepted and computed checksum {digest}")

    with Rankigi(agent_id="auditor") as auditor:
        try:
            result = auditor.verify_handshake(handshake["id"])
            auditor.complete_handshake(handshake["id"], accepted=True)
        except RankigiError as exc:
            # Only the target may complete, and only once.
            print(f"auditor cannot complete it: {exc.code}")
    if result["valid"]:
        print(f"handshake verified: status {result['status']}, both chains agree")
        return 0
    print(f"handshake NOT verified: {result['reason']}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
