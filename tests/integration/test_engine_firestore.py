"""The single-leg engine persisting on the official Firestore emulator: atomic records, exact money,
idempotency, and limits that hold under concurrency."""
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from backend.adapters.firestore_store import FirestoreStore
from backend.domain.clock import ManualClock
from backend.execution.engine import ExecutionEngine, OrderIntent, RiskManager, SmartRouter
from backend.execution.intent import ExecutionContext
from backend.risk.manager import RiskLimits
from backend.settings import ExecSettings
from backend.tax.state import book_lots, book_pending_disposals
from tests.support.stub_broker import StubBroker

CTX = ExecutionContext(tenant_id="acme", uid="u1")
QUOTES = {"AAPL": ("189.99", "190.01"), "BTC/USD": ("49999", "50001"), "WIDE": ("99.80", "100.20")}


@pytest.fixture
def setup(db):
    clock = ManualClock()
    broker = StubBroker(quotes=dict(QUOTES), now=clock.now)
    store = FirestoreStore(db)

    def build(limits=RiskLimits(max_position_qty=Decimal("100000")), dry_run=False):
        return ExecutionEngine(broker=broker, router=SmartRouter(0.001), risk=RiskManager(limits), dry_run=dry_run,
                               store=store, clock=clock, settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0"}))
    return build, broker, db


def intent(intent_id="i1", symbol="AAPL", qty="10", side="buy", asset_class="EQUITY"):
    return OrderIntent(strategy_id="s1", broker_account_id="acct1", symbol=symbol, side=side, qty=qty,
                       asset_class=asset_class, intent_id=intent_id)


def test_placed_trade_persists_ledger_history_and_intent_with_exact_money(setup):
    build, broker, db = setup
    result = build().execute_intent(intent(symbol="BTC/USD", qty="0.123457", asset_class="CRYPTO"), CTX)
    assert result.status == "placed"
    row = db.document("tenants/acme/ledger_trades/i1").get().to_dict()
    hist = db.document("users/u1/portfolio/history/trades/i1").get().to_dict()
    rec = db.document("tenants/acme/order_intents/i1").get().to_dict()
    assert Decimal(row["filled_qty"]) == Decimal("0.123457") and row["filled_avg_price"] == "50001"
    assert Decimal(row["notional"]) == Decimal("0.123457") * Decimal("50001")  # exact round trip
    assert hist["tax"]["lot_method"] == "FIFO" and hist["execution"]["broker_order_id"] == result.broker_order_id
    assert rec["status"] == "placed" and rec["lease_until"] is None and row["recorded_at"] is not None
    exposure = db.document("tenants/acme/exposure/acct1__BTC-USD").get().to_dict()
    assert exposure["position_nanos"] == 123457000 and exposure["reserved_long_nanos"] == 0


def test_downgrade_is_one_record_with_quote_and_reason(setup):
    build, broker, db = setup
    result = build().execute_intent(intent(symbol="WIDE"), CTX)
    assert result.status == "downgraded" and broker.submits == []
    row = db.document("tenants/acme/ledger_trades/i1").get().to_dict()
    assert row["status"] == "downgraded" and row["reason"] == "Spread 0.40% exceeds threshold 0.10%"
    assert row["quote"] == {"bid": "99.80", "ask": "100.20", "mid": "100.00", "timestamp": row["quote"]["timestamp"]}
    assert not db.document("users/u1/portfolio/history/trades/i1").get().exists


def test_same_intent_twice_is_one_order_and_one_ledger_row(setup):
    build, broker, db = setup
    engine = build()
    first = engine.execute_intent(intent(), CTX)
    second = engine.execute_intent(intent(), CTX)
    assert second.replayed and second.broker_order_id == first.broker_order_id
    assert len(broker.submits) == 1
    assert len(list(db.collection("tenants/acme/ledger_trades").stream())) == 1


def test_the_same_intent_racing_itself_places_one_order(setup):
    build, broker, db = setup
    engine = build()
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda _: engine.execute_intent(intent(), CTX), range(6)))
    assert len(broker.orders) == 1
    assert {r.broker_order_id for r in results if r.status == "placed"} <= {next(iter(broker.orders.values())).broker_order_id}
    assert len(list(db.collection("tenants/acme/ledger_trades").stream())) == 1


def test_fifty_concurrent_intents_against_a_daily_limit_of_ten_place_exactly_ten(setup):
    build, broker, db = setup
    engine = build(RiskLimits(max_position_qty=Decimal("100000"), max_daily_trades=10))
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda n: engine.execute_intent(intent(intent_id=f"c{n}"), CTX), range(50)))
    statuses = [r.status for r in results]
    assert statuses.count("placed") == 10 and statuses.count("rejected") == 40
    assert {r.rejection.code.value for r in results if r.status == "rejected"} == {"DAILY_TRADE_LIMIT"}
    assert len(broker.orders) == 10
    slots = list(db.collection("tenants/acme/risk_days/2026-01-05/trade_slots").stream())
    assert len(slots) == 10
    ledger = [d.to_dict() for d in db.collection("tenants/acme/ledger_trades").stream()]
    assert len(ledger) == 50 and sum(1 for d in ledger if d["status"] == "placed") == 10


