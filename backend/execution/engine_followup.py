"""The single-leg engine's follow-up of a placed order that still works at the venue.

Mixed into ``ExecutionEngine`` (backend/execution/engine.py). ``reconcile_intent`` (called by the
sweeper, the order manager and the venue feeds) reads the order at the venue and folds its later fills
into the ledger, the history and the exposure in one commit — one row per increment (``_fill_write``)
— and releases the unfilled remainder once the order is final; a wide-spread limit past its deadline
is canceled first (``_cancel_expired_limit``); ``_follow_at`` says when the sweeper looks again (also
while a bracket / OTO's exit legs may still fill). A venue answer that is not the order placed is
never folded in. ``_order_request`` (the venue request of an intent) lives here and is imported back
into engine.py.
"""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from backend.domain.errors import Rejection
from backend.domain.money import ZERO
from backend.execution.accounts import stored_binding
from backend.execution.client_ids import checked_order
from backend.execution.engine_outcomes import _dec, account_key
from backend.execution.intent import ExecutionContext, OrderIntent
from backend.execution.records import ExecutionResult, fill_ledger_row, history_row, tax_fill
from backend.execution.wide_spread import RECORD_FIELD, timeout_due
from backend.logs import log_event
from backend.ports.broker import BrokerError, BrokerOrder, BrokerPort, OrderRequest
from backend.ports.store import FillUpdate, FillWrite, IntentStatus


