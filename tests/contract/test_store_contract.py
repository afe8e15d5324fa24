"""The store contract (backend/ports/store.py): every behaviour runs against the in-memory store and
the Firestore adapter on the emulator (fixture ``h`` in conftest.py). The in-memory store is a fake
of the port, so any difference here is a defect of one of the two (issue 11, defect 7)."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import pytest

from backend.execution.metrics import MAX_STRATEGIES_PER_SHARD, OTHER_STRATEGIES
from backend.ports.store import (Claim, ClaimResult, FillUpdate, FillWrite, Finish, GroupReservation, GroupSettlement,
                                 IntentMissing, IntentStatus, LeaseLost, LegReservation, StoreContention)
from backend.risk.manager import Exposure
from backend.tax import Fill
from backend.tax.state import book_lots

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=timezone.utc)
DAY = "2026-03-02"
KEY = "acct1__AAPL"
EXPOSURE = f"tenants/acme/exposure/{KEY}"


def claim(intent_id="i1", *, qty="10", limit=5, seen=0, lease=NOW + timedelta(seconds=30), uid="alice"):
    return Claim(tenant_id="acme", intent_id=intent_id, uid=uid, account_key=KEY, trade_day=DAY, daily_limit=limit,
                 signed_qty=D(qty), record={"status": "reserved", "uid": uid, "symbol": "AAPL"},
                 lease_until=lease, trades_seen=seen)


def ledger_row(trade_id, *, status="placed", strategy="s1", created_at="2026-03-02T15:00:00Z", **kw):
    return {"trade_id": trade_id, "kind": "order", "status": status, "asset_class": "EQUITY", "tenant_id": "acme",
            "strategy_id": strategy, "trade_date": DAY, "created_at": created_at, "uid": "alice", **kw}


def finish(intent_id="i1", *, status="placed", claimed=True, filled="10", reserved="10", slot=None, tax=None,
           strategy="s1", created_at="2026-03-02T15:00:00Z"):
    extra = {}
    if claimed:
        extra = {"account_key": KEY, "reserved_signed_qty": D(reserved), "filled_signed_qty": D(filled),
                 "trade_day": DAY, "release_slot": slot}
    return Finish(tenant_id="acme", intent_id=intent_id, uid="alice", record={"status": status, "result": {"ok": 1}},
                  ledger_id=f"L-{intent_id}", ledger=ledger_row(f"L-{intent_id}", status=status, strategy=strategy,
                                                                 created_at=created_at),
                  history_id=f"L-{intent_id}", history={"created_at": created_at, "tenant_id": "acme",
                                                        "broker_account_id": "acct1", "symbol": "AAPL"},
                  tax=tax, **extra)


def tax_fill(trade_id, side, qty, price, days=0):
    return Fill(trade_id=trade_id, symbol="AAPL", side=side, qty=D(qty), price=D(price),
                timestamp=NOW + timedelta(days=days))


def exposure(h) -> Exposure:
    from backend.execution.store_rules import exposure_from_doc

    return exposure_from_doc(h.raw(EXPOSURE))


# --- intents: get, claim ---------------------------------------------------------------------------
def test_get_intent_is_none_until_written_then_reads_the_status(h):
    assert h.store.get_intent("acme", "i1") is None
    h.put("tenants/acme/order_intents/i1", {"status": "new", "symbol": "AAPL"})

    record = h.store.get_intent("acme", "i1")

    assert record.status is IntentStatus.NEW and record.data["symbol"] == "AAPL"


def test_claim_reserves_a_slot_and_exposure_and_leases_the_intent(h):
    outcome = h.store.claim(claim(qty="10"))

    assert outcome.result is ClaimResult.CLAIMED and outcome.trades_today == 1
    assert outcome.exposure == Exposure(reserved_long=D(10))
    record = h.store.get_intent("acme", "i1")
    assert record.status is IntentStatus.RESERVED and record.data["slot"] == outcome.slot
    assert record.data["lease_until"] == NOW + timedelta(seconds=30)
    assert h.raw(f"tenants/acme/risk_days/{DAY}/trade_slots/{outcome.slot}")["intent_id"] == "i1"


def test_claim_starts_probing_at_the_slot_count_the_risk_check_read(h):
    """Drift: the in-memory store took the first free slot, Firestore probes from the count."""
    outcome = h.store.claim(claim(seen=3, limit=5))

    assert outcome.slot == 3 and outcome.trades_today == 4


def test_claim_wraps_around_to_slots_below_the_count(h):
    for n in (3, 4):
        h.put(f"tenants/acme/risk_days/{DAY}/trade_slots/{n}", {"intent_id": f"x{n}"})

    outcome = h.store.claim(claim(seen=3, limit=5))

    assert outcome.result is ClaimResult.CLAIMED and outcome.slot == 0


def test_exposure_is_stored_as_exact_integer_nano_units(h):
    """Drift: the in-memory store kept Decimal fields ``position``/``reserved_long``."""
    h.store.claim(claim(qty="0.123456789"))
    h.store.claim(claim("i2", qty="-2", seen=1))

    # every reservation moves all three counters (the others by zero: issue 17, the commit answers them)
    assert h.raw(EXPOSURE) == {"position_nanos": 0, "reserved_long_nanos": 123456789,
                               "reserved_short_nanos": 2 * 10**9}


def test_a_second_claim_of_the_same_intent_is_a_duplicate_and_writes_nothing(h):
    first = h.store.claim(claim())

    second = h.store.claim(claim(seen=1))

    assert second.result is ClaimResult.DUPLICATE and second.existing.data["slot"] == first.slot
    assert h.paths(f"tenants/acme/risk_days/{DAY}/trade_slots") == [
        f"tenants/acme/risk_days/{DAY}/trade_slots/{first.slot}"]
    assert exposure(h).reserved_long == D(10)


def test_claim_refuses_past_the_daily_limit_and_writes_nothing(h):
    h.store.claim(claim("i1", limit=2))
    h.store.claim(claim("i2", limit=2, seen=1))

    third = h.store.claim(claim("i3", limit=2, seen=1))  # a stale count: the slots themselves say no

    assert third.result is ClaimResult.DAILY_LIMIT
    assert h.store.get_intent("acme", "i3") is None and exposure(h).reserved_long == D(20)


def test_claim_of_an_app_written_intent_keeps_its_fields(h):
    h.put("tenants/acme/order_intents/i1", {"status": "new", "note": "from the app"})

    h.store.claim(claim())

    record = h.store.get_intent("acme", "i1")
    assert record.status is IntentStatus.RESERVED and record.data["note"] == "from the app"


# --- finish --------------------------------------------------------------------------------------------
def test_finish_writes_record_ledger_history_and_settles_exposure(h):
    h.store.claim(claim(qty="10"))

    assert h.store.finish(finish(filled="4", reserved="10")) is None

    record = h.store.get_intent("acme", "i1")
    assert record.status is IntentStatus.PLACED and record.data["result"] == {"ok": 1}
    assert h.raw("tenants/acme/ledger_trades/L-i1")["status"] == "placed"
    assert h.raw("users/alice/portfolio/history/trades/L-i1")["symbol"] == "AAPL"
    assert exposure(h) == Exposure(position=D(4))


def test_finish_clears_the_intent_lease(h):
    """Drift: only Firestore cleared ``lease_until`` on finish; a final intent holds no lease."""
    h.store.claim(claim())

    h.store.finish(finish())

    assert h.store.get_intent("acme", "i1").data.get("lease_until") is None


def test_finish_gives_the_daily_slot_back_when_no_trade_happened(h):
    outcome = h.store.claim(claim())

    h.store.finish(finish(status="rejected", filled="0", slot=outcome.slot))

    assert h.paths(f"tenants/acme/risk_days/{DAY}/trade_slots") == []
    assert exposure(h) == Exposure()


def test_finish_without_a_claim_records_a_decision(h):
    h.store.finish(finish(status="downgraded", claimed=False))

    assert h.store.get_intent("acme", "i1").status is IntentStatus.DOWNGRADED
    assert h.raw(EXPOSURE) is None


def test_a_second_finish_returns_the_stored_outcome_and_commits_nothing(h):
    h.store.finish(finish(status="rejected", claimed=False))

    stored = h.store.finish(Finish(tenant_id="acme", intent_id="i1", uid="alice", record={"status": "placed"},
                                   ledger_id="L-other", ledger=ledger_row("L-other")))

    assert stored.status is IntentStatus.REJECTED
    assert h.raw("tenants/acme/ledger_trades/L-other") is None


def test_concurrent_duplicate_finishes_commit_exactly_one_outcome(h):
    h.store.claim(claim())
    results: list = []
    go = threading.Barrier(4)

    def run(n: int) -> None:
        go.wait()
        results.append(h.store.finish(Finish(tenant_id="acme", intent_id="i1", uid="alice",
                                             record={"status": "placed", "worker": n}, ledger_id=f"L-{n}",
                                             ledger=ledger_row(f"L-{n}"))))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]

    winner = h.store.get_intent("acme", "i1").data["worker"]
    assert sum(r is None for r in results) == 1
    assert all(r.data["worker"] == winner for r in results if r is not None)
    assert h.paths("tenants/acme/ledger_trades") == [f"tenants/acme/ledger_trades/L-{winner}"]


# --- leases, annotations, later fills ---------------------------------------------------------------
def test_take_intent_lease_only_when_reserved_and_expired(h):
    h.store.claim(claim(lease=NOW + timedelta(seconds=30)))

    assert h.store.take_intent_lease("acme", "i1", NOW, NOW + timedelta(minutes=1)) is False  # held
    assert h.store.take_intent_lease("acme", "i1", NOW + timedelta(seconds=31), NOW + timedelta(minutes=2)) is True
    assert h.store.get_intent("acme", "i1").data["lease_until"] == NOW + timedelta(minutes=2)
    assert h.store.take_intent_lease("acme", "missing", NOW, NOW) is False
    h.store.finish(finish())
    assert h.store.take_intent_lease("acme", "i1", NOW + timedelta(hours=1), NOW + timedelta(hours=2)) is False


def test_annotate_merges_fields_only_when_the_status_matches(h):
    h.put("tenants/acme/order_intents/i1", {"status": "new", "a": 1})

    assert h.store.annotate_intent("acme", "i1", {"b": 2}, only_if_status="reserved") is False
    assert h.store.annotate_intent("acme", "i1", {"b": 2}, only_if_status="new") is True
    assert h.store.annotate_intent("acme", "missing", {"b": 2}) is False
    data = h.store.get_intent("acme", "i1").data
    assert data["a"] == 1 and data["b"] == 2


def fill_update(token, trade_id="L-i1-2"):
    return FillUpdate(tenant_id="acme", intent_id="i1", uid="alice", token=token,
                      record={"result": {"filled_qty": "10"}},
                      fills=(FillWrite(trade_id, "alice", ledger_row(trade_id, kind="fill"),
                                       {"created_at": "2026-03-02T15:01:00Z", "symbol": "AAPL"}),),
                      account_key=KEY, filled_signed_qty=D(6), released_signed_qty=D(6))


def test_apply_fill_update_commits_with_an_unchanged_token(h):
    h.store.claim(claim())
    h.store.finish(finish(filled="4", reserved="4"))
    record, token = h.store.get_intent_with_token("acme", "i1")

    assert h.store.apply_fill_update(fill_update(token)) is True

    assert h.store.get_intent("acme", "i1").data["result"] == {"filled_qty": "10"}
    assert h.raw("tenants/acme/ledger_trades/L-i1-2")["kind"] == "fill"
    assert h.raw("users/alice/portfolio/history/trades/L-i1-2")["symbol"] == "AAPL"
    assert exposure(h) == Exposure(position=D(10), reserved_long=D(0))


def test_apply_fill_update_with_a_stale_token_writes_nothing(h):
    h.store.claim(claim())
    h.store.finish(finish(filled="4", reserved="4"))
    _, token = h.store.get_intent_with_token("acme", "i1")
    assert h.store.apply_fill_update(fill_update(token)) is True

    assert h.store.apply_fill_update(fill_update(token, "L-i1-3")) is False

    assert h.raw("tenants/acme/ledger_trades/L-i1-3") is None
    assert exposure(h).position == D(10)


def test_an_annotation_invalidates_a_token_read_before_it(h):
    """Drift: the in-memory store versioned only some writes; any write changes Firestore's update_time."""
    h.store.claim(claim())
    h.store.finish(finish(filled="4", reserved="4"))
    _, token = h.store.get_intent_with_token("acme", "i1")
    h.store.annotate_intent("acme", "i1", {"note": "reconciled elsewhere"})

    assert h.store.apply_fill_update(fill_update(token)) is False


