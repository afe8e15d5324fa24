"""Issue 17 on the official Firestore emulator: what ``POST /execute`` sends to Firestore, counted at
the client's RPC layer (bench/fscount.py), through the real ``ApiApp`` with the Firestore store and
the Firestore rate counters.

- A placed trade — with or without a client-chosen id (``Idempotency-Key``) — is one batched read
  round trip and two commits: the client id is checked on the record the engine's batched read
  answered (no read of the API's own), and the rate limiter's shared counters ride the claim's
  commit (no commit of their own).
- The counters still count each request that reached the engine exactly once: a placed trade and
  a recorded decision in the engine's commit, a replay (the engine commits nothing) by a commit of
  the counters' own; a 400 writes nothing.
- A reused key with another body is refused as before (409), and nothing is written.
- On a new instance (the limiter has not read the scope's shared counts yet) the counts ride the
  engine's batched read: still one read round trip, and a scope at its shared limit is refused 429
  there, before anything is written.
"""
from __future__ import annotations

from decimal import Decimal

from backend.adapters.firestore_store import FirestoreStore
from backend.adapters.paper_broker import PaperBroker
from backend.adapters.rate_counters import FirestoreRateCounters
from backend.api.app import ApiApp
from backend.api.history import MemoryHistoryReader
from backend.domain.clock import ManualClock
from backend.execution.engine import ExecutionEngine, RiskManager, SmartRouter
from backend.risk.manager import RiskLimits
from backend.risk.rate_limit import RateLimiter
from backend.settings import ExecSettings
from bench.fscount import RpcLog, instrument, round_trips
from tests.support.api_stack import ApiStack, FakeVerifier, execute_body


