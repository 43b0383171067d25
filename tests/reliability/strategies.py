"""Hypothesis strategies for values a caller might pass to the SDK, however odd.

``values`` mixes JSON-like data with what real programs hold: NaN and
infinities, huge integers, lone surrogates, bytes, sets of mixed types,
cycles, deep nesting, generators, and objects whose ``__repr__``,
``__getattr__``, ``__iter__`` or ``__str__`` raise. Every draw builds fresh
objects, so a generator consumed by one example is not reused by another.
"""

from __future__ import annotations

import enum
import itertools
import sys
import threading
from collections import namedtuple
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import PurePosixPath
from typing import Any, Callable

from hypothesis import strategies as st

__all__ = [
    "exceptions",
    "hashable_values",
    "names",
    "severities",
    "values",
]


class HostileRepr:
    """An object whose repr and str raise."""

    def __repr__(self) -> str:
        raise RuntimeError("repr refused")

    def __str__(self) -> str:
        raise RuntimeError("str refused")


class HostileAttributes:
    """An object on which every attribute lookup raises, even ``__class__``."""

    def __getattribute__(self, name: str) -> Any:
        raise RuntimeError(f"no attribute {name}")


class NoAttributes:
    """Like ``HostileAttributes``, but ``__class__`` works.

    Hypothesis itself calls ``isinstance`` on every value it draws, which
    reads ``__class__``, so only this variant can be drawn.
    """

    def __getattribute__(self, name: str) -> Any:
        if name == "__class__":
            return NoAttributes
        raise RuntimeError(f"no attribute {name}")


class Bottomless:
    """A mock-like object: every attribute and call returns another one."""

    def __getattr__(self, name: str) -> Bottomless:
        return Bottomless()

    def __call__(self, *args: Any, **kwargs: Any) -> Bottomless:
        return Bottomless()


class HostileContainer(dict):  # type: ignore[type-arg]
    """A dict whose iteration, length and items all raise."""

    def __iter__(self) -> Iterator[Any]:
        raise RuntimeError("no iteration")

    def __len__(self) -> int:
        raise RuntimeError("no length")

    def items(self) -> Any:
        raise RuntimeError("no items")


class HostileList(list):  # type: ignore[type-arg]
    def __iter__(self) -> Iterator[Any]:
        raise RuntimeError("no iteration")


class HostileStr(str):
    def __str__(self) -> str:
        raise RuntimeError("str refused")

    def __repr__(self) -> str:
        raise RuntimeError("repr refused")


class HostileError(Exception):
    """An exception whose message cannot be read."""

    def __str__(self) -> str:
        raise RuntimeError("str refused")

    def __repr__(self) -> str:
        raise RuntimeError("repr refused")


class Color(enum.Enum):
    RED = 1
    NAN = float("nan")


Point = namedtuple("Point", ["x", "y"])


@dataclass
class Node:
    name: str
    children: list[Any] = field(default_factory=list)


def _self_list() -> list[Any]:
    items: list[Any] = [1]
    items.append(items)
    return items


def _self_dict() -> dict[str, Any]:
    mapping: dict[str, Any] = {}
    mapping["self"] = mapping
    return mapping


def _node_cycle() -> Node:
    root = Node("root")
    root.children.append(Node("child", [root]))
    return root


def _deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


def _generator() -> Iterator[int]:
    yield from range(3)


# Each factory builds a new object per draw.
ODD_FACTORIES: list[Callable[[], Any]] = [
    HostileRepr,
    NoAttributes,
    Bottomless,
    lambda: HostileContainer(a=1),
    lambda: HostileList([1, 2]),
    lambda: HostileStr("text"),
    lambda: HostileError("secret"),
    _self_list,
    _self_dict,
    _node_cycle,
    lambda: _deep(3000),
    _generator,
    lambda: iter([1, 2, 3]),
    itertools.count,
    threading.Lock,
    object,
    lambda: type,
    lambda: sys,
    lambda: print,
    lambda: lambda x: x,
    lambda: Decimal("NaN"),
    lambda: Decimal("-Infinity"),
    lambda: Decimal("1e100000"),
    lambda: complex(float("nan"), float("inf")),
    lambda: memoryview(b"\x00\xff"),
    lambda: bytearray(b"\x00\xff" * 3),
    lambda: datetime(2024, 2, 29, 12, 0, tzinfo=timezone(timedelta(hours=14))),
    lambda: date(1, 1, 1),
    lambda: timedelta(days=-1, microseconds=1),
    lambda: PurePosixPath("/tmp/x"),
    lambda: Color.NAN,
    lambda: Point(float("nan"), [1]),
    lambda: {1, "a", None, (1, "b"), 2.5, b"x"},
    lambda: frozenset({float("nan"), -0.0, 10**40}),
    lambda: range(10**12),
    lambda: 10**5000,
    lambda: -(2**200),
    lambda: Ellipsis,
    lambda: NotImplemented,
]

odd_objects = st.sampled_from(ODD_FACTORIES).map(lambda make: make())

surrogate_text = st.text(
    st.one_of(st.characters(categories=["Cs"]), st.characters()), min_size=1
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    surrogate_text,
    st.binary(),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.datetimes(),
    st.uuids(),
    st.complex_numbers(),
)

hashable_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(),
    surrogate_text,
    st.binary(),
    st.tuples(st.integers(), st.text()),
    st.frozensets(st.integers(), max_size=3),
    st.builds(HostileRepr),
    st.builds(Bottomless),
)

values = st.recursive(
    st.one_of(scalars, odd_objects),
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.tuples(children, children),
        st.dictionaries(hashable_values, children, max_size=5),
        st.sets(hashable_values, max_size=5),
    ),
    max_leaves=25,
)


def _raised(error: BaseException) -> BaseException:
    """Raise and catch ``error``, so it carries a traceback."""
    try:
        raise error
    except BaseException as caught:
        return caught


def _chained(depth: int) -> BaseException:
    error: BaseException = ValueError("root")
    for level in range(depth):
        try:
            raise KeyError(level) from error
        except KeyError as caught:
            error = caught
    return error


def _self_caused() -> BaseException:
    error = RuntimeError("loops")
    error.__cause__ = error
    error.__context__ = error
    return error


exceptions = st.one_of(
    st.builds(ValueError, values),
    st.builds(lambda v: _raised(TypeError(v)), values),
    st.builds(lambda: _raised(HostileError())),
    st.builds(lambda: _chained(200)),
    st.builds(_self_caused),
    st.builds(lambda v: OSError(2, v, v), values),
    st.builds(lambda: KeyboardInterrupt()),
)

names = st.one_of(
    st.text(),
    surrogate_text,
    st.text(min_size=250, max_size=400),
    st.none(),
    st.integers(),
    st.floats(allow_nan=True),
    st.binary(),
    st.lists(st.integers(), max_size=2),
    odd_objects,
)

severities = st.one_of(st.sampled_from(["info", "warn", "critical"]), names)
