"""A LangChain agent loop recorded by ``rankigi.instrument()`` alone.

The chat model is ``GenericFakeChatModel`` from ``langchain-core``, driven by
a script that reads the conversation, so it runs offline and the same way
every time. The tools do real local work: one counts the words of a file,
the other evaluates arithmetic. No tool is decorated: ``rankigi.instrument()``
records every tool run as a ``tool_call`` event. With no API key set, the
events go into the embedded ledger (``.rankigi/ledger.db``, or
``RANKIGI_LEDGER_PATH``), and the script ends by verifying the agent's hash
chain.

Run it with ``python examples/langchain_agent.py`` after
``pip install langchain-core``.
"""

from __future__ import annotations

import ast
import operator
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Callable

import rankigi

AGENT_ID = "langchain-agent"

NOTES = """\
The audit trail records every tool call of the agent.
Each event is chained to the one before it by its hash,
so an edit anywhere breaks every later link.
"""

# rankigi.instrument() is called before LangChain is imported, so the
# tools module is patched as it loads; calling it later works as well.
client = rankigi.instrument(agent_id=AGENT_ID)

from langchain_core.language_models.fake_chat_models import (  # noqa: E402
    GenericFakeChatModel,
)
from langchain_core.messages import (  # noqa: E402
    AIMessage,
    BaseMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.runnables import Runnable  # noqa: E402
from langchain_core.tools import BaseTool, tool  # noqa: E402
from langchain_core.utils.function_calling import convert_to_openai_tool  # noqa: E402

_OPERATORS: dict[type, Callable[..., float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
}


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.operand))
    raise ValueError(f"unsupported expression element: {ast.dump(node)}")


@tool
def calculate(expression: str) -> float:
    """Evaluate an arithmetic expression with + - * / ** and parentheses."""
    return _evaluate(ast.parse(expression, mode="eval").body)


@tool
def count_words(path: str) -> int:
    """Count the words of a UTF-8 text file."""
    return len(Path(path).read_text(encoding="utf-8").split())


class ScriptedChatModel(GenericFakeChatModel):
    """``GenericFakeChatModel`` that accepts ``bind_tools``, as real models do."""

    def bind_tools(  # type: ignore[override]
        self, tools: Sequence[Any], **kwargs: Any
    ) -> Runnable[Any, BaseMessage]:
        schemas = [convert_to_openai_tool(item) for item in tools]
        return self.bind(tools=schemas, **kwargs)


def script(conversation: list[BaseMessage], notes: Path) -> Iterator[AIMessage]:
    """Yield the replies of a tool-calling model that reads the tool results.

    A generator runs up to each ``yield`` only when the model is invoked, so
    each step reads the tool messages that the loop appended before it.
    """
    count = {"name": "count_words", "args": {"path": str(notes)}, "id": "call_1"}
    yield AIMessage(content="", tool_calls=[count])
    words = conversation[-1].content
    expression = f"{words} * 3"
    math = {"name": "calculate", "args": {"expression": expression}, "id": "call_2"}
    yield AIMessage(content="", tool_calls=[math])
    total = conversation[-1].content
    yield AIMessage(
        content=f"The notes have {words} words, so three copies have {total}."
    )


def run_agent(question: str, notes: Path, max_steps: int = 5) -> str:
    """Run the tools that the model requests until it replies without tool calls."""
    tools: dict[str, BaseTool] = {t.name: t for t in (calculate, count_words)}
    conversation: list[BaseMessage] = [HumanMessage(question)]
    model = ScriptedChatModel(messages=script(conversation, notes)).bind_tools(
        list(tools.values())
    )
    for _ in range(max_steps):
        reply = model.invoke(conversation)
        conversation.append(reply)
        if not isinstance(reply, AIMessage) or not reply.tool_calls:
            return str(reply.content)
        for call in reply.tool_calls:
            result = tools[call["name"]].invoke({**call, "type": "tool_call"})
            assert isinstance(result, ToolMessage)
            conversation.append(result)
    raise RuntimeError(
        f"the model still requested tools after {max_steps} steps; raise max_steps"
    )


def verify() -> int:
    """Flush the events and verify the agent's chain; return the exit status."""
    if not client.flush(10):
        print("the events were not all written within 10 s", file=sys.stderr)
        return 1
    if not client.config.uses_ledger:
        print(f"events sent to {client.config.base_url}; verify them there")
        return 0
    from rankigi.ledger import Ledger

    with Ledger(client.config.ledger_path) as ledger:
        calls = ledger.events(AGENT_ID, action="tool_call")
        result = ledger.verify(AGENT_ID)
    for event in calls[-2:]:
        payload = event["payload"]
        print(f"  {event['tool_invoked']}: {payload['input']} -> {payload['output']}")
    state = (
        "valid" if result.valid else f"BROKEN at {result.broken_at}: {result.reason}"
    )
    print(f"chain of {AGENT_ID}: {result.event_count} events, {state}")
    return 0 if result.valid else 1


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        notes = Path(folder) / "notes.txt"
        notes.write_text(NOTES, encoding="utf-8")
        answer = run_agent("How many words would three copies of my notes have?", notes)
    print(answer)
    return verify()


if __name__ == "__main__":
    sys.exit(main())
