"""Multi-leg execution groups (seed 000): the pure domain.

No I/O, no Firebase, no broker calls. The orchestrator (``ExecutionEngine.execute_group``) loads a
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
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from enum import Enum
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from backend.domain.assets import AssetClass, AssetSpec, AssetSpecRegistry, default_registry, normalize_symbol, \
    resolve_asset_class
from backend.domain.errors import InvalidInput, RejectCode, Rejection
from backend.domain.money import ZERO, dec_str, to_decimal
from backend.domain.ids import check_id as validate_id
from backend.ports.broker import BrokerOrder, OrderRequest, OrderSide, OrderState, OrderType, Quote
from backend.execution import client_ids

SCHEMA_VERSION = 1
from backend.domain.group_rules import MAX_LEGS, MIN_LEGS  # noqa: E402  (the leg-count rule, defined once)

FILLED_RATIO = Decimal("0.99")  # >= : FILLED
PARTIAL_RATIO = Decimal("0.90")  # >= : PARTIALLY_FILLED, below: REJECTED
SEED_ROLLBACK_FILLED_RATIO = Decimal("0.10")  # seed trigger: some leg strictly above this
AVG_SLIPPAGE_QUANTUM = Decimal("0.0001")  # averages are rounded (half-even) to 1/10000 tick

_CLIENT_ID_MAX = 48


# --------------------------------------------------------------------------------------------
# State machines
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Fill classification and slippage
# --------------------------------------------------------------------------------------------


def fill_ratio(filled: Decimal, units: Decimal) -> Decimal:
    """``filled / units`` as a Decimal (informational; classification uses exact comparisons)."""
    if units <= ZERO:
        raise ValueError("units must be positive")
    with localcontext() as ctx:
        ctx.prec = 40
        return filled / units


def _ratio_at_least(filled: Decimal, units: Decimal, ratio: Decimal) -> bool:
    # filled / units >= ratio  <=>  filled >= ratio * units  (units > 0), exact with a wide context
    with localcontext() as ctx:
        ctx.prec = 80
        return filled >= ratio * units


def _ratio_above(filled: Decimal, units: Decimal, ratio: Decimal) -> bool:
    with localcontext() as ctx:
        ctx.prec = 80
        return filled > ratio * units


def classify_fill(filled: Decimal, units: Decimal) -> LegStatus:
    """The final status a leg earns with ``filled`` of ``units`` (seed thresholds, exact)."""
    if units <= ZERO:
        raise ValueError("units must be positive")
    if _ratio_at_least(filled, units, FILLED_RATIO):
        return LegStatus.FILLED
    if _ratio_at_least(filled, units, PARTIAL_RATIO):
        return LegStatus.PARTIALLY_FILLED
    return LegStatus.REJECTED


def touch_price(direction: int, quote: Quote) -> Decimal:
    """The price a market order expects: the ask for a buy, the bid for a sell."""
    return quote.ask if direction > 0 else quote.bid


# --------------------------------------------------------------------------------------------
# Identifiers
# --------------------------------------------------------------------------------------------


# Every client order id carries the tenant (and, once groups have one, the account label) besides
# the app-chosen group and leg ids: the venue's client-id namespace is shared by every tenant that
# trades through one broker account, so tenant B reusing tenant A's group and leg ids must never
# produce A's ids (issue 10). The derivations live in backend/execution/client_ids.py; a stored group
# records the scheme its ids were made with (``client_id_scheme``; absent in old documents = 1).
leg_client_order_id = client_ids.leg_client_order_id
rollback_client_order_id = client_ids.rollback_client_order_id
CLIENT_ID_SCHEME = client_ids.CLIENT_ID_SCHEME
LEGACY_CLIENT_ID_SCHEME = client_ids.LEGACY_CLIENT_ID_SCHEME


def group_rollback_client_order_id(group: "ExecutionGroup", leg_id: str, seq: int) -> str:
    """The id of rollback order ``seq`` of a leg, in the group's own scheme."""
    return client_ids.group_rollback_client_order_id(group.client_id_scheme, group.tenant_id, group.group_id,
                                                     leg_id, seq)


class ForeignOrder(ValueError):
    """A broker order that is not the one we asked for (another symbol, side or quantity under our
    client id): refused, never folded into a group. ``rejection`` is CLIENT_ORDER_ID_MISMATCH."""

    def __init__(self, rejection: Rejection):
        super().__init__(str(rejection))
        self.rejection = rejection


# --------------------------------------------------------------------------------------------
# Serialization helpers
# --------------------------------------------------------------------------------------------


def _aware(dt: datetime, name: str) -> datetime:
    if not isinstance(dt, datetime):
        raise InvalidInput(name, f"expected a datetime, got {type(dt).__name__}")
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise InvalidInput(name, "naive datetime; timestamps must be timezone-aware")
    return dt.astimezone(timezone.utc)


def _dt_str(dt: datetime | None) -> str | None:
    return None if dt is None else dt.astimezone(timezone.utc).isoformat()


