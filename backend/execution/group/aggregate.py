"""The group aggregate: one document holding the legs, the rollback orders and the verdict."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Mapping, Sequence

from backend.domain.assets import AssetSpecRegistry
from backend.domain.errors import InvalidInput, Rejection
from backend.domain.group_rules import MAX_LEGS, MIN_LEGS
from backend.domain.ids import check_id
from backend.domain.money import ZERO, dec_str, to_decimal
from backend.domain.wire import decimal_out
from backend.execution import client_ids
from backend.execution.group.codec import BOOL, OBJECT, REJECTION, STR_TUPLE, TIMESTAMP, Derived, aware, \
    check_fields, check_keys, check_part_id, check_text, dec, decode, dt_str, encode, enum_of, list_of, \
    rule, stored
from backend.execution.group.fills import AVG_SLIPPAGE_QUANTUM
from backend.execution.group.leg import ExecutionLeg
from backend.execution.group.rollback_order import RollbackOrder
from backend.execution.group.states import VERDICT_FOR_STATUS, GroupStatus, GroupVerdict

SCHEMA_VERSION = 1
# the leg fields of a request from a library caller or an intent document (the HTTP edge validates
# its body with pydantic first: backend/api/models.py LegRequest); asset_class may be omitted
LEG_REQUEST_REQUIRED = ("leg_id", "symbol", "direction", "units")
LEG_REQUEST_OPTIONAL = ("asset_class", "stop_loss")


def check_scheme(value: Any, name: str) -> None:
    if isinstance(value, bool) or value not in client_ids.CLIENT_ID_SCHEMES:
        raise InvalidInput(name, f"expected one of {list(client_ids.CLIENT_ID_SCHEMES)}, got {value!r}")


def group_rollback_client_order_id(group: "ExecutionGroup", leg_id: str, seq: int) -> str:
    """The id of rollback order ``seq`` of a leg, in the group's own scheme."""
    return client_ids.group_rollback_client_order_id(group.client_id_scheme, group.tenant_id, group.group_id,
                                                     leg_id, seq)


