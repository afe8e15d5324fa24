"""Issue 19 item 14: the bundled ``moving_market`` scenario (EXEC_PAPER_SCENARIO=moving_market) moves
prices by a seeded random walk on the clock, so a buy and a later sell realize a gain or a loss,
the same one on every run."""
import io
from decimal import Decimal

import pytest

from backend import logs
from backend.adapters.memory_store import InMemoryStore
from backend.adapters.paper_broker import PaperBroker
from backend.api.wiring import build_broker
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.execution.engine import ExecutionEngine, RiskManager, SmartRouter
from backend.risk.manager import RiskLimits
from backend.settings import ExecSettings
from tests.support.api_stack import execute_body, make_stack

LISTED = [("AAPL", AssetClass.EQUITY), ("SPY", AssetClass.EQUITY), ("BTC/USD", AssetClass.CRYPTO),
          ("EUR/USD", AssetClass.FOREX), ("XAU/USD", AssetClass.COMMODITY)]


def quotes_over_time(broker: PaperBroker, clock: ManualClock, minutes: int) -> list[list[tuple[Decimal, Decimal]]]:
    out = []
    for _ in range(minutes):
        out.append([(q.bid, q.ask) for q in (broker.get_latest_quote(s, k) for s, k in LISTED)])
        clock.advance(60)
    return out


def test_every_listed_price_moves_and_the_path_repeats_exactly():
    first_clock, second_clock = ManualClock(), ManualClock()
    first = quotes_over_time(PaperBroker("moving_market", clock=first_clock), first_clock, 5)
    second = quotes_over_time(PaperBroker("moving_market", clock=second_clock), second_clock, 5)
    assert first == second
    for i, _ in enumerate(LISTED):
        assert len({minute[i] for minute in first}) > 1, LISTED[i]


def test_a_still_clock_keeps_prices_still():
    clock = ManualClock()
    broker = PaperBroker("moving_market", clock=clock)
    assert broker.get_latest_quote("AAPL", AssetClass.EQUITY) == broker.get_latest_quote("AAPL", AssetClass.EQUITY)


def test_exec_paper_scenario_selects_it():
    clock = ManualClock()
    broker = build_broker({"EXEC_PAPER_SCENARIO": "moving_market"}, {}, clock)
    before = broker.get_latest_quote("AAPL", AssetClass.EQUITY).bid
    clock.advance(60)
    assert broker.get_latest_quote("AAPL", AssetClass.EQUITY).bid != before


@pytest.fixture
def stack():
    logs.set_stream(io.StringIO())
    clock = ManualClock()
    engine = ExecutionEngine(broker=PaperBroker("moving_market", clock=clock), router=SmartRouter(max_spread_pct="0.001"),
                             risk=RiskManager(RiskLimits(max_position_qty=Decimal("1000"))), dry_run=False,
                             store=InMemoryStore(), clock=clock, settings=ExecSettings.from_env({}))
    try:
        yield make_stack(engine=engine), clock
    finally:
        logs.set_stream(None)


def test_a_buy_then_a_sell_a_minute_later_realizes_the_same_loss_every_run(stack):
    api, clock = stack
    buy = api.post("/execute", execute_body(symbol="SPY", side="buy", qty="10")).json()
    clock.advance(60)
    sell = api.post("/execute", execute_body(symbol="SPY", side="sell", qty="10")).json()
    export = api.get("/portfolio/tax-lots/export", query={"year": "2026"}).json()
    assert (buy["filled_avg_price"], sell["filled_avg_price"]) == ("520.01", "519.35")
    [row] = export["disposals"]
    assert (row["proceeds"], row["cost_basis"], row["gain_or_loss"]) == ("5193.50", "5200.10", "-6.60")
