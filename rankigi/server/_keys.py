"""API keys: where they come from, and how requests are matched to them.

The server keeps only SHA-256 fingerprints of its keys once it has started. A
fingerprint identifies a key in the agent ownership table, so the ledger file
never contains a key either.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable, Mapping
from typing import Optional

__all__ = [
    "API_KEYS_ENV",
    "KeyRing",
    "check_key",
    "fingerprint",
    "generate_key",
    "keys_from_sources",
    "read_key_file",
    "split_env_keys",
]

API_KEYS_ENV = "RANKIGI_SERVER_API_KEYS"
_GENERATED_PREFIX = "rk_local_"


def fingerprint(key: str) -> str:
    """Return the lowercase hex SHA-256 of the key's UTF-8 bytes."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def generate_key() -> str:
    """Return a new random key with 256 bits of entropy."""
    return _GENERATED_PREFIX + secrets.token_urlsafe(32)


def check_key(key: str, source: str) -> str:
    """Return ``key`` if it can travel in a Bearer header, else raise ValueError.

    ``source`` names where the key came from. The message never shows the key.
    """
    if not key:
        raise ValueError(f"an API key from {source} is empty; remove it or fill it in")
    if any(ch.isspace() for ch in key) or not key.isprintable() or not key.isascii():
        raise ValueError(
            f"an API key from {source} contains whitespace, control or non-ASCII "
            "characters, which a Bearer header cannot carry; use printable ASCII"
        )
    return key


def split_env_keys(environ: Mapping[str, str]) -> list[str]:
    """Return the comma-separated keys of ``RANKIGI_SERVER_API_KEYS``."""
    text = environ.get(API_KEYS_ENV, "")
    keys = [part.strip() for part in text.split(",")]
    return [check_key(key, API_KEYS_ENV) for key in keys if key]


def read_key_file(path: str) -> list[str]:
    """Return the keys in ``path``: one a line, blank lines and ``#`` lines skipped.

    Raises:
        ValueError: the file cannot be read, or a line is not a valid key.
    """
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"cannot read API keys from {path}: {exc}; pass --api-key-file with "
            "a readable UTF-8 file that has one key per line"
        ) from exc
    keys: list[str] = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if text and not text.startswith("#"):
            keys.append(check_key(text, f"{path} line {number}"))
    if not keys:
        raise ValueError(f"{path} contains no API key; write one key per line")
    return keys


class KeyRing:
    """The accepted keys, stored as fingerprints."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._fingerprints = frozenset(fingerprint(key) for key in keys)
        if not self._fingerprints:
            raise ValueError("no API key given; pass at least one")

    def __len__(self) -> int:
        return len(self._fingerprints)

    def identify(self, key: str) -> Optional[str]:
        """Return the fingerprint of ``key`` if it is accepted, else None.

        The lookup compares fingerprints, so its timing depends on the hash of
        the presented key, which reveals nothing about a real key.
        """
        digest = fingerprint(key)
        return digest if digest in self._fingerprints else None


def keys_from_sources(
    flags: Iterable[str], key_file: Optional[str], environ: Mapping[str, str]
) -> list[str]:
    """Collect keys from ``--api-key`` flags, a key file and the environment.

    Duplicates are dropped, keeping the first occurrence.

    Raises:
        ValueError: a key is invalid or the key file cannot be read.
    """
    keys = [check_key(key, "--api-key") for key in flags]
    if key_file is not None:
        keys.extend(read_key_file(os.fspath(key_file)))
    keys.extend(split_env_keys(environ))
    return list(dict.fromkeys(keys))
