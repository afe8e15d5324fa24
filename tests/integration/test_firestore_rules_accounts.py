"""firestore.rules for accounts, broker connections and members (issue 12), on the official emulator.

- ``tenants/{t}/accounts/{id}``: read by its owners (uid in ``owner_uids``, token ``tenant_id`` = t)
  and by the tenant's ``tenant_admin`` / ``auditor``; never written by a client.
- ``tenants/{t}/broker_connections/{id}``: read only by the tenant's admins and auditors.
- ``tenants/{t}/members/{uid}``: read only by the tenant's admins and auditors (issue 13).
- An app-written intent (single or group) that names ``broker_account_id`` must name an account of
  the caller's tenant that lists the caller among its owners and is ``active`` or ``reduce_only``
  (the rules ``get()`` it); one that names none is allowed (the trigger binds the default).

Clients are unsigned ID tokens (tests/support/rules_client.py); documents are written with
``Bearer owner`` (admin credentials), as the admin API does. Each refusal has an allowed twin one
change away, so a refusal can only pass because of the rule under test.

Cast: tenant A — traders alice and bob, admin ada, auditor audrey, risk manager rita; tenant B —
trader carol, admin bea, auditor bart.
"""
from __future__ import annotations

import datetime as dt
import os
from typing import Any

import pytest

from backend.domain.accounts import Account, BrokerConnection
from tests.support.emulators import FirestoreEmulator
from tests.support.rules_client import OWNER, RulesClient, Timestamp, new_id, open_rules_project, token_minter

pytestmark = pytest.mark.emulator

PROJECT = f"demo-rules-accounts-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
AT = dt.datetime(2026, 11, 20, 14, 0, tzinfo=dt.timezone.utc)
token = token_minter(PROJECT)  # token(uid, tenant=None, role=None): claims given as None are left out

ALICE = token("alice", "A", "trader")
BOB = token("bob", "A", "trader")
ADMIN_A = token("ada", "A", "tenant_admin")
AUDITOR_A = token("audrey", "A", "auditor")
RISK_A = token("rita", "A", "risk_manager")
CAROL = token("carol", "B", "trader")
ADMIN_B = token("bea", "B", "tenant_admin")
AUDITOR_B = token("bart", "B", "auditor")
ALICE_CLAIMS_B = token("alice", "B", "trader")  # alice's uid with another tenant's claims
ALICE_NO_CLAIMS = token("alice")
ANON = None


def rest(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: Timestamp(v) if isinstance(v, dt.datetime) else v for k, v in doc.items()}


def account_doc(tenant: str, account_id: str, owners: tuple[str, ...], status: str = "active") -> dict[str, Any]:
    return rest(Account(account_id=account_id, connection_id="deployment", venue_account_id=f"{tenant}-{account_id}",
                        owner_uids=owners, status=status, asset_classes=["EQUITY", "CRYPTO", "FOREX"],
                        created_at=AT, updated_at=AT).to_dict())


def member_doc(uid: str, role: str, default: str | None) -> dict[str, Any]:
    return rest({"uid": uid, "role": role, "status": "active", "default_account_id": default,
                 "email": f"{uid}@example.com", "created_at": AT, "updated_at": AT})


CONNECTION = rest(BrokerConnection(connection_id="alpaca-main", venue="alpaca_broker", environment="sandbox",
                                   base_url="http://127.0.0.1:9999", credentials_ref="env:ALPACA_BROKER_KEYS",
                                   created_at=AT, updated_at=AT).to_dict())

