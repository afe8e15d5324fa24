"""Wash sales (IRC §1091, Pub. 550): which losses are washed, by which shares, and what moves."""
from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal as D

import pytest

from backend.domain.assets import AssetClass
from backend.domain.errors import InvalidInput
from backend.tax import Fill, LotMethod, TaxLedger, Term, compute_lots, iter_form_8949_rows

START = date(2025, 1, 2)


def ts(day: date, hour: int = 15) -> datetime:
    return datetime.fromisoformat(f"{day.isoformat()}T{hour:02d}:00:00+00:00")


def on(offset: int) -> date:
    return START + timedelta(days=offset)


def fill(side: str, trade_id: str, day: int, qty: str, price: str, *, symbol: str = "AAPL", **extra) -> Fill:
    return Fill(trade_id=trade_id, symbol=symbol, side=side, qty=D(qty), price=D(price), timestamp=ts(on(day)),
                **extra)


def buy(*args, **kwargs) -> Fill:
    return fill("buy", *args, **kwargs)


def sell(*args, **kwargs) -> Fill:
    return fill("sell", *args, **kwargs)


FAR = on(400)  # as_of long after every window


def lots_by_id(report):
    return {lot.lot_id: lot for lot in report.open_lots}


def test_loss_then_rebuy_within_30_days_is_washed():
    fills = [buy("b1", 0, "10", "100"), sell("s1", 32, "10", "90"), buy("b2", 49, "10", "92")]

    report = compute_lots(fills, as_of=FAR)

    (disposal,) = report.disposals
    assert (disposal.gain, disposal.adjustment_code, disposal.adjustment_amount, disposal.adjusted_gain) == (
        D(-100), "W", D(100), D(0))
    assert disposal.final
    lot = lots_by_id(report)["b2"]
    assert (lot.basis, lot.wash_adjustment, lot.wash_replacement) == (D(1020), D(100), True)
    assert lot.acquired == on(49)
    assert lot.holding_start == on(49) - timedelta(days=32)  # the 32 days b1 was held are tacked on


def test_purchase_within_30_days_before_the_sale_is_a_replacement():
    fills = [buy("b1", 0, "10", "100"), buy("b2", 30, "10", "95"), sell("s1", 39, "10", "90")]

    report = compute_lots(fills, as_of=FAR)

    (disposal,) = report.disposals
    assert (disposal.lot_id, disposal.adjustment_amount, disposal.final) == ("b1", D(100), True)
    lot = lots_by_id(report)["b2"]
    assert (lot.basis, lot.holding_start) == (D(1050), on(30) - timedelta(days=39))


@pytest.mark.parametrize("offset, washed", [(30, True), (31, False)])
def test_window_after_the_sale_is_30_days(offset, washed):
    fills = [buy("b1", 0, "10", "100"), sell("s1", 10, "10", "90"), buy("b2", 10 + offset, "10", "90")]

    (disposal,) = compute_lots(fills, as_of=FAR).disposals

    assert disposal.adjustment_amount == (D(100) if washed else D(0))
    assert disposal.adjustment_code == ("W" if washed else "")


@pytest.mark.parametrize("offset, washed", [(30, True), (31, False)])
def test_window_before_the_sale_is_30_days(offset, washed):
    fills = [buy("b0", 0, "10", "100"), buy("b1", 100 - offset, "10", "80"), sell("s1", 100, "10", "90")]

    (disposal,) = compute_lots(fills, LotMethod.FIFO, as_of=FAR).disposals  # FIFO sells b0 at a loss

    assert disposal.lot_id == "b0"
    assert disposal.adjustment_amount == (D(100) if washed else D(0))


def test_fewer_replacement_shares_wash_a_proportional_part():
    fills = [buy("b1", 0, "10", "100"), sell("s1", 40, "10", "90"), buy("b2", 45, "4", "91")]

    report = compute_lots(fills, as_of=FAR)

    (disposal,) = report.disposals
    assert (disposal.gain, disposal.adjustment_amount, disposal.adjusted_gain) == (D(-100), D(40), D(-60))
    assert lots_by_id(report)["b2"].basis == D(364) + D(40)


def test_more_replacement_shares_than_sold_splits_the_replacement_lot():
    fills = [buy("b1", 0, "4", "100"), sell("s1", 40, "4", "90"), buy("b2", 45, "10", "91")]

    report = compute_lots(fills, as_of=FAR)

    assert report.disposals[0].adjustment_amount == D(40)
    lots = lots_by_id(report)
    washed, rest = lots["b2-W1"], lots["b2"]
    assert (washed.qty, washed.basis, washed.wash_replacement, washed.holding_start) == (
        D(4), D(364 + 40), True, on(45) - timedelta(days=40))
    assert (rest.qty, rest.basis, rest.wash_replacement, rest.holding_start) == (D(6), D(546), False, on(45))
    assert [lot.lot_id for lot in report.open_lots] == ["b2-W1", "b2"]


