"""The executor's venue orders: a group's legs and rollback orders, sent and followed at the venue.

Mixed into ``GroupExecutor`` (backend/execution/group_executor.py). Each leg is SUBMITTED in the stored
group before its order exists (``_submit_leg`` persists, then ``_send_leg`` sends); a leg whose outcome
is unknown after a crash or a venue fault is looked up by its client order id before anything is sent
again (``_recover_leg``); working legs are polled and canceled past the order timeout (``_poll_legs``);
rollback orders are sent, followed and canceled the same way (``_drive_rollback_order``). A venue
answer that is not the group's own order is refused, never adopted (``_refused_leg_order``,
``_refused_rollback_order``). The pre-submit gate (``_submit_gate``, ``_harden``) is in
executor_gate.py; a venue that cannot be reached raises ``_Stop`` (executor_run.py).
"""
from __future__ import annotations

from datetime import timedelta

from backend.domain.errors import RejectCode, Rejection
from backend.execution import groups as g
from backend.execution.client_ids import checked_order
from backend.execution.group.executor_run import _Run, _Stop
from backend.logs import log_event
from backend.ports.broker import BrokerError, BrokerOrder, BrokerPort
from backend.risk.gate import DryRunBlocked


def _cancel_timed_out(venue: BrokerPort, order: BrokerOrder, what: str) -> BrokerOrder:
    """Cancel an order past the order timeout and read it back (fills may have landed meanwhile);
    a venue failure stops the run (``_Stop``), to be resumed from the persisted state."""
    try:
        venue.cancel_order(order.broker_order_id)
        return venue.get_order(order.broker_order_id)
    except BrokerError as exc:
        raise _Stop(f"{what} cancel: {exc}") from exc


class GroupVenueOrders:
    """Submit, recover, poll and cancel the group's legs; send and follow its rollback orders."""

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
