"""A protective stop per leg, placed at the venue once the whole group is FILLED (issue 15 item 3).

A leg in the group request may carry ``stop_loss: {"stop_price": "..."}``. The price is checked at
intake (tick-aligned on the leg's spec, never rounded) and again at validation, against the leg's
intended price (the touch): below it for a long, above it for a short. A stop on the wrong side
rejects the group before anything is sent.

Only a group whose final status is FILLED places stops (never PARTIALLY_FILLED, REJECTED, ROLLED_BACK,
DRY_RUN: a rollback never places one). Each stop is one ``stop`` order for exactly the leg's filled
units on the opposite side, ``time_in_force`` gtc, with the client id
``client_ids.leg_stop_client_order_id`` (tenant + group + leg). Its life, stored on the leg:

``REQUESTED`` (from the request) -> ``PLANNED`` (client id and qty stored, before the submit) ->
``WORKING`` (the venue's order id stored) -> ``FILLED`` / ``CANCELED`` (final; the filled part is one
ledger row ``{group}--{leg}--stop``). ``REFUSED``: the capability table refuses a stop for the venue
and class (ORDER_TYPE_NOT_SUPPORTED), or the venue refused it; the group stays FILLED.

The owner manages a stop over the API (``group/stop_management.py``): a cancel is persisted first
(``cancel_requested_at``), and the stop that becomes CANCELED with it carries ``cancel`` (one ledger row
``{group}--{leg}--stop--cancel``, kind cancel); a replace (a new stop price) is persisted first
(``pending_replace``: the idempotency key's digest and the new client id) and, once the venue made it,
appended to ``replacements`` (ledger row ``{group}--{leg}--stop--r{n}``, kind replace, ``replaces`` =
the old venue order) while the stop's own fields move to the new venue order.

Pure: the executor (group_executor.py) performs the submits and reads and persists each change.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Mapping

from backend.domain.assets import AssetSpec
from backend.domain.errors import InvalidInput, RejectCode, Rejection
from backend.domain.money import ZERO
from backend.domain.orders import BrokerOrder, OrderRequest, OrderSide, OrderState, OrderType
from backend.execution.group.codec import OBJECT, REJECTION, TIMESTAMP, Codec, check_fields, check_keys, dec, \
    decode, dt_str, encode, enum_of, fmt, stored

STOP_TIME_IN_FORCE = "gtc"  # a protective stop works until it fills or is canceled


class LegStopStatus(str, Enum):
    REQUESTED = "REQUESTED"
    PLANNED = "PLANNED"
    WORKING = "WORKING"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REFUSED = "REFUSED"

    @property
    def is_final(self) -> bool:
        return self in (LegStopStatus.FILLED, LegStopStatus.CANCELED, LegStopStatus.REFUSED)


def _check_optional_text(value: Any, name: str) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidInput(name, "expected a non-empty string or None")


def _text() -> Codec:
    def check(value: Any, name: str) -> Any:
        _check_optional_text(value, name)
        return value

    return Codec(check=check)


def _check_objects(value: Any, name: str) -> tuple:
    if isinstance(value, (str, bytes, Mapping)) or not all(isinstance(item, Mapping) for item in value):
        raise InvalidInput(name, "expected a list of objects")
    return tuple(value)


_OBJECTS = Codec(_check_objects, lambda value: [dict(item) for item in value],
                 lambda raw, name, _: _check_objects(raw, name))


def _replacement_out(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A replacement as the API shows it (the idempotency key's digest and fingerprint stay inside)."""
    return {k: entry.get(k) for k in ("ledger_id", "broker_order_id", "client_order_id", "stop_price", "at",
                                      "replaces")}


