from __future__ import annotations

import array
import base64
import dataclasses
import datetime as dt
import enum
import io
import json
import math
import socket
import sys
import threading
import types
import uuid
from collections import OrderedDict, UserDict, UserList, UserString, deque, namedtuple
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rankigi._canonical import canonical_json, sha256_hex
from rankigi._redact import NO_REDACTION, REDACTED, Redactor
from rankigi._serialize import (
    DEFAULT_LIMITS,
    EVENT_NESTING,
    Limits,
    serialize,
    serialize_exception,
)

# Helpers


def nesting(value: Any) -> int:
    """Return how many containers deep ``value`` nests (a scalar is 0)."""
    if isinstance(value, dict):
        return 1 + max((nesting(item) for item in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((nesting(item) for item in value), default=0)
    return 0


def assert_strict_json(value: Any) -> None:
    json.dumps(value, allow_nan=False)
    canonical_json({"a": {"b": value}})
    canonical_json({"payload": {"input": {"extra": value}}})


def nested_lists(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


class Boom(Exception):
    """Raised by the hostile test objects."""


class Hostile:
    """Raises from every special method it can define."""

    def __getattribute__(self, name: str) -> Any:
        raise Boom(name)

    def __getattr__(self, name: str) -> Any:
        raise Boom(name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise Boom(name)

    def __eq__(self, other: object) -> bool:
        raise Boom("eq")

    def __lt__(self, other: object) -> bool:
        raise Boom("lt")

    def __hash__(self) -> int:
        raise Boom("hash")

    def __len__(self) -> int:
        raise Boom("len")

    def __iter__(self) -> Iterator[Any]:
        raise Boom("iter")

    def __getitem__(self, key: Any) -> Any:
        raise Boom("getitem")

    def __repr__(self) -> str:
        raise Boom("repr")

    def __str__(self) -> str:
        raise Boom("str")

    def __bool__(self) -> bool:
        raise Boom("bool")


class HostileProperty:
    def __init__(self) -> None:
        self.visible = 1

    @property
    def broken(self) -> int:
        raise Boom("property")


class HostileMapping(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise Boom("getitem")

    def __iter__(self) -> Iterator[str]:
        raise Boom("iter")

    def __len__(self) -> int:
        raise Boom("len")


class HostileSequence(Sequence[Any]):
    def __getitem__(self, index: Any) -> Any:
        raise Boom("getitem")

    def __len__(self) -> int:
        raise Boom("len")


class HostileDict(dict[str, Any]):
    def items(self) -> Any:
        raise Boom("items")

    def __iter__(self) -> Iterator[str]:
        raise Boom("iter")


class HostileMeta(type):
    def __hash__(cls) -> int:
        raise Boom("hash")

    def __eq__(cls, other: object) -> bool:
        raise Boom("eq")

    def __getattr__(cls, name: str) -> Any:
        raise Boom(name)


class HostileClass(metaclass=HostileMeta):
    pass


class ReprReturnsNumber:
    def __repr__(self) -> Any:
        return 42


class HostileStr(str):
    def __str__(self) -> str:
        raise Boom("str")

    def __hash__(self) -> int:
        return str.__hash__(self)

    def __eq__(self, other: object) -> bool:
        raise Boom("eq")


class ReprReturnsHostileStr:
    def __repr__(self) -> str:
        return HostileStr("text")


class BadDump:
    """Looks like a pydantic model, but ``model_dump`` raises."""

    def model_dump(self, **kwargs: Any) -> Any:
        raise Boom("model_dump")

    def __repr__(self) -> str:
        return "BadDump()"


class HostileException(Exception):
    def __str__(self) -> str:
        raise Boom("str")


@dataclasses.dataclass
class HostileDataclass:
    name: str = "n"

    def __getattribute__(self, name: str) -> Any:
        if name == "name":
            raise Boom(name)
        return object.__getattribute__(self, name)


HOSTILE_FACTORIES = [
    Hostile,
    HostileProperty,
    HostileMapping,
    HostileSequence,
    lambda: HostileDict(a=1),
    HostileClass,
    lambda: HostileClass,
    ReprReturnsNumber,
    ReprReturnsHostileStr,
    lambda: HostileStr("key"),
    BadDump,
    HostileException,
    HostileDataclass,
]


def released_memoryview() -> memoryview:
    view = memoryview(b"abc")
    view.release()
    return view


# Scalars


@pytest.mark.parametrize(
    "value", ["", "text", "ünïcode ✓", 0, -5, 2**63, 1.5, -0.0, True, False, None]
)
def test_scalars_pass_through(value: Any) -> None:
    result = serialize(value)

    assert result == value
    assert type(result) is type(value)


def test_long_string_is_cut_with_marker() -> None:
    result = serialize("x" * 5000)

    assert result == "x" * 4096 + "…[truncated 904 chars]"


def test_string_limit_is_configurable() -> None:
    assert serialize("abcdef", Limits(max_string=3)) == "abc…[truncated 3 chars]"
    assert serialize("abc", Limits(max_string=3)) == "abc"


def test_lone_surrogates_are_replaced() -> None:
    result = serialize({"k\ud800": "a\udc00b"})

    assert result == {"k\ufffd": "a\ufffdb"}
    sha256_hex(result)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(math.nan, "NaN"), (math.inf, "Infinity"), (-math.inf, "-Infinity")],
)
def test_non_finite_floats_become_strings(value: float, expected: str) -> None:
    assert serialize(value) == expected
    assert serialize([value]) == [expected]
    assert serialize({"x": value}) == {"x": expected}


def test_huge_int_becomes_hex() -> None:
    value = 2**2000

    result = serialize(value)

    assert result == hex(value)
    assert serialize(2**1023 - 1) == 2**1023 - 1
    assert serialize(-(2**1023) + 1) == -(2**1023) + 1
    assert serialize(-(2**1023)) == hex(-(2**1023))
    assert_strict_json(result)


def test_subclass_scalars_become_builtin() -> None:
    class Text(str):
        pass

    class Number(int):
        pass

    class Real(float):
        pass

    result = serialize([Text("a"), Number(3), Real(1.5), Real("nan")])

    assert result == ["a", 3, 1.5, "NaN"]
    assert isinstance(result, list)
    assert [type(item) for item in result] == [str, int, float, str]


# Containers


def test_dict_keys_become_strings() -> None:
    value = {1: "a", 2.5: "b", None: "c", (1, 2): "d", False: "e"}

    assert serialize(value) == {
        "1": "a",
        "2.5": "b",
        "None": "c",
        "(1, 2)": "d",
        "False": "e",
    }


def test_colliding_keys_get_suffix() -> None:
    assert serialize({1: "a", "1": "b"}) == {"1": "a", "1 (2)": "b"}


def test_unrepresentable_key_gets_marker() -> None:
    key = object.__new__(ReprReturnsNumber)

    result = serialize({key: 1})

    assert result == {f"<unrepresentable {__name__}.ReprReturnsNumber>": 1}


def test_sequences_become_lists() -> None:
    value = {
        "list": [1, 2],
        "tuple": (1, 2),
        "deque": deque([1, 2]),
        "user_list": UserList([1, 2]),
        "array": array.array("i", [1, 2]),
    }

    assert serialize(value) == {key: [1, 2] for key in value}


def test_mappings_become_dicts() -> None:
    value = {
        "ordered": OrderedDict(a=1),
        "user_dict": UserDict(a=1),
        "mapping_proxy": types.MappingProxyType({"a": 1}),
    }

    assert serialize(value) == {key: {"a": 1} for key in value}


def test_sets_are_sorted() -> None:
    assert serialize({"b", "c", "a"}) == ["a", "b", "c"]
    assert serialize(frozenset({3, 1, 2})) == [1, 2, 3]


def test_mixed_set_groups_by_type() -> None:
    assert serialize({2, "b", 1, "a", None}) == [None, 1, 2, "a", "b"]


def test_unorderable_set_keeps_items() -> None:
    class Item:
        def __init__(self, number: int) -> None:
            self.number = number

        def __hash__(self) -> int:
            return self.number

    result = serialize({Item(1), Item(2)})

    name = f"{__name__}.{Item.__qualname__}"
    first = {"$type": name, "number": 1}
    second = {"$type": name, "number": 2}
    assert result in ([first, second], [second, first])


def test_dict_views_become_lists() -> None:
    value = {"a": 1, "b": 2}

    assert serialize(value.keys()) == ["a", "b"]
    assert serialize(value.values()) == [1, 2]
    assert serialize(value.items()) == [["a", 1], ["b", 2]]


def test_items_view_redacts_secret_keys() -> None:
    result = serialize({"password": "hunter2", "user": "ann"}.items())

    assert result == [["password", REDACTED], ["user", "ann"]]


def test_named_tuple_becomes_dict() -> None:
    Point = namedtuple("Point", "x y")

    assert serialize(Point(1, 2)) == {"x": 1, "y": 2}


def test_bytes_become_base64() -> None:
    expected = {"$bytes": base64.b64encode(b"\x00ab").decode(), "length": 3}

    assert serialize(b"\x00ab") == expected
    assert serialize(bytearray(b"\x00ab")) == expected
    assert serialize(memoryview(b"\x00ab")) == expected


def test_long_bytes_are_cut() -> None:
    result = serialize(b"a" * 2000)

    assert isinstance(result, dict)
    assert base64.b64decode(result["$bytes"]) == b"a" * 1024  # type: ignore[arg-type]
    assert result["length"] == 2000
    assert result["truncated"] is True


def test_memoryview_forms() -> None:
    strided = memoryview(b"abcdef")[::2]
    ints = memoryview(array.array("i", [1, 2]))

    assert serialize(strided) == {"$bytes": "YWNl", "length": 3}
    assert serialize(ints, Limits(max_bytes=4)) == {
        "$bytes": base64.b64encode(ints.tobytes()[:4]).decode(),
        "length": ints.nbytes,
        "truncated": True,
    }
    assert serialize(released_memoryview()) == (
        "<unserializable memoryview: ValueError>"
    )


# Other types


class Color(enum.Enum):
    RED = "red"
    BLUE = (0, 0, 255)


class Level(enum.IntEnum):
    HIGH = 3


class Perm(enum.IntFlag):
    READ = 4
    WRITE = 2


def test_enums_become_values() -> None:
    assert serialize(Color.RED) == "red"
    assert serialize(Color.BLUE) == [0, 0, 255]
    assert serialize(Level.HIGH) == 3
    assert type(serialize(Level.HIGH)) is int
    assert serialize(Perm.READ | Perm.WRITE) == 6


def test_dates_and_times_become_iso() -> None:
    moment = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc)

    assert serialize(moment) == "2024-05-06T07:08:09.123456+00:00"
    assert serialize(dt.date(2024, 5, 6)) == "2024-05-06"
    assert serialize(dt.time(7, 8, 9)) == "07:08:09"
    assert serialize(dt.timedelta(minutes=1, microseconds=500)) == 60.0005


def test_text_forms() -> None:
    value = [
        uuid.UUID(int=1),
        Decimal("1.10"),
        Decimal("NaN"),
        PurePosixPath("/tmp/x"),
        Path("relative"),
        1 + 2j,
        complex(math.nan, 1),
        range(0, 10, 2),
        UserString("text"),
    ]

    assert serialize(value) == [
        "00000000-0000-0000-0000-000000000001",
        "1.10",
        "NaN",
        "/tmp/x",
        "relative",
        "(1+2j)",
        "(nan+1j)",
        "range(0, 10, 2)",
        "text",
    ]


class Outer:
    class Inner:
        def method(self) -> None:
            pass


def helper() -> None:
    pass


def test_classes_and_functions_become_names() -> None:
    assert serialize(Outer.Inner) == f"{__name__}.Outer.Inner"
    assert serialize(helper) == f"{__name__}.helper"
    assert serialize(Outer.Inner().method) == f"{__name__}.Outer.Inner.method"
    assert serialize(Outer.Inner.method) == f"{__name__}.Outer.Inner.method"
    assert serialize(len) == "len"
    assert serialize(int) == "int"
    assert serialize(str.upper) == "str.upper"
    assert serialize([].append) == "list.append"
    assert serialize(json) == "<module json>"
    assert serialize(Color) == f"{__name__}.Color"


@dataclasses.dataclass
class Card:
    number: str
    api_key: str = "key-1"
    tags: list[str] = dataclasses.field(default_factory=list)
    owner: Any = None


def test_dataclass_becomes_fields() -> None:
    card = Card("4242", tags=["a"])

    assert serialize(card) == {
        "number": "4242",
        "api_key": REDACTED,
        "tags": ["a"],
        "owner": None,
    }


def test_dataclass_field_that_raises() -> None:
    assert serialize(HostileDataclass()) == {
        "name": f"<unreadable attribute: {__name__}.Boom>"
    }


def test_dataclass_class_becomes_name() -> None:
    assert serialize(Card) == f"{__name__}.Card"


class Address(pydantic.BaseModel):
    city: str
    token: str


class User(pydantic.BaseModel):
    name: str
    password: str
    address: Address
    note: pydantic.SecretStr


def test_pydantic_model_becomes_dump() -> None:
    user = User(
        name="ann",
        password="hunter2",
        address=Address(city="Oslo", token="tok"),
        note=pydantic.SecretStr("hidden"),
    )

    result = serialize(user)

    assert result == {
        "name": "ann",
        "password": REDACTED,
        "address": {"city": "Oslo", "token": REDACTED},
        "note": "SecretStr('**********')",
    }
    assert "hidden" not in json.dumps(result)
    assert "hunter2" not in json.dumps(result)


def test_pydantic_root_model_becomes_root() -> None:
    Numbers = pydantic.RootModel[list[int]]

    assert serialize(Numbers([1, 2])) == [1, 2]


def test_model_dump_returning_model_ends() -> None:
    class Loop:
        def model_dump(self, **kwargs: Any) -> Any:
            return Loop()

    name = f"{__name__}.{Loop.__qualname__}"

    assert serialize(Loop(), Limits(max_depth=2)) == f"[max depth: {name}]"


def test_failing_model_dump_falls_back_to_repr() -> None:
    assert serialize(BadDump()) == "BadDump()"


class Plain:
    label = "class attribute"

    def __init__(self) -> None:
        self.a = 1
        self.token = "secret value"
        self._private = 2


class Slotted:
    __slots__ = ("_hidden", "empty", "x")

    def __init__(self) -> None:
        self.x = 1
        self._hidden = 2


class WithRepr:
    def __init__(self) -> None:
        self._state = 1

    def __repr__(self) -> str:
        return "WithRepr(state=1)"


def test_object_becomes_public_attributes() -> None:
    assert serialize(Plain()) == {
        "$type": f"{__name__}.Plain",
        "a": 1,
        "token": REDACTED,
    }


def test_slotted_object_becomes_set_slots() -> None:
    assert serialize(Slotted()) == {"$type": f"{__name__}.Slotted", "x": 1}


def test_object_without_attributes() -> None:
    assert serialize(WithRepr()) == "WithRepr(state=1)"
    assert serialize(object()) == {"$type": "object"}


def test_properties_are_not_called() -> None:
    assert serialize(HostileProperty()) == {
        "$type": f"{__name__}.HostileProperty",
        "visible": 1,
    }


def test_object_attributes_are_limited() -> None:
    value = Plain()
    for number in range(5):
        setattr(value, f"extra{number}", number)

    result = serialize(value, Limits(max_items=2))

    assert result == {
        "$type": f"{__name__}.Plain",
        "a": 1,
        "token": REDACTED,
        "…": "[5 more keys]",
    }


# Exceptions


class AppError(Exception):
    pass


def raise_app_error() -> None:
    raise AppError("failed to charge")


def test_serialize_exception_with_traceback() -> None:
    try:
        raise_app_error()
    except AppError as exc:
        result = serialize_exception(exc)

    assert result["type"] == f"{__name__}.AppError"
    assert result["message"] == "failed to charge"
    assert result["traceback"].startswith("Traceback (most recent call last):")
    assert "raise_app_error" in result["traceback"]
    assert result["traceback"].endswith("AppError: failed to charge\n")


def test_serialize_exception_without_traceback() -> None:
    assert serialize_exception(ValueError("bad")) == {
        "type": "ValueError",
        "message": "bad",
        "traceback": "",
    }


def test_serialize_exception_includes_cause() -> None:
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise AppError("outer") from inner
    except AppError as exc:
        result = serialize_exception(exc)

    assert "KeyError: 'inner'" in result["traceback"]
    assert "direct cause" in result["traceback"]


def test_serialize_exception_cuts_strings() -> None:
    try:
        raise ValueError("m" * 100)
    except ValueError as exc:
        result = serialize_exception(exc, Limits(max_string=20))

    assert result["message"] == "m" * 20 + "…[truncated 80 chars]"
    assert result["traceback"].startswith("[truncated ")
    # The end of a traceback names the error, so that end is kept.
    assert result["traceback"].endswith("m" * 19 + "\n")


def test_serialize_exception_with_failing_str() -> None:
    result = serialize_exception(HostileException())

    assert result == {
        "type": f"{__name__}.HostileException",
        "message": f"<unprintable {__name__}.HostileException>",
        "traceback": "",
    }


def test_serialize_exception_of_non_exception() -> None:
    result = serialize_exception("not an exception")  # type: ignore[arg-type]

    assert result == {"type": "str", "message": "not an exception", "traceback": ""}


def test_exception_inside_value() -> None:
    assert serialize({"error": ValueError("bad")}) == {
        "error": {"type": "ValueError", "message": "bad", "traceback": ""}
    }


# Live objects are never consumed


def numbers() -> Iterator[int]:
    yield 1
    yield 2
    yield 3


def test_generator_is_not_consumed() -> None:
    generator = numbers()

    result = serialize({"items": generator})

    assert result == {"items": "<generator numbers>"}
    assert list(generator) == [1, 2, 3]


def test_iterators_are_not_consumed() -> None:
    iterator = iter([1, 2, 3])
    mapped = map(str, [1, 2])

    assert serialize(iterator) == "<iterator list_iterator>"
    assert serialize(mapped) == "<iterator map>"
    assert list(iterator) == [1, 2, 3]
    assert list(mapped) == ["1", "2"]


def test_custom_iterator_is_not_consumed() -> None:
    class Countdown:
        def __init__(self) -> None:
            self.left = 2

        def __iter__(self) -> Countdown:
            return self

        def __next__(self) -> int:
            if not self.left:
                raise StopIteration
            self.left -= 1
            return self.left

    countdown = Countdown()

    assert serialize(countdown) == f"<iterator {__name__}.{Countdown.__qualname__}>"
    assert list(countdown) == [1, 0]


async def coroutine_function() -> None:
    pass


async def async_numbers() -> Any:
    yield 1


def test_coroutines_and_async_generators_get_markers() -> None:
    coroutine = coroutine_function()
    agen = async_numbers()
    try:
        assert serialize(coroutine) == "<coroutine coroutine_function>"
        assert serialize(agen) == "<async_generator async_numbers>"
    finally:
        coroutine.close()


def test_files_are_not_read(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("line 1\nline 2\n")
    buffer = io.StringIO("a\nb\n")

    with path.open() as handle:
        assert serialize(handle) == "<file _io.TextIOWrapper>"
        assert handle.read() == "line 1\nline 2\n"
    assert serialize(buffer) == "<file _io.StringIO>"
    assert buffer.read() == "a\nb\n"


def test_threads_locks_and_sockets_get_markers() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        assert serialize(sock) == "<socket socket.socket>"
    finally:
        sock.close()
    assert serialize(threading.Thread()) == "<thread threading.Thread>"
    assert serialize(threading.Lock()) == "<lock _thread.lock>"
    assert serialize(threading.RLock()) == "<lock _thread.RLock>"
    assert serialize(threading.Condition()) == "<lock threading.Condition>"
    assert serialize(threading.Event()) == "<event threading.Event>"


# Hostile objects


def test_hostile_object_gets_marker() -> None:
    assert serialize(Hostile()) == f"<unrepresentable {__name__}.Hostile>"


def test_hostile_mapping_and_sequence() -> None:
    assert serialize(HostileMapping()) == (
        f"<unserializable {__name__}.HostileMapping: {__name__}.Boom>"
    )
    assert serialize(HostileSequence()) == (
        f"<unserializable {__name__}.HostileSequence: {__name__}.Boom>"
    )


def test_dict_subclass_overrides_are_bypassed() -> None:
    assert serialize(HostileDict(a=1)) == {"a": 1}


def test_hostile_metaclass_key() -> None:
    key = HostileClass()

    result = serialize({key: 1, "a": 2})

    assert result == {repr(key): 1, "a": 2}


def test_hostile_metaclass() -> None:
    result = serialize([HostileClass(), HostileClass])

    assert isinstance(result, list)
    assert all(isinstance(item, str) for item in result)


def test_bad_reprs() -> None:
    assert serialize(ReprReturnsNumber()) == (
        f"<unrepresentable {__name__}.ReprReturnsNumber>"
    )
    result = serialize(ReprReturnsHostileStr())
    assert result == "text"
    assert type(result) is str


def test_str_subclass_key_and_value() -> None:
    result = serialize({HostileStr("key"): HostileStr("value")})

    assert result == {"key": "value"}
    assert isinstance(result, dict)
    assert [type(item) for item in result] == [str]


@pytest.mark.parametrize("factory", HOSTILE_FACTORIES)
def test_hostile_values_never_raise(factory: Any) -> None:
    value = factory()

    for wrapped in (value, [value], {"k": value}, {"password": [value]}):
        result = serialize(wrapped)
        assert_strict_json(result)


def test_unknown_failure_gets_marker(monkeypatch: pytest.MonkeyPatch) -> None:
    # A redactor with a broken match cache simulates a bug inside the
    # serializer, which the outermost guard turns into a marker.
    redactor = Redactor()
    monkeypatch.setattr(redactor, "_cache", None)

    result = serialize({"a": 1}, redactor=redactor)

    assert result == "<unserializable dict: AttributeError>"


# Cycles, depth and breadth


def test_list_cycle_gets_marker() -> None:
    value: list[Any] = [1]
    value.append(value)

    assert serialize(value) == [1, "[cycle: list]"]


def test_dict_cycle_gets_marker() -> None:
    root: dict[str, Any] = {"name": "root"}
    root["child"] = {"parent": root}

    assert serialize(root) == {"name": "root", "child": {"parent": "[cycle: dict]"}}


def test_object_cycle_gets_marker() -> None:
    class Node:
        pass

    first, second = Node(), Node()
    first.other = second  # type: ignore[attr-defined]
    second.other = first  # type: ignore[attr-defined]
    name = f"{__name__}.{Node.__qualname__}"

    assert serialize(first) == {
        "$type": name,
        "other": {"$type": name, "other": f"[cycle: {name}]"},
    }


def test_repeated_reference_is_not_a_cycle() -> None:
    shared = {"x": [1]}

    assert serialize([shared, shared, {"again": shared}]) == [
        {"x": [1]},
        {"x": [1]},
        {"again": {"x": [1]}},
    ]


def test_depth_is_capped() -> None:
    result = serialize(nested_lists(10), Limits(max_depth=3))

    assert result == [[["[max depth: list]"]]]


def test_depth_zero_keeps_scalars_only() -> None:
    limits = Limits(max_depth=0)

    assert serialize([1], limits) == "[max depth: list]"
    assert serialize(b"a", limits) == "[max depth: bytes]"
    assert serialize(Plain(), limits) == f"[max depth: {__name__}.Plain]"
    assert serialize("text", limits) == "text"


def test_default_depth_is_six() -> None:
    result = serialize(nested_lists(20))

    assert nesting(result) == DEFAULT_LIMITS.max_depth == 6


def test_list_breadth_is_capped() -> None:
    result = serialize(list(range(150)))

    assert result == [*range(100), "…[50 more items]"]


def test_dict_breadth_is_capped() -> None:
    value = {f"k{number:03}": number for number in range(150)}

    result = serialize(value)

    assert isinstance(result, dict)
    assert len(result) == 101
    assert result["k099"] == 99
    assert "k100" not in result
    assert result["…"] == "[50 more keys]"


def test_breadth_marker_key_does_not_overwrite() -> None:
    result = serialize({"…": "mine", "b": 2}, Limits(max_items=1))

    assert result == {"…": "mine", "… (2)": "[1 more keys]"}


def test_set_breadth_keeps_smallest() -> None:
    result = serialize(set(range(10)), Limits(max_items=3))

    assert result == [0, 1, 2, "…[7 more items]"]


def test_deque_breadth_is_capped() -> None:
    assert serialize(deque(range(5)), Limits(max_items=2)) == [0, 1, "…[3 more items]"]


def build_deep_value(levels: int) -> Any:
    value: Any = {"leaf": b"bytes", "error": ValueError("x"), "card": Card("1")}
    for level in range(levels):
        value = {"list": [value, Plain()], "level": level, "set": {level}}
    return value


@pytest.mark.parametrize("max_depth", range(0, 8))
def test_deep_value_fits_canonical_json(max_depth: int) -> None:
    captured = serialize(build_deep_value(30), Limits(max_depth=max_depth))

    assert nesting(captured) <= max_depth
    event = {"payload": {"input": captured}}
    canonical_json(event)
    canonical_json({"a": {"b": {"c": captured}}})


def test_event_with_default_limits() -> None:
    event = {"payload": {"input": serialize(build_deep_value(30))}}

    canonical_json(event)
    sha256_hex(event)


# Limits


def test_limits_defaults() -> None:
    assert DEFAULT_LIMITS.max_depth == 6
    assert DEFAULT_LIMITS.max_items == 100
    assert DEFAULT_LIMITS.max_string == 4096
    assert DEFAULT_LIMITS.max_bytes == 1024
    assert EVENT_NESTING == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_depth": 8}, r"invalid max_depth=8: pass at most 7"),
        ({"max_depth": -1}, r"invalid max_depth=-1: pass an int of 0 or more"),
        ({"max_items": 1.5}, r"invalid max_items=1.5"),
        ({"max_string": True}, r"invalid max_string=True"),
        ({"max_bytes": "1"}, r"invalid max_bytes='1'"),
    ],
)
def test_limits_reject_invalid(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Limits(**kwargs)


def test_alternating_limits_are_applied() -> None:
    value = [1, 2, 3]

    for _ in range(3):
        assert serialize(value, Limits(max_items=1)) == [1, "…[2 more items]"]
        assert serialize(value, Limits(max_items=2)) == [1, 2, "…[1 more items]"]
        assert serialize(value) == [1, 2, 3]


# Redaction


def test_nested_secret_keys_are_redacted() -> None:
    value = {
        "user": {"name": "ann", "password": "hunter2", "API-Key": {"nested": 1}},
        "headers": [{"Authorization": "Bearer abc"}],
        "author": "Ann",
        "max_tokens": 100,
    }

    assert serialize(value) == {
        "user": {"name": "ann", "password": REDACTED, "API-Key": REDACTED},
        "headers": [{"Authorization": REDACTED}],
        "author": "Ann",
        "max_tokens": 100,
    }


def test_redaction_can_be_disabled() -> None:
    value = {"password": "hunter2"}

    assert serialize(value, redactor=None) == value
    assert serialize(value, redactor=NO_REDACTION) == value


def test_custom_replacement() -> None:
    redactor = Redactor(keys=["ssn"], replacement="***")

    assert serialize({"ssn": 1, "password": 2}, redactor=redactor) == {
        "ssn": "***",
        "password": 2,
    }


def test_paths_redact_from_root() -> None:
    redactor = Redactor(keys=(), paths=["card.number", "items.*.ssn"])
    value = {
        "card": {"number": "4242", "expiry": "12/30"},
        "number": 7,
        "items": [{"ssn": "1", "name": "a"}, {"ssn": "2"}],
        "other": {"card": {"number": "5555"}},
    }

    assert serialize(value, redactor=redactor) == {
        "card": {"number": REDACTED, "expiry": "12/30"},
        "number": 7,
        "items": [{"ssn": REDACTED, "name": "a"}, {"ssn": REDACTED}],
        "other": {"card": {"number": "5555"}},
    }


def test_paths_address_list_indexes() -> None:
    redactor = Redactor(keys=(), paths=["items.0"])

    assert serialize({"items": ["a", "b"]}, redactor=redactor) == {
        "items": [REDACTED, "b"]
    }


def test_paths_reach_attributes() -> None:
    redactor = Redactor(keys=(), paths=["card.number", "plain.a"])

    result = serialize({"card": Card("4242"), "plain": Plain()}, redactor=redactor)

    assert result == {
        "card": {"number": REDACTED, "api_key": "key-1", "tags": [], "owner": None},
        "plain": {"$type": f"{__name__}.Plain", "a": REDACTED, "token": "secret value"},
    }


def test_paths_redact_whole_argument() -> None:
    redactor = Redactor(paths=["card"])

    assert serialize({"card": {"a": 1}, "amount": 5}, redactor=redactor) == {
        "card": REDACTED,
        "amount": 5,
    }


# Snapshots and determinism


def test_result_is_a_snapshot() -> None:
    inner = [1, 2]
    card = Card("4242", tags=["a"])
    value: dict[str, Any] = {"inner": inner, "card": card}

    result = serialize(value)
    inner.append(3)
    card.tags.append("b")
    value["new"] = 1

    assert result == {
        "inner": [1, 2],
        "card": {"number": "4242", "api_key": REDACTED, "tags": ["a"], "owner": None},
    }
    assert isinstance(result, dict)
    assert result["inner"] is not inner


def test_result_is_deterministic() -> None:
    value = {"set": {"b", "a"}, "card": Card("1"), "when": dt.date(2024, 1, 1)}

    assert serialize(value) == serialize(value)
    assert canonical_json(serialize(value)) == canonical_json(serialize(value))


def test_concurrent_mutation_never_raises() -> None:
    shared: dict[str, Any] = {f"k{number}": [number] for number in range(50)}
    stop = threading.Event()

    def mutate() -> None:
        number = 0
        while not stop.is_set():
            shared[f"n{number % 20}"] = [number]
            shared.pop(f"n{(number + 10) % 20}", None)
            number += 1

    # Switching threads every microsecond makes the mutation land mid-walk.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    thread = threading.Thread(target=mutate)
    thread.start()
    try:
        results = [serialize({"shared": shared}) for _ in range(500)]
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)

    for result in results:
        assert isinstance(result, dict)
        assert isinstance(result["shared"], dict), result["shared"]


# Property test


@dataclasses.dataclass(frozen=True)
class HostileSlot:
    """Placeholder for a hostile object, which ``materialize`` builds later.

    Hypothesis inspects the values it generates, and hostile objects raise
    on that inspection, so the strategies generate placeholders instead.
    """

    index: int


def materialize(value: Any) -> Any:
    """Replace each HostileSlot and "hostile-key" key with a hostile object."""
    if isinstance(value, HostileSlot):
        return HOSTILE_FACTORIES[value.index]()
    if isinstance(value, Card):
        return dataclasses.replace(value, owner=materialize(value.owner))
    if isinstance(value, (list, tuple, deque)):
        return type(value)(materialize(item) for item in value)
    if isinstance(value, dict):
        return type(value)(
            (HostileStr(key) if key == "hostile-key" else key, materialize(item))
            for key, item in value.items()
        )
    return value


odd_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=1000, max_value=1100).map(lambda bits: 2**bits),
    st.floats(),
    st.text(st.characters(codec=None, exclude_categories=())),
    st.binary(),
    st.decimals(),
    st.datetimes(),
    st.timedeltas(),
    st.complex_numbers(),
    st.uuids(),
    st.sampled_from(list(Color) + list(Level)),
    st.builds(numbers),
    st.builds(released_memoryview),
    st.integers(0, len(HOSTILE_FACTORIES) - 1).map(HostileSlot),
)
hashable_keys = st.one_of(
    st.text(st.characters(codec=None, exclude_categories=()), max_size=10),
    st.integers(),
    st.floats(),
    st.none(),
    st.tuples(st.integers(), st.text(max_size=3)),
    st.sampled_from(["password", "api_key", "author", "…", "1", "hostile-key"]),
)


def extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=6),
        st.tuples(children, children),
        st.dictionaries(hashable_keys, children, max_size=6),
        st.frozensets(st.one_of(st.integers(), st.text(max_size=3)), max_size=6),
        st.builds(deque, st.lists(children, max_size=4)),
        st.builds(Card, number=st.text(max_size=5), owner=children),
        st.builds(OrderedDict, st.dictionaries(st.text(max_size=3), children)),
    )


values = st.recursive(odd_scalars, extend, max_leaves=40)
small_limits = st.builds(
    Limits,
    max_depth=st.integers(0, 7),
    max_items=st.integers(0, 8),
    max_string=st.integers(0, 50),
    max_bytes=st.integers(0, 8),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(generated=values, limits=small_limits)
def test_serialize_never_raises(generated: Any, limits: Limits) -> None:
    value = materialize(generated)

    for redactor in (None, Redactor(paths=["*.*", "password"])):
        result = serialize(value, limits, redactor)

        assert_strict_json(result)
        assert nesting(result) <= limits.max_depth


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(generated=values)
def test_serialize_default_limits_never_raise(generated: Any) -> None:
    value = materialize(generated)

    result = serialize(value)

    assert_strict_json(result)
    assert nesting(result) <= DEFAULT_LIMITS.max_depth


def test_recursion_limit_inside_repr() -> None:
    class Deep:
        def __repr__(self) -> str:
            return repr(self)

    assert serialize(Deep()) == f"<unrepresentable {__name__}.{Deep.__qualname__}>"
