"""Build the stored documents of one execution: the intent record, the ledger row and the history row.

Pure functions. Every Decimal is stored as its exact string; timestamps are ISO-8601 UTC strings
(plus server timestamps added by the store). Field lists are documented in docs/ARCHITECTURE.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Mapping

from backend.domain.errors import Rejection
from backend.domain.money import ZERO, dec_str
from backend.domain.wire import encode as encode_decimals
from backend.execution.intent import ExecutionContext, OrderIntent
from backend.execution.router import RoutingDecision
from backend.ports.broker import BrokerOrder

SCHEMA_VERSION = 1
DEFAULT_LOT_METHOD = "FIFO"  # the tax engine's default when the user configured none (tax.state.applied_method)


@dataclass(frozen=True)
class ExecutionResult:
    """What ``execute_intent`` returns. ``status``: placed, downgraded, rejected, dry_run, or
    pending (the broker could not be reached and the outcome is not yet known: the reservation is
    kept and the intent is reconciled by client order id on retry or by the sweeper)."""

    status: str
    intent_id: str
    tenant_id: str
    uid: str
    trade_id: str | None
    routing: RoutingDecision | None
    client_order_id: str | None = None
    broker_order_id: str | None = None
    broker: str | None = None
    order_status: str | None = None
    filled_qty: Decimal = ZERO
    filled_avg_price: Decimal | None = None
    rejection: Rejection | None = None
    replayed: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        if self.rejection is not None:
            return str(self.rejection)
        return self.routing.reason if self.routing else ""

    def to_dict(self) -> dict[str, Any]:
        """The outcome as the API answers it and the intent document's ``result`` holds it: every
        decimal in its canonical string form (``backend.domain.wire``)."""
        return encode_decimals({
            "status": self.status,
            "intent_id": self.intent_id,
            "tenant_id": self.tenant_id,
            "uid": self.uid,
            "trade_id": self.trade_id,
            "reason": self.reason,
            "rejection": None if self.rejection is None else self.rejection.to_dict(),
            "routing": None if self.routing is None else self.routing.to_dict(),
            "client_order_id": self.client_order_id,
            "broker_order_id": self.broker_order_id,
            "broker": self.broker,
            "order_status": self.order_status,
            "filled_qty": dec_str(self.filled_qty),
            "filled_avg_price": dec_str(self.filled_avg_price),
        })


def _routing_fields(routing: RoutingDecision | None) -> dict[str, Any]:
    if routing is None:
        return {"quote": None, "spread_pct": None, "estimated_slippage": None, "arrival_mid": None}
    q = routing.quote
    return {
        "quote": None if q is None else {"bid": dec_str(q.bid), "ask": dec_str(q.ask),
                                         "mid": dec_str(q.mid), "timestamp": q.timestamp.isoformat()},
        "spread_pct": dec_str(routing.spread_pct),
        "estimated_slippage": dec_str(routing.estimated_slippage),
        "arrival_mid": None if q is None else dec_str(q.mid),
    }


def actual_slippage(intent: OrderIntent, routing: RoutingDecision | None, fill_price: Decimal | None
                    ) -> tuple[Decimal | None, Decimal | None]:
    """Realized slippage of the fill against the arrival mid: (share of mid, ticks); positive adverse."""
    if fill_price is None or routing is None or routing.quote is None:
        return None, None
    mid = routing.quote.mid
    adverse = (fill_price - mid) * intent.side.direction
    return adverse / mid, adverse / intent.spec.tick_size


# --------------------------------------------------------------------------------------------
# The ledger row and the history row: one schema each, one builder per row kind
# --------------------------------------------------------------------------------------------
# Every ledger row (tenants/{t}/ledger_trades) has exactly LEDGER_FIELDS (None where a field does
# not apply to its kind) and every history row (users/{uid}/portfolio/history/trades) exactly
# HISTORY_FIELDS, whatever wrote it; documented in docs/ARCHITECTURE.md ("Data model").

# "correction" (issue 13): an admin's correction of an earlier row (``corrects`` = its id, ``correction`` =
# {reason, corrected values, actor}); the original row is never changed. Built by correction_row below.
# "cancel" / "replace" (issue 15 item 6): order-management events of a working single order (built by
# order_event_row below; ``replaces`` links a replacement to the venue order it replaced). Neither is a
# fill: their ``filled_qty`` stays null, so sums over fills are unchanged.
LEDGER_KINDS = ("order", "fill", "group_fill", "rollback_fill", "group_decision", "correction", "cancel", "replace")
LEDGER_FIELDS = (
    "schema_version", "kind", "trade_id", "intent_id", "group_id", "leg_id", "tenant_id", "uid", "strategy_id",
    "broker_account_id", "venue_account_id", "symbol", "asset_class", "side", "qty", "order_type", "limit_price",
    "status",
    "reason_code", "reason", "quote", "spread_pct", "estimated_slippage", "arrival_mid", "intended_price",
    "broker", "client_order_id", "broker_order_id", "order_status", "filled_qty", "filled_avg_price", "notional",
    "fees", "actual_slippage_pct", "actual_slippage_ticks", "legs", "created_at", "trade_date",
    "corrects", "correction", "replaces",
)
HISTORY_FIELDS = (
    "schema_version", "history_id", "trade_id", "tenant_id", "uid", "broker_account_id", "venue_account_id",
    "group_id", "leg_id",
    "asset_class", "symbol", "side", "quantity", "ordered_quantity", "price", "notional", "cost_analysis", "tax",
    "strategy_id", "execution", "created_at",
)
COST_ANALYSIS_FIELDS = ("estimated_slippage", "spread_pct", "actual_slippage_pct", "actual_slippage_ticks",
                        "intended_price", "fees")
HISTORY_TAX_FIELDS = ("cost_basis", "proceeds", "lot_method", "trade_date", "tax_year")
EXECUTION_FIELDS = ("kind", "broker", "broker_account_id", "broker_order_id", "client_order_id", "order_status",
                    "intent_id", "group_id", "leg_id")


def _shaped(fields: tuple[str, ...], values: Mapping[str, Any], what: str) -> dict[str, Any]:
    unknown = set(values) - set(fields)
    if unknown:  # a programming error: the schema is the list above
        raise ValueError(f"{what}: fields outside the schema: {sorted(unknown)}")
    return {name: values.get(name) for name in fields}


def _ledger(**values: Any) -> dict[str, Any]:
    if values.get("kind") not in LEDGER_KINDS:
        raise ValueError(f"ledger row: unknown kind {values.get('kind')!r}")
    return _shaped(LEDGER_FIELDS, {"schema_version": SCHEMA_VERSION, **values}, "ledger row")


def _history(*, side: str, qty: Decimal, price: Decimal | None, notional: Decimal | None, fees: Decimal,
             now: datetime, cost: Mapping[str, Any], execution: Mapping[str, Any], **values: Any) -> dict[str, Any]:
    """A history row. ``tax.lot_method`` is None here: the store sets the method it applied to the
    fill's lot book in the same commit (``with_lot_method``)."""
    if notional is None:
        cost_basis = proceeds = None
    elif side == "buy":
        cost_basis, proceeds = notional + fees, None  # what was paid, fees included
    else:
        cost_basis, proceeds = None, notional - fees  # a sale's basis comes from the lots it closes
    return _shaped(HISTORY_FIELDS, {
        "schema_version": SCHEMA_VERSION, "side": side, "quantity": dec_str(qty), "price": dec_str(price),
        "notional": dec_str(notional), "created_at": now.isoformat(),
        "cost_analysis": _shaped(COST_ANALYSIS_FIELDS, {**cost, "fees": dec_str(fees)}, "cost_analysis"),
        "tax": _shaped(HISTORY_TAX_FIELDS, {"cost_basis": dec_str(cost_basis), "proceeds": dec_str(proceeds),
                                            "lot_method": None, "trade_date": now.date().isoformat(),
                                            "tax_year": now.year}, "tax"),
        "execution": _shaped(EXECUTION_FIELDS, execution, "execution"),
        **values}, "history row")


