"""Issue 16 store operations, the same behaviours on the in-memory store and on Firestore (emulator):
``record_tax_election`` (users/<uid>/config/tax), ``tax_books_for_symbol`` (every user's book of a
symbol, paged by path) and ``apply_corporate_action`` (record first, then each book, idempotent).

The lot books are stored states built by the tax core (``backend.tax.state.apply_fill_to_state``),
written raw, as a reader of the database finds them."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from backend.domain.errors import InvalidInput
from backend.tax import Fill
from backend.tax.corporate import CorporateAction, CorporateActionConflict
from backend.tax.election import ElectionConflict
from backend.tax.state import apply_fill_to_state, book_key, book_lots

NOW = datetime(2026, 1, 5, 14, 30, tzinfo=timezone.utc)


def fill(trade_id, side, qty, price, day, symbol="AAPL", book="acme:a"):
    return Fill(trade_id=trade_id, symbol=symbol, side=side, qty=Decimal(qty), price=Decimal(price),
                timestamp=datetime.fromisoformat(f"{day}T15:00:00+00:00"), asset_class="EQUITY", book=book)


def put_book(h, uid, *fills):
    state = None
    for item in fills:
        state = apply_fill_to_state(state, item).state
    h.put(f"users/{uid}/tax_books/{book_key(fills[0].symbol)}", state)


def split(action_id="s1", ratio="2", symbol="AAPL", effective=date(2026, 1, 5)):
    return CorporateAction(action_id=action_id, kind="SPLIT", symbol=symbol, effective=effective,
                           ratio=Decimal(ratio))


def quantities(h, uid, symbol="AAPL"):
    return [lot["qty"] for lot in book_lots(h.raw(f"users/{uid}/tax_books/{symbol}"))]


# ------------------------------------------------------------------------------ elections


def test_an_election_is_created_then_appended_forward_only(h):
    first = h.store.record_tax_election("u1", "HIFO", now=NOW)
    later = h.store.record_tax_election("u1", "LIFO", now=NOW + timedelta(days=1), account="acme:a")

    assert not first.replayed and not later.replayed
    doc = h.raw("users/u1/config/tax")
    assert [(e["method"], e["effective_at"], e.get("account")) for e in doc["elections"]] == [
        ("HIFO", "2026-01-05T14:30:00+00:00", None), ("LIFO", "2026-01-06T14:30:00+00:00", "acme:a")]


def test_an_election_keeps_the_other_fields_of_the_document(h):
    h.put("users/u1/config/tax", {"lot_method": "LIFO", "note": "kept"})

    h.store.record_tax_election("u1", "HIFO", now=NOW)

    doc = h.raw("users/u1/config/tax")
    assert doc["note"] == "kept" and doc["lot_method"] == "LIFO"
    assert [e["method"] for e in doc["elections"]] == ["LIFO", "HIFO"]  # the legacy method, from the beginning


def test_a_back_dated_election_is_refused_and_nothing_is_written(h):
    with pytest.raises(InvalidInput) as refused:
        h.store.record_tax_election("u1", "HIFO", now=NOW, effective_at=NOW - timedelta(seconds=1))

    assert refused.value.field == "effective_at"
    assert h.raw("users/u1/config/tax") is None


def test_a_retried_election_is_recorded_once_and_a_reused_key_is_a_conflict(h):
    h.store.record_tax_election("u1", "HIFO", now=NOW, request_key="e-1")
    again = h.store.record_tax_election("u1", "HIFO", now=NOW + timedelta(minutes=1), request_key="e-1")

    with pytest.raises(ElectionConflict):
        h.store.record_tax_election("u1", "FIFO", now=NOW + timedelta(minutes=2), request_key="e-1")
    assert again.replayed and again.election["effective_at"] == "2026-01-05T14:30:00+00:00"
    assert len(h.raw("users/u1/config/tax")["elections"]) == 1


# ------------------------------------------------------------------------------ books of a symbol


def test_books_of_a_symbol_are_listed_across_users_by_path_in_pages(h):
    for uid in ("u2", "u1", "u10", "u1-b"):
        put_book(h, uid, fill(f"b-{uid}", "BUY", "1", "10", "2026-01-02"))
    put_book(h, "u1", fill("m1", "BUY", "1", "10", "2026-01-02", symbol="MSFT"))

    first = h.store.tax_books_for_symbol("AAPL", after=None, limit=3)
    rest = h.store.tax_books_for_symbol("AAPL", after=first[-1][0], limit=3)

    paths = [path for path, _ in first + rest]
    assert sorted(paths, key=lambda p: p.split("/")) == paths and len(paths) == 4
    assert {p.split("/")[1] for p in paths} == {"u1", "u1-b", "u10", "u2"}
    assert all(doc["symbol"] == "AAPL" for _, doc in first + rest)


# ------------------------------------------------------------------------------ corporate actions


def test_a_split_is_recorded_then_applied_to_the_tenants_books_once(h):
    put_book(h, "u1", fill("b1", "BUY", "10", "100", "2026-01-02"))
    put_book(h, "u2", fill("b2", "BUY", "10", "100", "2026-01-02", book="globex:g"))

    record, replayed = h.store.apply_corporate_action("acme", split(), recorded_by="admin", now=NOW)
    again, replayed_again = h.store.apply_corporate_action("acme", split(), recorded_by="admin", now=NOW)

    assert (replayed, replayed_again) == (False, True)
    assert record["status"] == "APPLIED" and record["books"] == {"applied": 1, "refused": 0}
    assert again == record
    assert quantities(h, "u1") == ["20"] and quantities(h, "u2") == ["10"]
    stored = h.raw("tenants/acme/corporate_actions/s1")
    assert stored["action"] == {"action_id": "s1", "kind": "SPLIT", "symbol": "AAPL", "effective": "2026-01-05",
                                "ratio": "2"} and stored["recorded_by"] == "admin"
    assert [e["action_id"] for e in h.raw("users/u1/tax_books/AAPL")["corporate_actions"]] == ["acme/s1"]


def test_an_interrupted_action_resumes_without_applying_twice(h):
    put_book(h, "u1", fill("b1", "BUY", "10", "100", "2026-01-02"))
    put_book(h, "u2", fill("b2", "BUY", "10", "100", "2026-01-02"))
    h.store.apply_corporate_action("acme", split(), recorded_by="admin", now=NOW)
    record = h.raw("tenants/acme/corporate_actions/s1")
    h.put("tenants/acme/corporate_actions/s1", {**record, "status": "APPLYING"})  # as if it died after the books

    resumed, replayed = h.store.apply_corporate_action("acme", split(), recorded_by="admin", now=NOW)

    assert replayed and resumed["status"] == "APPLIED" and resumed["books"] == {"applied": 2, "refused": 0}
    assert quantities(h, "u1") == ["20"] and quantities(h, "u2") == ["20"]


def test_the_same_action_id_for_another_action_is_a_conflict_and_changes_nothing(h):
    put_book(h, "u1", fill("b1", "BUY", "10", "100", "2026-01-02"))
    h.store.apply_corporate_action("acme", split(), recorded_by="admin", now=NOW)

    with pytest.raises(CorporateActionConflict):
        h.store.apply_corporate_action("acme", split(ratio="3"), recorded_by="admin", now=NOW)

    assert quantities(h, "u1") == ["20"]


def test_a_symbol_change_moves_the_book_in_one_commit(h):
    put_book(h, "u1", fill("b1", "BUY", "10", "100", "2026-01-02", symbol="FB"))
    action = CorporateAction(action_id="c1", kind="SYMBOL_CHANGE", symbol="FB", effective=date(2026, 1, 5),
                             new_symbol="META")

    record, _ = h.store.apply_corporate_action("acme", action, recorded_by="admin", now=NOW)

    assert record["books"] == {"applied": 1, "refused": 0}
    assert h.raw("users/u1/tax_books/FB") is None
    moved = h.raw("users/u1/tax_books/META")
    assert moved["symbol"] == "META" and [(lot["symbol"], lot["qty"]) for lot in book_lots(moved)] == [("META", "10")]


def test_a_mixed_book_is_refused_with_its_reason_on_the_record(h):
    put_book(h, "u1", fill("b1", "BUY", "10", "100", "2026-01-02"), fill("b2", "BUY", "1", "100", "2026-01-02",
                                                                      book="globex:g"))

    record, _ = h.store.apply_corporate_action("acme", split(), recorded_by="admin", now=NOW)

    assert record["books"] == {"applied": 0, "refused": 1}
    assert record["refusals"][0]["uid"] == "u1" and record["refusals"][0]["reason"].startswith("MIXED_BOOK")
    assert quantities(h, "u1") == ["10", "1"]


@pytest.mark.parametrize("kind", ["SPLIT", "SYMBOL_CHANGE"])
def test_an_action_walks_every_page_of_books(h, kind):
    from backend.tax import admin_writes

    for uid in ("u1", "u2", "u3"):
        put_book(h, uid, fill(f"b-{uid}", "BUY", "10", "100", "2026-01-02", symbol="FB"))
    action = (split(symbol="FB") if kind == "SPLIT" else
              CorporateAction(action_id="c1", kind="SYMBOL_CHANGE", symbol="FB", effective=date(2026, 1, 5),
                              new_symbol="META"))

    record, _ = admin_writes.apply_corporate_action(h.store, "acme", action, recorded_by="admin", now=NOW,
                                                    page_size=1)

    assert record["books"] == {"applied": 3, "refused": 0}
    symbol, qty = ("FB", "20") if kind == "SPLIT" else ("META", "10")
    assert [quantities(h, uid, symbol) for uid in ("u1", "u2", "u3")] == [[qty]] * 3
