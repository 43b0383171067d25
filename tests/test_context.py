"""Client lookup: use(), with client:, init(), get_client() and reset_var()."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterator
from typing import Any, Optional

import pytest

import rankigi
from rankigi import Rankigi, RankigiError
from rankigi._context import (
    active_client,
    default_client,
    reset_var,
    set_default_client,
)
from rankigi._exporters import MemoryExporter


@pytest.fixture(autouse=True)
def _no_default_client() -> Iterator[None]:
    previous = set_default_client(None)
    yield
    leftover = set_default_client(previous)
    if leftover is not None:
        leftover.close()


def memory_client(name: str = "agent-1") -> Rankigi:
    return Rankigi(agent_id=name, _exporter=MemoryExporter())


@pytest.fixture
def clients() -> Iterator[tuple[Rankigi, Rankigi]]:
    first, second = memory_client("first"), memory_client("second")
    yield first, second
    first.close()
    second.close()


def test_get_client_order(clients: tuple[Rankigi, Rankigi]) -> None:
    first, second = clients
    explicit = memory_client("explicit")

    assert rankigi.get_client() is None
    set_default_client(first)
    assert rankigi.get_client() is first
    with rankigi.use(second):
        assert rankigi.get_client() is second
        assert rankigi.get_client(explicit) is explicit
    assert rankigi.get_client() is first
    explicit.close()


def test_use_restores_previous_exactly(clients: tuple[Rankigi, Rankigi]) -> None:
    first, second = clients

    with rankigi.use(first) as active:
        assert active is first
        with rankigi.use(second):
            assert active_client.get() is second
            with rankigi.use(None):
                assert active_client.get() is None
            assert active_client.get() is second
        assert active_client.get() is first
    assert active_client.get() is None


def test_use_restores_after_exception(clients: tuple[Rankigi, Rankigi]) -> None:
    first, _ = clients

    with pytest.raises(KeyError), rankigi.use(first):
        raise KeyError("x")

    assert active_client.get() is None


def test_use_object_reentered(clients: tuple[Rankigi, Rankigi]) -> None:
    first, second = clients
    scope = rankigi.use(first)

    with scope, rankigi.use(second), scope:
        assert active_client.get() is first
    assert active_client.get() is None


def test_use_as_decorator(clients: tuple[Rankigi, Rankigi]) -> None:
    first, second = clients

    @rankigi.use(second)
    def inside() -> Optional[Rankigi]:
        return active_client.get()

    with rankigi.use(first):
        assert inside() is second
        assert active_client.get() is first


def test_use_decorator_restores_after_error(clients: tuple[Rankigi, Rankigi]) -> None:
    first, _ = clients

    @rankigi.use(first)
    def fails() -> None:
        raise ValueError("x")

    with pytest.raises(ValueError):
        fails()

    assert active_client.get() is None


def test_use_decorator_on_async(clients: tuple[Rankigi, Rankigi]) -> None:
    first, _ = clients

    @rankigi.use(first)
    async def inside() -> Optional[Rankigi]:
        await asyncio.sleep(0)
        return active_client.get()

    async def main() -> tuple[Optional[Rankigi], Optional[Rankigi]]:
        coroutine = inside()
        # Creating the coroutine changes nothing; running it does.
        before = active_client.get()
        return before, await coroutine

    assert asyncio.run(main()) == (None, first)


def test_use_decorator_on_generator(clients: tuple[Rankigi, Rankigi]) -> None:
    first, _ = clients

    @rankigi.use(first)
    def inside() -> Iterator[Optional[Rankigi]]:
        yield active_client.get()
        yield active_client.get()

    seen = []
    for value in inside():
        seen.append((value, active_client.get()))

    assert seen == [(first, None), (first, None)]


def test_use_keeps_signature_and_kind() -> None:
    import inspect

    @rankigi.use(None)
    async def fetch(url: str, retries: int = 3) -> str:
        return url

    assert inspect.iscoroutinefunction(fetch)
    assert list(inspect.signature(fetch).parameters) == ["url", "retries"]
    assert fetch.__name__ == "fetch"


def test_use_rejects_non_client() -> None:
    with pytest.raises(ValueError, match=r"client='key' is invalid"):
        rankigi.use("key")  # type: ignore[arg-type]


def test_with_client_sets_and_restores(clients: tuple[Rankigi, Rankigi]) -> None:
    first, _ = clients
    client = memory_client("scoped")

    with rankigi.use(first):
        with client as entered:
            assert entered is client
            assert active_client.get() is client
        assert active_client.get() is first

    errors: list[RankigiError] = []
    client.on_error = errors.append
    client.track_custom_event("after")
    assert [error.code for error in errors] == ["CLIENT_CLOSED"]


def test_with_client_exit_in_other_context() -> None:
    client = memory_client("moved")
    client.__enter__()

    # Exiting in another context cannot use the token; the old value is set.
    context = contextvars.copy_context()
    context.run(client.__exit__, None, None, None)

    assert context.run(active_client.get) is None
    assert active_client.get() is client
    active_client.set(None)


def test_init_sets_default() -> None:
    exporter = MemoryExporter()

    client = rankigi.init(agent_id="process", _exporter=exporter)

    assert isinstance(client, Rankigi)
    assert default_client.client is client
    assert rankigi.get_client() is client
    assert client.agent_id == "process"


def test_init_again_replaces_and_closes() -> None:
    first = rankigi.init(agent_id="one", _exporter=MemoryExporter())
    errors: list[RankigiError] = []
    first.on_error = errors.append

    second = rankigi.init(agent_id="two", _exporter=MemoryExporter())

    assert rankigi.get_client() is second
    first.track_custom_event("late")
    assert [error.code for error in errors] == ["CLIENT_CLOSED"]


def test_init_invalid_keeps_previous() -> None:
    first = rankigi.init(agent_id="one", _exporter=MemoryExporter())

    with pytest.raises(ValueError, match="batch_size"):
        rankigi.init(agent_id="two", batch_size=0)

    assert rankigi.get_client() is first


def test_set_default_returns_previous(clients: tuple[Rankigi, Rankigi]) -> None:
    first, second = clients

    assert set_default_client(first) is None
    assert set_default_client(second) is first
    assert set_default_client(None) is second


def test_reset_var_in_same_context() -> None:
    var: contextvars.ContextVar[Any] = contextvars.ContextVar("v", default=None)
    token = var.set(1)

    reset_var(var, token)

    assert var.get() is None


def test_reset_var_in_other_context() -> None:
    var: contextvars.ContextVar[Any] = contextvars.ContextVar("v", default=None)
    var.set("old")
    token = var.set("new")
    context = contextvars.copy_context()

    context.run(reset_var, var, token)

    assert context.run(var.get) == "old"
    assert var.get() == "new"


def test_reset_var_twice_is_harmless() -> None:
    var: contextvars.ContextVar[Any] = contextvars.ContextVar("v", default=None)
    token = var.set(1)
    reset_var(var, token)
    var.set(2)

    reset_var(var, token)

    assert var.get() == 2