def with_lot_method(history: Mapping[str, Any], method: str | None) -> dict[str, Any]:
    """The history row with the lot method the store applied to its fill (unchanged when none was)."""
    if method is None or not isinstance(history.get("tax"), Mapping):
        return dict(history)
    return {**history, "tax": {**history["tax"], "lot_method": method}}


def with_cost_basis(history: Mapping[str, Any], closed: Mapping[str, str] | None) -> dict[str, Any]:
    """The history row with what its fill closed in the lot book (``BooksPlan.closed``): a sell's
    ``cost_basis`` = the basis of the LONG lots it consumed; a cover's ``proceeds`` = the short
    sale proceeds of the SHORT lots it closed. Unchanged when the fill closed no lot (a buy that
    opens, a sell that only opens a short: its basis is known at the cover)."""
    if not closed or not isinstance(history.get("tax"), Mapping):
        return dict(history)
    stamped = {name: closed[name] for name in ("cost_basis", "proceeds") if closed.get(name) is not None}
    return {**history, "tax": {**history["tax"], **stamped}}


def venue_account_of(ctx: ExecutionContext) -> str | None:
    """The venue's own account id of the intent's bound account (None before accounts existed)."""
    return ctx.account.venue_account_id if getattr(ctx, "account", None) is not None else None


