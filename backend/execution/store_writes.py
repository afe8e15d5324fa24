"""The store port's write operations, decided once in the core over a unit of work
(``backend.execution.unit_of_work``): each reads the documents its plan needs in one ``get_all``,
builds one ``Commit`` (creates, preconditioned updates, blind increments, deletes) and interprets a
``Conflict``. Both adapters (Firestore, in-memory) delegate here and keep only I/O, so the rules —
what a claim, a finish or a later fill writes, and when it is retried — cannot drift between them.

Moved: ``claim``, ``finish``, ``apply_fill_update``, ``create_group``, ``save_group``,
``reserve_group``. Still written by each adapter: the lease transactions (``take_lease``,
``take_intent_lease``), ``annotate_intent`` and ``put_rpm_approval`` (one document each).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from backend.execution.records import with_cost_basis, with_lot_method
from backend.execution.store_rules import (choose_free_slots, disposal_path, exposure_from_doc, exposure_path,
                                           group_path, history_path, intent_path, ledger_path, metrics_path,
                                           metrics_write, plan_tax, reserve_increments, settle_increments, slot_path,
                                           slot_probe_order, tax_reads)
from backend.execution.unit_of_work import (EXISTS_ALREADY, SERVER_TIME, ArrayUnion, Backoff, Commit, Conflict, Create,
                                            Delete, Inc, Increment, Op, Set, Update, jitter_backoff)
from backend.ports.store import (Claim, ClaimOutcome, ClaimResult, FillUpdate, FillWrite, Finish, GroupReservation,
                                 GroupReserveOutcome, GroupSettlement, GroupSnapshot, IntentMissing, IntentRecord,
                                 IntentStatus, LeaseLost, StoreContention, UnitOfWork)

FINISH_ATTEMPTS = 12  # a retry only when a lot book moved under us (another trade of this user)


def _record(tenant_id: str, intent_id: str, doc: Mapping[str, Any] | None) -> IntentRecord | None:
    if doc is None:
        return None
    return IntentRecord(tenant_id, intent_id, IntentStatus(doc.get("status") or "new"), doc)


# --- what a commit that records fills reads first ------------------------------------------------------
class _Reads:
    """The documents a commit with ledger rows must read: the metrics shards of rows that name a
    strategy (their ``strategies`` list bounds per-strategy counters) and the lot books and tax
    settings of fills that carry a tax fill."""

    def __init__(self, tenant_id: str, rows: Sequence[tuple[str, Mapping[str, Any]]],
                 tax_items: list[tuple[Any, ...]]) -> None:
        self.tax = tax_reads(tax_items)
        self.metrics = sorted({metrics_path(tenant_id, row_id, row) for row_id, row in rows if row.get("strategy_id")})

    @property
    def paths(self) -> list[str]:
        tax = (self.tax.book_paths + self.tax.config_paths) if self.tax is not None else []
        return [*self.metrics, *tax]


def _tax_ops(reads: _Reads, docs: Mapping[str, tuple[Any, Any]]) -> tuple[list[Op], dict[str, str]]:
    """Lot books advance (update on the version read, else create) and disposals are written;
    answers the ops and trade id -> the lot method applied (for the history rows)."""
    ops, methods, _ = _tax_step(reads, docs)
    return ops, methods


def _tax_step(reads: _Reads, docs: Mapping[str, tuple[Any, Any]]
              ) -> tuple[list[Op], dict[str, str], dict[str, dict[str, str]]]:
    """``_tax_ops`` plus trade id -> what the fill closed (``BooksPlan.closed``: a sell's consumed
    lots' ``cost_basis``, a cover's short ``proceeds``), stamped on the history rows of the commit."""
    if reads.tax is None:
        return [], {}, {}
    plain = {path: doc for path, (doc, _) in docs.items()}
    plan = plan_tax(reads.tax, plain, plain)
    ops: list[Op] = []
    for (uid, key), path in zip(reads.tax.books, reads.tax.book_paths):
        doc, token = docs[path]
        state = {**plan.states[(uid, key)], "updated_server_at": SERVER_TIME}
        ops.append(Update(path, state, token) if doc is not None else Create(path, state))
    ops.extend(Set(disposal_path(uid, doc_id), doc) for uid, doc_id, doc in plan.disposals)
    return ops, plan.applied_methods, plan.closed


def _metrics_ops(tenant_id: str, row_id: str, row: Mapping[str, Any], admitted: dict[str, list[str]]) -> list[Op]:
    """The row's increments on its shard-day document (``admitted``: path -> the shard's
    ``strategies`` as read, updated as rows of the same commit admit more)."""
    path = metrics_path(tenant_id, row_id, row)
    current = admitted.setdefault(path, [])
    write = metrics_write(row_id, row, current)
    if write is None:
        return []
    doc: dict[str, Any] = {"day": write.day, **{k: Inc(v) for k, v in write.increments.items()}}
    if write.admit is not None:
        doc["strategies"] = ArrayUnion((write.admit,))
        current.append(write.admit)
    if write.strategy_bucket is not None:
        doc["by_strategy"] = {write.strategy_bucket: {k: Inc(v) for k, v in write.increments.items()}}
    return [Set(path, doc, merge=True)]


def _admitted(reads: _Reads, docs: Mapping[str, tuple[Any, Any]]) -> dict[str, list[str]]:
    return {path: list((docs[path][0] or {}).get("strategies") or []) for path in reads.metrics}


def _row_ops(tenant_id: str, uid: str, row_id: str, ledger: Mapping[str, Any], history_id: str | None,
             history: Mapping[str, Any] | None, methods: Mapping[str, str],
             admitted: dict[str, list[str]], closed: Mapping[str, Mapping[str, str]] | None = None) -> list[Op]:
    """A ledger row, the user's history row (both create-only) and the row's metrics."""
    ops: list[Op] = [Create(ledger_path(tenant_id, row_id), {**ledger, "recorded_at": SERVER_TIME})]
    ops.extend(_metrics_ops(tenant_id, row_id, ledger, admitted))
    if history is not None and history_id is not None:  # with the lot method and basis from the fill's book
        row = with_cost_basis(with_lot_method(history, methods.get(history_id)), (closed or {}).get(history_id))
        ops.append(Create(history_path(uid, history_id), {**row, "recorded_at": SERVER_TIME}))
    return ops


def fill_ops(uow: UnitOfWork, tenant_id: str, fills: Sequence[FillWrite],
             read: dict[str, tuple[Any, Any]] | None = None) -> list[Op]:
    """Everything recorded with ``fills``: lot books, ledger/history rows, metrics (reads first)."""
    reads = _Reads(tenant_id, [(f.trade_id, f.ledger) for f in fills], [(f.uid, f.tax, f.ledger) for f in fills])
    docs = dict(read or {})
    missing = [p for p in reads.paths if p not in docs]
    if missing:
        docs.update(uow.get_all(missing))
    ops, methods, closed = _tax_step(reads, docs)
    admitted = _admitted(reads, docs)
    for fill in fills:
        ops.extend(_row_ops(tenant_id, fill.uid, fill.trade_id, fill.ledger, fill.trade_id, fill.history, methods,
                            admitted, closed))
    return ops



def tax_ops(uow: UnitOfWork, items: list[tuple[Any, ...]]) -> tuple[list[Op], dict[str, str]]:
    """The lot-book step alone (what finish/save_group add to their commit): reads the books and
    settings of ``items`` ((uid, fill or None[, ledger row])) and answers the ops and the methods."""
    reads = _Reads("", [], items)
    return _tax_ops(reads, uow.get_all(reads.paths) if reads.paths else {})


def metrics_ops(uow: UnitOfWork, tenant_id: str, row_id: str, row: Mapping[str, Any]) -> list[Op]:
    """The metrics step alone for one ledger row (reads its shard's ``strategies`` if it names one)."""
    reads = _Reads(tenant_id, [(row_id, row)], [])
    docs = uow.get_all(reads.metrics) if reads.metrics else {}
    return _metrics_ops(tenant_id, row_id, row, _admitted(reads, docs))

# --- single-leg intents ------------------------------------------------------------------------------
def claim(uow: UnitOfWork, claim: Claim) -> ClaimOutcome:
    """Probe daily slots (``slot_probe_order``): one commit per probe — the intent record RESERVED
    with its lease (create, or update on the version read), the slot created, the exposure reserved
    by a blind increment. A taken slot or a moved intent is a ``Conflict``: the intent is re-read."""
    ip = intent_path(claim.tenant_id, claim.intent_id)
    # The risk check counted the slots a moment ago; a stale count only shifts where probing starts
    # (the create precondition on each slot keeps the limit exact), so it is not counted again.
    count = claim.trades_seen
    if count >= claim.daily_limit:
        return ClaimOutcome(ClaimResult.DAILY_LIMIT, trades_today=count)
    reserve = reserve_increments(claim.signed_qty)
    ep = exposure_path(claim.tenant_id, claim.account_key)
    # issue 17: the first probe commits on the intent as the pre-claim read saw it (a moved intent is a
    # Conflict and every later probe reads it again)
    prefetched = (claim.prefetched or {}).get(ip)
    for slot in slot_probe_order(count, claim.daily_limit):
        if prefetched is not None:
            (doc, token), prefetched = prefetched, None
        else:
            doc, token = uow.get_all([ip])[ip]
        if doc is not None and (doc.get("status") or "new") != IntentStatus.NEW.value:
            return ClaimOutcome(ClaimResult.DUPLICATE, existing=_record(claim.tenant_id, claim.intent_id, doc))
        record = {**claim.record, "slot": slot, "lease_until": claim.lease_until, "updated_server_at": SERVER_TIME}
        commit = Commit([Update(ip, record, token) if doc is not None
                         else Create(ip, {**record, "created_server_at": SERVER_TIME}),
                         Create(slot_path(claim.tenant_id, claim.trade_day, slot),
                                {"intent_id": claim.intent_id, "uid": claim.uid, "taken_at": SERVER_TIME}),
                         Increment(ep, reserve)])
        try:
            tokens = uow.commit(commit)
        except Conflict:
            continue  # the slot or the intent was taken meanwhile; the intent is re-read above
        exposure = exposure_from_doc(uow.get_all([ep])[ep][0])
        return ClaimOutcome(ClaimResult.CLAIMED, slot=slot, exposure=exposure, trades_today=count + 1,
                            token=tokens[0] if tokens else None)
    doc = uow.get_all([ip])[ip][0]
    if doc is not None and (doc.get("status") or "new") != IntentStatus.NEW.value:
        return ClaimOutcome(ClaimResult.DUPLICATE, existing=_record(claim.tenant_id, claim.intent_id, doc))
    return ClaimOutcome(ClaimResult.DAILY_LIMIT, trades_today=claim.daily_limit)


def finish(uow: UnitOfWork, finish: Finish, backoff: Backoff = jitter_backoff) -> IntentRecord | None:
    """One commit: the final intent record (lease cleared), the ledger row and its metrics, the lot
    book, the history row, the exposure settled and the slot given back. An intent already final
    commits nothing and answers the stored record (a concurrent duplicate finished first)."""
    ip = intent_path(finish.tenant_id, finish.intent_id)
    reads = _Reads(finish.tenant_id, [(finish.ledger_id, finish.ledger)],
                   [(finish.uid, finish.tax, finish.ledger)] if finish.tax is not None else [])
    prefetched = dict(finish.prefetched or {})  # issue 17: used by the first attempt only
    for attempt in range(FINISH_ATTEMPTS):
        if attempt:
            backoff(attempt)
        wanted = [ip, *reads.paths]
        missing = [p for p in wanted if p not in prefetched]
        docs = {**prefetched, **(uow.get_all(missing) if missing else {})}  # at most one round trip
        prefetched = {}
        doc, token = docs[ip]
        if doc is not None and IntentStatus(doc.get("status") or "new").is_final:
            return _record(finish.tenant_id, finish.intent_id, doc)
        record = {**finish.record, "updated_server_at": SERVER_TIME, "lease_until": None}
        ops: list[Op] = [Update(ip, record, token) if doc is not None
                         else Create(ip, {**record, "created_server_at": SERVER_TIME})]
        tax_ops, methods, closed = _tax_step(reads, docs)
        ops.extend(_row_ops(finish.tenant_id, finish.uid, finish.ledger_id, finish.ledger, finish.history_id,
                            finish.history, methods, _admitted(reads, docs), closed))
        ops.extend(tax_ops)
        if finish.account_key is not None:
            changes = settle_increments(finish.filled_signed_qty, finish.reserved_signed_qty or 0)
            if changes:
                ops.append(Increment(exposure_path(finish.tenant_id, finish.account_key), changes))
        if finish.release_slot is not None and finish.trade_day is not None:
            ops.append(Delete(slot_path(finish.tenant_id, finish.trade_day, finish.release_slot)))
        try:
            uow.commit(Commit(ops))
            return None
        except Conflict:
            continue  # a concurrent duplicate finished first (answered above), or a lot book moved
    doc = uow.get_all([ip])[ip][0]
    if doc is not None and IntentStatus(doc.get("status") or "new").is_final:
        return _record(finish.tenant_id, finish.intent_id, doc)
    raise StoreContention(f"intent {finish.intent_id}: could not record the outcome")


def apply_fill_update(uow: UnitOfWork, update: FillUpdate) -> bool:
    """Later fills of a placed order: the intent record's result (only if unchanged since ``token``),
    the new rows, lot books and metrics, the exposure settled — one commit; False on ``Conflict``."""
    ops: list[Op] = [Update(intent_path(update.tenant_id, update.intent_id),
                            {**update.record, "updated_server_at": SERVER_TIME}, update.token)]
    ops.extend(fill_ops(uow, update.tenant_id, update.fills))
    changes = settle_increments(update.filled_signed_qty, update.released_signed_qty)
    if changes:
        ops.append(Increment(exposure_path(update.tenant_id, update.account_key), changes))
    try:
        uow.commit(Commit(ops))
    except Conflict:
        return False
    return True


# --- multi-leg groups --------------------------------------------------------------------------------
SAVE_ATTEMPTS = 12  # retried only when a lot book moved and the group itself did not


def _leg_ops(tenant_id: str, group_id: str, doc: Mapping[str, Any]) -> list[Op]:
    """Leg documents are a projection of the group document, for per-symbol audit queries."""
    base = group_path(tenant_id, group_id)
    return [Set(f"{base}/legs/{leg['leg_id']}", {**leg, "group_id": doc.get("group_id"), "tenant_id": tenant_id,
                                                  "uid": doc.get("uid"), "group_status": doc.get("status")})
            for leg in doc.get("legs", [])]


def _intent_update_op(tenant_id: str, group_id: str, intent_update: Mapping[str, Any] | None) -> list[Op]:
    if not intent_update:
        return []
    return [Update(intent_path(tenant_id, group_id), {**intent_update, "updated_server_at": SERVER_TIME})]


def create_group(uow: UnitOfWork, tenant_id: str, group_id: str, doc: Mapping[str, Any],
                 intent_update: Mapping[str, Any] | None = None) -> GroupSnapshot | None:
    """Create the group document and its legs projection (and merge ``intent_update`` into the
    existing intent document of the same id) in one commit; None when the group exists already."""
    gp = group_path(tenant_id, group_id)
    commit = Commit([Create(gp, {**doc, "_created_server_at": SERVER_TIME}), *_leg_ops(tenant_id, group_id, doc),
                     *_intent_update_op(tenant_id, group_id, intent_update)])
    try:
        tokens = uow.commit(commit)
    except Conflict as exc:
        docs = uow.get_all([gp, intent_path(tenant_id, group_id)])
        if docs[gp][0] is not None:
            return None
        if intent_update and docs[intent_path(tenant_id, group_id)][0] is None:
            raise IntentMissing(f"intent {group_id} does not exist") from exc
        raise StoreContention(f"group {group_id}: could not be created") from exc
    return GroupSnapshot(tenant_id, group_id, dict(doc), tokens[0])


def _settlement_ops(tenant_id: str, settlement: GroupSettlement | None) -> list[Op]:
    if settlement is None:
        return []
    ops: list[Op] = []
    for key, filled, released in settlement.exposure:
        changes = settle_increments(filled, released)
        if changes:
            ops.append(Increment(exposure_path(tenant_id, key), changes))
    ops.extend(Delete(slot_path(tenant_id, settlement.trade_day, slot)) for slot in settlement.release_slots)
    return ops


def save_group(uow: UnitOfWork, snapshot: GroupSnapshot, doc: Mapping[str, Any], fills: tuple[FillWrite, ...] = (),
               intent_update: Mapping[str, Any] | None = None, settlement: GroupSettlement | None = None,
               backoff: Backoff = jitter_backoff) -> GroupSnapshot:
    """The group document (only if unchanged since ``snapshot``), its legs projection, the fills
    (rows, metrics, lot books), the intent's outcome and the reservation's settlement — one commit.
    A ``Conflict`` with the group unchanged is a moved lot book (retried) or a missing intent
    (``IntentMissing``); a moved group is ``LeaseLost``."""
    tenant_id, group_id = snapshot.tenant_id, snapshot.group_id
    gp, ip = group_path(tenant_id, group_id), intent_path(tenant_id, group_id)
    for attempt in range(SAVE_ATTEMPTS):
        if attempt:
            backoff(attempt)
        ops: list[Op] = [Update(gp, {**doc, "_updated_server_at": SERVER_TIME}, snapshot.token),
                         *_leg_ops(tenant_id, group_id, doc), *fill_ops(uow, tenant_id, fills),
                         *_intent_update_op(tenant_id, group_id, intent_update),
                         *_settlement_ops(tenant_id, settlement)]
        try:
            tokens = uow.commit(Commit(ops))
        except Conflict as exc:
            docs = uow.get_all([gp, ip] if intent_update else [gp])
            current, token = docs[gp]
            if current is not None and token == snapshot.token:
                if intent_update and docs[ip][0] is None:
                    raise IntentMissing(f"intent {group_id} does not exist") from exc
                continue
            raise LeaseLost(f"group {group_id} changed since it was read") from exc
        return GroupSnapshot(tenant_id, group_id, dict(doc), tokens[0])
    raise LeaseLost(f"group {group_id}: lot books kept moving")


RESERVE_ATTEMPTS = 20


def reserve_group(uow: UnitOfWork, snapshot: GroupSnapshot, doc: Mapping[str, Any], reservation: GroupReservation,
                  backoff: Backoff = jitter_backoff) -> GroupReserveOutcome:
    """One commit: the group doc with ``_reservation`` (only if unchanged since ``snapshot``), one
    created slot per leg, exposure increments. A slot taken meanwhile (``Conflict`` EXISTS) lists the
    taken slots and chooses again; a moved group document is ``LeaseLost``."""
    tenant_id, group_id = snapshot.tenant_id, snapshot.group_id
    gp = group_path(tenant_id, group_id)
    slots_col = f"tenants/{tenant_id}/risk_days/{reservation.trade_day}/trade_slots"
    limit = reservation.daily_limit
    for attempt in range(RESERVE_ATTEMPTS):
        if attempt:
            backoff(attempt)
        if attempt == 0:
            # First try without listing: slots below the count just read are most likely taken
            # (claims fill from the bottom); a wrong guess costs one conflict and a listing.
            taken = set(range(min(reservation.trades_seen, limit)))
        else:
            taken = {int(i) for i in uow.list_ids(slots_col, limit + 1000) if i.isdigit() and int(i) < limit}
        chosen = choose_free_slots(taken, limit, len(reservation.legs))
        if chosen is None and attempt == 0:
            continue  # the count says full: list the slots to be sure (one may have been given back)
        if chosen is None:
            return GroupReserveOutcome(ClaimResult.DAILY_LIMIT, trades_today=len(taken))
        slots = {leg.leg_id: slot for leg, slot in zip(reservation.legs, chosen)}
        stored = {**doc, "_reservation": reservation.to_doc(slots)}
        ops: list[Op] = [Update(gp, {**stored, "_updated_server_at": SERVER_TIME}, snapshot.token),
                         *_leg_ops(tenant_id, group_id, stored)]
        for leg in reservation.legs:
            ops.append(Create(slot_path(tenant_id, reservation.trade_day, slots[leg.leg_id]),
                              {"intent_id": group_id, "group_id": group_id, "leg_id": leg.leg_id,
                               "uid": reservation.uid, "taken_at": SERVER_TIME}))
            ops.append(Increment(exposure_path(tenant_id, leg.account_key), reserve_increments(leg.signed_qty)))
        try:
            tokens = uow.commit(Commit(ops))
        except Conflict as exc:
            if exc.kind == EXISTS_ALREADY:
                continue  # a slot was taken meanwhile: choose again
            raise LeaseLost(f"group {group_id} changed since it was read") from exc
        paths = [exposure_path(tenant_id, leg.account_key) for leg in reservation.legs]
        docs = uow.get_all(paths)
        exposures = {leg.account_key: exposure_from_doc(docs[p][0]) for leg, p in zip(reservation.legs, paths)}
        return GroupReserveOutcome(ClaimResult.CLAIMED, GroupSnapshot(tenant_id, group_id, stored, tokens[0]),
                                   exposures, len(taken) + len(reservation.legs))
    # slots kept being taken by concurrent claims: not a "no" (the day may have room); the group
    # stays VALIDATING with its lease, and a retry or the sweeper reserves again
    raise StoreContention(f"group {group_id}: daily slots kept being taken concurrently")
