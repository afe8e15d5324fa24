"""The local Alpaca-compatible server, driven by the REAL alpaca-py clients over HTTP on 127.0.0.1.

alpaca-py retries 429 and 504 with 3 s sleeps; the ``trading`` fixture lowers that to one retry with
no wait (``_retry`` / ``_retry_wait``), so every fault here costs milliseconds.
"""
from __future__ import annotations

import threading
import time
from decimal import Decimal as D
from typing import Any, Iterator

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.historical import CryptoHistoricalDataClient, OptionHistoricalDataClient, StockHistoricalDataClient
from alpaca.data.requests import (
    CryptoBarsRequest,
    CryptoLatestQuoteRequest,
    OptionLatestQuoteRequest,
    StockBarsRequest,
    StockLatestQuoteRequest,
)
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderClass, OrderSide, OrderStatus, PositionIntent, QueryOrderStatus, TimeInForce
from alpaca.trading.requests import (
    ClosePositionRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    OptionLegRequest,
)

from backend.adapters.paper_broker import PaperBroker
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.ports import broker as port
from tests.support.alpaca_server import LocalAlpacaServer

CALL, PUT, CALL_200 = "AAPL261218C00190000", "AAPL261218P00190000", "AAPL261218C00200000"
KEYS = {"APCA-API-KEY-ID": "k", "APCA-API-SECRET-KEY": "s"}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def server(request: pytest.FixtureRequest, clock: ManualClock) -> Iterator[LocalAlpacaServer]:
    with LocalAlpacaServer(getattr(request, "param", "default"), clock=clock) as srv:
        yield srv


@pytest.fixture
def trading(server: LocalAlpacaServer) -> TradingClient:
    client = TradingClient(api_key="k", secret_key="s", paper=True, url_override=server.url)
    client._retry, client._retry_wait = 1, 0  # one quick retry of 429/504 instead of three 3 s sleeps
    return client


def market(symbol: str = "AAPL", qty: float = 10, side: OrderSide = OrderSide.BUY, client_id: str | None = None,
           tif: TimeInForce = TimeInForce.DAY) -> MarketOrderRequest:
    return MarketOrderRequest(symbol=symbol, qty=qty, side=side, time_in_force=tif, client_order_id=client_id)


def statuses(server: LocalAlpacaServer, method: str, path: str, count: int) -> list[int | None]:
    """Logged statuses of ``method path``; the log is written after the response, so wait for it."""
    deadline = time.monotonic() + 2
    while True:
        got = [r.status for r in list(server.requests) if (r.method, r.path) == (method, path)]
        if len(got) >= count or time.monotonic() > deadline:
            return got
        time.sleep(0.005)


def api_error(call: Any) -> APIError:
    with pytest.raises(APIError) as caught:
        call()
    return caught.value


# --------------------------------------------------------------------------- orders


def test_a_market_order_fills_at_the_ask_and_is_found_by_id_and_client_id(trading: TradingClient) -> None:
    placed = trading.submit_order(market(client_id="intent-1-leg-0"))

    by_id = trading.get_order_by_id(placed.id)
    by_client = trading.get_order_by_client_id("intent-1-leg-0")

    assert placed.status is OrderStatus.FILLED and placed.order_class is OrderClass.SIMPLE
    assert (placed.qty, placed.filled_qty, placed.filled_avg_price) == ("10", "10", "190.01")
    assert placed.symbol == "AAPL" and placed.asset_class.value == "us_equity" and placed.type.value == "market"
    assert by_id.id == by_client.id == placed.id and by_client.status is OrderStatus.FILLED


def test_fractional_and_notional_quantities_arrive_exactly(trading: TradingClient, server: LocalAlpacaServer) -> None:
    fractional = trading.submit_order(market(qty=0.0123))
    notional = trading.submit_order(MarketOrderRequest(symbol="SPY", notional=1000, side=OrderSide.BUY,
                                                       time_in_force=TimeInForce.DAY))

    assert fractional.filled_qty == "0.0123" and server.venue.orders()[0].qty == D("0.0123")
    assert (notional.notional, notional.qty) == ("1000", "1.923")  # 1000 / 520.01 rounded down to the lot


