"""Lifecycle functions (pure: each returns a new group): validation, submission, fills, resolution."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, Iterable, Mapping

from backend.domain.errors import RejectCode, Rejection
from backend.execution import client_ids
from backend.execution.group.aggregate import ExecutionGroup, execution_order
from backend.execution.group.codec import aware, fmt
from backend.execution.group.fills import PARTIAL_RATIO, SEED_ROLLBACK_FILLED_RATIO, classify_fill, fill_ratio, \
    ratio_above, ratio_at_least, touch_price
from backend.execution.group.leg import ExecutionLeg
from backend.execution.group.states import VERDICT_FOR_STATUS, GroupEvent, GroupStatus, GroupVerdict, LegEvent, \
    LegStatus, group_transition
from backend.domain.orders import BrokerOrder, OrderRequest, OrderState, OrderType, Quote


class ForeignOrder(ValueError):
    """A broker order that is not the one we asked for (another symbol, side or quantity under our
    client id): refused, never folded into a group. ``rejection`` is CLIENT_ORDER_ID_MISMATCH."""

    def __init__(self, rejection: Rejection):
        super().__init__(str(rejection))
        self.rejection = rejection


def leg_order_request(group: ExecutionGroup, leg_id: str) -> OrderRequest:
    leg = group.leg(leg_id)
    return OrderRequest(client_order_id=leg.client_order_id, symbol=leg.symbol, asset_class=leg.asset_class,
                        side=leg.side, qty=leg.units, order_type=OrderType.MARKET)



def _with_leg(group: ExecutionGroup, leg_id: str, update: Callable[[ExecutionLeg], ExecutionLeg],
              now: datetime) -> ExecutionGroup:
    group.leg(leg_id)  # KeyError for an unknown leg
    legs = tuple(update(leg) if leg.leg_id == leg_id else leg for leg in group.legs)
    return replace(group, legs=legs, updated_timestamp=now)


def group_event(group: ExecutionGroup, event: GroupEvent, now: datetime, **changes: Any) -> ExecutionGroup:
    status = group_transition(group.status, event)
    extra: dict[str, Any] = {"updated_timestamp": now}
    verdict = VERDICT_FOR_STATUS[status]
    extra["verdict"] = verdict
    if status.is_final:
        extra["completed_timestamp"] = now
    return replace(group, status=status, **{**extra, **changes})


def start_validation(group: ExecutionGroup, now: datetime) -> ExecutionGroup:
    return group_event(group, GroupEvent.START_VALIDATION, aware(now, "now"))


def fail_validation(group: ExecutionGroup, rejection: Rejection, now: datetime) -> ExecutionGroup:
    """VALIDATING -> REJECTED: no order was sent; every leg is REJECTED with the group's reason."""
    now = aware(now, "now")
    legs = tuple(leg.apply(LegEvent.REJECT, now, rejection=rejection) for leg in group.legs)
    return group_event(replace(group, legs=legs), GroupEvent.VALIDATION_FAILED, now, rejection=rejection)


def pass_validation(group: ExecutionGroup, quotes: Mapping[str, Quote], now: datetime) -> ExecutionGroup:
    """VALIDATING -> SUBMITTING; records each leg's intended price (touch) and validated spread."""
    now = aware(now, "now")
    legs = []
    for leg in group.legs:
        quote = quotes.get(leg.symbol)
        if quote is None:
            raise ValueError(f"no quote for {leg.symbol}; validation cannot have passed")
        legs.append(replace(leg, intended_price=touch_price(leg.direction, quote), validated_spread=quote.spread,
                            updated_timestamp=now))
    return group_event(replace(group, legs=tuple(legs)), GroupEvent.VALIDATION_PASSED, now)


def pass_validation_dry_run(group: ExecutionGroup, quotes: Mapping[str, Quote], now: datetime) -> ExecutionGroup:
    """VALIDATING -> DRY_RUN (final): every gate passed under dry run; the legs keep their intended
    price and validated spread and stay PENDING — no order exists."""
    priced = pass_validation(group, quotes, now)
    return group_event(replace(group, legs=priced.legs), GroupEvent.VALIDATION_PASSED_DRY_RUN, aware(now, "now"))


