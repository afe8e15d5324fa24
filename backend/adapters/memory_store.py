"""In-memory store: a faithful fake of the store port (``backend.ports.store``) for fast unit tests
and library use without Firestore — never the only proof of persistence.

It is a versioned document store with Firestore's layout: ``docs`` maps a document path to its
fields, and every write gives the document a new version (Firestore's ``update_time``), which is the
token of ``get_intent_with_token``/``load_group`` and the precondition of the conditional writes.
The port's writes (claim, finish, fills, groups) are built by the core (``backend.execution.store_writes``)
exactly as for the Firestore adapter; this store only answers ``get_all``/``list_ids`` and applies a
``Commit`` atomically under its lock (``SERVER_TIME`` fields are left out: it has no commit clock).
``tests/contract`` runs both through the same behaviours.
"""
from __future__ import annotations

import copy
import itertools
import threading
from dataclasses import replace
from datetime import datetime
from typing import Any, Mapping, Sequence

from backend.domain.accounts import Account, BrokerConnection
from backend.execution import account_writes, store_writes
from backend.execution.store_rules import account_slots_collection, day_tally_paths, exposure_from_doc, tally_counts
from backend.execution.unit_of_work import (CHANGED, EXISTS, EXISTS_ALREADY, MISSING, SERVER_TIME, ArrayUnion, Commit,
                                            CommitResult, Conflict, Create, Delete, Inc, Increment, Set, Update,
                                            no_backoff)
from backend.ports.accounts import AccountRead
from backend.ports.store import (Claim, ClaimOutcome, FillUpdate, FillWrite, Finish, GroupReservation,
                                 GroupReserveOutcome, GroupSettlement, GroupSnapshot, IntentRecord, IntentStatus)
