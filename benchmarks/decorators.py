"""Microseconds per decorated call: rankigi against no decorator and other SDKs.

Run it from a virtual environment that has rankigi and, optionally, the
other SDKs (``pip install -e '.[bench]'``); an SDK that is missing is listed
as not installed. Nothing leaves the machine: rankigi and OpenTelemetry
record into memory, Sentry gets a transport that drops envelopes, and
Langfuse gets an in-memory span exporter and an HTTP client whose transport
returns responses locally.

Every case decorates the same function, ``add(a, b)`` called as
``add(1, 2)``. A round is ``--calls`` calls and then a flush of whatever the
SDK queued. The cases take turns round by round, so a busy moment on the
machine hits them all alike. Two figures per round:

- per call: the time of the calls alone, divided by their number.
- with export: the same plus the flush, which counts the work that the
  SDK's background thread does for these calls (hashing and export here).

The table gives the median over ``--rounds`` rounds and the range between
the fastest and the slowest round. With ``--write`` the table replaces the
section between the markers in docs/benchmarks.md.

    python benchmarks/decorators.py --write
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Optional

START_MARKER = "<!-- decorators:start -->"
END_MARKER = "<!-- decorators:end -->"
DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def add(a: int, b: int) -> int:
    return a + b


@dataclass
class Case:
    """One way of calling ``add``: its label, the call, and the flush."""

    label: str
    call: Callable[[int, int], int]
    flush: Callable[[], None] = lambda: None
    note: str = ""
    # Per-round microseconds per call, without and with the flush.
    calls: list[float] = field(default_factory=list)
    exported: list[float] = field(default_factory=list)


@dataclass
class Skipped:
    label: str
    reason: str


Setup = Iterator["Case | Skipped"]


@contextmanager
def undecorated() -> Setup:
    yield Case("no decorator", add)


@contextmanager
def rankigi_without_client() -> Setup:
    import rankigi

    yield Case("rankigi @tool, no client", rankigi.tool("add")(add))


@contextmanager
def rankigi_full_capture() -> Setup:
    import rankigi
    from rankigi._exporters import MemoryExporter

    exporter = MemoryExporter()
    client = rankigi.Rankigi(agent_id="bench", _exporter=exporter)
    # An explicit client: the setups are all entered before the rounds, so
    # an active client set with rankigi.use() would reach the other cases.
    decorated = rankigi.tool("add", client=client)(add)

    def flush() -> None:
        client.flush(None)
        exporter.events.clear()

    yield Case(
        "rankigi @tool, full capture",
        decorated,
        flush,
        "arguments, result, hashes; in-memory exporter",
    )
    client.close()


@contextmanager
def rankigi_capture_off() -> Setup:
    import rankigi
    from rankigi._exporters import MemoryExporter

    exporter = MemoryExporter()
    client = rankigi.Rankigi(agent_id="bench", _exporter=exporter)
    decorated = rankigi.tool(
        "add", capture_input=False, capture_output=False, client=client
    )(add)

    def flush() -> None:
        client.flush(None)
        exporter.events.clear()

    yield Case(
        "rankigi @tool, capture off",
        decorated,
        flush,
        "name, duration, status only",
    )
    client.close()


@contextmanager
def opentelemetry_span() -> Setup:
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )
    except ImportError:
        yield Skipped("OpenTelemetry span decorator", "opentelemetry-sdk not installed")
        return
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("bench")
    decorated = tracer.start_as_current_span("add")(add)

    def flush() -> None:
        provider.force_flush()
        exporter.clear()

    yield Case(
        "OpenTelemetry `start_as_current_span`",
        decorated,
        flush,
        "span with timing, no arguments; batch processor, in-memory exporter",
    )
    provider.shutdown()


@contextmanager
def opentelemetry_no_provider() -> Setup:
    try:
        from opentelemetry import trace
    except ImportError:
        yield Skipped("OpenTelemetry, no provider", "opentelemetry-api not installed")
        return
    # Without a configured provider the API hands out a no-op tracer.
    tracer = trace.NoOpTracerProvider().get_tracer("bench")
    yield Case(
        "OpenTelemetry, no-op tracer",
        tracer.start_as_current_span("add")(add),
        note="no SDK configured",
    )


@contextmanager
def sentry_trace() -> Setup:
    try:
        import sentry_sdk
        from sentry_sdk.transport import Transport
    except ImportError:
        yield Skipped("Sentry `@trace`", "sentry-sdk not installed")
        return

    class DropTransport(Transport):
        def capture_envelope(self, envelope: Any) -> None:
            pass

    sentry_sdk.init(
        # A DSN is required to start; the transport never opens a socket.
        dsn="http://public@127.0.0.1:9/1",
        transport=DropTransport,
        traces_sample_rate=1.0,
        default_integrations=False,
        auto_enabling_integrations=False,
    )
    decorated = sentry_sdk.trace(add)
    stack = ExitStack()

    def start() -> None:
        stack.enter_context(sentry_sdk.start_transaction(op="bench", name="bench"))

    def flush() -> None:
        # Finishing the transaction serializes its spans for the transport;
        # the next round needs a new transaction as the spans' parent.
        stack.close()
        start()

    start()
    yield Case(
        "Sentry `@sentry_sdk.trace`",
        decorated,
        flush,
        "child span with timing, no arguments; one transaction per round",
    )
    stack.close()
    sentry_sdk.get_client().close()


@contextmanager
def langfuse_observe() -> Setup:
    try:
        import httpx
        from langfuse import Langfuse, observe
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )
    except ImportError:
        yield Skipped("Langfuse `@observe`", "langfuse not installed")
        return

    def answer_locally(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={})

    exporter = InMemorySpanExporter()
    client = Langfuse(
        public_key="pk-lf-bench",
        secret_key="sk-lf-bench",
        host="http://127.0.0.1:9",
        httpx_client=httpx.Client(transport=httpx.MockTransport(answer_locally)),
        span_exporter=exporter,
    )
    decorated = observe(name="add")(add)

    def flush() -> None:
        client.flush()
        exporter.clear()

    yield Case(
        "Langfuse `@observe()`",
        decorated,
        flush,
        "arguments and result; in-memory span exporter",
    )
    client.shutdown()


SETUPS = [
    undecorated,
    rankigi_without_client,
    rankigi_full_capture,
    rankigi_capture_off,
    opentelemetry_no_provider,
    opentelemetry_span,
    sentry_trace,
    langfuse_observe,
]


def run_round(case: Case, calls: int) -> None:
    call = case.call
    gc.collect()
    start = time.perf_counter()
    for _ in range(calls):
        call(1, 2)
    called = time.perf_counter()
    case.flush()
    flushed = time.perf_counter()
    case.calls.append((called - start) / calls * 1e6)
    case.exported.append((flushed - start) / calls * 1e6)


def measure(rounds: int, calls: int) -> list[Case | Skipped]:
    results: list[Case | Skipped] = []
    with ExitStack() as stack:
        for setup in SETUPS:
            results.append(stack.enter_context(setup()))
        cases = [result for result in results if isinstance(result, Case)]
        for case in cases:
            assert case.call(1, 2) == 3, case.label
            run_round(case, calls)  # warm-up, not kept
            case.calls.clear()
            case.exported.clear()
        for _ in range(rounds):
            for case in cases:
                run_round(case, calls)
    return results


def describe(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f} to {max(values):.2f})"


def version_of(package: str) -> Optional[str]:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def render(results: list[Case | Skipped], rounds: int, calls: int) -> str:
    packages = ["rankigi", "wrapt", "opentelemetry-sdk", "sentry-sdk", "langfuse"]
    versions = ", ".join(
        f"{name} {version_of(name)}" for name in packages if version_of(name)
    )
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    lines = [
        START_MARKER,
        "## Decorators",
        "",
        "Microseconds per call of `add(1, 2)`, measured by "
        "`benchmarks/decorators.py`: the median of "
        f"{rounds} rounds of {calls} calls, and in brackets the fastest and "
        "the slowest round. *With export* adds the flush after each round, "
        "which counts the background thread's work for those calls.",
        "",
        f"- Machine: {cpu_name()}, {os.cpu_count()} cores, "
        f"load average {load} at the end of the run.",
        f"- Python {platform.python_version()} ({platform.python_implementation()}) "
        f"on {platform.system()}.",
        f"- Packages: {versions}.",
        "",
        "rankigi's worker takes a batch every 100 events (`batch_size`), so "
        "it runs during the calls and most of its cost already shows in the "
        "per-call column. OpenTelemetry's batch processor exports at 512 "
        "spans (its default in opentelemetry-sdk 1.45), more than one round, "
        "so its background cost shows only with export. Compare the "
        "with-export column across SDKs. Other processes shared the machine, "
        "so compare the fastest rounds as well as the medians.",
        "",
        "| decorator | per call, µs | with export, µs | records |",
        "|---|---|---|---|",
    ]
    for result in results:
        if isinstance(result, Skipped):
            lines.append(f"| {result.label} | n/a | n/a | {result.reason} |")
            continue
        lines.append(
            f"| {result.label} | {describe(result.calls)} | "
            f"{describe(result.exported)} | {result.note} |"
        )
    lines.append(END_MARKER)
    return "\n".join(lines) + "\n"


def write_section(section: str, path: Path) -> None:
    """Replace this benchmark's section of ``path``, keeping the others."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    start, end = text.find(START_MARKER), text.find(END_MARKER)
    if start != -1 and end > start:
        text = text[:start] + section + text[end + len(END_MARKER) :].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="rounds per case")
    parser.add_argument("--calls", type=int, default=500, help="calls per round")
    parser.add_argument(
        "--write", action="store_true", help=f"update the section in {DOC_PATH}"
    )
    args = parser.parse_args(argv)
    results = measure(args.rounds, args.calls)
    section = render(results, args.rounds, args.calls)
    sys.stdout.write(section)
    if args.write:
        write_section(section, DOC_PATH)
    return 0


if __name__ == "__main__":
    sys.exit(main())
