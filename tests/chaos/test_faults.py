"""Chaos: faults injected into a real stack, then (at most) one sweep, then the invariants.

Stack: the official Firestore emulator (``FirestoreStore``), the local Alpaca-compatible server
(``LocalAlpacaServer``) reached through ``AlpacaBroker`` (alpaca-py over HTTP on 127.0.0.1), the engine,
the intake (``handle_intent_document``) and the sweeper. Every test ends with
``tests/support/invariants.py``: nothing lost, no client order id twice at the venue and no venue
order that no record names, no group left non-final, ledger net position = venue net position.

Clock: a ``ManualClock`` shared by the engine and the venue, so a lease can be expired by advancing
it (``World.sweep``) and the adapter's backoff sleeps cost no wall time. Latency and timeouts are
still real: the server really waits, the HTTP client really times out (``timeout_seconds=0.5``).
One test needs real time passing between two broker calls and uses a ``SystemClock``.

What happens after a fault, as on the platform:
- the invocation that failed (an exception, or ``FunctionKilled``: the instance is gone) returns
  nothing to its caller;
- an HTTP caller retries with the same intent / group id (``World.client_retry``) only when nothing
  was recorded for it (it got an error, not an accepted result);
- the scheduled sweeper runs once after the lease expired (``World.sweep``).
Firestore triggers are *not* redelivered after a failure (firebase_functions 0.6 deploys Firestore
triggers with ``retry: false``): for the intent-document path the sweeper is the redelivery.

Scenarios:
- broker faults (table ``BROKER_FAULTS``): latency spikes (beyond the HTTP timeout: the order lands
  after the client gave up), 429 storms, 500/503/504, ``timeout_after_accept`` (accepted, answer lost),
  dropped connections — each on two groups (equities, crypto) and two single-leg intents;
- Firestore unavailable for a while (``ServiceUnavailable`` from the store for 3 calls starting at
  each call index, before or after the call's write); checked also *during* the outage: no venue
  order exists that no stored record names;
- the function killed between any two steps (``FunctionKilled``, a ``BaseException``, at the N-th
  broker or store call), then resumed by one sweep after the lease expired;
- a leg refused by the venue, rolled back flat through a fault at the rollback order (broker down,
  answer lost, killed before / after it);
- the trigger delivered three times, one after the other and at once, single-leg and multi-leg;
- two groups of one user whose fills commit out of time order (the per-user lot books);
- per account (issue 12), in ``tests/chaos/test_account_faults.py``: two accounts of one tenant and one
  of another on the local server's Broker API; a group rolled back in account A under these faults and
  kills never moves account B's (or C's) position in the same symbol, and ledger = venue per account.

Bugs found are pinned by ``xfail(strict=True)`` tests whose reason says what is wrong; once fixed they
stay here as regression tests (their docstrings name the fixing commit).
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import pytest
from google.api_core.exceptions import ServiceUnavailable

from backend.adapters.alpaca_broker import AlpacaBroker
from backend.adapters.firestore_store import FirestoreStore
from backend.domain.clock import ManualClock, SystemClock
from backend.execution.engine import ExecutionEngine
from backend.execution.intent import ExecutionContext, OrderIntent
from backend.execution.sweeper import Sweeper, SweepReport
from backend.ports.broker import BrokerError, BrokerErrorCode
from backend.service.intake import handle_intent_document
from backend.settings import ExecSettings
from tests.support.alpaca_server import LocalAlpacaServer
from tests.support.invariants import (CRYPTO_PAIR, EQUITY_PAIR, assert_invariants, intent_fields, pair_request,
                                      scenario, unrecorded_orders)

TENANT, UID = "acme", "u1"
CTX = ExecutionContext(TENANT, UID)
LEASE_SECONDS = 120  # ExecSettings default
# Limits wide enough for a chaos run (groups pass the same pre-trade gate as single orders); the
# limits themselves are checked by tests/unit/test_pre_trade_gate.py and tests/integration/test_issue10_gate_e2e.py.
ENGINE_ENV = {"EXEC_DRY_RUN": "0", "EXEC_FILL_WAIT_SECONDS": "0", "EXEC_MAX_POSITION_QTY": "1000000",
              "EXEC_MAX_DAILY_TRADES": "100000"}
BROKER_IO = frozenset({"submit_order", "submit_multileg_options", "get_order", "get_order_by_client_id",
                       "cancel_order", "close_position", "get_positions", "get_account", "get_latest_quote",
                       "get_recent_closes"})
BROKER_WRITES = frozenset({"submit_order", "submit_multileg_options", "cancel_order", "close_position"})


# --------------------------------------------------------------------------------------------
# Fault injection: a proxy that fails the N-th call of a broker or a store
# --------------------------------------------------------------------------------------------


class FunctionKilled(BaseException):
    """The platform killed the instance (timeout, OOM, redeploy): no ``except Exception`` sees it."""


def killed(method: str, n: int) -> BaseException:
    return FunctionKilled(f"killed at call {n} ({method})")


def firestore_down(method: str, n: int) -> BaseException:
    return ServiceUnavailable(f"firestore unavailable (injected at call {n}, {method})")


class Faulty:
    """Wraps a broker or a store. Counts the calls of its I/O methods (``counted(name)``); a call whose
    1-based index is in ``at`` raises ``fault(method, n)`` — ``when="before"``: the call never happens;
    ``when="after"``: it happened (a write is applied, an order exists) and its answer is lost.
    Everything else passes through. ``heal()`` stops the faults."""

    def __init__(self, inner: Any, *, counted: Callable[[str], bool], at: Iterable[int] = (),
                 when: str = "before", fault: Callable[[str, int], BaseException] = killed):
        assert when in ("before", "after")
        self.inner = inner
        self.counted = counted
        self.at = frozenset(at)
        self.when = when
        self.fault = fault
        self.calls: list[str] = []
        self.fired: list[str] = []
        self._lock = threading.Lock()

    def heal(self) -> None:
        self.at = frozenset()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr) or not self.counted(name):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls.append(name)
                n = len(self.calls)
                fire = n in self.at
                if fire:
                    self.fired.append(f"{self.when} #{n} {name}")
            if fire and self.when == "before":
                raise self.fault(name, n)
            result = attr(*args, **kwargs)
            if fire:
                raise self.fault(name, n)
            return result

        return call


def broker_io(name: str) -> bool:
    return name in BROKER_IO


def store_io(name: str) -> bool:
    """Every public store method except reference builders and constructors."""
    return not name.startswith("_") and not name.endswith("_ref") and name not in ("from_env",)


# --------------------------------------------------------------------------------------------
# The world: one venue (behind the local Alpaca server), one Firestore, one clock
# --------------------------------------------------------------------------------------------


@dataclass
class World:
    db: Any
    server: LocalAlpacaServer
    clock: Any
    groups: dict[str, tuple] = field(default_factory=dict)  # group id -> the pair it was sent with
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)  # intent id -> its fields
    intent_docs: list[str] = field(default_factory=list)

    @property
    def venue(self) -> Any:
        return self.server.venue

    def broker(self, **kw: Any) -> AlpacaBroker:
        options = {"timeout_seconds": 0.5, "time_budget_seconds": 10.0, **kw}
        return AlpacaBroker("chaos-key", "chaos-secret", url_override=self.server.url, clock=self.clock, **options)

    def store(self) -> FirestoreStore:
        return FirestoreStore(self.db)

    def engine(self, *, broker: Any = None, store: Any = None) -> ExecutionEngine:
        """A new engine is a new function instance (its own clients)."""
        return ExecutionEngine(broker=broker if broker is not None else self.broker(),
                               store=store if store is not None else self.store(), clock=self.clock,
                               dry_run=False, settings=ExecSettings.from_env(ENGINE_ENV))

    # -- work
    def group(self, engine: ExecutionEngine, group_id: str, pair: tuple = EQUITY_PAIR) -> Any:
        self.groups[group_id] = pair
        return engine.execute_group(self.approved(pair), CTX, group_id=group_id)

    def approved(self, pair: tuple, ctx: Any = None) -> dict[str, Any]:
        """The pair's request, with the risk desk's stored approval it references (one decision per pair)."""
        from tests.support.group_harness import approve

        ctx = ctx or CTX
        body = pair_request(self.clock.now(), pair, decision_id=_decision(pair))
        approve(self.store(), body, tenant_id=ctx.tenant_id, uid=ctx.uid)
        return body

    def intent(self, engine: ExecutionEngine, intent_id: str, **fields: Any) -> Any:
        self.intents[intent_id] = fields
        return engine.execute_intent(OrderIntent.from_dict({**intent_fields(**fields), "intent_id": intent_id}), CTX)

    def batch(self, engine: ExecutionEngine, tag: str) -> list[str]:
        """Two groups and two intents, one after the other, as separate invocations: errors are
        what the caller gets back (an invocation that failed), not test failures."""
        errors = []
        work = [lambda: self.group(engine, f"{tag}-g1", EQUITY_PAIR),
                lambda: self.intent(engine, f"{tag}-i1", symbol="AAPL", qty="3"),
                lambda: self.group(engine, f"{tag}-g2", CRYPTO_PAIR),
                lambda: self.intent(engine, f"{tag}-i2", symbol="ETH/USD", qty="0.5", asset_class="CRYPTO")]
        for run in work:
            try:
                run()
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
        return errors

    # -- recovery
    def sweep(self, *, store: Any = None) -> SweepReport:
        """The scheduled sweeper, once, after every lease taken so far has expired."""
        self.clock.advance(LEASE_SECONDS + 1)
        return Sweeper(self.engine(store=store)).sweep()

    def client_retry(self) -> None:
        """An HTTP caller that got an error retries with the same id — only for work with no record at all."""
        engine = self.engine()
        store = self.store()
        for gid, pair in self.groups.items():
            if store.load_group(TENANT, gid) is None:
                engine.execute_group(self.approved(pair), CTX, group_id=gid)
        for iid, fields in self.intents.items():
            if store.get_intent(TENANT, iid) is None:
                engine.execute_intent(OrderIntent.from_dict({**intent_fields(**fields), "intent_id": iid}), CTX)

    def check(self, context: str = "") -> Any:
        from tests.support.invariants import assert_no_group_fills_beyond_limits

        verdict = assert_invariants(self.store(), self.venue, tenant_id=TENANT, group_ids=self.groups,
                                    intent_ids=self.intents, intent_doc_ids=self.intent_docs, context=context)
        assert_no_group_fills_beyond_limits(self.store(), TENANT, position_limit=ENGINE_ENV["EXEC_MAX_POSITION_QTY"],
                                            daily_limit=int(ENGINE_ENV["EXEC_MAX_DAILY_TRADES"]), context=context)
        return verdict

    # -- intent documents (the Firestore trigger's input)
    def write_intent_doc(self, intent_id: str, doc: dict[str, Any]) -> dict[str, Any]:
        self.intent_docs.append(intent_id)
        if doc.get("kind") == "multi_leg" and isinstance(doc.get("request"), dict):
            from tests.support.group_harness import approve

            approve(self.store(), doc["request"], tenant_id=TENANT, uid=doc.get("uid") or UID)
        self.db.document(f"tenants/{TENANT}/order_intents/{intent_id}").set(doc)
        return doc

    def intent_doc(self, intent_id: str) -> dict[str, Any]:
        return self.db.document(f"tenants/{TENANT}/order_intents/{intent_id}").get().to_dict()


def single_doc(**fields: Any) -> dict[str, Any]:
    return {"uid": UID, "status": "new", "kind": "single", "intent": intent_fields(**fields)}


def group_doc(clock: Any, pair: tuple = EQUITY_PAIR) -> dict[str, Any]:
    return {"uid": UID, "status": "new", "kind": "multi_leg",
            "request": pair_request(clock.now(), pair, decision_id=_decision(pair))}


def _decision(pair: tuple) -> str:
    return "rpm-eq" if pair == EQUITY_PAIR else "rpm-cr" if pair == CRYPTO_PAIR else "rpm-other"


@pytest.fixture
def world(db):
    clock = ManualClock()
    with LocalAlpacaServer(scenario(), clock=clock) as server:
        yield World(db, server, clock)


@pytest.fixture
def refusing_world(db):
    """AAPL orders are accepted and then rejected by the venue: a pair long AAPL / short MSFT gets its
    short filled first (shorts go first), its long refused, and must be rolled back flat."""
    clock = ManualClock()
    halted = {"AAPL": {"fill": {"model": "reject", "reject_reason": "halted"}}}
    with LocalAlpacaServer(scenario(halted), clock=clock) as server:
        yield World(db, server, clock)


# --------------------------------------------------------------------------------------------
# Broker faults
# --------------------------------------------------------------------------------------------

# id -> faults injected before the batch: (route glob, kind, times, seconds); times=None lasts until
# cleared (after the batch, before the sweep).
BROKER_FAULTS = {
    "latency-spikes-under-the-timeout": [("*", "latency", 12, 0.3)],
    "latency-spike-beyond-the-timeout-on-submit": [("POST /v2/orders", "latency", 1, 0.8)],
    "every-submit-slower-than-the-timeout": [("POST /v2/orders", "latency", None, 0.7)],
    "429-storm-on-submit": [("POST /v2/orders", "429", 6, 0.0)],
    "429-storm-everywhere": [("*", "429", 40, 0.0)],
    "500-on-submit": [("POST /v2/orders", "500", 3, 0.0)],
    "503-on-submit-until-cleared": [("POST /v2/orders", "503", None, 0.0)],
    "503-everywhere-until-cleared": [("*", "503", None, 0.0)],
    "504-on-reads": [("GET /*", "504", 8, 0.0)],
    "accepted-then-timeout": [("POST /v2/orders", "timeout_after_accept", 2, 0.7)],
    "accepted-then-dropped-every-time": [("POST /v2/orders", "timeout_after_accept", None, 0.0)],
    "dropped-submits": [("POST /v2/orders", "drop", 3, 0.0)],
    "dropped-submit-then-dropped-lookups": [("POST /v2/orders", "drop", 1, 0.0),
                                            ("GET /v2/orders:by_client_order_id", "drop", 3, 0.0)],
    "accepted-then-dropped-and-lookups-503": [("POST /v2/orders", "timeout_after_accept", 2, 0.0),
                                              ("GET /v2/orders:by_client_order_id", "503", None, 0.0)],
    "dropped-connections-everywhere": [("*", "drop", 10, 0.0)],
}


@pytest.mark.parametrize("faults", list(BROKER_FAULTS.values()), ids=list(BROKER_FAULTS))
def test_broker_faults_leave_no_lost_work_no_double_order_and_a_matching_ledger(world, faults):
    for route, kind, times, seconds in faults:
        world.server.inject(route, kind, times=times, seconds=seconds)
    engine = world.engine()

    errors = world.batch(engine, "b")
    world.server.clear_faults()
    assert unrecorded_orders(world.store(), world.venue) == [], "an order exists that no stored record names"
    report = world.sweep()
    world.client_retry()

    world.check(f"{faults}; invocation errors {errors}; sweep {report.to_dict()}")
    assert not report.errors


@pytest.mark.parametrize("faults", [BROKER_FAULTS["dropped-connections-everywhere"]], ids=["dropped-connections"])
def test_dry_run_sends_no_venue_order_through_faults_resumes_and_the_sweeper(world, faults):
    """Issue 10 item 2: under dry run, groups, intents, intent documents and the sweeper's resumes send
    0 venue orders, whatever the broker does."""
    from tests.support.invariants import assert_no_venue_orders

    for route, kind, times, seconds in faults:
        world.server.inject(route, kind, times=times, seconds=seconds)
    engine = world.engine()
    engine.dry_run = True

    world.batch(engine, "dry")
    doc = world.write_intent_doc("dry-doc", group_doc(world.clock))
    handle_intent_document(engine, TENANT, "dry-doc", doc)
    world.server.clear_faults()
    world.clock.advance(LEASE_SECONDS + 1)
    dry_sweeper = world.engine()
    dry_sweeper.dry_run = True
    Sweeper(dry_sweeper).sweep()

    assert_no_venue_orders(world.venue.orders(), f"dry run with {faults}")


def test_a_late_order_from_a_slow_submit_is_found_not_doubled(world):
    """The submit outlives the HTTP timeout: the adapter looks the order up, finds nothing yet, sends
    again with the same client order id; the original lands afterwards and is refused as a duplicate."""
    world.server.inject("POST /v2/orders", "latency", times=1, seconds=0.8)
    result = world.intent(world.engine(), "slow1")
    assert result.status == "placed"
    world.check()
    assert len(world.venue.orders()) == 1


# --------------------------------------------------------------------------------------------
# Rollback under faults
# --------------------------------------------------------------------------------------------


def broker_down(method: str, n: int) -> BaseException:
    return BrokerError(BrokerErrorCode.UNAVAILABLE, f"venue unreachable (injected at {method} #{n})")


ROLLBACK_FAULTS = {  # the fault at the group's third submit_order: the rollback order
    "no-fault": (None, "before"),
    "broker-down-at-the-rollback-order": (broker_down, "before"),
    "rollback-order-accepted-answer-lost": (broker_down, "after"),
    "killed-before-the-rollback-order": (killed, "before"),
    "killed-after-the-rollback-order": (killed, "after"),
}


@pytest.mark.parametrize("fault, when", list(ROLLBACK_FAULTS.values()), ids=list(ROLLBACK_FAULTS))
def test_a_refused_leg_is_rolled_back_flat_through_a_fault_at_the_rollback_order(refusing_world, fault, when):
    world = refusing_world
    broker = Faulty(world.broker(), counted=lambda name: name == "submit_order", at=[3] if fault else [],
                    when=when, fault=fault or killed)
    try:
        world.group(world.engine(broker=broker), "rb1")
    except FunctionKilled:
        pass
    assert unrecorded_orders(world.store(), world.venue) == [], broker.fired
    report = world.sweep()

    verdict = world.check(f"fault {broker.fired}; sweep {report.to_dict()}")
    group = world.store().load_group(TENANT, "rb1").doc
    assert group["status"] == "ROLLED_BACK", (group["status"], broker.fired)
    assert verdict.venue_net == {} and verdict.ledger_net == {}


# --------------------------------------------------------------------------------------------
# Firestore unavailable for a while
# --------------------------------------------------------------------------------------------

OUTAGE_CALLS = 3  # consecutive store calls that fail once the outage starts


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("start", range(1, 11))
def test_a_firestore_outage_never_leaves_an_unrecorded_order_and_one_sweep_converges(world, start, when):
    """The outage starts at the ``start``-th store call and lasts 3 calls: the run's own calls, the
    caller's retry and a sweep all go through it. ``after``: the write is applied, its answer is lost."""
    flaky = Faulty(world.store(), counted=store_io, at=range(start, start + OUTAGE_CALLS), when=when,
                   fault=firestore_down)
    engine = world.engine(store=flaky)

    errors = world.batch(engine, "fs")
    outage_sweep = world.sweep(store=flaky)
    during = unrecorded_orders(world.store(), world.venue)
    flaky.heal()
    report = world.sweep()
    world.client_retry()

    assert during == [], f"orders placed that no record names, during the outage: {during}"
    world.check(f"outage at store call {start} ({when}), fired {flaky.fired}; errors {errors}; "
                f"sweep during the outage {outage_sweep.errors}; sweep after {report.to_dict()}")
    assert not report.errors