def require_status(group: ExecutionGroup, *allowed: GroupStatus) -> None:
    if group.status not in allowed:
        raise ValueError(f"group {group.group_id} is {group.status.value}, expected one of "
                         f"{[s.value for s in allowed]}")


def mark_leg_submitted(group: ExecutionGroup, leg_id: str, now: datetime) -> ExecutionGroup:
    """PENDING -> SUBMITTED. Persist this BEFORE calling the broker with the leg's client order id:
    after a crash the leg is looked up by that id, never blindly resent."""
    require_status(group, GroupStatus.SUBMITTING)
    now = aware(now, "now")
    return _with_leg(group, leg_id, lambda leg: leg.apply(LegEvent.SUBMIT, now), now)


def reject_leg(group: ExecutionGroup, leg_id: str, rejection: Rejection, now: datetime) -> ExecutionGroup:
    """PENDING -> REJECTED: a hardening check refused the leg before anything was sent. Follow with
    :func:`abort_submission`."""
    require_status(group, GroupStatus.SUBMITTING)
    now = aware(now, "now")
    return _with_leg(group, leg_id, lambda leg: leg.apply(LegEvent.REJECT, now, rejection=rejection), now)


def record_leg_fill(group: ExecutionGroup, leg_id: str, *, filled_units: Decimal, fill_price: Decimal | None,
                    now: datetime, broker_order_id: str | None = None) -> ExecutionGroup:
    """Record the cumulative fill of a working leg (SUBMITTED self-edge). A snapshot with fewer filled
    units than already recorded is stale (out-of-order delivery) and leaves the fill unchanged; an
    over-fill is recorded as reported (the rollback closes what was really filled)."""
    now = aware(now, "now")

    def update(leg: ExecutionLeg) -> ExecutionLeg:
        changes: dict[str, Any] = {}
        if broker_order_id is not None:
            if leg.broker_order_id not in (None, broker_order_id):
                raise ValueError(f"{leg.leg_id}: broker order id changed {leg.broker_order_id} -> {broker_order_id}")
            changes["broker_order_id"] = broker_order_id
        if filled_units > leg.filled_units:
            changes["filled_units"] = filled_units
            changes["fill_price"] = fill_price
        return leg.apply(LegEvent.FILL_UPDATE, now, **changes)

    return _with_leg(group, leg_id, update, now)


def resolve_leg(group: ExecutionGroup, leg_id: str, now: datetime, rejection: Rejection | None = None) -> ExecutionGroup:
    """SUBMITTED -> final status by fill ratio, once the broker order is final. A REJECTED leg keeps
    ``rejection`` (e.g. BROKER_REJECTED, ORDER_TIMEOUT) or gets FILL_RATIO_TOO_LOW."""
    now = aware(now, "now")

    def update(leg: ExecutionLeg) -> ExecutionLeg:
        status = classify_fill(leg.filled_units, leg.units)
        if status is LegStatus.FILLED:
            return leg.apply(LegEvent.RESOLVE_FILLED, now)
        if status is LegStatus.PARTIALLY_FILLED:
            return leg.apply(LegEvent.RESOLVE_PARTIAL, now)
        reason = rejection or Rejection(RejectCode.FILL_RATIO_TOO_LOW,
                                      f"{leg.leg_id} {leg.symbol}: filled={fmt(leg.filled_units)} units={fmt(leg.units)} "
                                      f"ratio={fmt(fill_ratio(leg.filled_units, leg.units), '0.0001')} min={PARTIAL_RATIO}")
        return leg.apply(LegEvent.RESOLVE_REJECTED, now, rejection=reason)

    return _with_leg(group, leg_id, update, now)


