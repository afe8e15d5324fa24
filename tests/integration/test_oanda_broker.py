"""OandaBroker over real HTTP against the local OANDA-v20-compatible server (tests/support/oanda_server.py)
on the simulated venue: orders, lookups, reads, and every fault of the issue — afterwards exactly one
order per client id at the venue, and the venue's position is what the adapter reported."""
from __future__ import annotations

import io
import json
import socket
import time
from decimal import Decimal as D

import httpx
import pytest

from backend.adapters.oanda import OandaBroker, OandaConfig
from backend.adapters.oanda.broker import forget_instruments
from backend.adapters.oanda.client import close_shared_clients
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.logs import set_stream
from backend.ports.broker import BrokerError, BrokerErrorCode, OrderRequest, OrderSide, OrderState, OrderType
from tests.support.group_harness import scenario
from tests.support.oanda_server import LocalOandaServer

TOKEN = "t0k3n-do-not-leak"
FX = AssetClass.FOREX
ORDERS = "POST /v3/accounts/*/orders"


@pytest.fixture
def oanda():
    """``oanda(symbols=None, buying_power=..., timeout=1.0, instruments=None)`` → (server, broker, clock)."""
    servers: list[LocalOandaServer] = []

    def make(symbols=None, *, buying_power="2000000", timeout=1.0, instruments=None):
        clock = ManualClock()
        srv = LocalOandaServer(scenario(symbols, buying_power=buying_power), clock=clock, token=TOKEN,
                               instruments=instruments).start()
        servers.append(srv)
        broker = OandaBroker(OandaConfig(srv.account_id, TOKEN, base_url=srv.url, timeout_seconds=timeout),
                             clock=clock)
        return srv, broker, clock

    yield make
    for srv in servers:
        srv.stop()
    close_shared_clients()
    forget_instruments()


def buy(cid="c-1", qty="100000", symbol="EUR/USD", **kw):
    return OrderRequest(client_order_id=cid, symbol=symbol, asset_class=kw.pop("asset_class", FX),
                        side=OrderSide(kw.pop("side", "buy")), qty=D(qty), **kw)


def posts(srv) -> int:
    return sum(1 for r in srv.requests if r.method == "POST")


def created(srv) -> int:
    """Orders OANDA created (its MARKET_ORDER / LIMIT_ORDER transactions)."""
    return sum(1 for t in srv.transactions() if t["type"] in ("MARKET_ORDER", "LIMIT_ORDER"))


def assert_one_order(srv, cid="c-1", net=D("100000"), symbol="EUR/USD"):
    assert srv.client_id_counts() == {cid: 1}
    assert srv.venue.net_position(symbol) == net


# ------------------------------------------------------------------------------------------ orders


def test_a_market_order_fills_at_the_touch_over_one_kept_alive_connection(oanda):
    srv, broker, _ = oanda()

    order = broker.submit_order(buy())

    assert (order.state, order.filled_qty, order.filled_avg_price, order.symbol) == (
        OrderState.FILLED, D("100000"), D("1.0851"), "EUR/USD")
    assert broker.get_order(order.broker_order_id) == order
    assert broker.get_order_by_client_id("c-1") == order
    assert_one_order(srv)
    assert srv.connections == 1  # instruments, lookup, POST, GETs: one TCP connection


def test_brokers_for_the_same_host_and_token_share_one_kept_alive_connection(oanda):
    srv, broker, clock = oanda()
    other = OandaBroker(OandaConfig(srv.account_id, TOKEN, base_url=srv.url, timeout_seconds=1), clock=clock)

    broker.get_account()
    other.get_positions()
    broker.get_latest_quote("EUR/USD", FX)

    assert srv.connections == 1 and len(srv.requests) == 3


def test_a_second_submit_with_the_same_client_id_returns_the_first_order_and_sends_nothing(oanda):
    srv, broker, _ = oanda()
    first = broker.submit_order(buy())

    again = broker.submit_order(buy())

    assert again.broker_order_id == first.broker_order_id and posts(srv) == 1
    assert_one_order(srv)