def test_a_non_marketable_limit_order_works_until_canceled(trading: TradingClient) -> None:
    placed = trading.submit_order(LimitOrderRequest(symbol="AAPL", qty=2, side=OrderSide.BUY,
                                                    time_in_force=TimeInForce.DAY, limit_price=150))

    trading.cancel_order_by_id(placed.id)
    canceled = trading.get_order_by_id(placed.id)
    again = api_error(lambda: trading.cancel_order_by_id(placed.id))

    assert placed.status is OrderStatus.NEW and placed.limit_price == "150"
    assert canceled.status is OrderStatus.CANCELED and canceled.canceled_at is not None
    assert (again.status_code, again.code) == (422, 42210000)


def test_canceling_a_filled_order_is_refused(trading: TradingClient) -> None:
    placed = trading.submit_order(market())

    error = api_error(lambda: trading.cancel_order_by_id(placed.id))

    assert (error.status_code, error.code, error.message) == (422, 42210000, 'order is already in "filled" state')


def test_a_duplicate_client_order_id_is_alpacas_422(trading: TradingClient, server: LocalAlpacaServer) -> None:
    trading.submit_order(market(client_id="grp-1-leg-0"))

    error = api_error(lambda: trading.submit_order(market(client_id="grp-1-leg-0")))

    assert (error.status_code, error.code, error.message) == (422, 40010001, "client_order_id must be unique")
    assert len(server.venue.orders()) == 1


def test_unknown_orders_are_alpacas_404(trading: TradingClient) -> None:
    by_id = api_error(lambda: trading.get_order_by_id("00000000-0000-4000-8000-000000000000"))
    by_client = api_error(lambda: trading.get_order_by_client_id("never-sent"))

    assert (by_id.status_code, by_id.code) == (by_client.status_code, by_client.code) == (404, 40410000)


def test_insufficient_buying_power_is_alpacas_403(trading: TradingClient, server: LocalAlpacaServer) -> None:
    error = api_error(lambda: trading.submit_order(market(qty=100000)))

    assert (error.status_code, error.code, error.message) == (403, 40310000, "insufficient buying power")
    assert server.venue.orders() == []


def test_fx_is_not_an_alpaca_asset(trading: TradingClient) -> None:
    error = api_error(lambda: trading.submit_order(market(symbol="EUR/USD")))

    assert (error.status_code, error.code) == (422, 42210000)


@pytest.mark.parametrize("server", ["partial_fills"], indirect=True)
def test_status_progresses_through_partially_filled_to_filled(trading: TradingClient) -> None:
    placed = trading.submit_order(market(symbol="SPY", qty=8, client_id="p-1"))
    second = trading.get_order_by_id(placed.id)
    third = trading.get_order_by_client_id("p-1")

    assert [(o.status, o.filled_qty) for o in (placed, second, third)] == [
        (OrderStatus.PARTIALLY_FILLED, "2"), (OrderStatus.PARTIALLY_FILLED, "4"), (OrderStatus.FILLED, "8")]
    assert third.filled_at is not None


@pytest.mark.parametrize("server", ["partial_fills"], indirect=True)
def test_latency_reject_and_never_fill_models(trading: TradingClient, clock: ManualClock) -> None:
    delayed = trading.submit_order(market(symbol="ETH/USD", qty=1, tif=TimeInForce.GTC))
    rejected = trading.submit_order(market(symbol="TSLA"))
    working = trading.submit_order(market(symbol="GME"))

    clock.advance(3)
    trading.cancel_order_by_id(working.id)

    assert delayed.status is OrderStatus.NEW and trading.get_order_by_id(delayed.id).status is OrderStatus.FILLED
    assert rejected.status is OrderStatus.REJECTED and rejected.failed_at is not None
    assert (trading.get_order_by_id(working.id).status, trading.get_order_by_id(working.id).filled_qty) == (
        OrderStatus.CANCELED, "0")


