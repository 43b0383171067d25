"""Creating, recognising and opening ledger files."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import urllib.parse
import uuid
from pathlib import Path

from rankigi.ledger._errors import LedgerError, LedgerNotFoundError, NotALedgerError

__all__ = ["FORMAT_NAME", "SCHEMA_VERSION", "open_connection"]

logger = logging.getLogger("rankigi.ledger")

FORMAT_NAME = "rankigi-ledger"
SCHEMA_VERSION = 1

# Columns follow the stored-record field order. ``heads`` keeps the last
# (chain_index, event_hash) of every agent: appends extend the chain from it,
# and verification compares it with the last stored event, which catches
# events deleted from the end of a chain.
_SCHEMA = f"""
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO meta (key, value) VALUES
    ('format', '{FORMAT_NAME}'),
    ('schema_version', '{SCHEMA_VERSION}');
CREATE TABLE events (
    event_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    chain_index INTEGER NOT NULL,
    previous_event_hash TEXT NOT NULL,
    event_hash TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    server_received_at TEXT NOT NULL,
    action_type TEXT NOT NULL,
    tool_invoked TEXT,
    severity TEXT NOT NULL,
    input_hash TEXT,
    output_hash TEXT,
    execution_result TEXT NOT NULL,
    payload TEXT NOT NULL,
    data_quality_flag TEXT NOT NULL,
    passport_id TEXT,
    signature TEXT,
    PRIMARY KEY (agent_id, chain_index),
    UNIQUE (agent_id, event_id)
);
CREATE TABLE heads (
    agent_id TEXT PRIMARY KEY,
    chain_index INTEGER NOT NULL,
    event_hash TEXT NOT NULL
);
"""


def open_connection(
    path: Path, *, create: bool, busy_timeout: float, readonly: bool = False
) -> sqlite3.Connection:
    """Open the ledger at ``path``, creating it first when allowed.

    A file that is not a ledger is never written to, and with ``readonly``
    the ledger file is not changed, so a copy without write permission can
    be verified.

    Raises:
        LedgerNotFoundError: the file is missing and ``create`` is false.
        NotALedgerError: the file is not a rankigi ledger.
        LedgerError: the file cannot be created or read.
    """
    if not os.path.lexists(path):
        if not create:
            raise LedgerNotFoundError(path)
        _create(path, busy_timeout)
    _check_header(path)
    connection = _connect(path, busy_timeout, readonly)
    try:
        _check_meta(connection, path)
        if not readonly:
            _enable_wal(connection, path)
    except BaseException:
        connection.close()
        raise
    return connection


def _connect(
    path: Path, busy_timeout: float, readonly: bool = False
) -> sqlite3.Connection:
    target, uri = os.fspath(path), False
    if readonly:
        target, uri = _readonly_uri(path), True
    try:
        # isolation_level=None leaves transactions to explicit BEGIN and COMMIT.
        # The Ledger serializes use of the connection with its own lock, so any
        # thread may use it. ``timeout`` sets SQLite's busy timeout.
        connection = sqlite3.connect(
            target,
            timeout=busy_timeout,
            isolation_level=None,
            check_same_thread=False,
            uri=uri,
        )
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot open ledger {path}: {exc}") from exc
    # Invalid UTF-8 written into the file by another tool would otherwise make
    # reads raise. Decoded with surrogate escapes, it fails the hash check.
    connection.text_factory = _decode_text
    return connection


def _readonly_uri(path: Path) -> str:
    """Return the SQLite URI that opens ``path`` without writing anything.

    Reading a WAL-mode file needs its shared-memory file, which SQLite must
    be able to create next to it. Where it cannot (a read-only copy, a
    directory without write permission) and no write-ahead log exists, the
    file cannot change under us, so it is opened as immutable.
    """
    quoted = urllib.parse.quote(os.fspath(path))
    writable = os.access(path.parent, os.W_OK) and os.access(path, os.W_OK)
    if writable or os.path.exists(f"{path}-shm") or os.path.exists(f"{path}-wal"):
        return f"file:{quoted}?mode=ro"
    return f"file:{quoted}?immutable=1"


def _decode_text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _create(path: Path, busy_timeout: float) -> None:
    """Create a ledger at ``path`` unless another process creates it first.

    The schema is written to a temporary file that is then linked into place,
    so no process can open a half-made ledger. An empty file at ``path`` was
    therefore made by something other than this code.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LedgerError(
            f"cannot create the directory for ledger {path}: {exc}; "
            "pass a path in a writable directory"
        ) from exc
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        _write_schema(temporary, busy_timeout)
        _link_into_place(temporary, path)
    except (OSError, sqlite3.Error) as exc:
        raise LedgerError(
            f"cannot create ledger {path}: {exc}; pass a path in a writable directory"
        ) from exc
    finally:
        for leftover in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{temporary}{leftover}")


