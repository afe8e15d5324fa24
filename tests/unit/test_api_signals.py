"""POST /signals: the strategy-side cost check (BaseStrategy.apply_cost_check) and execution of the
signals that survive it."""

import pytest

from backend.domain.wire import decimal_out
from backend.api.idempotency import derived_id
from functions.strategies.base_strategy import BaseStrategy, SignalType, TradingSignal
from backend.risk.manager import RiskLimits
from tests.support.api_stack import make_stack, signal_body


@pytest.fixture
def stack(quiet_logs):
    return make_stack()


def test_a_buy_within_the_threshold_executes_and_is_recorded(stack):
    response = stack.post("/signals", signal_body())
    body = response.json()
    assert response.status == 201 and body["executed"] is True
    assert body["signal"]["signal_type"] == "BUY" and body["cost_check"]["downgrade"] is False
    execution = body["execution"]
    assert execution["status"] == "placed" and execution["filled_qty"] == "5.0000"
    intent = stack.store.get(f"tenants/acme/order_intents/{execution['intent_id']}")["intent"]
    assert intent["side"] == "buy" and intent["metadata"]["source"] == "signal"
    assert intent["metadata"]["signal_confidence"] == "0.85"
    # the same share, in the response at the documented ratio precision (10 places, backend.domain.wire)
    assert body["signal"]["estimated_slippage"] == decimal_out(intent["estimated_slippage"], "ratio") == "0.0001052632"
    assert stack.store.get(f"users/alice/portfolio/history/trades/{execution['intent_id']}") is not None


def test_a_sell_signal_becomes_a_sell_order(stack):
    response = stack.post("/signals", signal_body(signal_type="sell"))
    assert response.status == 201 and response.json()["execution"]["status"] == "placed"
    intent_id = response.json()["execution"]["intent_id"]
    assert stack.store.get(f"tenants/acme/ledger_trades/{intent_id}")["side"] == "sell"


@pytest.mark.parametrize("market_data, reason", [
    ({"bid": 99.80, "ask": 100.20}, "Spread 0.40% exceeds threshold 0.10%"),
    ({"price": "100", "spread": "0.5"}, "Spread 0.50% exceeds threshold 0.10%"),
    ({"spread_pct": "0.002"}, "Spread 0.20% exceeds threshold 0.10%"),
    ({"price": "100"}, "Spread unknown: no bid/ask or spread_pct in market data"),
])
def test_a_costly_signal_is_downgraded_to_wait_returned_with_the_reason_and_not_executed(stack, market_data, reason):
    response = stack.post("/signals", signal_body(market_data=market_data))
    body = response.json()
    assert response.status == 200 and body["executed"] is False and body["execution"] is None
    assert body["signal"]["signal_type"] == "WAIT" and body["signal"]["original_signal_type"] == "BUY"
    assert body["signal"]["downgraded"] is True and body["reason"].startswith(reason)
    assert body["cost_check"] == {**body["cost_check"], "performed": True, "downgrade": True, "reason": reason}
    assert stack.store.docs == {} and stack.broker.submits == []


def test_the_api_decision_is_exactly_base_strategy_apply_cost_check(stack):
    class Probe(BaseStrategy):
        def evaluate(self, market_data, account_snapshot, regime=None):
            raise NotImplementedError

    market = {"price": "100", "bid": "99.95", "ask": "100.06"}
    expected = Probe({"max_slippage_pct": "0.001"}).apply_cost_check(
        TradingSignal(SignalType.BUY, "AAPL", confidence="0.85", reasoning="momentum"), market)
    body = stack.post("/signals", signal_body(market_data=market)).json()
    assert body["signal"]["signal_type"] == expected.signal_type.value == "WAIT"
    assert body["signal"]["reasoning"] == expected.reasoning
    assert body["signal"]["estimated_slippage"] == format(expected.estimated_slippage, "f")


def test_exactly_at_the_threshold_passes(stack):
    response = stack.post("/signals", signal_body(market_data={"price": "100", "bid": "99.95", "ask": "100.05"}))
    assert response.status == 201 and response.json()["cost_check"]["downgrade"] is False


