"""Chaos, per account (issue 12): a group rollback in account A never moves account B's position.

Stack: the official Firestore emulator (``FirestoreStore``), the local Alpaca-compatible server's Broker
API routes (one ``SimulatedVenue``, one book per venue account) reached through the real alpaca-py
``BrokerClient`` (``AlpacaBrokerApiAccount``, built by the real ``VenuePool``), the engine in strict
accounts mode (``EXEC_ACCOUNTS=strict``: only the account documents written here count) and the sweeper.
The connection's credentials come from an environment secret source (``env:CHAOS_BROKER_CREDS``); only
the reference is in Firestore.

The accounts (one ``alpaca_broker`` connection per tenant, every account opened on the one local
server with ``LocalAlpacaServer.open_account``):

- tenant ``acme``: ``u1`` owns ``a-main`` (account A), ``u2`` owns ``b-main`` (account B);
- tenant ``globex``: ``u3`` owns ``a-main`` (account C: the same account id in another tenant).

All three trade the same symbols (MSFT, AAPL). First B and C take positions (clean groups and single
orders). Then, under a fault confined to A's routes (or hitting every route), A runs a group that
must roll back — long NVDA / short MSFT: the short fills first, the venue refuses every NVDA order, so
the group buys its 5 MSFT back in A — plus a clean pair and a single order. After the caller's retry
and one sweep:

- B's and C's venue books are exactly as before A's work: same positions, not one new order;
- the rolled-back group is ``ROLLED_BACK`` and A holds no NVDA;
- ``tests/support/invariants.py`` (a)-(f): nothing lost, no client order id twice and no unrecorded
  venue order, every group final, ledger = venue in total and per (venue account, symbol), every
  ledger row names its account and each account one venue account, no order adopted across tenants.

Faults: the HTTP faults of ``ACCOUNT_FAULTS`` (timeouts after accept, dropped responses, 5xx, 429
storms, latency beyond the client's timeout) and the function killed before / after any broker call
of A's rolling-back group (``Faulty`` around A's venue only) or around its group commits.
Clock: a ``ManualClock`` shared by the engine, the venue pool and the venue (``test_faults.py``).
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from backend import bootstrap
from backend.adapters import alpaca_broker_api
from backend.adapters.firestore_store import FirestoreStore
from backend.domain.accounts import Account, BrokerConnection
from backend.domain.clock import ManualClock
from backend.execution.broker_router import BrokerRouter
from backend.execution.engine import ExecutionEngine
from backend.execution.intent import ExecutionContext, OrderIntent
from backend.execution.sweeper import Sweeper, SweepReport
from backend.settings import ExecSettings
from tests.chaos.test_faults import ENGINE_ENV, LEASE_SECONDS, Faulty, FunctionKilled, broker_io, killed
from tests.support.alpaca_server import LocalAlpacaServer
from tests.support.group_harness import approve
from tests.support.invariants import (EQUITY_PAIR, assert_invariants, assert_no_group_fills_beyond_limits,
                                      intent_fields, pair_request, scenario, unrecorded_orders)

T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)
CREDS_ENV = "CHAOS_BROKER_CREDS"
KEY, SECRET = "PKCHAOSACCOUNTS01", "chaos-accounts-secret-Hq4-never-stored"
CONNECTION = "broker-1"
A = ExecutionContext("acme", "u1")
B = ExecutionContext("acme", "u2")
C = ExecutionContext("globex", "u3")
ACCOUNT_IDS = {A: "a-main", B: "b-main", C: "a-main"}  # C: the same account id in another tenant

REFUSED = "NVDA"  # the venue accepts every NVDA order, then rejects it (every account)
ROLLBACK_PAIR = ((REFUSED, 1, "10", "EQUITY"), ("MSFT", -1, "5", "EQUITY"))  # short first, long refused
B_PAIR = (("MSFT", 1, "7", "EQUITY"), ("AAPL", -1, "4", "EQUITY"))
ACCOUNTS_ENV = {**ENGINE_ENV, "EXEC_ACCOUNTS": "strict"}


def market() -> dict[str, Any]:
    return scenario({REFUSED: {"asset_class": "EQUITY", "mid": "120.00", "spread": "0.02",
                               "fill": {"model": "reject", "reject_reason": "halted"}}})


@dataclass
class AccountsWorld:
    db: Any
    server: LocalAlpacaServer
    clock: ManualClock
    venue_ids: dict[ExecutionContext, str] = field(default_factory=dict)
    groups: dict[tuple[ExecutionContext, str], tuple] = field(default_factory=dict)
    intents: dict[tuple[ExecutionContext, str], dict[str, Any]] = field(default_factory=dict)

    @property
    def venue(self) -> Any:
        return self.server.venue

    @property
    def environ(self) -> dict[str, str]:
        """The function's environment: the connection's credentials, no Secret Manager."""
        return {CREDS_ENV: json.dumps({"key_id": KEY, "secret_key": SECRET}), "EXEC_SECRET_MANAGER": "0"}

    def store(self) -> FirestoreStore:
        return FirestoreStore(self.db)

    # -- setup: connections and accounts, as an admin writes them
    def open(self) -> "AccountsWorld":
        store = self.store()
        for tenant in sorted({ctx.tenant_id for ctx in ACCOUNT_IDS}):
            store.put_connection(tenant, BrokerConnection(
                connection_id=CONNECTION, venue="alpaca_broker", environment="sandbox",
                credentials_ref=f"env:{CREDS_ENV}", base_url=self.server.url, created_at=T0, updated_at=T0))
        for ctx, account_id in ACCOUNT_IDS.items():
            venue_id = self.server.open_account(str(uuid.uuid4()))
            self.venue_ids[ctx] = venue_id
            store.put_account(ctx.tenant_id, Account(
                account_id=account_id, connection_id=CONNECTION, venue_account_id=venue_id,
                owner_uids=(ctx.uid,), status="active", asset_classes=["EQUITY", "CRYPTO"],
                created_at=T0, updated_at=T0))
            store.set_default_account(ctx.tenant_id, ctx.uid, account_id)
        return self

    def engine(self, *, store: Any = None, a_broker: Faulty | None = None) -> ExecutionEngine:
        """A new engine is a new function instance: its own venue pool (connections read from Firestore,
        credentials from the environment) and clients. ``a_broker``: a ``Faulty`` whose inner broker
        becomes account A's venue (every other account trades through the pool as built)."""
        store = store if store is not None else self.store()
        deployment = bootstrap.paper_broker({}, self.clock)  # strict mode: no account trades it
        pool = bootstrap.build_venue_pool(self.environ, None, self.clock, store, deployment)
        pool.timeout_seconds = 0.5  # the HTTP client really times out
        if a_broker is not None:
            pool = OneAccountFaulty(pool, A.tenant_id, ACCOUNT_IDS[A], a_broker)
        return ExecutionEngine(broker=deployment, store=store, clock=self.clock, dry_run=False,
                               settings=ExecSettings.from_env(ACCOUNTS_ENV), venue_pool=pool)

    # -- work
    def group(self, engine: ExecutionEngine, ctx: ExecutionContext, group_id: str, pair: tuple) -> Any:
        self.groups[(ctx, group_id)] = pair
        return engine.execute_group(self.approved(ctx, pair), ctx, group_id=group_id)

    def approved(self, ctx: ExecutionContext, pair: tuple) -> dict[str, Any]:
        body = pair_request(self.clock.now(), pair, decision_id=f"rpm-{'-'.join(leg[0] for leg in pair)}")
        approve(self.store(), body, tenant_id=ctx.tenant_id, uid=ctx.uid)
        return body

    def intent(self, engine: ExecutionEngine, ctx: ExecutionContext, intent_id: str, **fields: Any) -> Any:
        self.intents[(ctx, intent_id)] = fields
        return engine.execute_intent(OrderIntent.from_dict({**intent_fields(**fields), "intent_id": intent_id}), ctx)

    def positions_of_b_and_c(self) -> dict[str, Any]:
        """What A's work must not change: B's and C's venue books (positions and every order)."""
        return {name: ({p.symbol: p.qty for p in self.venue.get_positions(account_id=self.venue_ids[ctx])},
                       sorted(o.client_order_id for o in self.venue.orders(self.venue_ids[ctx])))
                for name, ctx in (("B", B), ("C", C))}

    def take_positions_in_b_and_c(self) -> dict[str, Any]:
        engine = self.engine()
        assert self.group(engine, B, "b-g1", B_PAIR).status.value == "FILLED"
        assert self.intent(engine, B, "b-i1", symbol="MSFT", qty="3").status == "placed"
        assert self.group(engine, C, "c-g1", EQUITY_PAIR).status.value == "FILLED"
        assert self.intent(engine, C, "c-i1", symbol="MSFT", side="sell", qty="2").status == "placed"
        held = self.positions_of_b_and_c()
        assert held["B"][0] == {"MSFT": Decimal(10), "AAPL": Decimal(-4)}, held
        assert held["C"][0] == {"AAPL": Decimal(10), "MSFT": Decimal(-7)}, held
        return held

    def a_batch(self, engine: ExecutionEngine, tag: str) -> list[str]:
        """A's work, each a separate invocation: the group that must roll back, a clean pair, a single
        order in the same symbol. Errors are what the caller got back, not test failures."""
        errors = []
        for run in (lambda: self.group(engine, A, f"{tag}-rb", ROLLBACK_PAIR),
                    lambda: self.group(engine, A, f"{tag}-g", EQUITY_PAIR),
                    lambda: self.intent(engine, A, f"{tag}-i", symbol="MSFT", side="sell", qty="2")):
            try:
                run()
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
        return errors

    # -- recovery
    def sweep(self) -> SweepReport:
        self.clock.advance(LEASE_SECONDS + 1)
        return Sweeper(self.engine()).sweep()

    def client_retry(self) -> None:
        """An HTTP caller that got an error retries with the same id, only for work with no record."""
        engine, store = self.engine(), self.store()
        for (ctx, gid), pair in self.groups.items():
            if store.load_group(ctx.tenant_id, gid) is None:
                engine.execute_group(self.approved(ctx, pair), ctx, group_id=gid)
        for (ctx, iid), fields in self.intents.items():
            if store.get_intent(ctx.tenant_id, iid) is None:
                engine.execute_intent(OrderIntent.from_dict({**intent_fields(**fields), "intent_id": iid}), ctx)

    # -- the verdict
    def check(self, before: dict[str, Any], context: str = "") -> Any:
        verdicts = []
        for tenant in sorted({ctx.tenant_id for ctx in ACCOUNT_IDS}):
            verdicts.append(assert_invariants(
                self.store(), self.venue, tenant_id=tenant, context=context,
                group_ids=[gid for (ctx, gid) in self.groups if ctx.tenant_id == tenant],
                intent_ids=[iid for (ctx, iid) in self.intents if ctx.tenant_id == tenant]))
            assert_no_group_fills_beyond_limits(self.store(), tenant,
                                                position_limit=ENGINE_ENV["EXEC_MAX_POSITION_QTY"],
                                                daily_limit=int(ENGINE_ENV["EXEC_MAX_DAILY_TRADES"]), context=context)
        assert self.positions_of_b_and_c() == before, f"{context}: A's work moved B's or C's venue book"
        for (ctx, gid), pair in self.groups.items():
            if pair != ROLLBACK_PAIR:
                continue
            doc = self.store().load_group(ctx.tenant_id, gid).doc
            assert doc["_final"], (gid, doc["status"], context)
            if any(o.client_order_id for o in self.venue.orders(self.venue_ids[ctx])
                   if o.symbol == REFUSED):  # an order of the group reached the venue: it was undone
                assert doc["status"] == "ROLLED_BACK", (gid, doc["status"], context)
        assert self.venue.net_position(REFUSED, account_id=self.venue_ids[A]) == 0
        verdict = verdicts[0]
        for ctx in (B, C):  # each account's ledger holds exactly its own venue position
            own = {s: q for (acct, s), q in verdict.ledger_net_by_account.items() if acct == self.venue_ids[ctx]}
            assert own == before["B" if ctx == B else "C"][0], (ctx, own, context)
        return verdict


