"""Issue 15 items 3 and 7 on OANDA with a *resting* entry: a GTC / day LIMIT or STOP entry carrying
take-profit / stop-loss on fill rests at the venue, fills later (the local OANDA-v20 server moves the
price) and only then opens the trade whose dependent orders OANDA holds. Over real HTTP (httpx → the
local server): the entry's fill reaches the ledger once (the sweeper's reconcile, or the transaction
feed), its exits are followed like a filled-at-once entry's, the one that fires is recorded once and
its sibling ends canceled (``LINKED_TRADE_CLOSED``), and the venue is as flat as the ledger."""
from __future__ import annotations

from decimal import Decimal as D

import pytest

from backend.adapters.oanda.broker import forget_instruments
from backend.adapters.oanda.client import close_shared_clients
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.domain.orders import OrderState
from backend.execution.intent import ExecutionContext, OrderIntent
from backend.execution.sweeper import Sweeper
from backend.tax.state import book_lots
from tests.support.group_harness import scenario
from tests.support.oanda_server import LocalOandaServer
from tests.support.oanda_stack import oanda_engine

TOKEN = "oanda-resting-bracket-token"
FX = AssetClass.FOREX
CTX = ExecutionContext("acme", "u1")


@pytest.fixture
def venue():
    clock = ManualClock()
    srv = LocalOandaServer(scenario(), clock=clock, token=TOKEN).start()
    broker, engine = oanda_engine(srv, TOKEN, clock)
    yield srv, broker, engine
    srv.stop()
    close_shared_clients()
    forget_instruments()


def rows(engine, prefix="tenants/acme/ledger_trades/"):
    return {p.rsplit("/", 1)[1]: d for p, d in engine.store.docs.items() if p.startswith(prefix)}


def net(ledger: dict) -> D:
    return sum((D(r["filled_qty"]) * (1 if r["side"] == "buy" else -1) for r in ledger.values()
                if r.get("kind") in ("order", "fill")), D(0))


def sweep(engine, seconds=90):
    engine.clock.advance(seconds)
    report = Sweeper(engine).sweep()
    assert report.errors == [], report.errors
    return report


def place(engine, intent_id, **fields):
    intent = OrderIntent("s1", "acct", "EUR/USD", "buy", "10000", "FX", intent_id=intent_id, **fields)
    result = engine.execute_intent(intent, CTX)
    assert result.status == "placed" and result.order_status == "new", result  # it rests
    return result


@pytest.mark.parametrize("tif", ["gtc", "day"])
def test_a_resting_limit_bracket_fills_later_and_its_stop_loss_is_followed_once(venue, tif):
    srv, broker, engine = venue
    bid = srv.venue.get_latest_quote("EUR/USD", FX).bid
    limit = bid - D("0.0020")
    take, stop = limit + D("0.0100"), limit - D("0.0050")
    place(engine, "rb1", order_type="limit", limit_price=str(limit), time_in_force=tif, order_class="bracket",
          take_profit={"limit_price": str(take)}, stop_loss={"stop_price": str(stop)})
    sweep(engine)  # still resting: nothing to record
    assert set(rows(engine)) == {"rb1"} and not engine.store.get_intent("acme", "rb1").data.get("exit_legs")

    srv.venue.market.set_mid("EUR/USD", limit - D("0.0005"), FX)  # the entry fills while nothing runs
    srv.venue.poll()
    sweep(engine)
    fills = {k: v for k, v in rows(engine).items() if k.startswith("rb1--f")}
    (entry_fill,) = fills.values()
    assert D(entry_fill["filled_qty"]) == 10000 and D(entry_fill["filled_avg_price"]) <= limit
    record = engine.store.get_intent("acme", "rb1").data
    assert record["order_final"] is True and record["reconcile_after"] is not None
    assert sorted(leg["state"] for leg in record["exit_legs"].values()) == ["new", "new"]  # followed

    srv.venue.market.set_mid("EUR/USD", stop - D("0.0010"), FX)  # overnight: the stop fires at OANDA
    srv.venue.poll()
    sweep(engine)
    sweep(engine)  # delivered again: nothing new
    exits = {k: v for k, v in rows(engine).items() if "--x" in k}
    (exit_row,) = exits.values()
    assert exit_row["side"] == "sell" and exit_row["order_type"] == "stop" and D(exit_row["filled_qty"]) == 10000
    assert set(fills) == {k for k in rows(engine) if k.startswith("rb1--f")}  # the entry's fill once
    record = engine.store.get_intent("acme", "rb1").data
    assert record["exits_final"] is True and record["reconcile_after"] is None
    assert sorted(leg["state"] for leg in record["exit_legs"].values()) == ["canceled", "filled"]
    take_profit = next(t for t in srv.transactions() if t["type"] == "TAKE_PROFIT_ORDER")
    cancel = next(t for t in srv.transactions() if t["type"] == "ORDER_CANCEL" and t["orderID"] == take_profit["id"])
    assert cancel["reason"] == "LINKED_TRADE_CLOSED"
    assert net(rows(engine)) == 0 == srv.venue.net_position("EUR/USD", FX)
    exposure = next(d for p, d in engine.store.docs.items() if "/exposure/" in p)
    assert exposure["position_nanos"] == 0 and exposure["reserved_long_nanos"] == 0


