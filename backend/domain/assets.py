"""Asset classes, symbol detection and asset specs (tick, lot, margin) with Decimal quantizers."""
from __future__ import annotations

import fnmatch
import json
import os
import re
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from backend.domain.errors import InvalidInput
from backend.domain.money import ZERO, quantize_exact, round_to_step, to_decimal


class AssetClass(str, Enum):
    EQUITY = "EQUITY"
    FOREX = "FOREX"
    CRYPTO = "CRYPTO"
    OPTIONS = "OPTIONS"
    COMMODITY = "COMMODITY"

    @classmethod
    def parse(cls, value: Any, field_name: str = "asset_class") -> "AssetClass":
        """Accept the enum, its name in any case, and the seed-000 alias ``FX``."""
        if isinstance(value, cls):
            return value
        if isinstance(value, Enum):
            value = value.value
        if not isinstance(value, str):
            raise InvalidInput(field_name, f"expected one of {[c.value for c in cls]}, got {value!r}")
        key = value.strip().upper()
        key = _ASSET_ALIASES.get(key, key)
        try:
            return cls(key)
        except ValueError:
            raise InvalidInput(
                field_name, f"unknown asset class {value!r}; expected one of {[c.value for c in cls]} or FX"
            ) from None


_ASSET_ALIASES = {"FX": "FOREX", "OPTION": "OPTIONS", "STOCK": "EQUITY", "US_EQUITY": "EQUITY",
                  "US_OPTION": "OPTIONS", "COMMODITIES": "COMMODITY"}

FIAT = frozenset({"USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "NZD", "SEK", "NOK", "DKK", "HKD",
                  "SGD", "MXN", "ZAR", "CNH", "TRY", "PLN", "CZK", "HUF"})
CRYPTO_QUOTES = frozenset({"USD", "USDT", "USDC", "BTC", "EUR"})
KNOWN_CRYPTO = frozenset({"BTC", "ETH", "SOL", "LTC", "DOGE", "AVAX", "LINK", "UNI", "AAVE", "BCH", "DOT",
                          "SHIB", "XRP", "XTZ", "YFI", "SUSHI", "MKR", "GRT", "CRV", "BAT", "PEPE", "TRUMP",
                          "USDT", "USDC"})
METALS = frozenset({"XAU", "XAG", "XPT", "XPD"})

_SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9./=\-]{0,31}$")
# OCC: root (1-6), YYMMDD, C/P, strike * 1000 in 8 digits. Roots may be space padded to 6.
_OCC_RE = re.compile(r"^([A-Z]{1,6})\s*(\d{6})([CP])(\d{8})$")


def normalize_symbol(symbol: Any, field_name: str = "symbol") -> str:
    if not isinstance(symbol, str):
        raise InvalidInput(field_name, f"expected a string, got {type(symbol).__name__}")
    cached = _NORMALIZED.get(symbol)
    if cached is not None:
        return cached
    normalized = _normalize(symbol, field_name)
    if len(_NORMALIZED) < 50_000:
        _NORMALIZED[symbol] = normalized
    return normalized


_NORMALIZED: dict[str, str] = {}  # only valid symbols are cached; invalid ones raise every time


def _normalize(symbol: str, field_name: str) -> str:
    text = symbol.strip().upper()
    occ = _OCC_RE.match(text)
    if occ:
        return "".join(occ.groups())
    if not _SYMBOL_RE.match(text):
        raise InvalidInput(field_name, f"invalid symbol {symbol!r}")
    return text


def is_occ_option(symbol: str) -> bool:
    return bool(_OCC_RE.match(symbol.strip().upper()))


def occ_underlying(symbol: str) -> str | None:
    match = _OCC_RE.match(symbol.strip().upper())
    return match.group(1) if match else None


def detect_asset_class(symbol: str) -> AssetClass:
    """Symbol format → asset class: EUR/USD FOREX, BTC/USD CRYPTO, OCC OPTIONS, XAU/USD and
    ``GC=F`` COMMODITY, plain tickers EQUITY."""
    return _detect(normalize_symbol(symbol))


