#!/usr/bin/env bash
# The long load run (tests/load/test_load.py, long variant): N concurrent two-leg groups spread over K
# brokerage accounts (one alpaca_broker connection, K accounts on the local Alpaca server's Broker API,
# strict accounts mode) on the official Firestore emulator, then one sweep, then the invariants —
# per account too (ledger net position = venue position for every account).
# Prints throughput and p50/p99 group latency and writes them to bench/results/runs/load.json (ignored by git).
#
#   bash scripts/load.sh                                   # the documented run: 1000 groups over 100 accounts
#   LOAD_GROUPS=300 LOAD_ACCOUNTS=30 LOAD_THREADS=6 bash scripts/load.sh
#
# Env: LOAD_GROUPS (default 1000), LOAD_ACCOUNTS (default 100; group i trades account i mod K),
#      LOAD_THREADS (default 8), LOAD_LATENCY_SECONDS (default 0.005),
#      LOAD_TIMEOUT seconds for the whole test (default 1800; pytest.ini's 300 s is for CI tests).
# The quick variant (60 groups over 10 accounts) runs with the normal suite: bash scripts/test.sh tests/load
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup.sh >/dev/null
# shellcheck source=/dev/null
source scripts/env.sh

export LOAD_GROUPS="${LOAD_GROUPS:-1000}"
export LOAD_ACCOUNTS="${LOAD_ACCOUNTS:-100}"
exec .venv/bin/python -m pytest tests/load/test_load.py -m slow -q -s -p no:cacheprovider \
  -o timeout="${LOAD_TIMEOUT:-1800}" "$@"