def test_a_resting_stop_entry_that_fills_and_takes_profit_before_any_sweep_is_recorded_once(venue):
    """Both the entry and its take-profit fill while nothing runs; one sweep records both, once."""
    srv, broker, engine = venue
    ask = srv.venue.get_latest_quote("EUR/USD", FX).ask
    trigger = ask + D("0.0020")  # a buy stop above the market
    take = trigger + D("0.0040")
    place(engine, "rb2", order_type="stop", stop_price=str(trigger), time_in_force="gtc", order_class="oto",
          take_profit={"limit_price": str(take)})
    srv.venue.market.set_mid("EUR/USD", trigger + D("0.0005"), FX)  # the stop entry triggers and fills
    srv.venue.poll()
    srv.venue.market.set_mid("EUR/USD", take + D("0.0010"), FX)  # then the take-profit fills
    srv.venue.poll()
    assert srv.venue.net_position("EUR/USD", FX) == 0

    sweep(engine)
    sweep(engine)
    ledger = rows(engine)
    assert len([k for k in ledger if k.startswith("rb2--f")]) == 1
    (exit_row,) = [v for k, v in ledger.items() if "--x" in k]
    assert exit_row["order_type"] == "limit" and D(exit_row["filled_avg_price"]) >= take
    record = engine.store.get_intent("acme", "rb2").data
    assert record["exits_final"] is True and [leg["state"] for leg in record["exit_legs"].values()] == ["filled"]
    assert net(ledger) == 0
    entry = broker.get_order(record["broker_order_id"])
    assert entry.state is OrderState.FILLED and [leg.state for leg in entry.legs] == [OrderState.FILLED]


def test_a_resting_bracket_whose_take_profit_fires_cancels_the_stop_loss(venue):
    srv, broker, engine = venue
    bid = srv.venue.get_latest_quote("EUR/USD", FX).bid
    limit = bid - D("0.0010")
    take, stop = limit + D("0.0030"), limit - D("0.0030")
    place(engine, "rb3", order_type="limit", limit_price=str(limit), time_in_force="gtc", order_class="bracket",
          take_profit={"limit_price": str(take)}, stop_loss={"stop_price": str(stop)})
    srv.venue.market.set_mid("EUR/USD", limit - D("0.0003"), FX)
    srv.venue.poll()
    sweep(engine)
    srv.venue.market.set_mid("EUR/USD", take + D("0.0005"), FX)
    srv.venue.poll()
    sweep(engine)
    record = engine.store.get_intent("acme", "rb3").data
    assert sorted(leg["state"] for leg in record["exit_legs"].values()) == ["canceled", "filled"]
    stop_order = next(t for t in srv.transactions() if t["type"] == "STOP_LOSS_ORDER")
    assert srv.api.orders[stop_order["id"]].state == "CANCELLED"
    assert net(rows(engine)) == 0 == srv.venue.net_position("EUR/USD", FX)


