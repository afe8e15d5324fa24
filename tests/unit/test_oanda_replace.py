"""``OandaBroker.replace_order`` (issue 15 item 6) over real HTTP (httpx) against the local
OANDA-v20-compatible server: ``PUT /v3/accounts/{id}/orders/{id}`` cancels the pending order with reason
``CLIENT_REQUEST_REPLACED`` and creates the replacement (``replacesOrderID``) in one batch; the new order
carries the request's client id and the old order's orders on fill; a replace whose answer is lost is
found by that client id and never made twice; a filled order cannot be replaced (non-retryable)."""
from __future__ import annotations

from decimal import Decimal as D

import pytest

from backend.adapters.oanda import OandaBroker, OandaConfig
from backend.adapters.oanda.broker import forget_instruments
from backend.adapters.oanda.client import close_shared_clients
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.domain.orders import OrderClass, ReplaceRequest, StopLoss, TakeProfit
from backend.ports.broker import BrokerError, BrokerErrorCode, OrderRequest, OrderSide, OrderState, OrderType
from tests.support.group_harness import scenario
from tests.support.oanda_server import LocalOandaServer

TOKEN = "replace-token-do-not-leak"
FX = AssetClass.FOREX


@pytest.fixture
def venue():
    clock = ManualClock()
    srv = LocalOandaServer(scenario(), clock=clock, token=TOKEN).start()
    broker = OandaBroker(OandaConfig(srv.account_id, TOKEN, base_url=srv.url, timeout_seconds=1.0), clock=clock)
    yield srv, broker
    srv.stop()
    close_shared_clients()
    forget_instruments()


def resting(broker, srv, cid="c-old", *, bracket=True, tif="gtc"):
    """A buy limit 20 pips under the bid (rests), with take-profit and stop-loss on fill."""
    bid = srv.venue.get_latest_quote("EUR/USD", FX).bid
    limit = bid - D("0.0020")
    extra = dict(order_class=OrderClass.BRACKET, take_profit=TakeProfit(limit + D("0.0100")),
                 stop_loss=StopLoss(stop_price=limit - D("0.0050"))) if bracket else {}
    order = broker.submit_order(OrderRequest(cid, "EUR/USD", FX, OrderSide.BUY, D("10000"),
                                             order_type=OrderType.LIMIT, limit_price=limit, time_in_force=tif,
                                             **extra))
    assert order.state is OrderState.NEW
    return order, limit


def pending(srv):
    return [o for o in srv.api.orders.values() if o.state == "PENDING"]


def puts(srv, order_id):
    return [r for r in srv.requests if r.method == "PUT" and r.path.endswith(f"/orders/{order_id}")]


def test_a_replace_cancels_the_old_order_and_creates_the_new_one_linked_both_ways(venue):
    srv, broker = venue
    old, limit = resting(broker, srv)
    new = broker.replace_order(old.broker_order_id, ReplaceRequest("c-new", qty=D("8000"),
                                                                   limit_price=limit + D("0.0005")))
    assert new.client_order_id == "c-new" and new.qty == D("8000") and new.state is OrderState.NEW
    assert new.replaces == old.broker_order_id and new.side is OrderSide.BUY and new.symbol == "EUR/USD"
    assert [o.id for o in pending(srv)] == [new.broker_order_id]  # one working order at the venue

    before = broker.get_order(old.broker_order_id)
    assert before.state is OrderState.CANCELED and before.venue_status == "CANCELLED:CLIENT_REQUEST_REPLACED"
    assert before.replaced_by == new.broker_order_id
    assert broker.get_order(new.broker_order_id).replaces == old.broker_order_id

    cancel, create = [t for t in srv.transactions() if int(t["id"]) > int(old.broker_order_id)]
    assert cancel["type"] == "ORDER_CANCEL" and cancel["reason"] == "CLIENT_REQUEST_REPLACED"
    assert cancel["orderID"] == old.broker_order_id and cancel["replacedByOrderID"] == create["id"]
    assert create["type"] == "LIMIT_ORDER" and create["reason"] == "REPLACEMENT"
    assert create["replacesOrderID"] == old.broker_order_id and create["batchID"] == cancel["batchID"]
    assert create["units"] == "8000" and D(create["price"]) == limit + D("0.0005")
    assert create["clientExtensions"] == {"id": "c-new"} and create["timeInForce"] == "GTC"
    # the orders on fill go on with the replacement, as sent with the entry
    assert D(create["takeProfitOnFill"]["price"]) == limit + D("0.0100")
    assert D(create["stopLossOnFill"]["price"]) == limit - D("0.0050")

    feed = broker.events_since(old.broker_order_id)
    assert [(e.kind, e.broker_order_id, e.client_order_id) for e in feed.events] == \
        [("replaced", old.broker_order_id, "c-old")]


def test_the_replacement_fills_later_with_the_carried_take_profit_and_stop_loss_as_its_legs(venue):
    srv, broker = venue
    old, limit = resting(broker, srv)
    new = broker.replace_order(old.broker_order_id, ReplaceRequest("c-new", qty=D("10000"),
                                                                   limit_price=limit + D("0.0010")))
    srv.venue.market.set_mid("EUR/USD", limit, FX)  # the new limit becomes marketable
    srv.venue.poll()
    filled = broker.get_order(new.broker_order_id)
    assert filled.state is OrderState.FILLED and filled.filled_qty == D("10000")
    assert sorted(leg.state.value for leg in filled.legs) == ["new", "new"]
    assert broker.get_order(old.broker_order_id).state is OrderState.CANCELED  # never filled


