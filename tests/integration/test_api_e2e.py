"""End to end over real HTTP: ``functions-framework --target api --source functions/main.py`` as a
child process, the official Firestore emulator, firebase-tools' Auth emulator with real ID tokens
carrying custom claims, and (for broker failures) the local Alpaca server.

Two function servers (module scope, started once):
- ``paper``: the default embedded PaperBroker with the ``wide_spread`` scenario (AAPL wide → a
  downgrade; SPY and unlisted symbols tight → placed);
- ``alpaca``: ``EXEC_BROKER_ROUTES=EQUITY=alpaca`` on the local Alpaca server, where faults are
  injected (429, 503) and cleared.
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from tests.support.alpaca_server import LocalAlpacaServer
from tests.support.api_stack import FunctionsServer, http_call

pytestmark = pytest.mark.slow


def _env(firestore_emulator, auth_emulator, **extra: str) -> dict[str, str]:
    project = auth_emulator.project
    return {"FIRESTORE_EMULATOR_HOST": firestore_emulator.host, "FIREBASE_AUTH_EMULATOR_HOST": auth_emulator.host,
            "GOOGLE_CLOUD_PROJECT": project, "GCLOUD_PROJECT": project, "EXEC_DRY_RUN": "0",
           "EXEC_ACCOUNTS": "auto",  # legacy labels: one account per user (issue 12)
            "GOOGLE_APPLICATION_CREDENTIALS": "", **extra}


@pytest.fixture(scope="module")
def paper_server(firestore_emulator, auth_emulator):
    with FunctionsServer(_env(firestore_emulator, auth_emulator, EXEC_PAPER_SCENARIO="wide_spread")) as server:
        yield server
        errors = [line for line in server.log_lines() if line.get("severity") == "ERROR"]
        assert errors == [], f"the function logged errors: {errors}"


@pytest.fixture(scope="module")
def alpaca_venue():
    with LocalAlpacaServer("default") as venue:
        yield venue


@pytest.fixture(scope="module")
def alpaca_server(firestore_emulator, auth_emulator, alpaca_venue):
    env = _env(firestore_emulator, auth_emulator, EXEC_BROKER_ROUTES="EQUITY=alpaca",
               ALPACA_URL_OVERRIDE=alpaca_venue.url, ALPACA_API_KEY="PKLOCALTEST", ALPACA_SECRET_KEY="local-secret",
               EXECUTION_ENGINE_LEASE_SECONDS="1")
    with FunctionsServer(env) as server:
        yield server


class Client:
    def __init__(self, server: FunctionsServer, token: str | None):
        self.server = server
        self.token = token

    def call(self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None,
             token: str | None | bool = True, raw: bytes | None = None):
        hdrs = dict(headers or {})
        use = self.token if token is True else token
        if use:
            hdrs["Authorization"] = f"Bearer {use}"
        return http_call(method, self.server.url + path, body, hdrs, raw=raw)

    def post(self, path: str, body: Any = None, **kw: Any):
        return self.call("POST", path, body, **kw)

    def get(self, path: str, **kw: Any):
        return self.call("GET", path, **kw)


@pytest.fixture
def users(auth, firestore_project):
    """Real Auth-emulator users with custom claims → ID tokens. Firestore and Auth are reset per test."""
    made: dict[str, tuple[str, str]] = {}

    def user(name: str, tenant: str | None = "acme", role: str | None = "trader") -> tuple[str, str]:
        email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
        uid, _ = auth.sign_up(email, "secret-pw-1")
        claims = {k: v for k, v in (("tenant_id", tenant), ("role", role)) if v is not None}
        if claims:
            auth.set_claims(uid, claims)
        made[name] = (uid, auth.sign_in(email, "secret-pw-1"))
        return made[name]

    return user


def execute_body(**overrides: Any) -> dict[str, Any]:
    body = {"strategy_id": "s1", "broker_account_id": "acct1", "symbol": "SPY", "side": "buy", "qty": "3"}
    body.update(overrides)
    return body


def group_body(**overrides: Any) -> dict[str, Any]:
    body = {"strategy_id": "pairs_01",
            "legs": [{"leg_id": "long_spy", "symbol": "SPY", "direction": 1, "units": 10, "asset_class": "EQUITY"},
                     {"leg_id": "short_msft", "symbol": "MSFT", "direction": -1, "units": 5, "asset_class": "EQUITY"}],
            "rpm_output": {"decision_id": "rpm-1", "approved": True, "expires_at": "2099-01-01T00:00:00+00:00",
                           "approved_legs": {"long_spy": 10, "short_msft": 5.0}},
            "max_group_slippage_pips": 50, "allow_partial_fills": False}
    body.update(overrides)
    return body


def approve_for(server, users, uid: str, body: dict[str, Any] | None = None) -> None:
    """A risk manager issues the approval ``body``'s rpm_output references, for ``uid`` (POST /risk/approvals)."""
    body = body or group_body()
    _, risk_token = users(f"risk-{uid[:6]}", role="risk_manager")
    approved = body["rpm_output"]["approved_legs"]
    legs = [{"leg_id": leg["leg_id"], "symbol": leg["symbol"], "direction": leg["direction"],
             "max_units": str(approved[leg["leg_id"]])} for leg in body["legs"]]
    status, _, reply = Client(server, risk_token).post("/risk/approvals", {
        "decision_id": body["rpm_output"]["decision_id"], "for_uid": uid,
        "expires_at": body["rpm_output"]["expires_at"], "legs": legs})
    assert status == 201, reply


