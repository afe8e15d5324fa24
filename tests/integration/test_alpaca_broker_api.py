"""AlpacaBrokerApiAccount on the real alpaca-py ``BrokerClient`` against the local Alpaca-compatible
server's Broker API routes, over real HTTP on 127.0.0.1: many accounts of one connection, each with
its own book at the venue. Faults are injected by the server, never mocked.

The adapter gets a ``ManualClock`` (shared with the venue), so backoff sleeps advance the clock
instead of waiting; only HTTP timeouts cost wall time, and those are fractions of a second.
"""
from __future__ import annotations

import base64
import logging
import time
import uuid
from decimal import Decimal

import pytest

from backend.adapters import alpaca_broker_api
from backend.adapters.alpaca_broker_api import AlpacaBrokerApiAccount, AlpacaBrokerApiConnection
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.ports.broker import BrokerError, BrokerErrorCode, BrokerPort, OrderRequest, OrderSide, OrderState
from tests.support.alpaca_server import LocalAlpacaServer

FAST_TIMEOUT = 0.3  # seconds; the injected stalls below are longer
KEY, SECRET = "broker-key-PK0123", "broker-secret-Zx9-do-not-leak"
ORDERS = "/v1/trading/accounts/{}/orders"
BY_CLIENT = "/v1/trading/accounts/{}/orders:by_client_order_id"


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def server(clock):
    with LocalAlpacaServer("default", clock=clock) as srv:
        yield srv


@pytest.fixture
def connection(server):
    alpaca_broker_api.clear_client_cache()
    yield AlpacaBrokerApiConnection(KEY, SECRET, sandbox=True, url_override=server.url,
                                    timeout_seconds=FAST_TIMEOUT)
    alpaca_broker_api.clear_client_cache()


@pytest.fixture
def accounts(server, connection, clock):
    """Two end-user accounts of one connection, clients built outside the timed sections."""
    out = []
    for _ in range(2):
        account_id = server.open_account(str(uuid.uuid4()))
        account = connection.account(account_id, clock=clock)
        account._clients()
        out.append(account)
    return out


def order(client_order_id: str, side: OrderSide = OrderSide.BUY, qty: str = "10", symbol: str = "SPY") -> OrderRequest:
    return OrderRequest(client_order_id=client_order_id, symbol=symbol, asset_class=AssetClass.EQUITY, side=side,
                        qty=Decimal(qty))


def calls(server, method, path, count):
    """Statuses of the logged ``method path`` requests once ``count`` are logged (the log trails
    the response briefly)."""
    deadline = time.monotonic() + 2.0
    while True:
        got = [r.status for r in list(server.requests) if r.method == method and r.path == path]
        if len(got) >= count or time.monotonic() > deadline:
            return got
        time.sleep(0.005)


def venue_orders(server, account, client_order_id):
    return [o for o in server.venue.orders(account.account_id) if o.client_order_id == client_order_id]


# --------------------------------------------------------------------------------------------
# Accounts
# --------------------------------------------------------------------------------------------


def test_an_account_is_a_broker_port_and_its_clients_are_shared_per_connection(accounts, connection, server):
    alice, bob = accounts
    again = AlpacaBrokerApiConnection(KEY, SECRET, sandbox=True, url_override=server.url,
                                      timeout_seconds=FAST_TIMEOUT)

    assert isinstance(alice, BrokerPort) and alice.name == "alpaca_broker"
    assert alice._clients().trading._broker is bob._clients().trading._broker
    assert again.clients() is connection.clients()  # cached per process by settings


def test_two_accounts_trading_one_symbol_in_opposite_directions_each_hold_their_own_position(accounts, server):
    alice, bob = accounts

    bought = alice.submit_order(order("c-1", OrderSide.BUY, "100"))
    sold = bob.submit_order(order("c-2", OrderSide.SELL, "40"))

    assert bought.state is OrderState.FILLED and sold.state is OrderState.FILLED
    assert [(p.symbol, p.qty) for p in alice.get_positions()] == [("SPY", Decimal("100"))]
    assert [(p.symbol, p.qty) for p in bob.get_positions()] == [("SPY", Decimal("-40"))]
    assert server.venue.net_position("SPY", account_id=alice.account_id) == Decimal("100")
    assert server.venue.net_position("SPY", account_id=bob.account_id) == Decimal("-40")
    assert server.venue.net_position("SPY") == 0  # the Trading API's default account is untouched
    assert alice.get_account().cash < bob.get_account().cash


def test_the_same_client_order_id_in_two_accounts_is_two_orders(accounts, server):
    alice, bob = accounts

    first = alice.submit_order(order("same-id"))
    second = bob.submit_order(order("same-id"))
    again = alice.submit_order(order("same-id"))  # within one account: a duplicate, the same order

    assert first.broker_order_id != second.broker_order_id
    assert again.broker_order_id == first.broker_order_id
    assert alice.get_order_by_client_id("same-id").broker_order_id == first.broker_order_id
    assert bob.get_order_by_client_id("same-id").broker_order_id == second.broker_order_id
    assert calls(server, "POST", ORDERS.format(alice.account_id), 2) == [200, 422]
    assert len(venue_orders(server, alice, "same-id")) == 1 and len(venue_orders(server, bob, "same-id")) == 1