def test_the_local_server_executes_a_blind_resend_of_a_filled_order_twice_as_oanda_does(oanda):
    """Why the adapter never resends blind: OANDA refuses a known client id only while it is pending."""
    srv, _, _ = oanda()
    body = {"order": {"type": "MARKET", "instrument": "EUR_USD", "units": "1000", "timeInForce": "FOK",
                      "clientExtensions": {"id": "blind"}}}
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {TOKEN}"}) as raw:
        answers = [raw.post(f"/v3/accounts/{srv.account_id}/orders", json=body) for _ in range(2)]

    assert [a.status_code for a in answers] == [201, 201]
    assert srv.client_id_counts() == {"blind": 2} and srv.venue.net_position("EUR/USD") == D("2000")


def test_a_pending_limit_order_is_cancelled_once_and_a_second_cancel_changes_nothing(oanda):
    srv, broker, _ = oanda()
    order = broker.submit_order(buy(order_type=OrderType.LIMIT, limit_price=D("1.0000"), time_in_force="gtc"))
    assert order.state is OrderState.NEW

    broker.cancel_order(order.broker_order_id)
    broker.cancel_order(order.broker_order_id)

    assert broker.get_order(order.broker_order_id).state is OrderState.CANCELED
    assert srv.venue.net_position("EUR/USD") == 0


def test_a_sell_opens_a_short_and_positions_account_quotes_and_closes_read_back(oanda):
    srv, broker, _ = oanda()
    broker.submit_order(buy("s-1", "50000", "GBP/USD", side="sell"))
    broker.submit_order(buy("g-1", "2", "XAU/USD", asset_class=AssetClass.COMMODITY))

    positions = {p.symbol: p.qty for p in broker.get_positions()}
    account = broker.get_account()
    quote = broker.get_latest_quote("EURUSD", FX)
    closes = broker.get_recent_closes("EUR/USD", FX, 5)

    assert positions == {"GBP/USD": D("-50000"), "XAU/USD": D("2")}
    venue_account = srv.venue.get_account()
    assert (account.buying_power, account.equity, account.cash) == (
        venue_account.buying_power, venue_account.equity, venue_account.cash)
    assert (quote.bid, quote.ask) == (D("1.0849"), D("1.0851"))
    assert list(closes) == srv.venue.get_recent_closes("EUR/USD", 5, FX)


def test_a_refused_connection_fails_fast_as_unavailable_and_nothing_is_sent(oanda):
    _, _, clock = oanda()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nobody listens there
    broker = OandaBroker(OandaConfig("101-1", TOKEN, base_url=f"http://127.0.0.1:{port}", timeout_seconds=1),
                         clock=clock)

    with pytest.raises(BrokerError) as caught:
        broker.get_account()

    assert caught.value.code is BrokerErrorCode.UNAVAILABLE and "not sent" in caught.value.message


def test_a_wrong_token_is_refused_and_the_token_appears_in_no_error_or_repr(oanda):
    srv, _, clock = oanda()
    broker = OandaBroker(OandaConfig(srv.account_id, "wrong-" + TOKEN, base_url=srv.url), clock=clock)

    with pytest.raises(BrokerError) as caught:
        broker.submit_order(buy())

    assert caught.value.code is BrokerErrorCode.REJECTED and "HTTP 401" in caught.value.message
    assert TOKEN not in str(caught.value) and TOKEN not in repr(broker) and TOKEN not in repr(broker.config)
    assert srv.client_id_counts() == {}


# ------------------------------------------------------------------------------------------ faults


