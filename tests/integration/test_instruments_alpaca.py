"""Instruments from Alpaca's assets endpoint (issue 19 item 2): the real alpaca-py ``TradingClient``
(``get_asset``, ``get_option_contract``) and ``BrokerClient`` (``get_asset``) against the local
Alpaca-compatible server over HTTP on 127.0.0.1. The server lists the scenario's symbols; anything
else is Alpaca's 404. Answers are cached per process, so repeated checks cost one HTTP call."""
from __future__ import annotations

import time
import uuid
from decimal import Decimal as D

import pytest

from backend.adapters import alpaca_broker_api
from backend.adapters.alpaca_broker import AlpacaBroker, forget_instruments
from backend.adapters.alpaca_broker_api import AlpacaBrokerApiConnection
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.domain.errors import RejectCode
from backend.execution.broker_router import BrokerRouter
from backend.execution.instruments import check_instrument
from tests.support.alpaca_server import LocalAlpacaServer

EQ, CR, OPT = AssetClass.EQUITY, AssetClass.CRYPTO, AssetClass.OPTIONS
SCENARIO = {
    "instruments_from": "default",
    "symbols": {"SOL/USD": {"asset_class": "CRYPTO", "mid": "150.00", "spread": "0.02"}},
    "instruments": {
        "SOL/USD": {"tick_size": "0.01", "lot_size": "0.001", "min_qty": "0.01"},
        "GME": {"asset_class": "EQUITY", "tradable": False},
        "TSLA": {"asset_class": "EQUITY", "fractionable": False},
        "AAPL261218P00150000": {"asset_class": "OPTIONS", "tradable": False},
    },
}


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def server(clock):
    forget_instruments()
    with LocalAlpacaServer(SCENARIO, clock=clock) as srv:
        yield srv
    forget_instruments()


@pytest.fixture
def alpaca(server, clock):
    return AlpacaBroker("key", "secret", url_override=server.url, timeout_seconds=2, clock=clock)


def requests_to(server, path: str, at_least: int) -> int:
    """How many ``GET path`` requests the server logged, once at least ``at_least`` are (the log
    trails the response by a moment)."""
    deadline = time.monotonic() + 2.0
    while True:
        count = sum(1 for r in list(server.requests) if r.method == "GET" and r.path == path)
        if count >= at_least or time.monotonic() > deadline:
            return count
        time.sleep(0.005)


@pytest.mark.parametrize("symbol, klass, qty, limit", [("AAPL", EQ, "1.5", "190.01"), ("SPY", EQ, "3", None),
                                                       ("BTC/USD", CR, "0.25", "65000"),
                                                       ("SOL/USD", CR, "0.015", "150.55"),
                                                       ("AAPL261218C00190000", OPT, "2", "15.00")])
def test_a_symbol_alpaca_lists_passes(alpaca, symbol, klass, qty, limit):
    assert check_instrument(alpaca, symbol, klass, D(qty), None if limit is None else D(limit)) is None


@pytest.mark.parametrize("symbol, klass", [("ZZZZQ", EQ), ("DOGE/USD", CR), ("AAPL261218C00999000", OPT)])
def test_a_symbol_alpaca_does_not_list_is_unknown(alpaca, symbol, klass):
    rejection = check_instrument(alpaca, symbol, klass, D("1"), None)
    assert rejection is not None and rejection.code is RejectCode.UNKNOWN_SYMBOL
    assert symbol in rejection.detail and "alpaca" in rejection.detail


@pytest.mark.parametrize("symbol, klass", [("GME", EQ), ("AAPL261218P00150000", OPT)])
def test_an_asset_alpaca_marks_not_tradable_is_refused(alpaca, symbol, klass):
    rejection = check_instrument(alpaca, symbol, klass, D("1"), None)
    assert rejection is not None and rejection.code is RejectCode.NOT_TRADABLE


def test_repeated_checks_make_one_http_call_per_symbol(alpaca, server):
    for _ in range(5):
        assert check_instrument(alpaca, "AAPL", EQ, D("1"), None) is None
        assert check_instrument(alpaca, "ZZZZQ", EQ, D("1"), None).code is RejectCode.UNKNOWN_SYMBOL
    assert requests_to(server, "/v2/assets/AAPL", 1) == 1
    assert requests_to(server, "/v2/assets/ZZZZQ", 1) == 1


