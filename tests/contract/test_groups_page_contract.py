"""``ReadModel.groups_page`` (GET /groups, issue 19 item 8) on both stores: newest first by
(created_timestamp, id), equality filters, the day window, the cursor; group documents only (never
their ``legs/`` projection)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from backend.domain.errors import RejectCode, Rejection
from backend.execution import groups as g

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=timezone.utc)
LEGS = [{"leg_id": "leg_001", "symbol": "EURUSD", "direction": 1, "units": 1000, "asset_class": "FX"},
        {"leg_id": "leg_002", "symbol": "GBPUSD", "direction": -1, "units": 500, "asset_class": "FX"}]


def create(h, group_id, uid, minutes, *, strategy="s1", rejected=False, tenant="acme"):
    now = T0 + timedelta(minutes=minutes)
    group = g.ExecutionGroup.create(group_id=group_id, strategy_id=strategy, tenant_id=tenant, uid=uid, legs=LEGS,
                                    now=now)
    if rejected:
        group = g.fail_validation(g.start_validation(group, now), Rejection(RejectCode.POSITION_LIMIT, "x"), now)
    doc = {**group.to_dict(), "_final": group.status.is_final, "_kind": "multi_leg", "_lease_owner": None,
           "_lease_until": None, "_ledger_written": []}
    assert h.store.create_group(tenant, group_id, doc, None) is not None


def page(h, tenant="acme", *, equals=None, created_from=None, created_before=None, after=None, limit=10):
    return h.store.groups_page(tenant, equals=equals or {}, created_from=created_from,
                               created_before=created_before, after=after, limit=limit)


def test_group_pages_are_newest_first_filtered_windowed_and_resume_after_a_cursor(h):
    create(h, "g1", "alice", 0)
    create(h, "g2", "bob", 1, rejected=True)
    create(h, "g3", "alice", 2, strategy="s2", rejected=True)
    create(h, "g4", "alice", 2)  # same timestamp as g3: the id breaks the tie
    create(h, "g9", "zed", 3, tenant="globex")

    everything = page(h)
    first = page(h, equals={"uid": "alice"}, limit=2)
    rest = page(h, equals={"uid": "alice"}, after=(first[-1][1]["created_timestamp"], first[-1][0]), limit=2)
    rejected = page(h, equals={"status": "REJECTED", "uid": "alice", "strategy_id": "s2"})
    window = page(h, created_from=(T0 + timedelta(minutes=1)).isoformat(),
                  created_before=(T0 + timedelta(minutes=2)).isoformat())

    assert [i for i, _ in everything] == ["g4", "g3", "g2", "g1"]  # one tenant, group documents only
    assert [i for i, _ in first] == ["g4", "g3"] and [i for i, _ in rest] == ["g1"]
    assert [i for i, _ in rejected] == ["g3"]
    assert [i for i, _ in window] == ["g2"]
    assert everything[0][1]["uid"] == "alice" and everything[0][1]["status"] == "PENDING"
    assert [i for i, _ in page(h, "globex")] == ["g9"]