@dataclass(frozen=True)
class ExecutionGroup:
    """A multi-leg group: the aggregate the orchestrator stores in one document.

    ``rpm_output`` is the upstream authorization as received (a JSON object), kept so that a resumed
    run re-checks it (expiry) before sending a leg. ``rejection`` is the group's reason when the
    verdict is REJECTED (the first failure in execution order).
    """

    group_id: str = stored(rule(check_part_id))
    strategy_id: str = stored(rule(check_id))  # a metrics map key: the one id rule (no __x__)
    tenant_id: str = stored(rule(check_text))
    uid: str = stored(rule(check_text))
    # keyword-only: the stored document has always listed status and verdict before the legs
    status: GroupStatus = stored(enum_of(GroupStatus), GroupStatus.PENDING, kw_only=True)
    verdict: GroupVerdict | None = stored(enum_of(GroupVerdict), None, kw_only=True)
    legs: tuple[ExecutionLeg, ...] = stored(list_of(ExecutionLeg))
    created_timestamp: datetime = stored(TIMESTAMP)
    updated_timestamp: datetime = stored(TIMESTAMP)
    completed_timestamp: datetime | None = stored(TIMESTAMP, None)
    allow_partial_fills: bool = stored(BOOL, False)
    max_group_slippage_pips: Decimal | None = stored(dec(non_negative=True), None)
    execution_priority: tuple[str, ...] | None = stored(STR_TUPLE, None)
    rpm_output: Mapping[str, Any] | None = stored(OBJECT, None)
    rejection: Rejection | None = stored(REJECTION, None)
    rollback_executed: bool = stored(BOOL, False)
    rollback_orders: tuple[RollbackOrder, ...] = stored(list_of(RollbackOrder), (), missing=())
    # how the leg and rollback client order ids are derived: 2 = tenant-namespaced (every new group);
    # 1 = group + leg only, for documents stored before issue 10 (a document without the key)
    client_id_scheme: int = stored(rule(check_scheme), client_ids.CLIENT_ID_SCHEME,
                                   missing=client_ids.LEGACY_CLIENT_ID_SCHEME)

    # written for queries, ignored on load
    DERIVED = (Derived("avg_slippage_pips", "completed_timestamp", lambda g: dec_str(g.avg_slippage_pips)),)

    def __post_init__(self) -> None:
        check_fields(self)
        # 1..MAX_LEGS here so a stored group of the old 1-leg rule still loads and finishes;
        # new groups need MIN_LEGS (``create``).
        if not 1 <= len(self.legs) <= MAX_LEGS:
            raise InvalidInput("legs", f"a group has {MIN_LEGS}..{MAX_LEGS} legs, got {len(self.legs)}")
        ids = [leg.leg_id for leg in self.legs]
        if len(set(ids)) != len(ids):
            raise InvalidInput("legs", f"duplicate leg_id in {ids}")
        symbols = [leg.symbol for leg in self.legs]
        if len(set(symbols)) != len(symbols):
            raise InvalidInput("legs", f"a symbol may appear in one leg only, got {symbols}")
        for leg in self.legs:
            expected = client_ids.group_leg_client_order_id(self.client_id_scheme, self.tenant_id, self.group_id,
                                                            leg.leg_id)
            if leg.client_order_id != expected:
                raise InvalidInput("legs", f"{leg.leg_id}: client_order_id is not derived from the tenant, group "
                                           f"and leg ids (scheme {self.client_id_scheme})")
        priority = self.execution_priority
        if priority is not None and (len(priority) != len(ids) or set(priority) != set(ids)):
            raise InvalidInput("execution_priority", f"must name each leg exactly once: {sorted(ids)}, got {list(priority)}")
        if VERDICT_FOR_STATUS[self.status] is not self.verdict:
            raise InvalidInput("verdict", f"status {self.status.value} implies verdict "
                                          f"{VERDICT_FOR_STATUS[self.status]}, got {self.verdict}")
        seen: set[str] = set()
        for order in self.rollback_orders:
            if order.leg_id not in ids:
                raise InvalidInput("rollback_orders", f"unknown leg {order.leg_id!r}")
            if order.client_order_id != group_rollback_client_order_id(self, order.leg_id, order.seq):
                raise InvalidInput("rollback_orders", f"{order.client_order_id}: not derived from tenant/group/leg/seq")
            if order.client_order_id in seen:
                raise InvalidInput("rollback_orders", f"duplicate {order.client_order_id}")
            seen.add(order.client_order_id)

    @classmethod
    def create(cls, *, group_id: str, strategy_id: str, tenant_id: str, uid: str,
               legs: Sequence[Mapping[str, Any]], now: datetime, allow_partial_fills: bool = False,
               max_group_slippage_pips: Any = None, execution_priority: Sequence[str] | None = None,
               rpm_output: Mapping[str, Any] | None = None,
               registry: AssetSpecRegistry | None = None) -> "ExecutionGroup":
        """A PENDING group from the request's legs (``{leg_id, symbol, direction, units, asset_class}``).

        The HTTP edge validates its body with pydantic (backend/api/models.py) first; this is for
        library callers and intent documents, which hand in plain mappings. Malformed input raises
        ``InvalidInput`` (HTTP 400): unknown/missing leg fields, a bad direction, units off the lot
        size, duplicate leg ids or symbols, a priority that does not name each leg exactly once,
        a non-boolean ``allow_partial_fills``. ``tenant_id``/``uid`` come from the verified token.
        """
        if isinstance(legs, (str, bytes, Mapping)) or not isinstance(legs, Sequence):
            raise InvalidInput("legs", "expected a list of legs")
        if len(legs) > MAX_LEGS:
            raise InvalidInput("legs", f"a group has {MIN_LEGS}..{MAX_LEGS} legs, got {len(legs)}")
        built = []
        for i, raw in enumerate(legs):
            check_keys(raw, LEG_REQUEST_REQUIRED, LEG_REQUEST_OPTIONAL, f"legs[{i}]")
            built.append(ExecutionLeg.create(tenant_id=tenant_id, group_id=group_id, registry=registry,
                                             stop_where=f"legs[{i}].stop_loss",
                                             **{k: raw.get(k) for k in LEG_REQUEST_REQUIRED + LEG_REQUEST_OPTIONAL}))
        if len(built) < MIN_LEGS:  # after the legs, so a malformed single leg names its own field
            raise InvalidInput("legs", f"a group has {MIN_LEGS}..{MAX_LEGS} legs, got {len(built)}")
        max_slip = None
        if max_group_slippage_pips is not None:
            max_slip = to_decimal(max_group_slippage_pips, "max_group_slippage_pips")
        now = aware(now, "now")
        return cls(group_id=group_id, strategy_id=strategy_id, tenant_id=tenant_id, uid=uid, legs=tuple(built),
                   created_timestamp=now, updated_timestamp=now, allow_partial_fills=allow_partial_fills,
                   max_group_slippage_pips=max_slip, execution_priority=execution_priority,
                   rpm_output=dict(rpm_output) if isinstance(rpm_output, Mapping) else rpm_output)

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
        return {"schema_version": SCHEMA_VERSION, **encode(self, self.DERIVED)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ExecutionGroup":
        """Inverse of ``to_dict``. Unknown fields raise, except ``_``-prefixed adapter fields."""
        if isinstance(data, Mapping) and data.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise InvalidInput("schema_version", f"unsupported {data['schema_version']!r}")
        return decode(cls, data, "group", prefix="", derived=cls.DERIVED, extra={"schema_version"},
                      allow_private=True)

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
        """The seed's POST /execute/multi-leg response (its field names), with every decimal an exact
        string of its kind (``backend.domain.wire``: quantities exact on the lot, prices at most 10
        places, slippage in ticks at most 4); ``asset_class`` keeps the request's spelling;
        ``completed_timestamp`` is ISO-8601 with a UTC offset (or null). ``rejection`` is the group's
        coded reason (``{code, detail, text}``) when it was refused or rolled back, else null. It is
        also what the intent document's ``result`` holds."""
        return {
            "group_id": self.group_id,
            "strategy_id": self.strategy_id,
            "status": self.api_status,
            "legs": [leg.to_api_response() for leg in self.legs],
            "avg_slippage_pips": decimal_out(self.avg_slippage_pips, "ticks"),
            "rollback_executed": self.rollback_executed,
            "completed_timestamp": dt_str(self.completed_timestamp),
            "rejection": None if self.rejection is None else self.rejection.to_dict(),
        }


def execution_order(group: ExecutionGroup) -> tuple[ExecutionLeg, ...]:
    """Submission order: ``execution_priority`` if given (it names every leg once), else shorts
    (direction -1) before longs, stable within each side (request order)."""
    if group.execution_priority is not None:
        return tuple(group.leg(leg_id) for leg_id in group.execution_priority)
    return tuple(sorted(group.legs, key=lambda leg: 0 if leg.direction < 0 else 1))

