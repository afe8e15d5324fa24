"""The owner's management of a FILLED group's protective stops (issue 15): cancel and move a leg's stop.

A leg's stop (``group/leg_stop.py``) works at the venue once its group is FILLED and the sweeper
follows it by resuming the group. This module adds what ``DELETE`` / ``PATCH
/groups/{group_id}/legs/{leg_id}/stop`` need (``backend/api/group_stops_api.py`` only translates HTTP):

- **Who**: only the group's owner. Another user's group — also another tenant's group with the same
  id (the path is the caller's tenant) — and a missing one are the same ``StopNotFound``.
- **How**: every change runs under the group's lease (``GroupExecutor.run_leased``), so it never races
  the sweeper's resume: the request is persisted on the group document before the venue is asked,
  and the venue's answer is saved with its ledger rows (``stop_event_writes``, through the group's own
  ``_ledger_written``: each row once) in the commit that releases the lease. A lease held by another
  worker answers ``VenueBusy("GROUP_BUSY")`` (retry; nothing written).
- **Cancel** (idempotent): ``cancel_requested_at`` is stored, then ``cancel_order`` at the venue, then
  the order is read back. CANCELED → the stop's ``cancel`` record and ledger row
  ``{group}--{leg}--stop--cancel`` (kind ``cancel``, create-only). A stop that filled before the cancel
  reached the venue → ``STOP_NOT_CANCELABLE`` (its fill is one ledger row, as any stop fill: ledger =
  venue). A venue that has not confirmed (or cannot be reached) → ``pending``: the request is stored
  and the group stays findable, so the sweeper's resume completes it (``GroupExecutor.cancel_stop``).
  A repeated cancel of a canceled stop answers the recorded cancel without a venue call.
- **Replace** (Idempotency-Key): the new ``stop_price`` is checked like the original — on the leg's
  tick (never rounded) and on the right side of the current quote (a long's sell stop below the bid, a
  short's buy stop above the ask; ``STOP_PRICE_WRONG_SIDE``). Only through the venue's
  ``replace_order`` (``REPLACE_NOT_SUPPORTED`` where the venue has none: a cancel + new order would
  leave the position unprotected in between, so it is never done silently). ``pending_replace``
  (the key's digest, the body's fingerprint, the new client id ``mlsr-`` + digest(tenant, group, leg,
  key)) is stored before the call; a lost answer is found by that client id (a retry with the same
  key, or the sweeper once the old order is final). The ledger row ``{group}--{leg}--stop--r{n}``
  (kind ``replace``) names the new venue order and ``replaces`` the old one; fills the old order made
  before the venue replaced it are their own fill row ``…--r{n}--fill``.
- **Dry run**: a cancel is allowed (it sends nothing new), a replace is refused (``DRY_RUN``), as for
  single orders. **Kill switch** (halted or reduce-only): both are allowed — neither adds exposure; a
  halt stops new risk, and taking away or moving a protective order is the owner's call on a position
  they already hold (documented in docs/ARCHITECTURE.md).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, Mapping

from backend.domain.errors import InvalidInput
from backend.domain.money import dec_str
from backend.domain.orders import BrokerError, BrokerErrorCode, BrokerOrder, OrderRequest, ReplaceRequest
from backend.execution.client_ids import checked_order, single_client_order_id
from backend.execution.group import leg_stop as stops
from backend.execution.order_views import VenueBusy, lookup_by_client_id, venue_busy
from backend.ports.store import FillWrite
from backend.risk.gate import DryRunBlocked

REPLACE_CLIENT_PREFIX = "mlsr"  # a moved stop's venue order: mlsr- + 40 hex (tenant, group, leg, key)


class StopNotFound(Exception):
    """No group of the caller with this id (another user's or tenant's answers the same), or no such
    leg / no stop on it: ``field`` names which."""

    def __init__(self, field: str, reason: str):
        super().__init__(reason)
        self.field, self.reason = field, reason


class StopConflict(Exception):
    """The stop is not in a state this action applies to (HTTP 409): ``code`` + message + the stop."""

    def __init__(self, code: str, message: str, view: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.code, self.message, self.view = code, message, view


class StopRefused(Exception):
    """The new stop price is invalid (HTTP 400; nothing sent): ``field``, ``reason`` and a ``code``
    (VALIDATION_ERROR, STOP_PRICE_WRONG_SIDE)."""

    def __init__(self, field: str | None, reason: str, code: str = "VALIDATION_ERROR"):
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field, self.reason, self.code = field, reason, code


@dataclass(frozen=True)
class StopOutcome:
    """``status``: canceled, pending (the venue has not confirmed), replaced; ``replayed``: the stored
    outcome of an earlier request."""

    status: str
    view: Mapping[str, Any]
    replayed: bool = False


def stop_view(group: Any, leg: Any) -> dict[str, Any]:
    """The API's view of one leg's stop (decimals as exact strings)."""
    stop = leg.stop_loss
    return {"group_id": group.group_id, "leg_id": leg.leg_id, "symbol": leg.symbol,
            "asset_class": leg.asset_class.value, "side": "sell" if leg.direction > 0 else "buy",
            "qty": dec_str(stop.qty), "working": stop.status is stops.LegStopStatus.WORKING,
            **stop.to_api_response()}


# ------------------------------------------------------------------------------ ledger rows
def _event_row(kind: str, trade_id: str, group: Any, leg: Any, account: str, now: datetime, *,
               qty: str | None, client_order_id: str | None, broker_order_id: str | None, order_status: str,
               reason: str, stop_price: str | None, replaces: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A cancel / replace row of the group's stop in the single orders' shape (``order_event_row``),
    naming the group and leg instead of an intent."""
    from backend.execution.intent import ExecutionContext, OrderIntent
    from backend.execution.records import order_event_row

    side = "sell" if leg.direction > 0 else "buy"
    # the builder takes an intent; a group's stop has none, so a fixed one stands in and every field it
    # fills is set from the group and the leg below (a row of any leg's class, never a validation error
    # inside the group's flush)
    stand_in = OrderIntent("group_stop", None, "AAPL", side, "1", "EQUITY", intent_id="group_stop")
    row = order_event_row(kind=kind, trade_id=trade_id, intent=stand_in,
                          ctx=ExecutionContext(group.tenant_id, group.uid), now=now, broker_name=None,
                          client_order_id=client_order_id, broker_order_id=broker_order_id,
                          order_status=order_status, qty=None, reason=reason, replaces=replaces)
    row.update({"intent_id": None, "group_id": group.group_id, "leg_id": leg.leg_id, "strategy_id": group.strategy_id,
                "broker_account_id": account, "symbol": leg.symbol, "asset_class": leg.asset_class.value,
                "side": side, "order_type": "stop", "qty": qty, "limit_price": None})
    if stop_price is not None:  # the stop order's price after the event (the row has no stop_price field)
        row["reason"] = f"{reason}; stop_price {stop_price}"
    return row