@pytest.mark.slow
def test_the_resting_entrys_fill_and_its_exit_reach_the_ledger_once_from_the_transaction_feed(db):
    """A bound OANDA account (Firestore emulator), folded by the event ingestion alone, each page twice."""
    from backend.execution.event_ingest import cursor_path, ingest_venue_events
    from tests.integration.test_event_ingest_venues import TOKEN as FEED_TOKEN
    from tests.integration.test_event_ingest_venues import ledger, make_engine, my_errors, tenant_with

    clock = ManualClock()
    srv = LocalOandaServer(scenario(), clock=clock, token=FEED_TOKEN).start()
    try:
        tenant_id = tenant_with(db, "oanda", "paper", srv.url, srv.account_id, "env:EV_OANDA_KEYS", {FX})
        engine = make_engine(db, clock)
        bid = srv.venue.get_latest_quote("EUR/USD", FX).bid
        limit = bid - D("0.0020")
        stop = limit - D("0.0050")
        placed = engine.execute_intent(OrderIntent(
            "s1", None, "EUR/USD", "buy", "10000", asset_class="FOREX", intent_id="feed-rb", order_type="limit",
            limit_price=str(limit), time_in_force="gtc", order_class="bracket",
            take_profit={"limit_price": str(limit + D("0.0100"))}, stop_loss={"stop_price": str(stop)}),
            ExecutionContext(tenant_id, "alice"))
        assert placed.status == "placed" and placed.order_status == "new", placed
        path = cursor_path(tenant_id, "conn", srv.account_id)
        assert my_errors(ingest_venue_events(engine), tenant_id) == []
        evening = db.document(path).get().to_dict()["cursor"]

        srv.venue.market.set_mid("EUR/USD", limit - D("0.0005"), FX)  # the entry fills
        srv.venue.poll()
        for _ in range(2):
            assert my_errors(ingest_venue_events(engine), tenant_id) == []
            db.document(path).update({"cursor": evening})  # and the feed delivers it again
        record = db.document(f"tenants/{tenant_id}/order_intents/feed-rb").get().to_dict()
        assert record["order_final"] is True and record["result"]["order_status"] == "filled"
        assert sorted(leg["state"] for leg in record["exit_legs"].values()) == ["new", "new"]

        srv.venue.market.set_mid("EUR/USD", stop - D("0.0010"), FX)  # overnight: the stop fires
        srv.venue.poll()
        for _ in range(2):
            assert my_errors(ingest_venue_events(engine), tenant_id) == []
            db.document(path).update({"cursor": evening})
        assert my_errors(ingest_venue_events(engine), tenant_id) == []
        rows_ = {k: v for k, v in ledger(db, tenant_id).items() if k.startswith("feed-rb")}
        assert len([k for k in rows_ if k.startswith("feed-rb--f")]) == 1
        (exit_row,) = [v for k, v in rows_.items() if "--x" in k]
        assert exit_row["side"] == "sell" and D(exit_row["filled_qty"]) == 10000
        record = db.document(f"tenants/{tenant_id}/order_intents/feed-rb").get().to_dict()
        assert record["exits_final"] is True
        assert sorted(leg["state"] for leg in record["exit_legs"].values()) == ["canceled", "filled"]
        assert net(rows_) == 0 == srv.venue.net_position("EUR/USD", FX)
        assert book_lots(db.document("users/alice/tax_books/EUR-USD").get().to_dict()) == [] \
            if db.document("users/alice/tax_books/EUR-USD").get().exists else True
    finally:
        srv.stop()
        close_shared_clients()
        forget_instruments()


