"""GET /portfolio/tax-lots/export: the caller's Form 8949 rows (final disposals + the books' pending
losses), shortfalls and open lots, as streamed JSON or CSV, read in bounded pages.

The lot books are built by the store's own tax step (``InMemoryStore._apply_tax``: the code that
runs in the commit of each history row), fed with hand-made fills so the numbers can be checked by
hand. "Today" is the stack's ManualClock: 2026-01-05 (New York)."""
import csv
import io
import json
from datetime import datetime
from decimal import Decimal
from types import SimpleNamespace

import pytest

from backend import logs
from backend.api import tax_export
from backend.api.app import ApiApp
from backend.api.flask_bridge import to_flask_response
from backend.api.http import StreamingResponse
from backend.api.models import TaxExport
from backend.tax import FORM_8949_HEADER, OPEN_LOTS_HEADER, Fill, round_money
from backend.tax.state import book_pending_disposals
from tests.support.api_stack import make_stack

EXPORT = "/portfolio/tax-lots/export"


@pytest.fixture
def stack(quiet_logs):
    return make_stack()


def at(day: str, hour: int = 15) -> datetime:
    return datetime.fromisoformat(f"{day}T{hour:02d}:00:00+00:00")


def fill(trade_id, side, qty, price, day, *, symbol="AAPL", fees="0", asset_class="EQUITY", hour=15):
    return Fill(trade_id=trade_id, symbol=symbol, side=side, qty=Decimal(qty), price=Decimal(price),
                fees=Decimal(fees), timestamp=at(day, hour), asset_class=asset_class)


def book(store, uid, *fills):
    """Each fill through the store's tax step, one commit each, in order."""
    for item in fills:
        store._apply_tax([(uid, item)])  # noqa: SLF001 - the step finish()/save_group() run


def export(stack, token="tok-alice", **query):
    response = stack.get(EXPORT, token=token, query={"year": "2025", **query})
    assert response.status == 200, response.json()
    return response


def csv_rows(response):
    return list(csv.reader(io.StringIO(response.text())))


def hand_example(store, uid="alice"):
    book(store, uid, fill("b1", "BUY", "10", "100", "2025-03-03", fees="1"),
         fill("s1", "SELL", "4", "110", "2025-03-10", fees="1"))


# ------------------------------------------------------------------------------ Form 8949 rows


def test_hand_checkable_sale_proceeds_basis_gain_and_term(stack):
    # buy 10 @100 + $1 fee: basis 1001, 100.10/share; sell 4 @110 - $1 fee: proceeds 439, basis 400.40
    hand_example(stack.store)

    rows = csv_rows(export(stack, format="csv"))

    assert rows == [list(FORM_8949_HEADER),
                    ["4 AAPL", "03/03/2025", "03/10/2025", "439.00", "400.40", "", "0.00", "38.60", "SHORT", "FINAL", "I", "A"]]


def test_json_has_the_same_row_plus_totals_and_validates_against_the_model(stack):
    hand_example(stack.store)

    response = export(stack)
    body = response.json()

    assert isinstance(response, StreamingResponse) and response.media_type == "application/json"
    TaxExport.model_validate(body)
    assert body["disposals"] == [{
        "disposal_id": "AAPL--s1:b1", "symbol": "AAPL", "quantity": "4", "description": "4 AAPL",
        "date_acquired": "03/03/2025", "date_sold": "03/10/2025", "proceeds": "439.00", "cost_basis": "400.40",
        "adjustment_code": "", "adjustment_amount": "0.00", "gain_or_loss": "38.60", "term": "SHORT",
        "status": "FINAL", "part": "I", "box": "A", "lot_method": "FIFO"}]
    assert body["totals"]["gain_or_loss"] == "38.60" and body["totals"]["short_term"]["count"] == 1
    assert body["totals"]["long_term"] == {"count": 0, "proceeds": "0.00", "cost_basis": "0.00",
                                           "adjustment_amount": "0.00", "gain_or_loss": "0.00"}
    assert body["provisional"] is False and body["year"] == 2025 and body["as_of"] == "2026-01-05"


