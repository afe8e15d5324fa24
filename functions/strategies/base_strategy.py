"""Strategy-side API of seed 001: signals, the pre-trade cost check and asset-class detection.

The cost check is the same code the engine's SmartRouter runs (``backend.domain.cost``), so a
strategy and the router can never disagree about when a spread is too wide.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import Enum
from typing import Any, Iterable, Mapping

from backend.domain.assets import AssetClass, detect_asset_class as _detect
from backend.domain.cost import DEFAULT_MAX_SPREAD_PCT, CostAnalysis, analyze_market_data
from backend.domain.errors import InvalidInput
from backend.domain.money import to_decimal

__all__ = ["AssetClass", "BaseStrategy", "SignalType", "TradingSignal"]


class SignalType(str, Enum):
    BUY = "BUY"
    SELL = "SELL"
    WAIT = "WAIT"

    @property
    def is_trade(self) -> bool:
        return self in (SignalType.BUY, SignalType.SELL)


@dataclass(frozen=True)
class TradingSignal:
    signal_type: SignalType
    symbol: str = ""
    asset_class: AssetClass | None = None  # omitted: the symbol's class (EQUITY without a symbol)
    confidence: Decimal = Decimal("0")
    reasoning: str = ""
    estimated_slippage: Decimal | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        put = object.__setattr__
        if not isinstance(self.signal_type, SignalType):
            try:
                put(self, "signal_type", SignalType(str(self.signal_type).upper()))
            except ValueError:
                raise InvalidInput("signal_type", f"expected BUY, SELL or WAIT, got {self.signal_type!r}") from None
        if self.asset_class is None:
            put(self, "asset_class", _detect(self.symbol) if self.symbol else AssetClass.EQUITY)
        put(self, "asset_class", AssetClass.parse(self.asset_class))
        confidence = to_decimal(self.confidence, "confidence")
        if not (0 <= confidence <= 1):
            raise InvalidInput("confidence", f"must be within [0, 1], got {confidence}")
        put(self, "confidence", confidence)
        if self.estimated_slippage is not None:
            put(self, "estimated_slippage", to_decimal(self.estimated_slippage, "estimated_slippage"))

    @property
    def downgraded(self) -> bool:
        return bool(self.metadata.get("downgraded_from"))


class BaseStrategy(ABC):
    """Subclass and implement ``evaluate``. Config: ``max_slippage_pct`` (0.001 = 0.1%) and
    ``supported_assets`` (all asset classes by default)."""

    def __init__(self, config: Mapping[str, Any] | None = None):
        self.config = dict(config or {})
        self.max_slippage_pct = to_decimal(self.config.get("max_slippage_pct", DEFAULT_MAX_SPREAD_PCT),
                                           "max_slippage_pct")
        if not (0 <= self.max_slippage_pct < 1):
            raise InvalidInput("max_slippage_pct", "is a fraction (0.001 = 0.1%)")
        assets: Iterable[Any] = self.config.get("supported_assets") or list(AssetClass)
        self.supported_assets = frozenset(AssetClass.parse(a, "supported_assets") for a in assets)

    @abstractmethod
    def evaluate(self, market_data: Mapping[str, Any], account_snapshot: Mapping[str, Any],
                 regime: Any = None) -> TradingSignal:
        """Return a signal for this market snapshot."""

    def cost_analysis(self, market_data: Mapping[str, Any]) -> CostAnalysis:
        return analyze_market_data(market_data, threshold=self.max_slippage_pct)

    def estimate_slippage(self, market_data: Mapping[str, Any]) -> Decimal | None:
        """Bid-ask spread as a share of price (None when market data has no spread)."""
        return self.cost_analysis(market_data).estimated_slippage

    def should_downgrade_signal(self, market_data: Mapping[str, Any]) -> bool:
        """True when spread/price exceeds ``max_slippage_pct`` (equal passes), or is unknown."""
        return self.cost_analysis(market_data).downgrade

    @staticmethod
    def detect_asset_class(symbol: str) -> AssetClass:
        return _detect(symbol)

    def supports(self, asset_class: AssetClass | str) -> bool:
        return AssetClass.parse(asset_class) in self.supported_assets

    def apply_cost_check(self, signal: TradingSignal, market_data: Mapping[str, Any]) -> TradingSignal:
        """Downgrade a BUY/SELL to WAIT when costs are too high; WAIT passes through unchanged."""
        if not signal.signal_type.is_trade:
            return signal
        analysis = self.cost_analysis(market_data)
        if not analysis.downgrade:
            return replace(signal, estimated_slippage=analysis.estimated_slippage)
        return replace(signal, signal_type=SignalType.WAIT, estimated_slippage=analysis.estimated_slippage,
                       reasoning=f"{analysis.reason} (was {signal.signal_type.value}: {signal.reasoning})".strip(),
                       metadata={**signal.metadata, "downgraded_from": signal.signal_type.value})
