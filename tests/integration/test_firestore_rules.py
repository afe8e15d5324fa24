"""firestore.rules, evaluated by the official Firestore emulator (started with ``--rules``).

Clients are simulated with unsigned ID tokens (see tests/support/rules_client.py): the emulator
takes ``sub`` as ``request.auth.uid`` and the custom claims ``tenant_id`` / ``role`` as they are.
Data is seeded with ``Bearer owner``, which bypasses the rules as the server's admin credentials
do in production.

Cast: tenant A has traders alice and bob and the admin ada; tenant B has the trader carol and
the admin bea. Every deny case is one change away from an allowed case, so a deny can only pass
because of the rule under test (the allowed twin would fail if the whole path were closed).
"""
from __future__ import annotations

import copy
import datetime as dt
from typing import Any, Iterator

import pytest

from tests.support.emulators import FirestoreEmulator
from tests.support.rules_client import (
    OWNER,
    RULES_PATH,
    SERVER_TIMESTAMP,
    RulesClient,
    Timestamp,
    new_id,
    rules_compile_error,
    seed_documents,
    token_minter,
)

pytestmark = pytest.mark.emulator

PROJECT = "demo-rules"
# C1-only JIT: this short-lived emulator starts and compiles the rules faster (measured on a
# busy 2-CPU machine: 2.8-3.0 s vs 4.4-8.1 s for start + first request; no slower afterwards).
JVM_ARGS = ("-XX:TieredStopAtLevel=1",)
token = token_minter(PROJECT)  # token(uid, tenant=None, role=None): claims given as None are left out

ALICE = token("alice", "A", "trader")
BOB = token("bob", "A", "trader")
ADMIN_A = token("ada", "A", "tenant_admin")
ADMIN_B = token("bea", "B", "tenant_admin")
CAROL = token("carol", "B", "trader")
ALICE_CLAIMS_B = token("alice", "B", "trader")  # alice's uid with another tenant's claims
ALICE_NO_CLAIMS = token("alice")  # signed in, no tenant or role
ALICE_VIEWER = token("alice", "A", "viewer")  # unknown role
RISK_A = token("rita", "A", "risk_manager")  # issues rpm approvals through the API, never directly
ANON = None

SEED: dict[str, dict[str, Any]] = {
    # users/** (server-written)
    "users/alice": {"display_name": "Alice"},
    "users/alice/portfolio/history/trades/t-1": {"symbol": "AAPL", "qty": "1", "price": "190.10"},
    "users/alice/tax_lots/lot-1": {"symbol": "AAPL", "qty": "1", "cost": "190.10"},
    "users/alice/tax_disposals/d-1": {"symbol": "AAPL", "qty": "1", "proceeds": "200"},
    "users/bob/portfolio/history/trades/t-1": {"symbol": "MSFT", "qty": "2", "price": "410"},
    # tenant A
    "tenants/A/ledger_trades/lt-1": {"uid": "alice", "symbol": "AAPL", "qty": "1"},
    "tenants/A/order_intents/alice-1": {"uid": "alice", "status": "filled", "kind": "single",
                                        "result": {"broker_order_id": "o-1"}},
    "tenants/A/order_intents/bob-1": {"uid": "bob", "status": "new", "kind": "single"},
    "tenants/A/execution_groups/g-alice": {"uid": "alice", "status": "completed"},
    "tenants/A/execution_groups/g-alice/legs/leg-0": {"uid": "alice", "status": "filled"},
    "tenants/A/execution_groups/g-bob": {"uid": "bob", "status": "executing"},
    "tenants/A/execution_groups/g-bob/legs/leg-0": {"uid": "bob", "status": "placed"},
    "tenants/A/config/risk": {"kill_switch": False, "max_position_qty": "50"},
    "tenants/A/metrics/daily": {"trades": 3},
    "tenants/A/metrics/daily/symbols/AAPL": {"trades": 1},
    "tenants/A/exposure/acct-1_AAPL": {"position": "1", "reserved_long": "0"},
    "tenants/A/risk_days/2026-11-20/trade_slots/0": {"intent_id": "alice-1"},
    "tenants/A/rpm_approvals/rpm-1": {"for_uid": "alice", "issuer_uid": "rita", "approved": True},
    "tenants/A/venue_cursors/conn__acct-1": {"cursor": "42", "venue": "oanda"},  # issue 15: server only
    # accounts (issue 12; written with admin credentials): an intent naming an account must name
    # one of the writer's own (tests/integration/test_firestore_rules_accounts.py has the rest)
    "tenants/A/accounts/acct-1": {"account_id": "acct-1", "owner_uids": ["alice"], "status": "active"},
    "tenants/A/accounts/acct-bob": {"account_id": "acct-bob", "owner_uids": ["bob"], "status": "active"},
    "tenants/A/accounts/acct-ada": {"account_id": "acct-ada", "owner_uids": ["ada"], "status": "active"},
    # tenant B (alice's uid appears here too: uid alone never opens another tenant)
    "tenants/B/ledger_trades/lt-1": {"uid": "carol", "symbol": "TSLA", "qty": "3"},
    "tenants/B/order_intents/carol-1": {"uid": "carol", "status": "new", "kind": "single"},
    "tenants/B/order_intents/alice-b": {"uid": "alice", "status": "new", "kind": "single"},
    "tenants/B/execution_groups/g-alice": {"uid": "alice", "status": "completed"},
    "tenants/B/execution_groups/g-alice/legs/leg-0": {"uid": "alice", "status": "filled"},
    "tenants/B/config/risk": {"kill_switch": False},
    "tenants/B/metrics/daily": {"trades": 7},
    "tenants/B/accounts/acct-1": {"account_id": "acct-1", "owner_uids": ["carol"], "status": "active"},
    # operator
    "ops/global": {"kill_switch": False},
}