# --- sweeper queries -------------------------------------------------------------------------------
def test_find_stuck_intents_lists_reserved_intents_whose_lease_expired(h):
    h.store.claim(claim("i1", lease=NOW))
    h.store.claim(claim("i2", lease=NOW + timedelta(minutes=5), seen=1))
    h.store.claim(claim("i3", lease=NOW - timedelta(minutes=1), seen=2))
    h.store.finish(finish("i3"))

    assert h.store.find_stuck_intents(NOW, 10) == [("acme", "i1")]


def test_find_working_intents_lists_placed_intents_due_for_reconciliation(h):
    h.put("tenants/acme/order_intents/w1", {"status": "placed", "reconcile_after": NOW - timedelta(seconds=1)})
    h.put("tenants/acme/order_intents/w2", {"status": "placed", "reconcile_after": NOW + timedelta(seconds=1)})
    h.put("tenants/acme/order_intents/w3", {"status": "rejected", "reconcile_after": NOW - timedelta(seconds=1)})

    assert h.store.find_working_intents(NOW, 10) == [("acme", "w1")]


def test_find_unstarted_intents_lists_new_documents_with_their_fields(h):
    h.put("tenants/acme/order_intents/n1", {"status": "new", "symbol": "AAPL"})
    h.put("tenants/acme/order_intents/n2", {"status": "accepted"})

    assert h.store.find_unstarted_intents(10) == [("acme", "n1", {"status": "new", "symbol": "AAPL"})]