@dataclass(frozen=True)
class LegStop:
    """The stop a leg asked for and what became of it (stored inside the leg as ``stop_loss``)."""

    stop_price: Decimal = stored(dec(positive=True))
    status: LegStopStatus = stored(enum_of(LegStopStatus), LegStopStatus.REQUESTED)
    client_order_id: str | None = stored(_text(), None)
    qty: Decimal | None = stored(dec(positive=True), None)
    broker_order_id: str | None = stored(_text(), None)
    filled_qty: Decimal = stored(dec(non_negative=True), ZERO)
    fill_price: Decimal | None = stored(dec(positive=True), None)
    rejection: Rejection | None = stored(REJECTION, None)
    # stop management (group/stop_management.py); absent on stops nobody managed (documents unchanged)
    cancel_requested_at: datetime | None = stored(TIMESTAMP, None, omit_none=True)
    cancel: Mapping[str, Any] | None = stored(OBJECT, None, omit_none=True)
    pending_replace: Mapping[str, Any] | None = stored(OBJECT, None, omit_none=True)
    replacements: tuple[Mapping[str, Any], ...] | None = stored(_OBJECTS, None, omit_none=True)

    def __post_init__(self) -> None:
        check_fields(self, "stop_loss.")

    def to_dict(self) -> dict[str, Any]:
        return encode(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "stop_loss") -> "LegStop":
        return decode(cls, data, where)

    def to_api_response(self) -> dict[str, Any]:
        from backend.domain.wire import decimal_out

        return {"stop_price": decimal_out(self.stop_price, "price"), "status": self.status.value,
                "broker_order_id": self.broker_order_id,
                "filled_qty": decimal_out(self.filled_qty, "quantity"),
                "fill_price": decimal_out(self.fill_price, "price"),
                "rejection": None if self.rejection is None else self.rejection.to_dict(),
                "client_order_id": self.client_order_id,
                "cancel_requested_at": dt_str(self.cancel_requested_at),
                "cancel": None if self.cancel is None else dict(self.cancel),
                "replace_pending": self.pending_replace is not None,
                "replacements": [_replacement_out(r) for r in self.replacements or ()]}


def _check_stop(value: Any, name: str) -> LegStop:
    if not isinstance(value, LegStop):
        raise InvalidInput(name, "expected a LegStop")
    return value


LEG_STOP = Codec(_check_stop, lambda stop: stop.to_dict(), lambda raw, name, _: LegStop.from_dict(raw, name))


def parse_stop_loss(raw: Any, spec: AssetSpec, where: str = "stop_loss") -> LegStop | None:
    """The request's ``stop_loss`` (``{"stop_price": "..."}`` or null): a positive, tick-aligned price
    on the leg's spec (never rounded), else ``InvalidInput`` naming ``<where>.stop_price``."""
    if raw is None:
        return None
    check_keys(raw, ("stop_price",), (), where)
    return LegStop(stop_price=spec.quantize_price(raw["stop_price"], f"{where}.stop_price"))


def stop_side_problem(leg_index: int, direction: int, stop_price: Decimal, intended: Decimal) -> Rejection | None:
    """A stop on the wrong side of the leg's intended price (a long's stop at or above it, a short's at
    or below it) would fire at once: a rejection naming ``legs[i].stop_loss``."""
    if (direction > 0 and stop_price < intended) or (direction < 0 and stop_price > intended):
        return None
    side = "below" if direction > 0 else "above"
    return Rejection(RejectCode.STOP_PRICE_WRONG_SIDE,
                     f"legs[{leg_index}].stop_loss: stop_price {fmt(stop_price)} must be {side} the leg's intended "
                     f"price {fmt(intended)}")


def stop_order_request(stop: LegStop, *, symbol: str, asset_class: Any, direction: int) -> OrderRequest:
    """The stop order as the venue receives it (a PLANNED stop: client id and qty are set)."""
    if stop.client_order_id is None or stop.qty is None:
        raise ValueError("a stop is planned before its order is built")
    side = OrderSide.SELL if direction > 0 else OrderSide.BUY
    return OrderRequest(client_order_id=stop.client_order_id, symbol=symbol, asset_class=asset_class, side=side,
                        qty=stop.qty, order_type=OrderType.STOP, stop_price=stop.stop_price,
                        time_in_force=STOP_TIME_IN_FORCE)


def plan(stop: LegStop, client_order_id: str, qty: Decimal) -> LegStop:
    return replace(stop, status=LegStopStatus.PLANNED, client_order_id=client_order_id, qty=qty)