@pytest.mark.parametrize("kind, seconds, times", [
    ("503", 0, 1),  # answered: not processed → looked up, not found, resubmitted once
    ("500", 0, 2),
    ("drop", 0, 1),  # connection closed, nothing done → looked up, resubmitted
    ("timeout_after_accept", 2.0, 1),  # done, answer lost (read timeout) → found by client id
    ("429", 0, 3),  # refused three times, Retry-After honoured on the clock
])
def test_after_a_fault_on_submit_exactly_one_order_exists_and_it_is_returned(oanda, kind, seconds, times):
    srv, broker, _ = oanda()
    srv.inject(ORDERS, kind, times=times, seconds=seconds)

    order = broker.submit_order(buy())

    assert order.state is OrderState.FILLED and order.filled_qty == D("100000")
    assert_one_order(srv)
    if kind == "timeout_after_accept":
        assert created(srv) == 1  # never resent: the lookup found it


def test_a_response_lost_after_the_venue_acted_is_found_by_client_id_not_resent(oanda):
    srv, broker, _ = oanda()
    srv.venue.inject_fault("submit_order", "lost_response")

    order = broker.submit_order(buy())

    assert order.state is OrderState.FILLED and posts(srv) == 1 and created(srv) == 1
    assert_one_order(srv)


def test_a_stalled_submit_is_not_resent_and_the_late_order_is_found_by_client_id(oanda):
    srv, broker, _ = oanda(timeout=0.5)
    srv.inject(ORDERS, "stall", seconds=1.5)  # the venue acts after our read timeout

    with pytest.raises(BrokerError) as caught:
        broker.submit_order(buy())

    assert caught.value.code is BrokerErrorCode.UNAVAILABLE and "in flight" in caught.value.message
    deadline = time.monotonic() + 5
    while not srv.client_id_counts() and time.monotonic() < deadline:
        time.sleep(0.05)
    late = broker.get_order_by_client_id("c-1")
    assert late is not None and late.state is OrderState.FILLED
    assert broker.submit_order(buy()).broker_order_id == late.broker_order_id  # a retry adopts it
    assert posts(srv) == 1
    assert_one_order(srv)


def test_a_429_storm_ends_rate_limited_within_the_time_budget_and_nothing_is_placed(oanda):
    srv, broker, clock = oanda()
    srv.inject(ORDERS, "429", times=None, seconds=2)
    started = clock.monotonic()

    with pytest.raises(BrokerError) as caught:
        broker.submit_order(buy())

    assert caught.value.code is BrokerErrorCode.RATE_LIMITED
    assert posts(srv) == broker.config.max_rate_limit_retries + 1
    assert clock.monotonic() - started <= broker.config.time_budget_seconds
    assert srv.client_id_counts() == {} and srv.venue.net_position("EUR/USD") == 0


def test_insufficient_margin_is_a_coded_error_and_the_order_is_cancelled_unfilled(oanda):
    srv, broker, _ = oanda(buying_power="1000")

    with pytest.raises(BrokerError) as caught:
        broker.submit_order(buy())

    assert caught.value.code is BrokerErrorCode.INSUFFICIENT_BUYING_POWER
    assert caught.value.message.startswith("INSUFFICIENT_MARGIN")
    found = broker.get_order_by_client_id("c-1")
    assert found.state is OrderState.REJECTED and found.venue_status == "CANCELLED:INSUFFICIENT_MARGIN"
    with pytest.raises(BrokerError):  # a retry with the same id answers the same refusal, sends nothing
        broker.submit_order(buy())
    assert posts(srv) == 1 and srv.client_id_counts() == {"c-1": 1}
    assert srv.venue.net_position("EUR/USD") == 0


@pytest.mark.parametrize("how", ["injected", "halted"])
def test_a_halted_market_refuses_the_order_with_market_halted(oanda, how):
    srv, broker, _ = oanda()
    if how == "injected":
        srv.inject(ORDERS, "market_halted")
    else:
        srv.halt("EUR_USD")

    with pytest.raises(BrokerError) as caught:
        broker.submit_order(buy())

    assert caught.value.code is BrokerErrorCode.REJECTED and caught.value.message.startswith("MARKET_HALTED")
    assert srv.venue.net_position("EUR/USD") == 0
    if how == "halted":
        with pytest.raises(BrokerError, match="MARKET_HALTED"):
            broker.get_latest_quote("EUR/USD", FX)


