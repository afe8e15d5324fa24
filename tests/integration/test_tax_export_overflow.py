"""LOT_BOOK_OVERFLOW markers in the tax export, on the official Firestore emulator.

A lot book admitted under an older, looser limit sits just under Firestore's 1 MiB: a buy and a loss
sale on it fill at the paper venue and are recorded (ledger, history, exposure), but their lot steps
are refused and each leaves a ``LOT_BOOK_OVERFLOW`` marker in ``users/u1/tax_disposals`` (the real
finish path, ``store_writes._overflow_ops``). Then ``GET /portfolio/tax-lots/export`` through the
real API app and the Firestore store:

- JSON lists both markers in ``shortfalls`` (the buy with ``date_acquired`` and null proceeds, the
  sell with ``date_sold`` and its net proceeds) and counts them in ``totals.lot_book_overflows``;
- CSV ``section=disposals`` has one ``LOT_BOOK_OVERFLOW`` row each;
- TXF is a 409 ``LOT_BOOK_INCOMPLETE`` naming the count, before any byte (also for the previous year:
  a buy in the 30 days after it could have washed a December loss; not for the year before that);
- ``as_of`` on the markers' day is a 409 ``AS_OF_NOT_RECONSTRUCTIBLE`` naming a marker; the day
  before is reconstructed (the markers traded after it change nothing of it).
"""
from __future__ import annotations

import csv
import io
from decimal import ROUND_HALF_UP, Decimal

import pytest

from backend.adapters.firestore_store import FirestoreStore
from backend.adapters.paper_broker import PaperBroker
from backend.api.app import ApiApp
from backend.api.http import StreamingResponse
from backend.api.models import TaxExport
from backend.domain.clock import ManualClock
from backend.domain.storable import FIRESTORE_MAX_DOC_BYTES, record_size
from backend.execution import lot_capacity as cap
from backend.execution.intent import OrderIntent
from backend.tax import FORM_8949_HEADER
from backend.tax.state import book_lots
from tests.support.api_stack import ApiStack, FakeVerifier
from tests.support.group_harness import CrashingBroker
from tests.unit.test_lot_book_capacity import CTX, LABEL, PATH, book_of, engine_on, order

pytestmark = pytest.mark.emulator

EXPORT = "/portfolio/tax-lots/export"
BUY_MARKER = f"users/u1/tax_disposals/{LABEL}--AAPL--overflow-b1"
SELL_MARKER = f"users/u1/tax_disposals/{LABEL}--AAPL--overflow-loss-1"


