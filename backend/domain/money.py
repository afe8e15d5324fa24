"""Decimal conversion at the edges.

Every price, quantity and amount inside the domain is a ``Decimal``. Values arrive from JSON,
env vars, Firestore or the broker SDK as str/int/float; this module is the one place that turns
them into Decimals, and it refuses what must never become money: NaN, infinities, booleans and
non-numeric strings. Text must be ASCII decimal notation: ``Decimal()`` itself also reads
``"1_000"`` as 1000 and Arabic-Indic ``"١٠"`` as 10, which an order must never do.

Floats are accepted only at the edges and converted through their shortest ``repr`` (so
``0.1`` becomes ``Decimal("0.1")``, not ``0.1000000000000000055511151231257827``). A float with
binary noise such as ``0.1 + 0.2`` keeps its noise (``0.30000000000000004``) and is then refused
by the quantity/price quantizers because it is not a multiple of the lot size or tick.
"""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from backend.domain.errors import InvalidInput

ZERO = Decimal("0")
# The only text accepted as an amount: ASCII digits, one optional sign, point and exponent. No
# underscores, no other Unicode digits, no inner spaces (surrounding whitespace is stripped first).
_ASCII_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)
_NON_FINITE = re.compile(r"[+-]?(s?nan[0-9]*|inf|infinity)", re.ASCII | re.IGNORECASE)
ONE = Decimal("1")


def to_decimal(value: Any, field: str) -> Decimal:
    """Convert an edge value into a finite Decimal or raise ``InvalidInput`` naming the field."""
    if isinstance(value, bool) or value is None:
        raise InvalidInput(field, f"expected a number, got {value!r}")
    if isinstance(value, Decimal):
        dec = value
    elif isinstance(value, int):
        dec = Decimal(value)
    elif isinstance(value, float):
        dec = Decimal(repr(value))
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise InvalidInput(field, "expected a number, got an empty string")
        if _NON_FINITE.fullmatch(text):
            raise InvalidInput(field, f"must be finite, got {value!r}")
        if not _ASCII_DECIMAL.fullmatch(text):  # Decimal() alone takes "1_000" and "١٠" (Arabic-Indic ten)
            raise InvalidInput(field, f"expected a number in ASCII decimal notation (e.g. 10, 0.5, 1e3), "
                                      f"got {value[:40]!r}")
        try:
            dec = Decimal(text)
        except InvalidOperation:
            raise InvalidInput(field, f"expected a number, got {value!r}") from None
    else:
        raise InvalidInput(field, f"expected a number, got {type(value).__name__}")
    if not dec.is_finite():
        raise InvalidInput(field, f"must be finite, got {value!r}")
    return dec


def quantize_exact(value: Decimal, step: Decimal, field: str) -> Decimal:
    """Return ``value`` expressed in multiples of ``step``; refuse values that are not multiples.

    Orders are never silently rounded: a quantity of 0.30000000000000004 with a lot of 0.0001 is
    a client bug, and guessing what they meant is how doubled or missing size happens.
    """
    if step <= 0:
        raise ValueError("step must be positive")
    units = value / step
    if units != units.to_integral_value():
        raise InvalidInput(field, f"{value} is not a multiple of {step}")
    return (units.to_integral_value() * step).quantize(step)


def round_to_step(value: Decimal, step: Decimal, *, down: bool = False) -> Decimal:
    """Round a computed value (a fill price, a rollback size) to the step. Half-even unless ``down``."""
    from decimal import ROUND_DOWN, ROUND_HALF_EVEN

    units = (value / step).to_integral_value(rounding=ROUND_DOWN if down else ROUND_HALF_EVEN)
    return (units * step).quantize(step)


def dec_str(value: Decimal | None) -> str | None:
    """Canonical string form for storage: exact, no exponent, no float."""
    if value is None:
        return None
    text = format(value, "f")
    return text


def parse_stored(value: Any, field: str = "value") -> Decimal | None:
    """Read back a Decimal stored by ``dec_str`` (or None)."""
    if value is None:
        return None
    return to_decimal(value, field)
