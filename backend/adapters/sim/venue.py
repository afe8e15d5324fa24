"""The simulated venue: order matching, positions and account over a ``MarketSimulator``.

Thread-safe (one lock). The same scenario, seed, clock and sequence of calls give the same order
ids, fills and quotes. ``PaperBroker`` and the local Alpaca and OANDA test servers sit on it.

Fill models (all wait ``latency_seconds`` after submission before anything happens):

- ``immediate``: the whole order fills (at submit when the latency is 0).
- ``latency``: the same as ``immediate``; the name says the latency is the point.
- ``partial``: ``ratios`` are cumulative filled shares of the order (``["0.5", "1.0"]``). The first
  applies when the order becomes eligible; each later one on the next observation of the order
  (``get_order``, ``get_order_by_client_id``, ``poll``, ``step``) or, with ``step_seconds`` > 0,
  every ``step_seconds`` of clock time. A last ratio below 1 leaves the order working.
- ``reject``: the order becomes REJECTED with ``reject_reason``.
- ``never``: the order stays NEW until canceled.

Market orders fill at the touch (buy at the ask, sell at the bid) moved ``slippage_ticks`` against
the order; limit orders fill only when marketable and never through their limit. ``ioc`` cancels
what did not fill at submission, ``fok`` cancels unless everything filled at submission.
Multi-leg option orders (``submit_mleg``) fill every leg together at one net price per unit
(positive a debit), by the first leg's fill model.

Stops and protective legs (bracket / oto / oco): ``protective.py`` (issue 15).

Account: ``cash`` moves by each fill's notional; ``buying_power`` is margin based: an order needs
``AssetSpec.margin(qty, price)`` of it, opening exposure uses that margin at the entry price,
closing releases it and realized P&L is added; ``equity`` is the starting equity plus the cash
change plus the positions marked at the current mid.

Accounts (``accounts.py``): one book per account id — cash, positions, orders, client order ids.
Every order, position and account method takes ``account_id`` (None: the default account).

Faults: a scenario fault (or ``inject_fault``) makes calls of ``operation`` (a venue method name,
or ``*``) fail after ``after_calls`` matching calls, ``count`` times (``null``: until cleared):
``unavailable`` and ``rate_limited`` raise ``BrokerError`` before anything happens;
``lost_response`` performs the call and then raises ``LostResponse`` (an UNAVAILABLE
``BrokerError``: the ambiguous failure, the order exists).
"""
from __future__ import annotations

import threading
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from backend.adapters.sim import protective
from backend.adapters.sim.accounts import Book, Books
from backend.adapters.sim.instruments import listed_instrument
from backend.adapters.sim.market import MarketSimulator
from backend.adapters.sim.orders import ActiveFault, Fill, LegRequest, MlegRequest, VenueOrder, WorkingOrder
from backend.adapters.sim.replace import ReplaceOrders
from backend.adapters.sim.scenario import (AccountSpec, FaultKind, FaultSpec, FillModel, Scenario, derived_uuid,
                                           parse_fault)
from backend.domain.assets import AssetClass, AssetSpec, AssetSpecRegistry, default_registry
from backend.domain.clock import Clock, SystemClock
from backend.domain.errors import InvalidInput
from backend.domain.instruments import InstrumentInfo
from backend.domain.money import ONE, ZERO, round_to_step
from backend.domain.orders import (
    Account,
    BrokerError,
    BrokerErrorCode,
    OrderClass,
    OrderRequest,
    OrderSide,
    OrderState,
    Position,
    Quote,
)

DuplicatePolicy = Literal["return", "raise"]
TIME_IN_FORCE = frozenset({"day", "gtc", "ioc", "fok", "opg", "cls"})


class LostResponse(BrokerError):
    """UNAVAILABLE raised after the venue acted (the ``lost_response`` fault): the order may exist."""

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(BrokerErrorCode.UNAVAILABLE, message, retry_after=retry_after)


