"""Record events in memory, to assert in tests what your code recorded.

``capture()`` makes an in-memory client active for a ``with`` block::

    with rankigi.testing.capture() as recorded:
        refund("ch_1", 500)
    (event,) = recorded.tool_calls("stripe_refund")
    assert event["payload"]["status"] == "ok"

With pytest, the ``rankigi_capture`` fixture does the same for one test, and
the ``rankigi`` marker passes options to it::

    @pytest.mark.rankigi(ids=itertools.count(1), clock=lambda: 1_700_000_000.0)
    def test_refund(rankigi_capture):
        ...

The events are the finished ones, as an exporter receives them: with
``occurred_at`` and the ``*_hash`` fields.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Optional, Union

from rankigi._client import Rankigi
from rankigi._context import active_client, reset_var, set_default_client
from rankigi._exceptions import RankigiError
from rankigi._exporters import MemoryExporter

__all__ = ["Capture", "capture"]

Event = dict[str, Any]
IdSource = Union[Iterable[Any], Callable[[], Any]]
Clock = Callable[[], Union[float, datetime]]

_FLUSH_TIMEOUT_S = 10.0
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


class Capture:
    """The events recorded inside a ``capture()`` block, with filters.

    Reading ``events`` or calling a filter first waits until every event
    recorded so far has reached memory.
    """

    def __init__(self, client: Rankigi, exporter: MemoryExporter) -> None:
        self.client = client
        self._exporter = exporter
        # RankigiErrors the client reported: dropped or failed captures.
        self.client_errors: list[RankigiError] = []

    @property
    def events(self) -> list[Event]:
        """All events recorded so far, oldest first."""
        self.client.flush(_FLUSH_TIMEOUT_S)
        return list(self._exporter.events)

    def tool_calls(
        self, name: Optional[str] = None, *, status: Optional[str] = None
    ) -> list[Event]:
        """Return the ``tool_call`` events, of one tool or status if given."""
        return [
            event
            for event in self.events
            if event["action"] == "tool_call"
            and (name is None or event["tool"] == name)
            and (status is None or event["payload"].get("status") == status)
        ]

    def outputs(self, name: Optional[str] = None) -> list[Event]:
        """Return the agent outputs (``response_generated``), of one action if given."""
        return [
            event
            for event in self.events
            if event["action"] == "response_generated"
            and (name is None or event["payload"].get("action") == name)
        ]

    def errors(self, name: Optional[str] = None) -> list[Event]:
        """Return the ``error`` events, of one tool or action if given.

        A tool call that raised is a ``tool_call`` event with status
        ``"error"``; ``tool_calls(status="error")`` returns those.
        """
        return [
            event
            for event in self.events
            if event["action"] == "error"
            and (
                name is None
                or event["tool"] == name
                or event["payload"].get("action") == name
            )
        ]

    def children(self, parent: Union[Event, str]) -> list[Event]:
        """Return the events whose ``parent_event_id`` is ``parent``'s id."""
        parent_id = parent if isinstance(parent, str) else parent["event_id"]
        return [
            event
            for event in self.events
            if event["payload"].get("parent_event_id") == parent_id
        ]

    def in_run(self, run_id: str) -> list[Event]:
        """Return the events recorded inside the run with this id."""
        return [
            event for event in self.events if event["payload"].get("run_id") == run_id
        ]

    def clear(self) -> None:
        """Forget the events recorded so far."""
        self.client.flush(_FLUSH_TIMEOUT_S)
        with self._exporter._lock:
            self._exporter.events.clear()


@contextmanager
def capture(
    *,
    agent_id: str = "test-agent",
    ids: Optional[IdSource] = None,
    clock: Optional[Clock] = None,
    as_default: bool = False,
    **options: Any,
) -> Iterator[Capture]:
    """Record into memory with a new client, active for the block.

    Args:
        agent_id: The agent id of the events.
        ids: Fixed event ids: an iterable such as ``itertools.count(1)``, or
            a function returning the next id. Each value is turned into a
            string. Run ids from ``rankigi.run()`` come from it too.
        clock: A function returning the time, as seconds since the epoch or
            an aware ``datetime``. It sets ``occurred_at`` and measures
            ``duration_ms``, so a constant clock makes durations 0.
        as_default: Also make the client the process default for the block,
            for threads that start without a copy of the context.
        **options: Client options such as ``capture="hash_only"`` or
            ``redact_keys=[...]``.

    Raises:
        ValueError: An option is invalid.
    """
    exporter = MemoryExporter()
    client = Rankigi(agent_id=agent_id, _exporter=exporter, **options)
    recorded = Capture(client, exporter)
    client.on_error = recorded.client_errors.append
    factory = client._core.factory
    if ids is not None:
        factory.new_id = _id_source(ids)
    if clock is not None:
        factory.now_ns = _nanoseconds(clock)
        factory.perf_counter = _seconds(clock)
    previous_default = set_default_client(client) if as_default else None
    token = active_client.set(client)
    try:
        yield recorded
    finally:
        reset_var(active_client, token)
        if as_default:
            set_default_client(previous_default)
        client.close(_FLUSH_TIMEOUT_S)


def _id_source(ids: IdSource) -> Callable[[], str]:
    if callable(ids):
        make = ids

        def call() -> str:
            return str(make())

        return call
    try:
        iterator = iter(ids)
    except TypeError:
        raise ValueError(
            f"ids={ids!r} is invalid; pass an iterable such as itertools.count(1) "
            "or a function that returns the next id"
        ) from None
    lock = threading.Lock()

    def take() -> str:
        # Iterators such as generators are not safe to share between threads.
        with lock:
            return str(next(iterator))

    return take


def _seconds(clock: Clock) -> Callable[[], float]:
    nanoseconds = _nanoseconds(clock)

    def read() -> float:
        return nanoseconds() / 1_000_000_000

    return read


def _nanoseconds(clock: Clock) -> Callable[[], int]:
    def read() -> int:
        value = clock()
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError(
                    f"clock returned {value!r} without a time zone; return an "
                    "aware datetime such as datetime.now(timezone.utc)"
                )
            return (value - _EPOCH) // _MICROSECOND * 1000
        if isinstance(value, int):
            return value * 1_000_000_000
        # Float seconds near the present carry about a microsecond of
        # precision, and a float has too few bits for exact nanoseconds.
        return round(float(value) * 1_000_000) * 1000

    return read


try:
    import pytest
except ImportError:  # rankigi.testing.capture() works without pytest
    _HAVE_PYTEST = False
else:
    _HAVE_PYTEST = True

if _HAVE_PYTEST:

    @pytest.fixture
    def rankigi_capture(request: pytest.FixtureRequest) -> Iterator[Capture]:
        """Record the test's events in memory; see ``rankigi.testing.capture``.

        Options come from the ``rankigi`` marker, as in
        ``@pytest.mark.rankigi(ids=itertools.count(1))``.
        """
        marker = request.node.get_closest_marker("rankigi")
        options = dict(marker.kwargs) if marker is not None else {}
        with capture(**options) as recorded:
            yield recorded

    def pytest_configure(config: pytest.Config) -> None:
        config.addinivalue_line(
            "markers",
            "rankigi(**options): options for the rankigi_capture fixture, "
            "as rankigi.testing.capture() takes them",
        )