def with_venue_account(row: dict[str, Any] | None, venue_account_id: str | None) -> dict[str, Any] | None:
    """A group row (ledger or history) stamped with the group's venue account id."""
    if row is not None and venue_account_id is not None:
        row["venue_account_id"] = venue_account_id
    return row


def _intent_fields(intent: OrderIntent, ctx: ExecutionContext) -> dict[str, Any]:
    return {"intent_id": intent.intent_id, "tenant_id": ctx.tenant_id, "uid": ctx.uid,
            "strategy_id": intent.strategy_id, "broker_account_id": intent.broker_account_id,
            "venue_account_id": venue_account_of(ctx),
            "symbol": intent.symbol, "asset_class": intent.asset_class.value, "side": intent.side.value,
            "order_type": intent.order_type.value, "limit_price": dec_str(intent.limit_price)}


def ledger_row(*, intent: OrderIntent, ctx: ExecutionContext, status: str, now: datetime,
               routing: RoutingDecision | None, rejection: Rejection | None = None,
               order: BrokerOrder | None = None, broker_name: str | None = None,
               client_order_id: str | None = None, fees: Decimal = ZERO) -> dict[str, Any]:
    """A single order's decision or placement (``kind: order``)."""
    filled = order.filled_qty if order else ZERO
    price = order.filled_avg_price if order else None
    slip_pct, slip_ticks = actual_slippage(intent, routing, price)
    notional = intent.spec.notional(filled, price) if price is not None else None
    return _ledger(
        kind="order", trade_id=intent.intent_id, **_intent_fields(intent, ctx), qty=dec_str(intent.qty),
        status=status, reason_code=None if rejection is None else rejection.code.value,
        reason=rejection and str(rejection) or (routing.reason if routing else None),
        **_routing_fields(routing), broker=broker_name, client_order_id=client_order_id,
        broker_order_id=order.broker_order_id if order else None, order_status=order.state.value if order else None,
        filled_qty=dec_str(filled), filled_avg_price=dec_str(price), notional=dec_str(notional),
        fees=dec_str(fees), actual_slippage_pct=dec_str(slip_pct), actual_slippage_ticks=dec_str(slip_ticks),
        created_at=now.isoformat(), trade_date=now.date().isoformat())


def fill_ledger_row(*, intent: OrderIntent, ctx: ExecutionContext, trade_id: str, now: datetime,
                    increment: BrokerOrder, broker_name: str | None, client_order_id: str | None) -> dict[str, Any]:
    """A later fill increment of a working single order (``kind: fill``, ``qty`` = the increment)."""
    price = increment.filled_avg_price
    notional = intent.spec.notional(increment.filled_qty, price) if price is not None else None
    return _ledger(
        kind="fill", trade_id=trade_id, **_intent_fields(intent, ctx), qty=dec_str(increment.filled_qty),
        status="fill", **_routing_fields(None), broker=broker_name, client_order_id=client_order_id,
        broker_order_id=increment.broker_order_id, order_status=increment.state.value,
        filled_qty=dec_str(increment.filled_qty), filled_avg_price=dec_str(price), notional=dec_str(notional),
        fees=dec_str(ZERO), created_at=now.isoformat(), trade_date=now.date().isoformat())


