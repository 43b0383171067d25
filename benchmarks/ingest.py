"""Measure how fast `rankigi serve` ingests events over HTTP.

Two patterns, in one run, against one fresh server and ledger:

- sdk: this checkout's client, batching (``batch_size`` events per request,
  one request in flight per client), in ``--clients`` processes.
- v1: the published rankigi 1.0.0 client, which sends one POST per event on
  a new connection each time, from ``--v1-python`` (a virtualenv with
  ``rankigi==1.0.0`` installed) in the same number of processes.

Each client process times every request it sends, from the start of the
request to the end of the response. The benchmark reports events per second
from the first event tracked to the last one acknowledged, the p50 and p99
request latency, and the CPU time of the server and of the clients over the
same span.

Usage: benchmarks/run_ingest.sh [--write-docs], which installs the 1.0.0
client first, or .venv/bin/python benchmarks/ingest.py --v1-python PYTHON.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
START_MARK = "<!-- ingest:start -->"
END_MARK = "<!-- ingest:end -->"
API_KEY = "rk_bench_key"
# The virtualenv that run_ingest.sh creates for the published 1.0.0 client.
V1_VENV = Path(tempfile.gettempdir()) / "rankigi-1.0.0-venv"


# -- the client processes ------------------------------------------------------
#
# These run in separate interpreters (``--driver``), so they import only what
# their own rankigi version has.


def _drive_sdk(url: str, agent_id: str, events: int, batch_size: int) -> dict[str, Any]:
    from rankigi import Rankigi
    from rankigi._exporters import HttpExporter

    latencies = _time_calls(HttpExporter, "_request", lambda args: args[1] == "POST")
    client = Rankigi(
        api_key=API_KEY,
        agent_id=agent_id,
        base_url=url,
        batch_size=batch_size,
        max_queue_size=events + batch_size,
        flush_interval_ms=50,
    )
    started = time.perf_counter()
    cpu_started = time.process_time()
    for number in range(events):
        client.track_tool_call("search", {"query": "q", "n": number}, {"hits": 3})
    delivered = client.flush(timeout=600)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    stats = client.stats()
    client.close()
    return {
        "events": stats["sent"],
        "dropped": stats["dropped"],
        "complete": delivered,
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "latencies": latencies,
    }


def _drive_v1(url: str, agent_id: str, events: int) -> dict[str, Any]:
    import urllib.request

    # The published client, imported by name so that type checkers of this
    # checkout do not mistake it for this checkout's rankigi.
    rankigi: Any = importlib.import_module("rankigi")
    assert rankigi.__version__ == "1.0.0", rankigi.__version__
    latencies = _time_calls(urllib.request, "urlopen", lambda args: True)
    failures: list[Exception] = []
    client = rankigi.Rankigi(
        api_key=API_KEY,
        agent_id=agent_id,
        base_url=url,
        max_buffer=events + 1,
        on_error=failures.append,
    )
    started = time.perf_counter()
    cpu_started = time.process_time()
    for number in range(events):
        client.track_tool_call("search", {"query": "q", "n": number}, {"hits": 3})
    # 1.0.0's flush returns when the queue is empty, with the last request
    # still in flight; its worker thread exits only after that request.
    client.close(timeout=600)
    client._transport._worker.join(timeout=600)
    elapsed = time.perf_counter() - started
    return {
        "events": events - len(failures),
        "dropped": len(failures),
        "complete": not failures,
        "seconds": elapsed,
        "cpu_seconds": time.process_time() - cpu_started,
        "latencies": latencies,
    }


def _time_calls(owner: Any, name: str, selected: Any) -> list[float]:
    """Record the duration of each selected call of ``owner.name``, in ms."""
    original = getattr(owner, name)
    latencies: list[float] = []

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            if selected(args):
                latencies.append((time.perf_counter() - started) * 1000)

    setattr(owner, name, timed)
    return latencies


# -- the server ----------------------------------------------------------------


class Server:
    """`rankigi serve` in a subprocess, on a free loopback port."""

    def __init__(self, ledger: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        command = [sys.executable, "-m", "rankigi", "serve", "--port", "0"]
        command += ["--ledger", str(ledger), "--api-key", API_KEY]
        command += ["--log-level", "warning"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, text=True, env=env
        )
        assert self.process.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(
            target=_forward_lines, args=(self.process.stdout, lines), daemon=True
        ).start()
        first = lines.get(timeout=30)
        self.url = first.split()[-1]

    def cpu_seconds(self) -> float:
        """Return the CPU time (user and system) the server has used."""
        with open(f"/proc/{self.process.pid}/stat") as file:
            fields = file.read().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)


def _forward_lines(pipe: Any, lines: queue.Queue[str]) -> None:
    for line in pipe:
        lines.put(line)


def run_pattern(
    server: Server,
    python: str,
    pattern: str,
    clients: int,
    events: int,
    batch_size: int,
) -> dict[str, Any]:
    """Run ``clients`` driver processes at once and combine their results."""
    command = [python, str(Path(__file__).resolve()), "--driver", pattern]
    command += ["--url", server.url, "--events", str(events)]
    command += ["--batch-size", str(batch_size)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RANKIGI_")}
    if pattern == "sdk":
        env["PYTHONPATH"] = str(ROOT)
    else:
        # The 1.0.0 client must come from its own virtualenv, not this tree.
        env.pop("PYTHONPATH", None)

    cpu_before = server.cpu_seconds()
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            [*command, "--agent", f"{pattern}-agent-{number}"],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for number in range(clients)
    ]
    outputs = [json.loads(process.communicate()[0]) for process in processes]
    wall = time.perf_counter() - started
    cpu = server.cpu_seconds() - cpu_before

    latencies = sorted(x for output in outputs for x in output["latencies"])
    slowest = max(output["seconds"] for output in outputs)
    total = sum(output["events"] for output in outputs)
    return {
        "pattern": pattern,
        "clients": clients,
        "events": total,
        "dropped": sum(output["dropped"] for output in outputs),
        "requests": len(latencies),
        "seconds": slowest,
        "events_per_second": total / slowest,
        "p50_ms": _percentile(latencies, 50),
        "p99_ms": _percentile(latencies, 99),
        "server_cpu": cpu / wall,
        "cpu_per_event_us": cpu / total * 1e6,
        "client_cpu_per_event_us": (
            sum(output["cpu_seconds"] for output in outputs) / total * 1e6
        ),
    }


def _percentile(values: list[float], percent: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(percent) - 1]


def verify(ledger: Path) -> list[str]:
    """Return one line per agent from `rankigi verify`."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "rankigi", "verify", "--ledger", str(ledger)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"rankigi verify failed: {done.stdout}{done.stderr}")
    return done.stdout.splitlines()


