"""Replacing a working order at the simulated venue (issue 15 item 6), as Alpaca does it.

``replace_order`` cancels the working order and places a new one in its place under a new client
order id: the old order becomes CANCELED with ``replaced_by`` (Alpaca's status word "replaced"),
the new one names it in ``replaces`` and takes over its place in a bracket (its legs, or its slot
among its parent's legs). Fills already made stay with the old order; the new order's ``qty`` is its
whole quantity (default: what was left of the old one). A price the order type does not have is
INVALID, as is a price off the tick (never rounded), a final order, or an mleg order.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from backend.adapters.sim.orders import VenueOrder, WorkingOrder
from backend.domain.errors import InvalidInput
from backend.domain.money import ZERO
from backend.domain.orders import BrokerError, BrokerErrorCode, OrderState, OrderType, ReplaceRequest

_LIMIT = frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT})
_STOP = frozenset({OrderType.STOP, OrderType.STOP_LIMIT})


class ReplaceOrders:
    """Mixed into ``SimulatedVenue``."""

    _lock: Any
    _orders: dict[str, WorkingOrder]
    market: Any
    clock: Any
    _check_faults: Callable[[str], Any]
    _raise_lost: Callable[[str, Any], None]
    _book: Callable[[str | None], Any]
    _find: Callable[[str, str | None], WorkingOrder]
    _next_id: Callable[[str], str]
    _progress: Callable[..., None]

    def replace_order(self, broker_order_id: str, request: ReplaceRequest, *,
                      account_id: str | None = None) -> VenueOrder:
        """The new order (see the module docstring); INVALID / DUPLICATE / NOT_FOUND as the venue would."""
        with self._lock:
            lost = self._check_faults("replace_order")
            book = self._book(account_id)
            book.check_tradable()
            old = self._find(broker_order_id, account_id)
            self._progress(old, observe=False)
            if old.state.is_final:
                raise BrokerError(BrokerErrorCode.INVALID, f'order is already in "{old.state.value}" state')
            if old.legs:
                raise BrokerError(BrokerErrorCode.INVALID, "an mleg order cannot be replaced")
            if request.client_order_id in book.by_client:
                raise BrokerError(BrokerErrorCode.DUPLICATE, "client_order_id must be unique")
            new = self._replacement(old, request)
            now = self.clock.now()
            old.state, old.canceled_at, old.updated_at, old.replaced_by = OrderState.CANCELED, now, now, \
                new.broker_order_id
            old.children = []
            for child in new.children:
                child.parent_id = new.broker_order_id
            parent = self._orders.get(old.parent_id) if old.parent_id else None
            if parent is not None:
                parent.children = [new if c is old else c for c in parent.children]
            self._orders[new.broker_order_id] = new
            book.orders[new.broker_order_id] = new
            book.by_client[new.client_order_id] = new.broker_order_id
            self._progress(new, observe=False)
            snapshot = new.snapshot()
            self._raise_lost("replace_order", lost)
            return snapshot

    def _replacement(self, old: WorkingOrder, request: ReplaceRequest) -> WorkingOrder:
        spec = self.market.spec(old.symbol, old.asset_class)
        changes: dict[str, Any] = {}
        try:
            qty = spec.quantize_qty(request.qty, "qty") if request.qty is not None else old.qty - old.filled_qty
            if request.limit_price is not None:
                if old.order_type not in _LIMIT:
                    raise InvalidInput("limit_price", f"a {old.order_type.value} order has no limit price")
                changes["limit_price"] = spec.quantize_price(request.limit_price, "limit_price")
            if request.stop_price is not None:
                if old.order_type not in _STOP:
                    raise InvalidInput("stop_price", f"a {old.order_type.value} order has no stop price")
                changes["stop_price"] = spec.quantize_price(request.stop_price, "stop_price")
            if request.trail is not None:
                if old.order_type is not OrderType.TRAILING_STOP:
                    raise InvalidInput("trail", f"a {old.order_type.value} order has no trail")
                if old.trail_price is not None:
                    changes["trail_price"] = spec.quantize_price(request.trail, "trail")
                else:
                    changes["trail_percent"] = request.trail
        except InvalidInput as exc:
            raise BrokerError(BrokerErrorCode.INVALID, str(exc)) from None
        if qty <= ZERO:
            raise BrokerError(BrokerErrorCode.INVALID, "qty must be positive")
        now = self.clock.now()
        return replace(
            old, broker_order_id=self._next_id("order"), client_order_id=request.client_order_id, qty=qty,
            time_in_force=(request.time_in_force or old.time_in_force).lower(), state=OrderState.NEW,
            filled_qty=ZERO, filled_value=ZERO, step=0, created_at=now, updated_at=now,
            eligible_at=max(old.eligible_at, now), filled_at=None, canceled_at=None, failed_at=None,
            triggered=old.triggered and not changes.keys() & {"stop_price", "trail_price", "trail_percent"},
            replaces=old.broker_order_id, replaced_by=None, legs=[],
            children=list(old.children), **changes)
