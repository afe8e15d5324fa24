"""ExecutionStore on Firestore (google-cloud-firestore). Paths and fields: docs/ARCHITECTURE.md.

Scaling choices (Firestore sustains ~1 write/s per document, and contended transactions are slow):
- No transaction is used on the hot path. Atomicity comes from batched writes with preconditions
  (``create`` = must not exist; ``update`` with ``last_update_time``), which never lock.
- The daily trade limit is a set of slot documents ``risk_days/<day>/trade_slots/<n>``, n < limit.
  A trade takes a slot by *creating* it; two intents racing for one slot cannot both succeed
  (create precondition), the loser probes the next number. No document is written twice per day
  except a slot given back by a trade that did not happen.
- Position exposure is one document per (tenant, account, symbol) changed only by blind
  ``Increment`` transforms of integer nano-units (exact, no read-modify-write contention).
"""
from __future__ import annotations

import os
from datetime import datetime
from decimal import Decimal
from typing import Any, Mapping

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from backend.domain.money import ZERO
from backend.execution.records import with_lot_method  # the history row carries the applied lot method
from backend.execution.store_rules import (NANO, exposure_from_doc, from_nanos, metrics_doc_id,  # noqa: F401
                                           disposal_path, metrics_write, plan_tax, reserve_increments,
                                           settle_increments, slot_probe_order, tax_reads, to_nanos)
from backend.ports.store import (Claim, ClaimOutcome, ClaimResult, FillUpdate, FillWrite, Finish, GroupReservation,
                                 GroupReserveOutcome, GroupSettlement, GroupSnapshot, IntentMissing, IntentRecord,
                                 IntentStatus, LeaseLost, StoreContention)
from backend.risk.manager import Exposure, RiskSnapshot


