"""Issue 15 item 6 at the venue: a replace cancels the working order and places its successor
under a new client id, linked both ways; one working order remains; prices the order type lacks,
off-tick prices and final orders are refused; a replaced bracket leg keeps its place."""
from __future__ import annotations

from decimal import Decimal as D

import pytest

from backend.adapters.paper_broker import PaperBroker
from backend.adapters.sim import SimulatedVenue
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.domain.orders import (
    BrokerError,
    BrokerErrorCode,
    OrderClass,
    OrderRequest,
    OrderSide,
    OrderState,
    OrderType,
    ReplaceRequest,
    StopLoss,
    TakeProfit,
)

A = AssetClass


@pytest.fixture
def paper():
    venue = SimulatedVenue(clock=ManualClock())
    return venue, PaperBroker(venue=venue)


def working_limit(broker, venue, cid="x-1", qty="5"):
    bid = venue.get_latest_quote("AAPL", A.EQUITY).bid
    return broker.submit_order(OrderRequest(cid, "AAPL", A.EQUITY, OrderSide.BUY, D(qty), order_type=OrderType.LIMIT,
                                            limit_price=bid - D("2.00"), time_in_force="gtc")), bid


def test_a_replace_leaves_one_working_order_linked_to_the_one_it_replaced(paper):
    venue, broker = paper
    old, bid = working_limit(broker, venue)
    new = broker.replace_order(old.broker_order_id, ReplaceRequest("x-1-r1", qty=D("7"), limit_price=bid - D("1.00")))
    assert new.replaces == old.broker_order_id and new.client_order_id == "x-1-r1" and new.qty == D("7")
    before = broker.get_order(old.broker_order_id)
    assert before.state is OrderState.CANCELED and before.venue_status == "replaced"
    assert before.replaced_by == new.broker_order_id
    working = [o for o in venue.list_orders(status="open", account_id=broker.account_id)]
    assert [(o.broker_order_id, o.limit_price) for o in working] == [(new.broker_order_id, bid - D("1.00"))]
    venue.market.set_mid("AAPL", bid - D("1.50"), A.EQUITY)
    assert broker.get_order(new.broker_order_id).state is OrderState.FILLED
    assert broker.get_order(old.broker_order_id).filled_qty == 0


@pytest.mark.parametrize("change, reason", [
    (dict(stop_price=D("150.00")), "has no stop price"),
    (dict(trail=D("1.00")), "has no trail"),
    (dict(limit_price=D("150.005")), "not a multiple of 0.01"),
])
def test_what_the_order_type_cannot_take_is_refused_and_the_order_keeps_working(paper, change, reason):
    venue, broker = paper
    old, _ = working_limit(broker, venue)
    with pytest.raises(BrokerError) as refused:
        broker.replace_order(old.broker_order_id, ReplaceRequest("x-1-r1", **change))
    assert refused.value.code is BrokerErrorCode.INVALID and reason in refused.value.message
    assert broker.get_order(old.broker_order_id).state is OrderState.NEW
    assert venue.get_order_by_client_id("x-1-r1", account_id=broker.account_id) is None


def test_a_final_order_and_a_used_client_id_are_refused(paper):
    venue, broker = paper
    filled = broker.submit_order(OrderRequest("x-m", "AAPL", A.EQUITY, OrderSide.BUY, D("1")))
    with pytest.raises(BrokerError) as final:
        broker.replace_order(filled.broker_order_id, ReplaceRequest("x-m-r1", qty=D("2")))
    assert final.value.code is BrokerErrorCode.INVALID and "filled" in final.value.message
    old, _ = working_limit(broker, venue)
    with pytest.raises(BrokerError) as duplicate:
        broker.replace_order(old.broker_order_id, ReplaceRequest("x-m", qty=D("2")))
    assert duplicate.value.code is BrokerErrorCode.DUPLICATE
    with pytest.raises(ValueError):
        ReplaceRequest("x-nothing")


def test_replacing_a_bracket_stop_leg_keeps_it_in_the_bracket(paper):
    venue, broker = paper
    quote = venue.get_latest_quote("AAPL", A.EQUITY)
    entry = broker.submit_order(OrderRequest(
        "x-br", "AAPL", A.EQUITY, OrderSide.BUY, D("2"), order_class=OrderClass.BRACKET,
        take_profit=TakeProfit(quote.ask + D("5.00")), stop_loss=StopLoss(stop_price=quote.bid - D("5.00"))))
    stop_leg = entry.legs[1]
    moved = broker.replace_order(stop_leg.broker_order_id, ReplaceRequest("x-br-sl2", stop_price=quote.bid - D("2.00")))
    legs = broker.get_order(entry.broker_order_id).legs
    assert [leg.broker_order_id for leg in legs] == [entry.legs[0].broker_order_id, moved.broker_order_id]
    venue.market.set_mid("AAPL", quote.bid - D("3.00"), A.EQUITY)  # through the new stop, above the old one
    legs = broker.get_order(entry.broker_order_id).legs
    assert [leg.state for leg in legs] == [OrderState.CANCELED, OrderState.FILLED]
    assert broker.get_positions() == []


def test_a_trailing_stops_trail_is_replaced_in_its_own_unit(paper):
    venue, broker = paper
    broker.submit_order(OrderRequest("x-long", "AAPL", A.EQUITY, OrderSide.BUY, D("2")))
    trail = broker.submit_order(OrderRequest("x-tr", "AAPL", A.EQUITY, OrderSide.SELL, D("2"),
                                             order_type=OrderType.TRAILING_STOP, trail_percent=D("5")))
    new = broker.replace_order(trail.broker_order_id, ReplaceRequest("x-tr-2", trail=D("1")))
    at_venue = venue.peek_order(new.broker_order_id, account_id=broker.account_id)
    assert (at_venue.trail_percent, at_venue.trail_price) == (D("1"), None)
