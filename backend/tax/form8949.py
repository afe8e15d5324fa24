"""Form 8949 rows, open-lot rows, formatting and incremental CSV export.

Formatting follows the form: money in dollars and cents rounded half-up; dates MM/DD/YYYY;
column (f) code "W" with the disallowed loss as a positive column (g) amount; column (h) is
computed from the rounded columns, (d) − (e) + (g), so every row adds up as printed. Negative
amounts are written with a minus sign (not parentheses) so the CSV stays machine-readable.

Descriptions are "<qty> <asset>": "10 AAPL", "0.5 BTC" (a crypto pair is described by its base
asset), "2 AAPL250117C00150000" (options: contracts of the OCC symbol).

Each row carries its part (I short-term / II long-term) and check box (A–L): ``backend.tax.boxes``
decides the box from the account's 1099 status (``ReportingProfile``, documented defaults) and the
lot (covered or not by acquisition date and asset class).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Callable, Iterable, Iterator, TextIO

from backend.domain.assets import AssetClass
from backend.domain.errors import InvalidInput
from backend.domain.money import ZERO
from backend.tax import _arith
from backend.tax.boxes import DEFAULT_PROFILE, BOX_PART, ReportingProfile
from backend.tax.holding import WASH_WINDOW_DAYS, Term, first_long_term_date, holding_term, trade_date
from backend.tax.ledger import TaxLedger
from backend.tax.model import Disposal, Fill, Lot, LotMethod, Position, Shortfall, ShortfallError

CENT = Decimal("0.01")
_MONEY_CTX = Context(prec=60, rounding=ROUND_HALF_UP, traps=[InvalidOperation])

FORM_8949_HEADER = (
    "Description of property", "Date acquired", "Date sold or disposed of", "Proceeds",
    "Cost or other basis", "Adjustment code", "Amount of adjustment", "Gain or (loss)", "Term", "Status", "Part",
    "Box",
)
OPEN_LOTS_HEADER = (
    "Symbol", "Lot", "Position", "Quantity", "Date acquired", "Holding period start", "Cost basis",
    "Cost per unit", "Wash sale adjustment", "Long-term from", "Term if sold",
)


# -- formatting -----------------------------------------------------------------------------

def round_money(value: Decimal) -> Decimal:
    """Dollars and cents, half-up (1.005 → 1.01, −1.005 → −1.01); −0.00 becomes 0.00."""
    if not isinstance(value, Decimal):
        raise InvalidInput("amount", f"expected a Decimal, got {type(value).__name__}")
    rounded = value.quantize(CENT, context=_MONEY_CTX)
    return rounded.copy_abs() if rounded == ZERO else rounded


def format_money(value: Decimal) -> str:
    return format(round_money(value), "f")


def format_date(day: date) -> str:
    """MM/DD/YYYY. Takes a calendar date; convert timestamps with ``holding.trade_date`` first."""
    if isinstance(day, datetime) or not isinstance(day, date):
        raise InvalidInput("date", f"expected a date (not a datetime), got {type(day).__name__}")
    return f"{day.month:02d}/{day.day:02d}/{day.year:04d}"


def format_quantity(qty: Decimal) -> str:
    text = format(qty.normalize(), "f")
    return text


def describe(quantity: Decimal, symbol: str, asset_class: AssetClass) -> str:
    asset = symbol.split("/", 1)[0] if asset_class is AssetClass.CRYPTO else symbol
    return f"{format_quantity(quantity)} {asset}"


# -- rows -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Form8949Row:
    description: str
    date_acquired: date
    date_sold: date
    proceeds: Decimal
    cost_basis: Decimal
    adjustment_code: str
    adjustment_amount: Decimal
    gain_or_loss: Decimal
    term: Term
    provisional: bool = False
    box: str = ""  # A–L (backend.tax.boxes); "" only for rows built by hand without one

    @property
    def part(self) -> str:
        """"I" (short-term) or "II" (long-term): the box's part, else the term's."""
        return BOX_PART[self.box] if self.box else ("I" if self.term is Term.SHORT else "II")

    @classmethod
    def from_disposal(cls, disposal: Disposal, profile: ReportingProfile | None = None) -> "Form8949Row":
        box = (profile or DEFAULT_PROFILE).box(book=disposal.book, term=disposal.term,
                                               asset_class=disposal.asset_class, acquired=disposal.acquired,
                                               sold=disposal.sold)
        proceeds = round_money(disposal.proceeds)
        basis = round_money(disposal.cost_basis)
        adjustment = round_money(disposal.adjustment_amount)
        return cls(description=describe(disposal.quantity, disposal.symbol, disposal.asset_class),
                   date_acquired=disposal.acquired, date_sold=disposal.sold, proceeds=proceeds, cost_basis=basis,
                   adjustment_code=disposal.adjustment_code, adjustment_amount=adjustment,
                   gain_or_loss=_arith.add(_arith.sub(proceeds, basis), adjustment), term=disposal.term,
                   provisional=not disposal.final, box=box)

    def csv_fields(self) -> list[str]:
        return [self.description, format_date(self.date_acquired), format_date(self.date_sold),
                format_money(self.proceeds), format_money(self.cost_basis), self.adjustment_code,
                format_money(self.adjustment_amount), format_money(self.gain_or_loss), self.term.value,
                "PROVISIONAL" if self.provisional else "FINAL", self.part, self.box]


@dataclass(frozen=True)
class OpenLotRow:
    symbol: str
    lot_id: str
    position: Position
    quantity: Decimal
    date_acquired: date
    holding_start: date
    cost_basis: Decimal
    cost_per_unit: Decimal
    wash_adjustment: Decimal
    long_term_from: date | None
    term_if_sold: Term
    book: str = ""  # the account holding the lot (JSON export only; not a CSV column)

    @classmethod
    def from_lot(cls, lot: Lot, as_of: date) -> "OpenLotRow":
        if lot.position is Position.LONG:
            long_from: date | None = first_long_term_date(lot.holding_start)
            term = holding_term(lot.holding_start, as_of)
        else:  # a short sale's gain is short-term whenever it is covered
            long_from, term = None, Term.SHORT
        return cls(symbol=lot.symbol, lot_id=lot.lot_id, position=lot.position, quantity=lot.qty,
                   date_acquired=lot.acquired, holding_start=lot.holding_start, cost_basis=lot.basis,
                   cost_per_unit=lot.cost_per_unit, wash_adjustment=lot.wash_adjustment, long_term_from=long_from,
                   term_if_sold=term, book=lot.book)

    def csv_fields(self) -> list[str]:
        return [self.symbol, self.lot_id, self.position.value, format_quantity(self.quantity),
                format_date(self.date_acquired), format_date(self.holding_start), format_money(self.cost_basis),
                format(self.cost_per_unit, "f"), format_money(self.wash_adjustment),
                format_date(self.long_term_from) if self.long_term_from else "", self.term_if_sold.value]


def open_lot_rows(lots: Iterable[Lot], as_of: date) -> Iterator[OpenLotRow]:
    for lot in lots:
        yield OpenLotRow.from_lot(lot, as_of)


# -- CSV ------------------------------------------------------------------------------------

def write_form_8949_csv(rows: Iterable[Form8949Row], stream: TextIO, *, header: bool = True) -> int:
    """Write rows to a text stream one by one (nothing is buffered here); returns the row count."""
    return _write(stream, FORM_8949_HEADER if header else None, (row.csv_fields() for row in rows))


def write_open_lots_csv(rows: Iterable[OpenLotRow], stream: TextIO, *, header: bool = True) -> int:
    return _write(stream, OPEN_LOTS_HEADER if header else None, (row.csv_fields() for row in rows))


def _write(stream: TextIO, header: tuple[str, ...] | None, records: Iterable[list[str]]) -> int:
    writer = csv.writer(stream, lineterminator="\n")
    if header:
        writer.writerow(header)
    count = 0
    for record in records:
        writer.writerow(record)
        count += 1
    return count


# -- streaming ------------------------------------------------------------------------------

def iter_disposals(fills: Iterable[Fill], method: LotMethod | str = LotMethod.FIFO, *, as_of: date | None = None,
                   short_selling: Iterable[AssetClass | str] = (), wash_sales: bool = True,
                   tz: tzinfo | str | None = None,
                   on_shortfall: Callable[[Shortfall], None] | None = None,
                   stop_after: date | None = None) -> Iterator[Disposal]:
    """Stream disposals from fills sorted by time, yielding each as soon as it is final.

    Memory: open lots plus at most 30 days of pending losses. ``stop_after``: stop reading fills
    once one is dated more than 30 days after it (all disposals up to ``stop_after`` are then
    final). Shortfalls go to ``on_shortfall``; without a handler the first one raises
    ``ShortfallError``.
    """
    ledger = TaxLedger(method, short_selling=short_selling, wash_sales=wash_sales, tz=tz)
    horizon = stop_after + timedelta(days=WASH_WINDOW_DAYS) if stop_after is not None else None
    for fill in fills:
        if horizon is not None and trade_date(fill.timestamp, ledger.tz) > horizon:
            yield from ledger.advance_to(trade_date(fill.timestamp, ledger.tz))
            return
        step = ledger.apply(fill)
        for shortfall in step.shortfalls:
            _report_shortfall(shortfall, on_shortfall)
        yield from step.disposals
    yield from ledger.finish(as_of)


def _report_shortfall(shortfall: Shortfall, handler: Callable[[Shortfall], None] | None) -> None:
    if handler is None:
        raise ShortfallError(shortfall)
    handler(shortfall)


def iter_form_8949_rows(fills: Iterable[Fill], year: int, method: LotMethod | str = LotMethod.FIFO, *,
                        as_of: date | None = None, short_selling: Iterable[AssetClass | str] = (),
                        wash_sales: bool = True, tz: tzinfo | str | None = None,
                        on_shortfall: Callable[[Shortfall], None] | None = None,
                        profile: ReportingProfile | None = None) -> Iterator[Form8949Row]:
    """Form 8949 rows for disposals sold in ``year``, streamed from the whole fill history.

    ``fills`` must be sorted by time (all earlier years are needed for the lots; January of the
    next year decides December wash sales). Reading stops at the first fill dated after Jan 30 of
    the next year. Rows whose wash-sale window had not closed by ``as_of`` are marked provisional.
    Only shortfalls of sells in ``year`` are reported (see ``iter_disposals``).
    """
    if isinstance(year, bool) or not isinstance(year, int):
        raise InvalidInput("year", f"expected an integer year, got {year!r}")

    def in_year(shortfall: Shortfall) -> None:
        if shortfall.trade_date.year == year:
            _report_shortfall(shortfall, on_shortfall)

    for disposal in iter_disposals(fills, method, as_of=as_of, short_selling=short_selling, wash_sales=wash_sales,
                                   tz=tz, on_shortfall=in_year, stop_after=date(year, 12, 31)):
        if disposal.sold.year == year:
            yield Form8949Row.from_disposal(disposal, profile)
