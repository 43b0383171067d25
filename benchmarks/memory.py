"""Bytes of memory per queued event while the server does not respond.

Each recorder (see ``_recorders.py``) points at a server on 127.0.0.1 that
accepts connections and never responds, so its sender waits on the first
request and every later event stays in the SDK's queue. Its queue bound is
raised to hold them all. In a fresh process per measurement, the child
records a warm-up, collects garbage, records ``N`` events, collects garbage
again, and divides the growth by ``N``, measured two ways in separate
processes:

- RSS: the resident set size from /proc/self/statm. It counts everything,
  the allocator's unused reserve included, so it is the user's cost.
- tracemalloc: the bytes that Python objects hold, without the allocator's
  reserve; tracemalloc itself slows the calls down, so it runs apart.

    python benchmarks/memory.py [--quick] [--output FILE]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from _harness import serve
from _loopback import HangingServer
from _recorders import SPECS, Recorder, RecorderChild, open_recorder
from _report import (
    PEER_PACKAGES,
    RunInfo,
    add_common_options,
    describe,
    plural,
    publish,
    selected_groups,
)

SECTION = "memory"
# Recorders whose queue a server that does not respond can fill, and the
# share of --events each records. Sentry and Langfuse cost more per call, so
# they record fewer events to keep the run short; the result is per event.
EVENT_SHARE = {
    "rankigi-http": 1,
    "v1-http": 1,
    "otel-otlp": 1,
    "sentry-event": 10,
    "langfuse": 10,
}
# tracemalloc makes the calls 3 to 7 times slower, and its count varies far
# less than RSS, so traced runs record this share of a row's events.
TRACED_SHARE = 5
WARMUP = 200


def resident_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def measure(recorder: Recorder, message: dict[str, Any]) -> dict[str, Any]:
    """Record ``events`` events and return the memory growth (the child's side)."""
    events = int(message["events"])
    traced = message["mode"] == "tracemalloc"
    record = recorder.record
    for _ in range(WARMUP):
        record()
    # The sender takes its first batch and waits on the server; give it time
    # to get there, so the baseline has its thread and connection.
    time.sleep(0.5)
    gc.collect()
    if traced:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0] if traced else resident_bytes()
    started = time.perf_counter()
    for _ in range(events):
        record()
    elapsed = time.perf_counter() - started
    gc.collect()
    after = tracemalloc.get_traced_memory()[0] if traced else resident_bytes()
    return {
        "bytes_per_event": (after - before) / events,
        "queued": recorder.queued(),
        "dropped": recorder.dropped(),
        "seconds": elapsed,
    }


@dataclass
class Row:
    key: str
    events: int
    skipped: str = ""
    resident: list[float] = field(default_factory=list)
    traced: list[float] = field(default_factory=list)
    queued: Optional[int] = None
    dropped: Optional[int] = None


