"""An app-chosen intent id reused by the same user in another tenant, on the official emulator.

An intent document's id is chosen by the app, per tenant (``tenants/{t}/order_intents/{id}``); a
single order's trade id is that id, and the user's rows are per uid: the history row
``users/{uid}/portfolio/history/trades/{id}``, the lot ids and disposals. A user moved to another
tenant whose app numbers its intents again used to reach the venue and then fail the finish's create
of the history row forever — the order filled, never recorded. The engine now reads that row in its
batched pre-claim read and refuses the intent before anything is written or sent (``TRADE_ID_IN_USE``,
an ``InvalidInput``: a rejected intent document, HTTP 400 on ``intent_id``).
"""
from __future__ import annotations

import pytest

from backend.execution.intent import ExecutionContext, OrderIntent
from backend.execution.preflight import TRADE_ID_IN_USE, TradeIdInUse
from tests.integration.test_issue17_day_tally import _document_engine

pytestmark = pytest.mark.emulator


def _doc(uid: str) -> dict:
    return {"status": "new", "uid": uid, "kind": "single",
            "intent": {"strategy_id": "s1", "broker_account_id": f"acct-{uid}", "symbol": "AAPL", "side": "buy",
                       "qty": "1"}}


def _deliver(engine, db, tenant: str, intent_id: str, uid: str) -> list[dict]:
    from backend.service.intake import handle_intent_document

    doc = _doc(uid)
    db.document(f"tenants/{tenant}/order_intents/{intent_id}").set(doc)
    return [handle_intent_document(engine, tenant, intent_id, doc) for _ in range(2)]  # at-least-once


def _ids(db, collection: str) -> list[str]:
    return sorted(ref.id for ref in db.collection(collection).list_documents() if ref.get().exists)


def test_a_user_in_another_tenant_reusing_an_intent_id_is_refused_before_the_venue(db):
    engine, clock = _document_engine(db)
    day = clock.now().date().isoformat()

    first = _deliver(engine, db, "acme", "app-1", "alice")
    assert [o["status"] for o in first] == ["placed", "placed"]  # the second delivery replays
    history_before = db.document("users/alice/portfolio/history/trades/app-1").get().to_dict()
    orders_before = len(engine.broker.orders)

    # alice now trades for globex, her app numbers its intents from 1 again
    moved = _deliver(engine, db, "globex", "app-1", "alice")

    assert [o["status"] for o in moved] == ["rejected", "rejected"]  # the redelivery finds it final
    assert moved[0]["error"]["field"] == "intent_id" and moved[0]["error"]["reason"].startswith(TRADE_ID_IN_USE)
    assert len(engine.broker.orders) == orders_before  # nothing reached the venue
    stored = db.document("tenants/globex/order_intents/app-1").get().to_dict()
    assert stored["status"] == "rejected" and stored["result"]["error"]["reason"].startswith(TRADE_ID_IN_USE)
    assert _ids(db, "tenants/globex/ledger_trades") == []  # nothing else written for globex
    assert _ids(db, f"tenants/globex/risk_days/{day}/trade_slots") == []
    assert db.document("users/alice/portfolio/history/trades/app-1").get().to_dict() == history_before

    # a new id places; acme's own intent still replays; another user moved the same way with an id
    # only alice used is not refused (history is per user)
    assert [o["status"] for o in _deliver(engine, db, "globex", "app-2", "alice")] == ["placed", "placed"]
    assert [o["status"] for o in _deliver(engine, db, "acme", "app-3", "bob")] == ["placed", "placed"]
    assert [o["status"] for o in _deliver(engine, db, "globex", "app-3b", "bob")] == ["placed", "placed"]
    assert [o["status"] for o in _deliver(engine, db, "globex2", "app-2", "bob")] == ["placed", "placed"]
    from backend.service.intake import handle_intent_document

    assert handle_intent_document(engine, "acme", "app-1", _doc("alice"))["status"] == "placed"


