"""Fixtures of the reliability suite: the real server, the fault proxy, clients.

One ``rankigi serve`` process serves the whole session, and each test writes
to agent ids of its own, so tests never see each other's events. The
``errors`` fixture (a list of the reported ``RankigiError``) comes from the
conftest one folder up.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from rankigi import Rankigi, RankigiError
from tests.reliability.fault_proxy import FaultProxy
from tests.reliability.helpers import API_KEY, MakeClient, Server, clean_environment
from tests.server_fixture import ServeProcess


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``rankigi serve`` in a subprocess, on a free loopback port."""
    ledger_path = tmp_path_factory.mktemp("serve") / "ledger.db"
    process = ServeProcess(
        ledger_path,
        "--api-key",
        API_KEY,
        "--log-level",
        "warning",
        env=clean_environment(),
    )
    yield Server(process.url)
    status, _, err = process.stop()
    assert status == 0, err


@pytest.fixture
def proxy(server: Server) -> Iterator[FaultProxy]:
    """A fault proxy in front of the session's server, in ``pass`` mode."""
    fault_proxy = FaultProxy(server.url).start()
    yield fault_proxy
    fault_proxy.stop()


@pytest.fixture
def agent_id() -> str:
    return f"agent-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_client(
    proxy: FaultProxy, agent_id: str, errors: list[RankigiError]
) -> Iterator[MakeClient]:
    """Build clients that send through ``proxy``; close them after the test."""
    clients: list[Rankigi] = []

    def make(**options: Any) -> Rankigi:
        options.setdefault("api_key", API_KEY)
        options.setdefault("agent_id", agent_id)
        options.setdefault("base_url", proxy.url)
        options.setdefault("retry_backoff_ms", 50)
        options.setdefault("flush_interval_ms", 100)
        client = Rankigi(on_error=errors.append, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close(timeout=1)
