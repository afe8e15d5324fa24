"""The executor's protective stops: each leg's stop order placed, followed and canceled at the venue.

Mixed into ``GroupExecutor`` (backend/execution/group_executor.py). The pure part (the stop's states,
its order request, what a venue answer means) is leg_stop.py; the owner's cancel and replace requests
are stop_management.py, which calls the public methods here (``cancel_stop``,
``settle_pending_replace``) and the façade's ``follow_stop`` under the group's lease. A stop's plan
(its client order id) is persisted before it is sent, and a PLANNED stop is looked up by that id
before anything is sent again.
"""
from __future__ import annotations

from typing import Any

from backend.domain.capabilities import check_capability
from backend.execution import groups as g
from backend.execution.client_ids import checked_order, leg_stop_client_order_id
from backend.execution.group import leg_stop as stops
from backend.execution.group.executor_run import _Run, _Stop
from backend.logs import log_event
from backend.ports.broker import BrokerError, BrokerOrder


class GroupLegStops:
    """Place, follow and cancel the legs' protective stops (issue 15 item 3); settle a lost replace."""

    # --- protective stops per leg (issue 15 item 3; the pure part is group/leg_stop.py) -------------
    def _leg_stops(self, run: _Run, owner: str) -> None:
        """On a final group: place the stops of a FILLED group's legs (REQUESTED -> PLANNED -> WORKING),
        then read each working stop once (a stop that filled or was canceled at the venue becomes
        final; its fill is one ledger/history row in the next flush). Runs on every resume of a final
        group the sweeper finds (``_final`` stays false while a stop is open, see ``_doc``)."""
        for leg_id in stops.stops_to_place(run.group):
            self._place_stop(run, owner, leg_id)
        for leg_id in stops.stops_to_cancel(run.group):  # a cancel the owner asked for (stop_management)
            self.cancel_stop(run, leg_id)
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
        if leg.stop_loss.pending_replace is not None and self.settle_pending_replace(run, leg_id, order):
            return
        self._adopt_stop_order(run, leg_id, self._stop_request(leg, leg.stop_loss), order, "stop_poll")

    def settle_pending_replace(self, run: Any, leg_id: str, old: BrokerOrder) -> bool:
        """A replace whose answer was lost (``pending_replace`` stored, ``old`` = the replaced order as the
        venue reports it now): once the old order is final, the new one is looked up by its client id —
        found: the replacement is recorded (True); absent: the replace never happened (the venue does not
        replace a final order) and the marker is dropped. While the old order works the marker stays."""
        from backend.execution.group.stop_management import adopt_replacement

        stop = run.group.leg(leg_id).stop_loss
        if not old.state.is_final:
            return False
        venue = self._leg_venue(run.group.leg(leg_id))
        try:
            new = venue.get_order_by_client_id(stop.pending_replace["client_order_id"])
        except BrokerError as exc:
            raise _Stop(f"{leg_id} stop replace lookup: {exc}") from exc
        if new is None:
            self._set_stop(run, leg_id, stops.drop_replace(stop))
            return False
        adopt_replacement(self, run, leg_id, stop.pending_replace, old, new)
        return True

    def cancel_stop(self, run: Any, leg_id: str) -> None:
        """Complete a requested cancel (``cancel_requested_at`` stored): a stop never sent (REQUESTED, or
        PLANNED and unknown to the venue by its client id) is CANCELED without a venue call; a stop at the
        venue is canceled there and read back — it may have filled first (recorded as FILLED, ledger =
        venue), or the venue may confirm later (still WORKING: the next resume asks again)."""
        leg = run.group.leg(leg_id)
        stop = leg.stop_loss
        ledger_id = stops.cancel_ledger_id(run.group.group_id, leg_id)
        venue = self._leg_venue(leg)
        if stop.status is stops.LegStopStatus.REQUESTED:
            self._set_stop(run, leg_id, stops.cancel_unplaced(stop, ledger_id, self.clock.now()))
            return
        try:
            if stop.status is stops.LegStopStatus.PLANNED:
                order = venue.get_order_by_client_id(stop.client_order_id)
                if order is None:
                    self._set_stop(run, leg_id, stops.cancel_unplaced(stop, ledger_id, self.clock.now()))
                    return
                self._adopt_stop_order(run, leg_id, self._stop_request(leg, stop), order, "stop_cancel")
                stop = run.group.leg(leg_id).stop_loss
                if stop.status.is_final:
                    return
            try:
                venue.cancel_order(stop.broker_order_id)
            except BrokerError as exc:
                if exc.retryable:
                    raise
                # not cancelable any more (filled or canceled already): what it did is read below
                log_event("exec.group_stop_cancel_refused", severity="WARNING", group_id=run.group.group_id,
                          leg_id=leg_id, code=exc.code.value)
            order = venue.get_order(stop.broker_order_id)
        except BrokerError as exc:
            raise _Stop(f"{leg_id} stop cancel: {exc}") from exc
        if stop.pending_replace is not None and self.settle_pending_replace(run, leg_id, order):
            return self.cancel_stop(run, leg_id)  # the lost replacement is the stop now: cancel that one
        self._adopt_stop_order(run, leg_id, self._stop_request(leg, stop), order, "stop_cancel")
        log_event("exec.group_stop_cancel_sent", group_id=run.group.group_id, leg_id=leg_id,
                  status=run.group.leg(leg_id).stop_loss.status.value)

    def _adopt_stop_order(self, run: _Run, leg_id: str, request: Any, order: BrokerOrder, stage: str) -> None:
        """The venue's stop order, once it passed the client-id check (a foreign order: REFUSED)."""
        stop = run.group.leg(leg_id).stop_loss
        rejection = checked_order(request, order, tenant_id=run.group.tenant_id, where=f"group.{stage}",
                                  group_id=run.group.group_id, leg_id=leg_id, uid=run.group.uid)
        updated = stops.refuse(stop, rejection) if rejection is not None else stops.apply_order(stop, order)
        # a cancel the owner asked for gets its record (ledger row) when the venue confirms it
        updated = stops.settle_cancel(updated, stops.cancel_ledger_id(run.group.group_id, leg_id), self.clock.now())
        if updated != stop:
            self._set_stop(run, leg_id, updated)