def test_wash_sale_row_has_code_w_and_the_disallowed_loss(stack):
    # loss of 100 on 03/03, replaced on 03/10 (within 30 days): disallowed, added to the new lot
    book(stack.store, "alice", fill("b1", "BUY", "10", "100", "2025-02-03"),
         fill("s1", "SELL", "10", "90", "2025-03-03"),
         fill("b2", "BUY", "10", "95", "2025-03-10"))

    rows = csv_rows(export(stack, format="csv"))
    lots = export(stack).json()["open_lots"]

    assert rows[1] == ["10 AAPL", "02/03/2025", "03/03/2025", "900.00", "1000.00", "W", "100.00", "0.00", "SHORT",
                       "FINAL", "I", "A"]
    assert lots[0]["cost_basis"] == "1050.00" and lots[0]["wash_adjustment"] == "100.00"
    assert lots[0]["holding_start"] == "02/10/2025"  # 03/10 moved back by the 28 days the sold shares were held


def test_csv_parses_and_its_columns_add_up_to_the_stored_disposals(stack):
    book(stack.store, "alice",
         fill("b1", "BUY", "10", "100.333", "2024-01-02", fees="0.07"),
         fill("b2", "BUY", "5", "120", "2025-02-03", fees="1"),
         fill("s1", "SELL", "12", "130.10", "2025-02-10", fees="0.99"),   # 10 long-term + 2 short-term
         fill("s2", "SELL", "3", "90", "2025-04-01", fees="0.5"))         # a loss, never replaced
    book(stack.store, "alice", fill("c1", "BUY", "0.5", "40000", "2025-01-05", symbol="BTC/USD", asset_class="CRYPTO"),
         fill("c2", "SELL", "0.5", "42000.555", "2025-06-05", symbol="BTC/USD", asset_class="CRYPTO", fees="3"))

    records = list(csv.DictReader(io.StringIO(export(stack, format="csv").text())))
    totals = export(stack).json()["totals"]
    stored = [d for p, d in stack.store.docs.items() if p.startswith("users/alice/tax_disposals/")]
    pending = [d for p, b in stack.store.docs.items() if p.startswith("users/alice/tax_books/")
               for d in book_pending_disposals(b)]

    def column(name):
        return sum((Decimal(r[name]) for r in records), Decimal(0))

    assert len(records) == 4 and {r["Status"] for r in records} == {"FINAL"}
    assert sorted(r["Term"] for r in records) == ["LONG", "SHORT", "SHORT", "SHORT"]
    assert column("Proceeds") == Decimal(totals["proceeds"]) == sum(
        round_money(Decimal(d["proceeds"])) for d in stored + pending)
    assert column("Cost or other basis") == Decimal(totals["cost_basis"]) == sum(
        round_money(Decimal(d["cost_basis"])) for d in stored + pending)
    assert column("Gain or (loss)") == Decimal(totals["gain_or_loss"])
    assert column("Gain or (loss)") == column("Proceeds") - column("Cost or other basis") + column(
        "Amount of adjustment")
    assert Decimal(totals["short_term"]["gain_or_loss"]) + Decimal(totals["long_term"]["gain_or_loss"]) == Decimal(
        totals["gain_or_loss"])
    assert [r["Date sold or disposed of"] for r in records] == sorted(
        (r["Date sold or disposed of"] for r in records), key=lambda d: (d[6:], d[:5]))


# ------------------------------------------------------------------------------ provisional


