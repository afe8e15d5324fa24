"""The group executor on the official Firestore emulator (FirestoreStore): persisted groups, leg documents,
ledger and history rows, leases with update-time preconditions, the stuck-group query, crash and resume;
and a subset through the AlpacaBroker against the LocalAlpacaServer, including a real process kill.

After every test each world is checked: the net position per symbol in the ledger rows (group_fill /
rollback_fill, buy +, sell -) equals the venue's, and no client order id has two orders at the venue.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest

from backend.adapters.alpaca_broker import AlpacaBroker
from backend.adapters.firestore_store import FirestoreStore
from backend.adapters.paper_broker import PaperBroker
from backend.adapters.sim_venue import SimulatedVenue
from backend.domain.clock import ManualClock
from backend.domain.errors import RejectCode
from backend.execution.groups import GroupStatus, LegStatus, RollbackStatus, leg_client_order_id
from backend.ports.broker import OrderState
from tests.support.alpaca_server import LocalAlpacaServer
from tests.support.group_harness import (
    CHILD_CODE,
    EQUITY_LEGS,
    TENANT,
    CrashPoint,
    SimulatedCrash,
    World,
    assert_flat,
    assert_one_order_per_client_id,
    group_ledger_rows,
    group_request,
    orders_per_client_id,
    scenario,
)

ROOT = Path(__file__).resolve().parents[2]
EUR, GBP = "EUR/USD", "GBP/USD"
FAST_TIMEOUT = {"EXECUTION_ENGINE_ORDER_TIMEOUT_SECONDS": "5"}
REJECT = {"fill": {"model": "reject"}}
LATENCY = {EUR: {"fill": {"model": "latency", "latency_seconds": 1}},
           GBP: {"fill": {"model": "latency", "latency_seconds": 1}}}


def coid(leg_id: str, group_id: str = "g1") -> str:
    return leg_client_order_id(group_id, leg_id, tenant_id=TENANT)


@pytest.fixture
def paper_world(db):
    """Paper venue + FirestoreStore on the emulator; ``paper_world(symbols)`` builds one world."""
    worlds: list[World] = []

    def make(symbols: dict | None = None) -> World:
        clock = ManualClock()
        venue = SimulatedVenue(scenario(symbols), clock=clock)
        world = World(FirestoreStore(db), venue, clock, lambda **kw: PaperBroker(venue=venue), env=FAST_TIMEOUT)
        worlds.append(world)
        return world

    yield make
    for world in worlds:
        world.check_invariants()


@pytest.fixture
def alpaca_world(db):
    """LocalAlpacaServer (venue in this process) + AlpacaBroker + FirestoreStore; one per test."""
    servers: list[LocalAlpacaServer] = []
    worlds: list[World] = []

    def make(symbols: dict | None = None) -> tuple[World, LocalAlpacaServer]:
        clock = ManualClock()
        server = LocalAlpacaServer(scenario(symbols), clock=clock).start()
        servers.append(server)

        def inner(**kw):
            return AlpacaBroker("k", "s", url_override=server.url, clock=clock, timeout_seconds=5)

        world = World(FirestoreStore(db), server.venue, clock, inner, env=FAST_TIMEOUT)
        worlds.append(world)
        return world, server

    try:
        yield make
        for world in worlds:
            world.check_invariants()
    finally:
        for server in servers:
            server.stop()


def doc(db, path: str) -> dict:
    return db.document(path).get().to_dict()


# --------------------------------------------------------------------------------------------------
# Persistence of a filled group and of a rollback
# --------------------------------------------------------------------------------------------------


def test_a_filled_pair_persists_the_group_its_legs_and_one_ledger_and_history_row_per_fill(db, paper_world):
    world = paper_world()

    group = world.execute()

    assert group.to_api_response()["status"] == "FILLED"
    stored = doc(db, f"tenants/{TENANT}/execution_groups/g1")
    assert stored["status"] == "FILLED" and stored["_final"] is True and stored["_lease_until"] is None
    assert sorted(stored["_ledger_written"]) == ["g1--decision", "g1--leg_001", "g1--leg_002"]
    legs = {snap.id: snap.to_dict() for snap in db.collection(f"tenants/{TENANT}/execution_groups/g1/legs").stream()}
    assert {k: (v["status"], v["group_status"], v["filled_units"]) for k, v in legs.items()} == {
        "leg_001": ("FILLED", "FILLED", "100000"), "leg_002": ("FILLED", "FILLED", "50000")}
    ledger = doc(db, f"tenants/{TENANT}/ledger_trades/g1--leg_001")
    assert (ledger["kind"], ledger["side"], ledger["filled_qty"], ledger["filled_avg_price"]) == (
        "group_fill", "buy", "100000", "1.0851")
    assert ledger["client_order_id"] == coid("leg_001") and ledger["recorded_at"] is not None
    history = doc(db, "users/u1/portfolio/history/trades/g1--leg_002")
    assert history["tax"]["proceeds"] == str(D("50000") * D("1.2699")) and history["execution"]["kind"] == "group_fill"
    assert world.stored().to_api_response() == group.to_api_response()


def test_a_rejected_second_leg_is_rolled_back_and_both_fills_are_in_the_ledger(db, paper_world):
    world = paper_world({EUR: REJECT})

    group = world.execute()

    assert group.status is GroupStatus.ROLLED_BACK and group.rejection.code is RejectCode.BROKER_REJECTED
    stored = doc(db, f"tenants/{TENANT}/execution_groups/g1")
    assert [(o["leg_id"], o["side"], o["status"]) for o in stored["rollback_orders"]] == [("leg_002", "buy", "FILLED")]
    kinds = sorted((r["kind"], r["side"], r["filled_qty"]) for r in group_ledger_rows(world.store))
    assert kinds == [("group_fill", "sell", "50000"), ("rollback_fill", "buy", "50000")]
    assert_flat(world.venue)


@pytest.mark.parametrize("path", ["ops/execution", f"tenants/{TENANT}/config/risk"])
def test_a_kill_switch_document_rejects_the_group_before_any_order(db, paper_world, path):
    world = paper_world()
    db.document(path).set({"kill_switch": True})

    group = world.execute()

    assert group.status is GroupStatus.REJECTED and group.rejection.code is RejectCode.KILL_SWITCH
    assert world.venue.orders() == [] and group_ledger_rows(world.store) == []


# --------------------------------------------------------------------------------------------------
# Crash and resume, broker outage, leases
# --------------------------------------------------------------------------------------------------

CRASHES = [
    ("after leg 1 submit", {}, CrashPoint("submit_order", 1, "after"), GroupStatus.FILLED),
    ("before leg 2 submit", {}, CrashPoint("submit_order", 2, "before"), GroupStatus.FILLED),
    ("monitoring", LATENCY, CrashPoint("get_order", 1, "before"), GroupStatus.FILLED),
    ("rollback planned, before the order", {EUR: REJECT}, CrashPoint("submit_order", 3, "before"),
     GroupStatus.ROLLED_BACK),
    ("after the rollback order", {EUR: REJECT}, CrashPoint("submit_order", 3, "after"), GroupStatus.ROLLED_BACK),
]


@pytest.mark.parametrize("stage, symbols, crash, outcome", CRASHES, ids=[c[0] for c in CRASHES])
def test_a_crash_resumes_from_firestore_to_filled_or_flat_without_a_double_order(paper_world, stage, symbols, crash,
                                                                                 outcome):
    world = paper_world(symbols)
    with pytest.raises(SimulatedCrash):
        world.execute(broker=world.broker(crash=crash))

    held = world.resume()
    world.expire_lease()
    stuck = world.store.find_stuck_groups(world.clock.now(), 10)
    [group] = world.sweep()

    assert held is None and stuck == [(TENANT, "g1")]
    assert group.status is outcome and all(x.status.is_final for x in group.legs)
    if outcome is GroupStatus.ROLLED_BACK:
        assert_flat(world.venue)
    assert_one_order_per_client_id(world.venue, *world.wrappers)
    assert world.store.find_stuck_groups(world.clock.now() + timedelta(hours=1), 10) == []


def test_a_broker_outage_during_rollback_leaves_a_stuck_group_until_the_venue_is_back(paper_world):
    world = paper_world({EUR: REJECT})
    world.venue.inject_fault("submit_order", "unavailable", count=None, after_calls=2)

    first = world.execute()
    world.clock.advance(1)
    stuck = world.store.find_stuck_groups(world.clock.now(), 10)

    assert first.status is GroupStatus.ROLLING_BACK and stuck == [(TENANT, "g1")]
    assert [o.status for o in world.stored().rollback_orders] == [RollbackStatus.PLANNED]
    assert [r["kind"] for r in group_ledger_rows(world.store)] == ["group_fill"]

    world.venue.clear_faults()
    [group] = world.sweep()

    assert group.status is GroupStatus.ROLLED_BACK
    assert world.store.find_stuck_groups(world.clock.now() + timedelta(hours=1), 10) == []
    assert_flat(world.venue)


def test_a_stale_writer_loses_its_lease_on_the_update_time_precondition(paper_world):
    world = paper_world(LATENCY)
    stale = world.broker()
    taken_over: list = []

    def another_worker_takes_over() -> None:
        world.expire_lease()
        taken_over.append(world.resume())

    stale.after("get_order", 1, another_worker_takes_over)

    returned = world.execute(broker=stale)

    assert taken_over[0].status is GroupStatus.FILLED and returned.status is GroupStatus.FILLED
    assert stale.count("cancel_order") == 0 and stale.count("get_order") == 1
    assert len(group_ledger_rows(world.store)) == 2


# --------------------------------------------------------------------------------------------------
# Through the AlpacaBroker and the local Alpaca server
# --------------------------------------------------------------------------------------------------


def test_alpaca_a_filled_equity_pair(alpaca_world):
    world, server = alpaca_world()

    group = world.execute(group_request(EQUITY_LEGS))

    assert group.status is GroupStatus.FILLED
    assert [o.client_order_id for o in server.venue.orders()] == [coid("leg_002"), coid("leg_001")]  # short first
    assert server.venue.net_position("AAPL") == D("10") and server.venue.net_position("MSFT") == D("-5")


def test_alpaca_a_rejected_leg_is_rolled_back_to_flat(alpaca_world):
    world, server = alpaca_world({"AAPL": REJECT})

    group = world.execute(group_request(EQUITY_LEGS))

    assert group.status is GroupStatus.ROLLED_BACK and group.leg("leg_001").status is LegStatus.REJECTED
    assert [o.state for o in server.venue.orders()] == [OrderState.FILLED, OrderState.REJECTED, OrderState.FILLED]
    assert_flat(server.venue)


def test_alpaca_an_fx_leg_is_rejected_because_the_broker_does_not_trade_forex(alpaca_world):
    world, server = alpaca_world()

    group = world.execute()  # the seed's EURUSD / GBPUSD pair

    assert group.status is GroupStatus.REJECTED and group.rejection.code is RejectCode.NO_VENUE_FOR_ASSET_CLASS
    assert server.venue.orders() == []


def test_alpaca_a_crash_after_the_first_submit_is_resumed_by_client_id(alpaca_world):
    world, server = alpaca_world()
    with pytest.raises(SimulatedCrash):
        world.execute(group_request(EQUITY_LEGS), broker=world.broker(crash=CrashPoint("submit_order", 1, "after")))

    world.expire_lease()
    [group] = world.sweep()

    assert group.status is GroupStatus.FILLED
    assert orders_per_client_id(server.venue) == {coid("leg_001"): 1, coid("leg_002"): 1}
    assert_one_order_per_client_id(server.venue, *world.wrappers)


def test_alpaca_503_on_the_rollback_keeps_the_group_rolling_back_until_the_venue_answers(alpaca_world):
    world, server = alpaca_world({"AAPL": REJECT})
    broker = world.broker()
    broker.after("submit_order", 2, lambda: server.inject("POST /v2/orders", "503", times=None))

    first = world.execute(group_request(EQUITY_LEGS), broker=broker)
    world.clock.advance(1)
    stuck = world.store.find_stuck_groups(world.clock.now(), 10)

    assert first.status is GroupStatus.ROLLING_BACK and stuck == [(TENANT, "g1")]
    assert server.venue.net_position("MSFT") == D("-5")

    server.clear_faults()
    [group] = world.sweep()

    assert group.status is GroupStatus.ROLLED_BACK
    assert_flat(server.venue)


@pytest.mark.parametrize("method, nth, when", [("submit_order", 1, "after"), ("submit_order", 2, "before")])
def test_a_killed_process_is_resumed_from_firestore_with_one_order_per_client_id(alpaca_world, method, nth, when):
    world, server = alpaca_world()
    body = json.dumps(group_request(EQUITY_LEGS, now=world.clock.now()))

    child = subprocess.run([sys.executable, "-c", CHILD_CODE, server.url, "g-kill", body, method, str(nth), when],
                           cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                           timeout=60)

    assert child.returncode == 1, child.stdout[-2000:] + child.stderr[-2000:]
    dead = world.stored("g-kill")
    assert dead.status is GroupStatus.SUBMITTING and not dead.status.is_final
    assert [o.client_order_id for o in server.venue.orders()] == [coid("leg_002", "g-kill")]

    assert world.resume("g-kill") is None  # the dead process's lease still runs
    world.expire_lease()
    [group] = world.sweep()

    assert group.status is GroupStatus.FILLED
    assert orders_per_client_id(server.venue) == {coid("leg_002", "g-kill"): 1, coid("leg_001", "g-kill"): 1}
    assert len(group_ledger_rows(world.store)) == 2
