#!/usr/bin/env bash
# The long load run (tests/load/test_load.py, long variant): N concurrent two-leg groups on the
# official Firestore emulator + the local Alpaca server, then one sweep, then the invariants.
# Prints throughput and p50/p99 group latency and writes them to bench/results/runs/load.json (ignored by git).
#
#   LOAD_GROUPS=1000 bash scripts/load.sh          # the documented run (the default N is 1000)
#   LOAD_GROUPS=300 LOAD_THREADS=6 bash scripts/load.sh
#
# Env: LOAD_GROUPS (default 1000), LOAD_THREADS (default 8), LOAD_LATENCY_SECONDS (default 0.005),
#      LOAD_USERS (default: one user per group; few users contend on the per-user lot books),
#      LOAD_TIMEOUT seconds for the whole test (default 1800; pytest.ini's 300 s is for CI tests).
# The quick variant (N=100) runs with the normal suite: bash scripts/test.sh tests/load
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup.sh >/dev/null
# shellcheck source=/dev/null
source scripts/env.sh

export LOAD_GROUPS="${LOAD_GROUPS:-1000}"
exec .venv/bin/python -m pytest tests/load/test_load.py -m slow -q -s -p no:cacheprovider \
  -o timeout="${LOAD_TIMEOUT:-1800}" "$@"
