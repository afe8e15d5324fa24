"""firestore.rules for the issue 16 documents, on the official emulator.

- ``tenants/{t}/corporate_actions/{id}``: read by the tenant's ``tenant_admin``; no client creates,
  changes or deletes one (the server records them for POST /tenants/{t}/corporate-actions).
- ``users/{uid}/config/tax`` (the lot-method elections): read by its user; no client writes it
  (elections go through POST /portfolio/tax-lots/election, which keeps them forward-only).

Each refusal has an allowed twin one change away (same path, another caller or operation).
"""
from __future__ import annotations

import os
from typing import Any

import pytest

from tests.support.emulators import FirestoreEmulator
from tests.support.rules_client import OWNER, RulesClient, open_rules_project, token_minter

pytestmark = pytest.mark.emulator

PROJECT = f"demo-rules-tax-admin-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
token = token_minter(PROJECT)  # token(uid, tenant=None, role=None): claims given as None are left out

ALICE = token("alice", "A", "trader")
BOB = token("bob", "A", "trader")
ADMIN_A = token("ada", "A", "tenant_admin")
ADMIN_B = token("bea", "B", "tenant_admin")

ACTION = {"action": {"action_id": "s1", "kind": "SPLIT", "symbol": "AAPL", "effective": "2026-01-06", "ratio": "2"},
          "status": "APPLIED", "recorded_by": "ada", "recorded_at": "2026-01-05T14:30:00+00:00"}
ELECTIONS = {"elections": [{"method": "HIFO", "effective_at": "2026-01-05T14:30:00+00:00",
                            "recorded_at": "2026-01-05T14:30:00+00:00"}]}
SEED: dict[str, dict[str, Any]] = {
    "tenants/A/corporate_actions/s1": ACTION,
    "users/alice/config/tax": ELECTIONS,
}


@pytest.fixture(scope="module")
def client(firestore_emulator: FirestoreEmulator) -> RulesClient:
    return open_rules_project(firestore_emulator, PROJECT, SEED)


def test_the_tenants_admin_reads_its_corporate_actions(client):
    reply = client.get("tenants/A/corporate_actions/s1", token=ADMIN_A)

    assert reply.ok and reply.data()["status"] == "APPLIED"


@pytest.mark.parametrize("caller", [pytest.param(ALICE, id="trader"), pytest.param(ADMIN_B, id="admin-of-B"),
                                    pytest.param(token("ada", None, "tenant_admin"), id="admin-without-tenant"),
                                    pytest.param(None, id="anonymous")])
def test_nobody_else_reads_a_corporate_action(client, caller):
    assert client.get("tenants/A/corporate_actions/s1", token=caller).denied


def test_no_client_records_or_changes_a_corporate_action(client):
    assert client.create("tenants/A/corporate_actions/s2", {**ACTION, "status": "APPLYING"}, token=ADMIN_A).denied
    assert client.patch("tenants/A/corporate_actions/s1", {**ACTION, "status": "APPLYING"}, token=ADMIN_A).denied
    assert client.delete("tenants/A/corporate_actions/s1", token=ADMIN_A).denied


def test_a_user_reads_their_own_elections_only(client):
    assert client.get("users/alice/config/tax", token=ALICE).ok
    assert client.get("users/alice/config/tax", token=BOB).denied
    assert client.get("users/alice/config/tax", token=ADMIN_A).denied


def test_no_client_writes_elections_not_even_their_own(client):
    back_dated = {"elections": [{"method": "LIFO", "effective_at": "2020-01-01T00:00:00+00:00",
                                 "recorded_at": "2020-01-01T00:00:00+00:00"}]}
    assert client.patch("users/alice/config/tax", back_dated, token=ALICE).denied
    assert client.create("users/bob/config/tax", back_dated, token=BOB).denied
    assert client.delete("users/alice/config/tax", token=ALICE).denied
    assert client.get("users/alice/config/tax", token=OWNER).data() == ELECTIONS
