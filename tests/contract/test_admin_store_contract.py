"""The admin read models (issue 13) behave the same on both stores: ``admin_page`` (members,
connections, accounts by id, equality and array-contains filters, id cursor) and ``audit_page``
(newest first by (created_at, id), one equality filter, day window, cursor). And an admin change
commits with its audit entry all-or-nothing (``backend.api.audit.audit_op`` in the change's commit)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from backend.api.audit import audit_op
from backend.api.auth import Identity
from backend.execution.unit_of_work import Commit, Conflict, Create, Update

T = "acme"
ADMIN = Identity(uid="ada", tenant_id=T, role="tenant_admin")


def seed_members(h):
    for uid, role, status in (("u3", "trader", "active"), ("u1", "tenant_admin", "active"),
                              ("u2", "tenant_admin", "suspended"), ("u4", "auditor", "active")):
        h.put(f"tenants/{T}/members/{uid}", {"uid": uid, "role": role, "status": status})
    h.put("tenants/other/members/u9", {"uid": "u9", "role": "tenant_admin", "status": "active"})


def test_admin_page_orders_by_id_filters_and_pages(h):
    seed_members(h)
    assert [i for i, _ in h.store.admin_page(T, "members", equals={}, after=None, limit=10)] == ["u1", "u2", "u3", "u4"]
    assert [i for i, _ in h.store.admin_page(T, "members", equals={"role": "tenant_admin", "status": "active"},
                                             after=None, limit=10)] == ["u1"]
    assert [i for i, _ in h.store.admin_page(T, "members", equals={}, after="u2", limit=1)] == ["u3"]


def test_admin_page_array_contains_finds_every_account_of_an_owner(h):
    for account_id, owners in (("a1", ["u1"]), ("a2", ["u2", "u1"]), ("a3", ["u2"])):
        h.put(f"tenants/{T}/accounts/{account_id}", {"account_id": account_id, "owner_uids": owners,
                                                      "status": "active"})
    rows = h.store.admin_page(T, "accounts", equals={}, contains=("owner_uids", "u1"), after=None, limit=10)
    assert [i for i, _ in rows] == ["a1", "a2"]


def entry(h, when: str, action: str) -> str:
    now = datetime.fromisoformat(when).replace(tzinfo=timezone.utc)
    op = audit_op(ADMIN, tenant_id=T, action=action, target_type="member", target_id="u1", before=None,
                  after={"role": "trader"}, request_id="r", now=now)
    h.store.commit(Commit([op]))
    return op.path.rsplit("/", 1)[1]


def test_audit_page_is_newest_first_filtered_windowed_and_paged(h):
    ids = [entry(h, f"2026-12-0{day}T10:00:00", action) for day, action in
           ((1, "member.add"), (2, "member.role_set"), (3, "member.add"), (4, "member.status_set"))]
    newest_first = list(reversed(ids))
    assert [i for i, _ in h.store.audit_page(T, equals={}, created_from=None, created_before=None, after=None,
                                             limit=10)] == newest_first
    adds = h.store.audit_page(T, equals={"action": "member.add"}, created_from=None, created_before=None,
                              after=None, limit=10)
    assert [i for i, _ in adds] == [ids[2], ids[0]]
    window = h.store.audit_page(T, equals={}, created_from="2026-12-02", created_before="2026-12-04", after=None,
                                limit=10)
    assert [i for i, _ in window] == [ids[2], ids[1]]
    first = h.store.audit_page(T, equals={}, created_from=None, created_before=None, after=None, limit=2)
    rest = h.store.audit_page(T, equals={}, created_from=None, created_before=None,
                              after=(first[-1][1]["created_at"], first[-1][0]), limit=10)
    assert [i for i, _ in first + rest] == newest_first


def test_a_change_and_its_audit_entry_commit_together_or_not_at_all(h):
    h.put(f"tenants/{T}/members/u1", {"uid": "u1", "role": "trader", "status": "active"})
    _, token = h.store.get_all([f"tenants/{T}/members/u1"])[f"tenants/{T}/members/u1"]
    now = datetime(2026, 12, 7, tzinfo=timezone.utc)
    h.put(f"tenants/{T}/members/u1", {"uid": "u1", "role": "auditor", "status": "active"})  # changed meanwhile
    stale = Commit([Update(f"tenants/{T}/members/u1", {"role": "tenant_admin"}, token),
                    audit_op(ADMIN, tenant_id=T, action="member.role_set", target_type="member", target_id="u1",
                             before=None, after=None, request_id="r", now=now)])
    with pytest.raises(Conflict):
        h.store.commit(stale)
    assert h.paths(f"tenants/{T}/audit_log") == []
    assert h.raw(f"tenants/{T}/members/u1")["role"] == "auditor"
    h.store.commit(Commit([Create(f"tenants/{T}/members/u5", {"uid": "u5"}),
                           audit_op(ADMIN, tenant_id=T, action="member.add", target_type="member", target_id="u5",
                                    before=None, after={"uid": "u5"}, request_id="r", now=now)]))
    assert len(h.paths(f"tenants/{T}/audit_log")) == 1 and h.raw(f"tenants/{T}/members/u5") == {"uid": "u5"}
