"""The HTTP API assembled for tests.

Unit level: ``ApiStack`` = the real ``ApiApp`` + the real ``ExecutionEngine`` on a recording
``StubBroker``, the ``InMemoryStore`` and a ``ManualClock``, with ``FakeVerifier`` standing in for
Firebase Auth (tokens are looked up in a table; unknown tokens are a 401 exactly as an invalid
Firebase token is). ``RecordingGroupEngine`` wraps the engine with a hand-written
``execute_group``/``get_group`` so the API's multi-leg translation can be tested on its own.

End to end: ``FunctionsServer`` runs ``functions-framework --target api --source functions/main.py``
as a child process (own process group, killed on stop) and talks to it over real HTTP.
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Mapping

from backend.adapters.memory_store import InMemoryStore
from backend.api.app import ApiApp
from backend.api.auth import Identity, identity_from_claims, unauthenticated
from backend.api.history import MemoryHistoryReader
from backend.api.http import ApiRequest, ApiResponse
from backend.domain.clock import ManualClock
from backend.execution.engine import ExecutionEngine, RiskManager, SmartRouter
from backend.risk.manager import RiskLimits
from backend.settings import ExecSettings
from tests.support.emulators import REPO_ROOT, free_port, stop_process_group
from tests.support.stub_broker import StubBroker

QUOTES = {"AAPL": ("189.99", "190.01"), "SPY": ("519.99", "520.01"), "EUR/USD": ("1.1000", "1.1001"),
          "GBP/USD": ("1.2700", "1.2701"), "EURUSD": ("1.1000", "1.1001"),
          "GBPUSD": ("1.2700", "1.2701"), "BTC/USD": ("49990", "50010"), "WIDE": ("99.80", "100.20")}


class FakeVerifier:
    """``TokenVerifier`` over a table token → claims; records every token it was asked about."""

    def __init__(self, tokens: Mapping[str, Mapping[str, Any]] | None = None):
        self.tokens: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (tokens or {}).items()}
        self.calls: list[str] = []
        self.fresh_calls: list[bool] = []  # whether each call asked for the account check

    def add(self, token: str, *, uid: str, tenant_id: str | None = "acme", role: str | None = "trader",
            **claims: Any) -> str:
        data = {"uid": uid, **claims}
        if tenant_id is not None:
            data["tenant_id"] = tenant_id
        if role is not None:
            data["role"] = role
        self.tokens[token] = data
        return token

    def verify(self, token: str, *, fresh: bool = False) -> Identity:
        self.calls.append(token)
        self.fresh_calls.append(fresh)
        claims = self.tokens.get(token)
        if claims is None:
            raise unauthenticated("invalid ID token (InvalidIdTokenError)")
        return identity_from_claims(claims)


@dataclass
class FakeGroup:
    """What the lead's ``ExecutionGroup`` offers the API: ``to_api_response()`` (+ owner fields)."""

    response: dict[str, Any]
    uid: str
    tenant_id: str

    def to_api_response(self) -> dict[str, Any]:
        return copy.deepcopy(self.response)


class RecordingGroupEngine:
    """The real engine for single intents plus a hand-written multi-leg side that records calls."""

    def __init__(self, engine: ExecutionEngine):
        self._engine = engine
        self.store = engine.store
        self.settings = engine.settings
        self.group_calls: list[tuple[dict[str, Any], Any, str | None]] = []
        self.groups: dict[tuple[str, str], FakeGroup] = {}
        self.fail_with: Exception | None = None

    def execute_intent(self, intent, context=None):  # noqa: ANN001
        return self._engine.execute_intent(intent, context)

    def execute_group(self, request: Mapping[str, Any], context: Any, *, group_id: str | None = None) -> FakeGroup:
        self.group_calls.append((copy.deepcopy(dict(request)), context, group_id))
        if self.fail_with is not None:
            raise self.fail_with
        gid = group_id or f"group_{len(self.group_calls):04d}"
        key = (context.tenant_id, gid)
        if key in self.groups:
            return self.groups[key]
        legs = [{"leg_id": leg["leg_id"], "symbol": leg["symbol"], "direction": leg["direction"],
                 "units": leg["units"], "asset_class": leg["asset_class"], "status": "FILLED",
                 "filled_units": leg["units"], "fill_price": "1.1005", "slippage_pips": "0.5"}
                for leg in request["legs"]]
        group = FakeGroup({"group_id": gid, "strategy_id": request["strategy_id"], "status": "FILLED", "legs": legs,
                           "avg_slippage_pips": "0.5", "rollback_executed": False,
                           "completed_timestamp": "2026-01-05T14:30:00+00:00"}, context.uid, context.tenant_id)
        self.groups[key] = group
        return group

    def get_group(self, tenant_id: str, group_id: str) -> FakeGroup | None:
        return self.groups.get((tenant_id, group_id))


