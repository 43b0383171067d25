"""Shared checks of the reliability suite: reading ledgers, running scripts."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import quote

import httpx
from typing_extensions import Protocol

from rankigi import Rankigi
from rankigi.ledger import Ledger

__all__ = [
    "API_KEY",
    "ROOT",
    "LedgerFile",
    "MakeClient",
    "Server",
    "Store",
    "assert_exactly_once",
    "clean_environment",
    "run_python",
    "stored_ids",
    "stored_payloads",
    "strict_json",
    "wait_for",
]

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "rk_reliability_key"
MakeClient = Callable[..., Rankigi]


class Store(Protocol):
    """Where a test reads stored events back: a server or a ledger file."""

    def records(self, agent_id: str) -> list[dict[str, Any]]: ...

    def verify(self, agent_id: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Server:
    """A running ``rankigi serve``, read through its HTTP API as a client would."""

    url: str
    api_key: str = API_KEY

    def records(self, agent_id: str) -> list[dict[str, Any]]:
        path = f"/api/agents/{quote(agent_id, safe='')}/events"
        found: list[dict[str, Any]] = []
        after: Optional[int] = None
        while True:
            params = (
                {"limit": 1000} if after is None else {"limit": 1000, "after": after}
            )
            response = self._get(path, params)
            if response.status_code == 404:
                return found  # the server has no event of this agent
            response.raise_for_status()
            body = response.json()
            found += body["events"]
            after = body["next_after"]
            if after is None:
                return found

    def verify(self, agent_id: str) -> dict[str, Any]:
        response = self._get(f"/api/agents/{quote(agent_id, safe='')}/verify", {})
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def _get(self, path: str, params: dict[str, Any]) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        return httpx.get(self.url + path, params=params, headers=headers, timeout=30)


@dataclass(frozen=True)
class LedgerFile:
    """An embedded ledger file, read through ``rankigi.ledger``."""

    path: Path

    def records(self, agent_id: str) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with Ledger(self.path, create=False, readonly=True) as ledger:
            return ledger.events(agent_id)

    def verify(self, agent_id: str) -> dict[str, Any]:
        with Ledger(self.path, create=False, readonly=True) as ledger:
            return ledger.verify(agent_id).as_dict()


def stored_ids(store: Store, agent_id: str) -> list[str]:
    return [record["event_id"] for record in store.records(agent_id)]


def assert_exactly_once(
    store: Store, agent_id: str, expected: Sequence[Optional[str]]
) -> list[dict[str, Any]]:
    """Check that the chain contains each id of ``expected`` once, and no other."""
    assert None not in expected, "a track_* call returned None (event dropped)"
    found = store.records(agent_id)
    copies = Counter(record["event_id"] for record in found)
    assert [i for i, n in copies.items() if n > 1] == [], "ids stored twice"
    missing = [i for i in expected if i not in copies]
    assert missing == [], f"{len(missing)} of {len(expected)} ids not stored"
    unexpected = sorted(set(copies) - set(expected))
    assert unexpected == [], "ids stored that no track_* call returned"
    result = store.verify(agent_id)
    assert result["valid"], result["reason"]
    assert result["event_count"] == len(expected)
    return found


def stored_payloads(ledger_path: Path, agent_id: str) -> list[str]:
    """Return the stored payload column as text, unparsed, in chain order."""
    uri = f"file:{ledger_path}?mode=ro"
    connection = sqlite3.connect(uri, uri=True)
    try:
        rows = connection.execute(
            "SELECT payload FROM events WHERE agent_id = ? ORDER BY chain_index",
            (agent_id,),
        ).fetchall()
    finally:
        connection.close()
    return [str(payload) for (payload,) in rows]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid in strict JSON")


def strict_json(text: str) -> Any:
    """Parse ``text`` as RFC 8259 JSON: NaN and Infinity raise ValueError."""
    return json.loads(text, parse_constant=_reject_constant)


def clean_environment() -> dict[str, str]:
    """Return this process's environment without RANKIGI_* settings."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RANKIGI_")}
    environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), environ.get("PYTHONPATH")])
    )
    return environ


def run_python(
    source: str, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``source`` in a fresh interpreter; raise TimeoutExpired if it hangs."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_environment(),
    )


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
