"""State machines of a group, its legs and its rollback orders: ``(state, event) -> state`` tables.

Every transition the lifecycle functions apply goes through one of these tables; an event the
current state does not accept raises :class:`IllegalTransition` (a programming error in the caller).
Unusual edges carry a comment.
"""
from __future__ import annotations

from enum import Enum
from typing import Mapping

from backend.domain.orders import OrderState


class IllegalTransition(ValueError):
    """An event that the current state does not accept: a programming error in the caller."""

    def __init__(self, machine: str, state: Enum, event: Enum):
        super().__init__(f"{machine}: {event.value} is not allowed in state {state.value}")
        self.machine = machine
        self.state = state
        self.event = event


class LegStatus(str, Enum):
    PENDING = "PENDING"  # not sent
    SUBMITTED = "SUBMITTED"  # intent persisted and (being) sent; working at the broker
    FILLED = "FILLED"  # final, fill ratio >= 0.99
    PARTIALLY_FILLED = "PARTIALLY_FILLED"  # final, 0.90 <= fill ratio < 0.99
    REJECTED = "REJECTED"  # final: refused by a gate / the broker, or fill ratio < 0.90
    CANCELED = "CANCELED"  # final: never sent because the group aborted first

    @property
    def is_final(self) -> bool:
        return self not in (LegStatus.PENDING, LegStatus.SUBMITTED)


class LegEvent(str, Enum):
    SUBMIT = "SUBMIT"  # applied and persisted BEFORE the broker call
    FILL_UPDATE = "FILL_UPDATE"
    RESOLVE_FILLED = "RESOLVE_FILLED"
    RESOLVE_PARTIAL = "RESOLVE_PARTIAL"
    RESOLVE_REJECTED = "RESOLVE_REJECTED"
    REJECT = "REJECT"
    CANCEL = "CANCEL"


LEG_TRANSITIONS: Mapping[tuple[LegStatus, LegEvent], LegStatus] = {
    (LegStatus.PENDING, LegEvent.SUBMIT): LegStatus.SUBMITTED,
    # validation or a hardening check refused the leg: nothing was sent
    (LegStatus.PENDING, LegEvent.REJECT): LegStatus.REJECTED,
    # the group aborted (another leg failed) before this leg was sent
    (LegStatus.PENDING, LegEvent.CANCEL): LegStatus.CANCELED,
    # self-edge: the cumulative fill grows while the order works; the state does not change
    (LegStatus.SUBMITTED, LegEvent.FILL_UPDATE): LegStatus.SUBMITTED,
    (LegStatus.SUBMITTED, LegEvent.RESOLVE_FILLED): LegStatus.FILLED,
    (LegStatus.SUBMITTED, LegEvent.RESOLVE_PARTIAL): LegStatus.PARTIALLY_FILLED,
    # also the broker refusing the submit, a venue cancel/expiry or our timeout cancel: the final
    # fill (maybe zero) is below 90%; the fill, if any, is still recorded and rolled back
    (LegStatus.SUBMITTED, LegEvent.RESOLVE_REJECTED): LegStatus.REJECTED,
}


def leg_transition(state: LegStatus, event: LegEvent) -> LegStatus:
    try:
        return LEG_TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition("leg", state, event) from None


class GroupStatus(str, Enum):
    PENDING = "PENDING"
    VALIDATING = "VALIDATING"
    REJECTED = "REJECTED"  # final: validation failed (no orders) or legs failed with no fill at all
    SUBMITTING = "SUBMITTING"
    MONITORING = "MONITORING"
    RESOLVING = "RESOLVING"
    FILLED = "FILLED"  # final
    PARTIALLY_FILLED = "PARTIALLY_FILLED"  # final (allow_partial_fills only)
    ROLLING_BACK = "ROLLING_BACK"
    ROLLED_BACK = "ROLLED_BACK"  # final: flat again; verdict REJECTED
    FAILED_NEEDS_ATTENTION = "FAILED_NEEDS_ATTENTION"  # final for automation: rollback could not flatten
    DRY_RUN = "DRY_RUN"  # final: every gate passed under dry run; nothing was sent

    @property
    def is_final(self) -> bool:
        return self in _FINAL_GROUP_STATES

    @property
    def needs_attention(self) -> bool:
        return self is GroupStatus.FAILED_NEEDS_ATTENTION


