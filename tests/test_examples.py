"""The examples run offline, record into the embedded ledger and verify."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rankigi.ledger import Ledger

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RANKIGI_")}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_quickstart_records_and_verifies(tmp_path: Path) -> None:
    result = run_example("quickstart.py", tmp_path)

    assert result.returncode == 0, result.stderr
    assert "refund-agent: chain intact" in result.stdout
    with Ledger(tmp_path / ".rankigi" / "ledger.db", create=False) as ledger:
        verdict = ledger.verify("refund-agent")
        events = ledger.events("refund-agent")
    assert verdict.valid
    assert verdict.event_count == len(events) > 5
    text = str(events)
    # The ticket's card number is redacted by the example's redact_keys.
    assert "4242424242424242" not in text
    assert "[REDACTED]" in text


def test_quickstart_twice_extends_the_chain(tmp_path: Path) -> None:
    assert run_example("quickstart.py", tmp_path).returncode == 0
    second = run_example("quickstart.py", tmp_path)

    assert second.returncode == 0, second.stderr
    with Ledger(tmp_path / ".rankigi" / "ledger.db", create=False) as ledger:
        verdict = ledger.verify("refund-agent")
    assert verdict.valid
    assert f"{verdict.event_count} events" in second.stdout


def test_handshake_example_verifies(tmp_path: Path) -> None:
    result = run_example("handshake.py", tmp_path)

    assert result.returncode == 0, result.stderr
    assert "handshake verified" in result.stdout
    assert "auditor cannot complete it: AUTH_FAILED" in result.stdout


@pytest.mark.parametrize("name", ["quickstart.py", "handshake.py"])
def test_example_never_needs_network(tmp_path: Path, name: str) -> None:
    # A base URL on a closed loopback port would fail loudly if an example
    # ignored the embedded default and tried HTTP.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RANKIGI_")}
    env["RANKIGI_BASE_URL"] = "http://127.0.0.1:9"
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / ".rankigi" / "ledger.db").exists()
