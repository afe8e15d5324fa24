"""Issue 17: the day's slot counts of ``POST /execute`` come from the tally documents read in the
engine's one batched read — no count aggregation on a placed trade (a count on the emulator took
3–5 ms alone and 8–12 ms beside the batched read, the largest share of the request's excess over
the floor). On the official Firestore emulator through the real ``ApiApp``, counted at the client's
RPC layer (bench/fscount.py).

A tally is a hint: an order whose tally is at a limit is counted exactly before it is refused, and a
day whose slots are ahead of its tally (taken before the tally existed) is still refused exactly at
its limit.
"""
from __future__ import annotations

import threading

from backend.execution.store_rules import TALLY_SHARDS, tally_path
from bench.fscount import round_trips
from tests.integration.test_issue17_request_round_trips import _stack
from tests.support.api_stack import execute_body


def _day(db) -> str:
    docs = list(db.collection("tenants/acme/order_intents").stream())
    return str(docs[0].to_dict()["trade_day"])


def _slots(db, day: str) -> list[int]:
    return sorted(int(ref.id) for ref in db.collection(f"tenants/acme/risk_days/{day}/trade_slots").list_documents()
                  if ref.get().exists)


def _placed(stack, key: str, **kw):
    response = stack.post("/execute", execute_body(qty="1", **kw), headers={"Idempotency-Key": key})
    return response, response.json()


def test_a_placed_trade_reads_the_days_tally_in_its_one_read_and_sends_no_count(db):
    stack, log = _stack(db)
    stack.post("/execute", execute_body(symbol="MSFT", qty="1"), headers={"Idempotency-Key": "warm-up"})
    mark = log.mark()

    response, body = _placed(stack, "t-1")
    events = log.since(mark)
    rt = round_trips(events)

    assert response.status == 201 and body["status"] == "placed", body
    assert (rt["read_round_trips"], rt["commit_round_trips"]) == (1, 2), rt["sequence"]
    assert [e for e in events if e["rpc"] == "run_aggregation_query"] == []
    reads = [e for e in events if e["rpc"] == "batch_get_documents"]
    assert len(reads) == 1 and "tally" in str(reads[0]["collections"]), reads
    day = _day(db)
    taken = sum(int((db.document(tally_path("acme", day, k)).get().to_dict() or {}).get("taken", 0))
                for k in range(TALLY_SHARDS))
    assert taken == len(_slots(db, day)) == 2


def test_a_tally_at_the_tenants_limit_is_counted_exactly_and_the_order_is_placed(db):
    stack, log = _stack(db)
    _placed(stack, "t-0")
    day = _day(db)
    db.document("tenants/acme/config/risk").set({"max_daily_trades": 3})
    db.document(tally_path("acme", day, 5)).set({"taken": 40})  # far ahead of the 1 slot taken
    mark = log.mark()

    response, body = _placed(stack, "t-1")
    events = log.since(mark)

    assert response.status == 201 and body["status"] == "placed", body
    assert len([e for e in events if e["rpc"] == "run_aggregation_query"]) >= 1  # counted before deciding
    assert _slots(db, day) == [0, 1]


def test_slots_ahead_of_their_tally_at_a_full_day_refuse_exactly_at_the_limit(db):
    stack, _ = _stack(db)
    _placed(stack, "t-0")
    day = _day(db)
    for n in (1, 2):  # taken before the tally existed: the tally says 1, the day holds 3
        db.document(f"tenants/acme/risk_days/{day}/trade_slots/{n}").set({"intent_id": f"old{n}", "uid": "bob"})
    db.document("tenants/acme/config/risk").set({"max_daily_trades": 3})

    response, body = _placed(stack, "t-1")

    assert body["status"] == "rejected", body
    assert body["rejection"]["code"] == "DAILY_TRADE_LIMIT", body
    assert _slots(db, day) == [0, 1, 2]
    placed = [d.to_dict() for d in db.collection("tenants/acme/ledger_trades").stream()
              if (d.to_dict() or {}).get("status") == "placed"]
    assert len(placed) == 1  # only the first order reached the venue


