"""The multi-leg orchestrator: drives an ExecutionGroup with the broker, persisting before every side effect.

The group document is the source of truth. Each loop turn asks the pure domain for the next step
(``groups.next_step``), performs it, and — before anything reaches the broker — saves the group
with a precondition on its last write. A crash at any point leaves a document whose lease expires;
the sweeper takes the lease and calls ``resume``, which continues from the stored state: legs are
looked up by their deterministic client order id before anything is resent, rollback orders are
replanned with the same ids, and fills reach the ledger exactly once (``_ledger_written``).

Rollback is blocking, not the seed's "non-blocking": when the broker is unreachable the group stays
ROLLING_BACK with an expired lease, and is retried by the sweeper until it is flat.

``GroupExecutor`` is the façade: the entry points, the account binding and venue routing, and the
loop that performs each step are here; the steps themselves are mixins in backend/execution/group/:
``executor_gate`` (validation, the batched risk reads, the reservation and the per-submit gate),
``executor_orders`` (legs and rollback orders at the venue), ``executor_stops`` (the legs'
protective stops) and ``executor_persistence`` (the stored document, its saves and ledger rows);
``executor_run`` holds the run state and its signals. Names other modules import from here
(``VenueUnreachable``, ``DEFAULT_GROUP_ACCOUNT``, ``decision_trade_id``, ...) are imported back.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, Mapping

from backend.domain.clock import Clock
from backend.domain.errors import InvalidInput, Rejection
from backend.domain.money import dec_str
from backend.execution import groups as g
from backend.execution.accounts import AccountRefused, stored_binding
from backend.execution.broker_router import as_router
from backend.execution.group import leg_stop as stops
from backend.execution.group.executor_gate import GroupRiskChecks
from backend.execution.group.executor_orders import GroupVenueOrders, _cancel_timed_out  # noqa: F401
from backend.execution.group.executor_persistence import (GroupPersistence, _decision_write,  # noqa: F401
                                                          _domain_doc, _fill_write, decision_trade_id)
from backend.execution.group.executor_run import DEFAULT_GROUP_ACCOUNT, VenueUnreachable, _Run, _Stop
from backend.execution.group.executor_stops import GroupLegStops
from backend.execution.intent import ExecutionContext, validate_id
from backend.execution.preflight import check_group_writes
from backend.logs import log_event
from backend.ports.broker import BrokerError, BrokerPort
from backend.ports.store import GroupSnapshot, LeaseLost
from backend.risk.gate import DryRunBlocked, PreTradeGate
from backend.settings import ExecSettings

_REQUEST_KEYS = {"strategy_id", "legs", "rpm_output", "max_group_slippage_pips", "allow_partial_fills",
                 "execution_priority", "group_id", "broker_account_id"}



class GroupExecutor(GroupRiskChecks, GroupVenueOrders, GroupLegStops, GroupPersistence):
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
        unchanged = self._stops_unchanged(tenant_id, group_id, now)
        if unchanged is not None:
            return unchanged  # only working stops, none moved at the venue: nothing to write
        snapshot = self.store.take_lease(tenant_id, group_id, owner, now, self._lease_until())
        if snapshot is None:
            return None
        group = g.ExecutionGroup.from_dict(_domain_doc(snapshot.doc))
        log_event("exec.group_resumed", group_id=group_id, tenant_id=tenant_id, status=group.status.value)
        self._use_binding(tenant_id, snapshot.doc)
        return self._drive(_Run(snapshot, group), owner)

    def _stops_unchanged(self, tenant_id: str, group_id: str, now: datetime) -> g.ExecutionGroup | None:
        """The group when it is final, its lease free, and all that is open are working stops the venue
        still reports exactly as stored (one read and one venue read per stop, no write: the sweeper
        used to rewrite the document on every sweep while a stop worked); None: resume as usual."""
        snapshot = self.store.load_group(tenant_id, group_id)
        if snapshot is None or snapshot.doc.get("_final"):
            return None
        held = snapshot.doc.get("_lease_until")
        if held is not None and held > now:
            return None
        group = g.ExecutionGroup.from_dict(_domain_doc(snapshot.doc))
        if not group.status.is_final or stops.stops_to_place(group) or stops.stops_to_cancel(group) \
                or not stops.stops_working(group):
            return None
        self._use_binding(tenant_id, snapshot.doc)
        for leg_id in stops.stops_working(group):
            leg = group.leg(leg_id)
            if leg.stop_loss.pending_replace is not None:
                return None
            try:
                order = self._leg_venue(leg).get_order(leg.stop_loss.broker_order_id)
            except (BrokerError, _Stop):
                return None  # the resume decides (and defers) as before
            if stops.apply_order(leg.stop_loss, order) != leg.stop_loss:
                return None
        return group

    def run_leased(self, tenant_id: str, group_id: str, action: Any) -> g.ExecutionGroup | None:
        """Stop management (group/stop_management.py): take the group's lease (None: another worker holds
        it, or the group is final), run ``action(run, owner)`` — it persists (``persist``) before each
        venue call — then save what changed with its ledger rows and release the lease. A venue that
        cannot be reached (``VenueUnreachable``) leaves the persisted request for the sweeper."""
        owner = uuid.uuid4().hex
        snapshot = self.store.take_lease(tenant_id, group_id, owner, self.clock.now(), self._lease_until())
        if snapshot is None:
            return None
        run = _Run(snapshot, g.ExecutionGroup.from_dict(_domain_doc(snapshot.doc)))
        self._use_binding(tenant_id, snapshot.doc)
        try:
            action(run, owner)
        except _Stop as stop:
            self._flush(run, owner, release=True)
            raise VenueUnreachable(stop.reason) from None
        except BaseException:
            self._flush(run, owner, release=True)
            raise
        self._flush(run, owner, final=True)
        return run.group

    def persist(self, run: Any, owner: str, group: g.ExecutionGroup) -> None:
        """Store ``group`` now (before a venue call), under the run's lease."""
        self._set(run, group)
        self._flush(run, owner)

    def update(self, run: Any, group: g.ExecutionGroup) -> None:
        """Change the run's group (saved by the run's next flush)."""
        self._set(run, group)

    def follow_stop(self, run: Any, leg_id: str) -> None:
        """Read the leg's stop at the venue and record what it did (a lost replace settled first)."""
        self._follow_stop(run, leg_id)

    def stop_venue(self, run: Any, leg_id: str) -> BrokerPort:
        """The venue of the leg's stop (the group's bound account), through the dry-run guard."""
        return self._leg_venue(run.group.leg(leg_id))

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

    # --- venue routing: every step's venue, through the gate's dry-run guard ----------------------
    def _venue(self, asset_class: Any) -> BrokerPort | Rejection:
        """The class's venue through the router, wrapped by the gate's dry-run guard."""
        return self.gate.route(self.venues, asset_class, self._guarded)

    def _leg_venue(self, leg: g.ExecutionLeg) -> BrokerPort:
        venue = self._venue(leg.asset_class)
        if isinstance(venue, Rejection):  # validated before any submit; only a config change gets here
            raise _Stop(str(venue))
        return venue