def test_a_sweep_during_the_outage_reports_errors_and_the_next_one_converges(world):
    world.server.inject("POST /v2/orders", "503", times=None)
    world.group(world.engine(), "parked", EQUITY_PAIR)  # the broker is down: the group waits for the sweeper
    world.server.clear_faults()
    flaky = Faulty(world.store(), counted=lambda name: name in ("take_lease", "load_group", "save_group"),
                   at=range(1, 100), fault=firestore_down)

    during = world.sweep(store=flaky)
    after = world.sweep()

    assert during.groups_found == 1 and during.errors and during.groups_final == 0
    assert after.groups_final == 1 and not after.errors
    world.check()


# --------------------------------------------------------------------------------------------
# The function killed between any two steps
# --------------------------------------------------------------------------------------------


# Kill points: every call of a clean run (test_the_kill_points_cover_every_call_of_a_clean_run keeps
# these in step with the engine) and one more (a kill point never reached: a clean run).
GROUP_BROKER_KILLS = range(1, 21)  # a clean two-leg group makes 19 broker calls
GROUP_STORE_KILLS = range(1, 18)  # ... and 16 store calls (risk per leg, reservation, stored approval)
INTENT_BROKER_KILLS = range(1, 4)  # a single-leg intent: 2 broker calls
INTENT_STORE_KILLS = range(1, 6)  # ... and 4 store calls