def test_reads_retry_transient_failures_within_the_budget(oanda):
    srv, broker, _ = oanda()
    srv.inject("GET /v3/accounts/*/summary", "503", times=2)

    account = broker.get_account()

    assert account.equity == srv.venue.get_account().equity
    assert [r.status for r in srv.requests if r.path.endswith("/summary")] == [503, 503, 200]


# ------------------------------------------------------------------------------------------ instruments


def test_the_venues_units_precision_wins_and_a_spec_mismatch_is_logged_once(oanda):
    srv, broker, _ = oanda(instruments={"XAU_USD": {"tradeUnitsPrecision": 0, "minimumTradeSize": "1"}})
    lines = io.StringIO()
    set_stream(lines)
    try:
        with pytest.raises(BrokerError) as caught:
            broker.submit_order(buy("g-1", "1.5", "XAU/USD", asset_class=AssetClass.COMMODITY))
        order = broker.submit_order(buy("g-2", "2", "XAU/USD", asset_class=AssetClass.COMMODITY))
    finally:
        set_stream(None)

    assert caught.value.code is BrokerErrorCode.INVALID and "tradeUnitsPrecision 0" in caught.value.message
    assert order.state is OrderState.FILLED and posts(srv) == 1  # the refused size never left the process
    events = [json.loads(line) for line in lines.getvalue().splitlines()]
    mismatches = [e for e in events if e["event"] == "oanda.instrument_spec_mismatch"]
    assert len(mismatches) == 1 and mismatches[0]["instrument"] == "XAU_USD"
    assert any(p.startswith("units step") for p in mismatches[0]["problems"])


def test_when_the_client_id_lookup_lags_the_order_is_found_in_the_transactions_since_the_last_id(oanda):
    srv, broker, _ = oanda()
    srv.inject("GET /v3/accounts/*/orders/@c-1", "404", times=2)  # OANDA's client-id index not yet updated
    srv.inject(ORDERS, "timeout_after_accept", seconds=2.0)  # done, answer lost

    order = broker.submit_order(buy())

    assert order.state is OrderState.FILLED and order.client_order_id == "c-1"
    assert any(r.path.endswith("/transactions/sinceid") for r in srv.requests)
    assert created(srv) == 1
    assert_one_order(srv)


# ------------------------------------------------------------------------------- priceBound (issue 14)


def test_a_market_order_carries_its_price_bound_and_fills_within_it(oanda):
    srv, broker, _ = oanda()
    ask = broker.get_latest_quote("EUR/USD", FX).ask
    order = broker.submit_order(buy(price_bound=ask + D("0.00013")))

    assert order.state is OrderState.FILLED and order.filled_avg_price <= ask + D("0.00013")
    sent = [t for t in srv.transactions() if t["type"] == "MARKET_ORDER"][-1]
    # outward to the instrument's 5 decimals: a buy's bound rounds up, never below the touch
    assert D(sent["priceBound"]) == (ask + D("0.00013")).quantize(D("0.00001"))
    assert_one_order(srv)


def test_a_market_order_beyond_its_price_bound_is_cancelled_by_the_venue_not_filled(oanda):
    srv, broker, _ = oanda()
    ask = broker.get_latest_quote("EUR/USD", FX).ask
    with pytest.raises(BrokerError) as refused:  # the touch is already worse than the bound
        broker.submit_order(buy(price_bound=ask - D("0.0005")))

    assert refused.value.code is BrokerErrorCode.REJECTED and "BOUNDS_VIOLATION" in refused.value.message
    assert srv.venue.net_position("EUR/USD") == 0
    assert any(t.get("reason") == "BOUNDS_VIOLATION" for t in srv.transactions() if t["type"] == "ORDER_CANCEL")


def test_only_a_market_order_takes_a_price_bound():
    with pytest.raises(ValueError, match="price_bound"):
        buy(order_type=OrderType.LIMIT, limit_price=D("1.1"), price_bound=D("1.2"))
