"""Shared parts of the benchmark scripts: options, machine facts, statistics, Markdown.

Each script writes one section of docs/benchmarks.md between the markers
``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` and leaves the rest of the
file as it is.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
# The virtualenv that run_all.sh creates for the published 1.0.0 client.
V1_PYTHON = ROOT / ".bench" / "venv-100" / "bin" / "python"
# Row groups that --groups selects: this checkout, the published 1.0.0
# client, and the other SDKs.
GROUPS = ("rankigi", "v1", "peers")
PEER_PACKAGES = (
    "sentry-sdk",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-http",
    "langfuse",
)


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Add the options that every new benchmark script takes."""
    parser.add_argument(
        "--quick",
        action="store_true",
        help="run a few short rounds only, to check that the script works",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DOCS,
        help="Markdown file whose section this script replaces (default: %(default)s)",
    )
    parser.add_argument(
        "--groups",
        default=",".join(GROUPS),
        help="comma-separated row groups to run: rankigi (this checkout), v1 "
        "(rankigi 1.0.0) and peers (other SDKs); default: all",
    )
    parser.add_argument(
        "--v1-python",
        # Absolute, because the children run in temporary directories.
        type=os.path.abspath,
        default=str(V1_PYTHON),
        help="interpreter with rankigi==1.0.0 installed (default: %(default)s, "
        "which benchmarks/run_all.sh creates)",
    )


def selected_groups(text: str) -> set[str]:
    """Parse ``--groups``; raise SystemExit naming an unknown group."""
    groups = {part.strip() for part in text.split(",") if part.strip()}
    unknown = groups - set(GROUPS)
    if unknown:
        raise SystemExit(
            f"unknown group {sorted(unknown)!r} in --groups; "
            f"choose from {', '.join(GROUPS)}"
        )
    return groups


# -- the machine ------------------------------------------------------------


def cpu_model() -> str:
    """Return the CPU model from /proc/cpuinfo, else the name from ``platform``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def package_version(name: str) -> Optional[str]:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@dataclass
class RunInfo:
    """Facts about the machine and the software, taken at the start of a run."""

    load_at_start: str

    @classmethod
    def start(cls) -> RunInfo:
        return cls(load_average())

    def lines(self, packages: tuple[str, ...], v1: bool) -> list[str]:
        """Return the Markdown list that opens each section.

        With ``v1`` true, the list names rankigi 1.0.0 among the packages.
        """
        extra = ", rankigi 1.0.0 in its own virtualenv" if v1 else ""
        found = [(name, package_version(name)) for name in packages]
        versions = ", ".join(f"{name} {version}" for name, version in found if version)
        missing = [name for name, version in found if not version]
        lines = [
            f"- Machine: {cpu_model()}, {os.cpu_count()} cores, load average "
            f"{self.load_at_start} at the start and {load_average()} at the end "
            "(1, 5 and 15 minutes).",
            f"- Python {platform.python_version()} "
            f"({platform.python_implementation()}) on {platform.system()}.",
            f"- Packages: rankigi {package_version('rankigi') or 'not installed'} "
            f"(this checkout){extra}; {versions or 'no other SDK installed'}.",
        ]
        if missing:
            lines.append(f"- Not installed, so not measured: {', '.join(missing)}.")
        return lines


# -- statistics -------------------------------------------------------------


def percentile(values: list[float], percent: float) -> float:
    """Return the ``percent`` percentile of ``values``, by linear interpolation."""
    if not values:
        raise ValueError("percentile of no values; measure at least one round")
    ordered = sorted(values)
    position = (len(ordered) - 1) * percent / 100
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    fraction = position - lower
    return ordered[lower] + (ordered[upper] - ordered[lower]) * fraction


def noise(values: list[float]) -> float:
    """Return the interquartile range over the median, as a fraction."""
    middle = statistics.median(values)
    if middle == 0:
        return 0.0
    return (percentile(values, 75) - percentile(values, 25)) / middle


def plural(count: int, word: str, suffix: str = "s") -> str:
    """Return ``count`` and ``word``, with ``suffix`` unless the count is 1."""
    return f"{count:,} {word}{'' if count == 1 else suffix}"


def describe(values: list[float], digits: int = 2) -> str:
    """Format ``median (min to max)``."""
    middle = statistics.median(values)
    return (
        f"{middle:,.{digits}f} ({min(values):,.{digits}f} to {max(values):,.{digits}f})"
    )


# -- the document -----------------------------------------------------------


def write_section(path: Path, name: str, body: str) -> None:
    """Replace the section ``name`` of ``path``, or append it; keep the rest."""
    start_marker = f"<!-- {name}:start -->"
    end_marker = f"<!-- {name}:end -->"
    block = f"{start_marker}\n{body.strip()}\n{end_marker}"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    start = text.find(start_marker)
    end = text.find(end_marker)
    if start != -1 and end > start:
        text = text[:start] + block + text[end + len(end_marker) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def publish(path: Path, name: str, body: str) -> None:
    """Print the section and write it into ``path``."""
    sys.stdout.write(body.strip() + "\n")
    write_section(path, name, body)
    print(f"wrote the {name} section of {path}", file=sys.stderr)
