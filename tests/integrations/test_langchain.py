from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import rankigi
from rankigi.testing import Capture

pytest.importorskip("langchain_core")
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool, StructuredTool, ToolException, tool


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def shout(text: str) -> str:
    """Return the text in capitals."""
    return text.upper()


@tool
def explode(reason: str) -> str:
    """Always raise."""
    raise RuntimeError(f"exploded: {reason}")


@tool
async def add_later(a: int, b: int) -> int:
    """Add two integers, asynchronously."""
    await asyncio.sleep(0)
    return a + b


def calls(events: Capture, name: str) -> list[dict[str, Any]]:
    return events.tool_calls(name)


def test_invoke_records_tool_call(recorded: Capture) -> None:
    assert add.invoke({"a": 2, "b": 3}) == 5

    (event,) = calls(recorded, "add")
    payload = event["payload"]
    assert payload["tool"] == "add"
    assert payload["integration"] == "langchain"
    assert payload["input"] == {"a": 2, "b": 3}
    assert payload["output"] == 5
    assert payload["status"] == "ok"
    assert "tool_call_id" not in payload


def test_invoke_with_tool_call(recorded: Capture) -> None:
    call = {
        "name": "add",
        "args": {"a": 1, "b": 1},
        "id": "call_7",
        "type": "tool_call",
    }
    message = add.invoke(call)

    assert isinstance(message, ToolMessage)
    assert message.content == "2"
    (event,) = calls(recorded, "add")
    assert event["payload"]["input"] == {"a": 1, "b": 1}
    assert event["payload"]["output"] == "2"
    assert event["payload"]["tool_call_id"] == "call_7"


def test_run_and_string_input(recorded: Capture) -> None:
    assert shout.run("hello") == "HELLO"
    assert add.run({"a": 4, "b": 5}) == 9

    (shouted,) = calls(recorded, "shout")
    assert shouted["payload"]["input"] == "hello"
    assert shouted["payload"]["output"] == "HELLO"
    assert calls(recorded, "add")[0]["payload"]["output"] == 9


def test_error_recorded_and_reraised(recorded: Capture) -> None:
    with pytest.raises(RuntimeError, match="exploded: now"):
        explode.invoke({"reason": "now"})

    (event,) = calls(recorded, "explode")
    payload = event["payload"]
    assert payload["status"] == "error"
    assert payload["error_type"] == "RuntimeError"
    assert payload["error_message"] == "exploded: now"


def test_handled_tool_error_has_error_status(recorded: Capture) -> None:
    def fail(city: str) -> str:
        raise ToolException(f"no weather for {city}")

    weather = StructuredTool.from_function(
        fail, name="weather", description="Weather.", handle_tool_error=True
    )
    call = {
        "name": "weather",
        "args": {"city": "Oslo"},
        "id": "c1",
        "type": "tool_call",
    }
    message = weather.invoke(call)

    assert message.status == "error"
    (event,) = calls(recorded, "weather")
    assert event["payload"]["status"] == "error"
    assert event["payload"]["error_message"] == "no weather for Oslo"


def test_ainvoke_and_arun(recorded: Capture) -> None:
    async def run() -> tuple[int, int, int]:
        return (
            await add_later.ainvoke({"a": 1, "b": 2}),
            await add_later.arun({"a": 3, "b": 4}),
            # A sync tool invoked asynchronously runs invoke() in a thread.
            await add.ainvoke({"a": 5, "b": 6}),
        )

    assert asyncio.run(run()) == (3, 7, 11)
    assert [e["payload"]["output"] for e in calls(recorded, "add_later")] == [3, 7]
    assert [e["payload"]["output"] for e in calls(recorded, "add")] == [11]


def test_subclass_calling_super_is_one_event(recorded: Capture) -> None:
    class Doubler(BaseTool):
        name: str = "doubler"
        description: str = "Double a number."

        def _run(self, value: str) -> int:
            return int(value) * 2

        def invoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
            return super().invoke(input, config, **kwargs)

        def run(self, tool_input: Any, *args: Any, **kwargs: Any) -> Any:
            return super().run(tool_input, *args, **kwargs)

    assert Doubler().invoke("21") == 42
    (event,) = calls(recorded, "doubler")
    assert event["payload"]["input"] == "21"


def test_nested_in_decorated_call(recorded: Capture) -> None:
    @rankigi.tool("plan")
    def plan() -> int:
        return int(add.invoke({"a": 1, "b": 2})) + int(add.invoke({"a": 3, "b": 4}))

    with rankigi.run("agent-run") as current:
        assert plan() == 10

    (parent,) = calls(recorded, "plan")
    children = recorded.children(parent)
    assert [child["tool"] for child in children] == ["add", "add"]
    assert all(child["payload"]["run_id"] == current.run_id for child in children)


def test_tool_calling_other_tool_records_both(recorded: Capture) -> None:
    @tool
    def add_then_shout(a: int, b: int) -> str:
        """Add, then shout the sum."""
        return str(shout.invoke(str(add.invoke({"a": a, "b": b}))))

    assert add_then_shout.invoke({"a": 1, "b": 2}) == "3"
    (outer,) = calls(recorded, "add_then_shout")
    children = recorded.children(outer)
    assert [child["tool"] for child in children] == ["add", "shout"]


def test_example_agent_verifies_chain(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, str(root / "examples" / "langchain_agent.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "The notes have 30 words, so three copies have 90.0."
    assert "count_words: {'path':" in lines[1]
    assert lines[2] == "  calculate: {'expression': '30 * 3'} -> 90.0"
    assert lines[3] == "chain of langchain-agent: 2 events, valid"
    assert (tmp_path / ".rankigi" / "ledger.db").exists()