def test_order_lists_filter_by_status(trading: TradingClient) -> None:
    trading.submit_order(market())
    trading.submit_order(LimitOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY,
                                           limit_price=100))

    open_, closed, everything = (trading.get_orders(GetOrdersRequest(status=s)) for s in QueryOrderStatus)

    assert [o.status for o in open_] == [OrderStatus.NEW]
    assert [o.status for o in closed] == [OrderStatus.FILLED]
    assert len(everything) == 2


def test_cancel_all_orders_answers_207_with_each_order(trading: TradingClient) -> None:
    working = trading.submit_order(LimitOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY,
                                                     time_in_force=TimeInForce.DAY, limit_price=100))

    responses = trading.cancel_orders()

    assert [(r.id, r.status) for r in responses] == [(working.id, 200)]
    assert trading.get_order_by_id(working.id).status is OrderStatus.CANCELED


# --------------------------------------------------------------------------- positions and account


def test_positions_and_close_position_including_crypto_paths(trading: TradingClient) -> None:
    trading.submit_order(market(qty=10))
    trading.submit_order(market(symbol="BTC/USD", qty=0.01, tif=TimeInForce.GTC))

    positions = {p.symbol: (p.qty, p.side.value, p.asset_class.value) for p in trading.get_all_positions()}
    crypto = trading.get_open_position("BTCUSD")
    closing = trading.close_position("BTCUSD")
    half = trading.close_position("AAPL", ClosePositionRequest(percentage="50"))
    missing = api_error(lambda: trading.close_position("BTCUSD"))

    assert positions == {"AAPL": ("10", "long", "us_equity"), "BTCUSD": ("0.01", "long", "crypto")}
    assert crypto.avg_entry_price == "65005" and crypto.exchange.value == "CRYPTO"
    assert (closing.symbol, closing.side, closing.status) == ("BTC/USD", OrderSide.SELL, OrderStatus.FILLED)
    assert half.qty == "5" and trading.get_open_position("AAPL").qty == "5"
    assert (missing.status_code, missing.code) == (404, 40410000)


def test_close_all_positions_answers_207(trading: TradingClient) -> None:
    trading.submit_order(market(qty=1))
    trading.submit_order(market(symbol="SPY", qty=1, side=OrderSide.SELL))

    responses = trading.close_all_positions()

    assert sorted((r.symbol, r.status) for r in responses) == [("AAPL", 200), ("SPY", 200)]
    assert trading.get_all_positions() == []


def test_account_matches_the_venue(trading: TradingClient, server: LocalAlpacaServer) -> None:
    trading.submit_order(market(qty=100))

    account = trading.get_account()
    venue = server.venue.get_account()

    assert (D(account.cash), D(account.buying_power), D(account.equity)) == (venue.cash, venue.buying_power,
                                                                            venue.equity)
    assert account.status.value == "ACTIVE" and account.long_market_value == "19000"


# --------------------------------------------------------------------------- market data


def test_latest_quotes_for_each_data_client(server: LocalAlpacaServer, clock: ManualClock) -> None:
    stocks = StockHistoricalDataClient("k", "s", url_override=server.url)
    crypto = CryptoHistoricalDataClient(url_override=server.url)  # crypto data needs no keys
    options = OptionHistoricalDataClient("k", "s", url_override=server.url)

    s = stocks.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols=["AAPL", "SPY"]))
    c = crypto.get_crypto_latest_quote(CryptoLatestQuoteRequest(symbol_or_symbols="BTC/USD"))
    o = options.get_option_latest_quote(OptionLatestQuoteRequest(symbol_or_symbols=CALL))

    assert (s["AAPL"].bid_price, s["AAPL"].ask_price, s["SPY"].ask_price) == (189.99, 190.01, 520.01)
    assert (c["BTC/USD"].bid_price, c["BTC/USD"].ask_price) == (64995, 65005)
    assert (o[CALL].bid_price, o[CALL].ask_price) == (14.99, 15.00)
    assert s["AAPL"].timestamp == clock.now()


