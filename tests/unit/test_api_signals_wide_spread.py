"""POST /signals with the wide-spread option (issue 15 item 5), on the in-process stack (the recording
StubBroker: ``WIDE`` is 0.40% wide, ``AAPL`` tight). The end-to-end proof on the emulators and the
local Alpaca server is tests/integration/test_signals_wide_spread.py; these pin the decision rules."""

import pytest

from backend.api.signals import decide
from tests.support.api_stack import execute_body, make_stack, signal_body

WIDE = {"symbol": "WIDE", "bid": "99.80", "ask": "100.20"}


@pytest.fixture
def stack(quiet_logs):
    return make_stack()


def order_type(stack, body):
    """The order the engine sent for a signal's response (the stub venue records client order ids only)."""
    record = stack.store.get(f"tenants/acme/order_intents/{body['execution']['intent_id']}")
    return record["intent"]["order_type"], record["intent"]["limit_price"]


def wide_signal(**overrides):
    return signal_body(**{"symbol": "WIDE", "market_data": WIDE, "wide_spread": "limit_at_touch",
                          "limit_timeout_seconds": 60, **overrides})


def test_without_the_option_the_wide_signal_is_wait_and_nothing_is_written(stack):
    body = stack.post("/signals", signal_body(symbol="WIDE", market_data=WIDE)).json()
    assert body["signal"]["signal_type"] == "WAIT" and body["signal"]["wide_spread"] is None
    assert body["execution"] is None and body["wide_spread_limit"] is None
    assert stack.store.docs == {} and stack.broker.submits == []


def test_with_the_option_the_engine_places_the_limit_and_the_signal_says_so(stack):
    response = stack.post("/signals", wide_signal())
    body = response.json()
    assert response.status == 201 and body["executed"] is True
    assert body["signal"] == {**body["signal"], "signal_type": "BUY", "downgraded": False,
                              "wide_spread": "limit_at_touch"}
    assert body["cost_check"]["downgrade"] is True
    assert body["wide_spread_limit"]["limit_price"] == "99.80" and body["wide_spread_limit"]["timeout_seconds"] == 60
    assert body["reason"].startswith("limit at touch instead of WAIT")
    assert len(stack.broker.submits) == 1 and order_type(stack, body) == ("limit", "99.80")
    row = stack.store.get(f"tenants/acme/ledger_trades/{body['execution']['intent_id']}")
    assert row["status"] == "placed" and row["order_type"] == "limit"


def test_a_live_quote_that_narrowed_gets_the_market_order_the_signal_asked_for(stack):
    # the caller's market data is wide, the venue's AAPL quote is tight: no limit is involved
    body = stack.post("/signals", signal_body(market_data={"bid": "189.00", "ask": "191.00"},
                                              wide_spread="limit_at_mid", limit_timeout_seconds=60)).json()
    assert body["signal"]["wide_spread"] == "limit_at_mid" and body["wide_spread_limit"] is None
    assert body["execution"]["status"] == "placed" and body["reason"].startswith("Spread 0.01% within")
    assert len(stack.broker.submits) == 1 and order_type(stack, body) == ("market", None)


def test_the_option_also_answers_the_engines_own_check_when_the_signals_passes_or_is_skipped(stack):
    passed = stack.post("/signals", signal_body(symbol="WIDE", market_data={"bid": "99.99", "ask": "100.01"},
                                                wide_spread="limit_at_touch", limit_timeout_seconds=60)).json()
    skipped = stack.post("/signals", signal_body(symbol="WIDE", market_data=None, wide_spread="limit_at_mid",
                                                 limit_timeout_seconds=60)).json()
    assert passed["signal"]["wide_spread"] is None and passed["wide_spread_limit"]["mode"] == "limit_at_touch"
    assert skipped["cost_check"] is None and skipped["wide_spread_limit"]["limit_price"] == "100.00"
    assert len(stack.broker.submits) == 2
    assert order_type(stack, passed) == ("limit", "99.80") and order_type(stack, skipped) == ("limit", "100.00")


def test_an_unknown_spread_stays_wait_with_the_option(stack):
    body = stack.post("/signals", signal_body(market_data={"price": "100"}, wide_spread="limit_at_touch",
                                              limit_timeout_seconds=60)).json()
    assert body["signal"]["signal_type"] == "WAIT" and body["signal"]["wide_spread"] is None
    assert stack.store.docs == {} and stack.broker.submits == []


def test_a_spread_of_the_whole_price_is_answered_without_an_estimated_slippage_error(stack):
    response = stack.post("/signals", wide_signal(market_data={"bid": "1", "ask": "300"}))
    assert response.status == 201, response.json()
    assert response.json()["cost_check"]["estimated_slippage"] == "1.9867109635"
    assert response.json()["wide_spread_limit"]["limit_price"] == "99.80"


@pytest.mark.parametrize("option", [
    {"wide_spread": "limit_at_bid", "limit_timeout_seconds": 60},
    {"wide_spread": "limit_at_touch"},
    {"wide_spread": "wait", "limit_timeout_seconds": 60},
    {"limit_timeout_seconds": 60},
    {"wide_spread": "limit_at_mid", "limit_timeout_seconds": 0},
    {"wide_spread": "limit_at_mid", "limit_timeout_seconds": 604801},
    {"wide_spread": "limit_at_mid", "limit_timeout_seconds": "60"},
    {"wide_spread": "limit_at_mid", "limit_timeout_seconds": True},
    {"wide_spread": "limit_at_mid", "limit_timeout_seconds": 2.5},
    {"wide_spread": 3, "limit_timeout_seconds": 60},
    {"wide_spread": None},
])
@pytest.mark.parametrize("signal_type", ["BUY", "WAIT"])
def test_option_errors_are_those_of_execute_and_nothing_happens(stack, option, signal_type):
    signal = {**signal_body(signal_type=signal_type, qty=None if signal_type == "WAIT" else "5"), **option}
    refused = stack.post("/signals", signal)
    same = stack.post("/execute", {**execute_body(), **option})
    assert refused.status == same.status == 400
    got, want = refused.json()["error"], same.json()["error"]
    assert (got["code"], got["field"], got["reason"]) == (want["code"], want["field"], want["reason"]) and got["field"]
    assert stack.store.docs == {} and stack.broker.submits == []


def test_the_option_is_case_insensitive_like_executes(stack):
    body = stack.post("/signals", wide_signal(wide_spread="LIMIT_AT_MID")).json()
    assert body["signal"]["wide_spread"] == "limit_at_mid" and body["wide_spread_limit"]["limit_price"] == "100.00"


def test_decide_keeps_the_seeds_downgrade_without_the_option():
    kwargs = dict(signal_type="SELL", symbol="AAPL", asset_class=None, confidence=None, reasoning="r",
                  market_data={"bid": "99", "ask": "101"}, max_spread_pct="0.001")
    plain, opted = decide(**kwargs), decide(**kwargs, wide_spread="limit_at_touch")
    assert plain.signal.signal_type.value == "WAIT" and plain.signal.downgraded and plain.wide_spread is None
    assert opted.signal.signal_type.value == "SELL" and not opted.signal.downgraded
    assert opted.wide_spread.value == "limit_at_touch" and opted.executes
    assert opted.cost_check == plain.cost_check  # the check's own verdict is the same
    assert decide(**kwargs, wide_spread="wait").signal == plain.signal