def test_several_purchases_replace_in_order_until_the_loss_is_used_up():
    fills = [buy("b1", 0, "10", "100"), sell("s1", 40, "10", "90"),
             buy("b2", 45, "3", "90"), buy("b3", 50, "5", "90"), buy("b4", 60, "10", "90")]

    report = compute_lots(fills, as_of=FAR)

    assert report.disposals[0].adjustment_amount == D(100)
    lots = lots_by_id(report)
    assert [(lid, lots[lid].qty, lots[lid].wash_adjustment) for lid in ("b2", "b3", "b4-W1", "b4")] == [
        ("b2", D(3), D(30)), ("b3", D(5), D(50)), ("b4-W1", D(2), D(20)), ("b4", D(8), D(0))]


def test_non_terminating_proportions_still_disallow_the_whole_loss():
    fills = [buy("b1", 0, "3", "100", fees="1"), sell("s1", 40, "3", "90"),  # loss 31 over 3 shares
             buy("b2", 41, "1", "90"), buy("b3", 42, "1", "90"), buy("b4", 43, "1", "90")]

    report = compute_lots(fills, as_of=FAR)

    disposal = report.disposals[0]
    assert (disposal.gain, disposal.adjustment_amount) == (D(-31), D(31))
    # 31/3 is rounded to 1e-8; the remaining 20.66666667 then halves exactly
    assert [lot.wash_adjustment for lot in report.open_lots] == [D("10.33333333"), D("10.333333335"),
                                                                 D("10.333333335")]


def test_chain_of_wash_sales_carries_the_loss_forward():
    fills = [buy("b1", 0, "10", "100"),
             sell("s1", 10, "10", "90"),  # loss 100 → washed by b2
             buy("b2", 15, "10", "90"),  # basis 900 + 100
             sell("s2", 20, "10", "85"),  # loss 150 (includes the carried 100) → washed by b3
             buy("b3", 25, "10", "85"),  # basis 850 + 150
             sell("s3", 400, "10", "110")]  # finally a gain of 100 on adjusted basis

    report = compute_lots(fills, as_of=FAR)

    first, second, last = report.disposals
    assert (first.gain, first.adjustment_amount) == (D(-100), D(100))
    assert (second.cost_basis, second.wash_basis_included, second.gain, second.adjustment_amount) == (
        D(1000), D(100), D(-150), D(150))
    assert (last.cost_basis, last.wash_basis_included, last.gain, last.adjustment_amount) == (
        D(1000), D(150), D(100), D(0))
    # economic result over the chain: bought 1000, sold 1100
    assert sum(d.adjusted_gain for d in report.disposals) == D(100)
    # holding periods tack through the chain: 10 days of b1, 5 of b2, then b3 from day 25
    assert second.holding_start == on(15) - timedelta(days=10)
    assert last.holding_start == on(25) - timedelta(days=15)
    assert last.term is Term.LONG  # 375 + 15 days


def test_each_replacement_share_absorbs_only_one_wash():
    fills = [buy("b1", 0, "10", "100"), buy("b2", 0, "10", "100", ),
             sell("s1", 40, "10", "90"), sell("s2", 45, "10", "90"), buy("b3", 50, "10", "91")]

    report = compute_lots(fills, as_of=FAR)

    first, second = report.disposals
    assert (first.lot_id, first.adjustment_amount) == ("b1", D(100))  # earliest loss gets the shares
    assert (second.lot_id, second.adjustment_amount, second.final) == ("b2", D(0), True)
    assert lots_by_id(report)["b3"].basis == D(910) + D(100)


def test_a_replacement_lot_is_not_reused_by_a_later_look_back():
    fills = [buy("b1", 0, "10", "100"), buy("b2", 35, "10", "100"), sell("s1", 40, "10", "90"),
             buy("b3", 45, "10", "90"), sell("s2", 50, "10", "80")]  # FIFO: s2 sells b2 (washed by s1)

    report = compute_lots(fills, as_of=FAR)

    first, second = report.disposals
    assert (first.lot_id, first.adjustment_amount) == ("b1", D(100))
    # b2 carried 100; sold at 800 vs 1100 → loss 300, washed by b3 (bought 5 days before, not yet used)
    assert (second.lot_id, second.gain, second.adjustment_amount) == ("b2", D(-300), D(300))
    assert lots_by_id(report)["b3"].basis == D(900) + D(300)


