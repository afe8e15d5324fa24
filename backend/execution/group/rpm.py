"""The upstream authorization (``rpm_output``) of a group: parsed strictly, checked per leg."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Mapping, Sequence

from backend.domain.assets import normalize_symbol
from backend.domain.errors import InvalidInput
from backend.domain.money import ZERO, to_decimal
from backend.execution.group.codec import check_keys, parse_dt



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
    check_keys(raw, {"decision_id", "approved", "expires_at", "approved_legs"}, {"meta"}, "rpm_output")
    decision_id = raw["decision_id"]
    if not isinstance(decision_id, str) or not decision_id.strip():
        raise InvalidInput("rpm_output.decision_id", "expected a non-empty string")
    approved = raw["approved"]
    if not isinstance(approved, bool):
        raise InvalidInput("rpm_output.approved", "expected a boolean")
    expires_at = parse_dt(raw["expires_at"], "rpm_output.expires_at")
    entries = raw["approved_legs"]
    legs: dict[str, RpmLegApproval] = {}
    if isinstance(entries, Mapping):
        for leg_id, max_units in entries.items():
            legs[str(leg_id)] = RpmLegApproval(str(leg_id), to_decimal(max_units, f"rpm_output.approved_legs.{leg_id}"))
    elif isinstance(entries, Sequence) and not isinstance(entries, (str, bytes)):
        for i, entry in enumerate(entries):
            where = f"rpm_output.approved_legs[{i}]"
            check_keys(entry, {"leg_id", "max_units"}, {"symbol", "direction"}, where)
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


