"""Group and leg state machines, resolution, rollback planning and resumption (all pure)."""
from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import pytest
from hypothesis import given, settings, strategies as st

from backend.domain.errors import RejectCode, Rejection
from backend.execution.groups import (
    GROUP_TRANSITIONS,
    LEG_TRANSITIONS,
    ROLLBACK_TRANSITIONS,
    ExecutionGroup,
    GroupEvent,
    GroupSettings,
    GroupStatus,
    GroupVerdict,
    IllegalTransition,
    LegEvent,
    LegStatus,
    RollbackStatus,
    StepKind,
    abort_submission,
    apply_broker_order,
    apply_resolution,
    apply_rollback_order,
    begin_resolution,
    classify_fill,
    complete_rollback,
    decide_resolution,
    escalate_rollback,
    fail_validation,
    group_transition,
    hardening_check,
    is_flat,
    leg_transition,
    mark_all_submitted,
    mark_leg_submitted,
    next_step,
    pass_validation,
    plan_rollback,
    record_leg_fill,
    record_rollback_update,
    reject_leg,
    resolve_leg,
    rollback_client_order_id,
    rollback_order_request,
    rollback_remaining,
    rollback_transition,
    seed_rollback_trigger,
    start_validation,
    validate_group,
)
from backend.ports.broker import BrokerOrder, OrderSide, OrderState, Quote

NOW = datetime(2024, 12, 22, 10, 8, 30, tzinfo=timezone.utc)
SETTINGS = GroupSettings()

SEED_LEGS = [
    {"leg_id": "leg_001", "symbol": "EURUSD", "direction": 1, "units": 100000, "asset_class": "FX"},
    {"leg_id": "leg_002", "symbol": "GBPUSD", "direction": -1, "units": 50000, "asset_class": "FX"},
]
THREE_LEGS = SEED_LEGS + [{"leg_id": "leg_003", "symbol": "AUDUSD", "direction": 1, "units": 20000,
                           "asset_class": "FX"}]
QUOTES = {"EURUSD": ("1.0999", "1.1000"), "GBPUSD": ("1.2692", "1.2693"), "AUDUSD": ("0.6600", "0.6601")}


def make_group(legs=SEED_LEGS, **kwargs) -> ExecutionGroup:
    params = dict(group_id="g1", strategy_id="stat_arb_01", tenant_id="tenant-1", uid="uid-1", legs=legs, now=NOW,
                  rpm_output={"decision_id": "rpm-1", "approved": True,
                              "expires_at": (NOW + timedelta(minutes=5)).isoformat(),
                              "approved_legs": {leg["leg_id"]: leg["units"] for leg in legs}})
    params.update(kwargs)
    return ExecutionGroup.create(**params)


def quotes_at(now) -> dict[str, Quote]:
    return {sym: Quote(sym, D(bid), D(ask), now) for sym, (bid, ask) in QUOTES.items()}


def closes() -> dict[str, list[D]]:
    # three symbols with unrelated moves (no pair doubles a bet)
    patterns = {"EURUSD": [1, -1, 2, 0, -2, 1, 3, -1], "GBPUSD": [2, 1, -1, -3, 0, 2, -1, 1],
                "AUDUSD": [-1, 2, 1, 1, -2, -1, 0, 3]}
    out = {}
    for sym, steps in patterns.items():
        value, series = D("1.0000"), [D("1.0000")]
        for i in range(40):
            value += D(steps[i % len(steps)]) * D("0.0003") + D(i % 3) * D("0.0001")
            series.append(value)
        out[sym] = series
    return out


def broker_order(client_order_id, symbol, side, qty, state, filled, price, broker_id="b") -> BrokerOrder:
    return BrokerOrder(broker_id, client_order_id, symbol, side, D(qty), state, D(filled),
                       D(price) if price is not None else None)


