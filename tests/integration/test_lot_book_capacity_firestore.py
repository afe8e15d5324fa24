"""The lot-book capacity guard on the official Firestore emulator, which enforces the 1 MiB document
limit (``maximum entity size is 1048576 bytes``) on exactly the size ``record_size`` estimates.

- a book built near the limit: a new buy is refused with ``LOT_BOOK_FULL`` before anything is written
  or sent (engine; an intent document gets a coded rejection; over HTTP with real ID tokens a 409 LOT_BOOK_FULL on
  ``qty`` and no order at the local Alpaca venue);
- a sell on the same full book is accepted and shrinks it;
- a group whose leg's book is full is rejected before the first leg;
- a fill whose book would pass the limit anyway (admitted under an older limit) is still recorded:
  the emulator would refuse the book's next state, so the lot step alone is refused and marked.
"""
from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from google.api_core.exceptions import InvalidArgument

from backend.adapters.firestore_store import FirestoreStore
from backend.adapters.paper_broker import PaperBroker
from backend.domain.clock import ManualClock
from backend.domain.storable import FIRESTORE_MAX_DOC_BYTES, record_size
from backend.execution import lot_capacity as cap
from backend.execution.intent import OrderIntent
from backend.service.intake import handle_intent_document
from backend.tax.model import Fill
from backend.tax.state import apply_fill_to_state, book_lots, pack_list, packed_state
from tests.support.alpaca_server import LocalAlpacaServer
from tests.support.api_stack import FunctionsServer, alpaca_equity_env, emulator_env, http_call
from tests.support.group_harness import CrashingBroker, approve, rpm_output
from tests.unit.test_lot_book_capacity import CTX, LABEL, PATH, book_of, book_of_size, engine_on, full_book, order


@pytest.fixture
def world(db):
    clock = ManualClock()
    store = FirestoreStore(db)
    venue = CrashingBroker(PaperBroker(clock=clock))
    return db, venue, engine_on(store, venue, clock), clock


def written(db, tenant: str = "acme") -> dict[str, list[str]]:
    out = {}
    for name in ("order_intents", "ledger_trades", "execution_groups", "exposure", "risk_days"):
        ids = [d.id for d in db.collection(f"tenants/{tenant}/{name}").stream()]
        if ids:
            out[name] = ids
    return out


def test_the_emulator_refuses_a_book_just_past_1_mib_where_record_size_says(db):
    db.document(PATH).set(book_of_size(FIRESTORE_MAX_DOC_BYTES - 64))
    with pytest.raises(InvalidArgument, match="maximum entity size"):
        db.document(PATH).set(book_of_size(FIRESTORE_MAX_DOC_BYTES + 64))


def test_a_buy_on_a_full_book_is_refused_with_the_code_and_nothing_is_written_or_sent(world):
    db, venue, engine, _ = world
    state = full_book()
    db.document(PATH).set(state)

    with pytest.raises(cap.LotBookFull) as refused:
        engine.execute_intent(order("b1", "buy", "1"), CTX)

    assert refused.value.field == "qty"
    assert refused.value.reason.startswith(f"LOT_BOOK_FULL: {len(book_lots(state)):,} open lots of AAPL")
    assert venue.count("submit_order") == 0 and written(db) == {}
    assert db.document(PATH).get().to_dict() == state


def test_a_sell_on_the_same_full_book_is_accepted_and_shrinks_it(world):
    db, venue, engine, _ = world
    state = full_book()
    db.document(PATH).set(state)

    result = engine.execute_intent(order("s1", "sell", "25"), CTX)

    assert result.status == "placed" and venue.count("submit_order") == 1
    book = db.document(PATH).get().to_dict()
    assert len(book_lots(book)) == len(book_lots(state)) - 25
    assert record_size(book, PATH) < record_size(state, PATH)
    assert db.document("tenants/acme/ledger_trades/s1").get().to_dict()["status"] == "placed"


def test_a_buy_on_a_packed_book_at_the_admission_limit_is_admitted_and_its_fill_commits(world):
    db, venue, engine, _ = world
    state = book_of_size(cap.admission_limit() - 16)
    db.document(PATH).set(state)

    result = engine.execute_intent(order("b1", "buy", "1"), CTX)

    assert result.status == "placed" and venue.count("submit_order") == 1
    book = db.document(PATH).get().to_dict()
    assert len(book_lots(book)) == len(book_lots(state)) + 1 and isinstance(book["lots_packed"], str)
    assert record_size(book, PATH) - record_size(state, PATH) <= cap.fill_growth_bytes()