class EngineFollowUp:
    """Reconcile of working orders for ``ExecutionEngine`` (uses its ``store``, ``clock`` and ``broker_for``)."""

    def _reconcile_at(self):
        return self.clock.now() + timedelta(seconds=10)

    def _follow_at(self, intent: OrderIntent, order: BrokerOrder):
        """When the sweeper looks at this order again: while it works, and — for a bracket / OTO whose
        entry is final — while its exit legs may still fill at the venue (backend/execution/exit_legs.py
        clears it once both exits are final). None: nothing left to follow."""
        order_class = getattr(getattr(intent, "order_class", None), "value", None)
        if not order.state.is_final or (order_class in ("bracket", "oto") and order.filled_qty > 0):
            return self._reconcile_at()
        return None

    def reconcile_intent(self, tenant_id: str, intent_id: str) -> ExecutionResult | None:
        """Fold later fills of a placed, still-working order into the ledger (one row per increment),
        the history and the exposure; release the unfilled remainder once the order is final."""
        got = self.store.get_intent_with_token(tenant_id, intent_id)
        if got is None:
            return None
        record, token = got
        data = record.data
        if record.status is not IntentStatus.PLACED or data.get("order_final"):
            return None
        intent = OrderIntent.from_dict({**data["intent"], "intent_id": intent_id})
        ctx = ExecutionContext(tenant_id, data["uid"], account=stored_binding(data.get("account")))
        try:
            venue = self.broker_for(intent, ctx)
        except Exception as exc:  # the venue cannot be built now: the sweeper tries again
            log_event("exec.reconcile_deferred", severity="WARNING", intent_id=intent_id, error=str(exc)[:200])
            return None
        if isinstance(venue, Rejection):
            return None
        try:
            order = venue.get_order(data["broker_order_id"])
        except BrokerError as exc:
            log_event("exec.reconcile_deferred", severity="WARNING", intent_id=intent_id, error=str(exc))
            return None
        if checked_order(_order_request(intent, data.get("client_order_id") or "?"), order, tenant_id=tenant_id,
                         where="engine.reconcile", intent_id=intent_id, uid=ctx.uid) is not None:
            return None  # not the order we placed: never folded in (ALERT raised; a human looks)
        if order.state.is_final and data.get("pending_replace"):
            # a replace in flight (or its answer lost) ended this order: the order manager records the
            # replacement or drops the marker (``settle_pending_replace``, same sweep) — finalising here
            # would release the reservation the new order still holds
            return None
        expired = not order.state.is_final and timeout_due(data, self.clock.now())
        if expired:  # a wide-spread limit past its deadline
            order = self._cancel_expired_limit(venue, intent_id, order)
        prior = data["result"]
        old_qty = _dec(prior.get("filled_qty")) or ZERO
        old_avg = _dec(prior.get("filled_avg_price")) or ZERO
        delta = order.filled_qty - old_qty
        fills = []
        seq = int(data.get("fill_seq") or 0)
        if delta > 0 and order.filled_avg_price is not None:
            seq += 1
            price = ((order.filled_avg_price * order.filled_qty - old_avg * old_qty) / delta).quantize(
                Decimal("1e-12")).normalize()
            increment = BrokerOrder(order.broker_order_id, order.client_order_id, order.symbol, order.side,
                                    order.qty, order.state, delta, price, order.submitted_at, order.updated_at,
                                    order.venue_status)
            fills.append(self._fill_write(intent, ctx, f"{intent_id}--f{seq}", increment, venue.name,
                                          data.get("client_order_id")))
        direction = intent.side.direction
        release = delta + ((intent.qty - order.filled_qty) if order.state.is_final else ZERO)
        result = ExecutionResult(status="placed", intent_id=intent_id, tenant_id=tenant_id, uid=ctx.uid,
                                 trade_id=intent_id, routing=None, client_order_id=data.get("client_order_id"),
                                 broker_order_id=order.broker_order_id, broker=venue.name,
                                 order_status=order.state.value, filled_qty=order.filled_qty,
                                 filled_avg_price=order.filled_avg_price)
        merged = {**prior, **{k: v for k, v in result.to_dict().items() if k not in ("routing", "reason")}}
        update = FillUpdate(
            tenant_id=tenant_id, intent_id=intent_id, uid=ctx.uid, token=token,
            record={"result": merged, "order_final": order.state.is_final, "fill_seq": seq,
                    "reconcile_after": self._follow_at(intent, order),
                    "updated_at": self.clock.now().isoformat(),
                    **({RECORD_FIELD: {**data[RECORD_FIELD], "expired_at": self.clock.now().isoformat()}}
                       if expired and order.state.is_final else {})},
            fills=tuple(fills), account_key=account_key(intent), filled_signed_qty=delta * direction,
            released_signed_qty=release * direction)
        if not self.store.apply_fill_update(update):
            return None
        log_event("exec.reconciled", intent_id=intent_id, tenant_id=tenant_id, new_fill=delta,
                  order_status=order.state.value)
        return result

    def _cancel_expired_limit(self, venue: BrokerPort, intent_id: str, order: BrokerOrder) -> BrokerOrder:
        """Cancel a limit placed instead of a WAIT once its ``limit_timeout_seconds`` have passed and
        answer the order as the venue holds it now (fills before the cancel are kept; the caller
        releases the remainder once it is final). A venue error leaves it for the next sweep."""
        try:
            venue.cancel_order(order.broker_order_id)
            after = venue.get_order(order.broker_order_id)
        except BrokerError as exc:
            log_event("exec.reconcile_deferred", severity="WARNING", intent_id=intent_id, error=str(exc))
            return order
        log_event("exec.wide_spread_limit_expired", intent_id=intent_id, broker_order_id=order.broker_order_id,
                  order_status=after.state.value, filled_qty=after.filled_qty)
        return after

    def _fill_write(self, intent: OrderIntent, ctx: ExecutionContext, trade_id: str, increment: BrokerOrder,
                    broker_name: str, coid: str | None) -> FillWrite:
        now = self.clock.now()
        ledger = fill_ledger_row(intent=intent, ctx=ctx, trade_id=trade_id, now=now, increment=increment,
                                 broker_name=broker_name, client_order_id=coid)
        history = history_row(intent=intent, ctx=ctx, now=now, routing=None, order=increment,
                              broker_name=broker_name, client_order_id=coid or "", trade_id=trade_id, kind="fill")
        return FillWrite(trade_id=trade_id, uid=ctx.uid, ledger=ledger, history=history,
                         tax=tax_fill(trade_id=trade_id, symbol=intent.symbol, asset_class=intent.asset_class.value,
                                      side=intent.side.value, qty=increment.filled_qty,
                                      price=increment.filled_avg_price, fees=ZERO, when=now,
                                      multiplier=intent.spec.multiplier))


def _order_request(intent: OrderIntent, coid: str, *, price_bound: Decimal | None = None) -> OrderRequest:
    # issue 15: type, time in force (the class default when omitted), stop/trail and protective legs
    return OrderRequest(client_order_id=coid, **intent.order_fields(), price_bound=price_bound)
