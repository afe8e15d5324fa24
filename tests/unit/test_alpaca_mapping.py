"""AlpacaBroker without a network: status table, error and symbol mapping, wire parsing, the
submit idempotency rules (against a hand-written stub trading client), lazy SDK import."""
from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from backend.adapters.alpaca_broker import (
    ALPACA_STATUS_TO_STATE,
    AlpacaBroker,
    AlpacaClients,
    classify_exception,
    domain_symbol,
    map_api_error,
    map_order_state,
    order_from_raw,
    order_symbol,
    parse_timestamp,
    position_from_raw,
    position_symbol,
    to_wire_number,
    validate_multileg,
)
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.domain.errors import RejectCode
from backend.ports.broker import (
    BrokerError,
    BrokerErrorCode,
    BrokerPort,
    OrderRequest,
    OrderSide,
    OrderState,
    OrderType,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
Code = BrokerErrorCode
S = OrderState

# --------------------------------------------------------------------------------------------
# Status table: every value of alpaca's OrderStatus, unfilled / partially filled / fully filled
# --------------------------------------------------------------------------------------------

STATUS_TABLE = {
    #  status                 qty=10 filled=0     filled=4             filled=10
    "new":                   (S.NEW,             S.NEW,               S.NEW),
    "accepted":              (S.PENDING_NEW,     S.PENDING_NEW,       S.PENDING_NEW),
    "pending_new":           (S.PENDING_NEW,     S.PENDING_NEW,       S.PENDING_NEW),
    "pending_review":        (S.PENDING_NEW,     S.PENDING_NEW,       S.PENDING_NEW),
    "accepted_for_bidding":  (S.NEW,             S.NEW,               S.NEW),
    "held":                  (S.NEW,             S.PARTIALLY_FILLED,  S.FILLED),
    "partially_filled":      (S.PARTIALLY_FILLED, S.PARTIALLY_FILLED, S.PARTIALLY_FILLED),
    "filled":                (S.FILLED,          S.FILLED,            S.FILLED),
    "pending_cancel":        (S.NEW,             S.PARTIALLY_FILLED,  S.FILLED),
    "pending_replace":       (S.NEW,             S.PARTIALLY_FILLED,  S.FILLED),
    "stopped":               (S.NEW,             S.PARTIALLY_FILLED,  S.FILLED),
    "suspended":             (S.NEW,             S.PARTIALLY_FILLED,  S.FILLED),
    "done_for_day":          (S.NEW,             S.PARTIALLY_FILLED,  S.FILLED),
    "calculated":            (S.NEW,             S.PARTIALLY_FILLED,  S.FILLED),
    "canceled":              (S.CANCELED,        S.CANCELED,          S.CANCELED),
    "replaced":              (S.CANCELED,        S.CANCELED,          S.CANCELED),
    "expired":               (S.EXPIRED,         S.EXPIRED,           S.EXPIRED),
    "rejected":              (S.REJECTED,        S.REJECTED,          S.REJECTED),
}


def test_the_status_table_covers_every_alpaca_order_status():
    from alpaca.trading.enums import OrderStatus

    values = {status.value for status in OrderStatus}

    assert values == set(STATUS_TABLE)
    assert values == set(ALPACA_STATUS_TO_STATE)  # every value explicitly decided, none by fallback


@pytest.mark.parametrize("status", sorted(STATUS_TABLE))
@pytest.mark.parametrize("filled, column", [("0", 0), ("4", 1), ("10", 2)])
def test_alpaca_status_maps_to_order_state(status, filled, column):
    assert map_order_state(status, Decimal("10"), Decimal(filled)) is STATUS_TABLE[status][column]


def test_an_unknown_future_status_is_treated_as_working_not_final():
    state = map_order_state("brand_new_status", Decimal("10"), Decimal("0"))

    assert state is S.NEW and not state.is_final


# --------------------------------------------------------------------------------------------
# Error mapping
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status, code, message, expected", [
    (403, 40310000, "insufficient buying power", Code.INSUFFICIENT_BUYING_POWER),
    (403, 40310000, "insufficient balance for USD (requested: 100, available: 5)", Code.INSUFFICIENT_BUYING_POWER),
    (403, 40310000, "insufficient qty available for order (requested: 5, available: 1)", Code.REJECTED),
    (403, 40310000, "account is not allowed to short", Code.REJECTED),
    (403, 40310000, "potential wash trade detected. use complex orders", Code.REJECTED),
    (403, 40310100, "trade denied due to pattern day trading protection", Code.REJECTED),
    (401, 40110000, "request is not authorized", Code.REJECTED),
    (422, 40010001, "client_order_id must be unique", Code.DUPLICATE),
    (422, 40010001, "qty must be > 0", Code.INVALID),
    (422, 42210000, "asset XYZ is not tradable", Code.REJECTED),
    (400, None, "invalid json", Code.INVALID),
    (404, 40410000, "order not found", Code.NOT_FOUND),
    (429, None, "rate limit exceeded", Code.RATE_LIMITED),
    (408, None, "request timeout", Code.UNAVAILABLE),
    (500, None, "internal server error", Code.UNAVAILABLE),
    (502, None, "bad gateway", Code.UNAVAILABLE),
    (503, None, "service unavailable", Code.UNAVAILABLE),
    (504, None, "gateway timeout", Code.UNAVAILABLE),
])
def test_http_errors_map_to_broker_error_codes(status, code, message, expected):
    failure = map_api_error(status, code, message)

    assert failure.error.code is expected
    assert failure.duplicate is (expected is Code.DUPLICATE)
    assert str(status) in failure.error.message