def test_a_time_in_force_change_is_sent_as_oanda_spells_it(venue):
    srv, broker = venue
    old, _ = resting(broker, srv, bracket=False)
    new = broker.replace_order(old.broker_order_id, ReplaceRequest("c-day", qty=D("10000"), time_in_force="day"))
    create = next(t for t in srv.transactions() if t["id"] == new.broker_order_id)
    assert create["timeInForce"] == "GFD" and "takeProfitOnFill" not in create


def test_a_filled_order_cannot_be_replaced_and_nothing_is_created(venue):
    srv, broker = venue
    old, limit = resting(broker, srv, bracket=False)
    srv.venue.market.set_mid("EUR/USD", limit - D("0.0005"), FX)  # it fills at the venue
    srv.venue.poll()
    with pytest.raises(BrokerError) as caught:
        broker.replace_order(old.broker_order_id, ReplaceRequest("c-late", qty=D("10000"), limit_price=limit))
    assert caught.value.code is BrokerErrorCode.NOT_FOUND and not caught.value.retryable
    assert "ORDER_DOESNT_EXIST" in caught.value.message
    assert srv.orders_for_client_id("c-late") == []
    assert broker.get_order(old.broker_order_id).state is OrderState.FILLED
    assert any(t["type"] == "ORDER_CANCEL_REJECT" and t["orderID"] == old.broker_order_id for t in srv.transactions())


def test_a_lost_answer_is_found_by_the_new_client_id_and_the_replace_is_made_once(venue):
    srv, broker = venue
    old, limit = resting(broker, srv)
    srv.inject(f"PUT /v3/accounts/{srv.account_id}/orders/{old.broker_order_id}", "timeout_after_accept")
    new = broker.replace_order(old.broker_order_id, ReplaceRequest("c-lost", qty=D("10000"),
                                                                   limit_price=limit + D("0.0003")))
    assert new.client_order_id == "c-lost" and new.replaces == old.broker_order_id
    assert [r.status for r in puts(srv, old.broker_order_id)] == [None]  # one PUT, its answer lost
    assert len(srv.orders_for_client_id("c-lost")) == 1 and [o.id for o in pending(srv)] == [new.broker_order_id]

    again = broker.replace_order(old.broker_order_id, ReplaceRequest("c-lost", qty=D("10000"),
                                                                     limit_price=limit + D("0.0003")))
    assert again.broker_order_id == new.broker_order_id  # a repeat finds the replacement: no second one
    assert len(srv.orders_for_client_id("c-lost")) == 1


def test_a_venue_error_before_the_replace_leaves_the_old_order_working_and_says_unavailable(venue):
    srv, broker = venue
    old, limit = resting(broker, srv)
    srv.inject(f"PUT /v3/accounts/{srv.account_id}/orders/{old.broker_order_id}", "503")
    with pytest.raises(BrokerError) as caught:
        broker.replace_order(old.broker_order_id, ReplaceRequest("c-503", qty=D("10000"), limit_price=limit))
    assert caught.value.code is BrokerErrorCode.UNAVAILABLE and caught.value.retryable
    assert len(puts(srv, old.broker_order_id)) == 1  # not resent blindly
    assert [o.id for o in pending(srv)] == [old.broker_order_id] and srv.orders_for_client_id("c-503") == []


def test_what_oanda_cannot_replace_is_invalid_before_anything_is_sent(venue):
    srv, broker = venue
    old, limit = resting(broker, srv)
    for request in (ReplaceRequest("c-t", trail=D("0.0010")), ReplaceRequest("c-s", stop_price=limit),
                    ReplaceRequest("c-p", limit_price=limit + D("0.00001") / 3 * 2)):
        with pytest.raises(BrokerError) as caught:
            broker.replace_order(old.broker_order_id, request)
        assert caught.value.code is BrokerErrorCode.INVALID
    assert puts(srv, old.broker_order_id) == [] and [o.id for o in pending(srv)] == [old.broker_order_id]


def test_a_marketable_replacement_fills_at_once_and_is_answered_filled(venue):
    srv, broker = venue
    old, _ = resting(broker, srv, bracket=False)
    ask = srv.venue.get_latest_quote("EUR/USD", FX).ask
    new = broker.replace_order(old.broker_order_id, ReplaceRequest("c-now", qty=D("10000"),
                                                                   limit_price=ask + D("0.0005")))
    assert new.state is OrderState.FILLED and new.filled_qty == D("10000") and new.filled_avg_price <= ask + D("0.0005")
    assert new.replaces == old.broker_order_id and pending(srv) == []


def test_a_resting_sell_stop_moves_its_stop_price_and_keeps_its_units(venue):
    """A group leg's protective stop on OANDA is a STOP order; its replace changes only the stop price."""
    srv, broker = venue
    bid = srv.venue.get_latest_quote("EUR/USD", FX).bid
    old = broker.submit_order(OrderRequest("c-stop", "EUR/USD", FX, OrderSide.SELL, D("5000"),
                                           order_type=OrderType.STOP, stop_price=bid - D("0.0040"),
                                           time_in_force="gtc"))
    new = broker.replace_order(old.broker_order_id, ReplaceRequest("c-stop-2", stop_price=bid - D("0.0030")))
    create = next(t for t in srv.transactions() if t["id"] == new.broker_order_id)
    assert create["type"] == "STOP_ORDER" and create["units"] == "-5000" and D(create["price"]) == bid - D("0.0030")
    assert new.side is OrderSide.SELL and new.qty == D("5000") and [o.id for o in pending(srv)] == [new.broker_order_id]
    with pytest.raises(BrokerError) as caught:
        broker.replace_order(new.broker_order_id, ReplaceRequest("c-stop-3", limit_price=bid))
    assert caught.value.code is BrokerErrorCode.INVALID  # a STOP order has no limit price
