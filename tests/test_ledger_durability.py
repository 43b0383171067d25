"""Committed events survive readers in other processes and a SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rankigi.ledger import Ledger

WRITER = """
    import sys, time
    from rankigi.ledger import Ledger
    from rankigi._ids import uuid7

    path = sys.argv[1]
    # Two Ledger objects on one file, as in the server (writer and reader)
    # or two embedded clients in one process.
    writer, other = Ledger(path), Ledger(path)
    other.verify("a")
    for round_number in range(3):
        writer.append([{"event_id": uuid7(), "agent_id": "a", "action": "step",
                        "payload": {"round": round_number}}])
        other.verify("a")
        print(round_number, flush=True)
        sys.stdin.readline()
    time.sleep(60)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_reader_process_never_loses_committed_events(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    Ledger(path).close()
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(WRITER), str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        for _ in range(3):
            child.stdout.readline()
            # Another process reads the ledger while the writer keeps it open.
            verify = subprocess.run(
                [sys.executable, "-m", "rankigi", "verify", "--ledger", str(path)],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert verify.returncode == 0, verify.stderr
            child.stdin.write("\n")
            child.stdin.flush()
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        child.stdin.close()
        child.stdout.close()

    with Ledger(path, create=False) as ledger:
        result = ledger.verify("a")
    assert result.valid
    assert result.event_count == 3


def _seal_files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in path.parent.iterdir() if p.is_file()}


def test_readonly_ledger_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "copy.db"
    with Ledger(path) as ledger:
        ledger.append([{"agent_id": "a", "action": "step", "payload": {"n": 1}}])
    before = _seal_files(path)

    with Ledger(path, create=False, readonly=True) as ledger:
        result = ledger.verify("a")
        events = ledger.events("a")

    assert result.valid
    assert len(events) == 1
    # SQLite may add its -wal and -shm companions where it can write them;
    # the ledger file itself stays byte for byte the same.
    assert path.read_bytes() == before[path.name]


def test_unwritable_copy_opens_immutable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root ignores file modes, so the missing write permission is simulated.
    path = tmp_path / "audit.db"
    with Ledger(path) as ledger:
        ledger.append([{"agent_id": "a", "action": "step", "payload": {"n": 1}}])
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    before = _seal_files(path)

    with Ledger(path, create=False, readonly=True) as ledger:
        assert ledger.verify("a").valid

    assert _seal_files(path) == before


def test_readonly_ledger_rejects_appends(tmp_path: Path) -> None:
    from rankigi.ledger import LedgerError

    path = tmp_path / "ro.db"
    Ledger(path).close()
    with (
        Ledger(path, create=False, readonly=True) as ledger,
        pytest.raises(LedgerError, match="readonly"),
    ):
        ledger.append([{"agent_id": "a", "action": "step", "payload": {}}])


def test_readonly_cannot_create(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="create=False"):
        Ledger(tmp_path / "new.db", readonly=True)