def test_a_loss_whose_window_is_still_open_is_provisional_until_it_closes(stack):
    # sold at a loss on 12/20/2025: a purchase up to 01/19/2026 could still wash it
    book(stack.store, "alice", fill("b1", "BUY", "10", "100", "2025-11-03"),
         fill("s1", "SELL", "10", "80", "2025-12-20"))

    before = export(stack).json()
    stack.clock.advance(14 * 86400)   # 2026-01-19: the last day a purchase could wash it
    on_last_day = export(stack).json()
    stack.clock.advance(86400)        # 2026-01-20: the window closed yesterday
    after = export(stack).json()
    csv_after = csv_rows(export(stack, format="csv"))

    assert before["provisional"] is True and before["disposals"][0]["status"] == "PROVISIONAL"
    assert before["totals"]["provisional"] == 1 and before["disposals"][0]["gain_or_loss"] == "-200.00"
    assert on_last_day["provisional"] is True
    assert after["provisional"] is False and after["disposals"][0]["status"] == "FINAL"
    assert csv_after[1][9] == "FINAL" and after["totals"]["provisional"] == 0


def test_a_pending_loss_of_a_book_that_never_traded_again_is_final_once_its_window_closed(stack):
    book(stack.store, "alice", fill("b1", "BUY", "10", "100", "2025-03-03"),
         fill("s1", "SELL", "10", "95", "2025-04-01"))
    assert book_pending_disposals(stack.store.docs["users/alice/tax_books/AAPL"])  # the book still holds it

    body = export(stack).json()

    assert [d["status"] for d in body["disposals"]] == ["FINAL"] and body["provisional"] is False


def test_a_pending_loss_also_found_final_is_reported_once(stack):
    # a fill landed between the read of the books and the read of the disposals
    book(stack.store, "alice", fill("b1", "BUY", "10", "100", "2025-12-01"),
         fill("s1", "SELL", "10", "95", "2025-12-22"))
    pending = book_pending_disposals(stack.store.docs["users/alice/tax_books/AAPL"])[0]
    stack.store.set_doc("users/alice/tax_disposals/AAPL--s1:b1", {**pending, "final": True})

    body = export(stack).json()

    assert [d["disposal_id"] for d in body["disposals"]] == ["AAPL--s1:b1"]
    assert body["disposals"][0]["status"] == "FINAL"


# ------------------------------------------------------------------------- open lots, shortfalls


def test_open_lots_are_listed_per_lot_as_csv_section_and_in_json(stack):
    hand_example(stack.store)
    book(stack.store, "alice", fill("e1", "BUY", "2", "1.1", "2024-06-03", symbol="EURUSD", asset_class="FOREX"))

    rows = csv_rows(export(stack, format="csv", section="open_lots"))
    lots = export(stack).json()["open_lots"]

    assert rows[0] == list(OPEN_LOTS_HEADER)
    assert rows[1:] == [["AAPL", "b1", "LONG", "6", "03/03/2025", "03/03/2025", "600.60", "100.1", "0.00",
                         "03/04/2026", "SHORT"],
                        ["EURUSD", "e1", "LONG", "2", "06/03/2024", "06/03/2024", "2.20", "1.1", "0.00",
                         "06/04/2025", "LONG"]]
    assert [(lot["symbol"], lot["quantity"], lot["term_if_sold"]) for lot in lots] == [("AAPL", "6", "SHORT"),
                                                                                        ("EURUSD", "2", "LONG")]


def test_open_lots_csv_has_a_header_even_without_lots(stack):
    assert csv_rows(export(stack, format="csv", section="open_lots")) == [list(OPEN_LOTS_HEADER)]
    assert csv_rows(export(stack, format="csv")) == [list(FORM_8949_HEADER)]


def book_without_short_selling(store, uid, *fills):
    """A class the product cannot short (issue 19: none today, every class can) or a record from
    before short lots: the fill's excess is stored as a ``LOT_SHORTFALL`` record."""
    from backend.execution.store_rules import disposal_path
    from backend.tax.state import plan_books

    plan = plan_books({}, [(uid, item) for item in fills], {}, short_selling=frozenset())
    for owner, doc_id, doc in plan.disposals:
        store.set_doc(disposal_path(owner, doc_id), doc)


