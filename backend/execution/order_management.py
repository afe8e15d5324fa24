"""Order management of working single orders (issue 15 item 6): list, read, cancel, replace.

The order document is the intent record ``tenants/{t}/order_intents/{intent_id}`` the engine already
writes (its owner reads it — ``firestore.rules`` — and apps listen to it with ``onSnapshot``). This
module adds what the API needs around it; ``backend/api/orders_api.py`` only translates HTTP.

- **List** (``list_orders``): the caller's working orders = their intent records with ``status ==
  placed`` and ``order_final == false`` — one indexed query (uid, status, order_final; document id
  order; firestore.indexes.json). The account, symbol and venue-state filters are applied here on
  that set (a user's working orders are few; a page scans at most ``SCAN_BUDGET`` records and may
  then hold fewer than ``limit`` rows — ``next_cursor`` still continues).
- **Read** (``get_order``): one record of the caller (``kind`` single); another user's record and a
  missing one are the same ``OrderNotFound``.
- **Cancel** (``cancel``): persisted first (``cancel_requested_at``), then ``cancel_order`` at the
  venue, then the engine's ``reconcile_intent`` folds every fill the venue reports (fills that
  arrived before the cancel reach the ledger first: ledger = venue) and, once the venue says the
  order is final, releases the unfilled remainder's reservation. Then one commit records the cancel
  (ledger row ``{intent}--cancel``, kind ``cancel``; create-only, so a retry records it once) on the
  record (``cancel``). A venue that has not confirmed yet answers ``pending`` (the sweeper and a
  retry finish it); an order that filled before the cancel reached the venue is ``ORDER_NOT_CANCELABLE``
  with its fills in the ledger.
- **Replace** (``replace``, Idempotency-Key required) and the increase's pre-trade gate and reservation:
  the mixin ``OrderReplace`` in backend/execution/order_replace.py (its docstring describes the
  replace path: marker, reservation, settlement). ``OrderManager`` is the façade: reads, the shared
  helpers (the stored intent and its venue, the venue lookups) and cancel are here. The answers —
  ``order_view``, ``Outcome`` and the coded errors — are in backend/execution/order_views.py; names
  other modules import from here (``ReplaceChanges``, ``ReplaceRefused``, ``ReplaceRejected``,
  ``OrderNotFound``, ``OrderConflict``, ``VenueBusy``, ...) are imported back.
"""
from __future__ import annotations

from typing import Any, Mapping

from backend.domain.errors import Rejection
from backend.domain.money import ZERO, dec_str
from backend.domain.orders import BrokerError, BrokerOrder, OrderState
from backend.execution import store_writes
from backend.execution.accounts import stored_binding
from backend.execution.intent import ExecutionContext, OrderIntent
from backend.execution.order_replace import (OrderReplace, ReplaceChanges, ReplaceRefused,  # noqa: F401
                                             ReplaceRejected)
from backend.execution.order_views import (ATTEMPTS, OrderConflict, OrderNotFound, Outcome, VenueBusy,
                                           _dec, lookup_by_client_id, order_view, venue_busy)
from backend.execution.records import order_event_row
from backend.logs import log_event
from backend.ports.store import IntentStatus

WORKING_STATES = ("pending_new", "new", "partially_filled")
SCAN_BUDGET = 500  # intent records one list page reads at most
PAGE_READ = 100


def _matches(data: Mapping[str, Any], account: str | None, symbol: str | None, state: str | None) -> bool:
    intent = data.get("intent") or {}
    if data.get("kind", "single") != "single":
        return False
    if account is not None and ((data.get("account") or {}).get("account_id")
                                or intent.get("broker_account_id")) != account:
        return False
    if symbol is not None and intent.get("symbol") != symbol:
        return False
    return state is None or (data.get("result") or {}).get("order_status") == state


