"""Resident memory while the server is down stays within the queue's bound.

Each run is a fresh interpreter (memory_script.py), so its resident set size
(VmRSS) contains nothing of the test process. A calibration run fills a queue
of known size to measure the memory of one queued event; the main run then
tracks 1,000,000 events against a server that never responds, and its growth
must stay within ``max_queue_size`` times that per-event figure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.fault_proxy import FaultProxy
from tests.reliability.helpers import API_KEY, clean_environment

SCRIPT = Path(__file__).with_name("memory_script.py")
EVENTS = 1_000_000
MAX_QUEUE = 10_000
CALIBRATION_EVENTS = 20_000
# Room above max_queue_size x bytes per event for allocator slack and the
# batch in flight; an unbounded queue would need about 100 times the bound.
SLACK = 1.5

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="reads VmRSS from /proc"
)


@pytest.fixture
def hung_server() -> Iterator[FaultProxy]:
    """A loopback server that accepts every request and never responds."""
    # Nothing listens on port 1 of the loopback; the proxy never forwards.
    proxy = FaultProxy("http://127.0.0.1:1").start()
    proxy.set_mode("hang")
    yield proxy
    proxy.stop()


def measure(url: str, events: int, max_queue: int) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), url, API_KEY, str(events), str(max_queue)],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_environment(),
    )
    assert result.returncode == 0, result.stderr
    figures: dict[str, Any] = json.loads(result.stdout)
    return figures


def test_memory_bounded_by_queue_while_server_down(hung_server: FaultProxy) -> None:
    calibration = measure(hung_server.url, CALIBRATION_EVENTS, CALIBRATION_EVENTS)
    assert calibration["queued"] == CALIBRATION_EVENTS
    per_event = (calibration["peak"] - calibration["before"]) / CALIBRATION_EVENTS

    run = measure(hung_server.url, EVENTS, MAX_QUEUE)
    growth = run["peak"] - run["before"]
    bound = SLACK * MAX_QUEUE * per_event
    print(
        f"\nmemory: {per_event:.0f} bytes per queued event; "
        f"{EVENTS:,} events with max_queue_size={MAX_QUEUE:,}: "
        f"RSS before {run['before'] / 2**20:.1f} MiB, "
        f"peak {run['peak'] / 2**20:.1f} MiB (+{growth / 2**20:.1f} MiB, "
        f"bound {bound / 2**20:.1f} MiB), after close {run['after'] / 2**20:.1f} "
        f"MiB; tracking took {run['track_ms']} ms"
    )

    # The worker keeps the warm-up event in its hung request, so the queue
    # keeps exactly max_queue_size events and drops the rest.
    assert run["queued"] == MAX_QUEUE
    assert run["buffer_full"] == EVENTS - MAX_QUEUE
    assert growth <= bound
    assert run["after"] <= run["peak"]
