"""Issue 15 item 3: a multi-leg group may attach a stop per leg, placed once the group is FILLED.

Paper venue (SimulatedVenue + PaperBroker), InMemoryStore and a ManualClock, through the same
``World`` harness as test_group_executor.py. The seed's pair: long EURUSD 100k (leg_001), short
GBPUSD 50k (leg_002); the EURUSD touch at validation is 1.0851 (ask).

After each test: the ledger's net position per symbol (entries, rollbacks and stop fills) equals the
venue's, and no client order id reached the venue twice.
"""
from __future__ import annotations

from collections import defaultdict
from decimal import Decimal as D

import pytest

from backend.adapters.memory_store import InMemoryStore
from backend.adapters.paper_broker import PaperBroker
from backend.adapters.sim_venue import SimulatedVenue
from backend.domain.clock import ManualClock
from backend.domain.errors import InvalidInput, RejectCode
from backend.execution.client_ids import leg_stop_client_order_id
from backend.execution.group.leg_stop import LegStopStatus
from backend.execution.groups import GroupStatus
from backend.ports.broker import OrderState, OrderType
from tests.support.group_harness import (TENANT, CrashPoint, SimulatedCrash, World, assert_one_order_per_client_id,
                                         group_request, leg, ledger_rows, scenario)

EUR, GBP = "EUR/USD", "GBP/USD"
STOP_ID = leg_stop_client_order_id("g1", "leg_001", tenant_id=TENANT)


def legs_with_stop(stop_price: str = "1.0800", *, on: str = "leg_001") -> tuple[dict, dict]:
    long_leg = leg("leg_001", "EURUSD", 1, 100000, "FX")
    short_leg = leg("leg_002", "GBPUSD", -1, 50000, "FX")
    target = long_leg if on == "leg_001" else short_leg
    target["stop_loss"] = {"stop_price": stop_price}
    return long_leg, short_leg


def request_with_stop(world: World, stop_price: str = "1.0800", *, on: str = "leg_001", **kw) -> dict:
    return group_request(legs_with_stop(stop_price, on=on), now=world.clock.now(), **kw)


def net_from_ledger(world: World) -> dict[str, D]:
    net: dict[str, D] = defaultdict(D)
    for row in ledger_rows(world.store):
        if row.get("kind") in ("group_fill", "rollback_fill", "fill"):
            symbol, _ = world.venue.market.resolve(row["symbol"], row["asset_class"])
            net[symbol] += (1 if row["side"] == "buy" else -1) * D(row["filled_qty"])
    return {s: q for s, q in net.items() if q}


def net_at_venue(world: World) -> dict[str, D]:
    net: dict[str, D] = defaultdict(D)
    for fill in world.venue.fills():
        net[fill.symbol] += fill.side.direction * fill.qty
    return {s: q for s, q in net.items() if q}


@pytest.fixture
def make_world():
    worlds: list[World] = []

    def make(symbols: dict | None = None) -> World:
        clock = ManualClock()
        venue = SimulatedVenue(scenario(symbols), clock=clock)
        world = World(InMemoryStore(), venue, clock, lambda **kw: PaperBroker(venue=venue),
                      env={"EXECUTION_ENGINE_ORDER_TIMEOUT_SECONDS": "5"})
        worlds.append(world)
        return world

    yield make
    for world in worlds:
        assert net_from_ledger(world) == net_at_venue(world), "ledger and venue positions differ"
        assert_one_order_per_client_id(world.venue, *world.wrappers)


def stop_orders(world: World) -> list:
    return [o for o in world.venue.orders() if o.client_order_id.startswith("mlst-")]


def stop_rows(world: World) -> list[dict]:
    return [r for r in ledger_rows(world.store) if r.get("trade_id", "").endswith("--stop")]


def test_a_filled_pair_places_one_stop_for_the_filled_units_on_the_opposite_side(make_world):
    world = make_world()

    group = world.execute(request_with_stop(world))

    assert group.status is GroupStatus.FILLED
    [order] = stop_orders(world)
    assert (order.client_order_id, order.side.value, order.qty, order.order_type, order.stop_price) == (
        STOP_ID, "sell", D("100000"), OrderType.STOP, D("1.0800"))
    assert order.state is OrderState.NEW
    stop = world.stored().leg("leg_001").stop_loss
    assert (stop.status, stop.client_order_id, stop.qty, stop.broker_order_id) == (
        LegStopStatus.WORKING, STOP_ID, D("100000"), order.broker_order_id)
    assert world.stored().leg("leg_002").stop_loss is None
    doc = world.store.get(f"tenants/{TENANT}/execution_groups/g1")
    # final for the API, still findable by the sweeper while the stop works
    assert doc["status"] == "FILLED" and doc["_final"] is False and doc["_lease_owner"] is None
    assert group.to_api_response()["legs"][0]["stop_loss"]["status"] == "WORKING"
    assert stop_rows(world) == []