def ledger_breakdown(events: int, batch_size: int, passes: int = 3) -> dict[str, float]:
    """Time the server's per-event steps in this process, in µs per event.

    The events have the shape the SDK sends for ``track_tool_call``. The
    steps are those of one ingest request: parsing the JSON body, validating
    the events and hashing their payloads (``prepare_events``), and the write
    transaction that hashes each record and inserts it (``append_batch``).
    ``write_cpu`` is the CPU time of the write transaction. The rest of
    ``write`` waits for the commit's flush to disk, and ``flush_ms`` is that
    wait per transaction, in milliseconds. Each step's figure is the fastest
    of ``passes`` passes over all events, each pass into a fresh ledger,
    because other processes on the machine only ever add time.
    """
    sys.path.insert(0, str(ROOT))
    from rankigi import Rankigi
    from rankigi._exporters import MemoryExporter

    exporter = MemoryExporter()
    client = Rankigi(
        api_key="unused",
        agent_id="breakdown",
        _exporter=exporter,
        max_queue_size=events + batch_size,
    )
    for number in range(events):
        client.track_tool_call("search", {"query": "q", "n": number}, {"hits": 3})
    client.close(timeout=60)
    bodies = [
        json.dumps({"events": exporter.events[start : start + batch_size]})
        for start in range(0, len(exporter.events), batch_size)
    ]
    timings = [_time_steps(bodies) for _ in range(passes)]
    count = len(exporter.events)
    breakdown = {
        step: min(totals[step] for totals in timings) / count * 1e6
        for step in timings[0]
    }
    flush = max(0.0, breakdown["write"] - breakdown["write_cpu"]) * count / 1e6
    breakdown["flush_ms"] = flush / len(bodies) * 1e3
    return breakdown


