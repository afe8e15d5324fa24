"""Lot booking tables: holdings before, the sale, the lots consumed, gain and term."""
from __future__ import annotations

import csv
import io
from datetime import date, datetime
from decimal import Decimal as D

import pytest

from backend.domain.assets import AssetClass
from backend.domain.errors import InvalidInput
from backend.tax import (
    Fill,
    Form8949Row,
    LotMethod,
    OpenLotRow,
    Position,
    ShortfallError,
    TaxLedger,
    Term,
    compute_lots,
    describe,
    first_long_term_date,
    format_date,
    format_money,
    holding_term,
    iter_form_8949_rows,
    open_lot_rows,
    round_money,
    write_form_8949_csv,
    write_open_lots_csv,
)


def ts(day: str, hour: int = 15, minute: int = 0) -> datetime:
    return datetime.fromisoformat(f"{day}T{hour:02d}:{minute:02d}:00+00:00")


def fill(side: str, trade_id: str, day: str, qty: str, price: str, *, symbol: str = "AAPL", fees: str = "0",
         hour: int = 15, **extra) -> Fill:
    return Fill(trade_id=trade_id, symbol=symbol, side=side, qty=D(qty), price=D(price), fees=D(fees),
                timestamp=ts(day, hour), **extra)


def buy(*args, **kwargs) -> Fill:
    return fill("buy", *args, **kwargs)


def sell(*args, **kwargs) -> Fill:
    return fill("sell", *args, **kwargs)


def consumed(report) -> list[tuple[str, D, D, Term]]:
    return [(d.lot_id, d.quantity, d.gain, d.term) for d in report.disposals]


def open_qty(report) -> list[tuple[str, D]]:
    return [(lot.lot_id, lot.qty) for lot in report.open_lots]


# -- methods ------------------------------------------------------------------------------

HOLDINGS = [
    buy("b1", "2024-01-10", "10", "100"),
    buy("b2", "2024-06-10", "10", "120"),
    buy("b3", "2025-02-10", "10", "110"),
]


@pytest.mark.parametrize(
    "method, lot_ids, expected_consumed, expected_open",
    [
        (LotMethod.FIFO, None,
         [("b1", D(10), D(500), Term.LONG), ("b2", D(5), D(150), Term.SHORT)],
         [("b2", D(5)), ("b3", D(10))]),
        (LotMethod.LIFO, None,
         [("b3", D(10), D(400), Term.SHORT), ("b2", D(5), D(150), Term.SHORT)],
         [("b1", D(10)), ("b2", D(5))]),
        (LotMethod.HIFO, None,
         [("b2", D(10), D(300), Term.SHORT), ("b3", D(5), D(200), Term.SHORT)],
         [("b1", D(10)), ("b3", D(5))]),
        (LotMethod.SPECIFIC, {"b1": D(5), "b3": D(10)},
         [("b1", D(5), D(250), Term.LONG), ("b3", D(10), D(400), Term.SHORT)],
         [("b1", D(5)), ("b2", D(10))]),
        # a fill naming lots is matched specifically whatever the ledger's default method
        (LotMethod.FIFO, {"b2": D(15) - D(10), "b1": D(10)},
         [("b2", D(5), D(150), Term.SHORT), ("b1", D(10), D(500), Term.LONG)],
         [("b2", D(5)), ("b3", D(10))]),
    ],
)
def test_each_method_consumes_its_lots(method, lot_ids, expected_consumed, expected_open):
    sale = sell("s1", "2025-03-01", "15", "150", lot_ids=lot_ids)

    report = compute_lots([*HOLDINGS, sale], method)

    assert consumed(report) == expected_consumed
    assert open_qty(report) == expected_open
    assert report.shortfalls == ()


def test_hifo_ties_fall_back_to_fifo():
    fills = [buy("b1", "2025-01-02", "5", "100"), buy("b2", "2025-01-03", "5", "100"),
             sell("s1", "2025-01-10", "5", "120")]

    report = compute_lots(fills, LotMethod.HIFO)

    assert [d.lot_id for d in report.disposals] == ["b1"]


def test_hifo_compares_cost_per_unit_including_fees():
    fills = [buy("b1", "2025-01-02", "10", "100", fees="20"),  # 102 per share
             buy("b2", "2025-01-03", "1", "101.5"),  # 101.5 per share
             sell("s1", "2025-01-10", "1", "120")]

    report = compute_lots(fills, LotMethod.HIFO)

    assert [d.lot_id for d in report.disposals] == ["b1"]
    assert report.disposals[0].cost_basis == D("102")


