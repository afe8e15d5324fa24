"""Risk settings, the three-state kill switch and on-demand reconciliation over real HTTP (issue 13
items 3, 4 and 7).

Stack: ``functions-framework --target api`` (functions/main.py) as a child process on the official
Firestore emulator and firebase-tools' Auth emulator with real ID tokens (``EXEC_ACCOUNTS=strict``:
only the account documents written here count); the local Alpaca-compatible server's Broker API
routes for the venue-side trade suspension, reached by the server through the account's broker
connection (credentials from the environment secret source, ``env:RISK_ALPACA_KEYS``).

Each test uses its own tenant; the operator switch (``ops/execution``) is reset to active after the
test that sets it.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any

import pytest

from backend.adapters import alpaca_broker_api
from backend.domain.accounts import Account, AccountLimits, AccountStatus, BrokerConnection
from backend.domain.assets import AssetClass
from tests.support.alpaca_server import LocalAlpacaServer
from tests.support.api_stack import FunctionsServer, http_call

pytestmark = pytest.mark.slow

KEYS = json.dumps({"key_id": "risk-key-PK01", "secret_key": "risk-secret-do-not-leak"})
NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def server(firestore_emulator, auth_emulator):
    project = auth_emulator.project
    env = {"FIRESTORE_EMULATOR_HOST": firestore_emulator.host, "FIREBASE_AUTH_EMULATOR_HOST": auth_emulator.host,
           "GOOGLE_CLOUD_PROJECT": project, "GCLOUD_PROJECT": project, "EXEC_DRY_RUN": "0",
           "GOOGLE_APPLICATION_CREDENTIALS": "", "EXEC_AUTH_STATE_CACHE_SECONDS": "0", "EXEC_ACCOUNTS": "strict",
           "EXEC_MAX_POSITION_QTY": "100", "EXEC_MAX_DAILY_TRADES": "1000", "RISK_ALPACA_KEYS": KEYS}
    with FunctionsServer(env) as srv:
        yield srv


@pytest.fixture
def tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def users(auth, firestore_project):
    """(name, tenant, role) → (uid, token) of a real Auth-emulator user with those claims."""

    def user(name: str, tenant: str | None, role: str) -> tuple[str, str]:
        email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
        uid, _ = auth.sign_up(email, "secret-pw-1")
        claims = {"role": role} if tenant is None else {"tenant_id": tenant, "role": role}
        auth.set_claims(uid, claims)
        return uid, auth.sign_in(email, "secret-pw-1")

    return user


def call(server, method: str, path: str, token: str | None, body: Any = None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http_call(method, server.url + path, body, headers)


def give_account(db, tenant: str, uid: str, account_id: str = "main", *, connection_id: str = "deployment",
                 venue_account_id: str | None = None, limits: AccountLimits | None = None) -> Account:
    account = Account(account_id=account_id, connection_id=connection_id,
                      venue_account_id=venue_account_id or f"{tenant}-{account_id}", owner_uids=(uid,),
                      status=AccountStatus.ACTIVE, asset_classes=frozenset({AssetClass.EQUITY}), created_at=NOW,
                      updated_at=NOW, limits=limits)
    db.document(f"tenants/{tenant}/accounts/{account_id}").set(account.to_dict())
    db.document(f"tenants/{tenant}/members/{uid}").set(
        {"uid": uid, "role": "trader", "status": "active", "default_account_id": account_id, "email": None,
         "created_at": NOW, "updated_at": NOW})
    return account


def order(server, token: str, side: str, qty: str) -> tuple[int, dict[str, Any]]:
    status, _, body = call(server, "POST", "/execute", token,
                           {"strategy_id": "s1", "symbol": "SPY", "side": side, "qty": qty})
    return status, body


def outcome(reply: tuple[int, dict[str, Any]]) -> str:
    """``placed`` or the refusal's code, whether refused as a recorded decision (201) or at binding (4xx)."""
    status, body = reply
    if status >= 400:
        return body["error"]["code"]
    return body["status"] if body["status"] != "rejected" else body["rejection"]["code"]


def audit_actions(db, tenant: str) -> list[str]:
    return sorted(d.to_dict()["action"] for d in db.collection(f"tenants/{tenant}/audit_log").stream())


# ----------------------------------------------------------------------------- who may change what