class OrderManager(OrderReplace):
    """Order management over the engine's store, venues and ``reconcile_intent``."""

    def __init__(self, engine: Any):
        self.engine = engine
        self.store = engine.store
        self.clock = engine.clock

    # --- reads ---------------------------------------------------------------------------------
    def list_orders(self, tenant_id: str, uid: str, *, account: str | None = None, symbol: str | None = None,
                    state: str | None = None, after: str | None = None, limit: int = 50
                    ) -> tuple[list[dict[str, Any]], str | None]:
        """(views by intent id ascending, the cursor of the next page or None)."""
        equals = {"uid": uid, "status": IntentStatus.PLACED.value, "order_final": False}
        items: list[dict[str, Any]] = []
        scanned, cursor = 0, after
        while scanned < SCAN_BUDGET:
            rows = self.store.admin_page(tenant_id, "order_intents", equals=equals, after=cursor, limit=PAGE_READ)
            for doc_id, doc in rows:
                scanned += 1
                cursor = doc_id
                if _matches(doc, account, symbol, state):
                    if len(items) == limit:
                        return items, items[-1]["intent_id"]
                    items.append(order_view(doc_id, doc))
                if scanned >= SCAN_BUDGET:
                    return items, cursor  # the budget ran out: the next page continues after the last read
            if len(rows) < PAGE_READ:
                return items, None
        return items, cursor

    def _own(self, tenant_id: str, uid: str, intent_id: str) -> tuple[Any, Any]:
        got = self.store.get_intent_with_token(tenant_id, intent_id)
        if got is None or got[0].data.get("uid") != uid or got[0].data.get("kind", "single") != "single" \
                or not isinstance(got[0].data.get("intent"), Mapping):
            raise OrderNotFound(intent_id)
        return got

    def get_order(self, tenant_id: str, uid: str, intent_id: str) -> dict[str, Any]:
        record, _ = self._own(tenant_id, uid, intent_id)
        return order_view(intent_id, record.data)

    # --- shared --------------------------------------------------------------------------------
    @staticmethod
    def intent_and_context(tenant_id: str, intent_id: str,
                           data: Mapping[str, Any]) -> tuple[OrderIntent, ExecutionContext]:
        """The working order as an intent and its context (the stored account binding, never re-bound)."""
        return (OrderIntent.from_dict({**data["intent"], "intent_id": intent_id}),
                ExecutionContext(tenant_id, data["uid"], account=stored_binding(data.get("account"))))

    def _context(self, tenant_id: str, intent_id: str, data: Mapping[str, Any]) -> tuple[OrderIntent, ExecutionContext, Any]:
        intent, ctx = self.intent_and_context(tenant_id, intent_id, data)
        try:
            venue = self.engine.broker_for(intent, ctx)
        except Exception as exc:  # the account's venue cannot be built now
            raise VenueBusy("VENUE_UNAVAILABLE", f"the account's venue cannot be reached ({type(exc).__name__})",
                            30) from None
        if isinstance(venue, Rejection):
            raise VenueBusy("VENUE_UNAVAILABLE", "no venue trades this order's asset class now", 30)
        return intent, ctx, venue

    @staticmethod
    def _working_or_conflict(data: Mapping[str, Any], intent_id: str) -> None:
        status = data.get("status")
        if status == IntentStatus.RESERVED.value:
            raise OrderConflict("ORDER_NOT_PLACED", "the order's outcome is not known yet; retry shortly",
                                order_view(intent_id, data))
        if status != IntentStatus.PLACED.value:
            raise OrderConflict("ORDER_NOT_WORKING", f"the intent was {status}: no order works at the venue",
                                order_view(intent_id, data))

    def _fold(self, tenant_id: str, intent_id: str) -> None:
        """The engine's reconcile: later fills to the ledger; the remainder released once final."""
        self.engine.reconcile_intent(tenant_id, intent_id)

    @staticmethod
    def _busy(exc: BrokerError) -> VenueBusy:
        return venue_busy(exc)

    @staticmethod
    def _ended_at_venue(venue: Any, broker_order_id: Any) -> bool:
        """The replaced order is final at the venue (the engine's reconcile leaves such an order to
        this settlement while a marker is pending: ``ExecutionEngine.reconcile_intent``)."""
        if not broker_order_id:
            return False
        try:
            return venue.get_order(str(broker_order_id)).state.is_final
        except BrokerError as exc:
            if exc.retryable:
                raise OrderManager._busy(exc) from None
            return False

    @staticmethod
    def _lookup(venue: Any, client_order_id: str) -> BrokerOrder | None:
        return lookup_by_client_id(venue, client_order_id)

    # --- cancel --------------------------------------------------------------------------------
    def cancel(self, tenant_id: str, uid: str, intent_id: str) -> Outcome:
        record, token = self._own(tenant_id, uid, intent_id)
        data = record.data
        self._working_or_conflict(data, intent_id)
        if data.get("order_final"):  # already final: the recorded cancel (replayed), or the venue's own cancel
            return self._cancel_outcome(tenant_id, uid, intent_id, replayed=isinstance(data.get("cancel"), Mapping))
        intent, ctx, venue = self._context(tenant_id, intent_id, data)
        if not data.get("cancel_requested_at"):  # the request is persisted before the venue is asked
            token = store_writes.update_intent_if_unchanged(self.store, tenant_id, intent_id, token, {
                "cancel_requested_at": self.clock.now().isoformat()})
            if token is None:
                return self.cancel(tenant_id, uid, intent_id)  # moved meanwhile (a fill folded): read again
        try:
            venue.cancel_order(data["broker_order_id"])
        except BrokerError as exc:
            if exc.retryable:
                raise self._busy(exc) from None
            # NOT_FOUND / INVALID: the venue no longer holds it working (filled or canceled already);
            # what it did is read below
            log_event("orders.cancel_refused_by_venue", severity="WARNING", intent_id=intent_id,
                      tenant_id=tenant_id, code=exc.code.value)
        self._fold(tenant_id, intent_id)
        log_event("orders.cancel_sent", intent_id=intent_id, tenant_id=tenant_id,
                  broker_order_id=data["broker_order_id"])
        return self._cancel_outcome(tenant_id, uid, intent_id, replayed=False)

    def _cancel_outcome(self, tenant_id: str, uid: str, intent_id: str, *, replayed: bool) -> Outcome:
        for _ in range(ATTEMPTS):
            record, token = self._own(tenant_id, uid, intent_id)
            data = record.data
            result = data.get("result") or {}
            state = result.get("order_status")
            if not data.get("order_final"):
                self._fold(tenant_id, intent_id)  # the venue may have confirmed since
                record, token = self._own(tenant_id, uid, intent_id)
                data = record.data
                if not data.get("order_final"):
                    return Outcome("pending", order_view(intent_id, data), replayed)
                result, state = data.get("result") or {}, (data.get("result") or {}).get("order_status")
            if state not in (OrderState.CANCELED.value, OrderState.EXPIRED.value):
                raise OrderConflict("ORDER_NOT_CANCELABLE", f"the order is {state}: nothing left to cancel",
                                    order_view(intent_id, data))
            if isinstance(data.get("cancel"), Mapping):
                return Outcome("canceled", order_view(intent_id, data), replayed)
            if self._record_cancel(tenant_id, intent_id, data, token):
                record, _ = self._own(tenant_id, uid, intent_id)
                return Outcome("canceled", order_view(intent_id, record.data), replayed)
        raise VenueBusy("STORE_CONTENDED", "the order kept changing; retry", 1)

    def settle_requested_cancel(self, tenant_id: str, intent_id: str) -> bool:
        """For the sweeper's working-order loop (after ``engine.reconcile_intent``): a cancel that answered
        ``pending`` and that the venue confirmed since gets its ledger row even if the caller never asks again.
        A dead replace's marker is settled first (``settle_pending_replace``)."""
        try:  # this is the sweeper's per-order settlement of this module's markers: a dead replace first
            self.settle_pending_replace(tenant_id, intent_id)
        except VenueBusy as exc:
            log_event("orders.replace_settle_deferred", severity="WARNING", intent_id=intent_id,
                      tenant_id=tenant_id, code=exc.code)
        got = self.store.get_intent_with_token(tenant_id, intent_id)
        if got is None:
            return False
        data = got[0].data
        if not data.get("cancel_requested_at") or isinstance(data.get("cancel"), Mapping) \
                or not data.get("order_final") or (data.get("result") or {}).get("order_status") not in (
                    OrderState.CANCELED.value, OrderState.EXPIRED.value):
            return False
        return self._record_cancel(tenant_id, intent_id, data, got[1])

    def _record_cancel(self, tenant_id: str, intent_id: str, data: Mapping[str, Any], token: Any) -> bool:
        intent, ctx = self.intent_and_context(tenant_id, intent_id, data)
        now = self.clock.now()
        result = data.get("result") or {}
        remainder = (_dec(intent.qty) or ZERO) - (_dec(result.get("filled_qty")) or ZERO)
        row = order_event_row(kind="cancel", trade_id=f"{intent_id}--cancel", intent=intent, ctx=ctx, now=now,
                              broker_name=data.get("broker"), client_order_id=data.get("client_order_id"),
                              broker_order_id=data.get("broker_order_id"), order_status=result.get("order_status"),
                              qty=max(remainder, ZERO),
                              reason="canceled at the caller's request" if data.get("cancel_requested_at")
                              else "canceled by the venue")
        cancel = {"at": now.isoformat(), "ledger_id": f"{intent_id}--cancel", "order_status": result.get("order_status"),
                  "canceled_qty": dec_str(max(remainder, ZERO)), "filled_qty": result.get("filled_qty")}
        ok = store_writes.record_order_event(self.store, tenant_id, intent_id, token,
                                             {"cancel": cancel, "updated_at": now.isoformat()},
                                             f"{intent_id}--cancel", row)
        if ok:
            log_event("orders.canceled", intent_id=intent_id, tenant_id=tenant_id, canceled_qty=remainder)
        return ok
