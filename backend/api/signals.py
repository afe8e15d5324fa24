"""POST /signals: the strategy-side cost check of seed 001, then (for a BUY/SELL that survives it)
an ``OrderIntent`` for the engine.

The check is ``BaseStrategy.apply_cost_check`` itself, on a strategy configured with the engine's
``max_spread_pct`` (one cost model: ``backend.domain.cost``). Without ``market_data`` the
strategy-side check is skipped (it would downgrade every signal for want of a spread) and the
engine's SmartRouter checks the live quote, as it does for every intent.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Mapping

from backend.domain.assets import resolve_asset_class


def _strategy_module() -> Any:
    # Repo root on sys.path: ``functions.strategies``; deployed with functions/ as the source root:
    # ``strategies`` (backend/ is symlinked beside it).
    try:
        from functions.strategies import base_strategy
    except ImportError:
        from strategies import base_strategy  # type: ignore[no-redef]
    return base_strategy


@functools.lru_cache(maxsize=1)
def _strategy_class() -> type:
    bs = _strategy_module()

    class ApiSignalStrategy(bs.BaseStrategy):
        """Signals arrive already evaluated by the caller's strategy; only the cost check runs here."""

        def evaluate(self, market_data, account_snapshot, regime=None):  # noqa: ANN001
            raise NotImplementedError("signals arrive evaluated")

    return ApiSignalStrategy


@dataclass(frozen=True)
class SignalDecision:
    signal: Any  # TradingSignal after the cost check
    original_type: str
    cost_check: Mapping[str, Any] | None

    @property
    def executes(self) -> bool:
        return self.signal.signal_type.is_trade

    @property
    def reason(self) -> str:
        if self.executes:
            return "signal passed the cost check" if self.cost_check else "signal forwarded to the engine"
        if self.original_type == "WAIT":
            return self.signal.reasoning or "WAIT signal: nothing to execute"
        return self.signal.reasoning


def decide(*, signal_type: str, symbol: str, asset_class: str | None, confidence: Decimal | None,
           reasoning: str | None, market_data: Mapping[str, Any] | None, max_spread_pct: Decimal) -> SignalDecision:
    """Build the signal and apply the cost check. Raises ``InvalidInput`` for unusable market data."""
    bs = _strategy_module()
    strategy = _strategy_class()(config={"max_slippage_pct": max_spread_pct})
    signal = bs.TradingSignal(signal_type=bs.SignalType(signal_type), symbol=symbol,
                              asset_class=resolve_asset_class(symbol, asset_class),
                              confidence=confidence if confidence is not None else Decimal("0"),
                              reasoning=reasoning or "")
    if market_data is None:
        return SignalDecision(signal, signal_type, None)
    analysis = strategy.cost_analysis(market_data)  # raises InvalidInput on a crossed/non-positive quote
    checked = strategy.apply_cost_check(signal, market_data)
    performed = signal.signal_type.is_trade
    cost = {"performed": performed, "downgrade": performed and analysis.downgrade,
            "estimated_slippage": analysis.estimated_slippage, "threshold": analysis.threshold,
            "reason": analysis.reason}
    return SignalDecision(checked, signal_type, cost)


def reached_venue(result: Any) -> bool:
    """The response's ``executed``: true only when an order reached a venue (``placed``, also when
    replayed). A signal the engine downgraded, rejected or ran dry is not executed, and neither is
    a ``pending`` one whose outcome is not known yet (``execution.status`` tells which)."""
    return getattr(result, "status", None) == "placed"


def signal_out(decision: SignalDecision) -> dict[str, Any]:
    s = decision.signal
    return {"signal_type": s.signal_type.value, "original_signal_type": decision.original_type, "symbol": s.symbol,
            "asset_class": s.asset_class.value, "confidence": format(s.confidence, "f"), "reasoning": s.reasoning,
            "estimated_slippage": None if s.estimated_slippage is None else format(s.estimated_slippage, "f"),
            "downgraded": bool(s.metadata.get("downgraded_from"))}
