"""POST /signals: the strategy-side cost check of seed 001, then (for a BUY/SELL that survives it)
an ``OrderIntent`` for the engine.

The check is ``BaseStrategy.apply_cost_check`` itself, on a strategy configured with the engine's
``max_spread_pct`` (one cost model: ``backend.domain.cost``). Without ``market_data`` the
strategy-side check is skipped (it would downgrade every signal for want of a spread) and the
engine's SmartRouter checks the live quote, as it does for every intent.

Wide spreads (issue 15 item 5, the seed's future item "limit orders for wide spreads"): with the
request's ``wide_spread`` option (``limit_at_touch`` / ``limit_at_mid`` + ``limit_timeout_seconds``,
validated as POST /execute validates them), a BUY/SELL whose measured spread fails the check is not
downgraded to WAIT: it goes to the engine as a market intent carrying the option, and the engine,
on the live quote, places the passive limit instead of its own WAIT (``backend/execution/
wide_spread.py``) with every guarantee of that path (account binding, dry run, kill switch, limits,
idempotency, the sweeper's cancel at the deadline, a ``placed`` ledger row that no metric counts as
a downgrade). If the live quote has narrowed meanwhile, the engine sends the market order the
signal asked for. An unknown spread (no bid/ask or spread_pct) stays WAIT: nothing says it is wide.
Without the option the signal is WAIT exactly as before.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Mapping

from backend.domain.assets import resolve_asset_class
from backend.execution.wide_spread import WideSpread, fallback_from_record


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
    # the option that answered a spread the check found too wide (the signal stays a BUY/SELL and the
    # engine places the limit); None: no such answer (WAIT as before, or the spread passed)
    wide_spread: WideSpread | None = None

    @property
    def executes(self) -> bool:
        return self.signal.signal_type.is_trade

    @property
    def reason(self) -> str:
        if self.wide_spread is not None and self.cost_check:
            return f"{self.cost_check['reason']}: {self.wide_spread.label} instead of WAIT (placed by the engine)"
        if self.executes:
            return "signal passed the cost check" if self.cost_check else "signal forwarded to the engine"
        if self.original_type == "WAIT":
            return self.signal.reasoning or "WAIT signal: nothing to execute"
        return self.signal.reasoning


def decide(*, signal_type: str, symbol: str, asset_class: str | None, confidence: Decimal | None,
           reasoning: str | None, market_data: Mapping[str, Any] | None, max_spread_pct: Decimal,
           wide_spread: Any = None) -> SignalDecision:
    """Build the signal and apply the cost check. Raises ``InvalidInput`` for unusable market data.

    ``wide_spread`` (the request's option, already validated): a BUY/SELL whose measured spread fails
    the check stays a BUY/SELL, answered by that option instead of WAIT (``SignalDecision.wide_spread``)."""
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
    mode = WideSpread(wide_spread) if wide_spread is not None else WideSpread.WAIT
    if cost["downgrade"] and analysis.spread_pct is not None and mode is not WideSpread.WAIT:
        # the seed's future item: a limit order for a wide spread instead of WAIT (the engine places it)
        return SignalDecision(replace(signal, estimated_slippage=analysis.estimated_slippage), signal_type, cost,
                              mode)
    return SignalDecision(checked, signal_type, cost)


def intent_slippage(decision: SignalDecision) -> Decimal | None:
    """The intent's ``estimated_slippage``: the check's share, when an intent can carry it (a spread
    answered by a limit may be 100% or more of the price; the cost check keeps that figure)."""
    value = decision.signal.estimated_slippage
    return value if value is None or value < 1 else None


def wide_spread_limit(store: Any, tenant_id: str, intent_id: str, result: Any) -> dict[str, Any] | None:
    """The limit the engine placed instead of WAIT for this signal's intent (as its record holds it:
    ``wide_spread_limit``), or None when the outcome involved none. Read only for a signal
    that carried the option and reached the claim (placed, pending, dry run)."""
    if getattr(result, "status", None) not in ("placed", "pending", "dry_run"):
        return None
    record = store.get_intent(tenant_id, intent_id)
    fallback = fallback_from_record(record.data) if record is not None else None
    if fallback is None:
        return None
    return {"mode": fallback.mode.value, "limit_price": fallback.limit_price,
            "time_in_force": fallback.time_in_force.value, "timeout_seconds": fallback.timeout_seconds,
            "deadline": fallback.deadline.isoformat()}


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
            "downgraded": bool(s.metadata.get("downgraded_from")),
            "wide_spread": None if decision.wide_spread is None else decision.wide_spread.value}