def stop_event_writes(group: Any, leg: Any, account: str, now: datetime, fill_write: Callable[..., FillWrite]
                      ) -> list[FillWrite]:
    """The ledger rows of the owner's actions on ``leg``'s stop, derived from the stored stop (the
    executor's flush writes those not yet in ``_ledger_written``): each replacement (and the replaced
    order's fills, if any), and the cancel."""
    stop = leg.stop_loss
    side = "sell" if leg.direction > 0 else "buy"
    out: list[FillWrite] = []
    for entry in stop.replacements or ():
        old = entry.get("replaces") or {}
        row = _event_row("replace", entry["ledger_id"], group, leg, account, now, qty=entry.get("qty"),
                         client_order_id=entry.get("client_order_id"), broker_order_id=entry.get("broker_order_id"),
                         order_status="new", reason="stop moved at the owner's request",
                         stop_price=entry.get("stop_price"),
                         replaces={k: old.get(k) for k in ("broker_order_id", "client_order_id", "qty", "filled_qty",
                                                           "stop_price")} | {"limit_price": None})
        out.append(FillWrite(trade_id=entry["ledger_id"], uid=group.uid, ledger=row, history=None, tax=None))
        fill = stops.replaced_fill(entry)
        if fill is not None:  # what the old order filled before the venue replaced it
            qty, price = fill
            out.append(fill_write(group, leg, f"{entry['ledger_id']}--fill", side, qty, price,
                                  old.get("client_order_id") or "", old.get("broker_order_id"), "fill", now, None,
                                  account, Decimal(str(old.get("qty") or qty))))
    if stop.cancel is not None:
        cancel = stop.cancel
        row = _event_row("cancel", cancel["ledger_id"], group, leg, account, now, qty=cancel.get("canceled_qty"),
                         client_order_id=cancel.get("client_order_id"), broker_order_id=cancel.get("broker_order_id"),
                         order_status="canceled", reason="stop canceled at the owner's request",
                         stop_price=dec_str(stop.stop_price))
        out.append(FillWrite(trade_id=cancel["ledger_id"], uid=group.uid, ledger=row, history=None, tax=None))
    return out


