"""Exact Decimal arithmetic for the tax core.

Sums and products of amounts are done in ``EXACT`` (60 significant digits, ``Inexact`` trapped):
either the result is exact or ``decimal.Inexact`` is raised; nothing is rounded silently.

The only rounding is in ``prorate`` (splitting a lot's basis, a fill's fees or a wash-sale loss
by quantity). A quotient that is exact is kept as is; one that does not terminate is rounded
half-even to ``ALLOC_QUANTUM`` (1e-8). Callers always give the last share the remainder
(``allocate``), so basis, proceeds and disallowed losses are never created or lost by a split:
the parts sum to the whole exactly.
"""
from __future__ import annotations

from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
)
from typing import Any, Sequence

from backend.domain.errors import InvalidInput
from backend.domain.money import ZERO, to_decimal

PRECISION = 60
ALLOC_QUANTUM = Decimal("0.00000001")

EXACT = Context(prec=PRECISION, rounding=ROUND_HALF_EVEN,
                traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])


def strict_decimal(value: Any, field: str) -> Decimal:
    """A finite Decimal from a Decimal, int or numeric string. Floats are refused outright."""
    if isinstance(value, float):
        raise InvalidInput(field, f"floats are refused in the tax core; pass a Decimal or a string, got {value!r}")
    return to_decimal(value, field)


def add(a: Decimal, b: Decimal) -> Decimal:
    return EXACT.add(a, b)


def sub(a: Decimal, b: Decimal) -> Decimal:
    return EXACT.subtract(a, b)


def mul(a: Decimal, b: Decimal) -> Decimal:
    return EXACT.multiply(a, b)


def total(values: Sequence[Decimal] | Any) -> Decimal:
    acc = ZERO
    for value in values:
        acc = EXACT.add(acc, value)
    return acc


def prorate(amount: Decimal, part: Decimal, whole: Decimal) -> Decimal:
    """``amount × part / whole``: exact when the quotient terminates, else rounded to 1e-8."""
    if part == whole:
        return amount
    if whole == 0:
        raise ZeroDivisionError("prorate over a zero quantity")
    ctx = Context(prec=PRECISION, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])
    quotient = ctx.divide(ctx.multiply(amount, part), whole)
    if ctx.flags[Inexact]:
        quotient = quotient.quantize(ALLOC_QUANTUM, context=ctx)
    return quotient


def allocate(amount: Decimal, parts: Sequence[Decimal], whole: Decimal) -> list[Decimal]:
    """Split ``amount`` over ``parts`` (which sum to ``whole``); the last part takes the remainder."""
    shares: list[Decimal] = []
    running = ZERO
    for index, part in enumerate(parts):
        if index == len(parts) - 1:
            share = EXACT.subtract(amount, running)
        else:
            share = prorate(amount, part, whole)
        running = EXACT.add(running, share)
        shares.append(share)
    return shares


def ratio(amount: Decimal, qty: Decimal) -> Decimal:
    """A per-unit figure for display and ordering (28 significant digits, rounded)."""
    ctx = Context(prec=28, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])
    return ctx.divide(amount, qty)