def test_an_account_cannot_read_or_cancel_another_accounts_order(accounts):
    alice, bob = accounts
    placed = alice.submit_order(order("c-1"))

    with pytest.raises(BrokerError) as read:
        bob.get_order(placed.broker_order_id)

    assert read.value.code is BrokerErrorCode.NOT_FOUND
    assert bob.get_order_by_client_id("c-1") is None
    assert alice.get_order(placed.broker_order_id).state is OrderState.FILLED


def test_closing_a_position_closes_only_that_accounts_position(accounts):
    alice, bob = accounts
    alice.submit_order(order("a-1", OrderSide.BUY, "7"))
    bob.submit_order(order("b-1", OrderSide.BUY, "5"))

    closing = alice.close_position("SPY", AssetClass.EQUITY)

    assert closing is not None and closing.side is OrderSide.SELL and closing.qty == Decimal("7")
    assert alice.get_positions() == []
    assert [(p.symbol, p.qty) for p in bob.get_positions()] == [("SPY", Decimal("5"))]


def test_an_unknown_account_is_a_coded_not_found_and_a_non_uuid_is_refused_before_sending(connection, clock):
    stranger = connection.account(str(uuid.uuid4()), clock=clock)

    with pytest.raises(BrokerError) as unknown:
        stranger.get_account()
    with pytest.raises(BrokerError) as bad:
        connection.account("acct-1")

    assert unknown.value.code is BrokerErrorCode.NOT_FOUND
    assert bad.value.code is BrokerErrorCode.INVALID


def test_quotes_and_closes_come_from_market_data_under_the_broker_keys(accounts, server):
    alice, _ = accounts

    quote = alice.get_latest_quote("SPY", AssetClass.EQUITY)
    closes = alice.get_recent_closes("SPY", AssetClass.EQUITY, 5)

    assert quote.bid < quote.ask and isinstance(quote.bid, Decimal)
    assert len(closes) == 5 and all(isinstance(c, Decimal) for c in closes)
    assert calls(server, "GET", "/v2/stocks/quotes/latest", 1) == [200]


# --------------------------------------------------------------------------------------------
# Faults: exactly one order in that account
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [  # (kind, stall seconds, the lookup's answer: found / not found)
    pytest.param(("timeout_after_accept", 10.0, 200), id="timeout-after-accept"),
    pytest.param(("timeout_after_accept", 0.0, 200), id="dropped-response-after-accept"),
    pytest.param(("drop", 0.0, 404), id="dropped-before-accept"),
    pytest.param(("500", 0.0, 404), id="http-500"),
    pytest.param(("503", 0.0, 404), id="http-503"),
    pytest.param(("504", 0.0, 404), id="http-504"),
])
def test_each_ambiguous_submit_fault_leaves_exactly_one_order_in_that_account(accounts, server, fault):
    alice, bob = accounts
    kind, seconds, lookup = fault
    server.inject(f"POST {ORDERS.format(alice.account_id)}", kind, seconds=seconds)
    started = time.monotonic()

    placed = alice.submit_order(order("grp-1-leg-0"))

    assert time.monotonic() - started < 3.0  # bounded by the 0.3 s timeout, not the 10 s stall
    assert placed.client_order_id == "grp-1-leg-0" and placed.state is OrderState.FILLED
    assert calls(server, "GET", BY_CLIENT.format(alice.account_id), 1) == [lookup]  # looked up before any resubmit
    server.stop()  # ends any stall: the stalled POST is logged when its handler wakes
    assert len(venue_orders(server, alice, "grp-1-leg-0")) == 1
    assert venue_orders(server, bob, "grp-1-leg-0") == []


def test_a_429_storm_within_budget_leaves_one_order_after_retry_after_waits_on_the_clock(accounts, server, clock):
    alice, _ = accounts
    path = ORDERS.format(alice.account_id)
    server.inject(f"POST {path}", "429", times=3)  # the server sends Retry-After: 1

    placed = alice.submit_order(order("grp-2-leg-0"))

    assert placed.state is OrderState.FILLED
    assert calls(server, "POST", path, 4) == [429, 429, 429, 200]
    assert clock.monotonic() == 3.0
    assert len(venue_orders(server, alice, "grp-2-leg-0")) == 1


def test_a_429_storm_beyond_the_accounts_budget_is_a_coded_rate_limit_and_nothing_is_placed(server, connection,
                                                                                           clock):
    account_id = server.open_account()
    account = connection.account(account_id, clock=clock, time_budget_seconds=2.5, max_rate_limit_retries=10)
    server.inject(f"POST {ORDERS.format(account_id)}", "429", times=None)

    with pytest.raises(BrokerError) as info:
        account.submit_order(order("grp-3-leg-0"))

    assert info.value.code is BrokerErrorCode.RATE_LIMITED and "time budget" in info.value.message
    assert server.venue.orders(account_id) == []


