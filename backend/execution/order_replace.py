"""Replace of a working single order (issue 15 item 6), mixed into ``OrderManager``.

``OrderReplace`` (backend/execution/order_management.py holds the façade, its reads and cancel) uses
the façade's ``_own``, ``_context``, ``_working_or_conflict``, ``_lookup``, ``_ended_at_venue``,
``_busy`` and ``_fold``; the answers (``order_view``, ``Outcome``, the coded errors) are in
order_views.py. ``ReplaceChanges``, ``ReplaceRefused`` and ``ReplaceRejected`` are defined here and
imported back into order_management.py.

- **Replace** (``replace``, Idempotency-Key required): the venue's ``replace_order`` cancels the
  working order and places a new one under a client id derived from (tenant, account, intent, key),
  persisted on the record (``pending_replace``) before the call; a retry with the same key finds the
  new order by that client id instead of replacing twice. One commit then folds the old order's last
  fills, rewrites the record to the new venue order (``intent`` = the working order's fields; the
  first request stays in ``requested_intent``; ``replaced_orders`` keeps each old order with its
  fills), adjusts the reservation to the new quantity and writes the ledger row ``{intent}--r{n}``
  (kind ``replace``, ``replaces`` = the old order). Another key's marker whose lease
  (``EXECUTION_ENGINE_LEASE_SECONDS``) still runs answers ``ORDER_REPLACE_PENDING`` (409); once it is
  over, its request is presumed dead and the marker is taken over.
- **Increase** (new quantity > the unfilled remainder): the ``extra`` units pass the one pre-trade gate
  (``backend/risk/gate.py``) as a new order does, on switch documents, the bound account and the
  exposure read afresh in one ``get_all``: halted at any level (operator, tenant, account — or closed)
  refuses, ``reduce_only`` at any level refuses unless the larger order still only shrinks |position|,
  the account's and tenant's limits tighten the operator's, the position limit applies to the
  exposure with the extra added (every in-flight reservation counted) and ``max_order_notional`` to
  the whole replacement (its limit or stop price). Then — the claim's pattern — the SAME commit that
  persists ``pending_replace`` (with ``reserved_extra`` and ``lease_until``) increments the exposure
  by the extra, before the venue is called, and the gate re-checks the exposure that commit's
  transform results answer: of two increases racing for the last room under the limit, the later
  commit sees both and is refused (its marker dropped, its extra released), so exactly one reaches
  the venue. A venue refusal drops the marker; a retry with the same key re-checks the halt and the
  limits before it calls the venue again. Invariant: *a marker's reservation lives exactly as long as
  the marker* — whoever removes it from the record (``complete_replacement``, ``_drop_marker``, a takeover)
  accounts for it in the same preconditioned commit, so it is released once however often a request
  is retried, and ``complete_replacement`` sets the reservation to the new order's quantity (never adds the
  extra again). A replacement whose request died is settled by the sweeper
  (``settle_pending_replace``, run by ``settle_requested_cancel``): found at the venue → recorded;
  not found and (the old order final or the lease over) → dropped and released. Refusals are coded
  ``ReplaceRejected`` (the gate's codes; HTTP 409, ACCOUNT_* as the account binding maps them) with
  nothing written and nothing sent. Bound: fills of the old order between the gate's read and the
  venue's replace are not in the remainder the extra was computed from; the reservation and the
  ledger follow the venue exactly afterwards.
- **Not a new trade**: a replace consumes no daily trade slot and is not refused by the daily trade
  limits (``include_own_reservation``: the gate's daily rules do not apply); the order keeps the slot
  its placement took.
- **Decrease / unchanged quantity / a price or time-in-force change**: no gate — it adds no exposure.
  Like a cancel it is let through under every trading state, halted included (``halted`` stops new
  exposure; taking exposure back, or moving the price of what already works, is not new exposure);
  only dry run refuses every replace (``DRY_RUN``, before anything is written).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace as dc_replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Mapping

from backend.domain.errors import InvalidInput, RejectCode, Rejection
from backend.domain.money import ZERO, dec_str
from backend.domain.orders import BrokerError, BrokerErrorCode, BrokerOrder, OrderRequest, ReplaceRequest
from backend.execution import store_writes
from backend.execution.client_ids import checked_order, single_client_order_id
from backend.execution.intent import ExecutionContext, OrderIntent
from backend.execution.order_views import ATTEMPTS, OrderConflict, OrderNotFound, Outcome, VenueBusy, _dec, order_view
from backend.execution.preflight import lot_book_path, lot_book_rejection
from backend.execution.records import fill_ledger_row, history_row, order_event_row, tax_fill
from backend.logs import log_event
from backend.execution.store_rules import exposure_from_doc, exposure_path
from backend.risk.gate import DryRunBlocked, account_in, account_key_for, halt_flags, halt_paths
from backend.risk.manager import Exposure, RiskSnapshot
from backend.ports.store import FillWrite, IntentStatus


class ReplaceRefused(Exception):
    """The replacement is invalid (HTTP 400): ``field`` + ``reason`` (nothing sent, nothing changed)."""

    def __init__(self, field: str | None, reason: str):
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field, self.reason = field, reason


class ReplaceRejected(Exception):
    """The pre-trade gate refused an increase (``rejection.code``: the gate's — KILL_SWITCH, REDUCE_ONLY,
    POSITION_LIMIT, ACCOUNT_HALTED, ACCOUNT_CLOSED, ACCOUNT_NOT_FOUND): nothing sent, nothing kept."""

    def __init__(self, rejection: Rejection, view: Mapping[str, Any] | None = None):
        super().__init__(str(rejection))
        self.rejection, self.view = rejection, view


@dataclass(frozen=True)
class _RiskRead:
    """What the gate decides an increase on: the switch states, the bound account (None: an unbound,
    older order), the exposure as read, and a refusal of the read itself (the account gone/unreadable)."""

    snapshot: RiskSnapshot
    account: Any
    exposure: Exposure
    problem: Rejection | None
    book: Any = None  # the user's lot book of the symbol (a larger order may open lots: LOT_BOOK_FULL)
    ctx: Any = None


def _held(marker: Any) -> Decimal:
    """The extra units a stored ``pending_replace`` marker holds reserved (0: none, or no marker)."""
    if not isinstance(marker, Mapping):
        return ZERO
    return _dec(marker.get("reserved_extra")) or ZERO


def _with_reserved(exposure: Exposure, units: Decimal, direction: int) -> Exposure:
    """``exposure`` with ``units`` more reserved in the order's direction (the reservation about to be made)."""
    if direction > 0:
        return dc_replace(exposure, reserved_long=exposure.reserved_long + units)
    return dc_replace(exposure, reserved_short=exposure.reserved_short + units)


