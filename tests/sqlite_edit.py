"""Edit a ledger file behind the SDK's back, as a tamperer would."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Union


@contextlib.contextmanager
def edit(path: Union[str, Path]) -> Iterator[sqlite3.Connection]:
    """Yield a connection, commit on success and always close it.

    ``with sqlite3.connect(...)`` commits but leaves the connection open,
    which Python 3.13 reports as a ResourceWarning.
    """
    connection = sqlite3.connect(path)
    try:
        with connection:
            yield connection
    finally:
        connection.close()