def _api_error(status: int, body: Any, headers: dict[str, str] | None = None) -> Exception:
    import requests
    from alpaca.common.exceptions import APIError

    text = body if isinstance(body, str) else json.dumps(body)
    response = requests.Response()
    response.status_code = status
    response._content = text.encode()
    response.headers.update(headers or {})
    return APIError(text, requests.HTTPError(response=response))


def test_a_real_api_error_is_classified_with_its_retry_after_header():
    exc = _api_error(429, {"code": 42910000, "message": "rate limit exceeded"}, {"Retry-After": "2"})

    failure = classify_exception(exc)

    assert failure.error.code is Code.RATE_LIMITED
    assert failure.error.retry_after == 2.0
    assert failure.error.retryable


def test_retry_after_as_an_http_date_is_measured_on_the_injected_clock():
    clock = ManualClock()  # 2026-01-05 14:30:00 UTC
    exc = _api_error(429, "slow down", {"Retry-After": "Mon, 05 Jan 2026 14:30:05 GMT"})

    assert classify_exception(exc, clock=clock).error.retry_after == 5.0


def test_a_non_json_error_body_still_maps():
    failure = classify_exception(_api_error(502, "<html>Bad Gateway</html>"))

    assert failure.error.code is Code.UNAVAILABLE
    assert "Bad Gateway" in failure.error.message


def test_transport_errors_map_to_unavailable_and_say_whether_anything_was_sent():
    import requests
    from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

    refused = requests.ConnectionError(MaxRetryError(None, "/v2/orders", NewConnectionError(None, "refused")))
    dropped = requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError()))

    cases = {
        "refused": (refused, True),
        "connect timeout": (requests.ConnectTimeout("connect timed out"), True),
        "dropped": (dropped, False),
        "read timeout": (requests.ReadTimeout("read timed out"), False),
        "bad body": (requests.exceptions.InvalidJSONError("not json"), False),
    }
    for name, (exc, never_sent) in cases.items():
        failure = classify_exception(exc)
        assert failure.error.code is Code.UNAVAILABLE, name
        assert failure.never_sent is never_sent, name


def test_validation_errors_are_invalid_and_programming_errors_are_not_swallowed():
    assert classify_exception(ValueError("qty must be positive")).error.code is Code.INVALID
    assert classify_exception(KeyError("id")) is None


