"""The same engine and the same scripted market through the paper broker and through alpaca-py
against the local Alpaca-compatible server: identical domain results, then every position closed."""
from decimal import Decimal

import pytest

from backend.adapters.alpaca_broker import AlpacaBroker
from backend.adapters.memory_store import InMemoryStore
from backend.adapters.paper_broker import PaperBroker
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.execution.engine import ExecutionEngine, OrderIntent, RiskManager, SmartRouter
from backend.execution.intent import ExecutionContext
from backend.risk.manager import RiskLimits
from backend.settings import ExecSettings
from tests.support.alpaca_server import LocalAlpacaServer

SCENARIO = {"seed": 11, "symbols": {
    "AAPL": {"asset_class": "EQUITY", "mid": "190.00", "spread": "0.02"},
    "SPY": {"asset_class": "EQUITY", "mid": "520.00", "spread": "0.02",
            "fill": {"model": "partial", "ratios": ["0.5", "1.0"]}},
    "TSLA": {"asset_class": "EQUITY", "mid": "250.00", "spread": "0.50"},
    "BTC/USD": {"asset_class": "CRYPTO", "mid": "65000", "spread": "10"},
    "MSFT": {"asset_class": "EQUITY", "mid": "420.00", "spread": "0.04", "fill": {"model": "reject",
                                                                                    "reject_reason": "halted"}},
}}
INTENTS = [("a", "AAPL", "buy", "10", "EQUITY"), ("b", "BTC/USD", "buy", "0.05", "CRYPTO"),
           ("c", "TSLA", "buy", "5", "EQUITY"), ("d", "SPY", "buy", "4", "EQUITY"),
           ("e", "AAPL", "sell", "4", "EQUITY"), ("f", "MSFT", "buy", "1", "EQUITY"),
           ("g", "EUR/USD", "buy", "1000", "FX")]


def run(broker, clock):
    engine = ExecutionEngine(broker=broker, router=SmartRouter(0.001),
                             risk=RiskManager(RiskLimits(max_position_qty=Decimal("1000"))), dry_run=False,
                             store=InMemoryStore(), clock=clock,
                             settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "5"}))
    ctx = ExecutionContext("acme", "u1")
    out = []
    for key, symbol, side, qty, klass in INTENTS:
        r = engine.execute_intent(OrderIntent("s1", "acct", symbol, side, qty, klass, intent_id=key), ctx)
        out.append((key, r.status, r.order_status, r.filled_qty, r.filled_avg_price,
                    r.rejection.code.value if r.rejection else None, r.client_order_id, r.broker_order_id))
    return out


@pytest.fixture
def server():
    clock = ManualClock()
    with LocalAlpacaServer(SCENARIO, clock=clock) as srv:
        yield srv, clock


def test_paper_and_alpaca_give_identical_domain_results(server):
    srv, alpaca_clock = server
    paper_clock = ManualClock()
    paper = run(PaperBroker(SCENARIO, clock=paper_clock, supported=[AssetClass.EQUITY, AssetClass.CRYPTO]),
                paper_clock)
    alpaca = run(AlpacaBroker("key", "secret", url_override=srv.url, clock=alpaca_clock), alpaca_clock)

    assert alpaca == paper
    by_key = {row[0]: row for row in paper}
    assert by_key["a"][1:3] == ("placed", "filled") and by_key["c"][1] == "downgraded"
    assert by_key["d"][2] == "filled" and by_key["d"][3] == Decimal("4")  # partial, then filled while polled
    assert by_key["f"][1] == "placed" and by_key["f"][2] == "rejected"  # the venue refused it after accepting
    assert by_key["g"][5] == "NO_VENUE_FOR_ASSET_CLASS"
    assert not any("EUR" in path for _, path, _ in srv.requests)  # FX never reached "Alpaca"


def test_positions_are_closed_through_alpaca_py(server):
    srv, clock = server
    broker = AlpacaBroker("key", "secret", url_override=srv.url, clock=clock)
    run(broker, clock)
    open_before = {p.symbol: p.qty for p in broker.get_positions()}
    assert open_before == {"AAPL": Decimal("6"), "BTC/USD": Decimal("0.05"), "SPY": Decimal("4")}
    for symbol in open_before:
        broker.close_position(symbol, AssetClass.CRYPTO if "/" in symbol else AssetClass.EQUITY)
    srv.venue.poll()
    assert broker.get_positions() == [] or all(p.qty == 0 for p in broker.get_positions())
