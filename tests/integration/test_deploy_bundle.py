"""The deploy bundle works on its own: what `firebase deploy` uploads imports and declares our three
functions with nothing but its own files and its own requirements.txt.

``scripts/build_bundle.sh`` packages ``functions/`` with firebase-tools' deploy code (symlinks
followed, firebase.json ``ignore`` honored). This test builds it into a temp folder, creates a clean
venv from the bundle's ``requirements.txt`` only (pip from the configured registry, pip's cache
reused; ~30 s cold), then — with that venv's python, cwd = the bundle, no PYTHONPATH, ``-I`` — runs
firebase_functions' own discovery (the code behind ``__/functions.yaml`` that the CLI reads at
deploy) and imports every module of the vendored ``backend`` package.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.emulators import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# Runs inside the bundle with the clean venv. Prints one JSON object.
DISCOVER = r"""
import importlib, json, os, pkgutil, sys
bundle = os.path.realpath(os.getcwd())
from firebase_functions.private import serving
import yaml
functions = serving.get_functions()          # imports ./main.py exactly as the CLI's discovery does
spec = yaml.safe_load(serving.functions_as_yaml(functions))
import backend
modules = [m.name for m in pkgutil.walk_packages(backend.__path__, "backend.")]
for name in modules:
    importlib.import_module(name)
from backend.adapters.paper_broker import PaperBroker   # data files: asset specs + scenarios
quote = PaperBroker("wide_spread").get_latest_quote("SPY", "EQUITY")
ours = {name: os.path.realpath(m.__file__) for name, m in sys.modules.items()
        if name.split(".")[0] in ("backend", "strategies") and getattr(m, "__file__", None)}
try:
    import pytest  # noqa: F401 - must not be there
    dev_tools = True
except ImportError:
    dev_tools = False
print(json.dumps({"spec": spec, "modules": modules, "files": ours, "bundle": bundle, "sys_path": sys.path,
                  "quote": [str(quote.bid), str(quote.ask)], "dev_tools": dev_tools,
                  "prefix": sys.prefix}))
"""

SECRET_NAMES = re.compile(r"(^\.env(\..*)?$|\.local$|\.pem$|\.p12$|\.key$|^service-account.*\.json$|"
                          r"credentials.*\.json$|^id_rsa)")
SECRET_CONTENT = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----|\"private_key\"\s*:|\"type\"\s*:\s*\"service_account\"")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("deploy") / "bundle"
    run = subprocess.run(["bash", str(REPO_ROOT / "scripts/build_bundle.sh"), str(out)], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str(out)
    return out


@pytest.fixture(scope="module")
def clean_python(bundle: Path, tmp_path_factory) -> str:
    venv = tmp_path_factory.mktemp("venv") / "v"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin/python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    started = time.monotonic()
    pip = subprocess.run([python, "-m", "pip", "install", "--disable-pip-version-check", "-q",
                          "-r", str(bundle / "requirements.txt")],
                         cwd=bundle, env=env, capture_output=True, text=True, timeout=540)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    print(f"clean venv from the bundle's requirements.txt: {time.monotonic() - started:.1f} s")
    return python


@pytest.fixture(scope="module")
def discovered(bundle: Path, clean_python: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith("FIRESTORE_")}
    run = subprocess.run([clean_python, "-I", "-c", DISCOVER], cwd=bundle, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*"))


def test_the_bundle_holds_the_functions_and_the_vendored_core_as_real_files(bundle: Path):
    names = {p.relative_to(bundle).as_posix() for p in _files(bundle)}
    for required in ("main.py", "requirements.txt", "backend/__init__.py", "backend/api/wiring.py",
                     "backend/service/intake.py", "backend/execution/sweeper.py", "backend/config/asset_specs.json",
                     "backend/config/scenarios/default.json", "strategies/base_strategy.py"):
        assert required in names, f"{required} missing from the bundle"
    assert not [p for p in _files(bundle) if p.is_symlink()], "the bundle must hold files, not links"
    assert (bundle / "requirements.txt").read_text() == (REPO_ROOT / "functions/requirements.txt").read_text()


def test_the_bundle_has_no_tests_venv_caches_or_credentials(bundle: Path):
    offenders = []
    for path in _files(bundle):
        rel = path.relative_to(bundle)
        parts = set(rel.parts)
        if parts & {"tests", "venv", ".venv", "__pycache__", ".pytest_cache", ".hypothesis", "node_modules", ".git"}:
            offenders.append(f"{rel}: test/venv/cache folder")
        elif path.name.startswith("test_") or path.name == "conftest.py" or path.suffix in (".pyc", ".log"):
            offenders.append(f"{rel}: test code or build output")
        elif SECRET_NAMES.search(path.name):
            offenders.append(f"{rel}: credentials-looking name")
        elif path.is_file() and SECRET_CONTENT.search(path.read_bytes()):
            offenders.append(f"{rel}: credentials-looking content")
    assert offenders == []


def test_main_imports_from_the_bundle_alone_and_declares_the_four_functions(discovered: dict):
    endpoints = discovered["spec"]["endpoints"]
    assert sorted(endpoints) == ["api", "on_order_intent_created", "reconcile_daily", "sweep_stuck_work"]

    assert endpoints["api"]["httpsTrigger"] == {}
    trigger = endpoints["on_order_intent_created"]["eventTrigger"]
    assert trigger["eventType"] == "google.cloud.firestore.document.v1.created"
    assert trigger["eventFilterPathPatterns"] == {"document": "tenants/{tenant_id}/order_intents/{intent_id}"}
    assert trigger["eventFilters"]["database"] == "(default)"
    assert endpoints["sweep_stuck_work"]["scheduleTrigger"]["schedule"] == "every 1 minutes"
    for endpoint in endpoints.values():
        assert endpoint["platform"] == "gcfv2" and endpoint["region"] == ["us-central1"]
        assert {s["key"] for s in endpoint["secretEnvironmentVariables"]} == {"ALPACA_API_KEY", "ALPACA_SECRET_KEY"}
    assert {p["name"] for p in discovered["spec"]["params"]} == {"ALPACA_API_KEY", "ALPACA_SECRET_KEY"}


def test_every_core_module_imports_with_the_runtime_requirements_only(discovered: dict):
    bundle = discovered["bundle"]
    assert "backend.api.wiring" in discovered["modules"] and "backend.adapters.alpaca_broker" in discovered["modules"]
    outside = {name: path for name, path in discovered["files"].items() if not path.startswith(bundle + os.sep)}
    assert outside == {}, "imported from outside the bundle"
    assert not any(str(REPO_ROOT) == p or p.startswith(str(REPO_ROOT) + os.sep) for p in discovered["sys_path"]
                   if not p.startswith(bundle)), discovered["sys_path"]
    assert not discovered["prefix"].startswith(str(REPO_ROOT)), "must run in the clean venv"
    assert discovered["dev_tools"] is False, "the clean venv must hold the runtime requirements only"
    assert discovered["quote"] == ["519.99", "520.01"]  # scenario files travel with the code