def test_a_stop_that_fires_at_the_venue_is_one_ledger_row_after_a_sweep_even_when_swept_twice(make_world):
    world = make_world()
    world.execute(request_with_stop(world))
    world.sweep()  # the stop still works: nothing to record
    assert stop_rows(world) == []

    world.venue.market.set_mid("EUR/USD", D("1.0750"))  # the price moves through the stop
    world.expire_lease()
    world.sweep()
    world.sweep()

    [row] = stop_rows(world)
    assert (row["trade_id"], row["kind"], row["side"], D(row["filled_qty"])) == (
        "g1--leg_001--stop", "fill", "sell", D("100000"))
    history = world.store.collection("users/u1/portfolio/history/trades")
    assert "users/u1/portfolio/history/trades/g1--leg_001--stop" in history
    stored = world.stored()
    assert stored.leg("leg_001").stop_loss.status is LegStopStatus.FILLED
    doc = world.store.get(f"tenants/{TENANT}/execution_groups/g1")
    assert doc["_final"] is True and "g1--leg_001--stop" in doc["_ledger_written"]
    assert world.store.find_stuck_groups(world.clock.now(), 10) == []
    assert world.venue.net_position(EUR) == 0
    # the stop's fill moved the leg's exposure in the same commit: the position the group settled is gone
    exposure = {p: d for p, d in world.store.collection(f"tenants/{TENANT}/exposure").items() if "EUR" in p}
    assert [d.get("position_nanos", 0) for d in exposure.values()] == [0]


def test_a_crash_between_the_stored_plan_and_the_submit_resumes_by_client_id_without_a_second_stop(make_world):
    world = make_world()
    # the two entries are submits 1 and 2; the stop is submit 3: the process dies after it reached the venue
    crashing = world.broker(crash=CrashPoint("submit_order", 3, "after"))
    with pytest.raises(SimulatedCrash):
        world.execute(request_with_stop(world), broker=crashing)
    stop = world.stored().leg("leg_001").stop_loss
    assert stop.status is LegStopStatus.PLANNED and stop.client_order_id == STOP_ID  # stored before the submit
    assert len(stop_orders(world)) == 1

    world.expire_lease()
    resumer = world.broker()
    world.sweep()
    resumed = world.resume(broker=resumer)  # nothing left to do (the sweep already took it): a no-op

    [order] = stop_orders(world)
    assert world.stored().leg("leg_001").stop_loss.status is LegStopStatus.WORKING
    assert world.stored().leg("leg_001").stop_loss.broker_order_id == order.broker_order_id
    assert resumed is None or resumed.status is GroupStatus.FILLED


def test_a_crash_before_the_stop_submit_sends_it_once_on_resume(make_world):
    world = make_world()
    crashing = world.broker(crash=CrashPoint("submit_order", 3, "before"))
    with pytest.raises(SimulatedCrash):
        world.execute(request_with_stop(world), broker=crashing)
    assert stop_orders(world) == [] and world.stored().leg("leg_001").stop_loss.status is LegStopStatus.PLANNED

    world.expire_lease()
    world.sweep()

    [order] = stop_orders(world)
    assert order.client_order_id == STOP_ID and order.qty == D("100000")


def test_a_rolled_back_group_places_no_stop(make_world):
    world = make_world({EUR: {"fill": {"model": "reject", "reject_reason": "no liquidity"}}})

    group = world.execute(request_with_stop(world))

    assert group.status is GroupStatus.ROLLED_BACK
    assert stop_orders(world) == [] and stop_rows(world) == []
    assert group.leg("leg_001").stop_loss.status is LegStopStatus.REQUESTED  # never planned
    assert world.store.get(f"tenants/{TENANT}/execution_groups/g1")["_final"] is True


