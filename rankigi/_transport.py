"""The buffered transport: one bounded queue and one daemon worker per client.

The caller only appends to a deque under a lock. The worker thread takes
batches when ``batch_size`` events wait, when ``flush_interval_ms`` passes, or
when ``flush``/``close`` requests it. It finishes each event (hashes, timestamps),
sends it through the exporter, retries with jittered exponential backoff, and
drops what cannot be delivered, counting every drop by reason and reporting it
through the client's ``on_error``.

Events complete in the order they were enqueued, because one worker sends
one batch at a time. So ``flush`` only needs two counters: how many events
were enqueued when it was called, and how many are done (sent or dropped).
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import threading
import time
import weakref
from collections import Counter, deque
from pathlib import Path
from typing import Any, Callable, Optional

from rankigi import _exceptions as codes
from rankigi._config import Config
from rankigi._context import suppress_recording
from rankigi._events import finish_event
from rankigi._exceptions import RankigiError
from rankigi._exporters import Exporter, ExportError
from rankigi._spool import Spool

__all__ = ["Transport", "shutdown_all"]

logger = logging.getLogger("rankigi.transport")

Event = dict[str, Any]
ErrorHandler = Callable[[RankigiError], None]

_LOG_REPEAT_S = 10.0  # the same warning at most once per this many seconds
_live: weakref.WeakSet[Transport] = weakref.WeakSet()


class _RateLimitedLog:
    """Log a warning per key at most once per interval, counting the rest."""

    def __init__(self, interval: float = _LOG_REPEAT_S) -> None:
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def warning(self, key: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -self._interval) < self._interval:
            self._suppressed[key] += 1
            return
        self._last[key] = now
        skipped = self._suppressed.pop(key, 0)
        if skipped:
            message += " (%d similar messages suppressed)"
            args = (*args, skipped)
        logger.warning(message, *args)


class Transport:
    """Queue events and deliver them from a background thread."""

    def __init__(
        self, config: Config, exporter: Exporter, report: ErrorHandler
    ) -> None:
        self._config = config
        self._exporter = exporter
        self._report = report
        self._hash_only = config.capture == "hash_only"
        self._batch_size = config.batch_size
        self._max_queue = config.max_queue_size
        self._interval = config.flush_interval_ms / 1000
        self._log = _RateLimitedLog()
        self._spool = Spool(config.spool_dir) if config.spool_dir else None
        self._reset()
        _live.add(self)
        if self._spool is not None:
            # Start now, so files that earlier processes left in the spool
            # are sent even if this one never tracks anything.
            with self._lock:
                self._start_worker()

    def _reset(self) -> None:
        """Create the state a fresh process needs: lock, queue, counters."""
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._progress = threading.Condition(self._lock)
        self._interrupt = threading.Event()
        self._queue: deque[Event] = deque()
        self._enqueued = 0  # events accepted so far
        self._taken = 0  # events the worker has taken off the queue
        self._done = 0  # events sent or dropped after being taken
        self._flush_target = 0
        self._overflow = 0  # drops for a full queue, not yet reported
        self._closing = False
        self._closed = False
        self._deadline: Optional[float] = None
        self._thread: Optional[threading.Thread] = None
        self._stats: Counter[str] = Counter()
        self._drops: Counter[str] = Counter()
        # With a spool, a second thread moves queued events to disk and
        # hands them to the worker as segments; see _run_spooler.
        self._segments: deque[_Segment] = deque()
        self._segment_ready = threading.Condition(self._lock)
        self._spooler: Optional[threading.Thread] = None
        self._spooler_done = False
        self._unsent: list[Event] = []
        self._abandoned = False  # close() gave up on the worker's batch

    # -- the caller's side --------------------------------------------------

    def enqueue(self, event: Event) -> bool:
        """Queue an event; never blocks and never raises."""
        with self._lock:
            if self._closed:
                rejected = True
            elif len(self._queue) >= self._max_queue:
                self._overflow += 1
                self._drops[codes.BUFFER_FULL] += 1
                self._wake.notify()
                return False
            else:
                rejected = False
                self._queue.append(event)
                self._enqueued += 1
                if len(self._queue) >= self._batch_size:
                    self._wake.notify()
                if self._thread is None:
                    self._start_worker()
        if rejected:
            self._drop_after_close()
            return False
        return True

    def flush(self, timeout: Optional[float]) -> bool:
        """Wait until every event enqueued before this call is done."""
        _check_timeout("flush", timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            target = self._enqueued
            if self._done >= target:
                return True
            self._flush_target = max(self._flush_target, target)
            if self._thread is None or not self._thread.is_alive():
                self._lock.release()
                try:
                    self._drain_here(deadline)
                finally:
                    self._lock.acquire()
            self._wake.notify()
            while self._done < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._progress.wait(remaining)
            return True

    def close(self, timeout: Optional[float]) -> bool:
        """Flush within ``timeout``, then stop the worker; idempotent.

        Returns whether every queued event was delivered or dropped in time;
        events still queued at the deadline are dropped as ``SHUTDOWN``.
        """
        _check_timeout("close", timeout)
        deadline = time.monotonic() + (30.0 if timeout is None else timeout)
        self.begin_close(deadline)
        return self.finish_close(deadline)

    def begin_close(self, deadline: float) -> None:
        """Refuse new events and tell the worker to drain by ``deadline``."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._closed = True
            self._deadline = deadline
            self._flush_target = self._enqueued
            self._wake.notify_all()
            self._segment_ready.notify_all()
        # Wakes a worker that sleeps between retries; it then retries at
        # once or drops, whichever the deadline allows.
        self._interrupt.set()

    def finish_close(self, deadline: float) -> bool:
        """Wait for the worker until ``deadline`` and account for leftovers."""
        for thread in (self._spooler, self._thread):
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._drain_here(deadline)
        with self._lock:
            leftovers = list(self._queue)
            self._queue.clear()
            self._taken += len(leftovers)
            segments = list(self._segments)
            self._segments.clear()
        if self._spool is not None:
            self._park_leftovers(leftovers, segments)
        elif leftovers:
            self._drop(
                leftovers, codes.SHUTDOWN, "the client closed before they were sent"
            )
        with self._lock:
            self._done += len(leftovers) + sum(s.counted for s in segments)
            self._progress.notify_all()
        alive = thread is not None and thread.is_alive()
        if not alive:
            self._exporter.close()
        elif self._spool is None:
            self._report_in_flight()
        return not leftovers and not segments and not alive

    def _report_in_flight(self) -> None:
        """Report the batch the worker is still sending when close() gives up.

        At interpreter exit that send dies with the process, so without this
        its events would be neither sent nor counted. (With a spool they are
        on disk and the next client sends them.)
        """
        with self._lock:
            count = self._taken - self._done
        if count > 0:
            self._drop_count(
                count,
                codes.SHUTDOWN,
                "they were still being sent when close() ran out of time; the "
                "server may or may not have stored them",
            )
            # Whatever the worker's send still does, it must not count twice.
            self._abandoned = True

    def _park_leftovers(self, leftovers: list[Event], segments: list[_Segment]) -> None:
        """Leave what close() could not send in the spool for the next client."""
        assert self._spool is not None
        events = self._finish(leftovers)
        for segment in segments:
            if segment.path is None:
                events.extend(segment.events)
            else:
                self._spool.park(segment.path, segment.events)
        try:
            self._spool.park(None, events)
        except OSError as exc:
            self._drop(events, codes.SHUTDOWN, f"writing the spool failed: {exc}")
            return
        count = len(events) + sum(len(s.events) for s in segments if s.path)
        if count:
            with self._lock:
                self._stats["spooled"] += count
            logger.info(
                "kept %d unsent events in the spool at %s", count, self._spool.directory
            )

    @property
    def closed(self) -> bool:
        """Whether close() has begun; new events are then dropped."""
        return self._closed

    def count_drop(self, code: str, count: int) -> None:
        """Count events dropped before they reached the queue."""
        with self._lock:
            self._drops[code] += count

    def stats(self) -> dict[str, Any]:
        """Return counts of enqueued, sent, retried and dropped events."""
        with self._lock:
            drops = dict(self._drops)
            return {
                "enqueued": self._enqueued,
                "sent": self._stats["sent"],
                "retried": self._stats["retried"],
                "dropped": sum(drops.values()),
                "dropped_by_reason": drops,
                "queued": len(self._queue),
                "spooled": self._stats["spooled"],
                "replayed": self._stats["replayed"],
            }

    def after_fork_in_child(self) -> None:
        """Forget the parent's queue and worker; the child starts empty."""
        self._reset()
        self._exporter.after_fork()

    # -- the worker's side --------------------------------------------------

    def _start_worker(self) -> None:
        # Called with the lock held. Python refuses new threads while the
        # interpreter shuts down; close() then sends from its own thread.
        # The spooler starts first: the worker reads self._spooler to choose
        # between sending from the spooler's segments and from the queue.
        if self._spool is not None:
            self._spooler = _start_thread(self._run_spooler, "rankigi-spooler")
        self._thread = _start_thread(self._run, "rankigi-transport")

    def _run(self) -> None:
        suppress_recording.set(True)
        if self._spool is not None:
            self._replay()
        while True:
            segment = self._next_segment()
            if segment is None:
                return
            self._send_segment(segment)

    def _next_segment(self) -> Optional[_Segment]:
        """Wait for the next batch to send, or return None to stop."""
        if self._spool is None or self._spooler is None:
            batch = self._next_batch()
            return None if batch is None else _Segment(None, batch, len(batch))
        with self._lock:
            while not self._segments:
                if self._spooler_done:
                    return None
                self._segment_ready.wait()
            return self._segments.popleft()

    def _run_spooler(self) -> None:
        """Move queued events to disk at least once per flush interval.

        Running beside the worker, it keeps the bound on what a killed process
        loses even while the worker waits on a slow request or a backoff.
        """
        assert self._spool is not None
        while True:
            batch = self._next_batch()
            if batch is None:
                break
            events = self._finish(batch)
            path = None
            if events:
                try:
                    path = self._spool.write(events)
                except OSError as exc:
                    self._log.warning(
                        "spool:write",
                        "writing the spool failed, sending from memory: %s",
                        exc,
                    )
            with self._lock:
                self._segments.append(_Segment(path, events, len(batch), True))
                self._segment_ready.notify_all()
        with self._lock:
            self._spooler_done = True
            self._segment_ready.notify_all()

    def _replay(self) -> None:
        """Queue the files that earlier processes left in the spool."""
        assert self._spool is not None
        try:
            claimed = self._spool.claim()
        except OSError as exc:
            logger.warning(
                "reading the spool at %s failed: %s", self._spool.directory, exc
            )
            return
        count = sum(len(events) for _, events in claimed)
        if not count:
            return
        logger.info("sending %d events left in the spool by earlier processes", count)
        with self._lock:
            self._stats["replayed"] += count
        for path, events in claimed:
            self._send_segment(_Segment(path, events, 0, True))

    def _next_batch(self) -> Optional[list[Event]]:
        """Wait for work; return a batch, or None once closing with nothing left."""
        with self._lock:
            wait_until = time.monotonic() + self._interval
            while not self._ready():
                remaining = wait_until - time.monotonic()
                if remaining <= 0 and self._queue:
                    break
                if remaining <= 0:
                    wait_until = time.monotonic() + self._interval
                    remaining = self._interval
                self._wake.wait(remaining)
            if self._closing and not self._queue and not self._overflow:
                return None
            return self._take()

    def _ready(self) -> bool:
        return (
            len(self._queue) >= self._batch_size
            or self._overflow > 0
            or self._closing
            or (self._flush_target > self._taken and bool(self._queue))
        )

    def _take(self) -> list[Event]:
        count = min(len(self._queue), self._batch_size)
        batch = [self._queue.popleft() for _ in range(count)]
        self._taken += count
        return batch

    def _drain_here(self, deadline: Optional[float]) -> None:
        """Send queued events from the calling thread, when no worker runs."""
        token = suppress_recording.set(True)
        try:
            while deadline is None or time.monotonic() < deadline:
                with self._lock:
                    if not self._queue and not self._overflow:
                        return
                    batch = self._take()
                self._process(batch)
        finally:
            suppress_recording.reset(token)

    def _process(self, batch: list[Event]) -> None:
        self._send_segment(_Segment(None, batch, len(batch)))

    def _send_segment(self, segment: _Segment) -> None:
        self._report_overflow()
        events = segment.events if segment.finished else self._finish(segment.events)
        self._unsent = []
        try:
            if events:
                self._deliver(events)
        except Exception as exc:  # a bug here must not kill the worker
            logger.exception("rankigi transport failed unexpectedly")
            self._drop(events, codes.NETWORK_ERROR, f"unexpected error: {exc!r}")
        if self._spool is not None:
            self._keep_unsent(segment.path)
        with self._lock:
            self._done += segment.counted
            self._progress.notify_all()

    def _keep_unsent(self, path: Optional[Path]) -> None:
        assert self._spool is not None
        unsent, self._unsent = self._unsent, []
        try:
            self._spool.park(path, unsent)
        except OSError as exc:
            self._drop(unsent, codes.NETWORK_ERROR, f"writing the spool failed: {exc}")
            return
        if unsent:
            with self._lock:
                self._stats["spooled"] += len(unsent)
            self._log.warning(
                "spool:park",
                "kept %d undelivered events in the spool at %s for the next client",
                len(unsent),
                self._spool.directory,
            )

    def _finish(self, batch: list[Event]) -> list[Event]:
        ready = []
        for event in batch:
            try:
                ready.append(finish_event(event, self._hash_only))
            except Exception as exc:
                self._drop([event], codes.CAPTURE_FAILED, f"hashing failed: {exc}")
        return ready

    def _deliver(self, events: list[Event], attempt: int = 0) -> None:
        try:
            limit = self._exporter.batch_limit(self._attempt_timeout())
        except ExportError as exc:
            # The capability probe failed the same way a send would.
            self._retry_or_drop(
                events, exc, attempt, then=lambda evs: self._deliver(evs, attempt + 1)
            )
            return
        size = limit or len(events)
        for start in range(0, len(events), size):
            self._send(events[start : start + size], attempt)

    def _send(self, events: list[Event], attempt: int) -> None:
        try:
            self._exporter.export(events, self._attempt_timeout())
        except ExportError as exc:
            splittable = (codes.PAYLOAD_TOO_LARGE, codes.INVALID_REQUEST)
            if exc.code in splittable and len(events) > 1:
                # Halving isolates the one oversized or invalid event in
                # log2(n) requests instead of losing the whole batch.
                middle = len(events) // 2
                self._send(events[:middle], attempt)
                self._send(events[middle:], attempt)
                return
            self._retry_or_drop(
                events, exc, attempt, then=lambda evs: self._send(evs, attempt + 1)
            )
            return
        with self._lock:
            if not self._abandoned:
                self._stats["sent"] += len(events)

    def _retry_or_drop(
        self,
        events: list[Event],
        exc: ExportError,
        attempt: int,
        then: Callable[[list[Event]], None],
    ) -> None:
        if not exc.retryable or attempt >= self._config.max_retries:
            if exc.retryable and self._spool is not None:
                self._unsent.extend(events)
                return
            self._drop(events, exc.code, exc.message, exc.status_code)
            return
        delay = self._retry_delay(exc, attempt)
        self._log.warning(
            f"retry:{exc.code}",
            "sending %s failed (%s); retry %d of %d in %.2f s",
            _events(len(events)),
            exc.message,
            attempt + 1,
            self._config.max_retries,
            delay,
        )
        with self._lock:
            self._stats["retried"] += 1
        if not self._sleep(delay):
            if self._spool is not None:
                self._unsent.extend(events)
                return
            self._drop(
                events, codes.SHUTDOWN, f"closed while waiting to retry: {exc.message}"
            )
            return
        then(events)

    def _retry_delay(self, exc: ExportError, attempt: int) -> float:
        config = self._config
        if exc.retry_after is not None:
            return min(exc.retry_after, config.retry_after_max_ms / 1000)
        ceiling = min(config.retry_backoff_max_ms, config.retry_backoff_ms * 2**attempt)
        # A random delay between half and all of the ceiling spreads the
        # retries of many clients after an outage.
        return random.uniform(ceiling / 2, ceiling) / 1000

    def _sleep(self, delay: float) -> bool:
        """Wait ``delay`` seconds; return False if closing leaves no time."""
        end = time.monotonic() + delay
        while True:
            with self._lock:
                deadline = self._deadline
            if deadline is not None and end > deadline:
                # The retry would land after the close deadline: try once now
                # if any time is left, else give up.
                return time.monotonic() < deadline - 0.05
            remaining = end - time.monotonic()
            if remaining <= 0:
                return True
            if self._interrupt.wait(remaining):
                self._interrupt.clear()

    def _attempt_timeout(self) -> float:
        timeout = self._config.request_timeout_ms / 1000
        with self._lock:
            deadline = self._deadline
        if deadline is not None:
            timeout = max(0.05, min(timeout, deadline - time.monotonic()))
        return timeout

    # -- accounting ---------------------------------------------------------

    def _drop(
        self,
        events: list[Event],
        code: str,
        reason: str,
        status_code: Optional[int] = None,
    ) -> None:
        self._drop_count(len(events), code, reason, status_code)

    def _drop_count(
        self, count: int, code: str, reason: str, status_code: Optional[int] = None
    ) -> None:
        if self._abandoned:
            # close() already counted and reported this worker's batch.
            return
        with self._lock:
            self._drops[code] += count
        self._log.warning(
            f"drop:{code}", "dropped %s (%s): %s", _events(count), code, reason
        )
        self._report(
            RankigiError(
                code,
                f"dropped {_events(count)}: {reason}",
                status_code,
                event_count=count,
            )
        )

    def _report_overflow(self) -> None:
        with self._lock:
            count, self._overflow = self._overflow, 0
        if count:
            self._log.warning(
                "drop:overflow",
                "dropped %s: the queue holds at most %d (max_queue_size)",
                _events(count),
                self._max_queue,
            )
            self._report(
                RankigiError(
                    codes.BUFFER_FULL,
                    f"dropped {_events(count)}: the queue was full "
                    f"({self._max_queue} events); raise max_queue_size or "
                    "check why sending is slow",
                    event_count=count,
                )
            )

    def _drop_after_close(self) -> None:
        with self._lock:
            self._drops[codes.CLIENT_CLOSED] += 1
        self._log.warning(
            "drop:closed", "dropped an event tracked after the client was closed"
        )
        self._report(
            RankigiError(
                codes.CLIENT_CLOSED,
                "dropped 1 event: the client is closed; track before close() "
                "or create a new client",
                event_count=1,
            )
        )


