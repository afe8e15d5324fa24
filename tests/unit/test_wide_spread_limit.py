"""Issue 15 item 5: a limit at the touch or mid instead of WAIT, with a timeout (opt-in per intent).

Paper venue + in-memory store + ManualClock. AAPL quotes 189.50 / 190.50 (spread 1.00 = 0.53% of the
mid, above the 0.1% threshold), so a market order is downgraded unless it opted in. A limit that
becomes marketable fills half (``partial`` model, ratios 0.5 then 1.0 on the next observation)."""
import copy
import io
import json
import os
from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend import logs
from backend.adapters.memory_store import InMemoryStore
from backend.adapters.paper_broker import PaperBroker
from backend.domain import capabilities
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.domain.errors import InvalidInput
from backend.domain.orders import OrderSide, OrderType, Quote, TimeInForce
from backend.execution.engine import ExecutionEngine, RiskManager, SmartRouter
from backend.execution.intent import OrderIntent
from backend.execution.sweeper import Sweeper
from backend.execution.wide_spread import WideSpread, limit_price_for
from backend.risk.manager import RiskLimits
from backend.settings import ExecSettings
from tests.support.api_stack import execute_body, make_stack
from tests.unit.test_api_properties import _check, json_values

SCENARIO = {"seed": 1, "symbols": {
    "AAPL": {"asset_class": "EQUITY", "mid": "190.00", "spread": "1.00",
             "fill": {"model": "partial", "ratios": ["0.5", "1.0"]}},
    "MSFT": {"asset_class": "EQUITY", "mid": "400.00", "spread": "0.02"}}}


@pytest.fixture
def stack():
    logs.set_stream(io.StringIO())
    clock = ManualClock()
    broker = PaperBroker(SCENARIO, clock=clock)
    engine = ExecutionEngine(broker=broker, router=SmartRouter(max_spread_pct="0.001"),
                             risk=RiskManager(RiskLimits(max_position_qty=Decimal("1000"))), dry_run=False,
                             store=InMemoryStore(), clock=clock, settings=ExecSettings.from_env({}))
    try:
        yield make_stack(engine=engine), engine, broker, clock
    finally:
        logs.set_stream(None)


def ledger(engine, kind=None):
    rows = engine.store.collection("tenants/acme/ledger_trades").values()
    return [r for r in rows if kind is None or r.get("kind") == kind]


def exposure(engine):
    docs = [d for k, d in engine.store.collection("tenants/acme/exposure").items() if k.endswith("AAPL")]
    assert len(docs) == 1
    return docs[0]


def test_a_wide_spread_buy_with_limit_at_touch_rests_at_the_bid_and_is_recorded(stack):
    api, engine, broker, clock = stack
    response = api.post("/execute", execute_body(qty="10", wide_spread="limit_at_touch", limit_timeout_seconds=60))
    body = response.json()
    assert response.status == 201, body
    assert body["status"] == "placed" and body["order_status"] in ("new", "accepted") and body["filled_qty"] == "0"
    assert body["routing"]["should_execute"] is True and body["routing"]["downgraded"] is False
    assert body["routing"]["reason"].startswith("limit at touch instead of WAIT: Spread 0.53% exceeds threshold 0.10%")
    [order] = [o for a in broker.venue.account_ids() for o in broker.venue.orders(a)]
    assert order.order_type is OrderType.LIMIT and order.limit_price == Decimal("189.50")
    [row] = ledger(engine)
    assert row["status"] == "placed" and row["order_type"] == "limit" and row["limit_price"] == "189.50"
    assert row["reason"].startswith("limit at touch instead of WAIT")
    record = engine.store.get(f"tenants/acme/order_intents/{body['intent_id']}")
    assert record["intent"]["order_type"] == "limit" and record["intent"]["limit_price"] == "189.50"
    entry = record["wide_spread_limit"]
    assert entry["mode"] == "limit_at_touch" and entry["timeout_seconds"] == 60 and entry["time_in_force"] == "day"
    assert entry["deadline"] == (clock.now() + timedelta(seconds=60)).isoformat()
    assert exposure(engine)["reserved_long_nanos"] == 10 * 10**9