class OneAccountFaulty:
    """A ``VenueResolver`` that gives account (tenant, account id) its venue through ``faulty`` (whose
    ``inner`` is set to that account's real broker); every other binding gets the pool's router."""

    def __init__(self, pool: Any, tenant_id: str, account_id: str, faulty: Faulty):
        self.pool, self.target, self.faulty = pool, (tenant_id, account_id), faulty

    def router_for(self, tenant_id: str, binding: Any) -> Any:
        router = self.pool.router_for(tenant_id, binding)
        if (tenant_id, binding.account_id) != self.target:
            return router
        self.faulty.inner = router.venue
        return BrokerRouter.single(self.faulty)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pool, name)


@pytest.fixture
def accounts_world(db):
    clock = ManualClock()
    alpaca_broker_api.clear_client_cache()
    with LocalAlpacaServer(market(), clock=clock) as server:
        yield AccountsWorld(db, server, clock).open()
    alpaca_broker_api.clear_client_cache()


# --------------------------------------------------------------------------------------------
# HTTP faults at the venue: "{A}" is account A's Broker API prefix
# --------------------------------------------------------------------------------------------

ACCOUNT_FAULTS = {
    "no-fault": [],
    "accepted-then-timeout": [("POST {A}/orders", "timeout_after_accept", 2, 0.7)],
    "accepted-then-dropped-every-time": [("POST {A}/orders", "timeout_after_accept", None, 0.0)],
    "accepted-then-dropped-and-lookups-503": [("POST {A}/orders", "timeout_after_accept", 2, 0.0),
                                              ("GET {A}/orders:by_client_order_id", "503", None, 0.0)],
    "dropped-submits": [("POST {A}/orders", "drop", 3, 0.0)],
    "dropped-submit-then-dropped-lookups": [("POST {A}/orders", "drop", 1, 0.0),
                                            ("GET {A}/orders:by_client_order_id", "drop", 3, 0.0)],
    "latency-beyond-the-timeout-on-submit": [("POST {A}/orders", "latency", 1, 0.8)],
    "500-on-submit": [("POST {A}/orders", "500", 3, 0.0)],
    "503-on-submit-until-cleared": [("POST {A}/orders", "503", None, 0.0)],
    "504-on-account-reads": [("GET {A}/*", "504", 8, 0.0)],
    "429-storm-on-submit": [("POST {A}/orders", "429", 6, 0.0)],
    "429-storm-everywhere": [("*", "429", 40, 0.0)],
    "503-everywhere-until-cleared": [("*", "503", None, 0.0)],
    "dropped-connections-everywhere": [("*", "drop", 10, 0.0)],
}