# -- amounts, fees, partial lots -----------------------------------------------------------

def test_fees_on_both_sides():
    fills = [buy("b1", "2025-01-02", "10", "100", fees="5"), sell("s1", "2025-02-03", "4", "110", fees="2")]

    report = compute_lots(fills)

    (disposal,) = report.disposals
    assert (disposal.proceeds, disposal.cost_basis, disposal.gain) == (D("438"), D("402"), D("36"))
    (lot,) = report.open_lots
    assert (lot.qty, lot.basis, lot.cost_per_unit) == (D("6"), D("603"), D("100.5"))


def test_partial_lots_split_exactly_even_when_the_basis_does_not_divide():
    fills = [buy("b1", "2025-01-02", "3", "10", fees="1"),  # basis 31 over 3 shares
             sell("s1", "2025-01-05", "1", "12", fees="0.5"),
             sell("s2", "2025-01-06", "2", "12")]

    report = compute_lots(fills)

    first, second = report.disposals
    assert (first.proceeds, first.cost_basis) == (D("11.5"), D("10.33333333"))
    assert (second.proceeds, second.cost_basis) == (D("24"), D("20.66666667"))
    assert first.gain + second.gain == D("35.5") - D("31")
    assert report.open_lots == ()


def test_sell_fees_are_split_over_the_lots_a_sale_consumes():
    fills = [buy("b1", "2025-01-02", "10", "10"), buy("b2", "2025-01-03", "5", "10"),
             sell("s1", "2025-01-10", "15", "12", fees="3")]

    report = compute_lots(fills)

    assert [d.proceeds for d in report.disposals] == [D("118"), D("59")]


def test_a_sale_splits_only_the_last_lot_it_touches():
    fills = [buy("b1", "2025-01-02", "10", "10"), buy("b2", "2025-01-03", "10", "20"),
             sell("s1", "2025-01-10", "12", "30")]

    report = compute_lots(fills)

    assert consumed(report) == [("b1", D(10), D(200), Term.SHORT), ("b2", D(2), D(20), Term.SHORT)]
    assert [(lot.lot_id, lot.qty, lot.basis) for lot in report.open_lots] == [("b2", D(8), D(160))]


def test_same_day_round_trip_is_short_term():
    fills = [buy("b1", "2025-05-05", "10", "50", hour=14), sell("s1", "2025-05-05", "10", "51", hour=19)]

    report = compute_lots(fills)

    (disposal,) = report.disposals
    assert (disposal.acquired, disposal.sold, disposal.term, disposal.gain) == (
        date(2025, 5, 5), date(2025, 5, 5), Term.SHORT, D(10))


def test_equal_timestamps_keep_input_order():
    same = "2025-05-05"
    in_order = [buy("b1", same, "10", "50"), sell("s1", same, "10", "51")]
    reversed_order = [sell("s1", same, "10", "51"), buy("b1", same, "10", "50")]

    assert len(compute_lots(in_order).disposals) == 1
    report = compute_lots(reversed_order)
    assert report.disposals == () and report.shortfalls[0].qty == D(10)


def test_options_use_the_explicit_contract_multiplier():
    symbol = "AAPL250117C00150000"
    fills = [buy("o1", "2024-11-01", "2", "1.50", symbol=symbol, fees="1.30", multiplier=D(100)),
             sell("o2", "2024-12-02", "2", "2.00", symbol=symbol, fees="1.30", multiplier=D(100))]

    report = compute_lots(fills)

    (disposal,) = report.disposals
    assert disposal.asset_class is AssetClass.OPTIONS
    assert (disposal.proceeds, disposal.cost_basis, disposal.gain) == (D("398.70"), D("301.30"), D("97.40"))


def test_options_fill_without_multiplier_is_refused():
    with pytest.raises(InvalidInput) as err:
        buy("o1", "2024-11-01", "2", "1.50", symbol="AAPL250117C00150000")
    assert err.value.field == "multiplier"


# -- holding period -----------------------------------------------------------------------

