"""Issue 11, defects 3 and 6, on the in-memory store AND the official Firestore emulator.

3. A history row carries the lot method its fill was actually booked with (the user's configured
   method from ``users/{uid}/config/tax``; SPECIFIC without named lots falls back to FIFO) — it used
   to say ``FIFO`` always.
6. Every ledger row has one schema (``records.LEDGER_FIELDS``) and every history row another
   (``records.HISTORY_FIELDS``), whichever path wrote it: a single order, a later fill of a working
   order, a group leg fill, a group's dry-run decision.
"""
from __future__ import annotations

from decimal import Decimal

import pytest

from backend.adapters.firestore_store import FirestoreStore
from backend.adapters.memory_store import InMemoryStore
from backend.adapters.paper_broker import PaperBroker
from backend.domain.clock import ManualClock
from backend.execution.engine import ExecutionEngine
from backend.execution.intent import ExecutionContext, OrderIntent
from backend.execution.records import (COST_ANALYSIS_FIELDS, EXECUTION_FIELDS, HISTORY_FIELDS, HISTORY_TAX_FIELDS,
                                       LEDGER_FIELDS)
from backend.settings import ExecSettings
from backend.tax.state import book_lots
from tests.support.group_harness import GROUP_LIMITS_ENV, approve
from tests.unit.test_sweeper_and_intake import pair_request

CTX = ExecutionContext("acme", "u1")
WORKING_SPY = {"seed": 1, "symbols": {"SPY": {"asset_class": "EQUITY", "mid": "520.00", "spread": "0.02",
                                              "fill": {"model": "partial", "ratios": ["0.25", "0.5"]}}}}


@pytest.fixture(params=["memory", "firestore"])
def world(request):
    if request.param == "memory":
        store = InMemoryStore()

        def put(path, doc):
            store.set_doc(path, doc)

        def rows(path):
            return {key.rsplit("/", 1)[-1]: doc for key, doc in store.collection(path).items()
                    if key.count("/") == path.count("/") + 1}
    else:
        db = request.getfixturevalue("db")
        store = FirestoreStore(db)

        def put(path, doc):
            db.document(path).set(doc)

        def rows(path):
            return {snap.id: snap.to_dict() for snap in db.collection(path).stream()}
    return store, put, rows


