"""One writer thread that commits the writes of concurrent requests together.

Each ledger commit waits for SQLite to flush the file to disk, which takes a
few milliseconds and, with ``synchronous=FULL``, dominates the cost of a small
batch. Requests that arrive while a commit is in progress queue up here, and
the writer stores all of them in its next transaction, so they share one
flush. Each request runs inside its own SAVEPOINT, which keeps it atomic: a
request that fails is rolled back alone and the others still commit. Each
request gets its response only after the transaction that stored it has
committed, so an acknowledged event is as durable as with one transaction per
request.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Sequence
from typing import Any, Callable, Generic, Optional, TypeVar

from rankigi.ledger import Ledger, LedgerError

__all__ = ["GroupWriter"]

logger = logging.getLogger("rankigi.server")

_T = TypeVar("_T")
Operation = Callable[[sqlite3.Connection], _T]


class _Job(Generic[_T]):
    """One request's write, and the future that its coroutine awaits."""

    __slots__ = ("events", "future", "loop", "operation")

    def __init__(
        self,
        operation: Operation[_T],
        events: int,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[_T],
    ) -> None:
        self.operation = operation
        self.events = events
        self.loop = loop
        self.future = future


# The result of a job's operation, or the exception it raised.
_Outcome = tuple[Any, Optional[BaseException]]


class GroupWriter:
    """Run write operations on one thread, several to a transaction.

    Args:
        ledger: the ledger to write; its lock still serializes these writes
            with any other writes through the same ``Ledger``.
        max_group_events: a transaction takes more requests from the queue
            only while their events add up to less than this.
    """

    def __init__(self, ledger: Ledger, max_group_events: int = 10_000) -> None:
        self._ledger = ledger
        self._max_group_events = max_group_events
        self._queue: queue.SimpleQueue[Optional[_Job[Any]]] = queue.SimpleQueue()
        self._closed = False
        self._close_lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._run, name="rankigi-ledger-writer", daemon=True
        )
        self._thread.start()

    async def write(self, operation: Operation[_T], events: int) -> _T:
        """Run ``operation`` in a write transaction and return its result.

        ``events`` is the number of events the operation stores, which
        bounds the size of a transaction. The result is returned once the
        transaction has committed. The operation's own exception is raised as
        it is; a failed commit raises ``LedgerError``. Either way, nothing of
        the operation was stored.

        Raises:
            LedgerError: the writer is closed, or the write failed.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        job = _Job(operation, events, loop, future)
        with self._close_lock:
            if self._closed:
                raise LedgerError(
                    f"the writer of ledger {self._ledger.path} is closed; the "
                    "server is shutting down"
                )
            self._queue.put(job)
        return await future

    def close(self) -> None:
        """Finish the writes queued so far, then stop the thread."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        try:
            self._serve()
        finally:
            # Normally the queue is empty here. After an unexpected error, the
            # requests still queued get an error instead of waiting forever.
            with self._close_lock:
                self._closed = True
            self._fail_queued()

    def _serve(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group, stop = self._take_group(first)
            self._commit(group)
            if stop:
                return

    def _fail_queued(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                error = LedgerError(
                    f"the writer of ledger {self._ledger.path} stopped; retry"
                )
                _settle([job], [(None, error)])

    def _take_group(self, first: _Job[Any]) -> tuple[list[_Job[Any]], bool]:
        """Return ``first`` with the jobs queued behind it, and whether to stop."""
        group = [first]
        events = first.events
        while events < self._max_group_events:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return group, True
            group.append(job)
            events += job.events
        return group, False

    def _commit(self, group: list[_Job[Any]]) -> None:
        outcomes: list[_Outcome] = []

        def run_group(connection: sqlite3.Connection) -> None:
            for job in group:
                outcomes.append(self._run_job(connection, job))

        try:
            self._ledger.write(run_group)
        except BaseException as exc:
            # The transaction did not commit, so none of its jobs was stored.
            _settle(group, [(None, _group_failure(exc)) for _ in group])
            if not isinstance(exc, Exception):
                raise
            return
        _settle(group, outcomes)

    def _run_job(self, connection: sqlite3.Connection, job: _Job[Any]) -> _Outcome:
        """Run one job in a SAVEPOINT, rolled back alone if the job fails."""
        connection.execute("SAVEPOINT rankigi_request")
        try:
            result = job.operation(connection)
        except Exception as exc:
            # A failed ROLLBACK TO raises, which fails the whole transaction.
            connection.execute("ROLLBACK TO rankigi_request")
            connection.execute("RELEASE rankigi_request")
            if isinstance(exc, sqlite3.Error):
                failure: Exception = LedgerError(f"ledger {self._ledger.path}: {exc}")
                failure.__cause__ = exc
                return None, failure
            return None, exc
        connection.execute("RELEASE rankigi_request")
        return result, None


def _group_failure(error: BaseException) -> BaseException:
    """Return an exception for one job of a transaction that failed."""
    if not isinstance(error, LedgerError):
        return error
    # Each waiting request raises its own copy, so their tracebacks stay apart.
    failure = LedgerError(str(error))
    failure.__cause__ = error
    return failure


def _settle(group: Sequence[_Job[Any]], outcomes: Sequence[_Outcome]) -> None:
    """Hand each job's outcome to its event loop, one wake-up per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], _Outcome]]]
    by_loop = {}
    for job, outcome in zip(group, outcomes):
        by_loop.setdefault(job.loop, []).append((job.future, outcome))
    for loop, settled in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, settled)
        except RuntimeError:
            # The loop has closed, so no request is waiting for these results.
            logger.debug("dropped %d results for a closed event loop", len(settled))


def _resolve(settled: list[tuple[asyncio.Future[Any], _Outcome]]) -> None:
    for future, (result, error) in settled:
        if future.done():
            # The request was cancelled, for example at shutdown.
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