@pytest.fixture(scope="module")
def overflowed(firestore_emulator):
    """One Firestore project with the full book and the two fills whose lot steps were refused (built
    once for the module: the book is ~1 MiB), the API stack over it, and the book as stored."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    from tests.conftest import PROJECT_ID

    firestore_emulator.reset(PROJECT_ID)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FIRESTORE_EMULATOR_HOST", firestore_emulator.host)
        env.setenv("GOOGLE_CLOUD_PROJECT", PROJECT_ID)
        env.setenv("GCLOUD_PROJECT", PROJECT_ID)
        db = firestore.Client(project=PROJECT_ID, credentials=AnonymousCredentials())
        clock = ManualClock()  # 2026-01-05T14:30Z: trade date 2026-01-05 in New York
        store = FirestoreStore(db)
        venue = CrashingBroker(PaperBroker(clock=clock))
        engine = engine_on(store, venue, clock)
        state = full_book_without_history()
        db.document(PATH).set(state)
        with pytest.MonkeyPatch.context() as patch:  # admitted under an older, looser limit
            patch.setattr(cap, "admission_limit", lambda orders=1: 10 * FIRESTORE_MAX_DOC_BYTES)
            bought = engine.execute_intent(order("b1", "buy", "1"), CTX)
            named = {lot["lot_id"]: "1" for lot in book_lots(state)[:20]}
            sold = engine.execute_intent(OrderIntent("s1", "acct", "AAPL", "sell", "20", intent_id="loss-1",
                                                     metadata={"lot_ids": named}), CTX)
        assert bought.status == "placed" and sold.status == "placed"
        verifier = FakeVerifier()
        verifier.add("tok-u1", uid="u1", tenant_id="acme", role="trader")
        app = ApiApp.with_instances(engine=engine, verifier=verifier)
        try:
            yield ApiStack(app=app, engine=engine, broker=venue, store=store, clock=clock, verifier=verifier,
                           default_token="tok-u1"), db, state
        finally:
            db.close()
            firestore_emulator.reset(PROJECT_ID)


def full_book_without_history() -> dict:
    """The most lots bought at 500 (a sale at the paper venue's ~190 is a loss that grows the book)
    that Firestore still stores: over the finish's write limit, so any growth overflows. No padding
    history (``book_of_size`` pads with corporate-action entries the as-of reader would refuse)."""
    low, high = 1, 6_000
    while low < high:  # the largest n whose book stores within 1 MiB - 64 bytes
        mid = (low + high + 1) // 2
        if record_size(book_of(mid, basis="500.00"), PATH) <= FIRESTORE_MAX_DOC_BYTES - 64:
            low = mid
        else:
            high = mid - 1
    state = book_of(low, basis="500.00")
    assert record_size(state, PATH) > cap.BOOK_WRITE_LIMIT
    return state


def get(api, **query):
    return api.get(EXPORT, query={"year": "2026", **query})


def net_proceeds(marker) -> str:
    """qty x price x multiplier - fees, half-up to cents (by hand, not through the export's code)."""
    gross = Decimal(marker["qty"]) * Decimal(marker["price"]) * Decimal(marker["multiplier"] or "1")
    return str((gross - Decimal(marker["fees"])).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def test_the_premise_both_fills_are_recorded_and_marked_and_the_book_is_unchanged(overflowed):
    api, db, state = overflowed
    buy, sell = db.document(BUY_MARKER).get().to_dict(), db.document(SELL_MARKER).get().to_dict()

    assert buy["code"] == sell["code"] == "LOT_BOOK_OVERFLOW"
    assert (buy["side"], buy["trade_date"], sell["side"]) == ("BUY", "2026-01-05", "SELL")
    assert (Decimal(buy["qty"]), Decimal(sell["qty"])) == (1, 20)
    assert db.document(PATH).get().to_dict() == state
    assert db.document("tenants/acme/ledger_trades/loss-1").get().exists


def test_json_lists_both_markers_as_gaps_with_their_fields_and_counts_them(overflowed):
    api, db, state = overflowed
    buy, sell = db.document(BUY_MARKER).get().to_dict(), db.document(SELL_MARKER).get().to_dict()

    response = get(api)
    body = response.json()

    assert response.status == 200 and isinstance(response, StreamingResponse)
    TaxExport.model_validate(body)
    assert body["shortfalls"] == [  # by (trade date, document id): ...overflow-b1 < ...overflow-loss-1
        {"code": "LOT_BOOK_OVERFLOW", "trade_id": "b1", "symbol": "AAPL", "side": "BUY", "quantity": buy["qty"],
         "date_acquired": "01/05/2026", "proceeds": None, "text": buy["text"], "account": LABEL},
        {"code": "LOT_BOOK_OVERFLOW", "trade_id": "loss-1", "symbol": "AAPL", "side": "SELL", "quantity": sell["qty"],
         "date_sold": "01/05/2026", "proceeds": net_proceeds(sell), "text": sell["text"], "account": LABEL}]
    assert Decimal(body["shortfalls"][1]["proceeds"]) > 0
    totals = body["totals"]
    assert totals["lot_book_overflows"] == 2
    assert totals["shortfalls"] == 0 and totals["shortfall_proceeds"] == "0.00"
    assert totals["disposals"] == 0 and body["disposals"] == []  # the sale's lot step never ran
    assert totals["open_lots"] == len(book_lots(state))


def test_csv_has_one_lot_book_overflow_row_per_marker_after_the_other_rows(overflowed):
    api, db, _ = overflowed
    sell = db.document(SELL_MARKER).get().to_dict()

    response = get(api, format="csv")
    rows = list(csv.reader(io.StringIO(response.text())))

    assert response.status == 200
    assert rows == [list(FORM_8949_HEADER),
                    ["1 AAPL", "01/05/2026", "", "", "", "", "", "", "", "LOT_BOOK_OVERFLOW", "", ""],
                    ["20 AAPL", "", "01/05/2026", net_proceeds(sell), "", "", "", "", "", "LOT_BOOK_OVERFLOW", "",
                     ""]]


@pytest.mark.parametrize("year, in_year", [("2026", 2), ("2025", 0)])
def test_txf_is_refused_409_naming_the_count_before_any_byte(overflowed, year, in_year):
    api, _, _ = overflowed

    response = get(api, year=year, format="txf")
    omitted = get(api, year=year, format="txf", digital_assets="omit")

    assert not isinstance(response, StreamingResponse)  # refused before the response started
    assert response.status == 409 and omitted.status == 409
    error = response.json()["error"]
    assert error["code"] == "LOT_BOOK_INCOMPLETE" and error["field"] == "format"
    assert error["reason"].startswith("2 fill(s) traded up to ")
    assert f"{in_year} of them in {year}" in error["reason"] and "LOT_BOOK_OVERFLOW" in error["reason"]


def test_a_year_the_markers_cannot_change_still_gets_its_txf(overflowed):
    api, _, _ = overflowed

    response = get(api, year="2024", format="txf")

    assert response.status == 200 and isinstance(response, StreamingResponse)
    assert response.text().startswith("V042")


def test_as_of_the_markers_day_is_refused_and_the_day_before_is_reconstructed(overflowed):
    api, _, state = overflowed

    refused = get(api, as_of="2026-01-05")
    before = get(api, as_of="2026-01-04")

    assert refused.status == 409 and not isinstance(refused, StreamingResponse)
    error = refused.json()["error"]
    assert error["code"] == "AS_OF_NOT_RECONSTRUCTIBLE" and error["field"] == "as_of"
    assert "LOT_BOOK_OVERFLOW marker" in error["reason"] and "--AAPL--overflow-" in error["reason"]
    assert "traded 2026-01-05" in error["reason"]
    body = before.json()
    assert before.status == 200 and body["open_lots_as_of"] == "2026-01-04"
    assert len(body["open_lots"]) == len(book_lots(state))