def test_the_kill_points_cover_every_call_of_a_clean_run(world):
    broker = Faulty(world.broker(), counted=broker_io)
    store = Faulty(world.store(), counted=store_io)
    engine = world.engine(broker=broker, store=store)
    world.group(engine, "clean")
    group_calls = (len(broker.calls), len(store.calls))
    broker.calls.clear()
    store.calls.clear()
    world.intent(engine, "clean")

    assert group_calls[0] < max(GROUP_BROKER_KILLS) and group_calls[1] < max(GROUP_STORE_KILLS), group_calls
    assert len(broker.calls) < max(INTENT_BROKER_KILLS) and len(store.calls) < max(INTENT_STORE_KILLS), (
        broker.calls, store.calls)
    world.check()


def run_killed(world: World, work: Callable[[ExecutionEngine], Any], *, broker: Faulty | None = None,
               store: Faulty | None = None) -> list[str]:
    engine = world.engine(broker=broker, store=store)
    try:
        work(engine)
    except FunctionKilled:
        pass
    proxy = broker or store
    assert proxy is not None
    assert unrecorded_orders(world.store(), world.venue) == [], f"killed {proxy.fired}: an order no record names"
    return proxy.fired


@pytest.mark.parametrize("n", GROUP_BROKER_KILLS)
def test_a_group_killed_before_broker_call_n_is_finished_by_one_sweep(world, n):
    broker = Faulty(world.broker(), counted=broker_io, at=[n], fault=killed)
    fired = run_killed(world, lambda e: world.group(e, "k1"), broker=broker)
    report = world.sweep()
    world.client_retry()
    world.check(f"killed: {fired} (calls {broker.calls}); sweep {report.to_dict()}")
    assert not report.errors