def _stack(db, max_spread_pct: str = "0.001", user_per_min: int = 1000) -> tuple[ApiStack, RpcLog]:
    log = RpcLog()
    client = instrument(db, log)
    clock = ManualClock()
    store = FirestoreStore(client)
    engine = ExecutionEngine(broker=PaperBroker(clock=clock), router=SmartRouter(max_spread_pct=max_spread_pct),
                             risk=RiskManager(RiskLimits(max_position_qty=Decimal("1000000"))), store=store,
                             clock=clock, dry_run=False, settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0"}))
    limiter = RateLimiter(user_per_min=user_per_min, tenant_per_min=1000, counters=FirestoreRateCounters(client),
                          refresh_seconds=3600)
    verifier = FakeVerifier()
    verifier.add("tok-alice", uid="alice", tenant_id="acme", role="trader")
    app = ApiApp.with_instances(engine=engine, verifier=verifier, history=MemoryHistoryReader(store),
                                rate_limiter=limiter)
    stack = ApiStack(app=app, engine=engine, broker=engine.broker, store=store, clock=clock, verifier=verifier)
    engine.bind_account("acme", "alice", None, ())  # auto mode's first use: the account exists
    return stack, log


def _counted(db) -> int:
    return sum(int((snap.to_dict() or {}).get("n") or 0)
               for snap in db.collection("tenants/acme/rate_counters").stream())


def _measure(stack: ApiStack, log: RpcLog, body, **kw):
    # the limiter reads the shared counts once (refresh 1 h here): warm it so the figure is the request's
    stack.post("/execute", execute_body(symbol="MSFT", qty="1"), headers={"Idempotency-Key": "warm-up"})
    mark = log.mark()
    response = stack.post("/execute", body, **kw)
    return response, round_trips(log.since(mark))


def test_a_placed_trade_with_a_client_key_is_one_read_round_trip_and_two_commits(db):
    stack, log = _stack(db)

    response, rt = _measure(stack, log, execute_body(qty="3"), headers={"Idempotency-Key": "k-1"})

    assert response.status == 201 and response.json()["status"] == "placed", response.json()
    assert (rt["read_round_trips"], rt["commit_round_trips"], rt["other_round_trips"]) == (1, 2, 0), rt["sequence"]
    assert _counted(db) == 2 * 2  # two requests (warm-up and this one) × (user + tenant scope), in the claims


def test_a_placed_trade_without_a_key_is_the_same(db):
    stack, log = _stack(db)

    response, rt = _measure(stack, log, execute_body(qty="3"))

    assert response.status == 201
    assert (rt["read_round_trips"], rt["commit_round_trips"]) == (1, 2), rt["sequence"]


def test_a_replay_is_counted_by_a_commit_of_its_own_and_a_bad_request_is_not_counted(db):
    stack, log = _stack(db)
    first = stack.post("/execute", execute_body(qty="2"), headers={"Idempotency-Key": "k-2"})
    counted = _counted(db)

    mark = log.mark()
    replay = stack.post("/execute", execute_body(qty="2"), headers={"Idempotency-Key": "k-2"})
    rt = round_trips(log.since(mark))
    after_replay = _counted(db)
    bad = stack.post("/execute", execute_body(qty="-1"), headers={"Idempotency-Key": "k-3"})

    assert first.status == 201 and replay.status in (200, 201) and replay.json()["replayed"] is True
    assert rt["commit_round_trips"] == 1  # the engine committed nothing: the counters' own commit
    assert after_replay == counted + 2
    assert bad.status == 400 and _counted(db) == after_replay


def test_a_downgraded_decision_counts_in_its_one_commit(db):
    stack, log = _stack(db, max_spread_pct="0.0000001")  # every paper spread is too wide: WAIT

    response, rt = _measure(stack, log, execute_body(qty="1"), headers={"Idempotency-Key": "k-4"})

    assert response.json()["status"] == "downgraded", response.json()
    assert (rt["read_round_trips"], rt["commit_round_trips"]) == (1, 1), rt["sequence"]
    assert _counted(db) == 2 * 2  # warm-up and this one × (user + tenant scope), in the decisions' commits


def test_a_reused_key_with_another_body_is_409_and_writes_nothing(db):
    stack, log = _stack(db)
    stack.post("/execute", execute_body(qty="2"), headers={"Idempotency-Key": "k-5"})
    counted = _counted(db)
    mark = log.mark()

    response = stack.post("/execute", execute_body(qty="5"), headers={"Idempotency-Key": "k-5"})

    assert response.status == 409 and response.json()["error"]["code"] == "IDEMPOTENCY_CONFLICT", response.json()
    assert [e for e in log.since(mark) if e["rpc"] == "commit"] == []
    assert _counted(db) == counted


def test_on_a_new_instance_the_shared_counts_ride_the_engines_read(db):
    stack, log = _stack(db)  # the limiter has read no counts yet: they are due
    mark = log.mark()

    response = stack.post("/execute", execute_body(qty="2"), headers={"Idempotency-Key": "k-6"})
    rt = round_trips(log.since(mark))

    assert response.status == 201, response.json()
    assert (rt["read_round_trips"], rt["commit_round_trips"]) == (1, 2), rt["sequence"]
    reads = [e for e in log.since(mark) if e["rpc"] == "batch_get_documents"]
    assert len(reads) == 1 and "rate_counters" in str(reads[0]["collections"]) \
        and "order_intents" in str(reads[0]["collections"]), reads  # one batch: the intent and the counts


def test_a_scope_at_its_shared_limit_is_refused_in_the_engines_read_and_nothing_is_written(db):
    import time

    stack, log = _stack(db, user_per_min=3)
    window = int(time.time() // 60)
    for w in (window, window + 1):  # other instances counted 3 this minute (and the next: no boundary race)
        db.document(f"tenants/acme/rate_counters/u_alice-{w}-0").set({"n": 3, "scope": "u_alice", "window": w,
                                                                    "shard": 0})
    mark = log.mark()

    response = stack.post("/execute", execute_body(qty="2"), headers={"Idempotency-Key": "k-7"})
    events = log.since(mark)

    assert response.status == 429 and response.json()["error"]["code"] == "RATE_LIMITED", response.json()
    assert "shared" in response.json()["error"]["reason"] and response.headers["Retry-After"]
    assert [e for e in events if e["rpc"] == "commit"] == []  # nothing written
    reads = [e for e in events if e["rpc"] == "batch_get_documents"]
    assert len(reads) == 1 and "order_intents" in str(reads[0]["collections"]), reads  # decided in the engine's read
    assert not list(db.collection("tenants/acme/order_intents").stream())
    assert not list(db.collection("tenants/acme/ledger_trades").stream())
