"""The group path's pre-trade reads on the official Firestore emulator: batched, and still fresh where
it matters.

- A kill switch turned on between two legs' submits stops the second leg (the halt flags are read
  again, in the submit's one batched read, before every leg is sent).
- A clean 2-leg group's gate reads are counted at the client's RPC layer (``bench/fscount.py``): one
  batched read + one slot count at validation, the reservation's read-back, one batched read per
  submit. The test fails if either the billed reads or the read round trips grow past today's figure.
"""
from __future__ import annotations

import pytest

from backend.adapters.firestore_store import FirestoreStore
from backend.adapters.paper_broker import PaperBroker
from backend.adapters.sim_venue import SimulatedVenue
from backend.domain.clock import ManualClock
from backend.domain.errors import RejectCode
from backend.execution.groups import GroupStatus, leg_client_order_id
from bench.fscount import RpcLog, counting_store_class, instrument, summarize
from tests.support.group_harness import TENANT, World, assert_flat, scenario

# A clean 2-leg group (2 FX legs, nothing stored yet for the tenant), measured after this change:
# validation get_all (2 halt flags + 2 exposures + the approval = 5) + slot count (1), the
# reservation's read-back of 2 exposures (2), and per submit 2 halt flags + the leg's exposure (2 × 3).
# Before: 35 billed reads in 17 read round trips (a full risk snapshot per leg, 3 times per leg).
# issue 12 added the account: the binding (member + default account: 2 round trips, 2 reads) and the
# account document in each batched risk read (its status and limits are read fresh, like the switches)
# The lot-book capacity guard (backend/execution/lot_capacity.py) reads each leg's lot book in the
# validation's batched read: +1 billed read per leg symbol, no extra round trip. The user's history row of
# each leg's first fill (TRADE_ID_IN_USE: a group id the same user already traded under in another
# tenant) rides the same read: +1 billed read per leg, no extra round trip.
GATE_READS_2_LEGS = 21
GATE_READ_ROUND_TRIPS_2_LEGS = 7  # binding (2), get_all, count, reservation read-back, one get_all per submit (2)
WRITE_SIDE_OPS = {"create_group", "save_group"}  # the group document, fills and settlement (not the gate)


@pytest.fixture
def world(db):
    clock = ManualClock()
    venue = SimulatedVenue(scenario(None), clock=clock)
    made = World(FirestoreStore(db), venue, clock, lambda **kw: PaperBroker(venue=venue),
                 env={"EXECUTION_ENGINE_ORDER_TIMEOUT_SECONDS": "5"})
    yield made
    made.check_invariants()


def test_a_kill_switch_turned_on_between_two_legs_stops_the_second_leg_on_firestore(db, world):
    broker = world.broker().after("submit_order", 1, lambda: db.document(
        f"tenants/{TENANT}/config/risk").set({"kill_switch": True}))  # the operator halts after leg 1

    group = world.execute(broker=broker)

    assert group.status is GroupStatus.ROLLED_BACK and group.rejection.code is RejectCode.KILL_SWITCH
    leg_ids = {leg_client_order_id("g1", leg_id, tenant_id=TENANT) for leg_id in ("leg_001", "leg_002")}
    assert len([o for o in world.venue.orders() if o.client_order_id in leg_ids]) == 1  # leg 2 never sent
    assert_flat(world.venue)


def test_a_clean_two_leg_group_reads_the_gate_in_batched_round_trips(db):
    log = RpcLog()
    clock = ManualClock()
    venue = SimulatedVenue(scenario(None), clock=clock)
    store = counting_store_class()(instrument(db, log), log)
    world = World(store, venue, clock, lambda **kw: PaperBroker(venue=venue))
    world.engine().bind_account(TENANT, "u1", None, ())  # the user's account exists (auto mode made it once)
    log.events.clear()

    group = world.execute()

    assert group.status is GroupStatus.FILLED
    gate = [e for e in log.events if e["op"] not in WRITE_SIDE_OPS and e["rpc"] != "commit"]
    reads = [e for e in gate if e["rpc"] in ("batch_get_documents", "run_query", "run_aggregation_query")]
    assert summarize(gate)["billed_reads"] <= GATE_READS_2_LEGS, [(e["op"], e["rpc"]) for e in gate]
    assert len(reads) <= GATE_READ_ROUND_TRIPS_2_LEGS, [(e["op"], e["rpc"]) for e in reads]
    world.check_invariants()
