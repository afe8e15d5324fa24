"""Seed 000's FX pair (long EURUSD 100k / short GBPUSD 50k) through the group executor on OANDA: the real
OandaBroker over HTTP to the local OANDA server, the in-memory store, a manual clock.

Shorts first, fills and slippage in pips; a failed second leg rolls the first back to flat with an
opposite market order for exactly the filled units (never a whole-position close, so a position the
group did not open stays); and under every fault of the issue each client id has exactly one order at
OANDA and the ledger equals the venue (``World.check_invariants`` after every test)."""
from __future__ import annotations

import time
from decimal import Decimal as D

import pytest

from backend.adapters.memory_store import InMemoryStore
from backend.adapters.oanda import OandaBroker, OandaConfig
from backend.adapters.oanda.broker import forget_instruments
from backend.adapters.oanda.client import close_shared_clients
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.execution.groups import GroupStatus
from backend.ports.broker import OrderRequest, OrderSide
from tests.support.group_harness import (
    ROLLBACK_PREFIX,
    World,
    group_ledger_rows,
    ledger_net_positions,
    scenario,
    venue_net_positions,
)
from tests.support.oanda_server import LocalOandaServer

FAST_TIMEOUT = {"EXECUTION_ENGINE_ORDER_TIMEOUT_SECONDS": "5"}
ORDERS = "POST /v3/accounts/*/orders"
SLIPPY = {"EUR/USD": {"fill": {"model": "immediate", "slippage_ticks": 2}},
          "GBP/USD": {"fill": {"model": "immediate", "slippage_ticks": 1}}}


@pytest.fixture
def oanda_world():
    """``oanda_world(symbols=None, check=True, timeout=1.0)`` → (World on OANDA, LocalOandaServer)."""
    servers: list[LocalOandaServer] = []
    checked: list[tuple[World, LocalOandaServer]] = []

    def make(symbols=None, *, check=True, timeout=1.0):
        clock = ManualClock()
        srv = LocalOandaServer(scenario(symbols), clock=clock).start()
        servers.append(srv)

        def inner(**kw):
            return OandaBroker(OandaConfig(srv.account_id, "token", base_url=srv.url, timeout_seconds=timeout),
                               clock=clock)

        world = World(InMemoryStore(), srv.venue, clock, inner, env=FAST_TIMEOUT)
        if check:
            checked.append((world, srv))
        return world, srv

    try:
        yield make
        for world, srv in checked:
            world.check_invariants()  # ledger net position per symbol == the venue's
            doubled = {cid: n for cid, n in srv.client_id_counts().items() if n != 1}
            assert not doubled, f"client ids with several OANDA orders: {doubled}"
    finally:
        for srv in servers:
            srv.stop()
        close_shared_clients()
        forget_instruments()


def creates(srv) -> list[tuple[str, str, str]]:
    """(instrument, units, client id) of every order OANDA created, in order."""
    return [(t["instrument"], t["units"], (t.get("clientExtensions") or {}).get("id", ""))
            for t in srv.transactions() if t["type"] in ("MARKET_ORDER", "LIMIT_ORDER")]


def test_the_seed_pair_fills_through_oanda_shorts_first_with_slippage_in_pips(oanda_world):
    world, srv = oanda_world(SLIPPY)

    group = world.execute()

    response = group.to_api_response()
    assert response["status"] == "FILLED" and response["rollback_executed"] is False
    legs = {leg["leg_id"]: leg for leg in response["legs"]}
    assert (legs["leg_001"]["fill_price"], legs["leg_001"]["slippage_pips"]) == ("1.0853", "2")  # ask 1.0851 + 2 pips
    assert (legs["leg_002"]["fill_price"], legs["leg_002"]["slippage_pips"]) == ("1.2698", "1")  # bid 1.2699 − 1 pip
    assert response["avg_slippage_pips"] == "1.5000"
    assert [(i, u) for i, u, _ in creates(srv)] == [("GBP_USD", "-50000"), ("EUR_USD", "100000")]  # short first
    assert venue_net_positions(srv.venue) == {"EUR/USD": D("100000"), "GBP/USD": D("-50000")}


def test_a_failed_second_leg_rolls_the_first_back_to_flat_with_an_opposite_order_for_its_units(oanda_world):
    world, srv = oanda_world()
    broker = world.broker().after("submit_order", 1,
                                  lambda: srv.inject(ORDERS, "insufficient_margin"))  # the long leg is refused

    group = world.execute(broker=broker)

    response = group.to_api_response()
    assert group.status is GroupStatus.ROLLED_BACK and response["status"] == "REJECTED"  # the seed's verdict
    assert response["rollback_executed"] is True
    orders = creates(srv)
    assert [(i, u) for i, u, _ in orders] == [("GBP_USD", "-50000"), ("EUR_USD", "100000"), ("GBP_USD", "50000")]
    assert orders[2][2].startswith(ROLLBACK_PREFIX)
    assert venue_net_positions(srv.venue) == {}  # flat
    assert not any(r.method == "PUT" and "/positions/" in r.path for r in srv.requests)


def test_a_rollback_closes_only_what_the_group_filled_and_leaves_an_existing_position(oanda_world):
    world, srv = oanda_world(check=False)  # the position opened outside the group is not in the group ledger
    outside = world.make_inner()
    outside.submit_order(OrderRequest("manual-1", "GBP/USD", AssetClass.FOREX, OrderSide.SELL, D("20000")))
    broker = world.broker().after("submit_order", 1, lambda: srv.inject(ORDERS, "market_halted"))

    group = world.execute(broker=broker)

    assert group.status is GroupStatus.ROLLED_BACK
    assert srv.venue.net_position("GBP/USD") == D("-20000")  # a whole-position close would have left 0
    assert ledger_net_positions(group_ledger_rows(world.store), srv.venue) == {}
    assert srv.client_id_counts()[orders_of(srv, "GBP_USD")[-1]] == 1