def test_broker_errors_become_coded_rejections():
    assert BrokerError(Code.INSUFFICIENT_BUYING_POWER).to_rejection().code is RejectCode.BROKER_INSUFFICIENT_BUYING_POWER
    assert BrokerError(Code.UNSUPPORTED, "x").to_rejection().code is RejectCode.NO_VENUE_FOR_ASSET_CLASS


# --------------------------------------------------------------------------------------------
# Symbols
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("symbol, asset_class, for_orders, for_positions", [
    ("BTC/USD", AssetClass.CRYPTO, "BTC/USD", "BTCUSD"),
    ("BTCUSD", AssetClass.CRYPTO, "BTC/USD", "BTCUSD"),
    ("eth/usd", AssetClass.CRYPTO, "ETH/USD", "ETHUSD"),
    ("aapl", AssetClass.EQUITY, "AAPL", "AAPL"),
    ("AAPL  260116C00150000", AssetClass.OPTIONS, "AAPL260116C00150000", "AAPL260116C00150000"),
])
def test_symbols_for_orders_and_position_paths(symbol, asset_class, for_orders, for_positions):
    assert order_symbol(symbol, asset_class) == for_orders
    assert position_symbol(symbol, asset_class) == for_positions


@pytest.mark.parametrize("venue_symbol, venue_class, expected", [
    ("BTCUSD", "crypto", "BTC/USD"),
    ("BTC/USD", "crypto", "BTC/USD"),
    ("ETHUSD", None, "ETH/USD"),
    ("AAPL", "us_equity", "AAPL"),
    ("SPY260116P00500000", "us_option", "SPY260116P00500000"),
])
def test_symbols_coming_back_from_alpaca_map_to_ours(venue_symbol, venue_class, expected):
    assert domain_symbol(venue_symbol, venue_class) == expected


def test_an_equity_ticker_is_not_an_option_symbol():
    with pytest.raises(Exception):
        order_symbol("AAPL", AssetClass.OPTIONS)


# --------------------------------------------------------------------------------------------
# Wire parsing
# --------------------------------------------------------------------------------------------

ORDER_JSON = {
    "id": "61e69015-8549-4bfd-b9c3-01e75843f47d",
    "client_order_id": "intent-1-leg-0",
    "created_at": "2026-01-05T14:30:00.123456789Z",
    "updated_at": "2026-01-05T14:30:01Z",
    "submitted_at": "2026-01-05T14:30:00.5Z",
    "symbol": "BTC/USD",
    "asset_class": "crypto",
    "qty": "0.000123",
    "filled_qty": "0.0001",
    "filled_avg_price": "43210.123456789",
    "side": "buy",
    "type": "market",
    "time_in_force": "gtc",
    "status": "partially_filled",
    "extended_hours": False,
    "order_class": "",
}


def test_an_order_parses_with_exact_decimals_and_keeps_the_venue_status():
    order = order_from_raw(ORDER_JSON)

    assert order.symbol == "BTC/USD"
    assert order.qty == Decimal("0.000123") and str(order.qty) == "0.000123"
    assert order.filled_qty == Decimal("0.0001")
    assert str(order.filled_avg_price) == "43210.123456789"
    assert order.remaining_qty == Decimal("0.000023")
    assert order.state is S.PARTIALLY_FILLED and order.venue_status == "partially_filled"
    assert order.submitted_at.isoformat() == "2026-01-05T14:30:00.500000+00:00"


def test_numbers_sent_as_json_floats_become_their_shortest_decimal():
    order = order_from_raw({**ORDER_JSON, "qty": 0.3, "filled_qty": 0.1, "filled_avg_price": 101.1})

    assert (order.qty, order.filled_qty, order.filled_avg_price) == (Decimal("0.3"), Decimal("0.1"), Decimal("101.1"))


def test_a_zero_average_price_before_any_fill_is_none():
    order = order_from_raw({**ORDER_JSON, "status": "new", "filled_qty": "0", "filled_avg_price": "0"})

    assert order.filled_avg_price is None and order.state is S.NEW


