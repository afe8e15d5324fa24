"""Before anything is written or sent: can every record of this execution be stored?

Nothing that can fail deterministically may run after an order reaches a venue. The writes that
record a fill (intent record, ledger row, history row, metrics shard, exposure, tax book, group
and leg documents) are built from the request, so whether Firestore will accept their names, types
and sizes is known before the first write. These functions build the user-controlled part of each
of those writes up front and run ``backend.domain.storable.check_storable`` on it; a refusal is an
``InvalidInput`` (HTTP 400, a rejected intent document) with nothing written and no order sent.

What the venue adds later (order ids, states, prices) is bounded by the adapters, not checked here.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from backend.domain.errors import InvalidInput, RejectCode
from backend.domain.storable import check_storable
from backend.execution.intent import ExecutionContext, OrderIntent

_PROBE_COID = "x-" + "0" * 46  # as long as any client order id (48 characters)


def _metrics_probe(strategy_id: str) -> dict[str, Any]:
    from backend.execution.metrics import strategy_bucket

    return {"day": "2000-01-01", "by_strategy": {strategy_bucket(strategy_id, ()): {"decisions": 1}}}


def check_intent_writes(intent: OrderIntent, ctx: ExecutionContext, now: datetime) -> None:
    """Raise ``InvalidInput`` unless every record the single-leg flow writes for ``intent`` can be
    stored (see the module docstring)."""
    from backend.execution.engine import account_key
    from backend.execution.records import ledger_row
    from backend.tax.state import book_key

    t, uid, iid = ctx.tenant_id, ctx.uid, intent.intent_id
    check_storable({"intent": intent.to_dict(), "tenant_id": t, "uid": uid, "client_order_id": _PROBE_COID},
                   f"tenants/{t}/order_intents/{iid}")
    ledger = ledger_row(intent=intent, ctx=ctx, status="placed", now=now, routing=None, broker_name="venue",
                        client_order_id=_PROBE_COID)
    check_storable(ledger, f"tenants/{t}/ledger_trades/{iid}--f999")
    # The history row carries the same user-controlled values as the ledger row (checked above):
    # only its path's names are new.
    check_storable({}, f"users/{uid}/portfolio/history/trades/{iid}--f999")
    check_storable(_metrics_probe(intent.strategy_id), f"tenants/{t}/metrics/2000-01-01__0")
    check_storable({}, f"tenants/{t}/exposure/{account_key(intent)}")
    check_storable({}, f"users/{uid}/tax_books/{book_key(intent.symbol)}")


def check_group_writes(doc: Mapping[str, Any], tenant_id: str) -> None:
    """Raise ``InvalidInput`` unless the group document, its leg documents, its fill rows and its
    metrics and tax-book names can be stored — before the group is created or any leg is sent."""
    from backend.tax.state import book_key

    gid, uid = doc.get("group_id"), doc.get("uid")
    check_storable(doc, f"tenants/{tenant_id}/execution_groups/{gid}")
    for leg in doc.get("legs") or ():
        leg_id = leg.get("leg_id")
        check_storable(leg, f"tenants/{tenant_id}/execution_groups/{gid}/legs/{leg_id}")
        check_storable({}, f"tenants/{tenant_id}/ledger_trades/{gid}--{leg_id}--rb999")
        check_storable({}, f"users/{uid}/portfolio/history/trades/{gid}--{leg_id}--rb999")
        check_storable({}, f"users/{uid}/tax_books/{book_key(str(leg.get('symbol')))}")
    check_storable(_metrics_probe(str(doc.get("strategy_id"))), f"tenants/{tenant_id}/metrics/2000-01-01__0")


def lot_book_path(intent: OrderIntent, ctx: ExecutionContext) -> str:
    """The lot book an intent's fills advance (read by the engine's batched pre-claim read)."""
    from backend.execution.store_rules import book_path
    from backend.tax.state import book_key

    return book_path(ctx.uid, book_key(intent.symbol))


def check_lot_book(intent: OrderIntent, ctx: ExecutionContext, book: Mapping[str, Any] | None, *,
                   qty: Any = None) -> None:
    """Raise ``lot_capacity.LotBookFull`` (an ``InvalidInput``: HTTP 400 on ``qty``, a rejected intent
    document; its reason starts with ``LOT_BOOK_FULL``) when ``book`` — the user's lot book of the
    symbol, as read — has no room for one more order and ``intent`` (bound to its account) can open a
    lot in it. ``qty``: the quantity to judge (a replace that raises it: the new quantity)."""
    from backend.execution import lot_capacity
    from backend.tax.state import SHORT_SELLING_CLASSES, book_label

    lot_capacity.check_order(book, lot_book_path(intent, ctx), symbol=intent.symbol, side=intent.side.value,
                             qty=intent.qty if qty is None else qty,
                             book=book_label(ctx.tenant_id, intent.broker_account_id),
                             can_short=intent.asset_class in SHORT_SELLING_CLASSES)


def check_lot_book_in_store(store: Any, intent: OrderIntent, ctx: ExecutionContext, *, qty: Any = None) -> None:
    """``check_lot_book`` reading the book itself (one ``get_all``): for a caller without a batched
    read that already holds it (order management's replace that raises the quantity)."""
    path = lot_book_path(intent, ctx)
    check_lot_book(intent, ctx, store.get_all([path]).get(path, (None, None))[0], qty=qty)


def lot_book_rejection(intent: OrderIntent, ctx: ExecutionContext, book: Mapping[str, Any] | None, *,
                       qty: Any = None) -> Any:
    """``check_lot_book`` as a coded ``Rejection`` (``LOT_BOOK_FULL``) or None, for callers that answer
    with rejections (a replace that raises the quantity: ``qty`` = the new quantity; ``book`` read in
    the same ``get_all`` as its risk documents, at ``lot_book_path(intent, ctx)``)."""
    from backend.domain.errors import RejectCode, Rejection
    from backend.execution.lot_capacity import CODE, LotBookFull

    try:
        check_lot_book(intent, ctx, book, qty=qty)
    except LotBookFull as full:
        return Rejection(RejectCode.LOT_BOOK_FULL, full.reason.removeprefix(CODE + ": "))
    return None


TRADE_ID_IN_USE = RejectCode.TRADE_ID_IN_USE.value


class TradeIdInUse(InvalidInput):
    """An intent id this user's trade history already holds, from another tenant. A single order's
    trade id is its intent id, chosen per tenant, but the user's rows are per uid: its history row
    (``users/{uid}/portfolio/history/trades/{id}``), lot ids and disposals. The finish creates them
    *after* the order was sent, so a reused id would be refused there forever, the order filled and
    unrecorded; it is refused here instead, before anything is written or sent. An ``InvalidInput``
    (HTTP 400 on ``intent_id``, a rejected intent document; its reason starts with the code)."""

    code = TRADE_ID_IN_USE

    def __init__(self, intent_id: str):
        super().__init__("intent_id", f"{TRADE_ID_IN_USE}: this user's trade history already holds a trade "
                                      f"{intent_id!r} (placed for another tenant); choose another intent id")


def check_trade_id(intent: OrderIntent, ctx: ExecutionContext, history_row: Mapping[str, Any] | None) -> None:
    """Raise ``TradeIdInUse`` when the user's history row of the intent's id exists (``history_row`` as
    read, at ``store_rules.history_path(ctx.uid, intent.intent_id)``). Called for an intent with no
    final and no reserved record of its own tenant (those replay or resume first): its row can only be
    another tenant's trade."""
    if history_row is not None:
        raise TradeIdInUse(intent.intent_id)