def measure_once(
    row: Row, mode: str, url: str, pythons: dict[str, str]
) -> Optional[dict[str, Any]]:
    """Run one measurement in a fresh child; return None if it cannot run."""
    # Room for the warm-up and every measured event, so none is dropped.
    queue_size = row.events + WARMUP + 1000
    opened = open_recorder(row.key, Path(__file__), url, queue_size, pythons)
    if isinstance(opened, str):
        row.skipped = opened
        return None
    events = row.events if mode == "rss" else max(1, row.events // TRACED_SHARE)
    try:
        return opened.request({"op": "measure", "events": events, "mode": mode})
    finally:
        opened.close(timeout=10)


def run(options: argparse.Namespace) -> list[Row]:
    groups = selected_groups(options.groups)
    pythons = {"rankigi": sys.executable, "peers": sys.executable}
    pythons["v1"] = options.v1_python
    rows = [
        Row(key, max(1, options.events // share))
        for key, share in EVENT_SHARE.items()
        if SPECS[key].group in groups
    ]
    server = HangingServer()
    try:
        # Rows take turns per round, as in the other scripts.
        plan = ["rss"] * options.rounds + ["tracemalloc"] * options.traced_rounds
        for mode in plan:
            for row in rows:
                if row.skipped:
                    continue
                reply = measure_once(row, mode, server.url, pythons)
                if reply is None:
                    continue
                if mode == "rss":
                    row.resident.append(reply["bytes_per_event"])
                    row.queued, row.dropped = reply["queued"], reply["dropped"]
                else:
                    row.traced.append(reply["bytes_per_event"])
    finally:
        server.close()
    return rows


def render(rows: list[Row], options: argparse.Namespace, info: RunInfo) -> str:
    v1_ran = any(row.resident for row in rows if row.key == "v1-http")
    lines = [
        "## Memory per queued event",
        "",
        "Bytes per event that waits in the SDK's queue while the server does "
        "not respond, measured by `benchmarks/memory.py`. Each SDK sends to a "
        "server on 127.0.0.1 that accepts connections and never responds, so "
        "its sender waits on the first request and the events pile up in its "
        "queue. The queue bound is raised to hold them all. After a warm-up of "
        f"{WARMUP} events and a garbage collection, the growth over the "
        "recorded events is divided by their number. *RSS* is the growth of "
        "the resident set size (everything the process holds, the allocator's "
        f"reserve included): the median of {plural(options.rounds, 'process', 'es')}"
        " per row, with the range in brackets. *tracemalloc* counts only the "
        "bytes that Python objects hold, in "
        f"{plural(options.traced_rounds, 'separate process', 'es')} per row with "
        f"1/{TRACED_SHARE} of the events, as tracing slows the calls down. "
        "*Queued at the end* is the SDK's queue length after the last RSS "
        "measurement, warm-up included; the events its sender holds are not "
        "in it.",
        "",
        *info.lines(PEER_PACKAGES, v1=v1_ran),
        "",
        "| recorder | events (RSS) | RSS, bytes per event | tracemalloc, bytes "
        "per event | queued at the end | what waits in the queue |",
        "|---|---:|---|---|---:|---|",
    ]
    for row in rows:
        spec = SPECS[row.key]
        if row.skipped:
            lines.append(f"| {spec.label} | | n/a | n/a | | not run: {row.skipped} |")
            continue
        queued = "not reported" if row.queued is None else f"{row.queued:,}"
        if row.dropped:
            queued += f"; **dropped {row.dropped:,}**"
        lines.append(
            f"| {spec.label} | {row.events:,} | {describe(row.resident, 0)} "
            f"| {_traced(row.traced)} | {queued} | {WAITING[row.key]} |"
        )
    lines += ["", *_ratio(rows)]
    return "\n".join(lines)


def _traced(values: list[float]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:,.0f}"
    return describe(values, 0)


# The object that one queued event is in each SDK, read from its source.
WAITING = {
    "rankigi-http": "the event dict with its snapshotted input and output; "
    "hashes are added later, by the sender",
    "v1-http": "the request body dict with hashes and sizes, not the values",
    "otel-otlp": "a finished span with its attributes",
    "sentry-event": "a closure over the envelope with the whole event",
    "langfuse": "a finished span with input and output as JSON attributes",
}


def _ratio(rows: list[Row]) -> list[str]:
    measured = {row.key: row for row in rows if row.resident}
    current, published = measured.get("rankigi-http"), measured.get("v1-http")
    if current is None or published is None:
        return []
    ratio = statistics.median(current.resident) / statistics.median(published.resident)
    return [
        f"By RSS, an event queued by this checkout takes {ratio:.1f} times the "
        "memory of one queued by rankigi 1.0.0, which keeps only hashes and "
        "sizes of the input and output.",
    ]


def parse_options(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_options(parser)
    parser.add_argument(
        "--events",
        type=int,
        help="events queued per measurement, before each SDK's share "
        "(100,000; quick: 2,000)",
    )
    parser.add_argument(
        "--rounds", type=int, help="RSS measurements per recorder (3; quick: 1)"
    )
    parser.add_argument(
        "--traced-rounds",
        type=int,
        help="tracemalloc measurements per recorder (1; quick: 1)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--queue-size", type=int, help=argparse.SUPPRESS)

    options = parser.parse_args(argv)
    options.events = options.events or (2_000 if options.quick else 100_000)
    options.rounds = options.rounds or (1 if options.quick else 3)
    options.traced_rounds = options.traced_rounds or 1
    return options


def main(argv: Optional[list[str]] = None) -> int:
    options = parse_options(argv)
    if options.child:
        child = RecorderChild(options.child, options.url, options.queue_size, measure)
        serve(child.handle)
        # Closing the client would wait for the server that never responds.
        sys.stderr.flush()
        os._exit(0)

    info = RunInfo.start()
    rows = run(options)
    publish(options.output, SECTION, render(rows, options, info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
