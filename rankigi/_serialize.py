"""Snapshots of arbitrary Python values as JSON-safe data.

``serialize`` copies any value into a new structure made of dicts with string
keys, lists, strings, ints, finite floats, bools and None, which
``canonical_json`` accepts when it is nested up to 3 levels deep in an event.
It catches every ``Exception`` raised by the value's own code (``__repr__``,
``__iter__``, properties of pydantic models and so on). ``KeyboardInterrupt``
and ``SystemExit`` raised by that code propagate, because swallowing them
would hide a user's request to stop.

It never iterates generators, iterators, files or other live objects, and
reads object attributes from ``__dict__`` and ``__slots__`` without calling
properties.

Forms of the result:

- ``str``, ``int``, finite ``float``, ``bool``, ``None``: unchanged. Strings
  longer than ``max_string`` are cut to it, followed by
  ``"…[truncated N chars]"``. Lone surrogates become U+FFFD, because the
  hashing step encodes UTF-8. Ints of 1024 bits or more become hex strings
  such as ``"0x1f…"``, because decimal text of huge ints takes quadratic
  time, and CPython 3.11 raises ValueError past 4300 digits by default.
- NaN, infinity and minus infinity: ``"NaN"``, ``"Infinity"``,
  ``"-Infinity"``.
- ``dict`` and other mappings: dicts. Keys that are not strings become
  ``str(key)`` for ints, floats and bools (hex for huge ints), else
  ``repr(key)``. A key that collides with an earlier one after conversion
  gets a suffix: ``"1 (2)"``.
- ``list``, ``tuple``, ``deque``, other sequences, and keys and values
  views: lists. Items views: lists of ``[key, value]`` pairs.
  Named tuples: dicts of their fields.
- ``set``, ``frozenset`` and other sets: lists, sorted when the items can be
  ordered (by type name first for mixed types), else in iteration order.
- ``bytes``, ``bytearray``, ``memoryview``:
  ``{"$bytes": base64 of the first max_bytes bytes, "length": total bytes}``
  plus ``"truncated": true`` when cut.
- dataclass instances: dicts of their fields. Pydantic models: their
  ``model_dump(mode="python")``, serialized again, or ``repr`` when that
  raises.
- enums: their ``value``, serialized again.
- ``datetime``, ``date``, ``time``: ISO 8601 text. ``timedelta``: seconds
  as a float. ``UUID``, ``Decimal``, paths and ``complex``: ``str``.
  ``range``: ``repr``, as in ``"range(0, 10)"``.
- exceptions: ``{"type", "message", "traceback"}``, as
  ``serialize_exception`` returns.
- classes, functions and methods: the qualified name, such as
  ``"mymod.MyClass.method"`` (no module for builtins). Modules:
  ``"<module name>"``.
- generators, coroutines and async generators: ``"<generator qualname>"``
  (``coroutine``, ``async_generator``). Files, sockets, threads, locks,
  threading events and barriers: ``"<file type>"`` (``socket``, ``thread``,
  ``lock``, ``event``, ``barrier``). Other iterators and async iterators:
  ``"<iterator type>"``.
- other objects: ``{"$type": "module.QualName", **public attributes}`` from
  ``__dict__`` and ``__slots__`` (names not starting with ``_``). An object
  with no public attributes becomes its ``repr`` when its class defines
  ``__repr__``, else ``{"$type": ...}`` alone. A failed ``repr`` gives
  ``"<unrepresentable type>"``, an attribute that fails to read gives
  ``"<unreadable attribute: ErrorType>"``, and any other failure gives
  ``"<unserializable type: ErrorType>"``.

Limits and markers: a container nested deeper than ``max_depth`` becomes
``"[max depth: type]"``. A container met again inside itself becomes
``"[cycle: type]"``, while repeated references that are not cycles are
serialized each time. Past ``max_items``, a list ends with the item
``"…[N more items]"`` and a dict with the key ``"…"`` set to
``"[N more keys]"``. Redacted values become the redactor's replacement (see
``rankigi._redact``) and keep their key.
"""

from __future__ import annotations

import array
import base64
import dataclasses
import enum
import io
import itertools
import re
import socket
import threading
import traceback
import types
import uuid
from collections import UserString, deque
from collections.abc import ItemsView, Mapping, MappingView, Sequence, Set
from dataclasses import dataclass
from datetime import date, time, timedelta
from decimal import Decimal
from pathlib import PurePath
from typing import Any, Callable, Optional, Union