class FakeVenue:
    """Decides, per leg, how much of the entry order fills and at what price; rollback orders fill
    by ``rollback_fill(order)``. Records every order id it was asked about (to detect doubles)."""

    def __init__(self, entry_fills, rollback_fill=None):
        self.entry_fills = entry_fills  # leg_id -> (fraction or "refuse", price)
        self.rollback_fill = rollback_fill or (lambda order: (OrderState.FILLED, order.qty))
        self.submitted: list[str] = []

    def entry(self, leg) -> BrokerOrder:
        self.submitted.append(leg.client_order_id)
        fraction, price = self.entry_fills[leg.leg_id]
        if fraction == "refuse":
            return broker_order(leg.client_order_id, leg.symbol, leg.side, leg.units, OrderState.REJECTED, 0, None,
                                f"b-{leg.leg_id}")
        filled = (leg.units * D(fraction)).quantize(D(1))
        state = OrderState.FILLED if filled == leg.units else OrderState.CANCELED
        return broker_order(leg.client_order_id, leg.symbol, leg.side, leg.units, state, filled,
                            price if filled else None, f"b-{leg.leg_id}")

    def rollback(self, order) -> BrokerOrder:
        self.submitted.append(order.client_order_id)
        state, filled = self.rollback_fill(order)
        return broker_order(order.client_order_id, order.symbol, order.side, order.qty, state, filled,
                            "1.0" if filled else None, f"rb-{order.client_order_id[-6:]}")


def drive(group, venue, *, buying_power=D("1000000"), harden=None, max_steps=200):
    """A pure stand-in for the orchestrator: ask next_step, do it, apply the result; the group is
    round-tripped through to_dict/from_dict after every step, as if persisted and reloaded."""
    now = NOW
    kinds = []
    for _ in range(max_steps):
        step = next_step(group, SETTINGS)
        kinds.append(step.kind)
        if step.kind is StepKind.DONE:
            return group, kinds
        if step.kind is StepKind.START_VALIDATION:
            group = start_validation(group, now)
        elif step.kind is StepKind.VALIDATE:
            rejection = validate_group(group, quotes_at(now), buying_power, closes(), group.rpm_output, now, SETTINGS)
            group = fail_validation(group, rejection, now) if rejection else pass_validation(group, quotes_at(now), now)
        elif step.kind is StepKind.SUBMIT_LEG:
            (leg_id,) = step.leg_ids
            leg = group.leg(leg_id)
            rejection = (harden or hardening_check)(group, leg_id, quotes_at(now)[leg.symbol], buying_power, closes(),
                                                    group.rpm_output, now, SETTINGS)
            if rejection:
                group = reject_leg(group, leg_id, rejection, now)
            else:
                group = mark_leg_submitted(group, leg_id, now)
                order = venue.entry(leg)  # acknowledged; the fill shows up when polled
                group = record_leg_fill(group, leg_id, filled_units=D(0), fill_price=None, now=now,
                                        broker_order_id=order.broker_order_id)
                if order.state is OrderState.REJECTED:
                    group = apply_broker_order(group, leg_id, order, now)
        elif step.kind is StepKind.ABORT_SUBMISSION:
            group = abort_submission(group, now)
        elif step.kind is StepKind.FINISH_SUBMISSION:
            group = mark_all_submitted(group, now)
        elif step.kind is StepKind.POLL_LEGS:
            for leg_id in step.leg_ids:
                order = venue.entry(group.leg(leg_id))
                group = apply_broker_order(group, leg_id, order, now)
        elif step.kind is StepKind.BEGIN_RESOLUTION:
            group = begin_resolution(group, now)
        elif step.kind is StepKind.RESOLVE:
            group = apply_resolution(group, now)
        elif step.kind is StepKind.PLAN_ROLLBACK:
            group, _ = plan_rollback(group, now, SETTINGS)
        elif step.kind is StepKind.DRIVE_ROLLBACK:
            for order in step.rollback_orders:
                group = apply_rollback_order(group, venue.rollback(order), now)
        elif step.kind is StepKind.COMPLETE_ROLLBACK:
            group = complete_rollback(group, now)
        elif step.kind is StepKind.ESCALATE:
            group = escalate_rollback(group, now, SETTINGS)
        else:  # pragma: no cover
            raise AssertionError(step)
        group = ExecutionGroup.from_dict(group.to_dict())
        now += timedelta(milliseconds=100)
    raise AssertionError(f"did not finish: {kinds[-10:]}")


# --- transition tables -----------------------------------------------------------------------


@pytest.mark.parametrize("state, event, expected", [(s, e, n) for (s, e), n in LEG_TRANSITIONS.items()])
def test_every_legal_leg_edge(state, event, expected):
    assert leg_transition(state, event) is expected


