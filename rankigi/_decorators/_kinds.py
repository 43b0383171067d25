"""Find what kind of callable a decorator was given, once, at decoration time."""

from __future__ import annotations

import functools
import inspect
from typing import Any

__all__ = [
    "ASYNC_GENERATOR",
    "CALL",
    "COROUTINE",
    "GENERATOR",
    "default_name",
    "function_kind",
    "underlying_function",
]

CALL = "call"
COROUTINE = "coroutine"
GENERATOR = "generator"
ASYNC_GENERATOR = "async_generator"

# Chains such as partials of partials are short. The cap only stops an
# object whose unwrapping would never end.
_MAX_UNWRAP = 100


def underlying_function(target: Any) -> Any:
    """Return the code-carrying callable behind ``target``.

    Unwraps classmethod and staticmethod objects and ``functools.partial``,
    and turns a callable instance into its class's ``__call__``.
    """
    for _ in range(_MAX_UNWRAP):
        if isinstance(target, (classmethod, staticmethod)):
            target = target.__func__
        elif isinstance(target, functools.partial):
            target = target.func
        else:
            break
    if _is_callable_instance(target):
        # The class's __call__ carries the code flags that inspect reads.
        return type(target).__call__
    return target


def function_kind(target: Any) -> str:
    """Return CALL, COROUTINE, GENERATOR or ASYNC_GENERATOR for ``target``.

    The result follows ``inspect`` on the underlying function, so a plain
    function that returns a coroutine counts as CALL.
    """
    function = underlying_function(target)
    if inspect.isasyncgenfunction(function):
        return ASYNC_GENERATOR
    if inspect.iscoroutinefunction(function):
        return COROUTINE
    if inspect.isgeneratorfunction(function):
        return GENERATOR
    return CALL


def default_name(target: Any) -> str:
    """Return the qualified name that names events when no name was given."""
    for _ in range(_MAX_UNWRAP):
        if isinstance(target, (classmethod, staticmethod)):
            target = target.__func__
        elif isinstance(target, functools.partial):
            target = target.func
        else:
            break
    if _is_callable_instance(target):
        target = type(target)
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None)
    if isinstance(name, str) and name:
        return name
    return type(target).__qualname__


def _is_callable_instance(target: Any) -> bool:
    return not (
        inspect.isroutine(target)
        or inspect.isclass(target)
        or isinstance(target, functools.partial)
    ) and callable(target)