def test_a_stop_on_the_wrong_side_rejects_the_group_before_any_order(make_world):
    world = make_world()

    group = world.execute(request_with_stop(world, "1.0900"))  # above a long's intended price (1.0851)

    assert group.status is GroupStatus.REJECTED
    assert group.rejection.code is RejectCode.STOP_PRICE_WRONG_SIDE
    assert "legs[0].stop_loss" in group.rejection.detail
    assert world.venue.orders() == []


def test_a_short_legs_stop_sits_above_its_price(make_world):
    world = make_world()

    group = world.execute(request_with_stop(world, "1.2800", on="leg_002"))

    assert group.status is GroupStatus.FILLED
    [order] = stop_orders(world)
    assert (order.side.value, order.qty, order.stop_price) == ("buy", D("50000"), D("1.2800"))


@pytest.mark.parametrize("stop_price, field", [
    ("1.08005", "legs[0].stop_loss.stop_price"),  # off the 0.0001 tick: never rounded
    ("-1", "legs[0].stop_loss.stop_price"),
])
def test_a_bad_stop_price_is_invalid_input_naming_the_field_and_nothing_is_written(make_world, stop_price, field):
    world = make_world()

    with pytest.raises(InvalidInput) as err:
        world.execute(request_with_stop(world, stop_price))

    assert err.value.field == field
    assert world.store.load_group(TENANT, "g1") is None and world.venue.orders() == []


def test_unknown_stop_loss_fields_are_refused(make_world):
    world = make_world()
    body = request_with_stop(world)
    body["legs"][0]["stop_loss"] = {"stop_price": "1.0800", "limit_price": "1.0790"}

    with pytest.raises(InvalidInput) as err:
        world.execute(body)

    assert err.value.field == "legs[0].stop_loss"


def test_http_body_with_a_misaligned_stop_is_a_400_naming_the_field():
    from backend.api.models import MultiLegRequest

    body = MultiLegRequest.model_validate({
        "strategy_id": "s1", "rpm_output": {}, "max_group_slippage_pips": "5", "allow_partial_fills": False,
        "legs": [{**leg("leg_001", "EURUSD", 1, 100000, "FX"), "stop_loss": {"stop_price": "1.0800"}},
                 leg("leg_002", "GBPUSD", -1, 50000, "FX")]})
    engine_legs = body.to_engine_request()["legs"]
    assert engine_legs[0]["stop_loss"] == {"stop_price": D("1.0800")} and "stop_loss" not in engine_legs[1]


def test_a_class_whose_venue_cannot_hold_a_stop_records_it_refused_and_the_group_stays_filled(make_world):
    world = make_world()
    crypto = {**leg("leg_001", "BTCUSD", 1, 1, "CRYPTO"), "stop_loss": {"stop_price": "60000"}}
    body = group_request((crypto, leg("leg_002", "GBPUSD", -1, 50000, "FX")), now=world.clock.now())

    group = world.execute(body)

    assert group.status is GroupStatus.FILLED
    stop = group.leg("leg_001").stop_loss
    assert stop.status is LegStopStatus.REFUSED and stop.rejection.code is RejectCode.ORDER_TYPE_NOT_SUPPORTED
    assert stop_orders(world) == []  # refused before anything was sent
    assert world.store.get(f"tenants/{TENANT}/execution_groups/g1")["_final"] is True


@pytest.mark.parametrize("stop_loss, field", [
    ({"stop_price": "1.08005"}, "legs[0].stop_loss.stop_price"),  # off the tick: the core's 400
    ({"stop_price": "-1"}, "legs[0].stop_loss.stop_price"),  # the HTTP model's 400
    ({"stop_price": "1.08", "extra": 1}, "legs[0].stop_loss.extra"),
])
def test_post_multi_leg_with_a_bad_stop_is_a_400_naming_the_field_and_nothing_is_written(stop_loss, field):
    import io

    from backend import logs
    from tests.support.api_stack import make_stack, multileg_body
    from tests.support.group_harness import approve

    logs.set_stream(io.StringIO())
    try:
        stack = make_stack(paper=True)
        body = multileg_body()
        approve(stack.store, body, tenant_id="acme", uid="alice", issuer_uid="rita")
        body["legs"][0]["stop_loss"] = stop_loss
        response = stack.post("/execute/multi-leg", body)
    finally:
        logs.set_stream(None)
    assert response.status == 400, response.json()
    assert response.json()["error"]["field"] == field
    assert stack.store.collection("tenants/acme/execution_groups") == {}
