from __future__ import annotations

import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Callable

import pytest

import rankigi
from rankigi.testing import Capture

pytest.importorskip("mcp")
import anyio
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

try:
    from mcp.shared.exceptions import MCPError as TimeoutFailure
except ImportError:  # mcp 1.x
    from mcp.shared.exceptions import McpError as TimeoutFailure  # type: ignore

SERVER = Path(__file__).with_name("mcp_server.py")

Body = Callable[[ClientSession], Awaitable[Any]]


def with_session(body: Body, errlog: Any) -> Any:
    """Start the stub server over stdio, run ``body`` with a session, stop it."""

    async def main() -> Any:
        parameters = StdioServerParameters(command=sys.executable, args=[str(SERVER)])
        # Nested, because parenthesized context managers need Python 3.10.
        async with stdio_client(parameters, errlog=errlog) as (read, write):  # noqa: SIM117
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await body(session)

    return anyio.run(main)


@pytest.fixture
def errlog(tmp_path: Path) -> Any:
    # The server logs the tracebacks of failing tools to stderr.
    with open(tmp_path / "server.log", "w") as file:
        yield file


def test_call_tool_results_and_errors(recorded: Capture, errlog: Any) -> None:
    async def body(session: ClientSession) -> list[Any]:
        @rankigi.tool("agent_step")
        async def step() -> list[Any]:
            return [
                await session.call_tool("add", {"a": 2, "b": 3}),
                await session.call_tool("fail", arguments={"reason": "test"}),
            ]

        results: list[Any] = await step()
        with pytest.raises(TimeoutFailure) as raised:
            await session.call_tool("wait", {"seconds": 1}, read_timeout_seconds=0.2)
        results.append(raised.value)
        return results

    added, failed, timed_out = with_session(body, errlog)

    assert added.is_error is False
    assert added.structured_content == {"result": 5}
    assert failed.is_error is True
    assert isinstance(timed_out, TimeoutFailure)

    (event,) = recorded.tool_calls("add")
    payload = event["payload"]
    assert payload["integration"] == "mcp"
    assert payload["server"] == "stub-tools"
    assert payload["input"] == {"a": 2, "b": 3}
    assert payload["output"]["structured_content"] == {"result": 5}
    assert payload["status"] == "ok"

    (step,) = recorded.tool_calls("agent_step")
    assert payload["parent_event_id"] == step["event_id"]

    (fail_event,) = recorded.tool_calls("fail")
    assert fail_event["payload"]["status"] == "error"
    assert fail_event["payload"]["input"] == {"reason": "test"}
    assert "fail" in fail_event["payload"]["error_message"]

    (wait_event,) = recorded.tool_calls("wait")
    assert wait_event["payload"]["status"] == "error"
    assert wait_event["payload"]["error_type"].endswith(TimeoutFailure.__qualname__)
    assert "timed out" in wait_event["payload"]["error_message"]