@pytest.mark.parametrize("nth_submit", [1, 2])
def test_a_group_killed_right_after_its_order_reached_the_venue_is_finished_by_one_sweep(world, nth_submit):
    probe = Faulty(world.broker(), counted=broker_io)  # a clean run: where the submits fall
    world.group(world.engine(broker=probe), "probe")
    submits = [i + 1 for i, name in enumerate(probe.calls) if name == "submit_order"]
    assert len(submits) == 2, probe.calls
    broker = Faulty(world.broker(), counted=broker_io, at=[submits[nth_submit - 1]], when="after", fault=killed)
    orders_before = len(world.venue.orders())

    fired = run_killed(world, lambda e: world.group(e, "k2"), broker=broker)
    assert len(world.venue.orders()) == orders_before + nth_submit, f"the order did not reach the venue: {fired}"
    report = world.sweep()

    world.check(f"killed: {fired}; sweep {report.to_dict()}")
    assert report.groups_final == 1 and not report.errors


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("n", GROUP_STORE_KILLS)
def test_a_group_killed_around_store_call_n_is_finished_by_one_sweep(world, n, when):
    store = Faulty(world.store(), counted=store_io, at=[n], when=when, fault=killed)
    fired = run_killed(world, lambda e: world.group(e, "k3"), store=store)
    report = world.sweep()
    world.client_retry()
    world.check(f"killed: {fired} (calls {store.calls}); sweep {report.to_dict()}")
    assert not report.errors


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("n", INTENT_BROKER_KILLS)
def test_an_intent_killed_around_broker_call_n_is_finished_by_one_sweep(world, n, when):
    broker = Faulty(world.broker(), counted=broker_io, at=[n], when=when, fault=killed)
    fired = run_killed(world, lambda e: world.intent(e, "k4"), broker=broker)
    report = world.sweep()
    world.client_retry()
    world.check(f"killed: {fired} (calls {broker.calls}); sweep {report.to_dict()}")
    assert not report.errors


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("n", INTENT_STORE_KILLS)
def test_an_intent_killed_around_store_call_n_is_finished_by_one_sweep(world, n, when):
    store = Faulty(world.store(), counted=store_io, at=[n], when=when, fault=killed)
    fired = run_killed(world, lambda e: world.intent(e, "k5"), store=store)
    report = world.sweep()
    world.client_retry()
    world.check(f"killed: {fired} (calls {store.calls}); sweep {report.to_dict()}")
    assert not report.errors


