"""Protective exit legs the venue holds (issue 15 item 7): a bracket / OTO entry's take-profit and
stop-loss fill while no function runs; this brings their fills to the ledger, the history, the lot
books, the metrics and the exposure — once each, in the order the venue reports them.

``follow_exit_legs(engine, tenant_id, intent_id)`` reads the entry's venue order (``BrokerOrder.legs``
are its exits) and, for each leg, appends one ``fill`` row per new fill increment with the trade id
``{intent}--x{leg}f{n}`` (``leg`` = a digest of the leg's venue id, ``n`` its increment): a second
delivery finds the increment recorded on the intent record (``exit_legs``) and the create-only row,
and adds nothing. When one exit filled and its sibling still works, the sibling is canceled at the
venue (Alpaca and the paper venue do it themselves; this is the backstop). The record keeps
``reconcile_after`` set while an exit works, so the sweeper's working-order query
(``find_working_intents``) returns it until ``exits_final``.

The caller is the sweeper's working-order loop (after ``engine.reconcile_intent``, which folds the
entry's own fills); an entry that was final at placement needs ``reconcile_after`` stamped by the
engine so that loop sees it (see the module's report). Pure core: venue and store through the engine.
"""
from __future__ import annotations

import hashlib
from datetime import timedelta
from decimal import Decimal
from typing import Any, Mapping

from backend.domain.errors import Rejection
from backend.domain.money import ZERO, dec_str
from backend.domain.orders import BrokerError, BrokerOrder, OrderSide, OrderState
from backend.execution.accounts import stored_binding
from backend.execution.intent import ExecutionContext, OrderIntent
from backend.execution.records import fill_ledger_row, history_row, tax_fill
from backend.logs import log_event
from backend.ports.store import FillUpdate, FillWrite, IntentStatus
from backend.risk.gate import account_key_for

PROTECTED_CLASSES = ("bracket", "oto")
FOLLOW_AGAIN_SECONDS = 60


def _dec(value: Any) -> Decimal | None:
    return None if value in (None, "") else Decimal(str(value))


def leg_key(broker_order_id: str) -> str:
    """The stable short name of one exit leg in trade ids (its venue id's digest)."""
    return hashlib.sha256(broker_order_id.encode()).hexdigest()[:12]


def _exit_fields(intent: Mapping[str, Any], leg: BrokerOrder) -> dict[str, Any]:
    """The exit leg as an order of its own: the opposite side, its quantity, and its type told apart by
    where it filled (a take-profit limit fills at or beyond its limit, on the profit side of the stop)."""
    take = (intent.get("take_profit") or {}).get("limit_price")
    stop = intent.get("stop_loss") or {}
    fields = {k: v for k, v in intent.items() if k not in ("order_class", "take_profit", "stop_loss", "stop_price",
                                                            "trail_price", "trail_percent", "limit_price")}
    fields.update(side=leg.side.value, qty=dec_str(leg.qty))
    is_take = take is not None and (not stop or leg.filled_avg_price is None or (
        leg.filled_avg_price >= Decimal(str(take)) if leg.side is OrderSide.SELL
        else leg.filled_avg_price <= Decimal(str(take))))
    if is_take:
        fields.update(order_type="limit", limit_price=take)
    elif stop.get("trail_price") is not None:
        fields.update(order_type="trailing_stop", trail_price=stop["trail_price"])
    elif stop.get("limit_price") is not None:
        fields.update(order_type="stop_limit", stop_price=stop.get("stop_price"), limit_price=stop["limit_price"])
    else:
        fields.update(order_type="stop", stop_price=stop.get("stop_price"))
    return fields


def entry_filled(data: Mapping[str, Any]) -> bool:
    """The entry's fills are in and it works no more: FILLED, or final (canceled / expired) after a
    partial fill — the venue keeps the exits of what filled (OANDA opens the trade for the filled
    units and creates its take-profit / stop-loss for them)."""
    result = data.get("result") or {}
    if result.get("order_status") == OrderState.FILLED.value:
        return True
    return bool(data.get("order_final")) and (_dec(result.get("filled_qty")) or ZERO) > ZERO