def test_a_replaced_resting_bracket_entry_keeps_its_exits_and_they_are_followed(venue):
    """PATCH's core (``OrderManager.replace``) moves the resting entry; OANDA's replacement carries the
    take-profit / stop-loss on fill, so once the new entry fills its exits are followed as before."""
    from backend.execution.order_management import OrderManager, ReplaceChanges

    srv, broker, engine = venue
    bid = srv.venue.get_latest_quote("EUR/USD", FX).bid
    limit = bid - D("0.0030")
    take, stop = limit + D("0.0100"), limit - D("0.0050")
    old = place(engine, "rb4", order_type="limit", limit_price=str(limit), time_in_force="gtc",
                order_class="bracket", take_profit={"limit_price": str(take)}, stop_loss={"stop_price": str(stop)})
    moved = OrderManager(engine).replace("acme", "u1", "rb4", ReplaceChanges(limit_price=limit + D("0.0010")), "k1")
    new_id = moved.view["broker_order_id"]
    assert new_id != old.broker_order_id and moved.view["order_class"] == "bracket"
    assert "rb4--r1" in rows(engine)

    srv.venue.market.set_mid("EUR/USD", limit + D("0.0005"), FX)  # fills the new entry, not the old price
    srv.venue.poll()
    sweep(engine)
    record = engine.store.get_intent("acme", "rb4").data
    assert record["result"]["order_status"] == "filled" and record["broker_order_id"] == new_id
    assert sorted(leg["state"] for leg in record["exit_legs"].values()) == ["new", "new"]
    srv.venue.market.set_mid("EUR/USD", stop - D("0.0010"), FX)
    srv.venue.poll()
    sweep(engine)
    sweep(engine)
    ledger = rows(engine)
    assert len([k for k in ledger if k.startswith("rb4--f")]) == 1 and len([k for k in ledger if "--x" in k]) == 1
    assert net(ledger) == 0 == srv.venue.net_position("EUR/USD", FX)
    assert engine.store.get_intent("acme", "rb4").data["exits_final"] is True


def test_a_resting_entry_canceled_after_a_partial_fill_keeps_its_trades_exits_followed():
    """OANDA opens the trade for the units that filled and creates its take-profit / stop-loss for them;
    the entry's remainder canceled afterwards (DELETE /orders) does not take them away. The exits of the
    partial trade are followed like a whole fill's: the stop fires, its fill is recorded once, the
    take-profit ends canceled, and the ledger is as flat as the venue."""
    from backend.execution.order_management import OrderManager

    clock = ManualClock()
    srv = LocalOandaServer(scenario({"EUR/USD": {"fill": {"model": "partial", "ratios": ["0.5", "1.0"]}}}),
                           clock=clock, token=TOKEN).start()
    try:
        broker, engine = oanda_engine(srv, TOKEN, clock)
        bid = srv.venue.get_latest_quote("EUR/USD", FX).bid
        limit = bid - D("0.0020")
        take, stop = limit + D("0.0100"), limit - D("0.0050")
        place(engine, "rb5", order_type="limit", limit_price=str(limit), time_in_force="gtc", order_class="bracket",
              take_profit={"limit_price": str(take)}, stop_loss={"stop_price": str(stop)})
        srv.venue.market.set_mid("EUR/USD", limit - D("0.0005"), FX)  # marketable: half of it fills
        srv.venue.poll()
        srv.venue.market.set_mid("EUR/USD", limit + D("0.0020"), FX)  # and the market moves away
        assert srv.venue.net_position("EUR/USD", FX) == 5000

        outcome = OrderManager(engine).cancel("acme", "u1", "rb5")  # the remainder is not wanted
        assert outcome.status == "canceled" and D(outcome.view["filled_qty"]) == 5000
        sweep(engine)
        record = engine.store.get_intent("acme", "rb5").data
        assert record["order_final"] is True and record["reconcile_after"] is not None
        assert sorted(leg["state"] for leg in record["exit_legs"].values()) == ["new", "new"]  # followed
        entry = broker.get_order(record["broker_order_id"])
        assert entry.state is OrderState.CANCELED and sorted(leg.qty for leg in entry.legs) == [5000, 5000]

        srv.venue.market.set_mid("EUR/USD", stop - D("0.0010"), FX)  # the stop fires for the 5000
        srv.venue.poll()
        srv.venue.poll()
        sweep(engine)
        sweep(engine)
        ledger = rows(engine)
        (exit_row,) = [v for k, v in ledger.items() if "--x" in k]
        assert exit_row["order_type"] == "stop" and D(exit_row["filled_qty"]) == 5000
        record = engine.store.get_intent("acme", "rb5").data
        assert record["exits_final"] is True
        assert sorted(leg["state"] for leg in record["exit_legs"].values()) == ["canceled", "filled"]
        assert net(ledger) == 0 == srv.venue.net_position("EUR/USD", FX)
        cancels = {t["orderID"]: t["reason"] for t in srv.transactions() if t["type"] == "ORDER_CANCEL"}
        take_profit = next(t["id"] for t in srv.transactions() if t["type"] == "TAKE_PROFIT_ORDER")
        assert cancels[take_profit] == "LINKED_TRADE_CLOSED"
    finally:
        srv.stop()
        close_shared_clients()
        forget_instruments()


