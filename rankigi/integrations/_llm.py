"""Record a call to a model provider's SDK as one ``llm_call`` event.

The event's ``tool`` is the SDK method, such as
``"openai.chat.completions.create"``, and its payload holds:

- ``provider``, ``model`` (the one the response names, else the requested
  one), ``input`` (the request's parameters, without ``extra_headers``,
  ``extra_query``, ``extra_body`` and ``timeout``);
- ``output`` (the text the model wrote), ``tool_calls`` (each tool call the
  model requested, as ``{"id", "name", "arguments"}``), ``stop_reason``,
  ``usage`` (``input_tokens``, ``output_tokens`` and the provider's other
  counts) and ``response_id``, when the response contains them;
- ``stream``, and for a stream ``chunk_count`` and ``closed_early``;
- ``duration_ms``, ``status`` and, for a call that raised, the exception;
- ``parent_event_id`` and the run, as decorated calls record them.

A plain call is recorded when it returns. A stream is recorded once, when
its iteration ends: exhausted, closed, broken off, failed, or garbage
collected unfinished. A raw response (``with_raw_response`` and
``with_streaming_response``) is recorded when it is parsed, or when it is
closed or collected unparsed, in which case the payload has no output.
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
from collections.abc import Coroutine, Mapping
from typing import Any, Callable, Optional, Protocol

from rankigi._decorators._recording import Call
from rankigi.integrations._calls import LLM, Scope, add_error, begin
from rankigi.integrations._patching import Handler

__all__ = [
    "Accumulator",
    "LLMCall",
    "Provider",
    "call_handler",
    "field",
    "find_types",
    "manager_handler",
    "parse_arguments",
    "request_params",
    "start_llm_call",
    "usage_dict",
]

logger = logging.getLogger("rankigi.integrations")

# Options that shape the HTTP request rather than the model call.
_TRANSPORT_OPTIONS = frozenset(
    {"extra_headers", "extra_query", "extra_body", "timeout"}
)

Summary = dict[str, Any]


class Accumulator(Protocol):
    """Builds a summary from a stream's items, one item at a time."""

    def add(self, item: Any) -> None: ...

    def summary(self) -> Summary: ...


class Provider(Protocol):
    """The result types of one SDK, and the reading of its results."""

    name: str
    # Result types that are wrapped instead of recorded at once.
    sync_streams: tuple[type, ...]
    async_streams: tuple[type, ...]
    raw_responses: tuple[type, ...]

    def summarize(self, result: Any) -> Summary:
        """Return the summary fields of a complete response object."""

    def accumulator(self) -> Accumulator:
        """Return an accumulator for the items of one stream."""


def field(value: Any, name: str, default: Any = None) -> Any:
    """Return ``value.name``, or ``value[name]`` for a mapping, else ``default``."""
    if isinstance(value, Mapping):
        return value.get(name, default)
    return getattr(value, name, default)