def _write_schema(path: Path, busy_timeout: float) -> None:
    connection = sqlite3.connect(
        os.fspath(path), timeout=busy_timeout, isolation_level=None
    )
    try:
        connection.executescript(f"BEGIN;{_SCHEMA}COMMIT;")
        # WAL mode is stored in the file, so every later connection uses it.
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()


def _link_into_place(temporary: Path, path: Path) -> None:
    try:
        os.link(temporary, path)
    except FileExistsError:
        logger.debug("ledger %s was created by another process", path)
    except OSError:
        # NOTE: some file systems have no hard links. The rename below can
        # replace a ledger that another process created a moment earlier.
        if not os.path.lexists(path):
            os.replace(temporary, path)
    else:
        logger.debug("created ledger %s", path)


def _check_header(path: Path) -> None:
    # Only stat(), never open(): closing any descriptor of the file drops
    # every POSIX lock this process holds on it, including the locks of
    # SQLite connections that other Ledger objects keep open. Another
    # process could then take over and delete the write-ahead log while it
    # still contains committed transactions. SQLite itself recognises files
    # that are not databases, in _check_meta.
    if os.path.isdir(path):
        raise NotALedgerError(path, "it is a directory")
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise LedgerError(f"cannot read ledger {path}: {exc}") from exc
    if size == 0:
        raise NotALedgerError(path, "the file is empty")


def _check_meta(connection: sqlite3.Connection, path: Path) -> None:
    try:
        rows = connection.execute("SELECT key, value FROM meta").fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            raise NotALedgerError(
                path, "an SQLite database without a rankigi meta table"
            ) from exc
        raise LedgerError(f"cannot read ledger {path}: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        if "not a database" in str(exc):
            raise NotALedgerError(path, "the file is not an SQLite database") from exc
        raise NotALedgerError(path, f"the database is damaged ({exc})") from exc
    meta = dict(rows)
    if meta.get("format") != FORMAT_NAME:
        raise NotALedgerError(
            path, f"its meta table names the format {meta.get('format')!r:.80}"
        )
    _check_version(meta.get("schema_version"), path)


def _check_version(version: object, path: Path) -> None:
    if isinstance(version, str) and version.isdigit():
        number = int(version)
        if number == SCHEMA_VERSION:
            return
        if number > SCHEMA_VERSION:
            raise LedgerError(
                f"ledger {path} has schema version {number}, newer than the "
                f"version {SCHEMA_VERSION} this rankigi reads; upgrade rankigi"
            )
    raise NotALedgerError(path, f"unknown schema version {version!r:.80}")


def _enable_wal(connection: sqlite3.Connection, path: Path) -> None:
    try:
        (mode,) = connection.execute("PRAGMA journal_mode=WAL").fetchone()
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot open ledger {path}: {exc}") from exc
    if str(mode).lower() != "wal":
        # Some file systems (network shares) cannot hold WAL's shared memory.
        # SQLite then keeps its rollback journal, where readers block writers.
        logger.warning(
            "ledger %s: WAL mode is unavailable, using journal mode %s", path, mode
        )
