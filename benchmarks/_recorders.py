"""One way per SDK to record the same tool call, for track.py, hang.py, memory.py.

Every recorder records ``stripe_charge`` with the input
``{"charge_id": "ch_1", "amount": 4990}`` and the output
``{"status": "succeeded"}`` in the form its SDK offers for that. Every
network path points at the loopback URL the parent passes in, so nothing
leaves the machine. The SDKs are imported inside the setup functions,
because a child process has only its own SDK installed (the 1.0.0
virtualenv has nothing else), and this module must import everywhere.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union
from urllib.parse import urlsplit

from _harness import Child, Skip

TOOL = "stripe_charge"
INPUT = {"charge_id": "ch_1", "amount": 4990}
OUTPUT = {"status": "succeeded"}
API_KEY = "rk_bench_key"


def _nothing() -> None:
    return None


def _unknown() -> Optional[int]:
    return None


@dataclass
class Recorder:
    """A set-up SDK: record one call, wait for its export, close."""

    record: Callable[[], object]
    flush: Callable[[], None]
    close: Callable[[], None] = _nothing
    # Events waiting in the SDK's queue and events the SDK dropped, where
    # the SDK exposes them; None where it does not.
    queued: Callable[[], Optional[int]] = _unknown
    dropped: Callable[[], Optional[int]] = _unknown


@dataclass
class Spec:
    """A recorder's row: its group, its label, what it records, its setup."""

    group: str
    label: str
    records: str
    setup: Callable[[str, Optional[int]], Recorder]


# -- rankigi, this checkout ---------------------------------------------------


def _rankigi_recorder(client: Any, directory: Optional[str] = None) -> Recorder:
    def close() -> None:
        client.close(timeout=5.0)
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)

    return Recorder(
        record=lambda: client.track_tool_call(TOOL, INPUT, OUTPUT),
        flush=lambda: client.flush(None),
        close=close,
        queued=lambda: int(client.stats()["queued"]),
        dropped=lambda: int(client.stats()["dropped"]),
    )


def rankigi_ledger(url: str, queue_size: Optional[int]) -> Recorder:
    from rankigi import Rankigi

    directory = tempfile.mkdtemp(prefix="rankigi-bench-ledger-")
    options: dict[str, Any] = {"ledger_path": os.path.join(directory, "ledger.db")}
    if queue_size:
        options["max_queue_size"] = queue_size
    return _rankigi_recorder(Rankigi(agent_id="bench", **options), directory)


def rankigi_http(url: str, queue_size: Optional[int]) -> Recorder:
    from rankigi import Rankigi

    options: dict[str, Any] = {"base_url": url}
    if queue_size:
        options["max_queue_size"] = queue_size
    return _rankigi_recorder(Rankigi(api_key=API_KEY, agent_id="bench", **options))


# -- rankigi 1.0.0, in its own virtualenv -------------------------------------


def rankigi_v1(url: str, queue_size: Optional[int]) -> Recorder:
    # Imported by name, so type checkers of this checkout do not mistake the
    # published client for this checkout's rankigi.
    rankigi: Any = importlib.import_module("rankigi")
    if rankigi.__version__ != "1.0.0":
        raise Skip(
            f"--v1-python imports rankigi {rankigi.__version__}, not 1.0.0; "
            "point it at a virtualenv with rankigi==1.0.0"
        )
    failures = [0]

    def count_failure(error: Exception) -> None:
        failures[0] += 1

    options: dict[str, Any] = {"base_url": url, "on_error": count_failure}
    if queue_size:
        options["max_buffer"] = queue_size
    client = rankigi.Rankigi(api_key=API_KEY, agent_id="bench", **options)
    transport = client._transport

    def close() -> None:
        client.close(timeout=5.0)

    return Recorder(
        record=lambda: client.track_tool_call(TOOL, INPUT, OUTPUT),
        # 1.0.0's flush() returns once its queue is empty, with the last
        # request still in flight. join() waits for every task_done(), which
        # its worker calls after each send.
        flush=transport._queue.join,
        close=close,
        queued=transport._queue.qsize,
        dropped=lambda: failures[0],
    )


# -- Sentry --------------------------------------------------------------------


def _sentry_init(url: str, queue_size: Optional[int]) -> Any:
    try:
        import sentry_sdk
    except ImportError as exc:
        raise Skip("sentry-sdk is not installed") from exc
    parts = urlsplit(url)
    options: dict[str, Any] = {}
    if queue_size:
        options["transport_queue_size"] = queue_size
    sentry_sdk.init(
        # Sentry's own HTTP transport, sending to the loopback server.
        dsn=f"http://public@{parts.hostname}:{parts.port}/1",
        traces_sample_rate=1.0,
        default_integrations=False,
        auto_enabling_integrations=False,
        **options,
    )
    return sentry_sdk


def _sentry_queued(sentry_sdk: Any) -> Callable[[], Optional[int]]:
    def queued() -> Optional[int]:
        worker = getattr(sentry_sdk.get_client().transport, "_worker", None)
        queue = getattr(worker, "_queue", None)
        return None if queue is None else int(queue.qsize())

    return queued


