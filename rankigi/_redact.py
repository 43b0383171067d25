"""Redaction rules: which captured values are replaced by ``REDACTED``.

A ``Redactor`` contains two kinds of rules, and ``rankigi._serialize`` applies
them to dict keys, dataclass fields, pydantic fields and object attributes.
The name is kept and only the value is replaced.

Key patterns match names anywhere in a captured value. Keys and patterns are
compared after lowercasing and removing ``-``, ``_`` and spaces (the
normalized form), so ``"API-Key"``, ``"api_key"`` and ``"apiKey"`` all match
the pattern ``"api_key"``. A key matches a pattern when:

1. the normalized key equals the normalized pattern, or
2. the normalized pattern has at least 6 characters and occurs inside the
   normalized key (``"db_password"`` matches ``"password"``), or
3. the words of the pattern occur as consecutive whole words of the key.
   Words are split at ``-``, ``_``, spaces, dots, digits and lower-to-upper
   case changes, so ``"x_auth_token"`` and ``"accessToken"`` match
   ``"token"``.

Short patterns never match inside a word, which keeps ``"author"`` clear of
``"auth"`` and ``"max_tokens"`` or ``"tokenizer"`` clear of ``"token"``.

Paths are dotted key paths such as ``"card.number"`` or ``"items.*.ssn"``,
matched from the root of the captured value. Each segment matches one dict
key, attribute name or list index (``"items.0.ssn"``) exactly and case
sensitively, and ``*`` matches any one segment. A key that itself contains a
dot cannot be addressed by a path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Callable, Optional

__all__ = [
    "DEFAULT_REDACTOR",
    "DEFAULT_SECRET_KEYS",
    "NO_REDACTION",
    "REDACTED",
    "PathNode",
    "PathState",
    "Redactor",
    "key_matcher",
    "step_paths",
]

REDACTED = "[REDACTED]"

# Credentials only. Personal data (card numbers, national ids) depends on the
# application, so callers add it with ``with_extra``.
DEFAULT_SECRET_KEYS: tuple[str, ...] = (
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "secret",
    "client_secret",
    "token",
    "refresh_token",
    "auth",
    "authorization",
    "bearer",
    "api_key",
    "apikey",
    "access_key",
    "private_key",
    "signing_key",
    "encryption_key",
    "credential",
    "credentials",
    "cookie",
    "set-cookie",
    "session",
    "csrf",
    "xsrf",
    "jwt",
    "otp",
)

# Patterns shorter than this match only whole words (rule 3), because as
# substrings they would hit ordinary words ("auth" in "author").
_MIN_SUBSTRING_LENGTH = 6

# Maximum keys in each match cache, which is emptied when full, so keys
# generated per request cannot grow memory without bound.
_CACHE_SIZE = 4096

_SEPARATORS = str.maketrans("", "", "-_ ")
# ASCII words split at case changes, so "APIKey" is "API", "Key". A run of
# other letters counts as one word.
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+|[^\W\dA-Za-z_]+")
_WILDCARD = "*"


class PathNode:
    """One segment of the compiled redaction paths, as a prefix tree."""

    __slots__ = ("children", "terminal")

    def __init__(self) -> None:
        self.children: dict[str, PathNode] = {}
        self.terminal = False


class _KeyCache(dict[str, bool]):
    """Match results by key, computed on first use by ``__missing__``."""

    __slots__ = ("_match",)

    def __init__(self, match: Callable[[str], bool]) -> None:
        super().__init__()
        self._match = match

    def __missing__(self, key: str) -> bool:
        found = isinstance(key, str) and self._match(key)
        if len(self) >= _CACHE_SIZE:
            self.clear()
        self[key] = found
        return found


# The path nodes that match the current position in a captured value.
PathState = tuple[PathNode, ...]


class Redactor:
    """Rules that pick the values to replace by ``replacement``.

    Args:
        keys: key patterns, matched as the module docstring describes.
        paths: dotted key paths from the root of a captured value.
        replacement: the string that replaces a redacted value.

    Raises:
        ValueError: for a pattern or path that is not a non-empty string, or a
            single string passed where a list of strings is expected.
    """

    __slots__ = ("_cache", "_patterns", "keys", "path_root", "paths", "replacement")

    def __init__(
        self,
        keys: Iterable[str] = DEFAULT_SECRET_KEYS,
        paths: Iterable[str] = (),
        *,
        replacement: str = REDACTED,
    ) -> None:
        if not isinstance(replacement, str):
            raise ValueError(
                f"invalid replacement {replacement!r}: pass a string such as "
                f"{REDACTED!r}"
            )
        self.keys = _strings(keys, "keys")
        self.paths = _strings(paths, "paths")
        self.replacement = replacement
        self._patterns = _compile_patterns(self.keys)
        self.path_root = _compile_paths(self.paths)
        self._cache = _KeyCache(self._match)

    def __repr__(self) -> str:
        return (
            f"Redactor(keys={self.keys!r}, paths={self.paths!r}, "
            f"replacement={self.replacement!r})"
        )

    def is_secret_key(self, key: str) -> bool:
        """Return whether ``key`` matches one of the key patterns."""
        return self._cache[key]

    def with_extra(
        self, keys: Iterable[str] = (), paths: Iterable[str] = ()
    ) -> Redactor:
        """Return a new redactor with these rules added to this one's.

        Raises:
            ValueError: as the constructor does, for invalid new rules.
        """
        return Redactor(
            self.keys + _strings(keys, "keys"),
            self.paths + _strings(paths, "paths"),
            replacement=self.replacement,
        )

    def _match(self, key: str) -> bool:
        normalized = key.translate(_SEPARATORS).lower()
        words: Optional[tuple[str, ...]] = None
        for pattern, pattern_words in self._patterns:
            if normalized == pattern:
                return True
            if len(pattern) >= _MIN_SUBSTRING_LENGTH and pattern in normalized:
                return True
            if words is None:
                words = _words(key)
            if _contains_run(words, pattern_words):
                return True
        return False


def key_matcher(redactor: Redactor) -> Optional[Callable[[str], bool]]:
    """Return a callable that returns whether a key is secret, or None without keys.

    The callable is the cache's ``__getitem__``, which avoids a Python-level
    call for keys already seen.
    """
    if not redactor.keys:
        return None
    return redactor._cache.__getitem__


def step_paths(state: PathState, segment: str) -> tuple[bool, Optional[PathState]]:
    """Advance the path state by one key, attribute name or list index.

    Returns whether a path ends at ``segment`` (so its value is redacted) and
    the state for the value below it, or None when no path continues there.
    """
    matched: list[PathNode] = []
    for node in state:
        child = node.children.get(segment)
        if child is not None:
            matched.append(child)
        wildcard = node.children.get(_WILDCARD)
        if wildcard is not None:
            matched.append(wildcard)
    if not matched:
        return False, None
    return any(node.terminal for node in matched), tuple(matched)


def _strings(values: Iterable[str], name: str) -> tuple[str, ...]:
    if isinstance(values, str):
        raise ValueError(
            f"invalid {name} {values!r}: pass a list of strings, such as "
            f"[{values!r}], not a single string"
        )
    try:
        items = tuple(values)
    except TypeError:
        raise ValueError(f"invalid {name} {values!r}: pass a list of strings") from None
    for item in items:
        if not isinstance(item, str):
            raise ValueError(
                f"invalid entry {item!r} in {name}: every entry must be a string"
            )
    return items


def _compile_patterns(keys: tuple[str, ...]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Return each distinct pattern as its normalized form and its words."""
    patterns: dict[tuple[str, tuple[str, ...]], None] = {}
    for key in keys:
        normalized = key.translate(_SEPARATORS).lower()
        words = _words(key)
        if not normalized or not words:
            raise ValueError(
                f"invalid secret key pattern {key!r}: pass a name with letters or "
                "digits, such as 'password' or 'api_key'"
            )
        patterns[(normalized, words)] = None
    return tuple(patterns)


def _compile_paths(paths: tuple[str, ...]) -> Optional[PathNode]:
    if not paths:
        return None
    root = PathNode()
    for path in paths:
        node = root
        for segment in _path_segments(path):
            node = node.children.setdefault(segment, PathNode())
        node.terminal = True
    return root


def _path_segments(path: str) -> list[str]:
    segments = path.split(".")
    for segment in segments:
        if not segment or (_WILDCARD in segment and segment != _WILDCARD):
            raise ValueError(
                f"invalid redaction path {path!r}: segments must be non-empty and "
                "'*' must be a whole segment, as in 'card.number' or 'items.*.ssn'"
            )
    return segments


def _words(key: str) -> tuple[str, ...]:
    return tuple(word.lower() for word in _WORD.findall(key))


def _contains_run(words: tuple[str, ...], run: tuple[str, ...]) -> bool:
    size = len(run)
    if size == 1:
        return run[0] in words
    return any(words[i : i + size] == run for i in range(len(words) - size + 1))


DEFAULT_REDACTOR = Redactor()
NO_REDACTION = Redactor(keys=())
