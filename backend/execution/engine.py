"""ExecutionEngine: intent → smart routing → risk → broker → ledger and history.

The public names of seed 001 (``ExecutionEngine, AlpacaBroker, SmartRouter, RiskManager,
OrderIntent, MarketDataProvider``) and seed 000 (``ExecutionLeg, ExecutionGroup``) import from here.

Single-leg flow and its persistence (see docs/ARCHITECTURE.md):
1. a stored final outcome for the intent id is returned as is (idempotent replay);
2. routing: quote → cost check (downgrade) or unusable quote (rejection) — one ``finish`` commit;
3. venue and risk pre-checks (kill switch, daily trades, position) — a rejection is one commit;
4. ``claim``: reservation persisted before the broker is called (lease, daily slot, exposure);
5. submit with a client order id derived from tenant + intent id (a retry cannot double it);
6. ``finish``: ledger row, history row, exposure settled — one commit.

``ExecutionEngine`` is the façade: the construction, the account binding and venue selection, the flow
above (steps 1-5, the batched pre-claim read, the resume of a reserved intent) and the group entry
points are here; the rest are mixins: backend/execution/engine_outcomes.py (``EngineOutcomes``: the
one-commit ``finish`` of every decision and placement, the replay of a stored outcome, the pre-claim
documents a finish reuses) and backend/execution/engine_followup.py (``EngineFollowUp``: the sweeper's
``reconcile_intent`` of a working order — fill increments, the wide-spread limit's timeout, the
remainder released once final). Names other modules import from here (``account_key``) are imported back.
"""
from __future__ import annotations

import copy
import threading
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

from backend.domain.clock import Clock, SystemClock
from backend.domain.errors import RejectCode, Rejection
from backend.execution.accounts import AUTO_DEFAULT_ACCOUNT_PREFIX, AccountBinder, Bound, stored_binding
from backend.ports.accounts import VenueUnavailable
from backend.domain.capabilities import check_capability
from backend.execution.client_ids import checked_order
from backend.execution.engine_followup import EngineFollowUp, _order_request
from backend.execution.engine_outcomes import EngineOutcomes, _side_ops, _side_taken, account_key
from backend.execution.instruments import check_instrument
from backend.execution.intent import ExecutionContext, OrderIntent, client_order_id_for
from backend.execution.pre_claim import (AccountHints, PrefetchedDocs, PreClaimRead, finish_paths, pre_claim_plan,
                                         read_pre_claim)
from backend.execution.preflight import check_intent_writes, check_lot_book, check_trade_id, lot_book_path
from backend.execution.records import ExecutionResult
from backend.execution.router import MarketDataProvider, RoutingDecision, SmartRouter
from backend.execution.wide_spread import expired_before_sent, fallback_from_record, limit_capability, limit_instead_of_wait
from backend.logs import log_event
from backend.ports.broker import BrokerError, BrokerErrorCode, BrokerOrder, BrokerPort, OrderRequest
from backend.ports.store import ACCOUNT_LIMIT, Claim, ClaimResult, ExecutionStore, IntentRecord, IntentStatus
from backend.execution.store_rules import counts_near_limit, history_path, intent_path
from backend.risk.manager import RiskManager, RiskSnapshot
from backend.settings import ExecSettings

__all__ = ["ExecutionEngine", "AlpacaBroker", "SmartRouter", "RiskManager", "OrderIntent", "MarketDataProvider",
           "ExecutionContext", "ExecutionResult", "ExecutionLeg", "ExecutionGroup", "PaperBroker"]


def __getattr__(name: str) -> Any:
    # Adapters load on first use, through the composition root: importing the engine must not
    # import alpaca-py (cold starts).
    if name in ("AlpacaBroker", "PaperBroker"):
        from backend import bootstrap

        return bootstrap.seed_adapter(name)
    if name in ("ExecutionLeg", "ExecutionGroup"):
        from backend.execution import groups

        return getattr(groups, name)
    raise AttributeError(name)