# --- risk reads ------------------------------------------------------------------------------------
def test_risk_snapshot_reads_switches_overrides_slot_count_and_exposure(h):
    h.put("ops/execution", {"kill_switch": True})
    h.put("tenants/acme/config/risk", {"max_trades_per_day": 3})
    h.store.claim(claim("i1"))
    h.store.claim(claim("i2", seen=1))

    snap = h.store.risk_snapshot("acme", KEY, DAY)

    assert snap.global_kill_switch is True and snap.tenant_overrides == {"max_trades_per_day": 3}
    assert snap.trades_today == 2 and snap.exposure == Exposure(reserved_long=D(20))
    flags = h.store.kill_switches("acme")
    assert flags.global_kill_switch is True and flags.tenant_overrides == {"max_trades_per_day": 3}


def test_risk_snapshot_of_a_quiet_tenant_is_empty(h):
    snap = h.store.risk_snapshot("acme", KEY, DAY)

    assert (snap.global_kill_switch, snap.tenant_overrides, snap.trades_today, snap.exposure) == (
        False, None, 0, Exposure())


# --- metrics -------------------------------------------------------------------------------------------
def test_every_recorded_row_increments_the_days_metrics(h):
    h.store.finish(finish("i1", status="placed", claimed=False))
    h.store.finish(finish("i2", status="rejected", claimed=False))

    docs = h.store.read_metrics("acme", DAY, DAY)

    total = lambda name: sum(d.get(name, 0) for d in docs)  # noqa: E731
    assert total("decisions") == 2 and total("status_placed") == 1 and total("status_rejected") == 1
    assert sum(d["by_strategy"]["s1"]["decisions"] for d in docs) == 2
    assert h.store.read_metrics("acme", "2026-03-03", "2026-03-09") == []


