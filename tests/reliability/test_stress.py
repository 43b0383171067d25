"""Many threads, asyncio tasks and processes tracking at once.

Against the real server: 32 threads on four shared sync clients, 200 tasks
on two async clients, and a child forked while all of them run. Without a
server: several processes appending to one embedded ledger file. Afterwards
every event is stored once and every agent's chain verifies.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

import pytest

from rankigi import AsyncRankigi, Rankigi, RankigiError
from tests.reliability.helpers import (
    API_KEY,
    LedgerFile,
    Server,
    assert_exactly_once,
    clean_environment,
    run_python,
)

THREADS = 32
PER_THREAD = 50
SYNC_AGENTS = 4
TASKS = 200
PER_TASK = 10
ASYNC_AGENTS = 2
CHILD_EVENTS = 50
Ids = dict[str, list[Optional[str]]]


def track_in_threads(
    clients: list[Rankigi], ids: Ids, started: threading.Barrier
) -> list[threading.Thread]:
    lock = threading.Lock()

    def work(number: int) -> None:
        client = clients[number % len(clients)]
        started.wait()
        mine = [
            client.track_tool_call(f"thread-{number}", i, {"i": i})
            for i in range(PER_THREAD)
        ]
        with lock:
            ids[client.agent_id] += mine

    threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    return threads


def track_in_tasks(
    clients: list[AsyncRankigi],
    ids: Ids,
    started: threading.Barrier,
    closed: list[bool],
) -> threading.Thread:
    async def work(number: int) -> None:
        client = clients[number % len(clients)]
        for i in range(PER_TASK):
            event_id = await client.track_custom_event(
                f"task-{number}", payload={"i": i}
            )
            ids[client.agent_id].append(event_id)
            await asyncio.sleep(0)  # let the other tasks interleave

    async def main() -> None:
        await asyncio.gather(*(work(n) for n in range(TASKS)))
        for client in clients:
            closed.append(await client.close(30))

    def run() -> None:
        started.wait()
        asyncio.run(main())

    thread = threading.Thread(target=run)
    thread.start()
    return thread


async def warm_up(client: AsyncRankigi) -> Optional[str]:
    event_id = await client.track_custom_event("warm-up")
    assert await client.flush(10)
    return event_id


def fork_child(server: Server, inherited: Rankigi, agent_id: str) -> tuple[int, int]:
    """Fork a child that tracks through an inherited and a new client."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid != 0:
        os.close(write_end)
        return pid, read_end
    status = 1
    try:
        os.close(read_end)
        own = Rankigi(api_key=API_KEY, agent_id=agent_id, base_url=server.url)
        ids = {
            inherited.agent_id: [
                inherited.track_tool_call("child", i, i) for i in range(CHILD_EVENTS)
            ],
            agent_id: [own.track_tool_call("child", i, i) for i in range(CHILD_EVENTS)],
        }
        closed = inherited.close(30) and own.close(30)
        # The inherited client's counters start from zero in the child: it
        # sent its own events, and none that the parent had queued.
        sent = [inherited.stats()["sent"], own.stats()["sent"]]
        os.write(write_end, json.dumps({"ids": ids, "sent": sent}).encode())
        status = 0 if closed else 2
    finally:
        os._exit(status)


def wait_child(pid: int, read_end: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError(f"the forked child hung for {timeout} s")
        time.sleep(0.05)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    assert os.waitstatus_to_exitcode(status) == 0
    result: dict[str, Any] = json.loads(data)
    return result


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)
def test_threads_tasks_and_fork_deliver_once(server: Server, agent_id: str) -> None:
    errors: list[RankigiError] = []
    sync_clients = [
        Rankigi(
            API_KEY, f"{agent_id}-sync-{k}", base_url=server.url, on_error=errors.append
        )
        for k in range(SYNC_AGENTS)
    ]
    async_clients = [
        AsyncRankigi(
            API_KEY,
            f"{agent_id}-async-{k}",
            base_url=server.url,
            on_error=errors.append,
        )
        for k in range(ASYNC_AGENTS)
    ]
    ids: Ids = {c.agent_id: [] for c in [*sync_clients, *async_clients]}
    # NOTE: every client sends once before the fork. A fork during a worker's
    # first send can deadlock the child on an import lock; that case has its
    # own test, test_fork_during_first_send.
    for client in sync_clients:
        ids[client.agent_id].append(client.track_tool_call("warm-up", 0, 0))
        assert client.flush(10)
    for async_client in async_clients:
        ids[async_client.agent_id].append(asyncio.run(warm_up(async_client)))
    started = threading.Barrier(THREADS + 2)
    async_closed: list[bool] = []

    threads = track_in_threads(sync_clients, ids, started)
    loop_thread = track_in_tasks(async_clients, ids, started, async_closed)
    started.wait()
    # Fork while the threads and tasks are tracking and the workers sending.
    child_agent = f"{agent_id}-child"
    pid, read_end = fork_child(server, sync_clients[0], child_agent)
    for thread in [*threads, loop_thread]:
        thread.join()
    child = wait_child(pid, read_end)
    child_ids: Ids = child["ids"]
    for client in sync_clients:
        assert client.close(30)

    assert async_closed == [True] * ASYNC_AGENTS
    assert errors == []
    assert child["sent"] == [CHILD_EVENTS, CHILD_EVENTS]
    ids[sync_clients[0].agent_id] += child_ids[sync_clients[0].agent_id]
    ids[child_agent] = child_ids[child_agent]
    for agent, expected in ids.items():
        assert_exactly_once(server, agent, expected)
    total = sum(len(expected) for expected in ids.values())
    warm_ups = SYNC_AGENTS + ASYNC_AGENTS
    assert (
        total == THREADS * PER_THREAD + TASKS * PER_TASK + 2 * CHILD_EVENTS + warm_ups
    )


