"""The OANDA adapter's pure parts: symbols, instrument metadata and its cross-check, the order body,
error classification and the wire parsing (no I/O; the HTTP behaviour is in
tests/integration/test_oanda_broker.py against the local OANDA server)."""
from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone
from decimal import Decimal as D
from pathlib import Path

import pytest

from backend.adapters.oanda.broker import order_body
from backend.adapters.oanda.client import OandaConfig, map_status, parse_retry_after
from backend.adapters.oanda.instruments import InstrumentInfo, cross_check, from_instrument, to_instrument
from backend.adapters.oanda.models import OrderCreateResponse, build_order_body, parse_time
from backend.domain.assets import AssetClass, default_registry
from backend.domain.errors import InvalidInput
from backend.ports.broker import BrokerErrorCode, OrderRequest, OrderSide, OrderType

EUR_USD = InstrumentInfo(name="EUR_USD", type="CURRENCY", pip_location=-4, display_precision=5,
                         trade_units_precision=0, minimum_trade_size=D("1"), margin_rate=D("0.02"))
XAU_USD = InstrumentInfo(name="XAU_USD", type="METAL", pip_location=-2, display_precision=3,
                         trade_units_precision=0, minimum_trade_size=D("1"), margin_rate=D("0.05"))


@pytest.mark.parametrize("symbol, instrument", [
    ("EUR/USD", "EUR_USD"), ("EURUSD", "EUR_USD"), ("eur/usd", "EUR_USD"), ("EUR_USD", "EUR_USD"),
    ("XAU/USD", "XAU_USD"), ("XAUUSD", "XAU_USD"), ("USD/JPY", "USD_JPY"),
])
def test_symbols_map_to_oanda_instrument_names(symbol, instrument):
    assert to_instrument(symbol) == instrument
    assert from_instrument(instrument) == to_instrument(symbol).replace("_", "/")


@pytest.mark.parametrize("symbol", ["AAPL", "GC=F", "BTC/USDT", "EU/USD"])
def test_symbols_oanda_does_not_trade_are_refused_as_invalid_input(symbol):
    with pytest.raises(InvalidInput):
        to_instrument(symbol)


def test_pip_price_step_and_units_step_come_from_the_instrument_metadata():
    assert (EUR_USD.pip, EUR_USD.price_increment, EUR_USD.units_step, EUR_USD.margin_pct) == (
        D("0.0001"), D("0.00001"), D("1"), D("2.00"))


def test_the_cross_check_agrees_for_eurusd_and_names_every_difference_for_gold():
    registry = default_registry()
    assert cross_check(EUR_USD, registry.spec_for("EUR/USD", AssetClass.FOREX)) == []
    problems = cross_check(XAU_USD, registry.spec_for("XAU/USD", AssetClass.COMMODITY))
    assert [p.split(":")[0] for p in problems] == ["units step", "margin"]  # pip 0.01 agrees


def request(side="buy", qty="100000", order_type=OrderType.MARKET, limit=None, tif="day", symbol="EUR/USD"):
    return OrderRequest(client_order_id="g1-leg_001", symbol=symbol, asset_class=AssetClass.FOREX,
                        side=OrderSide(side), qty=D(qty), order_type=order_type,
                        limit_price=None if limit is None else D(limit), time_in_force=tif)


def test_a_sell_is_negative_units_fill_or_kill_with_our_client_id():
    body = order_body(request(side="sell", qty="50000"), EUR_USD)
    assert body == {"order": {"type": "MARKET", "instrument": "EUR_USD", "units": "-50000", "timeInForce": "FOK",
                              "positionFill": "DEFAULT", "clientExtensions": {"id": "g1-leg_001"}}}


def test_a_day_limit_order_is_good_for_day_at_the_display_precision():
    body = order_body(request(order_type=OrderType.LIMIT, limit="1.08505"), EUR_USD)["order"]
    assert (body["type"], body["price"], body["timeInForce"], body["units"]) == ("LIMIT", "1.08505", "GFD", "100000")


@pytest.mark.parametrize("qty, limit, field", [("0.5", None, "qty"), ("1000", "1.085051", "limit_price")])
def test_sizes_and_prices_the_venue_cannot_take_are_refused_not_rounded(qty, limit, field):
    order_type = OrderType.LIMIT if limit else OrderType.MARKET
    with pytest.raises(InvalidInput) as caught:
        order_body(request(qty=qty, order_type=order_type, limit=limit), EUR_USD)
    assert caught.value.field == field