def test_a_fill_before_the_timeout_is_kept_and_the_sweeper_cancels_and_releases_after_it(stack):
    api, engine, broker, clock = stack
    body = api.post("/execute", execute_body(qty="10", wide_spread="limit_at_touch",
                                             limit_timeout_seconds=60)).json()
    intent_path = f"tenants/acme/order_intents/{body['intent_id']}"
    broker.venue.market.set_mid("AAPL", Decimal("189.00"))  # ask 189.50: the bid limit is marketable
    clock.advance(11)
    assert Sweeper(engine).sweep().working_updated >= 1  # half filled (ratio 0.5), still working
    broker.venue.market.set_mid("AAPL", Decimal("190.00"))  # away again: no more fills
    [fill] = ledger(engine, "fill")
    assert Decimal(fill["filled_qty"]) == 5 and Decimal(fill["filled_avg_price"]) <= Decimal("189.50")
    assert engine.store.get(intent_path)["order_final"] is False
    clock.advance(20)  # 31 s: before the deadline the sweeper does not cancel
    Sweeper(engine).sweep()
    assert engine.store.get(intent_path)["order_final"] is False
    clock.advance(40)  # 71 s: past the 60 s deadline
    Sweeper(engine).sweep()
    record = engine.store.get(intent_path)
    assert record["order_final"] is True and record["result"]["order_status"] == "canceled"
    assert Decimal(record["result"]["filled_qty"]) == 5
    assert record["wide_spread_limit"]["expired_at"] == clock.now().isoformat()
    assert [Decimal(r["filled_qty"]) for r in ledger(engine, "fill")] == [Decimal(5)]  # the fill is kept
    exp = exposure(engine)
    assert exp["position_nanos"] == 5 * 10**9 and exp["reserved_long_nanos"] == 0  # remainder released
    assert Sweeper(engine).sweep().working_found == 0


def test_without_the_option_a_wide_spread_still_waits(stack):
    api, engine, broker, clock = stack
    body = api.post("/execute", execute_body(qty="10")).json()
    assert body["status"] == "downgraded" and body["routing"]["downgraded"] is True
    assert body["routing"]["reason"] == "Spread 0.53% exceeds threshold 0.10%"
    assert all(not broker.venue.orders(a) for a in broker.venue.account_ids())
    body = api.post("/execute", execute_body(qty="10", wide_spread="wait", intent_id="w2")).json()
    assert body["status"] == "downgraded"


def test_a_tight_spread_sends_the_market_order_as_asked(stack):
    api, engine, broker, clock = stack
    body = api.post("/execute", execute_body(symbol="MSFT", qty="1", wide_spread="limit_at_mid",
                                             limit_timeout_seconds=30)).json()
    assert body["status"] == "placed" and body["order_status"] == "filled"
    record = engine.store.get(f"tenants/acme/order_intents/{body['intent_id']}")
    assert record["intent"]["order_type"] == "market" and "wide_spread_limit" not in record


def test_limit_at_mid_sells_at_the_mid_rounded_up(stack):
    api, engine, broker, clock = stack
    body = api.post("/execute", execute_body(side="sell", qty="2", wide_spread="limit_at_mid",
                                             limit_timeout_seconds=30)).json()
    assert body["status"] == "placed", body
    assert body["routing"]["reason"].startswith("limit at mid instead of WAIT")
    [row] = ledger(engine)
    assert row["order_type"] == "limit" and row["limit_price"] == "190.00"


def test_a_venue_without_the_limit_fallback_refuses_up_front(stack, monkeypatch):
    api, engine, broker, clock = stack
    market_only = capabilities.ClassCapabilities(order_types={OrderType.MARKET: frozenset(TimeInForce)})
    monkeypatch.setitem(capabilities.VENUES, "paper",
                        capabilities.VenueCapabilities("paper", {AssetClass.EQUITY: market_only}))
    body = api.post("/execute", execute_body(qty="10", wide_spread="limit_at_touch",
                                             limit_timeout_seconds=60)).json()
    assert body["status"] == "rejected"
    assert body["rejection"]["code"] == "ORDER_TYPE_NOT_SUPPORTED"
    assert body["rejection"]["detail"] == "wide_spread limit_at_touch: limit for EQUITY on paper"
    assert all(not broker.venue.orders(a) for a in broker.venue.account_ids())  # nothing sent
    assert exposure_missing_or_zero(engine)


def exposure_missing_or_zero(engine):
    docs = list(engine.store.collection("tenants/acme/exposure").values())
    return all(d.get("reserved_long_nanos", 0) == 0 and d.get("position_nanos", 0) == 0 for d in docs)


