"""@rankigi.tool and @rankigi.action: events, options, metadata, pickling."""

from __future__ import annotations

import copy
import functools
import inspect
import logging
import multiprocessing
import pickle
import traceback
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

import rankigi
from rankigi import Rankigi
from rankigi._context import set_default_client, suppress_recording
from rankigi._exporters import MemoryExporter
from rankigi.testing import Capture, capture

# Module-level tools: pickling stores functions by module and qualified name.


@rankigi.tool
def square(x: int) -> int:
    """Return x squared."""
    return x * x


@rankigi.tool("stripe_refund", severity="warn")
def refund(charge_id: str, amount: int, currency: str = "usd") -> dict[str, Any]:
    return {"charge": charge_id, "refunded": amount, "currency": currency}


class Calculator:
    def __init__(self, offset: int) -> None:
        self.offset = offset

    @rankigi.tool
    def add(self, x: int) -> int:
        return x + self.offset


@pytest.fixture
def recorded() -> Iterator[Capture]:
    with capture() as events:
        yield events


@pytest.fixture(autouse=True)
def _no_default_client() -> Iterator[None]:
    previous = set_default_client(None)
    yield
    set_default_client(previous)


def memory_client(**options: Any) -> tuple[Rankigi, MemoryExporter]:
    exporter = MemoryExporter()
    options.setdefault("agent_id", "agent-1")
    return Rankigi(_exporter=exporter, **options), exporter


# -- the three forms ---------------------------------------------------------


def test_bare_form_records_tool_call(recorded: Capture) -> None:
    assert square(4) == 16

    (event,) = recorded.tool_calls()
    assert event["action"] == "tool_call"
    assert event["tool"] == "square"
    assert event["severity"] == "info"
    payload = event["payload"]
    assert payload["tool"] == "square"
    assert payload["input"] == {"x": 4}
    assert payload["output"] == 16
    assert payload["status"] == "ok"
    assert isinstance(payload["duration_ms"], float)
    assert payload["duration_ms"] >= 0
    assert len(payload["input_hash"]) == 64
    assert len(payload["output_hash"]) == 64
    assert "parent_event_id" not in payload
    assert "run_id" not in payload


def test_called_form_without_arguments(recorded: Capture) -> None:
    @rankigi.tool()
    def lookup(key: str) -> str:
        return key.upper()

    assert lookup("a") == "A"

    (event,) = recorded.tool_calls()
    assert event["tool"].endswith("lookup")
    assert event["payload"]["output"] == "A"


def test_named_form_with_options(recorded: Capture) -> None:
    assert refund("ch_1", 500) == {
        "charge": "ch_1",
        "refunded": 500,
        "currency": "usd",
    }

    (event,) = recorded.tool_calls("stripe_refund")
    assert event["severity"] == "warn"
    assert event["payload"]["input"] == {
        "charge_id": "ch_1",
        "amount": 500,
        "currency": "usd",
    }


def test_name_as_keyword(recorded: Capture) -> None:
    @rankigi.tool(name="kw_named")
    def f() -> int:
        return 1

    f()

    assert [e["tool"] for e in recorded.tool_calls()] == ["kw_named"]


def test_one_event_per_call(recorded: Capture) -> None:
    for value in range(3):
        square(value)

    outputs = [e["payload"]["output"] for e in recorded.tool_calls("square")]
    assert outputs == [0, 1, 4]
    assert len({e["event_id"] for e in recorded.events}) == 3


# -- arguments ---------------------------------------------------------------


def test_arguments_bound_with_defaults(recorded: Capture) -> None:
    @rankigi.tool("bind")
    def f(
        a: int, /, b: int, c: int = 3, *rest: int, d: int, e: int = 5, **extra: int
    ) -> None:
        pass

    f(1, 2, d=4)
    f(1, 2, 30, 40, 50, d=4, e=6, z=7)

    first, second = (e["payload"]["input"] for e in recorded.tool_calls("bind"))
    assert first == {"a": 1, "b": 2, "c": 3, "rest": [], "d": 4, "e": 5, "extra": {}}
    assert second == {
        "a": 1,
        "b": 2,
        "c": 30,
        "rest": [40, 50],
        "d": 4,
        "e": 6,
        "extra": {"z": 7},
    }