@lru_cache(maxsize=50_000)  # a pure function of the normalized text; bounded (symbols are user input)
def _detect(text: str) -> AssetClass:
    if _OCC_RE.match(text):
        return AssetClass.OPTIONS
    if text.endswith("=F"):
        return AssetClass.COMMODITY
    base, quote = _split_pair(text)
    if base is not None:
        if base in METALS:
            return AssetClass.COMMODITY
        if base in FIAT and quote in FIAT:
            return AssetClass.FOREX
        if "/" in text or base in KNOWN_CRYPTO:
            return AssetClass.CRYPTO
    return AssetClass.EQUITY


def resolve_asset_class(symbol: str, given: Any = None, field_name: str = "asset_class") -> AssetClass:
    """The class an order trades under: the symbol's own class when none is given, else the given
    one checked against the symbol.

    Only a symbol whose form decides its class can contradict a given one: an OCC option symbol
    (OPTIONS), a futures ticker ``GC=F`` (COMMODITY), a currency, crypto or metal pair (FOREX,
    CRYPTO, COMMODITY). A plain ticker detects as EQUITY but may be given as CRYPTO or COMMODITY
    (an ETF such as GLD); it cannot be OPTIONS, which venues only take as OCC symbols."""
    detected = detect_asset_class(symbol)
    if given is None:
        return detected
    klass = AssetClass.parse(given, field_name)
    decisive = detected is not AssetClass.EQUITY or klass is AssetClass.OPTIONS
    if klass is not detected and decisive:
        raise InvalidInput(field_name, f"{klass.value} contradicts the symbol {normalize_symbol(symbol)}, which is "
                                       f"{detected.value}; send {detected.value} or leave asset_class out")
    return klass


_QUOTES_LONGEST_FIRST = tuple(sorted(CRYPTO_QUOTES | FIAT, key=len, reverse=True))


def _split_pair(text: str) -> tuple[str | None, str | None]:
    if "/" in text:
        base, _, quote = text.partition("/")
        return (base, quote) if base and quote else (None, None)
    for quote in _QUOTES_LONGEST_FIRST:
        if text.endswith(quote) and len(text) > len(quote):
            base = text[: -len(quote)]
            if base in FIAT or base in KNOWN_CRYPTO or base in METALS:
                return base, quote
    return None, None


def crypto_pair(symbol: str) -> str:
    """``BTCUSD`` or ``btc/usd`` → ``BTC/USD`` (the order form Alpaca wants)."""
    text = normalize_symbol(symbol)
    if "/" in text:
        return text
    base, quote = _split_pair(text)
    return f"{base}/{quote}" if base else text


@dataclass(frozen=True)
class AssetSpec:
    """Quantization and margin for one instrument. ``margin_pct`` is a percent (2 means 2%)."""

    asset_class: AssetClass
    tick_size: Decimal
    lot_size: Decimal
    margin_pct: Decimal
    multiplier: Decimal = Decimal("1")
    max_qty: Decimal = Decimal("1000000000")

    def quantize_qty(self, qty: Any, field_name: str = "qty") -> Decimal:
        value = to_decimal(qty, field_name)
        if value <= ZERO:
            raise InvalidInput(field_name, f"must be positive, got {value}")
        if value > self.max_qty:
            raise InvalidInput(field_name, f"{value} exceeds the maximum order size {self.max_qty}")
        return quantize_exact(value, self.lot_size, field_name)

    def quantize_price(self, price: Any, field_name: str = "price") -> Decimal:
        value = to_decimal(price, field_name)
        if value <= ZERO:
            raise InvalidInput(field_name, f"must be positive, got {value}")
        return quantize_exact(value, self.tick_size, field_name)

    def round_price(self, price: Decimal) -> Decimal:
        """Round a computed price (a mid, an average fill) to the tick."""
        return round_to_step(price, self.tick_size)

    def notional(self, qty: Decimal, price: Decimal) -> Decimal:
        return qty * price * self.multiplier

    def margin(self, qty: Decimal, price: Decimal) -> Decimal:
        """Seed 000: units × price × margin% / 100 (× contract multiplier for options)."""
        return self.notional(qty, price) * self.margin_pct / Decimal(100)

    def slippage_ticks(self, direction: int, intended: Decimal, fill: Decimal) -> Decimal:
        """Direction-aware slippage in ticks, positive = adverse (seed 000)."""
        if direction not in (1, -1):
            raise ValueError("direction must be +1 or -1")
        return (fill - intended) * direction / self.tick_size