@pytest.mark.parametrize("server", ["stale_quotes"], indirect=True)
def test_stale_quotes_carry_their_age(server: LocalAlpacaServer, clock: ManualClock) -> None:
    quote = StockHistoricalDataClient("k", "s", url_override=server.url).get_stock_latest_quote(
        StockLatestQuoteRequest(symbol_or_symbols="AAPL"))["AAPL"]

    assert (clock.now() - quote.timestamp).total_seconds() == 30


def test_daily_bars_close_on_the_venues_recent_closes(server: LocalAlpacaServer) -> None:
    stocks = StockHistoricalDataClient("k", "s", url_override=server.url)
    crypto = CryptoHistoricalDataClient(url_override=server.url)

    s = stocks.get_stock_bars(StockBarsRequest(symbol_or_symbols="AAPL", timeframe=TimeFrame.Day, limit=10))
    c = crypto.get_crypto_bars(CryptoBarsRequest(symbol_or_symbols="BTC/USD", timeframe=TimeFrame.Day, limit=5))

    assert [D(str(b.close)) for b in s["AAPL"]] == server.venue.get_recent_closes("AAPL", 10)
    assert [D(str(b.close)) for b in c["BTC/USD"]] == server.venue.get_recent_closes("BTC/USD", 5)
    assert s["AAPL"][0].timestamp < s["AAPL"][-1].timestamp


# --------------------------------------------------------------------------- multi-leg options


def test_an_mleg_order_fills_its_legs_atomically(trading: TradingClient, server: LocalAlpacaServer) -> None:
    placed = trading.submit_order(LimitOrderRequest(
        qty=2, order_class=OrderClass.MLEG, time_in_force=TimeInForce.DAY, limit_price=3.5,
        client_order_id="spread-1",
        legs=[OptionLegRequest(symbol=CALL, ratio_qty=1, side=OrderSide.BUY),
              OptionLegRequest(symbol=CALL_200, ratio_qty=1, position_intent=PositionIntent.SELL_TO_OPEN)]))

    assert placed.order_class is OrderClass.MLEG and placed.status is OrderStatus.FILLED
    assert placed.symbol is None and placed.filled_avg_price == "3.01"  # 15.00 - 11.99 net debit
    assert [(leg.symbol, leg.side, leg.filled_qty, leg.ratio_qty) for leg in placed.legs] == [
        (CALL, OrderSide.BUY, "2", "1"), (CALL_200, OrderSide.SELL, "2", "1")]
    assert {p.symbol: p.qty for p in trading.get_all_positions()} == {CALL: "2", CALL_200: "-2"}
    assert trading.get_order_by_client_id("spread-1").legs[1].position_intent is PositionIntent.SELL_TO_OPEN


@pytest.mark.parametrize("legs, message", [
    ([{"symbol": CALL, "ratio_qty": "1", "side": "buy"}, {"symbol": "AAPL", "ratio_qty": "1", "side": "sell"}],
     "OCC"),
    ([{"symbol": CALL, "ratio_qty": "1", "side": "buy"}], "2 to 4 legs"),
    ([{"symbol": CALL, "ratio_qty": "1", "side": "buy"}, {"symbol": CALL, "ratio_qty": "1", "side": "sell"}],
     "unique"),
    ([{"symbol": CALL, "ratio_qty": "1", "side": "buy"}, {"symbol": PUT, "ratio_qty": "1"}], "side"),
])
def test_invalid_mleg_bodies_are_422(server: LocalAlpacaServer, legs: list[dict[str, str]], message: str) -> None:
    body = {"order_class": "mleg", "qty": "1", "type": "market", "time_in_force": "day", "legs": legs}

    response = requests.post(f"{server.url}/v2/orders", json=body, headers=KEYS, timeout=5)

    assert response.status_code == 422 and message in response.json()["message"]
    assert server.venue.orders() == []


# --------------------------------------------------------------------------- injected faults


