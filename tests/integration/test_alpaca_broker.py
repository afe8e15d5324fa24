"""AlpacaBroker on the real alpaca-py clients against the local Alpaca-compatible server, over real
HTTP on 127.0.0.1. No in-process HTTP mocking: faults are injected by the server.

The adapter gets a ``ManualClock`` (shared with the venue), so backoff sleeps advance the clock
instead of waiting; only HTTP timeouts cost wall time, and those are set to fractions of a second.
"""
from __future__ import annotations

import socket
import time
from decimal import Decimal

import pytest

from backend.adapters.alpaca_broker import AlpacaBroker
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.ports.broker import BrokerError, BrokerErrorCode, OrderRequest, OrderSide, OrderState, OrderType
from tests.support.alpaca_server import LocalAlpacaServer

A = AssetClass
Code = BrokerErrorCode
FAST_TIMEOUT = 0.3  # seconds; the injected stalls below are longer
CALL_190, CALL_200, PUT_190 = "AAPL261218C00190000", "AAPL261218C00200000", "AAPL261218P00190000"


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def server(request, clock):
    scenario = getattr(request, "param", "default")
    with LocalAlpacaServer(scenario, clock=clock) as srv:
        yield srv


@pytest.fixture
def broker(server, clock):
    broker = AlpacaBroker("test-key", "test-secret", url_override=server.url, clock=clock,
                          timeout_seconds=FAST_TIMEOUT, time_budget_seconds=30)
    broker._clients()  # import alpaca-py and build the clients now, outside the timed sections
    return broker


def order(client_order_id="intent-1-leg-0", symbol="AAPL", asset_class=A.EQUITY, side=OrderSide.BUY,
          qty="1", order_type=OrderType.MARKET, limit_price=None, **kw) -> OrderRequest:
    return OrderRequest(client_order_id=client_order_id, symbol=symbol, asset_class=asset_class, side=side,
                        qty=Decimal(qty), order_type=order_type,
                        limit_price=None if limit_price is None else Decimal(limit_price), **kw)


def calls(server, method, path, count):
    """Statuses of the logged ``method path`` requests, once ``count`` of them are logged. The
    server logs a request after writing its response, so the log can trail the client briefly."""
    deadline = time.monotonic() + 2.0
    while True:
        got = [r.status for r in list(server.requests) if r.method == method and r.path == path]
        if len(got) >= count or time.monotonic() > deadline:
            return got
        time.sleep(0.005)


def log_after(server, count):
    deadline = time.monotonic() + 2.0
    while len(server.requests) < count and time.monotonic() < deadline:
        time.sleep(0.005)
    return [(r.method, r.path, r.status) for r in list(server.requests)]


def venue_orders(server, client_order_id):
    return [o for o in server.venue.orders() if o.client_order_id == client_order_id]


# --------------------------------------------------------------------------------------------
# Orders
# --------------------------------------------------------------------------------------------


def test_a_market_order_fills_and_reports_decimals(broker, server):
    placed = broker.submit_order(order(qty="3"))

    assert placed.state is OrderState.FILLED and placed.venue_status == "filled"
    assert placed.filled_qty == Decimal("3") and isinstance(placed.filled_avg_price, Decimal)
    assert placed.client_order_id == "intent-1-leg-0"
    assert len(venue_orders(server, "intent-1-leg-0")) == 1


def test_a_non_marketable_limit_order_works_until_canceled(broker, server):
    placed = broker.submit_order(order(order_type=OrderType.LIMIT, limit_price="150.00"))

    assert placed.state is OrderState.NEW
    broker.cancel_order(placed.broker_order_id)
    after = broker.get_order(placed.broker_order_id)

    assert after.state is OrderState.CANCELED and after.filled_qty == 0


def test_a_marketable_limit_order_fills_within_its_limit(broker):
    placed = broker.submit_order(order(order_type=OrderType.LIMIT, limit_price="191.00"))

    assert placed.state is OrderState.FILLED and placed.filled_avg_price <= Decimal("191.00")