def request_params(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Return the call's parameters that describe the model request."""
    params = {k: v for k, v in kwargs.items() if k not in _TRANSPORT_OPTIONS}
    if args:
        # The SDK methods take keyword arguments only; keep anything else.
        params["args"] = list(args)
    return params


def start_llm_call(
    provider: Provider, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Optional[LLMCall]:
    """Start recording an SDK call, or return None to run it unrecorded."""
    scope = begin(LLM, name, request_params(args, kwargs))
    if scope is None:
        return None
    return LLMCall(scope, provider, kwargs.get("model"), kwargs.get("stream") is True)


class LLMCall:
    """One recorded SDK call, finished exactly once however it ends."""

    __slots__ = (
        "_accumulator",
        "_chunks",
        "_done",
        "_lock",
        "_raw",
        "provider",
        "request_model",
        "scope",
        "streaming",
    )

    def __init__(
        self, scope: Scope, provider: Provider, request_model: Any, streaming: bool
    ) -> None:
        self.scope = scope
        self.provider = provider
        self.request_model = request_model if isinstance(request_model, str) else None
        # Whether the request asked for a stream, known before any item.
        self.streaming = streaming
        self._accumulator: Optional[Accumulator] = None
        self._chunks = 0
        self._raw = False
        self._done = False
        self._lock = threading.Lock()

    def enter(self) -> Any:
        return self.scope.enter()

    def exit(self, tokens: Any) -> None:
        self.scope.exit(tokens)

    def run(self, wrapped: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        """Make the call as the current parent, recording a failure."""
        tokens = self.enter()
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            self.exit(tokens)
            self.failed(exc)
            raise
        self.exit(tokens)
        return result

    async def run_async(
        self, wrapped: Callable[..., Any], args: Any, kwargs: Any
    ) -> Any:
        tokens = self.enter()
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            self.exit(tokens)
            self.failed(exc)
            raise
        self.exit(tokens)
        return result

    def deliver(self, result: Any) -> Any:
        """Record ``result``, or wrap it when it is a stream or raw response."""
        stream = self.wrap_stream(result)
        if stream is not result:
            return stream
        if isinstance(result, self.provider.raw_responses):
            # Imported here because the proxies import this module.
            from rankigi.integrations._proxies import RecordedResponse

            self._raw = True
            return RecordedResponse(result, self)
        self.returned(result)
        return result

    def wrap_stream(self, stream: Any) -> Any:
        """Return ``stream`` wrapped so that its items are recorded, if it is one."""
        from rankigi.integrations._proxies import RecordedAsyncStream, RecordedStream

        provider = self.provider
        if isinstance(stream, provider.sync_streams):
            self._start_stream()
            return RecordedStream(stream, self)
        if isinstance(stream, provider.async_streams):
            self._start_stream()
            return RecordedAsyncStream(stream, self)
        return stream

    def _start_stream(self) -> None:
        self.streaming = True
        if self._accumulator is None:
            self._accumulator = self.provider.accumulator()

    def observe(self, item: Any) -> None:
        """Add one stream item to the summary. Never raises."""
        self._chunks += 1
        accumulator = self._accumulator
        if accumulator is None:
            return
        try:
            accumulator.add(item)
        except Exception:
            # A shape this version of the integration does not know: the
            # event still records the call, with what was gathered before.
            logger.debug("reading a %s stream item failed", self.provider.name)
            self._accumulator = None

    # -- ways to finish -------------------------------------------------

    def _claim(self) -> bool:
        with self._lock:
            if self._done:
                return False
            self._done = True
            return True

    @property
    def done(self) -> bool:
        """Whether the event has been recorded."""
        return self._done

    def returned(self, result: Any) -> None:
        if self._claim():
            self.scope.record(_build, self, _summarize(self.provider, result), None)

    def failed(self, exc: BaseException) -> None:
        if self._claim():
            self.scope.record(_build, self, self._stream_summary(), exc)

    def stream_ended(self, closed: bool) -> None:
        if self._claim():
            summary = self._stream_summary()
            summary["closed_early"] = closed
            self.scope.record(_build, self, summary, None)

    def unread(self) -> None:
        """Record a raw response closed or dropped before ``parse()`` finished.

        A raw response whose ``parse()`` returned a stream is recorded as
        that stream, closed early.
        """
        if self._accumulator is not None:
            self.stream_ended(closed=True)
        elif self._claim():
            self.scope.record(_build, self, {}, None)

    def observe_helper(self, helper: Any) -> None:
        """Record the items of the SDK stream that a ``.stream()`` helper reads.

        The helpers of the OpenAI and Anthropic SDKs keep that stream in
        ``_raw_stream`` and read it for every way of consuming them
        (iteration, ``text_stream``, ``get_final_message()`` and so on).
        """
        self.streaming = True
        raw = getattr(helper, "_raw_stream", None)
        stream = self.wrap_stream(raw)
        if stream is raw:
            # NOTE: the event then records the call and its duration up to
            # the end of the ``with`` block, but not the output.
            logger.debug(
                "%s has no stream in _raw_stream; its output is not recorded",
                type(helper).__qualname__,
            )
            return
        try:
            helper._raw_stream = stream
        except AttributeError:
            logger.debug("cannot observe the stream of %s", type(helper).__qualname__)

    def _stream_summary(self) -> Summary:
        accumulator = self._accumulator
        if accumulator is None:
            return {}
        try:
            summary = accumulator.summary()
        except Exception:
            logger.debug("summarizing a %s stream failed", self.provider.name)
            summary = {}
        return summary


def _summarize(provider: Provider, result: Any) -> Summary:
    try:
        return provider.summarize(result)
    except Exception:
        logger.debug("reading a %s response failed", provider.name)
        return {}


_SUMMARY_FIELDS = ("stop_reason", "usage", "response_id")


def _build(
    call: Call,
    llm: LLMCall,
    summary: Summary,
    exc: Optional[BaseException],
    ended: float,
) -> dict[str, Any]:
    factory = call.factory
    payload, hashed = call.payload()
    payload["provider"] = llm.provider.name
    payload["model"] = summary.get("model") or llm.request_model
    if "output" in summary:
        payload["output"] = factory.capture(summary["output"])
        hashed.append("output")
    payload["tool_calls"] = factory.capture(summary.get("tool_calls") or [])
    hashed.append("tool_calls")
    for key in _SUMMARY_FIELDS:
        if summary.get(key) is not None:
            payload[key] = factory.capture(summary[key])
    payload["stream"] = llm.streaming
    if llm.streaming:
        payload["chunk_count"] = llm._chunks
        payload["closed_early"] = bool(summary.get("closed_early", False))
    if llm._raw:
        payload["raw_response"] = True
    status = "ok"
    if exc is not None:
        add_error(call, payload, hashed, exc)
        status = "error"
    return call.event("llm_call", payload, hashed, status, ended)


def call_handler(provider: Provider, name: str, is_async: bool) -> Handler:
    """Return the patch handler that records each call of an SDK method."""
    if is_async:
        return _async_call_handler(provider, name)

    def handler(
        wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        llm = start_llm_call(provider, name, args, kwargs)
        if llm is None:
            return wrapped(*args, **kwargs)
        return llm.deliver(llm.run(wrapped, args, kwargs))

    return handler


def _async_call_handler(provider: Provider, name: str) -> Handler:
    def handler(
        wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        llm = start_llm_call(provider, name, args, kwargs)
        if llm is None:
            return wrapped(*args, **kwargs)
        # Calling creates the coroutine and raises for arguments that do not
        # fit now, as the method itself would; the request runs when awaited.
        try:
            coroutine = wrapped(*args, **kwargs)
        except BaseException as exc:
            llm.failed(exc)
            raise
        return _await_call(llm, coroutine)

    return handler


async def _await_call(llm: LLMCall, coroutine: Coroutine[Any, Any, Any]) -> Any:
    tokens = llm.enter()
    try:
        result = await coroutine
    except BaseException as exc:
        llm.exit(tokens)
        llm.failed(exc)
        raise
    llm.exit(tokens)
    return llm.deliver(result)


def manager_handler(provider: Provider, name: str, is_async: bool) -> Handler:
    """Return the patch handler of a ``.stream()`` helper method.

    The helper returns a context manager that sends the request when it is
    entered; the proxy around it records the call from there.
    """
    from rankigi.integrations._proxies import (
        RecordedAsyncStreamManager,
        RecordedStreamManager,
    )

    proxy_type = RecordedAsyncStreamManager if is_async else RecordedStreamManager

    def handler(
        wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        llm = start_llm_call(provider, name, args, kwargs)
        if llm is None:
            return wrapped(*args, **kwargs)
        llm.streaming = True
        # The guard is set while the helper runs, so that the request it
        # prepares through the patched ``create`` is not recorded again.
        return proxy_type(llm.run(wrapped, args, kwargs), llm)

    return handler


def parse_arguments(arguments: Any) -> Any:
    """Return tool call arguments sent as JSON text as the object they encode.

    Text that is not valid JSON, as a model may write, stays as it is.
    """
    if not isinstance(arguments, str):
        return arguments
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


_TOKEN_NAMES = {"prompt_tokens": "input_tokens", "completion_tokens": "output_tokens"}


def usage_dict(usage: Any) -> Optional[dict[str, Any]]:
    """Return token counts as a dict, named ``input_tokens`` and ``output_tokens``."""
    if usage is None:
        return None
    if isinstance(usage, Mapping):
        data = dict(usage)
    elif callable(getattr(usage, "model_dump", None)):
        data = usage.model_dump()
    else:
        return None
    return {
        _TOKEN_NAMES.get(key, key): value
        for key, value in data.items()
        if value is not None
    }


def find_types(*paths: str) -> tuple[type, ...]:
    """Return the classes named ``"module:Class"`` that this SDK version has.

    The callers name modules of an SDK that is already imported, so nothing
    new is loaded. A module or class that a version lacks is skipped.
    """
    found: list[type] = []
    for path in paths:
        module_name, _, class_name = path.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        cls = getattr(module, class_name, None)
        if isinstance(cls, type):
            found.append(cls)
    return tuple(found)
