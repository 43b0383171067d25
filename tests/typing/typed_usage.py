"""Typed use of the decorators, checked by ``mypy --strict`` (tox -e type).

Each ``assert_type`` fails the check if a decorator loses the parameters or
the return type, and each ``type: ignore`` fails it (as an unused ignore) if
a wrong call stops being an error. ``main()`` runs the same code.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any, Optional

from typing_extensions import assert_type

import rankigi
from rankigi._client import ClientBase
from rankigi.testing import capture


@rankigi.tool
def bare(x: int, label: str = "a") -> str:
    return label * x


@rankigi.tool()
def called(x: int) -> int:
    return x


@rankigi.tool("stripe_refund", severity="warn", capture_input="hash_only")
def named(charge_id: str, amount: int, *, reason: str | None = None) -> bool:
    return amount > 0


@rankigi.tool(name="by_keyword", redact=["card.number"], capture_output=False)
async def fetch(url: str) -> bytes:
    await asyncio.sleep(0)
    return url.encode()


@rankigi.tool
def numbers(limit: int) -> Iterator[int]:
    yield from range(limit)


@rankigi.tool
async def stream(limit: int) -> AsyncIterator[int]:
    for number in range(limit):
        yield number


@rankigi.action("generate_report")
def report(quarter: str) -> dict[str, str]:
    return {"quarter": quarter}


@rankigi.action
def summary() -> str:
    return "ok"


class Agent:
    @rankigi.tool
    def refund(self, amount: int) -> float:
        return amount / 100

    @classmethod
    @rankigi.tool
    def create(cls, name: str) -> Agent:
        return cls()

    @rankigi.tool
    @classmethod
    def load(cls, key: str) -> Agent:
        return cls()

    @rankigi.tool
    @staticmethod
    def parse(text: str) -> int:
        return len(text)

    @staticmethod
    @rankigi.tool
    def check(text: str) -> bool:
        return bool(text)


@rankigi.use(None)
def scoped(x: int) -> int:
    return x


@rankigi.run("refund_flow")
def flow(amount: int) -> float:
    return Agent().refund(amount)


async def use_async() -> None:
    assert_type(await fetch("https://example.invalid"), bytes)
    async for number in stream(2):
        assert_type(number, int)


def main() -> None:
    with capture() as recorded:
        assert_type(bare(2), str)
        assert_type(bare(2, label="b"), str)
        assert_type(called(1), int)
        assert_type(named("ch_1", 5, reason="duplicate"), bool)
        assert_type(list(numbers(3)), list[int])
        assert_type(report("Q3"), dict[str, str])
        assert_type(summary(), str)
        assert_type(Agent().refund(250), float)
        assert_type(Agent.create("a"), Agent)
        assert_type(Agent.load("a"), Agent)
        assert_type(Agent.parse("a"), int)
        assert_type(Agent().parse("a"), int)
        assert_type(Agent.check("a"), bool)
        assert_type(scoped(1), int)
        assert_type(flow(100), float)
        asyncio.run(use_async())

        with rankigi.run("scope") as run:
            assert_type(run.run_id, str)
        with rankigi.use(recorded.client) as client:
            assert_type(client, Optional[ClientBase])

    assert_type(recorded.tool_calls("stripe_refund"), list[dict[str, Any]])


def wrong_calls() -> None:
    # Never called: each line is a type error that must stay one.
    bare("2")  # type: ignore[arg-type]
    called()  # type: ignore[call-arg]
    named("ch_1", amount="5")  # type: ignore[arg-type]
    Agent().refund()  # type: ignore[call-arg]
    rankigi.tool("x", severity="loud")  # type: ignore[call-overload]


if __name__ == "__main__":
    main()
