"""The Rankigi client: options, capture, and the events it builds."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest

import rankigi
from rankigi import Rankigi
from rankigi._canonical import sha256_hex
from rankigi._exporters import MemoryExporter
from tests.sqlite_edit import edit


def memory_client(**options: Any) -> tuple[Rankigi, MemoryExporter]:
    exporter = MemoryExporter()
    options.setdefault("agent_id", "agent-1")
    client = Rankigi(_exporter=exporter, **options)
    return client, exporter


def recorded(**options: Any) -> Any:
    """Return a function that tracks through a client and returns the events."""
    client, exporter = memory_client(**options)

    def events() -> list[dict[str, Any]]:
        assert client.flush(5)
        return exporter.events

    return client, events


# -- options --------------------------------------------------------------


def test_agent_id_required() -> None:
    with pytest.raises(ValueError, match=r"agent_id is missing.*RANKIGI_AGENT_ID"):
        Rankigi()


def test_options_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANKIGI_AGENT_ID", "env-agent")
    monkeypatch.setenv("RANKIGI_API_KEY", "rk_env")
    monkeypatch.setenv("RANKIGI_BASE_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("RANKIGI_BATCH_SIZE", "7")
    monkeypatch.setenv("RANKIGI_REDACT", "false")
    monkeypatch.setenv("RANKIGI_REDACT_KEYS", "ssn, card")

    client = Rankigi()
    config = client.config
    client.close(0)

    assert config.agent_id == "env-agent"
    assert config.api_key == "rk_env"
    assert config.base_url == "http://127.0.0.1:9"
    assert config.batch_size == 7
    assert config.redact is False
    assert config.redact_keys == ("ssn", "card")


def test_argument_overrides_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANKIGI_AGENT_ID", "env-agent")
    client, _ = memory_client(agent_id="arg-agent")

    assert client.agent_id == "arg-agent"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 0}, r"batch_size=0 is out of range; use a value from 1"),
        ({"batch_size": "10"}, r"batch_size='10' is invalid; pass a whole number"),
        ({"base_url": "ftp://x"}, r"base_url='ftp://x' is not an http\(s\) URL"),
        ({"capture": "raw"}, r"capture='raw' is invalid; use one of: full, hash_only"),
        ({"agent_id": ""}, r"agent_id='' is invalid; pass a non-empty string"),
        ({"max_queue_size": 5, "batch_size": 10}, r"max_queue_size=5 is smaller"),
        ({"redact": "yes"}, r"redact='yes' is invalid; pass True or False"),
        ({"colour": 1}, r"unknown option 'colour'"),
    ],
)
def test_invalid_option_names_value_and_fix(
    options: dict[str, Any], message: str
) -> None:
    options.setdefault("agent_id", "a")
    with pytest.raises(ValueError, match=message):
        Rankigi(**options)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RANKIGI_BATCH_SIZE", "lots", r"RANKIGI_BATCH_SIZE='lots' is not a whole"),
        ("RANKIGI_REDACT", "maybe", r"RANKIGI_REDACT='maybe' is not a boolean"),
        ("RANKIGI_FLUSH_INTERVAL_MS", "0", r"RANKIGI_FLUSH_INTERVAL_MS=0 is out of"),
    ],
)
def test_invalid_environment_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        Rankigi(agent_id="a")


def test_api_key_with_whitespace_rejected_without_echo() -> None:
    with pytest.raises(ValueError, match="whitespace") as info:
        Rankigi(api_key="rk_live secret", agent_id="a")
    assert "secret" not in str(info.value)


def test_repr_hides_api_key() -> None:
    client = Rankigi(api_key="rk_hidden", agent_id="a", base_url="http://127.0.0.1:9")
    text = repr(client) + repr(client.config)
    client.close(0)

    assert "rk_hidden" not in text
    assert "127.0.0.1:9" in text


def test_no_key_uses_embedded_ledger(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="rankigi")
    client = Rankigi(agent_id="a", ledger_path="custom/ledger.db")
    client.track_tool_call("t", 1, 2)
    assert client.close(5)

    messages = [r.getMessage() for r in caplog.records if r.name == "rankigi"]
    assert any("custom/ledger.db" in m and "no API key" in m for m in messages)
    from rankigi.ledger import Ledger

    with Ledger("custom/ledger.db", create=False) as ledger:
        assert ledger.verify("a").valid
        assert ledger.verify("a").event_count == 1


# -- events ---------------------------------------------------------------


def test_tool_call_event_shape() -> None:
    client, events = recorded()
    event_id = client.track_tool_call("search", {"q": "refund"}, ["r1"], "warn")

    (event,) = events()
    assert event["event_id"] == event_id
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-.{12}", event_id
    )
    assert event["action"] == "tool_call"
    assert event["tool"] == "search"
    assert event["severity"] == "warn"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["occurred_at"])
    payload = event["payload"]
    assert payload["input"] == {"q": "refund"}
    assert payload["output"] == ["r1"]
    assert payload["input_hash"] == sha256_hex({"q": "refund"})
    assert payload["output_hash"] == sha256_hex(["r1"])
    assert payload["_sdk"] == f"rankigi-python/{rankigi.__version__}"
    assert not any(key.startswith("_") and key != "_sdk" for key in payload)
    assert set(event) == {
        "event_id",
        "agent_id",
        "action",
        "tool",
        "severity",
        "occurred_at",
        "payload",
    }


def test_event_ids_are_time_ordered() -> None:
    client, events = recorded()
    ids = [client.track_custom_event("step", None, {"i": i}) for i in range(500)]

    assert ids == sorted(ids)
    assert len(set(ids)) == 500
    assert [e["event_id"] for e in events()] == ids


def test_agent_output_event() -> None:
    client, events = recorded()
    client.track_agent_output("reply", "Refunded 49.90")

    (event,) = events()
    assert event["action"] == "response_generated"
    assert event["tool"] is None
    assert event["payload"]["action"] == "reply"
    assert event["payload"]["output"] == "Refunded 49.90"
    assert event["payload"]["output_hash"] == sha256_hex("Refunded 49.90")


def test_error_event_keeps_type_message_traceback() -> None:
    client, events = recorded()
    try:
        {}["missing"]
    except KeyError as exc:
        client.track_error("lookup", exc)

    (event,) = events()
    payload = event["payload"]
    assert event["action"] == "error"
    assert event["severity"] == "warn"
    assert payload["tool"] == "lookup"
    assert payload["error_type"] == "KeyError"
    assert "missing" in payload["error_message"]
    assert "Traceback" in payload["traceback"]
    assert "test_error_event_keeps_type_message_traceback" in payload["traceback"]
    assert len(payload["error_hash"]) == 64


def test_error_as_string_and_legacy_form() -> None:
    client, events = recorded()
    client.track_error("tool", "quota exceeded", "critical")
    client.track_error(ValueError("boom"))

    first, second = events()
    assert first["payload"]["error_message"] == "quota exceeded"
    assert first["severity"] == "critical"
    assert second["payload"]["error_type"] == "ValueError"
    assert second["tool"] is None


def test_custom_event_payload_kept() -> None:
    client, events = recorded()
    client.track_custom_event("policy_check", "refund", {"rule": "pii", "passed": True})
    client.track_custom_event("note", payload="just text")

    first, second = events()
    assert first["action"] == "policy_check"
    assert first["tool"] == "refund"
    assert first["payload"]["rule"] == "pii"
    assert first["payload"]["passed"] is True
    assert second["payload"]["value"] == "just text"


@pytest.mark.parametrize("severity", ["fatal", None, 3, "INFO"])
def test_invalid_severity_recorded_as_info(severity: Any) -> None:
    client, events = recorded()
    assert client.track_tool_call("t", 1, 2, severity) is not None

    assert events()[0]["severity"] == "info"


def test_snapshot_taken_at_call_time() -> None:
    client, events = recorded(flush_interval_ms=60_000)
    data = {"items": [1, 2]}
    client.track_tool_call("t", data, None)
    data["items"].append(3)

    assert events()[0]["payload"]["input"] == {"items": [1, 2]}


def test_secret_keys_redacted_by_default() -> None:
    client, events = recorded()
    client.track_tool_call(
        "login", {"user": "ann", "password": "hunter2", "api_key": "k"}, None
    )

    payload = events()[0]["payload"]
    assert payload["input"]["user"] == "ann"
    assert payload["input"]["password"] == "[REDACTED]"
    assert payload["input"]["api_key"] == "[REDACTED]"
    assert "hunter2" not in json.dumps(payload)


def test_redaction_configurable() -> None:
    client, events = recorded(redact_keys=["ssn"])
    client.track_tool_call("t", {"ssn": "123", "password": "p"}, None)
    plain, plain_events = recorded(redact=False)
    plain.track_tool_call("t", {"password": "p"}, None)

    assert events()[0]["payload"]["input"] == {
        "ssn": "[REDACTED]",
        "password": "[REDACTED]",
    }
    assert plain_events()[0]["payload"]["input"] == {"password": "p"}


def test_hash_only_sends_no_raw_values() -> None:
    client, events = recorded(capture="hash_only")
    client.track_tool_call("t", {"card": "4242"}, {"ok": True})
    client.track_agent_output("reply", "secret reply")
    client.track_error("t", ValueError("card 4242 declined"))

    text = json.dumps(events())
    assert "4242" not in text
    assert "secret reply" not in text
    tool, output, error = events()
    assert tool["payload"]["input_hash"] == sha256_hex({"card": "4242"})
    assert tool["payload"]["input_size"] == len('{"card":"4242"}')
    assert "input" not in tool["payload"]
    assert output["payload"]["output_hash"] == sha256_hex("secret reply")
    assert error["payload"]["error_type"] == "ValueError"
    assert "traceback" not in error["payload"]


def test_stats_counts() -> None:
    client, events = recorded()
    for i in range(3):
        client.track_tool_call("t", i, i)
    events()

    stats = client.stats()
    assert stats["enqueued"] == 3
    assert stats["sent"] == 3
    assert stats["dropped"] == 0
    assert stats["queued"] == 0


def test_disabled_client_records_nothing() -> None:
    client, events = recorded(enabled=False)

    assert client.track_tool_call("t", 1, 1) is None
    assert events() == []


def test_on_error_assignable_after_construction() -> None:
    client, _ = memory_client()
    seen: list[Any] = []
    client.close()
    client.on_error = seen.append
    client.track_tool_call("t", 1, 1)

    assert [e.code for e in seen] == ["CLIENT_CLOSED"]
    assert seen[0].message.startswith("dropped 1 event")


def test_public_names_sorted_and_complete() -> None:
    assert rankigi.__all__ == sorted(rankigi.__all__)
    for name in rankigi.__all__:
        assert hasattr(rankigi, name)


def test_env_error_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANKIGI_MAX_DEPTH", "9")
    with pytest.raises(ValueError, match=r"RANKIGI_MAX_DEPTH=9 is out of range"):
        Rankigi(agent_id="a")


def test_base_url_with_password_rejected_without_echo() -> None:
    with pytest.raises(ValueError, match="user name or password") as info:
        Rankigi(api_key="k", agent_id="a", base_url="http://user:s3cret@127.0.0.1:1")
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize("option", ["spool_dir", "ledger_path"])
def test_path_options_checked(tmp_path: Any, option: str) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    bad = a_file if option == "spool_dir" else tmp_path
    with pytest.raises(ValueError, match=r"is a (file|directory)"):
        Rankigi(agent_id="a", **{option: str(bad)})


@pytest.mark.parametrize("timeout", ["5", [1], True])
def test_bad_timeout_type_raises(timeout: Any) -> None:
    client, _ = memory_client()
    with pytest.raises(TypeError, match="pass seconds as a number"):
        client.flush(timeout)
    with pytest.raises(TypeError, match="pass seconds as a number"):
        client.close(timeout)
    client.close()


def test_capture_failure_counted_in_stats(monkeypatch: pytest.MonkeyPatch) -> None:
    client, _ = memory_client()
    seen: list[Any] = []
    client.on_error = seen.append

    def broken(*args: Any) -> Any:
        raise RuntimeError("builder bug")

    monkeypatch.setattr(client._core.factory, "tool_call", broken)
    assert client.track_tool_call("t", 1, 2) is None

    assert [e.code for e in seen] == ["CAPTURE_FAILED"]
    assert client.stats()["dropped_by_reason"] == {"CAPTURE_FAILED": 1}
    client.close()


def test_handshake_after_close_raises(tmp_path: Any) -> None:
    from rankigi import RankigiError

    client = Rankigi(agent_id="a", ledger_path=str(tmp_path / "l.db"))
    client.close()
    with pytest.raises(RankigiError) as info:
        client.initiate_handshake("b", "p")
    assert info.value.code == "CLIENT_CLOSED"


def test_handshake_metadata_redacted(tmp_path: Any) -> None:
    path = str(tmp_path / "l.db")
    with Rankigi(agent_id="a", ledger_path=path) as client:
        pending = client.initiate_handshake(
            "b", "p", {"password": "hunter2", "bytes": 880, "ratio": float("nan")}
        )

    with edit(path) as db:
        stored = db.execute("SELECT metadata FROM handshakes").fetchone()[0]
    assert pending["metadata"]["password"] == "[REDACTED]"
    assert "hunter2" not in stored
    assert pending["metadata"]["bytes"] == 880
