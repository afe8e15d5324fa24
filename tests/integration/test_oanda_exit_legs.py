"""Issue 15 items 3 and 7 on OANDA over real HTTP (httpx → the local OANDA-v20-compatible server): an
entry placed with take-profit and stop-loss on fill opens a trade whose dependent orders OANDA holds;
the stop fires while nothing of ours runs; the next sweep records that fill once (ledger, history, lot
book, exposure), a second sweep adds nothing, the take-profit ends canceled (the closed trade cancels
it at the venue) and the venue is as flat as the ledger. ``OandaBroker.get_order`` answers the trade's
dependent orders as the entry's legs, so ``follow_exit_legs`` and the event feed fold them unchanged."""
from __future__ import annotations

from decimal import Decimal as D

import pytest

from backend.adapters.oanda import OandaBroker
from backend.adapters.oanda.broker import forget_instruments
from backend.adapters.oanda.client import close_shared_clients
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.domain.orders import OrderSide, OrderState
from backend.execution.intent import ExecutionContext, OrderIntent
from backend.execution.sweeper import Sweeper
from backend.tax.state import book_lots
from tests.support.group_harness import scenario
from tests.support.oanda_server import LocalOandaServer
from tests.support.oanda_stack import oanda_engine

TOKEN = "oanda-exit-legs-token-do-not-leak"
FX = AssetClass.FOREX
CTX = ExecutionContext("acme", "u1")


@pytest.fixture
def placed():
    """A filled EUR/USD buy of 10000 with a take profit 100 pips up and a stop loss 50 pips down."""
    clock = ManualClock()
    srv = LocalOandaServer(scenario(), clock=clock, token=TOKEN).start()
    broker, engine = oanda_engine(srv, TOKEN, clock)
    quote = srv.venue.get_latest_quote("EUR/USD", FX)
    take, stop = quote.ask + D("0.0100"), quote.bid - D("0.0050")
    intent = OrderIntent("s1", "acct", "EUR/USD", "buy", "10000", "FX", intent_id="ox1", time_in_force="fok",
                         order_class="bracket", take_profit={"limit_price": str(take)},
                         stop_loss={"stop_price": str(stop)})
    result = engine.execute_intent(intent, CTX)
    assert result.status == "placed" and result.order_status == "filled", result
    yield srv, broker, engine, stop
    srv.stop()
    close_shared_clients()
    forget_instruments()


def rows(engine, prefix):
    return {p.rsplit("/", 1)[1]: d for p, d in engine.store.docs.items() if p.startswith(prefix)}


def test_the_entry_answers_the_trades_take_profit_and_stop_loss_as_its_working_legs(placed):
    srv, broker, engine, stop = placed
    entry = broker.get_order(engine.store.get_intent("acme", "ox1").data["broker_order_id"])
    assert entry.state is OrderState.FILLED
    assert sorted((leg.state.value, leg.side.value, leg.qty, leg.symbol) for leg in entry.legs) == \
        [("new", "sell", D("10000"), "EUR/USD")] * 2
    kinds = sorted(t["type"] for t in srv.transactions() if t.get("reason") == "ON_FILL")
    assert kinds == ["STOP_LOSS_ORDER", "TAKE_PROFIT_ORDER"]
    (fill,) = [t for t in srv.transactions() if t["type"] == "ORDER_FILL"]
    assert all(t["tradeID"] == fill["tradeOpened"]["tradeID"] for t in srv.transactions()
               if t.get("reason") == "ON_FILL")


