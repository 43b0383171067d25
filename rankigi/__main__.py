"""Run the ``rankigi`` command as ``python -m rankigi``."""

from __future__ import annotations

import sys

from rankigi.cli import main

if __name__ == "__main__":
    sys.exit(main())
