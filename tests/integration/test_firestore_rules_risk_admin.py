"""firestore.rules for the risk administration documents (issue 13), on the official emulator.

- ``tenants/{t}/reconciliation/{day}``: read by the tenant's ``tenant_admin`` and ``auditor``; no client
  creates, updates or deletes a report (the server writes them).
- ``tenants/{t}/config/risk``: the server-managed fields of the three-state kill switch and the new
  limits (``trading_state``, ``max_position_by_class``, ``max_order_notional``) are not client-writable:
  they change through the risk settings API, which records each change in the audit log.

Each refusal has an allowed twin one change away (same path, another caller or field).
"""
from __future__ import annotations

import os
from typing import Any

import pytest

from tests.support.emulators import FirestoreEmulator
from tests.support.rules_client import OWNER, RulesClient, open_rules_project, token_minter

pytestmark = pytest.mark.emulator

PROJECT = f"demo-rules-risk-admin-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
token = token_minter(PROJECT)  # token(uid, tenant=None, role=None): claims given as None are left out

ALICE = token("alice", "A", "trader")
ADMIN_A = token("ada", "A", "tenant_admin")
AUDITOR_A = token("audrey", "A", "auditor")
RISK_A = token("rita", "A", "risk_manager")
ADMIN_B = token("bea", "B", "tenant_admin")
AUDITOR_B = token("bart", "B", "auditor")

REPORT = {"tenant_id": "A", "day": "2026-12-06", "status": "breaks", "break_count": 1,
          "breaks": [{"account_id": "alice-main", "symbol": "SPY", "ledger_qty": "10", "venue_qty": "13"}]}
SEED: dict[str, dict[str, Any]] = {
    "tenants/A/reconciliation/2026-12-06": REPORT,
    "tenants/B/reconciliation/2026-12-06": {**REPORT, "tenant_id": "B"},
    "tenants/A/config/risk": {"kill_switch": False, "max_position_qty": "50"},
}


@pytest.fixture(scope="module")
def client(firestore_emulator: FirestoreEmulator) -> RulesClient:
    return open_rules_project(firestore_emulator, PROJECT, SEED)


@pytest.mark.parametrize("caller", [pytest.param(ADMIN_A, id="admin"), pytest.param(AUDITOR_A, id="auditor")])
def test_the_tenants_admins_and_auditors_read_its_reconciliation_reports(client, caller):
    reply = client.get("tenants/A/reconciliation/2026-12-06", token=caller)

    assert reply.ok and reply.data()["status"] == "breaks"


@pytest.mark.parametrize("caller", [
    pytest.param(ALICE, id="trader"), pytest.param(RISK_A, id="risk-manager"),
    pytest.param(ADMIN_B, id="admin-of-B"), pytest.param(AUDITOR_B, id="auditor-of-B"),
    pytest.param(token("ada", None, "tenant_admin"), id="admin-without-tenant-claim"),
    pytest.param(None, id="anonymous")])
def test_nobody_else_reads_a_reconciliation_report(client, caller):
    assert client.get("tenants/A/reconciliation/2026-12-06", token=caller).denied


@pytest.mark.parametrize("caller", [pytest.param(ADMIN_A, id="admin"), pytest.param(AUDITOR_A, id="auditor")])
def test_no_client_writes_a_reconciliation_report(client, caller):
    assert client.create("tenants/A/reconciliation/2026-12-07", {**REPORT, "day": "2026-12-07"}, token=caller).denied
    assert client.patch("tenants/A/reconciliation/2026-12-06", {**REPORT, "status": "clean"}, token=caller).denied
    assert client.delete("tenants/A/reconciliation/2026-12-06", token=caller).denied
    assert client.get("tenants/A/reconciliation/2026-12-06", token=OWNER).data()["status"] == "breaks"


def test_the_three_state_switch_and_new_limits_are_not_client_writable(client):
    allowed = client.patch("tenants/A/config/risk", {"kill_switch": True, "max_position_qty": "40"}, token=ADMIN_A)
    state = client.patch("tenants/A/config/risk", {"kill_switch": True, "trading_state": "halted"}, token=ADMIN_A)
    notional = client.patch("tenants/A/config/risk", {"kill_switch": True, "max_order_notional": "10"},
                            token=ADMIN_A)

    assert allowed.ok  # the legacy client shape still works
    assert state.denied and notional.denied