SEED: dict[str, dict[str, Any]] = {
    "tenants/A/accounts/alice-main": account_doc("A", "alice-main", ("alice",)),
    "tenants/A/accounts/alice-ro": account_doc("A", "alice-ro", ("alice",), "reduce_only"),
    "tenants/A/accounts/alice-halted": account_doc("A", "alice-halted", ("alice",), "halted"),
    "tenants/A/accounts/alice-closed": account_doc("A", "alice-closed", ("alice",), "closed"),
    "tenants/A/accounts/joint": account_doc("A", "joint", ("alice", "bob")),
    "tenants/A/accounts/bob-main": account_doc("A", "bob-main", ("bob",)),
    # a malformed document written by hand: owner_uids a string, not a list
    "tenants/A/accounts/stringly": {**account_doc("A", "stringly", ("alice",)), "owner_uids": "alice"},
    "tenants/A/broker_connections/alpaca-main": CONNECTION,
    "tenants/A/members/alice": member_doc("alice", "trader", "alice-main"),
    "tenants/A/members/bob": member_doc("bob", "trader", "bob-main"),
    # tenant B: alice's uid owns an account here, which never opens anything in tenant A
    "tenants/B/accounts/carol-main": account_doc("B", "carol-main", ("carol",)),
    "tenants/B/accounts/alice-in-b": account_doc("B", "alice-in-b", ("alice",)),
    "tenants/B/broker_connections/alpaca-main": CONNECTION,
    "tenants/B/members/carol": member_doc("carol", "trader", "carol-main"),
}


@pytest.fixture(scope="module")
def client(firestore_emulator: FirestoreEmulator) -> RulesClient:
    """The session emulator with firestore.rules for this module's own project, holding SEED."""
    return open_rules_project(firestore_emulator, PROJECT, SEED)


def stored(client: RulesClient, path: str) -> Any:
    return client.get(path, token=OWNER).body


# ---- reads -----------------------------------------------------------------------------------------

ALLOWED_READS = [
    pytest.param(ALICE, "tenants/A/accounts/alice-main", id="owner-reads-own-account"),
    pytest.param(ALICE, "tenants/A/accounts/alice-closed", id="owner-reads-own-closed-account"),
    pytest.param(ALICE, "tenants/A/accounts/joint", id="co-owner-reads-joint-account"),
    pytest.param(BOB, "tenants/A/accounts/joint", id="other-co-owner-reads-joint-account"),
    pytest.param(token("alice", "A", "viewer"), "tenants/A/accounts/alice-main",
                 id="owner-with-any-role-of-the-tenant-reads-own-account"),
    pytest.param(ADMIN_A, "tenants/A/accounts/bob-main", id="admin-reads-an-account"),
    pytest.param(AUDITOR_A, "tenants/A/accounts/bob-main", id="auditor-reads-an-account"),
    pytest.param(ADMIN_A, "tenants/A/broker_connections/alpaca-main", id="admin-reads-connection"),
    pytest.param(AUDITOR_A, "tenants/A/broker_connections/alpaca-main", id="auditor-reads-connection"),
    pytest.param(ADMIN_A, "tenants/A/members/bob", id="admin-reads-member-doc"),
    pytest.param(AUDITOR_A, "tenants/A/members/bob", id="auditor-reads-member-doc"),
    pytest.param(CAROL, "tenants/B/accounts/carol-main", id="owner-in-B-reads-own-account"),
    pytest.param(ADMIN_B, "tenants/B/broker_connections/alpaca-main", id="admin-B-reads-B-connection"),
]