def test_per_strategy_metrics_are_bounded_per_shard(h, monkeypatch):
    import backend.execution.metrics as metrics

    monkeypatch.setattr(metrics, "SHARDS", 1)
    cap = MAX_STRATEGIES_PER_SHARD
    for n in range(cap + 2):
        h.store.finish(finish(f"i{n}", claimed=False, strategy=f"s{n}"))

    (doc,) = h.store.read_metrics("acme", DAY, DAY)

    assert len(doc["strategies"]) == cap and len(doc["by_strategy"]) == cap + 1
    assert doc["by_strategy"][OTHER_STRATEGIES]["decisions"] == 2 and doc["decisions"] == cap + 2


# --- tax books -----------------------------------------------------------------------------------------
def test_fills_advance_the_users_lot_book_and_a_sale_records_a_disposal(h):
    h.store.finish(finish("b1", claimed=False, tax=tax_fill("L-b1", "buy", "10", "100")))
    h.store.finish(finish("s1", claimed=False, tax=tax_fill("L-s1", "sell", "4", "120", days=1)))

    (key, book), = h.store.tax_books_page("alice", after=None, limit=10)
    disposals = h.store.tax_disposals_page("alice", sold_from="2026-01-01", sold_to="2026-12-31", after=None, limit=10)

    assert key == "AAPL" and book["method"] == "FIFO" and [lot["qty"] for lot in book_lots(book)] == ["6"]
    assert [(doc["quantity"], doc["gain"], doc["book"]) for _, doc in disposals] == [("4", "80", "acme:default")]


