"""Form 1099-B / 1099-DA reconciliation: the broker's statement, lot by lot, against our disposals.

Statement CSV (a generic format; one row per lot sold, as the 1099-B/1099-DA detail lists them).
A header row is required; names are matched case-insensitively, spaces/dashes as underscores:

=======================  ========  ==============================================================
column                   required  value
=======================  ========  ==============================================================
description              yes       "10 AAPL" / "0.5 BTC": quantity then symbol (box 1a / 1b+1c)
date_sold                yes       MM/DD/YYYY or YYYY-MM-DD (box 1c / 1e)
proceeds                 yes       box 1d / 1f; "$1,234.50", "-3.00" and "(3.00)" accepted
date_acquired            no        a date, or empty / "VARIOUS" (box 1b / 1d)
cost_basis               no        box 1e / 1g; empty when the basis was not reported
wash_sale_disallowed     no        box 1g / 1i; empty = 0
term                     no        SHORT / LONG (also "short-term", "S", "L"; box 2 / 6)
box                      no        the Form 8949 check box A–L the statement names
symbol, quantity         no        override the description's symbol / quantity
=======================  ========  ==============================================================

Matching (``reconcile``): a statement row matches one of our disposals with the same date sold,
asset (crypto pairs by base asset: "BTC/USD" is "BTC") and quantity; among several, the one with
the same date acquired, then the same proceeds, then the first in order. Each disposal matches at
most once. Our side is the rounded Form 8949 row (cents, half-up).

Per matched row the differences in proceeds, basis, wash-sale adjustment and term are given as
ours − broker's, with the reasons we can name (``Reason``):

- ``WASH_SALE_ACROSS_ACCOUNTS``: our wash-sale adjustment is larger and a replacement purchase of
  the same asset within 30 days of the sale was made in another account (the broker sees only
  its own account; the taxpayer's rule spans all accounts, IRC §1091 / Pub. 550).
- ``WASH_BASIS_FROM_ANOTHER_ACCOUNT``: our basis is higher by exactly the wash-sale loss carried
  into the lot from a sale in another account (the broker did not see that wash sale).
- ``WASH_SALE_DIFFERS``: any other wash-sale difference.
- ``BASIS_NOT_REPORTED``: the statement has no basis (noncovered lot, box B/E/H/K); informational,
  not a difference.
- ``PROCEEDS_DIFFER``, ``BASIS_DIFFERS``, ``TERM_DIFFERS``: unexplained differences.
- ``NOT_IN_LEDGER``: a statement row with no disposal of ours; ``NOT_ON_STATEMENT``: a disposal of
  ours (in the reconciled account) the statement does not list.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any, Iterable, Iterator, Sequence

from backend.domain.errors import InvalidInput
from backend.tax.form8949 import Form8949Row, format_date, format_money, format_quantity
from backend.tax.holding import WASH_WINDOW_DAYS, Term
from backend.tax.model import Disposal

MAX_STATEMENT_ROWS = 10_000
COLUMNS = ("description", "date_acquired", "date_sold", "proceeds", "cost_basis", "wash_sale_disallowed", "term",
           "box", "symbol", "quantity")
REQUIRED = ("description", "date_sold", "proceeds")
ZERO = Decimal("0.00")


class Reason(str, Enum):
    WASH_SALE_ACROSS_ACCOUNTS = "WASH_SALE_ACROSS_ACCOUNTS"
    WASH_BASIS_FROM_ANOTHER_ACCOUNT = "WASH_BASIS_FROM_ANOTHER_ACCOUNT"
    WASH_SALE_DIFFERS = "WASH_SALE_DIFFERS"
    BASIS_NOT_REPORTED = "BASIS_NOT_REPORTED"
    PROCEEDS_DIFFER = "PROCEEDS_DIFFER"
    BASIS_DIFFERS = "BASIS_DIFFERS"
    TERM_DIFFERS = "TERM_DIFFERS"
    NOT_IN_LEDGER = "NOT_IN_LEDGER"
    NOT_ON_STATEMENT = "NOT_ON_STATEMENT"


@dataclass(frozen=True)
class StatementRow:
    line: int  # 1-based line of the CSV (the header is line 1)
    description: str
    symbol: str
    quantity: Decimal
    date_sold: date
    proceeds: Decimal
    date_acquired: date | None = None
    cost_basis: Decimal | None = None
    wash_sale_disallowed: Decimal = ZERO
    term: Term | None = None
    box: str = ""


@dataclass(frozen=True)
class Replacement:
    """A purchase that absorbed a wash-sale loss (a lot tagged ``wash_replacement``, open or sold)."""

    asset: str
    book: str
    acquired: date


@dataclass
class Match:
    ours: Disposal | None
    row: Form8949Row | None
    theirs: StatementRow | None
    differences: dict[str, Decimal | str] = field(default_factory=dict)
    reasons: list[Reason] = field(default_factory=list)

    @property
    def matched(self) -> bool:
        return self.ours is not None and self.theirs is not None

    @property
    def clean(self) -> bool:
        return self.matched and not self.differences


@dataclass
class Reconciliation:
    matches: list[Match]

    def totals(self) -> dict[str, Any]:
        ours = {key: ZERO for key in ("proceeds", "cost_basis", "wash_sale_disallowed")}
        theirs = dict(ours)
        for item in self.matches:
            if item.row is not None:
                ours["proceeds"] += item.row.proceeds
                ours["cost_basis"] += item.row.cost_basis
                ours["wash_sale_disallowed"] += item.row.adjustment_amount
            if item.theirs is not None:
                theirs["proceeds"] += item.theirs.proceeds
                theirs["cost_basis"] += item.theirs.cost_basis or ZERO
                theirs["wash_sale_disallowed"] += item.theirs.wash_sale_disallowed
        return {
            "statement_rows": sum(item.theirs is not None for item in self.matches),
            "ledger_rows": sum(item.ours is not None for item in self.matches),
            "matched": sum(item.matched for item in self.matches),
            "with_differences": sum(bool(item.differences) for item in self.matches),
            "ours": {key: format_money(value) for key, value in ours.items()},
            "statement": {key: format_money(value) for key, value in theirs.items()},
            "difference": {key: format_money(ours[key] - theirs[key]) for key in ours},
        }


# ------------------------------------------------------------------------------------ parsing


def parse_statement(text: str, *, max_rows: int = MAX_STATEMENT_ROWS) -> list[StatementRow]:
    """Parse the statement CSV; ``InvalidInput("csv", "line N, column: reason")`` on the first fault."""
    if not isinstance(text, str):
        raise InvalidInput("csv", "expected text")
    # newline="": the csv module reads \r, \n and \r\n line ends itself (a bare \r was a 500)
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    records = _records(reader)
    try:
        header = next(records)
    except StopIteration:
        raise InvalidInput("csv", "empty: expected a header row") from None
    names = [re.sub(r"[\s\-]+", "_", name.strip().lower()) for name in header]
    unknown = [name for name in names if name and name not in COLUMNS]
    if unknown:
        raise InvalidInput("csv", f"line 1: unknown columns {unknown}; accepted: {list(COLUMNS)}")
    missing = [name for name in REQUIRED if name not in names]
    if missing:
        raise InvalidInput("csv", f"line 1: missing columns {missing}")
    if len(set(names)) != len(names):
        raise InvalidInput("csv", "line 1: a column is named twice")
    rows = []
    for record in records:
        line = reader.line_num
        if not any(cell.strip() for cell in record):
            continue
        if len(rows) >= max_rows:
            raise InvalidInput("csv", f"more than {max_rows} rows")
        if len(record) != len(names):
            raise InvalidInput("csv", f"line {line}: {len(record)} fields, the header has {len(names)}")
        rows.append(_row(line, dict(zip(names, (cell.strip() for cell in record)))))
    return rows


def _records(reader: Any) -> Iterator[list[str]]:
    """The reader's records; a malformed line (a NUL byte, an unterminated field the csv module
    refuses) is a 400 naming it, never a 500."""
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InvalidInput("csv", f"line {reader.line_num}: {exc}") from None
        yield record


def _row(line: int, cells: dict[str, str]) -> StatementRow:
    def fault(column: str, reason: str) -> InvalidInput:
        return InvalidInput("csv", f"line {line}, {column}: {reason}")

    description = cells["description"]
    parts = description.split()
    qty_text = cells.get("quantity") or (parts[0] if len(parts) >= 2 else "")
    symbol = cells.get("symbol") or (" ".join(parts[1:]) if len(parts) >= 2 else "")
    if not symbol:
        raise fault("description", f"expected '<quantity> <symbol>', got {description!r}")
    try:
        quantity = Decimal(qty_text.replace(",", ""))
        if not quantity.is_finite() or quantity <= 0:
            raise InvalidOperation
    except InvalidOperation:
        raise fault("quantity", f"expected a positive number, got {qty_text!r}") from None
    acquired_text = cells.get("date_acquired", "")
    term_text = cells.get("term", "").upper().replace("-", "_")
    term = {"SHORT": Term.SHORT, "S": Term.SHORT, "SHORT_TERM": Term.SHORT, "LONG": Term.LONG, "L": Term.LONG,
            "LONG_TERM": Term.LONG, "": None}.get(term_text, "?")
    if term == "?":
        raise fault("term", f"expected SHORT or LONG, got {cells.get('term')!r}")
    box = cells.get("box", "").upper()
    if box and (len(box) != 1 or box not in "ABCDEFGHIJKL"):
        raise fault("box", f"expected one of A–L, got {cells.get('box')!r}")
    basis_text = cells.get("cost_basis", "")
    return StatementRow(
        line=line, description=description, symbol=asset_name(symbol), quantity=quantity,
        date_sold=_parse_date(cells["date_sold"], fault("date_sold", f"expected a date, got {cells['date_sold']!r}")),
        proceeds=_parse_money(cells["proceeds"], fault("proceeds", f"expected an amount, got {cells['proceeds']!r}")),
        date_acquired=(None if acquired_text.upper() in ("", "VARIOUS") else
                       _parse_date(acquired_text, fault("date_acquired", f"expected a date, got {acquired_text!r}"))),
        cost_basis=(None if basis_text == "" else
                    _parse_money(basis_text, fault("cost_basis", f"expected an amount, got {basis_text!r}"))),
        wash_sale_disallowed=_parse_money(cells.get("wash_sale_disallowed", "") or "0",
                                          fault("wash_sale_disallowed", "expected an amount")),
        term=term, box=box)


def _parse_date(text: str, fault: InvalidInput) -> date:
    found = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", text) or re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", text)
    if not found:
        raise fault
    a, b, c = (int(x) for x in found.groups())
    try:
        return date(c, a, b) if "/" in text else date(a, b, c)
    except ValueError:
        raise fault from None


def _parse_money(text: str, fault: InvalidInput) -> Decimal:
    value = text.replace("$", "").replace(",", "").strip()
    negative = value.startswith("(") and value.endswith(")")
    if negative:
        value = value[1:-1]
    if not re.fullmatch(r"-?\d+(\.\d+)?", value):
        raise fault
    amount = Decimal(value)
    return (-amount if negative else amount).quantize(Decimal("0.01"))


def asset_name(symbol: str) -> str:
    """The asset a row names: a crypto pair's base ("BTC/USD" → "BTC"), upper case."""
    return symbol.strip().upper().split("/", 1)[0]


