#!/usr/bin/env bash
# The project's test command (README, CI): installs what is missing, then runs pytest.
#   bash scripts/test.sh                      # whole suite
#   bash scripts/test.sh tests/unit -x        # extra args go to pytest
# Env: PYTEST_WORKERS=N runs N pytest-xdist workers (--dist loadfile), each with its own emulators
#      and project id demo-test-gwN. Default 0 (serial): on 2 cores the suite is currently faster
#      serially, and concurrency tests are not squeezed by a second JVM + worker.
# Exit code: pytest's, except that "no tests collected" (5) is a failure too (exit 1).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup.sh
# shellcheck source=/dev/null
source scripts/env.sh

workers="${PYTEST_WORKERS:-0}"
xdist=()
if [[ "$workers" != 0 ]]; then
  xdist=(-n "$workers" --dist loadfile)
fi

set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "${xdist[@]}" "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
  echo "test.sh: pytest collected no tests; treating as failure" >&2
  exit 1
fi
exit "$rc"
