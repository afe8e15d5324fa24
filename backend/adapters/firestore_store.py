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

What is written, and when it is retried, is decided in the core (``backend.execution.store_writes``
over the unit of work): this adapter answers ``get_all`` (one ``BatchGetDocuments``), ``list_ids``
and ``commit`` (one ``WriteBatch``, preconditions as ``create`` / ``last_update_time``).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import wait
from datetime import datetime
from typing import Any, Mapping, Sequence

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath
from google.cloud.firestore_v1.types import firestore as firestore_types
from proto.datetime_helpers import DatetimeWithNanoseconds as _ProtoDatetime

from backend.adapters.firestore_codec import batch_get, write_for
from backend.adapters.firestore_rpc import FastRpc
from backend.domain.accounts import Account, BrokerConnection
from backend.execution import account_writes, store_writes
from backend.execution.store_rules import account_slots_collection, day_tally_paths, exposure_from_doc, tally_counts
from backend.execution.unit_of_work import (CHANGED, EXISTS, EXISTS_ALREADY, MISSING, SERVER_TIME, ArrayUnion, Commit,
                                            CommitResult, Conflict, Create, Delete, Inc, Increment, Set, Update)
from backend.ports.accounts import AccountRead
from backend.ports.store import (Claim, ClaimOutcome, FillUpdate, FillWrite, Finish, GroupReservation,
                                 GroupReserveOutcome, GroupSettlement, GroupSnapshot, IntentRecord, IntentStatus,
                                 StoreContention)
from backend.risk.manager import Exposure, RiskSnapshot, snapshot_from_docs


