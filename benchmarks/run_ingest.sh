#!/usr/bin/env bash
# Run benchmarks/ingest.py. First installs the server extra into .venv, and
# the published rankigi 1.0.0 client into a virtualenv of its own outside the
# work tree, so that both clients can be measured in one run.
# Usage: benchmarks/run_ingest.sh [--write-docs] [other ingest.py options]
set -euo pipefail
cd "$(dirname "$0")/.."

V1_VENV="${RANKIGI_V1_VENV:-${TMPDIR:-/tmp}/rankigi-1.0.0-venv}"
if [ ! -x "$V1_VENV/bin/python" ]; then
    python3 -m venv "$V1_VENV"
    "$V1_VENV/bin/pip" install --quiet 'rankigi==1.0.0'
fi
.venv/bin/python -m pip install --quiet -e '.[server]'
exec .venv/bin/python benchmarks/ingest.py --v1-python "$V1_VENV/bin/python" "$@"
