"""A replace that raises a working order's quantity is a new path to the venue for lots: on a full
lot book (backend/execution/lot_capacity.py) it is refused 409 LOT_BOOK_FULL before anything is
written or sent; a replace that does not raise the quantity is never refused for the book."""
from __future__ import annotations

from backend.domain.orders import OrderState
from backend.execution.store_rules import book_path
from backend.tax.state import book_key
from tests.support.api_stack import make_stack
from tests.unit.test_lot_book_capacity import full_book
from tests.unit.test_orders_api import exposure, ledger, place


def _fill_the_book(stack) -> None:
    stack.store.docs[book_path("alice", book_key("SPY"))] = full_book(symbol="SPY", label="acme:main-alice")


def test_raising_the_quantity_on_a_full_lot_book_is_409_and_changes_nothing():
    stack = make_stack(paper=True)
    intent_id = place(stack)  # a resting limit buy of SPY
    _fill_the_book(stack)
    before = stack.get(f"/orders/{intent_id}").json()["order"]
    reserved = exposure(stack)["reserved_long_nanos"]

    response = stack.request("PATCH", f"/orders/{intent_id}", {"qty": "20"}, headers={"Idempotency-Key": "up"})

    assert response.status == 409 and response.json()["error"]["code"] == "LOT_BOOK_FULL", response.json()
    assert "open lots of SPY" in response.json()["error"]["message"]
    assert stack.get(f"/orders/{intent_id}").json()["order"]["broker_order_id"] == before["broker_order_id"]
    assert stack.broker.get_order(before["broker_order_id"]).state is OrderState.NEW
    assert exposure(stack)["reserved_long_nanos"] == reserved
    assert not any("--r" in k for k in ledger(stack, intent_id))


def test_moving_the_price_on_a_full_lot_book_is_allowed():
    stack = make_stack(paper=True)
    intent_id = place(stack)
    _fill_the_book(stack)

    response = stack.request("PATCH", f"/orders/{intent_id}", {"limit_price": "101"},
                             headers={"Idempotency-Key": "px"})

    assert response.status == 200, response.json()
