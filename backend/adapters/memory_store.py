"""In-memory ExecutionStore with the same semantics as the Firestore one. For fast unit tests and
library use without Firestore — never the only proof of persistence (see the emulator tests)."""
from __future__ import annotations

import copy
import threading
from datetime import datetime
from decimal import Decimal
from typing import Any, Mapping

from backend.domain.money import ZERO
from backend.ports.store import (Claim, ClaimOutcome, ClaimResult, FillUpdate, FillWrite, Finish, GroupReservation,
                                 GroupReserveOutcome, GroupSettlement, GroupSnapshot, IntentRecord, IntentStatus,
                                 LeaseLost)
from backend.risk.manager import Exposure, RiskSnapshot


class InMemoryStore:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.docs: dict[str, dict[str, Any]] = {}
        self.commits = 0

    # paths mirror the Firestore layout so tests can assert on them
    @staticmethod
    def intent_path(tenant_id: str, intent_id: str) -> str:
        return f"tenants/{tenant_id}/order_intents/{intent_id}"

    def get(self, path: str) -> dict[str, Any] | None:
        with self._lock:
            doc = self.docs.get(path)
            return copy.deepcopy(doc) if doc is not None else None

    def collection(self, prefix: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            depth = prefix.count("/") + 1
            return {p: copy.deepcopy(d) for p, d in self.docs.items()
                    if p.startswith(prefix + "/") and p.count("/") == depth}

    def get_intent(self, tenant_id: str, intent_id: str) -> IntentRecord | None:
        doc = self.get(self.intent_path(tenant_id, intent_id))
        return None if doc is None else IntentRecord(tenant_id, intent_id, IntentStatus(doc.get("status", "new")), doc)

    def take_intent_lease(self, tenant_id: str, intent_id: str, now: datetime, lease_until: datetime) -> bool:
        with self._lock:
            doc = self.docs.get(self.intent_path(tenant_id, intent_id))
            if doc is None or doc.get("status") != IntentStatus.RESERVED.value:
                return False
            held = doc.get("lease_until")
            if held is not None and held > now:
                return False
            doc["lease_until"] = lease_until
            return True

    def annotate_intent(self, tenant_id: str, intent_id: str, fields: Mapping[str, Any], *,
                        only_if_status: str | None = None) -> bool:
        with self._lock:
            doc = self.docs.get(self.intent_path(tenant_id, intent_id))
            if doc is None or (only_if_status is not None and doc.get("status") != only_if_status):
                return False
            doc.update(copy.deepcopy(dict(fields)))
            return True

    def get_intent_with_token(self, tenant_id: str, intent_id: str) -> tuple[IntentRecord, Any] | None:
        with self._lock:
            record = self.get_intent(tenant_id, intent_id)
            if record is None:
                return None
            return record, self.docs[self.intent_path(tenant_id, intent_id)].get("_version", 0)

    def apply_fill_update(self, update: FillUpdate) -> bool:
        with self._lock:
            path = self.intent_path(update.tenant_id, update.intent_id)
            doc = self.docs.get(path)
            if doc is None or doc.get("_version", 0) != update.token:
                return False
            if any(f"tenants/{update.tenant_id}/ledger_trades/{f.trade_id}" in self.docs for f in update.fills):
                return False
            doc.update(copy.deepcopy(dict(update.record)))
            doc["_version"] = doc.get("_version", 0) + 1
            for fill in update.fills:
                self.docs[f"tenants/{update.tenant_id}/ledger_trades/{fill.trade_id}"] = copy.deepcopy(dict(fill.ledger))
                self._add_metrics(update.tenant_id, fill.trade_id, fill.ledger)
                if fill.history is not None:
                    self.docs[f"users/{fill.uid}/portfolio/history/trades/{fill.trade_id}"] = copy.deepcopy(
                        dict(fill.history))
            self._move_exposure(update.tenant_id, update.account_key, update.filled_signed_qty,
                                update.released_signed_qty)
            self._apply_tax([(f.uid, f.tax, f.ledger) for f in update.fills])
            self.commits += 1
            return True

    def find_working_intents(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        with self._lock:
            found = [(d["reconcile_after"], p) for p, d in self.docs.items()
                     if "/order_intents/" in p and d.get("status") == IntentStatus.PLACED.value
                     and d.get("reconcile_after") is not None and d["reconcile_after"] < now]
            return [(p.split("/")[1], p.split("/")[3]) for _, p in sorted(found)[:limit]]

    def _move_exposure(self, tenant_id: str, key: str, filled: Decimal, released: Decimal) -> None:
        exp = self.docs.setdefault(f"tenants/{tenant_id}/exposure/{key}",
                                   {"position": ZERO, "reserved_long": ZERO, "reserved_short": ZERO})
        exp["position"] = exp["position"] + filled
        if released > 0:
            exp["reserved_long"] -= released
        elif released < 0:
            exp["reserved_short"] -= -released

    def _exposure(self, tenant_id: str, key: str) -> Exposure:
        doc = self.docs.get(f"tenants/{tenant_id}/exposure/{key}", {})
        return Exposure(doc.get("position", ZERO), doc.get("reserved_long", ZERO), doc.get("reserved_short", ZERO))

    def _slots(self, tenant_id: str, day: str) -> dict[str, dict[str, Any]]:
        return self.collection(f"tenants/{tenant_id}/risk_days/{day}/trade_slots")

    def kill_switches(self, tenant_id: str) -> RiskSnapshot:
        with self._lock:
            return RiskSnapshot(global_kill_switch=bool(self.docs.get("ops/execution", {}).get("kill_switch", False)),
                                tenant_overrides=copy.deepcopy(self.docs.get(f"tenants/{tenant_id}/config/risk")))

    def risk_snapshot(self, tenant_id: str, account_key: str, trade_day: str) -> RiskSnapshot:
        with self._lock:
            ops = self.docs.get("ops/execution", {})
            tenant_cfg = self.docs.get(f"tenants/{tenant_id}/config/risk")
            return RiskSnapshot(global_kill_switch=bool(ops.get("kill_switch", False)),
                                tenant_overrides=copy.deepcopy(tenant_cfg),
                                trades_today=len(self._slots(tenant_id, trade_day)),
                                exposure=self._exposure(tenant_id, account_key))

    def claim(self, claim: Claim) -> ClaimOutcome:
        with self._lock:
            path = self.intent_path(claim.tenant_id, claim.intent_id)
            existing = self.docs.get(path)
            if existing is not None and existing.get("status", "new") != IntentStatus.NEW.value:
                return ClaimOutcome(ClaimResult.DUPLICATE, existing=self.get_intent(claim.tenant_id, claim.intent_id))
            slots = self._slots(claim.tenant_id, claim.trade_day)
            taken = {int(p.rsplit("/", 1)[1]) for p in slots}
            free = [n for n in range(claim.daily_limit) if n not in taken]
            if not free:
                return ClaimOutcome(ClaimResult.DAILY_LIMIT, trades_today=len(taken))
            slot = free[0]
            self.docs[f"tenants/{claim.tenant_id}/risk_days/{claim.trade_day}/trade_slots/{slot}"] = {
                "intent_id": claim.intent_id, "uid": claim.uid}
            self.docs[path] = {**(existing or {}), **copy.deepcopy(dict(claim.record)),
                               "slot": slot, "lease_until": claim.lease_until}
            key = f"tenants/{claim.tenant_id}/exposure/{claim.account_key}"
            exp = self.docs.setdefault(key, {"position": ZERO, "reserved_long": ZERO, "reserved_short": ZERO})
            field = "reserved_long" if claim.signed_qty > 0 else "reserved_short"
            exp[field] = exp[field] + abs(claim.signed_qty)
            self.commits += 1
            return ClaimOutcome(ClaimResult.CLAIMED, slot=slot, exposure=self._exposure(claim.tenant_id, claim.account_key),
                                trades_today=len(taken) + 1)

    def finish(self, finish: Finish) -> IntentRecord | None:
        with self._lock:
            path = self.intent_path(finish.tenant_id, finish.intent_id)
            current = self.docs.get(path)
            if current is not None and IntentStatus(current.get("status", "new")).is_final:
                return self.get_intent(finish.tenant_id, finish.intent_id)  # type: ignore[return-value]
            ledger_path = f"tenants/{finish.tenant_id}/ledger_trades/{finish.ledger_id}"
            if ledger_path in self.docs:
                raise RuntimeError(f"ledger row {ledger_path} exists for a non-final intent")
            self.docs[path] = {**(current or {}), **finish.record,
                               "_version": (current or {}).get("_version", 0) + 1}
            self.docs[ledger_path] = dict(finish.ledger)
            self._add_metrics(finish.tenant_id, finish.ledger_id, finish.ledger)
            if finish.history is not None:
                self.docs[f"users/{finish.uid}/portfolio/history/trades/{finish.history_id}"] = dict(finish.history)
            if finish.account_key is not None:
                self._move_exposure(finish.tenant_id, finish.account_key, finish.filled_signed_qty,
                                    finish.reserved_signed_qty or ZERO)
            self._apply_tax([(finish.uid, finish.tax, finish.ledger)])
            if finish.release_slot is not None and finish.trade_day is not None:
                self.docs.pop(f"tenants/{finish.tenant_id}/risk_days/{finish.trade_day}/trade_slots/{finish.release_slot}",
                              None)
            self.commits += 1
            return None

    def _add_metrics(self, tenant_id: str, row_id: str, row: Mapping[str, Any]) -> None:
        from backend.execution.metrics import increments, shard_for, strategy_bucket

        inc = increments(row)
        if not inc:
            return
        day = row.get("trade_date") or "unknown"
        doc = self.docs.setdefault(f"tenants/{tenant_id}/metrics/{day}__{shard_for(row_id)}", {"day": day})
        for key, value in inc.items():
            doc[key] = doc.get(key, 0) + value
        if row.get("strategy_id"):
            admitted = doc.setdefault("strategies", [])
            bucket = strategy_bucket(row["strategy_id"], admitted)  # capped: the doc's size is bounded
            if bucket == row["strategy_id"] and bucket not in admitted:
                admitted.append(bucket)
            per = doc.setdefault("by_strategy", {}).setdefault(bucket, {})
            for key, value in inc.items():
                per[key] = per.get(key, 0) + value

    def read_metrics(self, tenant_id: str, from_day: str, to_day: str) -> list[dict[str, Any]]:
        prefix = f"tenants/{tenant_id}/metrics/"
        with self._lock:
            return [copy.deepcopy(d) for p, d in self.docs.items()
                    if p.startswith(prefix) and p.count("/") == 3 and from_day <= d.get("day", "") <= to_day]

    def _apply_tax(self, fills: list[tuple[Any, ...]]) -> None:
        from backend.tax.state import book_key, plan_books, scoped_fills

        # (uid, fill, ledger row): the row names the fill's tenant and account, its lot book
        fills = scoped_fills(fills)
        if not fills:
            return
        keys = {(uid, book_key(fill.symbol)) for uid, fill in fills}
        current = {k: self.docs.get(f"users/{k[0]}/tax_books/{k[1]}") for k in keys}
        methods = {uid: (self.docs.get(f"users/{uid}/config/tax") or {}).get("lot_method") for uid, _ in fills}
        plan = plan_books(current, fills, methods)
        for (uid, key), state in plan.states.items():
            self.docs[f"users/{uid}/tax_books/{key}"] = copy.deepcopy(state)
        for uid, doc_id, doc in plan.disposals:
            self.docs[f"users/{uid}/tax_disposals/{doc_id}"] = copy.deepcopy(doc)

    def set_doc(self, path: str, doc: Mapping[str, Any]) -> None:
        with self._lock:
            self.docs[path] = copy.deepcopy(dict(doc))

    # --- multi-leg groups ----------------------------------------------------------------------------
    @staticmethod
    def group_path(tenant_id: str, group_id: str) -> str:
        return f"tenants/{tenant_id}/execution_groups/{group_id}"

    def _put_group(self, tenant_id: str, group_id: str, doc: Mapping[str, Any]) -> GroupSnapshot:
        path = self.group_path(tenant_id, group_id)
        version = self.docs.get(path, {}).get("_version", 0) + 1
        self.docs[path] = {**copy.deepcopy(dict(doc)), "_version": version}
        for leg in doc.get("legs", []):
            self.docs[f"{path}/legs/{leg['leg_id']}"] = {**copy.deepcopy(leg), "group_id": group_id,
                                                         "tenant_id": tenant_id, "uid": doc.get("uid"),
                                                         "group_status": doc.get("status")}
        self.commits += 1
        return GroupSnapshot(tenant_id, group_id, copy.deepcopy(dict(doc)), version)

    def create_group(self, tenant_id: str, group_id: str, doc: Mapping[str, Any],
                     intent_update: Mapping[str, Any] | None = None) -> GroupSnapshot | None:
        with self._lock:
            if self.group_path(tenant_id, group_id) in self.docs:
                return None
            if intent_update:
                self.docs.setdefault(self.intent_path(tenant_id, group_id), {}).update(copy.deepcopy(dict(intent_update)))
            return self._put_group(tenant_id, group_id, doc)

    def load_group(self, tenant_id: str, group_id: str) -> GroupSnapshot | None:
        with self._lock:
            doc = self.docs.get(self.group_path(tenant_id, group_id))
            if doc is None:
                return None
            data = {k: v for k, v in copy.deepcopy(doc).items() if k != "_version"}
            return GroupSnapshot(tenant_id, group_id, data, doc["_version"])

    def reserve_group(self, snapshot: GroupSnapshot, doc: Mapping[str, Any],
                      reservation: GroupReservation) -> GroupReserveOutcome:
        with self._lock:
            current = self.docs.get(self.group_path(snapshot.tenant_id, snapshot.group_id))
            if current is None or current["_version"] != snapshot.token:
                raise LeaseLost(f"group {snapshot.group_id} changed since it was read")
            taken = {int(p.rsplit("/", 1)[1]) for p in self._slots(snapshot.tenant_id, reservation.trade_day)}
            free = [n for n in range(reservation.daily_limit) if n not in taken]
            if len(free) < len(reservation.legs):
                return GroupReserveOutcome(ClaimResult.DAILY_LIMIT, trades_today=len(taken))
            slots = {}
            for leg, slot in zip(reservation.legs, free):
                slots[leg.leg_id] = slot
                self.docs[f"tenants/{snapshot.tenant_id}/risk_days/{reservation.trade_day}/trade_slots/{slot}"] = {
                    "intent_id": snapshot.group_id, "group_id": snapshot.group_id, "leg_id": leg.leg_id,
                    "uid": reservation.uid}
                exp = self.docs.setdefault(f"tenants/{snapshot.tenant_id}/exposure/{leg.account_key}",
                                           {"position": ZERO, "reserved_long": ZERO, "reserved_short": ZERO})
                field = "reserved_long" if leg.signed_qty > 0 else "reserved_short"
                exp[field] = exp[field] + abs(leg.signed_qty)
            stored = {**copy.deepcopy(dict(doc)), "_reservation": reservation.to_doc(slots)}
            snap = self._put_group(snapshot.tenant_id, snapshot.group_id, stored)
            return GroupReserveOutcome(ClaimResult.CLAIMED, snap,
                                       {leg.account_key: self._exposure(snapshot.tenant_id, leg.account_key)
                                        for leg in reservation.legs}, len(taken) + len(reservation.legs))

    def _settle(self, tenant_id: str, settlement: GroupSettlement) -> None:
        for key, filled, released in settlement.exposure:
            self._move_exposure(tenant_id, key, filled, released)
        for slot in settlement.release_slots:
            self.docs.pop(f"tenants/{tenant_id}/risk_days/{settlement.trade_day}/trade_slots/{slot}", None)

    def get_rpm_approval(self, tenant_id: str, decision_id: str) -> Mapping[str, Any] | None:
        return self.get(f"tenants/{tenant_id}/rpm_approvals/{decision_id}")

    def put_rpm_approval(self, tenant_id: str, decision_id: str, doc: Mapping[str, Any]) -> bool:
        with self._lock:
            path = f"tenants/{tenant_id}/rpm_approvals/{decision_id}"
            if path in self.docs:
                return False
            self.docs[path] = copy.deepcopy(dict(doc))
            return True

    def save_group(self, snapshot: GroupSnapshot, doc: Mapping[str, Any],
                   fills: tuple[FillWrite, ...] = (), intent_update: Mapping[str, Any] | None = None,
                   settlement: GroupSettlement | None = None) -> GroupSnapshot:
        with self._lock:
            current = self.docs.get(self.group_path(snapshot.tenant_id, snapshot.group_id))
            if current is None or current["_version"] != snapshot.token:
                raise LeaseLost(f"group {snapshot.group_id} changed since it was read")
            for fill in fills:
                ledger_path = f"tenants/{snapshot.tenant_id}/ledger_trades/{fill.trade_id}"
                if ledger_path in self.docs:
                    raise RuntimeError(f"ledger row {ledger_path} already exists")
            self._apply_tax([(f.uid, f.tax, f.ledger) for f in fills])
            for fill in fills:
                self.docs[f"tenants/{snapshot.tenant_id}/ledger_trades/{fill.trade_id}"] = copy.deepcopy(dict(fill.ledger))
                self._add_metrics(snapshot.tenant_id, fill.trade_id, fill.ledger)
                if fill.history is not None:
                    self.docs[f"users/{fill.uid}/portfolio/history/trades/{fill.trade_id}"] = copy.deepcopy(
                        dict(fill.history))
            if intent_update:
                self.docs.setdefault(self.intent_path(snapshot.tenant_id, snapshot.group_id), {}).update(
                    copy.deepcopy(dict(intent_update)))
            if settlement is not None:
                self._settle(snapshot.tenant_id, settlement)
            return self._put_group(snapshot.tenant_id, snapshot.group_id, doc)

    def take_lease(self, tenant_id: str, group_id: str, owner: str, now: datetime,
                   lease_until: datetime) -> GroupSnapshot | None:
        with self._lock:
            snap = self.load_group(tenant_id, group_id)
            if snap is None or snap.doc.get("_final"):
                return None
            held = snap.doc.get("_lease_until")
            if held is not None and held > now:
                return None
            return self._put_group(tenant_id, group_id, {**snap.doc, "_lease_owner": owner, "_lease_until": lease_until})

    def find_stuck_groups(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        with self._lock:
            found = [(d["_lease_until"], p) for p, d in self.docs.items()
                     if "/execution_groups/" in p and p.count("/") == 3 and not d.get("_final")
                     and d.get("_lease_until") is not None and d["_lease_until"] <= now]
            return [(p.split("/")[1], p.split("/")[3]) for _, p in sorted(found)[:limit]]

    def find_unstarted_intents(self, limit: int) -> list[tuple[str, str, dict[str, Any]]]:
        with self._lock:
            return [(p.split("/")[1], p.split("/")[3], copy.deepcopy(d)) for p, d in sorted(self.docs.items())
                    if "/order_intents/" in p and p.count("/") == 3
                    and d.get("status") == "new"][:limit]

    def find_stuck_intents(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        with self._lock:
            found = [(d["lease_until"], p) for p, d in self.docs.items()
                     if "/order_intents/" in p and d.get("status") == IntentStatus.RESERVED.value
                     and d.get("lease_until") is not None and d["lease_until"] <= now]
            return [(p.split("/")[1], p.split("/")[3]) for _, p in sorted(found)[:limit]]

    # --- read models: tax export, tenant ledger review (same order and pages as Firestore's) ---------
    def _ordered_page(self, prefix: str, keep: Any, field: str, after: tuple[str, str] | None, limit: int,
                      descending: bool) -> list[tuple[str, dict[str, Any]]]:
        rows = sorted(((str(doc[field]), path.rsplit("/", 1)[1], doc) for path, doc in self.collection(prefix).items()
                       if isinstance(doc.get(field), str) and keep(doc)), key=lambda r: (r[0], r[1]),
                      reverse=descending)
        if after is not None:
            rows = [r for r in rows if ((r[0], r[1]) < after if descending else (r[0], r[1]) > after)]
        return [(doc_id, doc) for _, doc_id, doc in rows[:limit]]

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