def test_a_sell_without_lots_opens_a_short_lot_not_a_shortfall(stack):
    # Issue 19: this used to be a SHORTFALL; every class the product trades can be shorted.
    hand_example(stack.store)
    book(stack.store, "alice", fill("s9", "SELL", "3", "50", "2025-05-05", symbol="MSFT", fees="0.5"))

    body = export(stack).json()

    assert body["shortfalls"] == [] and body["totals"]["shortfalls"] == 0
    assert [(lot["symbol"], lot["position"], lot["quantity"], lot["cost_basis"]) for lot in body["open_lots"]
            if lot["symbol"] == "MSFT"] == [("MSFT", "SHORT", "3", "149.50")]


def test_a_sell_without_lots_is_reported_as_a_shortfall_never_dropped(stack):
    hand_example(stack.store)
    book_without_short_selling(stack.store, "alice",
                               fill("s9", "SELL", "3", "50", "2025-05-05", symbol="MSFT", fees="0.5"))

    rows = csv_rows(export(stack, format="csv"))
    body = export(stack).json()

    assert rows[-1] == ["3 MSFT", "", "05/05/2025", "149.50", "", "", "", "", "", "SHORTFALL", "", ""]
    assert body["shortfalls"] == [{"code": "LOT_SHORTFALL", "trade_id": "s9", "symbol": "MSFT", "quantity": "3",
                                   "date_sold": "05/05/2025", "proceeds": "149.50",
                                   "text": "LOT_SHORTFALL: trade=s9 symbol=MSFT qty=3"}]
    assert body["totals"]["shortfalls"] == 1 and body["totals"]["shortfall_proceeds"] == "149.50"
    assert body["totals"]["proceeds"] == "439.00"  # a shortfall has no basis: not in the gain totals


# --------------------------------------------------------------------------- scope: year, user


def test_only_disposals_sold_in_the_year_are_exported(stack):
    book(stack.store, "alice", fill("b1", "BUY", "10", "100", "2024-03-01"),
         fill("s1", "SELL", "2", "110", "2024-12-31", hour=20),
         fill("s2", "SELL", "3", "120", "2025-01-02"))
    book_without_short_selling(stack.store, "alice", fill("s3", "SELL", "1", "50", "2025-07-01", symbol="MSFT"))

    y2024 = export(stack, year="2024").json()
    y2025 = export(stack, year="2025").json()
    y2023 = export(stack, year="2023").json()

    assert [d["date_sold"] for d in y2024["disposals"]] == ["12/31/2024"] and y2024["shortfalls"] == []
    assert [d["date_sold"] for d in y2025["disposals"]] == ["01/02/2025"]
    assert [s["date_sold"] for s in y2025["shortfalls"]] == ["07/01/2025"]
    assert y2023["disposals"] == [] and y2023["shortfalls"] == [] and len(y2023["open_lots"]) == 1


def test_other_users_disposals_and_lots_are_never_visible(stack):
    hand_example(stack.store, "alice")
    book(stack.store, "bob", fill("b1", "BUY", "7", "10", "2025-01-02", symbol="SPY"),
         fill("s1", "SELL", "7", "11", "2025-02-02", symbol="SPY"),
         fill("b2", "BUY", "1", "10", "2025-02-03", symbol="SPY"))

    alice = export(stack).json()
    bob = export(stack, token="tok-bob").json()
    zed = export(stack, token="tok-zed").json()

    assert {d["symbol"] for d in alice["disposals"]} == {"AAPL"}
    assert {lot["symbol"] for lot in alice["open_lots"]} == {"AAPL"}
    assert {d["symbol"] for d in bob["disposals"]} == {"SPY"} and [lot["lot_id"] for lot in bob["open_lots"]] == ["b2"]
    assert zed["disposals"] == [] and zed["open_lots"] == []
    assert stack.get(EXPORT, query={"year": "2025", "uid": "bob"}).status == 400