_FINAL_GROUP_STATES = frozenset({GroupStatus.REJECTED, GroupStatus.FILLED, GroupStatus.PARTIALLY_FILLED,
                                 GroupStatus.ROLLED_BACK, GroupStatus.FAILED_NEEDS_ATTENTION,
                                 GroupStatus.DRY_RUN})


class GroupEvent(str, Enum):
    START_VALIDATION = "START_VALIDATION"
    VALIDATION_FAILED = "VALIDATION_FAILED"
    VALIDATION_PASSED = "VALIDATION_PASSED"
    VALIDATION_PASSED_DRY_RUN = "VALIDATION_PASSED_DRY_RUN"
    ALL_SUBMITTED = "ALL_SUBMITTED"
    SUBMISSION_ABORTED = "SUBMISSION_ABORTED"
    ALL_LEGS_FINAL = "ALL_LEGS_FINAL"
    RESOLVED_FILLED = "RESOLVED_FILLED"
    RESOLVED_PARTIAL = "RESOLVED_PARTIAL"
    RESOLVED_REJECTED = "RESOLVED_REJECTED"
    ROLLBACK_STARTED = "ROLLBACK_STARTED"
    ROLLBACK_COMPLETED = "ROLLBACK_COMPLETED"
    ROLLBACK_EXHAUSTED = "ROLLBACK_EXHAUSTED"


GROUP_TRANSITIONS: Mapping[tuple[GroupStatus, GroupEvent], GroupStatus] = {
    (GroupStatus.PENDING, GroupEvent.START_VALIDATION): GroupStatus.VALIDATING,
    (GroupStatus.VALIDATING, GroupEvent.VALIDATION_FAILED): GroupStatus.REJECTED,
    (GroupStatus.VALIDATING, GroupEvent.VALIDATION_PASSED): GroupStatus.SUBMITTING,
    # dry run: every gate passed, and the group ends here without sending anything
    (GroupStatus.VALIDATING, GroupEvent.VALIDATION_PASSED_DRY_RUN): GroupStatus.DRY_RUN,
    (GroupStatus.SUBMITTING, GroupEvent.ALL_SUBMITTED): GroupStatus.MONITORING,
    # unusual: an aborted submission still goes to MONITORING, because legs already sent must
    # reach a final state (and their fills be known) before the group can be resolved
    (GroupStatus.SUBMITTING, GroupEvent.SUBMISSION_ABORTED): GroupStatus.MONITORING,
    (GroupStatus.MONITORING, GroupEvent.ALL_LEGS_FINAL): GroupStatus.RESOLVING,
    (GroupStatus.RESOLVING, GroupEvent.RESOLVED_FILLED): GroupStatus.FILLED,
    (GroupStatus.RESOLVING, GroupEvent.RESOLVED_PARTIAL): GroupStatus.PARTIALLY_FILLED,
    # unusual: REJECTED is reached from RESOLVING too, when legs failed but nothing at all filled
    (GroupStatus.RESOLVING, GroupEvent.RESOLVED_REJECTED): GroupStatus.REJECTED,
    (GroupStatus.RESOLVING, GroupEvent.ROLLBACK_STARTED): GroupStatus.ROLLING_BACK,
    (GroupStatus.ROLLING_BACK, GroupEvent.ROLLBACK_COMPLETED): GroupStatus.ROLLED_BACK,
    # the rollback ran out of attempts with a position still open: a human must act
    (GroupStatus.ROLLING_BACK, GroupEvent.ROLLBACK_EXHAUSTED): GroupStatus.FAILED_NEEDS_ATTENTION,
}