def test_an_mleg_order_parses_its_legs_and_takes_the_underlying_as_symbol():
    leg = {**ORDER_JSON, "asset_class": "us_option", "qty": "2", "filled_qty": "0", "filled_avg_price": None,
           "status": "new"}
    raw = {**ORDER_JSON, "symbol": None, "side": None, "asset_class": None, "qty": "1", "filled_qty": "0",
           "filled_avg_price": None, "status": "new", "order_class": "mleg",
           "legs": [{**leg, "id": "a1e69015-8549-4bfd-b9c3-01e75843f47d", "symbol": "AAPL260116C00150000",
                     "side": "buy"},
                    {**leg, "id": "b1e69015-8549-4bfd-b9c3-01e75843f47d", "symbol": "AAPL260116C00160000",
                     "side": "sell"}]}

    order = order_from_raw(raw)

    assert order.symbol == "AAPL"
    assert [(leg.symbol, leg.side) for leg in order.legs] == [
        ("AAPL260116C00150000", OrderSide.BUY), ("AAPL260116C00160000", OrderSide.SELL)]
    assert order.side is OrderSide.BUY


def test_positions_map_crypto_symbols_back_and_shorts_are_negative():
    crypto = position_from_raw({"symbol": "BTCUSD", "asset_class": "crypto", "qty": "0.5", "side": "long",
                                "avg_entry_price": "40000.5"})
    short = position_from_raw({"symbol": "TSLA", "asset_class": "us_equity", "qty": "3", "side": "short",
                               "avg_entry_price": "200"})

    assert (crypto.symbol, crypto.qty, crypto.avg_entry_price) == ("BTC/USD", Decimal("0.5"), Decimal("40000.5"))
    assert short.qty == Decimal("-3")


def test_nanosecond_timestamps_parse():
    assert parse_timestamp("2026-01-05T14:30:00.123456789Z").microsecond == 123456
    assert parse_timestamp("2026-01-05T09:30:00-05:00").hour == 14


@pytest.mark.parametrize("value, sendable", [
    ("0.5", True), ("1", True), ("0.000001", True), ("43210.12", True),
    ("0.12345678901234567890", False), ("12345678901234567.5", False),
])
def test_decimals_are_sent_as_floats_only_when_exact(value, sendable):
    if sendable:
        assert Decimal(repr(to_wire_number(Decimal(value), "qty"))) == Decimal(value)
    else:
        with pytest.raises(BrokerError) as info:
            to_wire_number(Decimal(value), "qty")
        assert info.value.code is Code.INVALID


# --------------------------------------------------------------------------------------------
# Multi-leg validation
# --------------------------------------------------------------------------------------------

C150, C160, C170 = "AAPL260116C00150000", "AAPL260116C00160000", "AAPL260116C00170000"


@pytest.mark.parametrize("legs, qty, problem", [
    ([(C150, "buy", 1)], 1, "2 to 4 legs"),
    ([(C150, "buy", 1)] * 5, 1, "2 to 4 legs"),
    ([(C150, "buy", 1), (C150, "sell", 1)], 1, "unique"),
    ([(C150, "buy", 1), ("MSFT260116C00150000", "sell", 1)], 1, "one underlying"),
    ([(C150, "buy", 1), ("AAPL", "sell", 1)], 1, "not an OCC option symbol"),
    ([(C150, "hold", 1), (C160, "sell", 1)], 1, "buy or sell"),
    ([(C150, "buy", 0), (C160, "sell", 1)], 1, "positive integer"),
    ([(C150, "buy", 1.5), (C160, "sell", 1)], 1, "positive integer"),
    ([(C150, "buy", 2), (C160, "sell", 4)], 1, "lowest terms"),
    ([(C150, "buy", 1), (C160, "sell", 1)], Decimal("1.5"), "whole number"),
    ([(C150, "buy", 1), (C160, "sell", 1)], 0, "whole number"),
])
def test_invalid_multileg_orders_are_refused_before_sending(legs, qty, problem):
    with pytest.raises(BrokerError) as info:
        validate_multileg(legs, qty)

    assert info.value.code is Code.INVALID
    assert problem in info.value.message and info.value.message.startswith("MLEG_INVALID")