# --------------------------------------------------------------------------------------------
# The trigger delivered three times
# --------------------------------------------------------------------------------------------


def deliver(world: World, intent_id: str, doc: dict[str, Any], times: int, *, concurrently: bool) -> list[Any]:
    """At-least-once delivery: each delivery carries the document as created (status ``new``) and runs
    in its own instance."""
    def once(_: int) -> Any:
        return handle_intent_document(world.engine(), TENANT, intent_id, dict(doc))

    if not concurrently:
        return [once(i) for i in range(times)]
    with ThreadPoolExecutor(max_workers=times) as pool:
        return list(pool.map(once, range(times)))


@pytest.mark.parametrize("concurrently", [False, True], ids=["one-after-the-other", "at-once"])
def test_a_single_leg_intent_document_delivered_three_times_places_one_order(world, concurrently):
    doc = world.write_intent_doc("app-single", single_doc(symbol="AAPL", qty="2"))

    results = deliver(world, "app-single", doc, 3, concurrently=concurrently)
    report = world.sweep()

    stored = world.intent_doc("app-single")
    assert stored["status"] == "placed", (stored["status"], results)
    assert len(world.venue.orders()) == 1
    assert {r.get("broker_order_id") for r in results if r.get("status") == "placed"} <= {stored["broker_order_id"]}
    world.check(f"results {results}; sweep {report.to_dict()}")


