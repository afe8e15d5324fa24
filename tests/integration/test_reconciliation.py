"""Daily reconciliation (issue 13 item 7) on the official Firestore emulator and the local Alpaca
Broker API server, with the real alpaca-py ``BrokerClient``: a trade placed through the engine lands
in the ledger and at the venue (a clean report, zero cash difference); a fill injected at the venue
that the ledger never saw is a position break with the right quantities AND a cash break of its cash
effect (read from the venue's account activities, ``GET /v1/accounts/activities``); a fee the venue
booked or a price the ledger booked differently is only a cash break; a venue without account
activities leaves the cash ``unavailable`` (incomplete, never clean); a break is logged at ERROR and
corrects nothing.

The tenant has one Broker API connection (credentials through the env secret source) and two
accounts, each its own account at the venue; the engine binds strictly to those documents.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from backend.adapters import alpaca_broker_api
from backend.adapters.alpaca_broker_api import AlpacaBrokerApiConnection
from backend.adapters.firestore_store import FirestoreStore
from backend.adapters.secrets import build_secret_source
from backend.adapters.venue_pool import VenuePool
from backend.api.reconciliation_api import venues_for
from backend.domain.accounts import Account, AccountStatus, BrokerConnection
from backend.domain.assets import AssetClass
from backend.domain.orders import OrderRequest, OrderSide
from backend.execution.engine import ExecutionEngine, OrderIntent, RiskManager
from backend.execution.intent import ExecutionContext
from backend.risk import reconciliation
from backend.risk.manager import RiskLimits
from backend.settings import ExecSettings
from tests.support.alpaca_server import LocalAlpacaServer
from tests.support.stub_broker import StubBroker

KEYS = json.dumps({"key_id": "recon-key-PK01", "secret_key": "recon-secret-do-not-leak"})
NOW = datetime.now(timezone.utc)


@pytest.fixture
def venue_server():
    alpaca_broker_api.clear_client_cache()
    with LocalAlpacaServer("default") as server:
        yield server
    alpaca_broker_api.clear_client_cache()


@pytest.fixture
def tenant(db, venue_server):
    """A tenant with a Broker API connection and the accounts of alice and bob (their venue ids)."""
    tenant_id = f"t{uuid.uuid4().hex[:10]}"
    connection = BrokerConnection(connection_id="alpaca", venue="alpaca_broker", environment="sandbox",
                                  base_url=venue_server.url, credentials_ref="env:RECON_ALPACA_KEYS",
                                  created_at=NOW, updated_at=NOW)
    db.document(f"tenants/{tenant_id}/broker_connections/alpaca").set(connection.to_dict())
    venue_ids = {}
    for uid in ("alice", "bob"):
        venue_id = venue_server.open_account(str(uuid.uuid4()))
        account = Account(account_id=f"{uid}-main", connection_id="alpaca", venue_account_id=venue_id,
                          owner_uids=(uid,), status=AccountStatus.ACTIVE, asset_classes=frozenset({AssetClass.EQUITY}),
                          created_at=NOW, updated_at=NOW)
        db.document(f"tenants/{tenant_id}/accounts/{uid}-main").set(account.to_dict())
        db.document(f"tenants/{tenant_id}/members/{uid}").set(
            {"uid": uid, "role": "trader", "status": "active", "default_account_id": f"{uid}-main",
             "email": None, "created_at": NOW, "updated_at": NOW})
        venue_ids[uid] = venue_id
    return tenant_id, venue_ids


@pytest.fixture
def engine(db):
    store = FirestoreStore(db)
    deployment = StubBroker(quotes={"SPY": ("519.99", "520.01")})
    pool = VenuePool(store, build_secret_source(environ={"RECON_ALPACA_KEYS": KEYS}), deployment=deployment)
    return ExecutionEngine(broker=deployment, enable_smart_routing=False, dry_run=False, store=store,
                           risk=RiskManager(RiskLimits(max_position_qty=Decimal("1000"))),
                           settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "2", "EXEC_ACCOUNTS": "strict"}),
                           venue_pool=pool)


def buy(engine, tenant_id: str, uid: str, qty: str, intent_id: str):
    intent = OrderIntent(strategy_id="s1", broker_account_id=None, symbol="SPY", side="buy", qty=qty,
                         asset_class="EQUITY", intent_id=intent_id)
    return engine.execute_intent(intent, ExecutionContext(tenant_id=tenant_id, uid=uid))


def inject_venue_fill(venue_server, venue_account_id: str, qty: str) -> None:
    """An order at the venue that never went through this backend (no ledger row)."""
    connection = AlpacaBrokerApiConnection("recon-key-PK01", "recon-secret-do-not-leak", sandbox=True,
                                           url_override=venue_server.url)
    connection.account(venue_account_id).submit_order(OrderRequest(
        client_order_id=f"outside-{uuid.uuid4().hex[:12]}", symbol="SPY", asset_class=AssetClass.EQUITY,
        side=OrderSide.BUY, qty=Decimal(qty)))


def venue_fill_prices(venue_server, venue_account_id: str) -> list[Decimal]:
    """The prices of the account's fills at the venue, oldest first."""
    return [fill.price for fill in venue_server.venue.fills(venue_account_id)]


