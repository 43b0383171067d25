"""Microseconds per tracking call: rankigi against rankigi 1.0.0 and other SDKs.

Every recorder records the same tool call (see ``_recorders.py``) in a
process of its own, and every network path ends at an HTTP server on
127.0.0.1 in this process that responds with 200 at once. A round is ``--calls``
calls and then a flush of what the SDK queued. The recorders take turns round
by round, after one warm-up round each. Two figures per round:

- per call: the time of the calls alone, divided by their number. This is
  what the caller pays, including the time the SDK's background thread takes
  from it while both run.
- with export: the same plus the flush, which waits until the SDK has sent
  (or stored) what those calls recorded.

    python benchmarks/track.py [--quick] [--output FILE]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from _harness import Child, serve
from _loopback import RespondingServer
from _recorders import SPECS, Recorder, RecorderChild, open_recorder
from _report import (
    PEER_PACKAGES,
    RunInfo,
    add_common_options,
    describe,
    noise,
    publish,
    selected_groups,
)

SECTION = "track"


def measure_round(recorder: Recorder, message: dict[str, Any]) -> dict[str, Any]:
    """Time ``calls`` records and then the flush (the child's side)."""
    calls = int(message["calls"])
    record = recorder.record
    gc.collect()
    started = time.perf_counter()
    for _ in range(calls):
        record()
    called = time.perf_counter()
    recorder.flush()
    flushed = time.perf_counter()
    return {
        "call_us": (called - started) / calls * 1e6,
        "export_us": (flushed - started) / calls * 1e6,
        "dropped": recorder.dropped(),
    }


@dataclass
class Row:
    key: str
    child: Optional[Child] = None
    skipped: str = ""
    calls: list[float] = field(default_factory=list)
    exported: list[float] = field(default_factory=list)
    requests: int = 0
    dropped: Optional[int] = None


def run(options: argparse.Namespace) -> list[Row]:
    """Set up every selected recorder, then run the rounds in turn."""
    groups = selected_groups(options.groups)
    pythons = {"rankigi": sys.executable, "peers": sys.executable}
    pythons["v1"] = options.v1_python
    server = RespondingServer()
    rows = [Row(key) for key, spec in SPECS.items() if spec.group in groups]
    try:
        for row in rows:
            opened = open_recorder(
                row.key, Path(__file__), server.url, _queue_size(options), pythons
            )
            if isinstance(opened, str):
                row.skipped = opened
            else:
                row.child = opened
        live = [row for row in rows if row.child is not None]
        for number in range(options.rounds + 1):
            for row in live:
                assert row.child is not None
                before = server.requests
                reply = row.child.request({"op": "round", "calls": options.calls})
                if number == 0:
                    continue  # the warm-up round
                row.calls.append(reply["call_us"])
                row.exported.append(reply["export_us"])
                row.requests += server.requests - before
                row.dropped = reply["dropped"]
        for row in live:
            assert row.child is not None
            row.child.request({"op": "close"})
    finally:
        for row in rows:
            if row.child is not None:
                row.child.close()
        server.close()
    return rows


def _queue_size(options: argparse.Namespace) -> int:
    # Every SDK's queue bound is rankigi's default of 10,000 events or two
    # rounds, whichever is more, so none drops events (Sentry's default bound
    # is 100) and each pays for everything it records.
    return max(10_000, 2 * int(options.calls))


def render(rows: list[Row], options: argparse.Namespace, info: RunInfo) -> str:
    events = options.rounds * options.calls
    v1_ran = any(row.calls for row in rows if row.key == "v1-http")
    lines = [
        "## Tracking calls",
        "",
        "Microseconds per call that records the tool call `stripe_charge` "
        '(input `{"charge_id": "ch_1", "amount": 4990}`, output '
        '`{"status": "succeeded"}`), measured by `benchmarks/track.py`: the '
        f"median of {options.rounds} rounds of {options.calls} calls, and in "
        "brackets the fastest and the slowest round. *Per call* times the calls "
        "alone; *with export* adds the flush after each round, which waits "
        "until the SDK has sent or stored those events. *Noise* is the "
        "interquartile range of the rounds over their median, per call and "
        "with export.",
        "",
        *info.lines(PEER_PACKAGES, v1=v1_ran),
        "- Each recorder runs in a process of its own, and the recorders take "
        "turns round by round after one warm-up round each. Every network path "
        "ends at one HTTP server on 127.0.0.1 in the benchmark's process, which "
        "responds with 200 at once (Python's `http.server`, one thread per "
        f"connection). Every SDK's queue bound is {_queue_size(options):,} events, "
        "so none drops any. Sentry runs without its default integrations.",
        "",
        "| recorder | per call, µs | with export, µs | noise | HTTP requests "
        "per 100 calls | records |",
        "|---|---|---|---|---:|---|",
    ]
    for row in rows:
        spec = SPECS[row.key]
        if row.skipped:
            lines.append(f"| {spec.label} | n/a | n/a | | | not run: {row.skipped} |")
            continue
        lines.append(
            f"| {spec.label} | {describe(row.calls)} | {describe(row.exported)} "
            f"| {noise(row.calls):.0%} / {noise(row.exported):.0%} "
            f"| {_requests(row, events)} | {spec.records}{_drops(row)} |"
        )
    lines += ["", *_comparison(rows)]
    return "\n".join(lines)


def _requests(row: Row, events: int) -> str:
    if row.key == "rankigi-ledger":
        return "none"
    return f"{row.requests / events * 100:.1f}"


def _drops(row: Row) -> str:
    return f"; **dropped {row.dropped} events**" if row.dropped else ""


def _comparison(rows: list[Row]) -> list[str]:
    """Say how this checkout compares with 1.0.0, per call and with export."""
    measured = {row.key: row for row in rows if row.calls}
    current, published = measured.get("rankigi-http"), measured.get("v1-http")
    if current is None or published is None:
        return []
    call = statistics.median(current.calls) / statistics.median(published.calls)
    export = statistics.median(current.exported) / statistics.median(published.exported)
    return [
        "Over HTTP, by the medians, this checkout's `track_tool_call` takes "
        f"{call:.0%} of the caller's time that 1.0.0's takes, and {export:.0%} "
        "with export.",
    ]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_options(parser)
    parser.add_argument("--rounds", type=int, help="measured rounds (25; quick: 3)")
    parser.add_argument("--calls", type=int, help="calls per round (500; quick: 50)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--queue-size", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    options.rounds = options.rounds or (3 if options.quick else 25)
    options.calls = options.calls or (50 if options.quick else 500)

    if options.child:
        child = RecorderChild(
            options.child, options.url, options.queue_size, measure_round
        )
        serve(child.handle)
        return 0

    info = RunInfo.start()
    rows = run(options)
    publish(options.output, SECTION, render(rows, options, info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
