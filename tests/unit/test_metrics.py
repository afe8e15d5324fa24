"""Execution-quality metrics are maintained by increments in the same commit as each ledger row and
summarized from day shards, without reading the ledger."""
from decimal import Decimal

import pytest

from backend.adapters.memory_store import InMemoryStore
from backend.adapters.paper_broker import PaperBroker
from backend.domain.clock import ManualClock
from backend.execution import metrics
from backend.execution.engine import ExecutionEngine, OrderIntent, RiskManager
from backend.execution.intent import ExecutionContext
from backend.risk.manager import RiskLimits
from backend.settings import ExecSettings

MARKET = {"seed": 3, "symbols": {
    "AAPL": {"asset_class": "EQUITY", "mid": "100.00", "spread": "0.02", "fill": {"model": "immediate", "slippage_ticks": 1}},
    "WIDE": {"asset_class": "EQUITY", "mid": "100.00", "spread": "0.50"},
    "BTC/USD": {"asset_class": "CRYPTO", "mid": "50000", "spread": "10"}}}


def run():
    clock = ManualClock()
    store = InMemoryStore()
    engine = ExecutionEngine(broker=PaperBroker(MARKET, clock=clock), store=store, clock=clock, dry_run=False,
                             risk=RiskManager(RiskLimits(max_position_qty=Decimal("15"))),
                             settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0"}))
    ctx = ExecutionContext("acme", "u1")
    for key, symbol, qty, klass, strategy in [("a", "AAPL", "10", "EQUITY", "mom"), ("b", "WIDE", "10", "EQUITY", "mom"),
                                              ("c", "AAPL", "10", "EQUITY", "mr"), ("d", "BTC/USD", "0.1", "CRYPTO", "mr")]:
        engine.execute_intent(OrderIntent(strategy, "acct", symbol, "buy", qty, klass, intent_id=key), ctx)
    return store


def test_tenant_metrics_from_shards():
    store = run()
    summary = metrics.summarize(store.read_metrics("acme", "2026-01-01", "2026-12-31"))
    assert (summary["decisions"], summary["placed"], summary["downgraded"], summary["rejected"]) == (4, 2, 1, 1)
    assert summary["downgrade_rate"] == "0.25" and summary["rejection_rate"] == "0.25"
    # the downgraded intent would have paid its spread: 10 x 100.00 x 0.005
    assert summary["cost_savings"] == "5"
    assert summary["asset_class_distribution"] == {"CRYPTO": {"decisions": 1, "placed": 1},
                                                   "EQUITY": {"decisions": 3, "placed": 1}}
    # AAPL filled one tick above the ask: 100.02 vs arrival mid 100.00 -> shortfall 0.02 x 10
    tca = summary["tca"]
    assert tca["fills"] == 2 and Decimal(tca["implementation_shortfall"]) == Decimal("0.2") + Decimal("0.5")


def test_per_strategy_metrics():
    store = run()
    docs = store.read_metrics("acme", "2026-01-05", "2026-01-05")
    mom, mr = metrics.summarize(docs, "mom"), metrics.summarize(docs, "mr")
    assert (mom["decisions"], mom["downgraded"], mom["placed"]) == (2, 1, 1)
    assert (mr["decisions"], mr["rejected"], mr["placed"]) == (2, 1, 1)


def test_metrics_are_spread_over_shards():
    store = run()
    assert len(store.read_metrics("acme", "2026-01-05", "2026-01-05")) > 1
    assert all(0 <= metrics.shard_for(k) < metrics.SHARDS for k in "abcdefgh")


def test_empty_range_has_no_rates():
    summary = metrics.summarize([])
    assert summary["decisions"] == 0 and summary["downgrade_rate"] is None


def test_each_asset_class_has_its_own_slippage_and_cost_savings():
    store = run()
    docs = store.read_metrics("acme", "2026-01-05", "2026-01-05")

    assert metrics.asset_classes_present(docs) == ["EQUITY", "CRYPTO"]
    equity, crypto = metrics.summarize(docs, asset_class="EQUITY"), metrics.summarize(docs, asset_class="CRYPTO")
    assert (equity["decisions"], equity["placed"], equity["downgraded"], equity["rejected"]) == (3, 1, 1, 1)
    assert (crypto["decisions"], crypto["placed"], crypto["downgraded"]) == (1, 1, 0)
    assert equity["cost_savings"] == "5" and crypto["cost_savings"] == "0"  # the downgraded WIDE was EQUITY
    assert equity["tca"]["fills"] == 1 and crypto["tca"]["fills"] == 1
    assert equity["tca"]["avg_actual_slippage"] is not None and equity["avg_estimated_slippage"] is not None
    # the classes add up to the tenant's totals
    total = metrics.summarize(docs)
    assert Decimal(total["tca"]["implementation_shortfall"]) == (Decimal(equity["tca"]["implementation_shortfall"])
                                                                 + Decimal(crypto["tca"]["implementation_shortfall"]))
    assert equity["asset_class_distribution"] == {}  # the per-class map does not repeat its own key


def test_only_enum_asset_classes_get_a_bucket():
    assert metrics.asset_class_bucket({"asset_class": "FOREX"}) == "FOREX"
    assert metrics.asset_class_bucket({"asset_class": None}) is None  # a group decision: may span classes
    assert metrics.asset_class_bucket({"asset_class": "x" * 90}) is None
    assert set(metrics.ASSET_CLASSES) == {"EQUITY", "FOREX", "CRYPTO", "OPTIONS", "COMMODITY"}


def test_summarize_takes_a_strategy_or_an_asset_class_not_both():
    with pytest.raises(ValueError):
        metrics.summarize([], "mom", asset_class="EQUITY")
