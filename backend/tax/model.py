"""Immutable value types of the tax-lot core: fills in, lots held, disposals and shortfalls out.

All amounts are ``Decimal``; floats are refused (``InvalidInput``). Timestamps must be
timezone-aware. Amounts are totals, not per-unit figures: a lot's ``basis`` is the exact total
cost of its quantity (price × qty × multiplier + fees + any wash-sale adjustment), and the
per-unit ``cost_per_unit`` is derived from it for display and ordering.

Options: quantities are contracts and the contract multiplier is an explicit field of the fill
(``multiplier``, e.g. 100 for US equity options; ``AssetSpec.multiplier`` is the source). It is
required for OPTIONS fills, so a premium is never silently booked per share; for every other
asset class it defaults to 1.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Iterable, Mapping

from backend.domain.assets import AssetClass, crypto_pair, detect_asset_class, normalize_symbol
from backend.domain.errors import InvalidInput
from backend.domain.money import ONE, ZERO, dec_str
from backend.tax import _arith
from backend.tax.holding import Term


class _ParseEnum(str, Enum):
    @classmethod
    def parse(cls, value: Any, field_name: str):
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            try:
                return cls(value.strip().upper())
            except ValueError:
                pass
        raise InvalidInput(field_name, f"expected one of {[m.value for m in cls]}, got {value!r}")


class Side(_ParseEnum):
    BUY = "BUY"
    SELL = "SELL"


class LotMethod(_ParseEnum):
    """How a closing fill picks the lots it closes. FIFO/LIFO/HIFO differ only in the ordering
    key (``backend.tax.methods.ORDERING``); SPECIFIC uses the lots the fill names."""

    FIFO = "FIFO"
    LIFO = "LIFO"
    HIFO = "HIFO"
    SPECIFIC = "SPECIFIC"


class Position(_ParseEnum):
    LONG = "LONG"
    SHORT = "SHORT"


def _text(value: Any, field_name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(field_name, f"expected a non-empty string, got {value!r}")
    return value.strip()


def _aware(value: Any, field_name: str) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidInput(field_name, f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(field_name, "must be timezone-aware")
    return value


def _lot_selection(raw: Any, qty: Decimal) -> tuple[tuple[str, Decimal], ...]:
    pairs: Iterable[Any] = raw.items() if isinstance(raw, Mapping) else raw
    try:
        items = list(pairs)
    except TypeError:
        raise InvalidInput("lot_ids", "expected a mapping or pairs of (lot_id, qty)") from None
    if not items:
        raise InvalidInput("lot_ids", "must name at least one lot")
    seen: set[str] = set()
    out: list[tuple[str, Decimal]] = []
    for index, item in enumerate(items):
        try:
            lot_id, lot_qty = item
        except (TypeError, ValueError):
            raise InvalidInput(f"lot_ids[{index}]", "expected a (lot_id, qty) pair") from None
        lot_id = _text(lot_id, f"lot_ids[{index}].lot_id")
        if lot_id in seen:
            raise InvalidInput("lot_ids", f"lot {lot_id!r} named twice")
        seen.add(lot_id)
        amount = _arith.strict_decimal(lot_qty, f"lot_ids[{lot_id}]")
        if amount <= ZERO:
            raise InvalidInput(f"lot_ids[{lot_id}]", f"must be positive, got {amount}")
        out.append((lot_id, amount))
    named = _arith.total(q for _, q in out)
    if named != qty:
        raise InvalidInput("lot_ids", f"named lots total {named} but the fill quantity is {qty}")
    return tuple(out)


@dataclass(frozen=True, kw_only=True)
class Fill:
    """One execution. ``lot_ids`` (lot id → qty, summing to ``qty``) makes the fill close exactly
    those lots (specific identification), whatever the ledger's default method."""

    trade_id: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    timestamp: datetime
    asset_class: AssetClass | None = None
    fees: Decimal = ZERO
    lot_ids: tuple[tuple[str, Decimal], ...] | None = None
    multiplier: Decimal | None = None
    # The lot book (account) the fill belongs to, e.g. ``"acme:acct1"`` (tenant:account label);
    # "" = the single unnamed book. Closing fills match lots of their own book only; wash sales
    # span every book of the taxpayer (backend.tax.book).
    book: str = ""

    def __post_init__(self) -> None:
        put = object.__setattr__
        put(self, "trade_id", _text(self.trade_id, "trade_id"))
        if not isinstance(self.book, str):
            raise InvalidInput("book", f"expected a string, got {type(self.book).__name__}")
        symbol = normalize_symbol(self.symbol)
        klass = detect_asset_class(symbol) if self.asset_class is None else AssetClass.parse(self.asset_class)
        if klass is AssetClass.CRYPTO:
            symbol = crypto_pair(symbol)
        put(self, "symbol", symbol)
        put(self, "asset_class", klass)
        put(self, "side", Side.parse(self.side, "side"))
        qty = _arith.strict_decimal(self.qty, "qty")
        if qty <= ZERO:
            raise InvalidInput("qty", f"must be positive, got {qty}")
        put(self, "qty", qty)
        price = _arith.strict_decimal(self.price, "price")
        if price < ZERO:
            raise InvalidInput("price", f"must not be negative, got {price}")
        put(self, "price", price)
        fees = _arith.strict_decimal(self.fees, "fees")
        if fees < ZERO:
            raise InvalidInput("fees", f"must not be negative, got {fees}")
        put(self, "fees", fees)
        put(self, "timestamp", _aware(self.timestamp, "timestamp"))
        if self.multiplier is None:
            if klass is AssetClass.OPTIONS:
                raise InvalidInput("multiplier", "required for OPTIONS fills (contract size, e.g. 100)")
            put(self, "multiplier", ONE)
        else:
            mult = _arith.strict_decimal(self.multiplier, "multiplier")
            if mult <= ZERO:
                raise InvalidInput("multiplier", f"must be positive, got {mult}")
            put(self, "multiplier", mult)
        if self.lot_ids is not None:
            put(self, "lot_ids", _lot_selection(self.lot_ids, qty))

    @property
    def gross(self) -> Decimal:
        """qty × price × multiplier, before fees (exact)."""
        return _arith.mul(_arith.mul(self.qty, self.price), self.multiplier)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "Fill":
        """Build from stored/JSON data: amounts as strings, ``timestamp`` an aware datetime or an
        ISO-8601 string with an offset. Unknown keys are refused, not ignored."""
        unknown = set(data) - _FILL_FIELDS
        if unknown:
            raise InvalidInput("fill", f"unknown fields {sorted(unknown)}")
        values = dict(data)
        stamp = values.get("timestamp")
        if isinstance(stamp, str):
            try:
                values["timestamp"] = datetime.fromisoformat(stamp)
            except ValueError:
                raise InvalidInput("timestamp", f"expected ISO-8601, got {stamp!r}") from None
        missing = _FILL_REQUIRED - set(values)
        if missing:
            raise InvalidInput("fill", f"missing fields {sorted(missing)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {
            "trade_id": self.trade_id, "symbol": self.symbol, "asset_class": self.asset_class.value,
            "side": self.side.value, "qty": dec_str(self.qty), "price": dec_str(self.price),
            "fees": dec_str(self.fees), "timestamp": self.timestamp.isoformat(),
            "multiplier": dec_str(self.multiplier),
            "lot_ids": [[lot_id, dec_str(qty)] for lot_id, qty in self.lot_ids] if self.lot_ids else None,
            **_book(self.book),
        }