EMBEDDED_SCRIPT = """
import json, sys, threading, time
from rankigi import Rankigi

path, count = sys.argv[1], int(sys.argv[2])
clients = [
    Rankigi(agent_id=agent_id, ledger_path=path, batch_size=10, flush_interval_ms=10)
    for agent_id in sys.argv[3:]
]
ids = {client.agent_id: [] for client in clients}

def work(client, number):
    for i in range(count):
        event_id = client.track_tool_call(f"thread-{number}", i, {"i": i})
        ids[client.agent_id].append(event_id)
        time.sleep(0.003)  # spread the writes over the other processes' lives

threads = [
    threading.Thread(target=work, args=(client, n))
    for client in clients
    for n in range(2)
]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
closed = all(client.close(60) for client in clients)
print(json.dumps({"closed": closed, "ids": ids}))
"""

PROCESSES = 6
EVENTS_PER_THREAD = 100
STAGGER_S = 0.2


def test_processes_share_embedded_ledger(tmp_path: Path, agent_id: str) -> None:
    # Every process writes one shared agent and one of its own, through two
    # clients, so it keeps two connections to the file open. The processes start
    # and stop at different times, so some open the file while others write
    # or close it, and one process closing must not take the others' log.
    path = tmp_path / "shared.db"
    shared = f"{agent_id}-shared"
    processes = []
    for n in range(PROCESSES):
        command = [sys.executable, "-c", EMBEDDED_SCRIPT, str(path)]
        command += [str(EVENTS_PER_THREAD), shared, f"{agent_id}-{n}"]
        processes.append(
            subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=clean_environment(),
            )
        )
        time.sleep(STAGGER_S)
    expected: Ids = {}
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        result = json.loads(out)
        assert result["closed"]
        for agent, agent_ids in result["ids"].items():
            expected.setdefault(agent, []).extend(agent_ids)

    ledger = LedgerFile(path)
    assert len(expected) == PROCESSES + 1
    assert len(expected[shared]) == PROCESSES * 2 * EVENTS_PER_THREAD
    for agent, agent_ids in expected.items():
        assert_exactly_once(ledger, agent, agent_ids)


FORK_DURING_IMPORT = """
import importlib.abc, os, sys, threading, time
from rankigi import Rankigi

class SlowImport(importlib.abc.MetaPathFinder):
    # Holds the import lock of httpcore for a second, as a slow disk would.
    entered = threading.Event()

    def find_spec(self, name, path=None, target=None):
        if name == "httpcore":
            self.entered.set()
            time.sleep(1.0)
        return None

finder = SlowImport()
sys.meta_path.insert(0, finder)
url, key = sys.argv[1:3]
client = Rankigi(api_key=key, agent_id=sys.argv[3], base_url=url)
client.track_tool_call("parent", 0, 0)
client.flush(0.01)  # wakes the worker, whose first send imports httpcore
assert SlowImport.entered.wait(10)
pid = os.fork()
if pid == 0:
    # Started first, this thread gets the dead worker's thread id, because
    # glibc reuses its stack. The child's worker then gets a new id and
    # waits for the lock, instead of passing as the lock's recorded owner.
    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
    client.track_tool_call("child", 1, 1)
    os._exit(0 if client.close(3) else 3)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status), client.close(5))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_during_first_send(server: Server, agent_id: str) -> None:
    result = run_python(FORK_DURING_IMPORT, server.url, API_KEY, agent_id, timeout=60)
    assert result.returncode == 0, result.stderr

    child_status, parent_closed = result.stdout.split()
    assert child_status == "0", "the child's close() timed out"
    assert parent_closed == "True"
    stored = [record["tool_invoked"] for record in server.records(agent_id)]
    assert sorted(stored) == ["child", "parent"]
