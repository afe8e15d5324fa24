"""OANDA instruments: symbol mapping and the venue's sizing metadata, cross-checked against our specs.

OANDA names instruments ``BASE_QUOTE`` (``EUR_USD``, ``XAU_USD``, ``USD_JPY``). Ours are
``EUR/USD`` (``EURUSD`` accepted). Each instrument carries its own sizing rules, which win over
``backend/config/asset_specs.json`` for what is sent to OANDA:

- ``pipLocation`` −4 → a pip is 0.0001 (the seed's FX "tick": slippage in pips is measured in it);
- ``displayPrecision`` 5 → prices are quoted to 0.00001 (fractional pips);
- ``tradeUnitsPrecision`` 0 → units are whole numbers; ``minimumTradeSize`` the smallest order;
- ``marginRate`` 0.0333 → 3.33 % margin (``margin_pct`` 3.33 in our terms).

``cross_check`` compares the venue's pip / unit step / margin with the spec registry and returns
the differences (logged by the broker once per instrument and process); it never changes the
registry. Pure: no I/O here.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from backend.domain.assets import METALS, AssetClass, AssetSpec, normalize_symbol
from backend.domain.errors import InvalidInput
from backend.domain.money import ZERO

TEN = Decimal(10)


def to_instrument(symbol: str) -> str:
    """``EUR/USD``, ``eurusd``, ``EUR_USD``, ``XAU/USD`` → ``EUR_USD`` / ``XAU_USD``."""
    text = normalize_symbol(symbol.replace("_", "/") if isinstance(symbol, str) else symbol)
    if "/" in text:
        base, _, quote = text.partition("/")
    elif len(text) == 6 and text.isalpha():
        base, quote = text[:3], text[3:]
    else:
        raise InvalidInput("symbol", f"{symbol!r} is not a currency or metal pair OANDA trades (e.g. EUR/USD)")
    if not (len(base) == 3 and len(quote) == 3 and base.isalpha() and quote.isalpha()):
        raise InvalidInput("symbol", f"{symbol!r} is not a currency or metal pair OANDA trades (e.g. EUR/USD)")
    return f"{base}_{quote}"


def from_instrument(instrument: str) -> str:
    """``EUR_USD`` → ``EUR/USD`` (our canonical pair form)."""
    base, sep, quote = instrument.strip().upper().partition("_")
    if not sep or not base or not quote:
        raise InvalidInput("instrument", f"{instrument!r} is not an OANDA instrument name")
    return f"{base}/{quote}"


def instrument_asset_class(instrument: str) -> AssetClass:
    return AssetClass.COMMODITY if instrument.partition("_")[0] in METALS else AssetClass.FOREX


@dataclass(frozen=True)
class InstrumentInfo:
    """The venue's metadata for one instrument, in Decimals."""

    name: str
    type: str
    pip_location: int
    display_precision: int
    trade_units_precision: int
    minimum_trade_size: Decimal
    margin_rate: Decimal
    maximum_order_units: Decimal | None = None

    @property
    def pip(self) -> Decimal:
        return TEN ** self.pip_location

    @property
    def price_increment(self) -> Decimal:
        return TEN ** -self.display_precision

    @property
    def units_step(self) -> Decimal:
        return TEN ** -self.trade_units_precision

    @property
    def margin_pct(self) -> Decimal:
        return self.margin_rate * 100

    def units_problem(self, units: Decimal) -> str | None:
        """Why ``units`` (positive) cannot be sent as an order size for this instrument, or None."""
        if units <= ZERO:
            return f"units must be positive, got {units}"
        if units % self.units_step != ZERO:
            return (f"units {units} are not a multiple of {self.units_step} "
                    f"(tradeUnitsPrecision {self.trade_units_precision} for {self.name})")
        if units < self.minimum_trade_size:
            return f"units {units} are below the minimum trade size {self.minimum_trade_size} for {self.name}"
        if self.maximum_order_units is not None and units > self.maximum_order_units:
            return f"units {units} exceed the maximum order units {self.maximum_order_units} for {self.name}"
        return None

    def format_units(self, signed_units: Decimal) -> str:
        """Units as OANDA wants them: a decimal string at the instrument's precision, signed."""
        quantized = signed_units.quantize(self.units_step)
        return format(quantized, "f")

    def format_price(self, price: Decimal) -> str:
        return format(price.quantize(self.price_increment), "f")


def cross_check(info: InstrumentInfo, spec: AssetSpec) -> list[str]:
    """Differences between the venue's metadata and our spec (empty when they agree)."""
    problems = []
    if spec.tick_size != info.pip:
        problems.append(f"pip: venue {info.pip} (pipLocation {info.pip_location}) vs asset_specs tick_size "
                        f"{spec.tick_size}")
    if spec.lot_size != info.units_step:
        problems.append(f"units step: venue {info.units_step} (tradeUnitsPrecision {info.trade_units_precision}) "
                        f"vs asset_specs lot_size {spec.lot_size}")
    if spec.margin_pct != info.margin_pct:
        problems.append(f"margin: venue {info.margin_pct}% (marginRate {info.margin_rate}) vs asset_specs "
                        f"margin_pct {spec.margin_pct}%")
    return problems


__all__ = ["InstrumentInfo", "to_instrument", "from_instrument", "instrument_asset_class", "cross_check"]