@pytest.mark.parametrize("state, event", [pair for pair in itertools.product(LegStatus, LegEvent)
                                          if pair not in LEG_TRANSITIONS])
def test_every_illegal_leg_edge_raises(state, event):
    with pytest.raises(IllegalTransition):
        leg_transition(state, event)


@pytest.mark.parametrize("state, event, expected", [(s, e, n) for (s, e), n in GROUP_TRANSITIONS.items()])
def test_every_legal_group_edge(state, event, expected):
    assert group_transition(state, event) is expected


ILLEGAL_GROUP_EDGES = [pair for pair in itertools.product(GroupStatus, GroupEvent) if pair not in GROUP_TRANSITIONS]


@pytest.mark.parametrize("state, event", ILLEGAL_GROUP_EDGES[::3] + [
    (GroupStatus.PENDING, GroupEvent.VALIDATION_PASSED),  # cannot skip validation
    (GroupStatus.REJECTED, GroupEvent.START_VALIDATION),  # final is final
    (GroupStatus.FILLED, GroupEvent.ROLLBACK_STARTED),
    (GroupStatus.MONITORING, GroupEvent.RESOLVED_FILLED),  # must pass through RESOLVING
    (GroupStatus.ROLLED_BACK, GroupEvent.ROLLBACK_COMPLETED),
])
def test_illegal_group_edges_raise(state, event):
    with pytest.raises(IllegalTransition):
        group_transition(state, event)


@pytest.mark.parametrize("state, new_state", sorted(ROLLBACK_TRANSITIONS))
def test_every_legal_rollback_order_edge(state, new_state):
    assert rollback_transition(state, new_state) is new_state


@pytest.mark.parametrize("state, new_state", [pair for pair in itertools.product(RollbackStatus, RollbackStatus)
                                              if pair not in ROLLBACK_TRANSITIONS])
def test_every_illegal_rollback_order_edge_raises(state, new_state):
    with pytest.raises(IllegalTransition):
        rollback_transition(state, new_state)


def test_final_states_have_no_way_out_and_every_state_is_reachable():
    for (state, _), _next in GROUP_TRANSITIONS.items():
        assert not state.is_final
    for (state, _), _next in LEG_TRANSITIONS.items():
        assert not state.is_final
    reached, frontier = {GroupStatus.PENDING}, [GroupStatus.PENDING]
    while frontier:
        state = frontier.pop()
        for (source, _), target in GROUP_TRANSITIONS.items():
            if source is state and target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(GroupStatus)


def test_applying_an_illegal_event_to_a_group_raises():
    group = make_group()

    with pytest.raises(IllegalTransition):
        begin_resolution(group, NOW)
    with pytest.raises(ValueError):
        mark_leg_submitted(group, "leg_001", NOW)  # not SUBMITTING yet


# --- the seed's scenarios, end to end through next_step ---------------------------------------


def test_seed_example_all_filled():
    venue = FakeVenue({"leg_001": ("1", "1.1005"), "leg_002": ("1", "1.2695")})

    group, kinds = drive(make_group(allow_partial_fills=True, max_group_slippage_pips=10.0), venue)

    assert (group.status, group.verdict) == (GroupStatus.FILLED, GroupVerdict.FILLED)
    response = group.to_api_response()
    assert response["status"] == "FILLED" and response["avg_slippage_pips"] == "1.0000"
    assert [leg["slippage_pips"] for leg in response["legs"]] == ["5", "-3"]
    assert response["rollback_executed"] is False and response["completed_timestamp"] is not None
    assert kinds[:4] == [StepKind.START_VALIDATION, StepKind.VALIDATE, StepKind.SUBMIT_LEG, StepKind.SUBMIT_LEG]
    assert venue.submitted[:2] == [group.leg("leg_002").client_order_id, group.leg("leg_001").client_order_id]


def test_seed_one_filled_one_partial_with_partials_allowed():
    venue = FakeVenue({"leg_001": ("1", "1.1000"), "leg_002": ("0.95", "1.2692")})

    group, _ = drive(make_group(allow_partial_fills=True), venue)

    assert (group.status, group.verdict) == (GroupStatus.PARTIALLY_FILLED, GroupVerdict.PARTIALLY_FILLED)
    assert group.leg("leg_002").status is LegStatus.PARTIALLY_FILLED
    assert group.rollback_orders == () and group.rollback_executed is False


