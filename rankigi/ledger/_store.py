"""The Ledger: per-agent hash chains in one SQLite file.

Several threads may share one Ledger, and several processes may append to the
same file at once. Each append runs in one ``BEGIN IMMEDIATE`` transaction,
which takes SQLite's write lock before the chain heads are read, so two writers
can never extend a chain from the same head.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Optional, TypeVar

from rankigi.ledger._errors import LedgerError
from rankigi.ledger._record import (
    FIELDS,
    PreparedEvent,
    prepare_events,
    resolve_received_at,
    seal,
)
from rankigi.ledger._results import AppendResult, VerifyResult
from rankigi.ledger._schema import open_connection
from rankigi.ledger._verify import verify_chain

__all__ = ["Ledger", "append_batch"]

logger = logging.getLogger("rankigi.ledger")

_COLUMNS = ", ".join(FIELDS)
_INSERT_EVENT = (
    f"INSERT INTO events ({_COLUMNS}) VALUES ({', '.join('?' * len(FIELDS))})"
)
_SELECT_STORED = (
    "SELECT event_id, chain_index, event_hash, previous_event_hash "
    "FROM events WHERE agent_id = ? AND event_id IN ({})"
)
# Event ids looked up per statement. SQLite before 3.32 allows at most 999
# parameters in one statement.
_LOOKUP_CHUNK = 500
_SELECT_CONFLICT = (
    "SELECT event_hash FROM events "
    "WHERE agent_id = ? AND (chain_index = ? OR event_id = ?)"
)
_EVENT_ID, _AGENT_ID, _CHAIN_INDEX, _EVENT_HASH = (
    FIELDS.index(name) for name in ("event_id", "agent_id", "chain_index", "event_hash")
)
_SELECT_HEAD = "SELECT chain_index, event_hash FROM heads WHERE agent_id = ?"
_UPSERT_HEAD = (
    "INSERT OR REPLACE INTO heads (agent_id, chain_index, event_hash) VALUES (?, ?, ?)"
)
_SELECT_CHAIN = f"SELECT {_COLUMNS} FROM events WHERE agent_id = ? ORDER BY chain_index"
# Agents listed in heads but without events are included, so a chain whose
# events were all deleted still shows up in verification.
_SELECT_AGENTS = (
    "SELECT agent_id FROM heads UNION SELECT agent_id FROM events ORDER BY agent_id"
)

_Head = Optional[tuple[int, str]]
_T = TypeVar("_T")


class Ledger:
    """An embedded, append-only store of hash-chained events.

    Args:
        path: the SQLite file. A relative path is resolved against the working
            directory when the ledger is opened.
        create: create the file, and its missing parent directories, when it
            does not exist.
        busy_timeout: maximum seconds to wait for another writer's lock before
            an append fails.
        readonly: open without changing the file, so an auditor can verify a
            copy it may not write; appends then fail. Where the directory is
            writable, SQLite may still create its ``-wal`` and ``-shm`` files.

    Raises:
        LedgerNotFoundError: the file is missing and ``create`` is false.
        NotALedgerError: the file exists but is not a rankigi ledger.
        LedgerError: the file cannot be created, read or opened.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        busy_timeout: float = 30.0,
        readonly: bool = False,
    ) -> None:
        if readonly and create:
            raise ValueError(
                "a read-only ledger cannot be created; pass create=False with "
                "readonly=True"
            )
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, (int, float)):
            raise TypeError(f"busy_timeout must be a number, got {busy_timeout!r}")
        if not busy_timeout >= 0:
            raise ValueError(
                f"busy_timeout must be zero or more seconds, got {busy_timeout!r}"
            )
        self._path = Path(os.path.abspath(path))
        self._busy_timeout = float(busy_timeout)
        self._readonly = readonly
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = open_connection(
            self._path,
            create=create,
            busy_timeout=self._busy_timeout,
            readonly=readonly,
        )
        self._closed = False
        # Connections inherited across fork(). SQLite does not support using a
        # connection in the child, and closing one runs SQLite code on it, so
        # the child keeps them open and unused.
        self._inherited: list[sqlite3.Connection] = []
        _open_ledgers.add(self)

    @property
    def path(self) -> Path:
        """Absolute path of the ledger file."""
        return self._path

    def append(
        self,
        events: Sequence[Mapping[str, Any]],
        *,
        received_at: str | None = None,
    ) -> list[AppendResult]:
        """Validate and store a batch of wire events, all or none.

        An event whose ``(agent_id, event_id)`` is already stored, earlier in
        the ledger or earlier in the batch, is not stored again. Its result
        describes the stored event, with ``duplicate=True``.

        Args:
            events: ingest event objects; each agent's events extend its chain
                in batch order.
            received_at: the receive time to record, as RFC 3339 text; the
                current time when None.

        Raises:
            InvalidEventError: an event is invalid; nothing was stored.
            LedgerError: the write failed; nothing was stored.
        """
        received = resolve_received_at(received_at)
        prepared = prepare_events(events, received)
        if not prepared:
            return []
        with self._use() as connection:
            return self._write(connection, prepared)

    def events(
        self,
        agent_id: str | None = None,
        *,
        action: str | None = None,
        tool: str | None = None,
        severity: str | None = None,
        after: int | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[dict[str, Any]]:
        """Return stored records as dicts in ``FIELDS`` order, payload parsed.

        With ``agent_id`` the records come in chain order, otherwise in the
        order they were stored; ``newest_first`` reverses either. ``action``,
        ``tool`` and ``severity`` match the stored ``action_type``,
        ``tool_invoked`` and ``severity`` exactly. ``after`` keeps records with
        a larger chain index and needs ``agent_id``. A payload that is no longer
        valid JSON, because the file was edited, is returned as its stored text.
        """
        query, parameters = _events_query(
            agent_id, action, tool, severity, after, limit, newest_first
        )
        with self._use() as connection:
            rows = connection.execute(query, parameters).fetchall()
        return [_record_from_row(row) for row in rows]

    def agents(self) -> list[str]:
        """Return the ids of all agents with a chain, sorted."""
        with self._use() as connection:
            rows = connection.execute(_SELECT_AGENTS).fetchall()
        return [str(agent_id) for (agent_id,) in rows]

    def head(self, agent_id: str) -> tuple[int, str] | None:
        """Return ``(chain_index, event_hash)`` of the agent's last event, or None."""
        with self._use() as connection:
            row = connection.execute(_SELECT_HEAD, (agent_id,)).fetchone()
        return None if row is None else (row[0], row[1])

    def verify(self, agent_id: str) -> VerifyResult:
        """Check the agent's chain and report the first broken index.

        An agent without events has a valid, empty chain. Both the chain and its
        head are read in one transaction, so concurrent appends cannot make an
        intact chain look broken.
        """
        with self._use() as connection, _read_transaction(connection):
            head = connection.execute(_SELECT_HEAD, (agent_id,)).fetchone()
            rows = connection.execute(_SELECT_CHAIN, (agent_id,))
            return verify_chain(agent_id, rows, head)

    def verify_all(self) -> list[VerifyResult]:
        """Verify every agent's chain, in agent id order."""
        return [self.verify(agent_id) for agent_id in self.agents()]

    def close(self) -> None:
        """Close the file. Calling it again does nothing."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
            self._closed = True
        _open_ledgers.discard(self)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<Ledger {os.fspath(self._path)!r}{state}>"

    @contextlib.contextmanager
    def _use(self) -> Iterator[sqlite3.Connection]:
        """Hold the lock and yield the connection, reopening it after a fork."""
        with self._lock:
            if self._closed:
                raise LedgerError(
                    f"ledger {self._path} is closed; open a new Ledger to use it"
                )
            if self._connection is None:
                self._connection = open_connection(
                    self._path,
                    create=False,
                    busy_timeout=self._busy_timeout,
                    readonly=self._readonly,
                )
            try:
                yield self._connection
            except sqlite3.Error as exc:
                raise LedgerError(f"ledger {self._path}: {exc}") from exc

    def _write(
        self, connection: sqlite3.Connection, prepared: list[PreparedEvent]
    ) -> list[AppendResult]:
        return self._transact(
            connection, lambda conn: append_batch(conn, prepared, self._path)
        )

    def write(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``operation`` in one write transaction, committed if it returns.

        Extensions such as handshakes use it to store their own rows and
        chain events atomically; ``append_batch`` appends inside it.
        """
        with self._use() as connection:
            return self._transact(connection, operation)

    def _transact(
        self,
        connection: sqlite3.Connection,
        operation: Callable[[sqlite3.Connection], _T],
    ) -> _T:
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise LedgerError(
                f"cannot lock ledger {self._path} for writing: {exc}; another "
                f"writer held the lock longer than busy_timeout "
                f"({self._busy_timeout:g} s)"
            ) from exc
        try:
            result = operation(connection)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            raise
        return result

    def _reset_after_fork(self) -> None:
        # Another parent thread may have held the lock at fork() time, and a
        # connection must not be used across fork(). So the child gets a new
        # lock and opens a new connection on first use.
        self._lock = threading.Lock()
        if self._connection is not None:
            self._inherited.append(self._connection)
            self._connection = None


_open_ledgers: weakref.WeakSet[Ledger] = weakref.WeakSet()


def _reset_ledgers_after_fork() -> None:
    for ledger in list(_open_ledgers):
        ledger._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_ledgers_after_fork)