def cash_of(report: dict, account_id: str) -> object:
    return next(a["cash"] for a in report["accounts"] if a["account_id"] == account_id)


def test_a_clean_day_reports_no_break(engine, tenant, db, venue_server):
    tenant_id, venue_ids = tenant
    assert buy(engine, tenant_id, "alice", "10", "i-clean-1").status == "placed"
    (price,) = venue_fill_prices(venue_server, venue_ids["alice"])

    report = reconciliation.reconcile_tenant(engine.store, venues_for(engine), tenant_id, datetime.now(timezone.utc))

    stored = db.document(reconciliation.report_path(tenant_id, report["day"])).get().to_dict()
    assert report["status"] == "clean" and report["breaks"] == [] and report["accounts_checked"] == 2
    assert stored["status"] == "clean" and stored["break_count"] == 0 and stored["cash_break_count"] == 0
    (line,) = cash_of(stored, "alice-main")
    assert (line["currency"], Decimal(line["ledger"]), Decimal(line["venue"]), Decimal(line["difference"])) == \
        ("USD", -10 * price, -10 * price, Decimal(0))
    assert (line["ledger_fills"], line["venue_fills"]) == (1, 1)
    assert cash_of(stored, "bob-main") == []  # nothing traded on either side


def test_a_fill_the_ledger_never_saw_is_a_break_with_the_right_quantity(engine, tenant, db, venue_server, quiet_logs):
    tenant_id, venue_ids = tenant
    assert buy(engine, tenant_id, "alice", "10", "i-break-1").status == "placed"
    inject_venue_fill(venue_server, venue_ids["alice"], "3")
    ledger_rows_before = len(list(db.collection(f"tenants/{tenant_id}/ledger_trades").stream()))

    report = reconciliation.reconcile_tenant(engine.store, venues_for(engine), tenant_id, datetime.now(timezone.utc))

    assert report["status"] == "breaks" and report["break_count"] == 1 and report["cash_break_count"] == 1
    ours, outside = venue_fill_prices(venue_server, venue_ids["alice"])
    (cash,) = report["cash_breaks"]
    assert (cash["account_id"], cash["venue_account_id"], cash["currency"]) == \
        ("alice-main", venue_ids["alice"], "USD")
    assert (Decimal(cash["ledger"]), Decimal(cash["venue"]), Decimal(cash["difference"])) == \
        (-10 * ours, -10 * ours - 3 * outside, -3 * outside)
    (item,) = report["breaks"]
    assert item["account_id"] == "alice-main" and item["venue_account_id"] == venue_ids["alice"]
    assert item["symbol"] == "SPY"
    assert (Decimal(item["ledger_qty"]), Decimal(item["venue_qty"]), Decimal(item["difference"])) == \
        (Decimal("10"), Decimal("13"), Decimal("3"))
    assert item["since"] == report["run_at"]
    # alerted at ERROR; nothing corrected: no ledger row added, the venue still holds 13
    lines = [json.loads(line) for line in quiet_logs.getvalue().splitlines() if line.startswith("{")]
    assert any(line["event"] == "recon.break" and line["severity"] == "ERROR" and line["account_id"] == "alice-main"
               for line in lines)
    assert any(line["event"] == "recon.cash_break" and line["severity"] == "ERROR" and line["currency"] == "USD"
               for line in lines)
    assert len(list(db.collection(f"tenants/{tenant_id}/ledger_trades").stream())) == ledger_rows_before
    held = {p.symbol: p.qty for p in venue_server.venue.get_positions(account_id=venue_ids["alice"])}
    assert Decimal(held["SPY"]) == Decimal("13")