def test_fractional_equity_quantities_arrive_exactly(broker, server):
    placed = broker.submit_order(order(qty="0.0123"))

    assert placed.qty == Decimal("0.0123") and placed.filled_qty == Decimal("0.0123")
    assert venue_orders(server, placed.client_order_id)[0].qty == Decimal("0.0123")


@pytest.mark.parametrize("symbol", ["BTCUSD", "BTC/USD", "btc/usd"])
def test_crypto_accepts_both_symbol_forms_and_positions_come_back_slashed(broker, server, symbol):
    placed = broker.submit_order(order(symbol=symbol, asset_class=A.CRYPTO, qty="0.0015"))

    assert placed.symbol == "BTC/USD" and placed.state is OrderState.FILLED
    assert venue_orders(server, placed.client_order_id)[0].time_in_force == "gtc"
    assert [(p.symbol, p.qty) for p in broker.get_positions()] == [("BTC/USD", Decimal("0.0015"))]

    closing = broker.close_position(symbol, A.CRYPTO)

    assert closing is not None and closing.side is OrderSide.SELL and closing.symbol == "BTC/USD"
    assert calls(server, "DELETE", "/v2/positions/BTCUSD", 1) == [200]
    assert broker.get_positions() == []
    assert broker.close_position(symbol, A.CRYPTO) is None  # nothing left to close


@pytest.mark.parametrize("server", ["partial_fills"], indirect=True)
def test_status_maps_through_partial_to_filled(broker):
    first = broker.submit_order(order(symbol="SPY", qty="8"))
    second = broker.get_order(first.broker_order_id)
    third = broker.get_order_by_client_id(first.client_order_id)

    assert [(o.state, o.filled_qty) for o in (first, second, third)] == [
        (OrderState.PARTIALLY_FILLED, Decimal("2")),
        (OrderState.PARTIALLY_FILLED, Decimal("4")),
        (OrderState.FILLED, Decimal("8")),
    ]
    assert third.venue_status == "filled" and third.remaining_qty == 0


@pytest.mark.parametrize("server", ["partial_fills"], indirect=True)
def test_a_venue_rejection_is_an_order_in_state_rejected(broker):
    placed = broker.submit_order(order(symbol="TSLA"))

    assert placed.state is OrderState.REJECTED and placed.state.is_final


def test_insufficient_buying_power_is_coded(broker, server):
    with pytest.raises(BrokerError) as info:
        broker.submit_order(order(qty="100000"))

    assert info.value.code is Code.INSUFFICIENT_BUYING_POWER
    assert calls(server, "POST", "/v2/orders", 1) == [403]


def test_an_injected_reject_is_coded_and_not_retried(broker, server):
    server.inject("POST /v2/orders", "reject")

    with pytest.raises(BrokerError) as info:
        broker.submit_order(order())

    assert info.value.code is Code.REJECTED
    assert calls(server, "POST", "/v2/orders", 1) == [422]
    assert server.venue.orders() == []


# --------------------------------------------------------------------------------------------
# Idempotency
# --------------------------------------------------------------------------------------------


def test_a_duplicate_client_order_id_returns_the_same_order(broker, server):
    first = broker.submit_order(order(client_order_id="grp-7-leg-1"))
    again = broker.submit_order(order(client_order_id="grp-7-leg-1"))

    assert again.broker_order_id == first.broker_order_id
    assert calls(server, "POST", "/v2/orders", 2) == [200, 422]
    assert calls(server, "GET", "/v2/orders:by_client_order_id", 1) == [200]
    assert len(venue_orders(server, "grp-7-leg-1")) == 1


def test_a_timeout_after_accept_is_resolved_by_lookup_and_one_order_exists(broker, server):
    server.inject("POST /v2/orders", "timeout_after_accept", seconds=10)
    started = time.monotonic()

    placed = broker.submit_order(order(client_order_id="grp-8-leg-0"))

    assert time.monotonic() - started < 3.0  # bounded by the 0.3 s timeout, not the 10 s stall
    assert placed.client_order_id == "grp-8-leg-0" and placed.state is OrderState.FILLED
    assert calls(server, "GET", "/v2/orders:by_client_order_id", 1) == [200]
    server.stop()  # ends the stall: the POST is logged (no response) when its handler wakes
    assert calls(server, "POST", "/v2/orders", 1) == [None]  # never resubmitted
    assert len(venue_orders(server, "grp-8-leg-0")) == 1