@dataclass
class ApiStack:
    app: ApiApp
    engine: Any
    broker: Any
    store: InMemoryStore
    clock: ManualClock
    verifier: FakeVerifier
    default_token: str = "tok-alice"
    logs: list[dict[str, Any]] = field(default_factory=list)

    def request(self, method: str, path: str, body: Any = None, *, token: str | None = "default",
                headers: Mapping[str, str] | None = None, query: Mapping[str, Any] | None = None,
                raw: bytes | None = None) -> ApiResponse:
        hdrs: dict[str, str] = {}
        if token == "default":
            token = self.default_token
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        if raw is None and body is not None:
            raw = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        return self.app.handle(ApiRequest(method, path, hdrs, dict(query or {}), raw or b""))

    def post(self, path: str, body: Any = None, **kw: Any) -> ApiResponse:
        return self.request("POST", path, body, **kw)

    def get(self, path: str, **kw: Any) -> ApiResponse:
        return self.request("GET", path, **kw)


def make_stack(*, limits: RiskLimits = RiskLimits(max_position_qty=Decimal("1000000")),
               dry_run: bool = False, quotes: Mapping[str, tuple[str, str]] | None = None,
               group_engine: bool = False, engine: Any = None, paper: bool = False) -> ApiStack:
    """``paper=True``: the embedded PaperBroker (default scenario: quotes, closes, fills for any
    symbol) instead of the recording StubBroker."""
    clock = ManualClock()
    if paper:
        from backend.adapters.paper_broker import PaperBroker

        broker = PaperBroker(clock=clock)
    else:
        broker = StubBroker(quotes=dict(quotes or QUOTES), now=clock.now)
    store = InMemoryStore()
    real = engine or ExecutionEngine(broker=broker, router=SmartRouter(max_spread_pct="0.001"),
                                     risk=RiskManager(limits), dry_run=dry_run, store=store, clock=clock,
                                     settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0"}))
    eng = RecordingGroupEngine(real) if group_engine else real
    verifier = FakeVerifier()
    verifier.add("tok-alice", uid="alice", tenant_id="acme", role="trader")
    verifier.add("tok-bob", uid="bob", tenant_id="acme", role="trader")
    verifier.add("tok-admin", uid="carol", tenant_id="acme", role="tenant_admin")
    verifier.add("tok-zed", uid="zed", tenant_id="globex", role="trader")
    verifier.add("tok-notenant", uid="nobody", tenant_id=None)
    verifier.add("tok-norole", uid="norole", role=None)
    verifier.add("tok-badrole", uid="mallory", role="superuser")
    verifier.add("tok-risk", uid="rita", tenant_id="acme", role="risk_manager")
    app = ApiApp.with_instances(engine=eng, verifier=verifier, history=MemoryHistoryReader(store))
    return ApiStack(app=app, engine=eng, broker=broker, store=store, clock=clock, verifier=verifier)


def execute_body(**overrides: Any) -> dict[str, Any]:
    # no broker_account_id: each user trades their own default account (issue 12)
    body: dict[str, Any] = {"strategy_id": "s1", "symbol": "AAPL", "side": "buy", "qty": "10"}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def multileg_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "strategy_id": "stat_arb_01",
        "legs": [{"leg_id": "leg_001", "symbol": "EURUSD", "direction": 1, "units": 100000, "asset_class": "FX"},
                 {"leg_id": "leg_002", "symbol": "GBPUSD", "direction": -1, "units": 50000, "asset_class": "FX"}],
        "rpm_output": {"decision_id": "rpm-42", "approved": True, "expires_at": "2099-01-01T00:00:00+00:00",
                       "approved_legs": {"leg_001": 100000, "leg_002": 50000.0}},
        "max_group_slippage_pips": 10.0,
        "allow_partial_fills": True,
    }
    body.update(overrides)
    return body