@pytest.mark.parametrize(
    "acquired, sold, term",
    [
        (date(2025, 3, 15), date(2026, 3, 15), Term.SHORT),  # exactly one year: short
        (date(2025, 3, 15), date(2026, 3, 16), Term.LONG),
        (date(2024, 2, 29), date(2025, 2, 28), Term.SHORT),  # leap day acquisition
        (date(2024, 2, 29), date(2025, 3, 1), Term.LONG),
        (date(2024, 2, 28), date(2025, 2, 28), Term.SHORT),
        (date(2024, 2, 28), date(2025, 3, 1), Term.LONG),
        (date(2023, 2, 28), date(2024, 2, 29), Term.SHORT),  # last day of Feb → through Feb 29
        (date(2023, 2, 28), date(2024, 3, 1), Term.LONG),
        (date(2023, 12, 31), date(2024, 12, 31), Term.SHORT),
        (date(2023, 12, 31), date(2025, 1, 1), Term.LONG),
        (date(2025, 1, 31), date(2026, 1, 31), Term.SHORT),
        (date(2025, 1, 31), date(2026, 2, 1), Term.LONG),
    ],
)
def test_one_year_boundary(acquired, sold, term):
    assert holding_term(acquired, sold) is term


def test_first_long_term_date_after_a_leap_day():
    assert first_long_term_date(date(2024, 2, 29)) == date(2025, 3, 1)
    assert first_long_term_date(date(2025, 3, 15)) == date(2026, 3, 16)


@pytest.mark.parametrize("sold_day, term", [("2026-03-15", Term.SHORT), ("2026-03-16", Term.LONG)])
def test_engine_applies_the_one_year_boundary(sold_day, term):
    report = compute_lots([buy("b1", "2025-03-15", "1", "10"), sell("s1", sold_day, "1", "20")])

    assert report.disposals[0].term is term


def test_trade_dates_are_taken_in_the_tax_time_zone():
    # 2026-03-16 03:00 UTC is still 2026-03-15 in New York: exactly one year, short-term
    late = Fill(trade_id="s1", symbol="AAPL", side="sell", qty=D(1), price=D(20), timestamp=ts("2026-03-16", 3))
    fills = [buy("b1", "2025-03-15", "1", "10"), late]

    assert compute_lots(fills).disposals[0].term is Term.SHORT
    assert compute_lots(fills, tz="UTC").disposals[0].term is Term.LONG


# -- shortfalls and short sales ------------------------------------------------------------

def test_sale_beyond_open_lots_records_a_shortfall():
    fills = [buy("b1", "2025-01-02", "5", "10"), sell("s1", "2025-01-10", "8", "12", fees="0.8")]

    report = compute_lots(fills)

    (disposal,) = report.disposals
    assert (disposal.quantity, disposal.proceeds) == (D(5), D("59.5"))
    (shortfall,) = report.shortfalls
    assert (shortfall.trade_id, shortfall.qty, shortfall.proceeds) == ("s1", D(3), D("35.7"))
    assert report.open_lots == ()


def test_sale_with_no_lots_at_all_is_one_shortfall():
    report = compute_lots([sell("s1", "2025-01-10", "2", "12")])

    assert report.disposals == ()
    assert [(s.qty, s.proceeds) for s in report.shortfalls] == [(D(2), D(24))]


def test_short_selling_opens_a_short_lot_that_buys_cover():
    fills = [buy("b1", "2025-01-02", "5", "10"),
             sell("s1", "2025-01-10", "8", "12"),  # 5 close the long, 3 open a short at 12
             buy("b2", "2026-06-01", "5", "9", fees="1")]  # 3 cover (gain), 2 open a long

    report = compute_lots(fills, short_selling=[AssetClass.EQUITY])

    long_close, cover = report.disposals
    assert (long_close.position, long_close.gain) == (Position.LONG, D(10))
    assert cover.position is Position.SHORT
    assert (cover.quantity, cover.proceeds, cover.cost_basis, cover.gain) == (D(3), D(36), D("27.6"), D("8.4"))
    # held open for 17 months but short-term: the shares delivered were bought at the cover
    assert (cover.term, cover.acquired, cover.sold) == (Term.SHORT, date(2026, 6, 1), date(2026, 6, 1))
    assert cover.opened_at == ts("2025-01-10")
    assert report.shortfalls == ()
    assert [(lot.lot_id, lot.position, lot.qty, lot.basis) for lot in report.open_lots] == [
        ("b2", Position.LONG, D(2), D("18.4"))]


