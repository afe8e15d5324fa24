"""Issue 15 item 6 on OANDA: ``PATCH /orders/{id}`` replaces a resting order through ``OandaBroker``
(``PUT /v3/accounts/{id}/orders/{id}``, httpx) against the local OANDA-v20-compatible server.

Over HTTP (``functions-framework --target api`` as a child process, the official Firestore and Auth
emulators, FOREX routed to OANDA): one working order at the venue after the replace, the ledger row
``{intent}--r1`` linking the old venue order to the new one, a retry with the same Idempotency-Key a
replay (one PUT), a replace whose answer is lost found by its client id, a filled order's replace
refused with its fill in the ledger, and a later fill of the replacement in the ledger once.

In process (the engine on the Firestore emulator, a bound OANDA account): a replace whose answer and
lookup both failed leaves ``pending_replace``; the transaction feed then delivers the old order's
``ORDER_CANCEL`` (reason ``CLIENT_REQUEST_REPLACED``) twice — the intent is never finalised or released
on it, the replacement is recorded once, the caller's retry is a replay, and the new order's fill
reaches the ledger once.
"""
from __future__ import annotations

import io
import json
import uuid
from decimal import Decimal as D
from typing import Any

import pytest

from backend.adapters.oanda.broker import forget_instruments
from backend.adapters.oanda.client import close_shared_clients
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.execution.intent import ExecutionContext, OrderIntent
from backend.logs import set_stream
from tests.support.api_stack import FunctionsServer, emulator_env, http_call
from tests.support.group_harness import scenario
from tests.support.oanda_server import LocalOandaServer

pytestmark = pytest.mark.slow
FX = AssetClass.FOREX


@pytest.fixture(scope="module")
def oanda_venue():
    with LocalOandaServer(scenario(), token="api-oanda-token") as venue:
        yield venue


@pytest.fixture(scope="module")
def api(firestore_emulator, auth_emulator, oanda_venue):
    env = emulator_env(firestore_emulator, auth_emulator, EXEC_BROKER_ROUTES="FOREX=oanda",
                       OANDA_ACCOUNT_ID=oanda_venue.account_id, OANDA_API_TOKEN="api-oanda-token",
                       OANDA_BASE_URL=oanda_venue.url, OANDA_ENVIRONMENT="practice", OANDA_TIMEOUT_SECONDS="2",
                       EXEC_MAX_POSITION_QTY="100000000", EXEC_MAX_POSITION_QTY_FOREX="100000000")
    with FunctionsServer(env) as server:
        yield server
        errors = [line for line in server.log_lines() if line.get("severity") == "ERROR"]
        assert errors == [], f"the function logged errors: {errors}"


@pytest.fixture
def user(auth, firestore_project):
    def make(name: str) -> tuple[str, str]:
        email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
        uid, _ = auth.sign_up(email, "secret-pw-1")
        auth.set_claims(uid, {"tenant_id": "acme", "role": "trader"})
        return uid, auth.sign_in(email, "secret-pw-1")

    return make


def call(api, token: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None):
    return http_call(method, api.url + path, body, {"Authorization": f"Bearer {token}", **(headers or {})})


def rows_of(db, tenant_id: str, intent_id: str) -> dict[str, dict]:
    return {s.id: s.to_dict() for s in db.collection(f"tenants/{tenant_id}/ledger_trades").stream()
            if s.id.startswith(intent_id)}


def pending_at(venue: LocalOandaServer) -> list[str]:
    return [o.id for o in venue.api.orders.values() if o.state == "PENDING" and o.instrument == "EUR_USD"]


def place_resting(api, token: str, venue: LocalOandaServer, key: str, qty: str = "10000") -> tuple[dict, D]:
    bid = venue.venue.get_latest_quote("EUR/USD", FX).bid
    limit = bid - D("0.0030")
    status, _, placed = call(api, token, "POST", "/execute", {
        "strategy_id": "s1", "symbol": "EUR/USD", "asset_class": "FOREX", "side": "buy", "qty": qty,
        "order_type": "limit", "limit_price": str(limit), "time_in_force": "gtc"}, {"Idempotency-Key": key})
    assert status == 201 and placed["status"] == "placed" and placed["broker"] == "oanda", placed
    assert placed["order_status"] == "new", placed
    return placed, limit