def test_only_the_tenants_admin_changes_or_reads_its_risk_settings_and_refusals_write_nothing(server, users,
                                                                                               tenant, db):
    trader_uid, trader = users("tom", tenant, "trader")
    _, admin = users("ada", tenant, "tenant_admin")
    _, auditor = users("aud", tenant, "auditor")
    _, other_admin = users("bea", f"{tenant}x", "tenant_admin")
    give_account(db, tenant, trader_uid)
    writes = [("PUT", f"/tenants/{tenant}/risk/limits", {"max_position_qty": "10"}),
              ("PUT", f"/tenants/{tenant}/accounts/main/limits", {"max_position_qty": "10"}),
              ("PUT", f"/tenants/{tenant}/trading-state", {"state": "halted"}),
              ("PUT", f"/tenants/{tenant}/accounts/main/trading-state", {"state": "halted"})]
    reads = [("GET", f"/tenants/{tenant}/risk/limits", None), ("GET", f"/tenants/{tenant}/accounts/main/limits", None)]

    refused = {(who, method, path): call(server, method, path, token, body)[0]
               for who, token in (("trader", trader), ("auditor", auditor), ("other-admin", other_admin),
                                  ("none", None))
               for method, path, body in writes + reads}

    assert {k: v for k, v in refused.items() if v != (401 if k[0] == "none" else 403)} == {}
    assert not db.document(f"tenants/{tenant}/config/risk").get().exists
    assert db.document(f"tenants/{tenant}/accounts/main").get().to_dict()["status"] == "active"
    assert audit_actions(db, tenant) == []
    allowed = [call(server, method, path, admin, body)[0] for method, path, body in writes + reads]
    assert allowed == [200] * 6
    assert audit_actions(db, tenant) == ["risk.account_limits.set", "risk.account_state.set",
                                         "risk.tenant_limits.set", "risk.tenant_state.set"]


def test_a_limit_looser_than_the_operators_is_refused_naming_the_bound(server, users, tenant, db):
    _, admin = users("ada", tenant, "tenant_admin")
    uid, _ = users("tom", tenant, "trader")
    give_account(db, tenant, uid)
    path = f"/tenants/{tenant}/risk/limits"

    loose = call(server, "PUT", path, admin, {"max_position_qty": "100.0001"})
    loose_class = call(server, "PUT", path, admin, {"max_position_by_class": {"EQUITY": "101"}})
    loose_account = call(server, "PUT", f"/tenants/{tenant}/accounts/main/limits", admin, {"max_position_qty": "150"})
    not_exact = call(server, "PUT", path, admin, {"max_position_qty": "ten"})
    not_int = call(server, "PUT", path, admin, {"max_daily_trades": "5"})
    unknown = call(server, "PUT", path, admin, {"max_positions": "5"})
    equal = call(server, "PUT", path, admin, {"max_position_qty": "100", "max_order_notional": 2500.5})

    assert loose[0] == 400 and loose[2]["error"]["field"] == "max_position_qty"
    assert "100" in loose[2]["error"]["reason"] and "operator" in loose[2]["error"]["reason"]
    assert loose_class[0] == 400 and loose_class[2]["error"]["field"] == "max_position_by_class.EQUITY"
    assert loose_account[0] == 400 and "must be <= 100" in loose_account[2]["error"]["reason"]
    assert [r[0] for r in (not_exact, not_int, unknown)] == [400, 400, 400]
    assert equal[0] == 200 and equal[2]["tenant"]["max_order_notional"] == "2500.5"  # kept exact
    stored = db.document(f"tenants/{tenant}/config/risk").get().to_dict()
    assert stored["max_position_qty"] == "100" and stored["max_order_notional"] == "2500.5"
    assert audit_actions(db, tenant) == ["risk.tenant_limits.set"]  # the refused ones wrote nothing


# ----------------------------------------------------------------------------- the next intent sees it