def test_group_fills_advance_the_lot_book_in_the_same_commit(h):
    snap = h.store.create_group("acme", "g1", group_doc())
    fills = (FillWrite("g1-a", "alice", ledger_row("g1-a", kind="fill"), {"created_at": "2026-03-02T15:00:00Z"},
                       tax_fill("g1-a", "buy", "3", "50")),)

    h.store.save_group(snap, group_doc(status="FILLED"), fills)

    assert h.raw("tenants/acme/ledger_trades/g1-a")["kind"] == "fill"
    assert [k for k, _ in h.store.tax_books_page("alice", after=None, limit=10)] == ["AAPL"]


# --- groups ------------------------------------------------------------------------------------------
def group_doc(status="VALIDATING", **kw):
    return {"group_id": "g1", "uid": "alice", "status": status, "_final": False,
            "legs": [{"leg_id": "a", "symbol": "AAPL"}, {"leg_id": "b", "symbol": "MSFT"}], **kw}


def test_create_group_once_then_load_it_with_its_legs_projection(h):
    snap = h.store.create_group("acme", "g1", group_doc())

    assert snap is not None and h.store.create_group("acme", "g1", group_doc()) is None
    loaded = h.store.load_group("acme", "g1")
    assert loaded.doc["status"] == "VALIDATING" and loaded.token == snap.token
    leg = h.raw("tenants/acme/execution_groups/g1/legs/a")
    assert (leg["group_id"], leg["uid"], leg["group_status"], leg["tenant_id"]) == ("g1", "alice", "VALIDATING", "acme")
    assert h.store.load_group("acme", "nope") is None


def test_create_group_updates_the_apps_intent_document_in_the_same_commit(h):
    h.put("tenants/acme/order_intents/g1", {"status": "new", "legs": 2})

    h.store.create_group("acme", "g1", group_doc(), {"status": "accepted", "group_id": "g1"})

    intent = h.raw("tenants/acme/order_intents/g1")
    assert (intent["status"], intent["group_id"], intent["legs"]) == ("accepted", "g1", 2)


def test_create_group_with_an_intent_update_but_no_intent_document_writes_nothing(h):
    """Drift: the in-memory store created the intent document; Firestore's update refused."""
    with pytest.raises(IntentMissing):
        h.store.create_group("acme", "g1", group_doc(), {"status": "accepted", "group_id": "g1"})

    assert h.raw("tenants/acme/order_intents/g1") is None and h.store.load_group("acme", "g1") is None


def test_save_group_needs_the_snapshot_it_read(h):
    snap = h.store.create_group("acme", "g1", group_doc())
    saved = h.store.save_group(snap, group_doc(status="SUBMITTING"))

    with pytest.raises(LeaseLost):
        h.store.save_group(snap, group_doc(status="FAILED"))

    assert h.store.load_group("acme", "g1").doc["status"] == "SUBMITTING"
    assert h.raw("tenants/acme/execution_groups/g1/legs/b")["group_status"] == "SUBMITTING"
    assert h.store.save_group(saved, group_doc(status="FAILED")).doc["status"] == "FAILED"


def test_save_group_with_an_intent_update_but_no_intent_document_writes_nothing(h):
    snap = h.store.create_group("acme", "g1", group_doc())

    with pytest.raises(IntentMissing):
        h.store.save_group(snap, group_doc(status="FILLED"), intent_update={"status": "filled"})

    assert h.raw("tenants/acme/order_intents/g1") is None
    assert h.store.load_group("acme", "g1").doc["status"] == "VALIDATING"