def _book(book: str) -> dict[str, str]:
    """The ``book`` key of a stored form, only when the value is in a named book (older documents
    and single-book ledgers stay as they were)."""
    return {"book": book} if book else {}


_FILL_FIELDS = frozenset({"trade_id", "symbol", "asset_class", "side", "qty", "price", "fees", "timestamp",
                          "lot_ids", "multiplier", "book"})
_FILL_REQUIRED = frozenset({"trade_id", "symbol", "side", "qty", "price", "timestamp"})


@dataclass(frozen=True, kw_only=True)
class Lot:
    """An open position piece. LONG: ``basis`` is the total cost including buy fees and any
    wash-sale loss added to it. SHORT: ``basis`` is the net proceeds received when the short was
    opened (sell fees deducted); covering buys are its cost."""

    lot_id: str
    symbol: str
    asset_class: AssetClass
    position: Position
    qty: Decimal
    basis: Decimal
    acquired_at: datetime
    acquired: date
    holding_start: date
    source_trade_id: str
    seq: tuple[int, ...]
    wash_adjustment: Decimal = ZERO
    wash_replacement: bool = False
    book: str = ""  # the account holding the lot (Fill.book of its opening fill)

    @property
    def cost_per_unit(self) -> Decimal:
        """Per-unit basis including fees (rounded to 28 significant digits; ``basis`` is exact)."""
        return _arith.ratio(self.basis, self.qty)

    def to_dict(self) -> dict[str, Any]:
        return {
            "lot_id": self.lot_id, "symbol": self.symbol, "asset_class": self.asset_class.value,
            "position": self.position.value, "qty": dec_str(self.qty), "basis": dec_str(self.basis),
            "cost_per_unit": dec_str(self.cost_per_unit), "acquired_at": self.acquired_at.isoformat(),
            "acquired": self.acquired.isoformat(), "holding_start": self.holding_start.isoformat(),
            "source_trade_id": self.source_trade_id, "wash_adjustment": dec_str(self.wash_adjustment),
            "wash_replacement": self.wash_replacement, **_book(self.book),
        }