def test_each_change_is_visible_in_the_next_decision(server, users, tenant, db):
    uid, trader = users("tom", tenant, "trader")
    _, admin = users("ada", tenant, "tenant_admin")
    give_account(db, tenant, uid)
    base = f"/tenants/{tenant}"

    assert outcome(order(server, trader, "buy", "20")) == "placed"
    assert call(server, "PUT", f"{base}/risk/limits", admin, {"max_position_qty": "25"})[0] == 200
    assert outcome(order(server, trader, "buy", "10")) == "POSITION_LIMIT"  # 20 + 10 > 25 (tenant)
    assert outcome(order(server, trader, "buy", "5")) == "placed"
    assert call(server, "PUT", f"{base}/accounts/main/limits", admin, {"max_position_qty": "24"})[0] == 200
    assert outcome(order(server, trader, "buy", "1")) == "POSITION_LIMIT"  # the account is stricter now
    assert outcome(order(server, trader, "sell", "2")) == "placed"  # 23

    assert call(server, "PUT", f"{base}/trading-state", admin, {"state": "reduce_only"})[0] == 200
    assert outcome(order(server, trader, "buy", "1")) == "REDUCE_ONLY"
    assert outcome(order(server, trader, "sell", "3")) == "placed"  # 20
    assert call(server, "PUT", f"{base}/trading-state", admin, {"state": "halted"})[0] == 200
    assert outcome(order(server, trader, "sell", "1")) == "KILL_SWITCH"
    assert call(server, "PUT", f"{base}/trading-state", admin, {"state": "active"})[0] == 200

    assert call(server, "PUT", f"{base}/accounts/main/trading-state", admin, {"state": "reduce_only"})[0] == 200
    assert outcome(order(server, trader, "buy", "1")) == "REDUCE_ONLY"
    assert call(server, "PUT", f"{base}/accounts/main/trading-state", admin, {"state": "halted"})[0] == 200
    assert outcome(order(server, trader, "sell", "1")) == "ACCOUNT_HALTED"
    assert call(server, "PUT", f"{base}/accounts/main/trading-state", admin, {"state": "active"})[0] == 200
    assert outcome(order(server, trader, "buy", "1")) == "placed"
    config = db.document(f"tenants/{tenant}/config/risk").get().to_dict()
    assert config["trading_state"] == "active" and config["kill_switch"] is False


def test_the_operator_level_is_set_by_a_platform_operator_only_and_halts_every_tenant(server, users, tenant, db):
    uid, trader = users("tom", tenant, "trader")
    _, admin = users("ada", tenant, "tenant_admin")
    _, operator = users("op", None, "platform_operator")
    give_account(db, tenant, uid)
    try:
        assert call(server, "PUT", "/ops/trading-state", admin, {"state": "halted"})[0] == 403
        assert outcome(order(server, trader, "buy", "1")) == "placed"

        status, _, body = call(server, "PUT", "/ops/trading-state", operator, {"state": "halted"})
        assert status == 200 and body["trading_state"] == "halted"
        assert outcome(order(server, trader, "sell", "1")) == "KILL_SWITCH"
        ops = db.document("ops/execution").get().to_dict()
        assert ops["trading_state"] == "halted" and ops["kill_switch"] is True  # legacy readers stop too
    finally:
        call(server, "PUT", "/ops/trading-state", operator, {"state": "active"})
    assert outcome(order(server, trader, "sell", "1")) == "placed"


def test_an_operator_reduce_only_state_refuses_orders_that_grow_a_position(server, users, tenant, db):
    uid, trader = users("tom", tenant, "trader")
    _, operator = users("op", None, "platform_operator")
    give_account(db, tenant, uid)
    assert outcome(order(server, trader, "buy", "2")) == "placed"
    try:
        assert call(server, "PUT", "/ops/trading-state", operator, {"state": "reduce_only"})[0] == 200
        grow = outcome(order(server, trader, "buy", "1"))
        shrink = outcome(order(server, trader, "sell", "1"))
    finally:
        call(server, "PUT", "/ops/trading-state", operator, {"state": "active"})
    assert (grow, shrink) == ("REDUCE_ONLY", "placed")


# ----------------------------------------------------------------------------- venue-side suspension


@pytest.fixture
def venue_server():
    alpaca_broker_api.clear_client_cache()
    with LocalAlpacaServer("default") as srv:
        yield srv