def refuse(stop: LegStop, rejection: Rejection) -> LegStop:
    return replace(stop, status=LegStopStatus.REFUSED, rejection=rejection)


def apply_order(stop: LegStop, order: BrokerOrder) -> LegStop:
    """The venue's view of the stop: WORKING while it works; FILLED / CANCELED when final (the filled
    part, if any, is recorded once by the executor's fill rows)."""
    filled = order.filled_qty or ZERO
    price = order.filled_avg_price if filled > ZERO else None
    if order.state is OrderState.FILLED:
        status = LegStopStatus.FILLED
    elif order.state.is_final:
        status = LegStopStatus.CANCELED if filled > ZERO or order.state is not OrderState.REJECTED \
            else LegStopStatus.REFUSED
    else:
        status = LegStopStatus.WORKING
    rejection = stop.rejection
    if status is LegStopStatus.REFUSED and rejection is None:
        rejection = Rejection(RejectCode.BROKER_REJECTED, "the venue rejected the stop order")
    return replace(stop, status=status, broker_order_id=order.broker_order_id or stop.broker_order_id,
                   filled_qty=filled, fill_price=price, rejection=rejection)


# --------------------------------------------------------------------------------------------
# Group-level helpers (the group is passed in; no import of the aggregate, which imports the leg)
# --------------------------------------------------------------------------------------------


def stop_sides_rejection(group: Any, quotes: Mapping[str, Any]) -> Rejection | None:
    """At validation: every leg's stop against its intended price (the touch of ``quotes``); a leg
    without a quote is the quote gates' concern (they reject first)."""
    from backend.execution.group.fills import touch_price

    for i, leg in enumerate(group.legs):
        quote = quotes.get(leg.symbol)
        if leg.stop_loss is None or quote is None:
            continue
        problem = stop_side_problem(i, leg.direction, leg.stop_loss.stop_price, touch_price(leg.direction, quote))
        if problem is not None:
            return problem
    return None


def stops_to_place(group: Any) -> tuple[str, ...]:
    """Leg ids whose stop is still to be placed or confirmed (REQUESTED / PLANNED) and whose owner did
    not ask to cancel it: only on a FILLED group — a partial, rejected, rolled-back or dry-run group
    places none."""
    from backend.execution.group.states import GroupStatus

    if group.status is not GroupStatus.FILLED:
        return ()
    return tuple(leg.leg_id for leg in group.legs if leg.stop_loss is not None
                 and leg.stop_loss.cancel_requested_at is None
                 and leg.stop_loss.status in (LegStopStatus.REQUESTED, LegStopStatus.PLANNED))


def stops_working(group: Any) -> tuple[str, ...]:
    """Leg ids whose stop works at the venue (followed by the sweeper until it is final)."""
    return tuple(leg.leg_id for leg in group.legs if leg.stop_loss is not None
                 and leg.stop_loss.cancel_requested_at is None and leg.stop_loss.status is LegStopStatus.WORKING)


def stops_to_cancel(group: Any) -> tuple[str, ...]:
    """Leg ids whose owner asked to cancel a stop that is not final yet: each resume completes it."""
    return tuple(leg.leg_id for leg in group.legs if leg.stop_loss is not None
                 and leg.stop_loss.cancel_requested_at is not None and not leg.stop_loss.status.is_final)


def stops_open(group: Any) -> bool:
    """True while the (final) group still has a stop to place, to follow or to cancel: it stays findable
    by the sweeper's stuck-group query (``_final`` false, lease released) until every stop is final."""
    return bool(stops_to_place(group) or stops_working(group) or stops_to_cancel(group))


# --------------------------------------------------------------------------------------------
# Stop management (the owner's cancel and replace; group/stop_management.py drives them)
# --------------------------------------------------------------------------------------------


def cancel_ledger_id(group_id: str, leg_id: str) -> str:
    return f"{group_id}--{leg_id}--stop--cancel"


def replace_ledger_id(group_id: str, leg_id: str, n: int) -> str:
    return f"{group_id}--{leg_id}--stop--r{n}"


def request_cancel(stop: LegStop, now: datetime) -> LegStop:
    """The owner's cancel, stored before the venue is asked (a second request keeps the first time)."""
    return stop if stop.cancel_requested_at is not None else replace(stop, cancel_requested_at=now)


