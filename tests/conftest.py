from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, Callable

import pytest

from rankigi import Rankigi, RankigiError
from tests.server_fixture import *  # noqa: F403 (the live server fixtures)
from tests.stub_server import StubServer


@pytest.fixture(autouse=True)
def _isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Keep tests off the user's environment and out of the working tree."""
    for name in list(os.environ):
        if name.startswith("RANKIGI_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = StubServer().start()
    yield server
    server.stop()


class ErrorLog(list[RankigiError]):
    def codes(self) -> list[str]:
        return [error.code for error in self]


@pytest.fixture
def errors() -> ErrorLog:
    return ErrorLog()


@pytest.fixture
def make_client(stub: StubServer, errors: ErrorLog) -> Iterator[Callable[..., Rankigi]]:
    clients: list[Rankigi] = []

    def make(**options: Any) -> Rankigi:
        options.setdefault("api_key", "rk_test_key")
        options.setdefault("agent_id", "agent-1")
        options.setdefault("base_url", stub.url)
        options.setdefault("retry_backoff_ms", 10)
        client = Rankigi(on_error=errors.append, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close(timeout=2)
