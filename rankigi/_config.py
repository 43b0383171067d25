"""Client options from arguments and ``RANKIGI_*`` environment variables.

Every option is validated once, here, when a client is built. An invalid
value raises ``ValueError`` naming the option, the value and the fix; after
that the tracking path has nothing left to reject.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

from typing_extensions import TypedDict

__all__ = [
    "CAPTURE_MODES",
    "DEFAULT_BASE_URL",
    "DEFAULT_LEDGER_PATH",
    "ClientOptions",
    "Config",
]

DEFAULT_BASE_URL = "https://rankigi.com"
DEFAULT_LEDGER_PATH = os.path.join(".rankigi", "ledger.db")
CAPTURE_MODES = ("full", "hash_only")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


class ClientOptions(TypedDict, total=False):
    """Keyword options that both clients take; see ``Config`` for defaults."""

    base_url: str
    ledger_path: str
    flush_interval_ms: int
    batch_size: int
    max_queue_size: int
    max_retries: int
    retry_backoff_ms: int
    retry_backoff_max_ms: int
    retry_after_max_ms: int
    request_timeout_ms: int
    shutdown_timeout_ms: int
    capture: str
    redact: bool
    redact_keys: Sequence[str]
    max_depth: int
    max_items: int
    max_string_length: int
    enabled: bool
    spool_dir: str


@dataclass(frozen=True)
class _Option:
    env: str
    parse: Callable[[str, str], Any]
    check: Optional[Callable[[str, Any], Any]] = None


@dataclass(frozen=True)
class Config:
    """Validated client options. Build it with ``Config.load``."""

    agent_id: str
    api_key: Optional[str] = field(default=None, repr=False)
    base_url: str = DEFAULT_BASE_URL
    ledger_path: str = DEFAULT_LEDGER_PATH
    flush_interval_ms: int = 5_000
    batch_size: int = 100
    max_queue_size: int = 10_000
    max_retries: int = 3
    retry_backoff_ms: int = 500
    retry_backoff_max_ms: int = 30_000
    retry_after_max_ms: int = 60_000
    request_timeout_ms: int = 10_000
    shutdown_timeout_ms: int = 2_000
    capture: str = "full"
    redact: bool = True
    redact_keys: tuple[str, ...] = ()
    max_depth: int = 6
    max_items: int = 100
    max_string_length: int = 4_096
    enabled: bool = True
    spool_dir: Optional[str] = None

    @classmethod
    def load(
        cls, environ: Optional[Mapping[str, str]] = None, **arguments: Any
    ) -> Config:
        """Merge arguments over environment variables and validate the result.

        Arguments that are None fall back to the environment, then to the
        default. Raises ``ValueError`` for an unknown or invalid option.
        """
        env = os.environ if environ is None else environ
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(arguments) - known)
        if unknown:
            raise ValueError(
                f"unknown option {unknown[0]!r}; valid options are: "
                + ", ".join(sorted(known))
            )
        values: dict[str, Any] = {}
        for name, option in _OPTIONS.items():
            value = arguments.get(name)
            label = name
            if value is None and env.get(option.env) is not None:
                value = option.parse(option.env, env[option.env])
                # Errors then name the variable the user actually set.
                label = option.env
            if value is not None and option.check is not None:
                value = option.check(label, value)
            if value is not None:
                values[name] = value
        if "agent_id" not in values:
            raise ValueError(
                "agent_id is missing; pass Rankigi(agent_id='my-agent') "
                "or set RANKIGI_AGENT_ID"
            )
        config = cls(**values)
        config._check_relations()
        return config

    @property
    def uses_ledger(self) -> bool:
        """Whether events go to the embedded ledger (no API key configured)."""
        return not self.api_key

    def _check_relations(self) -> None:
        if self.max_queue_size < self.batch_size:
            raise ValueError(
                f"max_queue_size={self.max_queue_size} is smaller than "
                f"batch_size={self.batch_size}; make the backlog at least "
                "one batch, usually many"
            )
        if self.retry_backoff_max_ms < self.retry_backoff_ms:
            raise ValueError(
                f"retry_backoff_max_ms={self.retry_backoff_max_ms} is below "
                f"retry_backoff_ms={self.retry_backoff_ms}; raise the maximum"
            )


def _parse_str(env: str, text: str) -> str:
    return text


def _parse_int(env: str, text: str) -> int:
    try:
        return int(text.strip().replace("_", ""))
    except ValueError:
        raise ValueError(
            f"{env}={text!r} is not a whole number; set it to digits"
        ) from None


def _parse_bool(env: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{env}={text!r} is not a boolean; use true or false")


def _parse_list(env: str, text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _nonempty_text(max_length: int) -> Callable[[str, Any], str]:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name}={value!r} is invalid; pass a non-empty string")
        if len(value) > max_length:
            raise ValueError(
                f"{name} is {len(value)} characters long; use at most {max_length}"
            )
        return value

    return check


def _check_api_key(name: str, value: Any) -> Optional[str]:
    if not isinstance(value, str):
        raise ValueError(
            f"api_key must be a string, not {type(value).__name__}; "
            "pass the key as text"
        )
    if value and (value != value.strip() or any(ch.isspace() for ch in value)):
        # The key itself is never shown, so an error cannot leak it.
        raise ValueError(
            "api_key contains whitespace; copy the key again without spaces "
            "or line breaks"
        )
    return value or None


def _check_url(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name}={value!r} is invalid; pass a URL string")
    parts = urlsplit(value)
    if parts.username is not None or parts.password is not None:
        # The URL is not shown: it would print the password it contains.
        raise ValueError(
            f"{name} contains a user name or password; remove them from the "
            "URL and pass the key as api_key"
        )
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"{name}={value!r} is not an http(s) URL; "
            "use a form such as https://rankigi.com or http://127.0.0.1:8787"
        )
    return value.rstrip("/")


def _check_path(name: str, value: Any) -> str:
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise ValueError(f"{name}={value!r} is invalid; pass a file path")
    path = os.fspath(value)
    if os.path.isdir(path):
        raise ValueError(
            f"{name}={path!r} is a directory; pass the path of a ledger file "
            "inside it, such as " + repr(os.path.join(path, "ledger.db"))
        )
    return path


def _check_directory(name: str, value: Any) -> str:
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise ValueError(f"{name}={value!r} is invalid; pass a directory path")
    path = os.fspath(value)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(
            f"{name}={path!r} is a file, not a directory; pass a directory "
            "for the spool, which the SDK creates if it is missing"
        )
    return path


def _int_range(low: int, high: int) -> Callable[[str, Any], int]:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(
                f"{name}={value!r} is invalid; pass a whole number from {low} to {high}"
            )
        if not low <= value <= high:
            raise ValueError(
                f"{name}={value} is out of range; use a value from {low} to {high}"
            )
        return value

    return check


def _check_capture(name: str, value: Any) -> str:
    if value not in CAPTURE_MODES:
        raise ValueError(
            f"{name}={value!r} is invalid; use one of: " + ", ".join(CAPTURE_MODES)
        )
    return str(value)


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name}={value!r} is invalid; pass True or False")
    return value


def _check_keys(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    try:
        keys = tuple(value)
    except TypeError:
        raise ValueError(
            f"{name}={value!r} is invalid; pass a list of key names"
        ) from None
    for key in keys:
        if not isinstance(key, str) or not key.strip():
            raise ValueError(
                f"{name} contains {key!r}; every entry must be a non-empty string"
            )
    return keys


_DAY_MS = 86_400_000

_OPTIONS: dict[str, _Option] = {
    "agent_id": _Option("RANKIGI_AGENT_ID", _parse_str, _nonempty_text(256)),
    "api_key": _Option("RANKIGI_API_KEY", _parse_str, _check_api_key),
    "base_url": _Option("RANKIGI_BASE_URL", _parse_str, _check_url),
    "ledger_path": _Option("RANKIGI_LEDGER_PATH", _parse_str, _check_path),
    "flush_interval_ms": _Option(
        "RANKIGI_FLUSH_INTERVAL_MS", _parse_int, _int_range(1, _DAY_MS)
    ),
    "batch_size": _Option("RANKIGI_BATCH_SIZE", _parse_int, _int_range(1, 10_000)),
    "max_queue_size": _Option(
        "RANKIGI_MAX_QUEUE_SIZE", _parse_int, _int_range(1, 10_000_000)
    ),
    "max_retries": _Option("RANKIGI_MAX_RETRIES", _parse_int, _int_range(0, 100)),
    "retry_backoff_ms": _Option(
        "RANKIGI_RETRY_BACKOFF_MS", _parse_int, _int_range(1, _DAY_MS)
    ),
    "retry_backoff_max_ms": _Option(
        "RANKIGI_RETRY_BACKOFF_MAX_MS", _parse_int, _int_range(1, _DAY_MS)
    ),
    "retry_after_max_ms": _Option(
        "RANKIGI_RETRY_AFTER_MAX_MS", _parse_int, _int_range(0, _DAY_MS)
    ),
    "request_timeout_ms": _Option(
        "RANKIGI_REQUEST_TIMEOUT_MS", _parse_int, _int_range(1, 600_000)
    ),
    "shutdown_timeout_ms": _Option(
        "RANKIGI_SHUTDOWN_TIMEOUT_MS", _parse_int, _int_range(0, 600_000)
    ),
    "capture": _Option("RANKIGI_CAPTURE", _parse_str, _check_capture),
    "redact": _Option("RANKIGI_REDACT", _parse_bool, _check_bool),
    "redact_keys": _Option("RANKIGI_REDACT_KEYS", _parse_list, _check_keys),
    "max_depth": _Option("RANKIGI_MAX_DEPTH", _parse_int, _int_range(1, 7)),
    "max_items": _Option("RANKIGI_MAX_ITEMS", _parse_int, _int_range(1, 100_000)),
    "max_string_length": _Option(
        "RANKIGI_MAX_STRING_LENGTH", _parse_int, _int_range(16, 10_000_000)
    ),
    "enabled": _Option("RANKIGI_ENABLED", _parse_bool, _check_bool),
    "spool_dir": _Option("RANKIGI_SPOOL_DIR", _parse_str, _check_directory),
}

ENVIRONMENT_VARIABLES = {name: option.env for name, option in _OPTIONS.items()}
