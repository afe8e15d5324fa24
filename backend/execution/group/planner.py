"""What to do next (pure, from the stored group): the orchestrator's single next action."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from backend.execution.group.aggregate import ExecutionGroup, execution_order
from backend.execution.group.rollback import rollback_progress
from backend.execution.group.rollback_order import RollbackOrder
from backend.execution.group.settings import GroupSettings
from backend.execution.group.states import GroupStatus, LegStatus



class StepKind(str, Enum):
    START_VALIDATION = "START_VALIDATION"  # apply start_validation
    VALIDATE = "VALIDATE"  # fetch quotes/account/closes; validate_group; fail_ or pass_validation
    # hardening_check; on a rejection reject_leg (then ABORT_SUBMISSION follows), otherwise
    # mark_leg_submitted, persist, submit leg_order_request, record_leg_fill(broker_order_id=...)
    SUBMIT_LEG = "SUBMIT_LEG"
    # SUBMITTED but no broker id (crash around the submit): get_order_by_client_id; found -> record it;
    # absent -> hardening_check, then resubmit the SAME client id, or resolve_leg(rejection) (zero fill)
    RECOVER_LEG = "RECOVER_LEG"
    ABORT_SUBMISSION = "ABORT_SUBMISSION"  # a leg failed while submitting: abort_submission
    FINISH_SUBMISSION = "FINISH_SUBMISSION"  # mark_all_submitted
    # get_order (or by client id); apply_broker_order. On timeout: cancel, then apply the final order
    # with ORDER_TIMEOUT. A leg whose client id the broker does not know was never sent (the group
    # aborted before recovery): resolve_leg with zero fill.
    POLL_LEGS = "POLL_LEGS"
    BEGIN_RESOLUTION = "BEGIN_RESOLUTION"  # begin_resolution
    RESOLVE = "RESOLVE"  # apply_resolution
    PLAN_ROLLBACK = "PLAN_ROLLBACK"  # plan_rollback, persist, then submit the new orders
    DRIVE_ROLLBACK = "DRIVE_ROLLBACK"  # in-flight rollback orders: look up by client id / submit / poll
    COMPLETE_ROLLBACK = "COMPLETE_ROLLBACK"  # complete_rollback
    ESCALATE = "ESCALATE"  # escalate_rollback (alert a human)
    DONE = "DONE"


@dataclass(frozen=True)
class Step:
    kind: StepKind
    leg_ids: tuple[str, ...] = ()
    rollback_orders: tuple[RollbackOrder, ...] = ()


def next_step(group: ExecutionGroup, settings: GroupSettings) -> Step:
    """The single next action for the orchestrator, derived only from the stored group."""
    status = group.status
    if status.is_final:
        return Step(StepKind.DONE)
    if status is GroupStatus.PENDING:
        return Step(StepKind.START_VALIDATION)
    if status is GroupStatus.VALIDATING:
        return Step(StepKind.VALIDATE)
    if status is GroupStatus.SUBMITTING:
        ordered = execution_order(group)
        if any(leg.status in (LegStatus.REJECTED, LegStatus.CANCELED) for leg in ordered):
            return Step(StepKind.ABORT_SUBMISSION)
        for leg in ordered:
            if leg.status is LegStatus.SUBMITTED and leg.broker_order_id is None:
                return Step(StepKind.RECOVER_LEG, (leg.leg_id,))
        for leg in ordered:
            if leg.status is LegStatus.PENDING:
                return Step(StepKind.SUBMIT_LEG, (leg.leg_id,))
        return Step(StepKind.FINISH_SUBMISSION)
    if status is GroupStatus.MONITORING:
        working = tuple(leg.leg_id for leg in execution_order(group) if not leg.status.is_final)
        return Step(StepKind.POLL_LEGS, working) if working else Step(StepKind.BEGIN_RESOLUTION)
    if status is GroupStatus.RESOLVING:
        return Step(StepKind.RESOLVE)
    progress = rollback_progress(group, settings)  # ROLLING_BACK
    if progress.flat:
        return Step(StepKind.COMPLETE_ROLLBACK)
    if progress.in_flight:
        return Step(StepKind.DRIVE_ROLLBACK, tuple(o.leg_id for o in progress.in_flight), progress.in_flight)
    if progress.plannable:
        return Step(StepKind.PLAN_ROLLBACK, progress.plannable)
    return Step(StepKind.ESCALATE, progress.exhausted)