def adopt_replacement(executor: Any, run: Any, leg_id: str, marker: Mapping[str, Any], old: BrokerOrder,
                      new: BrokerOrder) -> None:
    """Record the replacement the venue made (``new``, found by the marker's client id), once it passed
    the client-id check (a foreign order: ALERT, not adopted)."""
    group = run.group
    leg = group.leg(leg_id)
    stop = leg.stop_loss
    request = OrderRequest(client_order_id=marker["client_order_id"], symbol=leg.symbol, asset_class=leg.asset_class,
                           side=stops.stop_order_request(stop, symbol=leg.symbol, asset_class=leg.asset_class,
                                                         direction=leg.direction).side, qty=new.qty)
    if checked_order(request, new, tenant_id=group.tenant_id, where="group.stop_replace", group_id=group.group_id,
                     leg_id=leg_id, uid=group.uid) is not None:
        raise VenueBusy("CLIENT_ORDER_ID_MISMATCH", "the venue answered with an order that is not the replacement; "
                                                    "not adopted (an alert was raised)", 60)
    n = len(stop.replacements or ()) + 1
    moved = stops.apply_replacement(stop, marker, old, new, stops.replace_ledger_id(group.group_id, leg_id, n),
                                    executor.clock.now())
    executor.update(run, stops.with_stop(group, leg_id, moved))


