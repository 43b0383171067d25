"""Arbitrary values and arguments into every tracking entry point.

Each example makes one call through a client on an embedded ledger, flushes,
and reads the ledger back. Nothing may raise into the caller, except a
decorated function's own exception, which must come back unchanged. Every
stored payload must be strict JSON and the chain must verify. Every call
must end as one stored event or one reported drop.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rankigi
from rankigi import Rankigi, RankigiError
from tests.reliability.helpers import LedgerFile, stored_payloads, strict_json
from tests.reliability.strategies import (
    HostileAttributes,
    HostileRepr,
    exceptions,
    names,
    severities,
    values,
)

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
METHODS = (
    "track_tool_call",
    "track_agent_output",
    "track_error",
    "track_custom_event",
)
# The parameters of each method in order, as (name, strategy, required).
# Required ones are always passed, and optional ones when a boolean draw is true.
Parameter = tuple[str, st.SearchStrategy[Any], bool]


def parameters(name_strategy: st.SearchStrategy[Any]) -> dict[str, list[Parameter]]:
    severity = severities if name_strategy is names else st.sampled_from(SEVERITIES)
    return {
        "track_tool_call": [
            ("tool", name_strategy, True),
            ("input", values, False),
            ("output", values, False),
            ("severity", severity, False),
        ],
        "track_agent_output": [
            ("action", name_strategy, True),
            ("output", values, False),
            ("severity", severity, False),
        ],
        "track_error": [
            ("tool", name_strategy, False),
            ("error", st.one_of(exceptions, values), False),
            ("severity", severity, False),
        ],
        "track_custom_event": [
            ("action", name_strategy, True),
            ("tool", name_strategy, False),
            ("payload", values, False),
            ("severity", severity, False),
        ],
    }


SEVERITIES = ["info", "warn", "critical"]
good_names = st.text(
    st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40
).filter(str.strip)


@st.composite
def track_calls(
    draw: st.DrawFn, name_strategy: st.SearchStrategy[Any]
) -> tuple[str, list[Any], dict[str, Any]]:
    """Draw a method, then its arguments, some positional, some by keyword."""
    method = draw(st.sampled_from(METHODS))
    chosen: list[tuple[str, Any]] = []
    contiguous = True
    prefix = 0
    for name, strategy, required in parameters(name_strategy)[method]:
        if required or draw(st.booleans()):
            chosen.append((name, draw(strategy)))
            prefix += contiguous
        else:
            contiguous = False
    # Only parameters before the first omitted one may be passed by position.
    positional = draw(st.integers(0, prefix))
    args = [value for _, value in chosen[:positional]]
    kwargs = dict(chosen[positional:])
    return method, args, kwargs


class Recorder:
    """A client on an embedded ledger and what each example added to it."""

    def __init__(self, path: Path, **options: Any) -> None:
        self.errors: list[RankigiError] = []
        self.agent_id = f"fuzz-{uuid.uuid4().hex[:8]}"
        self.client = Rankigi(
            agent_id=self.agent_id,
            ledger_path=str(path),
            on_error=self.errors.append,
            flush_interval_ms=60_000,
            **options,
        )
        self.ledger = LedgerFile(path)
        self.path = path
        self.stored = 0
        self.reported = 0

    def settle(self) -> tuple[list[dict[str, Any]], int]:
        """Flush, check the ledger, and return the new records and drops."""
        assert self.client.flush(30)
        records = self.ledger.records(self.agent_id)
        new = records[self.stored :]
        for text in stored_payloads(self.path, self.agent_id)[self.stored :]:
            strict_json(text)
        self.stored = len(records)
        result = self.ledger.verify(self.agent_id)
        assert result["valid"], result["reason"]
        dropped = sum(error.event_count for error in self.errors) - self.reported
        self.reported += dropped
        return new, dropped


@pytest.fixture
def recorder(tmp_path: Path) -> Any:
    made = Recorder(tmp_path / "fuzz.db")
    yield made
    made.client.close(5)


def test_track_methods_take_any_values(recorder: Recorder) -> None:
    @FUZZ
    @given(call=track_calls(good_names))
    def check(call: tuple[str, list[Any], dict[str, Any]]) -> None:
        method, args, kwargs = call
        event_id = getattr(recorder.client, method)(*args, **kwargs)

        new, dropped = recorder.settle()
        assert dropped == 0, [str(e) for e in recorder.errors[-1:]]
        assert event_id is not None
        assert [record["event_id"] for record in new] == [event_id]

    check()


def test_track_methods_take_any_names(recorder: Recorder) -> None:
    # Names and severities of any type: none may raise into the caller, and
    # an event that is not stored must be reported as dropped.
    @FUZZ
    @given(call=track_calls(names))
    def check(call: tuple[str, list[Any], dict[str, Any]]) -> None:
        method, args, kwargs = call
        event_id = getattr(recorder.client, method)(*args, **kwargs)

        new, dropped = recorder.settle()
        assert len(new) + dropped == 1
        if event_id is None:
            assert dropped == 1
        else:
            assert [record["event_id"] for record in new] in ([event_id], [])

    check()


# Cases the name fuzzing finds, each one a call that loses its event today.
ODD_NAME_CASES: list[tuple[str, Callable[[Rankigi], Optional[str]]]] = [
    ("empty-tool", lambda c: c.track_tool_call("", 1, 1)),
    ("none-tool", lambda c: c.track_tool_call(None, 1, 1)),  # type: ignore[arg-type]
    ("long-tool", lambda c: c.track_tool_call("t" * 300, 1, 1)),
    ("long-action", lambda c: c.track_custom_event("a" * 300)),
    ("surrogate-tool", lambda c: c.track_tool_call("\ud800", 1, 1)),
    ("surrogate-action", lambda c: c.track_agent_output("\udc80", 1)),
    ("empty-custom-tool", lambda c: c.track_custom_event("x", "")),
    ("list-severity", lambda c: c.track_tool_call("t", 1, 1, [])),  # type: ignore[arg-type]
    ("hostile-severity", lambda c: c.track_tool_call("t", 1, 1, HostileRepr())),  # type: ignore[arg-type]
    ("hostile-tool", lambda c: c.track_tool_call(HostileRepr(), 1, 1)),  # type: ignore[arg-type]
    ("no-attribute-action", lambda c: c.track_agent_output(HostileAttributes(), 1)),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(
    "call", [case for _, case in ODD_NAME_CASES], ids=[n for n, _ in ODD_NAME_CASES]
)
def test_odd_name_still_recorded(
    recorder: Recorder, call: Callable[[Rankigi], Optional[str]]
) -> None:
    event_id = call(recorder.client)

    new, _ = recorder.settle()
    assert recorder.errors == []
    assert event_id is not None
    assert [record["event_id"] for record in new] == [event_id]


class Plan:
    """What the decorated function does on its next call."""

    result: Any = None
    error: Optional[BaseException] = None


def make_body(plan: Plan, kind: str) -> Callable[..., Any]:
    def body(*args: Any, **kwargs: Any) -> Any:
        if plan.error is not None:
            raise plan.error
        return plan.result

    async def async_body(*args: Any, **kwargs: Any) -> Any:
        return body(*args, **kwargs)

    return async_body if kind == "async" else body


# "self" has its own test below, test_decorated_function_takes_self_keyword.
keyword_names = st.one_of(
    st.text(max_size=10).filter(lambda name: name != "self"),
    st.sampled_from(["args", "kwargs", "wrapped", "instance", "__class__"]),
)
raised_errors = st.one_of(
    st.none(), exceptions.filter(lambda e: isinstance(e, Exception))
)


@pytest.mark.parametrize(
    ("decorator", "kind"),
    [(rankigi.tool, "sync"), (rankigi.tool, "async"), (rankigi.action, "sync")],
    ids=["tool-sync", "tool-async", "action-sync"],
)
def test_decorated_function_takes_any_arguments(
    recorder: Recorder, decorator: Any, kind: str
) -> None:
    plan = Plan()
    decorated = decorator(client=recorder.client)(make_body(plan, kind))

    def invoke(args: list[Any], kwargs: dict[str, Any]) -> Any:
        if not inspect.iscoroutinefunction(decorated):
            return decorated(*args, **kwargs)
        # Not asyncio.run: on Python 3.11 it fails with the exception's repr
        # when the task raised an exception whose repr raises.
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(decorated(*args, **kwargs))
        finally:
            loop.close()

    @FUZZ
    @given(
        args=st.lists(values, max_size=4),
        kwargs=st.dictionaries(keyword_names, values, max_size=4),
        result=values,
        error=raised_errors,
    )
    def check(
        args: list[Any],
        kwargs: dict[str, Any],
        result: Any,
        error: Optional[BaseException],
    ) -> None:
        plan.result, plan.error = result, error
        if error is None:
            returned = invoke(args, kwargs)
            assert returned is result or _same_nan(returned, result)
        else:
            with pytest.raises(type(error)) as raised:
                invoke(args, kwargs)
            assert raised.value is error

        new, dropped = recorder.settle()
        assert dropped == 0, [str(e) for e in recorder.errors[-1:]]
        assert len(new) == 1

    check()


def _same_nan(left: Any, right: Any) -> bool:
    return isinstance(left, float) and math.isnan(left) and math.isnan(right)


def test_decorated_function_takes_self_keyword(recorder: Recorder) -> None:
    def body(*args: Any, **kwargs: Any) -> Any:
        return kwargs

    decorated = rankigi.tool(client=recorder.client)(body)

    assert decorated(self=1) == {"self": 1}
    new, _ = recorder.settle()
    assert len(new) == 1
