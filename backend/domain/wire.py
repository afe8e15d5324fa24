"""The one representation of a decimal in an API response or an intent document's ``result``.

Every decimal leaves the system as a JSON string, never a JSON number: an exact, plain decimal
(no exponent, no ``+``, no whitespace, no leading zeros, never ``-0``), i.e. it matches
``RESPONSE_DECIMAL_PATTERN``. It keeps the scale it was quantized to (a quantity on a 0.0001 lot
reads ``"10.0000"``, a price on a 0.01 tick ``"99.80"``). Each field has a *kind* that bounds its
precision; a value finer than its kind's scale is rounded half-even to that scale:

==========  ====================  =============================================================
kind        at most               fields
==========  ====================  =============================================================
quantity    18 decimal places     units, filled_units, qty, filled_qty, quantity (already on the
                                  instrument's lot: exact)
price       10 decimal places     fill_price, filled_avg_price, limit_price, intended_price,
                                  arrival_mid, price, bid, ask, mid (on the tick; an average fill
                                  price may be finer than the tick)
ratio       10 decimal places     spread_pct, estimated_slippage, actual_slippage_pct, threshold,
                                  confidence, downgrade_rate, rejection_rate, avg_*_slippage
                                  (shares: 0.0005 = 0.05% = 5 bp)
ticks       4 decimal places      slippage_pips, avg_slippage_pips, actual_slippage_ticks,
                                  avg_legging_cost_ticks (1/10000 tick)
money       6 decimal places      notional, fees, cost_savings, implementation_shortfall (quote
                                  currency; micro-units)
==========  ====================  =============================================================

``encode`` applies the table to a whole JSON-shaped value by field name (the API calls it once on
every response body); ``decimal_out`` formats one value. Tax exports keep their own Form 8949
precision (cents, ``backend.api.tax_export``) and are not re-encoded here.
"""
from __future__ import annotations

import math
from collections.abc import Mapping  # isinstance on typing.Mapping takes typing's slow path (issue 17)
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

RESPONSE_DECIMAL_PATTERN = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$"

SCALES: dict[str, int] = {"quantity": 18, "price": 10, "ratio": 10, "ticks": 4, "money": 6}

DESCRIPTIONS: dict[str, str] = {
    "quantity": "A quantity in instrument units as an exact decimal string on the instrument's lot size (e.g. "
                "\"100000\", \"10.0000\"), at most 18 decimal places, no exponent.",
    "price": "A price in the quote currency as an exact decimal string on the instrument's tick (e.g. \"99.80\"); "
             "an average fill price may be finer than the tick and is rounded half-even to at most 10 decimal "
             "places. No exponent.",
    "ratio": "A share as a decimal string (0.0005 = 0.05% = 5 basis points), rounded half-even to at most 10 "
             "decimal places, no exponent.",
    "ticks": "A number of ticks (pips for FX) of the instrument as a decimal string, positive = adverse, rounded "
             "half-even to at most 4 decimal places (1/10000 tick), no exponent.",
    "money": "An amount in the quote currency (USD for the instruments the ledger books) as a decimal string, "
             "rounded half-even to at most 6 decimal places (micro-units), no exponent.",
}

FIELD_KINDS: dict[str, str] = {
    # quantities
    "units": "quantity", "filled_units": "quantity", "qty": "quantity", "filled_qty": "quantity",
    "quantity": "quantity", "ordered_quantity": "quantity", "max_units": "quantity",
    # prices
    "fill_price": "price", "filled_avg_price": "price", "limit_price": "price", "intended_price": "price",
    "arrival_mid": "price", "price": "price", "bid": "price", "ask": "price", "mid": "price",
    # shares
    "spread_pct": "ratio", "estimated_slippage": "ratio", "actual_slippage_pct": "ratio", "threshold": "ratio",
    "confidence": "ratio", "downgrade_rate": "ratio", "rejection_rate": "ratio",
    "avg_estimated_slippage": "ratio", "avg_actual_slippage": "ratio", "avg_estimated_slippage_of_filled": "ratio",
    # ticks
    "slippage_pips": "ticks", "avg_slippage_pips": "ticks", "actual_slippage_ticks": "ticks",
    "avg_legging_cost_ticks": "ticks", "max_group_slippage_pips": "ticks",
    # money
    "notional": "money", "fees": "money", "cost_savings": "money", "implementation_shortfall": "money",
}


def _to_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            dec = Decimal(value.strip())
        except (InvalidOperation, ValueError):
            return None
        return dec if dec.is_finite() else None
    return None


def decimal_out(value: Any, kind: str | None = None) -> str | None:
    """One value (Decimal, decimal string, int or float) → the canonical string of ``kind``
    (``None``: exact, only normalized). ``None`` stays ``None``. A non-numeric value raises."""
    if value is None:
        return None
    dec = _to_decimal(value)
    if dec is None:
        raise ValueError(f"not a finite decimal: {value!r}")
    if kind is not None and dec.as_tuple().exponent < -SCALES[kind]:  # type: ignore[operator]
        dec = dec.quantize(Decimal(1).scaleb(-SCALES[kind]), rounding=ROUND_HALF_EVEN)
    if dec.is_zero():
        dec = dec.copy_abs()  # never "-0"
    return format(dec, "f")


def encode(value: Any, kind: str | None = None) -> Any:
    """A JSON-shaped value with every decimal in its canonical form: a Decimal anywhere, and a number
    or decimal string under a field named in ``FIELD_KINDS`` (also inside lists and the objects it
    holds, e.g. ``quote.bid``). Other values are returned as they are."""
    if isinstance(value, Mapping):
        return {k: encode(v, FIELD_KINDS.get(k) if isinstance(k, str) else None) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v, kind) for v in value]
    if isinstance(value, Decimal):
        return decimal_out(value, kind) if value.is_finite() else None
    if kind is not None and not isinstance(value, bool) and isinstance(value, (int, float, str)):
        if _to_decimal(value) is None:
            return value  # not a number (a stored oddity): shown as it is, never invented
        return decimal_out(value, kind)
    return value
