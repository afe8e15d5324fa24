"""A limit order instead of WAIT when the spread is too wide (issue 15 item 5, the seed's future item).

By default (``wide_spread="wait"``) a market order whose quote fails the cost check is downgraded
to WAIT and nothing is sent, as before. An intent may opt in to something else:

- ``limit_at_touch``: a passive limit at the near touch (a buy at the bid, a sell at the ask);
- ``limit_at_mid``: a limit at the mid, rounded to the tick away from the far touch (a buy down,
  a sell up), so it never pays more than half the spread;

each with ``limit_timeout_seconds``: when that time has passed since the decision, the sweeper's
working-order reconcile (``ExecutionEngine.reconcile_intent``) cancels the order at the venue;
fills before the cancel are kept and the unfilled remainder's reservation is released.

Only a simple market order with a resting time in force (``day``/``gtc``, or the class default)
takes the option; anything else is refused as bad input (400 naming the field) before anything is
written. Whether the venue takes the resulting limit order for the asset class is checked against
the capability table up front (``limit_capability``), before the quote is read, so a venue that
could not hold the fallback refuses the intent with ``ORDER_TYPE_NOT_SUPPORTED`` instead of failing
later. Everything here is pure; the engine calls ``limit_instead_of_wait`` after the cost check,
stores ``record_fields`` on the intent record and asks ``timeout_due`` during reconciliation.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import Enum
from typing import Any, Mapping

from backend.domain.capabilities import OrderShape, check_shape, default_time_in_force, venue_capabilities
from backend.domain.errors import InvalidInput, RejectCode, Rejection
from backend.domain.money import dec_str, to_decimal
from backend.domain.orders import OrderClass, OrderSide, OrderType, Quote, TimeInForce

MAX_LIMIT_TIMEOUT_SECONDS = 7 * 24 * 3600  # a week: longer is a resting order, not a wide-spread fallback
RESTING_TIME_IN_FORCE = frozenset({TimeInForce.DAY, TimeInForce.GTC})
RECORD_FIELD = "wide_spread_limit"  # on the intent record: mode, timeout, deadline, the price and why


class WideSpread(str, Enum):
    WAIT = "wait"
    LIMIT_AT_TOUCH = "limit_at_touch"
    LIMIT_AT_MID = "limit_at_mid"

    @property
    def label(self) -> str:
        return {"limit_at_touch": "limit at touch", "limit_at_mid": "limit at mid"}.get(self.value, "wait")


def parse_wide_spread(value: Any, timeout: Any, *, order_type: OrderType, order_class: OrderClass,
                      time_in_force: TimeInForce | None) -> tuple[WideSpread, int | None]:
    """The option and its timeout in whole seconds, or ``InvalidInput`` naming the field."""
    if value is None:
        mode = WideSpread.WAIT
    elif isinstance(value, WideSpread):
        mode = value
    else:
        try:
            mode = WideSpread(str(value).strip().lower())
        except ValueError:
            raise InvalidInput("wide_spread", f"expected one of {[m.value for m in WideSpread]}, got {value!r}") \
                from None
    if mode is WideSpread.WAIT:
        if timeout is not None:
            raise InvalidInput("limit_timeout_seconds", "only with wide_spread limit_at_touch or limit_at_mid")
        return mode, None
    if order_type is not OrderType.MARKET or order_class is not OrderClass.SIMPLE:
        raise InvalidInput("wide_spread", "applies to simple market orders only (a limit order is never downgraded)")
    if time_in_force is not None and time_in_force not in RESTING_TIME_IN_FORCE:
        raise InvalidInput("time_in_force", f"{time_in_force.value} cannot rest: wide_spread {mode.value} takes "
                                            f"day or gtc (or none)")
    if timeout is None:
        raise InvalidInput("limit_timeout_seconds", f"is required with wide_spread {mode.value}")
    if isinstance(timeout, (bool, str)):
        raise InvalidInput("limit_timeout_seconds", "must be a whole number of seconds (a JSON integer)")
    seconds = to_decimal(timeout, "limit_timeout_seconds")
    if seconds != seconds.to_integral_value() or not 1 <= seconds <= MAX_LIMIT_TIMEOUT_SECONDS:
        raise InvalidInput("limit_timeout_seconds", f"must be whole seconds in [1, {MAX_LIMIT_TIMEOUT_SECONDS}]")
    return mode, int(seconds)


def limit_time_in_force(time_in_force: TimeInForce | None, asset_class: Any) -> TimeInForce:
    """The fallback limit's time in force: the caller's (day/gtc) or the class default."""
    return time_in_force or default_time_in_force(asset_class)


def limit_capability(venue_name: str, intent: Any) -> Rejection | None:
    """``ORDER_TYPE_NOT_SUPPORTED`` when the venue cannot hold the fallback limit for the intent's
    class (checked up front, with the other capability checks); None when it can or WAIT applies."""
    mode = getattr(intent, "wide_spread", WideSpread.WAIT)
    if mode is WideSpread.WAIT:
        return None
    venue = venue_capabilities(venue_name)
    caps = venue.classes.get(intent.asset_class)
    if caps is None:
        return Rejection(RejectCode.NO_VENUE_FOR_ASSET_CLASS, f"{intent.asset_class.value} is not traded on {venue.name}")
    tif = limit_time_in_force(intent.time_in_force, intent.asset_class)
    qty = intent.qty
    shape = OrderShape(order_type=OrderType.LIMIT, time_in_force=tif,
                       fractional=isinstance(qty, Decimal) and qty != qty.to_integral_value())
    refused = check_shape(venue.name, intent.asset_class, caps, shape)
    if refused is None:
        return None
    return Rejection(refused.code, f"wide_spread {mode.value}: {refused.detail}")


def limit_price_for(mode: WideSpread, side: OrderSide, quote: Quote, tick: Decimal) -> Decimal:
    """The passive price on the tick: touch = the near side (buy bid, sell ask); mid rounded away from
    the far touch (buy down, sell up). A quote off the tick is rounded the same passive way."""
    raw = (quote.bid if side is OrderSide.BUY else quote.ask) if mode is WideSpread.LIMIT_AT_TOUCH else quote.mid
    rounding = ROUND_FLOOR if side is OrderSide.BUY else ROUND_CEILING
    return ((raw / tick).to_integral_value(rounding=rounding) * tick).quantize(tick)


@dataclass(frozen=True)
class LimitFallback:
    """What replaces a WAIT: the limit price and time in force, when it expires, and why."""

    mode: WideSpread
    limit_price: Decimal
    time_in_force: TimeInForce
    timeout_seconds: int
    deadline: datetime
    reason: str
    requested_intent: Mapping[str, Any] | None = None  # the caller's market intent (``OrderIntent.to_dict``)

    def record(self) -> dict[str, Any]:
        return {"mode": self.mode.value, "limit_price": dec_str(self.limit_price),
                "time_in_force": self.time_in_force.value, "timeout_seconds": self.timeout_seconds,
                "deadline": self.deadline.isoformat(), "reason": self.reason, "requested_order_type": "market"}


def limit_instead_of_wait(intent: Any, decision: Any, now: datetime) -> LimitFallback | None:
    """The limit order to place instead of a cost downgrade, or None (WAIT stands: the option is off,
    the decision is not a downgrade — an unusable quote stays a rejection — or there is no quote).
    ``decision``: the router's ``RoutingDecision``; ``intent``: the ``OrderIntent``."""
    mode = getattr(intent, "wide_spread", WideSpread.WAIT)
    if mode is WideSpread.WAIT or not decision.downgraded or decision.quote is None:
        return None
    if intent.order_type is not OrderType.MARKET:
        return None
    quote = decision.quote
    price = limit_price_for(mode, intent.side, quote, intent.spec.tick_size)
    if price <= 0:
        return None
    timeout = int(intent.limit_timeout_seconds)
    reason = f"{mode.label} instead of WAIT: {decision.reason}; limit {price} (bid {quote.bid}, ask {quote.ask}), " \
             f"canceled after {timeout}s"
    return LimitFallback(mode, price, limit_time_in_force(intent.time_in_force, intent.asset_class), timeout,
                         now + timedelta(seconds=timeout), reason)


