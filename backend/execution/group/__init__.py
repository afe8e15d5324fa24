"""Multi-leg execution groups (seed 000): the pure domain, one module per concern.

No I/O, no Firebase, no broker calls — except the ``executor_*`` modules (``executor_run``,
``executor_gate``, ``executor_orders``, ``executor_stops``, ``executor_persistence``) and
``stop_management``: the orchestrator's I/O parts, mixed into ``GroupExecutor``; they reach the store
and venues through the ports only and import nothing from Firebase. The orchestrator (``GroupExecutor``, group_executor.py) loads a
stored ``ExecutionGroup``, asks :func:`next_step` what to do, performs at most one side effect,
applies the matching pure function here, persists the new group and repeats. Every decision below
is a function of the stored group plus the inputs passed in (quotes, buying power, closes, now), so
a crashed run resumes from the stored state without doubling an order.

Lifecycle and verdict are kept apart: ``status`` (:class:`GroupStatus`) is where the group is in
its lifecycle, ``verdict`` (:class:`GroupVerdict`) is the outcome the API reports (FILLED,
PARTIALLY_FILLED, REJECTED). A group that was rolled back has ``status=ROLLED_BACK`` and
``verdict=REJECTED``, exactly as the seed's response says ``"status": "REJECTED"``.

Rules chosen where the seed is vague or unsafe (each is repeated at the function that applies it):

* Fill ratio ``filled / units`` (exact, by cross-multiplication): ``>= 0.99`` FILLED,
  ``0.90 <= r < 0.99`` PARTIALLY_FILLED, ``< 0.90`` REJECTED.
* Slippage in ticks of the asset spec ("pips"), positive = adverse. The group average is the
  simple mean over legs that have a fill (the seed's number); a quantity-weighted mean is offered.
* Intended price = the touch at validation: ask for a buy, bid for a sell.
* A group may not hold the same symbol twice (or the same leg id twice): ``InvalidInput`` at
  creation. Two legs on one symbol net into one broker position, so neither leg could be filled
  or rolled back on its own; a same-direction pair should be one leg, an opposite pair is a wash.
* ``max_group_slippage_pips``: only ADVERSE average slippage strictly above the limit rejects the
  group (GROUP_SLIPPAGE_EXCEEDED); the filled legs are then rolled back, because a REJECTED group
  never keeps a position (next rule).
* Never leave an open leg on a REJECTED group. The seed triggers a rollback only when "any leg
  < 90% filled AND any leg > 10% filled" and otherwise leaves small fills in place. Here the group
  is rolled back whenever its verdict is REJECTED and ANY leg has ANY fill (partial legs and fills
  of 10% or less included), until every leg's filled units are closed. The seed trigger is a strict
  subset of this rule (kept as :func:`seed_rollback_trigger` for the audit trail).
* ``allow_partial_fills`` defaults to False (safe: an unbalanced group is rolled back).
* A rollback that cannot flatten after ``max_rollback_attempts`` orders per leg ends in
  FAILED_NEEDS_ATTENTION (open position, a human must act): the only state that is final for the
  automation while the verdict does not describe the position.

Modules: ``states`` (transition tables), ``fills`` (classification, slippage), ``codec`` (the one
declarative storage codec and the field rules), ``leg``, ``rollback_order``, ``aggregate``
(``ExecutionGroup``, ``execution_order``), ``settings`` (``GroupSettings``), ``rpm`` (upstream
authorization), ``gates``, ``lifecycle``, ``rollback`` and ``planner`` (``next_step``).
``backend/execution/groups.py`` re-exports this package's names for existing importers.
"""
from __future__ import annotations

from backend.domain.group_rules import MAX_LEGS, MIN_LEGS
from backend.execution.client_ids import CLIENT_ID_SCHEME, LEGACY_CLIENT_ID_SCHEME, leg_client_order_id, \
    rollback_client_order_id
from backend.execution.group.aggregate import SCHEMA_VERSION, ExecutionGroup, execution_order, \
    group_rollback_client_order_id
