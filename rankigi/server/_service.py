"""The ledger behind the server: ingest with ownership, and the read calls.

Ingest has two steps. ``prepare`` validates and hashes a request's events
without touching the file. ``store`` hands them to the ``GroupWriter``, which
stores each request's ownership claims and events atomically, together with
those of other requests waiting at the same time. The other methods block on
SQLite, so the app calls them from worker threads. Reads use a second
connection, which SQLite's WAL mode lets run while a write is in progress.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from rankigi.ledger import AppendResult, Ledger, VerifyResult

# NOTE: prepare_events and append_batch are the ledger's own steps of
# Ledger.append. The server runs them itself, inside Ledger.write, so that the
# ownership claim commits or rolls back together with the events.
from rankigi.ledger._record import PreparedEvent, prepare_events, resolve_received_at
from rankigi.ledger._store import append_batch
from rankigi.server._checkpoint import Checkpointer, disable_autocheckpoint
from rankigi.server._owners import (
    OwnedByAnotherKey,
    OwnerLookup,
    claim_agents,
    create_table,
)
from rankigi.server._writer import GroupWriter

__all__ = ["LedgerService", "PreparedIngest"]


@dataclass(frozen=True)
class PreparedIngest:
    """A request's validated events, ready to store for ``key``.

    ``unknown_agents`` are the batch's agents without a known owner, which
    ``key`` claims when the events are stored.
    """

    key: str
    events: list[PreparedEvent]
    unknown_agents: list[str]


class LedgerService:
    """Store events for API keys and read back the agents each key owns.

    Raises:
        LedgerError: the ledger cannot be created or opened.
    """

    def __init__(self, path: str) -> None:
        self._writer = Ledger(path, create=True)
        self._writer.write(create_table)
        # Checkpoints run on a thread of their own, not in the commits that
        # requests wait for.
        self._writer.write(disable_autocheckpoint)
        self._reader = Ledger(path, create=False)
        self._owners = OwnerLookup(self._writer.path)
        self._checkpointer = Checkpointer(self._writer.path)
        self._group_writer = GroupWriter(self._writer)

    @property
    def path(self) -> Path:
        """Absolute path of the ledger file."""
        return self._writer.path

    def prepare(self, key: str, events: Sequence[Any]) -> PreparedIngest:
        """Validate and hash ``events`` for ``key``, without storing them.

        Raises:
            InvalidEventError: an event is invalid.
            OwnedByAnotherKey: an event names an agent that another key owns.
        """
        prepared = prepare_events(events, resolve_received_at(None))
        agent_ids = list(dict.fromkeys(event.agent_id for event in prepared))
        for agent_id in agent_ids:
            owner = self._owners.cached(agent_id)
            if owner is not None and owner != key:
                raise OwnedByAnotherKey(agent_id)
        unknown = [a for a in agent_ids if self._owners.cached(a) is None]
        return PreparedIngest(key, prepared, unknown)

    async def store(self, ingest: PreparedIngest) -> list[AppendResult]:
        """Store prepared events all or none, and return their results.

        ``ingest.key`` becomes the owner of each new agent in the batch.

        Raises:
            OwnedByAnotherKey: an event names an agent that another key owns.
            LedgerError: the write failed.
        """
        if not ingest.events:
            return []

        def store(connection: sqlite3.Connection) -> list[AppendResult]:
            claim_agents(connection, ingest.unknown_agents, ingest.key)
            return append_batch(connection, ingest.events, self.path)

        results = await self._group_writer.write(store, len(ingest.events))
        # Committed: every agent in the batch is now owned by ``key``.
        self._owners.remember(ingest.unknown_agents, ingest.key)
        return results

    @property
    def writer(self) -> Ledger:
        """The ledger that writes go through, for handshake calls."""
        return self._writer

    def claim(self, key: str, agent_id: str) -> bool:
        """Make ``key`` the owner of ``agent_id`` if no key owns it yet.

        Returns whether ``key`` owns the agent afterwards.
        """
        owner = self._owners.owner(agent_id)
        if owner is not None:
            return owner == key

        def store(connection: sqlite3.Connection) -> None:
            claim_agents(connection, [agent_id], key)

        try:
            self._writer.write(store)
        except OwnedByAnotherKey:
            return False
        self._owners.remember([agent_id], key)
        return True

    def owns(self, key: str, agent_id: str) -> bool:
        """Return whether ``key`` owns ``agent_id``."""
        return self._owners.owner(agent_id) == key

    def events(
        self, agent_id: str, after: Optional[int], limit: int
    ) -> tuple[list[dict[str, Any]], Optional[int]]:
        """Return up to ``limit`` records after chain index ``after``.

        The second value is the chain index to pass as ``after`` for the next
        page, or None when no record follows.
        """
        # Fetching one record more than requested shows whether another page exists.
        records = self._reader.events(agent_id, after=after, limit=limit + 1)
        if len(records) <= limit:
            return records, None
        records = records[:limit]
        last_index = records[-1]["chain_index"]
        return records, last_index if type(last_index) is int else None

    def verify(self, agent_id: str) -> VerifyResult:
        """Verify the chain of ``agent_id``."""
        return self._reader.verify(agent_id)

    def close(self) -> None:
        """Store the writes queued so far, then close the ledger."""
        self._group_writer.close()
        self._checkpointer.close()
        self._writer.close()
        self._reader.close()
        self._owners.close()