def test_a_butterfly_is_a_valid_multileg_order():
    legs = validate_multileg([(C150, "buy", 1), (C160, OrderSide.SELL, 2), (C170, "buy", 1)], 3)

    assert legs == [(C150, OrderSide.BUY, 1), (C160, OrderSide.SELL, 2), (C170, OrderSide.BUY, 1)]


# --------------------------------------------------------------------------------------------
# Construction, configuration, asset classes
# --------------------------------------------------------------------------------------------


def _request(asset_class=AssetClass.EQUITY, symbol="AAPL", **kw) -> OrderRequest:
    fields = dict(client_order_id="intent-1-leg-0", symbol=symbol, asset_class=asset_class,
                  side=OrderSide.BUY, qty=Decimal("1"))
    fields.update(kw)
    return OrderRequest(**fields)


def test_constructs_without_credentials_and_fails_calls_with_a_coded_error():
    broker = AlpacaBroker(env={})

    with pytest.raises(BrokerError) as info:
        broker.get_account()

    assert broker.name == "alpaca" and broker.paper is True
    assert info.value.code is Code.UNAVAILABLE
    assert info.value.message == "no Alpaca credentials configured"
    assert isinstance(broker, BrokerPort)


@pytest.mark.parametrize("env, explicit, paper", [
    ({}, None, True),
    ({"ALPACA_PAPER": "1"}, None, True),
    ({"ALPACA_PAPER": "0"}, None, False),
    ({"ALPACA_PAPER": "false"}, None, False),
    ({"ALPACA_PAPER": "0"}, True, True),
    ({}, False, False),
])
def test_paper_is_the_default_and_live_must_be_asked_for(env, explicit, paper):
    assert AlpacaBroker(env=env, paper=explicit).paper is paper


def test_an_unreadable_paper_flag_fails_loudly():
    with pytest.raises(ValueError):
        AlpacaBroker(env={"ALPACA_PAPER": "maybe"})


def test_keys_come_from_the_environment_when_not_passed():
    broker = AlpacaBroker(env={"ALPACA_API_KEY": "PKTESTKEY", "ALPACA_SECRET_KEY": "SECRETVALUE"})

    assert (broker._api_key, broker._secret_key) == ("PKTESTKEY", "SECRETVALUE")
    assert "PKTESTKEY" not in repr(broker) and "SECRETVALUE" not in repr(broker)


@pytest.mark.parametrize("asset_class, supported", [
    (AssetClass.EQUITY, True), (AssetClass.CRYPTO, True), (AssetClass.OPTIONS, True),
    (AssetClass.FOREX, False), (AssetClass.COMMODITY, False),
])
def test_supported_asset_classes(asset_class, supported):
    assert AlpacaBroker(env={}).supports(asset_class) is supported


@pytest.mark.parametrize("asset_class, symbol", [(AssetClass.FOREX, "EUR/USD"), (AssetClass.COMMODITY, "XAU/USD")])
def test_fx_and_commodities_are_refused_before_any_client_exists(asset_class, symbol):
    broker = AlpacaBroker("k", "s", url_override="http://127.0.0.1:9")

    with pytest.raises(BrokerError) as info:
        broker.submit_order(_request(asset_class, symbol))

    assert info.value.code is Code.UNSUPPORTED
    assert info.value.message == f"NO_VENUE_FOR_ASSET_CLASS: {asset_class.value}"
    assert broker._clients_cache is None


def test_clients_get_a_default_timeout_and_no_sdk_retries():
    broker = AlpacaBroker("k", "s", url_override="http://127.0.0.1:9", timeout_seconds=1.5)

    clients = broker._clients()

    for client in (clients.trading, clients.stock, clients.crypto, clients.option):
        assert client._retry == 0 and client._retry_codes == []
        assert client._session.default_timeout == 1.5
        assert client._session.trust_env is False  # loopback override: never via an env proxy
        assert client._use_raw_data is True
    assert clients.trading._base_url == "http://127.0.0.1:9"
    assert clients.crypto._base_url == "http://127.0.0.1:9"  # data defaults to the same override


