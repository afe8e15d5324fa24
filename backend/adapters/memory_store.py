"""In-memory store: a faithful fake of the store port (``backend.ports.store``) for fast unit tests
and library use without Firestore — never the only proof of persistence.

It is a versioned document store with Firestore's layout: ``docs`` maps a document path to its
fields, and every write gives the document a new version (Firestore's ``update_time``), which is the
token of ``get_intent_with_token``/``load_group`` and the precondition of the conditional writes.
What is written (exposure increments in nano-units, slot order, metrics increments, lot books) is
computed by the core (``backend.execution.store_rules``, ``backend.tax.state``) exactly as for the
Firestore adapter; ``tests/contract`` runs both through the same behaviours.
"""
from __future__ import annotations

import copy
import itertools
import threading
from datetime import datetime
from typing import Any, Mapping

from backend.execution.records import with_lot_method  # the history row carries the applied lot method
from backend.execution.store_rules import (book_path, disposal_path, exposure_from_doc, metrics_doc_id,
                                           metrics_write, plan_tax, reserve_increments, settle_increments,
                                           slot_probe_order, tax_reads)
from backend.ports.store import (Claim, ClaimOutcome, ClaimResult, FillUpdate, FillWrite, Finish, GroupReservation,
                                 GroupReserveOutcome, GroupSettlement, GroupSnapshot, IntentMissing, IntentRecord,
                                 IntentStatus, LeaseLost, StoreContention)
from backend.risk.manager import Exposure, RiskSnapshot


