"""LOT_BOOK_OVERFLOW markers (``backend/execution/lot_capacity.overflow_marker``: a fill recorded
without its lot step because its lot book was full) in ``GET /portfolio/tax-lots/export`` and in
the as-of reconstruction (``backend/tax/as_of.py``), on the in-memory store with hand-made markers
whose numbers can be checked by hand (the same behaviours from markers the real finish wrote, on the
Firestore emulator: tests/integration/test_tax_export_overflow.py).

"Today" is the stack's ManualClock: 2026-01-05 (New York)."""
from __future__ import annotations

import csv
import io
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from backend.api.http import StreamingResponse
from backend.api.models import TaxExport
from backend.execution import lot_capacity
from backend.execution.lot_capacity import overflow_doc_id, overflow_marker
from backend.execution.store_rules import disposal_path
from backend.tax import as_of
from backend.tax.as_of import AsOfUnavailable, open_lots_as_of
from backend.tax.model import Fill
from backend.tax.state import apply_fill_to_state, book_key
from tests.support.api_stack import make_stack
from tests.unit.test_api_tax_export import book, book_without_short_selling, fill, hand_example

EXPORT = "/portfolio/tax-lots/export"
OPTION = "AAPL260116C00200000"


@pytest.fixture
def stack(quiet_logs):
    return make_stack()


def mark(store, uid, trade_id, side, qty, price, moment, *, symbol="AAPL", asset_class="EQUITY", fees="0",
         multiplier=None, book_label="acme:acct1") -> dict:
    """A LOT_BOOK_OVERFLOW marker as the finish writes it (``store_writes._overflow_ops``)."""
    item = Fill(trade_id=trade_id, symbol=symbol, side=side, qty=Decimal(qty), price=Decimal(price),
                fees=Decimal(fees), timestamp=datetime.fromisoformat(moment), asset_class=asset_class,
                multiplier=None if multiplier is None else Decimal(multiplier), book=book_label)
    key = book_key(item.symbol)
    doc = overflow_marker(item, key, 1_048_000)
    store.set_doc(disposal_path(uid, overflow_doc_id(item, key)), doc)
    return doc


def get(stack, **query):
    return stack.get(EXPORT, token="tok-alice", query={"year": "2025", **query})


def rows(response):
    return list(csv.reader(io.StringIO(response.text())))


def test_the_tax_core_names_the_code_the_finish_writes():
    assert as_of.OVERFLOW_CODE == lot_capacity.OVERFLOW_CODE == "LOT_BOOK_OVERFLOW"


# ------------------------------------------------------------------------------------ JSON and CSV


def test_a_sell_marker_is_a_gap_with_its_net_proceeds_rounded_half_up(stack):
    # 3 contracts x 1.23455 x 100 = 370.365 - 0 fees: half-up 370.37 (half-even would say 370.36)
    sell = mark(stack.store, "alice", "o1", "SELL", "3", "1.23455", "2025-06-02T15:00:00+00:00", symbol=OPTION,
                asset_class="OPTIONS", multiplier="100")

    body = get(stack).json()

    TaxExport.model_validate(body)
    assert body["shortfalls"] == [{"code": "LOT_BOOK_OVERFLOW", "trade_id": "o1", "symbol": OPTION, "side": "SELL",
                                   "quantity": "3", "date_sold": "06/02/2025", "proceeds": "370.37",
                                   "text": sell["text"], "account": "acme:acct1"}]
    assert body["totals"]["lot_book_overflows"] == 1 and body["totals"]["shortfalls"] == 0


def test_fees_come_off_a_sells_proceeds(stack):
    mark(stack.store, "alice", "s1", "SELL", "4", "110", "2025-03-10T15:00:00+00:00", fees="1.015")

    body = get(stack).json()

    assert body["shortfalls"][0]["proceeds"] == "438.99"  # 440 - 1.015 = 438.985, half-up


def test_a_buy_marker_gives_the_day_its_missing_lot_was_bought_and_no_proceeds(stack):
    buy = mark(stack.store, "alice", "b9", "BUY", "2.5", "101", "2025-07-01T19:00:00+00:00", fees="1")

    body = get(stack).json()
    csv_rows = rows(get(stack, format="csv"))

    TaxExport.model_validate(body)
    assert body["shortfalls"] == [{"code": "LOT_BOOK_OVERFLOW", "trade_id": "b9", "symbol": "AAPL", "side": "BUY",
                                   "quantity": "2.5", "date_acquired": "07/01/2025", "proceeds": None,
                                   "text": buy["text"], "account": "acme:acct1"}]
    assert csv_rows[-1] == ["2.5 AAPL", "07/01/2025", "", "", "", "", "", "", "", "LOT_BOOK_OVERFLOW", "", ""]


def test_markers_follow_the_shortfalls_in_json_and_csv_and_are_counted_apart(stack):
    hand_example(stack.store)  # one disposal: 4 AAPL, proceeds 439.00
    mark(stack.store, "alice", "m2", "BUY", "1", "50", "2025-02-01T15:00:00+00:00")
    mark(stack.store, "alice", "m1", "SELL", "2", "60", "2025-09-01T15:00:00+00:00", symbol="MSFT")
    book_without_short_selling(stack.store, "alice",
                               fill("s9", "SELL", "3", "50", "2025-05-05", symbol="MSFT", fees="0.5"))

    body = get(stack).json()
    csv_rows = rows(get(stack, format="csv"))

    assert [(s["code"], s["trade_id"]) for s in body["shortfalls"]] == [
        ("LOT_SHORTFALL", "s9"), ("LOT_BOOK_OVERFLOW", "m2"), ("LOT_BOOK_OVERFLOW", "m1")]  # then by trade date
    assert "side" not in body["shortfalls"][0]  # a shortfall item is as it always was
    totals = body["totals"]
    assert (totals["shortfalls"], totals["shortfall_proceeds"], totals["lot_book_overflows"]) == (1, "149.50", 2)
    assert totals["disposals"] == 1 and totals["proceeds"] == "439.00"  # a gap is in no Form 8949 total
    assert [r[9] for r in csv_rows[1:]] == ["FINAL", "SHORTFALL", "LOT_BOOK_OVERFLOW", "LOT_BOOK_OVERFLOW"]
    assert csv_rows[-1] == ["2 MSFT", "", "09/01/2025", "120.00", "", "", "", "", "", "LOT_BOOK_OVERFLOW", "", ""]