# ----------------------------------------------------------------------------------- matching


def reconcile(statement: Sequence[StatementRow], disposals: Iterable[Disposal], *,
              replacements: Iterable[Replacement] = (), profile: Any = None) -> Reconciliation:
    """Match the statement to ``disposals`` (ours, of the reconciled account and year)."""
    ours = [(d, Form8949Row.from_disposal(d, profile)) for d in disposals]
    pool: dict[tuple[date, str, Decimal], list[int]] = {}
    for index, (disposal, _) in enumerate(ours):
        pool.setdefault((disposal.sold, asset_name(disposal.symbol), disposal.quantity.normalize()), []).append(index)
    used: set[int] = set()
    swaps = list(replacements)
    matches: list[Match] = []
    for theirs in statement:
        candidates = [i for i in pool.get((theirs.date_sold, theirs.symbol, theirs.quantity.normalize()), ())
                      if i not in used]
        if not candidates:
            matches.append(Match(None, None, theirs, reasons=[Reason.NOT_IN_LEDGER]))
            continue
        candidates.sort(key=lambda i: (ours[i][0].acquired != theirs.date_acquired,
                                       ours[i][1].proceeds != theirs.proceeds, i))
        index = candidates[0]
        used.add(index)
        matches.append(_compare(ours[index][0], ours[index][1], theirs, swaps))
    for index, (disposal, row) in enumerate(ours):
        if index not in used:
            matches.append(Match(disposal, row, None, reasons=[Reason.NOT_ON_STATEMENT]))
    return Reconciliation(matches)


