"""Single-leg engine on a recording stub broker and the in-memory store (fast, no I/O).
The same flows run against the official Firestore emulator in tests/integration."""
import io
import json
from datetime import timedelta
from decimal import Decimal

import pytest

from backend import logs
from backend.adapters.memory_store import InMemoryStore
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.domain.errors import InvalidInput
from backend.execution.engine import ExecutionEngine, OrderIntent, RiskManager, SmartRouter
from backend.execution.intent import ExecutionContext
from backend.ports.broker import BrokerError, BrokerErrorCode
from backend.risk.manager import RiskLimits
from backend.settings import ExecSettings
from backend.tax.state import book_lots
from tests.support.stub_broker import StubBroker

CTX = ExecutionContext(tenant_id="acme", uid="u1")
TIGHT = {"AAPL": ("189.99", "190.01"), "EUR/USD": ("1.1000", "1.1001"), "BTC/USD": ("49990", "50010"),
         "WIDE": ("99.80", "100.20")}


def make(broker=None, *, limits=RiskLimits(), dry_run=False, store=None, clock=None):
    clock = clock or ManualClock()
    broker = broker or StubBroker(quotes=dict(TIGHT), now=clock.now)
    store = store if store is not None else InMemoryStore()
    engine = ExecutionEngine(broker=broker, router=SmartRouter(max_spread_pct=0.001), risk=RiskManager(limits),
                             dry_run=dry_run, store=store, clock=clock,
                             settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0"}))
    return engine, broker, store


def intent(symbol="AAPL", side="buy", qty="10", asset_class="EQUITY", intent_id="i1", **kw):
    return OrderIntent(strategy_id="s1", broker_account_id="acct1", symbol=symbol, side=side, qty=qty,
                       asset_class=asset_class, intent_id=intent_id, **kw)


def ledger(store, tenant="acme"):
    return store.collection(f"tenants/{tenant}/ledger_trades")


def _bound(engine, store):
    """The user's account exists (provisioned once in auto mode): the commits below are the trade's."""
    engine.bind_account("acme", "u1", "acct1", ())
    store.commits = 0


def test_places_a_trade_and_writes_ledger_and_history_in_one_commit():
    engine, broker, store = make()
    _bound(engine, store)
    result = engine.execute_intent(intent(), CTX)
    assert result.status == "placed" and result.broker_order_id and result.filled_qty == Decimal("10")
    row = store.get("tenants/acme/ledger_trades/i1")
    hist = store.get("users/u1/portfolio/history/trades/i1")
    assert row["status"] == "placed" and row["filled_avg_price"] == "190.01"
    assert Decimal(row["notional"]) == Decimal("1900.10") and row["qty"] == "10.0000"
    assert hist["tax"]["lot_method"] == "FIFO" and Decimal(hist["tax"]["cost_basis"]) == Decimal("1900.10")
    assert hist["tax"]["tax_year"] == 2026 and hist["cost_analysis"]["estimated_slippage"] == row["estimated_slippage"]
    assert store.commits == 2  # claim before the broker, finish after it


def test_wide_spread_is_downgraded_and_recorded_without_an_order():
    engine, broker, store = make()
    _bound(engine, store)
    result = engine.execute_intent(intent(symbol="WIDE"), CTX)
    assert result.status == "downgraded" and result.routing.reason == "Spread 0.40% exceeds threshold 0.10%"
    assert broker.submits == []
    row = store.get("tenants/acme/ledger_trades/i1")
    assert row["status"] == "downgraded" and row["quote"]["bid"] == "99.80" and row["spread_pct"] == "0.004"
    assert store.get("users/u1/portfolio/history/trades/i1") is None
    assert store.commits == 1


@pytest.mark.parametrize("limits, prior, order, code", [
    (RiskLimits(kill_switch=True), {}, ("buy", "1"), "KILL_SWITCH"),
    (RiskLimits(max_daily_trades=0), {}, ("buy", "1"), "DAILY_TRADE_LIMIT"),
    (RiskLimits(max_position_qty=Decimal("5")), {}, ("buy", "10"), "POSITION_LIMIT"),
    (RiskLimits(max_position_qty=Decimal("5")), {}, ("sell", "10"), "POSITION_LIMIT"),
    (RiskLimits(), {"tenants/acme/config/risk": {"kill_switch": True}}, ("buy", "1"), "KILL_SWITCH"),
    (RiskLimits(), {"ops/execution": {"kill_switch": True}}, ("buy", "1"), "KILL_SWITCH"),
    (RiskLimits(), {"tenants/acme/config/risk": {"max_daily_trades": 0}}, ("buy", "1"), "DAILY_TRADE_LIMIT"),
    (RiskLimits(), {"tenants/acme/config/risk": {"max_position_qty": "3"}}, ("buy", "4"), "POSITION_LIMIT"),
])
def test_every_risk_rule_rejects_with_a_code_and_records_it(limits, prior, order, code):
    engine, broker, store = make(limits=limits)
    for path, doc in prior.items():
        store.set_doc(path, doc)
    result = engine.execute_intent(intent(side=order[0], qty=order[1]), CTX)
    assert result.status == "rejected" and result.rejection.code.value == code
    assert broker.submits == []
    assert store.get("tenants/acme/ledger_trades/i1")["reason_code"] == code


def test_tenant_cannot_loosen_operator_limits():
    engine, _, store = make(limits=RiskLimits(max_position_qty=Decimal("5")))
    store.set_doc("tenants/acme/config/risk", {"max_position_qty": "1000"})
    assert engine.execute_intent(intent(qty="10"), CTX).rejection.code.value == "POSITION_LIMIT"


def test_an_order_that_reduces_an_oversized_position_is_allowed():
    engine, _, store = make(limits=RiskLimits(max_position_qty=Decimal("5")))
    store.set_doc("tenants/acme/exposure/acct1__AAPL", {"position_nanos": 8 * 10**9})  # integer nano-units
    assert engine.execute_intent(intent(side="sell", qty="3"), CTX).status == "placed"


def test_daily_limit_counts_placed_trades():
    engine, broker, store = make(limits=RiskLimits(max_daily_trades=2))
    statuses = [engine.execute_intent(intent(intent_id=f"i{n}"), CTX).status for n in range(3)]
    assert statuses == ["placed", "placed", "rejected"] and len(broker.submits) == 2


def test_daily_slots_are_per_utc_day():
    clock = ManualClock()
    engine, _, _ = make(limits=RiskLimits(max_daily_trades=1), clock=clock)
    assert engine.execute_intent(intent(intent_id="a"), CTX).status == "placed"
    clock.advance(timedelta(days=1).total_seconds())
    assert engine.execute_intent(intent(intent_id="b"), CTX).status == "placed"


def test_fx_without_a_venue_is_rejected_and_never_sent():
    broker = StubBroker(quotes=dict(TIGHT), supported=frozenset({AssetClass.EQUITY, AssetClass.CRYPTO}))
    engine, broker, _ = make(broker)
    result = engine.execute_intent(intent(symbol="EUR/USD", asset_class="FX", qty="10000"), CTX)
    assert result.status == "rejected" and str(result.rejection) == "NO_VENUE_FOR_ASSET_CLASS: FOREX"
    assert broker.submits == []


def test_dry_run_decides_but_sends_nothing():
    engine, broker, store = make(dry_run=True)
    result = engine.execute_intent(intent(), CTX)
    assert result.status == "dry_run" and broker.submits == []
    assert store.get("tenants/acme/ledger_trades/i1")["status"] == "dry_run"


def test_same_intent_twice_is_one_order_and_one_ledger_row():
    engine, broker, store = make()
    first = engine.execute_intent(intent(), CTX)
    second = engine.execute_intent(intent(), CTX)
    assert second.replayed and second.broker_order_id == first.broker_order_id and second.status == "placed"
    assert len(broker.submits) == 1 and len(ledger(store)) == 1


def test_broker_rejection_releases_the_daily_slot_and_reservation():
    broker = StubBroker(quotes=dict(TIGHT), fail_submit=BrokerError(BrokerErrorCode.INSUFFICIENT_BUYING_POWER, "bp"))
    engine, _, store = make(broker, limits=RiskLimits(max_daily_trades=1))
    result = engine.execute_intent(intent(), CTX)
    assert result.status == "rejected" and result.rejection.code.value == "BROKER_INSUFFICIENT_BUYING_POWER"
    day = "2026-01-05"
    assert store.collection(f"tenants/acme/risk_days/{day}/trade_slots") == {}
    exp = store.get("tenants/acme/exposure/acct1__AAPL")
    assert exp.get("reserved_long_nanos", 0) == 0 and exp.get("position_nanos", 0) == 0


def test_unknown_outcome_keeps_the_reservation_and_a_retry_finds_the_order():
    clock = ManualClock()
    broker = StubBroker(quotes=dict(TIGHT), now=clock.now,
                        fail_submit_after_accept=BrokerError(BrokerErrorCode.UNAVAILABLE, "timeout"))
    engine, _, store = make(broker, clock=clock)
    first = engine.execute_intent(intent(), CTX)
    assert first.status == "pending" and store.get("tenants/acme/order_intents/i1")["status"] == "reserved"
    broker.fail_submit_after_accept = None
    second = engine.execute_intent(intent(), CTX)
    assert second.status == "placed" and len(broker.orders) == 1
    assert ("lookup", first.client_order_id) in broker.calls


def test_reserved_intent_with_live_lease_and_no_order_waits_then_submits_after_expiry():
    clock = ManualClock()
    broker = StubBroker(quotes=dict(TIGHT), now=clock.now, fail_submit=BrokerError(BrokerErrorCode.UNAVAILABLE, "down"))
    engine, _, _ = make(broker, clock=clock)
    assert engine.execute_intent(intent(), CTX).status == "pending"
    broker.fail_submit = None
    assert engine.execute_intent(intent(), CTX).status == "pending"  # lease still held: someone may be sending
    clock.advance(121)
    assert engine.execute_intent(intent(), CTX).status == "placed"
    assert len(broker.orders) == 1


def test_stale_and_crossed_quotes_are_coded_rejections():
    clock = ManualClock()
    broker = StubBroker(quotes={"AAPL": ("190", "190.01"), "X": ("10.02", "10.00")}, now=clock.now,
                        quote_time=clock.now() - timedelta(seconds=30))
    engine, _, _ = make(broker, clock=clock)
    assert engine.execute_intent(intent(intent_id="a"), CTX).rejection.code.value == "STALE_TICK"
    broker.quote_time = None
    assert engine.execute_intent(intent(symbol="X", intent_id="b"), CTX).rejection.code.value == "INVALID_QUOTE"
    assert engine.execute_intent(intent(symbol="NOQUOTE", intent_id="c"), CTX).rejection.code.value == \
        "MARKET_DATA_UNAVAILABLE"


@pytest.mark.parametrize("kwargs, field", [
    ({"qty": "-1"}, "qty"), ({"qty": "0"}, "qty"), ({"qty": float("nan")}, "qty"), ({"qty": "1e12"}, "qty"),
    ({"qty": 0.1 + 0.2}, "qty"), ({"qty": None}, "qty"), ({"side": "hold"}, "side"),
    ({"asset_class": "BONDS"}, "asset_class"), ({"symbol": ""}, "symbol"), ({"symbol": None}, "symbol"),
    ({"intent_id": "bad id/with slash"}, "intent_id"), ({"order_type": "limit"}, "limit_price"),
    ({"order_type": "limit", "limit_price": "190.005"}, "limit_price"),
    ({"estimated_slippage": -0.1}, "estimated_slippage"),
])
def test_bad_input_is_a_clear_error_naming_the_field(kwargs, field):
    with pytest.raises(InvalidInput) as err:
        intent(**kwargs)
    assert err.value.field == field


def test_identity_in_metadata_must_match_the_verified_context():
    engine, broker, store = make()
    with pytest.raises(InvalidInput, match="authenticated tenant"):
        engine.execute_intent(intent(metadata={"tenant_id": "other"}), CTX)
    assert broker.submits == [] and store.docs == {}


def test_without_context_the_seed_metadata_is_used():
    engine, _, store = make()
    result = engine.execute_intent(intent(metadata={"tenant_id": "acme_corp", "uid": "user_12345"}))
    assert result.status == "placed" and store.get("users/user_12345/portfolio/history/trades/i1") is not None


def test_partial_fill_keeps_reservation_for_the_working_remainder():
    broker = StubBroker(quotes=dict(TIGHT), fill_ratio=Decimal("0.4"))
    engine, _, store = make(broker)
    result = engine.execute_intent(intent(), CTX)
    assert result.status == "placed" and result.order_status == "partially_filled"
    exp = store.get("tenants/acme/exposure/acct1__AAPL")
    assert exp["position_nanos"] == 4 * 10**9 and exp["reserved_long_nanos"] == 6 * 10**9


def test_structured_log_lines_are_json_with_severity():
    stream = io.StringIO()
    logs.set_stream(stream)
    try:
        engine, _, _ = make()
        engine.execute_intent(intent(symbol="WIDE"), CTX)
    finally:
        logs.set_stream(None)
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    # the user's first order provisions their account and builds its venue router first
    events = [e for e in events if e["event"] != "exec.account_provisioned" and not e["event"].startswith("venues.")]
    names = [e["event"] for e in events]
    assert names[:2] == ["exec.intent_received", "exec.smart_routing"] and "exec.downgraded" in names
    routing = events[1]
    assert routing["severity"] == "INFO" and routing["downgraded"] is True and routing["spread_pct"] == "0.004"


def test_per_asset_class_position_limit_replaces_the_global_one():
    engine, _, _ = make(limits=RiskLimits(max_position_qty=Decimal("100"),
                                          max_position_by_class={AssetClass.FOREX: Decimal("200000")}))
    assert engine.execute_intent(intent(symbol="EUR/USD", asset_class="FX", qty="100000", intent_id="fx"), CTX).status \
        == "placed"
    assert engine.execute_intent(intent(qty="101", intent_id="eq"), CTX).rejection.code.value == "POSITION_LIMIT"


def test_per_class_limit_from_env():
    s = ExecSettings.from_env({"EXEC_MAX_POSITION_QTY_FOREX": "250000"})
    assert RiskManager(settings=s).limits.position_limit(AssetClass.FOREX) == Decimal("250000")


def test_a_sale_can_name_its_lots_and_specific_without_names_falls_back_to_fifo():
    engine, broker, store = make()
    store.set_doc("users/u1/config/tax", {"lot_method": "SPECIFIC"})
    engine.execute_intent(intent(intent_id="b1", qty="5"), CTX)
    broker.quotes["AAPL"] = ("200.00", "200.02")
    engine.execute_intent(intent(intent_id="b2", qty="5"), CTX)
    lots = book_lots(store.get("users/u1/tax_books/AAPL"))
    second = next(lot["lot_id"] for lot in lots if lot["source_trade_id"] == "b2")
    broker.quotes["AAPL"] = ("210.00", "210.02")
    engine.execute_intent(intent(intent_id="s1", side="sell", qty="2", metadata={"lot_ids": {second: "2"}}), CTX)
    engine.execute_intent(intent(intent_id="s2", side="sell", qty="1"), CTX)  # names nothing: FIFO
    book = store.get("users/u1/tax_books/AAPL")
    left = {lot["source_trade_id"]: Decimal(lot["qty"]) for lot in book_lots(book)}
    assert left == {"b1": Decimal(4), "b2": Decimal(3)}
    assert store.get("tenants/acme/ledger_trades/s2")["status"] == "placed"


def test_a_reserved_intent_refused_after_midnight_gives_back_the_slot_of_its_own_day():
    """The claim took slot n of day D; the venue was down, the operator halted, and the resume runs
    on day D+1: it must delete D's slot (its own), never slot n of D+1 (someone else's)."""
    from datetime import datetime, timezone

    from backend.ports.broker import BrokerError, BrokerErrorCode

    clock = ManualClock(datetime(2026, 3, 2, 23, 59, 50, tzinfo=timezone.utc))
    broker = StubBroker(quotes=dict(TIGHT), now=clock.now, fail_submit=BrokerError(BrokerErrorCode.UNAVAILABLE, "down"))
    engine, _, store = make(broker, clock=clock)
    assert engine.execute_intent(intent(), CTX).status == "pending"
    day_d = "tenants/acme/risk_days/2026-03-02/trade_slots"
    slot = store.get("tenants/acme/order_intents/i1")["slot"]
    assert f"{day_d}/{slot}" in store.collection(day_d)
    store.set_doc(f"tenants/acme/risk_days/2026-03-03/trade_slots/{slot}", {"intent_id": "someone-else"})

    clock.advance(3600)  # the next UTC day, lease expired
    store.set_doc("ops/execution", {"kill_switch": True})
    result = engine.execute_intent(intent(), CTX)

    assert result.status == "rejected"
    assert store.collection(day_d) == {}  # its own slot released
    assert store.get(f"tenants/acme/risk_days/2026-03-03/trade_slots/{slot}") == {"intent_id": "someone-else"}
