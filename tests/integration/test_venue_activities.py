"""The broker capability ``get_activities(day)`` (daily cash reconciliation, issue 13 item 7) of each
venue adapter over real HTTP against the local servers, on a manual clock: only the account's own
fills, only those of the UTC day, exact Decimals, every page read.

- Alpaca Broker API: alpaca-py ``BrokerClient.get_account_activities`` → ``GET /v1/accounts/activities``
  (``FILL`` activities and the ``FEE`` activities the venue booked), paged by ``page_token``.
- Alpaca Trading API: alpaca-py 0.44's ``TradingClient`` has no activities call, so the day's fills come
  from the account's closed orders (``GET /v2/orders?status=closed``).
- OANDA v20: ``ORDER_FILL`` transactions read with ``transactions/sinceid``, page by page.
"""
from __future__ import annotations

import uuid
from datetime import date, datetime, timezone
from decimal import Decimal as D

import pytest

from backend.adapters import alpaca_broker_api
from backend.adapters.alpaca_broker import AlpacaBroker
from backend.adapters.alpaca_broker_api import AlpacaBrokerApiConnection
from backend.adapters.oanda import OandaBroker, OandaConfig
from backend.adapters.oanda.broker import forget_instruments
from backend.adapters.oanda.client import close_shared_clients
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.ports.activities import ActivityProvider
from backend.ports.broker import OrderRequest, OrderSide, OrderType
from backend.risk.reconciliation import venue_cash_effects
from tests.support.alpaca_server import LocalAlpacaServer
from tests.support.group_harness import scenario
from tests.support.oanda_server import LocalOandaServer

YESTERDAY_LATE = datetime(2026, 12, 6, 23, 59, 58, tzinfo=timezone.utc)
DAY = date(2026, 12, 7)
TOKEN = "t0k3n-activities"


def request(cid: str, side: str, qty: str, symbol: str = "SPY", klass: AssetClass = AssetClass.EQUITY,
            **extra) -> OrderRequest:
    return OrderRequest(client_order_id=cid, symbol=symbol, asset_class=klass, side=OrderSide(side), qty=D(qty),
                        **extra)


@pytest.fixture
def alpaca():
    clock = ManualClock(YESTERDAY_LATE)
    alpaca_broker_api.clear_client_cache()
    with LocalAlpacaServer("default", clock=clock) as server:
        yield server, clock
    alpaca_broker_api.clear_client_cache()


def test_broker_api_activities_are_the_accounts_fills_and_fees_of_the_day(alpaca):
    server, clock = alpaca
    mine, other = server.open_account(str(uuid.uuid4())), server.open_account(str(uuid.uuid4()))
    connection = AlpacaBrokerApiConnection("key-PK01", "secret-activities", sandbox=True, url_override=server.url)
    account = connection.account(mine)
    account.submit_order(request("c-yesterday", "buy", "1"))
    clock.advance(5)  # now the 7th
    bought = account.submit_order(request("c-buy", "buy", "10"))
    sold = account.submit_order(request("c-sell", "sell", "4"))
    connection.account(other).submit_order(request("c-buy", "buy", "99"))
    server.add_fee(mine, "-0.03", day=DAY)
    server.add_fee(mine, "-0.01", day=date(2026, 12, 6))

    day = account.get_activities(DAY)

    assert isinstance(account, ActivityProvider)
    assert [(f.side, f.qty, f.price, f.order_id) for f in day.fills] == [
        (OrderSide.SELL, D("4"), sold.filled_avg_price, sold.broker_order_id),
        (OrderSide.BUY, D("10"), bought.filled_avg_price, bought.broker_order_id)]
    assert [(f.kind, f.amount) for f in day.fees] == [("FEE", D("-0.03"))]
    assert venue_cash_effects([day])["USD"].amount == \
        -10 * bought.filled_avg_price + 4 * sold.filled_avg_price - D("0.03")