def _time_steps(bodies: list[str]) -> dict[str, float]:
    """Store ``bodies`` in a fresh ledger; return seconds spent in each step."""
    from rankigi.ledger import Ledger
    from rankigi.ledger._record import prepare_events, resolve_received_at

    totals = {"parse": 0.0, "prepare": 0.0, "write": 0.0, "write_cpu": 0.0}
    with tempfile.TemporaryDirectory() as directory:
        ledger = Ledger(Path(directory) / "breakdown.db")
        for body in bodies:
            started = time.perf_counter()
            batch = json.loads(body)["events"]
            parsed = time.perf_counter()
            prepared = prepare_events(batch, resolve_received_at(None))
            ready = time.perf_counter()
            ready_cpu = time.thread_time()
            ledger.write(
                functools.partial(_append, prepared=prepared, path=ledger.path)
            )
            totals["write_cpu"] += time.thread_time() - ready_cpu
            totals["parse"] += parsed - started
            totals["prepare"] += ready - parsed
            totals["write"] += time.perf_counter() - ready
        ledger.close()
    return totals


def _append(connection: Any, prepared: Any, path: Path) -> Any:
    from rankigi.ledger._store import append_batch

    return append_batch(connection, prepared, path)


# -- the report ----------------------------------------------------------------


def render(
    results: list[dict[str, Any]],
    runs: list[list[dict[str, Any]]],
    breakdown: dict[str, float],
    options: argparse.Namespace,
) -> str:
    """Return the Markdown section for ``docs/benchmarks.md``."""
    sdk, v1 = results
    names = {
        "sdk": f"this SDK, batches of {options.batch_size}",
        "v1": "rankigi 1.0.0, one POST per event",
    }
    rows = [
        "| pattern | client processes | events | requests | events/s "
        "| p50 request, ms | p99 request, ms | server CPU "
        "| server CPU per event, µs | client CPU per event, µs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        rows.append(
            f"| {names[result['pattern']]} | {result['clients']} "
            f"| {result['events']:,} | {result['requests']:,} "
            f"| {result['events_per_second']:,.0f} | {result['p50_ms']:.1f} "
            f"| {result['p99_ms']:.1f} | {result['server_cpu']:.0%} "
            f"| {result['cpu_per_event_us']:.0f} "
            f"| {result['client_cpu_per_event_us']:.0f} |"
        )
    lines = [
        "## Ingest over HTTP",
        "",
        "Measured by `benchmarks/ingest.py` (run `benchmarks/run_ingest.sh "
        "--write-docs`): one `rankigi serve` process on a "
        "fresh ledger and, in the same run, each pattern's client processes on "
        "the same machine, one pattern after the other. Events per second count "
        "from the first event tracked to the last one acknowledged. Request "
        "latency is timed in the clients, from sending a request to reading "
        "its answer. Server CPU is the server's CPU time over the wall time of "
        "the pattern, where 100% is one core. Client CPU is the CPU time of "
        "all client processes from their first event to their last answer.",
        "",
        f"- Machine: {_machine()}.",
        f"- {_software()}.",
        "- The SDK clients send one request at a time each, as the SDK does; "
        "rankigi 1.0.0 opens a new connection for each event.",
        "- The ledger runs SQLite in WAL mode with `synchronous=FULL`, so every "
        "answer waits for its commit to be flushed to disk.",
        "",
        *rows,
        "",
        f"The table shows the run with the median SDK rate of {len(runs)} runs, "
        "each on a fresh server and ledger. Over all runs, in events per "
        f"second: {_spread(runs, 0)} with batches, {_spread(runs, 1)} with one "
        "request per event. Other processes may share the machine (see the load "
        "average), which moves these numbers.",
        "",
        f"Batching stores {sdk['events_per_second'] / v1['events_per_second']:.1f} "
        "times as many events per second as one request per event, with "
        f"{sdk['requests'] / sdk['events']:.2f} requests per event instead of 1.",
        "",
        "### What bounds it",
        "",
        *_bounds(sdk, breakdown, options),
    ]
    return "\n".join(lines)


