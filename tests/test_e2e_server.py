"""End to end: several client processes, one `rankigi serve`, `rankigi verify`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.server_fixture import ROOT, ServeProcess

KEY = "rk_e2e_key"
EVENTS_PER_PROCESS = 300

CLIENT = textwrap.dedent(
    """
    import json, sys
    from rankigi import Rankigi

    url, agent_id, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    errors = []
    client = Rankigi(api_key={key!r}, agent_id=agent_id, base_url=url,
                     batch_size=25, flush_interval_ms=50, on_error=errors.append)
    for n in range(count):
        kind = n % 4
        if kind == 0:
            client.track_tool_call("search", {{"q": n}}, {{"hits": [n, "é"]}})
        elif kind == 1:
            client.track_agent_output("reply", f"answer {{n}}")
        elif kind == 2:
            client.track_error("fetch", ValueError(f"failure {{n}}"))
        else:
            client.track_custom_event("policy_check", None, {{"n": n, "ok": True}})
    delivered = client.close(timeout=60)
    stats = client.stats()
    print(json.dumps({{"sent": stats["sent"], "dropped": stats["dropped"],
                      "errors": [str(e) for e in errors]}}))
    sys.exit(0 if delivered and stats["dropped"] == 0 else 1)
    """
).format(key=KEY)


def python_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RANKIGI_")}
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [env.get("PYTHONPATH"), str(ROOT)])
    )
    return env


def test_client_processes_into_one_server(tmp_path: Path) -> None:
    ledger_path = tmp_path / "ledger.db"
    server = ServeProcess(ledger_path, "--api-key", KEY)
    agents = ["agent-a", "agent-b", "agent-c", "agent-shared", "agent-shared"]
    try:
        clients = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    CLIENT,
                    server.url,
                    agent,
                    str(EVENTS_PER_PROCESS),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=python_env(),
            )
            for agent in agents
        ]
        for client in clients:
            out, err = client.communicate(timeout=120)
            assert client.returncode == 0, out + err
            assert json.loads(out)["sent"] == EVENTS_PER_PROCESS

        # `rankigi verify` reads the file while the server still serves it.
        verify = subprocess.run(
            [sys.executable, "-m", "rankigi", "verify", "--ledger", str(ledger_path)],
            capture_output=True,
            text=True,
            env=python_env(),
            timeout=60,
        )
    finally:
        status, _, server_log = server.stop()

    assert verify.returncode == 0, verify.stdout + verify.stderr
    lines = verify.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "agent-a",
        "agent-b",
        "agent-c",
        "agent-shared",
    ]
    for line in lines[:3]:
        assert f": intact, {EVENTS_PER_PROCESS} events, head " in line
    assert f"agent-shared: intact, {2 * EVENTS_PER_PROCESS} events, head " in lines[3]
    assert status == 0, server_log
    assert f"stored {5 * EVENTS_PER_PROCESS} events, 0 duplicates" in server_log