def test_concurrent_buys_never_exceed_the_position_limit(setup):
    build, broker, db = setup
    engine = build(RiskLimits(max_position_qty=Decimal("35"), max_daily_trades=100))
    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(lambda n: engine.execute_intent(intent(intent_id=f"p{n}"), CTX), range(10)))
    placed = sum(1 for r in results if r.status == "placed")
    assert 1 <= placed <= 3  # conservative under a race, never above 35
    exposure = db.document("tenants/acme/exposure/acct1__AAPL").get().to_dict()
    assert exposure["position_nanos"] == placed * 10 * 10**9 and exposure["reserved_long_nanos"] == 0


def test_a_client_written_intent_document_is_claimed_in_place(setup):
    build, broker, db = setup
    db.document("tenants/acme/order_intents/fromapp").set({"status": "new", "uid": "u1", "symbol": "AAPL"})
    result = build().execute_intent(intent(intent_id="fromapp"), CTX)
    assert result.status == "placed"
    doc = db.document("tenants/acme/order_intents/fromapp").get().to_dict()
    assert doc["status"] == "placed" and doc["symbol"] == "AAPL" and doc["result"]["broker_order_id"]


def test_tenant_kill_switch_document_halts_only_that_tenant(setup):
    build, broker, db = setup
    db.document("tenants/acme/config/risk").set({"kill_switch": True})
    engine = build()
    assert engine.execute_intent(intent(), CTX).rejection.code.value == "KILL_SWITCH"
    other = engine.execute_intent(intent(), ExecutionContext(tenant_id="globex", uid="u2"))
    assert other.status == "placed"


def test_working_order_fills_are_reconciled_into_the_ledger_on_the_emulator(db):
    from backend.adapters.paper_broker import PaperBroker
    from backend.execution.sweeper import Sweeper

    clock = ManualClock()
    broker = PaperBroker({"seed": 1, "symbols": {"SPY": {"asset_class": "EQUITY", "mid": "520.00", "spread": "0.02",
                                                         "fill": {"model": "partial", "ratios": ["0.25", "0.5", "1"]}}}},
                         clock=clock)
    engine = ExecutionEngine(broker=broker, store=FirestoreStore(db), clock=clock, dry_run=False,
                             risk=RiskManager(RiskLimits(max_position_qty=Decimal("1000"))),
                             settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0"}))
    placed = engine.execute_intent(intent(intent_id="w1", symbol="SPY", qty="8"), CTX)
    assert placed.order_status == "partially_filled"
    for _ in range(3):
        clock.advance(11)
        Sweeper(engine).sweep()
    rows = [d.to_dict() for d in db.collection("tenants/acme/ledger_trades").stream()]
    assert sum(Decimal(r["filled_qty"]) for r in rows) == Decimal(8) and len(rows) == 3
    exposure = db.document("tenants/acme/exposure/acct1__SPY").get().to_dict()
    assert exposure["position_nanos"] == 8 * 10**9 and exposure["reserved_long_nanos"] == 0
    assert broker.venue.net_position("SPY") == Decimal(8)


def test_lots_and_realized_results_land_with_the_history_row(setup):
    build, broker, db = setup
    engine = build()
    engine.execute_intent(intent(intent_id="b1", qty="10"), CTX)
    broker.quotes["AAPL"] = ("195.00", "195.02")
    engine.execute_intent(intent(intent_id="s1", qty="4", side="sell"), CTX)  # a gain: final at once
    book = db.document("users/u1/tax_books/AAPL").get().to_dict()
    assert [(lot["qty"], lot["basis"]) for lot in book_lots(book)] == [("6.0000", "1140.060000")]
    disposals = [d.to_dict() for d in db.collection("users/u1/tax_disposals").stream()]
    assert [(d["quantity"], d["proceeds"], d["cost_basis"], d["term"]) for d in disposals] == \
        [("4.0000", "780.000000", "760.040000", "SHORT")]
    broker.quotes["AAPL"] = ("180.00", "180.02")
    engine.execute_intent(intent(intent_id="s2", qty="2", side="sell"), CTX)  # a loss: washable for 30 days
    book = db.document("users/u1/tax_books/AAPL").get().to_dict()
    assert [(d["quantity"], d["gain"], d["final"]) for d in book_pending_disposals(book)] == [("2.0000", "-20.020000", False)]
    assert len(list(db.collection("users/u1/tax_disposals").stream())) == 1


def test_concurrent_trades_of_one_user_keep_the_lot_book_consistent(setup):
    build, broker, db = setup
    engine = build()
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda n: engine.execute_intent(intent(intent_id=f"cc{n}", qty="1"), CTX), range(12)))
    book = db.document("users/u1/tax_books/AAPL").get().to_dict()
    assert sum(Decimal(lot["qty"]) for lot in book_lots(book)) == Decimal(12)
    assert len(book_lots(book)) == 12


def test_metrics_shards_accumulate_on_the_emulator(setup):
    from backend.execution import metrics

    build, broker, db = setup
    engine = build()
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda n: engine.execute_intent(intent(intent_id=f"m{n}", symbol="AAPL" if n % 2 else "WIDE"),
                                                      CTX), range(8)))
    store = FirestoreStore(db)
    summary = metrics.summarize(store.read_metrics("acme", "2026-01-05", "2026-01-05"))
    assert (summary["decisions"], summary["placed"], summary["downgraded"]) == (8, 4, 4)
    assert metrics.summarize(store.read_metrics("acme", "2026-01-05", "2026-01-05"), "s1")["decisions"] == 8
