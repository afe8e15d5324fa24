#!/usr/bin/env bash
# The main job (README, first command): the whole backend on this machine, offline, no keys.
#
#   bash scripts/run.sh             # paper accounts (+ FX on local OANDA); the stack stays up until Ctrl-C (on a terminal)
#   bash scripts/run.sh --alpaca    # the traders' accounts on the local Alpaca-compatible server's Broker API
#                                   # (connection demo_alpaca, venue alpaca_broker) instead of the paper venue
#   bash scripts/run.sh --once      # exit after the session (automatic when not on a terminal / CI;
#                                   # the output says why)
#   bash scripts/run.sh --stay | tee log   # stay up after the session even when piped, until Ctrl-C
#   bash scripts/run.sh --library   # the older in-process session (scripts/demo.py, Firestore emulator only)
#
# Installs what is missing (scripts/setup.sh), then scripts/stack.py starts firebase-tools' emulator
# suite for project demo-exec — official Firestore emulator (firestore.rules loaded), Auth, Pub/Sub,
# and the Functions emulator running functions/main.py (api, on_order_intent_created,
# sweep_stuck_work) — creates two traders, a tenant admin, a risk manager and an auditor of tenant
# acme_corp, and (admin writes; strict accounts, as deployed) its broker connections — paper, or
# alpaca_broker with --alpaca, plus oanda on the local OANDA v20 server (tests/support/oanda_server.py)
# for FX/metals — one account per trader (trader_main, trader2_main, FX: trader_fx) and their default
# accounts; credentials only by reference (env:DEMO_*, values in the functions' env, never in
# Firestore). Then a scripted session through the HTTP API and Firestore (placed, downgraded,
# rejected, replayed, a multi-leg pair, two users' trades landing in their own accounts with ledger
# rows, venue positions and the reconciliation per account, ACCOUNT_NOT_OWNED refusals, an intent
# document executed by the trigger, the sweeper), prints the tenant ledger, ID tokens and curl
# examples that name accounts. While it is up, the scheduled sweeper is called every minute as Cloud
# Scheduler would (--schedule-seconds S; 0: never). Exit code 0 only if every scripted step behaved as expected.
# API: http://127.0.0.1:5001/demo-exec/us-central1/api/...   Logs: .tools/stack/emulators.log
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
RUN_SH_STARTED="$(date +%s.%N)"
export RUN_SH_STARTED
bash scripts/setup.sh
# shellcheck source=/dev/null
source scripts/env.sh
if [[ "${1:-}" == "--library" ]]; then
  shift
  exec .venv/bin/python scripts/demo.py "$@"
fi
exec .venv/bin/python scripts/stack.py "$@"