def test_take_lease_only_when_expired_and_not_final_and_it_fences_old_snapshots(h):
    old = h.store.create_group("acme", "g1", group_doc(_lease_owner="w1", _lease_until=NOW))

    assert h.store.take_lease("acme", "g1", "w2", NOW - timedelta(seconds=1), NOW + timedelta(minutes=1)) is None
    taken = h.store.take_lease("acme", "g1", "w2", NOW, NOW + timedelta(minutes=1))

    assert taken.doc["_lease_owner"] == "w2" and taken.doc["_lease_until"] == NOW + timedelta(minutes=1)
    with pytest.raises(LeaseLost):
        h.store.save_group(old, group_doc())
    h.store.save_group(taken, group_doc(status="FILLED", _final=True))
    assert h.store.take_lease("acme", "g1", "w3", NOW + timedelta(hours=1), NOW + timedelta(hours=2)) is None
    assert h.store.take_lease("acme", "nope", "w3", NOW, NOW) is None


def test_find_stuck_groups_lists_non_final_groups_whose_lease_expired(h):
    h.store.create_group("acme", "g1", group_doc(_lease_until=NOW - timedelta(seconds=1)))
    h.store.create_group("acme", "g2", {**group_doc(_lease_until=NOW + timedelta(seconds=1)), "group_id": "g2"})
    h.store.create_group("acme", "g3", {**group_doc(_lease_until=NOW - timedelta(seconds=1)), "group_id": "g3",
                                        "_final": True})

    assert h.store.find_stuck_groups(NOW, 10) == [("acme", "g1")]


def reservation(limit=5, seen=0):
    return GroupReservation(uid="alice", trade_day=DAY, daily_limit=limit, broker_account_id="acct1",
                            legs=(LegReservation("a", KEY, D(10)), LegReservation("b", "acct1__MSFT", D(-5))),
                            trades_seen=seen)


def test_reserve_group_takes_one_free_slot_per_leg_and_reserves_exposure(h):
    h.put(f"tenants/acme/risk_days/{DAY}/trade_slots/0", {"intent_id": "x"})
    snap = h.store.create_group("acme", "g1", group_doc())

    outcome = h.store.reserve_group(snap, group_doc(), reservation(limit=3, seen=1))

    assert outcome.result is ClaimResult.CLAIMED and outcome.trades_today == 3
    slots = {leg["leg_id"]: leg["slot"] for leg in outcome.snapshot.doc["_reservation"]["legs"]}
    assert sorted(slots.values()) == [1, 2]
    assert outcome.exposures == {KEY: Exposure(reserved_long=D(10)), "acct1__MSFT": Exposure(reserved_short=D(5))}
    assert h.store.load_group("acme", "g1").doc["_reservation"]["trade_day"] == DAY
    assert h.store.load_group("acme", "g1").token == outcome.snapshot.token


def test_reserve_group_refuses_when_the_day_has_too_few_slots_and_writes_nothing(h):
    h.put(f"tenants/acme/risk_days/{DAY}/trade_slots/0", {"intent_id": "x"})
    snap = h.store.create_group("acme", "g1", group_doc())

    outcome = h.store.reserve_group(snap, group_doc(), reservation(limit=2, seen=1))

    assert outcome.result is ClaimResult.DAILY_LIMIT and h.raw(EXPOSURE) is None
    assert "_reservation" not in h.store.load_group("acme", "g1").doc


def test_reserve_group_with_a_stale_snapshot_is_lease_lost(h):
    snap = h.store.create_group("acme", "g1", group_doc())
    h.store.save_group(snap, group_doc(status="SUBMITTING"))

    with pytest.raises(LeaseLost):
        h.store.reserve_group(snap, group_doc(), reservation())