@pytest.mark.parametrize("overrides, field", [
    (dict(wide_spread="limit_at_touch"), "limit_timeout_seconds"),
    (dict(wide_spread="limit_at_touch", limit_timeout_seconds=0), "limit_timeout_seconds"),
    (dict(wide_spread="limit_at_touch", limit_timeout_seconds="60"), "limit_timeout_seconds"),
    (dict(limit_timeout_seconds=60), "limit_timeout_seconds"),
    (dict(wide_spread="limit_at_best"), "wide_spread"),
    (dict(wide_spread="limit_at_touch", limit_timeout_seconds=60, order_type="limit", limit_price="189.00"),
     "wide_spread"),
    (dict(wide_spread="limit_at_touch", limit_timeout_seconds=60, time_in_force="ioc"), "time_in_force"),
])
def test_bad_options_are_400_naming_the_field_and_write_nothing(stack, overrides, field):
    api, engine, broker, clock = stack
    response = api.post("/execute", execute_body(qty="10", **overrides))
    assert response.status == 400, response.json()
    assert field in str(response.json())
    assert ledger(engine) == [] and not engine.store.collection("tenants/acme/order_intents")


def test_the_intent_round_trips_and_a_stored_plain_intent_is_unchanged():
    intent = OrderIntent("s", "a", "AAPL", "buy", "1", intent_id="i1", wide_spread="LIMIT_AT_MID",
                         limit_timeout_seconds=90)
    assert intent.wide_spread is WideSpread.LIMIT_AT_MID and intent.limit_timeout_seconds == 90
    assert OrderIntent.from_dict(intent.to_dict()) == intent
    plain = OrderIntent("s", "a", "AAPL", "buy", "1", intent_id="i2")
    assert "wide_spread" not in plain.to_dict() and "limit_timeout_seconds" not in plain.to_dict()
    with pytest.raises(InvalidInput) as err:
        OrderIntent("s", "a", "AAPL", "buy", "1", wide_spread="limit_at_touch", limit_timeout_seconds=10,
                    take_profit={"limit_price": "300"}, stop_loss={"stop_price": "100"})
    assert err.value.field == "wide_spread"


def test_prices_are_passive_and_on_the_tick():
    from datetime import datetime, timezone

    now = datetime(2026, 1, 5, 15, tzinfo=timezone.utc)
    quote = Quote("X", Decimal("10.013"), Decimal("10.047"), now)
    tick = Decimal("0.01")
    assert limit_price_for(WideSpread.LIMIT_AT_TOUCH, OrderSide.BUY, quote, tick) == Decimal("10.01")
    assert limit_price_for(WideSpread.LIMIT_AT_TOUCH, OrderSide.SELL, quote, tick) == Decimal("10.05")
    assert limit_price_for(WideSpread.LIMIT_AT_MID, OrderSide.BUY, quote, tick) == Decimal("10.03")
    assert limit_price_for(WideSpread.LIMIT_AT_MID, OrderSide.SELL, quote, tick) == Decimal("10.03")
    assert limit_price_for(WideSpread.LIMIT_AT_MID, OrderSide.SELL, Quote("X", Decimal("10.01"), Decimal("10.04"),
                                                                          now), tick) == Decimal("10.03")


def test_a_retry_of_a_reserved_fallback_resumes_the_limit_not_the_market_order(stack):
    api, engine, broker, clock = stack
    broker.venue.inject_fault("submit_order", "unavailable", count=1)
    request = execute_body(qty="10", wide_spread="limit_at_touch", limit_timeout_seconds=3600, intent_id="r1")
    first = api.post("/execute", request).json()["execution"]
    assert first["status"] == "pending"
    path = f"tenants/acme/order_intents/{first['intent_id']}"
    record = engine.store.get(path)
    assert record["status"] == "reserved" and record["wide_spread_limit"]["limit_price"] == "189.50"
    assert record["requested_intent"]["order_type"] == "market"
    broker.venue.market.set_mid("AAPL", Decimal("190.20"))  # the quote moved: the claimed limit is kept
    clock.advance(float(engine.settings.lease_seconds) + 1)
    again = api.post("/execute", request).json()  # the same request: no 409, the stored limit resumes
    assert again["status"] == "placed", again
    assert again["routing"]["reason"].startswith("limit at touch instead of WAIT")
    [order] = [o for a in broker.venue.account_ids() for o in broker.venue.orders(a)]
    assert order.order_type is OrderType.LIMIT and order.limit_price == Decimal("189.50")
    stored = engine.store.get(path)
    assert stored["status"] == "placed" and stored["wide_spread_limit"] == record["wide_spread_limit"]
    replay = api.post("/execute", request).json()  # final: replayed, not a conflict
    assert replay["replayed"] is True and replay["broker_order_id"] == again["broker_order_id"]
    changed = api.post("/execute", {**request, "limit_timeout_seconds": 3601})
    assert changed.status == 409


