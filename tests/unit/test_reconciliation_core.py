"""The pure reconciliation core (backend/risk/reconciliation.py): which ledger rows are fills, how
venue symbols match ledger symbols, how a report carries a persisting break's ``since``, and the cash
half: the ledger's cash effect of the day per account and currency against the venue's fills and fees."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal as D

import pytest

from backend.adapters.paper_broker import PaperBroker
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.domain.orders import (
    OrderRequest,
    OrderSide,
    Position,
    VenueActivities,
    VenueFee,
    VenueFill,
    quote_currency,
)
from backend.ports.activities import ActivityProvider
from backend.risk.reconciliation import (
    build_report,
    compare,
    compare_cash,
    ledger_cash_effects,
    ledger_net_positions,
    venue_activities,
    venue_cash_effects,
)

T0 = datetime(2026, 12, 6, 23, 30, tzinfo=timezone.utc)
T1 = datetime(2026, 12, 7, 23, 30, tzinfo=timezone.utc)


def row(kind: str, side: str, qty: str, account: str = "a1", symbol: str = "SPY") -> dict:
    return {"kind": kind, "side": side, "filled_qty": qty, "broker_account_id": account, "symbol": symbol}


def test_only_fill_rows_count_and_sells_are_negative():
    rows = [row("order", "buy", "10"), row("fill", "buy", "2.5"), row("order", "sell", "0"),
            row("group_fill", "sell", "4"), row("rollback_fill", "buy", "1"),
            {"kind": "group_decision", "side": None, "filled_qty": None, "broker_account_id": "a1", "symbol": None},
            row("order", "buy", "7", account="a2"), row("order", "sell", "0.1", symbol="BTC/USD")]

    books = ledger_net_positions(rows)

    assert books == {"a1": {"SPY": D("9.5"), "BTCUSD": D("-0.1")}, "a2": {"SPY": D("7")}}


def test_venue_symbols_match_ledger_symbols_and_only_differences_are_listed():
    ledger = {"SPY": D("10"), "BTCUSD": D("0.5"), "AAPL": D("3")}
    venue = [Position("SPY", D("10")), Position("BTCUSD", D("0.7")), Position("TSLA", D("-2"))]

    assert compare(ledger, venue) == [("AAPL", D("3"), D("0")), ("BTCUSD", D("0.5"), D("0.7")),
                                      ("TSLA", D("0"), D("-2"))]
    assert compare({"SPY": D("1")}, [Position("SPY", D("1"))]) == []


def test_a_persisting_break_keeps_its_first_since_and_a_new_one_starts_now():
    first = build_report("t1", "2026-12-06", T0, [{"account_id": "a1", "venue_account_id": "v1",
                                                   "diffs": [("SPY", D("10"), D("13"))], "cash": []}])
    second = build_report("t1", "2026-12-07", T1, [{"account_id": "a1", "venue_account_id": "v1", "cash": [],
                                                    "diffs": [("SPY", D("10"), D("14")), ("QQQ", D("0"), D("1"))]}],
                          [None, first])

    assert first["status"] == "breaks" and first["breaks"][0]["difference"] == "3"
    assert {b["symbol"]: b["since"] for b in second["breaks"]} == {"SPY": T0.isoformat(), "QQQ": T1.isoformat()}


def test_an_unreadable_venue_makes_the_report_incomplete_and_a_clean_one_has_no_breaks():
    incomplete = build_report("t1", "2026-12-07", T1, [{"account_id": "a1", "error": "VenueUnavailable"},
                                                       {"account_id": "a2", "venue_account_id": "v2", "diffs": [],
                                                        "cash": []}])
    clean = build_report("t1", "2026-12-07", T1, [{"account_id": "a2", "venue_account_id": "v2", "diffs": [],
                                                   "cash": []}])

    assert incomplete["status"] == "incomplete" and incomplete["accounts_checked"] == 1
    assert incomplete["errors"] == [{"account_id": "a1", "reason": "VenueUnavailable"}]
    assert clean == {**clean, "status": "clean", "break_count": 0, "breaks": [], "errors": [], "cash_break_count": 0,
                     "cash_breaks": [], "cash_unavailable": []}
    assert clean["accounts"] == [{"account_id": "a2", "venue_account_id": "v2", "cash": []}]



# ------------------------------------------------------------------------------------------ cash

DAY = "2026-12-07"
AT = datetime(2026, 12, 7, 15, 0, tzinfo=timezone.utc)


def fill_row(kind: str, side: str, qty: str, price: str, *, account: str = "a1", symbol: str = "SPY",
             asset_class: str = "EQUITY", fees: str = "0", day: str = DAY) -> dict:
    return {"kind": kind, "side": side, "filled_qty": qty, "filled_avg_price": price, "fees": fees,
            "broker_account_id": account, "symbol": symbol, "asset_class": asset_class, "trade_date": day}


def venue_fill(side: str, qty: str, price: str, *, symbol: str = "SPY", multiplier: str = "1", fees: str = "0",
               fill_id: str = "f1") -> VenueFill:
    return VenueFill(fill_id=fill_id, symbol=symbol, side=OrderSide(side), qty=D(qty), price=D(price), time=AT,
                     currency=quote_currency(symbol), multiplier=D(multiplier), fees=D(fees))


def amounts(tallies: dict) -> dict:
    return {currency: tally.amount for currency, tally in tallies.items()}


def test_the_ledger_cash_effect_is_the_days_fills_signed_by_side_with_multiplier_and_fees():
    rows = [fill_row("order", "buy", "10", "520.01"),                        # −5200.10
            fill_row("fill", "sell", "4", "521.5", fees="0.03"),             # +2086.00 − 0.03
            fill_row("group_fill", "buy", "2", "1.25", symbol="SPY261218C00500000",
                     asset_class="OPTIONS"),                                   # −250 (× 100)
            fill_row("rollback_fill", "sell", "1000", "1.0851", symbol="EUR/USD",
                     asset_class="FOREX"),                                     # +1085.10, quoted in USD
            fill_row("order", "buy", "3", "99", day="2026-12-06"),           # another day
            fill_row("order", "buy", "0", "520", ),                            # nothing filled
            {"kind": "group_decision", "side": None, "filled_qty": None, "filled_avg_price": None,
             "broker_account_id": "a1", "symbol": None, "trade_date": DAY},
            {"kind": "correction", "side": "buy", "filled_qty": None, "filled_avg_price": None,
             "broker_account_id": "a1", "symbol": "SPY", "trade_date": DAY},
            fill_row("order", "buy", "7", "100", account="a2")]

    books = ledger_cash_effects(rows, DAY)

    assert amounts(books["a1"]) == {"USD": D("-5200.10") + D("2086.0") - D("0.03") - D("250.00") + D("1085.10")}
    assert amounts(books["a2"]) == {"USD": D("-700")}
    assert books["a1"]["USD"].fills == 4 and isinstance(books["a1"]["USD"].amount, D)


def test_fx_cash_is_kept_per_quote_currency():
    rows = [fill_row("order", "buy", "1000", "1.0851", symbol="EUR/USD", asset_class="FOREX"),
            fill_row("order", "sell", "500", "149.99", symbol="USD/JPY", asset_class="FOREX")]

    assert amounts(ledger_cash_effects(rows, DAY)["a1"]) == {"USD": D("-1085.1000"), "JPY": D("74995.00")}


def test_the_venue_cash_effect_is_its_fills_and_its_fees():
    day = VenueActivities(fills=(venue_fill("buy", "10", "520.01"), venue_fill("sell", "4", "521.5", fees="0.03"),
                                 venue_fill("buy", "2", "1.25", symbol="SPY261218C00500000", multiplier="100")),
                          fees=(VenueFee(fee_id="x", amount=D("-0.02"), time=AT),),
                          financing=(VenueFee(fee_id="y", amount=D("-1.5"), time=AT, kind="FINANCING"),))

    effects = venue_cash_effects([day])

    assert amounts(effects) == {"USD": D("-5200.10") + D("2086.0") - D("0.03") - D("250.00") - D("0.02")}
    assert effects["USD"].fills == 3  # fees are not fills; financing is not compared at all


def test_a_clean_day_has_zero_cash_difference():
    ledger = ledger_cash_effects([fill_row("order", "buy", "10", "520.01")], DAY)["a1"]
    venue = venue_cash_effects([VenueActivities(fills=(venue_fill("buy", "10", "520.01"),))])

    (line,) = compare_cash(ledger, venue)
    report = build_report("t1", DAY, T1, [{"account_id": "a1", "venue_account_id": "v1", "diffs": [],
                                           "cash": compare_cash(ledger, venue)}])

    assert line == {"currency": "USD", "ledger": D("-5200.10"), "venue": D("-5200.10"), "difference": D("0"),
                    "ledger_fills": 1, "venue_fills": 1}
    assert report["status"] == "clean" and report["cash_breaks"] == []
    assert report["accounts"][0]["cash"] == [{"currency": "USD", "ledger": "-5200.10", "venue": "-5200.10",
                                              "difference": "0.00", "ledger_fills": 1, "venue_fills": 1}]


def test_a_fill_the_ledger_never_saw_is_a_position_break_and_a_cash_break_of_its_amount():
    rows = [fill_row("order", "buy", "10", "520.01")]
    venue_day = VenueActivities(fills=(venue_fill("buy", "10", "520.01"),
                                       venue_fill("buy", "3", "520.01", fill_id="outside")))

    diffs = compare(ledger_net_positions(rows)["a1"], [Position("SPY", D("13"))])
    cash = compare_cash(ledger_cash_effects(rows, DAY)["a1"], venue_cash_effects([venue_day]))
    report = build_report("t1", DAY, T1, [{"account_id": "a1", "venue_account_id": "v1", "diffs": diffs,
                                           "cash": cash}])

    assert report["status"] == "breaks" and report["break_count"] == 1 and report["cash_break_count"] == 1
    assert report["cash_breaks"] == [{"account_id": "a1", "venue_account_id": "v1", "currency": "USD",
                                      "ledger": "-5200.10", "venue": "-6760.13", "difference": "-1560.03",
                                      "since": T1.isoformat()}]


@pytest.mark.parametrize("venue_day, difference", [
    (VenueActivities(fills=(venue_fill("buy", "10", "520.02"),)), D("-0.10")),          # the price differs
    (VenueActivities(fills=(venue_fill("buy", "10", "520.01", fees="1.00"),)), D("-1.00")),  # a commission
    (VenueActivities(fills=(venue_fill("buy", "10", "520.01"),),
                     fees=(VenueFee(fee_id="reg", amount=D("-0.02"), time=AT),)), D("-0.02")),  # a REG fee
])
def test_a_price_or_fee_mismatch_is_only_a_cash_break(venue_day, difference):
    rows = [fill_row("order", "buy", "10", "520.01")]

    diffs = compare(ledger_net_positions(rows)["a1"], [Position("SPY", D("10"))])
    cash = compare_cash(ledger_cash_effects(rows, DAY)["a1"], venue_cash_effects([venue_day]))
    report = build_report("t1", DAY, T1, [{"account_id": "a1", "venue_account_id": "v1", "diffs": diffs,
                                           "cash": cash}])

    assert report["breaks"] == [] and report["cash_break_count"] == 1
    assert D(report["cash_breaks"][0]["difference"]) == difference


def test_cash_unavailable_is_reported_and_never_clean():
    report = build_report("t1", DAY, T1, [{"account_id": "a1", "venue_account_id": "v1", "diffs": [], "cash": None,
                                           "cash_unavailable": "stub: the venue reports no account activities"}])

    assert report["status"] == "incomplete" and report["cash_break_count"] == 0
    assert report["accounts"] == [{"account_id": "a1", "venue_account_id": "v1", "cash": "unavailable",
                                   "cash_unavailable_reason": "stub: the venue reports no account activities"}]
    assert report["cash_unavailable"] == [{"account_id": "a1",
                                           "reason": "stub: the venue reports no account activities"}]


def test_a_cash_break_keeps_its_since_within_the_day_only():
    def run(day: str, now: datetime, previous=()):
        return build_report("t1", day, now, [{"account_id": "a1", "venue_account_id": "v1", "diffs": [],
                                              "cash": [{"currency": "USD", "ledger": D("0"), "venue": D("-1"),
                                                        "difference": D("-1"), "ledger_fills": 0,
                                                        "venue_fills": 1}]}], previous)

    morning = run(DAY, AT)
    evening = run(DAY, T1, [morning, None])
    next_day = run("2026-12-08", datetime(2026, 12, 8, 23, 30, tzinfo=timezone.utc), [None, evening])

    assert evening["cash_breaks"][0]["since"] == AT.isoformat()
    assert next_day["cash_breaks"][0]["since"] == "2026-12-08T23:30:00+00:00"


class _PositionsOnlyVenue:
    name = "positions-only"

    def get_positions(self):
        return []


class _FailingActivities(_PositionsOnlyVenue):
    name = "flaky"

    def get_activities(self, day):
        raise TimeoutError("read timed out")


def test_a_venue_without_the_capability_or_whose_feed_fails_leaves_the_cash_unavailable():
    paper = PaperBroker()

    assert isinstance(paper, ActivityProvider) and not isinstance(_PositionsOnlyVenue(), ActivityProvider)
    assert venue_activities([paper, _PositionsOnlyVenue()], date(2026, 12, 7)) == (
        None, "positions-only: the venue reports no account activities")
    assert venue_activities([_FailingActivities()], date(2026, 12, 7)) == (
        None, "flaky: TimeoutError: read timed out")


def test_the_paper_venue_reports_only_that_accounts_fills_of_that_utc_day():
    clock = ManualClock(datetime(2026, 12, 6, 23, 59, 59, tzinfo=timezone.utc))
    alice = PaperBroker(clock=clock, account_id="alice")
    bob = alice.for_account("bob")

    def buy(broker, cid, qty, symbol="SPY", klass=AssetClass.EQUITY):
        return broker.submit_order(OrderRequest(client_order_id=cid, symbol=symbol, asset_class=klass,
                                                side=OrderSide.BUY, qty=D(qty)))

    yesterday = buy(alice, "c-0", "1")
    clock.advance(2)
    today = buy(alice, "c-1", "2")
    buy(bob, "c-1", "5")
    option = buy(alice, "c-2", "1", "SPY261218C00500000", AssetClass.OPTIONS)

    day = alice.get_activities(date(2026, 12, 7))

    assert yesterday.filled_qty == 1
    assert [(f.client_order_id, f.qty, f.price) for f in day.fills] == [
        ("c-1", D("2"), today.filled_avg_price), ("c-2", D("1"), option.filled_avg_price)]
    assert [f.multiplier for f in day.fills] == [D("1"), D("100")] and day.fees == ()
    assert venue_cash_effects([day])["USD"].amount == -(2 * today.filled_avg_price + 100 * option.filled_avg_price)


def test_an_oanda_fill_transaction_gives_its_fill_its_commission_as_a_fee_and_its_financing_apart():
    from backend.adapters.oanda import models as m
    from backend.adapters.oanda.broker import OandaBroker

    raw = {"id": "6071", "type": "ORDER_FILL", "time": "2026-12-07T15:00:00.123456789Z", "orderID": "6070",
           "clientOrderID": "o-1", "instrument": "EUR_GBP", "units": "-2000", "price": "0.8612",
           "fullVWAP": "0.8613", "commission": "0.40", "guaranteedExecutionFee": "0.10", "financing": "-0.25"}
    fills, fees, financing = [], [], []

    OandaBroker._activity(raw, m.Transaction.model_validate(raw), fills, fees, financing, lambda: "USD")

    (fill,) = fills
    assert (fill.symbol, fill.side, fill.qty, fill.price, fill.currency) == (
        "EUR/GBP", OrderSide.SELL, D("2000"), D("0.8613"), "GBP")
    assert [(f.kind, f.amount, f.currency) for f in fees] == [("COMMISSION", D("-0.50"), "USD")]
    assert [(f.kind, f.amount) for f in financing] == [("FINANCING", D("-0.25"))]
    effects = venue_cash_effects([VenueActivities(fills=tuple(fills), fees=tuple(fees), financing=tuple(financing))])
    assert {c: t.amount for c, t in effects.items()} == {"GBP": D("1722.6000"), "USD": D("-0.50")}
