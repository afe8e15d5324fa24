"""``BrokerPort`` on OANDA's v20 REST API: FX pairs and metals (FOREX, COMMODITY) for one account.

Orders
    Market and limit orders with signed units (+ buy, − sell), ``timeInForce`` (market: FOK, or
    IOC when asked; limit: GFD for our "day", GTC, IOC, FOK), ``positionFill`` DEFAULT and
    ``clientExtensions.id`` = our client order id. Units and limit prices must already fit the
    venue's instrument (``tradeUnitsPrecision``, ``minimumTradeSize``, ``displayPrecision``):
    nothing is rounded here; a size the venue cannot take is INVALID before anything is sent.
    An order OANDA creates and cancels at once (``orderCancelTransaction`` with
    INSUFFICIENT_MARGIN, MARKET_HALTED, ...) and an order it refuses (400
    ``orderRejectTransaction``) surface as coded ``BrokerError``s.

Exits on fill (issue 15 items 3 and 7)
    Take-profit / stop-loss / trailing stop go out as ``takeProfitOnFill`` / ``stopLossOnFill`` /
    ``trailingStopLossOnFill``; OANDA creates them as the dependent orders of the trade the fill opens
    and cancels the others (``LINKED_TRADE_CLOSED``) when one closes the trade. ``get_order`` of such a
    filled entry answers them as ``legs`` (``_exit_legs``: ``GET trades/{tradeOpenedID}``), so the
    sweeper's ``follow_exit_legs`` and the transaction feed fold an exit that fired overnight once.
    The entry may rest first (GTC / GFD limit or stop) and fill later, or fill in part and have its
    remainder canceled: OANDA opens the trade for the filled units either way, and its exits are legs.

Replace (issue 15 item 6)
    ``replace_order`` sends ``PUT orders/{id}`` with the whole replacing spec (the old order's fields,
    its orders on fill, the new client id); OANDA cancels the old order (``CLIENT_REQUEST_REPLACED``,
    ``replacedByOrderID``) and creates the new one (``replacesOrderID``) in one batch. ``get_order``
    answers both links (``replaces`` / ``replaced_by``). ``replace.py`` holds it, with the sources.

Idempotency (submit)
    OANDA refuses a duplicate client id only while the first order is *pending*; a market order
    fills at once, so a blind retry could execute twice. Therefore:
    - Before the first POST the client id is looked up (``@<clientID>``): an existing order is
      returned, never sent again (the port's "a second submit returns the existing order").
    - 400 CLIENT_ORDER_ID_ALREADY_EXISTS: the order is placed; it is looked up and returned.
    - Any unknown outcome (5xx, dropped connection, unreadable 2xx body, read timeout): the order
      is looked up by ``@<clientID>``, then in the transactions since the last transaction id this
      process saw, before anything else. Found: returned.
    - Not found after a *answered or dropped* request (the venue is done with it): resubmitted
      with the same client id, at most twice and within the time budget.
    - Not found after a *timeout* (the request may still be in flight at the venue): never
      resubmitted here. The call fails UNAVAILABLE "outcome unknown"; the engine keeps the
      reservation and the group executor / sweeper look the client id up again later.
    - 429: a definite refusal; retried after Retry-After within the budget.
    - A connection that could not be opened: nothing was sent; UNAVAILABLE at once.

Instruments
    Metadata (pip, precision, unit step, minimum size, margin rate) comes from
    ``GET /v3/accounts/{id}/instruments``, cached per process and account, and is cross-checked
    once per instrument against ``asset_specs.json`` (a difference is logged as
    ``oanda.instrument_spec_mismatch``; the venue's values govern what is sent).

Rollback of a group leg is an ordinary ``submit_order`` for exactly the filled units on the
opposite side (the group executor builds it); ``close_position`` (a whole-position close) is only
offered for manual flattening and is never used by rollbacks.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from datetime import time as dt_time
from decimal import Decimal, ROUND_CEILING, ROUND_FLOOR
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

from backend.adapters.oanda import models as m
from backend.adapters.oanda.client import (
    FailedRequest,
    OandaConfig,
    OandaHttp,
    reason_error,
)
from backend.adapters.oanda.replace import OandaReplace
from backend.adapters.oanda.instruments import (
    InstrumentInfo,
    cross_check,
    from_instrument,
    instrument_asset_class,
    to_instrument,
)
from backend.adapters.venue_common import AssetClassGate, resubmit_wait
from backend.domain.assets import AssetClass, AssetSpecRegistry, default_registry
from backend.domain.clock import Clock, SystemClock
from backend.domain.errors import InvalidInput
from backend.domain.instruments import InstrumentInfo as VenueInstrument
from backend.domain.money import ZERO, to_decimal
from backend.domain.orders import (
    Account,
    AssetSpecMixin,
    BrokerError,
    BrokerErrorCode,
    BrokerOrder,
    OrderClass,
    OrderRequest,
    OrderSide,
    OrderState,
    OrderType,
    Position,
    Quote,
    VenueActivities,
    VenueFee,
    VenueFill,
    quote_currency,
)
from backend.logs import log_event

log = logging.getLogger(__name__)
T = TypeVar("T")

SUPPORTED_ASSET_CLASSES = frozenset({AssetClass.FOREX, AssetClass.COMMODITY})
ORDER_CREATE_TYPES = frozenset({"MARKET_ORDER", "LIMIT_ORDER", "STOP_ORDER"})
_EXPIRED_REASONS = frozenset({"TIME_IN_FORCE_EXPIRED"})
_CANCELED_REASONS = frozenset({"CLIENT_REQUEST", "CLIENT_REQUEST_REPLACED", "LINKED_TRADE_CLOSED"})

_LIMIT_TIF = {"day": "GFD", "gtc": "GTC", "ioc": "IOC", "fok": "FOK"}

# per process: (url, account id) → instrument name → metadata; instruments already cross-checked
_instruments_lock = threading.Lock()
_INSTRUMENTS: dict[tuple[str, str], dict[str, InstrumentInfo]] = {}
_CHECKED: set[tuple[str, str, str]] = set()
_FETCHED_AT: dict[tuple[str, str], float] = {}  # when each table was fetched (monotonic)
INSTRUMENT_MISS_REFRESH_SECONDS = 60.0  # instrument(): an unknown name refetches the list at most this often


def forget_instruments() -> None:
    """Drop the per-process instrument cache (tests)."""
    with _instruments_lock:
        _INSTRUMENTS.clear()
        _CHECKED.clear()
        _FETCHED_AT.clear()


def order_body(request: OrderRequest, info: InstrumentInfo) -> dict[str, Any]:
    """The v20 order body for ``request``; INVALID (``InvalidInput``) when the venue cannot take it."""
    problem = info.units_problem(request.qty)
    if problem is not None:
        raise InvalidInput("qty", problem)
    units = request.qty if request.side is OrderSide.BUY else -request.qty
    tif = (request.time_in_force or "day").lower()
    price = None
    if request.order_type is OrderType.MARKET:
        order_type, oanda_tif = "MARKET", ("IOC" if tif == "ioc" else "FOK")
    elif request.order_type in (OrderType.LIMIT, OrderType.STOP):
        # a STOP entry (issue 15) fills at market once its price trades; GFD/GTC/IOC/FOK like a limit
        order_type = request.order_type.value.upper()
        if tif not in _LIMIT_TIF:
            raise InvalidInput("time_in_force", f"OANDA {request.order_type.value} orders take day, gtc, ioc or "
                                                f"fok, got {tif!r}")
        oanda_tif = _LIMIT_TIF[tif]
        field = "limit_price" if request.order_type is OrderType.LIMIT else "stop_price"
        price = _oanda_price(info, getattr(request, field), field)
    else:
        raise InvalidInput("order_type", f"OANDA takes market, limit and stop entries, not {request.order_type.value}")
    on_fill: dict[str, str | None] = {}
    if request.order_class not in (OrderClass.SIMPLE, OrderClass.BRACKET, OrderClass.OTO):
        raise InvalidInput("order_class", f"OANDA has no {request.order_class.value} orders")
    if request.take_profit is not None:
        on_fill["take_profit_price"] = _oanda_price(info, request.take_profit.limit_price, "take_profit.limit_price")
    stop_loss = request.stop_loss
    if stop_loss is not None:
        if stop_loss.limit_price is not None:
            raise InvalidInput("stop_loss.limit_price", "an OANDA stop loss takes no limit price")
        if stop_loss.trail_price is not None:
            on_fill["trailing_stop_distance"] = _oanda_price(info, stop_loss.trail_price, "stop_loss.trail_price")
        else:
            on_fill["stop_loss_price"] = _oanda_price(info, stop_loss.stop_price, "stop_loss.stop_price")
    bound = None
    if request.order_type is OrderType.MARKET and request.price_bound is not None:
        # outward to the instrument's precision: a bound between two ticks never refuses the touch
        rounding = ROUND_CEILING if request.side is OrderSide.BUY else ROUND_FLOOR
        bound = format(request.price_bound.quantize(info.price_increment, rounding=rounding), "f")
    try:
        return m.build_order_body(order_type=order_type, instrument=info.name, units=info.format_units(units),
                                  time_in_force=oanda_tif, client_id=request.client_order_id, price=price,
                                  price_bound=bound, **on_fill)
    except ValueError as exc:
        raise InvalidInput("order", str(exc)) from None


def _oanda_price(info: InstrumentInfo, value: Decimal | None, field: str) -> str:
    """A price on the instrument's displayPrecision, refused (never rounded) when off it."""
    assert value is not None
    if value % info.price_increment != ZERO:
        raise InvalidInput(field, f"{value} is not a multiple of {info.price_increment} "
                                  f"(displayPrecision {info.display_precision} for {info.name})")
    return info.format_price(value)