def test_gains_are_never_washed():
    fills = [buy("b1", 0, "10", "100"), sell("s1", 10, "10", "110"), buy("b2", 12, "10", "105")]

    report = compute_lots(fills)

    (disposal,) = report.disposals
    assert (disposal.adjustment_code, disposal.adjustment_amount, disposal.final) == ("", D(0), True)
    assert lots_by_id(report)["b2"].basis == D(1050)


def test_crypto_is_never_washed():
    fills = [buy("b1", 0, "1", "40000", symbol="BTC/USD"), sell("s1", 10, "1", "30000", symbol="BTC/USD"),
             buy("b2", 11, "1", "30500", symbol="BTC/USD")]

    report = compute_lots(fills)

    (disposal,) = report.disposals
    assert (disposal.gain, disposal.adjustment_amount, disposal.final) == (D(-10000), D(0), True)
    assert lots_by_id(report)["b2"].basis == D(30500)


def test_options_are_washed_by_the_same_contract():
    symbol = "AAPL250117C00150000"
    fills = [buy("o1", 0, "1", "2.00", symbol=symbol, multiplier=D(100)),
             sell("o2", 5, "1", "1.50", symbol=symbol, multiplier=D(100)),
             buy("o3", 6, "1", "1.40", symbol=symbol, multiplier=D(100))]

    report = compute_lots(fills, as_of=FAR)

    assert report.disposals[0].adjustment_amount == D(50)
    assert lots_by_id(report)["o3"].basis == D(190)


def test_other_symbols_do_not_replace():
    fills = [buy("b1", 0, "10", "100"), sell("s1", 10, "10", "90"), buy("m1", 11, "10", "90", symbol="MSFT")]

    assert compute_lots(fills, as_of=FAR).disposals[0].adjustment_amount == D(0)


def test_rest_of_the_same_purchase_is_not_a_replacement():
    fills = [buy("b1", 0, "100", "10"), sell("s1", 10, "50", "9")]  # Rev. Rul. 56-602

    report = compute_lots(fills, as_of=FAR)

    (disposal,) = report.disposals
    assert (disposal.gain, disposal.adjustment_amount, disposal.final) == (D(-50), D(0), True)


def test_earlier_lot_still_held_replaces_a_lifo_loss():
    # statutory reading: a purchase within 30 days before the sale, still held, replaces
    fills = [buy("b1", 0, "10", "100"), buy("b2", 10, "10", "100"), sell("s1", 20, "10", "90")]

    report = compute_lots(fills, LotMethod.LIFO, as_of=FAR)

    (disposal,) = report.disposals
    assert (disposal.lot_id, disposal.adjustment_amount) == ("b2", D(100))
    assert lots_by_id(report)["b1"].basis == D(1100)


def test_shares_sold_before_the_loss_are_not_replacements():
    fills = [buy("b1", 0, "10", "100"), sell("s1", 1, "10", "110"),  # gone before the loss
             buy("b2", 5, "10", "100"), sell("s2", 10, "10", "90")]

    report = compute_lots(fills, as_of=FAR)

    assert report.disposals[1].adjustment_amount == D(0)


def test_covering_a_short_is_not_a_replacement_purchase():
    fills = [buy("b1", 0, "10", "100"),
             sell("s1", 10, "15", "90"),  # loss 100 on b1; 5 shares open a short
             buy("c1", 15, "5", "88"),  # covers the short only
             buy("b2", 20, "4", "89")]  # a real replacement for 4 of the 10 shares

    report = compute_lots(fills, short_selling=[AssetClass.EQUITY], as_of=FAR)

    long_loss = next(d for d in report.disposals if d.lot_id == "b1")
    assert long_loss.adjustment_amount == D(40)


def test_replacement_becomes_long_term_through_tacking():
    fills = [buy("b1", 0, "10", "100"), sell("s1", 330, "10", "90"), buy("b2", 340, "10", "90"),
             sell("s2", 380, "10", "95")]

    report = compute_lots(fills, as_of=FAR)

    last = report.disposals[-1]
    assert (last.acquired, last.term) == (on(340), Term.LONG)  # 40 days own + 330 tacked > 1 year


# -- finality ----------------------------------------------------------------------------

@pytest.mark.parametrize("as_of_offset, final", [(None, False), (40, False), (41, True)])
def test_unmatched_loss_is_provisional_until_the_window_closes(as_of_offset, final):
    fills = [buy("b1", 0, "10", "100"), sell("s1", 10, "10", "90")]
    as_of = on(as_of_offset) if as_of_offset is not None else None

    (disposal,) = compute_lots(fills, as_of=as_of).disposals

    assert disposal.final is final
    assert disposal.adjustment_amount == D(0)