def test_a_claimed_fallback_never_sent_before_its_deadline_ends_as_a_wait(stack):
    api, engine, broker, clock = stack
    broker.venue.inject_fault("submit_order", "unavailable", count=1)
    request = execute_body(qty="10", wide_spread="limit_at_touch", limit_timeout_seconds=30, intent_id="late")
    first = api.post("/execute", request).json()["execution"]
    assert first["status"] == "pending"
    clock.advance(max(31.0, float(engine.settings.lease_seconds) + 1))
    Sweeper(engine).sweep()  # the stuck-intent pass resumes it: past the deadline, nothing is sent
    record = engine.store.get(f"tenants/acme/order_intents/{first['intent_id']}")
    assert record["status"] == "downgraded", record
    assert record["result"]["reason"].startswith("limit at touch expired before it was sent")
    assert all(not broker.venue.orders(a) for a in broker.venue.account_ids())
    assert exposure(engine)["reserved_long_nanos"] == 0


def test_an_unusable_quote_stays_a_rejection_and_a_string_timeout_is_refused():
    from datetime import datetime, timezone

    from backend.domain.errors import RejectCode, Rejection
    from backend.execution.router import RoutingDecision
    from backend.execution.wide_spread import limit_instead_of_wait

    now = datetime(2026, 1, 5, 15, tzinfo=timezone.utc)
    intent = OrderIntent("s", "a", "AAPL", "buy", "1", wide_spread="limit_at_touch", limit_timeout_seconds=5)
    quote = Quote("AAPL", Decimal("189.50"), Decimal("190.50"), now)
    stale = RoutingDecision(False, "STALE_TICK", None, None, quote, Rejection(RejectCode.STALE_TICK, "old"))
    assert limit_instead_of_wait(intent, stale, now) is None
    wide = RoutingDecision(False, "Spread 0.53% exceeds threshold 0.10%", Decimal("0.005"), None, quote)
    fallback = limit_instead_of_wait(intent, wide, now)
    assert fallback.limit_price == Decimal("189.50") and fallback.deadline == now + timedelta(seconds=5)
    assert limit_instead_of_wait(OrderIntent("s", "a", "AAPL", "buy", "1"), wide, now) is None  # wait
    with pytest.raises(InvalidInput) as err:
        OrderIntent("s", "a", "AAPL", "buy", "1", wide_spread="limit_at_touch", limit_timeout_seconds="5")
    assert err.value.field == "limit_timeout_seconds"


# the property suite's rule (tests/unit/test_api_properties.py): mutated wide-spread bodies never 500,
# and a refusal writes and sends nothing
WIDE_SPREAD_BODIES = [
    execute_body(wide_spread="limit_at_touch", limit_timeout_seconds=60),
    execute_body(side="sell", wide_spread="limit_at_mid", limit_timeout_seconds=3600, time_in_force="gtc"),
    execute_body(symbol="BTC/USD", qty="0.01", wide_spread="limit_at_touch", limit_timeout_seconds=5),
]


@st.composite
def mutated_wide_spread_bodies(draw):
    body = copy.deepcopy(draw(st.sampled_from(WIDE_SPREAD_BODIES)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        key = draw(st.sampled_from(sorted(body) + ["wide_spread", "limit_timeout_seconds", "order_type",
                                                   "time_in_force", "limit_price", "order_class"]))
        action = draw(st.sampled_from(["replace", "delete", "mode", "timeout"]))
        if action == "replace":
            body[key] = draw(json_values)
        elif action == "delete":
            body.pop(key, None)
        elif action == "mode":
            body["wide_spread"] = draw(st.sampled_from(["wait", "limit_at_touch", "limit_at_mid", "LIMIT_AT_MID",
                                                        "touch", "", None]))
        else:
            body["limit_timeout_seconds"] = draw(st.one_of(st.integers(-5, 700000), st.floats(allow_nan=False),
                                                           st.sampled_from(["60", True, None, 1e400])))
    return json.dumps(body).encode()


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(mutated_wide_spread_bodies())
def test_mutated_wide_spread_bodies_never_500_and_refusals_write_nothing(raw):
    _check("/execute", raw)
