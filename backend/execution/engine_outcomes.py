"""The single-leg engine's outcomes: every decision and placement finished in one commit.

Mixed into ``ExecutionEngine`` (backend/execution/engine.py). ``_finish_decision`` records a decision
that placed nothing (rejected, downgraded, dry run) and releases a claimed reservation in the same
commit; ``_finish_placed`` records a placed order — intent record, ledger row, history row, tax fill
and the exposure settled (a working order keeps the reservation of its unfilled remainder); both reuse
the pre-claim documents this request read (``_after_claim``, ``_take_finish_reads``, issue 17).
``_replay`` answers a stored final outcome as is (idempotent replay), ``_pending`` an outcome not known
yet (the sweeper continues), ``_refused`` a refusal before anything is written. ``account_key`` (the
exposure document's key of an intent) lives here and is imported back into engine.py.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from backend.domain.errors import RejectCode, Rejection
from backend.domain.money import ZERO
from backend.execution.intent import ExecutionContext, OrderIntent
from backend.execution.records import ExecutionResult, history_row, ledger_row, tax_fill
from backend.execution.router import RoutingDecision
from backend.execution.store_rules import intent_path
from backend.execution.wide_spread import record_fields
from backend.logs import log_event
from backend.ports.broker import BrokerError, BrokerOrder, BrokerPort
from backend.ports.store import ClaimResult, Finish, IntentRecord, IntentStatus
from backend.risk.gate import account_key_for


def account_key(intent: OrderIntent) -> str:
    return account_key_for(intent.broker_account_id, intent.symbol)


class EngineOutcomes:
    """Finish, replay and pending answers of ``ExecutionEngine`` (uses its ``store``, ``clock``,
    ``_finish_reads`` and ``_follow_at``)."""

    # --- outcomes --------------------------------------------------------------------------------
    def _intent_record(self, intent: OrderIntent, ctx: ExecutionContext, status: IntentStatus,
                       routing: RoutingDecision | None, **extra: Any) -> dict[str, Any]:
        account = {"account": ctx.account.to_dict()} if ctx.account is not None else {}
        return {"intent": intent.to_dict(), "tenant_id": ctx.tenant_id, "uid": ctx.uid, "status": status.value,
                "kind": "single", "updated_at": self.clock.now().isoformat(), **account, **record_fields(intent),
                **extra}

    def _finish_decision(self, intent: OrderIntent, ctx: ExecutionContext, status: str,
                         routing: RoutingDecision | None, rejection: Rejection | None, *,
                         claimed: bool = False, claimed_slot: int | None = None,
                         client_order_id: str | None = None, broker_name: str | None = None) -> ExecutionResult:
        """One commit for a decision that placed nothing; a claimed reservation is released in it."""
        now = self.clock.now()
        result = ExecutionResult(status=status, intent_id=intent.intent_id, tenant_id=ctx.tenant_id, uid=ctx.uid,
                                 trade_id=intent.intent_id, routing=routing, rejection=rejection,
                                 client_order_id=client_order_id, broker=broker_name)
        finish = Finish(
            tenant_id=ctx.tenant_id, intent_id=intent.intent_id, uid=ctx.uid,
            record=self._intent_record(intent, ctx, IntentStatus(status), routing, result=result.to_dict(),
                                       client_order_id=client_order_id),
            ledger_id=intent.intent_id,
            ledger=ledger_row(intent=intent, ctx=ctx, status=status, now=now, routing=routing, rejection=rejection,
                              broker_name=broker_name, client_order_id=client_order_id),
            account_key=account_key(intent) if claimed else None,
            reserved_signed_qty=intent.signed_qty if claimed else None,
            trade_day=now.date().isoformat() if claimed else None,
            release_slot=claimed_slot if claimed else None,
            prefetched=self._take_finish_reads(ctx.tenant_id, intent.intent_id),
            side_ops=_side_ops(ctx),
        )
        stored = self.store.finish(finish)
        if stored is None:
            _side_taken(ctx)
        if stored is not None and stored.data.get("result") and stored.data["result"].get("status") != status:
            return self._replay(stored)
        log_event(f"exec.{status}", severity="INFO" if status != "rejected" else "WARNING",
                  intent_id=intent.intent_id, tenant_id=ctx.tenant_id, reason=result.reason)
        return result

    def _finish_placed(self, intent: OrderIntent, ctx: ExecutionContext, routing: RoutingDecision | None,
                       venue: BrokerPort, coid: str, order: BrokerOrder) -> ExecutionResult:
        now = self.clock.now()
        result = ExecutionResult(status="placed", intent_id=intent.intent_id, tenant_id=ctx.tenant_id, uid=ctx.uid,
                                 trade_id=intent.intent_id, routing=routing, client_order_id=coid,
                                 broker_order_id=order.broker_order_id, broker=venue.name,
                                 order_status=order.state.value, filled_qty=order.filled_qty,
                                 filled_avg_price=order.filled_avg_price)
        filled_signed = order.filled_qty * intent.side.direction
        # A working order keeps the reservation of its unfilled remainder until it is final.
        release = intent.signed_qty if order.state.is_final else filled_signed
        record = self._intent_record(intent, ctx, IntentStatus.PLACED, routing, result=result.to_dict(),
                                     client_order_id=coid, broker_order_id=order.broker_order_id,
                                     order_final=order.state.is_final, broker=venue.name, fill_seq=0,
                                     reconcile_after=self._follow_at(intent, order))
        finish = Finish(
            tenant_id=ctx.tenant_id, intent_id=intent.intent_id, uid=ctx.uid, record=record,
            ledger_id=intent.intent_id,
            ledger=ledger_row(intent=intent, ctx=ctx, status="placed", now=now, routing=routing, order=order,
                              broker_name=venue.name, client_order_id=coid),
            history_id=intent.intent_id,
            history=history_row(intent=intent, ctx=ctx, now=now, routing=routing, order=order,
                                broker_name=venue.name, client_order_id=coid),
            account_key=account_key(intent), reserved_signed_qty=release, filled_signed_qty=filled_signed,
            trade_day=now.date().isoformat(),
            tax=tax_fill(trade_id=intent.intent_id, symbol=intent.symbol, asset_class=intent.asset_class.value,
                         side=intent.side.value, qty=order.filled_qty, price=order.filled_avg_price, fees=ZERO,
                         when=now, multiplier=intent.spec.multiplier, lot_ids=_lot_ids(intent)),
            prefetched=self._take_finish_reads(ctx.tenant_id, intent.intent_id),
        )
        stored = self.store.finish(finish)
        if stored is not None and stored.data.get("result") and \
                stored.data["result"].get("broker_order_id") != order.broker_order_id:
            return self._replay(stored)
        log_event("exec.placed", intent_id=intent.intent_id, tenant_id=ctx.tenant_id, broker=venue.name,
                  broker_order_id=order.broker_order_id, client_order_id=coid, order_status=order.state.value,
                  filled_qty=order.filled_qty, filled_avg_price=order.filled_avg_price)
        return result

    def _after_claim(self, tenant_id: str, intent_id: str, outcome: Any) -> None:
        """The intent's version after the claim: the one it committed (or unknown: read again)."""
        pending = getattr(self._finish_reads, "pending", None)
        if pending is None or pending[:2] != (tenant_id, intent_id):
            return
        reads = dict(pending[2])
        ip = intent_path(tenant_id, intent_id)
        if outcome.result is ClaimResult.CLAIMED and outcome.token is not None:
            # the record as the claim committed it at that version: the finish names only what it changes
            reads[ip] = (dict(outcome.committed or {"status": IntentStatus.RESERVED.value}), outcome.token)
        elif outcome.result is not ClaimResult.DAILY_LIMIT or outcome.token is not None:
            reads.pop(ip, None)
        self._finish_reads.pending = (tenant_id, intent_id, reads)

    def _take_finish_reads(self, tenant_id: str, intent_id: str) -> dict[str, Any] | None:
        """The pre-claim documents of this very intent (set by ``execute_intent`` for this thread), once."""
        pending = getattr(self._finish_reads, "pending", None)
        if pending is None or pending[:2] != (tenant_id, intent_id):
            return None
        self._finish_reads.pending = None
        return pending[2]

    def _refused(self, intent: OrderIntent, ctx: ExecutionContext, rejection: Rejection) -> ExecutionResult:
        """A refusal before anything is written (the account binding): a coded result, no record, no
        ledger row, nothing sent — the API answers it 403/400 (backend/execution/accounts.HTTP_STATUS)."""
        log_event("exec.refused", severity="WARNING", intent_id=intent.intent_id, tenant_id=ctx.tenant_id,
                  uid=ctx.uid, rejection=rejection)
        return ExecutionResult(status="rejected", intent_id=intent.intent_id, tenant_id=ctx.tenant_id, uid=ctx.uid,
                               trade_id=None, routing=None, rejection=rejection, extra={"persisted": False})

    def _pending(self, intent: OrderIntent, ctx: ExecutionContext, routing: RoutingDecision | None, coid: str,
                 broker_name: str | None, exc: BrokerError | None) -> ExecutionResult:
        rejection = exc.to_rejection() if exc is not None else None
        return ExecutionResult(status="pending", intent_id=intent.intent_id, tenant_id=ctx.tenant_id, uid=ctx.uid,
                               trade_id=intent.intent_id, routing=routing, client_order_id=coid, broker=broker_name,
                               rejection=rejection,
                               extra={"retry_after": exc.retry_after if exc is not None else None})

    def _replay(self, record: IntentRecord) -> ExecutionResult:
        data = record.data.get("result") or {}
        rejection = None
        if data.get("rejection"):
            rejection = Rejection(RejectCode(data["rejection"]["code"]), data["rejection"].get("detail", ""))
        routing = None
        if data.get("routing"):
            r = data["routing"]
            routing = RoutingDecision(should_execute=r["should_execute"], reason=r["reason"],
                                      spread_pct=_dec(r.get("spread_pct")),
                                      estimated_slippage=_dec(r.get("estimated_slippage")))
        log_event("exec.replayed", intent_id=record.intent_id, tenant_id=record.tenant_id, status=record.status.value)
        return ExecutionResult(status=data.get("status", record.status.value), intent_id=record.intent_id,
                               tenant_id=record.tenant_id, uid=record.data.get("uid", ""),
                               trade_id=data.get("trade_id"), routing=routing,
                               client_order_id=data.get("client_order_id"), broker_order_id=data.get("broker_order_id"),
                               broker=data.get("broker"), order_status=data.get("order_status"),
                               filled_qty=_dec(data.get("filled_qty")) or ZERO,
                               filled_avg_price=_dec(data.get("filled_avg_price")), rejection=rejection, replayed=True)


def _side_ops(ctx: ExecutionContext) -> tuple[Any, ...]:
    """The request's writes that ride the engine's first commit (issue 17), if not taken yet."""
    side = ctx.side_writes
    return side.pending() if side is not None else ()


def _side_taken(ctx: ExecutionContext) -> None:
    if ctx.side_writes is not None:
        ctx.side_writes.taken = True


def _lot_ids(intent: OrderIntent) -> Any:
    """A sale's specific lot identification, ``metadata.lot_ids = {lot_id: qty}`` (optional)."""
    value = intent.metadata.get("lot_ids")
    return value if isinstance(value, dict) else None


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))
