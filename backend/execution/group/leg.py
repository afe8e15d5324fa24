"""One leg of a group: an immutable value whose stored fields are declared once (see codec.py)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Mapping

from backend.domain.assets import AssetClass, AssetSpec, AssetSpecRegistry, default_registry, normalize_symbol, \
    resolve_asset_class
from backend.domain.errors import InvalidInput, Rejection
from backend.domain.money import ZERO, dec_str
from backend.domain.wire import decimal_out
from backend.execution import client_ids
from backend.execution.group.codec import ASSET_CLASS, PLAIN, REJECTION, SPEC, TIMESTAMP, Derived, aware, \
    check_fields, check_part_id, check_text, dec, decode, encode, enum_of, rule, stored
from backend.execution.group.fills import fill_ratio
from backend.execution.group.leg_stop import LEG_STOP, LegStop, parse_stop_loss
from backend.execution.group.states import LegEvent, LegStatus, leg_transition
from backend.domain.orders import OrderSide

CLIENT_ID_MAX = 48


def check_symbol(value: Any, name: str) -> None:
    if not isinstance(value, str) or normalize_symbol(value) != value:
        raise InvalidInput(name, f"expected a normalized symbol, got {value!r}")


def check_direction(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value not in (1, -1):
        raise InvalidInput(name, f"must be 1 (buy) or -1 (sell), got {value!r}")


def check_client_order_id(value: Any, name: str) -> None:
    if not isinstance(value, str) or not 1 <= len(value) <= CLIENT_ID_MAX:
        raise InvalidInput(name, f"must be 1..{CLIENT_ID_MAX} characters")


def check_broker_order_id(value: Any, name: str) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidInput(name, "expected a non-empty string or None")


@dataclass(frozen=True)
class ExecutionLeg:
    """One leg of a group. Immutable: every change returns a new leg (via the group functions).

    ``spec`` is a snapshot of the asset spec taken at creation, so slippage and spread widening
    (in ticks) stay a function of the stored leg even if the spec file changes before a resume.
    ``asset_class_label`` keeps the request's spelling (``"FX"``) for the API response.
    """

    leg_id: str = stored(rule(check_part_id))
    symbol: str = stored(rule(check_symbol))
    direction: int = stored(rule(check_direction))
    units: Decimal = stored(dec(positive=True))
    asset_class: AssetClass = stored(ASSET_CLASS)
    asset_class_label: str = stored(PLAIN)
    spec: AssetSpec = stored(SPEC)
    client_order_id: str = stored(rule(check_client_order_id))
    status: LegStatus = stored(enum_of(LegStatus), LegStatus.PENDING)
    intended_price: Decimal | None = stored(dec(positive=True), None)
    validated_spread: Decimal | None = stored(dec(non_negative=True), None)
    filled_units: Decimal = stored(dec(non_negative=True), ZERO)
    fill_price: Decimal | None = stored(dec(positive=True), None)  # average fill price
    rejection: Rejection | None = stored(REJECTION, None)
    broker_order_id: str | None = stored(rule(check_broker_order_id), None)
    submitted_timestamp: datetime | None = stored(TIMESTAMP, None)
    updated_timestamp: datetime | None = stored(TIMESTAMP, None)
    completed_timestamp: datetime | None = stored(TIMESTAMP, None)
    # issue 15 item 3: the protective stop placed once the group is FILLED (leg_stop.py)
    stop_loss: LegStop | None = stored(LEG_STOP, None, omit_none=True)

    # written for queries, ignored on load
    DERIVED = (Derived("slippage_pips", "fill_price", lambda leg: dec_str(leg.slippage_pips)),)

    def __post_init__(self) -> None:
        check_fields(self)
        if not isinstance(self.asset_class_label, str) or AssetClass.parse(self.asset_class_label) is not self.asset_class:
            raise InvalidInput("asset_class_label", f"{self.asset_class_label!r} does not name {self.asset_class.value}")
        if self.spec.asset_class is not self.asset_class:
            raise InvalidInput("spec", "asset spec missing or for another asset class")

    @classmethod
    def create(cls, *, tenant_id: str, group_id: str, leg_id: str, symbol: str, direction: int, units: Any,
               asset_class: Any, registry: AssetSpecRegistry | None = None, stop_loss: Any = None,
               stop_where: str = "stop_loss") -> "ExecutionLeg":
        """A new PENDING leg from request values; units are quantized (never rounded) by the spec.
        Its client order id is derived from the tenant, the group and the leg (scheme 2)."""
        check_text(tenant_id, "tenant_id")
        check_part_id(group_id, "group_id")
        check_part_id(leg_id, "leg_id")
        check_direction(direction, "direction")
        sym = normalize_symbol(symbol)
        klass = resolve_asset_class(sym, asset_class)  # omitted: the symbol's class; contradicted: refused
        label = klass.value if asset_class is None else (
            asset_class.value if isinstance(asset_class, Enum) else str(asset_class).strip())
        spec = (registry or default_registry()).spec_for(sym, klass)
        qty = spec.quantize_qty(units, "units")
        stop = parse_stop_loss(stop_loss, spec, stop_where)  # tick-aligned, never rounded
        return cls(leg_id=leg_id, symbol=sym, direction=direction, units=qty, asset_class=klass,
                   asset_class_label=label, spec=spec, stop_loss=stop,
                   client_order_id=client_ids.leg_client_order_id(group_id, leg_id, tenant_id=tenant_id))

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
        now = aware(now, "now")
        status = leg_transition(self.status, event)
        stamps: dict[str, Any] = {"updated_timestamp": now}
        if event is LegEvent.SUBMIT:
            stamps["submitted_timestamp"] = now
        if status.is_final:
            stamps["completed_timestamp"] = now
        return replace(self, status=status, **{**stamps, **changes})

    # -- storage ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return encode(self, self.DERIVED)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "leg") -> "ExecutionLeg":
        return decode(cls, data, where, derived=cls.DERIVED)

    def to_api_response(self) -> dict[str, Any]:
        """The seed's leg shape; decimals as exact strings of their kind (``backend.domain.wire``);
        ``rejection`` is the leg's coded reason (``{code, detail, text}``) or null."""
        return {
            "leg_id": self.leg_id,
            "symbol": self.symbol,
            "direction": self.direction,
            "units": decimal_out(self.units, "quantity"),
            "asset_class": self.asset_class_label,
            "status": self.status.value,
            "filled_units": decimal_out(self.filled_units, "quantity"),
            "fill_price": decimal_out(self.fill_price, "price"),
            "slippage_pips": decimal_out(self.slippage_pips, "ticks"),
            "rejection": None if self.rejection is None else self.rejection.to_dict(),
            **({} if self.stop_loss is None else {"stop_loss": self.stop_loss.to_api_response()}),
        }
