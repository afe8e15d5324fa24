"""Instruments as a venue lists them: whether a symbol exists there, whether it can be traded now,
and the venue's own price tick and quantity step for it (issue 19 item 2).

``backend/config/asset_specs.json`` holds one tick and lot per asset class plus a few overrides; a
venue knows better per symbol (Alpaca's crypto pairs carry ``price_increment`` and
``min_trade_increment``, OANDA's instruments ``displayPrecision`` and ``tradeUnitsPrecision``, a
non-fractionable stock trades whole shares). ``InstrumentInfo`` is that knowledge as one venue-
neutral value; ``None`` in a sizing field means "the venue does not say" and the spec table applies.

A venue offers it through the optional capability ``InstrumentProvider.instrument(symbol,
asset_class)``: the venue's ``InstrumentInfo``, or ``None`` when the venue does not list the
symbol at all. Transient failures are ``BrokerError``s like any other venue call.
``backend/execution/instruments.py`` turns the answer into a coded rejection (``UNKNOWN_SYMBOL``,
``NOT_TRADABLE``, a quantity off the lot step or under the minimum, a limit price off the tick).
Pure: no I/O here.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, FrozenSet, Protocol, runtime_checkable

from backend.domain.assets import AssetClass
from backend.domain.money import ZERO

if TYPE_CHECKING:
    from backend.domain.assets import AssetSpec


@dataclass(frozen=True)
class InstrumentInfo:
    """One venue's metadata for one symbol, in Decimals.

    ``tick_size``: the price increment a limit price must be a multiple of; ``lot_step``: the
    quantity increment; ``min_qty``: the smallest order. Each is ``None`` when the venue does not
    publish it (the spec table then applies). ``fractionable`` is the venue's word on fractional
    quantities (``None``: not said); a venue that refuses fractions sets ``lot_step`` to 1 as well.
    ``source`` names where the values came from (``alpaca:/v2/assets``, ``oanda:instruments``,
    ``paper:scenario``) for logs and rejection details."""

    symbol: str
    asset_class: AssetClass
    tradable: bool
    tick_size: Decimal | None
    lot_step: Decimal | None
    min_qty: Decimal | None
    fractionable: bool | None
    source: str
    status: str = ""  # the venue's own status word (active, inactive, halted), for details

    def __post_init__(self) -> None:
        for name in ("tick_size", "lot_step"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, Decimal) or not value.is_finite() or value <= ZERO):
                raise ValueError(f"{name} must be a positive Decimal or None, got {value!r}")
        if self.min_qty is not None and (not isinstance(self.min_qty, Decimal) or not self.min_qty.is_finite()
                                         or self.min_qty < ZERO):
            raise ValueError(f"min_qty must be a non-negative Decimal or None, got {self.min_qty!r}")
        if not self.source:
            raise ValueError("source must name where the metadata came from")

    def qty_problem(self, qty: Decimal) -> str | None:
        """Why the venue cannot take ``qty`` (positive) of this instrument, or None. Never rounds."""
        if self.lot_step is not None and qty % self.lot_step != ZERO:
            return f"qty {qty} is not a multiple of the venue's lot step {self.lot_step} for {self.symbol}"
        if self.min_qty is not None and qty < self.min_qty:
            return f"qty {qty} is below the venue's minimum {self.min_qty} for {self.symbol}"
        return None

    def price_problem(self, price: Decimal) -> str | None:
        """Why ``price`` is not on the venue's tick for this instrument, or None. Never rounds."""
        if self.tick_size is not None and price % self.tick_size != ZERO:
            return f"limit_price {price} is not a multiple of the venue's tick {self.tick_size} for {self.symbol}"
        return None

    def spec_differences(self, spec: "AssetSpec") -> list[str]:
        """Where the venue's values differ from the spec table's (the venue's values govern)."""
        out = []
        if self.tick_size is not None and self.tick_size != spec.tick_size:
            out.append(f"tick: venue {self.tick_size} vs asset_specs {spec.tick_size}")
        if self.lot_step is not None and self.lot_step != spec.lot_size:
            out.append(f"lot step: venue {self.lot_step} vs asset_specs {spec.lot_size}")
        return out


@runtime_checkable
class InstrumentProvider(Protocol):
    """The optional broker-port capability: a venue's metadata for the symbols it lists.

    ``instrument_classes`` are the asset classes it has metadata for (a class outside it is
    checked by the spec table alone); ``instrument`` answers ``None`` for a symbol the venue does
    not list and raises ``BrokerError`` when the metadata cannot be read now."""

    instrument_classes: FrozenSet[AssetClass]

    def instrument(self, symbol: str, asset_class: AssetClass) -> InstrumentInfo | None: ...


__all__ = ["InstrumentInfo", "InstrumentProvider"]