def _cancel_record(stop: LegStop, ledger_id: str, now: datetime) -> dict[str, Any]:
    remainder = (stop.qty or ZERO) - stop.filled_qty
    return {"at": now.isoformat(), "ledger_id": ledger_id, "order_status": "canceled",
            "canceled_qty": fmt(max(remainder, ZERO)), "filled_qty": fmt(stop.filled_qty),
            "broker_order_id": stop.broker_order_id, "client_order_id": stop.client_order_id}


def cancel_unplaced(stop: LegStop, ledger_id: str, now: datetime) -> LegStop:
    """A requested cancel of a stop that never reached the venue (REQUESTED, or PLANNED and not found
    by its client id): CANCELED without a venue order; the plan is never sent."""
    canceled = replace(stop, status=LegStopStatus.CANCELED)
    return replace(canceled, cancel=_cancel_record(canceled, ledger_id, now))


def settle_cancel(stop: LegStop, ledger_id: str, now: datetime) -> LegStop:
    """A stop the venue reports CANCELED after its owner asked for it gets its cancel record once (the
    ledger row ``ledger_id``); a stop canceled by the venue on its own gets none."""
    if stop.status is not LegStopStatus.CANCELED or stop.cancel_requested_at is None or stop.cancel is not None:
        return stop
    return replace(stop, cancel=_cancel_record(stop, ledger_id, now))


def request_replace(stop: LegStop, marker: Mapping[str, Any]) -> LegStop:
    """The replace, stored before the venue is asked: ``marker`` = {key_id, fingerprint,
    client_order_id (the new order's), stop_price (new), requested_at}."""
    return replace(stop, pending_replace=dict(marker))


def drop_replace(stop: LegStop) -> LegStop:
    return replace(stop, pending_replace=None)


def apply_replacement(stop: LegStop, marker: Mapping[str, Any], old: BrokerOrder, new: BrokerOrder,
                      ledger_id: str, now: datetime) -> LegStop:
    """The venue replaced the stop: ``replacements`` gains the entry (``replaces`` = the old venue
    order with what it filled before it was replaced) and the stop follows the new order."""
    entry = {"key_id": marker["key_id"], "fingerprint": marker["fingerprint"], "ledger_id": ledger_id,
             "broker_order_id": new.broker_order_id, "client_order_id": new.client_order_id,
             "stop_price": fmt(Decimal(str(marker["stop_price"]))), "qty": fmt(new.qty), "at": now.isoformat(),
             "replaces": {"broker_order_id": old.broker_order_id, "client_order_id": stop.client_order_id,
                          "qty": fmt(stop.qty) if stop.qty is not None else None,
                          "stop_price": fmt(stop.stop_price), "filled_qty": fmt(old.filled_qty or ZERO),
                          "filled_avg_price": fmt(old.filled_avg_price)
                          if old.filled_qty and old.filled_avg_price is not None else None}}
    moved = replace(stop, stop_price=Decimal(str(marker["stop_price"])), client_order_id=new.client_order_id,
                    qty=new.qty, broker_order_id=new.broker_order_id, filled_qty=ZERO, fill_price=None,
                    status=LegStopStatus.WORKING, pending_replace=None,
                    replacements=(*(stop.replacements or ()), entry))
    return apply_order(moved, new)


def replaced_fill(entry: Mapping[str, Any]) -> tuple[Decimal, Decimal] | None:
    """(qty, price) the replaced venue order filled before the replace, if anything."""
    replaced = entry.get("replaces") or {}
    qty = Decimal(str(replaced.get("filled_qty") or "0"))
    price = replaced.get("filled_avg_price")
    return (qty, Decimal(str(price))) if qty > ZERO and price is not None else None


def with_stop(group: Any, leg_id: str, stop: LegStop) -> Any:
    """The group with ``leg_id``'s stop replaced (legs are immutable values)."""
    legs = tuple(replace(leg, stop_loss=stop) if leg.leg_id == leg_id else leg for leg in group.legs)
    return replace(group, legs=legs)