def test_keyword_arguments_bound_by_name(recorded: Capture) -> None:
    refund(amount=10, charge_id="ch_2")

    (event,) = recorded.tool_calls("stripe_refund")
    assert event["payload"]["input"] == {
        "charge_id": "ch_2",
        "amount": 10,
        "currency": "usd",
    }


def test_method_input_leaves_out_self(recorded: Capture) -> None:
    calculator = Calculator(10)

    assert calculator.add(5) == 15
    assert Calculator.add(calculator, 6) == 16

    inputs = [e["payload"]["input"] for e in recorded.tool_calls("Calculator.add")]
    assert inputs == [{"x": 5}, {"x": 6}]


def test_arguments_that_do_not_fit_recorded_raw(recorded: Capture) -> None:
    with pytest.raises(TypeError):
        square(1, 2)  # type: ignore[call-arg]

    (event,) = recorded.tool_calls("square")
    assert event["payload"]["status"] == "error"
    assert event["payload"]["input"] == {"args": [1, 2], "kwargs": {}}
    assert event["payload"]["error_type"] == "TypeError"


def test_builtin_without_signature_recorded_raw(recorded: Capture) -> None:
    # max publishes no signature that inspect can read.
    biggest = rankigi.tool("biggest")(max)

    assert biggest(3, 7, key=abs) == 7

    (event,) = recorded.tool_calls("biggest")
    assert event["payload"]["input"] == {"args": [3, 7], "kwargs": {"key": "abs"}}


def test_iterator_arguments_never_consumed(recorded: Capture) -> None:
    @rankigi.tool("takes_iterators")
    def f(items: Iterator[int], numbers: Iterator[int]) -> str:
        return "untouched"

    items = (n for n in range(3))
    numbers = iter([1, 2, 3])

    assert f(items, numbers) == "untouched"

    assert list(items) == [0, 1, 2]
    assert list(numbers) == [1, 2, 3]
    (event,) = recorded.tool_calls("takes_iterators")
    recorded_input = event["payload"]["input"]
    assert recorded_input["items"].startswith("<generator ")
    assert recorded_input["numbers"] == "<iterator list_iterator>"


def test_input_snapshot_taken_at_call(recorded: Capture) -> None:
    @rankigi.tool("mutates")
    def f(items: list[int]) -> int:
        items.append(99)
        return len(items)

    f([1])

    (event,) = recorded.tool_calls("mutates")
    assert event["payload"]["input"] == {"items": [1]}
    assert event["payload"]["output"] == 2


def test_output_returned_unchanged(recorded: Capture) -> None:
    marker = object()

    @rankigi.tool("identity")
    def f() -> object:
        return marker

    assert f() is marker


# -- exceptions --------------------------------------------------------------


def test_exception_reraised_same_object(recorded: Capture) -> None:
    error = ValueError("card declined")

    @rankigi.tool("charge")
    def charge(amount: int) -> None:
        raise error

    with pytest.raises(ValueError) as info:
        charge(5)

    assert info.value is error
    innermost = traceback.extract_tb(error.__traceback__)[-1]
    assert innermost.name == "charge"
    assert innermost.line == "raise error"


def test_exception_recorded_in_tool_call(recorded: Capture) -> None:
    @rankigi.tool("charge")
    def charge(amount: int) -> None:
        raise ValueError(f"card declined for {amount}")

    with pytest.raises(ValueError):
        charge(5)

    (event,) = recorded.events
    assert event["action"] == "tool_call"
    assert event["tool"] == "charge"
    payload = event["payload"]
    assert payload["status"] == "error"
    assert payload["input"] == {"amount": 5}
    assert "output" not in payload
    assert payload["error_type"] == "ValueError"
    assert payload["error_message"] == "card declined for 5"
    assert "in charge" in payload["traceback"]
    assert 'raise ValueError(f"card declined for {amount}")' in payload["traceback"]
    assert len(payload["error_hash"]) == 64
    assert isinstance(payload["duration_ms"], float)