from rankigi._canonical import MAX_DEPTH
from rankigi._redact import (
    DEFAULT_REDACTOR,
    PathState,
    Redactor,
    key_matcher,
    step_paths,
)

__all__ = [
    "DEFAULT_LIMITS",
    "EVENT_NESTING",
    "JSONValue",
    "Limits",
    "serialize",
    "serialize_exception",
]

JSONValue = Union[
    None, bool, int, float, str, list["JSONValue"], dict[str, "JSONValue"]
]

# Events nest a captured value up to this many containers deep, as in
# {"payload": {"input": value}} with one level to spare, so a captured value
# may nest MAX_DEPTH - EVENT_NESTING levels before canonical JSON rejects it.
EVENT_NESTING = 3

# Ints of this many bits or more are written in hex.
_INT_BITS = 1024
# Maximum characters of a type, function or module name in a marker.
_NAME_LIMIT = 256
# Maximum entries in the per-type handler cache before it is emptied, so
# classes made at run time cannot grow it without bound.
_CACHE_SIZE = 4096
# Maximum walkers cached by (limits, redactor) pair before the cache is emptied.
_WALKER_CACHE_SIZE = 64
_SURROGATES = re.compile("[\ud800-\udfff]")
_ELLIPSIS = "…"


@dataclass(frozen=True)
class Limits:
    """Bounds on the size of a serialized value.

    Args:
        max_depth: maximum container nesting of the result, from 0 to 7.
        max_items: items kept per list, tuple, set or dict.
        max_string: characters kept per string.
        max_bytes: bytes kept per bytes, bytearray or memoryview value.

    Raises:
        ValueError: for a limit that is not an int in its range.
    """

    max_depth: int = 6
    max_items: int = 100
    max_string: int = 4096
    max_bytes: int = 1024

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if type(value) is not int or value < 0:
                raise ValueError(
                    f"invalid {field.name}={value!r}: pass an int of 0 or more"
                )
        if self.max_depth > MAX_DEPTH - EVENT_NESTING:
            raise ValueError(
                f"invalid max_depth={self.max_depth}: pass at most "
                f"{MAX_DEPTH - EVENT_NESTING}, because events nest a captured "
                f"value {EVENT_NESTING} levels deep and canonical JSON rejects "
                f"nesting beyond {MAX_DEPTH}"
            )


DEFAULT_LIMITS = Limits()

# The ids of the containers from the root down to the current value, which
# give both the depth and the cycle check.
_Ancestors = tuple[int, ...]
_Fill = Callable[["_Walker", Any, _Ancestors, Optional[PathState]], JSONValue]
# A handler is a fill function and whether its result is a container, which
# needs the depth and cycle checks first.
_Handler = tuple[_Fill, bool]


def serialize(
    value: object,
    limits: Limits = DEFAULT_LIMITS,
    redactor: Optional[Redactor] = DEFAULT_REDACTOR,
) -> JSONValue:
    """Snapshot any value as a new JSON-safe structure.

    Never raises an ``Exception``. The module docstring lists the forms.

    Args:
        value: the value to capture.
        limits: bounds on depth, breadth and sizes.
        redactor: the redaction rules, or None to redact nothing.
    """
    try:
        walker = _walker_for(limits, redactor)
        return walker.walk(value, (), walker.root_paths)
    except Exception as exc:
        return _failure_marker(value, exc)


def serialize_exception(
    exc: BaseException, limits: Limits = DEFAULT_LIMITS
) -> dict[str, str]:
    """Describe an exception as its type, message and formatted traceback.

    ``type`` is ``"module.QualName"``, without the module for builtins.
    ``traceback`` is the text ``traceback.format_exception`` writes, chained
    exceptions included, or ``""`` when the exception has no traceback. The
    message keeps its first ``max_string`` characters and the traceback its
    last ones, where the innermost frames are. Never raises an ``Exception``.
    """
    try:
        return _exception_fields(exc, limits.max_string)
    except Exception:
        return {"type": _qualified_name(type(exc)), "message": "", "traceback": ""}


