"""Issue 15 over the wire: every order type, time in force and protective leg Alpaca takes goes out
through the real alpaca-py clients (``AlpacaBroker``) to the local Alpaca-compatible server and
arrives with its fields; the server refuses what Alpaca refuses; a bracket's stop fires at the
venue when the price moves, with no call of ours in between, and its take-profit is canceled.
"""
from __future__ import annotations

from decimal import Decimal as D

import pytest

from backend.adapters.alpaca_broker import AlpacaBroker
from backend.domain.assets import AssetClass
from backend.domain.capabilities import cells
from backend.domain.clock import ManualClock
from backend.domain.orders import (
    BrokerError,
    OrderClass,
    OrderRequest,
    OrderSide,
    OrderState,
    OrderType,
    StopLoss,
    TakeProfit,
    TimeInForce,
)
from tests.support.alpaca_server import LocalAlpacaServer

A = AssetClass
SYMBOL = {A.EQUITY: "AAPL", A.CRYPTO: "BTC/USD", A.OPTIONS: "AAPL261218C00190000"}
QTY = {A.EQUITY: D("2"), A.CRYPTO: D("0.01"), A.OPTIONS: D("1")}
TICK = {A.EQUITY: D("0.01"), A.CRYPTO: D("1"), A.OPTIONS: D("0.01")}
ACCEPTED = [c for c in cells() if c[0] == "alpaca" and c[4]]


@pytest.fixture(scope="module")
def clock():
    return ManualClock()


@pytest.fixture(scope="module")
def server(clock):
    with LocalAlpacaServer("default", clock=clock) as srv:
        yield srv


@pytest.fixture(scope="module")
def broker(server, clock):
    broker = AlpacaBroker("test-key", "test-secret", url_override=server.url, clock=clock, timeout_seconds=5,
                          time_budget_seconds=30)
    broker._clients()
    return broker


def venue_order(server, client_order_id):
    (order,) = [o for o in server.venue.orders() if o.client_order_id == client_order_id]
    return order


@pytest.mark.parametrize("cell", ACCEPTED, ids=lambda c: "-".join(str(getattr(p, "value", p)) for p in c[1:4]))
def test_each_accepted_type_reaches_the_venue_with_its_fields(cell, server, broker):
    _, klass, kind, tif, _ = cell
    quote = server.venue.get_latest_quote(SYMBOL[klass], klass)
    tick = TICK[klass]
    fields: dict = {}
    if kind is OrderType.LIMIT:
        fields["limit_price"] = quote.bid - 10 * tick  # rests
    elif kind is OrderType.STOP:
        fields["stop_price"] = quote.ask + 10 * tick
    elif kind is OrderType.STOP_LIMIT:
        fields.update(stop_price=quote.ask + 10 * tick, limit_price=quote.ask + 12 * tick)
    elif kind is OrderType.TRAILING_STOP:
        fields["trail_percent"] = D("1.5")
    cid = f"t-{klass.value}-{kind.value}-{tif.value}"
    placed = broker.submit_order(OrderRequest(cid, SYMBOL[klass], klass, OrderSide.BUY, QTY[klass], order_type=kind,
                                              time_in_force=tif.value, **fields))
    assert placed.client_order_id == cid
    at_venue = venue_order(server, cid)
    assert at_venue.order_type is kind and at_venue.time_in_force == tif.value and at_venue.qty == QTY[klass]
    assert at_venue.limit_price == fields.get("limit_price")
    if kind in (OrderType.STOP, OrderType.STOP_LIMIT):
        assert at_venue.stop_price == fields["stop_price"]
    if kind is OrderType.TRAILING_STOP:
        assert at_venue.trail_percent == D("1.5") and at_venue.hwm == quote.ask
    if kind in (OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TRAILING_STOP):
        assert placed.state is OrderState.NEW  # resting until the price crosses
    if tif in (TimeInForce.IOC, TimeInForce.FOK) and kind is OrderType.LIMIT:
        assert placed.state is OrderState.CANCELED  # a resting limit cannot live as ioc / fok