def test_the_engine_refuses_the_reused_id_directly_and_writes_nothing(db):
    engine, _ = _document_engine(db)
    intent = OrderIntent.from_dict({"intent_id": "app-7", "strategy_id": "s1", "broker_account_id": "acct-alice",
                                    "symbol": "AAPL", "side": "buy", "qty": "1"})
    placed = engine.execute_intent(intent, ExecutionContext(tenant_id="acme", uid="alice"))
    assert placed.status == "placed"

    with pytest.raises(TradeIdInUse) as refused:
        engine.execute_intent(intent, ExecutionContext(tenant_id="globex", uid="alice"))

    assert refused.value.field == "intent_id" and TRADE_ID_IN_USE in refused.value.reason
    assert db.document("tenants/globex/order_intents/app-7").get().exists is False
    assert len(engine.broker.orders) == 1


def test_a_group_intent_document_reusing_a_group_id_of_the_user_in_another_tenant_is_rejected_unsent(db):
    """The same for a group written as an intent document: its legs' fill rows are
    ``{group_id}--{leg_id}`` in the user's history. The validation's batched read holds them; the
    group ends REJECTED (``TRADE_ID_IN_USE``) before any leg is sent."""
    from backend.adapters.firestore_store import FirestoreStore
    from backend.adapters.paper_broker import PaperBroker
    from backend.adapters.sim_venue import SimulatedVenue
    from backend.domain.clock import ManualClock
    from backend.execution.engine import ExecutionEngine
    from backend.service.intake import handle_intent_document
    from backend.settings import ExecSettings
    from tests.support.group_harness import approve
    from tests.support.invariants import EQUITY_PAIR, pair_request, scenario

    clock = ManualClock()
    venue = SimulatedVenue(scenario(), clock=clock)
    store = FirestoreStore(db)
    engine = ExecutionEngine(broker=PaperBroker(venue=venue), store=store, clock=clock, dry_run=False,
                             settings=ExecSettings.from_env({"EXEC_DRY_RUN": "0", "EXEC_FILL_WAIT_SECONDS": "0",
                                                             "EXEC_MAX_POSITION_QTY": "100000"}))
    body = {"status": "new", "kind": "multi_leg", "uid": "alice", "request": pair_request(clock.now(), EQUITY_PAIR)}

    def deliver(tenant: str) -> dict:
        db.document(f"tenants/{tenant}/order_intents/grp-7").set(body)
        approve(store, body["request"], tenant_id=tenant, uid="alice")
        for _ in range(2):  # at-least-once
            handle_intent_document(engine, tenant, "grp-7", body)
        return db.document(f"tenants/{tenant}/order_intents/grp-7").get().to_dict()

    assert deliver("acme")["status"] == "filled"
    sent = len(venue.orders())
    history_before = sorted(s.id for s in db.collection("users/alice/portfolio/history/trades").stream())

    moved = deliver("globex")

    assert moved["status"] == "rejected", moved
    group = db.document("tenants/globex/execution_groups/grp-7").get().to_dict()
    assert group["status"] == "REJECTED" and group["rejection"]["code"] == "TRADE_ID_IN_USE", group.get("rejection")
    assert len(venue.orders()) == sent  # no leg was sent
    assert sorted(s.id for s in db.collection("users/alice/portfolio/history/trades").stream()) == history_before
    assert [s.to_dict()["kind"] for s in db.collection("tenants/globex/ledger_trades").stream()] == ["group_decision"]


def test_the_sweeper_delivering_an_unstarted_intent_document_refuses_the_reused_id_too(db):
    """The other way an intent document reaches the engine: its trigger never ran, the sweeper finds it
    (status ``new``) and hands it to the same intake — twice here, as two sweeps would."""
    from backend.execution.sweeper import Sweeper

    engine, _ = _document_engine(db)
    assert [o["status"] for o in _deliver(engine, db, "acme", "app-9", "alice")] == ["placed", "placed"]
    orders_before = len(engine.broker.orders)
    db.document("tenants/globex/order_intents/app-9").set(_doc("alice"))  # written; no trigger delivered it

    reports = [Sweeper(engine).sweep() for _ in range(2)]

    assert reports[0].unstarted_found == 1 and reports[0].unstarted_handled == 1 and not reports[0].errors
    assert reports[1].unstarted_found == 0  # final after the first sweep: not swept again
    stored = db.document("tenants/globex/order_intents/app-9").get().to_dict()
    assert stored["status"] == "rejected" and stored["result"]["error"]["reason"].startswith(TRADE_ID_IN_USE)
    assert len(engine.broker.orders) == orders_before
    assert _ids(db, "tenants/globex/ledger_trades") == []
