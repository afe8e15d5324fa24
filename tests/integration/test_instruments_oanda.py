"""Instruments from OANDA's account instrument list (issue 19 item 2): ``OandaBroker.instrument``
over real HTTP (httpx) against the local OANDA-v20-compatible server. The list is fetched once per
process and account and reused by ``check_instrument`` and by order sizing alike."""
from __future__ import annotations

import time
from decimal import Decimal as D

import pytest

from backend.adapters.oanda import OandaBroker, OandaConfig
from backend.adapters.oanda.broker import forget_instruments
from backend.adapters.oanda.client import close_shared_clients
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.domain.errors import RejectCode
from backend.execution.broker_router import BrokerRouter
from backend.execution.instruments import check_instrument
from tests.support.group_harness import scenario
from tests.support.oanda_server import LocalOandaServer

TOKEN = "t0k3n-instruments"
FX, METAL = AssetClass.FOREX, AssetClass.COMMODITY
INSTRUMENTS = "/v3/accounts/{}/instruments"


@pytest.fixture
def oanda():
    forget_instruments()
    clock = ManualClock()
    srv = LocalOandaServer(scenario(), clock=clock, token=TOKEN,
                           instruments={"XAU_USD": {"tradeUnitsPrecision": 0, "minimumTradeSize": "1"}}).start()
    broker = OandaBroker(OandaConfig(srv.account_id, TOKEN, base_url=srv.url, timeout_seconds=1), clock=clock)
    yield srv, broker, clock
    srv.stop()
    close_shared_clients()
    forget_instruments()


def instrument_calls(srv, at_least: int = 1) -> int:
    """Instrument-list requests the server logged, once at least ``at_least`` are (the log trails
    the response by a moment)."""
    deadline = time.monotonic() + 2.0
    while True:
        count = sum(1 for r in list(srv.requests) if r.path == INSTRUMENTS.format(srv.account_id))
        if count >= at_least or time.monotonic() > deadline:
            return count
        time.sleep(0.005)


@pytest.mark.parametrize("symbol, klass, qty, limit", [("EUR/USD", FX, "100000", "1.08505"),
                                                       ("EURUSD", FX, "1", None),
                                                       ("XAU/USD", METAL, "2", "2350.125")])
def test_an_instrument_the_account_lists_passes(oanda, symbol, klass, qty, limit):
    _, broker, _ = oanda
    assert check_instrument(broker, symbol, klass, D(qty), None if limit is None else D(limit)) is None


@pytest.mark.parametrize("symbol, klass", [("ZAR/JPY", FX), ("EUR/USD", METAL), ("XAU/USD", FX), ("ZZZZQ", FX)])
def test_an_instrument_the_account_does_not_list_is_unknown(oanda, symbol, klass):
    _, broker, _ = oanda
    rejection = check_instrument(broker, symbol, klass, D("1"), None)
    assert rejection is not None and rejection.code is RejectCode.UNKNOWN_SYMBOL


def test_units_and_price_follow_the_instrument_exactly(oanda):
    _, broker, _ = oanda
    off_units = check_instrument(broker, "XAU/USD", METAL, D("1.5"), None)   # tradeUnitsPrecision 0
    off_price = check_instrument(broker, "EUR/USD", FX, D("1000"), D("1.085055"))  # displayPrecision 5
    assert off_units.code is RejectCode.BROKER_REJECTED and "lot step 1" in off_units.detail
    assert off_price.code is RejectCode.BROKER_REJECTED and "tick 0.00001" in off_price.detail
    assert "oanda:instruments" in off_units.detail


def test_the_instrument_list_is_fetched_once_for_checks_and_orders(oanda):
    srv, broker, _ = oanda
    for _ in range(3):
        assert check_instrument(broker, "EUR/USD", FX, D("1000"), None) is None
        assert check_instrument(broker, "GBP/USD", FX, D("1000"), None) is None
    broker.instrument_info("USD/JPY")  # order sizing reads the same cache
    assert instrument_calls(srv) == 1


def test_an_outage_of_the_instrument_list_fails_closed(oanda):
    srv, broker, _ = oanda
    srv.inject("GET /v3/accounts/*/instruments", "503", times=None)
    rejection = check_instrument(broker, "EUR/USD", FX, D("1000"), None)
    assert rejection is not None and rejection.code is RejectCode.BROKER_UNAVAILABLE
    srv.clear_faults()
    assert check_instrument(broker, "EUR/USD", FX, D("1000"), None) is None


def test_the_router_passes_fx_to_oanda(oanda):
    _, broker, _ = oanda
    router = BrokerRouter({FX: broker, METAL: broker})
    assert router.instrument_classes == frozenset({FX, METAL})
    assert check_instrument(router, "ZAR/JPY", FX, D("1"), None).code is RejectCode.UNKNOWN_SYMBOL


def test_unknown_symbols_refetch_the_list_at_most_once_a_minute(oanda):
    srv, broker, clock = oanda
    for _ in range(3):
        assert check_instrument(broker, "ZAR/JPY", FX, D("1"), None).code is RejectCode.UNKNOWN_SYMBOL
    assert instrument_calls(srv) == 1
    clock.advance(61)
    assert check_instrument(broker, "ZAR/JPY", FX, D("1"), None).code is RejectCode.UNKNOWN_SYMBOL
    assert instrument_calls(srv, 2) == 2