# ------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("query, field", [
    ({}, "year"), ({"year": "25"}, "year"), ({"year": "abcd"}, "year"), ({"year": "2025.0"}, "year"),
    ({"year": "-2025"}, "year"), ({"year": "1899"}, "year"), ({"year": "20250"}, "year"), ({"year": ""}, "year"),
    ({"year": ["2025", "2024"]}, "year"), ({"year": "2025", "format": "xml"}, "format"),
    ({"year": "2025", "section": "open_lots"}, "section"),
    ({"year": "2025", "format": "csv", "section": "lots"}, "section"),
    ({"year": "2025", "limit": "10"}, "limit"),
])
def test_bad_parameters_are_400_naming_the_parameter(stack, query, field):
    response = stack.get(EXPORT, query=query)
    assert response.status == 400 and response.json()["error"]["field"] == field


def test_a_token_is_required(stack):
    response = stack.get(EXPORT, token=None, query={"year": "2025"})
    assert response.status == 401


# ------------------------------------------------------------------------ streaming and paging


class RecordingStore:
    """The in-memory store behind a hand-written proxy that records every page read."""

    def __init__(self, store):
        self.store = store
        self.calls: list[tuple[str, int]] = []

    def __getattr__(self, name):
        target = getattr(self.store, name)
        if not name.endswith("_page"):
            return target

        def page(*args, **kw):
            rows = target(*args, **kw)
            self.calls.append((name, kw["limit"], len(rows)))
            return rows

        return page


def test_the_export_is_streamed_from_bounded_pages(stack, monkeypatch):
    monkeypatch.setattr(tax_export, "PAGE_SIZE", 7)
    monkeypatch.setattr(tax_export, "CHUNK_ROWS", 5)
    book(stack.store, "alice", fill("b0", "BUY", "100", "10", "2025-01-02"),
         *[fill(f"s{i:02d}", "SELL", "1", "11", f"2025-02-{i + 1:02d}") for i in range(23)])
    recorder = RecordingStore(stack.store)
    app = ApiApp.with_instances(engine=SimpleNamespace(store=recorder, clock=stack.clock), verifier=stack.verifier)
    from backend.api.http import ApiRequest

    response = app.handle(ApiRequest("GET", EXPORT, {"Authorization": "Bearer tok-alice"},
                                     {"year": "2025", "format": "csv"}))
    calls_before_reading = list(recorder.calls)
    chunks = list(response.iter_bytes())

    assert {name for name, _, _ in calls_before_reading} == {"tax_books_page"}  # only the pending losses
    disposal_pages = [c for c in recorder.calls if c[0] == "tax_disposals_page"]
    assert [limit for _, limit, _ in recorder.calls] == [7] * len(recorder.calls)
    assert [n for _, _, n in disposal_pages] == [7, 7, 7, 2]
    assert len(chunks) >= 5  # header + one chunk per 5 rows: never one whole body
    rows = list(csv.reader(io.StringIO(b"".join(chunks).decode())))
    assert len(rows) == 24 and [r[2] for r in rows[1:]] == [f"02/{i + 1:02d}/2025" for i in range(23)]


def test_the_flask_bridge_streams_an_iterable_body():
    response = StreamingResponse(200, headers={"X-A": "1"}, chunks=iter([b"a,b\n", b"", b"1,2\n"]),
                                 media_type="text/csv; charset=utf-8")

    flask_response = to_flask_response(response)

    assert flask_response.is_streamed and flask_response.status_code == 200
    assert flask_response.headers["Content-Type"] == "text/csv; charset=utf-8" and flask_response.headers["X-A"] == "1"
    assert list(flask_response.response) == [b"a,b\n", b"1,2\n"]  # an empty chunk would end a chunked body


def test_a_failure_while_streaming_is_logged_and_aborts_the_body(stack, monkeypatch):
    stream = io.StringIO()
    logs.set_stream(stream)
    hand_example(stack.store)

    def broken(*args, **kw):
        raise RuntimeError("firestore went away")

    response = stack.get(EXPORT, query={"year": "2025"})
    monkeypatch.setattr(stack.store, "tax_disposals_page", broken)

    with pytest.raises(RuntimeError):
        response.read()
    errors = [json.loads(line) for line in stream.getvalue().splitlines() if '"api.stream_error"' in line]
    assert len(errors) == 1 and errors[0]["severity"] == "ERROR" and errors[0]["error"] == "firestore went away"