def test_failed_tool_records_no_error_event(recorded: Capture) -> None:
    @rankigi.tool("charge")
    def charge() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        charge()

    assert recorded.errors() == []
    assert len(recorded.tool_calls(status="error")) == 1


def test_base_exception_recorded_and_reraised(recorded: Capture) -> None:
    @rankigi.tool("interrupted")
    def f() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        f()

    (event,) = recorded.tool_calls("interrupted")
    assert event["payload"]["error_type"] == "KeyboardInterrupt"


def test_hash_only_client_drops_error_text() -> None:
    with capture(capture="hash_only") as recorded:

        @rankigi.tool("charge")
        def charge(card: str) -> None:
            raise ValueError(f"card {card} declined")

        with pytest.raises(ValueError):
            charge("4242")

    (event,) = recorded.events
    payload = event["payload"]
    assert payload["error_type"] == "ValueError"
    assert "error_message" not in payload
    assert "traceback" not in payload
    assert "input" not in payload
    assert len(payload["input_hash"]) == 64


# -- action ------------------------------------------------------------------


def test_action_records_agent_output(recorded: Capture) -> None:
    @rankigi.action("generate_report")
    def generate_report(quarter: str) -> str:
        return f"report for {quarter}"

    assert generate_report("Q3") == "report for Q3"

    (event,) = recorded.outputs("generate_report")
    assert event["action"] == "response_generated"
    assert event["tool"] is None
    payload = event["payload"]
    assert payload["action"] == "generate_report"
    assert payload["output"] == "report for Q3"
    assert len(payload["output_hash"]) == 64
    assert payload["status"] == "ok"
    assert "input" not in payload
    assert recorded.tool_calls() == []


def test_action_bare_form_and_input(recorded: Capture) -> None:
    @rankigi.action
    def summarize(text: str) -> str:
        return text[:3]

    @rankigi.action("with_input", capture_input=True)
    def with_input(text: str) -> str:
        return text

    summarize("abcdef")
    with_input("x")

    first, second = recorded.outputs()
    assert first["payload"]["action"].endswith("summarize")
    assert first["payload"]["output"] == "abc"
    assert second["payload"]["input"] == {"text": "x"}


def test_action_failure_records_error_event(recorded: Capture) -> None:
    error = RuntimeError("model timed out")

    @rankigi.action("generate_report")
    def generate_report() -> str:
        raise error

    with pytest.raises(RuntimeError) as info:
        generate_report()

    assert info.value is error
    assert recorded.outputs() == []
    (event,) = recorded.errors("generate_report")
    assert event["action"] == "error"
    payload = event["payload"]
    assert payload["action"] == "generate_report"
    assert payload["tool"] is None
    assert payload["status"] == "error"
    assert payload["error_type"] == "RuntimeError"
    assert payload["error_message"] == "model timed out"


# -- options -----------------------------------------------------------------


@pytest.mark.parametrize("mode", [False, "off"])
def test_capture_off_leaves_values_out(recorded: Capture, mode: Any) -> None:
    @rankigi.tool("quiet", capture_input=mode, capture_output=mode)
    def f(secret: str) -> str:
        return secret * 2

    assert f("ab") == "abab"

    (event,) = recorded.tool_calls("quiet")
    payload = event["payload"]
    for key in ("input", "input_hash", "output", "output_hash"):
        assert key not in payload
    assert payload["status"] == "ok"


def test_capture_hash_only_per_decorator(recorded: Capture) -> None:
    @rankigi.tool("hashed", capture_input="hash_only", capture_output="hash_only")
    def f(text: str) -> str:
        return text.upper()

    f("abc")

    (event,) = recorded.tool_calls("hashed")
    payload = event["payload"]
    assert "input" not in payload
    assert "output" not in payload
    # The hashes of the canonical JSON the full capture would have hashed.
    assert payload["input_hash"] == _sha256_of('{"text":"abc"}')
    assert payload["input_size"] == len('{"text":"abc"}')
    assert payload["output_hash"] == _sha256_of('"ABC"')
    assert payload["output_size"] == 5


