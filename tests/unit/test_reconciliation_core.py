"""The pure reconciliation core (backend/risk/reconciliation.py): which ledger rows are fills, how
venue symbols match ledger symbols, and how a report carries a persisting break's ``since``."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal as D

from backend.domain.orders import Position
from backend.risk.reconciliation import build_report, compare, ledger_net_positions

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
                                                   "diffs": [("SPY", D("10"), D("13"))]}])
    second = build_report("t1", "2026-12-07", T1, [{"account_id": "a1", "venue_account_id": "v1",
                                                    "diffs": [("SPY", D("10"), D("14")), ("QQQ", D("0"), D("1"))]}],
                          [None, first])

    assert first["status"] == "breaks" and first["breaks"][0]["difference"] == "3"
    assert {b["symbol"]: b["since"] for b in second["breaks"]} == {"SPY": T0.isoformat(), "QQQ": T1.isoformat()}


def test_an_unreadable_venue_makes_the_report_incomplete_and_a_clean_one_has_no_breaks():
    incomplete = build_report("t1", "2026-12-07", T1, [{"account_id": "a1", "error": "VenueUnavailable"},
                                                       {"account_id": "a2", "venue_account_id": "v2", "diffs": []}])
    clean = build_report("t1", "2026-12-07", T1, [{"account_id": "a2", "venue_account_id": "v2", "diffs": []}])

    assert incomplete["status"] == "incomplete" and incomplete["accounts_checked"] == 1
    assert incomplete["errors"] == [{"account_id": "a1", "reason": "VenueUnavailable"}]
    assert clean == {**clean, "status": "clean", "break_count": 0, "breaks": [], "errors": []}