def apply_broker_order(group: ExecutionGroup, leg_id: str, order: BrokerOrder, now: datetime,
                       rejection: Rejection | None = None) -> ExecutionGroup:
    """Fold a broker order snapshot into a SUBMITTED leg: record the fill, and resolve the leg when
    the order is final. A venue REJECTED order resolves with BROKER_REJECTED unless ``rejection`` is
    given (pass ORDER_TIMEOUT after canceling a timed-out order).

    Last line of defence: an order that is not the leg's own (client id, symbol, side, quantity)
    raises :class:`ForeignOrder` and changes nothing; the executor checks (and alerts) before."""
    leg = group.leg(leg_id)
    mismatch = client_ids.venue_order_mismatch(leg_order_request(group, leg_id), order)
    if mismatch is not None:
        raise ForeignOrder(Rejection(mismatch.code, f"{leg_id}: {mismatch.detail}"))
    group = record_leg_fill(group, leg_id, filled_units=order.filled_qty, fill_price=order.filled_avg_price,
                            now=now, broker_order_id=order.broker_order_id)
    if not order.state.is_final:
        return group
    if rejection is None and order.state is OrderState.REJECTED:
        rejection = Rejection(RejectCode.BROKER_REJECTED,
                            f"{leg.leg_id} {leg.symbol}: {order.venue_status or order.state.value}")
    return resolve_leg(group, leg_id, now, rejection)


def refuse_foreign_leg_order(group: ExecutionGroup, leg_id: str, rejection: Rejection, now: datetime) -> ExecutionGroup:
    """SUBMITTED -> REJECTED with ``rejection`` (CLIENT_ORDER_ID_MISMATCH): the venue answered the leg's
    client id with an order that is not ours. Nothing of that order is recorded (no broker id, no
    fill); a fill recorded earlier from the leg's own order is kept, so the rollback still closes it."""
    if rejection.code is not RejectCode.CLIENT_ORDER_ID_MISMATCH:
        raise ValueError(f"expected a {RejectCode.CLIENT_ORDER_ID_MISMATCH.value} rejection, got {rejection.code.value}")
    now = aware(now, "now")
    return _with_leg(group, leg_id, lambda leg: leg.apply(LegEvent.RESOLVE_REJECTED, now, rejection=rejection), now)


def abort_submission(group: ExecutionGroup, now: datetime, rejection: Rejection | None = None) -> ExecutionGroup:
    """SUBMITTING -> MONITORING after a leg failed: legs not yet sent are CANCELED and the group
    records ``rejection`` (default: the first failed leg's, in execution order); legs already sent
    are still monitored to a final state."""
    require_status(group, GroupStatus.SUBMITTING)
    now = aware(now, "now")
    if rejection is None:
        rejection = next((leg.rejection for leg in execution_order(group)
                          if leg.status is LegStatus.REJECTED and leg.rejection is not None), None)
    if rejection is None:
        raise ValueError("abort_submission needs a rejection (no failed leg carries one)")
    note = Rejection(rejection.code, f"not submitted: group aborted ({rejection.detail})")
    legs = tuple(leg.apply(LegEvent.CANCEL, now, rejection=note) if leg.status is LegStatus.PENDING else leg
                 for leg in group.legs)
    return group_event(replace(group, legs=legs), GroupEvent.SUBMISSION_ABORTED, now,
                        rejection=group.rejection or rejection)


def mark_all_submitted(group: ExecutionGroup, now: datetime) -> ExecutionGroup:
    """SUBMITTING -> MONITORING once every leg was sent."""
    group_transition(group.status, GroupEvent.ALL_SUBMITTED)
    pending = [leg.leg_id for leg in group.legs if leg.status is LegStatus.PENDING]
    if pending:
        raise ValueError(f"legs not submitted yet: {pending}")
    return group_event(group, GroupEvent.ALL_SUBMITTED, aware(now, "now"))


def begin_resolution(group: ExecutionGroup, now: datetime) -> ExecutionGroup:
    """MONITORING -> RESOLVING once every leg is final."""
    group_transition(group.status, GroupEvent.ALL_LEGS_FINAL)
    open_legs = [leg.leg_id for leg in group.legs if not leg.status.is_final]
    if open_legs:
        raise ValueError(f"legs not final yet: {open_legs}")
    return group_event(group, GroupEvent.ALL_LEGS_FINAL, aware(now, "now"))


def seed_rollback_trigger(legs: Iterable[ExecutionLeg]) -> bool:
    """The seed's trigger, kept for the audit trail: any leg < 90% filled AND any leg > 10% filled.
    :func:`decide_resolution` uses the stricter rule (any fill on a REJECTED group is closed)."""
    legs = list(legs)
    low = any(not ratio_at_least(leg.filled_units, leg.units, PARTIAL_RATIO) for leg in legs)
    high = any(ratio_above(leg.filled_units, leg.units, SEED_ROLLBACK_FILLED_RATIO) for leg in legs)
    return low and high