# ------------------------------------------------------------------------- the happy paths


def test_health_and_openapi_need_no_token(paper_server):
    status, headers, body = http_call("GET", paper_server.url + "/healthz")
    assert status == 200 and body == {"status": "ok", "service": "exec-api"}
    assert headers["Content-Type"] == "application/json" and headers["X-Request-Id"]
    status, _, doc = http_call("GET", paper_server.url + "/openapi.json")
    assert status == 200 and doc["openapi"] == "3.1.0" and "/execute/multi-leg" in doc["paths"]


def test_a_placed_trade_is_in_the_ledger_and_the_users_history(paper_server, users, db):
    uid, token = users("alice")
    client = Client(paper_server, token)
    status, headers, body = client.post("/execute", execute_body(qty=3.5), headers={"Idempotency-Key": "buy-spy-1"})
    assert status == 201, body
    assert body["status"] == "placed" and body["uid"] == uid and body["tenant_id"] == "acme"
    assert body["filled_qty"] == "3.5000" and body["broker"] == "paper"
    intent_id = body["intent_id"]
    ledger = db.document(f"tenants/acme/ledger_trades/{intent_id}").get().to_dict()
    history = db.document(f"users/{uid}/portfolio/history/trades/{intent_id}").get().to_dict()
    record = db.document(f"tenants/acme/order_intents/{intent_id}").get().to_dict()
    assert ledger["status"] == "placed" and ledger["qty"] == "3.5000" and ledger["uid"] == uid
    assert ledger["filled_avg_price"] == body["filled_avg_price"] and isinstance(ledger["notional"], str)
    assert history["tax"]["lot_method"] == "FIFO" and history["execution"]["broker_order_id"] == body["broker_order_id"]
    assert record["status"] == "placed" and record["intent"]["qty"] == "3.5000"

    # the same key again: the stored outcome, no second order
    status, headers, again = client.post("/execute", execute_body(qty="3.50"), headers={"Idempotency-Key": "buy-spy-1"})
    assert status == 200 and headers["Idempotent-Replayed"] == "true"
    assert again["broker_order_id"] == body["broker_order_id"] and again["replayed"] is True
    assert len(list(db.collection("tenants/acme/ledger_trades").stream())) == 1

    # the same key, a different body: 409, nothing written
    status, _, conflict = client.post("/execute", execute_body(qty="4"), headers={"Idempotency-Key": "buy-spy-1"})
    assert status == 409 and conflict["error"]["code"] == "IDEMPOTENCY_CONFLICT" and "qty" in conflict["error"]["reason"]
    assert len(list(db.collection("tenants/acme/ledger_trades").stream())) == 1

    # and it is in the caller's history page
    status, _, page = client.get("/portfolio/history?limit=5")
    assert status == 200 and [item["history_id"] for item in page["items"]] == [intent_id]
    assert page["items"][0]["price"] == body["filled_avg_price"] and page["next_cursor"] is None


def test_a_downgraded_trade_is_recorded_with_its_reason_and_no_history(paper_server, users, db):
    uid, token = users("bob")
    status, _, body = Client(paper_server, token).post("/execute", execute_body(symbol="AAPL"))
    assert status == 201 and body["status"] == "downgraded"
    assert body["reason"] == "Spread 0.26% exceeds threshold 0.10%"
    ledger = db.document(f"tenants/acme/ledger_trades/{body['intent_id']}").get().to_dict()
    assert ledger["status"] == "downgraded" and ledger["reason"] == body["reason"] and ledger["quote"]["bid"]
    assert not db.document(f"users/{uid}/portfolio/history/trades/{body['intent_id']}").get().exists