def test_seed_one_filled_one_partial_without_partials_is_rolled_back():
    venue = FakeVenue({"leg_001": ("1", "1.1000"), "leg_002": ("0.95", "1.2692")})

    group, _ = drive(make_group(allow_partial_fills=False), venue)

    assert (group.status, group.verdict) == (GroupStatus.ROLLED_BACK, GroupVerdict.REJECTED)
    assert group.rejection.code is RejectCode.FILL_RATIO_TOO_LOW and "partial fills not allowed" in group.rejection.detail
    assert {(o.leg_id, o.side, o.qty) for o in group.rollback_orders} == {
        ("leg_001", OrderSide.SELL, D("100000")), ("leg_002", OrderSide.BUY, D("47500"))}
    assert group.to_api_response()["status"] == "REJECTED" and group.rollback_executed


def test_seed_one_filled_one_rejected_triggers_rollback():
    venue = FakeVenue({"leg_001": ("1", "1.1000"), "leg_002": ("0.5", "1.2692")})

    group, _ = drive(make_group(allow_partial_fills=True), venue)

    assert (group.status, group.verdict) == (GroupStatus.ROLLED_BACK, GroupVerdict.REJECTED)
    assert group.leg("leg_002").status is LegStatus.REJECTED
    assert group.leg("leg_002").rejection.code is RejectCode.FILL_RATIO_TOO_LOW
    assert {(o.leg_id, o.qty) for o in group.rollback_orders} == {("leg_001", D("100000")), ("leg_002", D("25000"))}
    assert is_flat(group)
    response = group.to_api_response()
    assert response["status"] == "REJECTED" and response["rollback_executed"] is True
    assert [leg["status"] for leg in response["legs"]] == ["FILLED", "REJECTED"]


def test_seed_all_rejected_without_fills_needs_no_rollback():
    venue = FakeVenue({"leg_001": ("0", "1.1"), "leg_002": ("refuse", None)})

    group, kinds = drive(make_group(allow_partial_fills=True), venue)

    assert (group.status, group.verdict) == (GroupStatus.REJECTED, GroupVerdict.REJECTED)
    assert group.rollback_orders == () and group.rollback_executed is False
    assert StepKind.PLAN_ROLLBACK not in kinds
    # the short went first and was refused: the long was never sent
    assert group.leg("leg_002").rejection.code is RejectCode.BROKER_REJECTED
    assert group.leg("leg_001").status is LegStatus.CANCELED
    assert venue.submitted == [group.leg("leg_002").client_order_id]


def test_a_tiny_fill_on_a_rejected_group_is_still_closed():
    # leg_001 fills 10% (not "> 10%"): the seed's trigger is false, the safe rule still closes it
    venue = FakeVenue({"leg_001": ("0.10", "1.1000"), "leg_002": ("0", None)})

    group, _ = drive(make_group(allow_partial_fills=True), venue)

    assert group.status is GroupStatus.ROLLED_BACK
    assert [(o.leg_id, o.qty) for o in group.rollback_orders] == [("leg_001", D("10000"))]


@pytest.mark.parametrize("fill_a, fill_b, seed_trigger", [
    ("1", "0.8999", True),
    ("1", "0.90", False),  # nobody below 90%
    ("0.10", "0", False),  # nobody above 10%
    ("0.1001", "0", True),
    ("0.5", "0.5", True),
    ("0", "0", False),
])
def test_seed_rollback_trigger_boundaries_and_the_safe_rule_contains_it(fill_a, fill_b, seed_trigger):
    group = make_group(allow_partial_fills=True)
    legs = tuple(replace(leg, filled_units=leg.units * D(f), fill_price=D("1.1") if D(f) else None,
                         intended_price=D("1.1"), status=classify_fill(leg.units * D(f), leg.units))
                 for leg, f in zip(group.legs, (fill_a, fill_b)))
    group = replace(group, legs=legs)

    resolution = decide_resolution(group)

    assert seed_rollback_trigger(group.legs) is seed_trigger
    assert resolution.seed_trigger is seed_trigger
    if seed_trigger:
        assert resolution.rollback
    assert resolution.rollback is (resolution.verdict is GroupVerdict.REJECTED and any(l.has_fill for l in legs))