@pytest.mark.parametrize("kind, times, expected", [
    ("500", 1, [500]),
    ("503", 1, [503]),
    ("429", 2, [429, 429]),  # alpaca-py retried once (the fixture's _retry = 1), then gave up
    ("reject", 1, [422]),
])
def test_error_faults_reach_the_client_and_place_nothing(trading: TradingClient, server: LocalAlpacaServer,
                                                         kind: str, times: int, expected: list[int]) -> None:
    server.inject("POST /v2/orders", kind, times=times)

    error = api_error(lambda: trading.submit_order(market(client_id="f-1")))

    assert error.status_code == expected[-1] and isinstance(error.code, int)
    assert statuses(server, "POST", "/v2/orders", len(expected)) == expected
    assert server.venue.orders() == []


@pytest.mark.parametrize("kind", ["429", "504"])
def test_alpaca_py_retries_429_and_504_and_then_succeeds(trading: TradingClient, server: LocalAlpacaServer,
                                                         kind: str) -> None:
    server.inject("POST /v2/orders", kind)

    placed = trading.submit_order(market(client_id="r-1"))

    assert placed.status is OrderStatus.FILLED
    assert statuses(server, "POST", "/v2/orders", 2) == [int(kind), 200]


def test_drop_closes_the_socket_before_anything_happens(trading: TradingClient, server: LocalAlpacaServer) -> None:
    server.inject("POST /v2/orders", "drop")

    with pytest.raises(requests.exceptions.ConnectionError):
        trading.submit_order(market(client_id="d-1"))

    assert statuses(server, "POST", "/v2/orders", 1) == [None]
    assert server.venue.orders() == []


def test_timeout_after_accept_fails_the_client_though_the_order_exists(trading: TradingClient,
                                                                       server: LocalAlpacaServer) -> None:
    server.inject("POST /v2/orders", "timeout_after_accept")

    with pytest.raises(requests.exceptions.ConnectionError):
        trading.submit_order(market(client_id="t-1"))

    assert trading.get_order_by_client_id("t-1").status is OrderStatus.FILLED
    assert statuses(server, "POST", "/v2/orders", 1) == [None]


def test_timeout_after_accept_outlasts_a_client_timeout(server: LocalAlpacaServer) -> None:
    server.inject("POST /v2/orders", "timeout_after_accept", seconds=2)
    body = {"symbol": "AAPL", "qty": "1", "side": "buy", "type": "market", "time_in_force": "day",
            "client_order_id": "t-2"}
    started = time.monotonic()

    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(f"{server.url}/v2/orders", json=body, headers=KEYS, timeout=0.2)

    assert time.monotonic() - started < 1
    deadline = time.monotonic() + 2  # the server stores the order before it stalls; on a busy box that can trail
    while server.venue.get_order_by_client_id("t-2") is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.venue.get_order_by_client_id("t-2") is not None


def test_latency_delays_the_answer(trading: TradingClient, server: LocalAlpacaServer) -> None:
    server.inject("GET /v2/account", "latency", seconds=0.3)
    started = time.monotonic()

    trading.get_account()

    assert time.monotonic() - started >= 0.3


def test_star_route_faults_every_request_until_cleared(trading: TradingClient, server: LocalAlpacaServer) -> None:
    server.inject("*", "500", times=None)

    errors = [api_error(trading.get_account).status_code, api_error(trading.get_all_positions).status_code]
    server.clear_faults()

    assert errors == [500, 500] and trading.get_all_positions() == []


def test_route_globs_pick_the_requests_they_name(trading: TradingClient, server: LocalAlpacaServer) -> None:
    placed = trading.submit_order(market())
    server.inject("GET /v2/orders/*", "500")

    error = api_error(lambda: trading.get_order_by_id(placed.id))

    assert error.status_code == 500 and trading.get_account().cash is not None


@pytest.mark.parametrize("route, kind", [("POST /v2/orders", "explode"), ("orders", "500"), ("*", "200")])
def test_inject_refuses_unknown_kinds_and_routes(server: LocalAlpacaServer, route: str, kind: str) -> None:
    with pytest.raises(ValueError):
        server.inject(route, kind)


