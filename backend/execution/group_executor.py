"""The multi-leg orchestrator: drives an ExecutionGroup with the broker, persisting before every side effect.

The group document is the source of truth. Each loop turn asks the pure domain for the next step
(``groups.next_step``), performs it, and — before anything reaches the broker — saves the group
with a precondition on its last write. A crash at any point leaves a document whose lease expires;
the sweeper takes the lease and calls ``resume``, which continues from the stored state: legs are
looked up by their deterministic client order id before anything is resent, rollback orders are
replanned with the same ids, and fills reach the ledger exactly once (``_ledger_written``).

Rollback is blocking, not the seed's "non-blocking": when the broker is unreachable the group stays
ROLLING_BACK with an expired lease, and is retried by the sweeper until it is flat.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Mapping

from backend.domain.clock import Clock
from backend.domain.errors import InvalidInput, RejectCode, Rejection
from backend.domain.money import ZERO, dec_str
from backend.execution import groups as g
from backend.execution.accounts import AccountRefused, stored_binding
from backend.execution.broker_router import as_router
from backend.domain.capabilities import check_capability
from backend.execution.client_ids import checked_order, leg_stop_client_order_id
from backend.execution.group import leg_stop as stops
from backend.execution.instruments import check_instrument
from backend.execution.intent import ExecutionContext, validate_id
from backend.execution.preflight import check_group_writes
from backend.execution.records import group_decision_row, group_fill_rows, tax_fill, with_venue_account
from backend.logs import log_event
from backend.ports.broker import BrokerError, BrokerOrder, BrokerPort, OrderState, Quote
from backend.ports.store import (ACCOUNT_LIMIT, ClaimResult, FillWrite, GroupReservation, GroupSettlement,
                                 GroupSnapshot, LeaseLost, LegReservation)
from backend.risk import approvals
from backend.domain.ids import check_id
from backend.execution.store_rules import exposure_from_doc, exposure_path
from backend.risk.gate import DryRunBlocked, PreTradeGate, account_in, account_key_for, halt_flags, halt_paths
from backend.risk.manager import Exposure, RiskSnapshot
from backend.settings import ExecSettings

DEFAULT_GROUP_ACCOUNT = "default"  # a group's account label when the request names none

_REQUEST_KEYS = {"strategy_id", "legs", "rpm_output", "max_group_slippage_pips", "allow_partial_fills",
                 "execution_priority", "group_id", "broker_account_id"}


class _Stop(Exception):
    """The broker cannot be reached: leave the group for the sweeper."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _cancel_timed_out(venue: BrokerPort, order: BrokerOrder, what: str) -> BrokerOrder:
    """Cancel an order past the order timeout and read it back (fills may have landed meanwhile);
    a venue failure stops the run (``_Stop``), to be resumed from the persisted state."""
    try:
        venue.cancel_order(order.broker_order_id)
        return venue.get_order(order.broker_order_id)
    except BrokerError as exc:
        raise _Stop(f"{what} cancel: {exc}") from exc


@dataclass
class _Run:
    snapshot: GroupSnapshot
    group: g.ExecutionGroup
    dirty: bool = False
    # risk reads of this run (see ``GroupExecutor._risk_reads``): the stored approval, read at most once
    # per run (immutable: see ``_rpm``); the halt flags and the day's slot count of the validation read
    approval: Mapping[str, Any] | None = None
    approval_read: bool = False
    flags: RiskSnapshot | None = None
    trades_seen: int = 0
    account_trades_seen: int = 0  # the bound account's slot count (read only when it has a daily limit)
    # the group's bound account as read with the halt flags (status, limits); None: unbound/absent
    account: Any = None
    account_missing: bool = False


