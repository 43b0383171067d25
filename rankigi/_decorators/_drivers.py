"""Run one call of each kind of function around an observer.

An observer receives the start of a call, each item, and the end, however
the call ends. ``enter`` and ``exit`` bracket every stretch of the wrapped
code that runs: the whole call for plain and async functions, each step for
generators. So a generator's context settings apply only while its own code
runs, and two generators consumed in alternation never see each other's
settings.

The drivers re-raise the wrapped code's exceptions as the same objects, and
forward ``send``, ``throw``, ``close``, ``asend``, ``athrow`` and ``aclose``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Coroutine, Generator
from typing import Any, Callable, Protocol

__all__ = [
    "DRIVERS",
    "Observer",
    "drive_async_generator",
    "drive_call",
    "drive_coroutine",
    "drive_generator",
]


class Observer(Protocol):
    """The callbacks a driver makes during one call."""

    def enter(self) -> Any:
        """Start a stretch of the wrapped code and return the token for ``exit``."""

    def exit(self, token: Any) -> None:
        """End the stretch that ``enter`` started."""

    def returned(self, value: Any) -> None:
        """Handle the return value of a plain or async call."""

    def yielded(self, value: Any) -> None:
        """Handle one item of a generator, before the consumer gets it."""

    def ended(self, closed: bool) -> None:
        """Handle the end of iteration: exhausted, or closed before that."""

    def failed(self, exc: BaseException) -> None:
        """Handle the exception that ends the call, which the driver re-raises."""


Driver = Callable[[Observer, Callable[..., Any], tuple[Any, ...], dict[str, Any]], Any]


def drive_call(
    observer: Observer,
    wrapped: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    token = observer.enter()
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        observer.exit(token)
        observer.failed(exc)
        raise
    observer.exit(token)
    observer.returned(result)
    return result


def drive_coroutine(
    observer: Observer,
    wrapped: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    # Calling creates the coroutine and raises at once for arguments that do
    # not fit, as an undecorated call would. The body runs when awaited.
    try:
        coroutine = wrapped(*args, **kwargs)
    except BaseException as exc:
        observer.failed(exc)
        raise
    outer = _await(observer, coroutine)
    _copy_names(coroutine, outer)
    return outer


async def _await(observer: Observer, coroutine: Coroutine[Any, Any, Any]) -> Any:
    token = observer.enter()
    try:
        result = await coroutine
    except BaseException as exc:
        observer.exit(token)
        observer.failed(exc)
        raise
    observer.exit(token)
    observer.returned(result)
    return result


def drive_generator(
    observer: Observer,
    wrapped: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    try:
        generator = wrapped(*args, **kwargs)
    except BaseException as exc:
        observer.failed(exc)
        raise
    outer = _iterate(observer, generator)
    _copy_names(generator, outer)
    return outer


def _iterate(observer: Observer, generator: Generator[Any, Any, Any]) -> Any:
    """Delegate to ``generator`` as ``yield from`` would, step by step."""
    sent: Any = None
    thrown: BaseException | None = None
    while True:
        token = observer.enter()
        try:
            item = generator.send(sent) if thrown is None else generator.throw(thrown)
        except StopIteration as stop:
            observer.exit(token)
            observer.ended(closed=False)
            return stop.value
        except BaseException as exc:
            observer.exit(token)
            observer.failed(exc)
            raise
        observer.exit(token)
        observer.yielded(item)
        thrown = None
        try:
            sent = yield item
        except GeneratorExit:
            _close(observer, generator)
            raise
        except BaseException as exc:
            thrown = exc
            sent = None


def _close(observer: Observer, generator: Generator[Any, Any, Any]) -> None:
    token = observer.enter()
    try:
        generator.close()
    except BaseException as exc:
        observer.exit(token)
        observer.failed(exc)
        raise
    observer.exit(token)
    observer.ended(closed=True)


def drive_async_generator(
    observer: Observer,
    wrapped: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    try:
        generator = wrapped(*args, **kwargs)
    except BaseException as exc:
        observer.failed(exc)
        raise
    outer = _iterate_async(observer, generator)
    _copy_names(generator, outer)
    return outer


async def _iterate_async(
    observer: Observer, generator: AsyncGenerator[Any, Any]
) -> AsyncGenerator[Any, Any]:
    """Delegate to ``generator`` step by step, as ``_iterate`` does."""
    sent: Any = None
    thrown: BaseException | None = None
    while True:
        token = observer.enter()
        try:
            if thrown is None:
                item = await generator.asend(sent)
            else:
                item = await generator.athrow(thrown)
        except StopAsyncIteration:
            observer.exit(token)
            observer.ended(closed=False)
            return
        except BaseException as exc:
            observer.exit(token)
            observer.failed(exc)
            raise
        observer.exit(token)
        observer.yielded(item)
        thrown = None
        try:
            sent = yield item
        except GeneratorExit:
            await _close_async(observer, generator)
            raise
        except BaseException as exc:
            thrown = exc
            sent = None


async def _close_async(observer: Observer, generator: AsyncGenerator[Any, Any]) -> None:
    token = observer.enter()
    try:
        await generator.aclose()
    except BaseException as exc:
        observer.exit(token)
        observer.failed(exc)
        raise
    observer.exit(token)
    observer.ended(closed=True)


def _copy_names(inner: Any, outer: Any) -> None:
    # Coroutine and generator objects take new names, so reprs, asyncio task
    # names and debuggers show the user's function instead of this module's.
    try:
        outer.__name__ = inner.__name__
        outer.__qualname__ = inner.__qualname__
    except (AttributeError, TypeError):
        pass


DRIVERS: dict[str, Driver] = {
    "call": drive_call,
    "coroutine": drive_coroutine,
    "generator": drive_generator,
    "async_generator": drive_async_generator,
}