@pytest.mark.parametrize("server", ["outage"], indirect=True)
def test_scenario_faults_in_the_venue_surface_as_http(trading: TradingClient, server: LocalAlpacaServer) -> None:
    first = api_error(lambda: trading.submit_order(market(client_id="o-1")))
    second = api_error(lambda: trading.submit_order(market(client_id="o-1")))
    with pytest.raises(requests.exceptions.ConnectionError):  # the lost response: accepted, then dropped
        trading.submit_order(market(client_id="o-1"))
    duplicate = api_error(lambda: trading.submit_order(market(client_id="o-1")))

    assert [(e.status_code, e.code) for e in (first, second)] == [(503, 50310000)] * 2
    assert (duplicate.status_code, duplicate.code) == (422, 40010001)
    placed = trading.get_order_by_client_id("o-1")
    assert trading.get_order_by_id(placed.id).status is OrderStatus.FILLED  # 429 once, retried by alpaca-py
    assert statuses(server, "GET", f"/v2/orders/{placed.id}", 2) == [429, 200]
    assert len(server.venue.orders()) == 1


def test_requests_without_keys_are_401_except_crypto_data(server: LocalAlpacaServer) -> None:
    account = requests.get(f"{server.url}/v2/account", timeout=5)
    crypto = requests.get(f"{server.url}/v1beta3/crypto/us/latest/quotes", params={"symbols": "BTC/USD"}, timeout=5)

    assert (account.status_code, account.json()["code"]) == (401, 40110000)
    assert crypto.status_code == 200


def test_unknown_routes_are_404_and_are_logged(server: LocalAlpacaServer) -> None:
    response = requests.get(f"{server.url}/v2/nothing", headers=KEYS, timeout=5)

    assert response.status_code == 404
    assert statuses(server, "GET", "/v2/nothing", 1) == [404]


def test_stop_does_not_wait_for_a_stalled_request(clock: ManualClock) -> None:
    server = LocalAlpacaServer(clock=clock).start()
    server.inject("*", "latency", seconds=30)
    worker = threading.Thread(target=lambda: requests.get(f"{server.url}/v2/account", headers=KEYS, timeout=60))
    worker.start()
    time.sleep(0.1)
    started = time.monotonic()

    server.stop()
    worker.join(timeout=5)

    assert time.monotonic() - started < 2 and not worker.is_alive()


# --------------------------------------------------------------------------- parity with PaperBroker


@pytest.mark.parametrize("scenario", ["default", "partial_fills"])
def test_the_same_scenario_gives_the_same_orders_and_fills_as_the_paper_broker(scenario: str) -> None:
    paper = PaperBroker(scenario, clock=ManualClock())
    steps = [("AAPL", AssetClass.EQUITY, "buy", "10"), ("SPY", AssetClass.EQUITY, "sell", "4"),
             ("BTC/USD", AssetClass.CRYPTO, "buy", "0.03")]

    with LocalAlpacaServer(scenario, clock=ManualClock()) as server:
        client = TradingClient("k", "s", paper=True, url_override=server.url)
        over_http = []
        for i, (symbol, klass, side, qty) in enumerate(steps):
            placed = client.submit_order(market(symbol, float(qty), OrderSide(side), f"x-{i}", TimeInForce.GTC))
            polled = client.get_order_by_client_id(f"x-{i}")
            over_http.append((str(placed.id), D(placed.filled_qty), D(polled.filled_qty),
                              D(polled.filled_avg_price)))
    embedded = []
    for i, (symbol, klass, side, qty) in enumerate(steps):
        placed = paper.submit_order(port.OrderRequest(client_order_id=f"x-{i}", symbol=symbol, asset_class=klass,
                                                      side=port.OrderSide(side), qty=D(qty), time_in_force="gtc"))
        polled = paper.get_order_by_client_id(f"x-{i}")
        embedded.append((placed.broker_order_id, placed.filled_qty, polled.filled_qty, polled.filled_avg_price))

    assert over_http == embedded