def _sentry_dropped(sentry_sdk: Any) -> Callable[[], Optional[int]]:
    """Count the envelopes Sentry's transport drops because its queue is full."""
    transport = sentry_sdk.get_client().transport
    original = getattr(transport, "on_dropped_event", None)
    if original is None:
        return _unknown
    count = [0]

    def on_dropped_event(reason: str) -> None:
        if reason == "full_queue":
            count[0] += 1
        original(reason)

    transport.on_dropped_event = on_dropped_event
    return lambda: count[0]


def sentry_event(url: str, queue_size: Optional[int]) -> Recorder:
    sentry_sdk = _sentry_init(url, queue_size)
    event = {
        "message": f"tool call {TOOL}",
        "level": "info",
        "extra": {"tool": TOOL, "input": INPUT, "output": OUTPUT},
    }

    def close() -> None:
        sentry_sdk.get_client().close(timeout=5.0)

    return Recorder(
        # capture_event fills in the event in place, so each call gets a copy.
        record=lambda: sentry_sdk.capture_event(dict(event)),
        flush=lambda: sentry_sdk.flush(timeout=60),
        close=close,
        queued=_sentry_queued(sentry_sdk),
        dropped=_sentry_dropped(sentry_sdk),
    )


def sentry_span(url: str, queue_size: Optional[int]) -> Recorder:
    sentry_sdk = _sentry_init(url, queue_size)
    from sentry_sdk.consts import OP, SPANDATA

    transactions: list[Any] = []

    def start() -> None:
        transaction = sentry_sdk.start_transaction(op="bench", name="bench")
        transaction.__enter__()
        transactions.append(transaction)

    def record() -> None:
        with sentry_sdk.start_span(
            op=OP.GEN_AI_EXECUTE_TOOL, name=f"execute_tool {TOOL}"
        ) as span:
            span.set_data(SPANDATA.GEN_AI_TOOL_NAME, TOOL)
            span.set_data(SPANDATA.GEN_AI_TOOL_INPUT, json.dumps(INPUT))
            span.set_data(SPANDATA.GEN_AI_TOOL_OUTPUT, json.dumps(OUTPUT))

    def flush() -> None:
        # Spans leave with their transaction, so a flush finishes the
        # transaction and the next calls need a new one as their parent.
        transactions.pop().__exit__(None, None, None)
        sentry_sdk.flush(timeout=60)
        start()

    def close() -> None:
        transactions.pop().__exit__(None, None, None)
        sentry_sdk.get_client().close(timeout=5.0)

    start()
    return Recorder(record=record, flush=flush, close=close)


# -- OpenTelemetry -------------------------------------------------------------


def _otel_recorder(exporter: Any, queue_size: Optional[int], clear: bool) -> Recorder:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    options: dict[str, Any] = {}
    if queue_size:
        options["max_queue_size"] = queue_size
    processor = BatchSpanProcessor(exporter, **options)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("rankigi-bench")

    def record() -> None:
        # Span attributes must be strings, numbers or lists of them, so the
        # input and output go in as JSON, as the GenAI conventions name them.
        span = tracer.start_span(
            f"execute_tool {TOOL}",
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": TOOL,
                "gen_ai.tool.call.arguments": json.dumps(INPUT),
                "gen_ai.tool.call.result": json.dumps(OUTPUT),
            },
        )
        span.end()

    def flush() -> None:
        provider.force_flush()
        if clear:
            exporter.clear()

    return Recorder(
        record=record,
        flush=flush,
        close=provider.shutdown,
        queued=_otel_queued(processor),
        dropped=_otel_dropped(processor),
    )


def _otel_queued(processor: Any) -> Callable[[], Optional[int]]:
    """Return the length of a batch processor's queue (opentelemetry-sdk 1.45)."""
    queue = getattr(getattr(processor, "_batch_processor", None), "_queue", None)
    if queue is None:
        return _unknown
    return lambda: len(queue)


def _otel_dropped(processor: Any) -> Callable[[], Optional[int]]:
    """Count the spans a batch processor drops because its queue is full.

    The count hooks into the processor's internal metrics object
    (opentelemetry-sdk 1.45); on other versions the count is unknown.
    """
    metrics = getattr(getattr(processor, "_batch_processor", None), "_metrics", None)
    original = getattr(metrics, "drop_items", None)
    if metrics is None or original is None:
        return _unknown
    count = [0]

    def drop_items(quantity: int, error_type: str = "queue_full") -> None:
        if error_type == "queue_full":
            count[0] += quantity
        original(quantity, error_type)

    metrics.drop_items = drop_items
    return lambda: count[0]


def otel_memory(url: str, queue_size: Optional[int]) -> Recorder:
    try:
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )
    except ImportError as exc:
        raise Skip("opentelemetry-sdk is not installed") from exc
    return _otel_recorder(InMemorySpanExporter(), queue_size, clear=True)


