"""Rollback (pure): close every filled unit of a REJECTED group, leg by leg, or escalate."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Mapping

from backend.domain.errors import RejectCode, Rejection
from backend.domain.money import ZERO
from backend.execution import client_ids
from backend.execution.group.aggregate import ExecutionGroup, group_rollback_client_order_id
from backend.execution.group.codec import aware
from backend.execution.group.lifecycle import ForeignOrder, group_event, require_status
from backend.execution.group.rollback_order import RollbackOrder
from backend.execution.group.settings import GroupSettings
from backend.execution.group.states import GroupEvent, GroupStatus, RollbackStatus, group_transition, \
    rollback_transition
from backend.domain.orders import BrokerOrder, OrderRequest, OrderState, OrderType



def rolled_back_units(group: ExecutionGroup, leg_id: str) -> Decimal:
    return sum((o.filled_qty for o in group.rollback_orders if o.leg_id == leg_id), ZERO)


def rollback_remaining(group: ExecutionGroup) -> dict[str, Decimal]:
    """Per leg: filled units still open = leg fill - rollback fills (recorded). Negative means the
    rollback over-closed (a position on the other side): never auto-corrected, escalated."""
    return {leg.leg_id: leg.filled_units - rolled_back_units(group, leg.leg_id) for leg in group.legs}


def is_flat(group: ExecutionGroup) -> bool:
    return all(value == ZERO for value in rollback_remaining(group).values())


@dataclass(frozen=True)
class RollbackProgress:
    remaining: Mapping[str, Decimal]
    in_flight: tuple[RollbackOrder, ...]  # PLANNED/SUBMITTED: look up by client id, submit, or poll
    plannable: tuple[str, ...]  # legs that can get a new rollback order now
    exhausted: tuple[str, ...]  # legs still open with no attempts left (or over-closed)

    @property
    def flat(self) -> bool:
        return all(value == ZERO for value in self.remaining.values())


def rollback_progress(group: ExecutionGroup, settings: GroupSettings) -> RollbackProgress:
    remaining = rollback_remaining(group)
    in_flight = tuple(o for o in group.rollback_orders if o.in_flight)
    busy = {o.leg_id for o in in_flight}
    plannable, exhausted = [], []
    for leg in group.legs:
        left = remaining[leg.leg_id]
        if left == ZERO or leg.leg_id in busy:
            continue
        attempts = sum(1 for o in group.rollback_orders if o.leg_id == leg.leg_id)
        if left > ZERO and attempts < settings.max_rollback_attempts:
            plannable.append(leg.leg_id)
        else:
            exhausted.append(leg.leg_id)
    return RollbackProgress(remaining, in_flight, tuple(plannable), tuple(exhausted))


def plan_rollback(group: ExecutionGroup, now: datetime, settings: GroupSettings
                  ) -> tuple[ExecutionGroup, tuple[RollbackOrder, ...]]:
    """New PLANNED rollback orders, one per leg that is still open, has no order in flight and has
    attempts left: the opposite side, MARKET, for exactly the open units. Persist the returned group
    BEFORE sending them; the ids are ``group_rollback_client_order_id(group, leg, seq)`` (tenant-namespaced) with ``seq`` = the
    leg's next order number, so replanning from the same stored state yields the same orders."""
    require_status(group, GroupStatus.ROLLING_BACK)
    now = aware(now, "now")
    progress = rollback_progress(group, settings)
    new_orders = []
    for leg_id in progress.plannable:
        leg = group.leg(leg_id)
        seq = sum(1 for o in group.rollback_orders if o.leg_id == leg_id) + 1
        new_orders.append(RollbackOrder(
            leg_id=leg_id, symbol=leg.symbol, side=leg.side.opposite, qty=progress.remaining[leg_id], seq=seq,
            client_order_id=group_rollback_client_order_id(group, leg_id, seq),
            created_timestamp=now, updated_timestamp=now))
    if not new_orders:
        return group, ()
    updated = replace(group, rollback_orders=group.rollback_orders + tuple(new_orders), updated_timestamp=now)
    return updated, tuple(new_orders)


