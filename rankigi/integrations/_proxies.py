"""Proxies that record SDK streams and raw responses without changing them.

Each proxy is a ``wrapt.ObjectProxy``: attribute access, ``isinstance``
checks and every method it does not define reach the SDK object. A proxy
defines only the methods it observes. Iteration passes each item to the
recorder, unchanged, and reports the end. ``close``, ``aclose`` and the
context manager methods end the recording, ``parse`` of a raw response
records what it returns, and ``__del__`` records an object dropped before
its end.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Callable

import wrapt

if TYPE_CHECKING:
    from typing_extensions import TypeAlias

    from rankigi.integrations._llm import LLMCall

    _ObjectProxy: TypeAlias = wrapt.ObjectProxy[Any]
else:
    _ObjectProxy = wrapt.ObjectProxy

__all__ = [
    "RecordedAsyncStream",
    "RecordedAsyncStreamManager",
    "RecordedResponse",
    "RecordedStream",
    "RecordedStreamManager",
]


def _closing(method: Callable[..., Any], recorder: LLMCall) -> Callable[..., Any]:
    """Return ``method`` (a close method) made to end the recording after it."""
    if inspect.iscoroutinefunction(method):

        async def close_async(*args: Any, **kwargs: Any) -> Any:
            try:
                return await method(*args, **kwargs)
            finally:
                recorder.stream_ended(closed=True)

        return close_async

    def close(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        finally:
            recorder.stream_ended(closed=True)

    return close


class _Recorded(_ObjectProxy):
    _self_recorder: LLMCall

    def __init__(self, wrapped: Any, recorder: LLMCall) -> None:
        super().__init__(wrapped)
        self._self_recorder = recorder

    def __repr__(self) -> str:
        return repr(self.__wrapped__)

    def __del__(self) -> None:
        # A stream dropped unfinished is recorded as closed early, as a
        # generator that is garbage collected is.
        try:
            recorder = self._self_recorder
        except AttributeError:  # __init__ did not finish
            return
        if not recorder.done:
            self._self_abandoned()

    def _self_abandoned(self) -> None:
        self._self_recorder.stream_ended(closed=True)


class RecordedStream(_Recorded):
    """A synchronous SDK stream whose items are passed to the recorder."""

    def __iter__(self) -> Iterator[Any]:
        recorder = self._self_recorder
        iterator = iter(self.__wrapped__)
        while True:
            try:
                item = next(iterator)
            except StopIteration:
                recorder.stream_ended(closed=False)
                return
            except BaseException as exc:
                recorder.failed(exc)
                raise
            recorder.observe(item)
            try:
                yield item
            except BaseException:
                # The consumer stopped early: closed us, or threw in.
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
                recorder.stream_ended(closed=True)
                raise

    def __next__(self) -> Any:
        recorder = self._self_recorder
        try:
            item = self.__wrapped__.__next__()
        except StopIteration:
            recorder.stream_ended(closed=False)
            raise
        except BaseException as exc:
            recorder.failed(exc)
            raise
        recorder.observe(item)
        return item

    def __enter__(self) -> Any:
        entered = self.__wrapped__.__enter__()
        return self if entered is self.__wrapped__ else entered

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            self._self_recorder.stream_ended(closed=True)

    @property
    def close(self) -> Callable[..., Any]:
        return _closing(self.__wrapped__.close, self._self_recorder)


class RecordedAsyncStream(_Recorded):
    """An asynchronous SDK stream whose items are passed to the recorder."""

    async def __aiter__(self) -> AsyncIterator[Any]:
        recorder = self._self_recorder
        iterator = self.__wrapped__.__aiter__()
        while True:
            try:
                item = await iterator.__anext__()
            except StopAsyncIteration:
                recorder.stream_ended(closed=False)
                return
            except BaseException as exc:
                recorder.failed(exc)
                raise
            recorder.observe(item)
            try:
                yield item
            except BaseException:
                aclose = getattr(iterator, "aclose", None)
                if aclose is not None:
                    await aclose()
                recorder.stream_ended(closed=True)
                raise

    async def __anext__(self) -> Any:
        recorder = self._self_recorder
        try:
            item = await self.__wrapped__.__anext__()
        except StopAsyncIteration:
            recorder.stream_ended(closed=False)
            raise
        except BaseException as exc:
            recorder.failed(exc)
            raise
        recorder.observe(item)
        return item

    async def __aenter__(self) -> Any:
        entered = await self.__wrapped__.__aenter__()
        return self if entered is self.__wrapped__ else entered

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(*exc_info)
        finally:
            self._self_recorder.stream_ended(closed=True)

    @property
    def close(self) -> Callable[..., Any]:
        return _closing(self.__wrapped__.close, self._self_recorder)

    @property
    def aclose(self) -> Callable[..., Any]:
        return _closing(self.__wrapped__.aclose, self._self_recorder)


class RecordedResponse(_Recorded):
    """A raw response, recorded when parsed, closed or dropped."""

    _self_parsed: Any = None
    _self_delivered: Any = None

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        parsed = self.__wrapped__.parse(*args, **kwargs)
        if inspect.isawaitable(parsed):
            return self._self_parse_async(parsed)
        return self._self_deliver(parsed)

    async def _self_parse_async(self, parsed: Any) -> Any:
        return self._self_deliver(await parsed)

    def _self_deliver(self, parsed: Any) -> Any:
        # The SDK caches what parse() returns, so a second parse() gets the
        # proxy that the first one returned.
        if parsed is self._self_parsed:
            return self._self_delivered
        recorder = self._self_recorder
        delivered = parsed
        if not recorder.done:
            delivered = recorder.deliver(parsed)
        self._self_parsed = parsed
        self._self_delivered = delivered
        return delivered

    @property
    def close(self) -> Callable[..., Any]:
        method = self.__wrapped__.close
        recorder = self._self_recorder
        if inspect.iscoroutinefunction(method):

            async def close_async(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await method(*args, **kwargs)
                finally:
                    recorder.unread()

            return close_async

        def close(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            finally:
                recorder.unread()

        return close

    def _self_abandoned(self) -> None:
        # A stream that parse() returned records itself, and it usually
        # outlives this response: ``create(stream=True).parse()`` drops it.
        if self._self_delivered is None:
            self._self_recorder.unread()


class RecordedStreamManager(_Recorded):
    """A ``.stream()`` helper's context manager; the call runs on ``__enter__``."""

    def __enter__(self) -> Any:
        recorder = self._self_recorder
        stream = recorder.run(self.__wrapped__.__enter__, (), {})
        recorder.observe_helper(stream)
        return stream

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            self._self_recorder.stream_ended(closed=True)

    def _self_abandoned(self) -> None:
        pass  # never entered, so no request was sent


class RecordedAsyncStreamManager(_Recorded):
    """The asynchronous form of ``RecordedStreamManager``."""

    async def __aenter__(self) -> Any:
        recorder = self._self_recorder
        stream = await recorder.run_async(self.__wrapped__.__aenter__, (), {})
        recorder.observe_helper(stream)
        return stream

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(*exc_info)
        finally:
            self._self_recorder.stream_ended(closed=True)

    def _self_abandoned(self) -> None:
        pass