class FirestoreStore:
    def __init__(self, client: firestore.Client):
        self.db = client
        self._prefix: str | None = None  # the database's documents prefix (``_document_name``)

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
        return store_writes.apply_fill_update(self, update)

    def find_working_intents(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        query = (self.db.collection_group("order_intents")
                 .where(filter=FieldFilter("status", "==", IntentStatus.PLACED.value))
                 .where(filter=FieldFilter("reconcile_after", "<", now))
                 .order_by("reconcile_after").limit(limit))
        return [(snap.reference.parent.parent.id, snap.id) for snap in query.stream()]

    def _count_slots(self, tenant_id: str, day: str) -> int:
        result = self._slots(tenant_id, day).count().get()
        return int(result[0][0].value)

    def count_trades(self, tenant_id: str, trade_day: str) -> int:
        return self._count_slots(tenant_id, trade_day)

    def _count_account_slots(self, tenant_id: str, day: str, account_id: str) -> int:
        result = self.db.collection(account_slots_collection(tenant_id, day, account_id)).count().get()
        return int(result[0][0].value)

    def day_trade_counts(self, tenant_id: str, trade_day: str, account_id: str) -> tuple[int, int]:
        """Both count aggregations in flight at once (one round trip)."""
        counted = _read_pool().submit(self._count_account_slots, tenant_id, trade_day, account_id)
        try:
            trades = self._count_slots(tenant_id, trade_day)
        finally:
            wait([counted])
        return trades, counted.result()

    def kill_switches(self, tenant_id: str) -> RiskSnapshot:
        """Only the halt flags (global and tenant): what a group checks before each leg."""
        refs = [self.db.collection("ops").document("execution"),
                self._tenant(tenant_id).collection("config").document("risk")]
        snaps = {s.reference.path: s for s in self.db.get_all(refs)}
        return snapshot_from_docs(snaps[refs[0].path].to_dict(), snaps[refs[1].path].to_dict())

    def risk_snapshot(self, tenant_id: str, account_key: str, trade_day: str,
                      account_id: str | None = None) -> RiskSnapshot:
        """The risk documents in one ``get_all`` and the day's slot counts sent concurrently (one round trip)."""
        return self.read_pre_claim(tenant_id, account_key, trade_day, (), account_id)[1]

    # --- batched pre-claim read (issue 17) ----------------------------------------------------------
    def read_pre_claim(self, tenant_id: str, account_key: str, trade_day: str, paths: Sequence[str],
                       account_id: str | None = None, tally: bool = False
                       ) -> tuple[dict[str, tuple[dict[str, Any] | None, Any]], RiskSnapshot]:
        """``paths`` and the risk documents in ONE ``BatchGetDocuments``. The day's slot counts: with
        ``tally`` from the tally documents in that same read (``store_rules.tally_counts``: a hint,
        ``counts_are_hints``), else count aggregations (with ``account_id`` the account's too) in
        flight at the same time on worker threads: one round trip either way (backend.ports.store)."""
        ops_path, cfg_path = "ops/execution", f"tenants/{tenant_id}/config/risk"
        exp_path = self._exposure_ref(tenant_id, account_key).path
        if tally:
            counted = account_counted = None
            tallies = day_tally_paths(tenant_id, trade_day, account_id)
        else:
            tallies = []
            counted = _read_pool().submit(self._count_slots, tenant_id, trade_day)
            account_counted = (None if account_id is None else
                               _read_pool().submit(self._count_account_slots, tenant_id, trade_day, account_id))
        try:
            docs = self.get_all([*paths, ops_path, cfg_path, exp_path, *tallies])
        finally:  # waited for even when the get_all failed (no stray RPC left behind)
            wait([f for f in (counted, account_counted) if f is not None])
        if tally:
            trades, account_trades = tally_counts(docs, tenant_id, trade_day, account_id)
        else:
            assert counted is not None
            trades = counted.result()
            account_trades = None if account_counted is None else account_counted.result()
        snapshot = snapshot_from_docs(docs[ops_path][0] or {}, docs[cfg_path][0],  # cfg None: no overrides
                                      trades_today=trades, exposure=_exposure(docs[exp_path][0] or {}),
                                      account_trades_today=account_trades, counts_are_hints=tally)
        return {p: docs[p] for p in paths}, snapshot

    # --- claim and finish (decided in the core: backend.execution.store_writes) --------------------
    def claim(self, claim: Claim) -> ClaimOutcome:
        return store_writes.claim(self, claim)

    def finish(self, finish: Finish) -> IntentRecord | None:
        return store_writes.finish(self, finish, backoff=_backoff)

    def warm_connection(self) -> None:
        """Connect the gRPC channel before a request needs it (``backend.api.wiring.warm_up``): one
        batched read of ``ops/execution`` (the document every order request reads first: one billed
        read per instance start) and one empty commit (no write: the commit call's first-use cost),
        both by the calls orders make (``firestore_rpc``, built here), and start the pool exact slot
        counts are sent from."""
        self.get_all(["ops/execution"])
        _commit_writes(self.db, [])
        wait([_read_pool().submit(lambda: None)])

    # --- the unit of work (backend.execution.unit_of_work) -----------------------------------------
    def get_all(self, paths: Sequence[str]) -> dict[str, tuple[dict[str, Any] | None, Any]]:
        """One batched read (``BatchGetDocuments``): path -> (document or None, update time)."""
        unique = list(dict.fromkeys(paths))
        if not unique:
            return {}
        return batch_get(self.db, unique)  # issue 17: decoded once from the raw protobufs

    def commit(self, commit: Commit) -> list[Any]:
        """One atomic commit of the ops' writes (what a ``WriteBatch`` sends), with the bounded
        contention retry of ``_commit_writes``; a failed precondition (exists / changed / missing)
        is a ``Conflict``."""
        writes = self._writes(commit.ops)
        try:
            results = _commit_writes(self.db, writes)
        except gexc.AlreadyExists as exc:
            raise Conflict(str(exc), EXISTS_ALREADY) from exc
        except gexc.FailedPrecondition as exc:
            raise Conflict(str(exc), CHANGED) from exc
        except gexc.NotFound as exc:
            raise Conflict(str(exc), MISSING) from exc
        return CommitResult(_update_times(results), _increments_after(writes, results))

    def _writes(self, ops: Sequence[Any]) -> list[Any]:
        """The ``Write`` protobufs of ``ops``, in order: ``write_for``'s raw protobufs (issue 17), and
        the library's batch methods for the op shapes it leaves to them."""
        writes: list[Any] = []
        for op in ops:
            write = write_for(op, self._document_name(op.path))
            if write is None:
                batch = self.db.batch()
                self._add_op_library(batch, self.db.document(op.path), op)
                writes.extend(batch._write_pbs)  # noqa: SLF001 - what create/update/set/delete appended
            else:
                writes.append(write)
        return writes

    def _document_name(self, path: str) -> str:
        """``self.db.document(path)._document_path`` without building the reference (issue 17: 14
        per placed order): the database's documents prefix + ``path`` when its segments are
        non-empty and even in number — what the library then answers; any other path goes to the
        library, which raises for it as it always did."""
        segments = path.split("/")
        if len(segments) % 2 or not all(segments):
            return self.db.document(path)._document_path  # noqa: SLF001
        prefix = self._prefix
        if prefix is None:
            prefix = self._prefix = f"{self.db._database_string}/documents/"  # noqa: SLF001
        return prefix + path

    def _add_op(self, batch: Any, op: Any) -> None:
        """One op added to a caller's ``WriteBatch`` (the single steps below; tests drive them alone)."""
        batch._add_write_pbs(self._writes([op]))  # noqa: SLF001 - what create/update/set/delete append

    def _add_op_library(self, batch: Any, ref: Any, op: Any) -> None:
        """The library's batch methods (op shapes ``write_for`` leaves to them; the reference its
        writes are compared with in tests/unit/test_firestore_codec.py)."""
        if isinstance(op, Create):
            batch.create(ref, _fs_value(op.doc))
        elif isinstance(op, Update):
            option = None if op.precondition is EXISTS else self.db.write_option(last_update_time=op.precondition)
            batch.update(ref, _fs_value(op.fields), option=option)
        elif isinstance(op, Set):
            batch.set(ref, _fs_value(op.doc), merge=op.merge)
        elif isinstance(op, Increment):
            if op.fields:
                batch.set(ref, _increments(op.fields), merge=True)
        elif isinstance(op, Delete):
            option = None if op.precondition is None else self.db.write_option(last_update_time=op.precondition)
            batch.delete(ref, option=option)
        else:  # pragma: no cover - a new op kind
            raise TypeError(f"unknown op {op!r}")

    # --- single steps of the commits above, added to a caller's batch (tests drive them alone) ------
    def _add_tax(self, batch: Any, fills: list[tuple[Any, ...]]) -> dict[str, str]:
        """The lot-book step of finish/save_group; answers trade id -> the lot method applied."""
        ops, methods = store_writes.tax_ops(self, fills)
        for op in ops:
            self._add_op(batch, op)
        return methods

    def _add_metrics(self, batch: Any, tenant_id: str, row_id: str, row: Mapping[str, Any]) -> None:
        """The metrics step of a ledger row."""
        for op in store_writes.metrics_ops(self, tenant_id, row_id, row):
            self._add_op(batch, op)

    def list_ids(self, collection: str, limit: int) -> list[str]:
        """A keys-only query (``select([])``): billed one read per document found (one if none)."""
        return [snap.id for snap in self.db.collection(collection).select([]).limit(limit).stream()]

    # --- execution-quality metrics (sharded day counters, same commit as the ledger row) ------------
    def read_metrics(self, tenant_id: str, from_day: str, to_day: str) -> list[dict[str, Any]]:
        query = (self._tenant(tenant_id).collection("metrics")
                 .where(filter=FieldFilter("day", ">=", from_day)).where(filter=FieldFilter("day", "<=", to_day)))
        return [snap.to_dict() or {} for snap in query.stream()]

    # --- multi-leg groups ----------------------------------------------------------------------------
    def group_ref(self, tenant_id: str, group_id: str):
        return self._tenant(tenant_id).collection("execution_groups").document(group_id)

    def create_group(self, tenant_id: str, group_id: str, doc: Mapping[str, Any],
                     intent_update: Mapping[str, Any] | None = None) -> GroupSnapshot | None:
        return store_writes.create_group(self, tenant_id, group_id, doc, intent_update)

    def load_group(self, tenant_id: str, group_id: str) -> GroupSnapshot | None:
        snap = self.group_ref(tenant_id, group_id).get()
        if not snap.exists:
            return None
        return GroupSnapshot(tenant_id, group_id, snap.to_dict() or {}, snap.update_time)

    def reserve_group(self, snapshot: GroupSnapshot, doc: Mapping[str, Any],
                      reservation: GroupReservation) -> GroupReserveOutcome:
        return store_writes.reserve_group(self, snapshot, doc, reservation, backoff=_backoff)

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
        return store_writes.save_group(self, snapshot, doc, fills, intent_update, settlement, backoff=_backoff)

    def take_lease(self, tenant_id: str, group_id: str, owner: str, now: datetime,
                   lease_until: datetime) -> GroupSnapshot | None:
        """The group's lease for ``owner`` when it is free (expired or never taken), in a transaction.
        Contention — an aborted read or commit, or the library's attempts all aborted — is retried
        here with jittered backoff (the library retries an aborted commit at once and not an aborted
        read: 4 sweepers racing on a cold emulator ran out of attempts together); an attempt whose
        commit landed although its answer was lost finds the lease already ``owner``'s."""
        ref = self.group_ref(tenant_id, group_id)

        @firestore.transactional
        def take(txn: Any) -> bool:
            snap = ref.get(transaction=txn)
            if not snap.exists:
                return False
            data = snap.to_dict() or {}
            held_until = data.get("_lease_until")
            if data.get("_final"):
                return False
            if data.get("_lease_owner") == owner and held_until == lease_until:
                return True  # this call's own earlier attempt committed
            if held_until is not None and held_until > now:
                return False
            txn.update(ref, {"_lease_owner": owner, "_lease_until": lease_until})
            return True

        for attempt in range(LEASE_ATTEMPTS):
            if attempt:
                _backoff(attempt)
            try:
                taken = take(self.db.transaction())
                break
            except gexc.Aborted:
                continue
            except ValueError as exc:  # the library's attempts exhausted: contention
                if not isinstance(exc.__cause__, gexc.Aborted):
                    raise
        else:
            raise StoreContention(f"group {group_id}: lease contended")
        if not taken:
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

    # --- accounts (issue 12) ----------------------------------------------------------------------
    # backend.ports.accounts.AccountStore and AccountAdmin: decided in backend.execution.account_writes
    # over get_all / commit, like store_writes; list_accounts is this adapter's one query.
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
        """The tenant's accounts by id (``owner_uid``: an ``array_contains`` query on ``owner_uids``,
        served by Firestore's automatic single-field index)."""
        account_writes.check_list(tenant_id, owner_uid, limit)
        col = self._tenant(tenant_id).collection("accounts")
        query: Any = col
        if owner_uid is not None:
            query = query.where(filter=FieldFilter("owner_uids", "array_contains", owner_uid))
        query = query.order_by(FieldPath.document_id()).limit(limit)
        return account_writes.list_filter([(snap.id, snap.to_dict() or {}) for snap in query.stream()], owner_uid)

    def set_default_account(self, tenant_id: str, uid: str, account_id: str, *, at: datetime | None = None) -> None:
        account_writes.set_default_account(self, tenant_id, uid, account_id, at)

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
        return self._newest_first("ledger_trades", tenant_id, "created_at", equals, created_from, created_before,
                                  after, limit)

    def groups_page(self, tenant_id: str, *, equals: Mapping[str, str], created_from: str | None,
                    created_before: str | None, after: tuple[str, str] | None,
                    limit: int) -> list[tuple[str, dict[str, Any]]]:
        """Group documents newest first: (created_timestamp, doc id) descending, equality filters,
        created_timestamp in [created_from, created_before). Only indexed filter combinations
        (``backend.api.groups_list.INDEXED_FILTERS``, firestore.indexes.json) reach here."""
        return self._newest_first("execution_groups", tenant_id, "created_timestamp", equals, created_from,
                                  created_before, after, limit)

    def _newest_first(self, collection: str, tenant_id: str, field: str, equals: Mapping[str, str],
                      created_from: str | None, created_before: str | None, after: tuple[str, str] | None,
                      limit: int) -> list[tuple[str, dict[str, Any]]]:
        """One tenant collection, equality filters, ``field`` in [created_from, created_before), paged
        by (field, doc id) descending."""
        col = self._tenant(tenant_id).collection(collection)
        query: Any = col
        for name, value in sorted(equals.items()):
            query = query.where(filter=FieldFilter(name, "==", value))
        if created_from is not None:
            query = query.where(filter=FieldFilter(field, ">=", created_from))
        if created_before is not None:
            query = query.where(filter=FieldFilter(field, "<", created_before))
        return self._page(col, query, field, after, limit, firestore.Query.DESCENDING)

    # --- admin (issue 13) ----------------------------------------------------------------------------
    def admin_page(self, tenant_id: str, collection: str, *, equals: Mapping[str, str],
                   contains: tuple[str, str] | None = None, after: str | None,
                   limit: int) -> list[tuple[str, dict[str, Any]]]:
        """Documents of ``tenants/{t}/{collection}`` (members, broker_connections, accounts) by document id
        ascending, after the id ``after``: equality filters and at most one array-contains
        (``contains`` = (field, value)); served by single-field indexes."""
        col = self._tenant(tenant_id).collection(collection)
        query: Any = col
        for name, value in sorted(equals.items()):
            query = query.where(filter=FieldFilter(name, "==", value))
        if contains is not None:
            query = query.where(filter=FieldFilter(contains[0], "array_contains", contains[1]))
        query = query.order_by(FieldPath.document_id())
        if after is not None:
            query = query.start_after({FieldPath.document_id(): col.document(after)})
        return [(snap.id, snap.to_dict() or {}) for snap in query.limit(limit).stream()]

    def audit_page(self, tenant_id: str, *, equals: Mapping[str, str], created_from: str | None,
                   created_before: str | None, after: tuple[str, str] | None,
                   limit: int) -> list[tuple[str, dict[str, Any]]]:
        """Audit entries newest first: (created_at, doc id) descending; at most one equality filter
        (``backend.api.audit.INDEXED_FILTERS``, composite indexes in firestore.indexes.json)."""
        return self._newest_first("audit_log", tenant_id, "created_at", equals, created_from, created_before,
                                  after, limit)


    # --- tax elections and corporate actions (issue 16) ------------------------------------------
    # Decided in backend/tax/admin_writes.py over get_all/commit (the same code the in-memory store runs).
    def record_tax_election(self, uid: str, method: Any, *, now: datetime, effective_at: datetime | None = None,
                            account: str | None = None, default_rule: Any = None,
                            request_key: str | None = None) -> Any:
        from backend.tax import admin_writes

        return admin_writes.record_election(self, uid, method, now=now, effective_at=effective_at, account=account,
                                            default_rule=default_rule, request_key=request_key, backoff=_backoff)

    def tax_books_for_symbol(self, symbol: str, *, after: str | None, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """Every user's lot book of ``symbol`` (collection group ``tax_books``, equality on ``symbol``:
        the single-field index exempted for collection-group scope in firestore.indexes.json), by
        document name; ``after`` = the last path of the previous page."""
        query = (self.db.collection_group("tax_books").where(filter=FieldFilter("symbol", "==", symbol))
                 .order_by(FieldPath.document_id()))
        if after is not None:
            query = query.start_after({FieldPath.document_id(): self.db.document(after)})
        return [(snap.reference.path, snap.to_dict() or {}) for snap in query.limit(limit).stream()]

    def apply_corporate_action(self, tenant_id: str, action: Any, *, recorded_by: str,
                               now: datetime) -> tuple[dict[str, Any], bool]:
        from backend.tax import admin_writes

        return admin_writes.apply_corporate_action(self, tenant_id, action, recorded_by=recorded_by, now=now,
                                                   backoff=_backoff)

def _increments_after(writes: list[Any], results: Sequence[Any]) -> dict[str, dict[str, int]]:
    """issue 17: each incremented field's value after the commit, from the write results'
    transform results (in the order of the write's ``update_transforms``). Empty when the
    library's batch does not expose its writes (the caller then reads the document back)."""
    if len(writes) != len(results):
        return {}
    out: dict[str, dict[str, int]] = {}
    for write, result in zip(writes, results):
        write = getattr(write, "_pb", write)
        transforms = write.update_transforms  # empty on a delete and on a write without transforms
        if not transforms or not write.HasField("update"):
            continue
        result = getattr(result, "_pb", result)  # the raw message: no proto-plus wrapper per value
        values = getattr(result, "transform_results", ()) or ()
        if len(transforms) != len(values):
            continue
        fields: dict[str, int] = {}
        for transform, value in zip(transforms, values):
            # increments of integer counters only (server timestamps, array unions are not counters)
            if transform.WhichOneof("transform_type") == "increment" \
                    and value.WhichOneof("value_type") == "integer_value":
                fields[transform.field_path] = int(value.integer_value)
        if fields:
            path = write.update.name.split("/documents/", 1)[-1]
            out.setdefault(path, {}).update(fields)
    return out


def _read_pool() -> Any:
    """The threads that send the exact slot counts while a ``get_all`` is in flight (``risk_snapshot``
    and the groups' ``day_trade_counts``: one round trip for both; issue 17)."""
    from backend.pools import shared_pool

    return shared_pool("fs-read", 16)


LEASE_ATTEMPTS = 8  # take_lease's own attempts, each one of the library's transactions


def _backoff(attempt: int) -> None:
    import random
    import time

    time.sleep(random.uniform(0.005, 0.03) * min(attempt, 6))


def _commit_writes(client: Any, writes: list[Any], attempts: int = 8) -> Sequence[Any]:
    """``WriteBatch.commit`` of these ``Write`` protobufs, answering the raw ``WriteResult``s (issue
    17): sent bare on the client's channel by ``firestore_rpc`` (the GAPIC method's metadata and
    timeout, its errors, its retry by hand-over; the GAPIC method itself when that path is off), with
    a bounded contention retry — without the request's conversion from a dict through proto-plus (each
    write copied twice) or a proto-plus wrapper per result. A precondition failure is an answer, not
    contention: it propagates at once. ``tests/integration/test_firestore_commit_raw.py`` compares
    what this and the library's ``WriteBatch.commit`` write and answer, on both paths."""
    import random
    import time

    request = firestore_types.CommitRequest.pb()(database=client._database_string)  # noqa: SLF001
    request.writes.extend(getattr(w, "_pb", w) for w in writes)
    fast = FastRpc.for_client(client)
    for attempt in range(attempts):
        try:
            if fast is not None:
                return list(fast.commit(request).write_results)
            response = client._firestore_api.commit(  # noqa: SLF001 - no copy: the GAPIC method takes it as is
                request=firestore_types.CommitRequest.wrap(request), metadata=client._rpc_metadata)  # noqa: SLF001
            return list(getattr(response, "_pb", response).write_results)
        except gexc.Aborted:
            if attempt == attempts - 1:
                raise StoreContention("commit aborted by contention") from None
            time.sleep(random.uniform(0.01, 0.05) * (2 ** attempt))
    raise AssertionError("unreachable")


def _update_times(results: Sequence[Any]) -> list[Any]:
    """Each raw ``WriteResult``'s update time as the library answered it: proto-plus's own
    ``DatetimeWithNanoseconds`` (``proto.datetime_helpers``, the class its Timestamp rule makes), or
    ``None`` when unset, as proto-plus answers an absent field. Converted once per distinct time
    (a commit's writes share its commit time; the value is immutable)."""
    out: list[Any] = []
    stamp: Any = None
    converted: Any = None
    for result in results:
        raw = getattr(result, "_pb", result)
        if not raw.HasField("update_time"):
            out.append(None)
            continue
        if stamp is None or raw.update_time != stamp:
            stamp = raw.update_time
            converted = _ProtoDatetime.from_timestamp_pb(stamp)
        out.append(converted)
    return out


def _fs_value(value: Any) -> Any:
    """The core's field values and sentinels as google-cloud-firestore values and transforms."""
    if value is SERVER_TIME:
        return firestore.SERVER_TIMESTAMP
    if isinstance(value, Inc):
        return firestore.Increment(value.value)
    if isinstance(value, ArrayUnion):
        return firestore.ArrayUnion(list(value.values))
    if isinstance(value, Mapping):
        return {k: _fs_value(v) for k, v in value.items()}
    return value


def _increments(values: Mapping[str, int]) -> dict[str, Any]:
    """The core's integer increments as Firestore ``Increment`` transforms."""
    return {k: firestore.Increment(v) for k, v in values.items()}


def _exposure(doc: Mapping[str, Any]) -> Exposure:
    return exposure_from_doc(doc)


def _record(tenant_id: str, intent_id: str, snap: Any) -> IntentRecord | None:
    if not snap.exists:
        return None
    data = snap.to_dict() or {}
    return IntentRecord(tenant_id, intent_id, IntentStatus(data.get("status") or "new"), data)


# gRPC reads a unary-stream RPC's answers (BatchGetDocuments, RunQuery, RunAggregationQuery) on the
# calling thread with this channel option; without it every such call starts a "channel spin thread"
# when none runs — between sequential requests, each batched read started one (~1.5-3 ms of a placed
# trade's wall time on this machine, issue 17). The calls stay blocking iterators, as the library uses
# them; deadlines are the core's, unchanged.
SINGLE_THREADED_STREAMS = ("SingleThreadedUnaryStream", 1)


_API_LOCK = threading.Lock()


class _Client(firestore.Client):
    """google-cloud-firestore's client on a channel with ``SINGLE_THREADED_STREAMS``: the library's own
    channel construction (production: its default options; emulator: its insecure channel with the
    owner token and message-size options) plus that one option — built once, under a lock. The library
    builds its channel on first use without one: two threads using a new client at once (a new
    instance's warm-up and its first request) each built a channel and the second replaced the first,
    which was then freed under the other thread's call ("Stream removed (Channel deallocated!)": a
    single-threaded stream holds no reference to its channel)."""

    def _firestore_api_helper(self, transport: Any, client_class: Any, client_module: Any) -> Any:
        if self._firestore_api_internal is not None:
            return self._firestore_api_internal

        class _Transport(transport):  # type: ignore[misc, valid-type]
            @classmethod
            def create_channel(cls, *args: Any, **kwargs: Any) -> Any:
                kwargs["options"] = [*(kwargs.get("options") or ()), SINGLE_THREADED_STREAMS]
                return super().create_channel(*args, **kwargs)

        with _API_LOCK:
            return super()._firestore_api_helper(_Transport, client_class, client_module)

    def _emulator_channel(self, transport: Any) -> Any:
        import grpc
        from google.cloud.firestore_v1.base_client import _GRPC_MSG_SIZE_OPTIONS

        token = getattr(self._credentials, "id_token", None) or "owner"
        return grpc.insecure_channel(self._emulator_host, options=[("Authorization", f"Bearer {token}"),
                                                                   *_GRPC_MSG_SIZE_OPTIONS, SINGLE_THREADED_STREAMS])


def make_client(project: str | None = None) -> firestore.Client:
    """A Firestore client: the emulator (anonymous credentials) when FIRESTORE_EMULATOR_HOST is set."""
    project = project or os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCLOUD_PROJECT") or "demo-exec"
    if os.environ.get("FIRESTORE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return _Client(project=project, credentials=AnonymousCredentials())
    return _Client(project=project)