class InMemoryStore:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.docs: dict[str, dict[str, Any]] = {}
        self._versions: dict[str, int] = {}
        self._clock = itertools.count(1)
        self.commits = 0

    # --- the document layer (paths mirror the Firestore layout so tests can assert on them) --------
    @staticmethod
    def intent_path(tenant_id: str, intent_id: str) -> str:
        return f"tenants/{tenant_id}/order_intents/{intent_id}"

    @staticmethod
    def group_path(tenant_id: str, group_id: str) -> str:
        return f"tenants/{tenant_id}/execution_groups/{group_id}"

    def get(self, path: str) -> dict[str, Any] | None:
        with self._lock:
            doc = self.docs.get(path)
            return copy.deepcopy(doc) if doc is not None else None

    def collection(self, prefix: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            depth = prefix.count("/") + 1
            return {p: copy.deepcopy(d) for p, d in self.docs.items()
                    if p.startswith(prefix + "/") and p.count("/") == depth}

    def set_doc(self, path: str, doc: Mapping[str, Any]) -> None:
        with self._lock:
            self._set(path, doc)

    def _version(self, path: str) -> int:
        return self._versions.get(path, 0) if path in self.docs else -1

    def _set(self, path: str, doc: Mapping[str, Any]) -> None:
        self.docs[path] = copy.deepcopy(dict(doc))
        self._versions[path] = next(self._clock)

    def _merge(self, path: str, fields: Mapping[str, Any]) -> None:
        self._set(path, {**self.docs.get(path, {}), **copy.deepcopy(dict(fields))})

    def _increment(self, path: str, increments: Mapping[str, int]) -> None:
        """``set(merge=True)`` of ``Increment`` transforms: missing fields count from 0."""
        if not increments:
            return
        doc = dict(self.docs.get(path, {}))
        for key, value in increments.items():
            doc[key] = doc.get(key, 0) + value
        self._set(path, doc)

    def _delete(self, path: str) -> None:
        self.docs.pop(path, None)
        self._versions.pop(path, None)

    # --- single-leg intents ----------------------------------------------------------------------
    def get_intent(self, tenant_id: str, intent_id: str) -> IntentRecord | None:
        doc = self.get(self.intent_path(tenant_id, intent_id))
        return None if doc is None else IntentRecord(tenant_id, intent_id, IntentStatus(doc.get("status") or "new"), doc)

    def take_intent_lease(self, tenant_id: str, intent_id: str, now: datetime, lease_until: datetime) -> bool:
        with self._lock:
            path = self.intent_path(tenant_id, intent_id)
            doc = self.docs.get(path)
            if doc is None or doc.get("status") != IntentStatus.RESERVED.value:
                return False
            held = doc.get("lease_until")
            if held is not None and held > now:
                return False
            self._merge(path, {"lease_until": lease_until})
            return True

    def annotate_intent(self, tenant_id: str, intent_id: str, fields: Mapping[str, Any], *,
                        only_if_status: str | None = None) -> bool:
        with self._lock:
            path = self.intent_path(tenant_id, intent_id)
            doc = self.docs.get(path)
            if doc is None or (only_if_status is not None and doc.get("status") != only_if_status):
                return False
            self._merge(path, fields)
            return True

    def get_intent_with_token(self, tenant_id: str, intent_id: str) -> tuple[IntentRecord, Any] | None:
        with self._lock:
            record = self.get_intent(tenant_id, intent_id)
            if record is None:
                return None
            return record, self._version(self.intent_path(tenant_id, intent_id))

    def apply_fill_update(self, update: FillUpdate) -> bool:
        with self._lock:
            path = self.intent_path(update.tenant_id, update.intent_id)
            if path not in self.docs or self._version(path) != update.token:
                return False
            if any(self._ledger_path(update.tenant_id, f.trade_id) in self.docs for f in update.fills):
                return False
            self._merge(path, update.record)
            methods = self._apply_tax([(f.uid, f.tax, f.ledger) for f in update.fills])
            self._write_fills(update.tenant_id, update.fills, methods)
            self._increment(self._exposure_path(update.tenant_id, update.account_key),
                            settle_increments(update.filled_signed_qty, update.released_signed_qty))
            self.commits += 1
            return True

    def find_working_intents(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        with self._lock:
            found = [(d["reconcile_after"], p) for p, d in self._intents()
                     if d.get("status") == IntentStatus.PLACED.value
                     and d.get("reconcile_after") is not None and d["reconcile_after"] < now]
            return [(p.split("/")[1], p.split("/")[3]) for _, p in sorted(found)[:limit]]

    def find_stuck_intents(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        with self._lock:
            found = [(d["lease_until"], p) for p, d in self._intents()
                     if d.get("status") == IntentStatus.RESERVED.value
                     and d.get("lease_until") is not None and d["lease_until"] <= now]
            return [(p.split("/")[1], p.split("/")[3]) for _, p in sorted(found)[:limit]]

    def find_unstarted_intents(self, limit: int) -> list[tuple[str, str, dict[str, Any]]]:
        with self._lock:
            return [(p.split("/")[1], p.split("/")[3], copy.deepcopy(d)) for p, d in sorted(self._intents())
                    if d.get("status") == "new"][:limit]

    def _intents(self) -> list[tuple[str, dict[str, Any]]]:
        return [(p, d) for p, d in self.docs.items() if p.count("/") == 3 and p.split("/")[2] == "order_intents"]

    # --- risk reads ------------------------------------------------------------------------------
    @staticmethod
    def _exposure_path(tenant_id: str, key: str) -> str:
        return f"tenants/{tenant_id}/exposure/{key}"

    @staticmethod
    def _slot_path(tenant_id: str, day: str, slot: int) -> str:
        return f"tenants/{tenant_id}/risk_days/{day}/trade_slots/{slot}"

    def _exposure(self, tenant_id: str, key: str) -> Exposure:
        return exposure_from_doc(self.docs.get(self._exposure_path(tenant_id, key)))

    def _taken_slots(self, tenant_id: str, day: str) -> set[int]:
        return {int(p.rsplit("/", 1)[1]) for p in self.collection(f"tenants/{tenant_id}/risk_days/{day}/trade_slots")}

    def kill_switches(self, tenant_id: str) -> RiskSnapshot:
        with self._lock:
            return RiskSnapshot(global_kill_switch=bool(self.docs.get("ops/execution", {}).get("kill_switch", False)),
                                tenant_overrides=copy.deepcopy(self.docs.get(f"tenants/{tenant_id}/config/risk")))

    def risk_snapshot(self, tenant_id: str, account_key: str, trade_day: str) -> RiskSnapshot:
        with self._lock:
            flags = self.kill_switches(tenant_id)
            return RiskSnapshot(global_kill_switch=flags.global_kill_switch, tenant_overrides=flags.tenant_overrides,
                                trades_today=len(self._taken_slots(tenant_id, trade_day)),
                                exposure=self._exposure(tenant_id, account_key))

    # --- claim and finish ------------------------------------------------------------------------
    def claim(self, claim: Claim) -> ClaimOutcome:
        with self._lock:
            path = self.intent_path(claim.tenant_id, claim.intent_id)
            count = claim.trades_seen
            if count >= claim.daily_limit:
                return ClaimOutcome(ClaimResult.DAILY_LIMIT, trades_today=count)
            existing = self.docs.get(path)
            if existing is not None and (existing.get("status") or "new") != IntentStatus.NEW.value:
                return ClaimOutcome(ClaimResult.DUPLICATE, existing=self.get_intent(claim.tenant_id, claim.intent_id))
            for slot in slot_probe_order(count, claim.daily_limit):
                slot_path = self._slot_path(claim.tenant_id, claim.trade_day, slot)
                if slot_path in self.docs:
                    continue
                self._set(slot_path, {"intent_id": claim.intent_id, "uid": claim.uid})
                self._merge(path, {**claim.record, "slot": slot, "lease_until": claim.lease_until})
                self._increment(self._exposure_path(claim.tenant_id, claim.account_key),
                                reserve_increments(claim.signed_qty))
                self.commits += 1
                return ClaimOutcome(ClaimResult.CLAIMED, slot=slot,
                                    exposure=self._exposure(claim.tenant_id, claim.account_key),
                                    trades_today=count + 1)
            return ClaimOutcome(ClaimResult.DAILY_LIMIT, trades_today=claim.daily_limit)

    def finish(self, finish: Finish) -> IntentRecord | None:
        with self._lock:
            path = self.intent_path(finish.tenant_id, finish.intent_id)
            current = self.docs.get(path)
            if current is not None and IntentStatus(current.get("status") or "new").is_final:
                return self.get_intent(finish.tenant_id, finish.intent_id)
            ledger_path = self._ledger_path(finish.tenant_id, finish.ledger_id)
            history = (finish.history is not None and finish.history_id is not None)
            if ledger_path in self.docs or (history and self._history_path(finish.uid, finish.history_id) in self.docs):
                # Firestore: the create precondition fails on every retry
                raise StoreContention(f"intent {finish.intent_id}: could not record the outcome")
            self._merge(path, {**finish.record, "lease_until": None})
            self._set(ledger_path, finish.ledger)
            self._add_metrics(finish.tenant_id, finish.ledger_id, finish.ledger)
            methods = self._apply_tax([(finish.uid, finish.tax, finish.ledger)])
            if history:  # with the lot method the tax step just applied (issue 11)
                self._set(self._history_path(finish.uid, finish.history_id),  # type: ignore[arg-type]
                          with_lot_method(finish.history, methods.get(finish.history_id)))  # type: ignore[arg-type]
            if finish.account_key is not None:
                self._increment(self._exposure_path(finish.tenant_id, finish.account_key),
                                settle_increments(finish.filled_signed_qty, finish.reserved_signed_qty or 0))
            if finish.release_slot is not None and finish.trade_day is not None:
                self._delete(self._slot_path(finish.tenant_id, finish.trade_day, finish.release_slot))
            self.commits += 1
            return None

    # --- rows written with a fill ----------------------------------------------------------------
    @staticmethod
    def _ledger_path(tenant_id: str, trade_id: str) -> str:
        return f"tenants/{tenant_id}/ledger_trades/{trade_id}"

    @staticmethod
    def _history_path(uid: str, trade_id: str) -> str:
        return f"users/{uid}/portfolio/history/trades/{trade_id}"

    def _write_fills(self, tenant_id: str, fills: tuple[FillWrite, ...],
                     methods: Mapping[str, str] | None = None) -> None:
        for fill in fills:
            self._set(self._ledger_path(tenant_id, fill.trade_id), fill.ledger)
            self._add_metrics(tenant_id, fill.trade_id, fill.ledger)
            if fill.history is not None:  # with the lot method applied to the fill's book (issue 11)
                self._set(self._history_path(fill.uid, fill.trade_id),
                          with_lot_method(fill.history, (methods or {}).get(fill.trade_id)))

    def _add_metrics(self, tenant_id: str, row_id: str, row: Mapping[str, Any]) -> None:
        path = f"tenants/{tenant_id}/metrics/{metrics_doc_id(row_id, row)}"
        write = metrics_write(row_id, row, (self.docs.get(path) or {}).get("strategies") or [])
        if write is None:
            return
        doc = copy.deepcopy(self.docs.get(path, {}))
        doc["day"] = write.day
        for key, value in write.increments.items():
            doc[key] = doc.get(key, 0) + value
        if write.admit is not None:
            doc["strategies"] = [*doc.get("strategies", []), write.admit]
        if write.strategy_bucket is not None:
            per = doc.setdefault("by_strategy", {}).setdefault(write.strategy_bucket, {})
            for key, value in write.increments.items():
                per[key] = per.get(key, 0) + value
        self._set(path, doc)

    def _apply_tax(self, fills: list[tuple[Any, ...]]) -> dict[str, str]:
        """Advance the lot books; answers trade id -> the lot method applied (for the history rows)."""
        reads = tax_reads(fills)
        if reads is None:
            return {}
        plan = plan_tax(reads, {p: self.docs.get(p) for p in reads.book_paths},
                        {p: self.docs.get(p) for p in reads.config_paths})
        for (uid, key), state in plan.states.items():
            self._set(book_path(uid, key), state)
        for uid, doc_id, doc in plan.disposals:
            self._set(disposal_path(uid, doc_id), doc)
        return plan.applied_methods

    # --- multi-leg groups ------------------------------------------------------------------------
    def _put_group(self, tenant_id: str, group_id: str, doc: Mapping[str, Any]) -> GroupSnapshot:
        path = self.group_path(tenant_id, group_id)
        self._set(path, doc)
        for leg in doc.get("legs", []):
            self._set(f"{path}/legs/{leg['leg_id']}", {**copy.deepcopy(leg), "group_id": doc.get("group_id"),
                                                       "tenant_id": tenant_id, "uid": doc.get("uid"),
                                                       "group_status": doc.get("status")})
        self.commits += 1
        return GroupSnapshot(tenant_id, group_id, copy.deepcopy(dict(doc)), self._version(path))

    def _check_intent(self, tenant_id: str, group_id: str, intent_update: Mapping[str, Any] | None) -> None:
        if intent_update and self.intent_path(tenant_id, group_id) not in self.docs:
            raise IntentMissing(f"intent {group_id} does not exist")

    def create_group(self, tenant_id: str, group_id: str, doc: Mapping[str, Any],
                     intent_update: Mapping[str, Any] | None = None) -> GroupSnapshot | None:
        with self._lock:
            if self.group_path(tenant_id, group_id) in self.docs:
                return None
            self._check_intent(tenant_id, group_id, intent_update)
            if intent_update:
                self._merge(self.intent_path(tenant_id, group_id), intent_update)
            return self._put_group(tenant_id, group_id, doc)

    def load_group(self, tenant_id: str, group_id: str) -> GroupSnapshot | None:
        with self._lock:
            path = self.group_path(tenant_id, group_id)
            doc = self.docs.get(path)
            if doc is None:
                return None
            return GroupSnapshot(tenant_id, group_id, copy.deepcopy(doc), self._version(path))

    def _check_token(self, snapshot: GroupSnapshot) -> None:
        path = self.group_path(snapshot.tenant_id, snapshot.group_id)
        if path not in self.docs or self._version(path) != snapshot.token:
            raise LeaseLost(f"group {snapshot.group_id} changed since it was read")

    def reserve_group(self, snapshot: GroupSnapshot, doc: Mapping[str, Any],
                      reservation: GroupReservation) -> GroupReserveOutcome:
        with self._lock:
            self._check_token(snapshot)
            taken = self._taken_slots(snapshot.tenant_id, reservation.trade_day)
            free = [n for n in range(reservation.daily_limit) if n not in taken]
            if len(free) < len(reservation.legs):
                return GroupReserveOutcome(ClaimResult.DAILY_LIMIT, trades_today=len(taken))
            slots = {}
            for leg, slot in zip(reservation.legs, free):
                slots[leg.leg_id] = slot
                self._set(self._slot_path(snapshot.tenant_id, reservation.trade_day, slot),
                          {"intent_id": snapshot.group_id, "group_id": snapshot.group_id, "leg_id": leg.leg_id,
                           "uid": reservation.uid})
                self._increment(self._exposure_path(snapshot.tenant_id, leg.account_key),
                                reserve_increments(leg.signed_qty))
            stored = {**copy.deepcopy(dict(doc)), "_reservation": reservation.to_doc(slots)}
            snap = self._put_group(snapshot.tenant_id, snapshot.group_id, stored)
            return GroupReserveOutcome(ClaimResult.CLAIMED, snap,
                                       {leg.account_key: self._exposure(snapshot.tenant_id, leg.account_key)
                                        for leg in reservation.legs}, len(taken) + len(reservation.legs))

    def save_group(self, snapshot: GroupSnapshot, doc: Mapping[str, Any],
                   fills: tuple[FillWrite, ...] = (), intent_update: Mapping[str, Any] | None = None,
                   settlement: GroupSettlement | None = None) -> GroupSnapshot:
        with self._lock:
            self._check_token(snapshot)
            self._check_intent(snapshot.tenant_id, snapshot.group_id, intent_update)
            for fill in fills:
                if self._ledger_path(snapshot.tenant_id, fill.trade_id) in self.docs:
                    raise LeaseLost(f"group {snapshot.group_id}: ledger row {fill.trade_id} already exists")
            methods = self._apply_tax([(f.uid, f.tax, f.ledger) for f in fills])
            self._write_fills(snapshot.tenant_id, fills, methods)
            if intent_update:
                self._merge(self.intent_path(snapshot.tenant_id, snapshot.group_id), intent_update)
            if settlement is not None:
                for key, filled, released in settlement.exposure:
                    self._increment(self._exposure_path(snapshot.tenant_id, key), settle_increments(filled, released))
                for slot in settlement.release_slots:
                    self._delete(self._slot_path(snapshot.tenant_id, settlement.trade_day, slot))
            return self._put_group(snapshot.tenant_id, snapshot.group_id, doc)

    def take_lease(self, tenant_id: str, group_id: str, owner: str, now: datetime,
                   lease_until: datetime) -> GroupSnapshot | None:
        with self._lock:
            path = self.group_path(tenant_id, group_id)
            doc = self.docs.get(path)
            if doc is None or doc.get("_final"):
                return None
            held = doc.get("_lease_until")
            if held is not None and held > now:
                return None
            self._merge(path, {"_lease_owner": owner, "_lease_until": lease_until})
            self.commits += 1
            return self.load_group(tenant_id, group_id)

    def find_stuck_groups(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        with self._lock:
            found = [(d["_lease_until"], p) for p, d in self.docs.items()
                     if p.count("/") == 3 and p.split("/")[2] == "execution_groups"
                     and d.get("_final") is False  # Firestore's equality filter: a missing field never matches
                     and d.get("_lease_until") is not None and d["_lease_until"] <= now]
            return [(p.split("/")[1], p.split("/")[3]) for _, p in sorted(found)[:limit]]

    # --- risk-manager approvals ------------------------------------------------------------------
    def get_rpm_approval(self, tenant_id: str, decision_id: str) -> Mapping[str, Any] | None:
        return self.get(f"tenants/{tenant_id}/rpm_approvals/{decision_id}")

    def put_rpm_approval(self, tenant_id: str, decision_id: str, doc: Mapping[str, Any]) -> bool:
        with self._lock:
            path = f"tenants/{tenant_id}/rpm_approvals/{decision_id}"
            if path in self.docs:
                return False
            self._set(path, doc)
            return True

    # --- read models (backend.ports.store.ReadModel; same order and pages as Firestore's) -----------
    def read_metrics(self, tenant_id: str, from_day: str, to_day: str) -> list[dict[str, Any]]:
        return [d for d in self.collection(f"tenants/{tenant_id}/metrics").values()
                if isinstance(d.get("day"), str) and from_day <= d["day"] <= to_day]

    def _ordered_page(self, prefix: str, keep: Any, field: str, after: tuple[str, str] | None, limit: int,
                      descending: bool) -> list[tuple[str, dict[str, Any]]]:
        rows = sorted(((str(doc[field]), path.rsplit("/", 1)[1], doc) for path, doc in self.collection(prefix).items()
                       if isinstance(doc.get(field), str) and keep(doc)), key=lambda r: (r[0], r[1]),
                      reverse=descending)
        if after is not None:
            rows = [r for r in rows if ((r[0], r[1]) < after if descending else (r[0], r[1]) > after)]
        return [(doc_id, doc) for _, doc_id, doc in rows[:limit]]

    def history_page(self, uid: str, *, equals: Mapping[str, str], after: tuple[str, str] | None,
                     limit: int) -> list[tuple[str, dict[str, Any]]]:
        return self._ordered_page(f"users/{uid}/portfolio/history/trades",
                                  lambda d: all(d.get(k) == v for k, v in equals.items()), "created_at", after, limit,
                                  descending=True)

    def tax_disposals_page(self, uid: str, *, sold_from: str, sold_to: str, after: tuple[str, str] | None,
                           limit: int) -> list[tuple[str, dict[str, Any]]]:
        return self._ordered_page(f"users/{uid}/tax_disposals", lambda d: sold_from <= d["sold"] <= sold_to, "sold",
                                  after, limit, descending=False)

    def tax_shortfalls_page(self, uid: str, *, day_from: str, day_to: str, after: tuple[str, str] | None,
                            limit: int) -> list[tuple[str, dict[str, Any]]]:
        return self._ordered_page(f"users/{uid}/tax_disposals", lambda d: day_from <= d["trade_date"] <= day_to,
                                  "trade_date", after, limit, descending=False)

    def tax_books_page(self, uid: str, *, after: str | None, limit: int) -> list[tuple[str, dict[str, Any]]]:
        books = sorted((path.rsplit("/", 1)[1], doc) for path, doc in self.collection(f"users/{uid}/tax_books").items())
        return [(key, doc) for key, doc in books if after is None or key > after][:limit]

    def ledger_page(self, tenant_id: str, *, equals: Mapping[str, str], created_from: str | None,
                    created_before: str | None, after: tuple[str, str] | None,
                    limit: int) -> list[tuple[str, dict[str, Any]]]:
        def keep(doc: Mapping[str, Any]) -> bool:
            created = doc["created_at"]
            return (all(doc.get(k) == v for k, v in equals.items())
                    and (created_from is None or created >= created_from)
                    and (created_before is None or created < created_before))

        return self._ordered_page(f"tenants/{tenant_id}/ledger_trades", keep, "created_at", after, limit,
                                  descending=True)