def test_a_dropped_response_after_accept_is_resolved_by_lookup(broker, server):
    server.inject("POST /v2/orders", "timeout_after_accept", seconds=0.0)

    placed = broker.submit_order(order(client_order_id="grp-9-leg-0"))

    assert placed.state is OrderState.FILLED
    assert calls(server, "POST", "/v2/orders", 1) == [None]
    assert len(venue_orders(server, "grp-9-leg-0")) == 1


def test_a_connection_dropped_before_accept_is_looked_up_then_resubmitted_once(broker, server):
    server.inject("POST /v2/orders", "drop")

    placed = broker.submit_order(order(client_order_id="grp-10-leg-0"))

    assert placed.state is OrderState.FILLED
    assert log_after(server, 3) == [
        ("POST", "/v2/orders", None),
        ("GET", "/v2/orders:by_client_order_id", 404),
        ("POST", "/v2/orders", 200),
    ]
    assert len(venue_orders(server, "grp-10-leg-0")) == 1


@pytest.mark.parametrize("status", ["500", "503", "504"])
def test_a_5xx_on_submit_is_looked_up_before_the_resubmit(broker, server, status):
    server.inject("POST /v2/orders", status)

    placed = broker.submit_order(order(client_order_id="grp-11-leg-0"))

    assert placed.state is OrderState.FILLED
    assert calls(server, "POST", "/v2/orders", 2) == [int(status), 200]  # alpaca-py's own 504 retry is off
    assert calls(server, "GET", "/v2/orders:by_client_order_id", 1) == [404]
    assert len(venue_orders(server, "grp-11-leg-0")) == 1


def test_when_the_venue_stalls_the_outcome_is_unknown_and_the_order_is_never_doubled(broker, server):
    server.inject("*", "latency", times=None, seconds=10)  # every request answers long after the timeout
    started = time.monotonic()

    with pytest.raises(BrokerError) as info:
        broker.submit_order(order(client_order_id="grp-12-leg-0"))

    assert time.monotonic() - started < 4.5  # 1 POST + 3 lookups, 0.3 s each; backoff on the fake clock
    assert info.value.code is Code.UNAVAILABLE and "outcome unknown" in info.value.message
    server.stop()  # ends the stalls: each stalled request now runs at the venue
    assert calls(server, "POST", "/v2/orders", 1) == [200]  # the one POST, answered after the client gave up
    assert len(venue_orders(server, "grp-12-leg-0")) == 1


# --------------------------------------------------------------------------------------------
# Rate limits, outages, timeouts
# --------------------------------------------------------------------------------------------


def test_a_429_storm_within_budget_succeeds_after_retry_after_waits_on_the_clock(broker, server, clock):
    server.inject("POST /v2/orders", "429", times=3)  # the server sends Retry-After: 1
    started = time.monotonic()

    placed = broker.submit_order(order(client_order_id="grp-13-leg-0"))

    assert placed.state is OrderState.FILLED
    assert calls(server, "POST", "/v2/orders", 4) == [429, 429, 429, 200]
    assert clock.monotonic() == 3.0  # three Retry-After waits, slept on the injected clock
    assert time.monotonic() - started < 3.0  # ... and not in wall time (alpaca-py would sleep 3 s each)
    assert len(venue_orders(server, "grp-13-leg-0")) == 1


