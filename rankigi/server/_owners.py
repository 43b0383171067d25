"""Which API key owns which agent, in a table of the ledger file.

The first key that writes an agent owns it from then on; the owner of an
agent never changes. The table ``agent_owners`` sits beside the ledger's own
tables, which the server leaves as they are, and contains key fingerprints only.
An agent whose events were stored before any key claimed it (for example by
an embedded client) goes to the first key that writes it through the server.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Optional

from rankigi._ids import format_timestamp, now_ns
from rankigi.ledger import LedgerError

__all__ = ["OwnedByAnotherKey", "OwnerLookup", "claim_agents", "create_table"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS agent_owners (
    agent_id TEXT PRIMARY KEY,
    key_fingerprint TEXT NOT NULL,
    claimed_at TEXT NOT NULL
)
"""
_SELECT_OWNER = "SELECT key_fingerprint FROM agent_owners WHERE agent_id = ?"
_INSERT_OWNER = (
    "INSERT INTO agent_owners (agent_id, key_fingerprint, claimed_at) VALUES (?, ?, ?)"
)


class OwnedByAnotherKey(Exception):
    """Raised when a key writes an agent that another key owns."""

    def __init__(self, agent_id: str) -> None:
        super().__init__(agent_id)
        self.agent_id = agent_id


def create_table(connection: sqlite3.Connection) -> None:
    """Create ``agent_owners`` if the file has none yet."""
    connection.execute(_SCHEMA)


def claim_agents(
    connection: sqlite3.Connection, agent_ids: Iterable[str], key: str
) -> list[str]:
    """Make ``key`` the owner of each unowned agent, inside a write transaction.

    Returns the agents this call claimed. The caller's transaction holds
    SQLite's write lock, so no other writer, in this process or another, can
    claim the same agent in between.

    Raises:
        OwnedByAnotherKey: another key owns one of the agents. The caller
            rolls back, which also undoes the claims made so far.
    """
    claimed_at = format_timestamp(now_ns())
    claimed = []
    for agent_id in dict.fromkeys(agent_ids):
        row = connection.execute(_SELECT_OWNER, (agent_id,)).fetchone()
        if row is None:
            connection.execute(_INSERT_OWNER, (agent_id, key, claimed_at))
            claimed.append(agent_id)
        elif row[0] != key:
            raise OwnedByAnotherKey(agent_id)
    return claimed


class OwnerLookup:
    """Owner lookups on a connection of their own, with a cache.

    Only committed owners enter the cache, and an owner never changes, so a
    cached owner stays correct. Methods may be called from any thread.

    Raises:
        LedgerError: the file cannot be opened.
    """

    def __init__(self, path: Path, busy_timeout: float = 30.0) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._cache: dict[str, str] = {}
        try:
            self._connection: Optional[sqlite3.Connection] = sqlite3.connect(
                os.fspath(path),
                timeout=busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open {path}: {exc}") from exc

    def cached(self, agent_id: str) -> Optional[str]:
        """Return the owner of ``agent_id`` if it is cached, without a query."""
        return self._cache.get(agent_id)

    def owner(self, agent_id: str) -> Optional[str]:
        """Return the fingerprint of the key that owns ``agent_id``, or None."""
        cached = self._cache.get(agent_id)
        if cached is not None:
            return cached
        with self._use() as connection:
            row = connection.execute(_SELECT_OWNER, (agent_id,)).fetchone()
        if row is None:
            return None
        self._cache[agent_id] = str(row[0])
        return self._cache[agent_id]

    def remember(self, agent_ids: Iterable[str], key: str) -> None:
        """Cache ``key`` as the owner of agents whose claim was committed."""
        for agent_id in agent_ids:
            self._cache[agent_id] = key

    def close(self) -> None:
        """Close the connection. Calling it again does nothing."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    @contextlib.contextmanager
    def _use(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._connection is None:
                raise LedgerError(f"the owner lookups of {self._path} are closed")
            try:
                yield self._connection
            except sqlite3.Error as exc:
                raise LedgerError(f"agent_owners table of {self._path}: {exc}") from exc
