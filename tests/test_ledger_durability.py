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
