"""Issue 17, the first request of an API instance: what it would otherwise build or import is done
before it arrives.

- Before the server listens (``functions/main.py`` with ``FUNCTION_TARGET=api`` →
  ``backend.api.wiring.preload_api``): the order path's modules, the request *and response* models'
  schemas, and the process-wide objects (API, token verifier and its Admin SDK app, engine, rate
  limiter) — with no thread started and no gRPC channel made (neither survives gunicorn's fork), and
  the import's objects frozen out of the collector (``gc.freeze``).
- After the fork (``warm_up``): the channel and the auth connection.
- The first ``POST /execute`` then imports no module and builds no model schema (measured: the
  response model's schema alone was ~6 ms of a first request, the pools module's import ~0.5 ms).

Each in a fresh interpreter (a subprocess) on the official emulators, as a new instance starts.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.api_stack import emulator_env

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

_START = r"""
import gc, json, sys, threading
import functions.main  # noqa: F401  (FUNCTION_TARGET=api: preload + build before the fork)
from backend.api import models, wiring

engine = wiring._engine
out = {"threads": [t.name for t in threading.enumerate()],
       "engine_built": engine is not None,
       "channel_made": getattr(getattr(getattr(engine, "store", None), "db", None), "_firestore_api_internal", 1) is not None,
       "api_built": wiring._app is not None, "limiter_built": wiring._limiter is not None,
       "verifier_app": getattr(wiring._verifier, "_app", None) is not None,
       "frozen": gc.get_freeze_count(),
       "bridge_loaded": "backend.api.flask_bridge" in sys.modules,  # functions/main.py's api() imports it
       "models_complete": {name: bool(getattr(models, name).__pydantic_complete__) for name in wiring._HOT_MODELS}}
from backend.domain import storable
from backend.execution import lot_capacity
from backend.tax.state import PACKED_LOTS
out["primed"] = {"worst_sizes": lot_capacity.worst_sizes.cache_info().currsize,
                 "field_names": storable._key_problem.cache_info().currsize,
                 "memo_books": len(PACKED_LOTS._entries)}
"""

_FIRST_REQUEST = _START + r"""
import os
from backend.api.http import ApiRequest

took = wiring.warm_up(None, api=True)  # what the worker does after the fork
before = set(sys.modules)
complete = {name for name in dir(models)
            if isinstance(getattr(models, name), type) and getattr(getattr(models, name), "__pydantic_complete__", False)}
body = json.dumps({"strategy_id": "first", "symbol": "SPY", "side": "buy", "qty": "1", "asset_class": "EQUITY"}).encode()
response = wiring.default_app().handle(ApiRequest("POST", "/execute", {"Authorization": "Bearer " + os.environ["T_TOKEN"],
                                                                       "Content-Type": "application/json"}, {}, body))
out["status"] = response.status
out["body_status"] = (response.body or {}).get("status") if isinstance(response.body, dict) else None
out["imported"] = sorted(set(sys.modules) - before)
out["schemas_built"] = sorted({name for name in dir(models)
                               if isinstance(getattr(models, name), type)
                               and getattr(getattr(models, name), "__pydantic_complete__", False)} - complete)
out["warm_up_steps"] = sorted(took)
"""


def _run(script: str, env: dict[str, str]) -> dict:
    child_env = {**os.environ, **env, "FUNCTION_TARGET": "api", "EXEC_SECRET_MANAGER": "0", "PYTHONPATH": str(ROOT)}
    child_env.pop("EXEC_WARM_UP", None)
    result = subprocess.run([sys.executable, "-c", script + "\nprint('RESULT ' + json.dumps(out))"], cwd=ROOT,
                            env=child_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    line = [x for x in result.stdout.splitlines() if x.startswith("RESULT ")]
    assert line, result.stdout[-3000:]
    return json.loads(line[-1][len("RESULT "):])


def test_the_api_instance_builds_its_objects_before_the_fork_without_a_thread_or_a_channel(firestore_emulator,
                                                                                           auth_emulator):
    out = _run(_START, emulator_env(firestore_emulator, auth_emulator))

    assert out["threads"] == ["MainThread"]  # a thread does not survive the fork
    assert out["engine_built"] and out["api_built"] and out["limiter_built"] and out["verifier_app"]
    assert out["channel_made"] is False  # the gRPC channel is made after the fork (warm_up)
    assert all(out["models_complete"].values()), out["models_complete"]
    assert "ExecutionResponse" in out["models_complete"]
    assert out["frozen"] > 10_000  # the import's objects are out of the worker's collections
    assert out["bridge_loaded"]  # the HTTP entry point's own import is not the first request's
    # the pure steps ran once on a made-up order: their per-process caches are filled, no book is kept
    assert out["primed"]["worst_sizes"] == 1 and out["primed"]["field_names"] > 20, out["primed"]
    assert out["primed"]["memo_books"] == 0


def test_the_first_order_request_imports_no_module_and_builds_no_schema(firestore_emulator, auth_emulator):
    email = f"first-{uuid.uuid4().hex[:8]}@example.com"
    uid, _ = auth_emulator.sign_up(email, "first-pw-1")
    auth_emulator.set_claims(uid, {"tenant_id": "acme", "role": "trader"})
    token = auth_emulator.sign_in(email, "first-pw-1")

    out = _run(_FIRST_REQUEST, {**emulator_env(firestore_emulator, auth_emulator), "T_TOKEN": token})

    assert out["status"] in (200, 201) and out["body_status"] == "placed", out
    assert out["imported"] == [], out["imported"]
    assert out["schemas_built"] == [], out["schemas_built"]
    assert {"engine", "channel", "auth"} <= set(out["warm_up_steps"])


def test_a_failed_build_before_the_fork_is_logged_and_the_import_goes_on(monkeypatch, capsys):
    from backend.api import wiring

    def broken(secrets=None):
        raise RuntimeError("no credentials here")

    monkeypatch.setattr(wiring, "get_engine", broken)
    wiring.build_before_fork({})

    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    failed = [x for x in lines if x.get("event") == "api.prebuild_failed"]
    assert failed and failed[0]["error_type"] == "RuntimeError" and "no credentials" in failed[0]["error"]
    wiring.reset()


def test_priming_the_pure_steps_logs_nothing_and_a_failure_is_logged_not_raised(monkeypatch, capsys):
    from backend.api import wiring
    from backend.execution import lot_capacity

    wiring._prime_pure_paths()
    assert [x for x in capsys.readouterr().out.splitlines() if x.startswith("{")] == []

    def broken():
        raise RuntimeError("no sizes here")

    monkeypatch.setattr(lot_capacity, "worst_sizes", broken)
    wiring._prime_pure_paths()
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert [(x["event"], x["error_type"]) for x in lines] == [("api.prime_failed", "RuntimeError")]