def test_a_list_form_full_book_is_refused_as_packed_and_a_sell_rewrites_it_packed(world):
    db, venue, engine, _ = world
    # written before issue 17: 500 lots as maps, and corporate-action history that brings the size
    # it will have packed just past the admission limit (the stored list form is larger still)
    unpadded = record_size(packed_state(book_of(500, packed=False, pad=1)), PATH)
    old = book_of(500, packed=False, pad=1 + cap.admission_limit() + 100 - unpadded)
    assert cap.admission_limit() < record_size(packed_state(old), PATH) < record_size(old, PATH) \
        < cap.BOOK_WRITE_LIMIT
    db.document(PATH).set(old)

    with pytest.raises(cap.LotBookFull) as refused:
        engine.execute_intent(order("b1", "buy", "1"), CTX)
    assert refused.value.reason.startswith(f"LOT_BOOK_FULL: {len(old['lots']):,} open lots of AAPL")
    assert venue.count("submit_order") == 0 and written(db) == {}

    result = engine.execute_intent(order("s1", "sell", "25"), CTX)

    assert result.status == "placed" and venue.count("submit_order") == 1
    book = db.document(PATH).get().to_dict()
    assert book["lots"] is None and book["pending"] is None and isinstance(book["lots_packed"], str)
    assert book_lots(book) == old["lots"][25:]
    assert record_size(book, PATH) < record_size(packed_state(old), PATH) < record_size(old, PATH)


def test_an_intent_document_on_a_full_book_gets_a_coded_rejection_record(world):
    db, venue, engine, _ = world
    db.document(PATH).set(full_book())
    data = {"uid": "u1", "status": "new", "kind": "single",
            "intent": {"strategy_id": "s1", "broker_account_id": "acct", "symbol": "AAPL", "side": "buy",
                       "qty": "1"}}
    db.document("tenants/acme/order_intents/doc-1").set(data)

    out = handle_intent_document(engine, "acme", "doc-1", data)

    stored = db.document("tenants/acme/order_intents/doc-1").get().to_dict()
    assert out["status"] == "rejected" and stored["status"] == "rejected"
    error = stored["result"]["error"]
    assert error["field"] == "qty" and error["reason"].startswith("LOT_BOOK_FULL: ")
    assert venue.count("submit_order") == 0 and written(db) == {"order_intents": ["doc-1"]}


def test_a_group_whose_leg_book_is_full_is_refused_before_the_first_leg(world):
    db, venue, engine, clock = world
    db.document(PATH).set(full_book())
    legs = [{"leg_id": "leg_001", "symbol": "AAPL", "direction": 1, "units": 10, "asset_class": "EQUITY"},
            {"leg_id": "leg_002", "symbol": "MSFT", "direction": -1, "units": 5, "asset_class": "EQUITY"}]
    request = {"strategy_id": "pairs", "legs": legs, "rpm_output": rpm_output(legs, clock.now()),
               "broker_account_id": "acct"}
    approve(engine.store, request)

    group = engine.execute_group(request, CTX, group_id="g1")

    assert group.status.value == "REJECTED" and group.rejection.code.value == "LOT_BOOK_FULL"
    assert group.rejection.detail.startswith("leg_001 ")
    assert venue.count("submit_order") == 0
    stored = db.document("tenants/acme/execution_groups/g1").get().to_dict()
    assert stored["rejection"]["code"] == "LOT_BOOK_FULL"
    assert not [d for d in db.collection("tenants/acme/ledger_trades").stream()
                if d.to_dict().get("kind") == "group_fill"]


def test_a_fill_on_a_book_the_emulator_cannot_hold_is_recorded_and_its_lot_step_marked(world, monkeypatch):
    db, venue, engine, clock = world
    state = book_of_size(FIRESTORE_MAX_DOC_BYTES - 40)  # admitted under an older, looser limit
    db.document(PATH).set(state)
    monkeypatch.setattr(cap, "admission_limit", lambda orders=1: 10 * FIRESTORE_MAX_DOC_BYTES)
    # the premise: the book's next state is refused by Firestore (the finish used to fail on it forever)
    nxt = apply_fill_to_state(state, Fill(trade_id="probe", symbol="AAPL", side="buy", qty=Decimal(1),
                                          price=Decimal("190"), timestamp=clock.now() + timedelta(seconds=1),
                                          asset_class="EQUITY", book=LABEL)).state
    nxt = {**nxt, "method": "FIFO", "pending_disposals_packed": pack_list([])}  # as the finish writes it (plan_books)
    assert record_size(nxt, PATH) > FIRESTORE_MAX_DOC_BYTES
    with pytest.raises(InvalidArgument, match="maximum entity size"):
        db.document("users/u1/tax_books/ABCD").set(nxt)

    result = engine.execute_intent(order("b1", "buy", "1"), CTX)

    assert result.status == "placed" and venue.count("submit_order") == 1
    intent = db.document("tenants/acme/order_intents/b1").get().to_dict()
    assert intent["status"] == "placed" and intent["lease_until"] is None  # final: the sweeper has nothing to retry
    assert db.document("tenants/acme/ledger_trades/b1").get().to_dict()["status"] == "placed"
    assert db.document("users/u1/portfolio/history/trades/b1").get().exists
    exposure = db.document("tenants/acme/exposure/acct__AAPL").get().to_dict()
    assert exposure["position_nanos"] == 1_000_000_000
    assert db.document(PATH).get().to_dict() == state
    marker = db.document(f"users/u1/tax_disposals/{LABEL}--AAPL--overflow-b1").get().to_dict()
    assert marker["code"] == "LOT_BOOK_OVERFLOW" and marker["trade_id"] == "b1" and marker["side"] == "BUY"