def test_capture_full_matches_hash_only(recorded: Capture) -> None:
    @rankigi.tool("full")
    def full(text: str) -> str:
        return text

    @rankigi.tool("hashed", capture_input="hash_only", capture_output="hash_only")
    def hashed(text: str) -> str:
        return text

    full("same")
    hashed("same")

    (full_event,) = recorded.tool_calls("full")
    (hashed_event,) = recorded.tool_calls("hashed")
    for key in ("input_hash", "output_hash"):
        assert full_event["payload"][key] == hashed_event["payload"][key]


def test_redact_arguments_and_paths(recorded: Capture) -> None:
    @rankigi.tool("pay", redact=["cvv", "card.number", "items.*.ssn"])
    def pay(card: dict[str, str], cvv: str, items: list[dict[str, str]]) -> str:
        return "ok"

    card = {"number": "4242", "holder": "Ann"}
    pay(card, "123", [{"ssn": "1", "name": "a"}])

    (event,) = recorded.tool_calls("pay")
    assert event["payload"]["input"] == {
        "card": {"number": "[REDACTED]", "holder": "Ann"},
        "cvv": "[REDACTED]",
        "items": [{"ssn": "[REDACTED]", "name": "a"}],
    }
    assert card["number"] == "4242"


def test_client_secret_keys_apply_to_arguments(recorded: Capture) -> None:
    @rankigi.tool("login")
    def login(user: str, password: str) -> bool:
        return True

    login("ann", "hunter2")

    (event,) = recorded.tool_calls("login")
    assert event["payload"]["input"] == {"user": "ann", "password": "[REDACTED]"}


def test_redact_output_paths(recorded: Capture) -> None:
    @rankigi.tool("lookup", redact_output=["customer.email"])
    def lookup() -> dict[str, Any]:
        return {"customer": {"email": "a@example.com", "id": 7}}

    assert lookup()["customer"]["email"] == "a@example.com"

    (event,) = recorded.tool_calls("lookup")
    assert event["payload"]["output"] == {"customer": {"email": "[REDACTED]", "id": 7}}