@pytest.mark.parametrize("body, message", [
    ({"symbol": "BTC/USD", "qty": "0.01", "side": "buy", "type": "trailing_stop", "trail_percent": "1",
      "time_in_force": "gtc"}, "trailing_stop for CRYPTO on alpaca"),
    ({"symbol": "BTC/USD", "qty": "0.01", "side": "buy", "type": "market", "time_in_force": "day"},
     "market with time_in_force day for CRYPTO on alpaca"),
    ({"symbol": "AAPL261218C00190000", "qty": "1", "side": "buy", "type": "limit", "limit_price": "1.00",
      "time_in_force": "gtc"}, "limit with time_in_force gtc for OPTIONS on alpaca"),
    ({"symbol": "AAPL", "qty": "1", "side": "buy", "type": "market", "time_in_force": "ioc", "order_class": "bracket",
      "take_profit": {"limit_price": "250"}, "stop_loss": {"stop_price": "150"}},
     "order_class bracket with time_in_force ioc for EQUITY on alpaca"),
])
def test_the_local_server_refuses_what_alpaca_refuses(server, body, message):
    import json
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"{server.url}/v2/orders", data=json.dumps(body).encode(), method="POST",
                                 headers={"APCA-API-KEY-ID": "k", "APCA-API-SECRET-KEY": "s",
                                          "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=5)
    assert refused.value.code == 422
    assert message in json.loads(refused.value.read())["message"]


def test_a_bracket_stop_fires_at_the_venue_and_its_take_profit_is_canceled(server, broker):
    quote = server.venue.get_latest_quote("MSFT", A.EQUITY)
    take, stop = quote.ask + D("10.00"), quote.bid - D("10.00")
    placed = broker.submit_order(OrderRequest(
        "t-bracket", "MSFT", A.EQUITY, OrderSide.BUY, D("3"), time_in_force="gtc", order_class=OrderClass.BRACKET,
        take_profit=TakeProfit(take), stop_loss=StopLoss(stop_price=stop, limit_price=stop - D("1.00"))))
    assert placed.state is OrderState.FILLED
    legs = {leg.symbol and venue_order(server, leg.client_order_id).order_type: leg for leg in placed.legs}
    assert set(legs) == {OrderType.LIMIT, OrderType.STOP_LIMIT}
    tp_at_venue = venue_order(server, legs[OrderType.LIMIT].client_order_id)
    sl_at_venue = venue_order(server, legs[OrderType.STOP_LIMIT].client_order_id)
    assert (tp_at_venue.side, tp_at_venue.limit_price, tp_at_venue.order_class) == (OrderSide.SELL, take, "bracket")
    assert (sl_at_venue.stop_price, sl_at_venue.limit_price) == (stop, stop - D("1.00"))
    # the price falls through the stop while nothing of ours runs; the venue acts on its own
    server.venue.market.set_mid("MSFT", stop - D("0.50"), A.EQUITY)
    server.venue.poll()
    after = broker.get_order(placed.broker_order_id)
    states = {venue_order(server, leg.client_order_id).order_type: leg.state for leg in after.legs}
    assert states == {OrderType.LIMIT: OrderState.CANCELED, OrderType.STOP_LIMIT: OrderState.FILLED}
    assert server.venue.net_position("MSFT", A.EQUITY) == 0


def test_oto_and_oco_reach_the_venue_through_alpaca_py(server, broker):
    quote = server.venue.get_latest_quote("NVDA", A.EQUITY)
    oto = broker.submit_order(OrderRequest(
        "t-oto", "NVDA", A.EQUITY, OrderSide.BUY, D("2"), order_class=OrderClass.OTO,
        stop_loss=StopLoss(stop_price=quote.bid - D("5.00"))))
    assert oto.state is OrderState.FILLED and [leg.state for leg in oto.legs] == [OrderState.NEW]
    broker.cancel_order(oto.legs[0].broker_order_id)  # flat exit handled below by the OCO instead
    oco = broker.submit_order(OrderRequest(
        "t-oco", "NVDA", A.EQUITY, OrderSide.SELL, D("2"), order_type=OrderType.LIMIT, order_class=OrderClass.OCO,
        take_profit=TakeProfit(quote.ask + D("5.00")), stop_loss=StopLoss(stop_price=quote.bid - D("5.00"))))
    parent = venue_order(server, "t-oco")
    assert (parent.order_class, parent.limit_price, parent.state) == ("oco", quote.ask + D("5.00"), OrderState.NEW)
    assert [(leg.order_type, leg.stop_price) for leg in parent.legs] == [(OrderType.STOP, quote.bid - D("5.00"))]
    server.venue.market.set_mid("NVDA", quote.ask + D("6.00"), A.EQUITY)
    after = broker.get_order(oco.broker_order_id)
    assert after.state is OrderState.FILLED and after.legs[0].state is OrderState.CANCELED
    assert server.venue.net_position("NVDA", A.EQUITY) == 0


def test_a_trailing_stop_loss_leg_is_refused_before_anything_is_sent(server, broker):
    sent = len(server.requests)
    with pytest.raises(BrokerError) as refused:
        broker.submit_order(OrderRequest("t-trail-leg", "AAPL", A.EQUITY, OrderSide.BUY, D("1"),
                                         order_class=OrderClass.OTO, stop_loss=StopLoss(trail_price=D("1.00"))))
    assert "trailing stop_loss" in str(refused.value)
    assert len(server.requests) == sent


def test_the_broker_api_takes_the_same_bracket_for_an_end_user_account(server, clock):
    import uuid

    from backend.adapters import alpaca_broker_api
    from backend.adapters.alpaca_broker_api import AlpacaBrokerApiConnection

    alpaca_broker_api.clear_client_cache()
    try:
        connection = AlpacaBrokerApiConnection("broker-key", "broker-secret", sandbox=True, url_override=server.url,
                                               timeout_seconds=5)
        account_id = server.open_account(str(uuid.uuid4()))
        account = connection.account(account_id, clock=clock)
        quote = server.venue.get_latest_quote("SPY", A.EQUITY)
        placed = account.submit_order(OrderRequest(
            "t-broker-api-bracket", "SPY", A.EQUITY, OrderSide.BUY, D("2"), order_class=OrderClass.BRACKET,
            take_profit=TakeProfit(quote.ask + D("5.00")), stop_loss=StopLoss(stop_price=quote.bid - D("5.00"))))
        assert placed.state is OrderState.FILLED and len(placed.legs) == 2
        books = [o for o in server.venue.orders(account_id) if o.order_class == "bracket"]
        assert len(books) == 3  # the entry and its two exits, all in that end user's book
        assert server.venue.orders(account_id=None) != [] and not [
            o for o in server.venue.orders("default") if o.client_order_id == "t-broker-api-bracket"]
    finally:
        alpaca_broker_api.clear_client_cache()


def test_a_replace_through_alpaca_py_leaves_one_working_order_linked_to_the_old(server, broker):
    from backend.domain.orders import ReplaceRequest

    bid = server.venue.get_latest_quote("AMZN", A.EQUITY).bid
    old = broker.submit_order(OrderRequest("t-replace", "AMZN", A.EQUITY, OrderSide.BUY, D("4"),
                                           order_type=OrderType.LIMIT, limit_price=bid - D("3.00"),
                                           time_in_force="gtc"))
    new = broker.replace_order(old.broker_order_id, ReplaceRequest("t-replace-r1", qty=D("6"),
                                                                   limit_price=bid - D("2.00")))
    assert new.replaces == old.broker_order_id and new.client_order_id == "t-replace-r1" and new.qty == D("6")
    before = broker.get_order(old.broker_order_id)
    assert (before.venue_status, before.state, before.replaced_by) == ("replaced", OrderState.CANCELED,
                                                                       new.broker_order_id)
    working = [o for o in server.venue.list_orders(status="open") if o.symbol == "AMZN"]
    assert [(o.client_order_id, o.qty, o.limit_price) for o in working] == [("t-replace-r1", D("6"),
                                                                            bid - D("2.00"))]
    with pytest.raises(BrokerError) as again:  # the old order is final: Alpaca answers 422
        broker.replace_order(old.broker_order_id, ReplaceRequest("t-replace-r2", qty=D("1")))
    assert "replaced" in str(again.value) or "canceled" in str(again.value)


def test_the_broker_api_replaces_an_end_user_accounts_order(server, clock):
    import uuid

    from backend.adapters import alpaca_broker_api
    from backend.adapters.alpaca_broker_api import AlpacaBrokerApiConnection
    from backend.domain.orders import ReplaceRequest

    alpaca_broker_api.clear_client_cache()
    try:
        connection = AlpacaBrokerApiConnection("broker-key", "broker-secret", sandbox=True, url_override=server.url,
                                               timeout_seconds=5)
        account_id = server.open_account(str(uuid.uuid4()))
        account = connection.account(account_id, clock=clock)
        ask = server.venue.get_latest_quote("SPY", A.EQUITY).ask
        old = account.submit_order(OrderRequest("t-ba-stop", "SPY", A.EQUITY, OrderSide.BUY, D("2"),
                                                order_type=OrderType.STOP, stop_price=ask + D("5.00")))
        new = account.replace_order(old.broker_order_id, ReplaceRequest("t-ba-stop-2", stop_price=ask + D("1.00")))
        assert new.replaces == old.broker_order_id
        at_venue = server.venue.peek_order(new.broker_order_id, account_id=account_id)
        assert at_venue.stop_price == ask + D("1.00") and at_venue.order_type is OrderType.STOP
    finally:
        alpaca_broker_api.clear_client_cache()
