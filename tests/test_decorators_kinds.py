"""The same behaviour on every kind of callable, and how generators end."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncIterator, Iterator
from typing import Any, Callable

import pytest

import rankigi
from rankigi.testing import Capture, capture

# Each kind of function computes from (x, y=1): plain and async functions
# return x + y, generators yield x then y.


def plain_body(x: int, y: int = 1) -> int:
    return x + y


async def async_body(x: int, y: int = 1) -> int:
    await asyncio.sleep(0)
    return x + y


def generator_body(x: int, y: int = 1) -> Iterator[int]:
    yield x
    yield y


async def async_generator_body(x: int, y: int = 1) -> AsyncIterator[int]:
    await asyncio.sleep(0)
    yield x
    yield y


class PlainService:
    @rankigi.tool("method")
    def method(self, x: int, y: int = 1) -> int:
        return plain_body(x, y)

    @rankigi.tool("class_outer")
    @classmethod
    def class_outer(cls, x: int, y: int = 1) -> int:
        return plain_body(x, y)

    @classmethod
    @rankigi.tool("class_inner")
    def class_inner(cls, x: int, y: int = 1) -> int:
        return plain_body(x, y)

    @rankigi.tool("static_outer")
    @staticmethod
    def static_outer(x: int, y: int = 1) -> int:
        return plain_body(x, y)

    @staticmethod
    @rankigi.tool("static_inner")
    def static_inner(x: int, y: int = 1) -> int:
        return plain_body(x, y)

    def __call__(self, x: int, y: int = 1) -> int:
        return plain_body(x, y)


class AsyncService:
    @rankigi.tool("method")
    async def method(self, x: int, y: int = 1) -> int:
        return await async_body(x, y)

    @rankigi.tool("class_outer")
    @classmethod
    async def class_outer(cls, x: int, y: int = 1) -> int:
        return await async_body(x, y)

    @classmethod
    @rankigi.tool("class_inner")
    async def class_inner(cls, x: int, y: int = 1) -> int:
        return await async_body(x, y)

    @rankigi.tool("static_outer")
    @staticmethod
    async def static_outer(x: int, y: int = 1) -> int:
        return await async_body(x, y)

    @staticmethod
    @rankigi.tool("static_inner")
    async def static_inner(x: int, y: int = 1) -> int:
        return await async_body(x, y)

    async def __call__(self, x: int, y: int = 1) -> int:
        return await async_body(x, y)


class GeneratorService:
    @rankigi.tool("method")
    def method(self, x: int, y: int = 1) -> Iterator[int]:
        yield from generator_body(x, y)

    @rankigi.tool("class_outer")
    @classmethod
    def class_outer(cls, x: int, y: int = 1) -> Iterator[int]:
        yield from generator_body(x, y)

    @classmethod
    @rankigi.tool("class_inner")
    def class_inner(cls, x: int, y: int = 1) -> Iterator[int]:
        yield from generator_body(x, y)

    @rankigi.tool("static_outer")
    @staticmethod
    def static_outer(x: int, y: int = 1) -> Iterator[int]:
        yield from generator_body(x, y)

    @staticmethod
    @rankigi.tool("static_inner")
    def static_inner(x: int, y: int = 1) -> Iterator[int]:
        yield from generator_body(x, y)

    def __call__(self, x: int, y: int = 1) -> Iterator[int]:
        yield from generator_body(x, y)


class AsyncGeneratorService:
    @rankigi.tool("method")
    async def method(self, x: int, y: int = 1) -> AsyncIterator[int]:
        async for item in async_generator_body(x, y):
            yield item

    @rankigi.tool("class_outer")
    @classmethod
    async def class_outer(cls, x: int, y: int = 1) -> AsyncIterator[int]:
        async for item in async_generator_body(x, y):
            yield item

    @classmethod
    @rankigi.tool("class_inner")
    async def class_inner(cls, x: int, y: int = 1) -> AsyncIterator[int]:
        async for item in async_generator_body(x, y):
            yield item

    @rankigi.tool("static_outer")
    @staticmethod
    async def static_outer(x: int, y: int = 1) -> AsyncIterator[int]:
        async for item in async_generator_body(x, y):
            yield item

    @staticmethod
    @rankigi.tool("static_inner")
    async def static_inner(x: int, y: int = 1) -> AsyncIterator[int]:
        async for item in async_generator_body(x, y):
            yield item

    async def __call__(self, x: int, y: int = 1) -> AsyncIterator[int]:
        async for item in async_generator_body(x, y):
            yield item


KINDS = {
    "plain": (plain_body, PlainService),
    "async": (async_body, AsyncService),
    "generator": (generator_body, GeneratorService),
    "async_generator": (async_generator_body, AsyncGeneratorService),
}


def shapes(kind: str) -> dict[str, Callable[[], Any]]:
    """Return, per shape, a function that gives the decorated callable."""
    body, service = KINDS[kind]
    function = rankigi.tool("function")(body)
    instance = rankigi.tool("callable_instance")(service())
    partial = rankigi.tool("partial")(functools.partial(body, y=1))
    return {
        "function": lambda: function,
        "method": lambda: service().method,
        "method_via_class": lambda: functools.partial(service.method, service()),
        "class_outer": lambda: service.class_outer,
        "class_outer_via_instance": lambda: service().class_outer,
        "class_inner": lambda: service.class_inner,
        "class_inner_via_instance": lambda: service().class_inner,
        "static_outer": lambda: service.static_outer,
        "static_outer_via_instance": lambda: service().static_outer,
        "static_inner": lambda: service.static_inner,
        "static_inner_via_instance": lambda: service().static_inner,
        "callable_instance": lambda: instance,
        "partial": lambda: partial,
    }


CASES = [(kind, shape) for kind in KINDS for shape in shapes(kind)]


def expected_name(shape: str) -> str:
    return shape.replace("_via_instance", "").replace("_via_class", "")


def call_and_finish(
    kind: str, target: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    """Call ``target`` and drive what it returns to the end."""
    result = target(*args, **kwargs)
    if kind == "async":
        assert inspect.iscoroutine(result)
        return asyncio.run(result)
    if kind == "generator":
        assert inspect.isgenerator(result)
        return list(result)
    if kind == "async_generator":
        assert inspect.isasyncgen(result)

        async def collect() -> list[Any]:
            return [item async for item in result]

        return asyncio.run(collect())
    return result


@pytest.mark.parametrize(("kind", "shape"), CASES)
def test_every_shape_records(kind: str, shape: str) -> None:
    target = shapes(kind)[shape]()
    expected = [2, 5] if "generator" in kind else 7

    with capture() as recorded:
        assert call_and_finish(kind, target, 2, y=5) == expected

    (event,) = recorded.events
    assert event["action"] == "tool_call"
    assert event["tool"] == expected_name(shape)
    payload = event["payload"]
    assert payload["input"] == {"x": 2, "y": 5}
    assert payload["output"] == expected
    assert payload["status"] == "ok"
    assert payload["duration_ms"] >= 0
    if "generator" in kind:
        assert payload["item_count"] == 2
        assert payload["closed_early"] is False


@pytest.mark.parametrize(("kind", "shape"), CASES)
def test_every_shape_applies_defaults(kind: str, shape: str) -> None:
    target = shapes(kind)[shape]()

    with capture() as recorded:
        call_and_finish(kind, target, 2)

    (event,) = recorded.events
    assert event["payload"]["input"] == {"x": 2, "y": 1}


@pytest.mark.parametrize("kind", list(KINDS))
def test_inspect_predicates_kept(kind: str) -> None:
    body, service = KINDS[kind]
    decorated = [
        rankigi.tool(body),
        service().method,
        service.class_outer,
        service.class_inner,
        service.static_outer,
        service.static_inner,
    ]
    for target in decorated:
        assert inspect.iscoroutinefunction(target) is (kind == "async")
        assert inspect.isgeneratorfunction(target) is (kind == "generator")
        assert inspect.isasyncgenfunction(target) is (kind == "async_generator")


@pytest.mark.parametrize("kind", list(KINDS))
def test_signatures_kept(kind: str) -> None:
    body, service = KINDS[kind]
    expected = inspect.signature(body)

    assert inspect.signature(rankigi.tool(body)) == expected
    for bound in (
        service().method,
        service.class_outer,
        service.class_inner,
        service.static_outer,
        service.static_inner,
    ):
        assert inspect.signature(bound).parameters == expected.parameters
    assert list(inspect.signature(service.method).parameters) == ["self", "x", "y"]


@pytest.mark.parametrize("kind", list(KINDS))
def test_exception_same_object_every_kind(kind: str) -> None:
    error = LookupError("missing")

    def plain() -> None:
        raise error

    async def coroutine() -> None:
        await asyncio.sleep(0)
        raise error

    def generator() -> Iterator[int]:
        yield 1
        raise error

    async def async_generator() -> AsyncIterator[int]:
        yield 1
        raise error

    bodies: dict[str, Callable[[], Any]] = {
        "plain": plain,
        "async": coroutine,
        "generator": generator,
        "async_generator": async_generator,
    }
    target = rankigi.tool("failing")(bodies[kind])

    with capture() as recorded, pytest.raises(LookupError) as info:
        call_and_finish(kind, target)

    assert info.value is error
    (event,) = recorded.events
    payload = event["payload"]
    assert payload["status"] == "error"
    assert payload["error_type"] == "LookupError"
    assert payload["error_message"] == "missing"
    assert "raise error" in payload["traceback"]
    if "generator" in kind:
        assert payload["item_count"] == 1


# -- generators: how iteration ends -----------------------------------------


@rankigi.tool("count")
def count(limit: int) -> Iterator[int]:
    yield from range(limit)


@rankigi.tool("acount")
async def acount(limit: int) -> AsyncIterator[int]:
    for number in range(limit):
        await asyncio.sleep(0)
        yield number


@pytest.fixture
def recorded() -> Iterator[Capture]:
    with capture() as events:
        yield events


def test_generator_left_by_break(recorded: Capture) -> None:
    for number in count(10):
        if number == 2:
            break

    (event,) = recorded.tool_calls("count")
    payload = event["payload"]
    assert payload["status"] == "ok"
    assert payload["closed_early"] is True
    assert payload["item_count"] == 3
    assert payload["output"] == [0, 1, 2]


def test_generator_closed(recorded: Capture) -> None:
    numbers = count(10)
    assert next(numbers) == 0

    numbers.close()

    (event,) = recorded.tool_calls("count")
    assert event["payload"]["closed_early"] is True
    assert event["payload"]["item_count"] == 1


def test_generator_closed_before_start_records_nothing(recorded: Capture) -> None:
    numbers = count(10)
    numbers.close()

    assert recorded.events == []


def test_generator_closes_inner_generator(recorded: Capture) -> None:
    closed = []

    @rankigi.tool("cleanup")
    def cleanup() -> Iterator[int]:
        try:
            yield 1
            yield 2
        finally:
            closed.append(True)

    items = cleanup()
    next(items)
    items.close()

    assert closed == [True]


def test_generator_send_forwarded(recorded: Capture) -> None:
    @rankigi.tool("echo")
    def echo() -> Iterator[Any]:
        received = yield "ready"
        while received is not None:
            received = yield f"got {received}"
        return "done"

    chat = echo()
    assert next(chat) == "ready"
    assert chat.send("a") == "got a"
    assert chat.send("b") == "got b"
    with pytest.raises(StopIteration) as stop:
        chat.send(None)

    assert stop.value.value == "done"
    (event,) = recorded.tool_calls("echo")
    assert event["payload"]["output"] == ["ready", "got a", "got b"]
    assert event["payload"]["closed_early"] is False


def test_generator_throw_handled_inside(recorded: Capture) -> None:
    @rankigi.tool("resilient")
    def resilient() -> Iterator[str]:
        while True:
            try:
                yield "item"
            except ValueError as exc:
                yield f"recovered from {exc}"
                return

    items = resilient()
    next(items)

    assert items.throw(ValueError("bad")) == "recovered from bad"
    with pytest.raises(StopIteration):
        next(items)
    (event,) = recorded.tool_calls("resilient")
    assert event["payload"]["status"] == "ok"
    assert event["payload"]["output"] == ["item", "recovered from bad"]


def test_generator_throw_unhandled(recorded: Capture) -> None:
    error = ValueError("stop now")
    items = count(5)
    next(items)

    with pytest.raises(ValueError) as info:
        items.throw(error)

    assert info.value is error
    (event,) = recorded.tool_calls("count")
    assert event["payload"]["status"] == "error"
    assert event["payload"]["error_message"] == "stop now"


def test_generator_return_value_kept(recorded: Capture) -> None:
    @rankigi.tool("returns")
    def returns() -> Iterator[int]:
        yield 1
        return 42

    def consumer() -> Iterator[int]:
        result = yield from returns()
        yield result

    assert list(consumer()) == [1, 42]


def test_generator_items_pass_unchanged(recorded: Capture) -> None:
    items = [{"a": [1]}, object()]

    @rankigi.tool("objects")
    def objects() -> Iterator[Any]:
        yield from items

    produced = list(objects())

    assert produced[0] is items[0]
    assert produced[1] is items[1]
    (event,) = recorded.tool_calls("objects")
    assert event["payload"]["output"][0] == {"a": [1]}
    assert event["payload"]["output"][1] == {"$type": "object"}


def test_generator_items_snapshot_when_yielded(recorded: Capture) -> None:
    @rankigi.tool("shared")
    def shared() -> Iterator[list[int]]:
        buffer = [1]
        yield buffer
        buffer.append(2)
        yield buffer

    for item in shared():
        item.append(0)

    (event,) = recorded.tool_calls("shared")
    assert event["payload"]["output"] == [[1], [1, 0, 2]]


def test_generator_output_bounded() -> None:
    with capture(max_items=3) as recorded:
        assert sum(count(10)) == 45

    (event,) = recorded.tool_calls("count")
    assert event["payload"]["output"] == [0, 1, 2, "…[7 more items]"]
    assert event["payload"]["item_count"] == 10


def test_generator_output_off_counts_items(recorded: Capture) -> None:
    @rankigi.tool("stream", capture_output=False)
    def stream() -> Iterator[int]:
        yield from range(4)

    assert list(stream()) == [0, 1, 2, 3]

    (event,) = recorded.tool_calls("stream")
    assert "output" not in event["payload"]
    assert event["payload"]["item_count"] == 4


def test_async_generator_asend_athrow(recorded: Capture) -> None:
    @rankigi.tool("achat")
    async def achat() -> AsyncIterator[str]:
        received = yield "ready"
        try:
            yield f"got {received}"
        except KeyError:
            yield "recovered"

    async def main() -> list[str]:
        chat = achat()
        first = await chat.asend(None)
        second = await chat.asend("a")
        third = await chat.athrow(KeyError("k"))
        await chat.aclose()
        return [first, second, third]

    assert asyncio.run(main()) == ["ready", "got a", "recovered"]

    (event,) = recorded.tool_calls("achat")
    assert event["payload"]["output"] == ["ready", "got a", "recovered"]
    assert event["payload"]["closed_early"] is True


def test_async_generator_left_by_break(recorded: Capture) -> None:
    async def main() -> None:
        numbers = acount(10)
        async for number in numbers:
            if number == 1:
                break
        await numbers.aclose()

    asyncio.run(main())

    (event,) = recorded.tool_calls("acount")
    assert event["payload"]["closed_early"] is True
    assert event["payload"]["output"] == [0, 1]


def test_async_generator_athrow_unhandled(recorded: Capture) -> None:
    error = ValueError("abort")

    async def main() -> None:
        numbers = acount(3)
        await numbers.__anext__()
        await numbers.athrow(error)

    with pytest.raises(ValueError) as info:
        asyncio.run(main())

    assert info.value is error
    (event,) = recorded.tool_calls("acount")
    assert event["payload"]["status"] == "error"
    assert event["payload"]["item_count"] == 1


def test_async_generator_cancelled(recorded: Capture) -> None:
    started = asyncio.Event

    @rankigi.tool("slow_stream")
    async def slow_stream() -> AsyncIterator[int]:
        yield 1
        await asyncio.sleep(60)
        yield 2

    async def main() -> None:
        ready = started()

        async def consume() -> None:
            async for _ in slow_stream():
                ready.set()

        task = asyncio.create_task(consume())
        await ready.wait()
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())

    (event,) = recorded.tool_calls("slow_stream")
    payload = event["payload"]
    assert payload["status"] == "error"
    assert payload["error_type"] == "asyncio.exceptions.CancelledError"
    assert payload["item_count"] == 1


def test_coroutine_cancelled(recorded: Capture) -> None:
    @rankigi.tool("sleeper")
    async def sleeper() -> None:
        await asyncio.sleep(60)

    async def main() -> None:
        task = asyncio.create_task(sleeper())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())

    (event,) = recorded.tool_calls("sleeper")
    assert event["payload"]["status"] == "error"
    assert event["payload"]["error_type"] == "asyncio.exceptions.CancelledError"


def test_coroutine_bad_arguments_raise_at_call(recorded: Capture) -> None:
    @rankigi.tool("needs_one")
    async def needs_one(x: int) -> int:
        return x

    with pytest.raises(TypeError):
        needs_one()  # type: ignore[call-arg]

    (event,) = recorded.tool_calls("needs_one")
    assert event["payload"]["status"] == "error"
    assert event["payload"]["error_type"] == "TypeError"


def test_coroutine_and_generator_keep_names(recorded: Capture) -> None:
    coroutine = AsyncService.static_inner(1)
    generator = count(1)

    assert coroutine.__qualname__ == "AsyncService.static_inner"
    assert generator.__name__ == "count"
    asyncio.run(coroutine)
    list(generator)


def test_action_on_async_generator(recorded: Capture) -> None:
    @rankigi.action("draft")
    async def draft() -> AsyncIterator[str]:
        yield "Dear"
        yield "customer"

    async def main() -> list[str]:
        return [word async for word in draft()]

    assert asyncio.run(main()) == ["Dear", "customer"]

    (event,) = recorded.outputs("draft")
    assert event["payload"]["output"] == ["Dear", "customer"]
    assert event["payload"]["item_count"] == 2
    assert recorded.tool_calls() == []


def test_action_generator_failure(recorded: Capture) -> None:
    @rankigi.action("draft")
    def draft() -> Iterator[str]:
        yield "Dear"
        raise RuntimeError("model stopped")

    with pytest.raises(RuntimeError):
        list(draft())

    assert recorded.outputs() == []
    (event,) = recorded.errors("draft")
    assert event["payload"]["item_count"] == 1
    assert event["payload"]["error_message"] == "model stopped"