# --- group slippage limit -------------------------------------------------------------------


@pytest.mark.parametrize("price_a, price_b, verdict", [
    ("1.1005", "1.2697", GroupVerdict.FILLED),  # (5 + -5)/2 = 0
    ("1.1010", "1.2692", GroupVerdict.FILLED),  # (10 + 0)/2 = 5: equal to the limit passes
    ("1.1011", "1.2692", GroupVerdict.REJECTED),  # 5.5 adverse
    ("1.0950", "1.2750", GroupVerdict.FILLED),  # large favorable slippage never rejects
])
def test_adverse_average_slippage_above_the_limit_rejects_and_rolls_back(price_a, price_b, verdict):
    venue = FakeVenue({"leg_001": ("1", price_a), "leg_002": ("1", price_b)})

    group, _ = drive(make_group(max_group_slippage_pips=5), venue)

    assert group.verdict is verdict
    if verdict is GroupVerdict.REJECTED:
        assert group.rejection.code is RejectCode.GROUP_SLIPPAGE_EXCEEDED
        assert str(group.rejection) == "GROUP_SLIPPAGE_EXCEEDED: avg_slippage_pips=5.5000 max=5"
        assert group.status is GroupStatus.ROLLED_BACK and len(group.rollback_orders) == 2


# --- validation failure and aborted submission --------------------------------------------


def test_validation_failure_rejects_without_orders():
    venue = FakeVenue({"leg_001": ("1", "1.1"), "leg_002": ("1", "1.2692")})

    group, kinds = drive(make_group(), venue, buying_power=D("100"))

    assert (group.status, group.verdict) == (GroupStatus.REJECTED, GroupVerdict.REJECTED)
    assert group.rejection.code is RejectCode.INSUFFICIENT_MARGIN
    assert all(leg.status is LegStatus.REJECTED for leg in group.legs)
    assert venue.submitted == [] and group.completed_timestamp is not None
    assert kinds == [StepKind.START_VALIDATION, StepKind.VALIDATE, StepKind.DONE]


def test_hardening_failure_mid_group_cancels_the_rest_and_rolls_back_what_was_sent():
    venue = FakeVenue({"leg_001": ("1", "1.1"), "leg_002": ("1", "1.2692"), "leg_003": ("1", "0.66")})
    widened = Rejection(RejectCode.SPREAD_WIDENED, "leg_001 EURUSD: widened=3.00 pips")

    def harden(group, leg_id, *args):
        return widened if leg_id == "leg_001" else None

    group, kinds = drive(make_group(THREE_LEGS, allow_partial_fills=True), venue, harden=harden)

    # order: leg_002 (short), then leg_001 refused before sending, leg_003 never sent
    assert group.leg("leg_001").status is LegStatus.REJECTED and group.leg("leg_001").rejection == widened
    assert group.leg("leg_003").status is LegStatus.CANCELED
    assert group.rejection == widened
    assert StepKind.ABORT_SUBMISSION in kinds
    assert [(o.leg_id, o.side) for o in group.rollback_orders] == [("leg_002", OrderSide.BUY)]
    assert group.status is GroupStatus.ROLLED_BACK
    assert venue.submitted.count(group.leg("leg_003").client_order_id) == 0


# --- rollback planning, resumption and failure ------------------------------------------


def rolling_group(fills=(("leg_001", "100000"), ("leg_002", "25000"))) -> ExecutionGroup:
    group = pass_validation(start_validation(make_group(), NOW), quotes_at(NOW), NOW)
    for leg in group.legs:
        group = mark_leg_submitted(group, leg.leg_id, NOW)
    group = mark_all_submitted(group, NOW)
    fills = dict(fills)
    for leg in group.legs:
        filled = D(fills.get(leg.leg_id, "0"))
        group = record_leg_fill(group, leg.leg_id, filled_units=filled, fill_price=D("1.2") if filled else None,
                                now=NOW)
        group = resolve_leg(group, leg.leg_id, NOW)
    group = apply_resolution(begin_resolution(group, NOW), NOW)
    assert group.status is GroupStatus.ROLLING_BACK
    return group


