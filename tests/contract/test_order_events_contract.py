"""Issue 15 item 6: the order-management writes (backend/execution/store_writes.py) and the working-order
listing query behave the same on the in-memory store and on Firestore (official emulator)."""
from __future__ import annotations

from decimal import Decimal

from backend.execution import store_writes

IP = "tenants/t1/order_intents/i1"


def _seed(h, **fields):
    h.put(IP, {"uid": "u1", "status": "placed", "kind": "single", "order_final": False, **fields})
    return h.store.get_intent_with_token("t1", "i1")[1]


def test_a_marker_is_written_only_on_the_version_read(h):
    token = _seed(h)

    first = store_writes.update_intent_if_unchanged(h.store, "t1", "i1", token, {"cancel_requested_at": "x"})
    stale = store_writes.update_intent_if_unchanged(h.store, "t1", "i1", token, {"cancel_requested_at": "y"})

    assert first is not None and stale is None
    assert h.raw(IP)["cancel_requested_at"] == "x"


def test_an_order_event_is_one_commit_recorded_once(h):
    token = _seed(h)
    row = {"kind": "cancel", "trade_id": "i1--cancel", "status": "canceled"}
    exposure = store_writes.order_event_exposure(Decimal("0"), Decimal("-2"), 1)

    ok = store_writes.record_order_event(h.store, "t1", "i1", token, {"cancel": {"at": "now"}}, "i1--cancel", row,
                                         exposure=("a1__SPY", exposure))
    token2 = h.store.get_intent_with_token("t1", "i1")[1]
    again = store_writes.record_order_event(h.store, "t1", "i1", token2, {"cancel": {"at": "later"}}, "i1--cancel",
                                            row, exposure=("a1__SPY", exposure))

    assert (ok, again) == (True, False)  # the row exists: the second commit writes nothing
    assert h.raw(IP)["cancel"] == {"at": "now"}
    assert h.raw("tenants/t1/ledger_trades/i1--cancel")["kind"] == "cancel"
    assert h.raw("tenants/t1/exposure/a1__SPY")["reserved_long_nanos"] == -2 * 10**9


def test_the_working_order_query_finds_only_the_users_placed_unfinished_intents(h):
    h.put("tenants/t1/order_intents/a", {"uid": "u1", "status": "placed", "order_final": False})
    h.put("tenants/t1/order_intents/b", {"uid": "u1", "status": "placed", "order_final": True})
    h.put("tenants/t1/order_intents/c", {"uid": "u2", "status": "placed", "order_final": False})
    h.put("tenants/t1/order_intents/d", {"uid": "u1", "status": "rejected"})
    h.put("tenants/t1/order_intents/e", {"uid": "u1", "status": "placed", "order_final": False})

    equals = {"uid": "u1", "status": "placed", "order_final": False}
    first = h.store.admin_page("t1", "order_intents", equals=equals, after=None, limit=1)
    rest = h.store.admin_page("t1", "order_intents", equals=equals, after=first[-1][0], limit=10)

    assert [doc_id for doc_id, _ in first + rest] == ["a", "e"]