def test_streaming_holds_a_loss_only_until_a_later_fill_closes_its_window():
    ledger = TaxLedger()
    ledger.apply(buy("b1", 0, "10", "100"))
    step = ledger.apply(sell("s1", 10, "10", "90"))
    assert step.disposals == () and len(ledger.pending()) == 1

    assert ledger.apply(buy("m1", 40, "1", "10", symbol="MSFT")).disposals == ()  # day 30: still open
    step = ledger.apply(buy("m2", 41, "1", "10", symbol="MSFT"))  # day 31: window closed

    (disposal,) = step.disposals
    assert disposal.final and disposal.adjustment_amount == D(0)
    assert ledger.pending() == ()


def test_fully_replaced_loss_is_final_at_once():
    ledger = TaxLedger()
    ledger.apply(buy("b1", 0, "10", "100"))
    assert ledger.apply(sell("s1", 10, "10", "90")).disposals == ()

    (disposal,) = ledger.apply(buy("b2", 12, "10", "90")).disposals

    assert disposal.final and disposal.adjustment_amount == D(100)


def test_partial_wash_stays_provisional_with_the_amount_so_far():
    fills = [buy("b1", 0, "10", "100"), sell("s1", 10, "10", "90"), buy("b2", 12, "4", "90")]

    (disposal,) = compute_lots(fills, as_of=on(20)).disposals

    assert (disposal.final, disposal.adjustment_amount) == (False, D(40))


def test_december_loss_washed_by_a_january_purchase_in_the_export():
    fills = [Fill(trade_id="b1", symbol="AAPL", side="buy", qty=D(10), price=D(100), timestamp=ts(date(2025, 6, 2))),
             Fill(trade_id="s1", symbol="AAPL", side="sell", qty=D(10), price=D(90), timestamp=ts(date(2025, 12, 22))),
             Fill(trade_id="b2", symbol="AAPL", side="buy", qty=D(10), price=D(91), timestamp=ts(date(2026, 1, 15)))]

    (row,) = list(iter_form_8949_rows(fills, 2025))

    assert (row.adjustment_code, row.adjustment_amount, row.gain_or_loss, row.provisional) == (
        "W", D("100.00"), D("0.00"), False)


def test_december_loss_without_later_history_is_exported_as_provisional():
    fills = [Fill(trade_id="b1", symbol="AAPL", side="buy", qty=D(10), price=D(100), timestamp=ts(date(2025, 6, 2))),
             Fill(trade_id="s1", symbol="AAPL", side="sell", qty=D(10), price=D(90), timestamp=ts(date(2025, 12, 22)))]

    (provisional,) = list(iter_form_8949_rows(fills, 2025, as_of=date(2026, 1, 5)))
    (final,) = list(iter_form_8949_rows(fills, 2025, as_of=date(2026, 2, 1)))

    assert provisional.provisional and not final.provisional


def test_wash_sales_can_be_switched_off():
    fills = [buy("b1", 0, "10", "100"), sell("s1", 10, "10", "90"), buy("b2", 12, "10", "90")]

    (disposal,) = compute_lots(fills, wash_sales=False).disposals

    assert (disposal.adjustment_amount, disposal.final) == (D(0), True)


def test_a_refused_fill_does_not_lose_losses_its_date_made_final():
    ledger = TaxLedger()
    ledger.apply(buy("b1", 0, "10", "100"))
    ledger.apply(sell("s1", 10, "5", "90"))  # pending loss

    with pytest.raises(InvalidInput):
        ledger.apply(sell("s2", 50, "1", "90", lot_ids={"nope": D(1)}))  # would have closed the window
    step = ledger.apply(sell("s3", 51, "1", "110"))  # a gain: final at once

    assert [d.closing_trade_id for d in step.disposals] == ["s1", "s3"]
    assert step.disposals[0].final


def test_streaming_keeps_only_the_open_window_of_pending_losses():
    ledger = TaxLedger()
    ledger.apply(buy("b1", 0, "1000", "100"))
    finals = 0
    for day in range(1, 601):  # a loss every day that nothing replaces (same purchase)
        finals += len(ledger.apply(sell(f"s{day}", day, "1", "90")).disposals)
        assert len(ledger.pending()) <= 31  # only the losses of the last 30 days are held

    assert finals == 600 - 31
    assert finals + len(ledger.finish()) == 600