def test_short_lots_follow_the_method_on_cover():
    fills = [sell("s1", "2025-01-02", "1", "10"), sell("s2", "2025-01-03", "1", "30"),
             sell("s3", "2025-01-04", "1", "20"), buy("c1", "2025-01-10", "1", "15")]

    by_method = {m: compute_lots(fills, m, short_selling=["EQUITY"]).disposals[0].lot_id
                 for m in (LotMethod.FIFO, LotMethod.LIFO, LotMethod.HIFO)}

    assert by_method == {LotMethod.FIFO: "s1", LotMethod.LIFO: "s3", LotMethod.HIFO: "s1"}


# -- specific identification errors -------------------------------------------------------

def test_specific_unknown_lot_is_refused_and_changes_nothing():
    ledger = TaxLedger(LotMethod.SPECIFIC)
    ledger.apply(buy("b1", "2025-01-02", "5", "10"))

    with pytest.raises(InvalidInput) as err:
        ledger.apply(sell("s1", "2025-01-10", "5", "12", lot_ids={"nope": D(5)}))

    assert err.value.field == "lot_ids" and "unknown" in err.value.reason
    assert [(lot.lot_id, lot.qty) for lot in ledger.open_lots()] == [("b1", D(5))]


def test_specific_more_than_the_lot_holds_is_refused():
    ledger = TaxLedger(LotMethod.SPECIFIC)
    ledger.apply(buy("b1", "2025-01-02", "5", "10"))
    ledger.apply(buy("b2", "2025-01-03", "5", "10"))

    with pytest.raises(InvalidInput) as err:
        ledger.apply(sell("s1", "2025-01-10", "7", "12", lot_ids=[("b2", D(1)), ("b1", D(6))]))

    assert "has 5 open, 6 requested" in err.value.reason
    assert [lot.qty for lot in ledger.open_lots()] == [D(5), D(5)]


def test_specific_method_requires_named_lots():
    ledger = TaxLedger(LotMethod.SPECIFIC)
    ledger.apply(buy("b1", "2025-01-02", "5", "10"))

    with pytest.raises(InvalidInput) as err:
        ledger.apply(sell("s1", "2025-01-10", "5", "12"))
    assert err.value.field == "lot_ids"


@pytest.mark.parametrize("lot_ids, reason", [
    ({"b1": D(3)}, "total 3 but the fill quantity is 5"),
    ({"b1": D(6), "b2": D(-1)}, "must be positive"),
    ([("b1", D(2)), ("b1", D(3))], "named twice"),
    ({}, "at least one lot"),
])
def test_lot_selection_must_match_the_fill(lot_ids, reason):
    with pytest.raises(InvalidInput) as err:
        sell("s1", "2025-01-10", "5", "12", lot_ids=lot_ids)
    assert reason in str(err.value)


# -- input validation ---------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [("qty", 1.5), ("price", 10.0), ("fees", 0.1)])
def test_floats_are_refused(field, value):
    kwargs = dict(trade_id="t", symbol="AAPL", side="buy", qty=D(1), price=D(1), timestamp=ts("2025-01-02"))
    kwargs[field] = value
    with pytest.raises(InvalidInput) as err:
        Fill(**kwargs)
    assert err.value.field == field and "float" in err.value.reason


def test_naive_timestamps_are_refused():
    with pytest.raises(InvalidInput):
        Fill(trade_id="t", symbol="AAPL", side="buy", qty=D(1), price=D(1), timestamp=datetime(2025, 1, 2))


@pytest.mark.parametrize("field, value", [("qty", D(0)), ("price", D(-1)), ("fees", D("-0.01")),
                                          ("side", "hold"), ("trade_id", " ")])
def test_invalid_fill_values_are_refused(field, value):
    kwargs = dict(trade_id="t", symbol="AAPL", side="buy", qty=D(1), price=D(1), timestamp=ts("2025-01-02"))
    kwargs[field] = value
    with pytest.raises(InvalidInput) as err:
        Fill(**kwargs)
    assert err.value.field == field


def test_fills_must_arrive_in_time_order():
    ledger = TaxLedger()
    ledger.apply(buy("b1", "2025-01-03", "1", "10"))

    with pytest.raises(InvalidInput) as err:
        ledger.apply(buy("b2", "2025-01-02", "1", "10"))
    assert err.value.field == "timestamp"