@pytest.mark.slow
def test_the_feed_follows_the_exits_of_a_partly_filled_entry_canceled_before_they_were_recorded(db):
    """The remainder of a partly filled resting entry is canceled (DELETE /orders: the entry is final, its
    exits not yet recorded); the stop fires overnight; the transaction feed alone, read twice, records it
    once: the stop's ORDER_FILL names no recorded order, so the account's protected entries — this one
    too, final after a partial fill — are followed."""
    from backend.execution.event_ingest import cursor_path, ingest_venue_events
    from backend.execution.order_management import OrderManager
    from tests.integration.test_event_ingest_venues import TOKEN as FEED_TOKEN
    from tests.integration.test_event_ingest_venues import ledger, make_engine, my_errors, tenant_with

    clock = ManualClock()
    srv = LocalOandaServer(scenario({"EUR/USD": {"fill": {"model": "partial", "ratios": ["0.5", "1.0"]}}}),
                           clock=clock, token=FEED_TOKEN).start()
    try:
        tenant_id = tenant_with(db, "oanda", "paper", srv.url, srv.account_id, "env:EV_OANDA_KEYS", {FX})
        engine = make_engine(db, clock)
        bid = srv.venue.get_latest_quote("EUR/USD", FX).bid
        limit = bid - D("0.0020")
        stop = limit - D("0.0050")
        placed = engine.execute_intent(OrderIntent(
            "s1", None, "EUR/USD", "buy", "10000", asset_class="FOREX", intent_id="feed-pb", order_type="limit",
            limit_price=str(limit), time_in_force="gtc", order_class="bracket",
            take_profit={"limit_price": str(limit + D("0.0100"))}, stop_loss={"stop_price": str(stop)}),
            ExecutionContext(tenant_id, "alice"))
        assert placed.status == "placed" and placed.order_status == "new", placed
        srv.venue.market.set_mid("EUR/USD", limit - D("0.0005"), FX)
        srv.venue.poll()  # half fills
        srv.venue.market.set_mid("EUR/USD", limit + D("0.0020"), FX)
        assert OrderManager(engine).cancel(tenant_id, "alice", "feed-pb").status == "canceled"
        record = db.document(f"tenants/{tenant_id}/order_intents/feed-pb").get().to_dict()
        assert record["order_final"] is True and not record.get("exit_legs")
        path = cursor_path(tenant_id, "conn", srv.account_id)
        evening = srv.transactions()[-1]["id"]  # everything up to the cancel was seen
        db.document(path).set({"tenant_id": tenant_id, "connection_id": "conn", "venue": "oanda",
                               "venue_account_id": srv.account_id, "cursor": evening, "events_seen": 0})

        srv.venue.market.set_mid("EUR/USD", stop - D("0.0010"), FX)  # overnight: the stop fires
        srv.venue.poll()
        srv.venue.poll()
        for _ in range(2):
            assert my_errors(ingest_venue_events(engine), tenant_id) == []
            db.document(path).update({"cursor": evening})  # delivered again
        rows_ = {k: v for k, v in ledger(db, tenant_id).items() if k.startswith("feed-pb")}
        (exit_row,) = [v for k, v in rows_.items() if "--x" in k]
        assert exit_row["side"] == "sell" and D(exit_row["filled_qty"]) == 5000
        record = db.document(f"tenants/{tenant_id}/order_intents/feed-pb").get().to_dict()
        assert record["exits_final"] is True
        assert sorted(leg["state"] for leg in record["exit_legs"].values()) == ["canceled", "filled"]
        assert net(rows_) == 0 == srv.venue.net_position("EUR/USD", FX)
    finally:
        srv.stop()
        close_shared_clients()
        forget_instruments()