def test_asset_spec_methods_come_from_the_registry():
    broker = AlpacaBroker(env={})

    assert broker.get_asset_spec("AAPL260116C00150000").multiplier == Decimal("100")
    assert broker.normalize_slippage("AAPL", 1, Decimal("100.00"), Decimal("100.03")) == Decimal("3")


# --------------------------------------------------------------------------------------------
# Submit idempotency, against a stub trading client that records calls
# --------------------------------------------------------------------------------------------


def _order_json(client_order_id: str, status: str = "new") -> dict[str, Any]:
    return {**ORDER_JSON, "symbol": "AAPL", "asset_class": "us_equity", "qty": "1", "filled_qty": "0",
            "filled_avg_price": None, "status": status, "client_order_id": client_order_id}


class StubTrading:
    """Plays back scripted outcomes for submit and lookup; records every call."""

    def __init__(self, submits: list[Any], lookups: list[Any] | None = None):
        self.submits = list(submits)
        self.lookups = list(lookups or [])
        self.calls: list[str] = []

    @staticmethod
    def _play(outcomes: list[Any]) -> Any:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def submit_order(self, request: Any) -> Any:
        self.calls.append(f"submit {request.client_order_id}")
        return self._play(self.submits)

    def get_order_by_client_id(self, client_id: str) -> Any:
        self.calls.append(f"lookup {client_id}")
        return self._play(self.lookups)


def _broker_with(stub: StubTrading, clock: ManualClock | None = None, **kw) -> AlpacaBroker:
    broker = AlpacaBroker("k", "s", clock=clock or ManualClock(), **kw)
    broker._clients_cache = AlpacaClients(stub, None, None, None)
    return broker


def _read_timeout() -> Exception:
    import requests

    return requests.ReadTimeout("read timed out")


def _refused() -> Exception:
    import requests
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    return requests.ConnectionError(MaxRetryError(None, "/v2/orders", NewConnectionError(None, "refused")))


NOT_FOUND = {"code": 40410000, "message": "order not found"}
DUPLICATE = {"code": 40010001, "message": "client_order_id must be unique"}


def test_a_duplicate_client_id_returns_the_existing_order_without_resubmitting():
    stub = StubTrading([_api_error(422, DUPLICATE)], [_order_json("c-1", "filled")])

    order = _broker_with(stub).submit_order(_request(client_order_id="c-1"))

    assert order.client_order_id == "c-1" and order.state is S.FILLED
    assert stub.calls == ["submit c-1", "lookup c-1"]


def test_a_timeout_after_submit_looks_up_first_and_returns_the_placed_order():
    stub = StubTrading([_read_timeout()], [_order_json("c-2")])

    order = _broker_with(stub).submit_order(_request(client_order_id="c-2"))

    assert order.client_order_id == "c-2"
    assert stub.calls == ["submit c-2", "lookup c-2"]


def test_a_5xx_not_at_the_venue_is_resubmitted_with_the_same_client_id_only_after_the_lookup():
    stub = StubTrading([_api_error(500, "oops"), _order_json("c-3")], [_api_error(404, NOT_FOUND)])

    order = _broker_with(stub).submit_order(_request(client_order_id="c-3"))

    assert order.client_order_id == "c-3"
    assert stub.calls == ["submit c-3", "lookup c-3", "submit c-3"]


def test_when_the_lookup_is_impossible_the_outcome_is_unknown_and_nothing_is_resubmitted():
    stub = StubTrading([_read_timeout()], [_read_timeout(), _read_timeout(), _read_timeout()])

    with pytest.raises(BrokerError) as info:
        _broker_with(stub).submit_order(_request(client_order_id="c-4"))

    assert info.value.code is Code.UNAVAILABLE and "outcome unknown" in info.value.message
    assert [call for call in stub.calls if call.startswith("submit")] == ["submit c-4"]


def test_a_refused_connection_fails_fast_without_lookup_or_retry():
    stub = StubTrading([_refused()])

    with pytest.raises(BrokerError) as info:
        _broker_with(stub).submit_order(_request(client_order_id="c-5"))

    assert info.value.code is Code.UNAVAILABLE
    assert stub.calls == ["submit c-5"]


