"""Sweeper and intent-document intake on the paper broker and the in-memory store (fast).
The same flows on the official emulator: tests/integration/test_sweeper_firestore.py."""
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest

from backend.adapters.memory_store import InMemoryStore
from backend.adapters.paper_broker import PaperBroker
from backend.domain.clock import ManualClock
from backend.execution.engine import ExecutionEngine
from backend.execution.intent import ExecutionContext, OrderIntent
from backend.execution.sweeper import Sweeper
from backend.service.intake import handle_intent_document
from backend.settings import ExecSettings
from tests.support.group_harness import GROUP_LIMITS_ENV, approve

CTX = ExecutionContext("acme", "u1")


def make_engine(clock=None, store=None, broker=None):
    clock = clock or ManualClock()
    store = store or InMemoryStore()
    approve(store, pair_request(clock))  # the risk desk's stored approval "d1" that pair_request references
    return ExecutionEngine(broker=broker or PaperBroker(clock=clock), store=store or InMemoryStore(), clock=clock,
                           dry_run=False, settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0",
                                                                         **GROUP_LIMITS_ENV}))


def pair_request(clock, **extra):
    return {"strategy_id": "stat_arb_01",
            "legs": [{"leg_id": "leg_001", "symbol": "EURUSD", "direction": 1, "units": 100000, "asset_class": "FX"},
                     {"leg_id": "leg_002", "symbol": "GBPUSD", "direction": -1, "units": 50000, "asset_class": "FX"}],
            "rpm_output": {"approved": True, "decision_id": "d1",
                           "expires_at": (clock.now() + timedelta(hours=1)).isoformat(),
                           "approved_legs": {"leg_001": "100000", "leg_002": "50000"}},
            "allow_partial_fills": True, **extra}


def orders_per_client_id(broker):
    counts = {}
    for order in broker.venue.orders():
        counts[order.client_order_id] = counts.get(order.client_order_id, 0) + 1
    return counts


def test_a_group_parked_by_a_broker_outage_is_finished_by_the_sweeper():
    engine = make_engine()
    broker, clock = engine.broker, engine.clock
    broker.venue.inject_fault("submit_order", "unavailable", count=None, after_calls=1)  # second leg fails
    parked = engine.execute_group(pair_request(clock), CTX, group_id="g1")
    assert not parked.status.is_final
    assert engine.store.find_stuck_groups(clock.now() + timedelta(seconds=1), 10) == [("acme", "g1")]
    broker.venue.clear_faults()
    clock.advance(1)
    report = Sweeper(engine).sweep()
    assert report.groups_resumed == 1 and report.groups_final == 1 and not report.errors
    group = engine.get_group("acme", "g1")
    assert group.status.value == "FILLED"
    assert set(orders_per_client_id(broker).values()) == {1}


def test_a_reserved_intent_is_reconciled_once_by_two_racing_sweepers():
    clock = ManualClock()
    engine = make_engine(clock)
    engine.broker.venue.inject_fault("submit_order", "lost_response", count=1)  # accepted, answer lost
    first = engine.execute_intent(OrderIntent("s1", "acct", "AAPL", "buy", "3", intent_id="i1"), CTX)
    assert first.status == "pending"
    clock.advance(float(engine.settings.lease_seconds) + 1)
    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(pool.map(lambda _: Sweeper(engine).sweep(), range(2)))
    assert sum(r.intents_final for r in reports) >= 1
    assert engine.store.get("tenants/acme/order_intents/i1")["status"] == "placed"
    assert list(orders_per_client_id(engine.broker).values()) == [1]


def test_two_sweepers_racing_handle_each_stuck_group_once():
    engine = make_engine()
    clock, broker = engine.clock, engine.broker
    broker.venue.inject_fault("submit_order", "unavailable", count=None)
    for n in range(5):
        engine.execute_group(pair_request(clock), CTX, group_id=f"g{n}")
    broker.venue.clear_faults()
    clock.advance(1)
    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(pool.map(lambda _: Sweeper(engine).sweep(), range(2)))
    assert sum(r.groups_resumed for r in reports) == 5
    assert all(engine.get_group("acme", f"g{n}").status.value == "FILLED" for n in range(5))
    assert set(orders_per_client_id(broker).values()) == {1}


