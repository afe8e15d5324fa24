"""The stuck-work sweeper (run every minute by the scheduled function).

It finds, with indexed queries whose cost is proportional to what is stuck (not to all groups):
- multi-leg groups that are not final and whose lease expired (a crashed or timed-out function,
  a rollback waiting for the broker) → takes the lease transactionally and resumes them until
  FILLED or flat;
- single-leg intents left RESERVED with an expired lease → reconciled by client order id (the
  order is found and recorded, or sent exactly once under a fresh lease);
- placed single-leg orders that were still working → later fills appended to the ledger, the
  reservation of an unfilled remainder released once the order is final;
- venue event feeds (OANDA transactions, Alpaca Broker API trade events) since a stored cursor →
  the intents they name are folded now, not when due (backend/execution/event_ingest.py);
- intent documents an app wrote whose trigger died before claiming them (``new``):
  firebase_functions 0.6 deploys Firestore triggers without retry, so the sweeper is the
  redelivery. Racing a live trigger is safe: the claim (single leg) and the group creation
  (multi-leg) let only one of them act. A multi-leg document is never stranded ``accepted``: that
  state and the final outcome are written in the group's own commits.
Dry run holds here too (issue 10): every resume goes through the engine, whose venues are wrapped by
the pre-trade gate's guard (backend/risk/gate.py). Under dry run a group that has legs to send or a
rollback order to place is parked again (lease released, ALERT ``exec.dry_run_blocked``) and a
RESERVED single intent stays reserved: nothing reaches a venue until dry run is off.
Two sweepers, or a sweeper and the original function, never both act: leases are taken in a
transaction and every group write carries a precondition on the previous one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backend.execution.intent import ExecutionContext, OrderIntent
from backend.logs import log_event


@dataclass
class SweepReport:
    groups_found: int = 0
    groups_resumed: int = 0
    groups_final: int = 0
    groups_skipped: int = 0  # lease taken by someone else meanwhile
    intents_found: int = 0
    intents_final: int = 0
    working_found: int = 0
    working_updated: int = 0
    unstarted_found: int = 0
    unstarted_handled: int = 0
    events_read: int = 0  # venue event feeds (backend/execution/event_ingest.py)
    event_intents_folded: int = 0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Sweeper:
    def __init__(self, engine: Any, *, batch: int = 50):
        self.engine = engine
        self.store = engine.store
        self.clock = engine.clock
        self.batch = batch

    def sweep(self) -> SweepReport:
        report = SweepReport()
        now = self.clock.now()
        for tenant_id, group_id in self.store.find_stuck_groups(now, self.batch):
            report.groups_found += 1
            try:
                group = self.engine.resume_group(tenant_id, group_id)
            except Exception as exc:  # one bad group must not stop the sweep; it stays findable
                report.errors.append(f"group {tenant_id}/{group_id}: {type(exc).__name__}: {exc}")
                continue
            if group is None:
                report.groups_skipped += 1
                continue
            report.groups_resumed += 1
            report.groups_final += int(group.status.is_final)
        for tenant_id, intent_id in self.store.find_stuck_intents(now, self.batch):
            report.intents_found += 1
            try:
                record = self.store.get_intent(tenant_id, intent_id)
                if record is None:
                    continue
                intent = OrderIntent.from_dict({**record.data["intent"], "intent_id": intent_id})
                result = self.engine.execute_intent(intent, ExecutionContext(tenant_id, record.data["uid"]))
                report.intents_final += int(result.status != "pending")
            except Exception as exc:
                report.errors.append(f"intent {tenant_id}/{intent_id}: {type(exc).__name__}: {exc}")
        from backend.execution.event_ingest import ingest_venue_events
        from backend.execution.exit_legs import follow_exit_legs
        from backend.execution.order_management import OrderManager

        # issue 15 item 7: the venues' event feeds name the intents to fold now (idempotent folding)
        events = ingest_venue_events(self.engine)
        report.events_read, report.event_intents_folded = events.events_read, events.intents_folded
        report.errors.extend(events.errors)
        for tenant_id, intent_id in self.store.find_working_intents(now, self.batch):
            report.working_found += 1
            try:
                report.working_updated += int(self.engine.reconcile_intent(tenant_id, intent_id) is not None)
                # issue 15: a filled bracket/OTO entry's exits fill at the venue while no function runs;
                # a cancel that answered 202 gets its ledger row once the venue confirms it
                report.working_updated += int(follow_exit_legs(self.engine, tenant_id, intent_id) > 0)
                OrderManager(self.engine).settle_requested_cancel(tenant_id, intent_id)
            except Exception as exc:
                report.errors.append(f"working {tenant_id}/{intent_id}: {type(exc).__name__}: {exc}")
        from backend.service.intake import handle_intent_document

        for tenant_id, intent_id, data in self.store.find_unstarted_intents(self.batch):
            report.unstarted_found += 1
            try:
                handle_intent_document(self.engine, tenant_id, intent_id, data)
                report.unstarted_handled += 1
            except Exception as exc:
                report.errors.append(f"unstarted {tenant_id}/{intent_id}: {type(exc).__name__}: {exc}")
        log_event("exec.sweep", severity="ERROR" if report.errors else "INFO", **report.to_dict())
        return report
