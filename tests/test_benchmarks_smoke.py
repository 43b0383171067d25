"""Smoke runs of the benchmark scripts: each runs and writes a well-formed section.

Only this checkout's rows run (``--groups rankigi``), with this interpreter,
so the tests need neither the other SDKs nor the rankigi 1.0.0 virtualenv,
and install nothing. They check the shape of the output, never a timing.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"

# Each script, named as its section, and the options that keep its run short.
SCRIPTS = {
    "track": ["--rounds", "2", "--calls", "20"],
    "hang": ["--rounds", "2", "--calls", "50", "--warmup", "10"],
    "memory": ["--events", "1000"],
    "imports": ["--runs", "2"],
}
OTHER = "<!-- other:start -->\nkept\n<!-- other:end -->\n"


def run_script(name: str, output: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), "--quick"]
    command += ["--groups", "rankigi", "--output", str(output), *SCRIPTS[name]]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, check=False
    )


def sections(text: str) -> dict[str, str]:
    """Return the body of every marked section, by name."""
    pattern = r"<!-- (\w+):start -->\n(.*?)\n<!-- \1:end -->"
    return dict(re.findall(pattern, text, re.DOTALL))


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_script_writes_its_section(name: str, tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"
    original = DOCS.read_text(encoding="utf-8") + "\n" + OTHER
    output.write_text(original, encoding="utf-8")

    done = run_script(name, output)

    assert done.returncode == 0, done.stderr
    text = output.read_text(encoding="utf-8")
    assert text.count(f"<!-- {name}:start -->") == 1
    assert text.count(f"<!-- {name}:end -->") == 1
    body = sections(text)[name]
    assert body.startswith("## ")
    assert "- Machine: " in body
    assert "load average" in body
    assert "- Python " in body
    table = [line for line in body.splitlines() if line.startswith("|")]
    assert len(table) >= 3, body
    assert re.fullmatch(r"\|(?:-{3,}:?\|)+", table[1]), table[1]
    rows = table[2:]
    assert any("rankigi" in row and "n/a" not in row for row in rows), body
    assert all(row.count("|") == table[0].count("|") for row in rows), body
    for other, expected in sections(original).items():
        if other != name:
            assert sections(text)[other] == expected, other


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_script_appends_missing_section(name: str, tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"
    original = "# Benchmarks\n\n" + OTHER
    output.write_text(original, encoding="utf-8")

    done = run_script(name, output)

    assert done.returncode == 0, done.stderr
    text = output.read_text(encoding="utf-8")
    assert text.startswith(original)
    assert set(sections(text)) == {"other", name}
