"""rankigi.testing: capture(), fixed ids and clock, the pytest fixture."""

from __future__ import annotations

import itertools
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

import rankigi
from rankigi._context import active_client, default_client
from rankigi.testing import Capture, capture

pytest_plugins = ["pytester"]


@rankigi.tool("lookup")
def lookup(key: str) -> str:
    return key.upper()


@rankigi.action("answer")
def answer(text: str) -> str:
    return text


def test_capture_records_finished_events() -> None:
    with capture() as recorded:
        lookup("a")

    (event,) = recorded.events
    assert event["agent_id"] == "test-agent"
    assert event["occurred_at"].endswith("Z")
    assert len(event["payload"]["input_hash"]) == 64
    assert "_ns" not in event
    assert "_hashed" not in event


def test_capture_activates_client_for_block() -> None:
    with capture() as recorded:
        assert active_client.get() is recorded.client
    assert active_client.get() is None


def test_capture_closes_client_and_keeps_events() -> None:
    with capture() as recorded:
        lookup("a")

    recorded.client.track_custom_event("late")

    assert len(recorded.events) == 1
    assert [error.code for error in recorded.client_errors] == ["CLIENT_CLOSED"]


def test_capture_filters() -> None:
    with capture() as recorded:
        lookup("a")
        lookup("b")
        answer("hi")
        recorded.client.track_error("lookup", ValueError("x"))
        recorded.client.track_error("other", "y")

    assert [e["payload"]["output"] for e in recorded.tool_calls("lookup")] == ["A", "B"]
    assert recorded.tool_calls("missing") == []
    assert recorded.tool_calls(status="error") == []
    assert [e["payload"]["output"] for e in recorded.outputs("answer")] == ["hi"]
    assert len(recorded.outputs()) == 1
    assert [e["tool"] for e in recorded.errors()] == ["lookup", "other"]
    assert [e["tool"] for e in recorded.errors("other")] == ["other"]


def test_capture_children_and_runs() -> None:
    @rankigi.tool("outer")
    def outer() -> str:
        return lookup("x")

    with capture() as recorded, rankigi.run("flow") as run:
        outer()

    (parent,) = recorded.tool_calls("outer")
    (child,) = recorded.children(parent)
    assert child["tool"] == "lookup"
    assert recorded.children(parent["event_id"]) == [child]
    assert len(recorded.in_run(run.run_id)) == 2


def test_capture_clear() -> None:
    with capture() as recorded:
        lookup("a")
        recorded.clear()
        lookup("b")

    assert [e["payload"]["output"] for e in recorded.events] == ["B"]


def test_capture_fixed_ids_from_iterable() -> None:
    with capture(ids=itertools.count(1)) as recorded:
        lookup("a")
        lookup("b")

    assert [e["event_id"] for e in recorded.events] == ["1", "2"]


def test_capture_fixed_ids_from_function() -> None:
    numbers = itertools.count(100)

    with capture(ids=lambda: f"evt-{next(numbers)}") as recorded:
        lookup("a")

    assert [e["event_id"] for e in recorded.events] == ["evt-100"]


def test_capture_ids_exhausted_reported() -> None:
    with capture(ids=["only-one"]) as recorded:
        lookup("a")
        assert lookup("b") == "B"

    assert [e["event_id"] for e in recorded.events] == ["only-one"]
    assert [error.code for error in recorded.client_errors] == ["CAPTURE_FAILED"]


def test_capture_invalid_ids() -> None:
    invalid = pytest.raises(ValueError, match=r"ids=5 is invalid; pass an iterable")
    with invalid, capture(ids=5):  # type: ignore[arg-type]
        pass


def test_capture_fixed_clock_seconds() -> None:
    with capture(clock=lambda: 1_700_000_000.25) as recorded:
        lookup("a")

    (event,) = recorded.events
    assert event["occurred_at"] == "2023-11-14T22:13:20.250Z"
    assert event["payload"]["duration_ms"] == 0.0


def test_capture_fixed_clock_datetime() -> None:
    moment = datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)

    with capture(clock=lambda: moment) as recorded:
        lookup("a")

    assert recorded.events[0]["occurred_at"] == "2024-01-02T03:04:05.678Z"


def test_capture_naive_datetime_reported() -> None:
    with capture(clock=lambda: datetime(2024, 1, 1)) as recorded:
        assert lookup("a") == "A"

    assert recorded.events == []
    assert recorded.client_errors
    assert "without a time zone" in recorded.client_errors[0].message


def test_capture_deterministic_snapshot() -> None:
    def run_once() -> list[dict[str, object]]:
        fixed = capture(ids=itertools.count(), clock=lambda: 0.0)
        with fixed as recorded, rankigi.run("flow"):
            lookup("a")
        return recorded.events

    assert run_once() == run_once()


def test_capture_client_options() -> None:
    with capture(agent_id="custom", capture="hash_only") as recorded:
        lookup("secret")

    (event,) = recorded.events
    assert event["agent_id"] == "custom"
    assert "input" not in event["payload"]


def test_capture_invalid_option() -> None:
    with (
        pytest.raises(ValueError, match=r"unknown option 'colour'"),
        capture(colour="blue"),
    ):
        pass


def test_capture_as_default() -> None:
    previous = default_client.client

    with capture(as_default=True) as recorded:
        assert default_client.client is recorded.client

    assert default_client.client is previous


def test_capture_nested_restores_outer() -> None:
    with capture() as outer:
        with capture() as inner:
            lookup("inner")
        lookup("outer")

    assert [e["payload"]["output"] for e in inner.events] == ["INNER"]
    assert [e["payload"]["output"] for e in outer.events] == ["OUTER"]


def test_capture_object_type() -> None:
    with capture() as recorded:
        assert isinstance(recorded, Capture)


def test_fixture_and_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import itertools

        import pytest

        import rankigi


        @rankigi.tool("refund")
        def refund(amount):
            return amount


        def test_plain(rankigi_capture):
            refund(5)
            (event,) = rankigi_capture.tool_calls("refund")
            assert event["payload"]["output"] == 5


        def test_isolated(rankigi_capture):
            assert rankigi_capture.events == []


        @pytest.mark.rankigi(ids=itertools.count(7), agent_id="marked")
        def test_marker(rankigi_capture):
            refund(1)
            (event,) = rankigi_capture.events
            assert event["event_id"] == "7"
            assert event["agent_id"] == "marked"
        """
    )

    result = pytester.runpytest("-p", "rankigi.testing", "--strict-markers")

    result.assert_outcomes(passed=3)


def test_entry_point_declared() -> None:
    if sys.version_info < (3, 11):
        pytest.skip("tomllib needs Python 3.11")
    import tomllib

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))

    entry_points = data["project"]["entry-points"]["pytest11"]
    assert entry_points == {"rankigi.testing": "rankigi.testing"}
