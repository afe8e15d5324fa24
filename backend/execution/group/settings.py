"""Thresholds for the group gates (``EXECUTION_ENGINE_*``), built once at the edge and passed in."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping

from backend.domain.assets import AssetClass
from backend.domain.errors import InvalidInput
from backend.domain.money import ZERO, to_decimal



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