class _Walker:
    """The limits and redaction rules of one ``serialize`` configuration.

    A walker keeps no per-call state, so threads share it.
    """

    __slots__ = (
        "max_bytes",
        "max_depth",
        "max_items",
        "max_string",
        "replacement",
        "root_paths",
        "secret",
    )

    def __init__(self, limits: Limits, redactor: Optional[Redactor]) -> None:
        self.max_depth = limits.max_depth
        self.max_items = limits.max_items
        self.max_string = limits.max_string
        self.max_bytes = limits.max_bytes
        self.secret: Optional[Callable[[str], bool]] = None
        self.root_paths: Optional[PathState] = None
        self.replacement = ""
        if redactor is not None:
            self.replacement = redactor.replacement
            self.secret = key_matcher(redactor)
            if redactor.path_root is not None:
                self.root_paths = (redactor.path_root,)

    def walk(
        self, value: Any, ancestors: _Ancestors, paths: Optional[PathState]
    ) -> JSONValue:
        """Serialize ``value`` found inside the containers with ids ``ancestors``."""
        cls = type(value)
        # Exact builtin types first, because most values have them and they
        # need no handler lookup.
        if cls is str:
            if len(value) <= self.max_string and value.isascii():
                return value  # type: ignore[no-any-return]
            return _clean_text(value, self.max_string)
        if cls is int:
            if value.bit_length() < _INT_BITS:
                return value  # type: ignore[no-any-return]
            return _clean_text(hex(value), self.max_string)
        if cls is bool or value is None:
            return value  # type: ignore[no-any-return]
        if cls is float:
            # Only NaN and the infinities give a non-zero difference.
            if value - value == 0.0:
                return value  # type: ignore[no-any-return]
            return _float_text(value)
        if cls is dict:
            return self.container(value, ancestors, paths, _Walker.fill_dict)
        if cls is list or cls is tuple:
            return self.container(value, ancestors, paths, _Walker.fill_list)
        try:
            fill, is_container = _handler_for(cls)
            if is_container:
                return self.container(value, ancestors, paths, fill)
            return fill(self, value, ancestors, paths)
        except Exception as exc:
            return _failure_marker(value, exc)

    def container(
        self, value: Any, ancestors: _Ancestors, paths: Optional[PathState], fill: _Fill
    ) -> JSONValue:
        """Fill a container one level down, unless too deep or a cycle."""
        ident = id(value)
        if len(ancestors) < self.max_depth and ident not in ancestors:
            # Concatenation measured about twice as fast as unpacking here
            # (CPython 3.11).
            return fill(self, value, ancestors + (ident,), paths)  # noqa: RUF005
        if ident in ancestors:
            return f"[cycle: {_qualified_name(type(value))}]"
        return f"[max depth: {_qualified_name(type(value))}]"

    # Fill functions: ``ancestors`` ends with the id of the container filled.

    def fill_dict(
        self, value: Any, ancestors: _Ancestors, paths: Optional[PathState]
    ) -> JSONValue:
        # dict.items() reads the storage directly, never a subclass override,
        # and list() copies it before any other thread can change it.
        total = len(value)
        if total <= self.max_items:
            pairs = list(dict.items(value))
        else:
            pairs = list(itertools.islice(dict.items(value), self.max_items))
        return self.fill_pairs({}, pairs, total, ancestors, paths)

    def fill_mapping(
        self, value: Any, ancestors: _Ancestors, paths: Optional[PathState]
    ) -> JSONValue:
        pairs = list(itertools.islice(value.items(), self.max_items))
        return self.fill_pairs({}, pairs, len(value), ancestors, paths)

    def fill_pairs(
        self,
        out: dict[str, JSONValue],
        pairs: list[tuple[Any, Any]],
        total: int,
        ancestors: _Ancestors,
        paths: Optional[PathState],
    ) -> JSONValue:
        """Add key-value pairs to ``out``, redacting, then mark any left out."""
        secret = self.secret
        max_string = self.max_string
        walk = self.walk
        for key, item in pairs:
            if type(key) is str and len(key) <= max_string and key.isascii():
                name = key
            else:
                name = self.key_text(key)
            if secret is not None and secret(name):
                out[_free_key(name, out)] = self.replacement
                continue
            below = None
            if paths is not None:
                redacted, below = step_paths(paths, name)
                if redacted:
                    out[_free_key(name, out)] = self.replacement
                    continue
            if name in out:
                name = _free_key(name, out)
            cls = type(item)
            # The common scalars inline, because a call per value costs more
            # than the rest of this loop.
            if (cls is str and len(item) <= max_string and item.isascii()) or (
                cls is bool or item is None
            ):
                out[name] = item
            else:
                out[name] = walk(item, ancestors, below)
        if total > len(pairs):
            out[_free_key(_ELLIPSIS, out)] = f"[{total - len(pairs)} more keys]"
        return out

    def fill_list(
        self, value: Any, ancestors: _Ancestors, paths: Optional[PathState]
    ) -> JSONValue:
        return self.fill_items(value[: self.max_items], len(value), ancestors, paths)

    def fill_iterable(
        self, value: Any, ancestors: _Ancestors, paths: Optional[PathState]
    ) -> JSONValue:
        items = list(itertools.islice(value, self.max_items))
        return self.fill_items(items, len(value), ancestors, paths)

    def fill_set(
        self, value: Any, ancestors: _Ancestors, paths: Optional[PathState]
    ) -> JSONValue:
        items = _sorted_items(value)
        return self.fill_items(items[: self.max_items], len(items), ancestors, paths)

    def fill_items_view(
        self, value: Any, ancestors: _Ancestors, paths: Optional[PathState]
    ) -> JSONValue:
        pairs = list(itertools.islice(value, self.max_items))
        secret = self.secret
        if secret is not None:
            # The pairs carry the keys, so they follow the key rules as a dict does.
            pairs = [
                (pair[0], self.replacement)
                if type(pair[0]) is str and secret(pair[0])
                else pair
                for pair in pairs
            ]
        return self.fill_items(pairs, len(value), ancestors, paths)

    def fill_items(
        self, items: Any, total: int, ancestors: _Ancestors, paths: Optional[PathState]
    ) -> JSONValue:
        """Serialize list items, redacting by path, then mark any left out."""
        out: list[JSONValue] = []
        if paths is None:
            max_string = self.max_string
            walk = self.walk
            for item in items:
                cls = type(item)
                # The common scalars inline, as in fill_pairs.
                if (cls is str and len(item) <= max_string and item.isascii()) or (
                    cls is bool or item is None
                ):
                    out.append(item)
                else:
                    out.append(walk(item, ancestors, None))
        else:
            for index, item in enumerate(items):
                redacted, below = step_paths(paths, str(index))
                out.append(
                    self.replacement if redacted else self.walk(item, ancestors, below)
                )
        if total > len(out):
            out.append(f"{_ELLIPSIS}[{total - len(out)} more items]")
        return out

    def fill_named_tuple(
        self, value: Any, ancestors: _Ancestors, paths: Optional[PathState]
    ) -> JSONValue:
        pairs = list(zip(type(value)._fields, tuple.__iter__(value)))
        return self.fill_pairs(
            {}, pairs[: self.max_items], len(pairs), ancestors, paths
        )

    def fill_dataclass(
        self, value: Any, ancestors: _Ancestors, paths: Optional[PathState]
    ) -> JSONValue:
        names = [field.name for field in dataclasses.fields(value)]
        pairs = [(name, _read_attribute(value, name)) for name in names]
        return self.fill_pairs(
            {}, pairs[: self.max_items], len(names), ancestors, paths
        )

    def fill_model(
        self, value: Any, ancestors: _Ancestors, paths: Optional[PathState]
    ) -> JSONValue:
        try:
            dumped = value.model_dump(mode="python")
        except Exception:
            return _safe_repr(value, self.max_string)
        if type(dumped) is not dict:
            # Root models dump to their root value. It is walked one level
            # down, so a model_dump that returns another model still ends at
            # the depth limit.
            return self.walk(dumped, ancestors, paths)
        return self.fill_dict(dumped, ancestors, paths)

    def fill_object(
        self, value: Any, ancestors: _Ancestors, paths: Optional[PathState]
    ) -> JSONValue:
        cls: Any = type(value)
        pairs = _public_attributes(value)
        if not pairs and cls.__repr__ is not object.__repr__:
            # No state to show, but the class wrote a repr to describe itself.
            return _safe_repr(value, self.max_string)
        out: dict[str, JSONValue] = {"$type": _qualified_name(cls)}
        return self.fill_pairs(
            out, pairs[: self.max_items], len(pairs), ancestors, paths
        )

    def fill_bytes(
        self, value: Any, ancestors: _Ancestors, paths: Optional[PathState]
    ) -> JSONValue:
        data, length = _bytes_head(value, self.max_bytes)
        out: dict[str, JSONValue] = {
            "$bytes": base64.b64encode(data).decode("ascii"),
            "length": length,
        }
        if length > len(data):
            out["truncated"] = True
        return out

    def fill_exception(
        self, value: Any, ancestors: _Ancestors, paths: Optional[PathState]
    ) -> JSONValue:
        out: dict[str, JSONValue] = {}
        out.update(_exception_fields(value, self.max_string))
        return out

    def key_text(self, key: Any) -> str:
        """Turn a dict key into a string: ``str()`` for numbers, else ``repr()``."""
        # Identity checks only, because ``==`` on a type can run its metaclass.
        cls = type(key)
        if isinstance(key, str):
            return _clean_text(key, self.max_string)
        if cls is int and key.bit_length() >= _INT_BITS:
            return _clean_text(hex(key), self.max_string)
        if cls is int or cls is float or cls is bool:
            return str(key)
        return _safe_repr(key, self.max_string)

    # Handlers for values that are not containers.

    def walk_enum(
        self, value: Any, ancestors: _Ancestors, paths: Optional[PathState]
    ) -> JSONValue:
        return self.walk(value.value, ancestors, paths)

    def walk_str(
        self, value: Any, ancestors: _Ancestors, paths: Optional[PathState]
    ) -> JSONValue:
        return _clean_text(str.__str__(value), self.max_string)

    def walk_int(
        self, value: Any, ancestors: _Ancestors, paths: Optional[PathState]
    ) -> JSONValue:
        return self.walk(int.__int__(value), ancestors, paths)

    def walk_float(
        self, value: Any, ancestors: _Ancestors, paths: Optional[PathState]
    ) -> JSONValue:
        return self.walk(float.__float__(value), ancestors, paths)

    def walk_iso(
        self, value: Any, ancestors: _Ancestors, paths: Optional[PathState]
    ) -> JSONValue:
        return _clean_text(str(value.isoformat()), self.max_string)

    def walk_seconds(
        self, value: Any, ancestors: _Ancestors, paths: Optional[PathState]
    ) -> JSONValue:
        return float(value.total_seconds())

    def walk_text(
        self, value: Any, ancestors: _Ancestors, paths: Optional[PathState]
    ) -> JSONValue:
        return _clean_text(str(value), self.max_string)

    def walk_repr(
        self, value: Any, ancestors: _Ancestors, paths: Optional[PathState]
    ) -> JSONValue:
        return _safe_repr(value, self.max_string)

    def walk_name(
        self, value: Any, ancestors: _Ancestors, paths: Optional[PathState]
    ) -> JSONValue:
        return _qualified_name(value)

    def walk_module(
        self, value: Any, ancestors: _Ancestors, paths: Optional[PathState]
    ) -> JSONValue:
        return f"<module {_clean_text(str(value.__name__), _NAME_LIMIT)}>"

    def walk_user_string(
        self, value: Any, ancestors: _Ancestors, paths: Optional[PathState]
    ) -> JSONValue:
        return self.walk_str(value.data, ancestors, paths)