# --------------------------------------------------------------------------------------------
# Trade suspension
# --------------------------------------------------------------------------------------------


def test_trade_suspension_set_and_cleared_at_the_venue_refuses_then_permits_orders(accounts, connection, server,
                                                                                  clock):
    alice, bob = accounts

    connection.set_trade_suspension(alice.account_id, True, clock=clock)
    with pytest.raises(BrokerError) as refused:
        alice.submit_order(order("c-1"))
    other = bob.submit_order(order("c-1"))
    suspended = alice.trade_suspended()
    connection.set_trade_suspension(alice.account_id, False, clock=clock)
    placed = alice.submit_order(order("c-1"))

    assert suspended is True and alice.trade_suspended() is False
    assert refused.value.code is BrokerErrorCode.REJECTED and "suspended" in refused.value.message
    assert other.state is OrderState.FILLED and placed.state is OrderState.FILLED
    assert len(venue_orders(server, alice, "c-1")) == 1


def test_the_trade_account_reports_the_suspension_flag(accounts, connection, clock):
    alice, _ = accounts
    connection.set_trade_suspension(alice.account_id, True, clock=clock)

    raw = connection.clients().broker.get_trade_account_by_id(alice.account_id)

    assert raw["trade_suspended_by_user"] is True and raw["id"] == alice.account_id


# --------------------------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------------------------


def test_secrets_never_appear_in_reprs_logs_or_errors(accounts, connection, server, caplog):
    alice, _ = accounts
    basic = base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
    caplog.set_level(logging.DEBUG)
    server.inject(f"POST {ORDERS.format(alice.account_id)}", "500")
    server.inject(f"GET {ORDERS.format(alice.account_id)}/*", "500", times=None)
    errors = []

    alice.submit_order(order("s-1"))  # logs the ambiguous submit and the lookup
    try:
        alice.get_order(str(uuid.uuid4()))
    except BrokerError as exc:
        errors.append(exc)
    for bad in (lambda: AlpacaBrokerApiConnection(KEY, ""), lambda: connection.account("not-a-uuid")):
        try:
            bad()
        except (BrokerError, ValueError) as exc:
            errors.append(exc)
    stranger = connection.account(str(uuid.uuid4()))
    try:
        stranger.get_account()
    except BrokerError as exc:
        errors.append(exc)

    texts = [repr(connection), str(connection), repr(alice), repr(stranger)]
    texts += [str(e) for e in errors] + [repr(e) for e in errors]
    texts += [record.getMessage() for record in caplog.records]
    assert len(errors) == 4 and any("ambiguous" in t for t in texts)
    for secret in (SECRET, basic):
        assert not [t for t in texts if secret in t]
    assert not [t for t in texts if KEY in t]


# --------------------------------------------------------------------------------------------
# The server's Broker API answers parse as alpaca-py's own models (raw_data=False)
# --------------------------------------------------------------------------------------------


def test_the_broker_api_routes_answer_in_shapes_alpaca_py_models_parse(server):
    from alpaca.broker.client import BrokerClient
    from alpaca.broker.requests import MarketOrderRequest
    from alpaca.trading.enums import OrderSide as AlpacaSide
    from alpaca.trading.enums import OrderStatus, TimeInForce

    account_id = server.open_account()
    client = BrokerClient(KEY, SECRET, sandbox=True, url_override=server.url)

    placed = client.submit_order_for_account(account_id, MarketOrderRequest(
        symbol="SPY", qty=3, side=AlpacaSide.BUY, time_in_force=TimeInForce.DAY, client_order_id="m-1"))
    found = client.get_order_for_account_by_client_id(account_id, "m-1")
    positions = client.get_all_positions_for_account(account_id)
    trade_account = client.get_trade_account_by_id(account_id)
    configuration = client.get_trade_configuration_for_account(account_id)
    account = client.get_account_by_id(account_id)

    assert placed.status is OrderStatus.FILLED and found.id == placed.id
    assert [(p.symbol, p.qty) for p in positions] == [("SPY", "3")]
    assert str(trade_account.id) == account_id and Decimal(trade_account.cash) < Decimal("1000000")
    assert configuration.suspend_trade is False
    assert str(account.id) == account_id


def test_a_multileg_option_order_lands_in_the_accounts_book(accounts, server):
    alice, bob = accounts
    legs = [("AAPL261218C00190000", OrderSide.BUY, 1), ("AAPL261218C00200000", OrderSide.SELL, 1)]

    placed = alice.submit_multileg_options("spread-1", legs, 2)

    assert placed.state is OrderState.FILLED and len(placed.legs) == 2
    assert len(venue_orders(server, alice, "spread-1")) == 1 and venue_orders(server, bob, "spread-1") == []
    assert {p.symbol for p in alice.get_positions()} == {"AAPL261218C00190000", "AAPL261218C00200000"}
    assert bob.get_positions() == []