from backend.execution.group.fills import AVG_SLIPPAGE_QUANTUM, FILLED_RATIO, PARTIAL_RATIO, \
    SEED_ROLLBACK_FILLED_RATIO, classify_fill, fill_ratio, touch_price
from backend.execution.group.gates import check_correlation, check_rpm_authorization, combined_margin, \
    hardening_check, leg_margin, margin_problem, quote_problem, spread_problem, spread_widening_problem, \
    validate_group, validate_group_all
from backend.execution.group.leg import ExecutionLeg
from backend.execution.group.lifecycle import ForeignOrder, Resolution, abort_submission, apply_broker_order, \
    apply_resolution, begin_resolution, decide_resolution, fail_validation, leg_order_request, mark_all_submitted, \
    mark_leg_submitted, pass_validation, pass_validation_dry_run, record_leg_fill, refuse_foreign_leg_order, \
    reject_leg, resolve_leg, seed_rollback_trigger, start_validation
from backend.execution.group.planner import Step, StepKind, next_step
from backend.execution.group.rollback import RollbackProgress, apply_rollback_order, complete_rollback, \
    escalate_rollback, is_flat, plan_rollback, record_rollback_update, rollback_order_request, rollback_progress, \
    rollback_remaining, rolled_back_units
from backend.execution.group.rollback_order import RollbackOrder
from backend.execution.group.rpm import RpmAuthorization, RpmLegApproval, parse_rpm_output
from backend.execution.group.settings import GroupSettings
from backend.execution.group.states import GROUP_TRANSITIONS, LEG_TRANSITIONS, ROLLBACK_TRANSITIONS, \
    VERDICT_FOR_STATUS, GroupEvent, GroupStatus, GroupVerdict, IllegalTransition, LegEvent, LegStatus, \
    RollbackStatus, group_transition, leg_transition, rollback_transition

__all__ = [
    "SCHEMA_VERSION", "MAX_LEGS", "MIN_LEGS", "FILLED_RATIO", "PARTIAL_RATIO", "SEED_ROLLBACK_FILLED_RATIO",
    "AVG_SLIPPAGE_QUANTUM", "IllegalTransition", "LegStatus", "LegEvent", "LEG_TRANSITIONS", "leg_transition",
    "GroupStatus", "GroupEvent", "GROUP_TRANSITIONS", "group_transition", "GroupVerdict",
    "VERDICT_FOR_STATUS", "RollbackStatus", "ROLLBACK_TRANSITIONS", "rollback_transition", "fill_ratio",
    "classify_fill", "touch_price", "leg_client_order_id", "rollback_client_order_id", "CLIENT_ID_SCHEME",
    "LEGACY_CLIENT_ID_SCHEME", "group_rollback_client_order_id", "ForeignOrder", "ExecutionLeg",
    "RollbackOrder", "ExecutionGroup", "execution_order", "GroupSettings", "RpmLegApproval",
    "RpmAuthorization", "parse_rpm_output", "check_rpm_authorization", "quote_problem", "spread_problem",
    "spread_widening_problem", "leg_margin", "combined_margin", "margin_problem", "check_correlation",
    "validate_group_all", "validate_group", "hardening_check", "start_validation", "fail_validation",
    "pass_validation", "pass_validation_dry_run", "mark_leg_submitted", "reject_leg", "record_leg_fill",
    "resolve_leg", "apply_broker_order", "refuse_foreign_leg_order", "abort_submission", "mark_all_submitted",
    "begin_resolution", "seed_rollback_trigger", "Resolution", "decide_resolution", "apply_resolution",
    "rolled_back_units", "rollback_remaining", "is_flat", "RollbackProgress", "rollback_progress",
    "plan_rollback", "record_rollback_update", "apply_rollback_order", "complete_rollback",
    "escalate_rollback", "leg_order_request", "rollback_order_request", "StepKind", "Step", "next_step",
]