_WalkerEntry = tuple[Limits, Optional[Redactor], _Walker]
_walkers: dict[tuple[int, int], _WalkerEntry] = {}
_last_walker: _WalkerEntry = (
    DEFAULT_LIMITS,
    DEFAULT_REDACTOR,
    _Walker(DEFAULT_LIMITS, DEFAULT_REDACTOR),
)


def _walker_for(limits: Limits, redactor: Optional[Redactor]) -> _Walker:
    """Return the cached walker for this pair, building it on first use."""
    # Each entry keeps its limits and redactor alive, so their ids cannot be
    # reused by other objects while the entry exists.
    global _last_walker
    last = _last_walker
    if last[0] is limits and last[1] is redactor:
        return last[2]
    key = (id(limits), id(redactor))
    entry = _walkers.get(key)
    if entry is None:
        entry = (limits, redactor, _Walker(limits, redactor))
        if len(_walkers) >= _WALKER_CACHE_SIZE:
            _walkers.clear()
        _walkers[key] = entry
    # One tuple, replaced whole, so other threads never see a torn entry.
    _last_walker = entry
    return entry[2]


def _live_marker(kind: str, by_qualname: bool = False) -> _Handler:
    """Build a handler that names a live object without touching its contents."""

    def mark(
        walker: _Walker, value: Any, ancestors: _Ancestors, paths: Optional[PathState]
    ) -> JSONValue:
        if by_qualname:
            name = value.__qualname__
            return f"<{kind} {_clean_text(str(name), _NAME_LIMIT)}>"
        return f"<{kind} {_qualified_name(type(value))}>"

    return mark, False