DENIED_READS = [
    # another user of the same tenant
    pytest.param(BOB, "tenants/A/accounts/alice-main", id="colleague-reads-account"),
    pytest.param(RISK_A, "tenants/A/accounts/alice-main", id="risk-manager-reads-account-not-owned"),
    pytest.param(BOB, "tenants/A/members/alice", id="colleague-reads-member-doc"),
    pytest.param(ALICE, "tenants/A/members/bob", id="member-reads-colleagues-member-doc"),
    pytest.param(ALICE, "tenants/A/members/alice", id="member-reads-own-member-doc"),  # admins/auditors only
    # a user of another tenant, and alice's own uid with another tenant's claims or none
    pytest.param(CAROL, "tenants/A/accounts/alice-main", id="user-of-B-reads-A-account"),
    pytest.param(ADMIN_B, "tenants/A/accounts/alice-main", id="admin-of-B-reads-A-account"),
    pytest.param(AUDITOR_B, "tenants/A/accounts/alice-main", id="auditor-of-B-reads-A-account"),
    pytest.param(ALICE_CLAIMS_B, "tenants/A/accounts/alice-main", id="owner-with-B-claims-reads-A-account"),
    pytest.param(ALICE, "tenants/B/accounts/alice-in-b", id="own-uid-account-in-B-with-A-claims"),
    pytest.param(ALICE_NO_CLAIMS, "tenants/A/accounts/alice-main", id="owner-without-tenant-claim"),
    pytest.param(ALICE_CLAIMS_B, "tenants/A/members/alice", id="member-doc-with-B-claims"),
    pytest.param(ALICE_NO_CLAIMS, "tenants/A/members/alice", id="member-doc-without-tenant-claim"),
    pytest.param(ADMIN_B, "tenants/A/members/alice", id="admin-of-B-reads-A-member"),
    pytest.param(ALICE, "tenants/A/accounts/stringly", id="owners-a-string-is-no-owner-list"),
    # connections: admins and auditors of the tenant only
    pytest.param(ALICE, "tenants/A/broker_connections/alpaca-main", id="trader-reads-connection"),
    pytest.param(RISK_A, "tenants/A/broker_connections/alpaca-main", id="risk-manager-reads-connection"),
    pytest.param(ADMIN_B, "tenants/A/broker_connections/alpaca-main", id="admin-of-B-reads-A-connection"),
    pytest.param(AUDITOR_B, "tenants/A/broker_connections/alpaca-main", id="auditor-of-B-reads-A-connection"),
    pytest.param(token("ada", None, "tenant_admin"), "tenants/A/broker_connections/alpaca-main",
                 id="admin-role-without-tenant-claim"),
]


@pytest.mark.parametrize(("who", "path"), ALLOWED_READS)
def test_read_is_allowed(client: RulesClient, who: str, path: str) -> None:
    reply = client.get(path, token=who)

    assert reply.ok, reply
    assert reply.body["fields"] == stored(client, path)["fields"]


@pytest.mark.parametrize(("who", "path"), DENIED_READS)
def test_read_is_denied(client: RulesClient, who: str, path: str) -> None:
    reply = client.get(path, token=who)

    assert reply.denied, reply


@pytest.mark.parametrize("path", sorted(SEED))
def test_unauthenticated_read_is_denied(client: RulesClient, path: str) -> None:
    assert client.get(path, token=ANON).denied


def list_accounts(client: RulesClient, tenant: str, who: str | None, owner: str | None):
    """runQuery on tenants/{tenant}/accounts, optionally ``owner_uids array-contains owner``."""
    query: dict[str, Any] = {"from": [{"collectionId": "accounts"}]}
    if owner is not None:
        query["where"] = {"fieldFilter": {"field": {"fieldPath": "owner_uids"}, "op": "ARRAY_CONTAINS",
                                          "value": {"stringValue": owner}}}
    return client._send("POST", f"{client.url}/tenants/{tenant}:runQuery", who, json={"structuredQuery": query})


@pytest.mark.parametrize(("who", "owner", "expected"), [
    pytest.param(ALICE, "alice", ["alice-closed", "alice-halted", "alice-main", "alice-ro", "joint"],
                 id="owner-lists-own-accounts"),
    pytest.param(BOB, "bob", ["bob-main", "joint"], id="colleague-lists-own-accounts"),
    pytest.param(ADMIN_A, None, sorted(p.rsplit("/", 1)[1] for p in SEED if p.startswith("tenants/A/accounts/")),
                 id="admin-lists-all-accounts"),
    pytest.param(ALICE, None, None, id="trader-lists-all-accounts"),
    pytest.param(ALICE, "bob", None, id="trader-lists-a-colleagues-accounts"),
    pytest.param(CAROL, "carol", None, id="user-of-B-lists-A-accounts"),
])
def test_account_query(client: RulesClient, who: str, owner: str | None, expected: list[str] | None) -> None:
    reply = list_accounts(client, "A", who, owner)

    if expected is None:
        assert reply.denied, reply
    else:
        assert reply.ok, reply
        assert sorted(d["name"].rsplit("/", 1)[1] for d in RulesClient.query_docs(reply)) == expected


