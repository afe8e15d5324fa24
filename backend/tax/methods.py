"""Lot-selection methods: each is only an ordering key over the open lots (rotki / beancount style).

- FIFO: earliest purchase first (``seq`` is the processing order of the opening fill, which is
  time order; pieces split off one lot keep its place).
- LIFO: latest purchase first.
- HIFO: the lot that realizes the smallest gain first — for LONG lots the highest cost per unit,
  for SHORT lots the lowest proceeds per unit; ties fall back to FIFO. Per-unit figures are
  compared as exact fractions.
- SPECIFIC: no ordering; the closing fill names lots and quantities (``Fill.lot_ids``). A fill
  that names lots is matched specifically under any method.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Any, Callable, Mapping

from backend.tax.model import Lot, LotMethod, Position


def _fifo(lot: Lot) -> Any:
    return lot.seq


def _lifo(lot: Lot) -> Any:
    return (-lot.seq[0], lot.seq[1:])


def _hifo(lot: Lot) -> Any:
    unit = Fraction(lot.basis) / Fraction(lot.qty)
    return (-unit if lot.position is Position.LONG else unit, lot.seq)


ORDERING: Mapping[LotMethod, Callable[[Lot], Any]] = {
    LotMethod.FIFO: _fifo,
    LotMethod.LIFO: _lifo,
    LotMethod.HIFO: _hifo,
}


def ordered(lots: list[Lot], method: LotMethod) -> list[Lot]:
    try:
        key = ORDERING[method]
    except KeyError:
        raise ValueError(f"{method} has no ordering; it names lots explicitly") from None
    return sorted(lots, key=key)