def test_intent_document_executes_once_when_the_trigger_fires_three_times():
    engine = make_engine()
    doc = {"uid": "u1", "status": "new", "kind": "single",
           "intent": {"strategy_id": "s1", "broker_account_id": "acct", "symbol": "AAPL", "side": "buy", "qty": "2"}}
    engine.store.set_doc("tenants/acme/order_intents/app1", doc)
    results = [handle_intent_document(engine, "acme", "app1", doc) for _ in range(3)]
    assert results[0]["status"] == "placed"
    stored = engine.store.get("tenants/acme/order_intents/app1")
    assert stored["status"] == "placed" and stored["result"]["broker_order_id"] == results[0]["broker_order_id"]
    assert len(engine.broker.venue.orders()) == 1


@pytest.mark.parametrize("intent, field", [
    ({"strategy_id": "s1", "broker_account_id": "a", "symbol": "AAPL", "side": "buy", "qty": "-1"}, "qty"),
    ({"strategy_id": "s1", "broker_account_id": "a", "symbol": "AAPL", "side": "hold", "qty": "1"}, "side"),
    ("not an object", "intent"),
])
def test_malformed_intent_document_gets_a_coded_rejection_and_no_order(intent, field):
    engine = make_engine()
    doc = {"uid": "u1", "status": "new", "kind": "single", "intent": intent}
    engine.store.set_doc("tenants/acme/order_intents/bad", doc)
    out = handle_intent_document(engine, "acme", "bad", doc)
    assert out["error"]["field"] == field
    stored = engine.store.get("tenants/acme/order_intents/bad")
    assert stored["status"] == "rejected" and stored["result"]["error"]["field"] == field
    assert engine.broker.venue.orders() == []


def test_multi_leg_intent_document_runs_the_group_and_writes_the_result_back():
    engine = make_engine()
    doc = {"uid": "u1", "status": "new", "kind": "multi_leg", "request": pair_request(engine.clock)}
    engine.store.set_doc("tenants/acme/order_intents/grp1", doc)
    for _ in range(3):  # at-least-once delivery
        handle_intent_document(engine, "acme", "grp1", engine.store.get("tenants/acme/order_intents/grp1"))
    stored = engine.store.get("tenants/acme/order_intents/grp1")
    assert stored["status"] == "filled" and stored["result"]["group_id"] == "grp1"
    assert len(engine.broker.venue.orders()) == 2


def test_a_working_order_is_reconciled_fill_by_fill_and_its_remainder_released():
    clock = ManualClock()
    broker = PaperBroker({"seed": 1, "symbols": {"SPY": {"asset_class": "EQUITY", "mid": "520.00", "spread": "0.02",
                                                         "fill": {"model": "partial",
                                                                  "ratios": ["0.25", "0.5"]}}}}, clock=clock)
    engine = make_engine(clock, broker=broker)
    placed = engine.execute_intent(OrderIntent("s1", "acct", "SPY", "buy", "8", intent_id="w1"), CTX)
    assert placed.status == "placed" and placed.order_status == "partially_filled" and placed.filled_qty == 2
    clock.advance(11)
    assert Sweeper(engine).sweep().working_updated == 1  # 2 -> 4 filled
    broker.cancel_order(placed.broker_order_id)
    clock.advance(11)
    assert Sweeper(engine).sweep().working_updated == 1  # final: remainder released
    assert Sweeper(engine).sweep().working_found == 0
    rows = engine.store.collection("tenants/acme/ledger_trades")
    assert sorted(Decimal(r["filled_qty"]) for r in rows.values()) == [Decimal(2), Decimal(2)]
    exp = engine.store.get("tenants/acme/exposure/acct__SPY")
    assert exp["position_nanos"] == 4 * 10**9 and exp["reserved_long_nanos"] == 0
    assert engine.store.get("tenants/acme/order_intents/w1")["order_final"] is True


def test_malformed_multi_leg_document_is_rejected_on_the_document():
    engine = make_engine()
    request = pair_request(engine.clock)
    request["legs"][1]["direction"] = 3
    doc = {"uid": "u1", "status": "new", "kind": "multi_leg", "request": request}
    engine.store.set_doc("tenants/acme/order_intents/badgrp", doc)
    out = handle_intent_document(engine, "acme", "badgrp", doc)
    stored = engine.store.get("tenants/acme/order_intents/badgrp")
    assert out["status"] == "rejected" and stored["status"] == "rejected" and stored["result"]["error"]["field"]
    assert engine.broker.venue.orders() == []