_LOCK_TYPES = (
    type(threading.Lock()),
    type(threading.RLock()),
    threading.Condition,
    threading.Semaphore,
)
_FUNCTION_TYPES = (
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.MethodWrapperType,
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.ClassMethodDescriptorType,
)

# Checked in order by ``_resolve_handler``. Enums come before str and int
# because IntEnum and StrEnum derive from them, live objects before the
# iterator check, and the abstract collections near the end.
_HANDLER_ORDER: tuple[tuple[Any, _Handler], ...] = (
    (enum.Enum, (_Walker.walk_enum, False)),
    (str, (_Walker.walk_str, False)),
    (int, (_Walker.walk_int, False)),
    (float, (_Walker.walk_float, False)),
    ((bytes, bytearray, memoryview), (_Walker.fill_bytes, True)),
    (dict, (_Walker.fill_dict, True)),
    ((list, tuple, deque), (_Walker.fill_iterable, True)),
    ((set, frozenset), (_Walker.fill_set, True)),
    (ItemsView, (_Walker.fill_items_view, True)),
    (MappingView, (_Walker.fill_iterable, True)),
    ((date, time), (_Walker.walk_iso, False)),
    (timedelta, (_Walker.walk_seconds, False)),
    ((uuid.UUID, Decimal, PurePath, complex), (_Walker.walk_text, False)),
    (range, (_Walker.walk_repr, False)),
    (UserString, (_Walker.walk_user_string, False)),
    (BaseException, (_Walker.fill_exception, True)),
    (type, (_Walker.walk_name, False)),
    (_FUNCTION_TYPES, (_Walker.walk_name, False)),
    (types.ModuleType, (_Walker.walk_module, False)),
    (types.GeneratorType, _live_marker("generator", by_qualname=True)),
    (types.CoroutineType, _live_marker("coroutine", by_qualname=True)),
    (types.AsyncGeneratorType, _live_marker("async_generator", by_qualname=True)),
    (io.IOBase, _live_marker("file")),
    (socket.socket, _live_marker("socket")),
    (threading.Thread, _live_marker("thread")),
    (_LOCK_TYPES, _live_marker("lock")),
    (threading.Event, _live_marker("event")),
    (threading.Barrier, _live_marker("barrier")),
)
_ITERATOR_HANDLER = _live_marker("iterator")
_OBJECT_HANDLER: _Handler = (_Walker.fill_object, True)