# ----------------------------------------------------------------- over HTTP, the real stack
@pytest.fixture(scope="module")
def alpaca_venue():
    with LocalAlpacaServer("default") as venue:
        yield venue


@pytest.fixture(scope="module")
def alpaca_server(firestore_emulator, auth_emulator, alpaca_venue):
    env = emulator_env(firestore_emulator, auth_emulator, **alpaca_equity_env(alpaca_venue))
    with FunctionsServer(env) as server:
        yield server


@pytest.mark.slow
def test_over_http_a_buy_on_a_full_book_is_a_409_on_qty_and_no_order_reaches_the_venue(
        alpaca_server, alpaca_venue, auth, db):
    email = f"dca-{uuid.uuid4().hex[:8]}@example.com"
    uid, _ = auth.sign_up(email, "secret-pw-1")
    auth.set_claims(uid, {"tenant_id": "acme", "role": "trader"})
    token = auth.sign_in(email, "secret-pw-1")
    path = f"users/{uid}/tax_books/SPY"
    state = book_of_size(cap.admission_limit() + 2_000, symbol="SPY", label="acme:acct1")
    db.document(path).set(state)
    before = len(alpaca_venue.venue.orders())
    headers = {"Authorization": f"Bearer {token}"}
    body = {"strategy_id": "dca", "broker_account_id": "acct1", "symbol": "SPY", "side": "buy", "qty": "1"}

    status, _, reply = http_call("POST", alpaca_server.url + "/execute", body, headers)

    assert status == 409, reply
    assert reply["error"]["code"] == "LOT_BOOK_FULL"
    assert reply["error"]["field"] == "qty" and reply["error"]["reason"].startswith("LOT_BOOK_FULL: ")
    assert len(alpaca_venue.venue.orders()) == before
    assert not list(db.collection("tenants/acme/ledger_trades").stream())
    assert not list(db.collection("tenants/acme/order_intents").stream())

    status, _, sold = http_call("POST", alpaca_server.url + "/execute", {**body, "side": "sell", "qty": "5"},
                                headers)

    assert status == 201 and sold["status"] == "placed", sold
    assert len(book_lots(db.document(path).get().to_dict())) == len(book_lots(state)) - 5


def test_a_loss_sale_that_grows_a_full_book_past_the_limit_is_not_refused_and_is_recorded(world):
    db, venue, engine, _ = world
    # lots bought at 500: a sale at the paper venue's ~190 is a loss, and every lot it closes becomes a
    # pending wash-sale entry (larger than the lot): the sale grows the book instead of shrinking it
    state = book_of_size(cap.BOOK_WRITE_LIMIT - 2_000, basis="500.00")
    db.document(PATH).set(state)
    named = {lot["lot_id"]: "1" for lot in book_lots(state)[:20]}
    sale = OrderIntent("s1", "acct", "AAPL", "sell", "20", intent_id="loss-1", metadata={"lot_ids": named})

    result = engine.execute_intent(sale, CTX)

    assert result.status == "placed" and venue.count("submit_order") == 1  # an exit is never refused
    assert db.document("tenants/acme/order_intents/loss-1").get().to_dict()["status"] == "placed"
    assert db.document("tenants/acme/ledger_trades/loss-1").get().exists
    assert db.document(PATH).get().to_dict() == state
    marker = db.document(f"users/u1/tax_disposals/{LABEL}--AAPL--overflow-loss-1").get().to_dict()
    assert marker["side"] == "SELL" and {x["lot_id"] for x in marker["lot_ids"]} == set(named)