def append_batch(
    connection: sqlite3.Connection, prepared: list[PreparedEvent], path: Path
) -> list[AppendResult]:
    """Store a batch inside the caller's write transaction.

    An event whose ``(agent_id, event_id)`` is stored already, or comes earlier
    in the batch, is not stored again; its result is the stored event's, with
    ``duplicate=True``.

    Raises:
        LedgerError: the file contains rows that collide with the new ones, or
            an invalid head, because it was edited outside rankigi.
    """
    # The caller's transaction holds the write lock, so no other writer can
    # store one of these event ids between this lookup and the inserts.
    stored = _find_stored(connection, prepared)
    heads: dict[str, _Head] = {}
    moved_heads: dict[str, tuple[int, str]] = {}
    rows: list[tuple[Any, ...]] = []
    results: list[AppendResult] = []
    for event in prepared:
        agent_id = event.agent_id
        key = (agent_id, event.event_id)
        earlier = stored.get(key)
        if earlier is not None:
            results.append(
                earlier if earlier.duplicate else replace(earlier, duplicate=True)
            )
            continue
        if agent_id not in heads:
            heads[agent_id] = _read_head(connection, agent_id, path)
        head = heads[agent_id]
        index, previous_hash = (0, "") if head is None else (head[0] + 1, head[1])
        row, event_hash = seal(event, index, previous_hash)
        rows.append(row)
        heads[agent_id] = moved_heads[agent_id] = (index, event_hash)
        result = AppendResult(event.event_id, index, event_hash, previous_hash, False)
        results.append(result)
        # A later event of the batch with the same id is a duplicate of this one.
        stored[key] = result
    _insert_rows(connection, rows, path)
    connection.executemany(
        _UPSERT_HEAD,
        [(agent, index, digest) for agent, (index, digest) in moved_heads.items()],
    )
    return results