class FirestoreStore:
    def __init__(self, client: firestore.Client):
        self.db = client

    @classmethod
    def from_env(cls) -> "FirestoreStore":
        return cls(make_client())

    # --- references ------------------------------------------------------------------------------
    def _tenant(self, tenant_id: str):
        return self.db.collection("tenants").document(tenant_id)

    def intent_ref(self, tenant_id: str, intent_id: str):
        return self._tenant(tenant_id).collection("order_intents").document(intent_id)

    def _slots(self, tenant_id: str, day: str):
        return self._tenant(tenant_id).collection("risk_days").document(day).collection("trade_slots")

    def _exposure_ref(self, tenant_id: str, key: str):
        return self._tenant(tenant_id).collection("exposure").document(key)

    # --- reads -------------------------------------------------------------------------------------
    def get_intent(self, tenant_id: str, intent_id: str) -> IntentRecord | None:
        snap = self.intent_ref(tenant_id, intent_id).get()
        return _record(tenant_id, intent_id, snap)

    def take_intent_lease(self, tenant_id: str, intent_id: str, now: datetime, lease_until: datetime) -> bool:
        ref = self.intent_ref(tenant_id, intent_id)

        @firestore.transactional
        def take(txn: Any) -> bool:
            snap = ref.get(transaction=txn)
            data = snap.to_dict() or {}
            held = data.get("lease_until")
            if data.get("status") != IntentStatus.RESERVED.value or (held is not None and held > now):
                return False
            txn.update(ref, {"lease_until": lease_until})
            return True

        return take(self.db.transaction())

    def annotate_intent(self, tenant_id: str, intent_id: str, fields: Mapping[str, Any], *,
                        only_if_status: str | None = None) -> bool:
        ref = self.intent_ref(tenant_id, intent_id)
        snap = ref.get()
        if not snap.exists or (only_if_status is not None and snap.get("status") != only_if_status):
            return False
        try:
            ref.update({**fields, "updated_server_at": firestore.SERVER_TIMESTAMP},
                       option=self.db.write_option(last_update_time=snap.update_time))
        except (gexc.FailedPrecondition, gexc.NotFound):
            return False
        return True

    def get_intent_with_token(self, tenant_id: str, intent_id: str) -> tuple[IntentRecord, Any] | None:
        snap = self.intent_ref(tenant_id, intent_id).get()
        record = _record(tenant_id, intent_id, snap)
        return None if record is None else (record, snap.update_time)

    def apply_fill_update(self, update: FillUpdate) -> bool:
        batch = self.db.batch()
        batch.update(self.intent_ref(update.tenant_id, update.intent_id),
                     {**update.record, "updated_server_at": firestore.SERVER_TIMESTAMP},
                     option=self.db.write_option(last_update_time=update.token))
        methods = self._add_tax(batch, [(f.uid, f.tax, f.ledger) for f in update.fills])
        self._write_fills(batch, update.tenant_id, update.fills, methods)
        exposure = _exposure_changes(update.filled_signed_qty, update.released_signed_qty)
        if exposure:
            batch.set(self._exposure_ref(update.tenant_id, update.account_key), exposure, merge=True)
        try:
            _commit(batch)
        except (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.NotFound):
            return False
        return True

    def find_working_intents(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        query = (self.db.collection_group("order_intents")
                 .where(filter=FieldFilter("status", "==", IntentStatus.PLACED.value))
                 .where(filter=FieldFilter("reconcile_after", "<", now))
                 .order_by("reconcile_after").limit(limit))
        return [(snap.reference.parent.parent.id, snap.id) for snap in query.stream()]

    def _write_fills(self, batch: Any, tenant_id: str, fills: tuple[FillWrite, ...],
                     methods: Mapping[str, str] | None = None) -> None:
        tenant = self._tenant(tenant_id)
        for fill in fills:
            batch.create(tenant.collection("ledger_trades").document(fill.trade_id),
                         {**fill.ledger, "recorded_at": firestore.SERVER_TIMESTAMP})
            self._add_metrics(batch, tenant_id, fill.trade_id, fill.ledger)
            if fill.history is not None:  # with the lot method applied to the fill's book (issue 11)
                history = with_lot_method(fill.history, (methods or {}).get(fill.trade_id))
                batch.create(self._history_ref(fill.uid, fill.trade_id),
                             {**history, "recorded_at": firestore.SERVER_TIMESTAMP})

    def _count_slots(self, tenant_id: str, day: str) -> int:
        result = self._slots(tenant_id, day).count().get()
        return int(result[0][0].value)

    def kill_switches(self, tenant_id: str) -> RiskSnapshot:
        """Only the halt flags (global and tenant): what a group checks before each leg."""
        refs = [self.db.collection("ops").document("execution"),
                self._tenant(tenant_id).collection("config").document("risk")]
        snaps = {s.reference.path: s for s in self.db.get_all(refs)}
        return RiskSnapshot(global_kill_switch=bool((snaps[refs[0].path].to_dict() or {}).get("kill_switch", False)),
                            tenant_overrides=snaps[refs[1].path].to_dict())

    def risk_snapshot(self, tenant_id: str, account_key: str, trade_day: str) -> RiskSnapshot:
        refs = [self.db.collection("ops").document("execution"),
                self._tenant(tenant_id).collection("config").document("risk"),
                self._exposure_ref(tenant_id, account_key)]
        snaps = {s.reference.path: s for s in self.db.get_all(refs)}
        ops = snaps[refs[0].path].to_dict() or {}
        cfg = snaps[refs[1].path].to_dict()  # None when the tenant has no overrides
        exp = snaps[refs[2].path].to_dict() or {}
        return RiskSnapshot(global_kill_switch=bool(ops.get("kill_switch", False)), tenant_overrides=cfg,
                            trades_today=self._count_slots(tenant_id, trade_day), exposure=_exposure(exp))

    # --- claim -------------------------------------------------------------------------------------
    def claim(self, claim: Claim) -> ClaimOutcome:
        intent_ref = self.intent_ref(claim.tenant_id, claim.intent_id)
        # The risk check counted the slots a moment ago; a stale count only shifts where probing starts
        # (the create precondition on each slot keeps the limit exact), so it is not counted again.
        count = claim.trades_seen
        if count >= claim.daily_limit:
            return ClaimOutcome(ClaimResult.DAILY_LIMIT, trades_today=count)
        reserve = _increments(reserve_increments(claim.signed_qty))
        for slot in slot_probe_order(count, claim.daily_limit):
            snap = intent_ref.get()
            if snap.exists and snap.get("status") != IntentStatus.NEW.value:
                return ClaimOutcome(ClaimResult.DUPLICATE, existing=_record(claim.tenant_id, claim.intent_id, snap))
            batch = self.db.batch()
            record = {**claim.record, "slot": slot, "lease_until": claim.lease_until,
                      "updated_server_at": firestore.SERVER_TIMESTAMP}
            if snap.exists:
                batch.update(intent_ref, record, option=self.db.write_option(last_update_time=snap.update_time))
            else:
                batch.create(intent_ref, {**record, "created_server_at": firestore.SERVER_TIMESTAMP})
            batch.create(self._slots(claim.tenant_id, claim.trade_day).document(str(slot)),
                         {"intent_id": claim.intent_id, "uid": claim.uid, "taken_at": firestore.SERVER_TIMESTAMP})
            batch.set(self._exposure_ref(claim.tenant_id, claim.account_key), reserve, merge=True)
            try:
                _commit(batch)
            except (gexc.AlreadyExists, gexc.FailedPrecondition):
                continue  # the slot or the intent was taken meanwhile; the intent is re-read above
            exp_snap = self._exposure_ref(claim.tenant_id, claim.account_key).get()
            return ClaimOutcome(ClaimResult.CLAIMED, slot=slot, exposure=_exposure(exp_snap.to_dict() or {}),
                                trades_today=count + 1)
        snap = intent_ref.get()
        if snap.exists and snap.get("status") != IntentStatus.NEW.value:
            return ClaimOutcome(ClaimResult.DUPLICATE, existing=_record(claim.tenant_id, claim.intent_id, snap))
        return ClaimOutcome(ClaimResult.DAILY_LIMIT, trades_today=claim.daily_limit)

    # --- finish ------------------------------------------------------------------------------------
    def finish(self, finish: Finish) -> IntentRecord | None:
        intent_ref = self.intent_ref(finish.tenant_id, finish.intent_id)
        for attempt in range(12):  # a retry only when a lot book moved under us (another trade of this user)
            if attempt:
                _backoff(attempt)
            snap = intent_ref.get()
            if snap.exists and IntentStatus(snap.get("status") or "new").is_final:
                return _record(finish.tenant_id, finish.intent_id, snap)  # type: ignore[return-value]
            batch = self.db.batch()
            record = {**finish.record, "updated_server_at": firestore.SERVER_TIMESTAMP, "lease_until": None}
            if snap.exists:
                batch.update(intent_ref, record, option=self.db.write_option(last_update_time=snap.update_time))
            else:
                batch.create(intent_ref, {**record, "created_server_at": firestore.SERVER_TIMESTAMP})
            tenant = self._tenant(finish.tenant_id)
            batch.create(tenant.collection("ledger_trades").document(finish.ledger_id),
                         {**finish.ledger, "recorded_at": firestore.SERVER_TIMESTAMP})
            self._add_metrics(batch, finish.tenant_id, finish.ledger_id, finish.ledger)
            methods = self._add_tax(batch, [(finish.uid, finish.tax, finish.ledger)]) if finish.tax is not None else {}
            if finish.history is not None and finish.history_id is not None:  # + the applied lot method
                history = with_lot_method(finish.history, methods.get(finish.history_id))
                batch.create(self._history_ref(finish.uid, finish.history_id),
                             {**history, "recorded_at": firestore.SERVER_TIMESTAMP})
            if finish.account_key is not None:
                update = _exposure_changes(finish.filled_signed_qty, finish.reserved_signed_qty or ZERO)
                if update:
                    batch.set(self._exposure_ref(finish.tenant_id, finish.account_key), update, merge=True)
            if finish.release_slot is not None and finish.trade_day is not None:
                batch.delete(self._slots(finish.tenant_id, finish.trade_day).document(str(finish.release_slot)))
            try:
                _commit(batch)
                return None
            except (gexc.AlreadyExists, gexc.FailedPrecondition):
                continue  # a concurrent duplicate finished first (returned above), or a lot book moved
        snap = intent_ref.get()
        if snap.exists and IntentStatus(snap.get("status") or "new").is_final:
            return _record(finish.tenant_id, finish.intent_id, snap)  # type: ignore[return-value]
        raise StoreContention(f"intent {finish.intent_id}: could not record the outcome")

    # --- execution-quality metrics (sharded day counters, same commit as the ledger row) ------------
    def _add_metrics(self, batch: Any, tenant_id: str, row_id: str, row: Mapping[str, Any]) -> None:
        """Per-strategy counters only for the first ``MAX_STRATEGIES_PER_SHARD`` strategies of the
        shard-day (its ``strategies`` array, read as a projection); later ones count under
        ``(other)``. Concurrent finishes may each admit one more: the overshoot is bounded by the
        writers of one shard at one moment, never by user input."""
        ref = self._tenant(tenant_id).collection("metrics").document(metrics_doc_id(row_id, row))
        admitted: list[str] = []
        if row.get("strategy_id"):
            admitted = (ref.get(field_paths=["strategies"]).to_dict() or {}).get("strategies") or []
        write = metrics_write(row_id, row, admitted)
        if write is None:
            return
        doc: dict[str, Any] = {"day": write.day, **_increments(write.increments)}
        if write.admit is not None:
            doc["strategies"] = firestore.ArrayUnion([write.admit])
        if write.strategy_bucket is not None:
            doc["by_strategy"] = {write.strategy_bucket: _increments(write.increments)}
        batch.set(ref, doc, merge=True)

    def read_metrics(self, tenant_id: str, from_day: str, to_day: str) -> list[dict[str, Any]]:
        query = (self._tenant(tenant_id).collection("metrics")
                 .where(filter=FieldFilter("day", ">=", from_day)).where(filter=FieldFilter("day", "<=", to_day)))
        return [snap.to_dict() or {} for snap in query.stream()]

    # --- tax lots (advanced in the same commit as the history row) ---------------------------------
    def _add_tax(self, batch: Any, fills: list[tuple[Any, ...]]) -> dict[str, str]:
        """Advance the lot books in ``batch``; answers trade id -> the lot method applied (history rows)."""
        reads = tax_reads(fills)
        if reads is None:
            return {}
        snaps = {s.reference.path: s for s in self.db.get_all([self.db.document(p)
                                                                for p in reads.book_paths + reads.config_paths])}
        docs = {path: (snap.to_dict() if snap.exists else None) for path, snap in snaps.items()}
        plan = plan_tax(reads, docs, docs)
        for (uid, key), path in zip(reads.books, reads.book_paths):
            snap = snaps[path]
            state = {**plan.states[(uid, key)], "updated_server_at": firestore.SERVER_TIMESTAMP}
            if snap.exists:  # the book must be unchanged since it was read (else the commit retries)
                batch.update(snap.reference, state, option=self.db.write_option(last_update_time=snap.update_time))
            else:
                batch.create(snap.reference, state)
        for uid, doc_id, doc in plan.disposals:
            batch.set(self.db.document(disposal_path(uid, doc_id)), doc)
        return plan.applied_methods

    # --- multi-leg groups ----------------------------------------------------------------------------
    def group_ref(self, tenant_id: str, group_id: str):
        return self._tenant(tenant_id).collection("execution_groups").document(group_id)

    def create_group(self, tenant_id: str, group_id: str, doc: Mapping[str, Any],
                     intent_update: Mapping[str, Any] | None = None) -> GroupSnapshot | None:
        ref = self.group_ref(tenant_id, group_id)
        batch = self.db.batch()
        batch.create(ref, {**doc, "_created_server_at": firestore.SERVER_TIMESTAMP})
        self._write_legs(batch, ref, tenant_id, doc)
        if intent_update:
            batch.update(self.intent_ref(tenant_id, group_id),
                         {**intent_update, "updated_server_at": firestore.SERVER_TIMESTAMP})
        try:
            results = _commit(batch)
        except gexc.AlreadyExists:
            return None
        except gexc.NotFound as exc:  # the intent document of intent_update
            raise IntentMissing(f"intent {group_id} does not exist") from exc
        return GroupSnapshot(tenant_id, group_id, dict(doc), results[0].update_time)

    def load_group(self, tenant_id: str, group_id: str) -> GroupSnapshot | None:
        snap = self.group_ref(tenant_id, group_id).get()
        if not snap.exists:
            return None
        return GroupSnapshot(tenant_id, group_id, snap.to_dict() or {}, snap.update_time)

    def reserve_group(self, snapshot: GroupSnapshot, doc: Mapping[str, Any],
                      reservation: GroupReservation) -> GroupReserveOutcome:
        """One batch: the group doc (precondition on its last write), one created slot per leg, and
        exposure increments. A slot taken meanwhile (AlreadyExists) re-reads the taken slots and
        retries; a moved group document is ``LeaseLost``."""
        ref = self.group_ref(snapshot.tenant_id, snapshot.group_id)
        slots_col = self._slots(snapshot.tenant_id, reservation.trade_day)
        for attempt in range(20):
            if attempt:
                _backoff(attempt)
            if attempt == 0:
                # First try without listing: slots below the count just read are most likely taken
                # (claims fill from the bottom); a wrong guess costs one AlreadyExists and a listing.
                taken = set(range(min(reservation.trades_seen, reservation.daily_limit)))
            else:
                taken = {int(s.id) for s in slots_col.select([]).limit(reservation.daily_limit + 1000).stream()
                         if s.id.isdigit() and int(s.id) < reservation.daily_limit}
            chosen = _free_slots(taken, reservation.daily_limit, len(reservation.legs))
            if chosen is None and attempt == 0:
                continue  # the count says full: list the slots to be sure (one may have been given back)
            if chosen is None:
                return GroupReserveOutcome(ClaimResult.DAILY_LIMIT, trades_today=len(taken))
            slots = {leg.leg_id: slot for leg, slot in zip(reservation.legs, chosen)}
            stored = {**doc, "_reservation": reservation.to_doc(slots)}
            batch = self.db.batch()
            batch.update(ref, {**stored, "_updated_server_at": firestore.SERVER_TIMESTAMP},
                         option=self.db.write_option(last_update_time=snapshot.token))
            self._write_legs(batch, ref, snapshot.tenant_id, stored)
            for leg in reservation.legs:
                batch.create(slots_col.document(str(slots[leg.leg_id])),
                             {"intent_id": snapshot.group_id, "group_id": snapshot.group_id, "leg_id": leg.leg_id,
                              "uid": reservation.uid, "taken_at": firestore.SERVER_TIMESTAMP})
                batch.set(self._exposure_ref(snapshot.tenant_id, leg.account_key),
                          _increments(reserve_increments(leg.signed_qty)), merge=True)
            try:
                results = _commit(batch)
            except gexc.AlreadyExists:
                continue  # a slot was taken meanwhile: choose again
            except (gexc.FailedPrecondition, gexc.NotFound) as exc:
                raise LeaseLost(f"group {snapshot.group_id} changed since it was read") from exc
            refs = [self._exposure_ref(snapshot.tenant_id, leg.account_key) for leg in reservation.legs]
            snaps = {s.reference.path: s for s in self.db.get_all(refs)}
            exposures = {leg.account_key: _exposure(snaps[r.path].to_dict() or {})
                         for leg, r in zip(reservation.legs, refs)}
            return GroupReserveOutcome(ClaimResult.CLAIMED,
                                       GroupSnapshot(snapshot.tenant_id, snapshot.group_id, stored, results[0].update_time),
                                       exposures, len(taken) + len(reservation.legs))
        # slots kept being taken by concurrent claims: not a "no" (the day may have room); the group
        # stays VALIDATING with its lease, and a retry or the sweeper reserves again
        raise StoreContention(f"group {snapshot.group_id}: daily slots kept being taken concurrently")

    def get_rpm_approval(self, tenant_id: str, decision_id: str) -> Mapping[str, Any] | None:
        snap = self._tenant(tenant_id).collection("rpm_approvals").document(decision_id).get()
        return snap.to_dict() if snap.exists else None

    def put_rpm_approval(self, tenant_id: str, decision_id: str, doc: Mapping[str, Any]) -> bool:
        try:
            self._tenant(tenant_id).collection("rpm_approvals").document(decision_id).create(
                {**doc, "created_server_at": firestore.SERVER_TIMESTAMP})
        except gexc.AlreadyExists:
            return False
        return True

    def save_group(self, snapshot: GroupSnapshot, doc: Mapping[str, Any],
                   fills: tuple[FillWrite, ...] = (), intent_update: Mapping[str, Any] | None = None,
                   settlement: GroupSettlement | None = None) -> GroupSnapshot:
        ref = self.group_ref(snapshot.tenant_id, snapshot.group_id)
        for attempt in range(12):  # retried only when a lot book moved and the group itself did not
            if attempt:
                _backoff(attempt)
            batch = self.db.batch()
            batch.update(ref, {**doc, "_updated_server_at": firestore.SERVER_TIMESTAMP},
                         option=self.db.write_option(last_update_time=snapshot.token))
            self._write_legs(batch, ref, snapshot.tenant_id, doc)
            methods = self._add_tax(batch, [(f.uid, f.tax, f.ledger) for f in fills])
            self._write_fills(batch, snapshot.tenant_id, fills, methods)
            if intent_update:
                batch.update(self.intent_ref(snapshot.tenant_id, snapshot.group_id),
                             {**intent_update, "updated_server_at": firestore.SERVER_TIMESTAMP})
            if settlement is not None:
                for key, filled, released in settlement.exposure:
                    changes = _exposure_changes(filled, released)
                    if changes:
                        batch.set(self._exposure_ref(snapshot.tenant_id, key), changes, merge=True)
                for slot in settlement.release_slots:
                    batch.delete(self._slots(snapshot.tenant_id, settlement.trade_day).document(str(slot)))
            try:
                results = _commit(batch)
            except (gexc.FailedPrecondition, gexc.NotFound, gexc.AlreadyExists) as exc:
                current = ref.get()
                if current.exists and current.update_time == snapshot.token:
                    if intent_update and not self.intent_ref(snapshot.tenant_id, snapshot.group_id).get().exists:
                        raise IntentMissing(f"intent {snapshot.group_id} does not exist") from exc
                    continue
                raise LeaseLost(f"group {snapshot.group_id} changed since it was read") from exc
            return GroupSnapshot(snapshot.tenant_id, snapshot.group_id, dict(doc), results[0].update_time)
        raise LeaseLost(f"group {snapshot.group_id}: lot books kept moving")

    def _history_ref(self, uid: str, trade_id: str):
        return (self.db.collection("users").document(uid).collection("portfolio").document("history")
                .collection("trades").document(trade_id))

    @staticmethod
    def _write_legs(batch: Any, group_ref: Any, tenant_id: str, doc: Mapping[str, Any]) -> None:
        """Leg documents are a projection of the group document, for per-symbol audit queries."""
        for leg in doc.get("legs", []):
            batch.set(group_ref.collection("legs").document(leg["leg_id"]),
                      {**leg, "group_id": doc.get("group_id"), "tenant_id": tenant_id, "uid": doc.get("uid"),
                       "group_status": doc.get("status")})

    def take_lease(self, tenant_id: str, group_id: str, owner: str, now: datetime,
                   lease_until: datetime) -> GroupSnapshot | None:
        ref = self.group_ref(tenant_id, group_id)
        transaction = self.db.transaction()

        @firestore.transactional
        def take(txn: Any) -> bool:
            snap = ref.get(transaction=txn)
            if not snap.exists:
                return False
            data = snap.to_dict() or {}
            held_until = data.get("_lease_until")
            if data.get("_final") or (held_until is not None and held_until > now):
                return False
            txn.update(ref, {"_lease_owner": owner, "_lease_until": lease_until})
            return True

        if not take(transaction):
            return None
        snap = self.load_group(tenant_id, group_id)
        if snap is None or snap.doc.get("_lease_owner") != owner:
            return None
        return snap

    def find_stuck_groups(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        """Non-final groups whose lease expired: an indexed query (final, lease_until), so the cost is
        proportional to the stuck groups, not to all groups."""
        query = (self.db.collection_group("execution_groups")
                 .where(filter=FieldFilter("_final", "==", False))
                 .where(filter=FieldFilter("_lease_until", "<=", now))
                 .order_by("_lease_until").limit(limit))
        return [(snap.reference.parent.parent.id, snap.id) for snap in query.stream()]

    def find_unstarted_intents(self, limit: int) -> list[tuple[str, str, dict[str, Any]]]:
        """Intent documents an app wrote whose trigger never claimed them (status new). A multi-leg
        document turns ``accepted`` in the same commit that creates its group, and gets its outcome
        in the same commit as the group's final state, so ``new`` is the only state to sweep."""
        query = (self.db.collection_group("order_intents")
                 .where(filter=FieldFilter("status", "==", "new")).limit(limit))
        return [(snap.reference.parent.parent.id, snap.id, snap.to_dict() or {}) for snap in query.stream()]

    def find_stuck_intents(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        query = (self.db.collection_group("order_intents")
                 .where(filter=FieldFilter("status", "==", IntentStatus.RESERVED.value))
                 .where(filter=FieldFilter("lease_until", "<=", now))
                 .order_by("lease_until").limit(limit))
        return [(snap.reference.parent.parent.id, snap.id) for snap in query.stream()]

    # --- read models: tax export, tenant ledger review (one bounded query per page) ------------------
    def _page(self, col: Any, query: Any, field: str, after: tuple[str, str] | None, limit: int,
              direction: str) -> list[tuple[str, dict[str, Any]]]:
        """``query`` ordered by (field, document id) in ``direction``; the page after ``after``
        = (field value, doc id). Only single-field indexes or the ones in firestore.indexes.json."""
        query = query.order_by(field, direction=direction).order_by(FieldPath.document_id(), direction=direction)
        if after is not None:
            query = query.start_after({field: after[0], FieldPath.document_id(): col.document(after[1])})
        return [(snap.id, snap.to_dict() or {}) for snap in query.limit(limit).stream()]

    def _tax_disposals(self, uid: str):
        return self.db.collection("users").document(uid).collection("tax_disposals")

    def tax_disposals_page(self, uid: str, *, sold_from: str, sold_to: str, after: tuple[str, str] | None,
                           limit: int) -> list[tuple[str, dict[str, Any]]]:
        """Final disposals sold in [sold_from, sold_to] (ISO dates), by (sold, doc id) ascending."""
        col = self._tax_disposals(uid)
        query = (col.where(filter=FieldFilter("sold", ">=", sold_from))
                 .where(filter=FieldFilter("sold", "<=", sold_to)))
        return self._page(col, query, "sold", after, limit, firestore.Query.ASCENDING)

    def tax_shortfalls_page(self, uid: str, *, day_from: str, day_to: str, after: tuple[str, str] | None,
                            limit: int) -> list[tuple[str, dict[str, Any]]]:
        """LOT_SHORTFALL records with trade_date in [day_from, day_to], by (trade_date, doc id)."""
        col = self._tax_disposals(uid)
        query = (col.where(filter=FieldFilter("trade_date", ">=", day_from))
                 .where(filter=FieldFilter("trade_date", "<=", day_to)))
        rows = self._page(col, query, "trade_date", after, limit, firestore.Query.ASCENDING)
        return rows

    def tax_books_page(self, uid: str, *, after: str | None, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """The user's lot books (one per symbol), by doc id."""
        col = self.db.collection("users").document(uid).collection("tax_books")
        query = col.order_by(FieldPath.document_id())
        if after is not None:
            query = query.start_after({FieldPath.document_id(): col.document(after)})
        return [(snap.id, snap.to_dict() or {}) for snap in query.limit(limit).stream()]

    def history_page(self, uid: str, *, equals: Mapping[str, str], after: tuple[str, str] | None,
                     limit: int) -> list[tuple[str, dict[str, Any]]]:
        """The user's history rows newest first: (created_at, doc id) descending, equality filters
        (tenant_id, broker_account_id: served by the composite indexes in firestore.indexes.json)."""
        col = self.db.collection("users").document(uid).collection("portfolio").document("history").collection("trades")
        query: Any = col
        for name, value in sorted(equals.items()):
            query = query.where(filter=FieldFilter(name, "==", value))
        return self._page(col, query, "created_at", after, limit, firestore.Query.DESCENDING)

    def ledger_page(self, tenant_id: str, *, equals: Mapping[str, str], created_from: str | None,
                    created_before: str | None, after: tuple[str, str] | None,
                    limit: int) -> list[tuple[str, dict[str, Any]]]:
        """Ledger rows newest first: (created_at, doc id) descending, equality filters, created_at in
        [created_from, created_before). The caller only combines filters that have an index."""
        col = self._tenant(tenant_id).collection("ledger_trades")
        query: Any = col
        for name, value in sorted(equals.items()):
            query = query.where(filter=FieldFilter(name, "==", value))
        if created_from is not None:
            query = query.where(filter=FieldFilter("created_at", ">=", created_from))
        if created_before is not None:
            query = query.where(filter=FieldFilter("created_at", "<", created_before))
        return self._page(col, query, "created_at", after, limit, firestore.Query.DESCENDING)


def _backoff(attempt: int) -> None:
    import random
    import time

    time.sleep(random.uniform(0.005, 0.03) * min(attempt, 6))


def _commit(batch: Any, attempts: int = 8) -> Any:
    """Commit, retrying only contention aborts (ABORTED) with jittered backoff. Precondition
    failures are answers, not contention, and propagate at once."""
    import random
    import time

    for attempt in range(attempts):
        try:
            return batch.commit()
        except gexc.Aborted:
            if attempt == attempts - 1:
                raise StoreContention("commit aborted by contention") from None
            time.sleep(random.uniform(0.01, 0.05) * (2 ** attempt))
    raise AssertionError("unreachable")


def _free_slots(taken: set[int], limit: int, n: int) -> list[int] | None:
    """``n`` distinct free slot numbers below ``limit``, chosen at random so concurrent groups rarely
    race for the same ones (the create precondition keeps the count exact either way); None if the
    day has fewer than ``n`` free slots."""
    import random

    if limit - len(taken) < n:
        return None
    if limit <= 4096:
        return random.sample([s for s in range(limit) if s not in taken], n)
    picks: set[int] = set()
    while len(picks) < n:
        slot = random.randrange(limit)
        if slot not in taken:
            picks.add(slot)
    return sorted(picks)


def _increments(values: Mapping[str, int]) -> dict[str, Any]:
    """The core's integer increments as Firestore ``Increment`` transforms."""
    return {k: firestore.Increment(v) for k, v in values.items()}


def _exposure_changes(filled_signed: Decimal, released_signed: Decimal) -> dict[str, Any]:
    """Increment transforms: the position moves by the fill; the reservation shrinks by the release."""
    return _increments(settle_increments(filled_signed, released_signed))


def _exposure(doc: Mapping[str, Any]) -> Exposure:
    return exposure_from_doc(doc)


def _record(tenant_id: str, intent_id: str, snap: Any) -> IntentRecord | None:
    if not snap.exists:
        return None
    data = snap.to_dict() or {}
    return IntentRecord(tenant_id, intent_id, IntentStatus(data.get("status") or "new"), data)


def make_client(project: str | None = None) -> firestore.Client:
    """A Firestore client: the emulator (anonymous credentials) when FIRESTORE_EMULATOR_HOST is set."""
    project = project or os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCLOUD_PROJECT") or "demo-exec"
    if os.environ.get("FIRESTORE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return firestore.Client(project=project, credentials=AnonymousCredentials())
    return firestore.Client(project=project)