# ---- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def rules_emulator() -> Iterator[FirestoreEmulator]:
    """A second official emulator, started with ``--rules firestore.rules``."""
    emulator = FirestoreEmulator(rules_path=RULES_PATH, jvm_args=JVM_ARGS).start()
    try:
        problem = rules_compile_error(RulesClient(emulator.base_url, PROJECT))  # fail once, clearly
        if problem is not None:
            raise emulator.error(problem)
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="module")
def client(rules_emulator: FirestoreEmulator) -> RulesClient:
    """A REST client on a project holding SEED. Tests that write use fresh document ids (or
    restore what they change), so the seed is shared by the whole module."""
    rules_emulator.reset(PROJECT)
    rest = RulesClient(rules_emulator.base_url, PROJECT)
    seed_documents(rest, SEED)
    return rest


def assert_unchanged(client: RulesClient, path: str) -> None:
    reply = client.get(path, token=OWNER)
    assert reply.ok and reply.data() == SEED[path], f"{path} changed: {reply}"


# ---- reads ---------------------------------------------------------------------------------------

ALLOWED_READS = [
    pytest.param(ALICE, "users/alice", id="user-reads-own-user-doc"),
    pytest.param(ALICE, "users/alice/portfolio/history/trades/t-1", id="user-reads-own-trade-history"),
    pytest.param(ALICE_NO_CLAIMS, "users/alice/portfolio/history/trades/t-1",
                 id="user-without-tenant-claims-reads-own-history"),
    pytest.param(ALICE, "users/alice/tax_lots/lot-1", id="user-reads-own-tax-lot"),
    pytest.param(ALICE, "users/alice/tax_disposals/d-1", id="user-reads-own-tax-disposal"),
    pytest.param(ADMIN_A, "tenants/A/ledger_trades/lt-1", id="admin-reads-own-tenant-ledger"),
    pytest.param(ADMIN_A, "tenants/A/order_intents/bob-1", id="admin-reads-trader-intent"),
    pytest.param(ADMIN_A, "tenants/A/execution_groups/g-bob", id="admin-reads-trader-group"),
    pytest.param(ADMIN_A, "tenants/A/execution_groups/g-bob/legs/leg-0", id="admin-reads-trader-leg"),
    pytest.param(ADMIN_A, "tenants/A/config/risk", id="admin-reads-risk-config"),
    pytest.param(ADMIN_A, "tenants/A/metrics/daily", id="admin-reads-metrics"),
    pytest.param(ADMIN_A, "tenants/A/metrics/daily/symbols/AAPL", id="admin-reads-nested-metrics"),
    pytest.param(ADMIN_B, "tenants/B/ledger_trades/lt-1", id="admin-B-reads-B-ledger"),
    pytest.param(ALICE, "tenants/A/order_intents/alice-1", id="trader-reads-own-intent"),
    pytest.param(ALICE, "tenants/A/execution_groups/g-alice", id="trader-reads-own-group"),
    pytest.param(ALICE, "tenants/A/execution_groups/g-alice/legs/leg-0", id="trader-reads-own-leg"),
    pytest.param(CAROL, "tenants/B/order_intents/carol-1", id="trader-B-reads-own-intent"),
]