def test_a_stop_loss_fired_overnight_reaches_the_ledger_once_and_the_take_profit_ends_canceled(placed):
    srv, broker, engine, stop = placed
    engine.clock.advance(30)
    Sweeper(engine).sweep()  # both exits still working: nothing to record
    assert not [k for k in rows(engine, "tenants/acme/ledger_trades/") if "--x" in k]

    srv.venue.market.set_mid("EUR/USD", stop - D("0.0010"), FX)  # overnight: the stop fires at the venue
    srv.venue.poll()
    assert srv.venue.net_position("EUR/USD", FX) == 0  # OANDA closed the trade; nothing of ours ran

    engine.clock.advance(90)
    Sweeper(engine).sweep()
    exits = {k: v for k, v in rows(engine, "tenants/acme/ledger_trades/").items() if "--x" in k}
    (trade_id, row), = exits.items()
    assert row["kind"] == "fill" and row["side"] == "sell" and D(row["filled_qty"]) == 10000
    assert row["order_type"] == "stop" and D(row["filled_avg_price"]) <= stop
    assert trade_id in rows(engine, "users/u1/portfolio/history/trades/")
    (book,) = [d for p, d in engine.store.docs.items() if p.startswith("users/u1/tax_books/")]
    assert book_lots(book) == []  # the stop closed the lot the entry opened
    exposure = next(d for p, d in engine.store.docs.items() if "/exposure/" in p)
    assert exposure["position_nanos"] == 0

    engine.clock.advance(90)
    Sweeper(engine).sweep()  # delivered again: nothing new
    assert {k for k in rows(engine, "tenants/acme/ledger_trades/") if "--x" in k} == {trade_id}

    record = engine.store.get_intent("acme", "ox1").data
    assert record["exits_final"] is True and record["reconcile_after"] is None
    assert sorted(leg["state"] for leg in record["exit_legs"].values()) == ["canceled", "filled"]
    entry = broker.get_order(record["broker_order_id"])
    states = {leg.venue_status.partition(":")[0]: leg.state for leg in entry.legs}
    assert sorted(s.value for s in states.values()) == ["canceled", "filled"]
    cancels = [t for t in srv.transactions() if t["type"] == "ORDER_CANCEL"]
    assert [t["reason"] for t in cancels] == ["LINKED_TRADE_CLOSED"]
    take_profit_id = next(t["id"] for t in srv.transactions() if t["type"] == "TAKE_PROFIT_ORDER")
    assert cancels[0]["orderID"] == take_profit_id

    ledger_net = sum((D(r["filled_qty"]) * (1 if r["side"] == OrderSide.BUY.value else -1)
                      for r in rows(engine, "tenants/acme/ledger_trades/").values()
                      if r.get("kind") in ("order", "fill")),  # the entry filled at placement: its order row
                     D(0))
    assert ledger_net == 0 == srv.venue.net_position("EUR/USD", FX)
    assert [p for p in broker.get_positions() if p.symbol == "EUR/USD"] == []


@pytest.mark.slow
def test_the_stop_loss_fill_reaches_the_ledger_once_from_the_oanda_transaction_feed(db):
    """The same overnight stop on a bound OANDA account (Firestore emulator), folded by the event
    ingestion alone: the exit's ORDER_FILL names an order not yet recorded, so the account's protected
    entry is followed; a second read and a redelivery from an older cursor add nothing."""
    from backend.execution.event_ingest import cursor_path, ingest_venue_events
    from tests.integration.test_event_ingest_venues import TOKEN as FEED_TOKEN
    from tests.integration.test_event_ingest_venues import ledger, make_engine, my_errors, tenant_with

    clock = ManualClock()
    srv = LocalOandaServer(scenario(), clock=clock, token=FEED_TOKEN).start()
    try:
        tenant_id = tenant_with(db, "oanda", "paper", srv.url, srv.account_id, "env:EV_OANDA_KEYS", {FX})
        engine = make_engine(db, clock)
        quote = srv.venue.get_latest_quote("EUR/USD", FX)
        stop = quote.bid - D("0.0050")
        placed = engine.execute_intent(OrderIntent(
            "s1", None, "EUR/USD", "buy", "10000", asset_class="FOREX", intent_id="feed-br", time_in_force="fok",
            order_class="bracket", take_profit={"limit_price": str(quote.ask + D("0.0100"))},
            stop_loss={"stop_price": str(stop)}), ExecutionContext(tenant_id, "alice"))
        assert placed.status == "placed" and placed.order_status == "filled", placed
        evening = ingest_venue_events(engine)
        assert my_errors(evening, tenant_id) == []
        first_cursor = db.document(cursor_path(tenant_id, "conn", srv.account_id)).get().to_dict()["cursor"]

        srv.venue.market.set_mid("EUR/USD", stop - D("0.0010"), FX)  # overnight: the stop fires at OANDA
        srv.venue.poll()
        morning, again = ingest_venue_events(engine), ingest_venue_events(engine)
        assert my_errors(morning, tenant_id) == [] and my_errors(again, tenant_id) == []
        exits = {k: v for k, v in ledger(db, tenant_id).items() if "--x" in k}
        (row,) = exits.values()
        assert row["kind"] == "fill" and row["side"] == "sell" and D(row["filled_qty"]) == 10000
        record = db.document(f"tenants/{tenant_id}/order_intents/feed-br").get().to_dict()
        assert record["exits_final"] is True
        assert sorted(leg["state"] for leg in record["exit_legs"].values()) == ["canceled", "filled"]

        db.document(cursor_path(tenant_id, "conn", srv.account_id)).update({"cursor": first_cursor})
        redelivered = ingest_venue_events(engine)  # the feed again from before the stop: nothing new
        assert my_errors(redelivered, tenant_id) == []
        assert {k for k in ledger(db, tenant_id) if "--x" in k} == set(exits)
        assert srv.venue.net_position("EUR/USD", FX) == 0
    finally:
        srv.stop()
        close_shared_clients()
        forget_instruments()