_handlers: dict[type, _Handler] = {}


def _handler_for(cls: type) -> _Handler:
    handler = _handlers.get(cls)
    if handler is None:
        handler = _resolve_handler(cls)
        if len(_handlers) >= _CACHE_SIZE:
            _handlers.clear()
        _handlers[cls] = handler
    return handler


def _resolve_handler(cls: type) -> _Handler:
    for base, handler in _HANDLER_ORDER:
        if issubclass(cls, base):
            if handler[0] is _Walker.fill_iterable and _is_named_tuple(cls):
                return _Walker.fill_named_tuple, True
            return handler
    # A container that is also its own iterator would be consumed by reading.
    if hasattr(cls, "__next__") or hasattr(cls, "__anext__"):
        return _ITERATOR_HANDLER
    if hasattr(cls, "__dataclass_fields__"):
        return _Walker.fill_dataclass, True
    # Pydantic v2 models, found by duck typing so pydantic is never imported.
    if callable(getattr(cls, "model_dump", None)):
        return _Walker.fill_model, True
    if issubclass(cls, Mapping):
        return _Walker.fill_mapping, True
    # array.array registers as a Sequence only from Python 3.10.
    if issubclass(cls, (Sequence, array.array)):
        return _Walker.fill_iterable, True
    if issubclass(cls, Set):
        return _Walker.fill_set, True
    return _OBJECT_HANDLER


def _is_named_tuple(cls: type) -> bool:
    fields = getattr(cls, "_fields", None)
    return issubclass(cls, tuple) and isinstance(fields, tuple)