def _check_timeout(method: str, timeout: Any) -> None:
    # A programming error, so it raises like any bad argument would.
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(
            f"{method}(timeout={timeout!r}) is invalid; pass seconds as a number, "
            "or None to wait without a limit"
        )


def _events(count: int) -> str:
    return "1 event" if count == 1 else f"{count} events"


class _Segment:
    """A batch on its way out: its spool file (if any) and its accounting.

    ``counted`` is the number of queued events it completes for ``flush``,
    and files replayed from the spool count for nothing. ``finished`` is
    whether ``finish_event`` already ran on its events.
    """

    __slots__ = ("counted", "events", "finished", "path")

    def __init__(
        self,
        path: Optional[Path],
        events: list[Event],
        counted: int,
        finished: bool = False,
    ) -> None:
        self.path = path
        self.events = events
        self.counted = counted
        self.finished = finished


def _start_thread(target: Callable[[], None], name: str) -> Optional[threading.Thread]:
    thread = threading.Thread(target=target, name=name, daemon=True)
    try:
        thread.start()
    except RuntimeError:
        return None
    return thread


def shutdown_all(timeout: float) -> None:
    """Close every live transport within one shared ``timeout``."""
    deadline = time.monotonic() + timeout
    transports = list(_live)
    for transport in transports:
        transport.begin_close(deadline)
    for transport in transports:
        transport.finish_close(deadline)


def _shutdown_at_exit() -> None:
    transports = list(_live)
    if not transports:
        return
    timeout = max(t._config.shutdown_timeout_ms for t in transports) / 1000
    shutdown_all(timeout)


def _after_fork_in_child() -> None:
    for transport in list(_live):
        transport.after_fork_in_child()


atexit.register(_shutdown_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