class OandaBroker(OandaReplace, AssetClassGate, AssetSpecMixin):
    """One OANDA account. ``OandaBroker(OandaConfig(account_id, token, environment, base_url))``."""

    name = "oanda"
    unsupported_message = "OANDA does not trade {asset_class}"

    def __init__(self, config: OandaConfig, *, clock: Clock | None = None, specs: AssetSpecRegistry | None = None,
                 supported: Iterable[AssetClass | str] | None = None):
        self.config = config
        self.specs = specs or default_registry()
        self._clock: Clock = clock or SystemClock()
        self._http = OandaHttp(config, clock=self._clock)
        self.supported = SUPPORTED_ASSET_CLASSES if supported is None else frozenset(
            AssetClass.parse(k) for k in supported)
        unsupported = self.supported - SUPPORTED_ASSET_CLASSES
        if unsupported:
            raise InvalidInput("supported", f"OANDA trades FOREX and COMMODITY only, not "
                                            f"{sorted(k.value for k in unsupported)}")
        self._txn_cache: dict[str, m.Transaction] = {}

    def __repr__(self) -> str:  # never the token
        return f"OandaBroker(account={self.config.account_id!r}, url={self.config.url!r})"

    # ---------------------------------------------------------------- instruments

    def instrument_info(self, symbol: str) -> InstrumentInfo:
        """The venue's metadata for ``symbol`` (cached per process and account)."""
        name = _guard(lambda: to_instrument(symbol))
        info = self._instrument_table(name).get(name)
        if info is None:
            raise BrokerError(BrokerErrorCode.INVALID, f"{name} is not tradeable in OANDA account "
                                                       f"{self.config.account_id}")
        self._cross_check(info)
        return info

    @property
    def instrument_classes(self) -> frozenset[AssetClass]:
        return self.supported

    def instrument(self, symbol: str, asset_class: AssetClass) -> VenueInstrument | None:
        """The port's instrument capability (issue 19 item 2): the account's instrument list as an
        ``InstrumentInfo`` (limit prices on ``displayPrecision``, units on ``tradeUnitsPrecision``,
        ``minimumTradeSize``); None for a symbol that is not a pair, not in the account's list, or
        listed under the other class (a metal asked as FOREX). OANDA lists only instruments the
        account can trade, so a listed one is tradable."""
        klass = self._require(asset_class)
        try:
            name = to_instrument(symbol)
        except InvalidInput:
            return None
        info = self._instrument_table(name, miss_refresh_seconds=INSTRUMENT_MISS_REFRESH_SECONDS).get(name)
        if info is None or instrument_asset_class(name) is not klass:
            return None
        self._cross_check(info)
        return VenueInstrument(symbol=from_instrument(name), asset_class=klass, tradable=True,
                               tick_size=info.price_increment, lot_step=info.units_step,
                               min_qty=info.minimum_trade_size, fractionable=info.trade_units_precision > 0,
                               source="oanda:instruments", status="listed")

    def _instrument_table(self, name: str, *, miss_refresh_seconds: float = 0.0) -> dict[str, InstrumentInfo]:
        """The account's instruments, fetched once per process and refetched when ``name`` is missing
        (at most once per ``miss_refresh_seconds``, so unknown symbols cannot make every check a fetch)."""
        key = (self.config.url, self.config.account_id)
        table = _INSTRUMENTS.get(key)
        fetched = _FETCHED_AT.get(key)
        recent = fetched is not None and self._clock.monotonic() - fetched < miss_refresh_seconds
        if table is None or (name not in table and not recent):
            reply = self._read("instruments", "GET", f"{self._http.account_path}/instruments")
            parsed = _parse("instruments", lambda: m.InstrumentsResponse.model_validate(reply))
            fresh = {i.name: InstrumentInfo(name=i.name, type=i.type, pip_location=i.pip_location,
                                            display_precision=i.display_precision,
                                            trade_units_precision=i.trade_units_precision,
                                            minimum_trade_size=i.minimum_trade_size, margin_rate=i.margin_rate,
                                            maximum_order_units=i.maximum_order_units)
                     for i in parsed.instruments}
            with _instruments_lock:
                _INSTRUMENTS[key] = fresh
                _FETCHED_AT[key] = self._clock.monotonic()
            table = fresh
        return table

    def _cross_check(self, info: InstrumentInfo) -> None:
        marker = (self.config.url, self.config.account_id, info.name)
        if marker in _CHECKED:
            return
        klass = AssetClass.COMMODITY if info.type == "METAL" else AssetClass.FOREX
        try:
            spec = self.specs.spec_for(from_instrument(info.name), klass)
        except InvalidInput:
            spec = None
        problems = cross_check(info, spec) if spec is not None else ["no asset spec"]
        with _instruments_lock:
            _CHECKED.add(marker)
        if problems:
            log_event("oanda.instrument_spec_mismatch", severity="WARNING", instrument=info.name,
                      problems=problems, note="the venue's values govern order sizing")

    # ---------------------------------------------------------------- orders

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        self._require(request.asset_class)
        info = self.instrument_info(request.symbol)
        body = _guard(lambda: order_body(request, info))
        # OANDA refuses a known client id only while its order is pending; a filled one would be
        # executed again. So a client id that already has an order is answered with that order.
        existing = self._lookup(request.client_order_id)
        if existing is not None:
            return self._final_or_raise(existing, request)
        return self._submit(request, body)

    def _submit(self, request: OrderRequest, body: Mapping[str, Any]) -> BrokerOrder:
        cid = request.client_order_id
        path = f"{self._http.account_path}/orders"
        deadline = self._http.deadline()
        since = self._http.last_transaction_id  # the transactions after it are scanned on an unknown outcome
        rate_limited = resubmits = 0
        while True:
            try:
                reply = self._http.request_once("POST", path, body=body)
            except FailedRequest as failed:
                failure = failed.failure
            else:
                try:
                    parsed = m.OrderCreateResponse.model_validate(reply.data)
                except ValueError:
                    # created (2xx) but unreadable: find it; never resubmit
                    found = self._find_after_unknown(cid, since, deadline, "unreadable 201 body")
                    if found is None:
                        raise BrokerError(BrokerErrorCode.UNAVAILABLE,
                                          f"order {cid} was accepted but its answer is unreadable and the lookup "
                                          "found nothing yet; look it up before resubmitting") from None
                    return self._final_or_raise(found, request)
                return self._from_create(parsed, request)
            error = failure.error
            if failure.duplicate:
                log.info("oanda: client id %s already exists; returning that order", cid)
                found = self._find_after_unknown(cid, since, deadline, error.message)
                if found is None:
                    raise BrokerError(BrokerErrorCode.UNAVAILABLE,
                                      f"OANDA reports client id {cid} as existing but the lookup found no order; "
                                      "outcome unknown")
                return self._final_or_raise(found, request)
            if error.code is BrokerErrorCode.RATE_LIMITED:
                wait = self._http.rate_limit_wait(error, rate_limited, deadline, "submit_order")
                rate_limited += 1
                self._clock.sleep(wait)
                continue
            if not failure.ambiguous:
                raise error
            log.warning("oanda: submit %s outcome unknown (%s); looking it up", cid, error.message)
            found = self._find_after_unknown(cid, since, deadline, error.message)
            if found is not None:
                return self._final_or_raise(found, request)
            if failure.in_flight:
                raise BrokerError(BrokerErrorCode.UNAVAILABLE,
                                  f"submit {cid}: {error.message}; not found yet, the request may still be in "
                                  "flight at OANDA: not resubmitted (look it up by client id later)")
            wait = resubmit_wait(resubmits, deadline=deadline, clock=self._clock)
            if wait is None:
                raise BrokerError(BrokerErrorCode.UNAVAILABLE,
                                  f"submit {cid} failed ({error.message}); not at OANDA after the lookup; not "
                                  "resubmitted within the time budget")
            resubmits += 1
            self._clock.sleep(wait)

    def _find_after_unknown(self, cid: str, since: str | None, deadline: float, why: str) -> BrokerOrder | None:
        """By ``@clientID`` first, then in the transactions since ``since``. A failed lookup raises
        UNAVAILABLE "outcome unknown" (never a resubmit)."""
        try:
            found = self._lookup(cid, deadline)
            if found is None and since is not None:
                found = self._scan_transactions(cid, since, deadline)
            return found
        except BrokerError as lookup_error:
            raise BrokerError(BrokerErrorCode.UNAVAILABLE,
                              f"submit outcome unknown for client id {cid} ({why}); lookup failed: "
                              f"{lookup_error.message}. Look it up before resubmitting.") from None

    def _lookup(self, cid: str, deadline: float | None = None) -> BrokerOrder | None:
        try:
            reply = self._read("get_order_by_client_id", "GET", f"{self._http.account_path}/orders/@{cid}",
                               deadline=deadline)
        except BrokerError as error:
            if error.code is BrokerErrorCode.NOT_FOUND:
                return None
            raise
        order = _parse("order", lambda: m.OrderResponse.model_validate(reply).order)
        return self._to_broker_order(order, deadline)

    def _scan_transactions(self, cid: str, since: str, deadline: float) -> BrokerOrder | None:
        reply = self._read("transactions_since", "GET", f"{self._http.account_path}/transactions/sinceid",
                           params={"id": since}, deadline=deadline)
        parsed = _parse("transactions", lambda: m.TransactionsResponse.model_validate(reply))
        for txn in parsed.transactions:
            if txn.type in ORDER_CREATE_TYPES and txn.client_extensions and txn.client_extensions.id == cid:
                log_event("oanda.order_found_in_transactions", severity="WARNING", client_order_id=cid,
                          order_id=txn.id)
                return self._get(txn.id, deadline)
        return None

    def _from_create(self, parsed: m.OrderCreateResponse, request: OrderRequest) -> BrokerOrder:
        create = parsed.order_create_transaction
        fill, cancel = parsed.order_fill_transaction, parsed.order_cancel_transaction
        filled = abs(fill.units) if fill is not None and fill.units is not None else ZERO
        if cancel is not None and filled == ZERO and cancel.reason:
            raise reason_error(cancel.reason, f"OANDA canceled order {create.id} ({request.client_order_id}) "
                                              "at creation")
        units = create.units if create.units is not None else (
            request.qty if request.side is OrderSide.BUY else -request.qty)
        qty = abs(units)
        if cancel is not None:
            state = OrderState.CANCELED
            status = f"CANCELLED:{cancel.reason or ''}"
        elif filled >= qty > ZERO:
            state, status = OrderState.FILLED, "FILLED"
        else:
            state = OrderState.PARTIALLY_FILLED if filled > ZERO else OrderState.NEW
            status = "PENDING"
        updated = (cancel or fill or create).time
        return BrokerOrder(
            broker_order_id=create.id,
            client_order_id=(create.client_extensions.id if create.client_extensions and create.client_extensions.id
                             else request.client_order_id),
            symbol=from_instrument(create.instrument or to_instrument(request.symbol)),
            side=OrderSide.BUY if units > ZERO else OrderSide.SELL, qty=qty, state=state, filled_qty=filled,
            filled_avg_price=fill.fill_price if fill is not None and filled > ZERO else None,
            submitted_at=create.time, updated_at=updated, venue_status=status)

    def _final_or_raise(self, order: BrokerOrder, request: OrderRequest) -> BrokerOrder:
        """A looked-up order that OANDA canceled at creation raises the same coded error as a direct answer."""
        if order.state is OrderState.REJECTED:
            reason = order.venue_status.partition(":")[2] or "REJECTED"
            raise reason_error(reason, f"OANDA canceled order {order.broker_order_id} "
                                       f"({request.client_order_id}) at creation")
        return order

    def get_order(self, broker_order_id: str) -> BrokerOrder:
        return self._get(str(broker_order_id))

    def _get(self, order_id: str, deadline: float | None = None) -> BrokerOrder:
        reply = self._read("get_order", "GET", f"{self._http.account_path}/orders/{order_id}", deadline=deadline)
        order = _parse("order", lambda: m.OrderResponse.model_validate(reply).order)
        found = self._to_broker_order(order, deadline)
        # a partial fill whose remainder ended (canceled, expired, an IOC) opened its trade too: the exits
        # OANDA created for the filled units are the entry's legs as well
        if found.filled_qty > ZERO and order.trade_opened_id and order.has_orders_on_fill:
            found = replace(found, legs=self._exit_legs(order.trade_opened_id, found, deadline))
        return found

    def _exit_legs(self, trade_id: str, entry: BrokerOrder, deadline: float | None) -> tuple[BrokerOrder, ...]:
        """Issue 15 item 7: the exits of a filled entry placed with take-profit / stop-loss / trailing stop
        on fill are the dependent orders OANDA created on the trade the fill opened (``GET trades/{id}``:
        ``takeProfitOrder`` / ``stopLossOrder`` / ``trailingStopLossOrder``), plus the order of each
        closing ``ORDER_FILL`` (OANDA keeps ``closingTransactionIDs`` after the trade closed, when the
        dependent orders may no longer be listed). Each leg is the entry's opposite side for the trade's
        units, in the state of its own fill or cancel (a sibling canceled because the trade closed is
        CANCELED), so ``follow_exit_legs`` and the event feed fold them as any venue's bracket legs."""
        reply = self._read("get_trade", "GET", f"{self._http.account_path}/trades/{trade_id}", deadline=deadline)
        trade = _parse("trade", lambda: m.TradeResponse.model_validate(reply).trade)
        orders: dict[str, m.Order] = {o.id: o for o in trade.dependent_orders}
        for txn_id in trade.closing_transaction_ids:
            txn = self._transaction(txn_id, deadline)
            if txn.type == "ORDER_FILL" and txn.order_id and txn.order_id != entry.broker_order_id \
                    and txn.order_id not in orders:
                reply = self._read("get_order", "GET", f"{self._http.account_path}/orders/{txn.order_id}",
                                   deadline=deadline)
                orders[txn.order_id] = _parse("order", lambda: m.OrderResponse.model_validate(reply).order)
        qty = abs(trade.initial_units) if trade.initial_units is not None else entry.filled_qty
        side = OrderSide.SELL if entry.side is OrderSide.BUY else OrderSide.BUY
        return tuple(self._to_broker_order(o, deadline, qty=qty, side=side, symbol=entry.symbol)
                     for o in orders.values())

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        return self._lookup(client_order_id)

    def cancel_order(self, broker_order_id: str) -> None:
        """Cancel a pending order; an order that is already final stays as it is."""
        try:
            self._read("cancel_order", "PUT", f"{self._http.account_path}/orders/{broker_order_id}/cancel",
                       retry_transient=True)  # idempotent: canceling twice cancels once
        except BrokerError as error:
            if error.code in (BrokerErrorCode.NOT_FOUND, BrokerErrorCode.INVALID, BrokerErrorCode.REJECTED):
                current = self.get_order(broker_order_id)  # a final order cannot be canceled: fine
                if current.state.is_final:
                    return
            raise

    def _to_broker_order(self, order: m.Order, deadline: float | None = None, *, qty: Decimal | None = None,
                         side: OrderSide | None = None, symbol: str | None = None) -> BrokerOrder:
        """``qty`` / ``side`` / ``symbol``: a dependent order (take profit, stop loss) has no units or
        instrument of its own; its trade's are given."""
        units = order.units or ZERO
        if side is not None and qty is not None:
            units = qty if side is OrderSide.BUY else -qty
        qty = abs(units)
        filled, price = ZERO, None
        if order.filling_transaction_id:
            fill = self._transaction(order.filling_transaction_id, deadline)
            filled = abs(fill.units or ZERO)
            price = fill.fill_price if filled > ZERO else None
        reason = ""
        if order.state == "CANCELLED":
            if order.cancelling_transaction_id:
                reason = self._transaction(order.cancelling_transaction_id, deadline).reason or ""
            if reason in _EXPIRED_REASONS:
                state = OrderState.EXPIRED
            elif filled == ZERO and reason and reason not in _CANCELED_REASONS:
                state = OrderState.REJECTED  # canceled by OANDA at creation (margin, halted, ...)
            else:
                state = OrderState.CANCELED
        elif order.state == "FILLED":
            state = OrderState.FILLED if filled >= qty else OrderState.CANCELED
        else:  # PENDING, TRIGGERED
            state = OrderState.PARTIALLY_FILLED if filled > ZERO else OrderState.NEW
        cid = order.client_extensions.id if order.client_extensions and order.client_extensions.id else ""
        return BrokerOrder(
            broker_order_id=order.id, client_order_id=cid,
            symbol=from_instrument(order.instrument) if order.instrument else (symbol or ""),
            side=OrderSide.BUY if units > ZERO else OrderSide.SELL, qty=qty, state=state, filled_qty=filled,
            filled_avg_price=price, submitted_at=order.create_time,
            updated_at=order.filled_time or order.cancelled_time or order.create_time,
            venue_status=f"{order.state}:{reason}" if reason else order.state,
            replaces=order.replaces_order_id, replaced_by=order.replaced_by_order_id)

    def _transaction(self, txn_id: str, deadline: float | None) -> m.Transaction:
        cached = self._txn_cache.get(txn_id)
        if cached is not None:
            return cached
        reply = self._read("get_transaction", "GET", f"{self._http.account_path}/transactions/{txn_id}",
                           deadline=deadline)
        txn = _parse("transaction", lambda: m.TransactionResponse.model_validate(reply).transaction)
        if len(self._txn_cache) < 10_000:
            self._txn_cache[txn_id] = txn  # transactions never change
        return txn

    # ---------------------------------------------------------------- positions and account

    def close_position(self, symbol: str, asset_class: AssetClass) -> BrokerOrder | None:
        """Manual flattening of the whole net position (never used by group rollbacks)."""
        self._require(asset_class)
        name = _guard(lambda: to_instrument(symbol))
        position = next((p for p in self.get_positions() if to_instrument(p.symbol) == name), None)
        if position is None or position.qty == ZERO:
            return None
        body = {"longUnits": "ALL"} if position.qty > ZERO else {"shortUnits": "ALL"}
        reply = self._read("close_position", "PUT", f"{self._http.account_path}/positions/{name}/close",
                           body=body, retry_transient=False)
        side = "long" if position.qty > ZERO else "short"
        create = reply.get(f"{side}OrderCreateTransaction")
        if not isinstance(create, Mapping):
            return None
        data = {"orderCreateTransaction": create, "orderFillTransaction": reply.get(f"{side}OrderFillTransaction"),
                "orderCancelTransaction": reply.get(f"{side}OrderCancelTransaction")}
        parsed = _parse("close_position", lambda: m.OrderCreateResponse.model_validate(
            {k: v for k, v in data.items() if v is not None}))
        request = OrderRequest(client_order_id="close-position", symbol=from_instrument(name),
                               asset_class=AssetClass.parse(asset_class),
                               side=OrderSide.SELL if position.qty > ZERO else OrderSide.BUY, qty=abs(position.qty))
        return self._from_create(parsed, request)

    def get_positions(self) -> Sequence[Position]:
        reply = self._read("get_positions", "GET", f"{self._http.account_path}/openPositions")
        parsed = _parse("positions", lambda: m.PositionsResponse.model_validate(reply))
        out = []
        for p in parsed.positions:
            net = p.long.units + p.short.units  # short units are negative
            if net == ZERO:
                continue
            avg = p.long.average_price if net > ZERO else p.short.average_price
            out.append(Position(symbol=from_instrument(p.instrument), qty=net, avg_entry_price=avg))
        return out

    def get_account(self) -> Account:
        """NAV as equity, marginAvailable as buying power (what the group margin gate compares to
        units × price × margin%), balance as cash."""
        reply = self._read("get_account", "GET", f"{self._http.account_path}/summary")
        account = _parse("summary", lambda: m.AccountSummaryResponse.model_validate(reply).account)
        return Account(buying_power=account.margin_available, equity=account.nav, cash=account.balance,
                       currency=account.currency)

    # ---------------------------------------------------------------- capability: activities

    TRANSACTIONS_PAGE = 1000  # what one ``transactions/sinceid`` answer holds at most

    def get_activities(self, day: date) -> VenueActivities:
        """The account's ``ORDER_FILL`` transactions of the UTC ``day`` (reconciliation): signed ``units``
        at ``fullVWAP`` (else ``price``) in the instrument's quote currency; ``commission`` and
        ``guaranteedExecutionFee`` (positive = charged, in the account's home currency) as fees; financing
        (``ORDER_FILL.financing``, ``DAILY_FINANCING``) reported apart, not compared (the ledger books no
        carry). Read with ``transactions/sinceid`` from the first transaction, page by page, until the
        day is past: proportional to the account's history."""
        start = datetime.combine(day, dt_time.min, tzinfo=timezone.utc)
        end = start + timedelta(days=1)
        fills: list[VenueFill] = []
        fees: list[VenueFee] = []
        financing: list[VenueFee] = []
        home: list[str] = []  # the account's currency, read once when a fee needs it

        def home_currency() -> str:
            if not home:
                home.append(self.get_account().currency)
            return home[0]

        since = "0"
        while True:
            reply = self._read("get_activities", "GET", f"{self._http.account_path}/transactions/sinceid",
                               params={"id": since})
            raw = list(reply.get("transactions") or ())
            parsed = _parse("transactions", lambda: m.TransactionsResponse.model_validate(reply).transactions)
            for item, txn in zip(raw, parsed):
                if txn.time is None or not start <= txn.time < end:
                    continue
                _parse("transaction", lambda: self._activity(item, txn, fills, fees, financing, home_currency))
            if len(raw) < self.TRANSACTIONS_PAGE or not parsed or (parsed[-1].time is not None
                                                                  and parsed[-1].time >= end):
                break
            since = parsed[-1].id
        return VenueActivities(fills=tuple(fills), fees=tuple(fees), financing=tuple(financing))

    def events_since(self, cursor: str | None) -> Any:
        """Issue 15 item 7, capability "event feed": the account's order events after transaction
        ``cursor`` (None: from the start), one ``transactions/sinceid`` page, oldest first, as a
        ``VenueEventPage`` (backend/execution/event_ingest.py): ``ORDER_FILL`` → ``fill``,
        ``ORDER_CANCEL`` → ``canceled`` (``replaced`` when its reason is ``CLIENT_REQUEST_REPLACED``: the
        order lives on as its replacement) with ``clientOrderID`` / ``orderID``. The page's cursor is its last
        transaction id (every type), so transactions that are not order events are read once."""
        from backend.execution.event_ingest import VenueEvent, VenueEventPage

        since = str(cursor) if cursor else "0"
        reply = self._read("events_since", "GET", f"{self._http.account_path}/transactions/sinceid",
                           params={"id": since})
        raw = list(reply.get("transactions") or ())
        parsed = _parse("transactions", lambda: m.TransactionsResponse.model_validate(reply).transactions)
        kinds = {"ORDER_FILL": "fill", "ORDER_CANCEL": "canceled"}

        def kind(txn: m.Transaction) -> str:  # the cancel of a replaced order is its replacement, not an end
            replaced = txn.type == "ORDER_CANCEL" and (txn.reason == "CLIENT_REQUEST_REPLACED"
                                                       or txn.replaced_by_order_id)
            return "replaced" if replaced else kinds[txn.type]

        events = tuple(VenueEvent(event_id=txn.id, kind=kind(txn), client_order_id=txn.client_order_id,
                                  broker_order_id=txn.order_id) for txn in parsed if txn.type in kinds)
        return VenueEventPage(events=events, cursor=parsed[-1].id if parsed else cursor,
                              more=len(raw) >= self.TRANSACTIONS_PAGE)

    @staticmethod
    def _activity(item: Mapping[str, Any], txn: m.Transaction, fills: list[VenueFill], fees: list[VenueFee],
                  financing: list[VenueFee], home_currency: Callable[[], str]) -> None:
        """Add one transaction (of the day, ``txn.time`` set) to the fills, fees and financing."""
        def amount(name: str) -> Decimal:
            value = item.get(name)
            return ZERO if value in (None, "") else to_decimal(value, name)

        when = txn.time or datetime.min.replace(tzinfo=timezone.utc)
        if txn.type == "ORDER_FILL" and txn.units and txn.fill_price is not None and txn.instrument:
            symbol = from_instrument(txn.instrument)
            fills.append(VenueFill(
                fill_id=txn.id, symbol=symbol, side=OrderSide.BUY if txn.units > ZERO else OrderSide.SELL,
                qty=abs(txn.units), price=txn.fill_price, time=when, currency=quote_currency(symbol),
                order_id=txn.order_id, client_order_id=txn.client_order_id))
            charged = amount("commission") + amount("guaranteedExecutionFee")
            if charged != ZERO:
                fees.append(VenueFee(fee_id=txn.id, amount=-charged, time=when, currency=home_currency(),
                                     kind="COMMISSION", symbol=symbol))
        if txn.type in ("ORDER_FILL", "DAILY_FINANCING") and amount("financing") != ZERO:
            financing.append(VenueFee(fee_id=txn.id, amount=amount("financing"), time=when,
                                      currency=home_currency(), kind="FINANCING",
                                      symbol=from_instrument(txn.instrument) if txn.instrument else None))

    # ---------------------------------------------------------------- market data

    def get_latest_quote(self, symbol: str, asset_class: AssetClass) -> Quote:
        self._require(asset_class)
        name = _guard(lambda: to_instrument(symbol))
        reply = self._read("get_latest_quote", "GET", f"{self._http.account_path}/pricing",
                           params={"instruments": name})
        prices = _parse("pricing", lambda: m.PricingResponse.model_validate(reply).prices)
        price = next((p for p in prices if p.instrument == name), None)
        if price is None or not price.bids or not price.asks:
            raise BrokerError(BrokerErrorCode.NOT_FOUND, f"no price for {name}")
        if not price.tradeable:
            raise BrokerError(BrokerErrorCode.REJECTED, f"MARKET_HALTED: {name} is not tradeable now")
        bid, ask = price.bids[0], price.asks[0]
        return Quote(symbol=from_instrument(name), bid=bid.price, ask=ask.price, timestamp=price.time,
                     bid_size=bid.liquidity or ZERO, ask_size=ask.liquidity or ZERO)

    def get_recent_closes(self, symbol: str, asset_class: AssetClass, limit: int,
                          granularity: str = "D") -> Sequence[Decimal]:
        """The last ``limit`` mid closes (daily by default), oldest first."""
        self._require(asset_class)
        if limit < 1:
            return []
        name = _guard(lambda: to_instrument(symbol))
        try:
            reply = self._read("get_recent_closes", "GET", f"/v3/instruments/{name}/candles",
                               params={"count": str(min(limit, 5000)), "granularity": granularity, "price": "M"})
        except BrokerError as error:
            if error.code in (BrokerErrorCode.NOT_FOUND, BrokerErrorCode.INVALID, BrokerErrorCode.REJECTED):
                raise BrokerError(BrokerErrorCode.UNAVAILABLE,
                                  f"recent closes unavailable for {name}: {error.message}") from None
            raise
        candles = _parse("candles", lambda: m.CandlesResponse.model_validate(reply).candles)
        ordered = sorted((c for c in candles if c.mid is not None), key=lambda c: c.time)
        return [c.mid.c for c in ordered[-limit:]]  # type: ignore[union-attr]

    # ---------------------------------------------------------------- plumbing

    def _read(self, op: str, method: str, path: str, *, params: Mapping[str, Any] | None = None,
              body: Mapping[str, Any] | None = None, retry_transient: bool = True,
              deadline: float | None = None) -> Mapping[str, Any]:
        try:
            return self._http.call(op, method, path, params=params, body=body, retry_transient=retry_transient,
                                   deadline=deadline).data
        except FailedRequest as failed:
            raise failed.failure.error from None


def _guard(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except InvalidInput as exc:
        raise BrokerError(BrokerErrorCode.INVALID, str(exc)) from None


def _parse(what: str, fn: Callable[[], T]) -> T:
    """A 2xx body we cannot read is the venue's fault, not a refusal: UNAVAILABLE."""
    try:
        return fn()
    except ValueError as exc:  # pydantic ValidationError, InvalidInput
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BrokerError(BrokerErrorCode.UNAVAILABLE, f"unreadable OANDA {what}: {first}") from None


__all__ = ["OandaBroker", "SUPPORTED_ASSET_CLASSES", "order_body", "forget_instruments"]