class GroupExecutor:
    """Drives groups for ``ExecutionEngine.execute_group`` / ``resume_group`` (built per call by the
    composition root, ``backend.bootstrap.group_executor``). ``broker``: a ``BrokerRouter`` or one
    venue (wrapped in a one-route router). ``kill_switches``: ``callable(tenant_id) -> RiskSnapshot``
    with the halt flags (``store.kill_switches``); ``risk_snapshot=`` is its old, misleading name. It
    serves a leg's recovery and groups stored without a reservation; validation and every reserved
    submit read the same flags fresh in their one batched ``store.get_all`` (``_risk_reads``)."""

    def __init__(self, broker: Any, store: Any, clock: Clock, settings: ExecSettings,
                 group_settings: g.GroupSettings | None = None, *, kill_switches: Any = None,
                 max_drive_seconds: float = 50.0, gate: PreTradeGate | None = None, risk_snapshot: Any = None,
                 accounts: Any = None, venue_pool: Any = None):
        self.broker = broker
        self.venues = as_router(broker)  # the deployment's; a bound group trades its account's (_use_binding)
        # issue 12: new groups bind to an account (backend/execution/accounts.py); None = a library
        # caller's executor without accounts (groups keep their label and trade ``broker``)
        self.accounts = accounts
        self.venue_pool = venue_pool
        self._deployment_venues = self.venues
        # the one pre-trade gate (dry run, kill switches, limits per class, daily count), shared
        # with the single-leg engine; every venue this executor uses is wrapped by its dry-run guard
        if gate is None:  # a library caller's executor: the composition root builds the same gate
            from backend import bootstrap

            gate = bootstrap.build_gate(bootstrap.build_risk(settings), lambda: settings.dry_run, settings)
        self.gate = gate
        self._guarded: dict[int, Any] = {}
        self.store = store
        self.clock = clock
        self.settings = settings
        self.gsettings = group_settings or settings.group  # parsed once, with the settings
        self.kill_switches = kill_switches if kill_switches is not None else risk_snapshot
        # A run never outlives its lease: the budget stays well inside it, and the lease is renewed
        # at least every half lease while monitoring (see _drive).
        self.max_drive_seconds = min(max_drive_seconds, float(settings.lease_seconds) * 0.8)

    # --- entry points --------------------------------------------------------------------------
    def execute(self, request: Mapping[str, Any], ctx: ExecutionContext, group_id: str | None = None,
                *, from_intent_doc: bool = False) -> g.ExecutionGroup:
        """``from_intent_doc``: the group runs for the app-written document of the same id, which turns
        ``accepted`` in the commit that creates the group and gets its outcome in the commit that
        makes the group final."""
        if not isinstance(request, Mapping):
            raise InvalidInput("body", "must be an object")
        unknown = set(request) - _REQUEST_KEYS
        if unknown:
            raise InvalidInput(sorted(unknown)[0], "unknown field")
        group_id = validate_id(group_id or request.get("group_id") or f"g-{uuid.uuid4().hex}", "group_id")
        requested = request.get("broker_account_id")
        account = validate_id(requested or DEFAULT_GROUP_ACCOUNT, "broker_account_id")
        now = self.clock.now()
        group = g.ExecutionGroup.create(
            group_id=group_id, strategy_id=request.get("strategy_id"), tenant_id=ctx.tenant_id, uid=ctx.uid,
            legs=request.get("legs"), now=now,
            allow_partial_fills=request.get("allow_partial_fills", False),  # the domain refuses non-booleans
            max_group_slippage_pips=request.get("max_group_slippage_pips"),
            execution_priority=request.get("execution_priority"), rpm_output=request.get("rpm_output"))
        owner = uuid.uuid4().hex
        doc = {**self._doc(group, owner, written=()), "_intent_doc": from_intent_doc, "_account": account,
               "_binding": None}
        check_group_writes(doc, ctx.tenant_id)  # names/sizes of every later write: refused before any leg
        if self.accounts is not None:  # one account per group: every leg's class enabled on it
            bound = self.accounts.bind(ctx.tenant_id, ctx.uid, requested, [leg.asset_class for leg in group.legs])
            if isinstance(bound, Rejection):
                existing = self.store.load_group(ctx.tenant_id, group_id)
                if existing is None or existing.doc.get("uid") != ctx.uid:
                    raise AccountRefused(bound)  # nothing written, nothing sent
                # a retry of a group bound before (e.g. halted since): it resumes with its own binding
                return self._retry(ctx, group_id, existing)
            account = bound.account_id
            doc.update({"_account": account, "_binding": bound.binding.to_dict()})
            check_group_writes(doc, ctx.tenant_id)  # the bound ids are valid ids: still storable
            try:  # the account's venues, before the group exists: nothing to sweep if they cannot be built
                self._use_binding(ctx.tenant_id, doc)
            except Exception as exc:
                rejection = getattr(exc, "rejection", None)
                if not isinstance(rejection, Rejection):
                    raise
                raise AccountRefused(rejection) from None
        snapshot = self.store.create_group(ctx.tenant_id, group_id, doc,
                                           {"status": "accepted", "group_id": group_id} if from_intent_doc else None)
        if snapshot is None:  # a retry of the same group id
            return self._retry(ctx, group_id, self.store.load_group(ctx.tenant_id, group_id))
        log_event("exec.group_received", group_id=group_id, tenant_id=ctx.tenant_id, uid=ctx.uid,
                  legs=len(group.legs), strategy_id=group.strategy_id, account_id=account)
        self._use_binding(ctx.tenant_id, snapshot.doc)
        return self._drive(_Run(snapshot, group), owner)

    def _retry(self, ctx: ExecutionContext, group_id: str, existing: GroupSnapshot) -> g.ExecutionGroup:
        """The same group id again: the stored group (final), or its resumption; another user's id is refused."""
        stored = g.ExecutionGroup.from_dict(_domain_doc(existing.doc))
        if stored.uid != ctx.uid:
            raise InvalidInput("group_id", "already used by another user")
        self._use_binding(ctx.tenant_id, existing.doc)
        log_event("exec.group_replayed", group_id=group_id, tenant_id=ctx.tenant_id, status=stored.status.value)
        if stored.status.is_final:
            return stored
        return self.resume(ctx.tenant_id, group_id) or stored

    def resume(self, tenant_id: str, group_id: str) -> g.ExecutionGroup | None:
        """Take an expired lease and continue; None when another worker holds it (or it is final)."""
        owner = uuid.uuid4().hex
        now = self.clock.now()
        snapshot = self.store.take_lease(tenant_id, group_id, owner, now, self._lease_until())
        if snapshot is None:
            return None
        group = g.ExecutionGroup.from_dict(_domain_doc(snapshot.doc))
        log_event("exec.group_resumed", group_id=group_id, tenant_id=tenant_id, status=group.status.value)
        self._use_binding(tenant_id, snapshot.doc)
        return self._drive(_Run(snapshot, group), owner)

    def _use_binding(self, tenant_id: str, doc: Mapping[str, Any]) -> None:
        """Trade the venues of the group's stored account binding (a group predating accounts keeps
        the deployment's venues). The executor drives one group per call (bootstrap.group_executor)."""
        binding = stored_binding(doc.get("_binding"))
        self.venues = self._deployment_venues if binding is None or self.venue_pool is None \
            else self.venue_pool.router_for(tenant_id, binding)

    def load(self, tenant_id: str, group_id: str) -> g.ExecutionGroup | None:
        snapshot = self.store.load_group(tenant_id, group_id)
        return None if snapshot is None else g.ExecutionGroup.from_dict(_domain_doc(snapshot.doc))

    # --- the loop ------------------------------------------------------------------------------------
    def _drive(self, run: _Run, owner: str) -> g.ExecutionGroup:
        deadline = self.clock.monotonic() + self.max_drive_seconds
        try:
            while True:
                step = g.next_step(run.group, self.gsettings)
                if step.kind is g.StepKind.DONE:
                    self._leg_stops(run, owner)  # a FILLED group's protective stops (issue 15 item 3)
                    self._flush(run, owner, final=True)
                    log_event("exec.group_done", group_id=run.group.group_id, status=run.group.status.value,
                              verdict=run.group.verdict.value if run.group.verdict else None,
                              rollback_executed=run.group.rollback_executed)
                    return run.group
                self._renew_lease_if_due(run, owner)
                if self.clock.monotonic() > deadline:
                    self._flush(run, owner, release=True)
                    log_event("exec.group_deferred", severity="WARNING", group_id=run.group.group_id,
                              status=run.group.status.value, reason="time budget used; the sweeper continues")
                    return run.group
                self._perform(run, owner, step)
        except _Stop as stop:
            self._flush(run, owner, release=True)
            log_event("exec.group_deferred", severity="WARNING", group_id=run.group.group_id,
                      status=run.group.status.value, reason=stop.reason)
            return run.group
        except DryRunBlocked as blocked:
            # Dry run was switched on after this group's validation: nothing more is sent (no new
            # leg, no rollback order). The group is parked — lease released, state kept — and the
            # sweeper retries it every run until dry run is off again; an operator decides meanwhile.
            self._flush(run, owner, release=True)
            log_event("exec.dry_run_blocked", severity="ALERT", group_id=run.group.group_id,
                      tenant_id=run.group.tenant_id, status=run.group.status.value,
                      client_order_id=blocked.client_order_id, reason="dry run on: group parked, nothing sent")
            return run.group
        except LeaseLost:
            log_event("exec.group_lease_lost", severity="WARNING", group_id=run.group.group_id)
            current = self.load(run.snapshot.tenant_id, run.snapshot.group_id)
            return current or run.group

    def _renew_lease_if_due(self, run: _Run, owner: str) -> None:
        held = run.snapshot.doc.get("_lease_until")
        half = timedelta(seconds=float(self.settings.lease_seconds) / 2)
        if held is not None and held - self.clock.now() < half:
            run.dirty = True
            self._flush(run, owner)

    def _set(self, run: _Run, group: g.ExecutionGroup) -> None:
        run.group = group
        run.dirty = True

    def _perform(self, run: _Run, owner: str, step: g.Step) -> None:
        group, now, kind = run.group, self.clock.now(), step.kind
        if kind is g.StepKind.START_VALIDATION:
            self._set(run, g.start_validation(group, now))
        elif kind is g.StepKind.VALIDATE:
            self._validate(run, now)
        elif kind is g.StepKind.SUBMIT_LEG:
            self._submit_leg(run, owner, step.leg_ids[0])
        elif kind is g.StepKind.RECOVER_LEG:
            self._recover_leg(run, owner, step.leg_ids[0])
        elif kind is g.StepKind.ABORT_SUBMISSION:
            self._set(run, g.abort_submission(group, now))
        elif kind is g.StepKind.FINISH_SUBMISSION:
            self._set(run, g.mark_all_submitted(group, now))
        elif kind is g.StepKind.POLL_LEGS:
            self._poll_legs(run, owner, step.leg_ids)
        elif kind is g.StepKind.BEGIN_RESOLUTION:
            self._set(run, g.begin_resolution(group, now))
        elif kind is g.StepKind.RESOLVE:
            self._set(run, g.apply_resolution(group, now))
        elif kind is g.StepKind.PLAN_ROLLBACK:
            retries = max((sum(1 for o in group.rollback_orders if o.leg_id == leg_id) for leg_id in step.leg_ids),
                          default=0)
            if retries:  # a venue that refused the last rollback order gets a moment before the next one
                self.clock.sleep(min(float(self.settings.monitoring_poll_interval) * 2 ** retries, 10.0))
                now = self.clock.now()
            planned, orders = g.plan_rollback(group, now, self.gsettings)
            self._set(run, planned)
            self._flush(run, owner)  # the plan (with its client ids) is stored before any order
            log_event("exec.group_rollback", group_id=group.group_id,
                      orders=[{"leg_id": o.leg_id, "side": o.side.value, "qty": o.qty,
                               "client_order_id": o.client_order_id} for o in orders])
            for order in orders:
                self._drive_rollback_order(run, order)
        elif kind is g.StepKind.DRIVE_ROLLBACK:
            before = run.group
            for order in step.rollback_orders:
                self._drive_rollback_order(run, order)
            if run.group == before:
                self.clock.sleep(float(self.settings.monitoring_poll_interval))
        elif kind is g.StepKind.COMPLETE_ROLLBACK:
            self._set(run, g.complete_rollback(group, now))
        elif kind is g.StepKind.ESCALATE:
            self._set(run, g.escalate_rollback(group, now, self.gsettings))
            log_event("exec.group_needs_attention", severity="ALERT", group_id=group.group_id,
                      tenant_id=group.tenant_id, remaining={k: dec_str(v) for k, v in g.rollback_remaining(group).items()})
        else:  # pragma: no cover - next_step is exhaustive
            raise AssertionError(kind)

    # --- steps -----------------------------------------------------------------------------------
    def _venue(self, asset_class: Any) -> BrokerPort | Rejection:
        """The class's venue through the router, wrapped by the gate's dry-run guard."""
        return self.gate.route(self.venues, asset_class, self._guarded)

    def _leg_venue(self, leg: g.ExecutionLeg) -> BrokerPort:
        venue = self._venue(leg.asset_class)
        if isinstance(venue, Rejection):  # validated before any submit; only a config change gets here
            raise _Stop(str(venue))
        return venue

    def _market(self, legs: tuple[g.ExecutionLeg, ...]) -> tuple[dict[str, Quote], dict[str, list[Decimal]]]:
        quotes: dict[str, Quote] = {}
        closes: dict[str, list[Decimal]] = {}
        for leg in legs:
            venue = self._venue(leg.asset_class)
            if isinstance(venue, Rejection):
                continue
            try:
                quotes[leg.symbol] = venue.get_latest_quote(leg.symbol, leg.asset_class)
            except BrokerError:
                pass  # a missing quote is the MARKET_DATA_UNAVAILABLE gate's call
            if len(legs) > 1:
                try:
                    closes[leg.symbol] = list(venue.get_recent_closes(
                        leg.symbol, leg.asset_class, self.gsettings.correlation_closes_needed))
                except BrokerError:
                    pass
        return quotes, closes

    def _buying_power(self, legs: tuple[g.ExecutionLeg, ...]) -> Decimal:
        """Buying power of the venues the legs trade on (summed when they span venues)."""
        seen, total = set(), ZERO
        for leg in legs:
            venue = self._venue(leg.asset_class)
            if isinstance(venue, Rejection) or id(venue) in seen:
                continue
            seen.add(id(venue))
            try:
                total += venue.get_account().buying_power
            except BrokerError as exc:
                raise _Stop(f"account unavailable: {exc}") from exc
        return total

    def _validate(self, run: _Run, now: datetime) -> None:
        group = run.group
        # one batched read for the whole validation: halt flags, every leg's exposure, the approval
        flags, exposures = self._risk_reads(run, group.legs, approval=True)
        rejection = self._halted(flags, run)
        if rejection is None:
            for leg in group.legs:
                venue = self._venue(leg.asset_class)
                if isinstance(venue, Rejection):
                    rejection = Rejection(venue.code, f"{leg.leg_id} {leg.symbol}: {venue.detail}")
                    break
                problem = check_instrument(venue, leg.symbol, leg.asset_class, leg.units, None)  # venue metadata
                if problem is not None:
                    rejection = Rejection(problem.code, f"{leg.leg_id} {leg.symbol}: {problem.detail}")
                    break
        if rejection is None:
            quotes, closes = self._market(group.legs)
            buying_power = self._buying_power(group.legs)
            now = self.clock.now()  # judge the quotes at the time they were received, not before fetching
            rejection, rpm = self._rpm(run, now)
            rejection = rejection or g.validate_group(group, quotes, buying_power, closes, rpm, now, self.gsettings)
            rejection = rejection or stops.stop_sides_rejection(group, quotes)  # a stop that would fire at once
        if rejection is None:
            rejection = self._risk_check_legs(run, flags, exposures)  # limits per leg before anything is reserved
        if rejection is None and self.gate.dry_run:
            self._set(run, g.pass_validation_dry_run(group, quotes, now))
            log_event("exec.group_dry_run", group_id=group.group_id, tenant_id=group.tenant_id,
                      legs=len(group.legs), note="every gate passed; nothing sent (dry run)")
            return
        if rejection is None:
            rejection = self._reserve(run)
        if rejection is not None:
            self._set(run, g.fail_validation(run.group, rejection, now))
            log_event("exec.group_rejected", group_id=group.group_id, rejection=rejection, stage="validation")
        else:
            self._set(run, g.pass_validation(run.group, quotes, now))

    # --- the pre-trade gate: limits per leg, the group's reservation, its settlement ----------------
    def _account(self, run: _Run) -> str:
        return str(run.snapshot.doc.get("_account") or DEFAULT_GROUP_ACCOUNT)

    def _leg_key(self, run: _Run, leg: g.ExecutionLeg) -> str:
        return account_key_for(self._account(run), leg.symbol)

    def _trade_day(self, run: _Run) -> str:
        reservation = run.snapshot.doc.get("_reservation") or {}
        return reservation.get("trade_day") or self.clock.now().date().isoformat()

    def _risk_reads(self, run: _Run, legs: tuple[g.ExecutionLeg, ...], *,
                    approval: bool = False) -> tuple[RiskSnapshot, dict[str, Exposure]]:
        """One ``get_all`` (one round trip) with everything a step's gate needs: the halt flags
        (``ops/execution``, the tenant's ``config/risk`` — read fresh on every call, never cached:
        their staleness budget is zero, one read per validation and per submit), the exposure
        document of each of ``legs`` (by leg id), and — once per run, when ``approval`` — the stored
        approval the group references (kept on the run, see ``_rpm``)."""
        tenant = run.group.tenant_id
        keys = {leg.leg_id: exposure_path(tenant, self._leg_key(run, leg)) for leg in legs}
        binding = stored_binding(run.snapshot.doc.get("_binding"))
        account_id = None if binding is None else binding.account_id
        paths = [*halt_paths(tenant, account_id), *keys.values()]  # + the account: its status and limits
        approval_path = self._approval_path(run) if approval and not run.approval_read else None
        if approval_path is not None:
            paths.append(approval_path)
        docs = self.store.get_all(paths)
        if approval and not run.approval_read:
            run.approval = docs[approval_path][0] if approval_path is not None else None
            run.approval_read = True
        if account_id is not None:
            run.account = account_in(docs, tenant, account_id)
            run.account_missing = run.account is None
        return halt_flags(docs, tenant), {leg_id: exposure_from_doc(docs[p][0]) for leg_id, p in keys.items()}

    @staticmethod
    def _approval_path(run: _Run) -> str | None:
        """The stored approval's document path, or None when the group's ``rpm_output`` names no
        decision id a risk manager could have been issued (``build_approval`` checks ids the same way)."""
        decision_id = approvals.decision_id_of(run.group.rpm_output)
        try:
            decision_id = None if decision_id is None else check_id(decision_id, "decision_id")
        except InvalidInput:
            return None
        return None if decision_id is None else f"tenants/{run.group.tenant_id}/rpm_approvals/{decision_id}"

    def _halted(self, flags: RiskSnapshot, run: _Run | None = None) -> Rejection | None:
        if self.settings.kill_switch:
            return Rejection(RejectCode.KILL_SWITCH, "trading halted (global)")
        if run is not None and run.account_missing:  # new work on a bound account whose document is gone
            return Rejection(RejectCode.ACCOUNT_NOT_FOUND, "the group's account no longer exists")
        return self.gate.halted(flags, run.account if run is not None else None)

    @staticmethod
    def _with_exposure(flags: RiskSnapshot, exposure: Exposure, trades_today: int = 0) -> RiskSnapshot:
        return flags.with_counts(trades_today=trades_today, exposure=exposure)

    def _risk_check_legs(self, run: _Run, flags: RiskSnapshot, exposures: Mapping[str, Exposure]) -> Rejection | None:
        """Each leg through the gate (kill switches, position limit per class) and the day's count
        for all legs together, before the reservation (a reserved group re-checks after it instead).
        ``flags`` and ``exposures``: the validation's batched read; the slot count is read once here."""
        run.flags = flags
        if run.snapshot.doc.get("_reservation"):
            return self._recheck_reserved(run, {self._leg_key(run, leg): exposures[leg.leg_id]
                                                for leg in run.group.legs})
        limits = self.gate.risk.effective_limits(flags, run.account)
        account_id = self._bound_account_id(run)
        account_today = None  # issue 12: the account's own count, read with the tenant's when it has a limit
        if account_id is not None and limits.max_daily_trades_account is not None:
            trades_today, account_today = self.store.day_trade_counts(run.group.tenant_id, self._trade_day(run),
                                                                      account_id)
            run.account_trades_seen = account_today
        else:
            trades_today = self.store.count_trades(run.group.tenant_id, self._trade_day(run))
        run.trades_seen = trades_today
        for leg in run.group.legs:
            snapshot = self._with_exposure(flags, exposures[leg.leg_id], trades_today).with_counts(
                account_trades_today=account_today)
            rejection = self.gate.check(leg.units * leg.direction, snapshot, asset_class=leg.asset_class,
                                        account=run.account)
            if rejection is not None:
                return Rejection(rejection.code, f"{leg.leg_id} {leg.symbol}: {rejection.detail}")
        legs = len(run.group.legs)
        if trades_today + legs > limits.max_daily_trades:
            return Rejection(RejectCode.DAILY_TRADE_LIMIT, f"count={trades_today} legs={legs} "
                                                           f"limit={limits.max_daily_trades}")
        if account_today is not None and account_today + legs > limits.max_daily_trades_account:
            return Rejection(RejectCode.DAILY_TRADE_LIMIT, f"account {account_id} count={account_today} legs={legs} "
                                                           f"limit={limits.max_daily_trades_account}")
        return None

    @staticmethod
    def _bound_account_id(run: _Run) -> str | None:
        """The account id of the group's stored binding (None: a group without one counts no account slots)."""
        binding = stored_binding(run.snapshot.doc.get("_binding"))
        return None if binding is None else binding.account_id

    def _recheck_reserved(self, run: _Run, exposures: Mapping[str, Exposure]) -> Rejection | None:
        """After the reservation is visible: every leg's worst case, its own reservation included
        (``exposures`` per account key, read after the reservation's commit; the limits from the
        validation's flags — the kill switches and limits are read fresh again before each submit)."""
        flags = run.flags or RiskSnapshot()
        for leg in run.group.legs:
            if leg.status is not g.LegStatus.PENDING:
                continue
            snapshot = self._with_exposure(flags, exposures.get(self._leg_key(run, leg), Exposure()))
            rejection = self.gate.check(leg.units * leg.direction, snapshot, asset_class=leg.asset_class,
                                        count_daily=False, account=run.account)
            if rejection is not None:
                return Rejection(rejection.code, f"{leg.leg_id} {leg.symbol}: {rejection.detail}")
        return None

    def _reserve(self, run: _Run) -> Rejection | None:
        """Reserve exposure for every leg and one daily slot per leg, atomically with the group
        document, then re-check with the reservation visible. A rejection from here on is settled
        (released) in the commit that makes the group final."""
        if run.snapshot.doc.get("_reservation"):
            return None  # reserved by an earlier run (resumed): _risk_check_legs re-checked it
        group = run.group
        limits = self.gate.risk.effective_limits(run.flags or RiskSnapshot(), run.account)  # as validated
        account_id = self._bound_account_id(run)
        reservation = GroupReservation(
            uid=group.uid, trade_day=self._trade_day(run), daily_limit=limits.max_daily_trades,
            broker_account_id=self._account(run), trades_seen=run.trades_seen,
            legs=tuple(LegReservation(leg.leg_id, self._leg_key(run, leg), leg.units * leg.direction)
                       for leg in group.legs),
            account_id=account_id, account_daily_limit=limits.max_daily_trades_account if account_id else None,
            account_trades_seen=run.account_trades_seen)
        doc = {**self._doc(group, run.snapshot.doc.get("_lease_owner"), tuple(run.snapshot.doc.get("_ledger_written") or ())),
               **self._carried(run)}
        outcome = self.store.reserve_group(run.snapshot, doc, reservation)
        if outcome.result is ClaimResult.DAILY_LIMIT and outcome.limit_scope == ACCOUNT_LIMIT:
            return Rejection(RejectCode.DAILY_TRADE_LIMIT, f"account {account_id} count={outcome.account_trades_today} "
                                                           f"legs={len(group.legs)} "
                                                           f"limit={limits.max_daily_trades_account}")
        if outcome.result is ClaimResult.DAILY_LIMIT:
            return Rejection(RejectCode.DAILY_TRADE_LIMIT, f"count={outcome.trades_today} legs={len(group.legs)} "
                                                           f"limit={limits.max_daily_trades}")
        run.snapshot = outcome.snapshot
        run.dirty = False
        log_event("exec.group_reserved", group_id=group.group_id, tenant_id=group.tenant_id,
                  trades_today=outcome.trades_today, legs=len(group.legs))
        return self._recheck_reserved(run, outcome.exposures)

    def _carried(self, run: _Run) -> dict[str, Any]:
        """Adapter fields a save must keep (the group's account label and its reservation)."""
        doc = run.snapshot.doc
        return {"_intent_doc": bool(doc.get("_intent_doc")), "_account": doc.get("_account"),
                "_binding": doc.get("_binding"),
                "_reservation": doc.get("_reservation"), "_settled": bool(doc.get("_settled"))}

    def _settlement(self, run: _Run) -> GroupSettlement | None:
        """On the final state: filled units (net of rollback fills) into the position, every
        reservation released, the daily slot of a leg that filled nothing given back."""
        reservation = run.snapshot.doc.get("_reservation")
        if not reservation or run.snapshot.doc.get("_settled") or not run.group.status.is_final:
            return None
        group = run.group
        moves, slots = [], []
        for entry in reservation["legs"]:
            leg = group.leg(entry["leg_id"])
            filled = leg.filled_units * leg.direction
            filled += sum((o.filled_qty * o.side.direction for o in group.rollback_orders if o.leg_id == leg.leg_id),
                          ZERO)
            moves.append((entry["account_key"], filled, Decimal(entry["signed_qty"])))
            if leg.filled_units == ZERO:
                slots.append(int(entry["slot"]))
        return GroupSettlement(reservation["trade_day"], tuple(moves), tuple(slots))

    def _rpm(self, run: _Run, now: datetime) -> tuple[Rejection | None, Any]:
        """The stored, backend-issued approval the group's ``rpm_output`` references (its content is
        never trusted): a rejection, or the approval in the seed's shape for the pure gates.

        Read once per run (in the validation's batched read, or here on a resumed run's first submit)
        and checked in full before the first leg and again before every submit, against the clock
        of that moment. Reading it once is exact, not a staleness window: the document is server-only
        (firestore.rules deny every client write) and create-only (``put_rpm_approval`` creates, nothing
        updates or deletes it), so it cannot change during a run; the only thing about it that changes
        is whether ``expires_at`` has passed, and that is re-judged against ``now`` on every call."""
        if not run.approval_read:
            decision_id = None if self._approval_path(run) is None else approvals.decision_id_of(run.group.rpm_output)
            run.approval = None if decision_id is None else self.store.get_rpm_approval(run.group.tenant_id,
                                                                                         decision_id)
            run.approval_read = True
        group, stored = run.group, run.approval
        rejection = approvals.check_stored_approval(group, stored, now)
        return rejection, (None if rejection is not None else approvals.as_rpm_output(stored))

    def _kill_switch(self, tenant_id: str) -> Rejection | None:
        if self.settings.kill_switch:
            return Rejection(RejectCode.KILL_SWITCH, "trading halted (global)")
        # the halt flags (ops/execution, tenant config) judged by the one gate
        return self.gate.halted(None if self.kill_switches is None else self.kill_switches(tenant_id))

    def _submit_gate(self, run: _Run, leg: g.ExecutionLeg) -> Rejection | None:
        """The leg through the gate right before it is sent: kill switches and its position limit with
        its own reservation included (its daily slot is held). One read: the snapshot has the halt flags."""
        if not run.snapshot.doc.get("_reservation"):
            return self._kill_switch(run.group.tenant_id)  # a group stored before reservations existed
        flags, exposures = self._risk_reads(run, (leg,))  # one round trip, halt flags read fresh
        if run.account_missing:
            return Rejection(RejectCode.ACCOUNT_NOT_FOUND, f"{leg.leg_id}: the group's account no longer exists")
        rejection = self.gate.check(leg.units * leg.direction, self._with_exposure(flags, exposures[leg.leg_id]),
                                    asset_class=leg.asset_class, count_daily=False, account=run.account)
        return None if rejection is None else Rejection(rejection.code, f"{leg.leg_id} {leg.symbol}: {rejection.detail}")

    def _harden(self, run: _Run, leg: g.ExecutionLeg) -> Rejection | None:
        venue = self._leg_venue(leg)
        try:
            quote = venue.get_latest_quote(leg.symbol, leg.asset_class)
        except BrokerError:
            quote = None
        unsent = tuple(x for x in run.group.legs if x.status is g.LegStatus.PENDING)
        _, closes = self._market(run.group.legs) if len(run.group.legs) > 1 else ({}, {})
        rejection, rpm = self._rpm(run, self.clock.now())  # the stored approval, re-checked before each submit
        if rejection is not None:
            return rejection
        return g.hardening_check(run.group, leg.leg_id, quote, self._buying_power(unsent or (leg,)), closes,
                                 rpm, self.clock.now(), self.gsettings)

    def _submit_leg(self, run: _Run, owner: str, leg_id: str) -> None:
        leg = run.group.leg(leg_id)
        if self.gate.dry_run:  # validated live, dry run switched on since: send nothing, park the group
            raise DryRunBlocked(leg.client_order_id, leg.symbol)
        # a kill switch turned on mid-group stops the remaining legs; the group is then flattened;
        # the leg passes the gate again (its reservation included) right before it is sent
        rejection = self._submit_gate(run, leg) or self._harden(run, leg)
        now = self.clock.now()
        if rejection is not None:
            self._set(run, g.reject_leg(run.group, leg_id, rejection, now))
            log_event("exec.group_leg_rejected", group_id=run.group.group_id, leg_id=leg_id, rejection=rejection)
            return
        self._set(run, g.mark_leg_submitted(run.group, leg_id, now))
        self._flush(run, owner)  # SUBMITTED is stored before the order exists
        self._send_leg(run, leg_id)

    def _send_leg(self, run: _Run, leg_id: str) -> None:
        leg = run.group.leg(leg_id)
        venue = self._leg_venue(leg)
        try:
            order = venue.submit_order(g.leg_order_request(run.group, leg_id))
        except BrokerError as exc:
            if exc.retryable:
                raise _Stop(f"{leg_id}: {exc}") from exc  # outcome unknown: RECOVER_LEG by client id later
            self._set(run, g.resolve_leg(run.group, leg_id, self.clock.now(), exc.to_rejection()))
            return
        if self._refused_leg_order(run, leg_id, order, "submit"):
            return
        log_event("exec.group_leg_submitted", group_id=run.group.group_id, leg_id=leg_id,
                  client_order_id=leg.client_order_id, broker_order_id=order.broker_order_id)
        self._apply_order(run, leg_id, order)

    def _refused_leg_order(self, run: _Run, leg_id: str, order: BrokerOrder, stage: str) -> bool:
        """True when the venue's ``order`` is not the leg's own (another tenant's order under a colliding
        client id, or a venue fault): ALERT, and the leg is REJECTED with CLIENT_ORDER_ID_MISMATCH —
        the order is never adopted, canceled or folded into the ledger."""
        rejection = checked_order(g.leg_order_request(run.group, leg_id), order, tenant_id=run.group.tenant_id,
                                  where=f"group.{stage}", group_id=run.group.group_id, leg_id=leg_id,
                                  uid=run.group.uid)
        if rejection is None:
            return False
        self._set(run, g.refuse_foreign_leg_order(run.group, leg_id, rejection, self.clock.now()))
        return True

    def _apply_order(self, run: _Run, leg_id: str, order: BrokerOrder, rejection: Rejection | None = None) -> None:
        self._set(run, g.apply_broker_order(run.group, leg_id, order, self.clock.now(), rejection))

    def _recover_leg(self, run: _Run, owner: str, leg_id: str) -> None:
        leg = run.group.leg(leg_id)
        venue = self._leg_venue(leg)
        try:
            order = venue.get_order_by_client_id(leg.client_order_id)
        except BrokerError as exc:
            raise _Stop(f"{leg_id} lookup: {exc}") from exc
        if order is not None:
            log_event("exec.group_leg_recovered", group_id=run.group.group_id, leg_id=leg_id, found=True)
            if not self._refused_leg_order(run, leg_id, order, "recover"):
                self._apply_order(run, leg_id, order)
            return
        rejection = self._kill_switch(run.group.tenant_id) or self._harden(run, leg)
        if rejection is not None:
            self._set(run, g.resolve_leg(run.group, leg_id, self.clock.now(), rejection))
            return
        log_event("exec.group_leg_recovered", group_id=run.group.group_id, leg_id=leg_id, found=False)
        self._send_leg(run, leg_id)  # the same client order id: the venue refuses a double

    def _poll_legs(self, run: _Run, owner: str, leg_ids: tuple[str, ...]) -> None:
        before = run.group
        timeout = timedelta(seconds=float(self.settings.order_timeout_seconds))
        for leg_id in leg_ids:
            leg = run.group.leg(leg_id)
            venue = self._leg_venue(leg)
            try:
                order = (venue.get_order(leg.broker_order_id) if leg.broker_order_id
                         else venue.get_order_by_client_id(leg.client_order_id))
            except BrokerError as exc:
                raise _Stop(f"{leg_id} poll: {exc}") from exc
            if order is None:  # the venue never received it (the group aborted before recovery)
                self._set(run, g.resolve_leg(run.group, leg_id, self.clock.now(),
                                             Rejection(RejectCode.BROKER_REJECTED, f"{leg_id}: never reached the venue")))
                continue
            if self._refused_leg_order(run, leg_id, order, "poll"):
                continue  # before any cancel: a foreign order is never touched
            submitted = leg.submitted_timestamp
            if not order.state.is_final and submitted is not None and self.clock.now() - submitted >= timeout:
                self._flush(run, owner)
                order = _cancel_timed_out(venue, order, leg_id)
                if self._refused_leg_order(run, leg_id, order, "poll_cancel"):
                    continue
                if order.state.is_final:
                    self._apply_order(run, leg_id, order,
                                      Rejection(RejectCode.ORDER_TIMEOUT, f"{leg_id}: not filled in {timeout.seconds}s"))
                    continue
            self._apply_order(run, leg_id, order)
        if run.group == before:
            self.clock.sleep(float(self.settings.monitoring_poll_interval))

    def _drive_rollback_order(self, run: _Run, planned: g.RollbackOrder) -> None:
        current = next(o for o in run.group.rollback_orders if o.client_order_id == planned.client_order_id)
        leg = run.group.leg(current.leg_id)
        venue = self._leg_venue(leg)
        try:
            if current.broker_order_id:
                order = venue.get_order(current.broker_order_id)
            else:
                order = venue.get_order_by_client_id(current.client_order_id)
                if order is None:
                    order = venue.submit_order(g.rollback_order_request(run.group, current))
        except BrokerError as exc:
            if exc.retryable:
                raise _Stop(f"rollback {current.client_order_id}: {exc}") from exc
            self._set(run, g.record_rollback_update(
                run.group, current.client_order_id, status=g.RollbackStatus.REJECTED, filled_qty=current.filled_qty,
                now=self.clock.now(), rejection=exc.to_rejection()))
            return
        if self._refused_rollback_order(run, current, order, "rollback"):
            return
        self._set(run, g.apply_rollback_order(run.group, order, self.clock.now()))
        # A rollback order seen working before and older than the order timeout is canceled, like a leg:
        # once final, the domain replans the remainder (next seq) or escalates after max_rollback_attempts.
        # Without this a resting rollback order kept the group ROLLING_BACK forever, with no alert.
        timeout = timedelta(seconds=float(self.settings.order_timeout_seconds))
        if (not order.state.is_final and current.status is g.RollbackStatus.SUBMITTED
                and current.created_timestamp is not None and self.clock.now() - current.created_timestamp >= timeout):
            order = _cancel_timed_out(venue, order, f"rollback {current.client_order_id}")
            if self._refused_rollback_order(run, current, order, "rollback_cancel"):
                return
            self._set(run, g.apply_rollback_order(run.group, order, self.clock.now()))

    def _refused_rollback_order(self, run: _Run, planned: g.RollbackOrder, order: BrokerOrder, stage: str) -> bool:
        """True when the venue's answer for a rollback order is not that order: ALERT, and the rollback
        order is REJECTED with CLIENT_ORDER_ID_MISMATCH (its recorded fill unchanged). The domain then
        plans the next order (a new seq, a new id) or escalates after max_rollback_attempts."""
        current = next(o for o in run.group.rollback_orders if o.client_order_id == planned.client_order_id)
        rejection = checked_order(g.rollback_order_request(run.group, current), order, tenant_id=run.group.tenant_id,
                                  where=f"group.{stage}", group_id=run.group.group_id, leg_id=current.leg_id,
                                  seq=current.seq, uid=run.group.uid)
        if rejection is None:
            return False
        self._set(run, g.record_rollback_update(
            run.group, current.client_order_id, status=g.RollbackStatus.REJECTED, filled_qty=current.filled_qty,
            now=self.clock.now(), rejection=rejection))
        return True

    # --- protective stops per leg (issue 15 item 3; the pure part is group/leg_stop.py) -------------
    def _leg_stops(self, run: _Run, owner: str) -> None:
        """On a final group: place the stops of a FILLED group's legs (REQUESTED -> PLANNED -> WORKING),
        then read each working stop once (a stop that filled or was canceled at the venue becomes
        final; its fill is one ledger/history row in the next flush). Runs on every resume of a final
        group the sweeper finds (``_final`` stays false while a stop is open, see ``_doc``)."""
        for leg_id in stops.stops_to_place(run.group):
            self._place_stop(run, owner, leg_id)
        for leg_id in stops.stops_working(run.group):
            self._follow_stop(run, leg_id)

    @staticmethod
    def _stop_request(leg: g.ExecutionLeg, stop: stops.LegStop) -> Any:
        return stops.stop_order_request(stop, symbol=leg.symbol, asset_class=leg.asset_class, direction=leg.direction)

    def _set_stop(self, run: _Run, leg_id: str, stop: stops.LegStop) -> None:
        self._set(run, stops.with_stop(run.group, leg_id, stop))

    def _place_stop(self, run: _Run, owner: str, leg_id: str) -> None:
        """One stop for exactly the leg's filled units, opposite side. The capability table first (a
        refused stop is recorded REFUSED, the group stays FILLED); the plan with its client id is
        persisted before the submit; a PLANNED stop (a crash after that write) is looked up by its
        client id before anything is sent again."""
        group, leg = run.group, run.group.leg(leg_id)
        venue = self._leg_venue(leg)
        order = None
        if leg.stop_loss.status is stops.LegStopStatus.REQUESTED:
            client_id = leg_stop_client_order_id(group.group_id, leg_id, tenant_id=group.tenant_id)
            planned = stops.plan(leg.stop_loss, client_id, leg.filled_units)
            refused = check_capability(str(getattr(venue, "name", "")), leg.asset_class,
                                       self._stop_request(leg, planned))
            if refused is not None:
                self._set_stop(run, leg_id, stops.refuse(planned, refused))
                log_event("exec.group_stop_refused", group_id=group.group_id, leg_id=leg_id, rejection=refused)
                return
            self._set_stop(run, leg_id, planned)
            self._flush(run, owner)  # the plan (its client id) is stored before the stop exists
        else:
            try:
                order = venue.get_order_by_client_id(leg.stop_loss.client_order_id)
            except BrokerError as exc:
                raise _Stop(f"{leg_id} stop lookup: {exc}") from exc
        stop = run.group.leg(leg_id).stop_loss
        request = self._stop_request(leg, stop)
        if order is None:
            try:
                order = venue.submit_order(request)
            except BrokerError as exc:
                if exc.retryable:
                    raise _Stop(f"{leg_id} stop: {exc}") from exc  # PLANNED: looked up by client id next time
                self._set_stop(run, leg_id, stops.refuse(stop, exc.to_rejection()))
                return
        self._adopt_stop_order(run, leg_id, request, order, "stop")
        log_event("exec.group_stop_placed", group_id=group.group_id, leg_id=leg_id,
                  client_order_id=stop.client_order_id, broker_order_id=order.broker_order_id)

    def _follow_stop(self, run: _Run, leg_id: str) -> None:
        leg = run.group.leg(leg_id)
        try:
            order = self._leg_venue(leg).get_order(leg.stop_loss.broker_order_id)
        except BrokerError as exc:
            raise _Stop(f"{leg_id} stop poll: {exc}") from exc
        self._adopt_stop_order(run, leg_id, self._stop_request(leg, leg.stop_loss), order, "stop_poll")

    def _adopt_stop_order(self, run: _Run, leg_id: str, request: Any, order: BrokerOrder, stage: str) -> None:
        """The venue's stop order, once it passed the client-id check (a foreign order: REFUSED)."""
        stop = run.group.leg(leg_id).stop_loss
        rejection = checked_order(request, order, tenant_id=run.group.tenant_id, where=f"group.{stage}",
                                  group_id=run.group.group_id, leg_id=leg_id, uid=run.group.uid)
        updated = stops.refuse(stop, rejection) if rejection is not None else stops.apply_order(stop, order)
        if updated != stop:
            self._set_stop(run, leg_id, updated)

    # --- persistence -----------------------------------------------------------------------------
    def _lease_until(self) -> datetime:
        return self.clock.now() + timedelta(seconds=float(self.settings.lease_seconds))

    def _doc(self, group: g.ExecutionGroup, owner: str | None, written: tuple[str, ...], *,
             release: bool = False) -> dict[str, Any]:
        # a final group with a stop to place or follow stays findable by the sweeper (``_final`` false;
        # its lease is released by the run's last flush, ``_flush(final=True)``)
        final = group.status.is_final and not stops.stops_open(group)
        return {**group.to_dict(), "_final": final, "_kind": "multi_leg",
                "_lease_owner": None if (final or release) else owner,
                "_lease_until": None if final else (self.clock.now() if release else self._lease_until()),
                "_ledger_written": list(written)}

    def _flush(self, run: _Run, owner: str, *, final: bool = False, release: bool = False) -> None:
        written = tuple(run.snapshot.doc.get("_ledger_written") or ())
        fills = tuple(f for f in self._fill_writes(run.group, self._account(run), self._venue_account(run))
                      if f.trade_id not in written)
        if not run.dirty and not fills and not release and not final:
            return
        settlement = self._settlement(run)
        doc = {**self._doc(run.group, owner, written + tuple(f.trade_id for f in fills), release=release or final),
               **self._carried(run)}
        if settlement is not None:
            doc["_settled"] = True
        settlement = self._with_stop_fills(run, settlement, fills)
        intent_update = None
        if doc["_intent_doc"] and run.group.status.is_final and not run.snapshot.doc.get("_final") \
                and not run.snapshot.doc.get("_outcome_written"):
            response = run.group.to_api_response()
            intent_update = {"status": response["status"].lower(), "result": response}
        if run.group.status.is_final:
            doc["_outcome_written"] = True  # the intent's outcome once, also while a stop is followed
        run.snapshot = self.store.save_group(run.snapshot, doc, fills, intent_update,
                                             **({"settlement": settlement} if settlement is not None else {}))
        run.dirty = False

    def _with_stop_fills(self, run: _Run, settlement: GroupSettlement | None,
                         fills: tuple[FillWrite, ...]) -> GroupSettlement | None:
        """A protective stop's fill (``{group}--{leg}--stop``, first written now) moves the leg's
        exposure in the same commit as its ledger row: the position the group settled shrinks by it."""
        moves = []
        for fill in fills:
            group_id, _, rest = fill.trade_id.partition("--")
            leg_id, _, suffix = rest.partition("--")
            if suffix != "stop" or fill.ledger is None:
                continue
            qty = Decimal(str(fill.ledger.get("filled_qty") or "0"))
            signed = qty if fill.ledger.get("side") == "buy" else -qty
            moves.append((self._leg_key(run, run.group.leg(leg_id)), signed, ZERO))
        if not moves:
            return settlement
        if settlement is None:
            return GroupSettlement(self._trade_day(run), tuple(moves), ())
        return GroupSettlement(settlement.trade_day, settlement.exposure + tuple(moves), settlement.release_slots)

    @staticmethod
    def _venue_account(run: _Run) -> str | None:
        binding = stored_binding(run.snapshot.doc.get("_binding"))
        return None if binding is None else binding.venue_account_id

    def _fill_writes(self, group: g.ExecutionGroup, account: str = DEFAULT_GROUP_ACCOUNT,
                     venue_account_id: str | None = None) -> list[FillWrite]:
        """Ledger + history rows for every final fill: each leg's entry and each rollback order, labelled
        with the group's account and its venue account id (the lot book is per tenant and account)."""
        out = self._fill_rows(group, account)
        for write in out:
            with_venue_account(write.ledger, venue_account_id)
            with_venue_account(write.history, venue_account_id)
        return out

    def _fill_rows(self, group: g.ExecutionGroup, account: str) -> list[FillWrite]:
        now = self.clock.now()
        out = []
        if group.status.is_final:  # every final group is one decision row (issue 19 item 7)
            out.append(_decision_write(group, now, account))
        for leg in group.legs:
            if leg.status.is_final and leg.filled_units > 0 and leg.fill_price is not None:
                out.append(_fill_write(group, leg, f"{group.group_id}--{leg.leg_id}", leg.side.value,
                                       leg.filled_units, leg.fill_price, leg.client_order_id, leg.broker_order_id,
                                       "group_fill", now, leg.slippage_pips, account, leg.units))
        for order in group.rollback_orders:
            if order.status.is_final and order.filled_qty > 0 and order.fill_price is not None:
                leg = group.leg(order.leg_id)
                out.append(_fill_write(group, leg, f"{group.group_id}--{leg.leg_id}--rb{order.seq}", order.side.value,
                                       order.filled_qty, order.fill_price, order.client_order_id,
                                       order.broker_order_id, "rollback_fill", now, None, account, order.qty))
        for leg in group.legs:  # a protective stop that filled at the venue (final: counted once)
            stop = leg.stop_loss
            if stop is not None and stop.status.is_final and stop.filled_qty > 0 and stop.fill_price is not None:
                side = "sell" if leg.direction > 0 else "buy"
                out.append(_fill_write(group, leg, f"{group.group_id}--{leg.leg_id}--stop", side, stop.filled_qty,
                                       stop.fill_price, stop.client_order_id or "", stop.broker_order_id,
                                       "fill", now, None, account, stop.qty))  # as exit_legs' exits
        return out