def follow_exit_legs(engine: Any, tenant_id: str, intent_id: str) -> int:
    """Record new fills of a filled bracket / OTO entry's exit legs; answers how many fill rows it added
    (0 when there is nothing to follow, nothing new, or the record moved: the next sweep tries again)."""
    store, clock = engine.store, engine.clock
    got = store.get_intent_with_token(tenant_id, intent_id)
    if got is None:
        return 0
    record, token = got
    data = record.data
    intent_doc = data.get("intent") or {}
    if record.status is not IntentStatus.PLACED or intent_doc.get("order_class") not in PROTECTED_CLASSES \
            or data.get("exits_final") or not entry_filled(data):
        return 0
    intent = OrderIntent.from_dict({**intent_doc, "intent_id": intent_id})
    ctx = ExecutionContext(tenant_id, data["uid"], account=stored_binding(data.get("account")))
    try:
        venue = engine.broker_for(intent, ctx)
        if isinstance(venue, Rejection):
            return 0
        parent = venue.get_order(data["broker_order_id"])
    except Exception as exc:  # the venue (or its connection) cannot be reached now: the next sweep retries
        log_event("exec.exit_legs_deferred", severity="WARNING", intent_id=intent_id, error=str(exc)[:200])
        return 0
    if not parent.legs:
        return 0
    recorded: dict[str, Any] = {k: dict(v) for k, v in (data.get("exit_legs") or {}).items()}
    fills: list[FillWrite] = []
    filled_signed = ZERO
    now = clock.now()
    for leg in parent.legs:
        prev = recorded.get(leg.broker_order_id, {})
        old_qty, old_avg = _dec(prev.get("filled_qty")) or ZERO, _dec(prev.get("filled_avg_price")) or ZERO
        seq = int(prev.get("fill_seq") or 0)
        delta = leg.filled_qty - old_qty
        if delta > 0 and leg.filled_avg_price is not None:
            seq += 1
            price = ((leg.filled_avg_price * leg.filled_qty - old_avg * old_qty) / delta).quantize(
                Decimal("1e-12")).normalize()
            exit_intent = OrderIntent.from_dict({**_exit_fields(intent_doc, leg), "intent_id": intent_id})
            increment = BrokerOrder(leg.broker_order_id, leg.client_order_id, leg.symbol or intent.symbol, leg.side,
                                    leg.qty, leg.state, delta, price, leg.submitted_at, leg.updated_at,
                                    leg.venue_status)
            trade_id = f"{intent_id}--x{leg_key(leg.broker_order_id)}f{seq}"
            fills.append(FillWrite(
                trade_id=trade_id, uid=ctx.uid,
                ledger=fill_ledger_row(intent=exit_intent, ctx=ctx, trade_id=trade_id, now=now, increment=increment,
                                       broker_name=venue.name, client_order_id=leg.client_order_id),
                history=history_row(intent=exit_intent, ctx=ctx, now=now, routing=None, order=increment,
                                    broker_name=venue.name, client_order_id=leg.client_order_id, trade_id=trade_id,
                                    kind="fill"),
                tax=tax_fill(trade_id=trade_id, symbol=intent.symbol, asset_class=intent.asset_class.value,
                             side=leg.side.value, qty=delta, price=price, fees=ZERO, when=now,
                             multiplier=intent.spec.multiplier)))
            filled_signed += delta * leg.side.direction
        recorded[leg.broker_order_id] = {"client_order_id": leg.client_order_id, "state": leg.state.value,
                                         "filled_qty": dec_str(leg.filled_qty),
                                         "filled_avg_price": dec_str(leg.filled_avg_price), "fill_seq": seq}
    exits_final = all(leg.state.is_final for leg in parent.legs)
    if any(leg.state is OrderState.FILLED for leg in parent.legs) and not exits_final:
        for sibling in (leg for leg in parent.legs if not leg.state.is_final):
            try:  # the peer filled: the sibling must not work on (the venue's own OCO link, backed up)
                venue.cancel_order(sibling.broker_order_id)
            except BrokerError as exc:
                log_event("exec.exit_sibling_cancel_failed", severity="WARNING", intent_id=intent_id,
                          code=exc.code.value)
    if not fills and recorded == (data.get("exit_legs") or {}) and not exits_final:
        return 0
    update = FillUpdate(
        tenant_id=tenant_id, intent_id=intent_id, uid=ctx.uid, token=token,
        record={"exit_legs": recorded, "exits_final": exits_final,
                "reconcile_after": None if exits_final else now + timedelta(seconds=FOLLOW_AGAIN_SECONDS),
                "updated_at": now.isoformat()},
        fills=tuple(fills), account_key=account_key_for(intent.broker_account_id, intent.symbol),
        filled_signed_qty=filled_signed, released_signed_qty=ZERO)
    if not store.apply_fill_update(update):
        return 0
    log_event("exec.exit_legs", intent_id=intent_id, tenant_id=tenant_id, new_fills=len(fills),
              exits_final=exits_final)
    return len(fills)
