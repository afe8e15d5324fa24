"""MarketDataProvider and SmartRouter: fetch a quote, check its cost, decide execute or WAIT."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from backend.domain.assets import AssetClass, detect_asset_class
from backend.domain.clock import Clock, SystemClock
from backend.domain.cost import DEFAULT_MAX_SPREAD_PCT, CostAnalysis, analyze_spread
from backend.domain.errors import InvalidInput, RejectCode, Rejection
from backend.domain.money import dec_str, to_decimal
from backend.domain.orders import BrokerError, Quote
from backend.execution.intent import OrderIntent
from backend.ports.broker import BrokerPort


class MarketDataProvider:
    """Latest quotes from a broker's market data (the paper broker when none is given)."""

    def __init__(self, source: BrokerPort | None = None):
        self._source = source

    @property
    def source(self) -> BrokerPort:
        if self._source is None:
            from backend import bootstrap  # the embedded paper venue, from the composition root

            self._source = bootstrap.paper_broker()
        return self._source

    def quote(self, symbol: str, asset_class: AssetClass | str | None = None) -> Quote:
        klass = AssetClass.parse(asset_class) if asset_class is not None else detect_asset_class(symbol)
        return self.source.get_latest_quote(symbol, klass)

    def get_quote(self, symbol: str, asset_class: AssetClass | str | None = None) -> dict[str, Any]:
        """Seed 001 shape: bid, ask, spread, spread_pct, mid_price (+ timestamp), as Decimals."""
        q = self.quote(symbol, asset_class)
        return {"symbol": q.symbol, "bid": q.bid, "ask": q.ask, "spread": q.spread,
                "spread_pct": q.spread_pct, "mid_price": q.mid, "timestamp": q.timestamp}


@dataclass(frozen=True)
class RoutingDecision:
    should_execute: bool
    reason: str
    spread_pct: Decimal | None
    estimated_slippage: Decimal | None
    quote: Quote | None = None
    rejection: Rejection | None = None  # set when the quote itself is unusable (not a cost downgrade)

    @property
    def downgraded(self) -> bool:
        return not self.should_execute and self.rejection is None

    def to_dict(self) -> dict[str, Any]:
        q = self.quote
        return {
            "should_execute": self.should_execute,
            "downgraded": self.downgraded,
            "reason": self.reason,
            "spread_pct": dec_str(self.spread_pct),
            "estimated_slippage": dec_str(self.estimated_slippage),
            "quote": None if q is None else {
                "bid": dec_str(q.bid), "ask": dec_str(q.ask), "mid": dec_str(q.mid),
                "timestamp": q.timestamp.isoformat()},
            "rejection": None if self.rejection is None else self.rejection.to_dict(),
        }


def order_type_rule(intent: OrderIntent, decision: RoutingDecision) -> RoutingDecision:
    """Issue 15 item 5: the spread downgrade applies to orders that cross the spread now.

    A market order, and a limit order marketable against the quote (a buy at or above the ask, a
    sell at or below the bid), pays the spread at once: the cost rule decides as before. A limit
    inside the spread or behind the touch rests and can never fill worse than its limit, so it is
    never "slipped": a wide spread does not downgrade it (the reason says so). Stop, stop-limit and
    trailing-stop orders (and an OCO exit, a resting take-profit limit with its stop) are conditional
    orders that do nothing now: a protective order must never be withheld because today's spread
    is wide, so they pass too. An unusable quote (a coded rejection) stays a rejection for all."""
    from backend.domain.orders import OrderClass, OrderSide, OrderType

    if not decision.downgraded or decision.quote is None:
        return decision
    quote = decision.quote
    kind = intent.order_type
    if kind in (OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TRAILING_STOP) or intent.order_class is OrderClass.OCO:
        why = "an oco exit" if intent.order_class is OrderClass.OCO else f"a {kind.value} order"
        return RoutingDecision(True, f"{why} rests until triggered; the spread rule does not hold it ({decision.reason})",
                               decision.spread_pct, decision.estimated_slippage, quote)
    if kind is OrderType.LIMIT and intent.limit_price is not None:
        limit = intent.limit_price
        marketable = limit >= quote.ask if intent.side is OrderSide.BUY else limit <= quote.bid
        if not marketable:
            return RoutingDecision(True, f"limit {limit} rests inside or behind the spread (bid {quote.bid}, ask "
                                         f"{quote.ask}): never slipped ({decision.reason})",
                                   decision.spread_pct, decision.estimated_slippage, quote)
    return decision


class SmartRouter:
    """Downgrades an intent to WAIT when spread/price exceeds ``max_spread_pct`` (equal passes);
    orders that do not cross the spread now are exempt (``order_type_rule``)."""

    def __init__(self, max_spread_pct: Any = DEFAULT_MAX_SPREAD_PCT, market_data: MarketDataProvider | None = None,
                 *, max_quote_age_seconds: Any = 5, clock: Clock | None = None):
        self.max_spread_pct = to_decimal(max_spread_pct, "max_spread_pct")
        if not (0 <= self.max_spread_pct < 1):
            raise InvalidInput("max_spread_pct", "is a fraction (0.001 = 0.1%)")
        self.market_data = market_data
        self.max_quote_age_seconds = to_decimal(max_quote_age_seconds, "max_quote_age_seconds")
        self.clock = clock or SystemClock()

    def bind(self, market_data: MarketDataProvider, clock: Clock) -> None:
        """Called by the engine so a router built as ``SmartRouter(0.001)`` uses the engine's broker."""
        if self.market_data is None:
            self.market_data = market_data
        self.clock = clock

    def analyze_intent(self, intent: OrderIntent, market_data: MarketDataProvider | None = None) -> RoutingDecision:
        """``market_data``: the quotes of the intent's own venue when it is not the bound provider's
        (an account on a Broker API or OANDA connection)."""
        provider = market_data or self.market_data or MarketDataProvider()
        try:
            quote = provider.quote(intent.symbol, intent.asset_class)
        except BrokerError as exc:
            rejection = Rejection(RejectCode.MARKET_DATA_UNAVAILABLE, exc.message or exc.code.value)
            return RoutingDecision(False, str(rejection), None, intent.estimated_slippage, None, rejection)
        return order_type_rule(intent, self.analyze_quote(quote, now=self.clock.now()))

    def analyze_quote(self, quote: Quote, now: datetime) -> RoutingDecision:
        problem = quote.problem()
        if problem is not None:
            return RoutingDecision(False, str(problem), None, None, quote, problem)
        age = Decimal(str(quote.age_seconds(now)))
        if age >= self.max_quote_age_seconds:
            stale = Rejection(RejectCode.STALE_TICK, f"quote age {age}s >= {self.max_quote_age_seconds}s")
            return RoutingDecision(False, str(stale), None, None, quote, stale)
        cost: CostAnalysis = analyze_spread(quote.bid, quote.ask, threshold=self.max_spread_pct)
        return RoutingDecision(not cost.downgrade, cost.reason, cost.spread_pct, cost.estimated_slippage, quote)