def test_rollback_plan_is_opposite_side_market_for_the_open_units():
    group = rolling_group()

    group, orders = plan_rollback(group, NOW, SETTINGS)

    assert [(o.leg_id, o.side, o.qty, o.seq, o.status) for o in orders] == [
        ("leg_001", OrderSide.SELL, D("100000"), 1, RollbackStatus.PLANNED),
        ("leg_002", OrderSide.BUY, D("25000"), 1, RollbackStatus.PLANNED)]
    assert orders[0].client_order_id == rollback_client_order_id("g1", "leg_001", 1, tenant_id="tenant-1")
    request = rollback_order_request(group, orders[1])
    assert (request.client_order_id, request.side, request.qty) == (orders[1].client_order_id, OrderSide.BUY, D("25000"))


def test_a_resumed_rollback_never_doubles():
    stored = rolling_group()

    first, orders_a = plan_rollback(stored, NOW, SETTINGS)
    _, orders_b = plan_rollback(stored, NOW, SETTINGS)  # crash before persisting: same ids again
    _, orders_c = plan_rollback(ExecutionGroup.from_dict(first.to_dict()), NOW, SETTINGS)  # after persisting

    assert [o.client_order_id for o in orders_a] == [o.client_order_id for o in orders_b]
    assert orders_c == ()  # in flight: look them up by client id, never plan again
    step = next_step(first, SETTINGS)
    assert step.kind is StepKind.DRIVE_ROLLBACK and step.rollback_orders == orders_a


def test_a_partially_filled_rollback_gets_a_second_order_for_the_rest():
    group, (order,) = plan_rollback(rolling_group((("leg_001", "100000"),)), NOW, SETTINGS)
    group = record_rollback_update(group, order.client_order_id, status=RollbackStatus.SUBMITTED,
                                   filled_qty=D("60000"), broker_order_id="rb-1", now=NOW)
    group = record_rollback_update(group, order.client_order_id, status=RollbackStatus.CANCELED,
                                   filled_qty=D("60000"), now=NOW)

    assert rollback_remaining(group) == {"leg_001": D("40000"), "leg_002": D("0")}
    assert next_step(group, SETTINGS).kind is StepKind.PLAN_ROLLBACK
    group, (second,) = plan_rollback(group, NOW, SETTINGS)
    assert (second.seq, second.qty, second.client_order_id) == (2, D("40000"), rollback_client_order_id("g1", "leg_001", 2, tenant_id="tenant-1"))
    group = record_rollback_update(group, second.client_order_id, status=RollbackStatus.FILLED,
                                   filled_qty=D("40000"), now=NOW)
    assert is_flat(group) and next_step(group, SETTINGS).kind is StepKind.COMPLETE_ROLLBACK
    assert complete_rollback(group, NOW).status is GroupStatus.ROLLED_BACK


def test_rollback_gives_up_after_the_attempt_budget_and_needs_attention():
    venue = FakeVenue({"leg_001": ("1", "1.1"), "leg_002": ("0.5", "1.2692")},
                      rollback_fill=lambda order: (OrderState.REJECTED, D(0)))

    group, kinds = drive(make_group(), venue)

    assert group.status is GroupStatus.FAILED_NEEDS_ATTENTION and group.status.needs_attention
    assert group.verdict is GroupVerdict.REJECTED and group.status.is_final
    assert len(group.rollback_orders) == 2 * SETTINGS.max_rollback_attempts
    assert all(o.rejection.code is RejectCode.BROKER_REJECTED for o in group.rollback_orders)
    assert group.to_api_response()["status"] == "FAILED_NEEDS_ATTENTION"
    assert kinds[-2:] == [StepKind.ESCALATE, StepKind.DONE]


def test_an_over_closed_leg_is_escalated_not_reopened():
    group, (order, second) = plan_rollback(rolling_group(), NOW, SETTINGS)
    group = record_rollback_update(group, order.client_order_id, status=RollbackStatus.FILLED,
                                   filled_qty=D("100001"), now=NOW)
    group = record_rollback_update(group, second.client_order_id, status=RollbackStatus.FILLED,
                                   filled_qty=D("25000"), now=NOW)

    assert rollback_remaining(group)["leg_001"] == D("-1")
    assert next_step(group, SETTINGS).kind is StepKind.ESCALATE
    with pytest.raises(ValueError):
        complete_rollback(group, NOW)