@pytest.mark.parametrize("concurrently", [False, True], ids=["one-after-the-other", "at-once"])
def test_a_multi_leg_intent_document_delivered_three_times_runs_one_group(world, concurrently):
    doc = world.write_intent_doc("app-group", group_doc(world.clock, CRYPTO_PAIR))
    world.groups["app-group"] = CRYPTO_PAIR

    results = deliver(world, "app-group", doc, 3, concurrently=concurrently)
    report = world.sweep()

    assert world.intent_doc("app-group")["status"] == "filled", results
    assert len(world.venue.orders()) == 2
    world.check(f"results {results}; sweep {report.to_dict()}")


class InterleavingStore:
    """Runs ``before()`` once, just before the first ``save_group`` that carries fills reaches Firestore:
    another invocation commits in between (two instances of one user's strategy at once)."""

    def __init__(self, inner: Any, before: Callable[[], Any]):
        self.inner, self.before = inner, before

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def save_group(self, snapshot: Any, doc: Any, fills: Any = (), intent_update: Any = None, **kw: Any) -> Any:
        if fills and self.before is not None:
            before, self.before = self.before, None
            before()
        return self.inner.save_group(snapshot, doc, fills, intent_update, **kw)


def run_out_of_order(world: World) -> str:
    """Group "first" stamps its first fill, then group "second" of the same user on the same symbols
    runs to the end one second later (its fills stamped later, committed earlier), then "first" commits."""
    def second() -> None:
        world.clock.advance(1)
        world.group(world.engine(), "second", EQUITY_PAIR)

    try:
        return world.group(world.engine(store=InterleavingStore(world.store(), second)), "first").status.value
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def test_fills_of_one_user_committed_out_of_time_order_converge_after_one_sweep(world):
    outcome = run_out_of_order(world)
    report = world.sweep()
    world.check(f"first: {outcome}; sweep {report.to_dict()}")
    assert not report.errors