def history_row(*, intent: OrderIntent, ctx: ExecutionContext, now: datetime, routing: RoutingDecision | None,
                order: BrokerOrder, broker_name: str, client_order_id: str, fees: Decimal = ZERO,
                trade_id: str | None = None, kind: str = "order") -> dict[str, Any]:
    """The user's portfolio history entry for a placed single order (``kind: order``) or a later fill
    increment of it (``kind: fill``, ``trade_id`` = the increment's id)."""
    price = order.filled_avg_price
    notional = intent.spec.notional(order.filled_qty, price) if price is not None else None
    slip_pct, _ = actual_slippage(intent, routing, price)
    trade_id = trade_id or intent.intent_id
    return _history(
        side=intent.side.value, qty=order.filled_qty, price=price, notional=notional, fees=fees, now=now,
        cost={"estimated_slippage": dec_str(routing.estimated_slippage if routing else None),
              "spread_pct": dec_str(routing.spread_pct if routing else None),
              "actual_slippage_pct": dec_str(slip_pct)},
        execution={"kind": kind, "broker": broker_name, "broker_account_id": intent.broker_account_id,
                   "broker_order_id": order.broker_order_id, "client_order_id": client_order_id,
                   "order_status": order.state.value, "intent_id": intent.intent_id},
        history_id=trade_id, trade_id=trade_id, tenant_id=ctx.tenant_id, uid=ctx.uid,
        broker_account_id=intent.broker_account_id,  # history rows are labelled and filtered by account
        venue_account_id=venue_account_of(ctx),
        asset_class=intent.asset_class.value, symbol=intent.symbol, ordered_quantity=dec_str(intent.qty),
        strategy_id=intent.strategy_id)


