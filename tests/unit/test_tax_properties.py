"""Properties of the tax-lot core over random fill histories.

Profiles: ``tax`` (default, 200 examples) and ``tax-thorough`` (2000); pick with
``TAX_HYPOTHESIS_PROFILE=tax-thorough``.
"""
from __future__ import annotations

import csv
import io
import os
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal as D

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.domain.assets import AssetClass
from backend.domain.errors import InvalidInput
from backend.tax import (
    Fill,
    Form8949Row,
    LotMethod,
    Position,
    TaxLedger,
    Term,
    compute_lots,
    first_long_term_date,
    holding_term,
    iter_form_8949_rows,
    round_money,
    write_form_8949_csv,
)

settings.register_profile("tax", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("tax-thorough", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
PROFILE = settings(settings.get_profile(os.environ.get("TAX_HYPOTHESIS_PROFILE", "tax")))

SYMBOLS = {"AAPL": D(1), "BTC/USD": D(1), "SPY250620P00500000": D(100)}
EPOCH = datetime(2024, 1, 2, 14, 30, tzinfo=timezone.utc)
FAR = date(2100, 1, 1)

# prices wander around 100 so losses, rebuys within 30 days and wash chains are common
op = st.tuples(
    st.sampled_from(["AAPL", "AAPL", "AAPL", "BTC/USD", "SPY250620P00500000"]),
    st.sampled_from(["buy", "sell"]),
    st.sampled_from([D("1"), D("2"), D("3"), D("5"), D("7"), D("0.5"), D("0.125")]),
    st.one_of(st.integers(9_000, 11_000), st.integers(1, 20_000)).map(lambda cents: D(cents).scaleb(-2)),
    st.sampled_from([D("0"), D("0.01"), D("1"), D("0.333")]),
    st.one_of(st.integers(0, 12), st.integers(13, 40), st.just(400)),
)
# one symbol, few price levels, gaps inside the wash window: dense in washes, splits and chains
wash_heavy_op = st.tuples(
    st.just("AAPL"),
    st.sampled_from(["buy", "sell"]),
    st.sampled_from([D("1"), D("2"), D("3"), D("4"), D("0.5")]),
    st.sampled_from([D(90), D(95), D(100), D(105), D("99.99")]),
    st.sampled_from([D("0"), D("1"), D("0.333")]),
    st.integers(0, 35),
)
histories = st.one_of(st.lists(op, min_size=1, max_size=40), st.lists(wash_heavy_op, min_size=3, max_size=40))
methods = st.sampled_from([LotMethod.FIFO, LotMethod.LIFO, LotMethod.HIFO])
shorting = st.sampled_from([(), (AssetClass.EQUITY, AssetClass.OPTIONS, AssetClass.CRYPTO)])


def build(ops) -> list[Fill]:
    fills, moment = [], EPOCH
    for index, (symbol, side, qty, price, fees, gap) in enumerate(ops):
        moment += timedelta(days=gap, minutes=1)
        fills.append(Fill(trade_id=f"t{index}", symbol=symbol, side=side, qty=qty, price=price, fees=fees,
                          timestamp=moment, multiplier=SYMBOLS[symbol]))
    return fills


def net(fill: Fill) -> D:
    return fill.gross - fill.fees if fill.side.value == "SELL" else fill.gross + fill.fees


def assert_conserved(fills, disposals, open_lots, shortfalls) -> None:
    longs = [d for d in disposals if d.position is Position.LONG]
    shorts = [d for d in disposals if d.position is Position.SHORT]
    open_long = [lot for lot in open_lots if lot.position is Position.LONG]
    open_short = [lot for lot in open_lots if lot.position is Position.SHORT]
    buys = [f for f in fills if f.side.value == "BUY"]
    sells = [f for f in fills if f.side.value == "SELL"]

    # quantities: every unit bought is open, sold, or covered a short; every unit sold likewise
    assert sum(f.qty for f in buys) == (sum(d.quantity for d in longs) + sum(lot.qty for lot in open_long)
                                        + sum(d.quantity for d in shorts))
    assert sum(f.qty for f in sells) == (sum(d.quantity for d in longs) + sum(s.qty for s in shortfalls)
                                         + sum(d.quantity for d in shorts) + sum(lot.qty for lot in open_short))
    # money: sell proceeds and buy costs are neither created nor lost by splitting
    assert sum(net(f) for f in sells) == (sum(d.proceeds for d in longs) + sum(d.proceeds for d in shorts)
                                          + sum(lot.basis for lot in open_short) + sum(s.proceeds for s in shortfalls))
    disallowed = sum(d.wash_disallowed for d in disposals)
    assert sum(net(f) for f in buys) + disallowed == (sum(d.cost_basis for d in disposals)
                                                      + sum(lot.basis for lot in open_long))
    # realized gains before wash adjustments = total proceeds − consumed basis
    assert sum(d.gain for d in disposals) == sum(d.proceeds for d in disposals) - sum(d.cost_basis for d in disposals)
    for d in disposals:
        assert d.gain == d.proceeds - d.cost_basis
        assert D(0) <= d.wash_disallowed <= max(-d.gain, D(0))
        assert d.adjusted_gain == d.gain + d.wash_disallowed
        if d.wash_disallowed:
            assert d.adjustment_code == "W" and d.position is Position.LONG
            assert d.asset_class in (AssetClass.EQUITY, AssetClass.OPTIONS)
        if d.position is Position.SHORT:
            assert d.term is Term.SHORT
    # after wash adjustments: deferred losses sit in open lots, so adjusted gains plus what is
    # still deferred equal proceeds minus the original (unadjusted) cost consumed
    deferred = sum(lot.wash_adjustment for lot in open_lots)
    original_cost = sum(d.cost_basis - d.wash_basis_included for d in disposals)
    assert sum(d.adjusted_gain for d in disposals) - deferred == sum(d.proceeds for d in disposals) - original_cost
    assert all(lot.qty > 0 for lot in open_lots)


@PROFILE
@given(histories, methods, shorting)
def test_amounts_and_quantities_are_conserved(ops, method, short_selling):
    fills = build(ops)

    report = compute_lots(fills, method, short_selling=short_selling, as_of=FAR)

    assert_conserved(fills, report.disposals, report.open_lots, report.shortfalls)
    assert not report.provisional


@PROFILE
@given(histories, st.sampled_from([LotMethod.FIFO, LotMethod.LIFO]))
def test_wash_sales_defer_losses_without_changing_which_shares_are_sold(ops, method):
    fills = build(ops)

    washed = compute_lots(fills, method, as_of=FAR)
    plain = compute_lots(fills, method, as_of=FAR, wash_sales=False)

    def per_pair(report):
        out = defaultdict(D)
        for d in report.disposals:
            out[(d.closing_trade_id, d.opening_trade_id)] += d.quantity
        return dict(out)

    assert per_pair(washed) == per_pair(plain)
    economic = sum(d.proceeds - d.cost_basis + d.wash_basis_included for d in washed.disposals)
    # lots split differently may round their 1e-8 shares differently, never by more than that
    assert abs(economic - sum(d.gain for d in plain.disposals)) <= D("1e-8") * (len(fills) + 1) * 4


@PROFILE
@given(histories, methods, st.sampled_from([2024, 2025, 2026]))
def test_streaming_export_matches_the_batch(ops, method, year):
    fills = build(ops)
    batch = compute_lots(fills, method, as_of=FAR)
    expected = sorted(tuple(Form8949Row.from_disposal(d).csv_fields()) for d in batch.disposals
                      if d.sold.year == year)

    rows = iter_form_8949_rows(iter(fills), year, method, as_of=FAR, on_shortfall=lambda s: None)
    streamed = sorted(tuple(row.csv_fields()) for row in rows)

    assert streamed == expected


@PROFILE
@given(histories, methods)
def test_csv_parses_back_to_the_disposal_totals(ops, method):
    disposals = compute_lots(build(ops), method, as_of=FAR).disposals
    rows = [Form8949Row.from_disposal(d) for d in disposals]
    buffer = io.StringIO()

    write_form_8949_csv(rows, buffer)

    records = list(csv.DictReader(io.StringIO(buffer.getvalue())))
    assert len(records) == len(disposals)
    column = {name: sum(D(r[name]) for r in records) for name in
              ("Proceeds", "Cost or other basis", "Amount of adjustment", "Gain or (loss)")}
    assert column["Proceeds"] == sum(round_money(d.proceeds) for d in disposals)
    assert column["Cost or other basis"] == sum(round_money(d.cost_basis) for d in disposals)
    assert column["Amount of adjustment"] == sum(round_money(d.wash_disallowed) for d in disposals)
    assert column["Gain or (loss)"] == (column["Proceeds"] - column["Cost or other basis"]
                                        + column["Amount of adjustment"])
    # each row's rounding moves the totals by at most half a cent per column
    assert abs(column["Proceeds"] - sum(d.proceeds for d in disposals)) <= D("0.005") * len(disposals)
    for record in records:
        assert D(record["Gain or (loss)"]) == (D(record["Proceeds"]) - D(record["Cost or other basis"])
                                                + D(record["Amount of adjustment"]))
        assert record["Adjustment code"] in ("", "W")
        if D(record["Amount of adjustment"]) != 0:
            assert record["Adjustment code"] == "W"
        if record["Adjustment code"] == "":
            assert D(record["Amount of adjustment"]) == 0


@PROFILE
@given(st.data(), st.lists(st.tuples(st.sampled_from(["buy", "buy", "sell"]),
                                     st.sampled_from([D("1"), D("2"), D("3"), D("0.5")]),
                                     st.integers(1, 500).map(D), st.integers(0, 40)),
                           min_size=1, max_size=25))
def test_specific_identification_of_random_lots_conserves(data, ops):
    ledger = TaxLedger(LotMethod.SPECIFIC)
    fills, disposals, shortfalls = [], [], []
    moment = EPOCH
    for index, (side, qty, price, gap) in enumerate(ops):
        moment += timedelta(days=gap, minutes=1)
        lot_ids = None
        open_lots = ledger.open_lots("AAPL")
        if side == "sell":
            if not open_lots:
                continue
            picks = data.draw(st.lists(st.sampled_from(open_lots), min_size=1, unique_by=lambda lot: lot.lot_id))
            lot_ids = {lot.lot_id: data.draw(st.sampled_from(sorted({lot.qty, min(lot.qty, D("0.5"))})))
                       for lot in picks}
            qty = sum(lot_ids.values())
        fill = Fill(trade_id=f"t{index}", symbol="AAPL", side=side, qty=qty, price=price, timestamp=moment,
                    lot_ids=lot_ids)
        fills.append(fill)
        step = ledger.apply(fill)
        disposals.extend(step.disposals)
        shortfalls.extend(step.shortfalls)
        if lot_ids:
            assert {d.lot_id for d in step.disposals} <= set(lot_ids) | {p.lot_id for p in ledger.pending()} | {
                d.lot_id for d in disposals}
    disposals.extend(ledger.finish(FAR))

    assert shortfalls == []
    assert_conserved(fills, disposals, ledger.open_lots(), shortfalls)


@PROFILE
@given(st.dates(min_value=date(1990, 1, 1), max_value=date(2090, 12, 31)), st.integers(0, 800))
def test_holding_period_is_more_than_one_calendar_year(acquired, days_held):
    sold = acquired + timedelta(days=days_held)
    boundary = first_long_term_date(acquired)

    assert (boundary - acquired).days in (366, 367)
    assert holding_term(acquired, sold) is (Term.LONG if sold >= boundary else Term.SHORT)
    if holding_term(acquired, sold) is Term.LONG:
        assert holding_term(acquired, sold + timedelta(days=1)) is Term.LONG


@PROFILE
@given(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["qty", "price", "fees", "multiplier"]))
def test_floats_never_become_amounts(value, field):
    kwargs = dict(trade_id="t", symbol="AAPL", side="buy", qty=D(1), price=D(1), timestamp=EPOCH)
    kwargs[field] = value
    with pytest.raises(InvalidInput):
        Fill(**kwargs)
