"""Issue 17: a lot book's lists are stored packed (``backend.tax.state.pack_list``), and a book
written before (``lots`` / ``pending`` / ``pending_disposals`` as lists of maps) keeps working: it is
read as it is and rewritten packed by its next fill — the same on the in-memory store and on
Firestore (emulator)."""
from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from backend.tax.state import (PACKED_FIELDS, apply_fill_to_state, book_lots, book_pending, book_pending_disposals,
                               plan_books)
from tests.contract.test_store_contract import finish, tax_fill

PATH = "users/alice/tax_books/AAPL"


def list_form(doc):
    """The document as it was written before issue 17: the lists as lists of maps, nothing packed."""
    out = {k: v for k, v in doc.items() if k not in PACKED_FIELDS.values() and k != "updated_server_at"}
    out.update(lots=book_lots(doc), pending=book_pending(doc), pending_disposals=book_pending_disposals(doc))
    return out


def fill_on(h, intent_id, side, qty, price, days):
    h.store.finish(finish(intent_id, claimed=False, tax=tax_fill(f"L-{intent_id}", side, qty, price, days=days)))


def test_a_list_form_book_is_read_and_its_next_fill_rewrites_it_packed(h):
    fill_on(h, "b1", "buy", "10", "100", 0)
    fill_on(h, "s1", "sell", "4", "80", 1)  # a loss: pending until a purchase washes it or 30 days pass
    packed = h.raw(PATH)
    assert isinstance(packed["lots_packed"], str) and "lots" not in packed
    old = list_form(packed)
    assert [lot["qty"] for lot in old["lots"]] == ["6"] and len(old["pending"]) == len(old["pending_disposals"]) == 1
    h.put(PATH, old)  # as a book written before issue 17 is stored

    (key, listed), = h.store.tax_books_page("alice", after=None, limit=10)
    assert key == "AAPL" and book_lots(listed) == book_lots(packed)
    assert book_pending(listed) == book_pending(packed)
    assert book_pending_disposals(listed) == book_pending_disposals(packed)

    fill_on(h, "b2", "buy", "3", "90", 2)  # washes 3 of the 4 shares' loss

    book = h.raw(PATH)
    assert not any(book.get(name) for name in PACKED_FIELDS)  # the list fields are cleared
    assert all(isinstance(book[field], str) for field in PACKED_FIELDS.values())
    label = book_lots(packed)[0]["book"]
    expected = plan_books({("alice", "AAPL"): packed},
                          [("alice", replace(tax_fill("L-b2", "buy", "3", "90", days=2), book=label))],
                          {}).states[("alice", "AAPL")]
    for field in PACKED_FIELDS.values():  # exactly what the packed book would have become
        assert book[field] == expected[field], field
    lots = book_lots(book)
    assert [(lot["qty"], lot["basis"], lot["wash_adjustment"]) for lot in lots] == [
        ("6", "600", "0"), ("3", "330", "60")]  # the replacement carries 3/4 of the 80 loss
    assert [Decimal(p["remaining_qty"]) for p in book_pending(book)] == [Decimal(1)]

    fill_on(h, "s2", "sell", "6", "110", 3)  # the packed book advances as before
    assert [lot["qty"] for lot in book_lots(h.raw(PATH))] == ["3"]


def test_a_packed_book_round_trips_through_the_store_exactly(h):
    fill_on(h, "b1", "buy", "1.123456789012345678901234567", "100.0000000001", 0)
    fill_on(h, "b2", "buy", "2.5", "99.99", 0)
    stored = h.raw(PATH)
    state = apply_fill_to_state(None, replace(tax_fill("L-b1", "buy", "1.123456789012345678901234567",
                                                       "100.0000000001"), book=book_lots(stored)[0]["book"])).state
    assert book_lots(stored)[0] == book_lots(state)[0]
    assert book_lots(stored)[0]["qty"] == "1.123456789012345678901234567"  # the exact string, never a float