def test_history_pages_newest_first_with_a_cursor(paper_server, users):
    _, token = users("carol")
    client = Client(paper_server, token)
    ids = []
    for i in range(3):
        status, _, body = client.post("/execute", execute_body(qty=str(i + 1)))
        assert status == 201
        ids.append(body["intent_id"])
    status, _, first = client.get("/portfolio/history?limit=2")
    status2, _, second = client.get(f"/portfolio/history?limit=2&cursor={first['next_cursor']}")
    assert status == status2 == 200 and second["next_cursor"] is None
    assert [i["history_id"] for i in first["items"] + second["items"]] == list(reversed(ids))
    _, other = users("dave")
    assert Client(paper_server, other).get("/portfolio/history")[2]["items"] == []


def test_signals_execute_or_come_back_as_wait(paper_server, users, db):
    _, token = users("erin")
    client = Client(paper_server, token)
    signal = {"strategy_id": "momo", "broker_account_id": "acct1", "signal_type": "BUY", "symbol": "SPY", "qty": 2,
              "confidence": 0.8, "reasoning": "breakout",
              "market_data": {"price": 520.0, "bid": 519.99, "ask": 520.01}}
    status, _, body = client.post("/signals", signal)
    assert status == 201 and body["executed"] is True and body["execution"]["status"] == "placed"
    wide = dict(signal, symbol="AAPL", market_data={"price": 190.0, "bid": 189.75, "ask": 190.25})
    status, _, body = client.post("/signals", wide)
    assert status == 200 and body["executed"] is False and body["signal"]["signal_type"] == "WAIT"
    assert body["reason"].startswith("Spread 0.26% exceeds threshold 0.10%")
    assert len(list(db.collection("tenants/acme/ledger_trades").stream())) == 1


def test_a_multi_leg_group_executes_replays_and_reads_back(paper_server, users, db):
    uid, token = users("frank")
    approve_for(paper_server, users, uid)
    client = Client(paper_server, token)
    status, _, group = client.post("/execute/multi-leg", group_body(), headers={"Idempotency-Key": "pair-1"})
    assert status == 201, group
    assert group["status"] == "FILLED" and [leg["status"] for leg in group["legs"]] == ["FILLED", "FILLED"]
    assert set(group) == {"group_id", "strategy_id", "status", "legs", "avg_slippage_pips", "rollback_executed",
                          "completed_timestamp", "rejection"}
    assert group["rejection"] is None and [leg["units"] for leg in group["legs"]] == ["10.0000", "5.0000"]
    stored = db.document(f"tenants/acme/execution_groups/{group['group_id']}").get().to_dict()
    assert stored["uid"] and stored["rpm_output"]["approved_legs"]["short_msft"] == "5.0"  # exact, never a float
    status, headers, again = client.post("/execute/multi-leg", group_body(), headers={"Idempotency-Key": "pair-1"})
    assert status == 200 and headers["Idempotent-Replayed"] == "true" and again["group_id"] == group["group_id"]
    status, _, conflict = client.post("/execute/multi-leg", group_body(strategy_id="other"),
                                      headers={"Idempotency-Key": "pair-1"})
    assert status == 409
    status, _, read = client.get(f"/groups/{group['group_id']}")
    assert status == 200 and read["legs"] == group["legs"]


# ---------------------------------------------------------------------------- every refusal


def test_tokens_missing_garbage_or_without_claims_are_refused(paper_server, users, db):
    _, no_tenant = users("noclaims", tenant=None, role=None)
    _, no_role = users("norole", role=None)
    _, bad_role = users("root", role="superuser")
    cases = [
        (None, 401, "missing Authorization header"),
        ("garbage", 401, "invalid ID token"),
        ("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", 401, "invalid ID token"),
        (no_tenant, 403, "token has no tenant_id claim"),
        (no_role, 403, "token has no role claim"),
        (bad_role, 403, "role claim must be one of"),
    ]
    for token, expected, reason in cases:
        for method, path in (("POST", "/execute"), ("GET", "/portfolio/history"), ("GET", "/groups/g1")):
            status, headers, body = Client(paper_server, token).call(
                method, path, execute_body() if method == "POST" else None)
            assert status == expected and reason in body["error"]["reason"], (token, path, body)
            if expected == 401:
                assert headers["WWW-Authenticate"].startswith("Bearer")
    assert list(db.collection("tenants/acme/ledger_trades").stream()) == []