def test_explicit_client_wins(recorded: Capture) -> None:
    client, exporter = memory_client()

    @rankigi.tool("explicit", client=client)
    def f() -> int:
        return 1

    f()
    client.flush()
    client.close()

    assert [e["tool"] for e in exporter.events] == ["explicit"]
    assert recorded.events == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"severity": "loud"}, r"severity='loud' is invalid; use one of"),
        ({"capture_input": "raw"}, r"capture_input='raw' is invalid; pass True"),
        ({"capture_output": 1}, r"capture_output=1 is invalid"),
        ({"redact": "card"}, r"redact='card' is invalid; pass a list"),
        ({"redact": ["a..b"]}, r"redact is invalid: invalid redaction path"),
        ({"redact_output": "x"}, r"redact_output='x' is invalid"),
        ({"client": "key"}, r"client='key' is invalid; pass a rankigi.Rankigi"),
    ],
)
def test_invalid_option_raises(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rankigi.tool("x", **options)
    with pytest.raises(ValueError, match=message):
        rankigi.action("x", **options)


@pytest.mark.parametrize("name", ["", "   ", 5])
def test_invalid_name_raises(name: Any) -> None:
    with pytest.raises(ValueError, match=r"name=.* is invalid; pass a non-empty"):
        rankigi.tool(name)


def test_decorating_non_callable_raises() -> None:
    decorate = rankigi.tool("x")
    with pytest.raises(TypeError, match=r"cannot decorate 5: it is not callable"):
        decorate(5)  # type: ignore[arg-type]


# -- metadata ----------------------------------------------------------------


def test_metadata_preserved() -> None:
    def original(x: int, y: str = "a") -> int:
        """Docstring."""
        return x

    decorated = rankigi.tool(original)

    assert decorated.__name__ == "original"
    assert decorated.__qualname__ == original.__qualname__
    assert decorated.__doc__ == "Docstring."
    assert decorated.__module__ == __name__
    assert decorated.__wrapped__ is original  # type: ignore[attr-defined]
    assert inspect.signature(decorated) == inspect.signature(original)
    assert inspect.isfunction(decorated)


def test_copy_returns_same_function() -> None:
    assert copy.copy(square) is square
    assert copy.deepcopy(square) is square
    assert copy.deepcopy({"f": square})["f"] is square


def test_module_function_pickles_by_name() -> None:
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.loads(pickle.dumps(square, protocol)) is square
    data = pickle.dumps(square)
    assert b"square" in data
    assert len(data) < 100


def test_bound_method_pickles() -> None:
    calculator = Calculator(3)

    restored = pickle.loads(pickle.dumps(calculator.add))

    assert restored(4) == 7


def test_local_function_does_not_pickle() -> None:
    @rankigi.tool
    def local() -> None:
        pass

    with pytest.raises((pickle.PicklingError, AttributeError)):
        pickle.dumps(local)


def test_partial_does_not_pickle_by_name() -> None:
    decorated = rankigi.tool("part")(functools.partial(int, base=2))
    with pytest.raises(TypeError, match=r"cannot pickle .*: only decorated"):
        pickle.dumps(decorated)


def test_runs_in_process_pool() -> None:
    # spawn starts a fresh interpreter, which finds the tool by name.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        results = list(pool.map(square, [2, 3]))
        assert pool.submit(refund, "ch_9", 1).result()["refunded"] == 1

    assert results == [4, 9]


# -- which client records ----------------------------------------------------


def test_no_client_runs_unrecorded(caplog: pytest.LogCaptureFixture) -> None:
    @rankigi.tool("lonely")
    def f(x: int) -> int:
        return x + 1

    with caplog.at_level(logging.DEBUG, logger="rankigi"):
        assert f(1) == 2
        assert f(2) == 3

    lines = [r for r in caplog.records if "lonely ran unrecorded" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].levelno == logging.DEBUG
    assert "rankigi.init()" in lines[0].getMessage()


def test_active_client_beats_default() -> None:
    default, default_events = memory_client(agent_id="default")
    active, active_events = memory_client(agent_id="active")
    set_default_client(default)

    square(2)
    with rankigi.use(active):
        square(3)
    square(4)
    for client in (default, active):
        client.close()

    assert [e["payload"]["output"] for e in default_events.events] == [4, 16]
    assert [e["payload"]["output"] for e in active_events.events] == [9]


def test_with_client_block_records() -> None:
    client, exporter = memory_client()

    with client:
        square(5)

    assert [e["payload"]["output"] for e in exporter.events] == [25]
    assert rankigi.get_client() is None


def test_init_default_client_records() -> None:
    exporter = MemoryExporter()
    client = rankigi.init(agent_id="from-init", _exporter=exporter)

    square(6)
    client.close()

    assert [e["agent_id"] for e in exporter.events] == ["from-init"]


def test_disabled_client_records_nothing() -> None:
    client, exporter = memory_client(enabled=False)

    with rankigi.use(client):
        assert square(3) == 9
    client.close()

    assert exporter.events == []


def test_suppressed_context_records_nothing(recorded: Capture) -> None:
    token = suppress_recording.set(True)
    try:
        assert square(3) == 9
    finally:
        suppress_recording.reset(token)

    assert recorded.events == []


def test_capture_failure_never_raises(recorded: Capture) -> None:
    def broken_id() -> str:
        raise RuntimeError("no ids left")

    recorded.client._core.factory.new_id = broken_id

    assert square(3) == 9

    assert recorded.events == []
    (error,) = recorded.client_errors
    assert error.code == "CAPTURE_FAILED"
    assert "square" in error.message


def test_track_calls_inside_tool_get_parent(recorded: Capture) -> None:
    @rankigi.tool("outer")
    def outer() -> None:
        recorded.client.track_custom_event("note", payload={"a": 1})

    outer()

    note, tool_call = recorded.events
    assert note["payload"]["parent_event_id"] == tool_call["event_id"]


def _sha256_of(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def test_async_client_records_decorated_calls() -> None:
    import asyncio

    exporter = MemoryExporter()

    @rankigi.tool("async_tool")
    async def async_tool(x: int) -> int:
        return x * 2

    async def main() -> int:
        async with rankigi.AsyncRankigi(agent_id="async", _exporter=exporter):
            return await async_tool(4)

    assert asyncio.run(main()) == 8
    assert [e["payload"]["output"] for e in exporter.events] == [8]
    assert [e["agent_id"] for e in exporter.events] == ["async"]