def test_patch_replaces_a_resting_gtc_limit_once_and_the_ledger_links_old_and_new(api, oanda_venue, user, db):
    uid, token = user("olga")
    placed, limit = place_resting(api, token, oanda_venue, "ox-rest-1")
    intent_id, old_id = placed["intent_id"], placed["broker_order_id"]
    new_price = limit + D("0.0005")

    status, _, replaced = call(api, token, "PATCH", f"/orders/{intent_id}", {"limit_price": str(new_price),
                                                                            "qty": "8000"},
                               {"Idempotency-Key": "move-1"})
    assert status == 200 and replaced["outcome"] == "replaced", replaced
    new_id = replaced["order"]["broker_order_id"]
    assert new_id != old_id and D(replaced["order"]["limit_price"]) == new_price
    assert D(replaced["order"]["qty"]) == 8000
    status, headers, again = call(api, token, "PATCH", f"/orders/{intent_id}", {"limit_price": str(new_price),
                                                                               "qty": "8000"},
                                  {"Idempotency-Key": "move-1"})
    assert status == 200 and headers.get("Idempotent-Replayed") == "true"
    assert again["order"]["broker_order_id"] == new_id
    puts = [r for r in oanda_venue.requests if r.method == "PUT" and r.path.endswith(f"/orders/{old_id}")]
    assert len(puts) == 1  # one replace at the venue
    assert old_id not in pending_at(oanda_venue) and new_id in pending_at(oanda_venue)
    assert oanda_venue.api.orders[old_id].replaced_by == new_id
    cancel = next(t for t in oanda_venue.transactions() if t["type"] == "ORDER_CANCEL" and t["orderID"] == old_id)
    assert cancel["reason"] == "CLIENT_REQUEST_REPLACED" and cancel["replacedByOrderID"] == new_id

    rows = rows_of(db, "acme", intent_id)
    assert sorted(r["kind"] for r in rows.values()) == ["order", "replace"]
    link = rows[f"{intent_id}--r1"]
    assert link["broker_order_id"] == new_id and link["replaces"]["broker_order_id"] == old_id
    assert D(link["replaces"]["limit_price"]) == limit
    record = db.document(f"tenants/acme/order_intents/{intent_id}").get().to_dict()
    assert record["broker_order_id"] == new_id and record["order_final"] is False
    account = record["account"]["account_id"]
    exposure = db.document(f"tenants/acme/exposure/{account}__EUR-USD").get().to_dict()
    assert exposure["reserved_long_nanos"] == 8000 * 10**9  # the reservation follows the new quantity

    # the replacement fills later at the venue: the sweep brings it to the ledger once
    oanda_venue.venue.market.set_mid("EUR/USD", new_price - D("0.0002"), FX)
    oanda_venue.venue.poll()
    status, _, canceled = call(api, token, "DELETE", f"/orders/{intent_id}")  # too late: it filled
    assert status == 409 and canceled["error"]["code"] == "ORDER_NOT_CANCELABLE", canceled
    status, _, canceled = call(api, token, "DELETE", f"/orders/{intent_id}")
    assert status == 409
    rows = rows_of(db, "acme", intent_id)
    fills = [r for r in rows.values() if r["kind"] == "fill"]
    assert len(fills) == 1 and D(fills[0]["filled_qty"]) == 8000 and fills[0]["broker_order_id"] == new_id
    assert oanda_venue.venue.net_position("EUR/USD", FX) >= 8000