def group_fill_rows(*, group: Any, leg: Any, trade_id: str, kind: str, side: str, qty: Decimal,
                    ordered_qty: Decimal, price: Decimal, client_order_id: str, broker_order_id: str | None,
                    now: datetime, slippage_ticks: Decimal | None, account: str
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(ledger row, history row) of a group leg's fill (``group_fill``) or a rollback order's
    (``rollback_fill``), labelled with the group's account."""
    notional = leg.spec.notional(qty, price)
    ids = {"group_id": group.group_id, "leg_id": leg.leg_id}
    ledger = _ledger(
        kind=kind, trade_id=trade_id, **ids, tenant_id=group.tenant_id, uid=group.uid,
        strategy_id=group.strategy_id, broker_account_id=account, symbol=leg.symbol,
        asset_class=leg.asset_class.value, side=side, qty=dec_str(qty), order_type="market", status=kind,
        intended_price=dec_str(leg.intended_price), client_order_id=client_order_id,
        broker_order_id=broker_order_id, order_status="filled", filled_qty=dec_str(qty),
        filled_avg_price=dec_str(price), notional=dec_str(notional), fees=dec_str(ZERO),
        actual_slippage_ticks=dec_str(slippage_ticks), created_at=now.isoformat(),
        trade_date=now.date().isoformat())
    history = _history(
        side=side, qty=qty, price=price, notional=notional, fees=ZERO, now=now,
        cost={"intended_price": dec_str(leg.intended_price), "actual_slippage_ticks": dec_str(slippage_ticks)},
        execution={"kind": kind, "broker_account_id": account, "broker_order_id": broker_order_id,
                   "client_order_id": client_order_id, "order_status": "filled", **ids},
        history_id=trade_id, trade_id=trade_id, tenant_id=group.tenant_id, uid=group.uid,
        broker_account_id=account, **ids, asset_class=leg.asset_class.value, symbol=leg.symbol,
        ordered_quantity=dec_str(ordered_qty), strategy_id=group.strategy_id)
    return ledger, history


# The fields a correction copies from the row it corrects (who, what, where), so it can be filtered
# and read next to it; its own numbers stay null (it is not a fill: sums over fills are unchanged).
CORRECTION_COPIED_FIELDS = ("intent_id", "group_id", "leg_id", "tenant_id", "uid", "strategy_id",
                            "broker_account_id", "venue_account_id", "symbol", "asset_class")


def correction_row(*, original_id: str, original: Mapping[str, Any], trade_id: str, reason: str,
                   corrected: Mapping[str, Any], actor_uid: str, actor_role: str, now: datetime) -> dict[str, Any]:
    """An admin's correction of ledger row ``original_id`` (``kind``/``status``: correction): the
    original's identity fields, ``corrects`` = its id, ``correction`` = {reason, fields: {name: {from,
    to}}, actor_uid, actor_role}; ``reason_code`` CORRECTION and ``reason`` the admin's text."""
    copied = {name: original.get(name) for name in CORRECTION_COPIED_FIELDS if name in LEDGER_FIELDS}
    fields = {name: {"from": original.get(name), "to": value} for name, value in sorted(corrected.items())}
    return _ledger(kind="correction", status="correction", trade_id=trade_id, **copied, reason_code="CORRECTION",
                   reason=reason, corrects=original_id,
                   correction={"reason": reason, "fields": fields, "actor_uid": actor_uid, "actor_role": actor_role},
                   created_at=now.isoformat(), trade_date=now.date().isoformat())

GROUP_DECISION_STATUSES = ("filled", "partially_filled", "rejected", "rolled_back", "failed_needs_attention",
                           "dry_run")


def group_decision_row(*, group: Any, trade_id: str, status: str, reason: str | None, now: datetime,
                       account: str, reason_code: str | None = None) -> dict[str, Any]:
    """A group's one decision (``kind: group_decision``), written when the group becomes final:
    ``status`` its final status (``GROUP_DECISION_STATUSES``), ``reason_code``/``reason`` its coded
    rejection. Its fills are separate rows (``group_fill``, ``rollback_fill``)."""
    if status not in GROUP_DECISION_STATUSES:
        raise ValueError(f"group decision row: unknown status {status!r}")
    return _ledger(
        kind="group_decision", trade_id=trade_id, group_id=group.group_id, tenant_id=group.tenant_id,
        uid=group.uid, strategy_id=group.strategy_id, broker_account_id=account, status=status,
        reason_code=reason_code, reason=reason,
        legs=[{"leg_id": leg.leg_id, "symbol": leg.symbol, "asset_class": leg.asset_class.value,
               "side": leg.side.value, "qty": dec_str(leg.units), "intended_price": dec_str(leg.intended_price)}
              for leg in group.legs],
        created_at=now.isoformat(), trade_date=now.date().isoformat())


def tax_fill(*, trade_id: str, symbol: str, asset_class: str, side: str, qty: Decimal, price: Decimal | None,
             fees: Decimal, when: datetime, multiplier: Decimal, lot_ids: Mapping[str, Any] | None = None):
    """The tax-lot input for one fill (None when nothing filled). ``lot_ids`` (a sale's specific
    identification, ``{lot_id: qty}``) is used only when it covers exactly the filled quantity."""
    if price is None or qty <= 0:
        return None
    from backend.tax import Fill

    named = None
    if side == "sell" and lot_ids:
        try:
            named = {str(k): Decimal(str(v)) for k, v in lot_ids.items()}
        except (ArithmeticError, ValueError):
            named = None
        if named is not None and sum(named.values()) != qty:
            named = None  # a partial fill cannot honour the full identification: default ordering
    return Fill(trade_id=trade_id, symbol=symbol, side=side, qty=qty, price=price, timestamp=when,
                asset_class=asset_class, fees=fees, multiplier=multiplier if asset_class == "OPTIONS" else None,
                lot_ids=named)


ORDER_EVENT_STATUSES = {"cancel": "canceled", "replace": "replaced"}


def order_event_row(*, kind: str, trade_id: str, intent: OrderIntent, ctx: ExecutionContext, now: datetime,
                    broker_name: str | None, client_order_id: str | None, broker_order_id: str | None,
                    order_status: str | None, qty: Decimal | None, reason: str,
                    replaces: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A cancel or a replace of a working single order (issue 15 item 6; ``backend/execution/
    order_management.py``). ``cancel``: ``qty`` = the unfilled remainder the venue canceled, ids of the
    canceled order. ``replace``: ids and ``qty`` of the NEW venue order, ``replaces`` = the replaced
    order {broker_order_id, client_order_id, qty, filled_qty, limit_price, stop_price}. The intent's
    fields (``limit_price`` …) are those of the order after the event. ``filled_qty`` stays null: fills
    are their own rows (``kind: fill``), folded in before the event."""
    if kind not in ORDER_EVENT_STATUSES:
        raise ValueError(f"order event row: unknown kind {kind!r}")
    return _ledger(kind=kind, trade_id=trade_id, **_intent_fields(intent, ctx), qty=dec_str(qty),
                   status=ORDER_EVENT_STATUSES[kind], reason_code=f"ORDER_{kind.upper()}", reason=reason,
                   broker=broker_name, client_order_id=client_order_id, broker_order_id=broker_order_id,
                   order_status=order_status, replaces=None if replaces is None else dict(replaces),
                   created_at=now.isoformat(), trade_date=now.date().isoformat())

