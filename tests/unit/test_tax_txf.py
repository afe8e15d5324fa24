"""TXF V042 export (backend/tax/txf.py): record format 5 per Form 8949 row, reference numbers per
box and term, wash-sale adjustment; the file parses back into the same rows and totals."""
import io
import re
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal

import pytest

from backend.domain.errors import InvalidInput
from backend.tax import Form8949Row, ReportingProfile, compute_lots
from backend.tax.model import Fill
from backend.tax.txf import REFNUM_BY_BOX, parse_txf, write_txf

EXPORTED = date(2026, 2, 1)


def fill(trade_id, side, qty, price, day, symbol="AAPL", klass="EQUITY", book="", fees="0"):
    return Fill(trade_id=trade_id, symbol=symbol, side=side, qty=Decimal(qty), price=Decimal(price),
                timestamp=datetime.fromisoformat(f"{day}T15:00:00+00:00"), asset_class=klass, book=book,
                fees=Decimal(fees))


def rows_2025():
    fills = [
        fill("b1", "BUY", "10", "100.333", "2024-01-02", fees="0.07"),        # long-term lot
        fill("b2", "BUY", "5", "120", "2025-02-03", fees="1"),
        fill("s1", "SELL", "12", "130.10", "2025-02-10", fees="0.99"),        # 10 long (D) + 2 short (A)
        fill("m1", "BUY", "10", "100", "2025-02-03", symbol="MSFT"),
        fill("m2", "SELL", "10", "90", "2025-03-03", symbol="MSFT"),          # wash sale (W 100.00)
        fill("m3", "BUY", "10", "95", "2025-03-10", symbol="MSFT"),
        fill("x1", "BUY", "3", "50", "2025-01-06", symbol="SPY", book="acme:old"),
        fill("x2", "SELL", "3", "40", "2025-05-06", symbol="SPY", book="acme:old"),  # no 1099-B: C
        fill("c1", "BUY", "0.5", "40000", "2025-01-05", symbol="BTC/USD", klass="CRYPTO"),
        fill("c2", "SELL", "0.5", "42000.555", "2025-06-05", symbol="BTC/USD", klass="CRYPTO", fees="3"),  # H
    ]
    profile = ReportingProfile({"acme:old": {"EQUITY": "NONE"}})
    disposals = compute_lots(fills, as_of=date(2026, 1, 31)).disposals
    return [Form8949Row.from_disposal(d, profile) for d in disposals if d.sold.year == 2025]


def stock_rows():
    """The 2025 rows TXF V042 can carry: every box but the digital-asset G–L (the BTC row is H)."""
    return [row for row in rows_2025() if row.box not in "GHIJKL"]


def txf_text(rows):
    buffer = io.StringIO()
    count = write_txf(rows, buffer, exported_on=EXPORTED)
    return buffer.getvalue(), count


RECORD_5 = [r"TD", r"N(321|323|711|712|713|714)", r"C1", r"L1", r"P.+", r"D\d{2}/\d{2}/\d{4}", r"D\d{2}/\d{2}/\d{4}",
            r"\$-?\d+\.\d{2}", r"\$-?\d+\.\d{2}"]


def test_file_follows_the_v042_layout_header_then_one_format_5_record_per_row():
    rows = stock_rows()
    text, count = txf_text(rows)
    lines = text.split("\n")

    assert count == len(rows) == 4
    assert lines[:4] == ["V042", "Aexec-api tax-lots", "D02/01/2026", "^"] and text.endswith("^\n")
    records = "\n".join(lines[4:]).strip("\n").split("\n^")
    records = [r.strip("\n").split("\n") for r in records if r.strip("\n")]
    assert len(records) == len(rows)
    for record, row in zip(records, rows):
        expected = RECORD_5 + ([r"\$\d+\.\d{2}"] if row.adjustment_code == "W" else [])
        assert len(record) == len(expected), record
        assert all(re.fullmatch(pattern, line) for pattern, line in zip(expected, record)), record
        assert record[1] == f"N{REFNUM_BY_BOX[row.box]}"


def test_reference_numbers_per_box_and_term():
    rows = rows_2025()

    found = {(row.description, row.box, row.term.value): REFNUM_BY_BOX.get(row.box) for row in rows}

    assert found == {("10 AAPL", "D", "LONG"): 323, ("2 AAPL", "A", "SHORT"): 321, ("10 MSFT", "A", "SHORT"): 321,
                     ("3 SPY", "C", "SHORT"): 712, ("0.5 BTC", "H", "SHORT"): None}
    assert {box: REFNUM_BY_BOX[box] for box in "BEF"} == {"B": 711, "E": 713, "F": 714}


@pytest.mark.parametrize("box", list("GHIJKL"))
def test_a_digital_asset_row_has_no_v042_number_and_is_refused(box):
    row = replace(next(r for r in rows_2025() if r.box == "H"), box=box)

    with pytest.raises(InvalidInput) as refused:
        txf_text([row])

    assert refused.value.field == "box" and f"box {box}" in refused.value.reason


def test_wash_sale_row_carries_the_disallowed_loss_as_the_third_amount():
    row = next(r for r in rows_2025() if r.description == "10 MSFT")
    text, _ = txf_text([row])

    assert text.split("\n")[4:-1] == ["TD", "N321", "C1", "L1", "P10 MSFT", "D02/03/2025", "D03/03/2025",
                                      "$1000.00", "$900.00", "$100.00", "^"]


def test_txf_parses_back_into_the_same_rows_and_totals():
    rows = stock_rows()
    text, _ = txf_text(rows)

    parsed = parse_txf(text)

    expected = [replace(row, provisional=False) for row in rows]
    assert parsed.rows == expected and parsed.exported_on == EXPORTED
    for column in ("proceeds", "cost_basis", "adjustment_amount", "gain_or_loss"):
        assert sum(getattr(r, column) for r in parsed.rows) == sum(getattr(r, column) for r in rows)


@pytest.mark.parametrize("damage", [
    lambda t: t.replace("V042", "V041", 1),
    lambda t: t.replace("N321", "N999", 1),
    lambda t: t.replace("C1\n", "C2\n", 1),
    lambda t: t.replace("$1000.00", "$1000", 1),
    lambda t: t.replace("D02/03/2025", "D2025-02-03", 1),
    lambda t: t[: t.rindex("^")],
])
def test_parser_refuses_a_file_off_the_layout(damage):
    text, _ = txf_text(stock_rows())

    with pytest.raises(InvalidInput):
        parse_txf(damage(text))


def test_a_row_without_a_box_is_refused():
    row = replace(rows_2025()[0], box="")

    with pytest.raises(InvalidInput):
        txf_text([row])
