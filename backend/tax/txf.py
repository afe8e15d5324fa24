"""TXF (Tax Exchange Format) V042 export of Form 8949 rows, and a strict parser for it.

Layout (TXF V042, https://taxdataexchange.org/docs/txf/v042/ — capital gains, record format 5):

    V042                    header: version
    A<program>              header: the exporting program
    D<MM/DD/YYYY>           header: export date
    ^                       end of header
    TD                      a detail record
    N<refnum>               the reference number (the Form 8949 box, below)
    C1                      copy number
    L1                      line number
    P<description>          column (a), e.g. "10 AAPL"
    D<MM/DD/YYYY>           column (b), date acquired
    D<MM/DD/YYYY>           column (c), date sold
    $<amount>               column (e), cost basis
    $<amount>               column (d), sales net (proceeds)
    $<amount>               column (g), wash-sale loss disallowed — only when the row has code W
    ^                       end of record

Reference numbers (short-term / long-term): box A 321 / D 323 (basis reported on 1099-B),
B 711 / E 713 (basis not reported), C 712 / F 714 (no 1099-B).

V042 defines no reference numbers for the digital-asset boxes G–L (added to Form 8949 for tax year
2025): its last revision (11/30/2011, "Added 7 new taxrefs to supplement cost basis reporting and
Form 8949") predates them, and no later TXF version exists. Writing such a row under an A–F number
would file a digital asset in a box the 2025 instructions forbid for it, so ``txf_record`` refuses
it (``InvalidInput("box", …)``) and the export refuses a TXF of a year with G–L rows unless the
caller asks to leave them out (``backend/api/tax_export.py``, ``digital_assets=omit``); the
JSON/CSV export carries them with their box.

Amounts are the rounded Form 8949 columns (dollars and cents, minus sign for negatives); lines end
with ``\\n``. Provisional rows are written like final ones (TXF has no status field).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Iterable, TextIO

from backend.domain.errors import InvalidInput
from backend.tax.boxes import BOX_PART
from backend.tax.form8949 import Form8949Row, format_date, format_money
from backend.tax.holding import Term

VERSION = "V042"
PROGRAM = "exec-api tax-lots"
REFNUM_BY_BOX = {"A": 321, "B": 711, "C": 712, "D": 323, "E": 713, "F": 714}
DIGITAL_ASSET_BOXES = frozenset("GHIJKL")  # no V042 reference number: refused
BOX_BY_REFNUM = {321: "A", 711: "B", 712: "C", 323: "D", 713: "E", 714: "F"}
_DATE = re.compile(r"^(\d{2})/(\d{2})/(\d{4})$")
_MONEY = re.compile(r"^-?\d+\.\d{2}$")


def write_txf(rows: Iterable[Form8949Row], stream: TextIO, *, exported_on: date, header: bool = True,
              program: str = PROGRAM) -> int:
    """Write the header (``header=True``) and one record per row; returns the record count."""
    if header:
        stream.write(f"{VERSION}\nA{program}\nD{format_date(exported_on)}\n^\n")
    count = 0
    for row in rows:
        stream.write(txf_record(row))
        count += 1
    return count


def txf_record(row: Form8949Row) -> str:
    if row.box in DIGITAL_ASSET_BOXES:
        raise InvalidInput("box", f"TXF V042 has no reference number for Form 8949 box {row.box} (digital assets, "
                                  "tax year 2025 on): export it as CSV or JSON")
    if row.box not in REFNUM_BY_BOX:
        raise InvalidInput("box", f"a TXF record needs the Form 8949 box, got {row.box!r}")
    if "\n" in row.description or "\r" in row.description:
        raise InvalidInput("description", "must be one line")
    lines = ["TD", f"N{REFNUM_BY_BOX[row.box]}", "C1", "L1", f"P{row.description}",
             f"D{format_date(row.date_acquired)}", f"D{format_date(row.date_sold)}",
             f"${format_money(row.cost_basis)}", f"${format_money(row.proceeds)}"]
    if row.adjustment_code == "W":
        lines.append(f"${format_money(row.adjustment_amount)}")
    return "\n".join(lines) + "\n^\n"


@dataclass(frozen=True)
class TxfFile:
    program: str
    exported_on: date
    rows: list[Form8949Row]


def parse_txf(text: str) -> TxfFile:
    """Parse (and validate) a V042 capital-gains file: every record must be record format 5 with a
    Form 8949 reference number. Raises ``InvalidInput("txf", "line N: …")`` at the first fault."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    pos = 0

    def take(what: str) -> str:
        nonlocal pos
        if pos >= len(lines):
            raise InvalidInput("txf", f"line {pos + 1}: expected {what}, got end of file")
        pos += 1
        return lines[pos - 1]

    def expect(prefix: str, what: str) -> str:
        line = take(what)
        if not line.startswith(prefix):
            raise InvalidInput("txf", f"line {pos}: expected {what}, got {line!r}")
        return line[len(prefix):]

    if take("the version") != VERSION:
        raise InvalidInput("txf", f"line 1: expected {VERSION}")
    program = expect("A", "the program (A…)")
    exported_on = _date(expect("D", "the export date (D…)"), pos)
    expect("^", "^ (end of header)")
    rows: list[Form8949Row] = []
    while pos < len(lines):
        expect("TD", "TD (a detail record)")
        refnum = expect("N", "N<refnum>")
        if not refnum.isdigit() or int(refnum) not in BOX_BY_REFNUM:
            raise InvalidInput("txf", f"line {pos}: not a Form 8949 reference number: {refnum!r}")
        box = BOX_BY_REFNUM[int(refnum)]
        if take("C<copy>") != "C1" or take("L<line>") != "L1":
            raise InvalidInput("txf", f"line {pos}: expected C1 then L1")
        description = expect("P", "P<description>")
        acquired = _date(expect("D", "D<date acquired>"), pos)
        sold = _date(expect("D", "D<date sold>"), pos)
        basis = _money(expect("$", "$<cost basis>"), pos)
        proceeds = _money(expect("$", "$<sales net>"), pos)
        line = take("$<wash sale> or ^")
        wash, code = Decimal("0.00"), ""
        if line.startswith("$"):
            code = "W"
            wash = _money(line[1:], pos)
            line = take("^")
        if line != "^":
            raise InvalidInput("txf", f"line {pos}: expected ^ (end of record), got {line!r}")
        term = Term.SHORT if BOX_PART[box] == "I" else Term.LONG
        rows.append(Form8949Row(description=description, date_acquired=acquired, date_sold=sold, proceeds=proceeds,
                                cost_basis=basis, adjustment_code=code, adjustment_amount=wash,
                                gain_or_loss=proceeds - basis + wash, term=term, box=box))
    return TxfFile(program=program, exported_on=exported_on, rows=rows)


def _date(text: str, line: int) -> date:
    found = _DATE.match(text)
    if not found:
        raise InvalidInput("txf", f"line {line}: expected MM/DD/YYYY, got {text!r}")
    month, day, year = (int(part) for part in found.groups())
    try:
        return date(year, month, day)
    except ValueError:
        raise InvalidInput("txf", f"line {line}: not a date: {text!r}") from None


def _money(text: str, line: int) -> Decimal:
    if not _MONEY.match(text):
        raise InvalidInput("txf", f"line {line}: expected an amount with cents, got {text!r}")
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
        raise InvalidInput("txf", f"line {line}: not an amount: {text!r}") from None