def record_fields(intent: Any) -> dict[str, Any]:
    """The intent record's fields of a converted intent (empty otherwise): ``wide_spread_limit`` and
    ``requested_intent`` — the caller's market intent, which an idempotent retry is compared with
    (``intent`` holds the limit order placed, as after a replace)."""
    fallback = getattr(intent, "wide_spread_fallback", None)
    if fallback is None:
        return {}
    out: dict[str, Any] = {RECORD_FIELD: fallback.record()}
    if fallback.requested_intent is not None:
        out["requested_intent"] = dict(fallback.requested_intent)
    return out


def timeout_due(record: Mapping[str, Any], now: datetime) -> bool:
    """True when the record is a fallback limit whose deadline has passed (the sweeper cancels it)."""
    entry = record.get(RECORD_FIELD)
    if not isinstance(entry, Mapping) or not entry.get("deadline"):
        return False
    deadline = datetime.fromisoformat(str(entry["deadline"]))
    return now >= deadline


def expired_before_sent(fallback: LimitFallback, routing: Any) -> Any:
    """The routing decision of a claimed fallback limit that was never sent (the venue was unreachable)
    and whose deadline has passed: a WAIT after all (downgraded, nothing sent)."""
    from backend.execution.router import RoutingDecision

    reason = f"{fallback.mode.label} expired before it was sent (deadline {fallback.deadline.isoformat()}): WAIT"
    if routing is None:
        return RoutingDecision(False, reason, None, None)
    return RoutingDecision(False, reason, routing.spread_pct, routing.estimated_slippage, routing.quote)


def fallback_from_record(record: Mapping[str, Any]) -> LimitFallback | None:
    """The ``LimitFallback`` stored on an intent record (None for any other record)."""
    entry = record.get(RECORD_FIELD)
    if not isinstance(entry, Mapping) or not entry.get("deadline"):
        return None
    requested = record.get("requested_intent")
    return LimitFallback(WideSpread(entry["mode"]), Decimal(str(entry["limit_price"])),
                         TimeInForce(entry["time_in_force"]), int(entry["timeout_seconds"]),
                         datetime.fromisoformat(str(entry["deadline"])), str(entry.get("reason") or ""),
                         dict(requested) if isinstance(requested, Mapping) else None)


__all__ = ["WideSpread", "LimitFallback", "parse_wide_spread", "limit_capability", "limit_instead_of_wait",
           "limit_price_for", "record_fields", "timeout_due", "fallback_from_record", "expired_before_sent",
           "RECORD_FIELD"]
