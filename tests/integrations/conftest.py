from __future__ import annotations

from collections.abc import Iterator

import pytest

import rankigi
from rankigi._context import default_client, set_default_client
from rankigi.testing import Capture, capture
from tests.integrations.stub_llm import StubLLM


@pytest.fixture(scope="session")
def stub_llm() -> Iterator[StubLLM]:
    server = StubLLM().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, stub_llm: StubLLM) -> None:
    """Point every SDK client at the stub, even one built without base_url."""
    monkeypatch.setenv("OPENAI_BASE_URL", f"{stub_llm.url}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-key")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", stub_llm.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-not-a-key")
    # LangSmith tracing would send runs to its service.
    monkeypatch.setenv("LANGSMITH_TRACING", "false")
    monkeypatch.setenv("LANGCHAIN_TRACING_V2", "false")


@pytest.fixture
def recorded() -> Iterator[Capture]:
    """Instrument every library into an in-memory client, for one test."""
    previous = default_client.client
    with capture() as events:
        rankigi.instrument(client=events.client)
        try:
            yield events
        finally:
            rankigi.uninstrument()
            set_default_client(previous)