class ExecutionEngine(EngineOutcomes, EngineFollowUp):
    """Arguments left out come from the composition root (``backend/bootstrap.py``): settings from the
    environment, the embedded paper venue, the store ``default_store()`` picks. ``broker`` is a
    ``BrokerRouter`` or one venue (wrapped in a one-route router); ``self.broker`` keeps what was
    passed, ``self.venues`` is the router every order and quote goes through."""

    def __init__(self, broker: Any = None, router: SmartRouter | None = None, risk: RiskManager | None = None,
                 enable_smart_routing: bool = True, dry_run: bool | None = None, *,
                 store: ExecutionStore | None = None, clock: Clock | None = None,
                 settings: ExecSettings | None = None, accounts: AccountBinder | None = None,
                 venue_pool: Any = None, books_per_account: bool | None = None):
        from backend import bootstrap

        self.settings = settings or bootstrap.build_settings()
        self.clock = clock or SystemClock()
        self.broker = broker if broker is not None else bootstrap.paper_broker(clock=self.clock)
        self.venues = bootstrap.build_router(self.broker)
        self.router = router or bootstrap.build_smart_router(self.settings)
        self.router.bind(MarketDataProvider(self.venues), self.clock)  # quotes from the venue of the class
        self.risk = risk or bootstrap.build_risk(self.settings)
        self.enable_smart_routing = enable_smart_routing
        self.dry_run = self.settings.dry_run if dry_run is None else bool(dry_run)
        # the one pre-trade gate (backend/risk/gate.py) for single orders and group legs; it reads
        # self.dry_run when asked, so turning dry run on also blocks work already in flight
        self.gate = bootstrap.build_gate(self.risk, lambda: self.dry_run)
        self._guarded: dict[int, Any] = {}
        self.store = store if store is not None else bootstrap.build_store()
        self.group_drive_seconds = 50.0  # per invocation; the sweeper continues a longer group
        # issue 12: every new intent and group binds to an account (backend/execution/accounts.py);
        # its venues come from the pool (one router per account, cached)
        self.accounts = accounts if accounts is not None else AccountBinder(
            self.store, self.clock, mode=self.settings.accounts_mode or "auto")
        # books_per_account: the paper venue keeps one book per account — the default when the engine
        # builds its own (embedded, deployed) venue; a venue instance passed in is one venue account
        self._account_hints = AccountHints()  # which documents the pre-claim read fetches (issue 17)
        self._finish_reads = threading.local()  # the pre-claim documents a placed trade's finish uses
        self.venue_pool = venue_pool if venue_pool is not None else bootstrap.build_venue_pool(
            None, None, self.clock, self.store, self.venues,
            deployment_books=(broker is None) if books_per_account is None else books_per_account)

    # --- accounts and venue selection ---------------------------------------------------------
    def bind_account(self, tenant_id: str, uid: str, account_id: str | None,
                     asset_classes: Any) -> Bound | Rejection:
        """The account a new intent or group of ``uid`` trades (or a coded refusal, nothing written)."""
        return self.accounts.bind(tenant_id, uid, account_id, asset_classes)

    def venues_for(self, tenant_id: str, binding: Any) -> Any:
        """The router of a bound account's venues; the deployment's router for unbound (older) work."""
        if binding is None:
            return self.venues
        return self.venue_pool.router_for(tenant_id, binding)

    def broker_for(self, intent: OrderIntent, ctx: ExecutionContext | None = None) -> BrokerPort | Rejection:
        """The intent's venue, wrapped by the gate's dry-run guard (no submit while dry run is on)."""
        venues = self.venues if ctx is None else self.venues_for(ctx.tenant_id, ctx.account)
        return self.gate.route(venues, intent.asset_class, self._guarded)

    # --- the flow ----------------------------------------------------------------------------
    def execute_intent(self, intent: OrderIntent, context: ExecutionContext | None = None) -> ExecutionResult:
        try:
            return self._execute_intent(intent, context)
        finally:
            self._finish_reads.pending = None  # the pre-claim documents never outlive their request

    def _execute_intent(self, intent: OrderIntent, context: ExecutionContext | None = None) -> ExecutionResult:
        ctx = intent.resolve_context(context, self.settings.default_tenant_id, self.settings.default_uid)
        check_intent_writes(intent, ctx, self.clock.now())  # every later write storable: refuse before any
        log_event("exec.intent_received", intent_id=intent.intent_id, tenant_id=ctx.tenant_id, uid=ctx.uid,
                  symbol=intent.symbol, asset_class=intent.asset_class.value, side=intent.side.value,
                  qty=intent.qty, strategy_id=intent.strategy_id)
        day = self.clock.now().date().isoformat()
        # issue 17: the intent, the binding's documents, the risk documents + slot count and what the
        # finish reads, in one round trip (backend/execution/pre_claim.py); None: a store without it
        pre = self._read_pre_claim(intent, ctx, day)
        existing = (self.store.get_intent(ctx.tenant_id, intent.intent_id) if pre is None
                    else _record_of(ctx.tenant_id, intent.intent_id, pre.docs[intent_path(ctx.tenant_id,
                                                                                          intent.intent_id)][0]))
        if ctx.identity_check is not None:  # the account lookup that ran alongside the read
            ctx.identity_check()
        if ctx.rate_check is not None:  # the rate limiter's shared counts, read in the same round trip
            ctx.rate_check(pre.docs if pre is not None else self.store.get_all(list(ctx.rate_check.paths)))
        if ctx.record_check is not None:  # the API's check of a client-chosen id, on the record just read
            ctx.record_check(existing)
        if existing is not None and existing.status.is_final:
            return self._replay(existing)
        if existing is not None and existing.status is IntentStatus.RESERVED:
            return self._resume(intent, ctx, existing)
        if pre is not None:  # what this intent's finish reads, as read now (a moved document is re-read)
            self._finish_reads.pending = (ctx.tenant_id, intent.intent_id, pre.subset(
                [intent_path(ctx.tenant_id, intent.intent_id),
                 *finish_paths(ctx.tenant_id, ctx.uid, intent.intent_id, intent.symbol, day)]))

        self._check_trade_id(intent, ctx, pre)  # another tenant's trade of this user holds the id: 400
        bound = self._bind(ctx, intent, pre)
        if isinstance(bound, Rejection):  # not the caller's account (or closed, halted, ...): nothing written
            return self._refused(intent, ctx, bound)
        intent = intent.with_account(bound.account_id)
        ctx = replace(ctx, account=bound.binding)
        self._check_lot_book(intent, ctx, pre)  # a full lot book refuses an order that opens lots: 400
        try:
            venue = self.broker_for(intent, ctx)  # before the quote: FOREX must never reach a venue without FX
        except VenueUnavailable as exc:  # the account's venue cannot be built (connection, credentials)
            return self._refused(intent, ctx, exc.rejection)
        if isinstance(venue, Rejection):
            return self._finish_decision(intent, ctx, "rejected", None, venue)
        # what the venue can hold for this class (order type, time in force, order class): the same
        # table the paper venue enforces, before anything is read or sent
        rejection = check_capability(venue.name, intent.asset_class, intent) or limit_capability(venue.name, intent)
        if rejection is not None:
            return self._finish_decision(intent, ctx, "rejected", None, rejection)
        # the venue's own instrument metadata (listed, tradable, lot, tick): before any quote is read
        rejection = check_instrument(venue, intent.symbol, intent.asset_class, intent.qty, intent.limit_price)
        if rejection is not None:
            return self._finish_decision(intent, ctx, "rejected", None, rejection)

        routing = self._route(intent, ctx)
        fallback = limit_instead_of_wait(intent, routing, self.clock.now()) if routing is not None else None
        if fallback is not None:  # issue 15 item 5: the intent opted in to a limit instead of WAIT
            intent = intent.as_wide_spread_limit(fallback)
            routing = replace(routing, should_execute=True, reason=fallback.reason)
            log_event("exec.wide_spread_limit", intent_id=intent.intent_id, reason=fallback.reason,
                      limit_price=fallback.limit_price, deadline=fallback.deadline.isoformat())
            rejection = check_instrument(venue, intent.symbol, intent.asset_class, intent.qty, intent.limit_price)
            if rejection is not None:
                return self._finish_decision(intent, ctx, "rejected", routing, rejection)
        if routing is not None and not routing.should_execute:
            status = "downgraded" if routing.downgraded else "rejected"
            return self._finish_decision(intent, ctx, status, routing, routing.rejection)

        key = account_key(intent)
        try:  # read with the pre-claim documents unless the bound account was not the expected one
            snapshot = (pre.snapshot_for(key) if pre is not None else None) or \
                self.store.risk_snapshot(ctx.tenant_id, key, day, account_id=bound.account_id)
            if snapshot.counts_are_hints:  # the day's tally: counted exactly before it can refuse the order
                snapshot = self._exact_near_limit(ctx, key, day, bound, snapshot)
        except Exception as exc:  # fail closed: no risk data, no trade
            rejection = Rejection(RejectCode.RISK_DATA_UNAVAILABLE, type(exc).__name__)
            log_event("exec.risk", severity="ERROR", intent_id=intent.intent_id, rejection=rejection)
            raise
        price = _unit_price(intent, routing)
        rejection = self.gate.check(intent.signed_qty, snapshot, asset_class=intent.asset_class,
                                    account=bound.account, price=price)
        log_event("exec.risk", intent_id=intent.intent_id, passed=rejection is None,
                  rejection=rejection, trades_today=snapshot.trades_today)
        if rejection is not None:
            return self._finish_decision(intent, ctx, "rejected", routing, rejection)
        if self.dry_run:
            return self._finish_decision(intent, ctx, "dry_run", routing, None)

        coid = client_order_id_for(ctx.tenant_id, intent.intent_id, account=intent.broker_account_id)
        limits = self.risk.effective_limits(snapshot, bound.account)
        now = self.clock.now()
        claim = Claim(
            tenant_id=ctx.tenant_id, intent_id=intent.intent_id, uid=ctx.uid, account_key=key, trade_day=day,
            daily_limit=limits.max_daily_trades, signed_qty=intent.signed_qty, trades_seen=snapshot.trades_today,
            account_id=bound.account_id, account_daily_limit=limits.max_daily_trades_account,
            account_trades_seen=snapshot.account_trades_today or 0,
            record=self._intent_record(intent, ctx, IntentStatus.RESERVED, routing, client_order_id=coid,
                                       broker_name=venue.name, trade_day=day),
            lease_until=now + timedelta(seconds=float(self.settings.lease_seconds)),
            prefetched=None if pre is None else pre.subset([intent_path(ctx.tenant_id, intent.intent_id)]),
            side_ops=_side_ops(ctx), counts_are_hints=snapshot.counts_are_hints,
        )
        outcome = self.store.claim(claim)
        if outcome.result is ClaimResult.CLAIMED:
            _side_taken(ctx)
        self._after_claim(ctx.tenant_id, intent.intent_id, outcome)
        if outcome.result is ClaimResult.DUPLICATE:
            assert outcome.existing is not None
            if outcome.existing.status.is_final:
                return self._replay(outcome.existing)
            return self._pending(intent, ctx, routing, coid, venue.name, None)
        if outcome.result is ClaimResult.DAILY_LIMIT:
            detail = (f"account {bound.account_id} count={outcome.account_trades_today} "
                      f"limit={limits.max_daily_trades_account}" if outcome.limit_scope == ACCOUNT_LIMIT
                      else f"count={outcome.trades_today} limit={limits.max_daily_trades}")
            rejection = Rejection(RejectCode.DAILY_TRADE_LIMIT, detail)
            log_event("exec.risk", intent_id=intent.intent_id, passed=False, rejection=rejection, stage="claim")
            return self._finish_decision(intent, ctx, "rejected", routing, rejection)
        recheck = self.gate.check(intent.signed_qty, snapshot.with_counts(
            trades_today=outcome.trades_today, exposure=outcome.exposure), include_own_reservation=True,
            asset_class=intent.asset_class, account=bound.account, price=price)
        if recheck is not None:
            log_event("exec.risk", intent_id=intent.intent_id, passed=False, rejection=recheck, stage="claim")
            return self._finish_decision(intent, ctx, "rejected", routing, recheck, claimed=True,
                                         claimed_slot=outcome.slot, client_order_id=coid)
        return self._submit(intent, ctx, routing, venue, coid, outcome.slot)

    # --- batched pre-claim read (issue 17) -----------------------------------------------------------
    def _exact_near_limit(self, ctx: ExecutionContext, key: str, day: str, bound: Bound,
                          snapshot: RiskSnapshot) -> RiskSnapshot:
        """``snapshot`` as read (counts from the day's tally) unless a tally is at a limit: then the
        risk documents read again with the slots counted exactly (one more round trip, only there) —
        a refusal for the daily limit is always decided on exact counts."""
        limits = self.risk.effective_limits(snapshot, bound.account)
        if not counts_near_limit(snapshot.trades_today, limits.max_daily_trades, snapshot.account_trades_today,
                                 limits.max_daily_trades_account):
            return snapshot
        return self.store.risk_snapshot(ctx.tenant_id, key, day, account_id=bound.account_id)

    def _read_pre_claim(self, intent: OrderIntent, ctx: ExecutionContext, day: str) -> PreClaimRead | None:
        if not callable(getattr(self.store, "read_pre_claim", None)):
            return None
        auto = f"{AUTO_DEFAULT_ACCOUNT_PREFIX}{ctx.uid}" if getattr(self.accounts, "mode", None) == "auto" else None
        plan = pre_claim_plan(ctx.tenant_id, ctx.uid, intent.intent_id, intent.broker_account_id, intent.symbol, day,
                              self._account_hints, auto)
        if ctx.rate_check is not None:  # the rate limiter's shard documents ride the same read
            plan = replace(plan, paths=tuple(dict.fromkeys((*plan.paths, *ctx.rate_check.paths))))
        try:
            return read_pre_claim(self.store, plan, ctx.tenant_id, day)
        except Exception as exc:  # fail closed: no intent, account or risk data, no trade
            rejection = Rejection(RejectCode.RISK_DATA_UNAVAILABLE, type(exc).__name__)
            log_event("exec.risk", severity="ERROR", intent_id=intent.intent_id, rejection=rejection)
            raise

    def _check_trade_id(self, intent: OrderIntent, ctx: ExecutionContext, pre: PreClaimRead | None) -> None:
        """``preflight.check_trade_id`` on the user's history row of the intent's id, from the pre-claim
        read (a store without it is asked for the row alone). Raises ``TradeIdInUse``: nothing
        written, nothing sent."""
        read, row = self._pre_read_doc(pre, history_path(ctx.uid, intent.intent_id))
        if read:
            check_trade_id(intent, ctx, row)

    def _check_lot_book(self, intent: OrderIntent, ctx: ExecutionContext, pre: PreClaimRead | None) -> None:
        """``preflight.check_lot_book`` on the user's lot book of the symbol from the pre-claim read (no
        round trip of its own; a store without that read is asked for the book alone). Raises
        ``LotBookFull`` (``InvalidInput``): nothing written, nothing sent."""
        read, book = self._pre_read_doc(pre, lot_book_path(intent, ctx))
        if read:
            check_lot_book(intent, ctx, book)

    def _pre_read_doc(self, pre: PreClaimRead | None, path: str) -> tuple[bool, Any]:
        """(True, the document at ``path`` or None) from the pre-claim read — a store without that read
        is asked for the document alone —, or (False, None) when neither can answer."""
        if pre is not None and path in pre.docs:
            return True, pre.docs[path][0]
        if callable(getattr(self.store, "get_all", None)):
            return True, self.store.get_all([path]).get(path, (None, None))[0]
        return False, None

    def _bind(self, ctx: ExecutionContext, intent: OrderIntent, pre: PreClaimRead | None) -> Bound | Rejection:
        """``bind_account`` reading through the pre-claim documents (what is missing is read)."""
        if pre is None or not isinstance(self.accounts, AccountBinder):
            return self.bind_account(ctx.tenant_id, ctx.uid, intent.broker_account_id, (intent.asset_class,))
        binder = copy.copy(self.accounts)
        binder.store = PrefetchedDocs(self.store, pre.docs)
        bound = binder.bind(ctx.tenant_id, ctx.uid, intent.broker_account_id, (intent.asset_class,))
        if not isinstance(bound, Rejection):
            self._account_hints.learn(ctx.tenant_id, ctx.uid,
                                      bound.account_id if intent.broker_account_id is None else None,
                                      bound.account_id, bound.binding.connection_id)
        return bound

    # --- multi-leg groups (seed 000) ------------------------------------------------------------
    def _groups(self) -> Any:
        from backend import bootstrap

        return bootstrap.group_executor(self)  # the group gates' settings: self.settings.group (parsed once)

    def execute_group(self, request: Any, context: ExecutionContext | None = None, *, group_id: str | None = None,
                      from_intent_doc: bool = False):
        """Validate all legs together, submit shorts first, monitor, resolve, roll back until flat.
        Returns the ExecutionGroup (``to_api_response()`` gives the seed's response shape)."""
        if context is None:
            context = ExecutionContext(tenant_id=self.settings.default_tenant_id or "",
                                       uid=self.settings.default_uid or "")
        return self._groups().execute(request, context, group_id, from_intent_doc=from_intent_doc)

    def resume_group(self, tenant_id: str, group_id: str):
        return self._groups().resume(tenant_id, group_id)

    def get_group(self, tenant_id: str, group_id: str):
        return self._groups().load(tenant_id, group_id)

    # --- steps ---------------------------------------------------------------------------------
    def _route(self, intent: OrderIntent, ctx: ExecutionContext | None = None) -> RoutingDecision | None:
        if not self.enable_smart_routing:
            return None
        binding = ctx.account if ctx is not None else None
        if binding is not None and binding.connection_id != "deployment":
            # quotes from the account's own venue (a Broker API or OANDA connection)
            decision = self.router.analyze_intent(intent, market_data=MarketDataProvider(
                self.venues_for(ctx.tenant_id, binding)))
        else:
            decision = self.router.analyze_intent(intent)
        log_event("exec.smart_routing", intent_id=intent.intent_id, should_execute=decision.should_execute,
                  reason=decision.reason, spread_pct=decision.spread_pct,
                  estimated_slippage=decision.estimated_slippage, downgraded=decision.downgraded,
                  symbol=intent.symbol, asset_class=intent.asset_class.value)
        return decision

    def _submit(self, intent: OrderIntent, ctx: ExecutionContext, routing: RoutingDecision | None,
                venue: BrokerPort, coid: str, slot: int | None) -> ExecutionResult:
        request = _order_request(intent, coid, price_bound=_price_bound(intent, routing, self.router))
        try:
            order = venue.submit_order(request)
        except BrokerError as exc:
            if exc.code in (BrokerErrorCode.UNAVAILABLE, BrokerErrorCode.RATE_LIMITED):
                # Outcome unknown (the order may exist): keep the reservation; retry or the
                # sweeper reconciles by client order id.
                log_event("exec.broker_unavailable", severity="WARNING", intent_id=intent.intent_id,
                          code=exc.code.value, message=exc.message, client_order_id=coid)
                return self._pending(intent, ctx, routing, coid, venue.name, exc)
            rejection = exc.to_rejection()
            log_event("exec.broker_rejected", severity="WARNING", intent_id=intent.intent_id, rejection=rejection)
            return self._finish_decision(intent, ctx, "rejected", routing, rejection, claimed=True,
                                         claimed_slot=slot, client_order_id=coid, broker_name=venue.name)
        return self._adopt(intent, ctx, routing, venue, request, order, slot, "submit")

    def _adopt(self, intent: OrderIntent, ctx: ExecutionContext, routing: RoutingDecision | None,
               venue: BrokerPort, request: OrderRequest, order: BrokerOrder, slot: int | None,
               stage: str) -> ExecutionResult:
        """A venue answers a known client id with the order it already holds: adopt it only if it is the
        order we asked for (checked again after the fill wait, which reads it by broker id)."""
        refused = self._refuse_foreign(intent, ctx, routing, venue, request, order, slot, stage)
        if refused is None:
            order = self._await_fill(venue, order, request, routing)
            refused = self._refuse_foreign(intent, ctx, routing, venue, request, order, slot, "await_fill")
        if refused is not None:
            return refused
        return self._finish_placed(intent, ctx, routing, venue, request.client_order_id, order)

    def _refuse_foreign(self, intent: OrderIntent, ctx: ExecutionContext, routing: RoutingDecision | None,
                        venue: BrokerPort, request: OrderRequest, order: BrokerOrder, slot: int | None,
                        stage: str) -> ExecutionResult | None:
        """None when ``order`` is ours. Otherwise an ALERT and a final refusal (CLIENT_ORDER_ID_MISMATCH)
        that releases the reservation: nothing of the foreign order reaches the ledger, the history,
        the lot book or the intent record."""
        rejection = checked_order(request, order, tenant_id=ctx.tenant_id, where=f"engine.{stage}",
                                  intent_id=intent.intent_id, uid=ctx.uid)
        if rejection is None:
            return None
        return self._finish_decision(intent, ctx, "rejected", routing, rejection, claimed=True, claimed_slot=slot,
                                     client_order_id=request.client_order_id, broker_name=venue.name)

    def _await_fill(self, venue: BrokerPort, order: BrokerOrder, request: OrderRequest | None = None,
                    routing: RoutingDecision | None = None) -> BrokerOrder:
        """Wait up to ``fill_wait_seconds`` for the order to become final, so a market order answers
        with its fill. A resting order answers at once with its working status instead: a limit
        order that was not marketable against the quote the router just read (a buy below the ask,
        a sell above the bid) will not fill within seconds; the app follows it by listener or GET and
        the sweeper reconciles its later fills. Without a quote (smart routing off) it waits."""
        if request is not None and _resting(request, routing):
            return order
        deadline = self.clock.monotonic() + float(self.settings.fill_wait_seconds)
        while not order.state.is_final and self.clock.monotonic() < deadline:
            self.clock.sleep(min(float(self.settings.monitoring_poll_interval), 0.25))
            try:
                order = venue.get_order(order.broker_order_id)
            except BrokerError:
                break  # the order exists; its fills are reconciled later
        return order

    def _resume(self, intent: OrderIntent, ctx: ExecutionContext, existing: IntentRecord) -> ExecutionResult:
        """A RESERVED intent: find its order by client id; submit it only if the venue has none."""
        data = existing.data
        coid = data.get("client_order_id") or client_order_id_for(ctx.tenant_id, intent.intent_id,
                                                                  account=intent.broker_account_id)
        lease = data.get("lease_until")
        ctx = replace(ctx, account=stored_binding(data.get("account")))  # the binding of the claim
        if ctx.account is not None and intent.broker_account_id != ctx.account.account_id:
            intent = intent.with_account(ctx.account.account_id)  # a retry resumes the stored binding
        fallback = fallback_from_record(data)
        if fallback is not None:  # the limit claimed instead of a WAIT (not the caller's market order)
            intent = OrderIntent.from_dict({**data["intent"], "intent_id": intent.intent_id}) \
                .as_wide_spread_limit(fallback)
        try:
            venue = self.broker_for(intent, ctx)
        except Exception as exc:  # the venue cannot be built now: stays reserved for the sweeper
            log_event("exec.venue_unavailable", severity="ERROR", intent_id=intent.intent_id, error=str(exc)[:200])
            return self._pending(intent, ctx, None, coid, None, None)
        if isinstance(venue, Rejection):
            return self._pending(intent, ctx, None, coid, None, None)
        routing = self._route(intent, ctx) if self.enable_smart_routing else None
        if routing is not None and fallback is not None:
            routing = replace(routing, reason=fallback.reason)
        try:
            order = venue.get_order_by_client_id(coid)
        except BrokerError as exc:
            return self._pending(intent, ctx, routing, coid, venue.name, exc)
        if order is not None:
            log_event("exec.resumed", intent_id=intent.intent_id, client_order_id=coid, found=True)
            return self._adopt(intent, ctx, routing, venue, _order_request(intent, coid), order, data.get("slot"),
                               "resume")
        if lease is not None and _lease_active(lease, self.clock):
            return self._pending(intent, ctx, routing, coid, venue.name, None)
        if self.dry_run:  # reserved live, dry run switched on since: send nothing, leave it for the sweeper
            log_event("exec.dry_run_blocked", severity="ALERT", intent_id=intent.intent_id, tenant_id=ctx.tenant_id,
                      client_order_id=coid, reason="dry run on: reserved intent not sent")
            return self._pending(intent, ctx, routing, coid, venue.name, None)
        now = self.clock.now()
        if not self.store.take_intent_lease(ctx.tenant_id, intent.intent_id, now,
                                            now + timedelta(seconds=float(self.settings.lease_seconds))):
            return self._pending(intent, ctx, routing, coid, venue.name, None)  # another worker took it
        log_event("exec.resumed", intent_id=intent.intent_id, client_order_id=coid, found=False)
        snapshot = self.store.risk_snapshot(ctx.tenant_id, account_key(intent), data.get("trade_day") or
                                            now.date().isoformat())
        account = self.store.get_account(ctx.tenant_id, ctx.account.account_id) if ctx.account is not None else None
        if self.gate.halted(snapshot, account) is not None:  # halted since the claim: never send it now
            halt = Rejection(RejectCode.KILL_SWITCH, "trading halted before the order was sent")
            return self._finish_decision(intent, ctx, "rejected", routing, halt, claimed=True,
                                         claimed_slot=data.get("slot"), client_order_id=coid, broker_name=venue.name)
        if fallback is not None and now >= fallback.deadline:  # never sent, and its time is over: WAIT after all
            expired = expired_before_sent(fallback, routing)
            return self._finish_decision(intent, ctx, "downgraded", expired, None, claimed=True,
                                         claimed_slot=data.get("slot"), client_order_id=coid, broker_name=venue.name)
        return self._submit(intent, ctx, routing, venue, coid, data.get("slot"))


