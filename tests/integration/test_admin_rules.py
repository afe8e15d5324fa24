"""firestore.rules for the administration paths (issue 13), on the official emulator.

- ``tenants/{t}/audit_log/{id}``: append-only for clients in the strongest sense — no client creates,
  updates or deletes an entry, not even the tenant's admin (the server writes entries with admin
  credentials in the same commit as the change); the tenant's ``tenant_admin`` and ``auditor`` read
  and list them; nobody else (traders, risk managers, other tenants, anonymous).
- ``tenants/{t}/members/{uid}``: read by the tenant's admins and auditors (and the member), never
  written by a client.
- The auditor reads what a tenant admin reads: the ledger (corrections included), metrics, groups.
- The tenant document ``tenants/{t}`` (the admin roster) is server-only.

Clients are unsigned ID tokens (tests/support/rules_client.py); documents are seeded with
``Bearer owner`` (admin credentials), as the admin API writes them.
"""
from __future__ import annotations

import os
from typing import Any

import pytest

from tests.support.emulators import FirestoreEmulator
from tests.support.rules_client import OWNER, RulesClient, new_id, open_rules_project, token_minter

pytestmark = pytest.mark.emulator

PROJECT = f"demo-rules-admin-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
token = token_minter(PROJECT)  # token(uid, tenant=None, role=None): claims given as None are left out

ALICE = token("alice", "A", "trader")
ADMIN_A = token("ada", "A", "tenant_admin")
AUDITOR_A = token("audrey", "A", "auditor")
RISK_A = token("rita", "A", "risk_manager")
ADMIN_B = token("bea", "B", "tenant_admin")
AUDITOR_B = token("bart", "B", "auditor")
OPERATOR = token("opal", None, "platform_operator")
AUDITOR_NO_TENANT = token("audrey", None, "auditor")
ANON = None

ENTRY = {"audit_id": "e1", "tenant_id": "A", "actor_uid": "ada", "actor_role": "tenant_admin",
         "action": "member.role_set", "target_type": "member", "target_id": "alice", "target": "member/alice",
         "before": {"role": "trader"}, "after": {"role": "auditor"}, "request_id": "r1",
         "created_at": "2026-12-07T07:00:00+00:00", "created_day": "2026-12-07"}

SEED: dict[str, dict[str, Any]] = {
    "tenants/A": {"tenant_id": "A", "active_admin_uids": ["ada"]},
    "tenants/A/audit_log/e1": ENTRY,
    "tenants/A/members/alice": {"uid": "alice", "role": "trader", "status": "active"},
    "tenants/A/members/ada": {"uid": "ada", "role": "tenant_admin", "status": "active"},
    "tenants/A/ledger_trades/lt-1": {"kind": "fill", "uid": "alice", "qty": "1"},
    "tenants/A/ledger_trades/corr-1": {"kind": "correction", "corrects": "lt-1", "uid": "alice"},
    "tenants/A/metrics/2026-12-07__0": {"day": "2026-12-07", "decisions": 1},
    "tenants/A/execution_groups/g-1": {"uid": "alice", "status": "FILLED"},
    "tenants/A/execution_groups/g-1/legs/leg-1": {"uid": "alice", "status": "FILLED"},
    "tenants/B/audit_log/e1": {**ENTRY, "tenant_id": "B", "actor_uid": "bea"},
    "tenants/B/members/bea": {"uid": "bea", "role": "tenant_admin", "status": "active"},
}


@pytest.fixture(scope="module")
def client(firestore_emulator: FirestoreEmulator) -> RulesClient:
    return open_rules_project(firestore_emulator, PROJECT, SEED)


# ---- reads ---------------------------------------------------------------------------------------

READ_ALLOWED = [
    pytest.param(ADMIN_A, "tenants/A/audit_log/e1", id="admin-reads-audit-entry"),
    pytest.param(AUDITOR_A, "tenants/A/audit_log/e1", id="auditor-reads-audit-entry"),
    pytest.param(ADMIN_A, "tenants/A/members/alice", id="admin-reads-member"),
    pytest.param(AUDITOR_A, "tenants/A/members/alice", id="auditor-reads-member"),
    pytest.param(AUDITOR_A, "tenants/A/ledger_trades/lt-1", id="auditor-reads-ledger"),
    pytest.param(AUDITOR_A, "tenants/A/ledger_trades/corr-1", id="auditor-reads-correction"),
    pytest.param(ADMIN_A, "tenants/A/ledger_trades/corr-1", id="admin-reads-correction"),
    pytest.param(AUDITOR_A, "tenants/A/metrics/2026-12-07__0", id="auditor-reads-metrics"),
    pytest.param(AUDITOR_A, "tenants/A/execution_groups/g-1", id="auditor-reads-group"),
    pytest.param(AUDITOR_A, "tenants/A/execution_groups/g-1/legs/leg-1", id="auditor-reads-leg"),
]

