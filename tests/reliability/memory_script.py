"""Track events while the server hangs and print resident memory as JSON.

Run by test_memory.py in a fresh interpreter, so that the figures are this
process's alone: ``python memory_script.py URL API_KEY EVENTS MAX_QUEUE``.
The server at URL must accept connections and never respond, so the worker
stays inside its first request and every later event waits in the queue
or is dropped as ``BUFFER_FULL``.
"""

from __future__ import annotations

import gc
import json
import sys
import time

from rankigi import Rankigi

SAMPLE_EVERY = 10_000  # events between two reads of the resident size


def resident_bytes() -> int:
    """Return this process's resident set size (VmRSS, Linux only)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no VmRSS line")


def main(url: str, api_key: str, events: int, max_queue: int) -> dict[str, int]:
    client = Rankigi(
        api_key=api_key,
        agent_id="memory",
        base_url=url,
        max_queue_size=max_queue,
        batch_size=100,
        request_timeout_ms=600_000,
        # The hung worker outlives close(); exit waits this long for it.
        shutdown_timeout_ms=200,
    )

    # The first event starts the worker, which then hangs in the capability
    # probe. So every import and thread exists before the baseline is read.
    client.track_tool_call("warm-up", 0, 0)
    client.flush(0.5)
    gc.collect()
    before = peak = resident_bytes()

    started = time.monotonic()
    for i in range(events):
        client.track_tool_call("search", {"query": "q", "page": i}, {"hits": i})
        if i % SAMPLE_EVERY == 0:
            peak = max(peak, resident_bytes())
    seconds = time.monotonic() - started
    peak = max(peak, resident_bytes())

    stats = client.stats()
    client.close(timeout=0.5)
    gc.collect()

    return {
        "before": before,
        "peak": peak,
        "after": resident_bytes(),
        "queued": stats["queued"],
        "enqueued": stats["enqueued"],
        "buffer_full": stats["dropped_by_reason"].get("BUFFER_FULL", 0),
        "track_ms": round(seconds * 1000),
    }


if __name__ == "__main__":
    url, api_key, events, max_queue = sys.argv[1:5]
    print(json.dumps(main(url, api_key, int(events), int(max_queue))))