def test_a_final_save_settles_the_reservation_and_gives_unused_slots_back(h):
    snap = h.store.create_group("acme", "g1", group_doc())
    reserved = h.store.reserve_group(snap, group_doc(), reservation())
    slots = {leg["leg_id"]: leg["slot"] for leg in reserved.snapshot.doc["_reservation"]["legs"]}

    h.store.save_group(reserved.snapshot, group_doc(status="PARTIAL", _final=True),
                       settlement=GroupSettlement(DAY, ((KEY, D(10), D(10)), ("acct1__MSFT", D(0), D(-5))),
                                                  release_slots=(slots["b"],)))

    assert exposure(h) == Exposure(position=D(10))
    assert h.raw("tenants/acme/exposure/acct1__MSFT") == {"position_nanos": 0, "reserved_long_nanos": 0,
                                                          "reserved_short_nanos": 0}  # all counters: issue 17
    assert h.paths(f"tenants/acme/risk_days/{DAY}/trade_slots") == [
        f"tenants/acme/risk_days/{DAY}/trade_slots/{slots['a']}"]


# --- approvals ---------------------------------------------------------------------------------------
def test_rpm_approvals_are_create_only(h):
    assert h.store.get_rpm_approval("acme", "rpm-1") is None

    assert h.store.put_rpm_approval("acme", "rpm-1", {"for_uid": "alice", "approved": True}) is True
    assert h.store.put_rpm_approval("acme", "rpm-1", {"for_uid": "mallory", "approved": True}) is False

    assert h.store.get_rpm_approval("acme", "rpm-1")["for_uid"] == "alice"


# --- read-model pages ------------------------------------------------------------------------------
def test_ledger_pages_are_newest_first_filtered_and_resume_after_a_cursor(h):
    for n, (created, status) in enumerate([("2026-03-02T15:00:00Z", "placed"), ("2026-03-02T15:00:01Z", "rejected"),
                                           ("2026-03-02T15:00:02Z", "placed"), ("2026-03-02T15:00:02Z", "placed")]):
        h.store.finish(finish(f"i{n}", status=status, claimed=False, created_at=created))

    first = h.store.ledger_page("acme", equals={"status": "placed"}, created_from=None, created_before=None,
                                after=None, limit=2)
    last = first[-1]
    rest = h.store.ledger_page("acme", equals={"status": "placed"}, created_from=None, created_before=None,
                               after=(last[1]["created_at"], last[0]), limit=2)
    window = h.store.ledger_page("acme", equals={}, created_from="2026-03-02T15:00:01Z",
                                 created_before="2026-03-02T15:00:02Z", after=None, limit=10)

    assert [i for i, _ in first] == ["L-i3", "L-i2"] and [i for i, _ in rest] == ["L-i0"]
    assert [i for i, _ in window] == ["L-i1"]


def test_history_pages_filter_by_tenant_and_account_exactly(h):
    h.store.finish(finish("i1", claimed=False, created_at="2026-03-02T15:00:00Z"))
    h.store.finish(finish("i2", claimed=False, created_at="2026-03-02T15:00:01Z"))
    h.put("users/alice/portfolio/history/trades/unlabelled", {"created_at": "2026-03-02T15:00:02Z", "tenant_id": "acme"})

    everything = h.store.history_page("alice", equals={}, after=None, limit=10)
    acct1 = h.store.history_page("alice", equals={"tenant_id": "acme", "broker_account_id": "acct1"}, after=None,
                                 limit=1)
    after = h.store.history_page("alice", equals={"broker_account_id": "acct1"},
                                 after=(acct1[0][1]["created_at"], acct1[0][0]), limit=10)

    assert [i for i, _ in everything] == ["unlabelled", "L-i2", "L-i1"]
    assert [i for i, _ in acct1] == ["L-i2"] and [i for i, _ in after] == ["L-i1"]
    assert h.store.history_page("alice", equals={"broker_account_id": "default"}, after=None, limit=10) == []


def test_tax_shortfall_and_book_pages(h):
    # issue 19: a sale without lots opens a SHORT lot in every class the product trades, so the
    # LOT_SHORTFALL record is one from a class without short selling (or from before short lots)
    from backend.execution.store_rules import disposal_path
    from backend.tax.state import plan_books

    plan = plan_books({}, [("alice", tax_fill("L-s1", "sell", "4", "120"))], {}, short_selling=frozenset())
    for uid, doc_id, doc in plan.disposals:
        h.put(disposal_path(uid, doc_id), doc)

    shortfalls = h.store.tax_shortfalls_page("alice", day_from="2026-03-01", day_to="2026-03-31", after=None, limit=10)

    assert [doc["code"] for _, doc in shortfalls] == ["LOT_SHORTFALL"]
    assert h.store.tax_books_page("alice", after="AAPL", limit=10) == []