from backend.risk.manager import Exposure, RiskSnapshot, snapshot_from_docs


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
        return store_writes.apply_fill_update(self, update)

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

    def _exposure(self, tenant_id: str, key: str) -> Exposure:
        return exposure_from_doc(self.docs.get(self._exposure_path(tenant_id, key)))

    def _taken_slots(self, tenant_id: str, day: str) -> set[int]:
        return {int(p.rsplit("/", 1)[1]) for p in self.collection(f"tenants/{tenant_id}/risk_days/{day}/trade_slots")}

    def _account_slot_count(self, tenant_id: str, day: str, account_id: str) -> int:
        return len(self.collection(account_slots_collection(tenant_id, day, account_id)))

    def count_trades(self, tenant_id: str, trade_day: str) -> int:
        with self._lock:
            return len(self._taken_slots(tenant_id, trade_day))

    def day_trade_counts(self, tenant_id: str, trade_day: str, account_id: str) -> tuple[int, int]:
        with self._lock:
            return (len(self._taken_slots(tenant_id, trade_day)),
                    self._account_slot_count(tenant_id, trade_day, account_id))

    def kill_switches(self, tenant_id: str) -> RiskSnapshot:
        with self._lock:
            return snapshot_from_docs(copy.deepcopy(self.docs.get("ops/execution")),
                                      copy.deepcopy(self.docs.get(f"tenants/{tenant_id}/config/risk")))

    def risk_snapshot(self, tenant_id: str, account_key: str, trade_day: str,
                      account_id: str | None = None) -> RiskSnapshot:
        with self._lock:
            return snapshot_from_docs(copy.deepcopy(self.docs.get("ops/execution")),
                                      copy.deepcopy(self.docs.get(f"tenants/{tenant_id}/config/risk")),
                                      trades_today=len(self._taken_slots(tenant_id, trade_day)),
                                      exposure=self._exposure(tenant_id, account_key),
                                      account_trades_today=(None if account_id is None else
                                                            self._account_slot_count(tenant_id, trade_day,
                                                                                     account_id)))

    # --- batched pre-claim read (issue 17) ----------------------------------------------------------
    def read_pre_claim(self, tenant_id: str, account_key: str, trade_day: str, paths: Sequence[str],
                       account_id: str | None = None, tally: bool = False
                       ) -> tuple[dict[str, tuple[dict[str, Any] | None, Any]], RiskSnapshot]:
        """``get_all(paths)`` and ``risk_snapshot`` read together under the lock (one consistent view);
        with ``tally`` the counts are the tally documents' (a hint), as the Firestore store reads them."""
        with self._lock:
            snapshot = self.risk_snapshot(tenant_id, account_key, trade_day, account_id)
            if tally:
                extra = self.get_all(day_tally_paths(tenant_id, trade_day, account_id))
                trades, account_trades = tally_counts(extra, tenant_id, trade_day, account_id)
                snapshot = replace(snapshot, trades_today=trades, account_trades_today=account_trades,
                                   counts_are_hints=True)
            return self.get_all(paths), snapshot

    # --- claim and finish (decided in the core: backend.execution.store_writes) --------------------
    def claim(self, claim: Claim) -> ClaimOutcome:
        return store_writes.claim(self, claim)

    def finish(self, finish: Finish) -> IntentRecord | None:
        return store_writes.finish(self, finish, backoff=no_backoff)

    # --- the unit of work (backend.execution.unit_of_work) -----------------------------------------
    def get_all(self, paths: Sequence[str]) -> dict[str, tuple[dict[str, Any] | None, Any]]:
        with self._lock:
            return {p: ((copy.deepcopy(self.docs[p]), self._version(p)) if p in self.docs else (None, None))
                    for p in paths}

    def list_ids(self, collection: str, limit: int) -> list[str]:
        with self._lock:
            return sorted(p.rsplit("/", 1)[1] for p in self.collection(collection))[:limit]

    def commit(self, commit: Commit) -> list[Any]:
        """All ops or none, under the lock: preconditions are checked against the documents as the
        batch's earlier ops left them, and tokens against the versions before the batch."""
        with self._lock:
            staged: dict[str, dict[str, Any] | None] = {}

            def current(path: str) -> dict[str, Any] | None:
                return staged[path] if path in staged else self.docs.get(path)

            for op in commit.ops:
                doc = current(op.path)
                if isinstance(op, Create):
                    if doc is not None:
                        raise Conflict(f"{op.path} already exists", EXISTS_ALREADY)
                    staged[op.path] = _merged({}, op.doc)
                elif isinstance(op, Update):
                    if doc is None:
                        raise Conflict(f"{op.path} does not exist", MISSING)
                    if op.precondition is not EXISTS and self._version(op.path) != op.precondition:
                        raise Conflict(f"{op.path} changed since it was read", CHANGED)
                    staged[op.path] = {**doc, **_merged({}, op.fields)}  # top-level fields replaced
                elif isinstance(op, Set):
                    staged[op.path] = _merged((doc or {}) if op.merge else {}, op.doc)
                elif isinstance(op, Increment):
                    if op.fields:
                        staged[op.path] = _merged(doc or {}, {k: Inc(v) for k, v in op.fields.items()})
                elif isinstance(op, Delete):
                    if op.precondition is not None and self._version(op.path) != op.precondition:
                        raise Conflict(f"{op.path} changed since it was read", CHANGED)
                    staged[op.path] = None
                else:  # pragma: no cover - a new op kind
                    raise TypeError(f"unknown op {op!r}")
            for path, doc in staged.items():
                if doc is None:
                    self._delete(path)
                else:
                    self._set(path, doc)
            self.commits += 1
            increments = {op.path: {k: int((self.docs.get(op.path) or {}).get(k) or 0) for k in op.fields}
                          for op in commit.ops if isinstance(op, Increment) and op.fields}
            return CommitResult([None if isinstance(op, Delete) else self._version(op.path) for op in commit.ops],
                                increments)

    # --- single steps of the commits above (tests drive them alone) --------------------------------
    def _apply_tax(self, fills: list[tuple[Any, ...]]) -> dict[str, str]:
        """The lot-book step of finish/save_group, committed alone; answers trade id -> lot method."""
        ops, methods = store_writes.tax_ops(self, fills)
        if ops:
            self.commit(Commit(ops))
        return methods

    def _add_metrics(self, tenant_id: str, row_id: str, row: Mapping[str, Any]) -> None:
        """The metrics step of a ledger row, committed alone."""
        ops = store_writes.metrics_ops(self, tenant_id, row_id, row)
        if ops:
            self.commit(Commit(ops))

    # --- multi-leg groups ------------------------------------------------------------------------
    def create_group(self, tenant_id: str, group_id: str, doc: Mapping[str, Any],
                     intent_update: Mapping[str, Any] | None = None) -> GroupSnapshot | None:
        return store_writes.create_group(self, tenant_id, group_id, doc, intent_update)

    def load_group(self, tenant_id: str, group_id: str) -> GroupSnapshot | None:
        with self._lock:
            path = self.group_path(tenant_id, group_id)
            doc = self.docs.get(path)
            if doc is None:
                return None
            return GroupSnapshot(tenant_id, group_id, copy.deepcopy(doc), self._version(path))

    def reserve_group(self, snapshot: GroupSnapshot, doc: Mapping[str, Any],
                      reservation: GroupReservation) -> GroupReserveOutcome:
        return store_writes.reserve_group(self, snapshot, doc, reservation, backoff=no_backoff)

    def save_group(self, snapshot: GroupSnapshot, doc: Mapping[str, Any],
                   fills: tuple[FillWrite, ...] = (), intent_update: Mapping[str, Any] | None = None,
                   settlement: GroupSettlement | None = None) -> GroupSnapshot:
        return store_writes.save_group(self, snapshot, doc, fills, intent_update, settlement, backoff=no_backoff)

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

    # --- accounts (issue 12) ----------------------------------------------------------------------
    # backend.ports.accounts.AccountStore and AccountAdmin: decided in backend.execution.account_writes
    def read_account_binding(self, tenant_id: str, uid: str, account_id: str | None) -> AccountRead:
        return account_writes.read_binding(self, tenant_id, uid, account_id)

    def get_connection(self, tenant_id: str, connection_id: str) -> BrokerConnection | None:
        return account_writes.get_connection(self, tenant_id, connection_id)

    def provision_account(self, tenant_id: str, uid: str, account: Account) -> Account:
        return account_writes.provision(self, tenant_id, uid, account)

    def put_connection(self, tenant_id: str, connection: BrokerConnection) -> BrokerConnection:
        return account_writes.put_connection(self, tenant_id, connection)

    def put_account(self, tenant_id: str, account: Account) -> Account:
        return account_writes.put_account(self, tenant_id, account)

    def get_account(self, tenant_id: str, account_id: str) -> Account | None:
        return account_writes.get_account(self, tenant_id, account_id)

    def list_accounts(self, tenant_id: str, owner_uid: str | None = None, *, limit: int = 500) -> list[Account]:
        account_writes.check_list(tenant_id, owner_uid, limit)
        with self._lock:
            docs = [(p.rsplit("/", 1)[1], d) for p, d in self.collection(f"tenants/{tenant_id}/accounts").items()
                    if owner_uid is None or (isinstance(d.get("owner_uids"), list) and owner_uid in d["owner_uids"])]
        return account_writes.list_filter(sorted(docs, key=lambda item: item[0])[:limit], owner_uid)

    def set_default_account(self, tenant_id: str, uid: str, account_id: str, *, at: datetime | None = None) -> None:
        account_writes.set_default_account(self, tenant_id, uid, account_id, at)

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

    def groups_page(self, tenant_id: str, *, equals: Mapping[str, str], created_from: str | None,
                    created_before: str | None, after: tuple[str, str] | None,
                    limit: int) -> list[tuple[str, dict[str, Any]]]:
        # group documents only, not their ``legs/`` projection
        return self._newest_first(f"tenants/{tenant_id}/execution_groups", "created_timestamp", equals, created_from,
                                  created_before, after, limit, only=lambda doc: isinstance(doc.get("legs"), list))

    def _newest_first(self, prefix: str, field: str, equals: Mapping[str, str], created_from: str | None,
                      created_before: str | None, after: tuple[str, str] | None, limit: int,
                      only: Any = None) -> list[tuple[str, dict[str, Any]]]:
        """One collection, equality filters, ``field`` in [created_from, created_before), paged by
        (field, doc id) descending — what the Firestore store's ``_newest_first`` query answers."""
        def keep(doc: Mapping[str, Any]) -> bool:
            created = doc[field]
            return ((only is None or only(doc)) and all(doc.get(k) == v for k, v in equals.items())
                    and (created_from is None or created >= created_from)
                    and (created_before is None or created < created_before))

        return self._ordered_page(prefix, keep, field, after, limit, descending=True)

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
        return self._newest_first(f"tenants/{tenant_id}/ledger_trades", "created_at", equals, created_from,
                                  created_before, after, limit)

    # --- tax elections and corporate actions (issue 16) ------------------------------------------
    # Decided in backend/tax/admin_writes.py over get_all/commit (the same code the Firestore store runs).
    def record_tax_election(self, uid: str, method: Any, *, now: datetime, effective_at: datetime | None = None,
                            account: str | None = None, default_rule: Any = None,
                            request_key: str | None = None) -> Any:
        from backend.tax import admin_writes

        return admin_writes.record_election(self, uid, method, now=now, effective_at=effective_at, account=account,
                                            default_rule=default_rule, request_key=request_key)

    def tax_books_for_symbol(self, symbol: str, *, after: str | None, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """Every user's lot book of ``symbol``: (path, doc) by path, compared segment by segment as
        Firestore orders a collection-group query by document name."""
        with self._lock:
            rows = sorted(((p.split("/"), p, copy.deepcopy(d)) for p, d in self.docs.items()
                           if p.count("/") == 3 and p.startswith("users/") and p.split("/")[2] == "tax_books"
                           and d.get("symbol") == symbol), key=lambda r: r[0])
        start = after.split("/") if after is not None else None
        return [(p, d) for key, p, d in rows if start is None or key > start][:limit]

    def apply_corporate_action(self, tenant_id: str, action: Any, *, recorded_by: str,
                               now: datetime) -> tuple[dict[str, Any], bool]:
        from backend.tax import admin_writes

        return admin_writes.apply_corporate_action(self, tenant_id, action, recorded_by=recorded_by, now=now)

    # --- admin (issue 13) ------------------------------------------------------------------------
    def admin_page(self, tenant_id: str, collection: str, *, equals: Mapping[str, str],
                   contains: tuple[str, str] | None = None, after: str | None,
                   limit: int) -> list[tuple[str, dict[str, Any]]]:
        rows = sorted((path.rsplit("/", 1)[1], doc) for path, doc in
                      self.collection(f"tenants/{tenant_id}/{collection}").items())
        return [(doc_id, doc) for doc_id, doc in rows
                if (after is None or doc_id > after) and all(doc.get(k) == v for k, v in equals.items())
                and (contains is None or contains[1] in (doc.get(contains[0]) or []))][:limit]

    def audit_page(self, tenant_id: str, *, equals: Mapping[str, str], created_from: str | None,
                   created_before: str | None, after: tuple[str, str] | None,
                   limit: int) -> list[tuple[str, dict[str, Any]]]:
        return self._newest_first(f"tenants/{tenant_id}/audit_log", "created_at", equals, created_from,
                                  created_before, after, limit)



_LEAVES = (str, int, float, bool, type(None))


def _merged(base: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """A new document: ``fields`` merged into ``base`` as Firestore's ``set(merge=True)`` does —
    maps merge deeply, ``Inc`` adds (from 0), ``ArrayUnion`` appends what is missing, ``SERVER_TIME``
    fields are left out (this store has no commit clock). Neither argument is changed; values are
    shared, not copied (``_set`` copies the whole document once)."""
    out = dict(base)
    for key, value in fields.items():
        if type(value) in _LEAVES:
            out[key] = value
        elif value is SERVER_TIME:
            continue
        elif isinstance(value, Inc):
            out[key] = (out.get(key) or 0) + value.value
        elif isinstance(value, ArrayUnion):
            have = list(out.get(key) or [])
            out[key] = have + [v for v in value.values if v not in have]
        elif isinstance(value, dict) or isinstance(value, Mapping):
            inner = out.get(key)
            out[key] = _merged(inner if isinstance(inner, dict) else {}, value)
        else:
            out[key] = value
    return out