def test_rollback_updates_are_transition_checked_and_idempotent_when_final():
    group, (order, _) = plan_rollback(rolling_group(), NOW, SETTINGS)
    group = record_rollback_update(group, order.client_order_id, status=RollbackStatus.FILLED,
                                   filled_qty=D("100000"), now=NOW)

    again = record_rollback_update(group, order.client_order_id, status=RollbackStatus.FILLED,
                                   filled_qty=D("100000"), now=NOW + timedelta(seconds=1))

    assert again == group
    with pytest.raises(IllegalTransition):
        record_rollback_update(group, order.client_order_id, status=RollbackStatus.SUBMITTED,
                               filled_qty=D("100000"), now=NOW)
    with pytest.raises(KeyError):
        record_rollback_update(group, "unknown", status=RollbackStatus.FILLED, filled_qty=D(1), now=NOW)


# --- leg updates ---------------------------------------------------------------------------


def submitted_group() -> ExecutionGroup:
    group = pass_validation(start_validation(make_group(), NOW), quotes_at(NOW), NOW)
    return mark_leg_submitted(group, "leg_002", NOW)


def test_a_stale_fill_snapshot_does_not_shrink_the_recorded_fill():
    group = record_leg_fill(submitted_group(), "leg_002", filled_units=D("30000"), fill_price=D("1.2694"), now=NOW)

    group = record_leg_fill(group, "leg_002", filled_units=D("10000"), fill_price=D("1.2699"), now=NOW)

    assert (group.leg("leg_002").filled_units, group.leg("leg_002").fill_price) == (D("30000"), D("1.2694"))


def test_a_leg_cannot_change_broker_order_or_be_updated_after_it_is_final():
    group = record_leg_fill(submitted_group(), "leg_002", filled_units=D(0), fill_price=None, now=NOW,
                            broker_order_id="b-1")
    with pytest.raises(ValueError):
        record_leg_fill(group, "leg_002", filled_units=D(0), fill_price=None, now=NOW, broker_order_id="b-2")
    group = resolve_leg(group, "leg_002", NOW)
    with pytest.raises(IllegalTransition):
        record_leg_fill(group, "leg_002", filled_units=D("50000"), fill_price=D("1.3"), now=NOW)


def test_a_timed_out_order_is_rejected_with_the_given_reason_and_keeps_its_fill():
    group = submitted_group()
    leg = group.leg("leg_002")
    order = broker_order(leg.client_order_id, "GBPUSD", OrderSide.SELL, "50000", OrderState.CANCELED, "20000", "1.2692")
    timeout = Rejection(RejectCode.ORDER_TIMEOUT, "leg_002 not filled within 60s")

    group = apply_broker_order(group, "leg_002", order, NOW, timeout)

    leg = group.leg("leg_002")
    assert (leg.status, leg.rejection, leg.filled_units) == (LegStatus.REJECTED, timeout, D("20000"))
    assert leg.slippage_pips == D("0") and leg.completed_timestamp == NOW


def test_apply_broker_order_refuses_another_legs_order():
    group = submitted_group()
    other = broker_order("mleg-other", "GBPUSD", OrderSide.SELL, "50000", OrderState.FILLED, "50000", "1.2692")

    with pytest.raises(ValueError):
        apply_broker_order(group, "leg_002", other, NOW)


# --- resumption from stored state ---------------------------------------------------------


def test_a_crash_after_marking_a_leg_submitted_resumes_with_a_lookup_not_a_resubmit():
    stored = ExecutionGroup.from_dict(submitted_group().to_dict())

    step = next_step(stored, SETTINGS)

    assert step == next_step(stored, SETTINGS)
    assert (step.kind, step.leg_ids) == (StepKind.RECOVER_LEG, ("leg_002",))