def engine_on(store, *, broker=None, clock=None, dry_run=False):
    clock = clock or ManualClock()
    return ExecutionEngine(broker=broker or PaperBroker(clock=clock), store=store, clock=clock, dry_run=dry_run,
                           settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0", **GROUP_LIMITS_ENV}))


def order(intent_id, side, qty, symbol="AAPL", **kw):
    return OrderIntent("s1", "acct", symbol, side, qty, intent_id=intent_id, **kw)


# ------------------------------------------------------------------ defect 3: the applied lot method

@pytest.mark.parametrize("method", ["LIFO", "HIFO"])
def test_history_rows_carry_the_users_configured_lot_method(world, method):
    store, put, rows = world
    put("users/u1/config/tax", {"lot_method": method})
    engine = engine_on(store)
    approve(store, pair_request(engine.clock))

    engine.execute_intent(order("b1", "buy", "3"), CTX)
    engine.execute_intent(order("s1", "sell", "1"), CTX)
    engine.execute_group(pair_request(engine.clock), CTX, group_id="g1")

    history = rows("users/u1/portfolio/history/trades")
    assert {k: v["tax"]["lot_method"] for k, v in history.items()} == {
        "b1": method, "s1": method, "g1--leg_001": method, "g1--leg_002": method}
    assert store_book_method(rows, "AAPL") == method


def store_book_method(rows, symbol):
    return next(v["method"] for k, v in rows("users/u1/tax_books").items() if k.endswith(symbol))


def test_a_specific_sale_without_named_lots_is_recorded_as_fifo_and_one_with_names_as_specific(world):
    store, put, rows = world
    put("users/u1/config/tax", {"lot_method": "SPECIFIC"})
    engine = engine_on(store)
    engine.execute_intent(order("b1", "buy", "2"), CTX)
    lot = next(lot["lot_id"] for v in rows("users/u1/tax_books").values() for lot in book_lots(v))

    engine.execute_intent(order("s1", "sell", "1", metadata={"lot_ids": {lot: "1"}}), CTX)
    engine.execute_intent(order("s2", "sell", "1"), CTX)

    history = rows("users/u1/portfolio/history/trades")
    assert history["s1"]["tax"]["lot_method"] == "SPECIFIC"
    assert history["s2"]["tax"]["lot_method"] == "FIFO"


def test_a_later_fill_of_a_working_order_carries_the_configured_method(world):
    store, put, rows = world
    put("users/u1/config/tax", {"lot_method": "LIFO"})
    clock = ManualClock()
    engine = engine_on(store, broker=PaperBroker(WORKING_SPY, clock=clock), clock=clock)
    placed = engine.execute_intent(order("w1", "buy", "8", symbol="SPY"), CTX)
    clock.advance(11)

    engine.reconcile_intent("acme", "w1")

    history = rows("users/u1/portfolio/history/trades")
    assert placed.filled_qty == 2 and set(history) == {"w1", "w1--f1"}
    assert {v["tax"]["lot_method"] for v in history.values()} == {"LIFO"}


# ------------------------------------------------------------------ defect 6: one schema per row

def test_every_ledger_and_history_row_has_the_one_schema_whatever_wrote_it(world):
    store, put, rows = world
    clock = ManualClock()
    live = engine_on(store, broker=PaperBroker(WORKING_SPY, clock=clock), clock=clock)
    approve(store, pair_request(clock))
    live.execute_intent(order("w1", "buy", "8", symbol="SPY"), CTX)  # kind order (working)
    clock.advance(11)
    live.reconcile_intent("acme", "w1")  # kind fill
    fx = engine_on(store, clock=clock)
    fx.execute_group(pair_request(clock), CTX, group_id="g1")  # kind group_fill
    dry = engine_on(store, clock=clock, dry_run=True)
    dry.execute_group(pair_request(clock), CTX, group_id="g2")  # kind group_decision
    dry.execute_intent(order("d1", "buy", "1"), CTX)  # kind order, dry_run

    ledger = rows("tenants/acme/ledger_trades")
    history = rows("users/u1/portfolio/history/trades")

    assert {row["kind"] for row in ledger.values()} == {"order", "fill", "group_fill", "group_decision"}
    for trade_id, row in ledger.items():
        assert set(row) - {"recorded_at"} == set(LEDGER_FIELDS), trade_id
    assert {row["execution"]["kind"] for row in history.values()} == {"order", "fill", "group_fill"}
    for trade_id, row in history.items():
        assert set(row) - {"recorded_at"} == set(HISTORY_FIELDS), trade_id
        assert set(row["cost_analysis"]) == set(COST_ANALYSIS_FIELDS), trade_id
        assert set(row["tax"]) == set(HISTORY_TAX_FIELDS), trade_id
        assert set(row["execution"]) == set(EXECUTION_FIELDS), trade_id
    assert ledger["g1--leg_002"]["qty"] == "50000" and Decimal(ledger["w1--f1"]["qty"]) == 2
    assert Decimal(history["g1--leg_001"]["ordered_quantity"]) == Decimal("100000")


def test_a_lot_method_election_applies_only_to_sales_after_it_takes_effect(world):
    """Issue 16 item 2 on both stores: the method applied is the election in force at the sale."""
    from datetime import timedelta

    from backend.tax.election import add_election

    store, put, rows = world
    clock = ManualClock()
    engine = engine_on(store, clock=clock)
    engine.execute_intent(order("b1", "buy", "2"), CTX)
    switch = clock.now() + timedelta(hours=1)
    put("users/u1/config/tax", add_election({"lot_method": "LIFO"}, "HIFO", now=clock.now(), effective_at=switch))

    engine.execute_intent(order("s1", "sell", "1"), CTX)  # before the election takes effect: LIFO
    clock.advance(2 * 3600)
    engine.execute_intent(order("s2", "sell", "1"), CTX)  # after: HIFO

    history = rows("users/u1/portfolio/history/trades")
    assert history["b1"]["tax"]["lot_method"] == "FIFO"  # booked before any settings existed
    assert history["s1"]["tax"]["lot_method"] == "LIFO"
    assert history["s2"]["tax"]["lot_method"] == "HIFO"
