"""The buffered transport: one bounded queue and one daemon worker per client.

The caller only appends to a deque under a lock. The worker thread takes
batches when ``batch_size`` events wait, when ``flush_interval_ms`` passes, or
when ``flush``/``close`` asks; it finishes each event (hashes, timestamps),
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
from typing import Any, Callable, Optional

from rankigi import _exceptions as codes
from rankigi._config import Config
from rankigi._context import suppress_recording
from rankigi._events import finish_event
from rankigi._exceptions import RankigiError
from rankigi._exporters import Exporter, ExportError

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
        self._reset()
        _live.add(self)

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
            self._wake.notify()
        # Wakes a worker that sleeps between retries; it then retries at
        # once or drops, whichever the deadline allows.
        self._interrupt.set()

    def finish_close(self, deadline: float) -> bool:
        """Wait for the worker until ``deadline`` and account for leftovers."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
        if thread is None or not thread.is_alive():
            self._drain_here(deadline)
        with self._lock:
            leftovers = list(self._queue)
            self._queue.clear()
            self._taken += len(leftovers)
        if leftovers:
            self._drop(
                leftovers, codes.SHUTDOWN, "the client closed before they were sent"
            )
            with self._lock:
                self._done += len(leftovers)
                self._progress.notify_all()
        alive = thread is not None and thread.is_alive()
        if not alive:
            self._exporter.close()
        return not leftovers and not alive

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
            }

    def after_fork_in_child(self) -> None:
        """Forget the parent's queue and worker; the child starts empty."""
        self._reset()
        self._exporter.after_fork()

    # -- the worker's side --------------------------------------------------

    def _start_worker(self) -> None:
        # Called with the lock held. Python refuses new threads while the
        # interpreter shuts down; close() then sends from its own thread.
        thread = threading.Thread(
            target=self._run, name="rankigi-transport", daemon=True
        )
        try:
            thread.start()
        except RuntimeError:
            return
        self._thread = thread

    def _run(self) -> None:
        suppress_recording.set(True)
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._process(batch)

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
        self._report_overflow()
        ready = []
        for event in batch:
            try:
                ready.append(finish_event(event, self._hash_only))
            except Exception as exc:
                self._drop([event], codes.CAPTURE_FAILED, f"hashing failed: {exc}")
        try:
            if ready:
                self._deliver(ready)
        except Exception as exc:  # a bug here must not kill the worker
            logger.exception("rankigi transport failed unexpectedly")
            self._drop(ready, codes.NETWORK_ERROR, f"unexpected error: {exc!r}")
        with self._lock:
            self._done += len(batch)
            self._progress.notify_all()

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
            self._stats["sent"] += len(events)

    def _retry_or_drop(
        self,
        events: list[Event],
        exc: ExportError,
        attempt: int,
        then: Callable[[list[Event]], None],
    ) -> None:
        if not exc.retryable or attempt >= self._config.max_retries:
            self._drop(events, exc.code, exc.message, exc.status_code)
            return
        delay = self._retry_delay(exc, attempt)
        self._log.warning(
            f"retry:{exc.code}",
            "sending %d events failed (%s); retry %d of %d in %.2f s",
            len(events),
            exc.message,
            attempt + 1,
            self._config.max_retries,
            delay,
        )
        with self._lock:
            self._stats["retried"] += 1
        if not self._sleep(delay):
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
        # Full jitter spreads the retries of many clients after an outage.
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
        count = len(events)
        with self._lock:
            self._drops[code] += count
        self._log.warning(
            f"drop:{code}", "dropped %d events (%s): %s", count, code, reason
        )
        self._report(
            RankigiError(
                code,
                f"dropped {count} events: {reason}",
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
                "dropped %d events: the queue holds at most %d (max_queue_size)",
                count,
                self._max_queue,
            )
            self._report(
                RankigiError(
                    codes.BUFFER_FULL,
                    f"dropped {count} events: the queue was full "
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