def test_the_cache_is_per_process_not_per_broker_and_expires_after_its_ttl(alpaca, server, clock):
    other = AlpacaBroker("other-key", "other-secret", url_override=server.url, timeout_seconds=2, clock=clock)
    assert check_instrument(alpaca, "MSFT", EQ, D("1"), None) is None
    assert check_instrument(other, "MSFT", EQ, D("1"), None) is None
    assert requests_to(server, "/v2/assets/MSFT", 1) == 1
    clock.advance(alpaca.instrument_ttl_seconds + 1)
    assert check_instrument(other, "MSFT", EQ, D("1"), None) is None
    assert requests_to(server, "/v2/assets/MSFT", 2) == 2


def test_crypto_increments_come_from_the_venue_and_win_over_asset_specs(alpaca):
    # asset_specs gives crypto a tick of 1.0; Alpaca's SOL/USD record says 0.01
    assert check_instrument(alpaca, "SOL/USD", CR, D("0.02"), D("150.55")) is None
    below = check_instrument(alpaca, "SOL/USD", CR, D("0.005"), None)
    off_lot = check_instrument(alpaca, "SOL/USD", CR, D("0.0125"), None)
    off_tick = check_instrument(alpaca, "SOL/USD", CR, D("1"), D("150.555"))
    assert "minimum 0.01" in below.detail
    assert "lot step 0.001" in off_lot.detail
    assert "tick 0.01" in off_tick.detail
    assert {below.code, off_lot.code, off_tick.code} == {RejectCode.BROKER_REJECTED}


def test_a_stock_alpaca_does_not_fraction_trades_whole_shares(alpaca):
    assert check_instrument(alpaca, "TSLA", EQ, D("3"), None) is None
    rejection = check_instrument(alpaca, "TSLA", EQ, D("0.5"), None)
    assert rejection is not None and "lot step 1" in rejection.detail


def test_an_outage_fails_closed_and_is_not_cached(alpaca, server):
    server.inject("GET /v2/assets/*", "503", times=1)
    rejection = check_instrument(alpaca, "SPY", EQ, D("1"), None)
    # reads are retried within the budget: the one 503 is absorbed, so the answer is the venue's
    assert rejection is None
    server.inject("GET /v2/assets/*", "503", times=None)
    rejection = check_instrument(alpaca, "MSFT", EQ, D("1"), None)
    assert rejection is not None and rejection.code is RejectCode.BROKER_UNAVAILABLE
    assert "instrument metadata for MSFT unavailable" in rejection.detail
    server.clear_faults()
    assert check_instrument(alpaca, "MSFT", EQ, D("1"), None) is None


def test_the_router_reaches_alpacas_metadata_for_the_classes_routed_there(alpaca):
    router = BrokerRouter({EQ: alpaca, CR: alpaca})
    assert router.instrument_classes == frozenset({EQ, CR})
    assert check_instrument(router, "ZZZZQ", EQ, D("1"), None).code is RejectCode.UNKNOWN_SYMBOL
    assert check_instrument(router, "BTC/USD", CR, D("0.1"), None) is None


def test_the_broker_api_reads_the_same_assets_through_broker_client(server, clock):
    alpaca_broker_api.clear_client_cache()
    try:
        account_id = server.open_account(str(uuid.uuid4()))
        account = AlpacaBrokerApiConnection("bk", "bs", url_override=server.url, timeout_seconds=2).account(
            account_id, clock=clock)
        assert check_instrument(account, "AAPL", EQ, D("1"), None) is None
        assert check_instrument(account, "ZZZZQ", EQ, D("1"), None).code is RejectCode.UNKNOWN_SYMBOL
        assert check_instrument(account, "GME", EQ, D("1"), None).code is RejectCode.NOT_TRADABLE
        assert check_instrument(account, "BTC/USD", CR, D("0.1"), None) is None
        assert requests_to(server, "/v1/assets/AAPL", 1) == 1
        assert requests_to(server, "/v1/assets/BTCUSD", 1) == 1
        # BrokerClient has no option-contract call: options stay with the spec table's rules
        assert OPT not in account.instrument_classes
        assert check_instrument(account, "AAPL261218C00999000", OPT, D("1"), None) is None
    finally:
        alpaca_broker_api.clear_client_cache()
