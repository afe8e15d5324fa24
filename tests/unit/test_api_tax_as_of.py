"""Issue 16 item 6 through the HTTP API (``make_stack``): ``GET /portfolio/tax-lots/export?as_of=``
(open lots at the end of a past day) and the multi-year guarantee: the export of a past year taken
now is, byte for byte, the export of that year taken at the time.

Trades go through the store's own tax step (``InMemoryStore._apply_tax``, the commit of each history
row) at the stack's ManualClock time, moved day by day across 2025 and 2026; the split goes through
the store's corporate-action writer (what ``POST /tenants/{t}/corporate-actions`` calls)."""
import csv
import io
import json
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from backend.api.models import TaxExport
from backend.tax import OPEN_LOTS_HEADER, Fill
from backend.tax.corporate import CorporateAction
from tests.support.api_stack import make_stack

EXPORT = "/portfolio/tax-lots/export"
BOOK = "acme:default"


@pytest.fixture
def stack(quiet_logs):
    return make_stack()


def move_to(stack, moment: str) -> None:
    target = datetime.fromisoformat(moment)
    stack.clock.advance((target - stack.clock.now()).total_seconds())


def trade(stack, moment, trade_id, side, qty, price, symbol="AAPL"):
    """A fill now (the clock moved to ``moment``), booked by the store's tax step."""
    move_to(stack, moment)
    item = Fill(trade_id=trade_id, symbol=symbol, side=side, qty=Decimal(qty), price=Decimal(price),
                timestamp=stack.clock.now(), asset_class="EQUITY", book=BOOK)
    stack.store._apply_tax([("alice", item)])  # noqa: SLF001 - the step finish()/save_group() run


def get(stack, **query):
    return stack.get(EXPORT, token="tok-alice", query={"year": "2025", **query})


def ok(stack, **query) -> bytes:
    response = get(stack, **query)
    assert response.status == 200, response.json()
    return response.text().encode()


def exports(stack, as_of=None):
    """Every export of 2025 a user can take: Form 8949 CSV, TXF, open-lots CSV and JSON."""
    extra = {"as_of": as_of} if as_of else {}
    return {"disposals.csv": ok(stack, format="csv"), "form.txf": ok(stack, format="txf"),
            "open_lots.csv": ok(stack, format="csv", section="open_lots", **extra),
            "export.json": ok(stack, **extra)}


def year_one(stack):
    trade(stack, "2025-02-03T15:00:00+00:00", "b1", "BUY", "10", "100")
    trade(stack, "2025-03-03T15:00:00+00:00", "b2", "BUY", "10", "120")
    trade(stack, "2025-06-02T15:00:00+00:00", "s1", "SELL", "5", "130")  # b1: gain
    trade(stack, "2025-12-15T15:00:00+00:00", "s2", "SELL", "5", "90")  # b1: loss of 50 ...
    trade(stack, "2025-12-22T15:00:00+00:00", "m1", "BUY", "4", "400", symbol="MSFT")
    trade(stack, "2025-12-29T15:00:00+00:00", "m2", "BUY", "2", "390", symbol="MSFT")
    trade(stack, "2026-01-08T15:00:00+00:00", "b3", "BUY", "3", "92")  # ... 3 of its 5 shares washed in 2026


def year_two_after_the_first_export(stack):
    trade(stack, "2026-01-21T15:00:00+00:00", "s3", "SELL", "4", "350", symbol="MSFT")  # m1 at a loss: m2 (2025)
    trade(stack, "2026-01-27T15:00:00+00:00", "s4", "SELL", "5", "125")  # a 2025 lot (b2)
    move_to(stack, "2026-01-30T15:00:00+00:00")
    record, _ = stack.store.apply_corporate_action(
        "acme", CorporateAction(action_id="aapl-2-for-1", kind="SPLIT", symbol="AAPL", effective=date(2026, 2, 2),
                                ratio=Decimal("2")), recorded_by="carol", now=stack.clock.now())
    assert record["status"] == "APPLIED"
    trade(stack, "2026-02-10T15:00:00+00:00", "s5", "SELL", "7", "70")  # split shares of b2 and b3
    trade(stack, "2026-03-02T15:00:00+00:00", "s6", "SELL", "2", "380", symbol="MSFT")  # m2, with the wash
    trade(stack, "2026-03-03T15:00:00+00:00", "b4", "BUY", "1", "71")