class SimulatedVenue(protective.ProtectiveOrders, ReplaceOrders):
    """Orders, fills, positions and account over a ``MarketSimulator``; see the module docstring."""

    def __init__(self, scenario: Scenario | Mapping[str, Any] | str | Path | None = None, *,
                 clock: Clock | None = None, specs: AssetSpecRegistry | None = None, seed: int | None = None):
        resolved = Scenario.resolve(scenario)
        if seed is not None:
            resolved = resolved.with_seed(seed)
        self.scenario = resolved
        self.clock: Clock = clock or SystemClock()
        self.specs = specs or default_registry()
        self.market = MarketSimulator(resolved, self.clock, self.specs)
        self._lock = threading.RLock()
        self._books = Books(resolved.account)
        self._orders: dict[str, WorkingOrder] = {}  # every account's orders, in submission order
        self._fills: list[Fill] = []
        self._counter = 0
        self._faults = [ActiveFault(f) for f in resolved.faults]

    # -- accounts

    def open_account(self, account_id: str, spec: AccountSpec | None = None) -> str:
        """Add an account (from ``spec``, default the scenario's account); an existing one is kept."""
        with self._lock:
            return self._books.open(account_id, spec)

    def account_ids(self) -> list[str]:
        with self._lock:
            return self._books.ids()

    def has_account(self, account_id: str) -> bool:
        with self._lock:
            return account_id in self._books

    def set_trade_suspended(self, account_id: str | None, suspended: bool) -> None:
        with self._lock:
            self._books.get(account_id).trade_suspended = bool(suspended)

    def trade_suspended(self, account_id: str | None = None) -> bool:
        with self._lock:
            return self._books.get(account_id).trade_suspended

    def account_spec(self, account_id: str | None = None) -> AccountSpec:
        with self._lock:
            return self._books.get(account_id).spec

    def _book(self, account_id: str | None) -> Book:
        return self._books.get(account_id)

    # -- ids and faults

    def _next_id(self, kind: str) -> str:
        self._counter += 1
        return derived_uuid(self.scenario.seed, kind, self._counter)

    def new_client_order_id(self) -> str:
        """A reproducible client order id for callers that did not bring one."""
        with self._lock:
            return self._next_id("client")

    def inject_fault(self, operation: str, kind: FaultKind | str, *, count: int | None = 1, after_calls: int = 0,
                     retry_after: float = 1.0) -> None:
        spec = parse_fault({"operation": operation, "kind": FaultKind(kind).value, "count": count,
                       "after_calls": after_calls, "retry_after": retry_after}, "inject_fault")
        with self._lock:
            self._faults.append(ActiveFault(spec))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _check_faults(self, operation: str) -> FaultSpec | None:
        """Raise a pre-call fault; return a ``lost_response`` fault to raise after the call."""
        lost = None
        for spec in [f.spec for f in self._faults if f.fires(operation)]:  # every fault counts the call
            if spec.kind is FaultKind.RATE_LIMITED:
                raise BrokerError(BrokerErrorCode.RATE_LIMITED, f"{operation}: rate limited (simulated)",
                                  retry_after=spec.retry_after)
            if spec.kind is FaultKind.UNAVAILABLE:
                raise BrokerError(BrokerErrorCode.UNAVAILABLE, f"{operation}: venue unavailable (simulated)",
                                  retry_after=spec.retry_after)
            lost = spec
        return lost

    @staticmethod
    def _raise_lost(operation: str, lost: FaultSpec | None) -> None:
        if lost is not None:
            raise LostResponse(f"{operation}: connection lost after the venue acted (simulated)",
                               retry_after=lost.retry_after)

    # -- submission

    def submit_order(self, request: OrderRequest, *, on_duplicate: DuplicatePolicy = "return",
                     account_id: str | None = None) -> VenueOrder:
        """Accept an order; a ``client_order_id`` known in that account returns the existing order or
        raises DUPLICATE."""
        with self._lock:
            lost = self._check_faults("submit_order")
            book = self._book(account_id)
            book.check_tradable()
            order = self._submit(book, request, on_duplicate)
            self._raise_lost("submit_order", lost)
            return order

    def _submit(self, book: Book, request: OrderRequest, on_duplicate: DuplicatePolicy) -> VenueOrder:
        existing = self._duplicate(book, request.client_order_id, on_duplicate)
        if existing is not None:
            return existing
        try:
            symbol, klass = self.market.resolve(request.symbol, request.asset_class)
            spec = self.market.spec(symbol, klass)
            qty = spec.quantize_qty(request.qty)
        except InvalidInput as exc:
            raise BrokerError(BrokerErrorCode.INVALID, str(exc)) from None
        prices = protective.quantized_prices(request, spec)
        limit, stop = prices["limit"], prices["stop"]
        tif = _tif(request.time_in_force)
        if request.order_class is OrderClass.OCO:
            limit = prices["take"]  # an OCO is its take-profit limit order, with the stop-loss as its leg
        quote = self.market.quote(symbol, klass)
        price = quote.ask if request.side is OrderSide.BUY else quote.bid
        if limit is not None:
            price = limit
        elif stop is not None:
            price = stop
        self._check_buying_power(book, symbol, request.side, qty, price, spec)
        now = self.clock.now()
        fill = self.market.fill_spec(symbol, klass)
        order = WorkingOrder(
            broker_order_id=self._next_id("order"), client_order_id=request.client_order_id, symbol=symbol,
            asset_class=klass, side=request.side, qty=qty, order_type=request.order_type, limit_price=limit,
            time_in_force=tif, fill=fill, lot=spec.lot_size, created_at=now, updated_at=now,
            eligible_at=now + timedelta(seconds=fill.latency_seconds), account_id=book.account_id,
            stop_price=stop, trail_price=prices["trail"], trail_percent=request.trail_percent,
            order_class=request.order_class.value)
        order.children = protective.protective_legs(order, request, spec, prices["take"], self._next_id)
        self._accept(book, order)
        return order.snapshot()

    def submit_mleg(self, request: MlegRequest, *, on_duplicate: DuplicatePolicy = "return",
                    account_id: str | None = None) -> VenueOrder:
        """Accept a multi-leg option order; the legs fill together, by the first leg's fill model."""
        with self._lock:
            lost = self._check_faults("submit_mleg")
            book = self._book(account_id)
            book.check_tradable()
            existing = self._duplicate(book, request.client_order_id, on_duplicate)
            if existing is not None:
                self._raise_lost("submit_mleg", lost)
                return existing
            tif = _tif(request.time_in_force)
            request_limit = None
            if request.limit_price is not None:
                tick = self.market.spec(request.legs[0].symbol, AssetClass.OPTIONS).tick_size
                if request.limit_price % tick != ZERO:
                    raise BrokerError(BrokerErrorCode.INVALID,
                                      f"limit_price: {request.limit_price} is not a multiple of {tick}")
                request_limit = request.limit_price
            net = self._mleg_net_price(request.legs)
            if net > ZERO:
                spec = self.market.spec(request.legs[0].symbol, AssetClass.OPTIONS)
                self._check_buying_power_amount(book, spec.margin(request.qty, net))
            now = self.clock.now()
            first = request.legs[0]
            fill = self.market.fill_spec(first.symbol, AssetClass.OPTIONS)
            parent_id = self._next_id("order")
            legs = []
            for leg in request.legs:
                symbol, _ = self.market.resolve(leg.symbol, AssetClass.OPTIONS)
                legs.append(WorkingOrder(
                    broker_order_id=self._next_id("order"), client_order_id=self._next_id("client"), symbol=symbol,
                    asset_class=AssetClass.OPTIONS, side=leg.side, qty=request.qty * leg.ratio_qty,
                    order_type=request.order_type, limit_price=None, time_in_force=tif, fill=fill, lot=ONE,
                    created_at=now, updated_at=now, eligible_at=now, ratio_qty=leg.ratio_qty,
                    position_intent=leg.position_intent, account_id=book.account_id))
            parent = WorkingOrder(
                broker_order_id=parent_id, client_order_id=request.client_order_id, symbol="",
                asset_class=AssetClass.OPTIONS, side=first.side, qty=request.qty, order_type=request.order_type,
                limit_price=request_limit, time_in_force=tif, fill=fill, lot=ONE, created_at=now, updated_at=now,
                eligible_at=now + timedelta(seconds=fill.latency_seconds), legs=legs, account_id=book.account_id)
            self._accept(book, parent)
            snapshot = parent.snapshot()
            self._raise_lost("submit_mleg", lost)
            return snapshot

    @staticmethod
    def _duplicate(book: Book, client_order_id: str, on_duplicate: DuplicatePolicy) -> VenueOrder | None:
        broker_id = book.by_client.get(client_order_id)
        if broker_id is None:
            return None
        if on_duplicate == "raise":
            raise BrokerError(BrokerErrorCode.DUPLICATE, "client_order_id must be unique")
        return book.orders[broker_id].snapshot()

    def _check_buying_power(self, book: Book, symbol: str, side: OrderSide, qty: Decimal, price: Decimal,
                            spec: AssetSpec) -> None:
        holding = book.holdings.get(symbol)
        held = holding.qty if holding else ZERO
        opening = qty if held * side.direction >= 0 else max(ZERO, qty - abs(held))
        if opening > ZERO:
            self._check_buying_power_amount(book, spec.margin(opening, price))

    def _check_buying_power_amount(self, book: Book, required: Decimal) -> None:
        available = self._buying_power(book)
        if required > available:
            raise BrokerError(BrokerErrorCode.INSUFFICIENT_BUYING_POWER,
                              f"insufficient buying power: required={required} available={available}")

    # -- progression

    def _progress_one(self, order: WorkingOrder, *, observe: bool) -> None:
        """Apply whatever the fill model says is due by now (one more partial step when observed)."""
        if order.state.is_final or order.held:
            return
        now = self.clock.now()
        if now < order.eligible_at:
            return
        if not self._triggered(order):
            return
        model = order.fill.model
        if model is FillModel.NEVER:
            return
        if model is FillModel.REJECT:
            order.state = OrderState.REJECTED
            order.reject_reason = order.fill.reject_reason
            order.failed_at = order.updated_at = now
            return
        if model is not FillModel.PARTIAL:
            self._fill_to(order, order.qty, now)
            return
        target = max(order.step, 1)
        if observe and order.step >= 1:
            target = order.step + 1
        if order.fill.step_seconds > 0:
            elapsed = (now - order.eligible_at).total_seconds()
            target = max(target, 1 + int(elapsed // order.fill.step_seconds))
        target = min(target, len(order.fill.ratios))
        while order.step < target:
            ratio = order.fill.ratios[order.step]
            goal = order.qty if ratio == ONE else round_to_step(order.qty * ratio, order.lot, down=True)
            if goal > order.filled_qty and not self._fill_to(order, goal, now):
                return  # not marketable: the step waits
            order.step += 1

    def _fill_to(self, order: WorkingOrder, goal: Decimal, now: datetime) -> bool:
        """Fill ``order`` up to ``goal`` cumulative qty at the current touch; False if not marketable."""
        qty = goal - order.filled_qty
        if qty <= ZERO:
            return True
        if order.legs:
            prices = [self._fill_price(leg, None) for leg in order.legs]
            if any(p is None for p in prices):
                return False
            net = sum((p * leg.ratio_qty * leg.side.direction for p, leg in zip(prices, order.legs)), ZERO)
            if order.limit_price is not None and net > order.limit_price:
                return False
            for leg, price in zip(order.legs, prices):
                self._record_fill(leg, qty * leg.ratio_qty, price, now)
            order.filled_qty += qty
            order.filled_value += net * qty
        else:
            price = self._fill_price(order, order.limit_price)
            if price is None:
                return False
            self._record_fill(order, qty, price, now)
            return True
        self._update_state(order, now)
        return True

    def _fill_price(self, order: WorkingOrder, limit: Decimal | None) -> Decimal | None:
        quote = self.market.quote(order.symbol, order.asset_class)
        tick = self.market.spec(order.symbol, order.asset_class).tick_size
        slip = order.fill.slippage_ticks * tick
        if order.side is OrderSide.BUY:
            if limit is not None and quote.ask > limit:
                return None
            price = quote.ask + slip
            return min(price, limit) if limit is not None else price
        if limit is not None and quote.bid < limit:
            return None
        price = max(tick, quote.bid - slip)
        return max(price, limit) if limit is not None else price

    def _record_fill(self, order: WorkingOrder, qty: Decimal, price: Decimal, now: datetime) -> None:
        order.filled_qty += qty
        order.filled_value += qty * price
        self._fills.append(Fill(fill_id=self._next_id("fill"), broker_order_id=order.broker_order_id,
                                client_order_id=order.client_order_id, symbol=order.symbol, side=order.side,
                                qty=qty, price=price, timestamp=now, account_id=order.account_id))
        self._books.get(order.account_id).apply_fill(
            order.symbol, order.asset_class, order.side.direction * qty, price,
            self.market.spec(order.symbol, order.asset_class).multiplier)
        self._update_state(order, now)

    @staticmethod
    def _update_state(order: WorkingOrder, now: datetime) -> None:
        order.updated_at = now
        if order.filled_qty >= order.qty:
            order.state = OrderState.FILLED
            order.filled_at = now
        elif order.filled_qty > ZERO:
            order.state = OrderState.PARTIALLY_FILLED

    def _mleg_net_price(self, legs: Sequence[WorkingOrder] | Sequence[LegRequest]) -> Decimal:
        """Net per unit at the touch: Σ side × ratio × (ask for buys, bid for sells); positive a debit."""
        net = ZERO
        for leg in legs:
            quote = self.market.quote(leg.symbol, AssetClass.OPTIONS)
            price = quote.ask if leg.side is OrderSide.BUY else quote.bid
            net += price * (leg.ratio_qty or 1) * leg.side.direction
        return net

    # -- reads that observe (and so progress) orders

    def get_order(self, broker_order_id: str, *, account_id: str | None = None) -> VenueOrder:
        with self._lock:
            lost = self._check_faults("get_order")
            order = self._find(broker_order_id, account_id)
            self._progress(order, observe=True)
            self._raise_lost("get_order", lost)
            return order.snapshot()

    def get_order_by_client_id(self, client_order_id: str, *, account_id: str | None = None) -> VenueOrder | None:
        with self._lock:
            lost = self._check_faults("get_order_by_client_id")
            book = self._book(account_id)
            broker_id = book.by_client.get(client_order_id)
            if broker_id is None:
                self._raise_lost("get_order_by_client_id", lost)
                return None
            order = book.orders[broker_id]
            self._progress(order, observe=True)
            self._raise_lost("get_order_by_client_id", lost)
            return order.snapshot()

    def list_orders(self, *, status: str = "all", account_id: str | None = None) -> list[VenueOrder]:
        """Orders in submission order, each observed once; ``status`` is open, closed or all."""
        if status not in ("open", "closed", "all"):
            raise BrokerError(BrokerErrorCode.INVALID, f"status must be open, closed or all, got {status!r}")
        with self._lock:
            lost = self._check_faults("list_orders")
            book = self._book(account_id)
            out = []
            for order in [o for o in book.orders.values() if o.parent_id is None]:
                self._progress(order, observe=True)  # a parent observes its protective legs
            for order in book.orders.values():
                if status == "all" or (status == "open") != order.state.is_final:
                    out.append(order.snapshot())
            self._raise_lost("list_orders", lost)
            return out

    def poll(self) -> list[VenueOrder]:
        """Observe every working order of every account once (one partial step each); returns the ones
        still working."""
        with self._lock:
            for order in [o for o in self._orders.values() if o.parent_id is None]:
                self._progress(order, observe=True)  # a parent observes its protective legs
            return [o.snapshot() for o in self._orders.values() if not o.state.is_final]

    def step(self, n: int = 1) -> None:
        """Move the market ``n`` steps, then observe working orders once."""
        with self._lock:
            self.market.step(n)
            self.poll()

    def cancel_order(self, broker_order_id: str, *, account_id: str | None = None) -> VenueOrder:
        """Cancel the unfilled remainder (fills due by now are applied first). A final order is returned as is."""
        with self._lock:
            lost = self._check_faults("cancel_order")
            order = self._find(broker_order_id, account_id)
            self._progress(order, observe=False)
            if not order.state.is_final:
                self._cancel(order)
            self._raise_lost("cancel_order", lost)
            return order.snapshot()

    def _find(self, broker_order_id: str, account_id: str | None) -> WorkingOrder:
        """The order with that id in that account; another account's order is not found."""
        order = self._book(account_id).orders.get(str(broker_order_id))
        if order is None:
            raise BrokerError(BrokerErrorCode.NOT_FOUND, f"order not found: {broker_order_id}")
        return order

    # -- positions and account

    def get_positions(self, *, account_id: str | None = None) -> list[Position]:
        with self._lock:
            lost = self._check_faults("get_positions")
            book = self._book(account_id)
            out = [Position(symbol=s, qty=h.qty, avg_entry_price=h.avg_entry,
                            market_value=h.qty * self.market.mid(s, h.asset_class)
                            * self.market.spec(s, h.asset_class).multiplier) for s, h in book.holdings.items()]
            self._raise_lost("get_positions", lost)
            return out

    def get_position(self, symbol: str, asset_class: AssetClass | str | None = None, *,
                     account_id: str | None = None) -> Position | None:
        with self._lock:
            key, _ = self.market.resolve(symbol, asset_class)
            holding = self._book(account_id).holdings.get(key)
            return Position(symbol=key, qty=holding.qty, avg_entry_price=holding.avg_entry) if holding else None

    def net_position(self, symbol: str, asset_class: AssetClass | str | None = None, *,
                     account_id: str | None = None) -> Decimal:
        position = self.get_position(symbol, asset_class, account_id=account_id)
        return position.qty if position else ZERO

    def position_asset_class(self, symbol: str, *, account_id: str | None = None) -> AssetClass | None:
        with self._lock:
            holding = self._book(account_id).holdings.get(self.market.resolve(symbol)[0])
            return holding.asset_class if holding else None

    def close_position(self, symbol: str, asset_class: AssetClass | str | None = None, *,
                       qty: Decimal | None = None, client_order_id: str | None = None,
                       account_id: str | None = None) -> VenueOrder | None:
        """Submit a market order for the opposite side of the position (all of it unless ``qty``); None if flat."""
        with self._lock:
            lost = self._check_faults("close_position")
            book = self._book(account_id)
            key, _ = self.market.resolve(symbol, asset_class)
            holding = book.holdings.get(key)
            if holding is None:
                self._raise_lost("close_position", lost)
                return None
            size = abs(holding.qty) if qty is None else min(abs(holding.qty), Decimal(qty))
            if size <= ZERO:
                raise BrokerError(BrokerErrorCode.INVALID, f"close qty must be positive, got {qty}")
            request = OrderRequest(
                client_order_id=client_order_id or self._next_id("client"), symbol=key,
                asset_class=holding.asset_class, side=OrderSide.SELL if holding.qty > ZERO else OrderSide.BUY,
                qty=size)
            book.check_tradable()
            order = self._submit(book, request, "raise")
            self._raise_lost("close_position", lost)
            return order

    def _buying_power(self, book: Book) -> Decimal:
        used = ZERO
        for symbol, holding in book.holdings.items():
            used += self.market.spec(symbol, holding.asset_class).margin(abs(holding.qty), holding.avg_entry)
        return book.spec.buying_power + book.realized - used

    def get_account(self, *, account_id: str | None = None) -> Account:
        with self._lock:
            lost = self._check_faults("get_account")
            book = self._book(account_id)
            market_value = ZERO
            for symbol, holding in book.holdings.items():
                spec = self.market.spec(symbol, holding.asset_class)
                market_value += holding.qty * self.market.mid(symbol, holding.asset_class) * spec.multiplier
            account = book.spec
            equity = account.equity + (book.cash - account.cash) + market_value
            result = Account(buying_power=self._buying_power(book), equity=equity, cash=book.cash)
            self._raise_lost("get_account", lost)
            return result

    # -- market data

    def get_latest_quote(self, symbol: str, asset_class: AssetClass | str | None = None) -> Quote:
        with self._lock:
            lost = self._check_faults("get_latest_quote")
            quote = self.market.quote(symbol, asset_class)
            self._raise_lost("get_latest_quote", lost)
            return quote

    def get_recent_closes(self, symbol: str, n: int, asset_class: AssetClass | str | None = None) -> list[Decimal]:
        with self._lock:
            lost = self._check_faults("get_recent_closes")
            closes = self.market.recent_closes(symbol, n, asset_class)
            self._raise_lost("get_recent_closes", lost)
            return closes

    # -- instruments (issue 19 item 2)

    def instrument(self, symbol: str, asset_class: AssetClass | str | None = None) -> InstrumentInfo | None:
        """The scenario's listing of ``symbol`` (``sim/instruments.py``); None when it is not listed."""
        with self._lock:
            lost = self._check_faults("instrument")
            info = listed_instrument(self.scenario, self.market, symbol, asset_class)
            self._raise_lost("instrument", lost)
            return info

    # -- invariant checks (no progression, no faults)

    def orders(self, account_id: str | None = None) -> list[VenueOrder]:
        """Every order ever accepted, in submission order, as it stands (nothing progresses); only
        that account's when ``account_id`` is given (None: every account)."""
        with self._lock:
            source = self._orders if account_id is None else self._book(account_id).orders
            return [o.snapshot() for o in source.values()]

    def peek_order(self, broker_order_id: str, *, account_id: str | None = None) -> VenueOrder:
        with self._lock:
            return self._find(broker_order_id, account_id).snapshot()

    def fills(self, account_id: str | None = None) -> list[Fill]:
        with self._lock:
            return [f for f in self._fills if account_id is None or f.account_id == account_id]

    def client_order_ids(self, account_id: str | None = None) -> list[str]:
        with self._lock:
            return [o.client_order_id for o in self.orders(account_id)]


def _tif(value: str) -> str:
    tif = (value or "day").lower()
    if tif not in TIME_IN_FORCE:
        raise BrokerError(BrokerErrorCode.INVALID,
                          f"time_in_force must be one of {sorted(TIME_IN_FORCE)}, got {value!r}")
    return tif