READ_DENIED = [
    pytest.param(ALICE, "tenants/A/audit_log/e1", id="trader-reads-audit-entry"),
    pytest.param(RISK_A, "tenants/A/audit_log/e1", id="risk-manager-reads-audit-entry"),
    pytest.param(ADMIN_B, "tenants/A/audit_log/e1", id="other-tenant-admin-reads-audit-entry"),
    pytest.param(AUDITOR_B, "tenants/A/audit_log/e1", id="other-tenant-auditor-reads-audit-entry"),
    pytest.param(OPERATOR, "tenants/A/audit_log/e1", id="platform-operator-reads-audit-entry"),
    pytest.param(AUDITOR_NO_TENANT, "tenants/A/audit_log/e1", id="auditor-without-tenant-reads-audit-entry"),
    pytest.param(ANON, "tenants/A/audit_log/e1", id="anonymous-reads-audit-entry"),
    pytest.param(ADMIN_B, "tenants/A/members/alice", id="other-tenant-admin-reads-member"),
    pytest.param(AUDITOR_B, "tenants/A/members/ada", id="other-tenant-auditor-reads-member"),
    pytest.param(RISK_A, "tenants/A/members/ada", id="risk-manager-reads-someone-elses-member-doc"),
    pytest.param(ALICE, "tenants/A/members/ada", id="trader-reads-someone-elses-member-doc"),
    pytest.param(ANON, "tenants/A/members/alice", id="anonymous-reads-member"),
    pytest.param(AUDITOR_B, "tenants/A/ledger_trades/lt-1", id="other-tenant-auditor-reads-ledger"),
    pytest.param(ADMIN_A, "tenants/A", id="admin-reads-tenant-roster"),
    pytest.param(AUDITOR_A, "tenants/A", id="auditor-reads-tenant-roster"),
]


@pytest.mark.parametrize(("who", "path"), READ_ALLOWED)
def test_read_is_allowed(client: RulesClient, who: str, path: str) -> None:
    reply = client.get(path, token=who)
    assert reply.ok, reply
    assert reply.data() == SEED[path]


@pytest.mark.parametrize(("who", "path"), READ_DENIED)
def test_read_is_denied(client: RulesClient, who: str | None, path: str) -> None:
    assert client.get(path, token=who).denied


@pytest.mark.parametrize(("who", "expected"), [
    pytest.param(ADMIN_A, ["e1"], id="admin-lists"), pytest.param(AUDITOR_A, ["e1"], id="auditor-lists"),
    pytest.param(ALICE, None, id="trader-lists"), pytest.param(ADMIN_B, None, id="other-admin-lists"),
    pytest.param(ANON, None, id="anonymous-lists")])
def test_audit_log_listing(client: RulesClient, who: str | None, expected: list[str] | None) -> None:
    reply = client.list_where("tenants/A/audit_log", token=who, where={"action": "member.role_set"})
    if expected is None:
        assert reply.denied, reply
    else:
        assert reply.ok, reply
        assert sorted(d["name"].rsplit("/", 1)[1] for d in RulesClient.query_docs(reply)) == expected


# ---- writes: append-only, server-only ------------------------------------------------------------

WRITERS = [pytest.param(w, id=i) for w, i in ((ADMIN_A, "admin"), (AUDITOR_A, "auditor"), (ALICE, "trader"),
                                              (ADMIN_B, "other-admin"), (OPERATOR, "operator"), (ANON, "anon"))]


@pytest.mark.parametrize("who", WRITERS)
def test_no_client_creates_an_audit_entry(client: RulesClient, who: str | None) -> None:
    entry_id = new_id("e")
    reply = client.create(f"tenants/A/audit_log/{entry_id}", {**ENTRY, "audit_id": entry_id}, token=who)
    assert reply.denied, reply
    assert client.get(f"tenants/A/audit_log/{entry_id}", token=OWNER).status == 404
    # its twin one change away: the same document written with admin credentials is accepted
    assert client.create(f"tenants/A/audit_log/{entry_id}", {**ENTRY, "audit_id": entry_id}, token=OWNER).ok


@pytest.mark.parametrize("who", WRITERS)
@pytest.mark.parametrize("how", ["update", "delete"])
def test_no_client_changes_or_deletes_an_audit_entry(client: RulesClient, who: str | None, how: str) -> None:
    path = "tenants/A/audit_log/e1"
    reply = (client.patch(path, {**ENTRY, "after": {"role": "tenant_admin"}}, token=who) if how == "update"
             else client.delete(path, token=who))
    assert reply.denied, reply
    assert client.get(path, token=OWNER).data() == ENTRY


@pytest.mark.parametrize("who", WRITERS)
@pytest.mark.parametrize("path", ["tenants/A/members/alice", "tenants/A/members/newbie", "tenants/A"])
def test_no_client_writes_a_member_or_the_tenant_roster(client: RulesClient, who: str | None, path: str) -> None:
    before = client.get(path, token=OWNER)
    reply = client.patch(path, {"uid": "alice", "role": "tenant_admin", "status": "active",
                                "active_admin_uids": ["alice"]}, token=who)
    assert reply.denied, reply
    after = client.get(path, token=OWNER)
    assert (after.status, after.data() if after.ok else None) == (before.status, before.data() if before.ok else None)


@pytest.mark.parametrize("who", [pytest.param(AUDITOR_A, id="auditor"), pytest.param(ADMIN_A, id="admin")])
def test_no_client_writes_a_ledger_correction(client: RulesClient, who: str) -> None:
    row_id = new_id("e")
    reply = client.create(f"tenants/A/ledger_trades/{row_id}", {"kind": "correction", "corrects": "lt-1"}, token=who)
    assert reply.denied, reply