def test_a_persisting_break_keeps_its_since_and_another_accounts_position_is_not_a_break(engine, tenant,
                                                                                           venue_server):
    tenant_id, venue_ids = tenant
    assert buy(engine, tenant_id, "bob", "4", "i-bob-1").status == "placed"
    inject_venue_fill(venue_server, venue_ids["alice"], "2")
    first = reconciliation.reconcile_tenant(engine.store, venues_for(engine), tenant_id, datetime.now(timezone.utc))

    second = reconciliation.reconcile_tenant(engine.store, venues_for(engine), tenant_id, datetime.now(timezone.utc))

    assert [b["account_id"] for b in first["breaks"]] == ["alice-main"]  # bob's 4 are in the ledger and at the venue
    assert Decimal(first["breaks"][0]["ledger_qty"]) == 0 and Decimal(first["breaks"][0]["venue_qty"]) == 2
    assert second["breaks"][0]["since"] == first["breaks"][0]["since"] < second["run_at"]


def test_an_unreachable_venue_makes_the_report_incomplete_not_clean(engine, tenant, db):
    tenant_id, _ = tenant
    db.document(f"tenants/{tenant_id}/broker_connections/alpaca").update({"credentials_ref": "env:RECON_MISSING"})
    engine.venue_pool.invalidate(tenant_id)

    report = reconciliation.reconcile_tenant(engine.store, venues_for(engine), tenant_id, datetime.now(timezone.utc))

    assert report["status"] == "incomplete" and report["accounts_checked"] == 0
    assert {e["account_id"] for e in report["errors"]} == {"alice-main", "bob-main"}


def test_a_fee_the_venue_booked_is_only_a_cash_break(engine, tenant, venue_server):
    tenant_id, venue_ids = tenant
    assert buy(engine, tenant_id, "alice", "10", "i-fee-1").status == "placed"
    venue_server.add_fee(venue_ids["alice"], "-0.02", description="REG fee")

    report = reconciliation.reconcile_tenant(engine.store, venues_for(engine), tenant_id, datetime.now(timezone.utc))

    assert report["status"] == "breaks" and report["breaks"] == []
    (cash,) = report["cash_breaks"]
    assert (cash["account_id"], Decimal(cash["difference"])) == ("alice-main", Decimal("-0.02"))


def test_a_price_the_ledger_booked_differently_is_only_a_cash_break(engine, tenant, db, venue_server):
    tenant_id, venue_ids = tenant
    assert buy(engine, tenant_id, "alice", "10", "i-price-1").status == "placed"
    (price,) = venue_fill_prices(venue_server, venue_ids["alice"])
    rows = [doc for doc in db.collection(f"tenants/{tenant_id}/ledger_trades").stream()
            if doc.to_dict().get("kind") == "order"]
    assert len(rows) == 1
    # a ledger that booked the fill 0.05 higher than the venue executed it (written with admin credentials:
    # the ledger is create-only for the server, this stands for a wrong row)
    rows[0].reference.update({"filled_avg_price": str(price + Decimal("0.05"))})

    report = reconciliation.reconcile_tenant(engine.store, venues_for(engine), tenant_id, datetime.now(timezone.utc))

    assert report["status"] == "breaks" and report["breaks"] == []
    (cash,) = report["cash_breaks"]
    assert (Decimal(cash["ledger"]), Decimal(cash["venue"]), Decimal(cash["difference"])) == \
        (-10 * (price + Decimal("0.05")), -10 * price, Decimal("0.50"))


def test_a_venue_without_account_activities_leaves_the_cash_unavailable_not_clean(engine, tenant, db):
    """An account on the deployment venue (here a positions-only stub): its positions are compared, its
    cash is reported unavailable and the report is incomplete."""
    tenant_id, _ = tenant
    account = Account(account_id="carol-main", connection_id="deployment", venue_account_id="carol",
                      owner_uids=("carol",), status=AccountStatus.ACTIVE,
                      asset_classes=frozenset({AssetClass.EQUITY}), created_at=NOW, updated_at=NOW)
    db.document(f"tenants/{tenant_id}/accounts/carol-main").set(account.to_dict())

    report = reconciliation.reconcile_tenant(engine.store, venues_for(engine), tenant_id, datetime.now(timezone.utc))

    assert report["status"] == "incomplete" and report["accounts_checked"] == 3 and report["breaks"] == []
    entry = next(a for a in report["accounts"] if a["account_id"] == "carol-main")
    assert entry["cash"] == "unavailable" and "no account activities" in entry["cash_unavailable_reason"]
    assert [u["account_id"] for u in report["cash_unavailable"]] == ["carol-main"]
    assert cash_of(report, "alice-main") == [] and report["errors"] == []