@dataclass(frozen=True)
class _Override:
    match: str
    asset_class: AssetClass | None
    fields: Mapping[str, Decimal]


@dataclass(frozen=True)
class AssetSpecRegistry:
    """Defaults per asset class plus per-symbol (glob) overrides, most specific first."""

    defaults: Mapping[AssetClass, AssetSpec]
    overrides: tuple[_Override, ...] = field(default_factory=tuple)

    def spec_for(self, symbol: str, asset_class: AssetClass | None = None) -> AssetSpec:
        cache = self.__dict__.setdefault("_cache", {})  # frozen dataclass: a per-instance memo
        key = (symbol, asset_class)
        spec = cache.get(key)
        if spec is None:
            spec = self._spec_for(symbol, asset_class)
            if len(cache) < 50_000:
                cache[key] = spec
        return spec

    def _spec_for(self, symbol: str, asset_class: AssetClass | None) -> AssetSpec:
        sym = normalize_symbol(symbol)
        klass = asset_class or detect_asset_class(sym)
        spec = self.defaults[klass]
        for override in self.overrides:
            if override.asset_class not in (None, klass):
                continue
            if fnmatch.fnmatchcase(sym, override.match):
                spec = AssetSpec(**{**spec.__dict__, **override.fields})
                break
        return spec

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "AssetSpecRegistry":
        defaults: dict[AssetClass, AssetSpec] = {}
        for name, raw in data["defaults"].items():
            klass = AssetClass.parse(name, f"defaults.{name}")
            defaults[klass] = AssetSpec(asset_class=klass, **_spec_fields(raw, f"defaults.{name}"))
        missing = set(AssetClass) - set(defaults)
        if missing:
            raise InvalidInput("defaults", f"missing asset classes {sorted(m.value for m in missing)}")
        overrides = []
        for i, raw in enumerate(data.get("overrides", [])):
            raw = dict(raw)
            match = normalize_glob(raw.pop("match"))
            klass = AssetClass.parse(raw.pop("asset_class")) if "asset_class" in raw else None
            overrides.append(_Override(match, klass, _spec_fields(raw, f"overrides[{i}]")))
        # exact symbols beat globs; longer globs beat shorter ones
        overrides.sort(key=lambda o: (any(c in o.match for c in "*?["), -len(o.match)))
        return cls(defaults=defaults, overrides=tuple(overrides))

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> "AssetSpecRegistry":
        target = Path(path or os.environ.get("ASSET_SPECS_PATH") or DEFAULT_SPECS_PATH)
        with open(target, encoding="utf-8") as handle:
            return cls.from_mapping(json.load(handle))


def normalize_glob(pattern: str) -> str:
    return pattern.strip().upper()


_SPEC_FIELDS = {"tick_size", "lot_size", "margin_pct", "multiplier", "max_qty"}


def _spec_fields(raw: Mapping[str, Any], where: str) -> dict[str, Decimal]:
    unknown = set(raw) - _SPEC_FIELDS
    if unknown:
        raise InvalidInput(where, f"unknown fields {sorted(unknown)}")
    out = {}
    for key, value in raw.items():
        if isinstance(value, float):
            raise InvalidInput(f"{where}.{key}", "write decimals as strings in the spec file")
        dec = to_decimal(value, f"{where}.{key}")
        if dec < 0 or (key != "margin_pct" and dec == 0):
            raise InvalidInput(f"{where}.{key}", f"must be positive, got {dec}")
        out[key] = dec
    return out


DEFAULT_SPECS_PATH = Path(__file__).resolve().parent.parent / "config" / "asset_specs.json"

_DEFAULT_REGISTRY: AssetSpecRegistry | None = None


def default_registry() -> AssetSpecRegistry:
    global _DEFAULT_REGISTRY
    if _DEFAULT_REGISTRY is None:
        _DEFAULT_REGISTRY = AssetSpecRegistry.load()
    return _DEFAULT_REGISTRY
