"""functions/main.py (thin, cheap to import, both import roots), the flask bridge and the wiring."""
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from backend import logs
from backend.adapters.routing import RoutingConfigError
from backend.api import wiring
from backend.api.flask_bridge import to_api_request, to_flask_response
from backend.api.http import MAX_BODY_BYTES, ApiResponse

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("pydantic", "google.cloud.firestore", "alpaca", "numpy", "pandas", "backend.api.models",
         "backend.execution.engine", "backend.adapters.firestore_store")


def _python(code: str, cwd: Path, env: dict | None = None) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120,
                            env={**clean, **(env or {})})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize("cwd, module", [(ROOT, "functions.main"), (ROOT / "functions", "main")])
def test_main_imports_from_the_repo_root_and_from_functions_as_source_root_without_heavy_modules(cwd, module):
    out = _python(f"import sys, {module} as m; print(sorted(n for n in {HEAVY!r} if n in sys.modules)); "
                  "print(m.api.__name__, m.on_order_intent_created.__name__, m.sweep_stuck_work.__name__)", cwd)
    assert out.splitlines() == ["[]", "api on_order_intent_created sweep_stuck_work"]


def test_mains_own_import_time_is_small():
    """Everything main adds on top of firebase_functions (which the platform needs anyway)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", "import functions.main"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    own = 0
    for line in result.stderr.splitlines():
        found = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if found and (found.group(4) in ("functions", "functions.main") or found.group(4).startswith("backend")):
            own += int(found.group(1))
    assert own < 50_000, f"functions.main and backend modules cost {own} us at import"


def test_backend_is_reachable_from_the_functions_source_root_through_a_symlink():
    link = ROOT / "functions" / "backend"
    assert link.is_symlink() and os.readlink(link) == "../backend" and (link / "api" / "app.py").is_file()


def test_secrets_are_declared_on_every_function():
    out = _python("import functions.main as m\n"
                  "for f in (m.api, m.on_order_intent_created, m.sweep_stuck_work):\n"
                  "    print(sorted(s['key'] for s in f.__firebase_endpoint__.secretEnvironmentVariables))", ROOT)
    assert out.splitlines() == ["['ALPACA_API_KEY', 'ALPACA_SECRET_KEY']"] * 3


# ------------------------------------------------------------------------------- flask bridge


def test_flask_request_becomes_an_api_request():
    from flask import Flask

    app = Flask("t")
    with app.test_request_context("/api/execute?a=1&a=2&b=x", method="POST", data=b'{"x": 1}',
                                  headers={"Authorization": "Bearer t", "Idempotency-Key": "k"}):
        from flask import request

        converted = to_api_request(request)
    assert converted.method == "POST" and converted.path == "/api/execute" and converted.body == b'{"x": 1}'
    assert converted.query == {"a": ["1", "2"], "b": ["x"]}
    assert converted.header("authorization") == "Bearer t" and converted.header("IDEMPOTENCY-KEY") == "k"


def test_a_declared_oversized_body_is_not_read():
    from flask import Flask

    app = Flask("t")
    with app.test_request_context("/execute", method="POST", data=b"x" * (MAX_BODY_BYTES + 10)):
        from flask import request

        converted = to_api_request(request)
    assert len(converted.body) == MAX_BODY_BYTES + 1


def test_api_response_becomes_a_flask_response():
    response = to_flask_response(ApiResponse(429, {"error": {"code": "X"}}, {"Retry-After": "3"}))
    assert response.status_code == 429 and response.headers["Retry-After"] == "3"
    assert response.mimetype == "application/json" and json.loads(response.get_data()) == {"error": {"code": "X"}}


def test_the_function_answers_health_and_401_without_building_the_engine(monkeypatch):
    from flask import Flask

    import functions.main as main

    wiring.reset()
    logs.set_stream(io.StringIO())
    monkeypatch.setattr(wiring, "build_engine", lambda **kw: (_ for _ in ()).throw(AssertionError("built")))
    try:
        app = Flask("t")
        with app.test_request_context("/healthz"):
            from flask import request

            health = main.api(request)
        with app.test_request_context("/execute", method="POST", data=b"{}"):
            from flask import request

            unauthorized = main.api(request)
    finally:
        logs.set_stream(None)
        wiring.reset()
    assert health.status_code == 200 and json.loads(health.get_data())["status"] == "ok"
    assert unauthorized.status_code == 401


# ------------------------------------------------------------------------------------ wiring


@pytest.mark.parametrize("raw, expected", [
    ("EQUITY=alpaca,CRYPTO=alpaca,OPTIONS=alpaca,FOREX=paper,COMMODITY=paper",
     {"EQUITY": "alpaca", "CRYPTO": "alpaca", "OPTIONS": "alpaca", "FOREX": "paper", "COMMODITY": "paper"}),
    (" equity = Alpaca , fx=paper ", {"EQUITY": "alpaca", "FX": "paper"}),
    ("EQUITY=alpaca,FOREX=none", {"EQUITY": "alpaca", "FOREX": None}),
    ('{"EQUITY": "alpaca"}', {"EQUITY": "alpaca"}),
])
def test_parse_routes(raw, expected):
    assert wiring.parse_routes(raw) == expected


@pytest.mark.parametrize("raw", ["EQUITY", "=alpaca", "EQUITY=alpaca,EQUITY=paper", ",", "{bad json", "[1]"])
def test_bad_routes_fail_loudly(raw):
    with pytest.raises(RoutingConfigError):
        wiring.parse_routes(raw)


def test_routes_build_only_the_named_brokers_with_secrets_and_the_url_override():
    from backend.domain.clock import ManualClock

    env = {"EXEC_BROKER_ROUTES": "EQUITY=alpaca,CRYPTO=alpaca,FOREX=paper",
           "ALPACA_URL_OVERRIDE": "http://127.0.0.1:9"}
    logs.set_stream(io.StringIO())
    try:
        router = wiring.build_broker(env, {"ALPACA_API_KEY": "PKTESTKEY1", "ALPACA_SECRET_KEY": "SECRET-2"}, ManualClock())
    finally:
        logs.set_stream(None)
    assert router.describe() == {"EQUITY": "alpaca", "CRYPTO": "alpaca", "FOREX": "paper"}
    alpaca = router.broker_for("EQUITY")
    assert alpaca.url_override == "http://127.0.0.1:9" and alpaca._api_key == "PKTESTKEY1" and alpaca._secret_key == "SECRET-2"
    assert "PKTESTKEY1" not in repr(alpaca) and "SECRET-2" not in repr(alpaca)


@pytest.mark.parametrize("raw", ["EQUITY=ibkr", "FOREX=alpaca"])
def test_an_unknown_broker_or_an_unsupported_route_fails_at_build(raw):
    from backend.domain.clock import ManualClock

    with pytest.raises(RoutingConfigError):
        wiring.build_broker({"EXEC_BROKER_ROUTES": raw}, {}, ManualClock())


def test_without_routes_the_paper_broker_is_the_default():
    from backend.adapters.paper_broker import PaperBroker
    from backend.domain.clock import ManualClock

    assert isinstance(wiring.build_broker({}, {}, ManualClock()), PaperBroker)


def test_build_engine_reads_settings_from_env_and_uses_firestore(monkeypatch):
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9")  # the client connects lazily
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "demo-wiring")
    logs.set_stream(io.StringIO())
    try:
        engine = wiring.build_engine(env={"EXEC_DRY_RUN": "0", "EXEC_MAX_DAILY_TRADES": "7"})
    finally:
        logs.set_stream(None)
    assert engine.dry_run is False and engine.settings.max_daily_trades == 7
    assert type(engine.store).__name__ == "FirestoreStore" and engine.store.db.project == "demo-wiring"
    assert type(wiring.history_reader_for(engine.store)).__name__ == "FirestoreHistoryReader"


def test_the_paper_scenario_comes_from_env():
    from backend.domain.assets import AssetClass
    from backend.domain.clock import ManualClock

    broker = wiring.build_broker({"EXEC_PAPER_SCENARIO": "wide_spread"}, {}, ManualClock())
    quote = broker.get_latest_quote("AAPL", AssetClass.EQUITY)
    assert quote.ask - quote.bid == 0.5


def _event(data, params):
    from datetime import datetime, timezone

    from firebase_functions import firestore_fn

    return firestore_fn.Event(specversion="1.0", id="evt-1", source="//firestore", subject=None,
                              type="google.cloud.firestore.document.v1.created",
                              time=datetime(2026, 1, 5, tzinfo=timezone.utc), data=data, location="us-central1",
                              project="demo-x", database="(default)", namespace="(default)",
                              document=f"tenants/{params['tenant_id']}/order_intents/{params['intent_id']}",
                              params=params)


class _Snapshot:
    def __init__(self, data):
        self._data = data

    def to_dict(self):
        return dict(self._data)


def test_the_trigger_hands_a_new_intent_document_to_the_intake_and_a_redelivery_places_nothing(monkeypatch):
    import functions.main as main
    from tests.support.api_stack import make_stack

    logs.set_stream(io.StringIO())
    try:
        stack = make_stack()
        monkeypatch.setattr(wiring, "get_engine", lambda secrets=None: stack.engine)
        doc = {"status": "new", "uid": "alice", "kind": "single",
               "intent": {"strategy_id": "s1", "broker_account_id": "acct1", "symbol": "AAPL", "side": "buy",
                          "qty": "2"}}
        event = _event(_Snapshot(doc), {"tenant_id": "acme", "intent_id": "app-1"})
        main.on_order_intent_created.__wrapped__(event)
        main.on_order_intent_created.__wrapped__(event)  # at-least-once delivery
        main.on_order_intent_created.__wrapped__(_event(None, {"tenant_id": "acme", "intent_id": "gone"}))
    finally:
        logs.set_stream(None)
    assert stack.store.get("tenants/acme/ledger_trades/app-1")["status"] == "placed"
    assert len(stack.broker.submits) == 1


def test_the_scheduled_sweeper_runs_on_the_shared_engine(monkeypatch):
    import functions.main as main
    from tests.support.api_stack import make_stack

    logs.set_stream(io.StringIO())
    try:
        stack = make_stack()
        monkeypatch.setattr(wiring, "get_engine", lambda secrets=None: stack.engine)
        calls = []
        import backend.execution.sweeper as sweeper

        monkeypatch.setattr(sweeper.Sweeper, "sweep", lambda self: calls.append(self.engine))
        main.sweep_stuck_work.__wrapped__(None)
    finally:
        logs.set_stream(None)
    assert calls == [stack.engine]
