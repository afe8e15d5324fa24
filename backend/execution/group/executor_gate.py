"""The executor's risk steps: a group's validation and the pre-trade gate of every leg it sends.

Mixed into ``GroupExecutor`` (backend/execution/group_executor.py), whose attributes it uses (``store``,
``clock``, ``gate``, ``settings``, ``gsettings``, ``kill_switches``) along with its venue routing
(``_venue``, ``_leg_venue``) and its persistence (``_set``, ``_doc``, ``_carried``). What is here:

- the validation step (``_validate``): the market reads (quotes, closes, buying power), the venue's
  instrument metadata, the lot books' capacity, the stored RPM approval and the pure group gates;
- the batched risk reads (``_risk_reads``: halt flags, exposures, the bound account, the approval and
  the lot books in one ``get_all``) and the limits per leg and per day checked against them;
- the group's reservation (``_reserve``, re-checked with the reservation visible) and its settlement
  on the final state (``_settlement``);
- the gate right before each submit (``_submit_gate``, ``_kill_switch``) and the hardening re-check
  (``_harden``).
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Mapping

from backend.domain.errors import InvalidInput, RejectCode, Rejection
from backend.domain.ids import check_id
from backend.domain.money import ZERO
from backend.execution import groups as g
from backend.execution import lot_capacity
from backend.execution.accounts import stored_binding
from backend.execution.group import leg_stop as stops
from backend.execution.group.executor_run import DEFAULT_GROUP_ACCOUNT, _Run, _Stop, leg_trade_id
from backend.execution.instruments import check_instrument
from backend.execution.store_rules import exposure_from_doc, exposure_path, history_path
from backend.logs import log_event
from backend.ports.broker import BrokerError, Quote
from backend.ports.store import ACCOUNT_LIMIT, ClaimResult, GroupReservation, GroupSettlement, LegReservation
from backend.risk import approvals
from backend.risk.gate import account_in, account_key_for, halt_flags, halt_paths
from backend.risk.manager import Exposure, RiskSnapshot


class GroupRiskChecks:
    """Validation, the batched risk reads, the reservation and its settlement, the per-submit gate."""

    # --- validation: market reads, venue metadata, the pure gates, then the reservation ---------------
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
        if rejection is None and run.trade_ids_in_use:  # the fills' rows would collide after the orders
            rejection = Rejection(RejectCode.TRADE_ID_IN_USE, f"this user's trade history already holds the fills "
                                  f"of a group {group.group_id!r} (legs {', '.join(run.trade_ids_in_use)}) placed "
                                  f"for another tenant; choose another id")
        if rejection is None and run.books is not None:  # a full lot book refuses legs that open lots
            rejection = lot_capacity.group_refusal(group.legs, run.books, tenant_id=group.tenant_id, uid=group.uid,
                                                   account=self._account(run))
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
        books = lot_capacity.group_book_paths(run.group.uid, legs) if approval else []
        # + the user's history rows of the legs' first fills: they exist only for a group of the same id
        # and uid in another tenant (an app-chosen intent-document id reused after the user moved)
        histories = {leg.leg_id: history_path(run.group.uid, leg_trade_id(run.group.group_id, leg.leg_id))
                     for leg in legs} if approval else {}
        docs = self.store.get_all([*paths, *books, *histories.values()])  # the validation's one round trip
        if approval:
            run.books = {p: docs.get(p, (None, None)) for p in books}
            run.trade_ids_in_use = tuple(leg_id for leg_id, p in histories.items()
                                         if docs.get(p, (None, None))[0] is not None)
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