def test_only_the_years_markers_are_listed_and_a_year_without_any_has_no_count(stack):
    hand_example(stack.store)
    mark(stack.store, "alice", "old", "BUY", "1", "50", "2024-12-31T15:00:00+00:00")
    mark(stack.store, "alice", "new", "SELL", "1", "50", "2026-01-02T15:00:00+00:00")
    mark(stack.store, "bob", "theirs", "SELL", "1", "50", "2025-04-01T15:00:00+00:00")

    body = get(stack).json()

    assert body["shortfalls"] == [] and "lot_book_overflows" not in body["totals"]
    assert rows(get(stack, format="csv"))[-1][9] == "FINAL"


# ------------------------------------------------------------------------------------------- TXF


@pytest.mark.parametrize("moment, in_year", [
    ("2025-03-10T15:00:00+00:00", 1),  # in the year
    ("2024-06-03T15:00:00+00:00", 0),  # before: the year's sales matched a book without it
    ("2026-01-30T20:00:00+00:00", 0),  # 30 days after the year: a buy then could wash a December loss
])
def test_txf_is_refused_when_a_marker_can_change_the_years_rows(stack, moment, in_year):
    hand_example(stack.store)
    mark(stack.store, "alice", "x1", "BUY", "1", "50", moment)

    response = get(stack, format="txf")

    assert response.status == 409 and not isinstance(response, StreamingResponse)
    error = response.json()["error"]
    assert error["code"] == "LOT_BOOK_INCOMPLETE" and error["field"] == "format"
    assert error["reason"].startswith("1 fill(s) traded up to 2026-01-30 ")
    assert f"{in_year} of them in 2025" in error["reason"]


def test_txf_of_a_year_no_marker_can_change_is_written(stack):
    hand_example(stack.store)
    mark(stack.store, "alice", "x1", "BUY", "1", "50", "2026-01-31T20:00:00+00:00")  # 31 days after
    mark(stack.store, "bob", "x2", "BUY", "1", "50", "2025-03-10T15:00:00+00:00")  # another user's

    response = get(stack, format="txf")

    assert response.status == 200 and response.text().startswith("V042")


# ----------------------------------------------------------------------------------------- as of


def _books_and_marker(trade_day: str):
    at = datetime(2025, 3, 3, 15, tzinfo=timezone.utc)
    state = apply_fill_to_state(None, Fill(trade_id="b1", symbol="AAPL", side="BUY", qty=Decimal(10),
                                           price=Decimal(100), timestamp=at, asset_class="EQUITY")).state
    item = Fill(trade_id="b2", symbol="AAPL", side="BUY", qty=Decimal(1), price=Decimal(100),
                timestamp=datetime.fromisoformat(f"{trade_day}T15:00:00+00:00"), asset_class="EQUITY")
    marker = overflow_marker(item, "AAPL", 1_048_000)
    return [("AAPL", state)], (overflow_doc_id(item, "AAPL"), marker)


@pytest.mark.parametrize("trade_day", ["2025-05-31", "2025-06-01"])
def test_as_of_a_day_on_or_after_a_markers_trade_is_refused_naming_it(trade_day):
    books, marker = _books_and_marker(trade_day)

    with pytest.raises(AsOfUnavailable) as refused:
        open_lots_as_of(books, [], date(2025, 6, 1), markers=[marker])

    assert refused.value.reason.startswith(f"LOT_BOOK_OVERFLOW marker {marker[0]}: fill b2 (BUY 1 AAPL, traded "
                                           f"{trade_day})")


def test_a_marker_in_the_disposals_is_refused_too():
    books, marker = _books_and_marker("2025-05-31")

    with pytest.raises(AsOfUnavailable, match="LOT_BOOK_OVERFLOW marker"):
        open_lots_as_of(books, [marker], date(2025, 6, 1))


def test_a_marker_traded_after_the_day_changes_nothing_of_it():
    books, marker = _books_and_marker("2025-06-02")

    lots = open_lots_as_of(books, [marker], date(2025, 6, 1), markers=[marker])

    assert [(lot.lot_id, lot.qty) for lot in lots] == [("b1", 10)]


def test_the_export_refuses_as_of_on_a_markers_day_and_answers_the_day_before(stack):
    book(stack.store, "alice", fill("b1", "BUY", "10", "100", "2025-03-03"))
    mark(stack.store, "alice", "m1", "BUY", "1", "50", "2025-12-01T15:00:00+00:00")

    refused = get(stack, as_of="2025-12-01")
    answered = get(stack, as_of="2025-11-30")

    assert refused.status == 409 and refused.json()["error"]["code"] == "AS_OF_NOT_RECONSTRUCTIBLE"
    assert "overflow-m1" in refused.json()["error"]["reason"]
    assert answered.status == 200 and [lot["lot_id"] for lot in answered.json()["open_lots"]] == ["b1"]