@pytest.mark.parametrize("faults", list(ACCOUNT_FAULTS.values()), ids=list(ACCOUNT_FAULTS))
def test_a_rollback_in_account_a_under_venue_faults_leaves_account_b_untouched(accounts_world, faults):
    world = accounts_world
    before = world.take_positions_in_b_and_c()
    prefix = f"/v1/trading/accounts/{world.venue_ids[A]}"
    for route, kind, times, seconds in faults:
        world.server.inject(route.replace("{A}", prefix), kind, times=times, seconds=seconds)

    errors = world.a_batch(world.engine(), "a")
    world.server.clear_faults()
    assert unrecorded_orders(world.store(), world.venue) == [], "an order exists that no stored record names"
    report = world.sweep()
    world.client_retry()

    world.check(before, f"{faults}; invocation errors {errors}; sweep {report.to_dict()}")
    assert not report.errors
    if not faults:  # the clean run: the rollback really happened in A (and only there)
        assert world.store().load_group("acme", "a-rb").doc["status"] == "ROLLED_BACK"
        assert world.venue.net_position("MSFT", account_id=world.venue_ids[A]) == Decimal(-5 - 2)


# --------------------------------------------------------------------------------------------
# The function killed in the middle of A's rolling-back group
# --------------------------------------------------------------------------------------------

