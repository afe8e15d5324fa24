"""Issue 15 item 6, a replace that raises the quantity: ``store_writes.commit_replace_marker`` — the
marker and the increase's reservation in one preconditioned commit, answering the exposure as that
commit left it — behaves the same on the in-memory store and on Firestore (official emulator)."""
from __future__ import annotations

from decimal import Decimal

from backend.execution import store_writes

IP = "tenants/t1/order_intents/i1"
EP = "tenants/t1/exposure/a1__SPY"


def _seed(h, **fields):
    h.put(IP, {"uid": "u1", "status": "placed", "kind": "single", "order_final": False, **fields})
    h.put(EP, {"position_nanos": 0, "reserved_long_nanos": 5 * 10**9, "reserved_short_nanos": 0})
    return h.store.get_intent_with_token("t1", "i1")[1]


def test_the_marker_and_the_extra_are_one_commit_that_answers_the_exposure_it_left(h):
    token = _seed(h)

    done = store_writes.commit_replace_marker(h.store, "t1", "i1", token, {"key_id": "k", "reserved_extra": "3"},
                                              "a1__SPY", Decimal("3"), 1)

    assert done is not None and done.token is not None
    assert done.exposure.reserved_long == Decimal("8") and done.exposure.position == 0
    assert h.raw(IP)["pending_replace"] == {"key_id": "k", "reserved_extra": "3"}
    assert h.raw(EP)["reserved_long_nanos"] == 8 * 10**9


def test_a_stale_token_writes_neither_the_marker_nor_the_reservation(h):
    token = _seed(h)
    store_writes.update_intent_if_unchanged(h.store, "t1", "i1", token, {"fill_seq": 1})  # moved meanwhile

    done = store_writes.commit_replace_marker(h.store, "t1", "i1", token, {"key_id": "k"}, "a1__SPY",
                                              Decimal("3"), 1)

    assert done is None
    assert "pending_replace" not in h.raw(IP) and h.raw(EP)["reserved_long_nanos"] == 5 * 10**9


def test_clearing_a_marker_releases_what_it_held_in_the_orders_direction(h):
    token = _seed(h, pending_replace={"key_id": "k", "reserved_extra": "2"})
    h.put(EP, {"position_nanos": 0, "reserved_long_nanos": 0, "reserved_short_nanos": 7 * 10**9})

    done = store_writes.commit_replace_marker(h.store, "t1", "i1", token, None, "a1__SPY", Decimal("-2"), -1)

    assert done is not None and done.exposure.reserved_short == Decimal("5")
    assert h.raw(IP)["pending_replace"] is None and h.raw(EP)["reserved_short_nanos"] == 5 * 10**9
