#!/usr/bin/env bash
# Run the whole benchmark suite and rewrite docs/benchmarks.md.
#
# Creates two virtualenvs on first use: .bench/venv with this checkout
# (editable, with the server extra) and the other SDKs, and .bench/venv-100
# with the published rankigi 1.0.0 alone, so both clients run in one session
# on one machine. Then it runs each benchmark in turn; each one replaces its
# own section of docs/benchmarks.md and keeps the others.
#
# Usage: benchmarks/run_all.sh [--quick] [--setup-only]
#   --quick       few rounds, to check that everything runs; the new scripts
#                 write to .bench/benchmarks-quick.md, and decorators.py and
#                 ingest.py only print, so docs/benchmarks.md is not changed
#   --setup-only  create or update the virtualenvs and stop
#
# Environment:
#   PYTHON                 interpreter that creates the virtualenvs (python3)
#   RANKIGI_BENCH_VENV     use this virtualenv instead of .bench/venv
#   RANKIGI_BENCH_V1_VENV  use this virtualenv instead of .bench/venv-100
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
# Absolute paths, because the benchmarks start their children in temporary
# folders.
absolute() {
    case "$1" in
        /*) echo "$1" ;;
        *) echo "$PWD/$1" ;;
    esac
}
VENV="$(absolute "${RANKIGI_BENCH_VENV:-.bench/venv}")"
V1_VENV="$(absolute "${RANKIGI_BENCH_V1_VENV:-.bench/venv-100}")"
QUICK=0
SETUP_ONLY=0
for argument in "$@"; do
    case "$argument" in
        --quick) QUICK=1 ;;
        --setup-only) SETUP_ONLY=1 ;;
        *)
            echo "run_all.sh: unknown option $argument; use --quick or --setup-only" >&2
            exit 2
            ;;
    esac
done

# Install into a virtualenv unless its stamp is newer than what decides its
# contents (pyproject.toml and this script).
prepare_venv() {
    local directory="$1"
    shift
    local stamp="$directory/.rankigi-bench-installed"
    if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt "$0" ]; then
        return
    fi
    echo "== preparing $directory" >&2
    if [ ! -x "$directory/bin/python" ]; then
        "$PYTHON" -m venv "$directory"
    fi
    "$directory/bin/python" -m pip install --quiet "$@"
    touch "$stamp"
}

# The OTLP/HTTP exporter is not in the bench extra: only track.py, hang.py
# and memory.py use it, to give OpenTelemetry a network path like rankigi's.
prepare_venv "$VENV" -e '.[server,bench]' opentelemetry-exporter-otlp-proto-http
prepare_venv "$V1_VENV" 'rankigi==1.0.0'
if [ "$SETUP_ONLY" = 1 ]; then
    exit 0
fi

BENCH_PYTHON="$VENV/bin/python"
V1_PYTHON="$V1_VENV/bin/python"
if [ "$QUICK" = 1 ]; then
    OUTPUT=.bench/benchmarks-quick.md
    cp docs/benchmarks.md "$OUTPUT"
    NEW_OPTIONS=(--quick --output "$OUTPUT")
    DECORATOR_OPTIONS=(--rounds 3 --calls 100)
    INGEST_OPTIONS=(--runs 1 --events 2000 --v1-events 200 --breakdown-events 2000)
else
    OUTPUT=docs/benchmarks.md
    NEW_OPTIONS=(--output "$OUTPUT")
    DECORATOR_OPTIONS=(--write --rounds 25)
    INGEST_OPTIONS=(--write-docs)
fi

# One failing benchmark must not hide the results of the others, so each
# runs even after a failure, and the exit status reports them at the end.
failed=()
run() {
    local name="$1"
    shift
    local started=$SECONDS
    echo "== $name" >&2
    if ! "$@"; then
        failed+=("$name")
    fi
    echo "== $name took $((SECONDS - started)) s" >&2
}

run imports "$BENCH_PYTHON" benchmarks/imports.py --v1-python "$V1_PYTHON" "${NEW_OPTIONS[@]}"
run track "$BENCH_PYTHON" benchmarks/track.py --v1-python "$V1_PYTHON" "${NEW_OPTIONS[@]}"
run hang "$BENCH_PYTHON" benchmarks/hang.py --v1-python "$V1_PYTHON" "${NEW_OPTIONS[@]}"
run memory "$BENCH_PYTHON" benchmarks/memory.py --v1-python "$V1_PYTHON" "${NEW_OPTIONS[@]}"
run decorators "$BENCH_PYTHON" benchmarks/decorators.py "${DECORATOR_OPTIONS[@]}"
run ingest "$BENCH_PYTHON" benchmarks/ingest.py --v1-python "$V1_PYTHON" "${INGEST_OPTIONS[@]}"

if [ "${#failed[@]}" -gt 0 ]; then
    echo "run_all.sh: these benchmarks failed: ${failed[*]}" >&2
    exit 1
fi
echo "run_all.sh: results are in $OUTPUT ($SECONDS s in all)" >&2
