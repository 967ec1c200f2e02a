#!/usr/bin/env bash
# The simulated-oracle benchmark on BCCD (the project's headline number; see docs/simulation.md).
#
#   benchmarks/simulate_bccd.sh [OUT] [extra napari-al simulate flags...]
#
# Runs the `bccd` preset (BCCD train as the pool, BCCD test for evaluation, 3 seeds, all the
# required strategies; under an hour on 2 CPU cores) into OUT (default bench-out/bccd).
# Re-running the same command resumes a stopped run. On a GPU add e.g. `--device cuda
# --workers 8 --threads 1`, and for the longer schedule of docs/benchmarks.md `--init-steps 400
# --round-steps 100 --full-steps 1200` (results go to another OUT: settings are part of them).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-bench-out/bccd}"
shift || true
PY="${PYTHON:-.venv/bin/python}"
exec "$PY" -m napari_al.cli simulate --preset bccd --out "$OUT" "$@"