def test_concurrent_orders_behind_a_stale_tally_stop_exactly_at_the_limit(db):
    stack, _ = _stack(db)
    _placed(stack, "t-0")
    day = _day(db)
    for n in (1, 2):
        db.document(f"tenants/acme/risk_days/{day}/trade_slots/{n}").set({"intent_id": f"old{n}", "uid": "bob"})
    db.document("tenants/acme/config/risk").set({"max_daily_trades": 5})
    answers: list = []
    go = threading.Barrier(4)

    def one(n: int) -> None:
        go.wait()
        answers.append(_placed(stack, f"c-{n}")[1])

    threads = [threading.Thread(target=one, args=(n,)) for n in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]

    statuses = sorted(a["status"] for a in answers)
    assert statuses == ["placed", "placed", "rejected", "rejected"], answers
    assert all(a["rejection"]["code"] == "DAILY_TRADE_LIMIT" for a in answers if a["status"] == "rejected")
    assert _slots(db, day) == [0, 1, 2, 3, 4]


def _document_engine(db):
    from decimal import Decimal

    from backend.adapters.firestore_store import FirestoreStore
    from backend.domain.clock import ManualClock
    from backend.execution.engine import ExecutionEngine, RiskManager, SmartRouter
    from backend.risk.manager import RiskLimits
    from backend.settings import ExecSettings
    from tests.support.stub_broker import StubBroker

    clock = ManualClock()
    broker = StubBroker(quotes={"AAPL": ("189.99", "190.01")}, now=clock.now)
    engine = ExecutionEngine(broker=broker, router=SmartRouter(0.001),
                             risk=RiskManager(RiskLimits(max_position_qty=Decimal("1000"))), dry_run=False,
                             store=FirestoreStore(db), clock=clock,
                             settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0"}))
    return engine, clock


def test_intent_documents_delivered_twice_behind_a_stale_tally_stop_at_the_limit_and_another_tenant_is_its_own(db):
    """The intent-document path (the trigger's intake), each event delivered twice, on a day whose
    slots are ahead of its tally; a user of another tenant who picks the same intent ids counts only
    their own tenant's day."""
    from backend.service.intake import handle_intent_document

    engine, clock = _document_engine(db)
    day = clock.now().date().isoformat()
    for n in range(2):  # acme's day holds 2 slots its tally does not know
        db.document(f"tenants/acme/risk_days/{day}/trade_slots/{n}").set({"intent_id": f"old{n}", "uid": "bob"})
    for tenant in ("acme", "evil"):
        db.document(f"tenants/{tenant}/config/risk").set({"max_daily_trades": 3})

    def deliver(tenant: str, intent_id: str) -> list[dict]:
        doc = {"status": "new", "uid": "alice" if tenant == "acme" else "mallory", "kind": "single",
               "intent": {"strategy_id": "s1", "broker_account_id": "acct1", "symbol": "AAPL", "side": "buy",
                          "qty": "1"}}
        db.document(f"tenants/{tenant}/order_intents/{intent_id}").set(doc)
        return [handle_intent_document(engine, tenant, intent_id, doc) for _ in range(2)]  # at-least-once

    acme = [deliver("acme", f"app-{i}") for i in range(3)]
    evil = [deliver("evil", f"app-{i}") for i in range(3)]

    assert [[o["status"] for o in pair] for pair in acme] == [["placed"] * 2, ["rejected"] * 2, ["rejected"] * 2]
    assert [[o["status"] for o in pair] for pair in evil] == [["placed"] * 2] * 3
    assert _slots(db, day) == [0, 1, 2]
    for tenant, placed in (("acme", 1), ("evil", 3)):
        rows = [d.to_dict() for d in db.collection(f"tenants/{tenant}/ledger_trades").stream()]
        assert len([r for r in rows if r.get("status") == "placed"]) == placed  # once each, redelivery or not
    assert len(engine.broker.orders) == 4  # one venue order per placed intent: no tenant adopted another's
