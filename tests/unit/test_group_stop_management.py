"""Issue 15: a cancel of a group leg's stop that never reached the venue (a crash between the stored
plan and the submit) and the resume's part in stop management, on the paper venue, the in-memory
store and a ManualClock (the ``World`` harness of test_group_leg_stops.py)."""
from __future__ import annotations

from decimal import Decimal as D

import pytest

from backend.adapters.memory_store import InMemoryStore
from backend.adapters.paper_broker import PaperBroker
from backend.adapters.sim_venue import SimulatedVenue
from backend.domain.clock import ManualClock
from backend.execution.group.leg_stop import LegStopStatus
from backend.execution.group.stop_management import StopManager
from tests.support.group_harness import TENANT, UID, CrashPoint, SimulatedCrash, World, group_request, leg, \
    ledger_rows, scenario


@pytest.fixture
def world(quiet_logs):
    clock = ManualClock()
    venue = SimulatedVenue(scenario(), clock=clock)
    world = World(InMemoryStore(), venue, clock, lambda **kw: PaperBroker(venue=venue),
                  env={"EXECUTION_ENGINE_ORDER_TIMEOUT_SECONDS": "5"})
    yield world
    world.check_invariants()


def request(world: World) -> dict:
    long_leg = {**leg("leg_001", "EURUSD", 1, 100000, "FX"), "stop_loss": {"stop_price": "1.0800"}}
    return group_request((long_leg, leg("leg_002", "GBPUSD", -1, 50000, "FX")), now=world.clock.now())


def stop_orders(world: World) -> list:
    return [o for o in world.venue.orders() if o.client_order_id.startswith(("mlst-", "mlsr-"))]


def test_a_cancel_of_a_planned_stop_the_venue_never_got_cancels_it_without_a_venue_order_and_it_is_never_sent(world):
    crashing = world.broker(crash=CrashPoint("submit_order", 3, "before"))  # dies before the stop's submit
    with pytest.raises(SimulatedCrash):
        world.execute(request(world), broker=crashing)
    assert world.stored().leg("leg_001").stop_loss.status is LegStopStatus.PLANNED
    world.expire_lease()

    outcome = StopManager(world.engine()).cancel(TENANT, UID, "g1", "leg_001")
    world.expire_lease()
    world.sweep()

    assert outcome.status == "canceled" and outcome.view["status"] == "CANCELED"
    assert stop_orders(world) == []  # the plan was never sent, neither by the cancel nor by the sweep
    rows = [r for r in ledger_rows(world.store) if r["trade_id"] == "g1--leg_001--stop--cancel"]
    assert [(r["kind"], r["broker_order_id"], r["qty"]) for r in rows] == [("cancel", None, "100000")]
    assert world.store.get(f"tenants/{TENANT}/execution_groups/g1")["_final"] is True


def test_a_lost_replace_answer_is_settled_by_the_sweep_once_the_old_order_is_final(world):
    world.execute(request(world))
    [old] = stop_orders(world)
    manager = StopManager(world.engine())
    group = world.stored()
    # the replace reached the venue but its answer was lost: the marker is stored, the venue replaced it
    from backend.domain.orders import ReplaceRequest
    from backend.execution.group import leg_stop as stops

    marker = {"key_id": "k" * 32, "fingerprint": "stop_price=1.0820", "client_order_id": "mlsr-lost-answer",
              "stop_price": "1.0820", "requested_at": world.clock.now().isoformat()}
    snap = world.store.load_group(TENANT, "g1")
    moved = stops.with_stop(group, "leg_001", stops.request_replace(group.leg("leg_001").stop_loss, marker))
    world.store.save_group(snap, {**snap.doc, **moved.to_dict()})
    new = world.venue.replace_order(old.broker_order_id, ReplaceRequest(client_order_id="mlsr-lost-answer",
                                                                        stop_price=D("1.0820")),
                                    account_id=PaperBroker(venue=world.venue).account_id)

    world.expire_lease()
    world.sweep()

    stop = world.stored().leg("leg_001").stop_loss
    assert (stop.status, stop.broker_order_id, stop.stop_price, stop.pending_replace) == (
        LegStopStatus.WORKING, new.broker_order_id, D("1.0820"), None)
    [row] = [r for r in ledger_rows(world.store) if r["kind"] == "replace"]
    assert row["replaces"]["broker_order_id"] == old.broker_order_id and row["broker_order_id"] == new.broker_order_id
    assert manager.get(TENANT, UID, "g1", "leg_001")["replacements"][0]["broker_order_id"] == new.broker_order_id