def _find_stored(
    connection: sqlite3.Connection, prepared: list[PreparedEvent]
) -> dict[tuple[str, str], AppendResult]:
    """Return the results of the batch's events that are stored already."""
    event_ids: dict[str, dict[str, None]] = {}
    for event in prepared:
        event_ids.setdefault(event.agent_id, {})[event.event_id] = None
    stored: dict[tuple[str, str], AppendResult] = {}
    for agent_id, ids in event_ids.items():
        unique = list(ids)
        for start in range(0, len(unique), _LOOKUP_CHUNK):
            chunk = unique[start : start + _LOOKUP_CHUNK]
            query = _SELECT_STORED.format(", ".join("?" * len(chunk)))
            for event_id, index, event_hash, previous_hash in connection.execute(
                query, (agent_id, *chunk)
            ):
                stored[agent_id, event_id] = AppendResult(
                    event_id, index, event_hash, previous_hash, True
                )
    return stored


def _read_head(connection: sqlite3.Connection, agent_id: str, path: Path) -> _Head:
    row = connection.execute(_SELECT_HEAD, (agent_id,)).fetchone()
    if row is None:
        return None
    index, digest = row
    if type(index) is not int or not isinstance(digest, str):
        raise LedgerError(
            f"the recorded head of agent {agent_id!r} in {path} is invalid "
            f"({index!r:.40}, {digest!r:.80}); the file was edited outside "
            "rankigi, so run `rankigi verify` on it"
        )
    return index, digest