def test_a_past_year_exported_later_is_byte_for_byte_the_export_taken_then(stack):
    year_one(stack)
    move_to(stack, "2026-01-20T17:00:00+00:00")  # 2025's last wash window closed on 01-14
    then = exports(stack)
    then_json_as_of = ok(stack, as_of="2026-01-20")

    year_two_after_the_first_export(stack)
    move_to(stack, "2026-03-10T17:00:00+00:00")
    now = exports(stack, as_of="2026-01-20")

    assert now["disposals.csv"] == then["disposals.csv"]
    assert now["open_lots.csv"] == then["open_lots.csv"]
    # the TXF header carries the day it was written (D<date>); every record after it is the same
    assert now["form.txf"].split(b"\n")[3:] == then["form.txf"].split(b"\n")[3:]
    # JSON: only "as_of" (today, which decides PROVISIONAL) differs
    assert ok(stack, as_of="2026-01-20") == then_json_as_of.replace(b'"as_of":"2026-01-20"',
                                                                    b'"as_of":"2026-03-10"', 1)
    body = json.loads(then["export.json"])
    assert [(row["description"], row["adjustment_code"], row["status"]) for row in body["disposals"]] == [
        ("5 AAPL", "", "FINAL"), ("5 AAPL", "W", "FINAL")]
    # the year-1 MSFT lot m2 later took a wash adjustment (2026-01-21): as of 01-20 it has none
    lots = {row["lot_id"]: row for row in json.loads(now["export.json"])["open_lots"]}
    assert lots["m2"]["wash_adjustment"] == "0.00" and lots["m2"]["cost_basis"] == "780.00"
    assert lots["b2"]["quantity"] == "10" and lots["b3"]["quantity"] == "3"  # the split after it is undone
    TaxExport.model_validate(json.loads(now["export.json"]))


def test_as_of_json_names_the_day_and_the_csv_file_is_named_for_it(stack):
    year_one(stack)
    move_to(stack, "2026-01-20T17:00:00+00:00")

    body = json.loads(ok(stack, as_of="2025-06-01"))
    response = get(stack, format="csv", section="open_lots", as_of="2025-06-01")

    assert body["as_of"] == "2026-01-20" and body["open_lots_as_of"] == "2025-06-01"
    assert [(row["lot_id"], row["quantity"], row["term_if_sold"]) for row in body["open_lots"]] == [
        ("b1", "10", "SHORT"), ("b2", "10", "SHORT")]
    assert response.headers["Content-Disposition"] == 'attachment; filename="open-lots-2025-06-01.csv"'
    rows = list(csv.reader(io.StringIO(response.text())))
    assert rows[0] == list(OPEN_LOTS_HEADER) and [row[1] for row in rows[1:]] == ["b1", "b2"]
    assert "open_lots_as_of" not in json.loads(ok(stack))


@pytest.mark.parametrize("query, reason", [
    ({"as_of": "2026-01-06"}, "after today"),
    ({"as_of": "2025-02-30"}, "not a calendar date"),
    ({"as_of": "2025-06-01", "format": "txf"}, "only for the open lots"),
    ({"as_of": "2025-06-01", "format": "csv"}, "only for the open lots"),
    ({"as_of": "06/01/2025"}, "as_of"),
])
def test_a_bad_as_of_is_a_400_naming_it_and_nothing_is_streamed(stack, query, reason):
    response = get(stack, **query)

    assert response.status == 400
    error = response.json()["error"]
    assert "as_of" in (error["field"] or "") + error["message"] and reason in error["message"]


def test_records_that_cannot_give_the_day_exactly_are_a_409_naming_why(stack):
    trade(stack, "2025-02-03T15:00:00+00:00", "b1", "BUY", "10", "100")
    path = "users/alice/tax_books/AAPL"
    stack.store.set_doc(path, {**stack.store.get(path), "version": 2})
    move_to(stack, "2026-01-05T17:00:00+00:00")

    response = get(stack, as_of="2025-06-01")

    assert response.status == 409
    error = response.json()["error"]
    assert error["code"] == "AS_OF_NOT_RECONSTRUCTIBLE" and error["field"] == "as_of"
    assert "lot book AAPL: state version 2" in error["reason"]


def test_another_users_records_are_never_read(stack):
    trade(stack, "2025-02-03T15:00:00+00:00", "b1", "BUY", "10", "100")
    move_to(stack, "2026-01-05T17:00:00+00:00")

    response = stack.get(EXPORT, token="tok-bob", query={"year": "2025", "as_of": "2025-06-01"})

    assert response.status == 200 and json.loads(response.text())["open_lots"] == []


def test_the_reconstructed_day_is_today_in_new_york(stack):
    move_to(stack, "2026-01-06T03:00:00+00:00")  # still 2026-01-05 in New York

    assert get(stack, as_of="2026-01-05").status == 200
    assert get(stack, as_of="2026-01-06").status == 400
    assert datetime(2026, 1, 6, 3, tzinfo=timezone.utc) == stack.clock.now()