def _fill_write(group: g.ExecutionGroup, leg: g.ExecutionLeg, trade_id: str, side: str, qty: Decimal,
                price: Decimal, client_order_id: str, broker_order_id: str | None, kind: str, now: datetime,
                slippage_ticks: Decimal | None, account: str = DEFAULT_GROUP_ACCOUNT,
                ordered_qty: Decimal | None = None) -> FillWrite:
    ledger, history = group_fill_rows(group=group, leg=leg, trade_id=trade_id, kind=kind, side=side, qty=qty,
                                      ordered_qty=qty if ordered_qty is None else ordered_qty, price=price,
                                      client_order_id=client_order_id, broker_order_id=broker_order_id, now=now,
                                      slippage_ticks=slippage_ticks, account=account)
    tax = tax_fill(trade_id=trade_id, symbol=leg.symbol, asset_class=leg.asset_class.value, side=side, qty=qty,
                   price=price, fees=ZERO, when=now, multiplier=leg.spec.multiplier)
    return FillWrite(trade_id=trade_id, uid=group.uid, ledger=ledger, history=history, tax=tax)


def decision_trade_id(group: g.ExecutionGroup) -> str:
    """The id of the group's one decision row (``--dry_run`` kept for dry-run groups, as before)."""
    return f"{group.group_id}--dry_run" if group.status is g.GroupStatus.DRY_RUN else f"{group.group_id}--decision"


def _decision_write(group: g.ExecutionGroup, now: datetime, account: str = DEFAULT_GROUP_ACCOUNT) -> FillWrite:
    """The group's decision row (like a single order's), written in the commit that makes the group
    final and listed in ``_ledger_written``, so a retried or resumed final save adds no second one.
    ``status``: the final status (filled, partially_filled, rejected, rolled_back,
    failed_needs_attention, dry_run); ``reason_code``/``reason``: the group's coded rejection."""
    trade_id = decision_trade_id(group)
    if group.status is g.GroupStatus.DRY_RUN:
        code, reason = None, "dry run: every gate passed, nothing sent"
    elif group.rejection is not None:
        code, reason = group.rejection.code.value, str(group.rejection)
    else:
        code, reason = None, None
    ledger = group_decision_row(group=group, trade_id=trade_id, status=group.status.value.lower(), reason=reason,
                                reason_code=code, now=now, account=account)
    return FillWrite(trade_id=trade_id, uid=group.uid, ledger=ledger, history=None, tax=None)


def _domain_doc(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if not k.startswith("_")}
