"""Issue 15 on OANDA over real HTTP (httpx → the local OANDA-v20-compatible server on the simulated
venue): a STOP entry rests until its price trades, and take-profit / stop-loss / trailing stop on
fill are held at the venue and close the trade there when the price reaches them."""
from __future__ import annotations

from decimal import Decimal as D

import httpx
import pytest

from backend.adapters.oanda import OandaBroker, OandaConfig
from backend.adapters.oanda.broker import forget_instruments, order_body
from backend.adapters.oanda.client import close_shared_clients
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.domain.orders import OrderClass, OrderRequest, OrderSide, OrderState, OrderType, StopLoss, TakeProfit
from tests.support.group_harness import scenario
from tests.support.oanda_server import LocalOandaServer

TOKEN = "t0k3n-do-not-leak"
FX = AssetClass.FOREX


@pytest.fixture
def oanda():
    clock = ManualClock()
    srv = LocalOandaServer(scenario(), clock=clock, token=TOKEN).start()
    broker = OandaBroker(OandaConfig(srv.account_id, TOKEN, base_url=srv.url, timeout_seconds=2.0), clock=clock)
    yield srv, broker
    srv.stop()
    close_shared_clients()
    forget_instruments()


def test_a_stop_entry_rests_until_the_price_trades_through_it(oanda):
    srv, broker = oanda
    ask = srv.venue.get_latest_quote("EUR/USD", FX).ask
    placed = broker.submit_order(OrderRequest("c-stop", "EUR/USD", FX, OrderSide.BUY, D("10000"),
                                              order_type=OrderType.STOP, stop_price=ask + D("0.0050"),
                                              time_in_force="gtc"))
    assert placed.state is OrderState.NEW
    (at_venue,) = [o for o in srv.venue.orders() if o.stop_price == ask + D("0.0050")]
    assert at_venue.order_type is OrderType.STOP and at_venue.time_in_force == "gtc"
    srv.venue.market.set_mid("EUR/USD", ask + D("0.0060"), FX)
    filled = broker.get_order(placed.broker_order_id)
    assert filled.state is OrderState.FILLED and filled.filled_qty == D("10000")


def test_take_profit_and_trailing_stop_on_fill_are_held_at_the_venue_and_close_the_trade(oanda):
    srv, broker = oanda
    quote = srv.venue.get_latest_quote("EUR/USD", FX)
    placed = broker.submit_order(OrderRequest(
        "c-bracket", "EUR/USD", FX, OrderSide.BUY, D("10000"), order_class=OrderClass.BRACKET,
        take_profit=TakeProfit(quote.ask + D("0.0100")), stop_loss=StopLoss(trail_price=D("0.0020"))))
    assert placed.state is OrderState.FILLED
    assert srv.venue.net_position("EUR/USD", FX) == D("10000")
    (parent,) = [o for o in srv.venue.orders() if o.order_class == "bracket" and o.legs]
    kinds = sorted(leg.order_type.value for leg in parent.legs)
    assert kinds == ["limit", "trailing_stop"]
    create = [t for t in srv.transactions() if t.get("type") == "MARKET_ORDER"][-1]
    assert D(create["takeProfitOnFill"]["price"]) == quote.ask + D("0.0100")
    assert D(create["trailingStopLossOnFill"]["distance"]) == D("0.0020")
    srv.venue.market.set_mid("EUR/USD", quote.bid + D("0.0050"), FX)  # up: the trail follows
    srv.venue.poll()
    srv.venue.market.set_mid("EUR/USD", quote.bid + D("0.0020"), FX)  # 30 pips back: the trailing stop fires
    srv.venue.poll()
    assert srv.venue.net_position("EUR/USD", FX) == 0
    states = {leg.order_type.value: srv.venue.peek_order(leg.broker_order_id).state for leg in parent.legs}
    assert states == {"limit": OrderState.CANCELED, "trailing_stop": OrderState.FILLED}


def test_a_take_profit_on_the_losing_side_is_rejected_by_the_venue_and_nothing_trades(oanda):
    srv, broker = oanda
    quote = srv.venue.get_latest_quote("EUR/USD", FX)
    body = order_body(OrderRequest("c-bad", "EUR/USD", FX, OrderSide.BUY, D("10000"), order_class=OrderClass.OTO,
                                   take_profit=TakeProfit(quote.ask + D("0.0100"))),
                      broker.instrument_info("EUR/USD"))
    body["order"]["takeProfitOnFill"]["price"] = "not-a-price"
    reply = httpx.post(f"{srv.url}/v3/accounts/{srv.account_id}/orders", json=body,
                       headers={"Authorization": f"Bearer {TOKEN}"})
    assert reply.status_code == 400 and reply.json()["errorCode"] == "ON_FILL_INVALID"
    assert srv.venue.orders() == []