def _insert_rows(
    connection: sqlite3.Connection, rows: list[tuple[Any, ...]], path: Path
) -> None:
    try:
        connection.executemany(_INSERT_EVENT, rows)
    except sqlite3.IntegrityError as exc:
        agent_id, index = _first_conflict(connection, rows)
        raise LedgerError(
            f"cannot append to agent {agent_id!r} at chain index {index} "
            f"in {path}: {exc}; the file was edited outside rankigi, so run "
            "`rankigi verify` on it"
        ) from exc


def _first_conflict(
    connection: sqlite3.Connection, rows: list[tuple[Any, ...]]
) -> tuple[str, int]:
    """Return the agent and chain index of the row that failed to insert.

    ``executemany`` stops at the failing row, and the rows before it stay
    inserted until the caller rolls back. So the failing row is the first one
    whose chain index or event id is held by anything but itself.
    """
    for row in rows:
        agent_id, index = row[_AGENT_ID], row[_CHAIN_INDEX]
        holders = connection.execute(
            _SELECT_CONFLICT, (agent_id, index, row[_EVENT_ID])
        ).fetchall()
        if holders != [(row[_EVENT_HASH],)]:
            return agent_id, index
    return rows[0][_AGENT_ID], rows[0][_CHAIN_INDEX]


@contextlib.contextmanager
def _read_transaction(connection: sqlite3.Connection) -> Iterator[None]:
    connection.execute("BEGIN")
    try:
        yield
    finally:
        connection.execute("COMMIT")


def _events_query(
    agent_id: str | None,
    action: str | None,
    tool: str | None,
    severity: str | None,
    after: int | None,
    limit: int | None,
    newest_first: bool,
) -> tuple[str, list[Any]]:
    if after is not None and agent_id is None:
        raise ValueError(
            "after is a chain index, so it needs agent_id; pass agent_id or drop after"
        )
    if after is not None and type(after) is not int:
        raise ValueError(f"after must be a chain index (int), got {after!r}")
    if limit is not None and (type(limit) is not int or limit < 0):
        raise ValueError(f"limit must be an int of 0 or more, got {limit!r}")

    conditions: list[str] = []
    parameters: list[Any] = []
    for column, value in (
        ("agent_id", agent_id),
        ("action_type", action),
        ("tool_invoked", tool),
        ("severity", severity),
    ):
        if value is not None:
            conditions.append(f"{column} = ?")
            parameters.append(value)
    if after is not None:
        conditions.append("chain_index > ?")
        parameters.append(after)

    query = f"SELECT {_COLUMNS} FROM events"
    if conditions:
        query += " WHERE " + " AND ".join(conditions)
    # The ledger never deletes rows, so rowid grows with every insert and
    # gives the order events were stored in.
    order = "chain_index" if agent_id is not None else "rowid"
    query += f" ORDER BY {order}" + (" DESC" if newest_first else "")
    if limit is not None:
        query += " LIMIT ?"
        parameters.append(limit)
    return query, parameters


def _record_from_row(row: Sequence[Any]) -> dict[str, Any]:
    record = dict(zip(FIELDS, row))
    with contextlib.suppress(TypeError, ValueError):
        record["payload"] = json.loads(record["payload"])
    return record