def test_a_429_storm_beyond_the_time_budget_is_a_coded_rate_limit(server, clock):
    broker = AlpacaBroker("k", "s", url_override=server.url, clock=clock, timeout_seconds=FAST_TIMEOUT,
                          time_budget_seconds=2.5, max_rate_limit_retries=10)
    server.inject("POST /v2/orders", "429", times=None)

    with pytest.raises(BrokerError) as info:
        broker.submit_order(order())

    assert info.value.code is Code.RATE_LIMITED and info.value.retryable
    assert info.value.retry_after == 1.0 and "time budget" in info.value.message
    assert calls(server, "POST", "/v2/orders", 3) == [429, 429, 429]  # waits at 0→1 s, 1→2 s; a 3rd would pass 2.5 s
    assert clock.monotonic() <= 2.5
    assert server.venue.orders() == []


def test_a_429_storm_beyond_the_retry_count_is_a_coded_rate_limit(server, clock):
    broker = AlpacaBroker("k", "s", url_override=server.url, clock=clock, timeout_seconds=FAST_TIMEOUT,
                          max_rate_limit_retries=1)
    server.inject("GET /v2/account", "429", times=None)

    with pytest.raises(BrokerError) as info:
        broker.get_account()

    assert info.value.code is Code.RATE_LIMITED
    assert calls(server, "GET", "/v2/account", 2) == [429, 429]


@pytest.mark.parametrize("fault", ["500", "504", "drop"])
def test_transient_read_failures_are_retried(broker, server, fault):
    server.inject("GET /v2/account", fault, times=2)

    account = broker.get_account()

    assert account.buying_power == Decimal("2000000") and account.currency == "USD"
    assert calls(server, "GET", "/v2/account", 3)[-1] == 200


def test_a_persistent_5xx_on_a_read_is_unavailable_after_bounded_retries(broker, server):
    server.inject("GET /v2/positions", "500", times=None)

    with pytest.raises(BrokerError) as info:
        broker.get_positions()

    assert info.value.code is Code.UNAVAILABLE and info.value.retryable
    assert calls(server, "GET", "/v2/positions", 3) == [500, 500, 500]


def test_a_read_that_exceeds_the_timeout_is_retried(broker, server):
    server.inject("GET /v2/account", "latency", seconds=10)
    started = time.monotonic()

    account = broker.get_account()

    assert account.cash == Decimal("1000000")
    assert time.monotonic() - started < 3.0  # the stalled attempt was abandoned at the 0.3 s timeout


def test_an_unreachable_server_is_unavailable_quickly(clock):
    with socket.socket() as sock:  # a port that was free a moment ago and is now closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    broker = AlpacaBroker("k", "s", url_override=f"http://127.0.0.1:{port}", clock=clock, timeout_seconds=2.0)
    broker._clients()
    started = time.monotonic()

    for call in (lambda: broker.submit_order(order()), broker.get_account, broker.get_positions):
        with pytest.raises(BrokerError) as info:
            call()
        assert info.value.code is Code.UNAVAILABLE

    assert time.monotonic() - started < 2.0
    assert clock.monotonic() == 0  # refused connections fail fast: no backoff


def test_a_missing_order_is_not_found(broker):
    with pytest.raises(BrokerError) as info:
        broker.get_order("00000000-0000-4000-8000-000000000000")

    assert info.value.code is Code.NOT_FOUND
    assert broker.get_order_by_client_id("never-sent") is None


# --------------------------------------------------------------------------------------------
# Asset classes the venue does not have
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("symbol, asset_class", [("EUR/USD", A.FOREX), ("XAU/USD", A.COMMODITY)])
def test_fx_and_commodities_never_reach_the_server(broker, server, symbol, asset_class):
    with pytest.raises(BrokerError) as info:
        broker.submit_order(order(symbol=symbol, asset_class=asset_class))
    with pytest.raises(BrokerError):
        broker.get_latest_quote(symbol, asset_class)
    with pytest.raises(BrokerError):
        broker.close_position(symbol, asset_class)

    assert info.value.code is Code.UNSUPPORTED
    assert info.value.message == f"NO_VENUE_FOR_ASSET_CLASS: {asset_class.value}"
    assert server.requests == []


# --------------------------------------------------------------------------------------------
# Multi-leg options
# --------------------------------------------------------------------------------------------