@dataclass(frozen=True)
class Resolution:
    verdict: GroupVerdict
    rejection: Rejection | None
    rollback: bool
    seed_trigger: bool

    @property
    def event(self) -> GroupEvent:
        if self.verdict is GroupVerdict.FILLED:
            return GroupEvent.RESOLVED_FILLED
        if self.verdict is GroupVerdict.PARTIALLY_FILLED:
            return GroupEvent.RESOLVED_PARTIAL
        return GroupEvent.ROLLBACK_STARTED if self.rollback else GroupEvent.RESOLVED_REJECTED


def decide_resolution(group: ExecutionGroup) -> Resolution:
    """The group verdict from final legs (pure).

    1. Any leg REJECTED or CANCELED (or a recorded abort) -> REJECTED, reason = the group's abort
       reason or the first failed leg's in execution order.
    2. All FILLED -> FILLED. Otherwise (some PARTIALLY_FILLED, none failed) -> PARTIALLY_FILLED if
       ``allow_partial_fills``, else REJECTED (FILL_RATIO_TOO_LOW "partial fills not allowed").
    3. A FILLED/PARTIALLY_FILLED candidate whose ADVERSE average slippage is strictly above
       ``max_group_slippage_pips`` -> REJECTED (GROUP_SLIPPAGE_EXCEEDED). Favorable slippage never
       rejects.
    4. rollback = verdict REJECTED and any leg has any fill: a REJECTED group never keeps an open
       leg, however small (stricter than :func:`seed_rollback_trigger`, which it contains).
    """
    open_legs = [leg.leg_id for leg in group.legs if not leg.status.is_final]
    if open_legs:
        raise ValueError(f"legs not final yet: {open_legs}")
    ordered = execution_order(group)
    failed = [leg for leg in ordered if leg.status in (LegStatus.REJECTED, LegStatus.CANCELED)]
    rejection: Rejection | None = None
    if group.rejection is not None or failed:
        verdict = GroupVerdict.REJECTED
        rejection = group.rejection or next((leg.rejection for leg in failed if leg.rejection is not None), None) \
            or Rejection(RejectCode.FILL_RATIO_TOO_LOW, f"{failed[0].leg_id} {failed[0].status.value}")
    elif all(leg.status is LegStatus.FILLED for leg in ordered):
        verdict = GroupVerdict.FILLED
    elif group.allow_partial_fills:
        verdict = GroupVerdict.PARTIALLY_FILLED
    else:
        partial = next(leg for leg in ordered if leg.status is LegStatus.PARTIALLY_FILLED)
        verdict = GroupVerdict.REJECTED
        rejection = Rejection(RejectCode.FILL_RATIO_TOO_LOW,
                            f"partial fills not allowed: {partial.leg_id} {partial.symbol} "
                            f"ratio={fmt(partial.fill_ratio, '0.0001')}")
    if verdict is not GroupVerdict.REJECTED and group.max_group_slippage_pips is not None:
        avg = group.avg_slippage_pips
        if avg is not None and avg > group.max_group_slippage_pips:
            verdict = GroupVerdict.REJECTED
            rejection = Rejection(RejectCode.GROUP_SLIPPAGE_EXCEEDED,
                                f"avg_slippage_pips={fmt(avg)} max={fmt(group.max_group_slippage_pips)}")
    rollback = verdict is GroupVerdict.REJECTED and any(leg.has_fill for leg in group.legs)
    return Resolution(verdict, rejection, rollback, seed_rollback_trigger(group.legs))


def apply_resolution(group: ExecutionGroup, now: datetime) -> ExecutionGroup:
    """RESOLVING -> FILLED | PARTIALLY_FILLED | REJECTED (nothing filled) | ROLLING_BACK."""
    require_status(group, GroupStatus.RESOLVING)
    now = aware(now, "now")
    resolution = decide_resolution(group)
    changes: dict[str, Any] = {"rejection": resolution.rejection}
    if resolution.rollback:
        changes["rollback_executed"] = True
    return group_event(group, resolution.event, now, **changes)