def record_rollback_update(group: ExecutionGroup, client_order_id: str, *, status: RollbackStatus,
                           filled_qty: Decimal, now: datetime, fill_price: Decimal | None = None,
                           broker_order_id: str | None = None, rejection: Rejection | None = None) -> ExecutionGroup:
    """Fold a rollback order update in (transition-checked). A repeated identical final update is a
    no-op; a stale snapshot with a smaller fill keeps the recorded fill."""
    now = aware(now, "now")
    index = next((i for i, o in enumerate(group.rollback_orders) if o.client_order_id == client_order_id), None)
    if index is None:
        raise KeyError(client_order_id)
    order = group.rollback_orders[index]
    if order.status.is_final and status is order.status and filled_qty == order.filled_qty:
        return group
    rollback_transition(order.status, status)
    changes: dict[str, Any] = {"status": status, "updated_timestamp": now}
    if broker_order_id is not None:
        changes["broker_order_id"] = broker_order_id
    if filled_qty > order.filled_qty:
        changes["filled_qty"] = filled_qty
        changes["fill_price"] = fill_price
    if rejection is not None:
        changes["rejection"] = rejection
    orders = list(group.rollback_orders)
    orders[index] = replace(order, **changes)
    return replace(group, rollback_orders=tuple(orders), updated_timestamp=now)


def apply_rollback_order(group: ExecutionGroup, order: BrokerOrder, now: datetime) -> ExecutionGroup:
    """Fold a broker order snapshot of a rollback order (matched by client order id). An order that
    is not the planned one (symbol, side, quantity) raises :class:`ForeignOrder` and changes nothing."""
    planned = next((o for o in group.rollback_orders if o.client_order_id == order.client_order_id), None)
    if planned is None:
        raise KeyError(order.client_order_id)
    mismatch = client_ids.venue_order_mismatch(rollback_order_request(group, planned), order)
    if mismatch is not None:
        raise ForeignOrder(Rejection(mismatch.code, f"rollback {planned.leg_id}#{planned.seq}: {mismatch.detail}"))
    status = RollbackStatus.from_order_state(order.state)
    rejection = None
    if order.state is OrderState.REJECTED:
        rejection = Rejection(RejectCode.BROKER_REJECTED, order.venue_status or "rejected")
    return record_rollback_update(group, order.client_order_id, status=status, filled_qty=order.filled_qty,
                                  fill_price=order.filled_avg_price, broker_order_id=order.broker_order_id,
                                  rejection=rejection, now=now)


def complete_rollback(group: ExecutionGroup, now: datetime) -> ExecutionGroup:
    """ROLLING_BACK -> ROLLED_BACK once every leg is flat (verdict stays REJECTED)."""
    group_transition(group.status, GroupEvent.ROLLBACK_COMPLETED)
    if not is_flat(group):
        raise ValueError(f"group {group.group_id} is not flat: {rollback_remaining(group)}")
    return group_event(group, GroupEvent.ROLLBACK_COMPLETED, aware(now, "now"))


def escalate_rollback(group: ExecutionGroup, now: datetime, settings: GroupSettings) -> ExecutionGroup:
    """ROLLING_BACK -> FAILED_NEEDS_ATTENTION when nothing is in flight, nothing can be planned and a
    position is still open."""
    group_transition(group.status, GroupEvent.ROLLBACK_EXHAUSTED)
    progress = rollback_progress(group, settings)
    if progress.flat or progress.in_flight or progress.plannable:
        raise ValueError("rollback can still progress")
    return group_event(group, GroupEvent.ROLLBACK_EXHAUSTED, aware(now, "now"))


def rollback_order_request(group: ExecutionGroup, order: RollbackOrder) -> OrderRequest:
    leg = group.leg(order.leg_id)
    return OrderRequest(client_order_id=order.client_order_id, symbol=order.symbol, asset_class=leg.asset_class,
                        side=order.side, qty=order.qty, order_type=OrderType.MARKET)