def group_transition(state: GroupStatus, event: GroupEvent) -> GroupStatus:
    try:
        return GROUP_TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition("group", state, event) from None


class GroupVerdict(str, Enum):
    FILLED = "FILLED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    REJECTED = "REJECTED"
    DRY_RUN = "DRY_RUN"


# The verdict each lifecycle state implies (None: not decided yet). Enforced on construction.
VERDICT_FOR_STATUS: Mapping[GroupStatus, GroupVerdict | None] = {
    GroupStatus.PENDING: None,
    GroupStatus.VALIDATING: None,
    GroupStatus.SUBMITTING: None,
    GroupStatus.MONITORING: None,
    GroupStatus.RESOLVING: None,
    GroupStatus.REJECTED: GroupVerdict.REJECTED,
    GroupStatus.FILLED: GroupVerdict.FILLED,
    GroupStatus.PARTIALLY_FILLED: GroupVerdict.PARTIALLY_FILLED,
    GroupStatus.ROLLING_BACK: GroupVerdict.REJECTED,
    GroupStatus.ROLLED_BACK: GroupVerdict.REJECTED,
    GroupStatus.FAILED_NEEDS_ATTENTION: GroupVerdict.REJECTED,
    GroupStatus.DRY_RUN: GroupVerdict.DRY_RUN,
}


class RollbackStatus(str, Enum):
    PLANNED = "PLANNED"  # persisted with its client order id; may or may not have reached the broker
    SUBMITTED = "SUBMITTED"  # acknowledged by the broker, working
    FILLED = "FILLED"
    CANCELED = "CANCELED"  # canceled or expired, maybe with a partial fill
    REJECTED = "REJECTED"  # refused, maybe after a partial fill

    @property
    def is_final(self) -> bool:
        return self in (RollbackStatus.FILLED, RollbackStatus.CANCELED, RollbackStatus.REJECTED)

    @classmethod
    def from_order_state(cls, state: OrderState) -> "RollbackStatus":
        return _ROLLBACK_FROM_ORDER_STATE[state]


_ROLLBACK_FROM_ORDER_STATE = {
    OrderState.PENDING_NEW: RollbackStatus.SUBMITTED,
    OrderState.NEW: RollbackStatus.SUBMITTED,
    OrderState.PARTIALLY_FILLED: RollbackStatus.SUBMITTED,
    OrderState.FILLED: RollbackStatus.FILLED,
    OrderState.CANCELED: RollbackStatus.CANCELED,
    OrderState.EXPIRED: RollbackStatus.CANCELED,
    OrderState.REJECTED: RollbackStatus.REJECTED,
}

ROLLBACK_TRANSITIONS: frozenset[tuple[RollbackStatus, RollbackStatus]] = frozenset({
    (RollbackStatus.PLANNED, RollbackStatus.SUBMITTED),
    # unusual: after a crash the lookup by client order id finds the order already final
    (RollbackStatus.PLANNED, RollbackStatus.FILLED),
    (RollbackStatus.PLANNED, RollbackStatus.CANCELED),
    (RollbackStatus.PLANNED, RollbackStatus.REJECTED),
    # self-edge: fill progress while working
    (RollbackStatus.SUBMITTED, RollbackStatus.SUBMITTED),
    (RollbackStatus.SUBMITTED, RollbackStatus.FILLED),
    (RollbackStatus.SUBMITTED, RollbackStatus.CANCELED),
    (RollbackStatus.SUBMITTED, RollbackStatus.REJECTED),
})


def rollback_transition(state: RollbackStatus, new_state: RollbackStatus) -> RollbackStatus:
    if (state, new_state) not in ROLLBACK_TRANSITIONS:
        raise IllegalTransition("rollback order", state, new_state)
    return new_state

