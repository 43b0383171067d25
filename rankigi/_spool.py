"""The durable spool: events on disk until the destination has them.

Files in the spool directory hold finished events as JSON Lines, one file per
batch, each written to a temporary name, flushed with fsync and renamed into
place, so a reader never sees half a file. Names say who may send them:

- ``live-<pid>-<id>.jsonl``: being sent by process ``pid``;
- ``ready-<id>.jsonl``: given up by its process (retries spent, or queued at
  close); the next client that opens the spool sends it;
- ``claim-<pid>-<id>.jsonl``: taken over by process ``pid`` for sending.

A ``live`` or ``claim`` file whose process is gone (killed, crashed) is
claimed like a ``ready`` one. Claiming is an atomic rename, so each file is
sent by one process. Events can still reach the server twice, when a process
dies after a send and before deleting the file; the server then drops the
copy by ``event_id``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Optional

from rankigi._ids import uuid7

__all__ = ["Spool"]

logger = logging.getLogger("rankigi.spool")

Event = dict[str, Any]


class Spool:
    """One spool directory, shared by any number of processes."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def write(self, events: list[Event]) -> Path:
        """Persist a batch this process is about to send; return its file."""
        return self._write(f"live-{os.getpid()}-{uuid7()}.jsonl", events)

    def release(self, path: Path) -> None:
        """Forget a file whose events were all delivered or dropped."""
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def park(self, path: Optional[Path], events: list[Event]) -> None:
        """Leave ``events`` for a later client, replacing ``path`` if given."""
        if events:
            self._write(f"ready-{uuid7()}.jsonl", events)
        if path is not None:
            self.release(path)

    def claim(self) -> list[tuple[Path, list[Event]]]:
        """Take over every file no live process is sending, oldest first."""
        claimed = []
        for path in sorted(self.directory.glob("*.jsonl"), key=_age):
            if not _orphaned(path.name):
                continue
            target = path.with_name(f"claim-{os.getpid()}-{uuid7()}.jsonl")
            try:
                os.rename(path, target)
            except FileNotFoundError:
                continue  # another process claimed it first
            events = _read(target)
            claimed.append((target, events))
        return claimed

    def _write(self, name: str, events: list[Event]) -> Path:
        path = self.directory / name
        temporary = path.with_suffix(".tmp")
        data = "".join(
            json.dumps(event, ensure_ascii=False, allow_nan=False) + "\n"
            for event in events
        ).encode("utf-8")
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(temporary, path)
        _sync_directory(self.directory)
        return path


def _orphaned(name: str) -> bool:
    if name.startswith("ready-"):
        return True
    if name.startswith(("live-", "claim-")):
        pid_text = name.split("-", 2)[1]
        return pid_text.isdigit() and not _alive(int(pid_text))
    return False


def _alive(pid: int) -> bool:
    # NOTE: a recycled pid makes a dead process look alive, which delays
    # its files until that pid is gone; it never sends them twice.
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(path: Path) -> list[Event]:
    events = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            try:
                events.append(json.loads(line))
            except ValueError:
                logger.warning("skipping unreadable line %d of %s", number, path)
    return events


def _age(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _sync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    if not hasattr(os, "O_DIRECTORY"):
        return
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