DENIED_READS = [
    # users/**
    pytest.param(BOB, "users/alice/portfolio/history/trades/t-1", id="user-reads-other-users-history"),
    pytest.param(ALICE, "users/bob/portfolio/history/trades/t-1", id="user-reads-other-users-history-2"),
    pytest.param(BOB, "users/alice/tax_lots/lot-1", id="user-reads-other-users-tax-lot"),
    pytest.param(BOB, "users/alice", id="user-reads-other-user-doc"),
    pytest.param(ADMIN_A, "users/alice/portfolio/history/trades/t-1", id="admin-reads-a-users-history"),
    # tenant admin of A on tenant B
    pytest.param(ADMIN_A, "tenants/B/ledger_trades/lt-1", id="admin-A-reads-B-ledger"),
    pytest.param(ADMIN_A, "tenants/B/order_intents/carol-1", id="admin-A-reads-B-intent"),
    pytest.param(ADMIN_A, "tenants/B/execution_groups/g-alice", id="admin-A-reads-B-group"),
    pytest.param(ADMIN_A, "tenants/B/execution_groups/g-alice/legs/leg-0", id="admin-A-reads-B-leg"),
    pytest.param(ADMIN_A, "tenants/B/config/risk", id="admin-A-reads-B-config"),
    pytest.param(ADMIN_A, "tenants/B/metrics/daily", id="admin-A-reads-B-metrics"),
    pytest.param(ADMIN_B, "tenants/A/ledger_trades/lt-1", id="admin-B-reads-A-ledger"),
    # trader: admin-only documents
    pytest.param(ALICE, "tenants/A/ledger_trades/lt-1", id="trader-reads-ledger"),
    pytest.param(ALICE, "tenants/A/config/risk", id="trader-reads-risk-config"),
    pytest.param(ALICE, "tenants/A/metrics/daily", id="trader-reads-metrics"),
    # trader: a colleague's documents
    pytest.param(ALICE, "tenants/A/order_intents/bob-1", id="trader-reads-colleagues-intent"),
    pytest.param(ALICE, "tenants/A/execution_groups/g-bob", id="trader-reads-colleagues-group"),
    pytest.param(ALICE, "tenants/A/execution_groups/g-bob/legs/leg-0", id="trader-reads-colleagues-leg"),
    # own uid, wrong tenant / missing or unknown role
    pytest.param(ALICE, "tenants/B/order_intents/alice-b", id="trader-reads-own-uid-intent-in-other-tenant"),
    pytest.param(ALICE, "tenants/B/execution_groups/g-alice", id="trader-reads-own-uid-group-in-other-tenant"),
    pytest.param(ALICE_CLAIMS_B, "tenants/A/order_intents/alice-1", id="other-tenant-claims-read-own-intent"),
    pytest.param(ALICE_NO_CLAIMS, "tenants/A/order_intents/alice-1", id="no-claims-read-own-intent"),
    pytest.param(ALICE_VIEWER, "tenants/A/order_intents/alice-1", id="unknown-role-reads-own-intent"),
    pytest.param(token("ada", "A", "Tenant_Admin"), "tenants/A/ledger_trades/lt-1",
                 id="role-claim-is-case-sensitive"),
    pytest.param(token("ada", None, "tenant_admin"), "tenants/A/ledger_trades/lt-1",
                 id="admin-role-without-tenant-claim"),
    # server internals, even for the tenant admin
    pytest.param(ADMIN_A, "tenants/A/exposure/acct-1_AAPL", id="admin-reads-exposure"),
    pytest.param(ADMIN_A, "tenants/A/risk_days/2026-11-20/trade_slots/0", id="admin-reads-risk-day-slot"),
    pytest.param(ADMIN_A, "ops/global", id="admin-reads-ops"),
    pytest.param(ALICE, "ops/global", id="trader-reads-ops"),
    pytest.param(ALICE, "tenants/A/rpm_approvals/rpm-1", id="trader-reads-rpm-approval"),
    pytest.param(RISK_A, "tenants/A/rpm_approvals/rpm-1", id="risk-manager-reads-rpm-approval-directly"),
    pytest.param(ADMIN_A, "tenants/A/venue_cursors/conn__acct-1", id="admin-reads-venue-cursor"),
    pytest.param(ALICE, "tenants/A/venue_cursors/conn__acct-1", id="trader-reads-venue-cursor"),
]


@pytest.mark.parametrize(("who", "path"), ALLOWED_READS)
def test_read_is_allowed(client: RulesClient, who: str, path: str) -> None:
    reply = client.get(path, token=who)

    assert reply.ok, reply
    assert reply.data() == SEED[path]


@pytest.mark.parametrize(("who", "path"), DENIED_READS)
def test_read_is_denied(client: RulesClient, who: str, path: str) -> None:
    reply = client.get(path, token=who)

    assert reply.denied, reply


@pytest.mark.parametrize("path", sorted(SEED))
def test_unauthenticated_read_is_denied_everywhere(client: RulesClient, path: str) -> None:
    assert client.get(path, token=ANON).denied


# ---- queries: rules are checked against the query's constraints, not the result ------------------

QUERIES = [
    pytest.param(ADMIN_A, "tenants/A/order_intents", {}, ["alice-1", "bob-1"], id="admin-lists-all-intents"),
    pytest.param(ALICE, "tenants/A/order_intents", {"uid": "alice"}, ["alice-1"],
                 id="trader-lists-intents-filtered-on-own-uid"),
    pytest.param(ALICE, "tenants/A/execution_groups", {"uid": "alice"}, ["g-alice"],
                 id="trader-lists-groups-filtered-on-own-uid"),
    pytest.param(ALICE, "users/alice/portfolio/history/trades", {}, ["t-1"], id="user-lists-own-history"),
    pytest.param(ALICE, "tenants/A/order_intents", {}, None, id="trader-lists-all-intents"),
    pytest.param(ALICE, "tenants/A/order_intents", {"uid": "bob"}, None, id="trader-lists-colleagues-intents"),
    pytest.param(ALICE, "tenants/A/ledger_trades", {"uid": "alice"}, None, id="trader-lists-ledger"),
    pytest.param(ADMIN_A, "tenants/B/order_intents", {}, None, id="admin-A-lists-B-intents"),
    pytest.param(BOB, "users/alice/portfolio/history/trades", {}, None, id="user-lists-other-users-history"),
    pytest.param(ANON, "tenants/A/order_intents", {"uid": "alice"}, None, id="unauthenticated-lists-intents"),
]


