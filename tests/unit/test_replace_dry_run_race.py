"""Dry run switched on while a replace is in flight (after its dry-run check, before the venue call):
the venue guard (``backend.risk.gate``: ``replace_order`` is a venue write like a submit) refuses
the call, nothing reaches the venue, the answer is 409 DRY_RUN and the replace's marker and
reservation are gone — for a working single order and for a group leg's protective stop."""
from __future__ import annotations

from backend.domain.orders import OrderState
from backend.execution.order_management import OrderManager
from tests.support.api_stack import make_stack
from tests.unit.test_orders_api import exposure, ledger, place


def test_a_replace_racing_dry_run_sends_nothing_and_leaves_the_order_as_it_was(monkeypatch):
    stack = make_stack(paper=True)
    intent_id = place(stack)
    before = stack.get(f"/orders/{intent_id}").json()["order"]
    reserved = exposure(stack)["reserved_long_nanos"]
    original = OrderManager._replacement_intent

    def switch_on_then_build(self, *args, **kwargs):  # the check passed; the operator flips dry run now
        stack.engine.dry_run = True
        return original(self, *args, **kwargs)

    monkeypatch.setattr(OrderManager, "_replacement_intent", switch_on_then_build)
    response = stack.request("PATCH", f"/orders/{intent_id}", {"limit_price": "101", "qty": "20"},
                             headers={"Idempotency-Key": "r1"})

    assert response.status == 409 and response.json()["error"]["code"] == "DRY_RUN", response.json()
    after = stack.get(f"/orders/{intent_id}").json()["order"]
    assert after["broker_order_id"] == before["broker_order_id"] and after["limit_price"] == "100.00"
    assert stack.broker.get_order(before["broker_order_id"]).state is OrderState.NEW  # untouched at the venue
    working = stack.broker.venue.list_orders(status="open", account_id=stack.broker.account_id)
    assert [o.broker_order_id for o in working] == [before["broker_order_id"]]
    assert exposure(stack)["reserved_long_nanos"] == reserved  # the increase's extra was released
    assert not any("--r" in k for k in ledger(stack, intent_id))
    record = stack.store.docs[f"tenants/acme/order_intents/{intent_id}"]
    assert not record.get("pending_replace")
