"""Issue 15 item 7 over the wire: the venue's event feed brings an order that filled while nothing of
ours ran to the ledger at the next ingestion — once, even when the feed delivers it twice — and the
cursor is stored in Firestore (official emulator) only after the folding committed.

- OANDA (httpx adapter against the local v20 server): a resting STOP entry fires at the venue; the
  ``ORDER_FILL`` transaction (``transactions/sinceid``) names the intent by its client order id.
- Alpaca Broker API (the local server's ``GET /v1/events/trades`` SSE stream, read with the connection's
  session): a bracket's stop-loss fires; the ``fill`` event of the exit leg makes the entry's exits
  followed (ledger row ``--x``) and the take-profit ends canceled.

Each tenant has a real connection document, account and member; the engine binds strictly and reaches
the venues through the real ``VenuePool`` (credentials from the env secret source).
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from decimal import Decimal as D

import pytest

from backend.adapters import alpaca_broker_api
from backend.adapters.firestore_store import FirestoreStore
from backend.adapters.oanda.broker import forget_instruments
from backend.adapters.oanda.client import close_shared_clients
from backend.adapters.secrets import build_secret_source
from backend.adapters.venue_pool import VenuePool
from backend.domain.accounts import Account, AccountStatus, BrokerConnection
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.execution.engine import ExecutionEngine, OrderIntent, RiskManager
from backend.execution.event_ingest import cursor_path, ingest_venue_events
from backend.execution.intent import ExecutionContext
from backend.execution.sweeper import Sweeper
from backend.risk.manager import RiskLimits
from backend.settings import ExecSettings
from backend.tax.state import book_lots
from tests.support.alpaca_server import LocalAlpacaServer
from tests.support.group_harness import scenario
from tests.support.oanda_server import LocalOandaServer
from tests.support.stub_broker import StubBroker

pytestmark = pytest.mark.slow

NOW = datetime.now(timezone.utc)
TOKEN = "oanda-events-token-do-not-leak"
ENV = {"EV_ALPACA_KEYS": json.dumps({"key_id": "ev-key-PK01", "secret_key": "ev-secret-do-not-leak"}),
       "EV_OANDA_KEYS": json.dumps({"token": TOKEN})}


def tenant_with(db, venue: str, environment: str, base_url: str, venue_account_id: str, ref: str,
                classes: set[AssetClass]) -> str:
    tenant_id = f"t{uuid.uuid4().hex[:10]}"
    connection = BrokerConnection(connection_id="conn", venue=venue, environment=environment, base_url=base_url,
                                  credentials_ref=ref, created_at=NOW, updated_at=NOW)
    db.document(f"tenants/{tenant_id}/broker_connections/conn").set(connection.to_dict())
    account = Account(account_id="alice-main", connection_id="conn", venue_account_id=venue_account_id,
                      owner_uids=("alice",), status=AccountStatus.ACTIVE, asset_classes=frozenset(classes),
                      created_at=NOW, updated_at=NOW)
    db.document(f"tenants/{tenant_id}/accounts/alice-main").set(account.to_dict())
    db.document(f"tenants/{tenant_id}/members/alice").set(
        {"uid": "alice", "role": "trader", "status": "active", "default_account_id": "alice-main",
         "email": None, "created_at": NOW, "updated_at": NOW})
    return tenant_id


def make_engine(db, clock) -> ExecutionEngine:
    store = FirestoreStore(db)
    deployment = StubBroker(quotes={"SPY": ("519.99", "520.01")})
    pool = VenuePool(store, build_secret_source(environ=ENV), deployment=deployment, clock=clock)
    return ExecutionEngine(broker=deployment, enable_smart_routing=False, dry_run=False, store=store, clock=clock,
                           risk=RiskManager(RiskLimits(max_position_qty=D("100000"))),
                           settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0", "EXEC_ACCOUNTS": "strict"}),
                           venue_pool=pool)


def ledger(db, tenant_id: str) -> dict[str, dict]:
    return {s.id: s.to_dict() for s in db.collection(f"tenants/{tenant_id}/ledger_trades").stream()}


def cursor_doc(db, tenant_id: str, venue_account_id: str) -> dict | None:
    snap = db.document(cursor_path(tenant_id, "conn", venue_account_id)).get()
    return snap.to_dict() if snap.exists else None


def my_errors(report, tenant_id: str) -> list[str]:
    """Errors of this tenant (the emulator may hold other tests' working intents of dead servers)."""
    return [e for e in report.errors if tenant_id in e]


@pytest.fixture
def oanda():
    clock = ManualClock()
    srv = LocalOandaServer(scenario(), clock=clock, token=TOKEN).start()
    yield srv, clock
    srv.stop()
    close_shared_clients()
    forget_instruments()


@pytest.fixture
def alpaca():
    alpaca_broker_api.clear_client_cache()
    clock = ManualClock()
    with LocalAlpacaServer("default", clock=clock) as srv:
        yield srv, clock
    alpaca_broker_api.clear_client_cache()


def test_an_oanda_stop_entry_that_fires_overnight_reaches_the_ledger_once_from_the_transaction_feed(db, oanda):
    srv, clock = oanda
    tenant_id = tenant_with(db, "oanda", "paper", srv.url, srv.account_id, "env:EV_OANDA_KEYS",
                            {AssetClass.FOREX})
    engine = make_engine(db, clock)
    ask = srv.venue.get_latest_quote("EUR/USD", AssetClass.FOREX).ask
    stop = ask + D("0.0050")
    placed = engine.execute_intent(OrderIntent("s1", None, "EUR/USD", "buy", "10000", asset_class="FOREX",
                                               intent_id="stop-1", order_type="stop", stop_price=str(stop),
                                               time_in_force="gtc"), ExecutionContext(tenant_id, "alice"))
    assert placed.status == "placed" and placed.order_status == "new", placed
    far = engine.execute_intent(OrderIntent("s1", None, "EUR/USD", "buy", "10000", asset_class="FOREX",
                                            intent_id="stop-far", order_type="stop", stop_price=str(ask + D("0.0500")),
                                            time_in_force="gtc"), ExecutionContext(tenant_id, "alice"))
    assert far.order_status == "new"  # keeps the account working (an account with none has nothing to fold)
    evening = ingest_venue_events(engine)  # the evening sweep: nothing filled, the cursor is set
    assert my_errors(evening, tenant_id) == []
    first_cursor = cursor_doc(db, tenant_id, srv.account_id)["cursor"]

    srv.venue.market.set_mid("EUR/USD", stop + D("0.0010"), AssetClass.FOREX)  # overnight: the stop trades
    srv.venue.poll()
    morning = ingest_venue_events(engine)
    again = ingest_venue_events(engine)

    assert my_errors(morning, tenant_id) == [] and my_errors(again, tenant_id) == []
    fills = {k: v for k, v in ledger(db, tenant_id).items() if v["kind"] == "fill"}
    (row,) = fills.values()
    assert D(row["filled_qty"]) == 10000 and row["side"] == "buy"
    assert morning.intents_folded >= 1 and again.events_read == 0
    stored = cursor_doc(db, tenant_id, srv.account_id)
    assert int(stored["cursor"]) > int(first_cursor) and stored["venue"] == "oanda"
    record = db.document(f"tenants/{tenant_id}/order_intents/stop-1").get().to_dict()
    assert record["order_final"] is True and record["result"]["order_status"] == "filled"

    # the feed delivers the fill a second time (the cursor moved back): nothing changes
    db.document(cursor_path(tenant_id, "conn", srv.account_id)).update({"cursor": first_cursor})
    redelivered = ingest_venue_events(engine)
    assert redelivered.events_read >= 1 and my_errors(redelivered, tenant_id) == []
    assert {k for k, v in ledger(db, tenant_id).items() if v["kind"] == "fill"} == set(fills)
    assert cursor_doc(db, tenant_id, srv.account_id)["cursor"] == stored["cursor"]


def test_an_alpaca_broker_api_bracket_stop_reaches_the_ledger_once_from_the_trade_events(db, alpaca):
    srv, clock = alpaca
    venue_account = srv.open_account(str(uuid.uuid4()))
    tenant_id = tenant_with(db, "alpaca_broker", "sandbox", srv.url, venue_account, "env:EV_ALPACA_KEYS",
                            {AssetClass.EQUITY})
    engine = make_engine(db, clock)
    quote = srv.venue.get_latest_quote("AAPL", AssetClass.EQUITY)
    stop = (quote.bid - D("10")).quantize(D("0.01"))
    take = (quote.ask + D("10")).quantize(D("0.01"))
    placed = engine.execute_intent(OrderIntent("s1", None, "AAPL", "buy", "3", intent_id="br-1", time_in_force="gtc",
                                               order_class="bracket", take_profit={"limit_price": str(take)},
                                               stop_loss={"stop_price": str(stop)}),
                                   ExecutionContext(tenant_id, "alice"))
    assert placed.status == "placed" and placed.order_status == "filled", placed
    resting = engine.execute_intent(OrderIntent("s1", None, "AAPL", "buy", "1", intent_id="rest-1",
                                                order_type="limit", limit_price=str((quote.bid - D("50")).quantize(
                                                    D("0.01"))), time_in_force="gtc"),
                                    ExecutionContext(tenant_id, "alice"))
    assert resting.order_status == "new"  # keeps the account working after the bracket is done
    evening = Sweeper(engine).sweep()  # the entry's fill event; its exits are recorded, still working
    assert my_errors(evening, tenant_id) == []
    assert cursor_doc(db, tenant_id, venue_account) is not None

    srv.venue.market.set_mid("AAPL", stop - D("0.50"), AssetClass.EQUITY)  # overnight: the stop fires
    srv.venue.poll()
    morning = ingest_venue_events(engine)
    again = ingest_venue_events(engine)

    assert my_errors(morning, tenant_id) == [] and my_errors(again, tenant_id) == []
    exits = {k: v for k, v in ledger(db, tenant_id).items() if "--x" in k}
    (row,) = exits.values()
    assert row["kind"] == "fill" and row["side"] == "sell" and D(row["filled_qty"]) == 3
    assert morning.events_read >= 1 and morning.intents_folded >= 1 and again.events_read == 0
    record = db.document(f"tenants/{tenant_id}/order_intents/br-1").get().to_dict()
    assert record["exits_final"] is True
    assert sorted(leg["state"] for leg in record["exit_legs"].values()) == ["canceled", "filled"]
    assert book_lots(db.document("users/alice/tax_books/AAPL").get().to_dict()) == []
    assert srv.venue.net_position("AAPL", AssetClass.EQUITY, account_id=venue_account) == 0
    stored = cursor_doc(db, tenant_id, venue_account)
    assert stored["venue"] == "alpaca_broker" and int(stored["cursor"]) >= 1

    # delivered twice: the whole feed again from the start
    db.document(cursor_path(tenant_id, "conn", venue_account)).update({"cursor": "0"})
    redelivered = ingest_venue_events(engine)
    assert redelivered.events_read >= 2 and my_errors(redelivered, tenant_id) == []
    assert [k for k in ledger(db, tenant_id) if "--x" in k] == list(exits)
    assert cursor_doc(db, tenant_id, venue_account)["cursor"] == stored["cursor"]


def test_an_alpaca_event_stream_that_does_not_answer_is_reported_and_leaves_the_cursor(db, alpaca):
    srv, clock = alpaca
    venue_account = srv.open_account(str(uuid.uuid4()))
    tenant_id = tenant_with(db, "alpaca_broker", "sandbox", srv.url, venue_account, "env:EV_ALPACA_KEYS",
                            {AssetClass.EQUITY})
    engine = make_engine(db, clock)
    quote = srv.venue.get_latest_quote("AAPL", AssetClass.EQUITY)
    engine.execute_intent(OrderIntent("s1", None, "AAPL", "buy", "1", intent_id="rest-1", order_type="limit",
                                      limit_price=str((quote.bid - D("50")).quantize(D("0.01"))),
                                      time_in_force="gtc"), ExecutionContext(tenant_id, "alice"))
    srv.inject("GET /v1/events/trades", "timeout_after_accept", seconds=4)  # longer than the quiet bound (2 s)

    report = ingest_venue_events(engine)

    assert any("UNAVAILABLE" in e or "unreachable" in e for e in my_errors(report, tenant_id)), report.errors
    assert cursor_doc(db, tenant_id, venue_account) is None
    assert "KEY" not in " ".join(report.errors) and "ev-secret" not in " ".join(report.errors)
    ok = ingest_venue_events(engine)  # the stream answers again (nothing happened yet: no cursor to store)
    assert my_errors(ok, tenant_id) == [] and ok.accounts >= 1