@pytest.mark.parametrize(("who", "collection", "where", "expected_ids"), QUERIES)
def test_query(client: RulesClient, who: str | None, collection: str, where: dict[str, Any],
               expected_ids: list[str] | None) -> None:
    reply = client.list_where(collection, token=who, where=where)

    if expected_ids is None:
        assert reply.denied, reply
    else:
        assert reply.ok, reply
        ids = sorted(doc["name"].rsplit("/", 1)[1] for doc in RulesClient.query_docs(reply))
        assert ids == expected_ids


# ---- order intents: create -----------------------------------------------------------------------

VALID_SINGLE: dict[str, Any] = {
    "uid": "alice",
    "status": "new",
    "kind": "single",
    "intent": {"strategy_id": "momo-1", "broker_account_id": "acct-1", "symbol": "AAPL",
               "side": "buy", "qty": "10"},
}

LEG = {"symbol": "EUR/USD", "side": "buy", "qty": "1000", "asset_class": "FOREX"}
VALID_MULTI: dict[str, Any] = {
    "uid": "alice",
    "status": "new",
    "kind": "multi_leg",
    "request": {"strategy_id": "rpm-1", "legs": [LEG, {**LEG, "symbol": "GBP/USD", "side": "sell"}]},
}

DROP = object()  # marks a key to remove in `changed`


