"""Tests for the ``rankigi`` command line, in-process and as a subprocess."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rankigi import cli
from rankigi._canonical import sha256_hex
from rankigi.cli import main
from rankigi.ledger import FIELDS, Ledger
from tests.sqlite_edit import edit

ROOT = Path(__file__).resolve().parents[1]


def event(agent_id: str, number: int, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "agent_id": agent_id,
        "action": "tool_call",
        "tool": "search",
        "occurred_at": f"2026-02-03T04:05:0{number}.000Z",
        "payload": {"input": number, "output": number * 2, "status": "ok"},
    }
    body.update(fields)
    return body


@pytest.fixture
def ledger_file(tmp_path: Path) -> Path:
    """A ledger with 3 events of agent-1 and 2 of agent-2, stored alternately."""
    path = tmp_path / "ledger.db"
    with Ledger(path) as ledger:
        ledger.append([event("agent-1", 0)])
        ledger.append([event("agent-2", 1, action="error", tool=None, severity="warn")])
        ledger.append([event("agent-1", 2, tool="fetch")])
        ledger.append([event("agent-2", 3, action="response_generated")])
        ledger.append([event("agent-1", 4, severity="critical")])
    return path


@pytest.fixture
def empty_ledger(tmp_path: Path) -> Path:
    path = tmp_path / "empty.db"
    Ledger(path).close()
    return path


def tamper(path: Path, agent_id: str, index: int) -> None:
    with contextlib.closing(sqlite3.connect(path)) as database:
        database.execute(
            "UPDATE events SET severity = "
            "CASE severity WHEN 'info' THEN 'warn' ELSE 'info' END "
            "WHERE agent_id = ? AND chain_index = ?",
            (agent_id, index),
        )
        database.commit()


def stored(path: Path, agent_id: str | None = None) -> list[dict[str, Any]]:
    with Ledger(path, create=False) as ledger:
        return ledger.events(agent_id)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# -- events ------------------------------------------------------------------


def test_events_table(ledger_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "events", "--ledger", str(ledger_file))
    assert status == 0
    assert err == ""
    lines = out.splitlines()
    header = lines[0].split()
    assert header == [
        "TIME",
        "AGENT",
        "INDEX",
        "ACTION",
        "TOOL",
        "SEVERITY",
        "RESULT",
        "HASH",
    ]
    assert len(lines) == 6
    records = stored(ledger_file)[::-1]
    hash_column = lines[0].index("HASH")
    for line, record in zip(lines[1:], records):
        assert line.startswith(record["timestamp"])
        assert line[hash_column:] == record["event_hash"][:12]
        assert line.split()[1:4] == [
            record["agent_id"],
            str(record["chain_index"]),
            record["action_type"],
        ]
    assert lines[4].split()[4] == "-"


def test_events_columns_aligned(
    ledger_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = run(capsys, "events", "--ledger", str(ledger_file))
    lines = out.splitlines()
    for title in ("AGENT", "ACTION", "TOOL", "SEVERITY", "RESULT", "HASH"):
        column = lines[0].index(title)
        for line in lines[1:]:
            assert line[column - 2 : column] == "  "
            assert line[column] != " "


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--agent", "agent-2"], [("agent-2", 1), ("agent-2", 0)]),
        (["--action", "error"], [("agent-2", 0)]),
        (["--tool", "fetch"], [("agent-1", 1)]),
        (["--severity", "critical"], [("agent-1", 2)]),
        (["--limit", "2"], [("agent-1", 2), ("agent-2", 1)]),
        (["--agent", "agent-1", "--limit", "1"], [("agent-1", 2)]),
    ],
)
def test_events_filters(
    ledger_file: Path,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    expected: list[tuple[str, int]],
) -> None:
    status, out, _ = run(capsys, "events", "--ledger", str(ledger_file), *arguments)
    assert status == 0
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [(row[1], int(row[2])) for row in rows] == expected


def test_events_default_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ledger.db"
    with Ledger(path) as ledger:
        ledger.append([event("agent-1", 0) for _ in range(25)])
    _, out, _ = run(capsys, "events", "--ledger", str(path))
    assert len(out.splitlines()) == 21


def test_events_json(ledger_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "events", "--ledger", str(ledger_file), "--json")
    assert status == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert records == stored(ledger_file)[::-1]
    assert all(list(record) == list(FIELDS) for record in records)


def test_events_empty(empty_ledger: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "events", "--ledger", str(empty_ledger))
    assert status == 0
    assert out == f"no events in {empty_ledger}\n"
    status, out, _ = run(
        capsys, "events", "--ledger", str(empty_ledger), "--agent", "x"
    )
    assert out == f"no events match the filters in {empty_ledger}\n"


def test_events_escapes_control_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ledger.db"
    with Ledger(path) as ledger:
        ledger.append([event("evil\x1b[2J\n", 0, action="a\tb")])
    for command in (["events"], ["verify"]):
        _, out, _ = run(capsys, *command, "--ledger", str(path))
        assert "\x1b" not in out
        assert "evil\\x1b[2J\\x0a" in out
    _, out, _ = run(capsys, "events", "--ledger", str(path))
    assert "a\\x09b" in out


def test_events_truncates_long_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ledger.db"
    with Ledger(path) as ledger:
        ledger.append([event("a" * 200, 0)])
    _, out, _ = run(capsys, "events", "--ledger", str(path))
    assert "a" * 35 + "…" in out
    assert "a" * 36 not in out


# -- verify ------------------------------------------------------------------


def test_verify_intact(ledger_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "verify", "--ledger", str(ledger_file))
    assert status == 0
    assert err == ""
    with Ledger(ledger_file) as ledger:
        heads = {agent: ledger.head(agent) for agent in ("agent-1", "agent-2")}
    assert (
        out.splitlines()
        == [
            f"agent-1: intact, 3 events, head {heads['agent-1'][1][:12]}…",  # type: ignore[index]
            f"agent-2: intact, 2 events, head {heads['agent-2'][1][:12]}…",  # type: ignore[index]
        ]
    )


def test_verify_single_event_wording(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ledger.db"
    with Ledger(path) as ledger:
        ledger.append([event("solo", 0)])
    _, out, _ = run(capsys, "verify", "--ledger", str(path))
    assert out.startswith("solo: intact, 1 event, head ")


def test_verify_broken(ledger_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tamper(ledger_file, "agent-1", 2)
    status, out, _ = run(capsys, "verify", "--ledger", str(ledger_file))
    assert status == 1
    lines = out.splitlines()
    assert lines[0].startswith("agent-1: BROKEN at index 2: hash mismatch: ")
    assert lines[1].startswith("agent-2: intact, 2 events")


def test_verify_json(ledger_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tamper(ledger_file, "agent-2", 0)
    status, out, _ = run(capsys, "verify", "--ledger", str(ledger_file), "--json")
    assert status == 1
    bodies = [json.loads(line) for line in out.splitlines()]
    assert [body["agent_id"] for body in bodies] == ["agent-1", "agent-2"]
    assert bodies[0]["valid"] is True
    assert bodies[0]["event_count"] == 3
    assert bodies[1]["valid"] is False
    assert bodies[1]["broken_at"] == 0
    assert bodies[1]["head_hash"] is None
    assert set(bodies[1]) == {
        "valid",
        "agent_id",
        "event_count",
        "head_hash",
        "broken_at",
        "reason",
    }


def test_verify_one_agent(
    ledger_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tamper(ledger_file, "agent-1", 0)
    status, out, _ = run(
        capsys, "verify", "--ledger", str(ledger_file), "--agent", "agent-2"
    )
    assert status == 0
    assert out.startswith("agent-2: intact, 2 events")
    assert len(out.splitlines()) == 1
    # A mistyped agent id must not pass as an intact, empty chain.
    status, out, err = run(
        capsys, "verify", "--ledger", str(ledger_file), "--agent", "x"
    )
    assert status == 2
    assert out == ""
    assert "agent x has no chain" in err


def test_verify_empty_ledger(
    empty_ledger: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "verify", "--ledger", str(empty_ledger))
    assert status == 0
    assert out == f"no events in {empty_ledger}\n"
    status, out, _ = run(capsys, "verify", "--ledger", str(empty_ledger), "--json")
    assert status == 0
    assert out == ""


# -- export ------------------------------------------------------------------


def test_export_stdout(ledger_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "export", "--ledger", str(ledger_file))
    assert status == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert records == stored(ledger_file, "agent-1") + stored(ledger_file, "agent-2")
    for record in records:
        without_hash = {k: v for k, v in record.items() if k != "event_hash"}
        assert sha256_hex(without_hash) == record["event_hash"]


def test_export_agent_to_file(
    ledger_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "out.jsonl"
    argv = ["--ledger", str(ledger_file), "--agent", "agent-2", "--output", str(target)]
    status, out, _ = run(capsys, "export", *argv)
    assert status == 0
    assert out == ""
    records = [json.loads(line) for line in target.read_text("utf-8").splitlines()]
    assert [r["chain_index"] for r in records] == [0, 1]
    assert {r["agent_id"] for r in records} == {"agent-2"}


def test_export_pages_through_chain(
    ledger_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli, "_EXPORT_PAGE_SIZE", 2)
    _, out, _ = run(
        capsys, "export", "--ledger", str(ledger_file), "--agent", "agent-1"
    )
    assert [json.loads(line)["chain_index"] for line in out.splitlines()] == [0, 1, 2]


def test_export_unwritable_output(
    ledger_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "missing-dir" / "out.jsonl"
    status, _, err = run(
        capsys, "export", "--ledger", str(ledger_file), "--output", str(target)
    )
    assert status == 2
    assert err.startswith(f"rankigi: error: cannot write {target}: ")
    assert "--output" in err


def test_export_unicode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ledger.db"
    with Ledger(path) as ledger:
        ledger.append([event("агент", 0, payload={"ключ": "🤖 日本"})])
    _, out, _ = run(capsys, "export", "--ledger", str(path))
    assert out.isascii()
    assert json.loads(out)["payload"] == {"ключ": "🤖 日本"}


# -- errors and defaults -----------------------------------------------------


@pytest.mark.parametrize("command", ["events", "verify", "export"])
def test_missing_ledger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    path = tmp_path / "nowhere" / "ledger.db"
    status, out, err = run(capsys, command, "--ledger", str(path))
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1
    assert str(path) in err
    assert "run an agent first" in err
    assert "--ledger" in err
    assert not path.parent.exists()


@pytest.mark.parametrize("content", [b"hello\n", b""])
def test_not_a_ledger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    status, _, err = run(capsys, "verify", "--ledger", str(path))
    assert status == 2
    assert err.count("\n") == 1
    assert err.startswith(f"rankigi: error: {path} is not a rankigi ledger")
    assert path.read_bytes() == content


def test_other_ledger_error(
    ledger_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with contextlib.closing(sqlite3.connect(ledger_file)) as database:
        database.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
        database.commit()
    status, _, err = run(capsys, "events", "--ledger", str(ledger_file))
    assert status == 2
    assert "upgrade rankigi" in err
    assert "Traceback" not in err


def test_ledger_path_from_environment(
    ledger_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RANKIGI_LEDGER_PATH", str(ledger_file))
    status, out, _ = run(capsys, "verify")
    assert status == 0
    assert out.startswith("agent-1: intact")


def test_ledger_option_beats_environment(
    ledger_file: Path,
    empty_ledger: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RANKIGI_LEDGER_PATH", str(ledger_file))
    _, out, _ = run(capsys, "verify", "--ledger", str(empty_ledger))
    assert out.startswith("no events")


def test_default_ledger_in_working_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RANKIGI_LEDGER_PATH", raising=False)
    status, _, err = run(capsys, "verify")
    assert status == 2
    assert str(tmp_path / ".rankigi" / "ledger.db") in err
    with Ledger(tmp_path / ".rankigi" / "ledger.db") as ledger:
        ledger.append([event("agent-1", 0)])
    status, out, _ = run(capsys, "verify")
    assert status == 0
    assert out.startswith("agent-1: intact, 1 event")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["events", "--limit", "0"],
        ["events", "--limit", "many"],
        ["events", "--severity", "fatal"],
        ["verify", "--no-such-option"],
    ],
)
def test_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    status, _, err = run(capsys, *argv)
    assert status == 2
    assert "usage: rankigi" in err


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--help")
    assert status == 0
    for command in ("events", "verify", "export"):
        assert command in out


def test_subcommand_registry(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert list(cli.SUBCOMMANDS) == ["events", "verify", "export", "serve"]

    def add_hello(
        subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
        common: argparse.ArgumentParser,
    ) -> None:
        parser = subparsers.add_parser("hello", parents=[common])
        parser.set_defaults(handler=lambda args: print(cli.ledger_path(args)) or 7)

    monkeypatch.setitem(cli.SUBCOMMANDS, "hello", add_hello)
    status, out, _ = run(capsys, "hello", "--ledger", "x.db")
    assert status == 7
    assert out == "x.db\n"


# -- a real process ------------------------------------------------------------


def run_python(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run the interpreter under test with this checkout importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [env.get("PYTHONPATH"), str(ROOT)])
    )
    return subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def run_module(*argv: str) -> subprocess.CompletedProcess[str]:
    return run_python("-m", "rankigi", *argv)


def test_cli_import_skips_http_client() -> None:
    done = run_python(
        "-c",
        "import sys, rankigi.cli; print(sorted({'httpx', 'wrapt'} & set(sys.modules)))",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n"


def test_module_exit_statuses(ledger_file: Path, tmp_path: Path) -> None:
    intact = run_module("verify", "--ledger", str(ledger_file))
    assert intact.returncode == 0, intact.stderr
    assert intact.stdout.startswith("agent-1: intact, 3 events")

    tamper(ledger_file, "agent-1", 1)
    broken = run_module("verify", "--ledger", str(ledger_file))
    assert broken.returncode == 1, broken.stderr
    assert "agent-1: BROKEN at index 1: hash mismatch" in broken.stdout

    missing = run_module("verify", "--ledger", str(tmp_path / "missing.db"))
    assert missing.returncode == 2
    assert missing.stdout == ""
    assert "Traceback" not in missing.stderr
    assert missing.stderr.startswith("rankigi: error: no ledger at ")

    usage = run_module("verify", "--bogus")
    assert usage.returncode == 2
    assert usage.stderr.startswith("usage: rankigi")


def test_verify_unknown_agent_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "l.db"
    with Ledger(path) as ledger:
        ledger.append([{"agent_id": "known", "action": "step", "payload": {}}])

    code = cli.main(["verify", "--ledger", str(path), "--agent", "typo"])

    assert code == 2
    err = capsys.readouterr().err
    assert "agent typo has no chain" in err
    assert "known" in err


def test_verify_expect_head_catches_cut_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:

    path = tmp_path / "l.db"
    with Ledger(path) as ledger:
        ledger.append(
            [{"agent_id": "a", "action": "step", "payload": {"i": i}} for i in range(5)]
        )
        head = ledger.verify("a").head_hash
    assert head is not None
    args = ["verify", "--ledger", str(path), "--agent", "a", "--expect-head"]
    assert cli.main([*args, head[:16]]) == 0

    # Cut the last two events and rewrite the head record to match, which the
    # chain alone cannot reveal.
    with edit(path) as db:
        db.execute("DELETE FROM events WHERE chain_index >= 3")
        (new_head,) = db.execute(
            "SELECT event_hash FROM events WHERE chain_index = 2"
        ).fetchone()
        db.execute(
            "UPDATE heads SET chain_index = 2, event_hash = ? WHERE agent_id = 'a'",
            (new_head,),
        )
    capsys.readouterr()
    assert cli.main(["verify", "--ledger", str(path), "--agent", "a"]) == 0
    assert cli.main([*args, head[:16]]) == 1
    assert "head mismatch" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["xyz", "abc", "g" * 20])
def test_verify_expect_head_validated(tmp_path: Path, value: str) -> None:
    path = tmp_path / "l.db"
    with Ledger(path) as ledger:
        ledger.append([{"agent_id": "a", "action": "step", "payload": {}}])
    args = ["verify", "--ledger", str(path), "--agent", "a", "--expect-head", value]
    assert cli.main(args) == 2
