"""Issue 15 item 7: a bracket's stop fires at the (paper) venue while nothing of ours runs; following
the entry's exit legs records that fill once — ledger, history, lot book, exposure — and a second
delivery adds nothing; the take-profit sibling ends canceled."""
from __future__ import annotations

from decimal import Decimal as D

from backend.adapters.memory_store import InMemoryStore
from backend.adapters.paper_broker import PaperBroker
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.domain.orders import OrderState
from backend.execution.engine import ExecutionEngine
from backend.execution.exit_legs import follow_exit_legs
from backend.execution.intent import ExecutionContext, OrderIntent
from backend.execution.records import LEDGER_FIELDS
from backend.settings import ExecSettings
from backend.tax.state import book_lots

CTX = ExecutionContext("acme", "u1")


def engine_with_bracket(stop_loss):
    clock = ManualClock()
    broker = PaperBroker(clock=clock)
    engine = ExecutionEngine(broker=broker, store=InMemoryStore(), clock=clock, dry_run=False,
                             settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0"}))
    quote = broker.get_latest_quote("SPY", AssetClass.EQUITY)
    take = (quote.ask + D("10")).quantize(D("0.01"))
    stop = (quote.bid - D("10")).quantize(D("0.01"))
    intent = OrderIntent("s1", "acct", "SPY", "buy", "3", intent_id="b1", time_in_force="gtc",
                         order_class="bracket", take_profit={"limit_price": str(take)},
                         stop_loss={"stop_price": str(stop), **stop_loss})
    result = engine.execute_intent(intent, CTX)
    assert result.status == "placed" and result.order_status == "filled", result
    return engine, broker, stop


def rows(engine, prefix):
    return {p.rsplit("/", 1)[1]: d for p, d in engine.store.docs.items() if p.startswith(prefix)}


def test_a_stop_that_fires_at_the_venue_reaches_the_ledger_once_and_the_take_profit_is_canceled():
    engine, broker, stop = engine_with_bracket({})
    assert follow_exit_legs(engine, "acme", "b1") == 0  # both exits working: nothing to record
    broker.venue.market.set_mid("SPY", stop - D("0.50"), AssetClass.EQUITY)  # no call of ours in between
    broker.venue.poll()

    added = follow_exit_legs(engine, "acme", "b1")
    again = follow_exit_legs(engine, "acme", "b1")

    assert (added, again) == (1, 0)
    exits = {k: v for k, v in rows(engine, "tenants/acme/ledger_trades/").items() if "--x" in k}
    (trade_id, row), = exits.items()
    assert row["kind"] == "fill" and row["side"] == "sell" and D(row["filled_qty"]) == 3
    assert row["order_type"] == "stop" and set(row) - {"recorded_at"} == set(LEDGER_FIELDS)
    assert trade_id in rows(engine, "users/u1/portfolio/history/trades/")
    book = engine.store.docs["users/u1/tax_books/SPY"]
    assert book_lots(book) == []  # the stop closed the lot the entry opened
    exposure = next(d for p, d in engine.store.docs.items() if "/exposure/" in p)
    assert exposure["position_nanos"] == 0
    parent = broker.get_order(engine.store.get_intent("acme", "b1").data["broker_order_id"])
    assert sorted(leg.state.value for leg in parent.legs) == ["canceled", "filled"]
    assert engine.store.get_intent("acme", "b1").data["exits_final"] is True
    assert broker.venue.net_position("SPY", AssetClass.EQUITY) == 0


def test_an_entry_that_is_not_a_bracket_or_oto_is_not_followed():
    clock = ManualClock()
    engine = ExecutionEngine(broker=PaperBroker(clock=clock), store=InMemoryStore(), clock=clock, dry_run=False,
                             settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0"}))
    engine.execute_intent(OrderIntent("s1", "acct", "SPY", "buy", "3", intent_id="m1"), CTX)

    assert follow_exit_legs(engine, "acme", "m1") == 0
    assert follow_exit_legs(engine, "acme", "missing") == 0


def test_the_scheduled_sweep_finds_the_filled_bracket_and_records_its_stop_once():
    """The whole path: the entry filled at placement (the record stays findable for its exits), the
    stop fires overnight, the next sweeps (delivered twice) record it once and then stop looking."""

    from backend.execution.sweeper import Sweeper

    engine, broker, stop = engine_with_bracket({})
    assert engine.store.get_intent("acme", "b1").data["reconcile_after"] is not None
    broker.venue.market.set_mid("SPY", stop - D("0.50"), AssetClass.EQUITY)
    broker.venue.poll()

    for _ in range(2):
        engine.clock.advance(30)
        Sweeper(engine).sweep()

    exits = [k for k in rows(engine, "tenants/acme/ledger_trades/") if "--x" in k]
    assert len(exits) == 1
    record = engine.store.get_intent("acme", "b1").data
    assert record["exits_final"] is True and record["reconcile_after"] is None  # nothing left to follow