def test_duplicate_fill_ids_are_refused():
    with pytest.raises(InvalidInput):
        compute_lots([buy("b1", "2025-01-02", "1", "10"), buy("b1", "2025-05-02", "1", "10")])
    ledger = TaxLedger()
    ledger.apply(buy("b1", "2025-01-02", "1", "10"))
    with pytest.raises(InvalidInput):
        ledger.apply(buy("b1", "2025-01-03", "1", "10"))


def test_a_symbol_keeps_one_asset_class():
    ledger = TaxLedger()
    ledger.apply(buy("b1", "2025-01-02", "1", "10", symbol="GLD"))

    with pytest.raises(InvalidInput) as err:
        ledger.apply(Fill(trade_id="b2", symbol="GLD", asset_class="COMMODITY", side="buy", qty=D(1), price=D(1),
                          timestamp=ts("2025-01-03")))
    assert err.value.field == "asset_class"


def test_finished_ledger_refuses_more_fills():
    ledger = TaxLedger()
    ledger.finish()
    with pytest.raises(InvalidInput):
        ledger.apply(buy("b1", "2025-01-02", "1", "10"))


# -- formatting and export ----------------------------------------------------------------

@pytest.mark.parametrize("value, text", [
    (D("1.005"), "1.01"), (D("2.675"), "2.68"), (D("-1.005"), "-1.01"), (D("-0.004"), "0.00"),
    (D("1234567.891"), "1234567.89"), (D("10"), "10.00"), (D("0"), "0.00"),
])
def test_money_is_rounded_half_up_to_cents(value, text):
    assert format_money(value) == text


def test_money_formatting_refuses_floats():
    with pytest.raises(InvalidInput):
        round_money(1.005)


def test_dates_are_mm_dd_yyyy():
    assert format_date(date(2025, 3, 7)) == "03/07/2025"
    with pytest.raises(InvalidInput):
        format_date(ts("2025-03-07"))


@pytest.mark.parametrize("qty, symbol, klass, text", [
    (D("10"), "AAPL", AssetClass.EQUITY, "10 AAPL"),
    (D("0.50"), "BTC/USD", AssetClass.CRYPTO, "0.5 BTC"),
    (D("1E+2"), "MSFT", AssetClass.EQUITY, "100 MSFT"),
])
def test_descriptions(qty, symbol, klass, text):
    assert describe(qty, symbol, klass) == text


def test_form_8949_csv_rows():
    fills = [buy("b1", "2024-01-10", "10", "100", fees="1"), sell("s1", "2025-03-01", "10", "150.005")]
    rows = [Form8949Row.from_disposal(d) for d in compute_lots(fills).disposals]
    buffer = io.StringIO()

    count = write_form_8949_csv(rows, buffer)

    lines = list(csv.reader(io.StringIO(buffer.getvalue())))
    assert count == 1
    assert lines[1] == ["10 AAPL", "01/10/2024", "03/01/2025", "1500.05", "1001.00", "", "0.00", "499.05", "LONG",
                        "FINAL", "II", "D"]


def test_crypto_rows_describe_the_base_asset():
    fills = [buy("b1", "2025-01-02", "1.5", "40000", symbol="BTC/USD"),
             sell("s1", "2025-02-02", "0.5", "42000", symbol="BTCUSD")]

    (row,) = list(iter_form_8949_rows(fills, 2025))

    assert row.description == "0.5 BTC"
    assert (row.proceeds, row.cost_basis, row.gain_or_loss) == (D("21000.00"), D("20000.00"), D("1000.00"))


def test_export_keeps_only_the_year_and_stops_reading_after_its_wash_window():
    fills = [buy("b1", "2024-06-03", "10", "100"), sell("s0", "2024-12-02", "2", "110"),
             sell("s1", "2025-03-03", "3", "120"), sell("s2", "2025-12-30", "1", "90"),
             buy("b2", "2026-01-20", "1", "91"),  # washes the December loss
             sell("s3", "2026-01-31", "1", "95"), buy("b3", "2026-02-15", "1", "95")]
    read: list[str] = []

    def source():
        for f in fills:
            read.append(f.trade_id)
            yield f

    rows = list(iter_form_8949_rows(source(), 2025))

    assert [(r.description, r.date_sold, r.adjustment_code, r.adjustment_amount) for r in rows] == [
        ("3 AAPL", date(2025, 3, 3), "", D("0.00")), ("1 AAPL", date(2025, 12, 30), "W", D("10.00"))]
    assert all(not r.provisional for r in rows)
    assert read == ["b1", "s0", "s1", "s2", "b2", "s3"]  # s3 (Jan 31) is past the window: stop