def test_the_users_lot_method_election_is_applied_and_named_on_the_history_row(h):
    h.put("users/alice/config/tax", {"lot_method": "LIFO"})
    h.store.finish(finish("b1", claimed=False, tax=tax_fill("L-b1", "buy", "1", "100")))
    h.store.finish(finish("b2", claimed=False, tax=tax_fill("L-b2", "buy", "1", "110", days=1)))
    sale = finish("s1", claimed=False, tax=tax_fill("L-s1", "sell", "1", "120", days=2))
    h.store.finish(Finish(**{**sale.__dict__, "history": {**sale.history, "tax": {"lot_method": "FIFO"}}}))

    (_, book), = h.store.tax_books_page("alice", after=None, limit=10)
    disposals = h.store.tax_disposals_page("alice", sold_from="2026-01-01", sold_to="2026-12-31", after=None, limit=10)

    assert book["method"] == "LIFO" and [lot["lot_id"] for lot in book_lots(book)] == ["L-b1"]
    assert [doc["lot_id"] for _, doc in disposals] == ["L-b2"]
    assert h.raw("users/alice/portfolio/history/trades/L-s1")["tax"]["lot_method"] == "LIFO"
    assert h.raw("users/alice/portfolio/history/trades/L-s1")["tax"]["cost_basis"] == "110"  # issue 19: lot L-b2


def test_a_finish_whose_ledger_row_exists_for_a_non_final_intent_commits_nothing(h):
    """Drift: the in-memory store raised a bare RuntimeError; Firestore's create precondition fails
    on every retry and the store answers StoreContention (nothing committed)."""
    h.store.claim(claim())
    h.put("tenants/acme/ledger_trades/L-i1", {"trade_id": "L-i1", "created_at": "2026-03-02T14:00:00Z"})

    with pytest.raises(StoreContention):
        h.store.finish(finish())

    assert h.store.get_intent("acme", "i1").status is IntentStatus.RESERVED and exposure(h).position == 0


def test_a_group_save_whose_ledger_row_exists_is_lease_lost_and_commits_nothing(h):
    snap = h.store.create_group("acme", "g1", group_doc())
    h.put("tenants/acme/ledger_trades/g1-a", {"trade_id": "g1-a"})

    with pytest.raises(LeaseLost):
        h.store.save_group(snap, group_doc(status="FILLED"), (FillWrite("g1-a", "alice", ledger_row("g1-a"), None),))

    assert h.store.load_group("acme", "g1").doc["status"] == "VALIDATING"


def test_a_group_document_without_the_final_flag_is_not_swept(h):
    """Drift: the in-memory query matched a missing ``_final``; Firestore's equality filter does not."""
    doc = group_doc(_lease_until=NOW - timedelta(seconds=1))
    del doc["_final"]
    h.store.create_group("acme", "g1", doc)

    assert h.store.find_stuck_groups(NOW, 10) == []


def race(n: int, act) -> list:
    """Run ``act(i)`` for i < n at once; the results in thread order."""
    results: list = [None] * n
    go = threading.Barrier(n)

    def run(i: int) -> None:
        go.wait()
        results[i] = act(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return results


def test_concurrent_claims_never_exceed_the_daily_limit(h):
    outcomes = race(6, lambda i: h.store.claim(claim(f"c{i}", limit=3)))

    claimed = [o for o in outcomes if o.result is ClaimResult.CLAIMED]
    assert len(claimed) == 3 and sorted(o.slot for o in claimed) == [0, 1, 2]
    assert all(o.result is ClaimResult.DAILY_LIMIT for o in outcomes if o not in claimed)
    assert exposure(h).reserved_long == D(30)


def test_concurrent_lease_takers_get_one_lease(h):
    h.store.create_group("acme", "g1", group_doc(_lease_owner="w0", _lease_until=NOW))

    taken = race(4, lambda i: h.store.take_lease("acme", "g1", f"w{i + 1}", NOW, NOW + timedelta(minutes=1)))

    winners = [snap.doc["_lease_owner"] for snap in taken if snap is not None]
    assert len(winners) == 1 and h.store.load_group("acme", "g1").doc["_lease_owner"] == winners[0]
