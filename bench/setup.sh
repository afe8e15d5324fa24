#!/usr/bin/env bash
# Install what the benchmarks need beyond the project's requirements. Idempotent.
#   1. rp2 + pyinstrument into the project venv (.venv), from bench/requirements.txt;
#   2. nautilus-trader into its own venv, bench/.venv (it needs pandas < 3; the project has pandas 3).
# Usage: bench/setup.sh            (from anywhere; uses the repo's .venv)
#        BENCH_BASE_PYTHON=python3.11 bench/setup.sh   (interpreter for bench/.venv; default: the one .venv uses)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
venv_python="$repo/.venv/bin/python"
[ -x "$venv_python" ] || { echo "no project venv at $repo/.venv (create it and install requirements-dev.txt first)" >&2; exit 1; }

"$venv_python" -m pip install --quiet -r "$here/requirements.txt"

base="${BENCH_BASE_PYTHON:-$("$venv_python" -c 'import sys, os; print(os.path.join(sys.base_prefix, "bin", "python3"))')}"
if [ ! -x "$here/.venv/bin/python" ]; then
  "$base" -m venv "$here/.venv"
fi
"$here/.venv/bin/python" -m pip install --quiet -r "$here/requirements-nautilus.txt"
"$here/.venv/bin/python" -c 'import nautilus_trader, pydantic; print("nautilus_trader", nautilus_trader.__version__, "pydantic", pydantic.VERSION)'
"$venv_python" -c 'import importlib.metadata as m; print("rp2", m.version("rp2"), "pyinstrument", m.version("pyinstrument"))'