def test_the_order_body_refuses_a_market_order_that_could_rest():
    with pytest.raises(ValueError, match="FOK or IOC"):
        build_order_body(order_type="MARKET", instrument="EUR_USD", units="1", time_in_force="GTC", client_id="x")
    body = build_order_body(order_type="MARKET", instrument="EUR_USD", units="1", time_in_force="FOK",
                            client_id="x", price_bound="1.0860")
    assert body["order"]["priceBound"] == "1.0860"


@pytest.mark.parametrize("status, body, code, duplicate", [
    (400, {"orderRejectTransaction": {"rejectReason": "CLIENT_ORDER_ID_ALREADY_EXISTS"}}, BrokerErrorCode.DUPLICATE,
     True),
    (400, {"orderRejectTransaction": {"rejectReason": "INSUFFICIENT_MARGIN"}},
     BrokerErrorCode.INSUFFICIENT_BUYING_POWER, False),
    (400, {"errorCode": "MARKET_HALTED"}, BrokerErrorCode.REJECTED, False),
    (400, {"orderRejectTransaction": {"rejectReason": "UNITS_PRECISION_EXCEEDED"}}, BrokerErrorCode.INVALID, False),
    (401, {}, BrokerErrorCode.REJECTED, False),
    (404, {"errorCode": "NO_SUCH_ORDER"}, BrokerErrorCode.NOT_FOUND, False),
    (429, {}, BrokerErrorCode.RATE_LIMITED, False),
    (503, {}, BrokerErrorCode.UNAVAILABLE, False),
])
def test_http_answers_map_to_coded_errors(status, body, code, duplicate):
    failure = map_status(status, body, retry_after=None)
    assert (failure.error.code, failure.duplicate) == (code, duplicate)
    assert failure.ambiguous is (code is BrokerErrorCode.UNAVAILABLE)


def test_retry_after_reads_seconds_and_http_dates():
    now = datetime(2026, 1, 5, 14, 30, tzinfo=timezone.utc)
    assert parse_retry_after("2", now) == 2.0
    assert parse_retry_after("Mon, 05 Jan 2026 14:30:03 GMT", now) == 3.0
    assert parse_retry_after("soon", now) is None and parse_retry_after(None, now) is None


def test_rfc3339_times_with_nanoseconds_parse():
    assert parse_time("2026-01-05T14:30:00.123456789Z") == datetime(2026, 1, 5, 14, 30, 0, 123456, tzinfo=timezone.utc)


def test_a_create_answer_reads_decimals_from_strings_and_refuses_floats():
    data = {"orderCreateTransaction": {"id": "7", "type": "MARKET_ORDER", "units": "100000"},
            "orderFillTransaction": {"id": "8", "type": "ORDER_FILL", "units": "100000", "price": "1.08510"}}
    parsed = OrderCreateResponse.model_validate(data)
    assert parsed.order_fill_transaction.fill_price == D("1.0851")
    assert str(parsed.order_create_transaction.units) == "100000"
    data["orderFillTransaction"]["price"] = 1.0851
    with pytest.raises(ValueError):
        OrderCreateResponse.model_validate(data)


def test_config_never_shows_the_token_and_refuses_unknown_environments():
    config = OandaConfig(account_id="101-001-1-001", token="s3cret-token")
    assert "s3cret" not in repr(config) and config.url == "https://api-fxpractice.oanda.com"
    assert OandaConfig("a", "t", environment="live").url == "https://api-fxtrade.oanda.com"
    assert OandaConfig("a", "t", base_url="http://127.0.0.1:9/").url == "http://127.0.0.1:9"
    with pytest.raises(InvalidInput):
        OandaConfig("a", "t", environment="sandbox")
    with pytest.raises(InvalidInput) as caught:
        OandaConfig.from_env({"OANDA_API_TOKEN": "t"})
    assert caught.value.field == "OANDA_ACCOUNT_ID"
    config = OandaConfig.from_env({"OANDA_ACCOUNT_ID": "a", "OANDA_ENVIRONMENT": "LIVE"}, {"OANDA_API_TOKEN": "t"})
    assert (config.token, config.environment) == ("t", "live")


def test_importing_the_package_loads_neither_httpx_nor_the_broker():
    code = ("import sys, backend.adapters.oanda; "
            "print('httpx' in sys.modules, 'backend.adapters.oanda.broker' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.split() == ["False", "False"]