def test_next_step_for_each_lifecycle_state():
    group = make_group()
    assert next_step(group, SETTINGS).kind is StepKind.START_VALIDATION
    group = start_validation(group, NOW)
    assert next_step(group, SETTINGS).kind is StepKind.VALIDATE
    group = pass_validation(group, quotes_at(NOW), NOW)
    assert next_step(group, SETTINGS).leg_ids == ("leg_002",)  # shorts first
    group = record_leg_fill(mark_leg_submitted(group, "leg_002", NOW), "leg_002", filled_units=D(0),
                            fill_price=None, now=NOW, broker_order_id="b-2")
    assert (next_step(group, SETTINGS).kind, next_step(group, SETTINGS).leg_ids) == (StepKind.SUBMIT_LEG, ("leg_001",))
    group = record_leg_fill(mark_leg_submitted(group, "leg_001", NOW), "leg_001", filled_units=D(0),
                            fill_price=None, now=NOW, broker_order_id="b-1")
    assert next_step(group, SETTINGS).kind is StepKind.FINISH_SUBMISSION
    group = mark_all_submitted(group, NOW)
    assert next_step(group, SETTINGS).leg_ids == ("leg_002", "leg_001")
    for leg_id in ("leg_001", "leg_002"):
        group = resolve_leg(record_leg_fill(group, leg_id, filled_units=group.leg(leg_id).units,
                                            fill_price=D("1.2"), now=NOW), leg_id, NOW)
    assert next_step(group, SETTINGS).kind is StepKind.BEGIN_RESOLUTION
    group = begin_resolution(group, NOW)
    assert next_step(group, SETTINGS).kind is StepKind.RESOLVE
    assert next_step(apply_resolution(group, NOW), SETTINGS).kind is StepKind.DONE


def test_fail_validation_and_abort_keep_timestamps_and_verdict_consistent():
    group = start_validation(make_group(), NOW)
    rejection = Rejection(RejectCode.STALE_TICK, "EURUSD age=9s")

    failed = fail_validation(group, rejection, NOW + timedelta(seconds=1))

    assert failed.completed_timestamp == NOW + timedelta(seconds=1) and failed.verdict is GroupVerdict.REJECTED
    assert {leg.rejection for leg in failed.legs} == {rejection}
    with pytest.raises(ValueError):
        abort_submission(pass_validation(group, quotes_at(NOW), NOW), NOW)  # nothing failed, no reason given


# --- property: a REJECTED group never ends with an open leg ---------------------------------

fractions = st.sampled_from(["0", "0.05", "0.10", "0.1001", "0.5", "0.8999", "0.9", "0.95", "0.9899", "0.99", "1",
                             "refuse"])


@settings(max_examples=60, deadline=None)
@given(st.tuples(fractions, fractions, fractions), st.booleans(), st.sampled_from([None, 0, 3, 50]),
       st.sampled_from(["fill", "half-then-fill", "refuse"]))
def test_rejected_groups_end_flat_or_flagged(fill_fractions, allow_partial, max_slip, rollback_behaviour):
    prices = {"leg_001": "1.1003", "leg_002": "1.2690", "leg_003": "0.6601"}
    venue_fills = {leg_id: (f, prices[leg_id]) for leg_id, f in zip(prices, fill_fractions)}
    calls: dict[str, int] = {}

    def rollback_fill(order):
        calls[order.leg_id] = calls.get(order.leg_id, 0) + 1
        if rollback_behaviour == "refuse":
            return OrderState.REJECTED, D(0)
        if rollback_behaviour == "half-then-fill" and calls[order.leg_id] == 1:
            return OrderState.CANCELED, (order.qty / 2).quantize(D(1))
        return OrderState.FILLED, order.qty

    venue = FakeVenue(venue_fills, rollback_fill)

    group, _ = drive(make_group(THREE_LEGS, allow_partial_fills=allow_partial, max_group_slippage_pips=max_slip), venue)

    assert group.status.is_final
    assert group.verdict is not None
    if group.verdict is GroupVerdict.REJECTED:
        assert is_flat(group) or group.status is GroupStatus.FAILED_NEEDS_ATTENTION
        if any(leg.has_fill for leg in group.legs):
            assert group.rollback_executed
        if rollback_behaviour != "refuse":
            assert group.status in (GroupStatus.REJECTED, GroupStatus.ROLLED_BACK)
    else:
        assert group.rollback_orders == ()
        assert all(leg.status in (LegStatus.FILLED, LegStatus.PARTIALLY_FILLED) for leg in group.legs)
    ids = [o.client_order_id for o in group.rollback_orders]
    assert len(ids) == len(set(ids))
    # the venue never saw a second entry order id for a leg other than by polling the same id
    assert set(venue.submitted) <= {leg.client_order_id for leg in group.legs} | set(ids)