@dataclass(frozen=True, kw_only=True)
class Disposal:
    """One (closing fill, lot) pair: a Form 8949 line before formatting.

    ``acquired``/``sold`` are Form 8949 columns (b)/(c). For a LONG lot they are the purchase and
    sale trade dates. For a SHORT lot both are the covering trade date (Form 8949 instructions:
    for a short sale, the date acquired is the date you acquired the property delivered to close
    it and the date sold is the date you delivered it); ``opened_at`` keeps the short-sale time.
    ``holding_start`` is the date the term is measured from (a wash-sale replacement's own
    purchase date moved back by the sold shares' holding period).

    ``gain`` = proceeds − cost_basis (column d − e). ``wash_disallowed`` is the loss disallowed
    by the wash-sale rule, reported as code W with a positive column (g) amount; ``adjusted_gain``
    is column (h). ``wash_basis_included`` is the part of ``cost_basis`` that came from earlier
    wash sales. ``final`` is False while a later purchase could still wash this loss.
    """

    disposal_id: str
    closing_trade_id: str
    lot_id: str
    opening_trade_id: str
    symbol: str
    asset_class: AssetClass
    position: Position
    quantity: Decimal
    opened_at: datetime
    closed_at: datetime
    acquired: date
    sold: date
    holding_start: date
    proceeds: Decimal
    cost_basis: Decimal
    gain: Decimal
    term: Term
    wash_basis_included: Decimal = ZERO
    wash_disallowed: Decimal = ZERO
    final: bool = True
    seq: tuple[int, int] = field(default=(0, 0), compare=False)
    book: str = ""  # the account that held the lot
    # the lot method applied at the sale (backend.tax.election): SPECIFIC when the fill named its
    # lots; "" for disposals recorded before methods were stored
    lot_method: str = ""

    @property
    def adjustment_code(self) -> str:
        return "W" if self.wash_disallowed > ZERO else ""

    @property
    def adjustment_amount(self) -> Decimal:
        return self.wash_disallowed

    @property
    def adjusted_gain(self) -> Decimal:
        return _arith.add(self.gain, self.wash_disallowed)

    @property
    def tax_year(self) -> int:
        return self.sold.year

    def to_dict(self) -> dict[str, Any]:
        return {
            "disposal_id": self.disposal_id, "closing_trade_id": self.closing_trade_id, "lot_id": self.lot_id,
            "opening_trade_id": self.opening_trade_id, "symbol": self.symbol, "asset_class": self.asset_class.value,
            "position": self.position.value, "quantity": dec_str(self.quantity),
            "opened_at": self.opened_at.isoformat(), "closed_at": self.closed_at.isoformat(),
            "acquired": self.acquired.isoformat(), "sold": self.sold.isoformat(),
            "holding_start": self.holding_start.isoformat(), "proceeds": dec_str(self.proceeds),
            "cost_basis": dec_str(self.cost_basis), "gain": dec_str(self.gain), "term": self.term.value,
            "wash_basis_included": dec_str(self.wash_basis_included),
            "wash_disallowed": dec_str(self.wash_disallowed), "adjustment_code": self.adjustment_code,
            "adjusted_gain": dec_str(self.adjusted_gain), "final": self.final, "tax_year": self.tax_year,
            **_book(self.book), **({"lot_method": self.lot_method} if self.lot_method else {}),
        }


@dataclass(frozen=True, kw_only=True)
class Shortfall:
    """The part of a sell that found no open lot (and could not open a short). Recorded, never
    dropped: it means the fill history is incomplete or the account was short without shorting
    enabled for the asset class. ``proceeds`` is that part's share of the net proceeds."""

    trade_id: str
    symbol: str
    asset_class: AssetClass
    qty: Decimal
    proceeds: Decimal
    timestamp: datetime
    trade_date: date
    book: str = ""  # the account whose lots fell short

    def __str__(self) -> str:
        return f"LOT_SHORTFALL: trade={self.trade_id} symbol={self.symbol} qty={self.qty}"

    def to_dict(self) -> dict[str, Any]:
        return {"code": "LOT_SHORTFALL", "trade_id": self.trade_id, "symbol": self.symbol,
                "asset_class": self.asset_class.value, "qty": dec_str(self.qty), "proceeds": dec_str(self.proceeds),
                "timestamp": self.timestamp.isoformat(), "trade_date": self.trade_date.isoformat(),
                "text": str(self), **_book(self.book)}


class ShortfallError(InvalidInput):
    """Raised by the export when a sell in the exported year has no lots and no handler was given."""

    def __init__(self, shortfall: Shortfall):
        super().__init__("fills", str(shortfall))
        self.shortfall = shortfall
