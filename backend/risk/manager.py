"""Pre-trade risk: kill switch, daily trade count, position limit. Pure; never raises for a "no".

The checks are pure functions of a ``RiskSnapshot`` the store reads. Exactness under concurrency
is the store's job (daily slots are created with a create-if-absent precondition; position
exposure is reserved before the broker call and re-checked) — see docs/ARCHITECTURE.md.

Limits come from the environment (``EXEC_*``) and can be tightened per tenant by the document
``tenants/<tenant>/config/risk``: a tenant can halt itself or lower its limits, never raise them
above the operator's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping

from backend.domain.assets import AssetClass
from backend.domain.errors import InvalidInput, RejectCode, Rejection
from backend.domain.money import ZERO, to_decimal
from backend.settings import ExecSettings


@dataclass(frozen=True)
class RiskLimits:
    kill_switch: bool = False
    max_position_qty: Decimal = Decimal("100")
    max_daily_trades: int = 50
    # A unit of FX (1 EUR) and a unit of BTC are not comparable: optional per-class position limits
    # (EXEC_MAX_POSITION_QTY_FOREX, ...) replace the global one for that class.
    max_position_by_class: Mapping[AssetClass, Decimal] = field(default_factory=dict)

    def position_limit(self, asset_class: AssetClass | None) -> Decimal:
        if asset_class is not None and asset_class in self.max_position_by_class:
            return self.max_position_by_class[asset_class]
        return self.max_position_qty

    def tightened_by(self, overrides: Mapping[str, Any] | None) -> "RiskLimits":
        if not overrides:
            return self
        kill = self.kill_switch or bool(overrides.get("kill_switch", False))
        max_pos = self.max_position_qty
        if overrides.get("max_position_qty") is not None:
            max_pos = min(max_pos, to_decimal(overrides["max_position_qty"], "max_position_qty"))
        max_daily = self.max_daily_trades
        if overrides.get("max_daily_trades") is not None:
            value = overrides["max_daily_trades"]
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidInput("max_daily_trades", "must be an integer")
            max_daily = min(max_daily, value)
        per_class = dict(self.max_position_by_class)
        if overrides.get("max_position_qty") is not None:
            per_class = {k: min(v, max_pos) for k, v in per_class.items()}
        return RiskLimits(kill, max_pos, max_daily, per_class)


@dataclass(frozen=True)
class Exposure:
    """Position and in-flight reservations for one (tenant, account, symbol)."""

    position: Decimal = ZERO
    reserved_long: Decimal = ZERO  # buys reserved but not yet settled
    reserved_short: Decimal = ZERO  # sells reserved but not yet settled (positive number)

    def worst_case_after(self) -> tuple[Decimal, Decimal]:
        """Highest and lowest position reachable if every reservation fills."""
        return self.position + self.reserved_long, self.position - self.reserved_short


@dataclass(frozen=True)
class RiskSnapshot:
    global_kill_switch: bool = False
    tenant_overrides: Mapping[str, Any] | None = None
    trades_today: int = 0
    exposure: Exposure = Exposure()


class RiskManager:
    """``RiskManager()`` reads limits from the environment, as in the seed."""

    def __init__(self, limits: RiskLimits | None = None, settings: ExecSettings | None = None):
        if limits is None:
            s = settings or ExecSettings.from_env()
            limits = RiskLimits(s.kill_switch, s.max_position_qty, s.max_daily_trades, dict(s.max_position_by_class))
        self.limits = limits

    def effective_limits(self, snapshot: RiskSnapshot) -> RiskLimits:
        limits = self.limits.tightened_by(snapshot.tenant_overrides)
        if snapshot.global_kill_switch and not limits.kill_switch:
            limits = RiskLimits(True, limits.max_position_qty, limits.max_daily_trades, limits.max_position_by_class)
        return limits

    def check(self, signed_qty: Decimal, snapshot: RiskSnapshot, *, include_own_reservation: bool = False,
              asset_class: AssetClass | None = None) -> Rejection | None:
        """First failing rule as a coded rejection, or None.

        ``include_own_reservation``: the snapshot already contains this intent's reservation
        (the post-reservation re-check), so it must not be added twice.
        """
        limits = self.effective_limits(snapshot)
        if limits.kill_switch:
            scope = "tenant" if (snapshot.tenant_overrides or {}).get("kill_switch") else "global"
            return Rejection(RejectCode.KILL_SWITCH, f"trading halted ({scope})")
        if not include_own_reservation and snapshot.trades_today >= limits.max_daily_trades:
            return Rejection(RejectCode.DAILY_TRADE_LIMIT,
                             f"count={snapshot.trades_today} limit={limits.max_daily_trades}")
        # Only the extreme this order pushes is checked, so an order that reduces a position
        # (even one already above the limit) is always allowed.
        high, low = snapshot.exposure.worst_case_after()
        extra = ZERO if include_own_reservation else signed_qty
        worst = high + extra if signed_qty > 0 else low + extra
        limit = limits.position_limit(asset_class)
        if abs(worst) > limit and (worst > 0) == (signed_qty > 0):
            return Rejection(RejectCode.POSITION_LIMIT,
                             f"position={snapshot.exposure.position} order={signed_qty} "
                             f"worst_case={worst} limit={limit}")
        return None