def _compare(disposal: Disposal, row: Form8949Row, theirs: StatementRow, swaps: list[Replacement]) -> Match:
    match = Match(disposal, row, theirs)
    diff = match.differences
    if row.proceeds != theirs.proceeds:
        diff["proceeds"] = row.proceeds - theirs.proceeds
        match.reasons.append(Reason.PROCEEDS_DIFFER)
    wash = row.adjustment_amount - theirs.wash_sale_disallowed
    if wash:
        diff["wash_sale_disallowed"] = wash
        match.reasons.append(Reason.WASH_SALE_ACROSS_ACCOUNTS if wash > 0 and _replaced_elsewhere(disposal, swaps)
                             else Reason.WASH_SALE_DIFFERS)
    if theirs.cost_basis is None:
        match.reasons.append(Reason.BASIS_NOT_REPORTED)
    elif row.cost_basis != theirs.cost_basis:
        diff["cost_basis"] = row.cost_basis - theirs.cost_basis
        carried = disposal.wash_basis_included.quantize(Decimal("0.01"))
        match.reasons.append(Reason.WASH_BASIS_FROM_ANOTHER_ACCOUNT
                             if carried and diff["cost_basis"] == carried else Reason.BASIS_DIFFERS)
    if theirs.term is not None and theirs.term is not row.term:
        diff["term"] = f"{row.term.value} (statement {theirs.term.value})"
        match.reasons.append(Reason.TERM_DIFFERS)
    return match


