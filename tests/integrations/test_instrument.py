from __future__ import annotations

import importlib
import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

import rankigi
from rankigi import Rankigi
from rankigi._context import default_client, set_default_client, suppress_recording
from rankigi.integrations import INTEGRATIONS, parse_version
from rankigi.integrations._patching import PatchError, Patches
from rankigi.testing import Capture, capture

# The module, not the function that rankigi/__init__.py exports by its name.
instrument_module = importlib.import_module("rankigi.instrument")

ROOT = Path(__file__).resolve().parents[2]


def patched_attributes() -> list[tuple[type, str]]:
    """Every class attribute that instrument() replaces, for installed libraries."""
    found: list[tuple[type, str]] = []
    owner: type
    try:
        from openai.resources.chat.completions import completions
        from openai.resources.responses import responses
    except ImportError:
        pass
    else:
        for owner in (
            completions.Completions,
            completions.AsyncCompletions,
            responses.Responses,
            responses.AsyncResponses,
        ):
            found += [(owner, "create"), (owner, "parse"), (owner, "stream")]
    try:
        from anthropic.resources.messages import messages
    except ImportError:
        pass
    else:
        for owner in (messages.Messages, messages.AsyncMessages):
            found += [(owner, "create"), (owner, "parse"), (owner, "stream")]
    try:
        from langchain_core.tools.base import BaseTool
    except ImportError:
        pass
    else:
        found += [(BaseTool, name) for name in ("invoke", "ainvoke", "run", "arun")]
    try:
        from mcp.client.session import ClientSession
    except ImportError:
        pass
    else:
        found.append((ClientSession, "call_tool"))
    return found


@pytest.fixture
def restore_default() -> Iterator[None]:
    previous = default_client.client
    yield
    rankigi.uninstrument()
    set_default_client(previous)


@pytest.fixture
def memory_client(restore_default: None) -> Iterator[Rankigi]:
    with capture() as events:
        yield events.client