def test_a_replace_whose_answer_is_lost_is_found_by_its_client_id(api, oanda_venue, user, db):
    uid, token = user("lena")
    placed, limit = place_resting(api, token, oanda_venue, "ox-rest-2")
    intent_id, old_id = placed["intent_id"], placed["broker_order_id"]
    oanda_venue.inject(f"PUT /v3/accounts/{oanda_venue.account_id}/orders/{old_id}", "timeout_after_accept")
    status, _, replaced = call(api, token, "PATCH", f"/orders/{intent_id}", {"limit_price": str(limit - D("0.0001"))},
                               {"Idempotency-Key": "lost-1"})
    assert status == 200 and replaced["outcome"] == "replaced", replaced
    new = replaced["order"]
    assert [o["id"] for o in oanda_venue.orders_for_client_id(new["client_order_id"])] == [new["broker_order_id"]]
    puts = [r for r in oanda_venue.requests if r.method == "PUT" and r.path.endswith(f"/orders/{old_id}")]
    assert [r.status for r in puts] == [None]  # the one PUT, answered by nothing
    assert rows_of(db, "acme", intent_id)[f"{intent_id}--r1"]["replaces"]["broker_order_id"] == old_id
    assert call(api, token, "DELETE", f"/orders/{intent_id}")[0] in (200, 202)


def test_a_filled_order_is_not_replaced_and_its_fill_reaches_the_ledger(api, oanda_venue, user, db):
    uid, token = user("fred")
    placed, limit = place_resting(api, token, oanda_venue, "ox-rest-3", qty="3000")
    intent_id, old_id = placed["intent_id"], placed["broker_order_id"]
    oanda_venue.venue.market.set_mid("EUR/USD", limit - D("0.0002"), FX)  # it fills while nobody looks
    oanda_venue.venue.poll()
    status, _, refused = call(api, token, "PATCH", f"/orders/{intent_id}", {"limit_price": str(limit - D("0.0010"))},
                              {"Idempotency-Key": "late-1"})
    assert status in (400, 409), refused
    assert "replace" not in {r["kind"] for r in rows_of(db, "acme", intent_id).values()}
    fills = [r for r in rows_of(db, "acme", intent_id).values() if r["kind"] == "fill"]
    assert len(fills) == 1 and D(fills[0]["filled_qty"]) == 3000 and fills[0]["broker_order_id"] == old_id
    record = db.document(f"tenants/acme/order_intents/{intent_id}").get().to_dict()
    assert record.get("pending_replace") is None and record["order_final"] is True
    assert [t for t in oanda_venue.transactions() if t.get("replacesOrderID") == old_id] == []


