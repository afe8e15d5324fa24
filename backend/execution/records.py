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
from backend.execution.intent import ExecutionContext, OrderIntent
from backend.execution.router import RoutingDecision
from backend.ports.broker import BrokerOrder

SCHEMA_VERSION = 1
DEFAULT_LOT_METHOD = "FIFO"


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
        return {
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
        }


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


def ledger_row(*, intent: OrderIntent, ctx: ExecutionContext, status: str, now: datetime,
               routing: RoutingDecision | None, rejection: Rejection | None = None,
               order: BrokerOrder | None = None, broker_name: str | None = None,
               client_order_id: str | None = None, fees: Decimal = ZERO) -> dict[str, Any]:
    filled = order.filled_qty if order else ZERO
    price = order.filled_avg_price if order else None
    slip_pct, slip_ticks = actual_slippage(intent, routing, price)
    notional = intent.spec.notional(filled, price) if price is not None else None
    return {
        "schema_version": SCHEMA_VERSION,
        "trade_id": intent.intent_id,
        "intent_id": intent.intent_id,
        "tenant_id": ctx.tenant_id,
        "uid": ctx.uid,
        "strategy_id": intent.strategy_id,
        "broker_account_id": intent.broker_account_id,
        "symbol": intent.symbol,
        "asset_class": intent.asset_class.value,
        "side": intent.side.value,
        "qty": dec_str(intent.qty),
        "order_type": intent.order_type.value,
        "limit_price": dec_str(intent.limit_price),
        "status": status,
        "reason_code": None if rejection is None else rejection.code.value,
        "reason": rejection and str(rejection) or (routing.reason if routing else None),
        **_routing_fields(routing),
        "broker": broker_name,
        "client_order_id": client_order_id,
        "broker_order_id": order.broker_order_id if order else None,
        "order_status": order.state.value if order else None,
        "filled_qty": dec_str(filled),
        "filled_avg_price": dec_str(price),
        "notional": dec_str(notional),
        "fees": dec_str(fees),
        "actual_slippage_pct": dec_str(slip_pct),
        "actual_slippage_ticks": dec_str(slip_ticks),
        "kind": "order",
        "created_at": now.isoformat(),
        "trade_date": now.date().isoformat(),
    }


def history_row(*, intent: OrderIntent, ctx: ExecutionContext, now: datetime, routing: RoutingDecision | None,
                order: BrokerOrder, broker_name: str, client_order_id: str, fees: Decimal = ZERO,
                lot_method: str = DEFAULT_LOT_METHOD) -> dict[str, Any]:
    """The user's portfolio history entry for a placed trade (cost analysis and tax fields)."""
    price = order.filled_avg_price
    filled = order.filled_qty
    notional = intent.spec.notional(filled, price) if price is not None else None
    slip_pct, _ = actual_slippage(intent, routing, price)
    if notional is None:
        cost_basis = None
    elif intent.side.value == "buy":
        cost_basis = notional + fees  # what was paid, fees included
    else:
        cost_basis = None  # a sale's basis comes from the lots it closes (tax-lot matching)
    return {
        "schema_version": SCHEMA_VERSION,
        "history_id": intent.intent_id,
        "trade_id": intent.intent_id,
        "tenant_id": ctx.tenant_id,
        "broker_account_id": intent.broker_account_id,  # history rows are labelled and filtered by account
        "asset_class": intent.asset_class.value,
        "symbol": intent.symbol,
        "side": intent.side.value,
        "quantity": dec_str(filled),
        "ordered_quantity": dec_str(intent.qty),
        "price": dec_str(price),
        "notional": dec_str(notional),
        "cost_analysis": {
            "estimated_slippage": dec_str(routing.estimated_slippage if routing else None),
            "spread_pct": dec_str(routing.spread_pct if routing else None),
            "actual_slippage_pct": dec_str(slip_pct),
            "fees": dec_str(fees),
        },
        "tax": {
            "cost_basis": dec_str(cost_basis),
            "proceeds": dec_str(notional - fees) if (notional is not None and intent.side.value == "sell") else None,
            "lot_method": lot_method,
            "trade_date": now.date().isoformat(),
            "tax_year": now.year,
        },
        "strategy_id": intent.strategy_id,
        "execution": {
            "broker": broker_name,
            "broker_account_id": intent.broker_account_id,
            "broker_order_id": order.broker_order_id,
            "client_order_id": client_order_id,
            "order_status": order.state.value,
            "intent_id": intent.intent_id,
        },
        "created_at": now.isoformat(),
    }


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