def test_fills_of_one_user_committed_out_of_time_order_finish_in_their_own_invocation(world):
    assert run_out_of_order(world) == "FILLED"


# --------------------------------------------------------------------------------------------
# Intent documents whose trigger died (regressions: found by this suite, fixed in 8041741)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["killed-at-quote", "firestore-down-at-first-read", "group-killed-at-create"])
def test_an_intent_document_whose_trigger_died_before_claim_is_redelivered_by_the_sweeper(world, fault):
    """Firestore triggers are not retried: the sweeper is the redelivery of a document left ``new``
    (or ``accepted`` with no group) — before 8041741 it stayed so forever."""
    if fault == "group-killed-at-create":
        doc = world.write_intent_doc("lost-1", group_doc(world.clock))
        world.groups["lost-1"] = EQUITY_PAIR
        store = Faulty(world.store(), counted=lambda name: name == "create_group", at=[1], fault=killed)
        engine = world.engine(store=store)
    elif fault == "killed-at-quote":
        doc = world.write_intent_doc("lost-1", single_doc())
        engine = world.engine(broker=Faulty(world.broker(), counted=broker_io, at=[1], fault=killed))
    else:
        doc = world.write_intent_doc("lost-1", single_doc())
        engine = world.engine(store=Faulty(world.store(), counted=store_io, at=[1], fault=firestore_down))
    with pytest.raises((FunctionKilled, ServiceUnavailable)):
        handle_intent_document(engine, TENANT, "lost-1", doc)

    report = world.sweep()  # no redelivery: the sweeper is the only thing that runs again

    world.check(f"sweep {report.to_dict()}")
    assert world.intent_doc("lost-1")["status"] in ("placed", "filled"), world.intent_doc("lost-1")["status"]


@pytest.mark.parametrize("at", [1, 2, 3])  # every save_group of a filled pair
def test_a_multi_leg_intent_document_gets_its_outcome_when_the_trigger_died_mid_group(world, at):
    """Regression: the document used to stay 'accepted' when the invocation died after the group became
    final but before intake wrote the outcome back. The outcome is now written in the group's final
    commit, so whichever group write the invocation dies at, the sweep's resumption delivers it."""
    doc = world.write_intent_doc("late-1", group_doc(world.clock))
    world.groups["late-1"] = EQUITY_PAIR
    store = Faulty(world.store(), counted=lambda name: name == "save_group", at=[at], fault=killed)
    with pytest.raises(FunctionKilled):
        handle_intent_document(world.engine(store=store), TENANT, "late-1", doc)
    assert world.intent_doc("late-1")["status"] == "accepted"

    world.sweep()

    world.check()
    assert world.intent_doc("late-1")["status"] == "filled"
    assert len(world.venue.orders()) == 2


def test_a_lost_intent_document_is_redelivered_while_a_batch_of_groups_is_in_flight(world):
    for n in range(3):  # three multi-leg documents whose groups are in flight (created, leased)
        gid = f"busy-{n}"
        world.groups[gid] = EQUITY_PAIR
        world.intent_docs.append(gid)
        doc = world.write_intent_doc(gid, group_doc(world.clock))
        broker = Faulty(world.broker(), counted=broker_io, at=[1], fault=killed)  # dies inside validation
        with pytest.raises(FunctionKilled):
            handle_intent_document(world.engine(broker=broker), TENANT, gid, doc)
    lost = world.write_intent_doc("zz-lost", single_doc())  # its trigger died before anything
    del lost

    reports = [Sweeper(world.engine(), batch=3).sweep() for _ in range(2)]  # leases still held: no advance

    assert world.intent_doc("zz-lost")["status"] == "placed", [r.to_dict() for r in reports]


