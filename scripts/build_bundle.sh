#!/usr/bin/env bash
# Materialize the Cloud Functions deploy bundle exactly as `firebase deploy` would upload it.
#
#   bash scripts/build_bundle.sh OUT_DIR            # OUT_DIR must not exist or be empty
#   bash scripts/build_bundle.sh --check [OUT_DIR]  # + import main.py from the bundle, list the functions
#
# How: firebase-tools' own packaging code (prepareFunctionsUpload, the function `firebase deploy`
# calls for a gcfv2 codebase) zips the functions `source` of firebase.json, honoring its `ignore`
# globs and following symlinks (functions/backend -> ../backend is copied in as real files); the
# zip is then extracted into OUT_DIR. So OUT_DIR is the upload, file for file.
#
# --check (the firebase.json predeploy hook): imports main.py from the bundle with cwd = bundle and
# no PYTHONPATH (python -I), using functions/venv's python, through firebase_functions' discovery
# (the code behind `__/functions.yaml`), imports every module under backend/, and prints the
# discovered functions with their triggers. Any failure exits non-zero and stops the deploy.
# Without OUT_DIR the bundle goes to a temp folder that is removed afterwards.
# tests/integration/test_deploy_bundle.py does the same with a clean venv built from the bundle's
# requirements.txt only.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf 'build_bundle: %s\n' "$*" >&2; }
die() { printf 'build_bundle: ERROR: %s\n' "$*" >&2; exit 1; }

check=0
out=""
for arg in "$@"; do
  case "$arg" in
    --check) check=1 ;;
    -h|--help) sed -n '2,18p' "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) die "unknown option $arg" ;;
    *) [[ -z "$out" ]] || die "one OUT_DIR only"; out="$arg" ;;
  esac
done

cleanup_dir=""
trap '[[ -n "$cleanup_dir" ]] && rm -rf "$cleanup_dir"' EXIT
if [[ -z "$out" ]]; then
  [[ $check == 1 ]] || die "usage: build_bundle.sh [--check] OUT_DIR"
  cleanup_dir="$(mktemp -d -t functions-bundle-XXXXXX)"
  out="$cleanup_dir/bundle"
fi
if [[ -e "$out" && -n "$(ls -A "$out" 2>/dev/null)" ]]; then
  die "$out exists and is not empty"
fi

FT="$ROOT/.tools/node_modules/firebase-tools"
[[ -f "$FT/package.json" ]] || die "firebase-tools not installed: run scripts/setup.sh"
command -v node >/dev/null || die "node not found"
PY="$ROOT/.venv/bin/python"
[[ -x "$PY" ]] || die ".venv missing: run scripts/setup.sh"

mkdir -p "$out"
out="$(cd "$out" && pwd)"
zip="$(mktemp -t functions-bundle-XXXXXX.zip)"
trap '[[ -n "$cleanup_dir" ]] && rm -rf "$cleanup_dir"; rm -f "$zip"' EXIT

# 1. Package with firebase-tools' deploy code; prints the codebase's source dir on stdout.
source_dir="$(NO_UPDATE_NOTIFIER=1 node - "$ROOT" "$FT" "$zip" <<'JS'
const fs = require("fs");
const path = require("path");
const [root, ft, zipOut] = process.argv.slice(2);
const { loadCJSON } = require(path.join(ft, "lib/loadCJSON"));
const projectConfig = require(path.join(ft, "lib/functions/projectConfig"));
const { prepareFunctionsUpload } = require(path.join(ft, "lib/deploy/functions/prepareFunctionsUpload"));
(async () => {
  const config = loadCJSON(path.join(root, "firebase.json"));
  const codebases = projectConfig.normalizeAndValidate(config.functions);
  const local = projectConfig.configForCodebase(codebases, "default");
  const sourceDir = path.join(root, local.source);
  // deploy passes the codebase config as is; prepareFunctionsUpload appends to `ignore`, so copy it.
  const cfg = { ...local, ignore: local.ignore ? [...local.ignore] : undefined };
  // The logger prints "packaged ..." on stdout: keep stdout for our answer only.
  const log = console.log;
  console.log = (...a) => console.error(...a);
  const packaged = await prepareFunctionsUpload(root, sourceDir, cfg, [], undefined,
                                                { exportType: "zip", executablePaths: [] });
  fs.copyFileSync(packaged.pathToSource, zipOut);
  fs.rmSync(packaged.pathToSource, { force: true });
  log(sourceDir);
})().catch((e) => { console.error(e && e.message ? e.message : e); process.exit(1); });
JS
)" || die "firebase-tools could not package the functions source"

# 2. Extract (file modes kept), report.
"$PY" - "$zip" "$out" <<'PY'
import os, sys, zipfile
zip_path, out = sys.argv[1], sys.argv[2]
count = size = 0
with zipfile.ZipFile(zip_path) as z:
    for info in z.infolist():
        target = os.path.realpath(os.path.join(out, info.filename))
        if not target.startswith(os.path.realpath(out) + os.sep):
            sys.exit(f"build_bundle: ERROR: unsafe path in the archive: {info.filename}")
        z.extract(info, out)
        mode = (info.external_attr >> 16) & 0o777
        if mode:
            os.chmod(target, mode)
        count += 1
        size += info.file_size
print(f"build_bundle: {count} files, {size / 1024:.0f} KiB -> {out}", file=sys.stderr)
PY
say "source: $source_dir (firebase.json functions[codebase=default], ignore honored, symlinks followed)"

if [[ $check == 0 ]]; then
  echo "$out"
  exit 0
fi

# 3. --check: import from the bundle alone and list what firebase deploy would discover.
VENV_PY="$ROOT/functions/venv/bin/python"
[[ -x "$VENV_PY" ]] || die "functions/venv missing: run scripts/setup.sh"
(cd "$out" && env -u PYTHONPATH "$VENV_PY" -I - "$out" <<'PY'
import importlib, json, os, pkgutil, sys
bundle = sys.argv[1]
from firebase_functions.private import serving  # what `__/functions.yaml` serves to the CLI
import yaml
spec = yaml.safe_load(serving.functions_as_yaml(serving.get_functions()))
import backend
for mod in pkgutil.walk_packages(backend.__path__, "backend."):
    importlib.import_module(mod.name)
outside = sorted(name for name, m in sys.modules.items()
                 if (name == "main" or name.split(".")[0] in ("backend", "strategies"))
                 and getattr(m, "__file__", None) and not os.path.realpath(m.__file__).startswith(bundle + os.sep))
if outside:
    sys.exit(f"build_bundle: ERROR: modules imported from outside the bundle: {outside}")
for name, ep in sorted(spec["endpoints"].items()):
    if "httpsTrigger" in ep:
        trigger = "https"
    elif "scheduleTrigger" in ep:
        trigger = f"schedule '{ep['scheduleTrigger']['schedule']}'"
    elif "eventTrigger" in ep:
        et = ep["eventTrigger"]
        trigger = f"{et['eventType']} {json.dumps(et.get('eventFilterPathPatterns') or et.get('eventFilters'))}"
    else:
        trigger = "?"
    print(f"build_bundle:   {name:26} {trigger}", file=sys.stderr)
print(f"build_bundle: check ok: {len(spec['endpoints'])} functions discovered from {bundle}", file=sys.stderr)
PY
) || die "the bundle does not import"
