"""Parent event ids and run ids across calls, awaits, tasks and threads."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import rankigi
from rankigi._context import current_event_id, current_run, set_default_client
from rankigi.testing import Capture, capture


@pytest.fixture
def recorded() -> Iterator[Capture]:
    with capture() as events:
        yield events


@pytest.fixture(autouse=True)
def _no_default_client() -> Iterator[None]:
    previous = set_default_client(None)
    yield
    set_default_client(previous)


@rankigi.tool("leaf")
def leaf(label: str) -> str:
    return label


@rankigi.tool("aleaf")
async def aleaf(label: str) -> str:
    await asyncio.sleep(0)
    return label


def by_tool(recorded: Capture, name: str) -> list[dict[str, Any]]:
    return recorded.tool_calls(name)


def parent_of(event: dict[str, Any]) -> Any:
    return event["payload"].get("parent_event_id")


def test_nested_calls_link_parent(recorded: Capture) -> None:
    @rankigi.tool("middle")
    def middle() -> str:
        return leaf("a") + leaf("b")

    @rankigi.tool("top")
    def top() -> str:
        return middle()

    assert top() == "ab"

    (top_event,) = by_tool(recorded, "top")
    (middle_event,) = by_tool(recorded, "middle")
    leaves = by_tool(recorded, "leaf")
    assert parent_of(top_event) is None
    assert parent_of(middle_event) == top_event["event_id"]
    assert [parent_of(e) for e in leaves] == [middle_event["event_id"]] * 2
    assert [e["tool"] for e in recorded.events] == ["leaf", "leaf", "middle", "top"]


def test_event_id_known_during_call(recorded: Capture) -> None:
    seen = []

    @rankigi.tool("knows_itself")
    def knows_itself() -> None:
        seen.append(current_event_id.get())

    knows_itself()

    (event,) = recorded.events
    assert seen == [event["event_id"]]
    assert current_event_id.get() is None


def test_parent_restored_after_error(recorded: Capture) -> None:
    @rankigi.tool("fails")
    def fails() -> None:
        raise ValueError("x")

    @rankigi.tool("outer")
    def outer() -> str:
        with pytest.raises(ValueError):
            fails()
        return leaf("after")

    outer()

    (outer_event,) = by_tool(recorded, "outer")
    (failed,) = by_tool(recorded, "fails")
    (after,) = by_tool(recorded, "leaf")
    assert parent_of(failed) == outer_event["event_id"]
    assert parent_of(after) == outer_event["event_id"]


def test_parent_across_await(recorded: Capture) -> None:
    @rankigi.tool("aouter")
    async def aouter() -> str:
        first = await aleaf("a")
        await asyncio.sleep(0)
        return first + leaf("b")

    assert asyncio.run(aouter()) == "ab"

    (outer_event,) = by_tool(recorded, "aouter")
    children = recorded.children(outer_event)
    assert sorted(e["tool"] for e in children) == ["aleaf", "leaf"]


def test_parent_across_tasks(recorded: Capture) -> None:
    @rankigi.tool("fan_out")
    async def fan_out() -> list[str]:
        tasks = [asyncio.create_task(aleaf(str(n))) for n in range(3)]
        gathered = await asyncio.gather(aleaf("g1"), aleaf("g2"))
        return [*await asyncio.gather(*tasks), *gathered]

    assert asyncio.run(fan_out()) == ["0", "1", "2", "g1", "g2"]

    (outer_event,) = by_tool(recorded, "fan_out")
    leaves = by_tool(recorded, "aleaf")
    assert len(leaves) == 5
    assert {parent_of(e) for e in leaves} == {outer_event["event_id"]}


def test_concurrent_tasks_keep_own_parents(recorded: Capture) -> None:
    @rankigi.tool("worker")
    async def worker(label: str) -> None:
        for _ in range(3):
            await aleaf(label)
            await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(worker("a"), worker("b"))

    asyncio.run(main())

    workers = {e["payload"]["input"]["label"]: e for e in by_tool(recorded, "worker")}
    for event in by_tool(recorded, "aleaf"):
        label = event["payload"]["output"]
        assert parent_of(event) == workers[label]["event_id"]


def test_parent_across_thread_with_copied_context(recorded: Capture) -> None:
    @rankigi.tool("spawns")
    def spawns() -> str:
        context = contextvars.copy_context()
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(context.run, leaf, "threaded").result()

    assert spawns() == "threaded"

    (outer_event,) = by_tool(recorded, "spawns")
    (child,) = by_tool(recorded, "leaf")
    assert parent_of(child) == outer_event["event_id"]


def test_thread_without_context_uses_default() -> None:
    with capture(as_default=True) as recorded:

        @rankigi.tool("spawns")
        def spawns() -> None:
            thread = threading.Thread(target=leaf, args=("plain thread",))
            thread.start()
            thread.join()

        spawns()

    (child,) = by_tool(recorded, "leaf")
    assert parent_of(child) is None


def test_alternating_generators_never_cross_link(recorded: Capture) -> None:
    @rankigi.tool("stream")
    def stream(label: str) -> Iterator[str]:
        for n in range(3):
            yield leaf(f"{label}{n}")

    pairs = list(zip(stream("a"), stream("b")))

    assert pairs == [("a0", "b0"), ("a1", "b1"), ("a2", "b2")]
    streams = {e["payload"]["input"]["label"]: e for e in by_tool(recorded, "stream")}
    for event in by_tool(recorded, "leaf"):
        label = event["payload"]["output"][0]
        assert parent_of(event) == streams[label]["event_id"]


def test_consumer_code_not_child_of_generator(recorded: Capture) -> None:
    @rankigi.tool("producer")
    def producer() -> Iterator[int]:
        yield 1
        yield 2

    @rankigi.tool("consumer")
    def consumer() -> None:
        for item in producer():
            leaf(str(item))

    consumer()

    (consumer_event,) = by_tool(recorded, "consumer")
    (producer_event,) = by_tool(recorded, "producer")
    assert parent_of(producer_event) == consumer_event["event_id"]
    for event in by_tool(recorded, "leaf"):
        assert parent_of(event) == consumer_event["event_id"]


def test_alternating_async_generators(recorded: Capture) -> None:
    @rankigi.tool("astream")
    async def astream(label: str) -> AsyncIterator[str]:
        for n in range(2):
            yield await aleaf(f"{label}{n}")

    async def main() -> list[tuple[str, str]]:
        first, second = astream("a"), astream("b")
        pairs = []
        for _ in range(2):
            pairs.append((await first.__anext__(), await second.__anext__()))
        await first.aclose()
        await second.aclose()
        return pairs

    assert asyncio.run(main()) == [("a0", "b0"), ("a1", "b1")]

    streams = {e["payload"]["input"]["label"]: e for e in by_tool(recorded, "astream")}
    for event in by_tool(recorded, "aleaf"):
        label = event["payload"]["output"][0]
        assert parent_of(event) == streams[label]["event_id"]


# -- runs --------------------------------------------------------------------


def test_run_groups_events(recorded: Capture) -> None:
    @rankigi.tool("step")
    def step(n: int) -> int:
        return leaf(str(n)) and n

    with rankigi.run("refund_flow") as run:
        step(1)
        step(2)
        recorded.client.track_agent_output("summary", "done")
    step(3)

    inside = recorded.in_run(run.run_id)
    assert len(inside) == 5
    assert {e["payload"]["run_name"] for e in inside} == {"refund_flow"}
    (outside,) = [e for e in by_tool(recorded, "step") if "run_id" not in e["payload"]]
    assert outside["payload"]["input"] == {"n": 3}
    assert current_run.get() is None


def test_run_ids_differ_per_entry(recorded: Capture) -> None:
    scope = rankigi.run("flow")

    with scope as first:
        leaf("a")
    with scope as second:
        leaf("b")

    assert first.run_id != second.run_id
    assert len(recorded.in_run(first.run_id)) == 1
    assert len(recorded.in_run(second.run_id)) == 1


def test_run_fixed_id(recorded: Capture) -> None:
    with rankigi.run("flow", run_id="job-42") as run:
        leaf("a")

    assert run.run_id == "job-42"
    (event,) = recorded.events
    assert event["payload"]["run_id"] == "job-42"


def test_nested_run_restores_outer(recorded: Capture) -> None:
    with rankigi.run("outer") as outer:
        with rankigi.run("inner") as inner:
            leaf("in")
        leaf("out")

    first, second = recorded.events
    assert first["payload"]["run_id"] == inner.run_id
    assert second["payload"]["run_id"] == outer.run_id


def test_run_as_decorator_new_id_per_call(recorded: Capture) -> None:
    @rankigi.run("job")
    def job(label: str) -> str:
        return leaf(label)

    job("a")
    job("b")

    first, second = recorded.events
    assert first["payload"]["run_name"] == "job"
    assert first["payload"]["run_id"] != second["payload"]["run_id"]


def test_run_decorator_on_async_and_generators(recorded: Capture) -> None:
    @rankigi.run("async_job")
    async def async_job() -> str:
        await asyncio.sleep(0)
        return await aleaf("a")

    @rankigi.run("gen_job")
    def gen_job() -> Iterator[str]:
        yield leaf("g1")
        yield leaf("g2")

    asyncio.run(async_job())
    items = []
    for item in gen_job():
        items.append(item)
        leaf("consumer")  # runs between steps, outside the run

    assert items == ["g1", "g2"]
    events = recorded.events
    names = [(e["payload"].get("run_name"), e["payload"]["output"]) for e in events]
    assert names == [
        ("async_job", "a"),
        ("gen_job", "g1"),
        (None, "consumer"),
        ("gen_job", "g2"),
        (None, "consumer"),
    ]
    first_gen, second_gen = (
        e for e in events if e["payload"].get("run_name") == "gen_job"
    )
    assert first_gen["payload"]["run_id"] == second_gen["payload"]["run_id"]


def test_run_id_from_testing_ids() -> None:
    with capture(ids=iter(["run-1", "evt-1"])) as recorded, rankigi.run("flow") as run:
        leaf("a")

    assert run.run_id == "run-1"
    (event,) = recorded.events
    assert event["event_id"] == "evt-1"
    assert event["payload"]["run_id"] == "run-1"


@pytest.mark.parametrize(
    ("name", "run_id", "message"),
    [
        ("", None, r"run name '' is invalid"),
        (3, None, r"run name 3 is invalid"),
        ("flow", "", r"run_id='' is invalid"),
    ],
)
def test_run_invalid_arguments(name: Any, run_id: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rankigi.run(name, run_id=run_id)