# --------------------------------------------------------------------------------------------
# The kill switch holds for resumed work (regression: found by this suite, fixed in 8041741)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["single-leg", "multi-leg"])
def test_the_kill_switch_stops_the_sweeper_from_sending_orders_that_never_reached_the_venue(world, kind):
    """Before 8041741 a RESERVED intent (ExecutionEngine._resume) and a SUBMITTED leg
    (GroupExecutor._recover_leg) were sent on resume without checking the kill switch."""
    world.server.inject("POST /v2/orders", "503", times=None)  # the first entry order cannot be sent
    if kind == "single-leg":
        assert world.intent(world.engine(), "halted").status == "pending"
    else:
        assert not world.group(world.engine(), "halted").status.is_final
    assert world.venue.orders() == []
    world.server.clear_faults()
    world.db.document("ops/execution").set({"kill_switch": True})

    world.sweep()

    assert world.venue.orders() == [], [(o.symbol, o.side.value, o.client_order_id) for o in world.venue.orders()]
    world.check()


# --------------------------------------------------------------------------------------------
# Slow market data during validation (regression: found by this suite and tests/load, fixed in 8041741)
# --------------------------------------------------------------------------------------------


def test_a_slow_validation_does_not_reject_fresh_quotes_as_future_dated(db):
    """Real time must pass between two broker calls: a SystemClock. Before 8041741 the quotes were
    judged against a time taken before fetching them, so a 2.5 s bars call made the second leg's
    fresh quote look 2.5 s in the future (> the 2 s skew allowed) and the group was REJECTED
    INVALID_QUOTE."""
    clock = SystemClock()
    with LocalAlpacaServer(scenario(), clock=clock) as server:
        world = World(db, server, clock)
        server.inject("GET /v2/stocks/bars", "latency", times=1, seconds=2.5)  # the first leg's closes
        group = world.group(world.engine(broker=world.broker(timeout_seconds=5.0)), "slow-validation")
        assert group.status.value == "FILLED", str(group.rejection)
        world.check()


# --------------------------------------------------------------------------------------------
# Two tenants, the same ids (issue 10: the cross-tenant order hijack)
# --------------------------------------------------------------------------------------------

OTHER = ExecutionContext("globex", "u2")  # a second tenant trading through the same venue account

SAME_ID_FAULTS = {
    "no-fault": [],
    "accepted-then-timeout": [("POST /v2/orders", "timeout_after_accept", 2, 0.7)],
    "dropped-submit-then-dropped-lookups": [("POST /v2/orders", "drop", 1, 0.0),
                                            ("GET /v2/orders:by_client_order_id", "drop", 3, 0.0)],
}


@pytest.mark.parametrize("faults", list(SAME_ID_FAULTS.values()), ids=list(SAME_ID_FAULTS))
def test_two_tenants_using_the_same_group_and_intent_ids_each_get_their_own_orders(world, faults):
    """Tenant ``globex`` reuses ``acme``'s group id, leg ids and intent id, with broker faults that send
    both through lookups by client order id. With ids namespaced by tenant every order is found under
    its own tenant's id; invariant (e) fails if any record of one tenant names the other's venue order."""
    from tests.support.group_harness import approve

    engine = world.engine()
    body = pair_request(world.clock.now(), EQUITY_PAIR)
    for ctx in (CTX, OTHER):  # each tenant's risk desk approves its own user's group
        approve(world.store(), body, tenant_id=ctx.tenant_id, uid=ctx.uid)
    world.group(engine, "same-g1")
    world.intent(engine, "same-i1", symbol="AAPL", qty="3")
    for route, kind, times, seconds in faults:
        world.server.inject(route, kind, times=times, seconds=seconds)

    for work in (lambda: engine.execute_group(body, OTHER, group_id="same-g1"),
                 lambda: engine.execute_intent(OrderIntent.from_dict({**intent_fields("AAPL", qty="3"),
                                                                      "intent_id": "same-i1"}), OTHER)):
        try:
            work()
        except Exception:  # an invocation that failed: the sweeper finishes it
            pass
    world.server.clear_faults()
    world.sweep()

    verdict = world.check(f"{faults}")
    assert verdict.foreign_orders == []
    other_group = world.store().load_group("globex", "same-g1")
    assert other_group is not None and other_group.doc["_final"], "globex's group was not finished"
    assert len(world.venue.orders()) == 6  # 2 legs + 1 intent, per tenant