# ---- intent documents naming an account --------------------------------------------------------------

def single(uid: str = "alice", account: str | None = "alice-main") -> dict[str, Any]:
    intent = {"strategy_id": "momo-1", "symbol": "AAPL", "side": "buy", "qty": "10"}
    if account is not None:
        intent["broker_account_id"] = account
    return {"uid": uid, "status": "new", "kind": "single", "intent": intent}


LEG = {"symbol": "EUR/USD", "side": "buy", "qty": "1000", "asset_class": "FOREX"}


def group(uid: str = "alice", account: str | None = "alice-main") -> dict[str, Any]:
    request: dict[str, Any] = {"strategy_id": "pairs-1", "legs": [LEG, {**LEG, "symbol": "GBP/USD", "side": "sell"}]}
    if account is not None:
        request["broker_account_id"] = account
    return {"uid": uid, "status": "new", "kind": "multi_leg", "request": request}


ALLOWED_INTENTS = [
    pytest.param(ALICE, "A", single(), id="single-own-active-account"),
    pytest.param(ALICE, "A", single(account="alice-ro"), id="single-own-reduce-only-account"),
    pytest.param(ALICE, "A", single(account="joint"), id="single-joint-account"),
    pytest.param(BOB, "A", single("bob", "joint"), id="single-joint-account-by-the-other-owner"),
    pytest.param(ALICE, "A", group(), id="group-own-active-account"),
    pytest.param(ALICE, "A", group(account=None), id="group-without-account-binds-the-default"),
    pytest.param(CAROL, "B", single("carol", "carol-main"), id="single-own-account-in-B"),
]

DENIED_INTENTS = [
    pytest.param(ALICE, "A", single(account="bob-main"), id="single-foreign-account"),
    pytest.param(ALICE, "A", single(account="nope"), id="single-missing-account"),
    pytest.param(ALICE, "A", single(account="alice-halted"), id="single-own-halted-account"),
    pytest.param(ALICE, "A", single(account="alice-closed"), id="single-own-closed-account"),
    pytest.param(ALICE, "A", single(account="alice-in-b"), id="single-own-uid-account-of-another-tenant"),
    pytest.param(ALICE, "A", single(account="stringly"), id="single-account-with-owners-a-string"),
    pytest.param(ADMIN_A, "A", single("ada", "alice-main"), id="single-admin-names-a-traders-account"),
    pytest.param(CAROL, "B", single("carol", "joint"), id="single-account-id-of-tenant-A-in-B"),
    pytest.param(ALICE, "A", group(account="bob-main"), id="group-foreign-account"),
    pytest.param(ALICE, "A", group(account="nope"), id="group-missing-account"),
    pytest.param(ALICE, "A", group(account="alice-halted"), id="group-own-halted-account"),
    pytest.param(ALICE, "A", group(account="alice-closed"), id="group-own-closed-account"),
]


@pytest.mark.parametrize(("who", "tenant", "body"), ALLOWED_INTENTS)
def test_an_intent_naming_an_own_tradable_account_or_none_is_accepted(client: RulesClient, who: str, tenant: str,
                                                                      body: dict[str, Any]) -> None:
    path = f"tenants/{tenant}/order_intents/{new_id('intent')}"

    reply = client.create(path, body, token=who)

    assert reply.ok, reply


@pytest.mark.parametrize(("who", "tenant", "body"), DENIED_INTENTS)
def test_an_intent_naming_an_account_the_writer_cannot_trade_is_refused(client: RulesClient, who: str, tenant: str,
                                                                        body: dict[str, Any]) -> None:
    path = f"tenants/{tenant}/order_intents/{new_id('intent')}"

    reply = client.create(path, body, token=who)

    assert reply.denied, reply
    assert client.get(path, token=OWNER).status == 404