def test_cross_tenant_requests_are_403_and_groups_of_another_tenant_404(paper_server, users, db):
    grace, acme = users("grace")
    _, globex = users("heidi", tenant="globex")
    approve_for(paper_server, users, grace)
    client = Client(paper_server, acme)
    status, _, body = client.post("/execute", execute_body(metadata={"tenant_id": "globex"}))
    assert status == 403 and body["error"]["field"] == "metadata.tenant_id"
    status, _, group = client.post("/execute/multi-leg", group_body())
    assert status == 201
    assert Client(paper_server, globex).get(f"/groups/{group['group_id']}")[0] == 404
    assert list(db.collection("tenants/globex/ledger_trades").stream()) == []


def test_field_errors_routes_methods_sizes_and_media_types(paper_server, users, db):
    _, token = users("ivan")
    client = Client(paper_server, token)
    cases = [
        (client.post("/execute", execute_body(qty="-1")), 400, "qty"),
        (client.post("/execute", execute_body(side="hold")), 400, "side"),
        (client.post("/execute", execute_body(surprise=True)), 400, "surprise"),
        (client.post("/execute", raw=b"{not json", headers={"Content-Type": "application/json"}), 400, None),
        (client.post("/execute/multi-leg", group_body(legs=[])), 400, "legs"),
        (client.post("/execute/multi-leg", group_body(allow_partial_fills="no")), 400, "allow_partial_fills"),
        (client.post("/signals", {"strategy_id": "s", "broker_account_id": "a", "signal_type": "BUY",
                                  "symbol": "SPY"}), 400, "qty"),
        (client.get("/portfolio/history?limit=0"), 400, "limit"),
        (client.get("/groups/g-unknown"), 404, "group_id"),
        (client.get("/nowhere"), 404, None),
        (client.call("DELETE", "/execute"), 405, None),
        (client.post("/execute", raw=b"{" + b" " * (70 * 1024) + b"}",
                     headers={"Content-Type": "application/json"}), 413, None),
        (client.post("/execute", raw=b"qty=1", headers={"Content-Type": "application/x-www-form-urlencoded"}),
         415, "Content-Type"),
        (client.post("/execute", execute_body(), headers={"Idempotency-Key": "not valid!"}), 400, "Idempotency-Key"),
    ]
    for (status, headers, body), expected, field in cases:
        assert status == expected, body
        assert body["error"]["code"] and body["error"]["message"] and body["error"]["field"] == field, body
    assert list(db.collection("tenants/acme/ledger_trades").stream()) == []
    assert list(db.collection("tenants/acme/order_intents").stream()) == []


# ----------------------------------------------------------------- broker failures (Alpaca)


def test_alpaca_route_places_a_trade(alpaca_server, alpaca_venue, users, db):
    alpaca_venue.clear_faults()
    uid, token = users("judy")
    status, _, body = Client(alpaca_server, token).post("/execute", execute_body(symbol="AAPL", qty="2"))
    assert status == 201 and body["status"] == "placed" and body["broker"] == "alpaca", body
    assert db.document(f"users/{uid}/portfolio/history/trades/{body['intent_id']}").get().exists


@pytest.mark.parametrize("fault, status, code", [("503", 503, "BROKER_UNAVAILABLE"),
                                                 ("429", 429, "BROKER_RATE_LIMITED")])
def test_an_unavailable_or_rate_limiting_broker_is_retryable_and_the_retry_places_once(
        alpaca_server, alpaca_venue, users, db, fault, status, code):
    alpaca_venue.clear_faults()
    _, token = users("ken")
    client = Client(alpaca_server, token)
    key = {"Idempotency-Key": f"flaky-{fault}"}
    alpaca_venue.inject("POST /v2/orders", fault, times=None)
    try:
        got, headers, body = client.post("/execute", execute_body(symbol="AAPL", qty="1"), headers=key)
    finally:
        alpaca_venue.clear_faults()
    assert got == status and body["error"]["code"] == code and int(headers["Retry-After"]) >= 1, body
    intent_id = body["execution"]["intent_id"]
    assert db.document(f"tenants/acme/order_intents/{intent_id}").get().to_dict()["status"] == "reserved"
    time.sleep(1.5)  # the reservation's lease (1 s here) expires; the retry reconciles by client order id
    got, _, retry = client.post("/execute", execute_body(symbol="AAPL", qty="1"), headers=key)
    assert got == 201 and retry["status"] == "placed", retry
    assert alpaca_venue.venue.client_order_ids().count(retry["client_order_id"]) == 1  # exactly one order
    assert db.document(f"tenants/acme/ledger_trades/{intent_id}").get().to_dict()["status"] == "placed"
