#!/usr/bin/env bash
# The main job on the embedded default (README, first command): installs what is missing, starts
# the official Firestore emulator, runs a scripted trading session on the paper broker and prints
# the ledger. No keys, no internet.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
# shellcheck source=/dev/null
source scripts/env.sh
exec .venv/bin/python scripts/demo.py "$@"