def test_halting_a_broker_api_account_suspends_it_at_the_venue_and_resuming_clears_it(server, users, tenant, db,
                                                                                         venue_server):
    uid, _ = users("tom", tenant, "trader")
    _, admin = users("ada", tenant, "tenant_admin")
    connection = BrokerConnection(connection_id="alpaca", venue="alpaca_broker", environment="sandbox",
                                  base_url=venue_server.url, credentials_ref="env:RISK_ALPACA_KEYS",
                                  created_at=NOW, updated_at=NOW)
    db.document(f"tenants/{tenant}/broker_connections/alpaca").set(connection.to_dict())
    venue_id = venue_server.open_account(str(uuid.uuid4()))
    give_account(db, tenant, uid, connection_id="alpaca", venue_account_id=venue_id)
    path = f"/tenants/{tenant}/accounts/main/trading-state"

    halted = call(server, "PUT", path, admin, {"state": "halted"})
    suspended_at_venue = venue_server.venue.trade_suspended(venue_id)
    reduce_only = call(server, "PUT", path, admin, {"state": "reduce_only"})
    after_reduce_only = venue_server.venue.trade_suspended(venue_id)
    halted_again = call(server, "PUT", path, admin, {"state": "halted"})
    resumed = call(server, "PUT", path, admin, {"state": "active"})

    assert halted[0] == 200 and halted[2]["venue_suspension"] == "suspended" and suspended_at_venue is True
    assert reduce_only[2]["venue_suspension"] == "active" and after_reduce_only is False  # reducing orders may go
    assert halted_again[0] == 200 and resumed[0] == 200 and resumed[2]["venue_suspension"] == "active"
    assert venue_server.venue.trade_suspended(venue_id) is False
    assert db.document(f"tenants/{tenant}/accounts/main").get().to_dict()["status"] == "active"
    assert KEYS not in server.log_tail(400) and "risk-secret-do-not-leak" not in json.dumps(halted[2])


def test_a_venue_that_cannot_be_reached_is_a_502_with_the_halt_stored_and_a_retry_completes_it(server, users,
                                                                                                tenant, db):
    from tests.support.emulators import free_port

    uid, _ = users("tom", tenant, "trader")
    _, admin = users("ada", tenant, "tenant_admin")
    port = free_port()  # nothing listens here until the venue is started below
    connection = BrokerConnection(connection_id="alpaca", venue="alpaca_broker", environment="sandbox",
                                  base_url=f"http://127.0.0.1:{port}", credentials_ref="env:RISK_ALPACA_KEYS",
                                  created_at=NOW, updated_at=NOW)
    db.document(f"tenants/{tenant}/broker_connections/alpaca").set(connection.to_dict())
    venue_id = str(uuid.uuid4())
    give_account(db, tenant, uid, connection_id="alpaca", venue_account_id=venue_id)
    path = f"/tenants/{tenant}/accounts/main/trading-state"

    failed = call(server, "PUT", path, admin, {"state": "halted"})
    stored = db.document(f"tenants/{tenant}/accounts/main").get().to_dict()["status"]
    with LocalAlpacaServer("default", port=port) as venue_server:
        venue_server.open_account(venue_id)
        retried = call(server, "PUT", path, admin, {"state": "halted"})  # the same request again

        assert failed[0] == 502 and failed[2]["error"]["code"] == "VENUE_SUSPENSION_FAILED" and stored == "halted"
        assert retried[0] == 200 and retried[2]["venue_suspension"] == "suspended"
        assert venue_server.venue.trade_suspended(venue_id) is True
    assert [a for a in audit_actions(db, tenant)] == ["risk.account_state.set"]  # one change, one entry


def test_a_deployment_account_has_no_venue_suspension(server, users, tenant, db):
    uid, _ = users("tom", tenant, "trader")
    _, admin = users("ada", tenant, "tenant_admin")
    give_account(db, tenant, uid)

    status, _, body = call(server, "PUT", f"/tenants/{tenant}/accounts/main/trading-state", admin, {"state": "halted"})

    assert status == 200 and body["venue_suspension"] is None and body["previous"] == "active"


# ----------------------------------------------------------------------------- reconciliation on demand


def test_reconciliation_is_run_by_admins_and_read_by_admins_and_auditors(server, users, tenant, db):
    uid, trader = users("tom", tenant, "trader")
    _, admin = users("ada", tenant, "tenant_admin")
    _, auditor = users("aud", tenant, "auditor")
    _, other_admin = users("bea", f"{tenant}x", "tenant_admin")
    give_account(db, tenant, uid)
    assert outcome(order(server, trader, "buy", "3")) == "placed"
    path = f"/tenants/{tenant}/reconciliation"

    missing = call(server, "GET", path, admin)
    refused = [call(server, "POST", path, token)[0] for token in (trader, auditor, other_admin)]
    ran = call(server, "POST", path, admin)
    read_by_auditor = call(server, "GET", path, auditor)
    read_by_trader = call(server, "GET", path, trader)

    assert missing[0] == 404 and refused == [403, 403, 403]
    assert ran[0] == 200 and ran[2]["status"] == "clean" and ran[2]["accounts_checked"] == 1
    assert read_by_auditor[0] == 200 and read_by_auditor[2]["status"] == "clean"
    assert read_by_auditor[2]["day"] == ran[2]["day"] and read_by_trader[0] == 403
    assert "reconciliation.run" in audit_actions(db, tenant)