# A clean rolled-back group makes 21 broker calls: validation reads for each leg, the short's submit
# (#12), the long's validation and submit (#19), its lookup (#20: refused) and the rollback order (#21);
# and 4 group commits. Killed before every call (22: never reached, a clean run), after each write
# and the lookup that learns of the refusal (after a read, a kill is a kill before the next call).
ROLLBACK_BROKER_KILLS = [(n, "before") for n in range(1, 23)] + [(n, "after") for n in (12, 19, 20, 21)]
ROLLBACK_BROKER_WRITES = (12, 19, 21)
ROLLBACK_SAVE_KILLS = range(1, 6)


def test_the_account_kill_points_cover_every_call_of_a_clean_rollback(accounts_world):
    world = accounts_world
    before = world.take_positions_in_b_and_c()
    broker = Faulty(None, counted=broker_io)
    store = Faulty(world.store(), counted=lambda name: name == "save_group")
    group = world.group(world.engine(store=store, a_broker=broker), A, "probe", ROLLBACK_PAIR)

    assert group.status.value == "ROLLED_BACK"
    assert len(broker.calls) < max(n for n, _ in ROLLBACK_BROKER_KILLS), broker.calls
    assert [i for i, name in enumerate(broker.calls, 1) if name == "submit_order"] == list(ROLLBACK_BROKER_WRITES)
    assert 1 <= len(store.calls) < max(ROLLBACK_SAVE_KILLS), store.calls
    world.check(before)


