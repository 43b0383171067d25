"""The caller's latency per tracking call while the server hangs.

Each recorder (see ``_recorders.py``) runs twice, each time in a process of
its own: once against a server on 127.0.0.1 that accepts connections and
never responds, and once, for comparison, against one that responds with 200
at once. Every SDK keeps its default options apart from the URL. So the
hanging server blocks its sender until the SDK's own request timeout, and its
queue fills to its own bound and then drops, as it would for a user.

The caller records one event every ``--interval-us`` microseconds and times
each call alone. A round is ``--calls`` calls; the processes take turns round
by round after a warm-up of ``--warmup`` calls each. The table gives, per
recorder and server, the median over the rounds of each round's p50 and p99
(p99 also with its range over the rounds) and the slowest single call.

    python benchmarks/hang.py [--quick] [--output FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from _harness import Child, serve
from _loopback import HangingServer, RespondingServer
from _recorders import SPECS, Recorder, RecorderChild, open_recorder
from _report import (
    PEER_PACKAGES,
    RunInfo,
    add_common_options,
    describe,
    percentile,
    publish,
    selected_groups,
)

SECTION = "hang"
# Recorders with a network path that a hanging server can block. The
# embedded ledger has no server, and the in-memory exporter no network.
KEYS = ("rankigi-http", "v1-http", "sentry-event", "otel-otlp", "langfuse")


def measure_round(recorder: Recorder, message: dict[str, Any]) -> dict[str, Any]:
    """Record ``calls`` events at a fixed pace, timing each (the child's side)."""
    calls = int(message["calls"])
    interval = int(message["interval_us"]) * 1000
    record = recorder.record
    clock = time.perf_counter_ns
    latencies = []
    next_call = clock()
    for _ in range(calls):
        started = clock()
        record()
        latencies.append((clock() - started) / 1000)
        next_call += interval
        pause = next_call - clock()
        if pause > 0:
            time.sleep(pause / 1e9)
        else:
            next_call = clock()  # behind schedule: do not catch up in a burst
    return {
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "p999": percentile(latencies, 99.9),
        "max": max(latencies),
        "dropped": recorder.dropped(),
    }


@dataclass
class Row:
    key: str
    server: str
    child: Optional[Child] = None
    skipped: str = ""
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    p999: list[float] = field(default_factory=list)
    slowest: float = 0.0
    dropped: Optional[int] = None


def run(options: argparse.Namespace) -> list[Row]:
    groups = selected_groups(options.groups)
    pythons = {"rankigi": sys.executable, "peers": sys.executable}
    pythons["v1"] = options.v1_python
    hanging, responding = HangingServer(), RespondingServer()
    urls = {"hangs": hanging.url, "responds": responding.url}
    keys = [key for key in KEYS if SPECS[key].group in groups]
    rows = [Row(key, server) for key in keys for server in ("hangs", "responds")]
    try:
        for row in rows:
            opened = open_recorder(
                row.key, Path(__file__), urls[row.server], None, pythons
            )
            if isinstance(opened, str):
                row.skipped = opened
            else:
                row.child = opened
        live = [row for row in rows if row.child is not None]
        warmup = {"op": "round", "calls": options.warmup, "interval_us": 0}
        for row in live:
            assert row.child is not None
            row.child.request(warmup)
        request = {
            "op": "round",
            "calls": options.calls,
            "interval_us": options.interval_us,
        }
        for _ in range(options.rounds):
            for row in live:
                assert row.child is not None
                reply = row.child.request(request)
                row.p50.append(reply["p50"])
                row.p99.append(reply["p99"])
                row.p999.append(reply["p999"])
                row.slowest = max(row.slowest, reply["max"])
                row.dropped = reply["dropped"]
    finally:
        for row in rows:
            if row.child is not None:
                # The children leave without closing their clients, which
                # would wait for the hanging server (see main).
                row.child.close(timeout=10)
        hanging.close()
        responding.close()
    return rows


def render(rows: list[Row], options: argparse.Namespace, info: RunInfo) -> str:
    v1_ran = any(row.p50 for row in rows if row.key == "v1-http")
    lines = [
        "## Caller latency while the server hangs",
        "",
        "Microseconds per call that records the same tool call as above, timed "
        "one by one, measured by `benchmarks/hang.py`. The server on 127.0.0.1 "
        "accepts connections and never responds, so each SDK's sender waits "
        "until its own request timeout. Meanwhile its queue fills to its own "
        "bound, and then the SDK drops new events. The row below each is the "
        "same SDK against a server that responds with 200 at once. Each SDK "
        "keeps its default options apart from the URL.",
        "",
        *info.lines(PEER_PACKAGES, v1=v1_ran),
        f"- One call every {options.interval_us} µs, {options.rounds} rounds of "
        f"{options.calls:,} calls per row after {options.warmup} warm-up calls, "
        "each row in a process of its own, the rows taking turns round by "
        "round. p50, p99 and p99.9 are the medians over the rounds of each "
        "round's percentile, and the brackets give the range of p99 over the "
        "rounds. The slowest call is the maximum over all rounds, so one "
        "descheduling of the process on a shared machine shows there.",
        "- The default queue bounds: rankigi 10,000 events, rankigi 1.0.0 "
        "1,000, Sentry 100 envelopes, OpenTelemetry's batch processor 2,048 "
        "spans (Langfuse uses that processor too). Rows that ran past them "
        "measured the dropping path as well.",
        "",
        "| recorder | server | p50, µs | p99, µs | p99.9, µs | slowest call, µs "
        "| dropped by the SDK |",
        "|---|---|---:|---|---:|---:|---:|",
    ]
    for row in rows:
        label = SPECS[row.key].label
        if row.skipped:
            missing = " n/a |" * 4
            lines.append(
                f"| {label} | {row.server} |{missing} not run: {row.skipped} |"
            )
            continue
        dropped = "not reported" if row.dropped is None else f"{row.dropped:,}"
        lines.append(
            f"| {label} | {row.server} | {statistics.median(row.p50):,.1f} "
            f"| {describe(row.p99, 1)} | {statistics.median(row.p999):,.0f} "
            f"| {row.slowest:,.0f} | {dropped} |"
        )
    return "\n".join(lines)


def parse_options(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_options(parser)
    parser.add_argument("--rounds", type=int, help="measured rounds (5; quick: 2)")
    parser.add_argument("--calls", type=int, help="calls per round (2,000; quick: 100)")
    parser.add_argument(
        "--warmup", type=int, help="unmeasured calls first (200; quick: 20)"
    )
    parser.add_argument(
        "--interval-us",
        type=int,
        default=500,
        help="microseconds from the start of one call to the next (default: 500)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--queue-size", type=int, help=argparse.SUPPRESS)

    options = parser.parse_args(argv)
    options.rounds = options.rounds or (2 if options.quick else 5)
    options.calls = options.calls or (100 if options.quick else 2000)
    options.warmup = options.warmup or (20 if options.quick else 200)
    return options


def main(argv: Optional[list[str]] = None) -> int:
    options = parse_options(argv)
    if options.child:
        child = RecorderChild(
            options.child, options.url, options.queue_size, measure_round
        )
        serve(child.handle)
        # Closing the client, or its exit hooks, would wait for requests that
        # the hanging server never responds to. The measurements are already out.
        sys.stderr.flush()
        os._exit(0)

    info = RunInfo.start()
    rows = run(options)
    publish(options.output, SECTION, render(rows, options, info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
