"""``OandaBroker.replace_order`` (issue 15 item 6): replace a pending LIMIT / STOP order on OANDA v20.

A mixin of ``OandaBroker`` (backend/adapters/oanda/broker.py), which provides the HTTP plumbing, the
instrument metadata and the client-id lookups it uses; the helpers of that module are imported when a
replace runs (the broker module imports this one).
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from backend.adapters.oanda import models as m
from backend.adapters.oanda.client import FailedRequest
from backend.adapters.oanda.instruments import from_instrument
from backend.domain.errors import InvalidInput
from backend.domain.money import ZERO
from backend.domain.orders import BrokerError, BrokerErrorCode, BrokerOrder, OrderSide, OrderState, ReplaceRequest

log = logging.getLogger("backend.adapters.oanda.broker")


class OandaReplace:
    """``replace_order`` and its helpers (see the method)."""

    _read: Any
    _http: Any
    _clock: Any
    instrument_info: Any
    _find_after_unknown: Any

    _ON_FILL_KEYS = ("price", "distance", "timeInForce", "gtdTime", "clientExtensions", "guaranteed")

    def replace_order(self, broker_order_id: str, request: ReplaceRequest) -> BrokerOrder:
        """Replace a pending LIMIT / STOP entry: OANDA v20 ``PUT /v3/accounts/{accountID}/orders/{orderSpecifier}``
        with ``{"order": <the replacing order's full spec>}`` "simultaneously cancels" the order and creates
        the replacement (oanda/v20-python ``src/v20/order.py`` ``Order.replace``; developer.oanda.com
        rest-live-v20/order-ep "Replace Order"). The 201 answer carries ``orderCancelTransaction`` (the old
        order, reason ``CLIENT_REQUEST_REPLACED``, ``replacedByOrderID``) and ``orderCreateTransaction`` (the
        new one, reason ``REPLACEMENT``, ``replacesOrderID``), plus ``orderFillTransaction`` /
        ``replacingOrderCancelTransaction`` when the replacement filled or was canceled at once; an order
        that is no longer pending answers 404 with an ``orderCancelRejectTransaction`` (``ORDER_DOESNT_EXIST``).

        The spec is the old order's (``GET orders/{id}``): its type, instrument, signed units, price, time in
        force, ``positionFill`` and its dependent orders on fill (``takeProfitOnFill`` / ``stopLossOnFill`` /
        ``trailingStopLossOnFill``, carried over as they are), with the request's qty, limit / stop price and
        time in force, and ``clientExtensions.id`` = ``request.client_order_id`` so a lost answer is found by
        ``get_order_by_client_id``. OANDA has no trailing-stop entry: ``trail`` is INVALID.

        Never resent blindly. An unknown outcome (5xx, dropped answer, timeout) looks the new client id up
        (then the transactions since): found → returned; not found → UNAVAILABLE (the caller's pending marker
        looks it up again). 404 / 400 from the venue: the client id is looked up once (an earlier replace of
        this request may have made it: returned), otherwise the coded, non-retryable error is raised."""
        from backend.adapters.oanda.broker import _guard, _parse

        old_id = str(broker_order_id)
        cid = request.client_order_id
        reply = self._read("get_order", "GET", f"{self._http.account_path}/orders/{old_id}")
        old = _parse("order", lambda: m.OrderResponse.model_validate(reply).order)
        body = _guard(lambda: self._replacement_body(old, request))
        path = f"{self._http.account_path}/orders/{old_id}"
        deadline = self._http.deadline()
        since = self._http.last_transaction_id
        rate_limited = 0
        while True:
            try:
                answer = self._http.request_once("PUT", path, body=body)
            except FailedRequest as failed:
                failure = failed.failure
            else:
                try:
                    parsed = m.OrderReplaceResponse.model_validate(answer.data)
                except ValueError:
                    parsed = None
                if parsed is None or parsed.replacing_order_cancel_transaction is not None \
                        or parsed.order_fill_transaction is not None:
                    # unreadable, or the replacement already ended: read what the venue holds now
                    found = self._find_after_unknown(cid, since, deadline, "replace answer")
                    if found is None:
                        raise BrokerError(BrokerErrorCode.UNAVAILABLE, f"replace {old_id} → {cid}: the answer is "
                                                                       "unreadable and the lookup found nothing yet")
                    return replace(found, replaces=found.replaces or old_id)
                return self._from_replace(parsed, old, old_id, cid)
            error = failure.error
            if error.code is BrokerErrorCode.RATE_LIMITED:  # a definite refusal: nothing was done
                wait = self._http.rate_limit_wait(error, rate_limited, deadline, "replace_order")
                rate_limited += 1
                self._clock.sleep(wait)
                continue
            if failure.duplicate or failure.ambiguous or error.code in (BrokerErrorCode.NOT_FOUND,
                                                                        BrokerErrorCode.INVALID):
                log.warning("oanda: replace %s → %s: %s; looking the client id up", old_id, cid, error.message)
                found = self._find_after_unknown(cid, since, deadline, error.message)
                if found is not None:
                    return replace(found, replaces=found.replaces or old_id)
                if failure.ambiguous or failure.duplicate:
                    raise BrokerError(BrokerErrorCode.UNAVAILABLE,
                                      f"replace {old_id} → {cid}: {error.message}; not found yet, not resent (look "
                                      "the client id up before replacing again)")
            raise BrokerError(error.code, f"replace {old_id}: {error.message}", retry_after=error.retry_after)

    def _replacement_body(self, old: m.Order, request: ReplaceRequest) -> dict[str, Any]:
        """The replacing order's ``{"order": ...}`` (see ``replace_order``); InvalidInput when it cannot be."""
        from backend.adapters.oanda.broker import _LIMIT_TIF, _oanda_price

        if old.type not in ("LIMIT", "STOP") or not old.instrument or old.units is None:
            raise InvalidInput("order", f"only a pending LIMIT or STOP entry can be replaced here, not {old.type}")
        if request.trail is not None:
            raise InvalidInput("trail", "OANDA has no trailing-stop entry order")
        field = "limit_price" if old.type == "LIMIT" else "stop_price"
        other = "stop_price" if old.type == "LIMIT" else "limit_price"
        if getattr(request, other) is not None:
            raise InvalidInput(other, f"a {old.type} order has no {other}")
        info = self.instrument_info(from_instrument(old.instrument))
        qty = request.qty if request.qty is not None else abs(old.units)
        problem = info.units_problem(qty)
        if problem is not None:
            raise InvalidInput("qty", problem)
        units = qty if old.units > ZERO else -qty
        new_price = getattr(request, field)
        price = _oanda_price(info, new_price, field) if new_price is not None else (
            info.format_price(old.price) if old.price is not None else None)
        if request.time_in_force is not None:
            tif = str(request.time_in_force).lower()
            if tif not in _LIMIT_TIF:
                raise InvalidInput("time_in_force", f"OANDA {old.type.lower()} orders take day, gtc, ioc or fok, "
                                                    f"got {tif!r}")
            oanda_tif = _LIMIT_TIF[tif]
        else:
            oanda_tif = old.time_in_force or "GTC"
        try:
            body = m.build_order_body(order_type=old.type, instrument=old.instrument, units=info.format_units(units),
                                      time_in_force=oanda_tif, client_id=request.client_order_id, price=price,
                                      position_fill=old.position_fill or "DEFAULT")
        except ValueError as exc:
            raise InvalidInput("order", str(exc)) from None
        for name, details in (("takeProfitOnFill", old.take_profit_on_fill), ("stopLossOnFill", old.stop_loss_on_fill),
                              ("trailingStopLossOnFill", old.trailing_stop_loss_on_fill)):
            if details:  # the dependent orders on fill go on with the replacement
                body["order"][name] = {k: v for k, v in details.items() if k in self._ON_FILL_KEYS}
        return body

    def _from_replace(self, parsed: m.OrderReplaceResponse, old: m.Order, old_id: str, cid: str) -> BrokerOrder:
        create = parsed.order_create_transaction
        units = create.units if create.units is not None else (old.units or ZERO)
        return BrokerOrder(
            broker_order_id=create.id,
            client_order_id=(create.client_extensions.id if create.client_extensions and create.client_extensions.id
                             else cid),
            symbol=from_instrument(create.instrument or old.instrument or ""),
            side=OrderSide.BUY if units > ZERO else OrderSide.SELL, qty=abs(units), state=OrderState.NEW,
            filled_qty=ZERO, filled_avg_price=None, submitted_at=create.time, updated_at=create.time,
            venue_status="PENDING", replaces=old_id)


__all__ = ["OandaReplace"]