# ------------------------------------------------------------------------------------------ feed
def test_the_replaced_orders_cancel_in_the_feed_never_finalises_the_intent(db):
    """A replace whose answer and lookup were both lost; the feed (delivered twice) records it instead."""
    from backend.execution.event_ingest import cursor_path, ingest_venue_events
    from backend.execution.order_management import OrderManager, ReplaceChanges, VenueBusy
    from tests.integration.test_event_ingest_venues import TOKEN as FEED_TOKEN
    from tests.integration.test_event_ingest_venues import ledger, make_engine, my_errors, tenant_with

    clock = ManualClock()
    srv = LocalOandaServer(scenario(), clock=clock, token=FEED_TOKEN).start()
    try:
        tenant_id = tenant_with(db, "oanda", "paper", srv.url, srv.account_id, "env:EV_OANDA_KEYS", {FX})
        engine = make_engine(db, clock)
        bid = srv.venue.get_latest_quote("EUR/USD", FX).bid
        limit = bid - D("0.0030")
        placed = engine.execute_intent(OrderIntent(
            "s1", None, "EUR/USD", "buy", "10000", asset_class="FOREX", intent_id="feed-rp", order_type="limit",
            limit_price=str(limit), time_in_force="gtc"), ExecutionContext(tenant_id, "alice"))
        assert placed.status == "placed" and placed.order_status == "new", placed
        assert my_errors(ingest_venue_events(engine), tenant_id) == []
        cursor = db.document(cursor_path(tenant_id, "conn", srv.account_id)).get().to_dict()["cursor"]
        old_id = placed.broker_order_id

        manager = OrderManager(engine)
        srv.inject(f"PUT /v3/accounts/{srv.account_id}/orders/{old_id}", "timeout_after_accept")
        srv.inject(f"GET /v3/accounts/{srv.account_id}/orders/@*", "503", times=None)
        changes = ReplaceChanges(limit_price=limit + D("0.0004"))
        with pytest.raises(VenueBusy):
            manager.replace(tenant_id, "alice", "feed-rp", changes, "k-1")
        srv.clear_faults()
        record = db.document(f"tenants/{tenant_id}/order_intents/feed-rp").get().to_dict()
        marker = record["pending_replace"]
        (new,) = srv.orders_for_client_id(marker["client_order_id"])  # the venue did replace it
        assert srv.api.orders[old_id].replaced_by == new["id"] and record["broker_order_id"] == old_id

        lines = io.StringIO()
        set_stream(lines)  # what the folding did, step by step
        try:
            first = ingest_venue_events(engine)
            db.document(cursor_path(tenant_id, "conn", srv.account_id)).update({"cursor": cursor})
            second = ingest_venue_events(engine)  # the old order's cancel delivered again
        finally:
            set_stream(None)
        logged = [json.loads(line) for line in lines.getvalue().splitlines() if line.startswith("{")]
        # never finalised on the old order's cancel (no reconcile of the replaced order, nothing released)
        assert [e for e in logged if e.get("intent_id") == "feed-rp" and e["event"] == "exec.reconciled"
                and e.get("order_status") != "new"] == []
        assert [e["event"] for e in logged if e.get("intent_id") == "feed-rp" and e["event"].startswith("orders.")] \
            == ["orders.replaced"]
        assert my_errors(first, tenant_id) == [] and my_errors(second, tenant_id) == []
        record = db.document(f"tenants/{tenant_id}/order_intents/feed-rp").get().to_dict()
        assert record["order_final"] is False and record["broker_order_id"] == new["id"]
        assert record.get("pending_replace") is None and len(record["replacements"]) == 1
        assert sorted(v["kind"] for k, v in ledger(db, tenant_id).items() if k.startswith("feed-rp")) == \
            ["order", "replace"]
        exposure = db.document(f"tenants/{tenant_id}/exposure/alice-main__EUR-USD").get().to_dict()
        assert exposure["reserved_long_nanos"] == 10000 * 10**9  # nothing released on the old order's cancel

        replay = manager.replace(tenant_id, "alice", "feed-rp", changes, "k-1")
        assert replay.replayed and replay.view["broker_order_id"] == new["id"]
        assert len(srv.orders_for_client_id(marker["client_order_id"])) == 1

        srv.venue.market.set_mid("EUR/USD", limit, FX)  # the replacement fills at the venue
        srv.venue.poll()
        filled, refilled = ingest_venue_events(engine), None
        db.document(cursor_path(tenant_id, "conn", srv.account_id)).update({"cursor": cursor})
        refilled = ingest_venue_events(engine)
        assert my_errors(filled, tenant_id) == [] and my_errors(refilled, tenant_id) == []
        fills = [v for k, v in ledger(db, tenant_id).items() if k.startswith("feed-rp") and v["kind"] == "fill"]
        assert len(fills) == 1 and D(fills[0]["filled_qty"]) == 10000 and fills[0]["broker_order_id"] == new["id"]
        record = db.document(f"tenants/{tenant_id}/order_intents/feed-rp").get().to_dict()
        assert record["order_final"] is True and record["result"]["order_status"] == "filled"
        exposure = db.document(f"tenants/{tenant_id}/exposure/alice-main__EUR-USD").get().to_dict()
        assert exposure["reserved_long_nanos"] == 0 and exposure["position_nanos"] == 10000 * 10**9
    finally:
        srv.stop()
        close_shared_clients()
        forget_instruments()