def test_broker_api_activities_are_read_past_alpacas_page_of_100(alpaca):
    server, clock = alpaca
    clock.advance(5)
    mine = server.open_account(str(uuid.uuid4()))
    for n in range(105):  # straight into the venue (no HTTP): 105 fills of one share
        order = server.venue.submit_order(request(f"bulk-{n}", "buy", "1"), account_id=mine)
        server.venue.get_order(order.broker_order_id, account_id=mine)
    account = AlpacaBrokerApiConnection("key-PK01", "secret-activities", sandbox=True,
                                        url_override=server.url).account(mine)

    day = account.get_activities(DAY)

    # the server answers at most 100 a page: all 105, each once, means alpaca-py's page_token walk was followed
    assert len(day.fills) == 105 and len({f.fill_id for f in day.fills}) == 105


def test_trading_api_fills_of_the_day_come_from_closed_orders(alpaca):
    server, clock = alpaca
    broker = AlpacaBroker("key-PK01", "secret-activities", paper=True, url_override=server.url, env={})
    broker.submit_order(request("t-yesterday", "buy", "2"))
    clock.advance(5)
    equity = broker.submit_order(request("t-buy", "buy", "3"))
    crypto = broker.submit_order(request("t-crypto", "sell", "0.5", "BTC/USD", AssetClass.CRYPTO))
    resting = broker.submit_order(request("t-rest", "buy", "1", order_type=OrderType.LIMIT,
                                          limit_price=D("1.00")))
    broker.cancel_order(resting.broker_order_id)  # closed, nothing filled

    day = broker.get_activities(DAY)

    assert sorted((f.client_order_id, f.symbol, f.side, f.qty, f.price) for f in day.fills) == [
        ("t-buy", "SPY", OrderSide.BUY, D("3"), equity.filled_avg_price),
        ("t-crypto", "BTC/USD", OrderSide.SELL, D("0.5"), crypto.filled_avg_price)]
    assert day.fees == ()  # orders carry no fees


@pytest.fixture
def oanda():
    clock = ManualClock(YESTERDAY_LATE)
    server = LocalOandaServer(scenario(None), clock=clock, token=TOKEN).start()
    broker = OandaBroker(OandaConfig(server.account_id, TOKEN, base_url=server.url, timeout_seconds=2), clock=clock)
    yield server, broker, clock
    server.stop()
    close_shared_clients()
    forget_instruments()


def test_oanda_activities_are_the_order_fill_transactions_of_the_day(oanda):
    server, broker, clock = oanda
    broker.submit_order(request("o-yesterday", "buy", "1000", "EUR/USD", AssetClass.FOREX))
    clock.advance(5)
    eur = broker.submit_order(request("o-eur", "buy", "2000", "EUR/USD", AssetClass.FOREX))
    jpy = broker.submit_order(request("o-jpy", "sell", "500", "USD/JPY", AssetClass.FOREX))
    broker.TRANSACTIONS_PAGE = 2  # every answer is a "full page": the walk reads on until an empty one

    day = broker.get_activities(DAY)

    assert [(f.symbol, f.side, f.qty, f.price, f.currency, f.client_order_id) for f in day.fills] == [
        ("EUR/USD", OrderSide.BUY, D("2000"), eur.filled_avg_price, "USD", "o-eur"),
        ("USD/JPY", OrderSide.SELL, D("500"), jpy.filled_avg_price, "JPY", "o-jpy")]
    assert day.fees == () and day.financing == ()  # the local server charges no commission or carry
    effects = venue_cash_effects([day])
    assert (effects["USD"].amount, effects["JPY"].amount) == (-2000 * eur.filled_avg_price,
                                                              500 * jpy.filled_avg_price)


def test_trading_api_closed_orders_are_read_page_by_page(alpaca):
    server, clock = alpaca
    clock.advance(5)
    broker = AlpacaBroker("key-PK01", "secret-activities", paper=True, url_override=server.url, env={})
    for n in range(5):
        broker.submit_order(request(f"p-{n}", "buy", "1"))
        clock.advance(1)
    broker.ORDERS_PAGE = 2  # Alpaca's limit is 500; two a page walks back through `until`

    day = broker.get_activities(DAY)

    assert sorted(f.client_order_id for f in day.fills) == [f"p-{n}" for n in range(5)]
    # the server honours limit=2: all five, each once, means the walk back through `until` was followed
    assert len(day.fills) == 5