def _parse_dt(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return _aware(value, name)
    if not isinstance(value, str):
        raise InvalidInput(name, f"expected an ISO-8601 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(name, f"not ISO-8601: {value!r}") from None
    return _aware(parsed, name)


def _dec(value: Any, name: str) -> Decimal:
    return to_decimal(value, name)


def _opt_dec(value: Any, name: str) -> Decimal | None:
    return None if value is None else to_decimal(value, name)


def _check_keys(data: Mapping[str, Any], required: set[str], optional: set[str], where: str, *,
                allow_private: bool = False) -> None:
    """Strict field check. ``allow_private``: stored documents may carry ``_``-prefixed fields that
    belong to the storage adapter (a lease, a version); request bodies may not."""
    if not isinstance(data, Mapping):
        raise InvalidInput(where, f"expected an object, got {type(data).__name__}")
    keys = {k for k in data if not (allow_private and isinstance(k, str) and k.startswith("_"))}
    missing = required - keys
    if missing:
        raise InvalidInput(where, f"missing fields {sorted(missing)}")
    unknown = keys - required - optional
    if unknown:
        raise InvalidInput(where, f"unknown fields {sorted(unknown)}")


def _rejection_to_dict(rej: Rejection | None) -> dict[str, str] | None:
    return None if rej is None else rej.to_dict()


def _rejection_from_dict(data: Any, where: str) -> Rejection | None:
    if data is None:
        return None
    _check_keys(data, {"code", "detail"}, {"text"}, where)
    try:
        code = RejectCode(data["code"])
    except ValueError:
        raise InvalidInput(f"{where}.code", f"unknown reject code {data['code']!r}") from None
    if not isinstance(data["detail"], str):
        raise InvalidInput(f"{where}.detail", "expected a string")
    return Rejection(code, data["detail"])


def _spec_to_dict(spec: AssetSpec) -> dict[str, str]:
    return {"tick_size": dec_str(spec.tick_size), "lot_size": dec_str(spec.lot_size),
            "margin_pct": dec_str(spec.margin_pct), "multiplier": dec_str(spec.multiplier),
            "max_qty": dec_str(spec.max_qty)}


def _spec_from_dict(data: Any, asset_class: AssetClass, where: str) -> AssetSpec:
    _check_keys(data, {"tick_size", "lot_size", "margin_pct", "multiplier", "max_qty"}, set(), where)
    return AssetSpec(asset_class=asset_class, **{k: _dec(v, f"{where}.{k}") for k, v in data.items()})


def _check_id(value: Any, name: str) -> None:
    from backend.domain.ids import GROUP_PART_ID  # the one rule for ids inside a group (no __x__)

    GROUP_PART_ID.check(value, name)


def _check_text(value: Any, name: str) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > 128 or "/" in value:
        raise InvalidInput(name, f"expected a non-empty string of <= 128 characters without '/', got {value!r}")


def _check_dec(value: Any, name: str, *, positive: bool = False, non_negative: bool = False,
               optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, Decimal) or not value.is_finite():
        raise InvalidInput(name, f"expected a finite Decimal, got {value!r}")
    if positive and value <= ZERO:
        raise InvalidInput(name, f"must be positive, got {value}")
    if non_negative and value < ZERO:
        raise InvalidInput(name, f"must not be negative, got {value}")


def _fmt(value: Decimal, places: str | None = None) -> str:
    if places is not None:
        value = value.quantize(Decimal(places), rounding=ROUND_HALF_EVEN)
    return dec_str(value) or ""


def _quantity_json(value: Decimal) -> int | float:
    """API edge: integral quantities as JSON integers (``100000``), others as floats."""
    return int(value) if value == value.to_integral_value() else float(value)


def _float_json(value: Decimal | None) -> float | None:
    """API edge: prices and slippage as JSON floats (``1.1005``, ``5.0``)."""
    return None if value is None else float(value) + 0.0  # + 0.0: no "-0.0" in a response


# --------------------------------------------------------------------------------------------
# Legs
# --------------------------------------------------------------------------------------------


_LEG_REQUEST_FIELDS = {"leg_id", "symbol", "direction", "units", "asset_class"}


@dataclass(frozen=True)
class ExecutionLeg:
    """One leg of a group. Immutable: every change returns a new leg (via the group functions).

    ``spec`` is a snapshot of the asset spec taken at creation, so slippage and spread widening
    (in ticks) stay a function of the stored leg even if the spec file changes before a resume.
    ``asset_class_label`` keeps the request's spelling (``"FX"``) for the API response.
    """

    leg_id: str
    symbol: str
    direction: int
    units: Decimal
    asset_class: AssetClass
    asset_class_label: str
    spec: AssetSpec
    client_order_id: str
    status: LegStatus = LegStatus.PENDING
    intended_price: Decimal | None = None
    validated_spread: Decimal | None = None
    filled_units: Decimal = ZERO
    fill_price: Decimal | None = None  # average fill price
    rejection: Rejection | None = None
    broker_order_id: str | None = None
    submitted_timestamp: datetime | None = None
    updated_timestamp: datetime | None = None
    completed_timestamp: datetime | None = None

    def __post_init__(self) -> None:
        _check_id(self.leg_id, "leg_id")
        if not isinstance(self.symbol, str) or normalize_symbol(self.symbol) != self.symbol:
            raise InvalidInput("symbol", f"expected a normalized symbol, got {self.symbol!r}")
        if isinstance(self.direction, bool) or self.direction not in (1, -1) or not isinstance(self.direction, int):
            raise InvalidInput("direction", f"must be 1 (buy) or -1 (sell), got {self.direction!r}")
        _check_dec(self.units, "units", positive=True)
        if not isinstance(self.asset_class, AssetClass):
            raise InvalidInput("asset_class", f"expected an AssetClass, got {self.asset_class!r}")
        if not isinstance(self.asset_class_label, str) or AssetClass.parse(self.asset_class_label) is not self.asset_class:
            raise InvalidInput("asset_class_label", f"{self.asset_class_label!r} does not name {self.asset_class.value}")
        if not isinstance(self.spec, AssetSpec) or self.spec.asset_class is not self.asset_class:
            raise InvalidInput("spec", "asset spec missing or for another asset class")
        if not isinstance(self.client_order_id, str) or not 1 <= len(self.client_order_id) <= _CLIENT_ID_MAX:
            raise InvalidInput("client_order_id", "must be 1..48 characters")
        if not isinstance(self.status, LegStatus):
            raise InvalidInput("status", f"expected a LegStatus, got {self.status!r}")
        _check_dec(self.intended_price, "intended_price", positive=True, optional=True)
        _check_dec(self.validated_spread, "validated_spread", non_negative=True, optional=True)
        _check_dec(self.filled_units, "filled_units", non_negative=True)
        _check_dec(self.fill_price, "fill_price", positive=True, optional=True)
        if self.rejection is not None and not isinstance(self.rejection, Rejection):
            raise InvalidInput("rejection", "expected a Rejection")
        if self.broker_order_id is not None and (not isinstance(self.broker_order_id, str) or not self.broker_order_id):
            raise InvalidInput("broker_order_id", "expected a non-empty string or None")
        for name in ("submitted_timestamp", "updated_timestamp", "completed_timestamp"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _aware(value, name))

    @classmethod
    def create(cls, *, tenant_id: str, group_id: str, leg_id: str, symbol: str, direction: int, units: Any,
               asset_class: Any, registry: AssetSpecRegistry | None = None) -> "ExecutionLeg":
        """A new PENDING leg from request values; units are quantized (never rounded) by the spec.
        Its client order id is derived from the tenant, the group and the leg (scheme 2)."""
        _check_text(tenant_id, "tenant_id")
        _check_id(group_id, "group_id")
        _check_id(leg_id, "leg_id")
        sym = normalize_symbol(symbol)
        klass = resolve_asset_class(sym, asset_class)  # omitted: the symbol's class; contradicted: refused
        label = klass.value if asset_class is None else (
            asset_class.value if isinstance(asset_class, Enum) else str(asset_class).strip())
        spec = (registry or default_registry()).spec_for(sym, klass)
        if isinstance(direction, bool) or not isinstance(direction, int) or direction not in (1, -1):
            raise InvalidInput("direction", f"must be 1 (buy) or -1 (sell), got {direction!r}")
        qty = spec.quantize_qty(units, "units")
        return cls(leg_id=leg_id, symbol=sym, direction=direction, units=qty, asset_class=klass,
                   asset_class_label=label, spec=spec, client_order_id=leg_client_order_id(group_id, leg_id, tenant_id=tenant_id))

    # -- derived values ---------------------------------------------------------------------

    @property
    def side(self) -> OrderSide:
        return OrderSide.from_direction(self.direction)

    @property
    def fill_ratio(self) -> Decimal:
        return fill_ratio(self.filled_units, self.units)

    @property
    def has_fill(self) -> bool:
        return self.filled_units > ZERO

    @property
    def slippage_pips(self) -> Decimal | None:
        """Direction-aware slippage in ticks of the leg's spec, positive = adverse (seed 000)."""
        if self.intended_price is None or self.fill_price is None or not self.has_fill:
            return None
        return self.spec.slippage_ticks(self.direction, self.intended_price, self.fill_price)

    def apply(self, event: LegEvent, now: datetime, **changes: Any) -> "ExecutionLeg":
        """Apply ``event`` (raises ``IllegalTransition``) with the field changes it carries."""
        now = _aware(now, "now")
        status = leg_transition(self.status, event)
        stamps: dict[str, Any] = {"updated_timestamp": now}
        if event is LegEvent.SUBMIT:
            stamps["submitted_timestamp"] = now
        if status.is_final:
            stamps["completed_timestamp"] = now
        return replace(self, status=status, **{**stamps, **changes})

    # -- storage ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        slip = self.slippage_pips
        return {
            "leg_id": self.leg_id,
            "symbol": self.symbol,
            "direction": self.direction,
            "units": dec_str(self.units),
            "asset_class": self.asset_class.value,
            "asset_class_label": self.asset_class_label,
            "spec": _spec_to_dict(self.spec),
            "client_order_id": self.client_order_id,
            "status": self.status.value,
            "intended_price": dec_str(self.intended_price),
            "validated_spread": dec_str(self.validated_spread),
            "filled_units": dec_str(self.filled_units),
            "fill_price": dec_str(self.fill_price),
            "slippage_pips": dec_str(slip),  # derived; written for queries, ignored on load
            "rejection": _rejection_to_dict(self.rejection),
            "broker_order_id": self.broker_order_id,
            "submitted_timestamp": _dt_str(self.submitted_timestamp),
            "updated_timestamp": _dt_str(self.updated_timestamp),
            "completed_timestamp": _dt_str(self.completed_timestamp),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "leg") -> "ExecutionLeg":
        required = {"leg_id", "symbol", "direction", "units", "asset_class", "asset_class_label", "spec",
                    "client_order_id", "status", "filled_units"}
        optional = {"intended_price", "validated_spread", "fill_price", "slippage_pips", "rejection",
                    "broker_order_id", "submitted_timestamp", "updated_timestamp", "completed_timestamp"}
        _check_keys(data, required, optional, where)
        klass = AssetClass.parse(data["asset_class"], f"{where}.asset_class")
        try:
            status = LegStatus(data["status"])
        except ValueError:
            raise InvalidInput(f"{where}.status", f"unknown leg status {data['status']!r}") from None
        return cls(
            leg_id=data["leg_id"],
            symbol=data["symbol"],
            direction=data["direction"],
            units=_dec(data["units"], f"{where}.units"),
            asset_class=klass,
            asset_class_label=data["asset_class_label"],
            spec=_spec_from_dict(data["spec"], klass, f"{where}.spec"),
            client_order_id=data["client_order_id"],
            status=status,
            intended_price=_opt_dec(data.get("intended_price"), f"{where}.intended_price"),
            validated_spread=_opt_dec(data.get("validated_spread"), f"{where}.validated_spread"),
            filled_units=_dec(data["filled_units"], f"{where}.filled_units"),
            fill_price=_opt_dec(data.get("fill_price"), f"{where}.fill_price"),
            rejection=_rejection_from_dict(data.get("rejection"), f"{where}.rejection"),
            broker_order_id=data.get("broker_order_id"),
            submitted_timestamp=_parse_dt(data.get("submitted_timestamp"), f"{where}.submitted_timestamp"),
            updated_timestamp=_parse_dt(data.get("updated_timestamp"), f"{where}.updated_timestamp"),
            completed_timestamp=_parse_dt(data.get("completed_timestamp"), f"{where}.completed_timestamp"),
        )

    def to_api_response(self) -> dict[str, Any]:
        """The seed's leg shape; numbers become JSON numbers here and only here."""
        return {
            "leg_id": self.leg_id,
            "symbol": self.symbol,
            "direction": self.direction,
            "units": _quantity_json(self.units),
            "asset_class": self.asset_class_label,
            "status": self.status.value,
            "filled_units": _quantity_json(self.filled_units),
            "fill_price": _float_json(self.fill_price),
            "slippage_pips": _float_json(self.slippage_pips),
        }


# --------------------------------------------------------------------------------------------
# Rollback orders
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RollbackOrder:
    """A MARKET order closing (part of) a leg's fill. ``seq`` is 1-based per leg."""

    leg_id: str
    symbol: str
    side: OrderSide
    qty: Decimal
    seq: int
    client_order_id: str
    status: RollbackStatus = RollbackStatus.PLANNED
    broker_order_id: str | None = None
    filled_qty: Decimal = ZERO
    fill_price: Decimal | None = None
    rejection: Rejection | None = None
    created_timestamp: datetime | None = None
    updated_timestamp: datetime | None = None

    def __post_init__(self) -> None:
        _check_id(self.leg_id, "rollback.leg_id")
        if not isinstance(self.side, OrderSide):
            raise InvalidInput("rollback.side", f"expected an OrderSide, got {self.side!r}")
        _check_dec(self.qty, "rollback.qty", positive=True)
        if isinstance(self.seq, bool) or not isinstance(self.seq, int) or self.seq < 1:
            raise InvalidInput("rollback.seq", f"expected an int >= 1, got {self.seq!r}")
        if not isinstance(self.status, RollbackStatus):
            raise InvalidInput("rollback.status", f"expected a RollbackStatus, got {self.status!r}")
        _check_dec(self.filled_qty, "rollback.filled_qty", non_negative=True)
        _check_dec(self.fill_price, "rollback.fill_price", positive=True, optional=True)
        for name in ("created_timestamp", "updated_timestamp"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _aware(value, f"rollback.{name}"))

    @property
    def in_flight(self) -> bool:
        return not self.status.is_final

    def to_dict(self) -> dict[str, Any]:
        return {
            "leg_id": self.leg_id,
            "symbol": self.symbol,
            "side": self.side.value,
            "qty": dec_str(self.qty),
            "seq": self.seq,
            "client_order_id": self.client_order_id,
            "status": self.status.value,
            "broker_order_id": self.broker_order_id,
            "filled_qty": dec_str(self.filled_qty),
            "fill_price": dec_str(self.fill_price),
            "rejection": _rejection_to_dict(self.rejection),
            "created_timestamp": _dt_str(self.created_timestamp),
            "updated_timestamp": _dt_str(self.updated_timestamp),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "rollback_order") -> "RollbackOrder":
        required = {"leg_id", "symbol", "side", "qty", "seq", "client_order_id", "status", "filled_qty"}
        optional = {"broker_order_id", "fill_price", "rejection", "created_timestamp", "updated_timestamp"}
        _check_keys(data, required, optional, where)
        try:
            side = OrderSide(data["side"])
            status = RollbackStatus(data["status"])
        except ValueError as exc:
            raise InvalidInput(where, str(exc)) from None
        return cls(
            leg_id=data["leg_id"], symbol=data["symbol"], side=side,
            qty=_dec(data["qty"], f"{where}.qty"), seq=data["seq"], client_order_id=data["client_order_id"],
            status=status, broker_order_id=data.get("broker_order_id"),
            filled_qty=_dec(data["filled_qty"], f"{where}.filled_qty"),
            fill_price=_opt_dec(data.get("fill_price"), f"{where}.fill_price"),
            rejection=_rejection_from_dict(data.get("rejection"), f"{where}.rejection"),
            created_timestamp=_parse_dt(data.get("created_timestamp"), f"{where}.created_timestamp"),
            updated_timestamp=_parse_dt(data.get("updated_timestamp"), f"{where}.updated_timestamp"),
        )


# --------------------------------------------------------------------------------------------
# Groups
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExecutionGroup:
    """A multi-leg group: the aggregate the orchestrator stores in one document.

    ``rpm_output`` is the upstream authorization as received (a JSON object), kept so that a resumed
    run re-checks it (expiry) before sending a leg. ``rejection`` is the group's reason when the
    verdict is REJECTED (the first failure in execution order).
    """

    group_id: str
    strategy_id: str
    tenant_id: str
    uid: str
    legs: tuple[ExecutionLeg, ...]
    created_timestamp: datetime
    updated_timestamp: datetime
    status: GroupStatus = GroupStatus.PENDING
    verdict: GroupVerdict | None = None
    completed_timestamp: datetime | None = None
    allow_partial_fills: bool = False
    max_group_slippage_pips: Decimal | None = None
    execution_priority: tuple[str, ...] | None = None
    rpm_output: Mapping[str, Any] | None = None
    rejection: Rejection | None = None
    rollback_executed: bool = False
    rollback_orders: tuple[RollbackOrder, ...] = ()
    # how the leg and rollback client order ids are derived: 2 = tenant-namespaced (every new group);
    # 1 = group + leg only, for documents stored before issue 10 (``from_dict`` of a document without it)
    client_id_scheme: int = CLIENT_ID_SCHEME

    def __post_init__(self) -> None:
        _check_id(self.group_id, "group_id")
        validate_id(self.strategy_id, "strategy_id")  # a metrics map key: the one id rule (no __x__)
        _check_text(self.tenant_id, "tenant_id")
        _check_text(self.uid, "uid")
        object.__setattr__(self, "legs", tuple(self.legs))
        # 1..MAX_LEGS here so a stored group of the old 1-leg rule still loads and finishes;
        # new groups need MIN_LEGS (``create``).
        if not 1 <= len(self.legs) <= MAX_LEGS:
            raise InvalidInput("legs", f"a group has {MIN_LEGS}..{MAX_LEGS} legs, got {len(self.legs)}")
        if not all(isinstance(leg, ExecutionLeg) for leg in self.legs):
            raise InvalidInput("legs", "expected ExecutionLeg values")
        ids = [leg.leg_id for leg in self.legs]
        if len(set(ids)) != len(ids):
            raise InvalidInput("legs", f"duplicate leg_id in {ids}")
        symbols = [leg.symbol for leg in self.legs]
        if len(set(symbols)) != len(symbols):
            raise InvalidInput("legs", f"a symbol may appear in one leg only, got {symbols}")
        if isinstance(self.client_id_scheme, bool) or self.client_id_scheme not in client_ids.CLIENT_ID_SCHEMES:
            raise InvalidInput("client_id_scheme", f"expected one of {list(client_ids.CLIENT_ID_SCHEMES)}, "
                                                   f"got {self.client_id_scheme!r}")
        for leg in self.legs:
            expected = client_ids.group_leg_client_order_id(self.client_id_scheme, self.tenant_id, self.group_id,
                                                            leg.leg_id)
            if leg.client_order_id != expected:
                raise InvalidInput("legs", f"{leg.leg_id}: client_order_id is not derived from the tenant, group "
                                           f"and leg ids (scheme {self.client_id_scheme})")
        if self.execution_priority is not None:
            priority = tuple(self.execution_priority)
            object.__setattr__(self, "execution_priority", priority)
            if len(priority) != len(ids) or set(priority) != set(ids):
                raise InvalidInput("execution_priority", f"must name each leg exactly once: {sorted(ids)}, got {list(priority)}")
        if not isinstance(self.status, GroupStatus):
            raise InvalidInput("status", f"expected a GroupStatus, got {self.status!r}")
        if self.verdict is not None and not isinstance(self.verdict, GroupVerdict):
            raise InvalidInput("verdict", f"expected a GroupVerdict, got {self.verdict!r}")
        if VERDICT_FOR_STATUS[self.status] is not self.verdict:
            raise InvalidInput("verdict", f"status {self.status.value} implies verdict "
                                          f"{VERDICT_FOR_STATUS[self.status]}, got {self.verdict}")
        if not isinstance(self.allow_partial_fills, bool) or not isinstance(self.rollback_executed, bool):
            raise InvalidInput("group", "allow_partial_fills and rollback_executed must be booleans")
        _check_dec(self.max_group_slippage_pips, "max_group_slippage_pips", non_negative=True, optional=True)
        if self.rpm_output is not None and not isinstance(self.rpm_output, Mapping):
            raise InvalidInput("rpm_output", "expected an object")
        if self.rejection is not None and not isinstance(self.rejection, Rejection):
            raise InvalidInput("rejection", "expected a Rejection")
        object.__setattr__(self, "rollback_orders", tuple(self.rollback_orders))
        by_id = {leg.leg_id: leg for leg in self.legs}
        seen: set[str] = set()
        for order in self.rollback_orders:
            leg = by_id.get(order.leg_id)
            if leg is None:
                raise InvalidInput("rollback_orders", f"unknown leg {order.leg_id!r}")
            if order.client_order_id != group_rollback_client_order_id(self, order.leg_id, order.seq):
                raise InvalidInput("rollback_orders", f"{order.client_order_id}: not derived from tenant/group/leg/seq")
            if order.client_order_id in seen:
                raise InvalidInput("rollback_orders", f"duplicate {order.client_order_id}")
            seen.add(order.client_order_id)
        for name in ("created_timestamp", "updated_timestamp", "completed_timestamp"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _aware(value, name))
        if self.created_timestamp is None or self.updated_timestamp is None:
            raise InvalidInput("created_timestamp", "created and updated timestamps are required")

    @classmethod
    def create(cls, *, group_id: str, strategy_id: str, tenant_id: str, uid: str,
               legs: Sequence[Mapping[str, Any]], now: datetime, allow_partial_fills: bool = False,
               max_group_slippage_pips: Any = None, execution_priority: Sequence[str] | None = None,
               rpm_output: Mapping[str, Any] | None = None,
               registry: AssetSpecRegistry | None = None) -> "ExecutionGroup":
        """A PENDING group from the request's legs (``{leg_id, symbol, direction, units, asset_class}``).

        Malformed input raises ``InvalidInput`` (HTTP 400): unknown/missing leg fields, a bad
        direction, units off the lot size, duplicate leg ids or symbols, a priority that does not
        name each leg exactly once. ``tenant_id``/``uid`` come from the verified token, not the body.
        """
        if isinstance(legs, (str, bytes, Mapping)) or not isinstance(legs, Sequence):
            raise InvalidInput("legs", "expected a list of legs")
        if len(legs) > MAX_LEGS:
            raise InvalidInput("legs", f"a group has {MIN_LEGS}..{MAX_LEGS} legs, got {len(legs)}")
        built = []
        for i, raw in enumerate(legs):
            _check_keys(raw, _LEG_REQUEST_FIELDS - {"asset_class"}, {"asset_class"}, f"legs[{i}]")
            built.append(ExecutionLeg.create(tenant_id=tenant_id, group_id=group_id, registry=registry, **{k: raw.get(k) for k in _LEG_REQUEST_FIELDS}))
        if len(built) < MIN_LEGS:
            raise InvalidInput("legs", f"a group has {MIN_LEGS}..{MAX_LEGS} legs, got {len(built)}")
        if not isinstance(allow_partial_fills, bool):
            raise InvalidInput("allow_partial_fills", "expected a boolean")
        max_slip = None
        if max_group_slippage_pips is not None:
            max_slip = to_decimal(max_group_slippage_pips, "max_group_slippage_pips")
        if execution_priority is not None:
            if isinstance(execution_priority, (str, bytes)) or not all(isinstance(x, str) for x in execution_priority):
                raise InvalidInput("execution_priority", "expected a list of leg ids")
            execution_priority = tuple(execution_priority)
        now = _aware(now, "now")
        return cls(group_id=group_id, strategy_id=strategy_id, tenant_id=tenant_id, uid=uid, legs=tuple(built),
                   created_timestamp=now, updated_timestamp=now, allow_partial_fills=allow_partial_fills,
                   max_group_slippage_pips=max_slip, execution_priority=execution_priority,
                   rpm_output=dict(rpm_output) if rpm_output is not None else None)

    # -- queries ------------------------------------------------------------------------------

    def leg(self, leg_id: str) -> ExecutionLeg:
        for leg in self.legs:
            if leg.leg_id == leg_id:
                return leg
        raise KeyError(leg_id)

    @property
    def filled_legs(self) -> tuple[ExecutionLeg, ...]:
        return tuple(leg for leg in self.legs if leg.slippage_pips is not None)

    @property
    def avg_slippage_pips(self) -> Decimal | None:
        """Simple mean of leg slippage over legs with a fill (the seed's number), rounded to 1/10000 tick.

        Positive = adverse. Mixing instruments mixes tick sizes; it is a quality metric, not money.
        """
        slips = [leg.slippage_pips for leg in self.filled_legs]
        if not slips:
            return None
        total = sum(slips, ZERO)
        return (total / len(slips)).quantize(AVG_SLIPPAGE_QUANTUM, rounding=ROUND_HALF_EVEN)

    @property
    def weighted_avg_slippage_pips(self) -> Decimal | None:
        """Mean slippage weighted by filled units (for reports; the API reports the simple mean)."""
        legs = self.filled_legs
        weight = sum((leg.filled_units for leg in legs), ZERO)
        if not legs or weight == ZERO:
            return None
        total = sum((leg.slippage_pips * leg.filled_units for leg in legs), ZERO)
        return (total / weight).quantize(AVG_SLIPPAGE_QUANTUM, rounding=ROUND_HALF_EVEN)

    # -- storage ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Storage form: Decimals as strings, datetimes ISO-8601 UTC, enums by value."""
        return {
            "schema_version": SCHEMA_VERSION,
            "group_id": self.group_id,
            "strategy_id": self.strategy_id,
            "tenant_id": self.tenant_id,
            "uid": self.uid,
            "status": self.status.value,
            "verdict": None if self.verdict is None else self.verdict.value,
            "legs": [leg.to_dict() for leg in self.legs],
            "created_timestamp": _dt_str(self.created_timestamp),
            "updated_timestamp": _dt_str(self.updated_timestamp),
            "completed_timestamp": _dt_str(self.completed_timestamp),
            "avg_slippage_pips": dec_str(self.avg_slippage_pips),  # derived; ignored on load
            "allow_partial_fills": self.allow_partial_fills,
            "max_group_slippage_pips": dec_str(self.max_group_slippage_pips),
            "execution_priority": None if self.execution_priority is None else list(self.execution_priority),
            "rpm_output": None if self.rpm_output is None else dict(self.rpm_output),
            "rejection": _rejection_to_dict(self.rejection),
            "rollback_executed": self.rollback_executed,
            "rollback_orders": [order.to_dict() for order in self.rollback_orders],
            "client_id_scheme": self.client_id_scheme,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ExecutionGroup":
        """Inverse of ``to_dict``. Unknown fields raise, except ``_``-prefixed adapter fields."""
        required = {"schema_version", "group_id", "strategy_id", "tenant_id", "uid", "status", "legs",
                    "created_timestamp", "updated_timestamp", "rollback_executed", "allow_partial_fills"}
        optional = {"verdict", "completed_timestamp", "avg_slippage_pips", "max_group_slippage_pips",
                    "execution_priority", "rpm_output", "rejection", "rollback_orders", "client_id_scheme"}
        _check_keys(data, required, optional, "group", allow_private=True)
        if data["schema_version"] != SCHEMA_VERSION:
            raise InvalidInput("schema_version", f"unsupported {data['schema_version']!r}")
        try:
            status = GroupStatus(data["status"])
            verdict = None if data.get("verdict") is None else GroupVerdict(data["verdict"])
        except ValueError as exc:
            raise InvalidInput("status", str(exc)) from None
        legs = data["legs"]
        if not isinstance(legs, Sequence) or isinstance(legs, (str, bytes)):
            raise InvalidInput("legs", "expected a list")
        priority = data.get("execution_priority")
        return cls(
            group_id=data["group_id"],
            strategy_id=data["strategy_id"],
            tenant_id=data["tenant_id"],
            uid=data["uid"],
            legs=tuple(ExecutionLeg.from_dict(raw, f"legs[{i}]") for i, raw in enumerate(legs)),
            created_timestamp=_parse_dt(data["created_timestamp"], "created_timestamp"),
            updated_timestamp=_parse_dt(data["updated_timestamp"], "updated_timestamp"),
            status=status,
            verdict=verdict,
            completed_timestamp=_parse_dt(data.get("completed_timestamp"), "completed_timestamp"),
            allow_partial_fills=data["allow_partial_fills"],
            max_group_slippage_pips=_opt_dec(data.get("max_group_slippage_pips"), "max_group_slippage_pips"),
            execution_priority=None if priority is None else tuple(priority),
            rpm_output=data.get("rpm_output"),
            rejection=_rejection_from_dict(data.get("rejection"), "rejection"),
            rollback_executed=data["rollback_executed"],
            rollback_orders=tuple(RollbackOrder.from_dict(raw, f"rollback_orders[{i}]")
                                  for i, raw in enumerate(data.get("rollback_orders") or ())),
            # absent: a document written before tenant-namespaced ids; its orders carry scheme-1 ids
            client_id_scheme=data.get("client_id_scheme", client_ids.LEGACY_CLIENT_ID_SCHEME),
        )

    @property
    def api_status(self) -> str:
        """The seed's ``status``: the verdict once the group is settled and flat; otherwise the
        lifecycle state (e.g. ``ROLLING_BACK``, ``FAILED_NEEDS_ATTENTION``), so a client never reads
        ``REJECTED`` while a position is still open."""
        if self.status is GroupStatus.DRY_RUN:
            return "dry_run"  # as the single-order /execute answers
        if self.status in (GroupStatus.FILLED, GroupStatus.PARTIALLY_FILLED, GroupStatus.REJECTED,
                           GroupStatus.ROLLED_BACK):
            return self.verdict.value  # type: ignore[union-attr]
        return self.status.value

    def to_api_response(self) -> dict[str, Any]:
        """Exactly the seed's POST /execute/multi-leg response. Floats exist only here (JSON edge):
        quantities are integers when integral, prices and slippage are floats; ``asset_class`` keeps
        the request's spelling; ``completed_timestamp`` is ISO-8601 with a UTC offset (or null)."""
        avg = self.avg_slippage_pips
        return {
            "group_id": self.group_id,
            "strategy_id": self.strategy_id,
            "status": self.api_status,
            "legs": [leg.to_api_response() for leg in self.legs],
            "avg_slippage_pips": _float_json(avg),
            "rollback_executed": self.rollback_executed,
            "completed_timestamp": _dt_str(self.completed_timestamp),
        }


def execution_order(group: ExecutionGroup) -> tuple[ExecutionLeg, ...]:
    """Submission order: ``execution_priority`` if given (it names every leg once), else shorts
    (direction -1) before longs, stable within each side (request order)."""
    if group.execution_priority is not None:
        return tuple(group.leg(leg_id) for leg_id in group.execution_priority)
    return tuple(sorted(group.legs, key=lambda leg: 0 if leg.direction < 0 else 1))


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


def _default_spread_limits() -> dict[AssetClass, Decimal]:
    return {
        AssetClass.FOREX: Decimal("0.001"),  # 0.1% of mid (~11 pips on EURUSD)
        AssetClass.EQUITY: Decimal("0.005"),
        AssetClass.COMMODITY: Decimal("0.005"),
        AssetClass.CRYPTO: Decimal("0.005"),
        AssetClass.OPTIONS: Decimal("0.10"),
    }


@dataclass(frozen=True)
class GroupSettings:
    """Thresholds for the group gates. Built once at the edge (``from_env``) and passed in.

    ``max_spread_pct`` is a fraction of the mid (0.001 = 0.1%) per asset class;
    ``max_spread_widening_pips`` is in ticks of the leg's asset spec.
    """

    max_stale_seconds: Decimal = Decimal("5")
    max_clock_skew_seconds: Decimal = Decimal("2")
    max_spread_pct: Mapping[AssetClass, Decimal] = field(default_factory=_default_spread_limits)
    max_spread_widening_pips: Decimal = Decimal("2.0")
    margin_cushion: Decimal = Decimal("1.5")
    correlation_threshold: Decimal = Decimal("0.95")
    correlation_lookback: int = 60  # returns used per pair (the newest ones)
    correlation_min_returns: int = 20
    max_rollback_attempts: int = 3  # rollback orders per leg before FAILED_NEEDS_ATTENTION

    def __post_init__(self) -> None:
        for name in ("max_stale_seconds", "max_clock_skew_seconds", "max_spread_widening_pips",
                     "margin_cushion", "correlation_threshold"):
            object.__setattr__(self, name, to_decimal(getattr(self, name), name))
        limits = {AssetClass.parse(k): to_decimal(v, f"max_spread_pct.{k}") for k, v in self.max_spread_pct.items()}
        object.__setattr__(self, "max_spread_pct", limits)
        if self.max_stale_seconds <= ZERO:
            raise InvalidInput("max_stale_seconds", "must be positive")
        if self.max_clock_skew_seconds < ZERO:
            raise InvalidInput("max_clock_skew_seconds", "must not be negative")
        if any(v <= ZERO for v in limits.values()):
            raise InvalidInput("max_spread_pct", "limits must be positive")
        if self.max_spread_widening_pips < ZERO:
            raise InvalidInput("max_spread_widening_pips", "must not be negative")
        if self.margin_cushion < Decimal(1):
            raise InvalidInput("margin_cushion", "must be >= 1")
        if not ZERO < self.correlation_threshold <= Decimal(1):
            raise InvalidInput("correlation_threshold", "must be in (0, 1]")
        for name, low in (("correlation_min_returns", 3), ("correlation_lookback", 3), ("max_rollback_attempts", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidInput(name, f"must be an int >= {low}")
        if self.correlation_lookback < self.correlation_min_returns:
            raise InvalidInput("correlation_lookback", "must be >= correlation_min_returns")

    @property
    def correlation_closes_needed(self) -> int:
        """How many recent closes to fetch per symbol (lookback returns need one more close)."""
        return self.correlation_lookback + 1

    def spread_limit(self, asset_class: AssetClass) -> Decimal:
        return self.max_spread_pct.get(asset_class, _default_spread_limits()[asset_class])

    ENV = {
        "EXECUTION_ENGINE_MAX_STALE_TICK_SECONDS": "max_stale_seconds",
        "EXECUTION_ENGINE_MAX_CLOCK_SKEW_SECONDS": "max_clock_skew_seconds",
        "EXECUTION_ENGINE_MAX_SPREAD_WIDENING_PIPS": "max_spread_widening_pips",
        "EXECUTION_ENGINE_MARGIN_CUSHION": "margin_cushion",
        "EXECUTION_ENGINE_CORRELATION_THRESHOLD": "correlation_threshold",
        "EXECUTION_ENGINE_CORRELATION_LOOKBACK": "correlation_lookback",
        "EXECUTION_ENGINE_CORRELATION_MIN_RETURNS": "correlation_min_returns",
        "EXECUTION_ENGINE_MAX_ROLLBACK_ATTEMPTS": "max_rollback_attempts",
    }

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "GroupSettings":
        """Seed env names (``EXECUTION_ENGINE_*``); ``EXECUTION_ENGINE_MAX_SPREAD_PCT_<CLASS>`` per
        asset class. Invalid values raise ``InvalidInput`` naming the variable."""
        env = os.environ if env is None else env
        kwargs: dict[str, Any] = {}
        for var, name in cls.ENV.items():
            if var not in env:
                continue
            raw = env[var]
            if name in ("correlation_lookback", "correlation_min_returns", "max_rollback_attempts"):
                try:
                    kwargs[name] = int(raw.strip())
                except ValueError:
                    raise InvalidInput(var, f"expected an integer, got {raw!r}") from None
            else:
                kwargs[name] = to_decimal(raw, var)
        limits = _default_spread_limits()
        prefix = "EXECUTION_ENGINE_MAX_SPREAD_PCT_"
        for var, raw in env.items():
            if var.startswith(prefix):
                limits[AssetClass.parse(var[len(prefix):], var)] = to_decimal(raw, var)
        try:
            return cls(max_spread_pct=limits, **kwargs)
        except InvalidInput as exc:
            var = next((v for v, n in cls.ENV.items() if n == exc.field), exc.field)
            raise InvalidInput(var, exc.reason) from None


# --------------------------------------------------------------------------------------------
# Upstream authorization (rpm_output)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RpmLegApproval:
    leg_id: str
    max_units: Decimal
    symbol: str | None = None
    direction: int | None = None


@dataclass(frozen=True)
class RpmAuthorization:
    """The risk/portfolio manager's decision, parsed from ``rpm_output``::

        {"decision_id": "rpm-42", "approved": true, "expires_at": "2024-12-22T10:09:00+00:00",
         "approved_legs": {"leg_001": "100000", "leg_002": 50000}}
      or "approved_legs": [{"leg_id": "leg_001", "max_units": "100000", "symbol": "EURUSD",
                            "direction": 1}, ...]     (symbol and direction optional; checked if given)

    An optional ``"meta"`` object is carried but not read. Any other field is malformed.
    """

    decision_id: str
    approved: bool
    expires_at: datetime
    legs: Mapping[str, RpmLegApproval]


def parse_rpm_output(raw: Any) -> RpmAuthorization:
    """Parse ``rpm_output``; raises ``InvalidInput`` when malformed."""
    _check_keys(raw, {"decision_id", "approved", "expires_at", "approved_legs"}, {"meta"}, "rpm_output")
    decision_id = raw["decision_id"]
    if not isinstance(decision_id, str) or not decision_id.strip():
        raise InvalidInput("rpm_output.decision_id", "expected a non-empty string")
    approved = raw["approved"]
    if not isinstance(approved, bool):
        raise InvalidInput("rpm_output.approved", "expected a boolean")
    expires_at = _parse_dt(raw["expires_at"], "rpm_output.expires_at")
    if expires_at is None:
        raise InvalidInput("rpm_output.expires_at", "required")
    entries = raw["approved_legs"]
    legs: dict[str, RpmLegApproval] = {}
    if isinstance(entries, Mapping):
        for leg_id, max_units in entries.items():
            legs[str(leg_id)] = RpmLegApproval(str(leg_id), to_decimal(max_units, f"rpm_output.approved_legs.{leg_id}"))
    elif isinstance(entries, Sequence) and not isinstance(entries, (str, bytes)):
        for i, entry in enumerate(entries):
            where = f"rpm_output.approved_legs[{i}]"
            _check_keys(entry, {"leg_id", "max_units"}, {"symbol", "direction"}, where)
            leg_id = entry["leg_id"]
            if not isinstance(leg_id, str) or leg_id in legs:
                raise InvalidInput(f"{where}.leg_id", f"expected a unique string, got {leg_id!r}")
            direction = entry.get("direction")
            if direction is not None and (isinstance(direction, bool) or direction not in (1, -1)):
                raise InvalidInput(f"{where}.direction", "must be 1 or -1")
            symbol = entry.get("symbol")
            legs[leg_id] = RpmLegApproval(leg_id, to_decimal(entry["max_units"], f"{where}.max_units"),
                                          None if symbol is None else normalize_symbol(symbol, f"{where}.symbol"),
                                          direction)
    else:
        raise InvalidInput("rpm_output.approved_legs", "expected an object or a list")
    for approval in legs.values():
        if approval.max_units <= ZERO:
            raise InvalidInput("rpm_output.approved_legs", f"{approval.leg_id}: max_units must be positive")
    return RpmAuthorization(decision_id.strip(), approved, expires_at, legs)


# --------------------------------------------------------------------------------------------
# Gates (pure, never raise for business failures)
# --------------------------------------------------------------------------------------------


def _reject(code: RejectCode, detail: str) -> Rejection:
    return Rejection(code, detail)


def check_rpm_authorization(group: ExecutionGroup, rpm_output: Any, now: datetime) -> Rejection | None:
    """RPM_NOT_AUTHORIZED unless rpm_output approves every leg with units <= max_units (and matching
    symbol/direction when given) and ``now < expires_at`` (at the expiry instant it is expired).
    A missing or malformed rpm_output is not an authorization."""
    now = _aware(now, "now")
    if rpm_output is None:
        return _reject(RejectCode.RPM_NOT_AUTHORIZED, "rpm_output missing")
    try:
        auth = parse_rpm_output(rpm_output)
    except InvalidInput as exc:
        return _reject(RejectCode.RPM_NOT_AUTHORIZED, f"malformed rpm_output: {exc}")
    if not auth.approved:
        return _reject(RejectCode.RPM_NOT_AUTHORIZED, f"decision={auth.decision_id} not approved")
    if now >= auth.expires_at:
        return _reject(RejectCode.RPM_NOT_AUTHORIZED,
                       f"decision={auth.decision_id} expired at {_dt_str(auth.expires_at)} now={_dt_str(now)}")
    for leg in group.legs:
        approval = auth.legs.get(leg.leg_id)
        if approval is None:
            return _reject(RejectCode.RPM_NOT_AUTHORIZED, f"decision={auth.decision_id} does not approve {leg.leg_id}")
        if leg.units > approval.max_units:
            return _reject(RejectCode.RPM_NOT_AUTHORIZED,
                           f"decision={auth.decision_id} {leg.leg_id} units={_fmt(leg.units)} "
                           f"approved={_fmt(approval.max_units)}")
        if approval.symbol is not None and approval.symbol != leg.symbol:
            return _reject(RejectCode.RPM_NOT_AUTHORIZED,
                           f"decision={auth.decision_id} {leg.leg_id} symbol={leg.symbol} approved={approval.symbol}")
        if approval.direction is not None and approval.direction != leg.direction:
            return _reject(RejectCode.RPM_NOT_AUTHORIZED,
                           f"decision={auth.decision_id} {leg.leg_id} direction={leg.direction:+d} "
                           f"approved={approval.direction:+d}")
    return None


def quote_problem(leg: ExecutionLeg, quote: Quote | None, now: datetime, settings: GroupSettings) -> Rejection | None:
    """One quote's data checks: present (MARKET_DATA_UNAVAILABLE), sane (INVALID_QUOTE: zero,
    negative, crossed, naive or future-dated beyond the clock skew), fresh (STALE_TICK: age >= limit)."""
    now = _aware(now, "now")
    if quote is None:
        return _reject(RejectCode.MARKET_DATA_UNAVAILABLE, f"{leg.leg_id} {leg.symbol}: no quote")
    problem = quote.problem()
    if problem is not None:
        return _reject(problem.code, f"{leg.leg_id} {leg.symbol}: {problem.detail}")
    ts = quote.timestamp
    if not isinstance(ts, datetime) or ts.tzinfo is None or ts.utcoffset() is None:
        return _reject(RejectCode.INVALID_QUOTE, f"{leg.leg_id} {leg.symbol}: quote timestamp is not timezone-aware")
    age = now - ts
    limit = timedelta(seconds=float(settings.max_stale_seconds))
    if age < -timedelta(seconds=float(settings.max_clock_skew_seconds)):
        return _reject(RejectCode.INVALID_QUOTE, f"{leg.leg_id} {leg.symbol}: quote timestamp "
                                                 f"{_dt_str(ts)} is in the future (now={_dt_str(now)})")
    if age >= limit:
        return _reject(RejectCode.STALE_TICK, f"{leg.leg_id} {leg.symbol}: age={age.total_seconds():.3f}s "
                                              f"max={_fmt(settings.max_stale_seconds)}s")
    return None


def spread_problem(leg: ExecutionLeg, quote: Quote, settings: GroupSettings) -> Rejection | None:
    """SPREAD_TOO_WIDE when spread / mid > the asset class limit (equal passes)."""
    limit = settings.spread_limit(leg.asset_class)
    if quote.spread > limit * quote.mid:
        return _reject(RejectCode.SPREAD_TOO_WIDE, f"{leg.leg_id} {leg.symbol}: spread_pct="
                                                   f"{_fmt(quote.spread_pct, '0.000001')} max={_fmt(limit)}")
    return None


def spread_widening_problem(leg: ExecutionLeg, quote: Quote, settings: GroupSettings) -> Rejection | None:
    """SPREAD_WIDENED when (current spread - validated spread) / tick > max_spread_widening_pips."""
    if leg.validated_spread is None:
        raise ValueError(f"{leg.leg_id} has no validated spread; apply pass_validation first")
    widened = (quote.spread - leg.validated_spread) / leg.spec.tick_size
    if widened > settings.max_spread_widening_pips:
        return _reject(RejectCode.SPREAD_WIDENED, f"{leg.leg_id} {leg.symbol}: widened={_fmt(widened, '0.01')} pips "
                                                  f"validated={_fmt(leg.validated_spread)} current={_fmt(quote.spread)} "
                                                  f"max={_fmt(settings.max_spread_widening_pips)}")
    return None


def leg_margin(leg: ExecutionLeg, price: Decimal) -> Decimal:
    """Seed 000: units x price x margin% / 100 (x the contract multiplier)."""
    return leg.spec.margin(leg.units, price)


def combined_margin(legs_and_prices: Iterable[tuple[ExecutionLeg, Decimal]]) -> Decimal:
    """Sum of leg margins. Hedges are NOT netted (conservative, as the seed)."""
    return sum((leg_margin(leg, price) for leg, price in legs_and_prices), ZERO)


def margin_problem(required: Decimal, buying_power: Decimal, settings: GroupSettings) -> Rejection | None:
    """INSUFFICIENT_MARGIN when required x cushion > buying power (equal passes)."""
    if required * settings.margin_cushion > buying_power:
        return _reject(RejectCode.INSUFFICIENT_MARGIN, f"required={_fmt(required, '0.01')} "
                                                       f"cushion={_fmt(settings.margin_cushion)} "
                                                       f"available={_fmt(buying_power, '0.01')}")
    return None


def _log_returns(closes: Sequence[Any] | None) -> np.ndarray | None:
    if closes is None:
        return None
    try:
        values = np.array([float(c) for c in closes], dtype=float)
    except (TypeError, ValueError):
        return None
    if values.size and (not np.all(np.isfinite(values)) or np.any(values <= 0)):
        return None
    return np.diff(np.log(values))


def check_correlation(group: ExecutionGroup, closes_by_symbol: Mapping[str, Sequence[Any]] | None,
                      settings: GroupSettings) -> Rejection | None:
    """Reject two legs that double one bet.

    Rule: for every pair of legs (i, j), take Pearson's correlation ``rho`` of the log returns of
    their recent closes (the newest ``min(len_i, len_j, correlation_lookback)`` returns; closes are
    oldest-first and sampled on the same bars). The pair's *effective* correlation is
    ``rho x direction_i x direction_j``: two longs (or two shorts) on co-moving symbols, or a long and
    a short on anti-moving symbols, are one bet doubled. ``effective > correlation_threshold``
    (0.95) -> CORRELATION_TOO_HIGH. Opposite directions on co-moving symbols are hedges (the pairs
    trade) and pass. Single-leg groups pass.

    Too little data is not a pass: fewer than ``correlation_min_returns`` returns, missing,
    non-positive or non-finite closes, or a constant series (correlation undefined) ->
    MARKET_DATA_UNAVAILABLE. Floats are used here: a correlation is a statistic, not money.
    """
    legs = group.legs
    if len(legs) < 2:
        return None
    closes_by_symbol = closes_by_symbol or {}
    returns: dict[str, np.ndarray] = {}
    for leg in legs:
        series = _log_returns(closes_by_symbol.get(leg.symbol))
        if series is None:
            return _reject(RejectCode.MARKET_DATA_UNAVAILABLE, f"correlation: {leg.symbol} closes missing or invalid")
        if series.size < settings.correlation_min_returns:
            return _reject(RejectCode.MARKET_DATA_UNAVAILABLE, f"correlation: {leg.symbol} has {series.size} returns, "
                                                               f"need {settings.correlation_min_returns}")
        returns[leg.leg_id] = series
    threshold = float(settings.correlation_threshold)
    for i, a in enumerate(legs):
        for b in legs[i + 1:]:
            ra, rb = returns[a.leg_id], returns[b.leg_id]
            n = min(ra.size, rb.size, settings.correlation_lookback)
            xa, xb = ra[-n:], rb[-n:]
            if np.std(xa) == 0 or np.std(xb) == 0:
                flat = a.symbol if np.std(xa) == 0 else b.symbol
                return _reject(RejectCode.MARKET_DATA_UNAVAILABLE, f"correlation: {flat} returns are constant")
            rho = float(np.corrcoef(xa, xb)[0, 1])
            if not math.isfinite(rho):
                return _reject(RejectCode.MARKET_DATA_UNAVAILABLE, f"correlation: undefined for {a.symbol}/{b.symbol}")
            effective = rho * a.direction * b.direction
            if effective > threshold:
                return _reject(RejectCode.CORRELATION_TOO_HIGH,
                               f"{a.leg_id} {a.symbol} ({a.direction:+d}) and {b.leg_id} {b.symbol} ({b.direction:+d}): "
                               f"rho={rho:.4f} effective={effective:.4f} threshold={threshold} over {n} returns; "
                               f"they double one bet")
    return None


def validate_group_all(group: ExecutionGroup, quotes: Mapping[str, Quote], account_buying_power: Decimal,
                       closes_by_symbol: Mapping[str, Sequence[Any]] | None, rpm_output: Any, now: datetime,
                       settings: GroupSettings) -> tuple[Rejection, ...]:
    """Every rejection, gate by gate (RPM, market data / quote sanity / freshness per leg, spread per
    leg, combined margin, correlation). Quotes are keyed by the leg's symbol. Gates that need a
    leg's quote skip legs whose quote already failed; the margin gate runs only with a usable quote
    for every leg. All-or-nothing: any rejection rejects the whole group."""
    now = _aware(now, "now")
    found: list[Rejection] = []
    rpm = check_rpm_authorization(group, rpm_output, now)
    if rpm is not None:
        found.append(rpm)
    usable: dict[str, Quote] = {}
    for leg in group.legs:
        quote = quotes.get(leg.symbol)
        problem = quote_problem(leg, quote, now, settings)
        if problem is not None:
            found.append(problem)
        else:
            usable[leg.leg_id] = quote  # type: ignore[assignment]
    for leg in group.legs:
        if leg.leg_id in usable:
            problem = spread_problem(leg, usable[leg.leg_id], settings)
            if problem is not None:
                found.append(problem)
    if len(usable) == len(group.legs):
        required = combined_margin((leg, touch_price(leg.direction, usable[leg.leg_id])) for leg in group.legs)
        problem = margin_problem(required, account_buying_power, settings)
        if problem is not None:
            found.append(problem)
    correlation = check_correlation(group, closes_by_symbol, settings)
    if correlation is not None:
        found.append(correlation)
    return tuple(found)


def validate_group(group: ExecutionGroup, quotes: Mapping[str, Quote], account_buying_power: Decimal,
                   closes_by_symbol: Mapping[str, Sequence[Any]] | None, rpm_output: Any, now: datetime,
                   settings: GroupSettings) -> Rejection | None:
    """The group's rejection (the first of :func:`validate_group_all`), or None when every gate passes."""
    found = validate_group_all(group, quotes, account_buying_power, closes_by_symbol, rpm_output, now, settings)
    return found[0] if found else None


def hardening_check(group: ExecutionGroup, leg_id: str, quote: Quote | None, buying_power: Decimal,
                    closes_by_symbol: Mapping[str, Sequence[Any]] | None, rpm_output: Any, now: datetime,
                    settings: GroupSettings) -> Rejection | None:
    """Checks right before a leg's first submission (pure). In order: RPM authorization still valid
    (not expired), a fresh sane quote (MARKET_DATA_UNAVAILABLE / INVALID_QUOTE / STALE_TICK),
    SPREAD_WIDENED versus the spread seen at validation (in ticks), live margin (INSUFFICIENT_MARGIN:
    this leg at the fresh touch price plus every other leg not yet sent at its intended price,
    x cushion, against the broker's current buying power, which already reflects legs sent), and the
    correlation re-check."""
    now = _aware(now, "now")
    leg = group.leg(leg_id)
    rpm = check_rpm_authorization(group, rpm_output, now)
    if rpm is not None:
        return rpm
    problem = quote_problem(leg, quote, now, settings)
    if problem is not None:
        return problem
    assert quote is not None
    problem = spread_widening_problem(leg, quote, settings)
    if problem is not None:
        return problem
    pending = [(other, other.intended_price) for other in group.legs
               if other.leg_id != leg_id and other.status is LegStatus.PENDING]
    if any(price is None for _, price in pending):
        raise ValueError("legs are not priced; apply pass_validation first")
    required = combined_margin([(leg, touch_price(leg.direction, quote)), *pending])  # type: ignore[list-item]
    problem = margin_problem(required, buying_power, settings)
    if problem is not None:
        return problem
    return check_correlation(group, closes_by_symbol, settings)


# --------------------------------------------------------------------------------------------
# Lifecycle functions (pure: each returns a new group)
# --------------------------------------------------------------------------------------------


def _with_leg(group: ExecutionGroup, leg_id: str, update: Callable[[ExecutionLeg], ExecutionLeg],
              now: datetime) -> ExecutionGroup:
    group.leg(leg_id)  # KeyError for an unknown leg
    legs = tuple(update(leg) if leg.leg_id == leg_id else leg for leg in group.legs)
    return replace(group, legs=legs, updated_timestamp=now)


def _group_event(group: ExecutionGroup, event: GroupEvent, now: datetime, **changes: Any) -> ExecutionGroup:
    status = group_transition(group.status, event)
    extra: dict[str, Any] = {"updated_timestamp": now}
    verdict = VERDICT_FOR_STATUS[status]
    extra["verdict"] = verdict
    if status.is_final:
        extra["completed_timestamp"] = now
    return replace(group, status=status, **{**extra, **changes})


def start_validation(group: ExecutionGroup, now: datetime) -> ExecutionGroup:
    return _group_event(group, GroupEvent.START_VALIDATION, _aware(now, "now"))


def fail_validation(group: ExecutionGroup, rejection: Rejection, now: datetime) -> ExecutionGroup:
    """VALIDATING -> REJECTED: no order was sent; every leg is REJECTED with the group's reason."""
    now = _aware(now, "now")
    legs = tuple(leg.apply(LegEvent.REJECT, now, rejection=rejection) for leg in group.legs)
    return _group_event(replace(group, legs=legs), GroupEvent.VALIDATION_FAILED, now, rejection=rejection)


def pass_validation(group: ExecutionGroup, quotes: Mapping[str, Quote], now: datetime) -> ExecutionGroup:
    """VALIDATING -> SUBMITTING; records each leg's intended price (touch) and validated spread."""
    now = _aware(now, "now")
    legs = []
    for leg in group.legs:
        quote = quotes.get(leg.symbol)
        if quote is None:
            raise ValueError(f"no quote for {leg.symbol}; validation cannot have passed")
        legs.append(replace(leg, intended_price=touch_price(leg.direction, quote), validated_spread=quote.spread,
                            updated_timestamp=now))
    return _group_event(replace(group, legs=tuple(legs)), GroupEvent.VALIDATION_PASSED, now)


def pass_validation_dry_run(group: ExecutionGroup, quotes: Mapping[str, Quote], now: datetime) -> ExecutionGroup:
    """VALIDATING -> DRY_RUN (final): every gate passed under dry run; the legs keep their intended
    price and validated spread and stay PENDING — no order exists."""
    priced = pass_validation(group, quotes, now)
    return _group_event(replace(group, legs=priced.legs), GroupEvent.VALIDATION_PASSED_DRY_RUN, _aware(now, "now"))


def _require_status(group: ExecutionGroup, *allowed: GroupStatus) -> None:
    if group.status not in allowed:
        raise ValueError(f"group {group.group_id} is {group.status.value}, expected one of "
                         f"{[s.value for s in allowed]}")


def mark_leg_submitted(group: ExecutionGroup, leg_id: str, now: datetime) -> ExecutionGroup:
    """PENDING -> SUBMITTED. Persist this BEFORE calling the broker with the leg's client order id:
    after a crash the leg is looked up by that id, never blindly resent."""
    _require_status(group, GroupStatus.SUBMITTING)
    now = _aware(now, "now")
    return _with_leg(group, leg_id, lambda leg: leg.apply(LegEvent.SUBMIT, now), now)


def reject_leg(group: ExecutionGroup, leg_id: str, rejection: Rejection, now: datetime) -> ExecutionGroup:
    """PENDING -> REJECTED: a hardening check refused the leg before anything was sent. Follow with
    :func:`abort_submission`."""
    _require_status(group, GroupStatus.SUBMITTING)
    now = _aware(now, "now")
    return _with_leg(group, leg_id, lambda leg: leg.apply(LegEvent.REJECT, now, rejection=rejection), now)


def record_leg_fill(group: ExecutionGroup, leg_id: str, *, filled_units: Decimal, fill_price: Decimal | None,
                    now: datetime, broker_order_id: str | None = None) -> ExecutionGroup:
    """Record the cumulative fill of a working leg (SUBMITTED self-edge). A snapshot with fewer filled
    units than already recorded is stale (out-of-order delivery) and leaves the fill unchanged; an
    over-fill is recorded as reported (the rollback closes what was really filled)."""
    now = _aware(now, "now")

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
    now = _aware(now, "now")

    def update(leg: ExecutionLeg) -> ExecutionLeg:
        status = classify_fill(leg.filled_units, leg.units)
        if status is LegStatus.FILLED:
            return leg.apply(LegEvent.RESOLVE_FILLED, now)
        if status is LegStatus.PARTIALLY_FILLED:
            return leg.apply(LegEvent.RESOLVE_PARTIAL, now)
        reason = rejection or _reject(RejectCode.FILL_RATIO_TOO_LOW,
                                      f"{leg.leg_id} {leg.symbol}: filled={_fmt(leg.filled_units)} units={_fmt(leg.units)} "
                                      f"ratio={_fmt(fill_ratio(leg.filled_units, leg.units), '0.0001')} min={PARTIAL_RATIO}")
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
        rejection = _reject(RejectCode.BROKER_REJECTED,
                            f"{leg.leg_id} {leg.symbol}: {order.venue_status or order.state.value}")
    return resolve_leg(group, leg_id, now, rejection)


def refuse_foreign_leg_order(group: ExecutionGroup, leg_id: str, rejection: Rejection, now: datetime) -> ExecutionGroup:
    """SUBMITTED -> REJECTED with ``rejection`` (CLIENT_ORDER_ID_MISMATCH): the venue answered the leg's
    client id with an order that is not ours. Nothing of that order is recorded (no broker id, no
    fill); a fill recorded earlier from the leg's own order is kept, so the rollback still closes it."""
    if rejection.code is not RejectCode.CLIENT_ORDER_ID_MISMATCH:
        raise ValueError(f"expected a {RejectCode.CLIENT_ORDER_ID_MISMATCH.value} rejection, got {rejection.code.value}")
    now = _aware(now, "now")
    return _with_leg(group, leg_id, lambda leg: leg.apply(LegEvent.RESOLVE_REJECTED, now, rejection=rejection), now)


def abort_submission(group: ExecutionGroup, now: datetime, rejection: Rejection | None = None) -> ExecutionGroup:
    """SUBMITTING -> MONITORING after a leg failed: legs not yet sent are CANCELED and the group
    records ``rejection`` (default: the first failed leg's, in execution order); legs already sent
    are still monitored to a final state."""
    _require_status(group, GroupStatus.SUBMITTING)
    now = _aware(now, "now")
    if rejection is None:
        rejection = next((leg.rejection for leg in execution_order(group)
                          if leg.status is LegStatus.REJECTED and leg.rejection is not None), None)
    if rejection is None:
        raise ValueError("abort_submission needs a rejection (no failed leg carries one)")
    note = Rejection(rejection.code, f"not submitted: group aborted ({rejection.detail})")
    legs = tuple(leg.apply(LegEvent.CANCEL, now, rejection=note) if leg.status is LegStatus.PENDING else leg
                 for leg in group.legs)
    return _group_event(replace(group, legs=legs), GroupEvent.SUBMISSION_ABORTED, now,
                        rejection=group.rejection or rejection)


def mark_all_submitted(group: ExecutionGroup, now: datetime) -> ExecutionGroup:
    """SUBMITTING -> MONITORING once every leg was sent."""
    group_transition(group.status, GroupEvent.ALL_SUBMITTED)
    pending = [leg.leg_id for leg in group.legs if leg.status is LegStatus.PENDING]
    if pending:
        raise ValueError(f"legs not submitted yet: {pending}")
    return _group_event(group, GroupEvent.ALL_SUBMITTED, _aware(now, "now"))


def begin_resolution(group: ExecutionGroup, now: datetime) -> ExecutionGroup:
    """MONITORING -> RESOLVING once every leg is final."""
    group_transition(group.status, GroupEvent.ALL_LEGS_FINAL)
    open_legs = [leg.leg_id for leg in group.legs if not leg.status.is_final]
    if open_legs:
        raise ValueError(f"legs not final yet: {open_legs}")
    return _group_event(group, GroupEvent.ALL_LEGS_FINAL, _aware(now, "now"))


def seed_rollback_trigger(legs: Iterable[ExecutionLeg]) -> bool:
    """The seed's trigger, kept for the audit trail: any leg < 90% filled AND any leg > 10% filled.
    :func:`decide_resolution` uses the stricter rule (any fill on a REJECTED group is closed)."""
    legs = list(legs)
    low = any(not _ratio_at_least(leg.filled_units, leg.units, PARTIAL_RATIO) for leg in legs)
    high = any(_ratio_above(leg.filled_units, leg.units, SEED_ROLLBACK_FILLED_RATIO) for leg in legs)
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
            or _reject(RejectCode.FILL_RATIO_TOO_LOW, f"{failed[0].leg_id} {failed[0].status.value}")
    elif all(leg.status is LegStatus.FILLED for leg in ordered):
        verdict = GroupVerdict.FILLED
    elif group.allow_partial_fills:
        verdict = GroupVerdict.PARTIALLY_FILLED
    else:
        partial = next(leg for leg in ordered if leg.status is LegStatus.PARTIALLY_FILLED)
        verdict = GroupVerdict.REJECTED
        rejection = _reject(RejectCode.FILL_RATIO_TOO_LOW,
                            f"partial fills not allowed: {partial.leg_id} {partial.symbol} "
                            f"ratio={_fmt(partial.fill_ratio, '0.0001')}")
    if verdict is not GroupVerdict.REJECTED and group.max_group_slippage_pips is not None:
        avg = group.avg_slippage_pips
        if avg is not None and avg > group.max_group_slippage_pips:
            verdict = GroupVerdict.REJECTED
            rejection = _reject(RejectCode.GROUP_SLIPPAGE_EXCEEDED,
                                f"avg_slippage_pips={_fmt(avg)} max={_fmt(group.max_group_slippage_pips)}")
    rollback = verdict is GroupVerdict.REJECTED and any(leg.has_fill for leg in group.legs)
    return Resolution(verdict, rejection, rollback, seed_rollback_trigger(group.legs))


def apply_resolution(group: ExecutionGroup, now: datetime) -> ExecutionGroup:
    """RESOLVING -> FILLED | PARTIALLY_FILLED | REJECTED (nothing filled) | ROLLING_BACK."""
    _require_status(group, GroupStatus.RESOLVING)
    now = _aware(now, "now")
    resolution = decide_resolution(group)
    changes: dict[str, Any] = {"rejection": resolution.rejection}
    if resolution.rollback:
        changes["rollback_executed"] = True
    return _group_event(group, resolution.event, now, **changes)


# --------------------------------------------------------------------------------------------
# Rollback
# --------------------------------------------------------------------------------------------


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
    _require_status(group, GroupStatus.ROLLING_BACK)
    now = _aware(now, "now")
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
    now = _aware(now, "now")
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
        rejection = _reject(RejectCode.BROKER_REJECTED, order.venue_status or "rejected")
    return record_rollback_update(group, order.client_order_id, status=status, filled_qty=order.filled_qty,
                                  fill_price=order.filled_avg_price, broker_order_id=order.broker_order_id,
                                  rejection=rejection, now=now)


def complete_rollback(group: ExecutionGroup, now: datetime) -> ExecutionGroup:
    """ROLLING_BACK -> ROLLED_BACK once every leg is flat (verdict stays REJECTED)."""
    group_transition(group.status, GroupEvent.ROLLBACK_COMPLETED)
    if not is_flat(group):
        raise ValueError(f"group {group.group_id} is not flat: {rollback_remaining(group)}")
    return _group_event(group, GroupEvent.ROLLBACK_COMPLETED, _aware(now, "now"))


def escalate_rollback(group: ExecutionGroup, now: datetime, settings: GroupSettings) -> ExecutionGroup:
    """ROLLING_BACK -> FAILED_NEEDS_ATTENTION when nothing is in flight, nothing can be planned and a
    position is still open."""
    group_transition(group.status, GroupEvent.ROLLBACK_EXHAUSTED)
    progress = rollback_progress(group, settings)
    if progress.flat or progress.in_flight or progress.plannable:
        raise ValueError("rollback can still progress")
    return _group_event(group, GroupEvent.ROLLBACK_EXHAUSTED, _aware(now, "now"))


def leg_order_request(group: ExecutionGroup, leg_id: str) -> OrderRequest:
    leg = group.leg(leg_id)
    return OrderRequest(client_order_id=leg.client_order_id, symbol=leg.symbol, asset_class=leg.asset_class,
                        side=leg.side, qty=leg.units, order_type=OrderType.MARKET)


def rollback_order_request(group: ExecutionGroup, order: RollbackOrder) -> OrderRequest:
    leg = group.leg(order.leg_id)
    return OrderRequest(client_order_id=order.client_order_id, symbol=order.symbol, asset_class=leg.asset_class,
                        side=order.side, qty=order.qty, order_type=OrderType.MARKET)


# --------------------------------------------------------------------------------------------
# What to do next (pure, from the stored group)
# --------------------------------------------------------------------------------------------


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