def _record_of(tenant_id: str, intent_id: str, doc: Any) -> IntentRecord | None:
    """The intent record from a pre-claim read's document (as the stores' ``get_intent`` answers it)."""
    if doc is None:
        return None
    return IntentRecord(tenant_id, intent_id, IntentStatus(doc.get("status") or "new"), doc)


def _unit_price(intent: OrderIntent, routing: RoutingDecision | None) -> Decimal | None:
    """One unit's price for the notional limit: the limit price, else the side's touch from the
    router's quote (x the contract multiplier); None without either (the notional limit then waits
    for the venue)."""
    price = intent.limit_price
    quote = routing.quote if routing is not None else None
    if price is None and quote is not None:
        price = quote.ask if intent.side.value == "buy" else quote.bid
    return None if price is None else price * intent.spec.multiplier


def _price_bound(intent: OrderIntent, routing: RoutingDecision | None, router: Any) -> Decimal | None:
    """A market order's worst acceptable price (issue 14, OANDA ``priceBound``): the touch the smart
    router just judged, moved by the cost threshold (the spread share of the mid it accepts) — a fill
    beyond it would cost more than the check allowed. None without a quote (routing off) or for other
    order types."""
    quote = routing.quote if routing is not None else None
    threshold = getattr(router, "max_spread_pct", None)
    if intent.order_type.value != "market" or quote is None or threshold is None or quote.mid is None:
        return None
    allowance = quote.mid * Decimal(str(threshold))
    if intent.side.value == "buy":
        return None if quote.ask is None else quote.ask + allowance
    return None if quote.bid is None else max(quote.bid - allowance, Decimal("1e-12"))


def _resting(request: OrderRequest, routing: RoutingDecision | None) -> bool:
    """An order the venue will rest: a stop, stop-limit or trailing stop (waits for its trigger), an
    OCO (two exits of an open position), or a limit order not marketable against the router's quote."""
    if getattr(request.order_type, "value", None) in ("stop", "stop_limit", "trailing_stop") \
            or getattr(getattr(request, "order_class", None), "value", None) == "oco":
        return True
    quote = routing.quote if routing is not None else None
    if quote is None or request.limit_price is None or getattr(request.order_type, "value", None) != "limit":
        return False
    if getattr(request.side, "value", None) == "buy":
        return quote.ask is not None and request.limit_price < quote.ask
    return quote.bid is not None and request.limit_price > quote.bid


def _lease_active(lease: Any, clock: Clock) -> bool:
    from datetime import datetime

    if isinstance(lease, str):
        lease = datetime.fromisoformat(lease)
    return lease > clock.now()


def default_store() -> ExecutionStore:
    """Firestore when an emulator or project is configured, else an in-memory store (with a warning);
    built by the composition root (``backend.bootstrap.build_store``)."""
    from backend import bootstrap

    return bootstrap.build_store()