def _bounds(
    sdk: dict[str, Any], breakdown: dict[str, float], options: argparse.Namespace
) -> list[str]:
    """Return the paragraphs that explain the SDK pattern's rate."""
    rate = sdk["events_per_second"]
    server = sdk["cpu_per_event_us"]
    clients = sdk["client_cpu_per_event_us"]
    cores = os.cpu_count() or 1
    batch = options.batch_size
    # Each client has one request in flight, so a client's cycle from one
    # request to the next is the time its batch takes at the measured rate.
    cycle_ms = batch * sdk["clients"] / rate * 1000
    prepare_ms = (breakdown["parse"] + breakdown["prepare"]) * batch / 1000
    write_ms = breakdown["write_cpu"] * batch / 1000
    own_ms = prepare_ms + write_ms + breakdown["flush_ms"]
    steps = breakdown["parse"] + breakdown["prepare"] + breakdown["write_cpu"]
    verdict = "above" if rate >= 20_000 else "below"
    return [
        f"The rate is {verdict} the 20,000 events per second aimed for.",
        "",
        f"CPU: per event, the server used {server:.0f} µs and the SDK clients "
        f"{clients:.0f} µs (capturing and hashing the event, encoding and "
        f"sending the batch, reading the answer). At {rate:,.0f} events per "
        f"second that keeps {rate * (server + clients) / 1e6:.2f} of the "
        f"machine's {cores} cores busy. The server, whose Python code runs on "
        f"one core at a time, used {sdk['server_cpu']:.0%} of one core. With "
        "every core busy and nothing else running, this machine could store "
        f"at most about {cores * 1e6 / (server + clients):,.0f} events per "
        "second this way.",
        "",
        "Latency: each SDK client waits for the answer to one batch before it "
        "sends the next, so a client stores at most one batch per round trip. "
        f"A client's cycle took {cycle_ms:.1f} ms on average and its median "
        f"request {sdk['p50_ms']:.1f} ms. The rest of the cycle is the "
        "client's own work between requests. Timed alone in one process by "
        f"the same script, a request of {batch} events of this shape costs the "
        f"server {own_ms:.1f} ms. That is {prepare_ms:.1f} ms of CPU on the "
        f"event loop to parse, validate and hash, {write_ms:.1f} ms of CPU in "
        f"the write transaction, and {breakdown['flush_ms']:.1f} ms waiting "
        "for the commit's flush to disk. The rest of the median request is "
        "HTTP handling and waiting: for the other client's transaction, "
        "because the writer runs one transaction at a time, and for the CPU, "
        "which the server shares with the clients. Requests that arrive while "
        "a transaction runs are stored together in the next one and share its "
        "flush. But with two clients that each wait for their answer, at most "
        "one other request can be waiting.",
        "",
        "The ledger's steps, timed alone, in µs per event: "
        f"{breakdown['parse']:.1f} to parse the JSON body, and "
        f"{breakdown['prepare']:.1f} to validate each event, hash its payload, "
        "input and output, and build its record (`prepare_events`). The write "
        f"transaction (`append_batch`) takes {breakdown['write']:.1f}, of which "
        f"{breakdown['write_cpu']:.1f} is CPU. It looks up the batch's event "
        "ids, hashes each record, inserts the batch and commits. That is "
        f"{steps:.0f} µs of CPU. The other {max(0.0, server - steps):.0f} µs "
        "of server CPU per event in the run went to HTTP, to the hand-offs "
        "between the event loop and the writer thread, and to running beside "
        "the clients on the same cores, which slows the same work down.",
    ]


def _spread(runs: list[list[dict[str, Any]]], pattern: int) -> str:
    rates = sorted(results[pattern]["events_per_second"] for results in runs)
    return f"{rates[0]:,.0f} to {rates[-1]:,.0f}"