def run_python(code: str, cwd: Path) -> str:
    """Run ``code`` in a fresh interpreter, so imports start from nothing."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PYTHONPATH": str(ROOT),
            "PATH": "/usr/bin:/bin",
            "RANKIGI_AGENT_ID": "subprocess-agent",
        },
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_uninstrument_restores_exact_objects(memory_client: Rankigi) -> None:
    attributes = patched_attributes()
    if not attributes:
        pytest.skip("none of the instrumented libraries is installed")
    originals = [vars(owner)[name] for owner, name in attributes]

    for _ in range(3):
        rankigi.instrument(client=memory_client)
        for (owner, name), original in zip(attributes, originals):
            current = vars(owner)[name]
            assert current is not original, f"{owner.__name__}.{name}"
            # One layer: the wrapper wraps the original, not an old wrapper.
            assert current.__wrapped__ is original, f"{owner.__name__}.{name}"
        rankigi.uninstrument()
        for (owner, name), original in zip(attributes, originals):
            assert vars(owner)[name] is original, f"{owner.__name__}.{name}"
            assert getattr(owner, name) is original, f"{owner.__name__}.{name}"


def test_instrument_twice_changes_nothing(
    memory_client: Rankigi, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.tools.base import BaseTool

    first = rankigi.instrument(client=memory_client)
    wrapper = vars(BaseTool)["run"]
    second = rankigi.instrument()
    with caplog.at_level(logging.WARNING, logger="rankigi"):
        third = rankigi.instrument(agent_id="another-agent")

    assert first is second is third is memory_client
    assert vars(BaseTool)["run"] is wrapper
    assert rankigi.get_client() is memory_client
    assert "already called" in caplog.text


def test_instrument_returns_default_from_environment(
    restore_default: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RANKIGI_AGENT_ID", "env-agent")
    set_default_client(None)

    client = rankigi.instrument(only=[])
    try:
        assert client.agent_id == "env-agent"
        assert rankigi.get_client() is client
        assert client.config.uses_ledger
    finally:
        client.close()


def test_instrument_takes_existing_default(memory_client: Rankigi) -> None:
    set_default_client(memory_client)

    assert rankigi.instrument(only=[]) is memory_client


def test_client_with_options_rejected(memory_client: Rankigi) -> None:
    with pytest.raises(ValueError, match="client= cannot be combined"):
        rankigi.instrument(client=memory_client, agent_id="other")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"only": ["openai", "nope"]}, "only names unknown integrations nope"),
        ({"skip": ["langchian"]}, "skip names unknown integrations langchian"),
        ({"only": "openai"}, r"only='openai' is invalid; pass a list"),
    ],
)
def test_unknown_integration_names_rejected(
    memory_client: Rankigi, arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        rankigi.instrument(client=memory_client, **arguments)

    if "unknown" in message:
        assert "anthropic, langchain, mcp, openai" in str(raised.value)


def test_only_skip_and_environment_choose(
    memory_client: Rankigi, monkeypatch: pytest.MonkeyPatch
) -> None:
    rankigi.instrument(client=memory_client, only=["langchain", "mcp"], skip=["mcp"])
    assert set(instrument_module.instrumented()) <= {"langchain"}
    rankigi.uninstrument()

    monkeypatch.setenv("RANKIGI_DISABLED_INTEGRATIONS", " openai , mcp ")
    rankigi.instrument(client=memory_client)
    assert not {"openai", "mcp"} & set(instrument_module.instrumented())
    rankigi.uninstrument()

    monkeypatch.setenv("RANKIGI_DISABLED_INTEGRATIONS", "openai,typo")
    with pytest.raises(ValueError, match="RANKIGI_DISABLED_INTEGRATIONS names"):
        rankigi.instrument(client=memory_client)


def test_later_call_adds_integrations(memory_client: Rankigi) -> None:
    pytest.importorskip("langchain_core")
    pytest.importorskip("mcp")

    rankigi.instrument(client=memory_client, only=["langchain"])
    rankigi.instrument(only=["mcp"])

    assert {"langchain", "mcp"} <= set(instrument_module.instrumented())


def test_unsupported_version_warns_once_untouched(
    memory_client: Rankigi,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    attributes = patched_attributes()
    originals = [vars(owner)[name] for owner, name in attributes]
    monkeypatch.setattr(instrument_module, "installed_version", lambda name: "0.0.1")

    with caplog.at_level(logging.WARNING, logger="rankigi.instrument"):
        rankigi.instrument(client=memory_client)
        rankigi.instrument()

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(INTEGRATIONS)
    assert any("langchain-core 0.0.1" in w and ">=0.3,<2" in w for w in warnings)
    assert instrument_module.instrumented() == {}
    for (owner, name), original in zip(attributes, originals):
        assert vars(owner)[name] is original


def test_failed_patch_rolls_back(
    memory_client: Rankigi,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.tools.base import BaseTool

    import rankigi.integrations.langchain as integration

    original_run = vars(BaseTool)["run"]

    def half_patch(module: Any, patches: Patches) -> None:
        patches.wrap(module.BaseTool, "run", lambda w, i, a, k: w(*a, **k))
        patches.wrap(module.BaseTool, "no_such_method", lambda w, i, a, k: None)

    monkeypatch.setattr(integration, "patch_tools", half_patch)
    with caplog.at_level(logging.WARNING, logger="rankigi.instrument"):
        rankigi.instrument(client=memory_client, only=["langchain"])

    assert vars(BaseTool)["run"] is original_run
    assert "langchain" not in instrument_module.instrumented()
    assert "no_such_method" in caplog.text
    assert "left it unpatched" in caplog.text


def test_patch_error_names_missing_method() -> None:
    class Owner:
        pass

    with pytest.raises(PatchError, match="defines no method 'create'"):
        Patches("test").wrap(Owner, "create", lambda w, i, a, k: None)


def test_replaced_after_patch_left_in_place(caplog: pytest.LogCaptureFixture) -> None:
    class Owner:
        def method(self) -> str:
            return "original"

    patches = Patches("test")
    patches.wrap(Owner, "method", lambda w, i, a, k: "patched")
    assert Owner().method() == "patched"
    wrapper = vars(Owner)["method"]

    def replacement(self: Any) -> str:
        return "replaced " + str(wrapper(self))

    Owner.method = replacement  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="rankigi.integrations"):
        patches.restore()

    assert vars(Owner)["method"] is replacement
    # Our wrapper, still reachable below the replacement, passes calls on.
    assert Owner().method() == "replaced original"
    assert "was replaced after rankigi patched it" in caplog.text


def test_suppressed_thread_not_recorded(recorded: Capture) -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.tools import tool

    @tool
    def ping() -> str:
        """Answer pong."""
        return "pong"

    token = suppress_recording.set(True)
    try:
        assert ping.invoke({}) == "pong"
    finally:
        suppress_recording.reset(token)
    assert ping.invoke({}) == "pong"

    assert len(recorded.tool_calls("ping")) == 1


def test_sdk_requests_not_recorded(
    make_client: Callable[..., Rankigi], stub: Any, restore_default: None
) -> None:
    """The events reach a real ingest server as HTTP, and only the tool run."""
    pytest.importorskip("langchain_core")
    from langchain_core.tools import tool

    @tool
    def ping() -> str:
        """Answer pong."""
        return "pong"

    client = make_client()
    rankigi.instrument(client=client)
    assert ping.invoke({}) == "pong"
    assert client.flush(10)

    assert [event["action"] for event in stub.events.values()] == ["tool_call"]


def test_parse_version() -> None:
    assert parse_version("1.2.3") == (1, 2, 3)
    assert parse_version("0.3.0rc1") == (0, 3, 0)
    assert parse_version("2025.1") == (2025, 1)
    assert parse_version("unknown") == ()


# -- import order, in fresh interpreters --------------------------------


def test_instrument_imports_no_library(tmp_path: Path) -> None:
    output = run_python(
        """
        import sys
        import rankigi
        rankigi.instrument()
        names = ("openai", "anthropic", "langchain_core", "mcp")
        print([name for name in names if name in sys.modules])
        """,
        tmp_path,
    )
    assert output == "[]"


def test_library_imported_later_is_patched(tmp_path: Path) -> None:
    pytest.importorskip("langchain_core")
    output = run_python(
        """
        import rankigi
        for _ in range(3):
            rankigi.instrument()
            rankigi.uninstrument()
        rankigi.instrument()
        from langchain_core.tools.base import BaseTool
        wrapper = vars(BaseTool)["run"]
        print(type(wrapper).__name__, type(wrapper.__wrapped__).__name__)
        """,
        tmp_path,
    )
    # One wrapper around the plain function: cancelled hooks added none.
    assert output == "FunctionWrapper function"


def test_import_after_uninstrument_unpatched(tmp_path: Path) -> None:
    pytest.importorskip("langchain_core")
    output = run_python(
        """
        import rankigi
        rankigi.instrument()
        rankigi.uninstrument()
        rankigi.instrument(only=["mcp"])
        from langchain_core.tools.base import BaseTool
        print(type(vars(BaseTool)["run"]).__name__)
        """,
        tmp_path,
    )
    assert output == "function"


def test_exit_flushes_without_close(tmp_path: Path) -> None:
    pytest.importorskip("langchain_core")
    run_python(
        """
        import rankigi
        rankigi.instrument(agent_id="exit-agent")
        from langchain_core.tools import tool

        @tool
        def add(a: int, b: int) -> int:
            '''Add two integers.'''
            return a + b

        add.invoke({"a": 1, "b": 2})
        """,
        tmp_path,
    )
    output = run_python(
        """
        import json
        from rankigi.ledger import Ledger
        with Ledger(".rankigi/ledger.db") as ledger:
            events = ledger.events("exit-agent")
        print(json.dumps([event["payload"]["output"] for event in events]))
        """,
        tmp_path,
    )
    assert json.loads(output) == [3]