def test_export_raises_on_a_shortfall_in_the_year_unless_handled():
    fills = [sell("s0", "2024-03-01", "1", "10"), buy("b1", "2025-01-02", "1", "10"),
             sell("s1", "2025-02-03", "2", "12")]

    with pytest.raises(ShortfallError) as err:
        list(iter_form_8949_rows(fills, 2025))
    assert err.value.shortfall.trade_id == "s1"

    seen = []
    rows = list(iter_form_8949_rows(fills, 2025, on_shortfall=seen.append))
    assert len(rows) == 1 and [s.trade_id for s in seen] == ["s1"]  # 2024's shortfall is not this export's


def test_open_lot_rows_and_csv():
    fills = [buy("b1", "2024-01-10", "10", "100", fees="1"), buy("b2", "2025-02-01", "3", "10")]
    ledger = TaxLedger()
    for f in fills:
        ledger.apply(f)

    rows = list(open_lot_rows(ledger.open_lots(), as_of=date(2025, 3, 1)))
    buffer = io.StringIO()
    write_open_lots_csv(rows, buffer)

    assert rows[0] == OpenLotRow(symbol="AAPL", lot_id="b1", position=Position.LONG, quantity=D(10),
                                 date_acquired=date(2024, 1, 10), holding_start=date(2024, 1, 10),
                                 cost_basis=D(1001), cost_per_unit=D("100.1"), wash_adjustment=D(0),
                                 long_term_from=date(2025, 1, 11), term_if_sold=Term.LONG)
    assert rows[1].term_if_sold is Term.SHORT
    lines = buffer.getvalue().splitlines()
    assert lines[1] == "AAPL,b1,LONG,10,01/10/2024,01/10/2024,1001.00,100.1,0.00,01/11/2025,LONG"
    assert len(lines) == 3


def test_open_lots_are_listed_per_symbol():
    ledger = TaxLedger()
    ledger.apply(buy("b1", "2025-01-02", "1", "10"))
    ledger.apply(buy("c1", "2025-01-02", "2", "40000", symbol="BTCUSD"))

    assert [lot.lot_id for lot in ledger.open_lots("AAPL")] == ["b1"]
    assert [lot.lot_id for lot in ledger.open_lots("BTC/USD")] == ["c1"]
    assert ledger.symbols == ("AAPL", "BTC/USD")


# -- storage forms ------------------------------------------------------------------------

def test_fill_round_trips_through_its_stored_form():
    original = sell("s1", "2025-01-10", "5", "12.5", fees="0.1", lot_ids={"b1": D(5)})

    stored = original.to_dict()

    assert stored["qty"] == "5" and stored["timestamp"] == "2025-01-10T15:00:00+00:00"
    assert Fill.from_mapping(stored) == original


def test_stored_fill_with_unknown_or_missing_fields_is_refused():
    stored = buy("b1", "2025-01-02", "1", "10").to_dict()
    with pytest.raises(InvalidInput) as err:
        Fill.from_mapping({**stored, "notional": "10"})
    assert "unknown fields ['notional']" in err.value.reason
    with pytest.raises(InvalidInput):
        Fill.from_mapping({k: v for k, v in stored.items() if k != "price"})
    with pytest.raises(InvalidInput):
        Fill.from_mapping({**stored, "timestamp": "2025-01-02T10:00:00"})  # naive


def test_results_serialize_without_floats():
    report = compute_lots([buy("b1", "2025-01-02", "3", "10", fees="1"), sell("s1", "2025-01-05", "4", "12")])

    disposal = report.disposals[0].to_dict()
    shortfall = report.shortfalls[0].to_dict()

    assert disposal["cost_basis"] == "31" and disposal["adjustment_code"] == "" and disposal["final"] is True
    assert shortfall["code"] == "LOT_SHORTFALL" and shortfall["proceeds"] == "12"
    values = [*disposal.values(), *shortfall.values()]
    assert not any(isinstance(v, float) for v in values)
    lot = TaxLedger()
    lot.apply(buy("b1", "2025-01-02", "3", "10", fees="1"))
    assert lot.open_lots()[0].to_dict()["basis"] == "31"