def changed(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with dotted-path ``changes`` applied (``DROP`` removes a key)."""
    doc = copy.deepcopy(base)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        target = doc
        for key in parents:
            target = target[key]
        if value is DROP:
            del target[leaf]
        else:
            target[leaf] = value
    return doc


ALLOWED_CREATES = [
    pytest.param(ALICE, "A", VALID_SINGLE, id="single-minimal"),
    # no account named: the trigger binds the writer's default account (issue 12)
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"intent.broker_account_id": DROP}), id="single-default-account"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {
        "intent.qty": 2.5, "intent.side": "sell", "intent.asset_class": "EQUITY",
        "intent.order_type": "limit", "intent.limit_price": "189.95"}), id="single-all-optional-fields"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"intent.qty": 3, "intent.order_type": "market",
                                                    "intent.limit_price": 190}),
                 id="single-integer-qty-numeric-limit-price"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"intent.qty": "0.0001"}), id="single-small-decimal-qty"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"created_at": SERVER_TIMESTAMP}),
                 id="single-created-at-server-timestamp"),
    pytest.param(BOB, "A", changed(VALID_SINGLE, {"uid": "bob", "intent.broker_account_id": "acct-bob"}),
                 id="single-by-another-trader"),
    pytest.param(ADMIN_A, "A", changed(VALID_SINGLE, {"uid": "ada", "intent.broker_account_id": "acct-ada"}),
                 id="single-by-tenant-admin"),
    pytest.param(CAROL, "B", changed(VALID_SINGLE, {"uid": "carol"}), id="single-in-tenant-B"),
    pytest.param(ALICE, "A", VALID_MULTI, id="multi-leg-minimal"),
    pytest.param(ALICE, "A", changed(VALID_MULTI, {
        "request.rpm_output": {"weights": {"EUR/USD": 0.6}}, "request.max_group_slippage_pips": 1.5,
        "request.allow_partial_fills": False, "created_at": SERVER_TIMESTAMP}),
        id="multi-leg-all-optional-fields"),
    pytest.param(ALICE, "A", changed(VALID_MULTI, {"request.legs": [LEG] * 10}), id="multi-leg-ten-legs"),
    pytest.param(ALICE, "A", changed(VALID_MULTI, {"request.broker_account_id": "acct-1"}),
                 id="multi-leg-with-account-label"),
]

# (token, tenant in the path, body): each is denied.
DENIED_CREATES = [
    # who / where
    pytest.param(ANON, "A", VALID_SINGLE, id="unauthenticated"),
    pytest.param(ALICE, "B", VALID_SINGLE, id="into-other-tenant"),
    pytest.param(ALICE_CLAIMS_B, "A", VALID_SINGLE, id="claims-of-other-tenant"),
    pytest.param(ALICE_NO_CLAIMS, "A", VALID_SINGLE, id="signed-in-without-claims"),
    pytest.param(ALICE_VIEWER, "A", VALID_SINGLE, id="unknown-role"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"uid": "bob"}), id="uid-of-colleague"),
    pytest.param(ADMIN_A, "A", changed(VALID_SINGLE, {"uid": "alice"}), id="admin-on-behalf-of-trader"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"uid": DROP}), id="uid-missing"),
    # status and server fields
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"status": "placed"}), id="status-placed"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"status": "filled"}), id="status-filled"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"status": DROP}), id="status-missing"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"result": {"filled_qty": "10"}}), id="extra-result"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"tenant_id": "A"}), id="extra-tenant-id"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"updated_at": SERVER_TIMESTAMP}), id="extra-updated-at"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"intent.client_order_id": "x-1"}),
                 id="extra-key-inside-intent"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {
        "created_at": Timestamp(dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc))}),
        id="created-at-chosen-by-client"),
    # kind
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"kind": DROP}), id="kind-missing"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"kind": "basket"}), id="kind-unknown"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"kind": "multi_leg"}), id="kind-multi-leg-with-intent"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"request": VALID_MULTI["request"]}),
                 id="single-with-request-too"),
    # single-leg fields
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"intent": DROP}), id="intent-missing"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"intent": "buy 10 AAPL"}), id="intent-not-a-map"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"intent.strategy_id": DROP}), id="strategy-id-missing"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"intent.symbol": DROP}), id="symbol-missing"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"intent.side": DROP}), id="side-missing"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"intent.qty": DROP}), id="qty-missing"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"intent.side": "hold"}), id="side-hold"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"intent.side": "BUY"}), id="side-uppercase"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"intent.qty": 0}), id="qty-zero"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"intent.qty": -1}), id="qty-negative"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"intent.qty": "0"}), id="qty-zero-string"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"intent.qty": "0.000"}), id="qty-zero-decimal-string"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"intent.qty": "-5"}), id="qty-negative-string"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"intent.qty": "ten"}), id="qty-not-a-number"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"intent.qty": "1e3"}), id="qty-exponent-string"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"intent.qty": True}), id="qty-boolean"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"intent.qty": float("inf")}), id="qty-infinity"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"intent.qty": float("nan")}), id="qty-nan"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"intent.strategy_id": ""}), id="strategy-id-empty"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"intent.strategy_id": "s" * 101}), id="strategy-id-too-long"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"intent.strategy_id": 7}), id="strategy-id-not-string"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"intent.symbol": "A" * 33}), id="symbol-too-long"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"intent.asset_class": "X" * 33}), id="asset-class-too-long"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"intent.order_type": "stop_loss"}), id="order-type-stop"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"intent.limit_price": 0}), id="limit-price-zero"),
    pytest.param(ALICE, "A", changed(VALID_SINGLE, {"intent.limit_price": "-1.5"}), id="limit-price-negative"),
    # multi-leg request
    pytest.param(ALICE, "A", changed(VALID_MULTI, {"request.legs": []}), id="multi-leg-no-legs"),
    # a group has at least two legs (backend/domain/group_rules.py MIN_LEGS; issue 10 item 3)
    pytest.param(ALICE, "A", changed(VALID_MULTI, {"request.legs": [LEG]}), id="multi-leg-one-leg"),
    pytest.param(ALICE, "A", changed(VALID_MULTI, {"request.legs": [LEG] * 11}), id="multi-leg-eleven-legs"),
    pytest.param(ALICE, "A", changed(VALID_MULTI, {"request.legs": {"0": LEG}}), id="multi-leg-legs-not-a-list"),
    pytest.param(ALICE, "A", changed(VALID_MULTI, {"request.legs": DROP}), id="multi-leg-legs-missing"),
    pytest.param(ALICE, "A", changed(VALID_MULTI, {"request.strategy_id": DROP}),
                 id="multi-leg-strategy-id-missing"),
    pytest.param(ALICE, "A", changed(VALID_MULTI, {"request": DROP}), id="multi-leg-request-missing"),
    pytest.param(ALICE, "A", changed(VALID_MULTI, {"request.status": "executing"}),
                 id="multi-leg-extra-key-inside-request"),
    pytest.param(ALICE, "A", changed(VALID_MULTI, {"group_id": "g-1"}), id="multi-leg-extra-group-id"),
    pytest.param(ALICE, "A", changed(VALID_MULTI, {"status": "executing"}), id="multi-leg-status-executing"),
    pytest.param(ALICE, "A", changed(VALID_MULTI, {"uid": "bob"}), id="multi-leg-uid-of-colleague"),
    pytest.param(ALICE, "A", changed(VALID_MULTI, {"kind": "single"}), id="multi-leg-body-with-kind-single"),
    pytest.param(ALICE, "A", changed(VALID_MULTI, {"request.max_group_slippage_pips": -1}),
                 id="multi-leg-negative-slippage"),
    pytest.param(ALICE, "A", changed(VALID_MULTI, {"request.max_group_slippage_pips": "2"}),
                 id="multi-leg-slippage-string"),
    pytest.param(ALICE, "A", changed(VALID_MULTI, {"request.allow_partial_fills": "yes"}),
                 id="multi-leg-partial-fills-not-bool"),
    pytest.param(ALICE, "A", changed(VALID_MULTI, {"request.rpm_output": "weights"}),
                 id="multi-leg-rpm-output-not-map"),
]


@pytest.mark.parametrize(("who", "tenant", "body"), ALLOWED_CREATES)
def test_intent_create_is_allowed(client: RulesClient, who: str, tenant: str, body: dict) -> None:
    path = f"tenants/{tenant}/order_intents/{new_id('intent')}"

    reply = client.create(path, body, token=who)

    assert reply.ok, reply
    stored = client.get(path, token=OWNER).data()
    assert stored["status"] == "new" and stored["uid"] == body["uid"]


@pytest.mark.parametrize(("who", "tenant", "body"), DENIED_CREATES)
def test_intent_create_is_denied(client: RulesClient, who: str | None, tenant: str, body: dict) -> None:
    path = f"tenants/{tenant}/order_intents/{new_id('intent')}"

    reply = client.create(path, body, token=who)

    assert reply.denied, reply
    assert client.get(path, token=OWNER).status == 404


@pytest.mark.parametrize("intent_id", [
    pytest.param("has space", id="space"),
    pytest.param("x" * 101, id="longer-than-100"),
    pytest.param("a.b", id="dot"),
    pytest.param("k-" + "0" * 48, id="an-api-derived-intent-id"),  # issue 10 item 10: no squatting
    pytest.param("g-" + "ab" * 24, id="an-api-derived-group-id"),
])
def test_intent_create_with_an_id_the_server_refuses_is_denied(client: RulesClient, intent_id: str) -> None:
    reply = client.create(f"tenants/A/order_intents/{intent_id}", VALID_SINGLE, token=ALICE)

    assert reply.denied, reply


def test_intent_upsert_through_patch_follows_the_create_rule(client: RulesClient) -> None:
    path = f"tenants/A/order_intents/{new_id('intent')}"

    placed = client.patch(path, changed(VALID_SINGLE, {"status": "placed"}), token=ALICE)
    new = client.patch(path, VALID_SINGLE, token=ALICE)

    assert placed.denied, placed
    assert new.ok, new


# ---- order intents: no client update or delete ---------------------------------------------------

INTENT_CHANGES = [
    pytest.param(ALICE, "tenants/A/order_intents/alice-1", "patch", id="owner-rewrites-own-intent"),
    pytest.param(ALICE, "tenants/A/order_intents/alice-1", "patch-status",
                 id="owner-updates-status-of-own-intent"),
    pytest.param(ALICE, "tenants/A/order_intents/alice-1", "delete", id="owner-deletes-own-intent"),
    pytest.param(ADMIN_A, "tenants/A/order_intents/bob-1", "patch-status", id="admin-updates-status"),
    pytest.param(ADMIN_A, "tenants/A/order_intents/bob-1", "delete", id="admin-deletes-intent"),
    pytest.param(ALICE, "tenants/A/order_intents/bob-1", "delete", id="trader-deletes-colleagues-intent"),
    pytest.param(ANON, "tenants/A/order_intents/bob-1", "delete", id="unauthenticated-deletes-intent"),
]


def _change(client: RulesClient, path: str, how: str, who: str | None):
    if how == "delete":
        return client.delete(path, token=who)
    if how == "patch-status":
        return client.patch(path, {"status": "canceled"}, token=who, mask=["status"])
    return client.patch(path, VALID_SINGLE, token=who)


@pytest.mark.parametrize(("who", "path", "how"), INTENT_CHANGES)
def test_intent_update_or_delete_is_denied(client: RulesClient, who: str | None, path: str, how: str) -> None:
    reply = _change(client, path, how, who)

    assert reply.denied, reply
    assert_unchanged(client, path)


@pytest.mark.parametrize("how", ["patch", "patch-status", "delete"])
def test_owner_cannot_change_a_just_created_new_intent(client: RulesClient, how: str) -> None:
    path = f"tenants/A/order_intents/{new_id('intent')}"
    assert client.create(path, VALID_SINGLE, token=ALICE).ok

    reply = _change(client, path, how, ALICE)

    assert reply.denied, reply
    assert client.get(path, token=OWNER).data() == VALID_SINGLE


# ---- server-owned documents: no client writes ----------------------------------------------------

# The most privileged client for each document (its owner, or the tenant admin).
SERVER_OWNED = [
    pytest.param(ALICE, "users/alice", id="own-user-doc"),
    pytest.param(ALICE, "users/alice/portfolio/history/trades/t-1", id="own-trade-history"),
    pytest.param(ALICE, "users/alice/tax_lots/lot-1", id="own-tax-lot"),
    pytest.param(ALICE, "users/alice/tax_disposals/d-1", id="own-tax-disposal"),
    pytest.param(ADMIN_A, "tenants/A/ledger_trades/lt-1", id="ledger-by-admin"),
    pytest.param(ALICE, "tenants/A/ledger_trades/lt-1", id="ledger-by-trader"),
    pytest.param(ALICE, "tenants/A/execution_groups/g-alice", id="own-group"),
    pytest.param(ADMIN_A, "tenants/A/execution_groups/g-bob", id="group-by-admin"),
    pytest.param(ALICE, "tenants/A/execution_groups/g-alice/legs/leg-0", id="own-leg"),
    pytest.param(ADMIN_A, "tenants/A/execution_groups/g-bob/legs/leg-0", id="leg-by-admin"),
    pytest.param(ADMIN_A, "tenants/A/exposure/acct-1_AAPL", id="exposure-by-admin"),
    pytest.param(ADMIN_A, "tenants/A/risk_days/2026-11-20/trade_slots/0", id="risk-day-slot-by-admin"),
    pytest.param(ALICE, "tenants/A/rpm_approvals/rpm-1", id="rpm-approval-by-the-trader-it-is-for"),
    pytest.param(RISK_A, "tenants/A/rpm_approvals/rpm-1", id="rpm-approval-by-risk-manager"),
    pytest.param(ADMIN_A, "tenants/A/venue_cursors/conn__acct-1", id="venue-cursor-by-admin"),
    pytest.param(ADMIN_A, "tenants/A/metrics/daily", id="metrics-by-admin"),
    pytest.param(ADMIN_A, "ops/global", id="ops-by-admin"),
]


# New documents in the same places ("{new}" becomes a fresh id).
SERVER_OWNED_NEW = [
    pytest.param(ALICE, "users/alice/settings/{new}", id="under-own-user-doc"),
    pytest.param(ALICE, "users/alice/portfolio/history/trades/{new}", id="own-trade-history"),
    pytest.param(ALICE, "users/alice/tax_lots/{new}", id="own-tax-lot"),
    pytest.param(ALICE, "users/alice/tax_disposals/{new}", id="own-tax-disposal"),
    pytest.param(ADMIN_A, "tenants/A/ledger_trades/{new}", id="ledger-by-admin"),
    pytest.param(ALICE, "tenants/A/ledger_trades/{new}", id="ledger-by-trader"),
    pytest.param(ALICE, "tenants/A/execution_groups/{new}", id="own-group"),
    pytest.param(ADMIN_A, "tenants/A/execution_groups/{new}", id="group-by-admin"),
    pytest.param(ALICE, "tenants/A/execution_groups/g-alice/legs/{new}", id="leg-of-own-group"),
    pytest.param(ADMIN_A, "tenants/A/execution_groups/g-bob/legs/{new}", id="leg-by-admin"),
    pytest.param(ADMIN_A, "tenants/A/exposure/{new}", id="exposure-by-admin"),
    pytest.param(ADMIN_A, "tenants/A/risk_days/2026-11-20/trade_slots/{new}", id="risk-day-slot-by-admin"),
    pytest.param(ADMIN_A, "tenants/A/metrics/{new}", id="metrics-by-admin"),
    # rpm approvals are written by the backend only (POST /risk/approvals): not by the trader they
    # are for, not by an admin, not even by a risk manager directly
    pytest.param(ALICE, "tenants/A/rpm_approvals/{new}", id="rpm-approval-by-trader"),
    pytest.param(ADMIN_A, "tenants/A/rpm_approvals/{new}", id="rpm-approval-by-admin"),
    pytest.param(RISK_A, "tenants/A/rpm_approvals/{new}", id="rpm-approval-by-risk-manager"),
    pytest.param(ADMIN_A, "tenants/A/venue_cursors/{new}", id="venue-cursor-by-admin"),
    pytest.param(ADMIN_A, "tenants/{new}", id="tenant-doc-by-admin"),
    pytest.param(ADMIN_A, "ops/{new}", id="ops-by-admin"),
]

SERVER_OWNED_BODY = {"uid": "alice", "status": "completed", "qty": "999", "kill_switch": True}


@pytest.mark.parametrize(("who", "template"), SERVER_OWNED_NEW)
def test_server_owned_document_create_is_denied(client: RulesClient, who: str, template: str) -> None:
    path = template.format(new=new_id("new"))

    reply = client.create(path, SERVER_OWNED_BODY, token=who)

    assert reply.denied, reply
    assert client.get(path, token=OWNER).status == 404


@pytest.mark.parametrize("how", ["update", "delete"])
@pytest.mark.parametrize(("who", "path"), SERVER_OWNED)
def test_server_owned_document_change_is_denied(client: RulesClient, who: str, path: str, how: str) -> None:
    if how == "delete":
        reply = client.delete(path, token=who)
    else:
        reply = client.patch(path, SERVER_OWNED_BODY, token=who)

    assert reply.denied, reply
    assert_unchanged(client, path)


@pytest.mark.parametrize("path", sorted(SEED))
def test_unauthenticated_write_is_denied_everywhere(client: RulesClient, path: str) -> None:
    reply = client.patch(path, SERVER_OWNED_BODY, token=ANON)

    assert reply.denied, reply
    assert_unchanged(client, path)


# ---- tenants/{T}/config/risk ---------------------------------------------------------------------

RISK = "tenants/A/config/risk"

ALLOWED_RISK_WRITES = [
    pytest.param(True, {"kill_switch": True}, None, id="admin-halts-tenant"),
    pytest.param(True, {"kill_switch": False, "max_position_qty": "10", "max_daily_trades": 5}, None,
                 id="admin-sets-all-limits"),
    pytest.param(True, {"max_position_qty": "0.5", "max_daily_trades": 0}, None, id="admin-sets-zero-and-decimal"),
    pytest.param(True, {}, None, id="admin-clears-overrides"),
    pytest.param(True, {"kill_switch": True}, ["kill_switch"], id="admin-updates-one-field"),
    pytest.param(False, {"kill_switch": True}, None, id="admin-creates-config"),
]

DENIED_RISK_WRITES = [
    pytest.param(ALICE, RISK, {"kill_switch": True}, id="trader-halts-tenant"),
    pytest.param(ADMIN_B, RISK, {"kill_switch": True}, id="admin-of-other-tenant"),
    pytest.param(ADMIN_A, "tenants/B/config/risk", {"kill_switch": True}, id="admin-writes-other-tenant"),
    pytest.param(ANON, RISK, {"kill_switch": True}, id="unauthenticated"),
    pytest.param(ALICE_VIEWER, RISK, {"kill_switch": True}, id="unknown-role"),
    pytest.param(ADMIN_A, "tenants/A/config/limits", {"kill_switch": True}, id="other-config-document"),
    pytest.param(ADMIN_A, RISK, {"kill_switch": True, "max_notional": "1e6"}, id="unknown-key"),
    pytest.param(ADMIN_A, RISK, {"kill_switch": "true"}, id="kill-switch-string"),
    pytest.param(ADMIN_A, RISK, {"kill_switch": 1}, id="kill-switch-number"),
    pytest.param(ADMIN_A, RISK, {"max_position_qty": 10}, id="max-position-number"),
    pytest.param(ADMIN_A, RISK, {"max_position_qty": "-1"}, id="max-position-negative"),
    pytest.param(ADMIN_A, RISK, {"max_position_qty": "lots"}, id="max-position-not-decimal"),
    pytest.param(ADMIN_A, RISK, {"max_position_qty": ""}, id="max-position-empty"),
    pytest.param(ADMIN_A, RISK, {"max_daily_trades": 5.5}, id="max-daily-trades-fraction"),
    pytest.param(ADMIN_A, RISK, {"max_daily_trades": 5.0}, id="max-daily-trades-float"),
    pytest.param(ADMIN_A, RISK, {"max_daily_trades": "5"}, id="max-daily-trades-string"),
    pytest.param(ADMIN_A, RISK, {"max_daily_trades": -1}, id="max-daily-trades-negative"),
]


@pytest.fixture
def restore_risk_config(client: RulesClient) -> Iterator[None]:
    """Put tenant A's seeded config back, whether the write under test was allowed or not."""
    yield
    assert client.patch(RISK, SEED[RISK], token=OWNER).ok


@pytest.mark.parametrize(("exists", "body", "mask"), ALLOWED_RISK_WRITES)
def test_risk_config_write_is_allowed(client: RulesClient, restore_risk_config: None, exists: bool,
                                      body: dict[str, Any], mask: list[str] | None) -> None:
    if not exists:
        assert client.delete(RISK, token=OWNER).ok

    reply = client.patch(RISK, body, token=ADMIN_A, mask=mask)

    assert reply.ok, reply
    expected = {**SEED[RISK], **body} if mask else body
    assert client.get(RISK, token=OWNER).data() == expected


@pytest.mark.parametrize(("who", "path", "body"), DENIED_RISK_WRITES)
def test_risk_config_write_is_denied(client: RulesClient, restore_risk_config: None, who: str | None, path: str,
                                     body: dict[str, Any]) -> None:
    before = client.get(path, token=OWNER)

    reply = client.patch(path, body, token=who)

    assert reply.denied, reply
    assert client.get(path, token=OWNER).body == before.body


def test_partial_update_is_checked_against_the_whole_resulting_document(client: RulesClient) -> None:
    # The stored document gains a key the shape forbids (server-side, e.g. an old schema);
    # an admin's one-field update of a valid field is then refused, because request.resource
    # is the merged document.
    assert client.patch(RISK, {**SEED[RISK], "legacy": 1}, token=OWNER).ok
    try:
        reply = client.patch(RISK, {"kill_switch": True}, token=ADMIN_A, mask=["kill_switch"])
        assert reply.denied, reply
    finally:
        assert client.patch(RISK, SEED[RISK], token=OWNER).ok


@pytest.mark.parametrize("who", [pytest.param(ADMIN_A, id="admin"), pytest.param(ALICE, id="trader")])
def test_risk_config_delete_is_denied(client: RulesClient, who: str) -> None:
    reply = client.delete(RISK, token=who)

    assert reply.denied, reply
    assert_unchanged(client, RISK)