def _replaced_elsewhere(disposal: Disposal, swaps: list[Replacement]) -> bool:
    window = timedelta(days=WASH_WINDOW_DAYS)
    return any(swap.asset == asset_name(disposal.symbol) and swap.book != disposal.book
               and abs(swap.acquired - disposal.sold) <= window for swap in swaps)


def replacements_from(lots: Iterable[Any] = (), disposals: Iterable[Disposal] = ()) -> list[Replacement]:
    """Replacement purchases known to the books: open lots tagged ``wash_replacement`` and sold lots
    whose basis carried a wash-sale loss (``wash_basis_included``)."""
    found = [Replacement(asset_name(lot.symbol), lot.book, lot.acquired) for lot in lots if lot.wash_replacement]
    found += [Replacement(asset_name(d.symbol), d.book, d.acquired) for d in disposals if d.wash_basis_included > 0]
    return found


# ------------------------------------------------------------------------------------ output


def match_json(item: Match) -> dict[str, Any]:
    out: dict[str, Any] = {"status": "MATCHED" if item.clean else ("DIFFERENT" if item.matched else "UNMATCHED"),
                           "reasons": [reason.value for reason in item.reasons]}
    if item.theirs is not None:
        t = item.theirs
        out["statement"] = {
            "line": t.line, "description": t.description, "date_acquired": format_date(t.date_acquired)
            if t.date_acquired else "", "date_sold": format_date(t.date_sold), "proceeds": format_money(t.proceeds),
            "cost_basis": format_money(t.cost_basis) if t.cost_basis is not None else "",
            "wash_sale_disallowed": format_money(t.wash_sale_disallowed), "term": t.term.value if t.term else "",
            "box": t.box}
    if item.ours is not None and item.row is not None:
        r = item.row
        out["ours"] = {
            "disposal_id": item.ours.disposal_id, "description": r.description,
            "date_acquired": format_date(r.date_acquired), "date_sold": format_date(r.date_sold),
            "proceeds": format_money(r.proceeds), "cost_basis": format_money(r.cost_basis),
            "wash_sale_disallowed": format_money(r.adjustment_amount), "term": r.term.value, "box": r.box,
            **({"account": item.ours.book} if item.ours.book else {})}
    out["differences"] = {key: value if isinstance(value, str) else format_money(value)
                          for key, value in item.differences.items()}
    return out


def statement_csv_from_rows(rows: Iterable[tuple[Disposal, Form8949Row]]) -> str:
    """A statement in the accepted format built from our own rows (tests, and a template)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["description", "date_acquired", "date_sold", "proceeds", "cost_basis", "wash_sale_disallowed",
                     "term", "box"])
    for disposal, row in rows:
        writer.writerow([f"{format_quantity(disposal.quantity)} {asset_name(disposal.symbol)}",
                         format_date(row.date_acquired), format_date(row.date_sold), format_money(row.proceeds),
                         format_money(row.cost_basis), format_money(row.adjustment_amount), row.term.value, row.box])
    return buf.getvalue()


__all__ = ["COLUMNS", "Match", "Reason", "Reconciliation", "Replacement", "StatementRow",
           "match_json", "parse_statement", "reconcile", "replacements_from", "statement_csv_from_rows"]
