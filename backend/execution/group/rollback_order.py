"""A rollback order: a MARKET order closing (part of) a leg's fill, stored inside its group."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Mapping

from backend.domain.errors import InvalidInput, Rejection
from backend.domain.money import ZERO
from backend.execution.group.codec import PLAIN, REJECTION, TIMESTAMP, check_fields, check_part_id, dec, decode, \
    encode, enum_of, rule, stored
from backend.execution.group.states import RollbackStatus
from backend.domain.orders import OrderSide


def check_seq(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(name, f"expected an int >= 1, got {value!r}")


@dataclass(frozen=True)
class RollbackOrder:
    """A MARKET order closing (part of) a leg's fill. ``seq`` is 1-based per leg."""

    leg_id: str = stored(rule(check_part_id))
    symbol: str = stored(PLAIN)
    side: OrderSide = stored(enum_of(OrderSide))
    qty: Decimal = stored(dec(positive=True))
    seq: int = stored(rule(check_seq))
    client_order_id: str = stored(PLAIN)  # checked against the group's derivation by the group
    status: RollbackStatus = stored(enum_of(RollbackStatus), RollbackStatus.PLANNED)
    broker_order_id: str | None = stored(PLAIN, None)
    filled_qty: Decimal = stored(dec(non_negative=True), ZERO)
    fill_price: Decimal | None = stored(dec(positive=True), None)
    rejection: Rejection | None = stored(REJECTION, None)
    created_timestamp: datetime | None = stored(TIMESTAMP, None)
    updated_timestamp: datetime | None = stored(TIMESTAMP, None)

    def __post_init__(self) -> None:
        check_fields(self, "rollback.")

    @property
    def in_flight(self) -> bool:
        return not self.status.is_final

    def to_dict(self) -> dict[str, Any]:
        return encode(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "rollback_order") -> "RollbackOrder":
        return decode(cls, data, where)
