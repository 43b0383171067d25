"""Checkpoints of the ledger's write-ahead log, on a thread of their own.

In WAL mode, SQLite copies committed pages from the write-ahead log back into
the database file in a checkpoint. By default the connection that commits
runs one whenever the log passes 1000 pages, which adds a copy and a flush to
disk to that commit and to the response of every request waiting for it. The
server's writer turns that off, and this thread runs a PASSIVE checkpoint
after each span in which the log changed. SQLite's C API documentation
(sqlite3_wal_autocheckpoint, sqlite3_wal_checkpoint_v2) gives the default and
says that a passive checkpoint does not wait for readers or writers, and that
automatic checkpoints are passive too. Once a checkpoint has copied the whole
log and no reader still uses it, SQLite starts the log over at the next
write, so the log stays about as large as the commits of one span.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Optional

from rankigi.ledger import LedgerError

__all__ = ["Checkpointer", "disable_autocheckpoint"]

logger = logging.getLogger("rankigi.server")

# Seconds between two looks at the log. Commits in between share one
# checkpoint.
_INTERVAL_S = 0.1
# Seconds between two warnings about failed checkpoints.
_WARN_EVERY_S = 60.0


def disable_autocheckpoint(connection: sqlite3.Connection) -> None:
    """Stop ``connection`` from running checkpoints when it commits."""
    connection.execute("PRAGMA wal_autocheckpoint=0")


class Checkpointer:
    """Checkpoint the ledger at ``path`` whenever its log has changed.

    Args:
        path: the ledger file.
        interval: seconds between two looks at the log.

    Raises:
        LedgerError: the file cannot be opened.
    """

    def __init__(self, path: Path, interval: float = _INTERVAL_S) -> None:
        self._path = path
        self._log = Path(f"{path}-wal")
        self._interval = interval
        self._stopping = threading.Event()
        self._failures = 0
        self._warned_at: Optional[float] = None
        self.checkpoints = 0
        try:
            # The connection is used only by the thread below.
            self._connection = sqlite3.connect(
                os.fspath(path), isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open {path} for checkpoints: {exc}") from exc
        self._thread = threading.Thread(
            target=self._run, name="rankigi-checkpointer", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop the thread and close its connection. Calling it again does nothing.

        There is no last checkpoint here, because closing the last connection
        to the file checkpoints the log and removes it.
        """
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        checkpointed: Optional[tuple[int, int]] = None
        try:
            while not self._stopping.wait(self._interval):
                state = self._log_state()
                if state is not None and state != checkpointed:
                    self._checkpoint()
                    checkpointed = state
        finally:
            self._connection.close()

    def _log_state(self) -> Optional[tuple[int, int]]:
        """Return the log's size and modification time, or None without a log."""
        try:
            status = os.stat(self._log)
        except OSError:
            return None
        return status.st_size, status.st_mtime_ns

    def _checkpoint(self) -> None:
        try:
            self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            self._failures += 1
            now = time.monotonic()
            if self._warned_at is None or now - self._warned_at >= _WARN_EVERY_S:
                self._warned_at = now
                logger.warning(
                    "checkpoint of ledger %s failed (%d failures so far): %s",
                    self._path,
                    self._failures,
                    exc,
                )
            return
        self.checkpoints += 1