def _machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return f"{model}, {os.cpu_count()} cores, load average {load} at the end"


def _software() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        parser = f"httptools {version('httptools')}"
    except PackageNotFoundError:
        parser = f"h11 {version('h11')}, as httptools is not installed"
    packages = ", ".join(
        f"{name} {version(name)}" for name in ("starlette", "uvicorn", "httpx")
    )
    packages += f"; Uvicorn parses HTTP with {parser}"
    try:
        packages += f" and runs on uvloop {version('uvloop')}"
    except PackageNotFoundError:
        packages += " and runs on asyncio, as uvloop is not installed"
    from rankigi._version import __version__

    python = ".".join(str(part) for part in sys.version_info[:3])
    return (
        f"Python {python} on Linux; {packages}; rankigi "
        f"{__version__} (this checkout) and rankigi 1.0.0 (the published "
        "client, in its own virtualenv)"
    )


def write_docs(section: str) -> None:
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    block = f"{START_MARK}\n{section}\n{END_MARK}"
    if START_MARK in text and END_MARK in text:
        before = text.split(START_MARK, 1)[0]
        after = text.split(END_MARK, 1)[1]
        text = before + block + after
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOCS.write_text(text)


def measure_once(options: argparse.Namespace) -> list[dict[str, Any]]:
    """Run both patterns against one fresh server; check every chain after."""
    with tempfile.TemporaryDirectory() as directory:
        ledger = Path(directory) / "bench.db"
        server = Server(ledger)
        try:
            results = [
                run_pattern(
                    server,
                    sys.executable,
                    "sdk",
                    options.clients,
                    options.events,
                    options.batch_size,
                ),
                run_pattern(
                    server,
                    options.v1_python,
                    "v1",
                    options.clients,
                    options.v1_events,
                    1,
                ),
            ]
        finally:
            server.stop()
        lines = verify(ledger)
    expected = options.clients * (options.events + options.v1_events)
    stored = sum(int(line.split(", ")[1].split()[0]) for line in lines)
    if stored != expected or any(result["dropped"] for result in results):
        raise SystemExit(
            f"events went missing: the ledger has {stored} events, expected "
            f"{expected}; `rankigi verify` printed {lines}"
        )
    print("\n".join(lines), file=sys.stderr)
    return results


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--events", type=int, default=25_000, help="events per SDK client process"
    )
    parser.add_argument(
        "--v1-events", type=int, default=2_500, help="events per 1.0.0 client process"
    )
    parser.add_argument(
        "--clients", type=int, default=2, help="client processes per pattern"
    )
    parser.add_argument(
        "--batch-size", type=int, default=100, help="batch_size of the SDK clients"
    )
    parser.add_argument(
        "--v1-python",
        default=str(V1_VENV / "bin" / "python"),
        help="interpreter with rankigi==1.0.0 installed (run_ingest.sh makes one)",
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="measurements, each on a fresh server"
    )
    parser.add_argument(
        "--breakdown-events",
        type=int,
        default=20_000,
        help="events for timing the ledger steps alone",
    )
    parser.add_argument(
        "--write-docs", action="store_true", help=f"update the section in {DOCS}"
    )
    parser.add_argument("--driver", choices=("sdk", "v1"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--agent", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)

    if options.driver == "sdk":
        result = _drive_sdk(
            options.url, options.agent, options.events, options.batch_size
        )
        print(json.dumps(result))
        return 0
    if options.driver == "v1":
        print(json.dumps(_drive_v1(options.url, options.agent, options.events)))
        return 0

    runs = [measure_once(options) for _ in range(options.runs)]
    # The run with the median SDK rate goes in the table; the others only
    # show the spread.
    runs.sort(key=lambda results: results[0]["events_per_second"])
    results = runs[len(runs) // 2]
    breakdown = ledger_breakdown(options.breakdown_events, options.batch_size)
    section = render(results, runs, breakdown, options)
    print(section)
    if options.write_docs:
        write_docs(section)
        print(f"wrote {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
