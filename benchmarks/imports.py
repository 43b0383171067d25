"""Import time of ``rankigi`` against rankigi 1.0.0 and other SDKs.

Each run starts a fresh interpreter that times one import statement with
``time.perf_counter`` and counts the modules it added to ``sys.modules``.
The parent also times the whole process, interpreter start included. The
modules take turns run by run, after one unmeasured run each that writes
their bytecode caches, so every measured run reads warm ``.pyc`` files and a
warm file-system cache, as a long-lived application would on its second
start.

    python benchmarks/imports.py [--quick] [--output FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from _harness import child_env
from _report import (
    PEER_PACKAGES,
    RunInfo,
    add_common_options,
    describe,
    noise,
    publish,
    selected_groups,
)

SECTION = "imports"
# The statement runs between two clock reads; nothing else is imported in
# between. The module name comes from TARGETS below, never from input.
PROBE = """\
import sys, time
modules = len(sys.modules)
started = time.perf_counter()
{statement}
elapsed = time.perf_counter() - started
print(elapsed, len(sys.modules) - modules)
"""
CURRENT = "`import rankigi` (this checkout)"
PUBLISHED = "`import rankigi` (1.0.0)"


@dataclass
class Target:
    label: str
    group: str
    statement: str
    python: str = ""
    skipped: str = ""
    seconds: list[float] = field(default_factory=list)
    process: list[float] = field(default_factory=list)
    modules: int = 0


def targets(options: argparse.Namespace) -> list[Target]:
    groups = selected_groups(options.groups)
    listed = [
        Target("nothing (interpreter start only)", "rankigi", "pass"),
        Target(CURRENT, "rankigi", "import rankigi"),
        Target(PUBLISHED, "v1", "import rankigi"),
        Target("`import sentry_sdk`", "peers", "import sentry_sdk"),
        Target(
            "`import opentelemetry.trace` (API)", "peers", "import opentelemetry.trace"
        ),
        Target(
            "`import opentelemetry.sdk.trace` (SDK)",
            "peers",
            "import opentelemetry.sdk.trace",
        ),
        Target("`import langfuse`", "peers", "import langfuse"),
    ]
    chosen = [target for target in listed if target.group in groups]
    for target in chosen:
        target.python = options.v1_python if target.group == "v1" else sys.executable
        if not Path(target.python).exists():
            target.skipped = f"no interpreter at {target.python}; pass --v1-python"
    return chosen


def import_env(group: str, directory: str) -> dict[str, str]:
    """Return the child environment with one bytecode cache for every target.

    PYTHONPYCACHEPREFIX keeps the ``.pyc`` files of every module, installed
    or not, in one temporary tree that the first run writes, so no target
    reads stale or missing caches from its own folders, and the work tree
    stays untouched. PYTHONDONTWRITEBYTECODE would stop that first write.
    """
    env = child_env(group)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = os.path.join(directory, "pycache")
    return env


def time_import(target: Target, directory: str) -> tuple[float, float, int]:
    """Return the import's seconds, the process's seconds and the new modules."""
    started = time.perf_counter()
    done = subprocess.run(
        [target.python, "-c", PROBE.format(statement=target.statement)],
        capture_output=True,
        text=True,
        env=import_env(target.group, directory),
        # Not the repository: `-c` puts the working directory on sys.path,
        # where rankigi/ would shadow the 1.0.0 client.
        cwd=directory,
        check=False,
    )
    process = time.perf_counter() - started
    if done.returncode != 0:
        raise ImportError(done.stderr.strip().splitlines()[-1])
    seconds, modules = done.stdout.split()
    return float(seconds), process, int(modules)


@dataclass
class Results:
    targets: list[Target]
    # The packages that cost `import rankigi` the most, from -X importtime.
    heaviest: list[str]


def run(options: argparse.Namespace) -> Results:
    chosen = targets(options)
    heaviest: list[str] = []
    with tempfile.TemporaryDirectory(prefix="rankigi-bench-imports-") as directory:
        for number in range(options.runs + 1):
            for target in chosen:
                if not target.skipped:
                    _run_once(target, directory, measured=number > 0)
        if any(t.seconds and t.statement == "import rankigi" for t in chosen):
            heaviest = heaviest_rankigi_imports(directory)
    return Results(chosen, heaviest)


def _run_once(target: Target, directory: str, measured: bool) -> None:
    try:
        seconds, process, modules = time_import(target, directory)
    except ImportError as exc:
        target.skipped = f"the import failed: {exc}"
        return
    if measured:  # the first run writes the bytecode caches
        target.seconds.append(seconds * 1000)
        target.process.append(process * 1000)
        target.modules = modules


def heaviest_rankigi_imports(directory: str, count: int = 5) -> list[str]:
    """Return the top-level packages that cost ``import rankigi`` the most time.

    One ``python -X importtime`` run, so the figures are rough. Each line of
    its output has the self and the cumulative microseconds of one module.
    Only modules without a dot count, so a package's submodules are counted
    once, inside it.
    """
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import rankigi"],
        capture_output=True,
        text=True,
        env=import_env("rankigi", directory),
        cwd=directory,
        check=False,
    )
    entries = []
    for line in done.stderr.splitlines():
        parts = [part.strip() for part in line.split("|")]
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        name = parts[2]
        if "." in name or name == "rankigi":
            continue
        entries.append((int(parts[1]), name))
    entries.sort(reverse=True)
    return [f"`{name}` {micros / 1000:.1f} ms" for micros, name in entries[:count]]


def render(results: Results, options: argparse.Namespace, info: RunInfo) -> str:
    v1_ran = any(t.seconds for t in results.targets if t.group == "v1")
    lines = [
        "## Import time",
        "",
        "Milliseconds to import each module in a fresh interpreter, measured by "
        "`benchmarks/imports.py`: the median of "
        f"{options.runs} runs, and in brackets the fastest and the slowest. "
        "*Import* is timed inside the interpreter around the import statement "
        "alone; *process* is the whole `python -c` run, interpreter start and "
        "exit included, timed by the parent. The modules take turns run by "
        "run, after one unmeasured run each that writes their bytecode caches "
        "into one temporary folder (`PYTHONPYCACHEPREFIX`), which every later "
        "run reads. *Noise* is the interquartile range over the median, of the "
        "import times and of the process times.",
        "",
        *info.lines(PEER_PACKAGES, v1=v1_ran),
        "",
        "| statement | import, ms | process, ms | noise | modules loaded |",
        "|---|---|---|---|---:|",
    ]
    for target in results.targets:
        if target.skipped:
            lines.append(
                f"| {target.label} | n/a | n/a | | not run: {target.skipped} |"
            )
            continue
        lines.append(
            f"| {target.label} | {describe(target.seconds, 1)} "
            f"| {describe(target.process, 1)} | {_noise(target)} "
            f"| {target.modules} |"
        )
    lines += _summary(results)
    return "\n".join(lines)


def _noise(target: Target) -> str:
    # An empty statement takes microseconds, whose spread means nothing.
    if target.statement == "pass":
        return f"n/a / {noise(target.process):.0%}"
    return f"{noise(target.seconds):.0%} / {noise(target.process):.0%}"


def _summary(results: Results) -> list[str]:
    lines = []
    measured = {target.label: target for target in results.targets if target.seconds}
    current = measured.get(CURRENT)
    published = measured.get(PUBLISHED)
    if current is not None and published is not None:
        ratio = statistics.median(current.seconds) / statistics.median(
            published.seconds
        )
        lines += [
            "",
            f"`import rankigi` of this checkout takes {ratio:.1f} times as long "
            "as 1.0.0's.",
        ]
    if results.heaviest:
        lines += [
            "",
            "The packages that `import rankigi` spends most on, by `python -X "
            "importtime` (cumulative, one run, a package imported inside "
            f"another counts in both): {', '.join(results.heaviest)}.",
        ]
    return lines


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_options(parser)
    parser.add_argument(
        "--runs", type=int, help="measured runs per module (20; quick: 3)"
    )
    options = parser.parse_args(argv)
    options.runs = options.runs or (3 if options.quick else 20)
    info = RunInfo.start()
    results = run(options)
    publish(options.output, SECTION, render(results, options, info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
