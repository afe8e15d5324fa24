"""Stops and protective legs of the simulated venue (issue 15), as functions over working orders.

Stop, stop-limit and trailing-stop orders rest until their stop trades — a buy's when the ask
reaches it, a sell's when the bid does — and then work as a market (stop, trailing) or limit
(stop-limit) order; an ioc / fok stop applies its rule when it triggers. A trailing stop's ``hwm``
is the best touch seen while the order is observed; its stop is ``trail_price`` (or
``trail_percent`` %) behind it.

Protective legs: a bracket / oto keeps its take-profit (limit) and stop-loss (stop, stop-limit or
trailing) legs "held" until the entry is FILLED; an oco is its take-profit limit order with the
stop-loss leg working at once. The first fill of one exit cancels the other; an entry that ends
unfilled cancels its legs. Legs are orders of the book (own ids and client ids), observed whenever
their parent is. The venue (``venue.py``) calls these under its lock.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from backend.adapters.sim.orders import LegRequest, WorkingOrder
from backend.adapters.sim.scenario import FillModel
from backend.domain.assets import AssetSpec
from backend.domain.errors import InvalidInput
from backend.domain.money import ONE, ZERO
from backend.domain.orders import (
    BrokerError,
    BrokerErrorCode,
    OrderClass,
    OrderRequest,
    OrderSide,
    OrderState,
    OrderType,
    Quote,
)

if TYPE_CHECKING:
    from backend.adapters.sim.accounts import Book

STOP_TYPES = frozenset({OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TRAILING_STOP})


def _tick(spec: AssetSpec, value: Decimal | None, name: str) -> Decimal | None:
    return spec.quantize_price(value, name) if value else None


def quantized_prices(request: OrderRequest, spec: AssetSpec) -> dict[str, Decimal | None]:
    """limit, stop, trail and take-profit prices on the tick; INVALID (never rounded) when off it."""
    try:
        take = request.take_profit.limit_price if request.take_profit is not None else None
        return {"limit": _tick(spec, request.limit_price, "limit_price"),
                "stop": _tick(spec, request.stop_price, "stop_price"),
                "trail": _tick(spec, request.trail_price, "trail_price"),
                "take": _tick(spec, take, "take_profit.limit_price")}
    except InvalidInput as exc:
        raise BrokerError(BrokerErrorCode.INVALID, str(exc)) from None


def protective_legs(parent: WorkingOrder, request: OrderRequest, spec: AssetSpec, take: Decimal | None,
                    next_id: Callable[[str], str]) -> list[WorkingOrder]:
    """A bracket's / oto's exits (held until the entry fills, opposite side, same qty) or an oco's
    stop-loss leg (working at once, same side as its take-profit parent)."""
    if request.order_class is OrderClass.SIMPLE:
        return []
    oco = request.order_class is OrderClass.OCO
    legs: list[tuple[OrderType, Decimal | None, Decimal | None, Decimal | None]] = []
    if take is not None and not oco:
        legs.append((OrderType.LIMIT, take, None, None))
    sl = request.stop_loss
    if sl is not None:
        try:
            stop = _tick(spec, sl.stop_price, "stop_loss.stop_price")
            limit = _tick(spec, sl.limit_price, "stop_loss.limit_price")
            trail = _tick(spec, sl.trail_price, "stop_loss.trail_price")
        except InvalidInput as exc:
            raise BrokerError(BrokerErrorCode.INVALID, str(exc)) from None
        kind = (OrderType.TRAILING_STOP if trail is not None
                else OrderType.STOP_LIMIT if limit is not None else OrderType.STOP)
        legs.append((kind, limit, stop, trail))
    return [WorkingOrder(
        broker_order_id=next_id("order"), client_order_id=next_id("client"), symbol=parent.symbol,
        asset_class=parent.asset_class, side=parent.side if oco else parent.side.opposite, qty=parent.qty,
        order_type=kind, limit_price=limit, time_in_force=parent.time_in_force, fill=parent.fill, lot=parent.lot,
        created_at=parent.created_at, updated_at=parent.updated_at, eligible_at=parent.eligible_at,
        account_id=parent.account_id, stop_price=stop, trail_price=trail, order_class=parent.order_class,
        parent_id=parent.broker_order_id, held=not oco) for kind, limit, stop, trail in legs]


def stop_triggered(order: WorkingOrder, quote: Quote) -> bool:
    """True once ``order``'s stop has traded (it then stays triggered); a trailing stop first moves
    its ``hwm`` to the best touch. Orders without a stop are always "triggered"."""
    if order.order_type not in STOP_TYPES or order.triggered:
        return True
    touch = quote.ask if order.side is OrderSide.BUY else quote.bid
    if order.order_type is OrderType.TRAILING_STOP:
        if order.hwm is None or (touch > order.hwm if order.side is OrderSide.SELL else touch < order.hwm):
            order.hwm = touch
    stop = order.armed_stop
    if stop is None:
        return False
    order.triggered = touch >= stop if order.side is OrderSide.BUY else touch <= stop
    return order.triggered


def expires_after_trigger(order: WorkingOrder) -> bool:
    """A stop with ioc / fok that triggered and did not fill at once: its remainder is canceled."""
    return (order.order_type in STOP_TYPES and order.triggered and order.time_in_force in ("ioc", "fok")
            and not order.state.is_final)


def linked_cancels(order: WorkingOrder, orders: Mapping[str, WorkingOrder], now: datetime) -> list[WorkingOrder]:
    """Release a filled entry's held legs (eligible from ``now``); return the orders to cancel: the
    legs of an entry that ended unfilled, and the siblings of an exit that filled."""
    out: list[WorkingOrder] = []
    if order.children and order.order_class != OrderClass.OCO.value:
        if order.state is OrderState.FILLED:
            for child in order.children:
                if child.held:
                    child.held = False
                    child.eligible_at = max(child.eligible_at, now)
        elif order.state.is_final:
            out.extend(c for c in order.children if not c.state.is_final)
    parent = orders.get(order.parent_id) if order.parent_id else order
    group: list[WorkingOrder] = []
    if parent is not None and parent.children:
        if parent.order_class == OrderClass.OCO.value:
            group = [parent, *parent.children]
        elif parent.order_class == OrderClass.BRACKET.value:
            group = list(parent.children)
    if any(member.filled_qty > ZERO for member in group):
        out.extend(m for m in group if m.filled_qty == ZERO and not m.state.is_final and m not in out)
    return out


class ProtectiveOrders:
    """How the simulated venue accepts, links and cancels orders: time in force at acceptance, stops
    that wait for their trigger, a parent and its protective legs observed together. Mixed into
    ``SimulatedVenue``, whose lock is held whenever these run."""

    _orders: dict[str, WorkingOrder]
    market: Any
    clock: Any
    _progress_one: Callable[..., None]
    _fill_price: Callable[[WorkingOrder, Decimal | None], Decimal | None]
    _mleg_net_price: Callable[[Sequence[WorkingOrder] | Sequence[LegRequest]], Decimal]

    def _accept(self, book: "Book", order: WorkingOrder) -> None:
        for one in (order, *order.children):
            self._orders[one.broker_order_id] = one
            book.orders[one.broker_order_id] = one
            book.by_client[one.client_order_id] = one.broker_order_id
        if order.time_in_force == "fok" and self._triggered(order) and not self._fills_at_once(order):
            self._cancel(order)  # fill or kill: nothing fills unless everything can, now
            return
        self._progress(order, observe=False)
        if not order.state.is_final and order.time_in_force in ("ioc", "fok") and self._triggered(order):
            self._cancel(order)  # an untriggered stop's ioc / fok applies when it triggers

    def _progress(self, order: WorkingOrder, *, observe: bool) -> None:
        """Apply what is due by now to the order and its protective legs, then the legs' links: an
        entry that filled releases its held legs, a leg that filled cancels the others. A leg observed
        alone first brings its parent up to date (not observed: its partial steps stay its own)."""
        parent = self._orders.get(order.parent_id) if order.parent_id else None
        if parent is not None:
            self._progress_one(parent, observe=False)
            self._link_legs(parent)
            self._progress_one(order, observe=observe)
            self._expire_unfilled_trigger(order)
            self._link_legs(order)
            return
        self._progress_one(order, observe=observe)
        self._expire_unfilled_trigger(order)
        self._link_legs(order)
        for child in order.children:
            self._progress_one(child, observe=observe)
            self._link_legs(child)

    def _expire_unfilled_trigger(self, order: WorkingOrder) -> None:
        if expires_after_trigger(order):
            self._cancel(order)

    def _triggered(self, order: WorkingOrder) -> bool:
        if order.order_type not in STOP_TYPES or order.triggered:
            return True
        return stop_triggered(order, self.market.quote(order.symbol, order.asset_class))

    def _link_legs(self, order: WorkingOrder) -> None:
        for other in linked_cancels(order, self._orders, self.clock.now()):
            self._cancel(other)

    def _cancel(self, order: WorkingOrder) -> None:
        now = self.clock.now()
        order.state = OrderState.CANCELED
        order.canceled_at = order.updated_at = now
        for leg in (*order.legs, *order.children):  # an mleg's legs, a bracket's exits
            if not leg.state.is_final:
                leg.state = OrderState.CANCELED
                leg.canceled_at = leg.updated_at = now

    def _fills_at_once(self, order: WorkingOrder) -> bool:
        fill = order.fill
        if self.clock.now() < order.eligible_at:
            return False
        if fill.model is FillModel.REJECT:
            return True  # let the progression reject it
        if fill.model is FillModel.NEVER or (fill.model is FillModel.PARTIAL and fill.ratios[0] < ONE):
            return False
        if not self._triggered(order):
            return False
        if order.legs:
            return all(self._fill_price(leg, None) is not None for leg in order.legs) and (
                order.limit_price is None or self._mleg_net_price(order.legs) <= order.limit_price)
        return self._fill_price(order, order.limit_price) is not None

