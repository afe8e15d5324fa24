"""Issue 15 item 6 end to end: ``functions-framework --target api`` as a child process, the official
Firestore emulator, the Auth emulator's real ID tokens, and equities routed to the local
Alpaca-compatible server through the real alpaca-py clients. A resting limit order is listed,
replaced (one working order at the venue afterwards; the ledger links the old venue order to the
new one) and canceled (a cancel row; the reservation released); another user's id is a 404.
"""
from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest

from tests.support.alpaca_server import LocalAlpacaServer
from tests.support.api_stack import FunctionsServer, alpaca_equity_env, emulator_env, http_call

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def alpaca_venue():
    with LocalAlpacaServer("default") as venue:
        yield venue


@pytest.fixture(scope="module")
def api(firestore_emulator, auth_emulator, alpaca_venue):
    env = emulator_env(firestore_emulator, auth_emulator, **alpaca_equity_env(alpaca_venue))
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


def test_a_resting_limit_is_listed_replaced_and_canceled_and_the_ledger_links_old_and_new(api, alpaca_venue, user, db):
    uid, token = user("ivy")
    _, other = user("mallory")
    quote = alpaca_venue.venue.get_latest_quote("AAPL", "EQUITY")
    low = (quote.bid - Decimal("20")).quantize(Decimal("0.01"))
    status, _, placed = call(api, token, "POST", "/execute", {
        "strategy_id": "s1", "symbol": "AAPL", "side": "buy", "qty": "5", "order_type": "limit",
        "limit_price": str(low), "time_in_force": "gtc"}, {"Idempotency-Key": "rest-1"})
    assert status == 201 and placed["status"] == "placed" and placed["broker"] == "alpaca", placed
    intent_id, old_id = placed["intent_id"], placed["broker_order_id"]

    status, _, page = call(api, token, "GET", "/orders?symbol=AAPL")
    assert status == 200 and [o["intent_id"] for o in page["items"]] == [intent_id]
    assert call(api, other, "GET", f"/orders/{intent_id}")[0] == 404
    assert call(api, other, "DELETE", f"/orders/{intent_id}")[0] == 404

    new_price = str(low + Decimal("1.00"))
    status, _, replaced = call(api, token, "PATCH", f"/orders/{intent_id}", {"limit_price": new_price, "qty": "4"},
                               {"Idempotency-Key": "move-1"})
    assert status == 200 and replaced["outcome"] == "replaced", replaced
    new_id = replaced["order"]["broker_order_id"]
    assert new_id != old_id and Decimal(replaced["order"]["limit_price"]) == Decimal(new_price)
    status, headers, again = call(api, token, "PATCH", f"/orders/{intent_id}", {"limit_price": new_price, "qty": "4"},
                                  {"Idempotency-Key": "move-1"})
    assert status == 200 and headers.get("Idempotent-Replayed") == "true" and again["order"]["broker_order_id"] == new_id
    working = [o for o in alpaca_venue.venue.orders() if not o.state.is_final and o.symbol == "AAPL"]
    assert [o.broker_order_id for o in working] == [new_id]  # one working order at the venue
    assert alpaca_venue.venue.peek_order(old_id).replaced_by == new_id

    status, _, canceled = call(api, token, "DELETE", f"/orders/{intent_id}")
    assert status in (200, 202), canceled
    if status == 202:  # the venue confirms asynchronously: a retry completes it
        status, _, canceled = call(api, token, "DELETE", f"/orders/{intent_id}")
    assert status == 200 and canceled["outcome"] == "canceled" and canceled["order"]["working"] is False
    assert alpaca_venue.venue.peek_order(new_id).state.is_final
    assert call(api, token, "GET", "/orders")[2]["items"] == []

    rows = {snap.id: snap.to_dict() for snap in db.collection("tenants/acme/ledger_trades").stream()
            if snap.id.startswith(intent_id)}
    assert sorted(row["kind"] for row in rows.values()) == ["cancel", "order", "replace"]
    replace_row = rows[f"{intent_id}--r1"]
    assert replace_row["broker_order_id"] == new_id and replace_row["replaces"]["broker_order_id"] == old_id
    assert rows[f"{intent_id}--cancel"]["broker_order_id"] == new_id
    record = db.document(f"tenants/acme/order_intents/{intent_id}").get().to_dict()
    assert record["order_final"] is True and record["cancel"]["ledger_id"] == f"{intent_id}--cancel"
    account = record["account"]["account_id"]
    exposure = db.document(f"tenants/acme/exposure/{account}__AAPL").get().to_dict()
    assert exposure["reserved_long_nanos"] == 0 and exposure["position_nanos"] == 0
