"""The port's writes are built once in the core (backend/execution/store_writes.py) over the unit of
work: the same plan reaches both stores, and its retries are decided there, not in an adapter."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal as D

import pytest

from backend.execution import store_writes
from backend.execution.unit_of_work import Commit, Conflict, Update
from backend.ports.store import FillUpdate, FillWrite, Finish, GroupReservation, LeaseLost, LegReservation

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=timezone.utc)
DAY = "2026-03-02"


class Recording:
    """A unit of work over a store that records each commit's ops (a hand-written spy, no mocks)."""

    def __init__(self, store):
        self.store, self.commits, self.reads = store, [], []

    def get_all(self, paths):
        self.reads.append(list(paths))
        return self.store.get_all(paths)

    def list_ids(self, collection, limit):
        return self.store.list_ids(collection, limit)

    def commit(self, commit: Commit):
        self.commits.append([(type(op).__name__, op.path) for op in commit.ops])
        return self.store.commit(commit)


def row(trade_id, strategy="s1"):
    return {"trade_id": trade_id, "kind": "order", "status": "placed", "asset_class": "EQUITY", "tenant_id": "acme",
            "strategy_id": strategy, "trade_date": DAY, "created_at": "2026-03-02T15:00:00Z", "uid": "alice"}


def test_finish_reads_everything_its_plan_needs_in_one_round_trip_and_commits_once(h):
    uow = Recording(h.store)
    h.put("tenants/acme/order_intents/i1", {"status": "reserved", "lease_until": NOW})

    store_writes.finish(uow, Finish("acme", "i1", "alice", {"status": "placed"}, "L1", row("L1"), "L1",
                                    {"created_at": "2026-03-02T15:00:00Z"}, account_key="k", reserved_signed_qty=D(1),
                                    filled_signed_qty=D(1), trade_day=DAY))

    assert len(uow.reads) == 1 and "tenants/acme/order_intents/i1" in uow.reads[0]
    assert len(uow.commits) == 1
    kinds = dict((path, kind) for kind, path in uow.commits[0])
    assert kinds["tenants/acme/order_intents/i1"] == "Update" and kinds["tenants/acme/ledger_trades/L1"] == "Create"
    assert kinds["tenants/acme/exposure/k"] == "Increment"
    assert h.raw("tenants/acme/order_intents/i1")["lease_until"] is None


def test_two_rows_of_one_commit_admit_a_strategy_to_their_shard_once(h):
    fills = tuple(FillWrite(f"T{n}", "alice", row(f"T{n}", strategy="new"), None) for n in range(6))
    h.put("tenants/acme/order_intents/i1", {"status": "placed"})
    token = h.store.get_all(["tenants/acme/order_intents/i1"])["tenants/acme/order_intents/i1"][1]

    ok = store_writes.apply_fill_update(h.store, FillUpdate("acme", "i1", "alice", token, {"filled": "6"}, fills,
                                                            "k", D(0), D(0)))

    assert ok
    shards = [h.raw(p) for p in h.paths("tenants/acme/metrics")]
    assert shards and all(s["strategies"] == ["new"] and "new" in s["by_strategy"] for s in shards)


def test_reserve_group_lists_the_slots_when_the_count_it_was_given_says_the_day_is_full(h):
    from backend.ports.store import GroupSnapshot

    h.store.create_group("acme", "g1", {"group_id": "g1", "legs": []})
    snap = h.store.load_group("acme", "g1")
    for n in range(3):  # the risk check read 5 (a stale count: two slots were given back since)
        h.put(f"tenants/acme/risk_days/{DAY}/trade_slots/{n}", {"intent_id": f"x{n}"})
    reservation = GroupReservation("alice", DAY, 5, (LegReservation("a", "k1", D(1)), LegReservation("b", "k2", D(-1))),
                                   trades_seen=5)

    outcome = store_writes.reserve_group(h.store, snap, {"group_id": "g1", "legs": []}, reservation,
                                         backoff=lambda attempt: None)

    slots = sorted(leg["slot"] for leg in outcome.snapshot.doc["_reservation"]["legs"])
    assert slots == [3, 4] and outcome.trades_today == 5
    assert isinstance(outcome.snapshot, GroupSnapshot)


def test_a_moved_group_is_lease_lost_not_a_retry(h):
    h.store.create_group("acme", "g1", {"group_id": "g1", "legs": []})
    snap = h.store.load_group("acme", "g1")
    h.store.save_group(snap, {"group_id": "g1", "legs": [], "n": 1})

    with pytest.raises(LeaseLost):
        store_writes.save_group(h.store, snap, {"group_id": "g1", "legs": [], "n": 2}, backoff=lambda attempt: None)

    with pytest.raises(Conflict) as caught:  # and the unit of work said why: the group's token moved
        h.store.commit(Commit([Update("tenants/acme/execution_groups/g1", {"n": 3}, snap.token)]))
    assert caught.value.kind == "changed" and h.raw("tenants/acme/execution_groups/g1")["n"] == 1