def signal_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"strategy_id": "momo", "signal_type": "BUY",
                            "symbol": "AAPL", "qty": "5", "confidence": 0.85, "reasoning": "momentum",
                            "market_data": {"symbol": "AAPL", "price": 190.0, "bid": 189.99, "ask": 190.01}}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


# ------------------------------------------------------------------------------ end to end


def emulator_env(firestore_emulator: Any, auth_emulator: Any, **extra: str) -> dict[str, str]:
    """The environment of the function under test on the emulators: live (not dry run), accounts in
    auto mode, no application default credentials; ``extra`` adds or overrides."""
    project = auth_emulator.project
    return {"FIRESTORE_EMULATOR_HOST": firestore_emulator.host, "FIREBASE_AUTH_EMULATOR_HOST": auth_emulator.host,
            "GOOGLE_CLOUD_PROJECT": project, "GCLOUD_PROJECT": project, "EXEC_DRY_RUN": "0",
            "EXEC_ACCOUNTS": "auto", "GOOGLE_APPLICATION_CREDENTIALS": "", **extra}


def alpaca_equity_env(venue: Any) -> dict[str, str]:
    """Equities routed to the local Alpaca-compatible server ``venue`` (tests/support/alpaca_server.py)."""
    return {"EXEC_BROKER_ROUTES": "EQUITY=alpaca", "ALPACA_URL_OVERRIDE": venue.url, "ALPACA_API_KEY": "PKLOCALTEST",
            "ALPACA_SECRET_KEY": "local-secret"}


class FunctionsServer:
    """``functions-framework --target api --source functions/main.py`` on a free port."""

    def __init__(self, env: Mapping[str, str], *, source: str = "functions/main.py", target: str = "api"):
        self.env = dict(env)
        self.source = source
        self.target = target
        self.port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> "FunctionsServer":
        self.port = free_port()
        fd, log = tempfile.mkstemp(prefix="functions-framework-", suffix=".log")
        os.close(fd)
        self.log_path = Path(log)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        binary = Path(sys.executable).parent / "functions-framework"
        cmd = [str(binary), "--target", self.target, "--source", self.source, "--port", str(self.port),
               "--host", "127.0.0.1"]
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        env.pop("PYTHONPATH", None)  # the function must import as it would deployed: functions/ is the root
        self.proc = subprocess.Popen(cmd, cwd=str(REPO_ROOT), env=env, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"functions-framework exited with {self.proc.returncode}\n{self.log_tail()}")
            try:
                status, _, _ = http_call("GET", self.url + "/healthz", timeout=2)
                if status == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"functions-framework not ready after {timeout}s\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, lines: int = 60) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        if self.log_path is None or not self.log_path.exists():
            return out
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        stop_process_group(proc)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.log_path is not None and not os.environ.get("EMULATOR_KEEP_LOGS"):
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> "FunctionsServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_call(method: str, url: str, body: Any = None, headers: Mapping[str, str] | None = None, *,
              raw: bytes | None = None, timeout: float = 60.0) -> tuple[int, dict[str, str], Any]:
    """(status, headers, decoded JSON or text). HTTP errors are returned, not raised."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None and raw is None:
        req.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        req.add_header(key, value)
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            status, hdrs, payload = resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as err:
        status, hdrs, payload = err.code, dict(err.headers.items()), err.read()
    text = payload.decode(errors="replace")
    try:
        return status, hdrs, (json.loads(text) if text else None)
    except ValueError:
        return status, hdrs, text