def test_rate_limits_back_off_on_the_clock_honoring_retry_after():
    clock = ManualClock()
    limited = _api_error(429, "slow down", {"Retry-After": "1.5"})
    stub = StubTrading([limited, _api_error(429, "slow down"), _order_json("c-6")])

    order = _broker_with(stub, clock).submit_order(_request(client_order_id="c-6"))

    assert order.client_order_id == "c-6"
    assert stub.calls == ["submit c-6"] * 3
    assert clock.monotonic() == 1.5 + 1.0  # Retry-After, then the 2nd exponential step (0.5, 1.0)


def test_rate_limit_retries_stop_at_the_budget_with_a_coded_error():
    clock = ManualClock()
    stub = StubTrading([_api_error(429, "slow down", {"Retry-After": "4"})] * 10)

    with pytest.raises(BrokerError) as info:
        _broker_with(stub, clock, time_budget_seconds=10).submit_order(_request())

    assert info.value.code is Code.RATE_LIMITED and info.value.retry_after == 4.0
    assert "time budget" in info.value.message
    assert len(stub.calls) == 3 and clock.monotonic() == 8.0  # two 4 s waits fit in 10 s; a third does not


def test_rate_limit_retries_stop_at_the_retry_count():
    stub = StubTrading([_api_error(429, "slow down")] * 10)

    with pytest.raises(BrokerError) as info:
        _broker_with(stub, max_rate_limit_retries=2).submit_order(_request())

    assert info.value.code is Code.RATE_LIMITED
    assert len(stub.calls) == 3


def test_venue_rejections_are_not_retried():
    stub = StubTrading([_api_error(403, {"code": 40310000, "message": "insufficient buying power"})])

    with pytest.raises(BrokerError) as info:
        _broker_with(stub).submit_order(_request())

    assert info.value.code is Code.INSUFFICIENT_BUYING_POWER
    assert len(stub.calls) == 1


def test_invalid_requests_are_refused_before_sending():
    stub = StubTrading([])
    broker = _broker_with(stub)

    for bad in (_request(AssetClass.OPTIONS, C150, qty=Decimal("1.5")),
                _request(time_in_force="forever"),
                _request(order_type=OrderType.LIMIT, limit_price=Decimal("0.12345678901234567890"))):
        with pytest.raises(BrokerError) as info:
            broker.submit_order(bad)
        assert info.value.code is Code.INVALID
    assert stub.calls == []


def test_crypto_day_orders_are_sent_gtc_with_the_slash_symbol():
    sent: list[Any] = []

    class Recording(StubTrading):
        def submit_order(self, request: Any) -> Any:
            sent.append(request.to_request_fields())
            return {**_order_json(request.client_order_id), "symbol": "BTC/USD", "asset_class": "crypto"}

    order = _broker_with(Recording([])).submit_order(_request(AssetClass.CRYPTO, "BTCUSD", qty=Decimal("0.001")))

    assert sent[0]["symbol"] == "BTC/USD" and sent[0]["time_in_force"] == "gtc" and sent[0]["qty"] == 0.001
    assert order.symbol == "BTC/USD"


# --------------------------------------------------------------------------------------------
# Lazy import
# --------------------------------------------------------------------------------------------


def test_importing_the_adapter_does_not_import_alpaca_or_pandas():
    code = ("import sys, backend.adapters.alpaca_broker, backend.adapters.routing; "
            "print(sorted(m for m in ('alpaca', 'pandas', 'requests') if m in sys.modules))")

    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=60, env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"})

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_an_unreadable_accepted_order_is_unavailable_not_invalid():
    stub = StubTrading([{"status": "new", "client_order_id": "c-7"}])  # 200 without an id

    with pytest.raises(BrokerError) as info:
        _broker_with(stub).submit_order(_request(client_order_id="c-7"))

    assert info.value.code is Code.UNAVAILABLE and "unreadable order c-7" in info.value.message
    assert stub.calls == ["submit c-7"]