def test_a_multileg_option_order_is_one_mleg_order_with_its_legs(broker, server):
    placed = broker.submit_multileg_options(
        "spread-1", [(CALL_190, "buy", 1), (CALL_200, OrderSide.SELL, 1)], 2, OrderType.LIMIT, Decimal("5.00"))

    assert placed.symbol == "AAPL" and placed.qty == Decimal("2") and placed.state is OrderState.FILLED
    assert [(leg.symbol, leg.side, leg.qty) for leg in placed.legs] == [
        (CALL_190, OrderSide.BUY, Decimal("2")), (CALL_200, OrderSide.SELL, Decimal("2"))]
    (venue_order,) = venue_orders(server, "spread-1")
    assert venue_order.order_class == "mleg" and [leg.ratio_qty for leg in venue_order.legs] == [1, 1]


def test_a_credit_spread_takes_a_negative_net_limit(broker, server):
    placed = broker.submit_multileg_options(
        "credit-1", [(CALL_190, "sell", 1), (CALL_200, "buy", 1)], 1, "limit", Decimal("-2.50"))

    assert placed.state is OrderState.FILLED and placed.filled_avg_price <= Decimal("-2.50")
    assert venue_orders(server, "credit-1")[0].limit_price == Decimal("-2.5")


def test_a_multileg_order_is_idempotent_by_client_id(broker, server):
    legs = [(CALL_190, "buy", 1), (PUT_190, "buy", 1)]
    server.inject("POST /v2/orders", "timeout_after_accept", seconds=0.0)

    first = broker.submit_multileg_options("straddle-1", legs, 1, "market")
    again = broker.submit_multileg_options("straddle-1", legs, 1, "market")

    assert first.broker_order_id == again.broker_order_id and len(first.legs) == 2
    assert len(venue_orders(server, "straddle-1")) == 1


def test_an_invalid_multileg_order_never_reaches_the_server(broker, server):
    with pytest.raises(BrokerError) as info:
        broker.submit_multileg_options("bad-1", [(CALL_190, "buy", 1), ("MSFT261218C00400000", "sell", 1)], 1)

    assert info.value.code is Code.INVALID and "one underlying" in info.value.message
    assert server.requests == []


def test_option_quantities_are_whole_contracts(broker, server):
    with pytest.raises(BrokerError) as info:
        broker.submit_order(order(symbol=CALL_190, asset_class=A.OPTIONS, qty="1.5"))

    assert info.value.code is Code.INVALID and server.requests == []


# --------------------------------------------------------------------------------------------
# Market data and account
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("symbol, asset_class, expected_symbol", [
    ("AAPL", A.EQUITY, "AAPL"), ("BTCUSD", A.CRYPTO, "BTC/USD"), (CALL_190, A.OPTIONS, CALL_190)])
def test_latest_quotes_come_from_the_right_data_route(broker, server, clock, symbol, asset_class, expected_symbol):
    quote = broker.get_latest_quote(symbol, asset_class)

    assert quote.symbol == expected_symbol and quote.problem() is None
    assert quote.timestamp == clock.now() and isinstance(quote.bid, Decimal)
    expected_route = {A.EQUITY: "/v2/stocks/quotes/latest", A.CRYPTO: "/v1beta3/crypto/us/latest/quotes",
                      A.OPTIONS: "/v1beta1/options/quotes/latest"}[asset_class]
    assert calls(server, "GET", expected_route, 1) == [200]


@pytest.mark.parametrize("symbol, asset_class", [("SPY", A.EQUITY), ("ETH/USD", A.CRYPTO), (CALL_190, A.OPTIONS)])
def test_recent_closes_are_daily_closes_oldest_first(broker, server, symbol, asset_class):
    closes = broker.get_recent_closes(symbol, asset_class, 5)

    assert len(closes) == 5 and all(isinstance(c, Decimal) and c > 0 for c in closes)
    assert closes == server.venue.get_recent_closes(symbol, 5, asset_class)


def test_the_account_is_in_decimals(broker):
    account = broker.get_account()

    assert (account.buying_power, account.equity, account.cash) == (
        Decimal("2000000"), Decimal("1000000"), Decimal("1000000"))
