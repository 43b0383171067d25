"""The embedded ledger: per-agent hash chains of events in one SQLite file.

``Ledger.append`` stores wire events (the ingest format) as records whose
``event_hash`` covers every other field and links to the previous event of the
same agent. ``Ledger.verify`` detects an edit, deletion, insertion or
reordering of stored events. It cannot detect an editor who recomputes the
hashes of every event from the edited one to the end of the chain and also
updates the recorded head. Catching that needs a head hash kept outside the file.
"""

from __future__ import annotations

from rankigi.ledger._errors import (
    InvalidEventError,
    LedgerError,
    LedgerNotFoundError,
    NotALedgerError,
)
from rankigi.ledger._handshakes import (
    HandshakeError,
    complete_handshake,
    get_handshake,
    initiate_handshake,
    verify_handshake,
)
from rankigi.ledger._record import FIELDS
from rankigi.ledger._results import AppendResult, VerifyResult
from rankigi.ledger._store import Ledger

__all__ = [
    "FIELDS",
    "AppendResult",
    "HandshakeError",
    "InvalidEventError",
    "Ledger",
    "LedgerError",
    "LedgerNotFoundError",
    "NotALedgerError",
    "VerifyResult",
    "complete_handshake",
    "get_handshake",
    "initiate_handshake",
    "verify_handshake",
]
