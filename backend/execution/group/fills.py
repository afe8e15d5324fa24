"""Fill classification and slippage (seed 000 thresholds, exact Decimal comparisons)."""
from __future__ import annotations

from decimal import Decimal, localcontext

from backend.domain.money import ZERO
from backend.execution.group.states import LegStatus
from backend.domain.orders import Quote

FILLED_RATIO = Decimal("0.99")  # >= : FILLED
PARTIAL_RATIO = Decimal("0.90")  # >= : PARTIALLY_FILLED, below: REJECTED
SEED_ROLLBACK_FILLED_RATIO = Decimal("0.10")  # seed trigger: some leg strictly above this
AVG_SLIPPAGE_QUANTUM = Decimal("0.0001")  # averages are rounded (half-even) to 1/10000 tick


def fill_ratio(filled: Decimal, units: Decimal) -> Decimal:
    """``filled / units`` as a Decimal (informational; classification uses exact comparisons)."""
    if units <= ZERO:
        raise ValueError("units must be positive")
    with localcontext() as ctx:
        ctx.prec = 40
        return filled / units


def ratio_at_least(filled: Decimal, units: Decimal, ratio: Decimal) -> bool:
    # filled / units >= ratio  <=>  filled >= ratio * units  (units > 0), exact with a wide context
    with localcontext() as ctx:
        ctx.prec = 80
        return filled >= ratio * units


def ratio_above(filled: Decimal, units: Decimal, ratio: Decimal) -> bool:
    with localcontext() as ctx:
        ctx.prec = 80
        return filled > ratio * units


def classify_fill(filled: Decimal, units: Decimal) -> LegStatus:
    """The final status a leg earns with ``filled`` of ``units`` (seed thresholds, exact)."""
    if units <= ZERO:
        raise ValueError("units must be positive")
    if ratio_at_least(filled, units, FILLED_RATIO):
        return LegStatus.FILLED
    if ratio_at_least(filled, units, PARTIAL_RATIO):
        return LegStatus.PARTIALLY_FILLED
    return LegStatus.REJECTED


def touch_price(direction: int, quote: Quote) -> Decimal:
    """The price a market order expects: the ask for a buy, the bid for a sell."""
    return quote.ask if direction > 0 else quote.bid