def run_a_killed(world: AccountsWorld, *, broker: Faulty | None = None, store: Faulty | None = None) -> list[str]:
    engine = world.engine(store=store, a_broker=broker)
    try:
        world.group(engine, A, "k", ROLLBACK_PAIR)
    except FunctionKilled:
        pass
    assert unrecorded_orders(world.store(), world.venue) == [], "killed: an order no record names"
    return (broker or store).fired


@pytest.mark.parametrize("n, when", ROLLBACK_BROKER_KILLS, ids=[f"{when}-{n}" for n, when in ROLLBACK_BROKER_KILLS])
def test_a_rollback_in_account_a_killed_around_broker_call_n_leaves_account_b_untouched(accounts_world, n, when):
    world = accounts_world
    before = world.take_positions_in_b_and_c()
    broker = Faulty(None, counted=broker_io, at=[n], when=when, fault=killed)

    fired = run_a_killed(world, broker=broker)
    report = world.sweep()
    world.client_retry()

    world.check(before, f"killed: {fired} (calls {broker.calls}); sweep {report.to_dict()}")
    assert not report.errors


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("n", ROLLBACK_SAVE_KILLS)
def test_a_rollback_in_account_a_killed_around_group_commit_n_leaves_account_b_untouched(accounts_world, n, when):
    world = accounts_world
    before = world.take_positions_in_b_and_c()
    store = Faulty(world.store(), counted=lambda name: name == "save_group", at=[n], when=when, fault=killed)

    fired = run_a_killed(world, store=store)
    report = world.sweep()
    world.client_retry()

    world.check(before, f"killed: {fired} (calls {store.calls}); sweep {report.to_dict()}")
    assert not report.errors


def test_the_per_account_invariant_sees_a_fill_booked_to_the_wrong_account(accounts_world):
    """(f) has teeth: one of B's ledger rows relabelled as A's leaves the totals (d) equal and breaks
    ledger = venue for both venue accounts."""
    from tests.support.invariants import check

    world = accounts_world
    world.take_positions_in_b_and_c()
    assert check(world.store(), world.venue, tenant_id="acme").ok
    rows = world.db.collection("tenants/acme/ledger_trades").stream()
    row = next(r for r in rows if r.to_dict().get("broker_account_id") == "b-main"
               and Decimal(str(r.to_dict().get("filled_qty") or "0")))
    row.reference.update({"venue_account_id": world.venue_ids[A]})

    verdict = check(world.store(), world.venue, tenant_id="acme")

    assert not verdict.position_breaks  # the totals still agree
    assert {acct for acct, _ in verdict.account_position_breaks} == {world.venue_ids[A], world.venue_ids[B]}
    assert verdict.account_mapping_problems  # b-main's rows now name two venue accounts
    assert not verdict.ok