@dataclass(frozen=True)
class ReplaceChanges:
    """What ``PATCH /orders/{id}`` asks to change (None: keep)."""

    qty: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail: Decimal | None = None
    time_in_force: str | None = None

    def fingerprint(self) -> str:
        return "|".join(f"{name}={dec_str(value) if isinstance(value, Decimal) else value}"
                        for name, value in sorted(self.__dict__.items()))


class OrderReplace:
    """``replace`` and what it needs: the increase's gate and reservation, the marker, the
    recorded replacement (``complete_replacement``) and the sweeper's ``settle_pending_replace``."""

    # --- replace -------------------------------------------------------------------------------
    def replace(self, tenant_id: str, uid: str, intent_id: str, changes: ReplaceChanges, key: str) -> Outcome:
        record, token = self._own(tenant_id, uid, intent_id)
        data = record.data
        key_id = hashlib.sha256(f"{tenant_id}\x00{uid}\x00{intent_id}\x00{key}".encode()).hexdigest()[:32]
        fingerprint = changes.fingerprint()
        for done in data.get("replacements") or []:
            if done.get("key_id") == key_id:
                if done.get("fingerprint") != fingerprint:
                    raise OrderConflict("IDEMPOTENCY_KEY_REUSED", "this Idempotency-Key was used with another body")
                return Outcome("replaced", order_view(intent_id, data), replayed=True)
        self._working_or_conflict(data, intent_id)
        pending = data.get("pending_replace")
        if isinstance(pending, Mapping) and pending.get("key_id") == key_id \
                and pending.get("fingerprint") != fingerprint:
            raise OrderConflict("IDEMPOTENCY_KEY_REUSED", "this Idempotency-Key was used with another body")
        if isinstance(pending, Mapping):
            intent, ctx, venue = self._context(tenant_id, intent_id, data)
            found = self._lookup(venue, pending["client_order_id"])
            if found is not None:  # an earlier replace (a lost answer) reached the venue: record it first
                self.complete_replacement(tenant_id, intent_id, dict(pending), found, venue)
                return self.replace(tenant_id, uid, intent_id, changes, key)  # this key's: now a replay
            if pending.get("key_id") != key_id and data.get("order_final"):
                self._drop_marker(tenant_id, intent_id, pending["key_id"])  # it can no longer reach the venue
                return self.replace(tenant_id, uid, intent_id, changes, key)
        if data.get("order_final"):
            raise OrderConflict("ORDER_NOT_WORKING", "the order is final: nothing to replace",
                                order_view(intent_id, data))
        if data.get("cancel_requested_at"):
            raise OrderConflict("ORDER_CANCEL_PENDING", "a cancel of this order was requested",
                                order_view(intent_id, data))
        if self.engine.dry_run:
            raise OrderConflict("DRY_RUN", "dry run is on: no order is sent, a replacement neither")
        intent, ctx, venue = self._context(tenant_id, intent_id, data)
        if getattr(venue, "replace_order", None) is None:
            raise OrderConflict("REPLACE_NOT_SUPPORTED", f"{venue.name} does not replace orders: cancel and place a new one")
        mine = isinstance(pending, Mapping) and pending.get("key_id") == key_id
        if isinstance(pending, Mapping) and not mine and not self._lease_over(pending):
            raise OrderConflict("ORDER_REPLACE_PENDING", "another replacement of this order is in progress; retry "
                                                         "shortly", order_view(intent_id, data))
        new_intent = self._replacement_intent(intent, data, changes, venue.name)
        coid = single_client_order_id(tenant_id, f"{intent_id}--replace--{key_id}", prefix="r",
                                      account=intent.broker_account_id)
        if not mine:
            extra = max(new_intent.qty - self._remaining(intent, data), ZERO)
            now = self.clock.now()
            marker = {"key_id": key_id, "fingerprint": fingerprint, "client_order_id": coid,
                      "old_broker_order_id": data["broker_order_id"],
                      "old_client_order_id": data.get("client_order_id"), "intent": new_intent.to_dict(),
                      "reserved_extra": dec_str(extra), "requested_at": now.isoformat(),
                      "lease_until": (now + timedelta(seconds=float(self.engine.settings.lease_seconds))).isoformat()}
            # a marker whose lease is over (its request is presumed dead) is taken over: what it held is
            # released in the same commit that reserves this one's extra
            held = _held(pending)
            risk = self._risk_read(tenant_id, intent, ctx) if extra > 0 else None
            if risk is not None:  # an increase: the gate a new order passes, before anything is written
                refused = self._increase_refusal(intent, new_intent, extra, risk,
                                                 _with_reserved(risk.exposure, extra - held, intent.side.direction))
                if refused is not None:
                    self._refuse(tenant_id, intent_id, data, refused, stage="gate")
            committed = store_writes.commit_replace_marker(
                self.store, tenant_id, intent_id, token, marker, account_key_for(intent.broker_account_id, intent.symbol),
                extra - held, intent.side.direction)
            if committed is None:
                return self.replace(tenant_id, uid, intent_id, changes, key)  # moved meanwhile: read again
            token = committed.token
            if risk is not None:  # the re-check on the exposure as this very commit left it (exact under races)
                refused = self._increase_refusal(intent, new_intent, extra, risk, committed.exposure)
                if refused is not None:
                    self._drop_marker(tenant_id, intent_id, key_id)
                    self._refuse(tenant_id, intent_id, data, refused, stage="reserved")
        else:
            marker = dict(pending)
            extra = _held(marker)
            if extra > 0:  # a retry: the reservation is held; a halt or a tightened limit since stops it
                risk = self._risk_read(tenant_id, intent, ctx)
                refused = self._increase_refusal(intent, OrderIntent.from_dict({**marker["intent"],
                                                                                "intent_id": intent_id}),
                                                 extra, risk, risk.exposure)
                if refused is not None:
                    self._drop_marker(tenant_id, intent_id, key_id)
                    self._refuse(tenant_id, intent_id, data, refused, stage="retry")
        request = ReplaceRequest(client_order_id=coid, qty=_dec(marker["intent"]["qty"]),
                                 limit_price=changes.limit_price and new_intent.limit_price,
                                 stop_price=changes.stop_price and new_intent.stop_price,
                                 trail=(new_intent.trail_price or new_intent.trail_percent) if changes.trail else None,
                                 time_in_force=changes.time_in_force)
        try:
            new_order = venue.replace_order(data["broker_order_id"], request)
        except DryRunBlocked:  # dry run switched on since the check above: nothing was sent
            self._drop_marker(tenant_id, intent_id, key_id)  # the extra reserved for it is released (once)
            raise OrderConflict("DRY_RUN", "dry run is on: no order is sent, a replacement neither") from None
        except BrokerError as exc:
            if exc.retryable:  # outcome unknown: the marker and its reservation stay for the retry / the sweeper
                raise self._busy(exc) from None
            if exc.code is BrokerErrorCode.DUPLICATE:
                new_order = self._lookup(venue, coid)
                if new_order is None:
                    raise self._busy(exc) from None
            else:
                self._drop_marker(tenant_id, intent_id, key_id)  # the extra reserved for it is released (once)
                self._fold(tenant_id, intent_id)  # e.g. it filled meanwhile: its fills reach the ledger
                raise ReplaceRefused(None, f"the venue refused the replacement: {exc.message or exc.code.value}") from None
        if checked_order(OrderRequest(client_order_id=coid, symbol=new_intent.symbol, asset_class=new_intent.asset_class,
                                      side=new_intent.side, qty=new_order.qty), new_order, tenant_id=tenant_id,
                         where="orders.replace", intent_id=intent_id, uid=uid) is not None:
            raise VenueBusy("CLIENT_ORDER_ID_MISMATCH", "the venue answered with an order that is not the "
                                                        "replacement; not adopted (an alert was raised)", 60)
        self.complete_replacement(tenant_id, intent_id, marker, new_order, venue)
        record, _ = self._own(tenant_id, uid, intent_id)
        return Outcome("replaced", order_view(intent_id, record.data))

    # --- the increase's gate and reservation ----------------------------------------------------
    @staticmethod
    def _remaining(intent: OrderIntent, data: Mapping[str, Any]) -> Decimal:
        """The working order's unfilled remainder as recorded (what its reservation holds)."""
        return intent.qty - (_dec((data.get("result") or {}).get("filled_qty")) or ZERO)

    def _lease_over(self, marker: Mapping[str, Any]) -> bool:
        lease = marker.get("lease_until")
        if not lease:
            return True  # a marker written before leases (it held no reservation)
        return datetime.fromisoformat(str(lease)) <= self.clock.now()

    def _risk_read(self, tenant_id: str, intent: OrderIntent, ctx: ExecutionContext) -> _RiskRead:
        """The switch documents, the bound account's document and the exposure of (account, symbol) in
        one ``get_all`` — read afresh for every decision (staleness: none beyond this request)."""
        account_id = ctx.account.account_id if ctx.account is not None else None
        key = account_key_for(intent.broker_account_id, intent.symbol)
        ep = exposure_path(tenant_id, key)
        book_path = lot_book_path(intent, ctx)
        docs = self.store.get_all([*halt_paths(tenant_id, account_id), ep, book_path])
        snapshot = halt_flags(docs, tenant_id)
        account, problem = None, None
        if account_id is not None:
            try:
                account = account_in(docs, tenant_id, account_id)
            except InvalidInput:  # an account document the codec refuses: fail closed
                problem = Rejection(RejectCode.ACCOUNT_HALTED, f"account {account_id} cannot be read")
            else:
                if account is None:
                    problem = Rejection(RejectCode.ACCOUNT_NOT_FOUND, f"account {account_id} no longer exists")
        return _RiskRead(snapshot, account, exposure_from_doc(docs[ep][0]), problem, docs[book_path][0], ctx)

    def _increase_refusal(self, intent: OrderIntent, new_intent: OrderIntent, extra: Decimal, risk: _RiskRead,
                          exposure: Exposure) -> Rejection | None:
        """The gate's answer for the ``extra`` units an increase adds, with ``exposure`` already holding
        them (``include_own_reservation``: the daily trade rules do not apply — a replace is not a new
        trade); then the per-order notional of the whole replacement."""
        if risk.problem is not None:
            return risk.problem
        if risk.ctx is not None:  # the larger order's fills may open lots: the book must have room (preflight)
            full = lot_book_rejection(new_intent, risk.ctx, risk.book, qty=new_intent.qty)
            if full is not None:
                return full
        gate = self.engine.gate
        snapshot = risk.snapshot.with_counts(exposure=exposure)
        refused = gate.check(extra * intent.side.direction, snapshot, asset_class=intent.asset_class,
                             include_own_reservation=True, account=risk.account)
        if refused is not None:
            return refused
        price = new_intent.limit_price or new_intent.stop_price
        limits = gate.risk.effective_limits(snapshot, risk.account)
        if price is not None and limits.max_order_notional is not None:
            notional = new_intent.qty * price * new_intent.spec.multiplier
            if notional > limits.max_order_notional:
                return Rejection(RejectCode.POSITION_LIMIT, f"order notional={notional} "
                                                            f"max_order_notional={limits.max_order_notional}")
        return None

    def _refuse(self, tenant_id: str, intent_id: str, data: Mapping[str, Any], rejection: Rejection, *,
                stage: str) -> None:
        log_event("orders.replace_refused", severity="WARNING", intent_id=intent_id, tenant_id=tenant_id,
                  rejection=rejection, stage=stage)
        got = self.store.get_intent_with_token(tenant_id, intent_id)
        raise ReplaceRejected(rejection, order_view(intent_id, got[0].data if got is not None else data))

    def _drop_marker(self, tenant_id: str, intent_id: str, key_id: str) -> bool:
        """Clear ``key_id``'s marker and release what it holds, in one commit on the record as read: the
        one that removes a marker releases its reservation, so a retry never releases it twice. False
        when the record holds no marker of this key any more (completed, dropped or taken over)."""
        for _ in range(ATTEMPTS):
            got = self.store.get_intent_with_token(tenant_id, intent_id)
            if got is None:
                return False
            record, token = got
            pending = record.data.get("pending_replace")
            if not (isinstance(pending, Mapping) and pending.get("key_id") == key_id):
                return False
            intent, _ = self.intent_and_context(tenant_id, intent_id, record.data)
            if store_writes.commit_replace_marker(self.store, tenant_id, intent_id, token, None,
                                                  account_key_for(intent.broker_account_id, intent.symbol),
                                                  -_held(pending), intent.side.direction) is not None:
                log_event("orders.replace_marker_dropped", intent_id=intent_id, tenant_id=tenant_id,
                          released=_held(pending))
                return True
        raise VenueBusy("STORE_CONTENDED", "the order kept changing; retry with the same Idempotency-Key", 1)

    def settle_pending_replace(self, tenant_id: str, intent_id: str) -> bool:
        """For the sweeper (through ``settle_requested_cancel``): a replacement whose request died after its
        marker was written. Found at the venue by its client id → recorded; not found and the order is
        final or the marker's lease is over → the marker is dropped and its reservation released. True
        when something was settled."""
        got = self.store.get_intent_with_token(tenant_id, intent_id)
        if got is None:
            return False
        data = got[0].data
        pending = data.get("pending_replace")
        if not isinstance(pending, Mapping) or data.get("status") != IntentStatus.PLACED.value:
            return False
        _, _, venue = self._context(tenant_id, intent_id, data)
        found = self._lookup(venue, pending["client_order_id"])
        if found is not None:  # recorded once whoever gets there first (the request itself or this)
            self.complete_replacement(tenant_id, intent_id, dict(pending), found, venue)
            return True
        if not data.get("order_final") and not self._lease_over(pending) \
                and not self._ended_at_venue(venue, pending.get("old_broker_order_id")):
            return False  # its request may still be running
        return self._drop_marker(tenant_id, intent_id, pending["key_id"])

    def _replacement_intent(self, intent: OrderIntent, data: Mapping[str, Any], changes: ReplaceChanges,
                            venue_name: str) -> OrderIntent:
        """The working order after the replace, validated like a new intent (tick, lot, price fields)."""
        fields = dict(data["intent"])
        remaining = self._remaining(intent, data)
        fields["qty"] = dec_str(changes.qty) if changes.qty is not None else dec_str(remaining)
        if changes.limit_price is not None:
            if intent.limit_price is None:
                raise ReplaceRefused("limit_price", f"a {intent.order_type.value} order has no limit price")
            fields["limit_price"] = dec_str(changes.limit_price)
        if changes.stop_price is not None:
            if intent.stop_price is None:
                raise ReplaceRefused("stop_price", f"a {intent.order_type.value} order has no stop price")
            fields["stop_price"] = dec_str(changes.stop_price)
        if changes.trail is not None:
            name = "trail_price" if intent.trail_price is not None else "trail_percent"
            if intent.trail_price is None and intent.trail_percent is None:
                raise ReplaceRefused("trail", f"a {intent.order_type.value} order has no trail")
            fields[name] = dec_str(changes.trail)
        if changes.time_in_force is not None:
            fields["time_in_force"] = changes.time_in_force
        try:
            new = OrderIntent.from_dict({**fields, "intent_id": intent.intent_id})
        except InvalidInput as exc:
            raise ReplaceRefused(exc.field, exc.reason) from None
        from backend.domain.capabilities import check_capability

        refused = check_capability(venue_name, new.asset_class, new)  # e.g. a time in force the venue lacks
        if refused is not None:
            raise ReplaceRefused("time_in_force", str(refused))
        return new

    def complete_replacement(self, tenant_id: str, intent_id: str, marker: Mapping[str, Any],
                             new_order: BrokerOrder, venue: Any) -> None:
        """Record a replacement the venue made (see the module docstring); then fold the new order's fills.
        The reservation becomes exactly the new order's quantity: what the old order still held (nothing
        once the engine's reconcile saw it final — the venue's "replaced" — and released it) and what
        the stored marker held (an increase's extra, reserved before the venue call) are replaced by it,
        so the extra is never added twice."""
        for _ in range(ATTEMPTS):
            got = self.store.get_intent_with_token(tenant_id, intent_id)
            if got is None:
                raise OrderNotFound(intent_id)
            record, token = got
            data = record.data
            if any(d.get("key_id") == marker["key_id"] for d in data.get("replacements") or []):
                return
            old_intent, ctx = self.intent_and_context(tenant_id, intent_id, data)
            result = dict(data.get("result") or {})
            try:
                old = venue.get_order(marker["old_broker_order_id"])
            except BrokerError as exc:
                raise self._busy(exc) if exc.retryable else VenueBusy("BROKER_UNAVAILABLE", str(exc), 5) from None
            recorded = _dec(result.get("filled_qty")) or ZERO
            delta = max(old.filled_qty - recorded, ZERO)
            seq = int(data.get("fill_seq") or 0)
            fills = []
            if delta > 0 and old.filled_avg_price is not None:
                seq += 1
                price = ((old.filled_avg_price * old.filled_qty - (_dec(result.get("filled_avg_price")) or ZERO)
                          * recorded) / delta).quantize(Decimal("1e-12")).normalize()
                increment = dc_replace(old, filled_qty=delta, filled_avg_price=price, legs=())
                fills.append(self._fill_write(old_intent, ctx, f"{intent_id}--f{seq}", increment, venue.name,
                                              data.get("client_order_id")))
            new_intent = OrderIntent.from_dict({**marker["intent"], "intent_id": intent_id})
            if new_order.qty != new_intent.qty:  # the venue made another quantity: it is what works now
                new_intent = OrderIntent.from_dict({**marker["intent"], "qty": dec_str(new_order.qty),
                                                    "intent_id": intent_id})
            direction = old_intent.side.direction
            reserved_before = (ZERO if data.get("order_final") else old_intent.qty - recorded) \
                + _held(data.get("pending_replace"))
            reserved_delta = new_order.qty - reserved_before
            now = self.clock.now()
            n = len(data.get("replacements") or []) + 1
            old_entry = {"broker_order_id": old.broker_order_id, "client_order_id": data.get("client_order_id"),
                         "qty": dec_str(old_intent.qty), "filled_qty": dec_str(old.filled_qty),
                         "filled_avg_price": dec_str(old.filled_avg_price), "limit_price": dec_str(old_intent.limit_price),
                         "stop_price": dec_str(old_intent.stop_price), "replaced_by": new_order.broker_order_id,
                         "replaced_at": now.isoformat()}
            row = order_event_row(kind="replace", trade_id=f"{intent_id}--r{n}", intent=new_intent, ctx=ctx, now=now,
                                  broker_name=venue.name, client_order_id=new_order.client_order_id,
                                  broker_order_id=new_order.broker_order_id, order_status=new_order.state.value,
                                  qty=new_order.qty, reason="replaced at the caller's request",
                                  replaces={k: old_entry[k] for k in ("broker_order_id", "client_order_id", "qty",
                                                                      "filled_qty", "limit_price", "stop_price")})
            update = {
                "intent": new_intent.to_dict(), "requested_intent": data.get("requested_intent") or data["intent"],
                "client_order_id": new_order.client_order_id, "broker_order_id": new_order.broker_order_id,
                "result": {**result, "client_order_id": new_order.client_order_id,
                           "broker_order_id": new_order.broker_order_id, "order_status": new_order.state.value,
                           "filled_qty": "0", "filled_avg_price": None},
                "order_final": False, "fill_seq": seq, "pending_replace": None,
                "replaced_orders": [*(data.get("replaced_orders") or []), old_entry],
                "replacements": [*(data.get("replacements") or []),
                                 {"key_id": marker["key_id"], "fingerprint": marker["fingerprint"],
                                  "ledger_id": f"{intent_id}--r{n}", "broker_order_id": new_order.broker_order_id,
                                  "at": now.isoformat()}],
                "reconcile_after": now + timedelta(seconds=10), "updated_at": now.isoformat()}
            exposure = store_writes.order_event_exposure(delta * direction, reserved_delta, direction)
            if store_writes.record_order_event(self.store, tenant_id, intent_id, token, update, f"{intent_id}--r{n}",
                                               row, fills, (account_key_for(old_intent.broker_account_id, old_intent.symbol),
                                                            exposure)):
                log_event("orders.replaced", intent_id=intent_id, tenant_id=tenant_id,
                          old_broker_order_id=old.broker_order_id, broker_order_id=new_order.broker_order_id)
                self._fold(tenant_id, intent_id)  # the new order's own fills (a marketable replacement)
                return
        raise VenueBusy("STORE_CONTENDED", "the order kept changing; retry with the same Idempotency-Key", 1)

    def _fill_write(self, intent: OrderIntent, ctx: ExecutionContext, trade_id: str, increment: BrokerOrder,
                    broker_name: str, coid: str | None) -> FillWrite:
        """A fill increment of the replaced order (as the engine's reconcile writes one)."""
        now = self.clock.now()
        return FillWrite(
            trade_id=trade_id, uid=ctx.uid,
            ledger=fill_ledger_row(intent=intent, ctx=ctx, trade_id=trade_id, now=now, increment=increment,
                                   broker_name=broker_name, client_order_id=coid),
            history=history_row(intent=intent, ctx=ctx, now=now, routing=None, order=increment,
                                broker_name=broker_name, client_order_id=coid or "", trade_id=trade_id, kind="fill"),
            tax=tax_fill(trade_id=trade_id, symbol=intent.symbol, asset_class=intent.asset_class.value,
                         side=intent.side.value, qty=increment.filled_qty, price=increment.filled_avg_price,
                         fees=ZERO, when=now, multiplier=intent.spec.multiplier))