# ------------------------------------------------------------------------------ the manager
class StopManager:
    """Cancel and replace a group leg's stop for its owner (module docstring)."""

    def __init__(self, engine: Any):
        self.engine = engine
        self.store = engine.store
        self.clock = engine.clock

    def _executor(self) -> Any:
        from backend import bootstrap

        return bootstrap.group_executor(self.engine)

    def _own(self, tenant_id: str, uid: str, group_id: str, leg_id: str) -> tuple[Any, Any]:
        from backend.execution.groups import ExecutionGroup

        snapshot = self.store.load_group(tenant_id, group_id)
        if snapshot is None or snapshot.doc.get("uid") != uid:
            raise StopNotFound("group_id", "no group of the caller with this id")
        group = ExecutionGroup.from_dict({k: v for k, v in snapshot.doc.items() if not k.startswith("_")})
        leg = next((x for x in group.legs if x.leg_id == leg_id), None)
        if leg is None:
            raise StopNotFound("leg_id", "the group has no leg with this id")
        if leg.stop_loss is None:
            raise StopNotFound("leg_id", "this leg has no stop")
        return group, leg

    def get(self, tenant_id: str, uid: str, group_id: str, leg_id: str) -> dict[str, Any]:
        group, leg = self._own(tenant_id, uid, group_id, leg_id)
        return stop_view(group, leg)

    @staticmethod
    def _placed_or_conflict(group: Any, leg: Any) -> None:
        from backend.execution.group.states import GroupStatus

        if group.status is not GroupStatus.FILLED:
            raise StopConflict("STOP_NOT_WORKING", f"the group is {group.status.value}: only a FILLED group's stops "
                                                   "are placed", stop_view(group, leg))

    def _leased(self, executor: Any, tenant_id: str, group_id: str, action: Callable[[Any, str], None]) -> Any:
        group = executor.run_leased(tenant_id, group_id, action)
        if group is None:
            raise VenueBusy("GROUP_BUSY", "the group is being worked on (its lease is held); retry", 2)
        return group

    # --- cancel --------------------------------------------------------------------------------
    def cancel(self, tenant_id: str, uid: str, group_id: str, leg_id: str) -> StopOutcome:
        from backend.execution.group_executor import VenueUnreachable

        group, leg = self._own(tenant_id, uid, group_id, leg_id)
        self._placed_or_conflict(group, leg)
        if leg.stop_loss.status.is_final:  # nothing to send: the recorded outcome (no venue call)
            return self._cancel_answer(group, leg_id, replayed=True)
        executor = self._executor()

        def action(run: Any, owner: str) -> None:
            stop = run.group.leg(leg_id).stop_loss
            if stop.status.is_final:
                return
            if stop.cancel_requested_at is None:  # the request is stored before the venue is asked
                executor.persist(run, owner, stops.with_stop(run.group, leg_id,
                                                             stops.request_cancel(stop, self.clock.now())))
            executor.cancel_stop(run, leg_id)

        try:
            group = self._leased(executor, tenant_id, group_id, action)
        except VenueUnreachable:  # stored: the sweeper's resume completes it
            group, _ = self._own(tenant_id, uid, group_id, leg_id)
        return self._cancel_answer(group, leg_id, replayed=False)

    @staticmethod
    def _cancel_answer(group: Any, leg_id: str, *, replayed: bool) -> StopOutcome:
        leg = group.leg(leg_id)
        stop, view = leg.stop_loss, stop_view(group, leg)
        status = stop.status
        if status is stops.LegStopStatus.CANCELED and stop.cancel is not None:
            return StopOutcome("canceled", view, replayed)
        if status is stops.LegStopStatus.FILLED:
            raise StopConflict("STOP_NOT_CANCELABLE", "the stop filled before the cancel reached the venue; its fill "
                                                      "is in the ledger", view)
        if status.is_final:
            raise StopConflict("STOP_NOT_WORKING", f"the stop is {status.value}: nothing to cancel", view)
        return StopOutcome("pending", view, replayed)

    # --- replace -------------------------------------------------------------------------------
    def replace(self, tenant_id: str, uid: str, group_id: str, leg_id: str, stop_price: Any, key: str) -> StopOutcome:
        group, leg = self._own(tenant_id, uid, group_id, leg_id)
        try:
            price = leg.spec.quantize_price(stop_price, "stop_price")  # on the tick, never rounded
        except InvalidInput as exc:
            raise StopRefused(exc.field, exc.reason) from None
        key_id = hashlib.sha256(f"{tenant_id}\x00{uid}\x00{group_id}\x00{leg_id}\x00{key}".encode()).hexdigest()[:32]
        fingerprint = f"stop_price={dec_str(price)}"
        done = self._replayed(group, leg_id, key_id, fingerprint)
        if done is not None:
            return done
        self._check_replaceable(group, leg)
        executor = self._executor()
        coid = single_client_order_id(tenant_id, f"{group_id}--{leg_id}--stop--{key_id}",
                                      prefix=REPLACE_CLIENT_PREFIX)

        def action(run: Any, owner: str) -> None:
            if self._replayed(run.group, leg_id, key_id, fingerprint) is not None:
                return
            self._check_replaceable(run.group, run.group.leg(leg_id))
            venue = executor.stop_venue(run, leg_id)
            if getattr(venue, "replace_order", None) is None:
                raise StopConflict("REPLACE_NOT_SUPPORTED", f"{getattr(venue, 'name', 'the venue')} does not replace "
                                                            "orders; cancel the stop instead (a cancel and a new order "
                                                            "would leave the position unprotected in between)")
            stop = run.group.leg(leg_id).stop_loss
            pending = stop.pending_replace
            if pending is not None and pending.get("key_id") == key_id and pending.get("fingerprint") != fingerprint:
                raise StopConflict("IDEMPOTENCY_KEY_REUSED", "this Idempotency-Key was used with another stop_price")
            if pending is not None:  # an earlier replace's answer was lost: settle it first
                executor.follow_stop(run, leg_id)
                if self._replayed(run.group, leg_id, key_id, fingerprint) is not None:
                    return
                self._check_replaceable(run.group, run.group.leg(leg_id))
                stop = run.group.leg(leg_id).stop_loss
            self._check_price(venue, run.group, run.group.leg(leg_id), price)
            marker = {"key_id": key_id, "fingerprint": fingerprint, "client_order_id": coid,
                      "stop_price": dec_str(price), "requested_at": self.clock.now().isoformat()}
            if stop.pending_replace is not None and stop.pending_replace.get("key_id") == key_id:
                marker = dict(stop.pending_replace)  # this key's own earlier attempt: the same client id
            else:  # stored before the venue is asked
                executor.persist(run, owner, stops.with_stop(run.group, leg_id, stops.request_replace(stop, marker)))
            self._replace_at_venue(executor, run, leg_id, venue, marker, price)

        group = self._leased(executor, tenant_id, group_id, action)
        done = self._replayed(group, leg_id, key_id, fingerprint)
        if done is None:  # not reached: the action either recorded the replacement or raised
            raise VenueBusy("BROKER_UNAVAILABLE", "the replacement is not confirmed yet; retry with the same key", 2)
        return StopOutcome("replaced", done.view, replayed=False)

    @staticmethod
    def _replayed(group: Any, leg_id: str, key_id: str, fingerprint: str) -> StopOutcome | None:
        leg = group.leg(leg_id)
        for entry in leg.stop_loss.replacements or ():
            if entry.get("key_id") == key_id:
                if entry.get("fingerprint") != fingerprint:
                    raise StopConflict("IDEMPOTENCY_KEY_REUSED", "this Idempotency-Key was used with another "
                                                                 "stop_price", stop_view(group, leg))
                return StopOutcome("replaced", stop_view(group, leg), replayed=True)
        return None

    def _check_replaceable(self, group: Any, leg: Any) -> None:
        self._placed_or_conflict(group, leg)
        stop = leg.stop_loss
        if stop.cancel_requested_at is not None:
            raise StopConflict("STOP_CANCEL_PENDING", "a cancel of this stop was requested", stop_view(group, leg))
        if stop.status is not stops.LegStopStatus.WORKING:
            detail = "is being placed; retry shortly" if not stop.status.is_final else \
                f"is {stop.status.value}: nothing to move"
            raise StopConflict("STOP_NOT_WORKING", f"the stop {detail}", stop_view(group, leg))
        if self.engine.dry_run:
            raise StopConflict("DRY_RUN", "dry run is on: no order is sent, a replacement neither")

    @staticmethod
    def _check_price(venue: Any, group: Any, leg: Any, price: Decimal) -> None:
        """The new price against the current quote: a long's sell stop below the bid, a short's buy stop
        above the ask (at or through it, it would fire at once)."""
        if price == leg.stop_loss.stop_price:
            raise StopRefused("stop_price", "is the working stop's price already")
        try:
            quote = venue.get_latest_quote(leg.symbol, leg.asset_class)
        except BrokerError as exc:
            raise VenueBusy("BROKER_UNAVAILABLE", "no current quote to check the new stop against; retry",
                            exc.retry_after) from None
        touch = quote.bid if leg.direction > 0 else quote.ask
        if (leg.direction > 0 and price < touch) or (leg.direction < 0 and price > touch):
            return
        side, word = ("below", "bid") if leg.direction > 0 else ("above", "ask")
        raise StopRefused("stop_price", f"{dec_str(price)} must be {side} the current {word} {dec_str(touch)}",
                          code="STOP_PRICE_WRONG_SIDE")

    def _replace_at_venue(self, executor: Any, run: Any, leg_id: str, venue: Any, marker: Mapping[str, Any],
                          price: Decimal) -> None:
        stop = run.group.leg(leg_id).stop_loss
        old_id = stop.broker_order_id
        try:
            new = venue.replace_order(old_id, ReplaceRequest(client_order_id=marker["client_order_id"], stop_price=price))
        except DryRunBlocked:  # dry run switched on since the check: nothing was sent
            executor.update(run, stops.with_stop(run.group, leg_id, stops.drop_replace(stop)))
            raise StopConflict("DRY_RUN", "dry run is on: no order is sent, a replacement neither") from None
        except BrokerError as exc:
            if exc.retryable:
                raise _busy(exc) from None  # the marker stays: a retry (same key) or the sweeper looks it up
            new = self._lookup(venue, marker["client_order_id"]) if exc.code is BrokerErrorCode.DUPLICATE else None
            if new is None:
                if exc.code is BrokerErrorCode.DUPLICATE:
                    raise _busy(exc) from None
                # refused (e.g. it filled or was canceled meanwhile): drop the marker, record what it did
                executor.update(run, stops.with_stop(run.group, leg_id, stops.drop_replace(stop)))
                executor.follow_stop(run, leg_id)
                current = run.group.leg(leg_id)
                if current.stop_loss.status.is_final:
                    raise StopConflict("STOP_NOT_WORKING", f"the stop is {current.stop_loss.status.value}: nothing "
                                                           "to move", stop_view(run.group, current)) from None
                raise StopRefused(None, f"the venue refused the replacement: {exc.message or exc.code.value}") from None
        try:
            old = venue.get_order(old_id)  # what the replaced order filled before the venue replaced it
        except BrokerError as exc:
            raise _busy(exc) from None  # the marker stays: found by its client id next time
        adopt_replacement(executor, run, leg_id, marker, old, new)

    @staticmethod
    def _lookup(venue: Any, client_order_id: str) -> BrokerOrder | None:
        return lookup_by_client_id(venue, client_order_id, _RETRY)


_RETRY = "the venue did not answer; retry (a replace with the same Idempotency-Key)"


def _busy(exc: BrokerError) -> VenueBusy:
    return venue_busy(exc, _RETRY)