def orders_of(srv, instrument: str) -> list[str]:
    return [cid for i, _, cid in creates(srv) if i == instrument]


@pytest.mark.parametrize("kind, seconds, times", [
    ("503", 0, 1), ("500", 0, 2), ("drop", 0, 1), ("timeout_after_accept", 2.0, 1), ("429", 0, 4),
])
def test_a_fault_on_a_leg_submit_still_fills_the_pair_with_one_order_per_client_id(oanda_world, kind, seconds,
                                                                                      times):
    world, srv = oanda_world()
    srv.inject(ORDERS, kind, times=times, seconds=seconds)

    group = world.execute()

    assert group.to_api_response()["status"] == "FILLED"
    assert venue_net_positions(srv.venue) == {"EUR/USD": D("100000"), "GBP/USD": D("-50000")}


def test_a_lost_venue_answer_on_the_first_leg_is_adopted_by_client_id(oanda_world):
    world, srv = oanda_world()
    srv.venue.inject_fault("submit_order", "lost_response")

    group = world.execute()

    assert group.to_api_response()["status"] == "FILLED"
    assert len(creates(srv)) == 2


def test_a_stalled_leg_submit_parks_the_group_and_the_sweeper_adopts_the_late_order(oanda_world):
    world, srv = oanda_world(timeout=0.5)
    srv.inject(ORDERS, "stall", seconds=1.5)  # OANDA acts after our read timeout

    first = world.execute()

    assert first.to_api_response()["status"] not in ("FILLED", "REJECTED", "ROLLED_BACK")
    deadline = time.monotonic() + 5
    while not creates(srv) and time.monotonic() < deadline:
        time.sleep(0.05)
    world.expire_lease()
    (resumed,) = world.sweep()
    assert resumed.to_api_response()["status"] == "FILLED"
    assert [(i, u) for i, u, _ in creates(srv)] == [("GBP_USD", "-50000"), ("EUR_USD", "100000")]


@pytest.mark.parametrize("kind", ["insufficient_margin", "market_halted"])
def test_a_refused_first_leg_rejects_the_group_and_nothing_is_filled(oanda_world, kind):
    world, srv = oanda_world()
    srv.inject(ORDERS, kind)

    group = world.execute()

    assert group.to_api_response()["status"] == "REJECTED"
    assert venue_net_positions(srv.venue) == {}
    assert len(creates(srv)) == 1  # the refused order exists at OANDA, cancelled; the other leg was never sent


def test_on_firestore_a_faulty_oanda_pair_leaves_one_order_per_client_id_and_the_ledger_equal_to_the_venue(db):
    from backend.adapters.firestore_store import FirestoreStore

    clock = ManualClock()
    with LocalOandaServer(scenario(SLIPPY), clock=clock) as srv:
        def inner(**kw):
            return OandaBroker(OandaConfig(srv.account_id, "token", base_url=srv.url, timeout_seconds=1.0), clock=clock)

        world = World(FirestoreStore(db), srv.venue, clock, inner, env=FAST_TIMEOUT)
        srv.inject(ORDERS, "503")  # the short leg: answered 503, looked up, resubmitted
        broker = world.broker().after("submit_order", 1, lambda: srv.inject(ORDERS, "insufficient_margin"))

        group = world.execute(broker=broker)

        assert group.status is GroupStatus.ROLLED_BACK
        stored = world.stored()
        assert stored.status is GroupStatus.ROLLED_BACK
        world.check_invariants()
        assert set(srv.client_id_counts().values()) == {1} and venue_net_positions(srv.venue) == {}
        rows = group_ledger_rows(world.store)
        assert sorted((r["kind"], r["side"], r["filled_qty"]) for r in rows) == [
            ("group_fill", "sell", "50000"), ("rollback_fill", "buy", "50000")]
    close_shared_clients()
    forget_instruments()


def test_a_seeded_schedule_of_faults_on_writes_and_reads_keeps_one_order_per_client_id(oanda_world):
    import random

    world, srv = oanda_world()
    rng = random.Random(20260105)
    faults = [(ORDERS, "503", 0), (ORDERS, "drop", 0), (ORDERS, "timeout_after_accept", 1.5), (ORDERS, "429", 0),
              ("GET /v3/accounts/*/orders/*", "500", 0), ("GET /v3/accounts/*/pricing", "drop", 0),
              ("GET /v3/accounts/*/summary", "503", 0), (ORDERS, "insufficient_margin", 0),
              (ORDERS, "market_halted", 0), ("*", "429", 0)]
    statuses = []
    for n in range(10):
        route, kind, seconds = faults[n] if n < len(faults) else rng.choice(faults)
        srv.inject(route, kind, times=rng.randint(1, 2), seconds=seconds)
        group = world.execute(group_id=f"g{n}")
        srv.clear_faults()
        if not group.status.is_final:
            world.expire_lease()
            world.sweep()
            group = world.stored(f"g{n}")
        statuses.append(group.status)

    assert all(status.is_final for status in statuses), statuses
    assert GroupStatus.FILLED in statuses and len(set(statuses)) > 1