def test_a_wait_signal_is_returned_with_its_reason_and_nothing_happens(stack):
    response = stack.post("/signals", signal_body(signal_type="WAIT", qty=None, reasoning="flat regime"))
    body = response.json()
    assert response.status == 200 and body["executed"] is False and body["reason"] == "flat regime"
    assert body["cost_check"]["performed"] is False and stack.store.docs == {}


def test_without_market_data_the_engine_checks_the_live_quote(stack):
    wide = stack.post("/signals", signal_body(symbol="WIDE", market_data=None))
    body = wide.json()
    assert wide.status == 201 and body["cost_check"] is None
    assert body["execution"]["status"] == "downgraded" and body["reason"] == "Spread 0.40% exceeds threshold 0.10%"


@pytest.mark.parametrize("change, field, reason_part", [
    ({"signal_type": "HOLD"}, "signal_type", "Input should be"),
    ({"qty": None}, "qty", "required for BUY and SELL"),
    ({"confidence": 1.5}, "confidence", "must be <= 1"),
    ({"confidence": "high"}, "confidence", "expected a number"),
    ({"market_data": {"bid": "101", "ask": "100"}}, "market_data.bid", "crossed quote"),
    ({"market_data": {"bid": "0", "ask": "100"}}, "market_data.bid", "must be > 0"),
    ({"market_data": {"bid": 1, "ask": 2, "volume": 3}}, "market_data.volume", "unknown field"),
    ({"market_data": "wide"}, "market_data", "valid dictionary"),
    ({"reasoning": "x" * 2001}, "reasoning", "at most 2000"),
    ({"foo": 1}, "foo", "unknown field"),
    ({"metadata": {"tenant_id": "globex"}}, "metadata.tenant_id", "not the authenticated tenant"),
])
def test_signal_errors_name_the_field(stack, change, field, reason_part):
    body = signal_body()
    for key, value in change.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    response = stack.post("/signals", body)
    assert response.status in (400, 403), response.json()
    err = response.json()["error"]
    assert err["field"] == field and reason_part in err["reason"], err
    assert stack.store.docs == {}


def test_signal_idempotency_replays_and_conflicts_like_execute(stack):
    first = stack.post("/signals", signal_body(), headers={"Idempotency-Key": "sig-1"})
    replay = stack.post("/signals", signal_body(), headers={"Idempotency-Key": "sig-1"})
    other = stack.post("/signals", signal_body(qty="6"), headers={"Idempotency-Key": "sig-1"})
    assert (first.status, replay.status, other.status) == (201, 200, 409)
    assert replay.json()["execution"]["replayed"] is True
    assert first.json()["execution"]["intent_id"] == derived_id("k", "acme", "alice", "sig-1")
    assert len(stack.broker.submits) == 1


def test_a_rate_limited_broker_is_429_with_the_signal_beside_the_error(stack):
    from backend.ports.broker import BrokerError, BrokerErrorCode

    stack.broker.fail_submit = BrokerError(BrokerErrorCode.RATE_LIMITED, "slow down", retry_after=3)
    response = stack.post("/signals", signal_body(), headers={"Idempotency-Key": "sig-2"})
    body = response.json()
    assert response.status == 429 and response.headers["Retry-After"] == "3"
    assert body["error"]["code"] == "BROKER_RATE_LIMITED" and body["signal"]["signal_type"] == "BUY"
    assert body["execution"]["status"] == "pending"


def test_a_signal_the_engine_downgrades_is_recorded_but_not_executed(stack):
    response = stack.post("/signals", signal_body(signal_type="SELL", symbol="WIDE", market_data=None))
    body = response.json()
    assert response.status == 201 and body["execution"]["status"] == "downgraded"
    assert body["executed"] is False and stack.broker.submits == []



@pytest.mark.parametrize("options, status", [
    ({"limits": RiskLimits(kill_switch=True)}, "rejected"),
    ({"dry_run": True}, "dry_run"),
])
def test_a_signal_that_sends_no_order_is_not_executed(options, status):
    stack = make_stack(**options)
    body = stack.post("/signals", signal_body()).json()
    assert body["execution"]["status"] == status
    assert body["executed"] is False and stack.broker.submits == []