def _clean_text(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters with a marker and fix surrogates."""
    if type(text) is not str:
        text = str.__str__(text)
    if len(text) > limit:
        text = f"{text[:limit]}{_ELLIPSIS}[truncated {len(text) - limit} chars]"
    if not text.isascii():
        text = _SURROGATES.sub("\ufffd", text)
    return text


def _clean_tail(text: str, limit: int) -> str:
    """Keep the last ``limit`` characters of ``text``, with a marker before."""
    if type(text) is not str:
        text = str.__str__(text)
    if len(text) > limit:
        cut = len(text) - limit
        text = f"[truncated {cut} chars]{_ELLIPSIS}{text[cut:]}"
    if not text.isascii():
        text = _SURROGATES.sub("\ufffd", text)
    return text


def _float_text(value: float) -> str:
    if value != value:
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _free_key(name: str, out: dict[str, JSONValue]) -> str:
    """Return ``name``, or ``name (2)``, ``name (3)``… when ``out`` has it."""
    if name not in out:
        return name
    number = 2
    while f"{name} ({number})" in out:
        number += 1
    return f"{name} ({number})"


def _qualified_name(obj: Any) -> str:
    """Return ``module.QualName`` of a class or function, without ``builtins``."""
    try:
        module = getattr(obj, "__module__", None)
        name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
        if not isinstance(name, str):
            name = "?"
        if isinstance(module, str) and module != "builtins":
            name = f"{module}.{name}"
        return _clean_text(name, _NAME_LIMIT)
    except Exception:
        return "?"


def _safe_repr(value: Any, limit: int) -> str:
    try:
        text = repr(value)
    except Exception:
        return f"<unrepresentable {_qualified_name(type(value))}>"
    return _clean_text(text, limit)


def _failure_marker(value: Any, exc: Exception) -> str:
    return (
        f"<unserializable {_qualified_name(type(value))}: {_qualified_name(type(exc))}>"
    )


def _read_attribute(value: Any, name: str) -> Any:
    try:
        return getattr(value, name)
    except Exception as exc:
        return f"<unreadable attribute: {_qualified_name(type(exc))}>"


def _public_attributes(value: Any) -> list[tuple[str, Any]]:
    """Read public attributes from ``__dict__`` and ``__slots__``.

    ``object.__getattribute__`` skips any ``__getattribute__`` the class
    defines, and the instance dict contains no properties, so no user code runs
    unless the class replaces ``__dict__`` or a slot with a property.
    """
    pairs: list[tuple[str, Any]] = []
    try:
        namespace = object.__getattribute__(value, "__dict__")
    except Exception:
        namespace = None  # no instance dict, or a property in its place failed
    if isinstance(namespace, dict):
        pairs.extend(
            (key, item)
            for key, item in list(dict.items(namespace))
            if type(key) is str and not key.startswith("_")
        )
    for name in _slot_names(type(value)):
        try:
            pairs.append((name, object.__getattribute__(value, name)))
        except AttributeError:
            continue  # an empty slot
        except Exception as exc:
            pairs.append(
                (name, f"<unreadable attribute: {_qualified_name(type(exc))}>")
            )
    return pairs


def _slot_names(cls: type) -> list[str]:
    names: list[str] = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        if isinstance(slots, str):
            slots = (slots,)
        for name in slots:
            if type(name) is str and not name.startswith("_") and name not in names:
                names.append(name)
    return names


def _sorted_items(value: Any) -> list[Any]:
    """Return the items of a set sorted, so hash order cannot change the result."""
    items = list(value)
    try:
        return sorted(items)
    except Exception:
        pass
    try:
        # Mixed types: group by type name, then order within each type.
        return sorted(items, key=lambda item: (_qualified_name(type(item)), item))
    except Exception:
        return items


def _bytes_head(value: Any, limit: int) -> tuple[bytes, int]:
    """Return the first ``limit`` bytes of a bytes-like value and its length."""
    if isinstance(value, memoryview):
        if value.c_contiguous:
            return value.cast("B")[:limit].tobytes(), value.nbytes
        return value.tobytes()[:limit], value.nbytes
    return bytes(value[:limit]), len(value)


def _exception_fields(exc: BaseException, limit: int) -> dict[str, str]:
    return {
        "type": _qualified_name(type(exc)),
        "message": _clean_text(_exception_message(exc), limit),
        "traceback": _clean_tail(_format_traceback(exc), limit),
    }


def _exception_message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {_qualified_name(type(exc))}>"


def _format_traceback(exc: BaseException) -> str:
    tb = getattr(exc, "__traceback__", None)
    if tb is None:
        return ""
    try:
        return "".join(traceback.format_exception(type(exc), exc, tb))
    except Exception:
        pass
    try:
        return "".join(traceback.format_tb(tb))
    except Exception:
        return ""
