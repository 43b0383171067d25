"""``rankigi serve`` as a command: keys, output, start-up errors, shutdown."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from rankigi.cli import main
from rankigi.ledger import Ledger
from rankigi.server._runner import is_loopback
from tests.server_fixture import ServeProcess


def ingest(url: str, key: str, agent_id: str = "agent-1") -> httpx.Response:
    event = {"agent_id": agent_id, "action": "step", "payload": {"n": 1}}
    return httpx.post(
        url + "/api/ingest",
        json=event,
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )


def test_generated_key_printed_once(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path / "ledger.db", generated_key=True)
    try:
        key = server.generated_key
        assert key is not None
        assert server.url.startswith("http://127.0.0.1:")
        assert server.lines[1] == f"ledger: {tmp_path / 'ledger.db'}"
        assert ingest(server.url, key).status_code == 200
        assert ingest(server.url, key + "x").status_code == 401
    finally:
        status, out, err = server.stop()

    assert status == 0, err
    assert key not in out
    assert key not in err
    assert "server stopped after 2 requests: stored 1 events" in err


def test_keys_from_flags_file_and_environment(tmp_path: Path) -> None:
    key_file = tmp_path / "keys.txt"
    key_file.write_text("# team keys\nrk_file_one\n\n  rk_file_two  \n")
    env = dict(os.environ, RANKIGI_SERVER_API_KEYS="rk_env_one, rk_env_two")
    server = ServeProcess(
        tmp_path / "ledger.db",
        "--api-key",
        "rk_flag_one",
        "--api-key",
        "rk_flag_two",
        "--api-key-file",
        str(key_file),
        env=env,
    )
    try:
        keys = ["rk_flag_one", "rk_flag_two", "rk_file_one", "rk_file_two"]
        keys += ["rk_env_one", "rk_env_two"]
        for number, key in enumerate(keys):
            response = ingest(server.url, key, agent_id=f"agent-{number}")
            assert response.status_code == 200, key
        assert ingest(server.url, "rk_not_given").status_code == 401
    finally:
        status, out, err = server.stop()

    assert status == 0, err
    assert all("API key" not in line for line in server.lines)
    for key in keys:
        assert key not in out + err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_load_keeps_acknowledged_events(
    tmp_path: Path, signum: int
) -> None:
    ledger_path = tmp_path / "ledger.db"
    server = ServeProcess(ledger_path, "--api-key", "rk_load")
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(worker: int) -> None:
        headers = {"Authorization": "Bearer rk_load"}
        with httpx.Client(headers=headers, timeout=10) as client:
            for batch in range(10**6):
                if stop.is_set():
                    return
                ids = [f"w{worker}-{batch}-{i}" for i in range(20)]
                events = [
                    {
                        "event_id": i,
                        "agent_id": f"agent-{worker % 2}",
                        "action": "step",
                        "payload": {"batch": batch},
                    }
                    for i in ids
                ]
                try:
                    response = client.post(
                        server.url + "/api/ingest", json={"events": events}
                    )
                except httpx.HTTPError:
                    return  # the server is gone; nothing more is acknowledged
                if response.status_code == 200:
                    with lock:
                        acknowledged.extend(ids)

    threads = [threading.Thread(target=load, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while len(acknowledged) < 500 and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        status, _, err = server.stop(signum)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)

    assert status == 0, err
    assert "Traceback" not in err
    assert len(acknowledged) >= 500
    with Ledger(ledger_path, create=False) as ledger:
        stored = {record["event_id"] for record in ledger.events()}
        results = ledger.verify_all()
    assert set(acknowledged) <= stored
    assert [result.valid for result in results] == [True, True]


def test_serve_without_extra_prints_install_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # A None entry in sys.modules makes the import raise ImportError.
    monkeypatch.setitem(sys.modules, "uvicorn", None)

    status = main(["serve", "--ledger", str(tmp_path / "ledger.db")])
    assert status == 2
    err = capsys.readouterr().err
    assert "pip install 'rankigi[server]'" in err
    assert not (tmp_path / "ledger.db").exists()


def test_unreadable_key_file_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "keys.txt"
    status = main(["serve", "--api-key-file", str(missing), "--ledger", "x.db"])

    assert status == 2
    assert f"cannot read API keys from {missing}" in capsys.readouterr().err


def test_invalid_environment_key_is_not_shown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RANKIGI_SERVER_API_KEYS", "rk_ok,rk bad secret")
    status = main(["serve", "--ledger", "x.db"])

    assert status == 2
    err = capsys.readouterr().err
    assert "RANKIGI_SERVER_API_KEYS" in err
    assert "secret" not in err


def test_port_in_use_is_reported(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        status = main(
            ["serve", "--port", str(port), "--api-key", "k", "--ledger", "x.db"]
        )

    assert status == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


@pytest.mark.parametrize("port", ["-1", "65536", "http"])
def test_bad_port_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], port: str
) -> None:
    assert main(["serve", "--port", port]) == 2
    assert "expected a port from 0 to 65535" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.20", False),
        ("::", False),
        ("example.internal", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_help_lists_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    for option in (
        "--host",
        "--port",
        "--ledger",
        "--api-key",
        "--api-key-file",
        "--max-body-bytes",
        "--rate-limit",
    ):
        assert option in out
