"""Issue 19 item 13: a limit order that rests (not marketable against the router's quote) answers at
once with its working status instead of holding the HTTP call for the fill wait; market and
marketable limit orders keep the short wait; the sweeper still reconciles a resting order's later fill.

The engine runs with the default 2-second fill wait on a ``ManualClock`` that records every sleep,
so "promptly" is asserted on the engine's own waiting, never on wall time."""
import io
from decimal import Decimal

import pytest

from backend import logs
from backend.adapters.memory_store import InMemoryStore
from backend.adapters.paper_broker import PaperBroker
from backend.domain.clock import ManualClock
from backend.execution.engine import ExecutionEngine, RiskManager, SmartRouter
from backend.execution.sweeper import Sweeper
from backend.risk.manager import RiskLimits
from backend.settings import ExecSettings
from tests.support.api_stack import execute_body, make_stack

# AAPL: mid 190.00, spread 0.02 -> bid 189.99 / ask 190.01; fills one second after submission
SCENARIO = {"seed": 1, "symbols": {"AAPL": {"asset_class": "EQUITY", "mid": "190.00", "spread": "0.02",
                                            "fill": {"model": "latency", "latency_seconds": 1}}}}


class SleepRecordingClock(ManualClock):
    def __init__(self):
        super().__init__()
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        super().sleep(seconds)


@pytest.fixture
def stack():
    logs.set_stream(io.StringIO())
    clock = SleepRecordingClock()
    broker = PaperBroker(SCENARIO, clock=clock)
    engine = ExecutionEngine(broker=broker, router=SmartRouter(max_spread_pct="0.001"),
                             risk=RiskManager(RiskLimits(max_position_qty=Decimal("1000"))), dry_run=False,
                             store=InMemoryStore(), clock=clock, settings=ExecSettings.from_env({}))
    assert engine.settings.fill_wait_seconds == Decimal("2")  # the default wait is in force
    try:
        yield make_stack(engine=engine), engine, broker, clock
    finally:
        logs.set_stream(None)


@pytest.mark.parametrize("side, limit", [("buy", "185.00"), ("sell", "195.00")])
def test_a_resting_limit_order_answers_at_once_with_its_working_status(stack, side, limit):
    api, engine, broker, clock = stack
    response = api.post("/execute", execute_body(side=side, qty="2", order_type="limit", limit_price=limit))
    body = response.json()
    assert response.status == 201 and body["status"] == "placed"
    assert body["order_status"] in ("new", "accepted") and body["filled_qty"] == "0"
    assert clock.sleeps == []  # no fill wait at all


def test_a_market_order_still_waits_briefly_for_its_fill(stack):
    api, engine, broker, clock = stack
    body = api.post("/execute", execute_body(qty="2")).json()
    assert body["order_status"] == "filled" and body["filled_avg_price"] == "190.01"
    assert 1 <= sum(clock.sleeps) <= 2


def test_a_marketable_limit_order_waits_like_a_market_order(stack):
    api, engine, broker, clock = stack
    body = api.post("/execute", execute_body(qty="2", order_type="limit", limit_price="190.05")).json()
    assert body["order_status"] == "filled" and sum(clock.sleeps) >= 1


def test_the_sweeper_reconciles_a_resting_order_once_the_market_reaches_it(stack):
    api, engine, broker, clock = stack
    body = api.post("/execute", execute_body(qty="2", order_type="limit", limit_price="185.00")).json()
    broker.venue.market.set_mid("AAPL", Decimal("184.50"))
    clock.advance(11)  # past reconcile_after
    report = Sweeper(engine).sweep()
    assert report.working_updated == 1
    record = engine.store.get(f"tenants/acme/order_intents/{body['intent_id']}")
    fills = [r for r in engine.store.collection("tenants/acme/ledger_trades").values() if r.get("kind") == "fill"]
    assert record["order_final"] is True
    assert [(Decimal(r["filled_qty"]), Decimal(r["filled_avg_price"])) for r in fills] == [(Decimal(2), Decimal("184.51"))]
