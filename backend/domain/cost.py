"""The one cost model shared by the strategy side and the SmartRouter.

Estimated slippage is the quoted bid-ask spread as a share of the price (seed 001: the router logs
``estimated_slippage == spread_pct``). A BUY or SELL is downgraded to WAIT when that share is
strictly above the threshold; exactly at the threshold passes. Arithmetic is Decimal, so "equal"
really is equal (floats arrive through their shortest repr).
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Mapping

from backend.domain.errors import InvalidInput
from backend.domain.money import ZERO, to_decimal

DEFAULT_MAX_SPREAD_PCT = Decimal("0.001")


@dataclass(frozen=True)
class CostAnalysis:
    spread: Decimal | None
    spread_pct: Decimal | None  # None: could not be estimated
    threshold: Decimal

    @property
    def estimated_slippage(self) -> Decimal | None:
        return self.spread_pct

    @property
    def downgrade(self) -> bool:
        """Fail safe: no estimate means no trade."""
        return self.spread_pct is None or self.spread_pct > self.threshold

    @property
    def reason(self) -> str:
        if self.spread_pct is None:
            return "Spread unknown: no bid/ask or spread_pct in market data"
        verb = "exceeds" if self.downgrade else "within"
        return f"Spread {pct(self.spread_pct)} {verb} threshold {pct(self.threshold)}"


def pct(value: Decimal) -> str:
    """0.0015 → '0.15%' (two decimals, as the seed's log line)."""
    return f"{(value * 100).quantize(Decimal('0.01'))}%"


def analyze_spread(bid: Any, ask: Any, price: Any | None = None, *,
                   threshold: Decimal = DEFAULT_MAX_SPREAD_PCT) -> CostAnalysis:
    """Spread share from a quote. ``price`` defaults to the mid. Crossed or non-positive quotes raise."""
    bid_d = to_decimal(bid, "bid")
    ask_d = to_decimal(ask, "ask")
    if bid_d <= ZERO or ask_d <= ZERO:
        raise InvalidInput("bid", f"quote must be positive, got bid={bid_d} ask={ask_d}")
    if bid_d > ask_d:
        raise InvalidInput("bid", f"crossed quote: bid {bid_d} > ask {ask_d}")
    price_d = (bid_d + ask_d) / 2 if price is None else to_decimal(price, "price")
    if price_d <= ZERO:
        raise InvalidInput("price", f"must be positive, got {price_d}")
    spread = ask_d - bid_d
    return CostAnalysis(spread=spread, spread_pct=spread / price_d, threshold=threshold)


def analyze_market_data(market_data: Mapping[str, Any], *,
                        threshold: Decimal = DEFAULT_MAX_SPREAD_PCT) -> CostAnalysis:
    """The strategy-side entry: ``market_data`` as seed 001 describes it.

    Bid/ask (with ``price`` as the reference, else the mid) win over a precomputed ``spread`` or
    ``spread_pct``; with none of them the analysis has no estimate and therefore downgrades.
    """
    if market_data.get("bid") is not None and market_data.get("ask") is not None:
        return analyze_spread(market_data["bid"], market_data["ask"], market_data.get("price"),
                              threshold=threshold)
    if market_data.get("spread") is not None and market_data.get("price") is not None:
        spread = to_decimal(market_data["spread"], "spread")
        price = to_decimal(market_data["price"], "price")
        if spread < ZERO or price <= ZERO:
            raise InvalidInput("spread", f"spread must be >= 0 and price > 0, got {spread} / {price}")
        return CostAnalysis(spread=spread, spread_pct=spread / price, threshold=threshold)
    if market_data.get("spread_pct") is not None:
        share = to_decimal(market_data["spread_pct"], "spread_pct")
        if share < ZERO:
            raise InvalidInput("spread_pct", f"must be >= 0, got {share}")
        return CostAnalysis(spread=None, spread_pct=share, threshold=threshold)
    return CostAnalysis(spread=None, spread_pct=None, threshold=threshold)