def otel_otlp(url: str, queue_size: Optional[int]) -> Recorder:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )
    except ImportError as exc:
        raise Skip("opentelemetry-exporter-otlp-proto-http is not installed") from exc
    exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces")
    return _otel_recorder(exporter, queue_size, clear=False)


# -- Langfuse ------------------------------------------------------------------


def langfuse_tool(url: str, queue_size: Optional[int]) -> Recorder:
    if queue_size:
        # Langfuse's span processor is OpenTelemetry's batch processor, which
        # takes its queue bound from this variable when it is created.
        os.environ["OTEL_BSP_MAX_QUEUE_SIZE"] = str(queue_size)
    try:
        from langfuse import Langfuse
    except ImportError as exc:
        raise Skip("langfuse is not installed") from exc
    client = Langfuse(public_key="pk-lf-bench", secret_key="sk-lf-bench", host=url)

    def record() -> None:
        client.start_observation(
            name=TOOL, as_type="tool", input=INPUT, output=OUTPUT
        ).end()

    processor = _langfuse_processor(client)
    return Recorder(
        record=record,
        flush=client.flush,
        close=client.shutdown,
        queued=_otel_queued(processor),
        dropped=_otel_dropped(processor),
    )


def _langfuse_processor(client: Any) -> Any:
    """Return Langfuse's span processor, found through its tracer provider.

    The attributes are internal to langfuse 5.2 and opentelemetry-sdk 1.45;
    with other versions this returns None and the counts are unknown.
    """
    from langfuse._client.span_processor import LangfuseSpanProcessor

    provider = getattr(getattr(client, "_resources", None), "tracer_provider", None)
    multi = getattr(provider, "_active_span_processor", None)
    for processor in getattr(multi, "_span_processors", ()):
        if isinstance(processor, LangfuseSpanProcessor):
            return processor
    return None


SPECS: dict[str, Spec] = {
    "rankigi-ledger": Spec(
        "rankigi",
        "rankigi `track_tool_call`, embedded ledger",
        "input, output, hashes; SQLite ledger in a temporary directory",
        rankigi_ledger,
    ),
    "rankigi-http": Spec(
        "rankigi",
        "rankigi `track_tool_call`, HTTP",
        "input, output, hashes; batches of 100 over one kept-alive connection",
        rankigi_http,
    ),
    "v1-http": Spec(
        "v1",
        "rankigi 1.0.0 `track_tool_call`, HTTP",
        "hashes and sizes of input and output; one POST per event, new connection",
        rankigi_v1,
    ),
    "sentry-event": Spec(
        "peers",
        "Sentry `capture_event`",
        "an event with input and output in `extra`; one envelope per event",
        sentry_event,
    ),
    "sentry-span": Spec(
        "peers",
        "Sentry span `gen_ai.execute_tool`",
        "span with tool name, input and output; sent with its transaction",
        sentry_span,
    ),
    "otel-memory": Spec(
        "peers",
        "OpenTelemetry span, in-memory exporter",
        "span with tool name, input and output as JSON attributes; batch processor",
        otel_memory,
    ),
    "otel-otlp": Spec(
        "peers",
        "OpenTelemetry span, OTLP/HTTP",
        "the same span, exported as protobuf over HTTP by the batch processor",
        otel_otlp,
    ),
    "langfuse": Spec(
        "peers",
        "Langfuse `start_observation(as_type='tool')`",
        "observation with input and output; OTLP/HTTP to the Langfuse endpoint",
        langfuse_tool,
    ),
}


class RecorderChild:
    """The child's side of a recorder: ``setup`` and ``close`` requests.

    Other requests go to ``measure(recorder, message)``, which each script
    supplies.
    """

    def __init__(
        self,
        key: str,
        url: str,
        queue_size: Optional[int],
        measure: Callable[[Recorder, dict[str, Any]], dict[str, Any]],
    ) -> None:
        self.spec = SPECS[key]
        self.url = url
        self.queue_size = queue_size
        self.measure = measure
        self.recorder: Optional[Recorder] = None

    def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        operation = message["op"]
        if operation == "setup":
            self.recorder = self.spec.setup(self.url, self.queue_size)
            return {"ready": True}
        if self.recorder is None:
            raise RuntimeError(f"request {operation!r} arrived before setup")
        if operation == "close":
            self.recorder.close()
            return {"closed": True}
        return self.measure(self.recorder, message)


def open_recorder(
    key: str,
    script: Path,
    url: str,
    queue_size: Optional[int],
    pythons: dict[str, str],
) -> Union[Child, str]:
    """Start the child for recorder ``key`` and set it up (the parent's side).

    Returns the child, or the reason the recorder cannot run here.
    """
    spec = SPECS[key]
    python = pythons[spec.group]
    if not Path(python).exists():
        return (
            f"no interpreter at {python}; pass --v1-python or run "
            "benchmarks/run_all.sh, which creates it"
        )
    arguments = [key, "--url", url]
    if queue_size:
        arguments += ["--queue-size", str(queue_size)]
    child = Child(python, script, arguments, spec.group)
    reply = child.request({"op": "setup"})
    if "skipped" in reply:
        child.close()
        return str(reply["skipped"])
    return child