def test_an_account_halted_after_one_intent_refuses_the_next(client: RulesClient) -> None:
    path = "tenants/A/accounts/alice-flip"
    assert client.patch(path, account_doc("A", "alice-flip", ("alice",)), token=OWNER).ok
    first = client.create(f"tenants/A/order_intents/{new_id('intent')}", single(account="alice-flip"), token=ALICE)

    assert client.patch(path, {"status": "halted"}, token=OWNER, mask=["status"]).ok
    second = client.create(f"tenants/A/order_intents/{new_id('intent')}", single(account="alice-flip"), token=ALICE)

    assert first.ok, first
    assert second.denied, second


# ---- no client writes ------------------------------------------------------------------------------

EXISTING = [
    pytest.param(ALICE, "tenants/A/accounts/alice-main", {"status": "active", "owner_uids": ["alice"]},
                 id="owner-rewrites-own-account"),
    pytest.param(ALICE, "tenants/A/accounts/bob-main", {"owner_uids": ["bob", "alice"]},
                 id="trader-adds-self-to-colleagues-account"),
    pytest.param(ALICE, "tenants/A/accounts/alice-halted", {"status": "active"}, id="owner-unhalts-own-account"),
    pytest.param(ADMIN_A, "tenants/A/accounts/bob-main", {"status": "closed"}, id="admin-closes-account-directly"),
    pytest.param(AUDITOR_A, "tenants/A/accounts/bob-main", {"status": "halted"}, id="auditor-writes-account"),
    pytest.param(ADMIN_A, "tenants/A/broker_connections/alpaca-main", {"base_url": "http://evil.example"},
                 id="admin-edits-connection-directly"),
    pytest.param(ALICE, "tenants/A/members/alice", {"default_account_id": "bob-main"},
                 id="member-sets-own-default"),
    pytest.param(ALICE, "tenants/A/members/alice", {"role": "tenant_admin"}, id="member-raises-own-role"),
    pytest.param(ADMIN_A, "tenants/A/members/bob", {"status": "suspended"}, id="admin-edits-member-directly"),
]


@pytest.mark.parametrize("how", ["update", "delete"])
@pytest.mark.parametrize(("who", "path", "fields"), EXISTING)
def test_no_client_changes_an_account_connection_or_member(client: RulesClient, who: str, path: str,
                                                            fields: dict[str, Any], how: str) -> None:
    before = stored(client, path)

    if how == "delete":
        reply = client.delete(path, token=who)
    else:
        reply = client.patch(path, fields, token=who, mask=sorted(fields))

    assert reply.denied, reply
    assert stored(client, path) == before


NEW_DOCS = [
    pytest.param(ALICE, "tenants/A/accounts/{new}", account_doc("A", "x", ("alice",)), id="owner-creates-account"),
    pytest.param(ADMIN_A, "tenants/A/accounts/{new}", account_doc("A", "x", ("bob",)), id="admin-creates-account"),
    pytest.param(ADMIN_A, "tenants/A/broker_connections/{new}", CONNECTION, id="admin-creates-connection"),
    pytest.param(AUDITOR_A, "tenants/A/broker_connections/{new}", CONNECTION, id="auditor-creates-connection"),
    pytest.param(ALICE, "tenants/A/members/{new}", member_doc("x", "tenant_admin", None), id="trader-creates-member"),
    pytest.param(ADMIN_A, "tenants/A/members/{new}", member_doc("x", "trader", None), id="admin-creates-member"),
]


@pytest.mark.parametrize(("who", "template", "body"), NEW_DOCS)
def test_no_client_creates_an_account_connection_or_member(client: RulesClient, who: str, template: str,
                                                           body: dict[str, Any]) -> None:
    path = template.format(new=new_id("new"))

    reply = client.create(path, body, token=who)

    assert reply.denied, reply
    assert client.get(path, token=OWNER).status == 404


def test_a_member_cannot_create_their_own_member_document(client: RulesClient) -> None:
    reply = client.create("tenants/A/members/ada", member_doc("ada", "tenant_admin", "alice-main"), token=ADMIN_A)

    assert reply.denied, reply
    assert client.get("tenants/A/members/ada", token=OWNER).status == 404
