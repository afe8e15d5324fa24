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

from collections import Counter
from collections.abc import Mapping, Sequence  # isinstance on typing's aliases is slow (issue 17)
from typing import Any

from backend.execution.records import with_cost_basis, with_lot_method
from backend.execution.lot_capacity import overflow_size
from backend.execution.store_rules import (POSITION, RESERVED_LONG, RESERVED_SHORT, AccountSlot,
                                           AccountSlotProbe, account_slot_path, account_slots_collection,
                                           account_tally_op, choose_free_slots, disposal_path, exposure_from_doc,
                                           exposure_path, group_path, history_path, intent_path, ledger_path,
                                           metrics_path, metrics_write, plan_tax, reserve_increments,
                                           reserved_account_slots, settle_increments, slot_path, slot_probe_order,
                                           tally_ops, tax_reads)
from backend.execution.unit_of_work import (EXISTS_ALREADY, SERVER_TIME, ArrayUnion, Backoff, Commit, Conflict, Create,
                                            Delete, Inc, Increment, Op, Set, Update, jitter_backoff)
from backend.ports.store import (ACCOUNT_LIMIT, TENANT_LIMIT, Claim, ClaimOutcome, ClaimResult, FillUpdate,
                                 FillWrite, Finish, GroupReservation, GroupReserveOutcome, GroupSettlement,
                                 GroupSnapshot, IntentMissing, IntentRecord, IntentStatus, LeaseLost, StoreContention,
                                 UnitOfWork)

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
    from backend.tax.state import book_write_fields

    plain = {path: doc for path, (doc, _) in docs.items()}
    plan = plan_tax(reads.tax, plain, plain)
    ops: list[Op] = []
    full: set[tuple[str, str]] = set()
    for (uid, key), path in zip(reads.tax.books, reads.tax.book_paths):
        doc, token = docs[path]
        over = overflow_size(plan.states[(uid, key)], path)
        if over is not None:  # the book cannot be written: the fill is still recorded (see _overflow_ops)
            full.add((uid, key))
            ops.extend(_overflow_ops(reads, uid, key, doc, over))
            continue
        # packed (issue 17); an older list-form document's list fields are cleared by the update
        state = {**book_write_fields(plan.states[(uid, key)], doc), "updated_server_at": SERVER_TIME}
        ops.append(Update(path, state, token) if doc is not None else Create(path, state))
    ops.extend(Set(disposal_path(uid, doc_id), doc) for uid, doc_id, doc in plan.disposals
               if (uid, _book_key(str(doc.get("symbol") or ""))) not in full)
    if not full:
        return ops, plan.applied_methods, plan.closed
    skipped = {fill.trade_id for uid, fill in reads.tax.fills if (uid, _book_key(fill.symbol)) in full}
    return (ops, {k: v for k, v in plan.applied_methods.items() if k not in skipped},
            {k: v for k, v in plan.closed.items() if k not in skipped})


def _book_key(symbol: str) -> str:
    from backend.tax.state import book_key

    return book_key(symbol)


def _overflow_ops(reads: _Reads, uid: str, key: str, doc: Mapping[str, Any] | None, size: int) -> list[Op]:
    """A lot book whose next state would pass ``lot_capacity.BOOK_WRITE_LIMIT`` (admitted under an older
    limit, an order with more fill increments than the admission margin covers, a loss sale of many
    lots): the lot step alone is refused. The book stays as it was; each fill of it in this commit gets
    a ``LOT_BOOK_OVERFLOW`` marker in ``users/<uid>/tax_disposals`` (everything needed to book it later;
    a ``trade_date`` like a shortfall record) and an ERROR alert is logged. The ledger row, the history
    row (without a lot method or basis), the exposure and the intent's outcome commit as usual: the
    fill is never lost and the finish never retries a write Firestore must refuse."""
    from backend.execution.lot_capacity import BOOK_WRITE_LIMIT, overflow_doc_id, overflow_marker
    from backend.logs import log_event
    from backend.tax.state import fill_key

    applied = set((doc or {}).get("recent_trade_ids") or ())  # a redelivered fill is in the book already
    fills = [fill for u, fill in reads.tax.fills if u == uid and _book_key(fill.symbol) == key
             and fill_key(fill) not in applied]
    log_event("tax.lot_book_overflow", severity="ERROR", uid=uid, book_key=key, book_bytes=size,
              limit=BOOK_WRITE_LIMIT, trade_ids=[fill.trade_id for fill in fills],
              note="fill recorded without its lot step; close lots or archive the book, then book the markers")
    return [Set(disposal_path(uid, overflow_doc_id(fill, key)),
                {**overflow_marker(fill, key, size), "recorded_at": SERVER_TIME}) for fill in fills]


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
    if write.asset_class is not None and write.asset_class_increments:
        doc["by_asset_class"] = {write.asset_class: {k: Inc(v) for k, v in write.asset_class_increments.items()}}
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
CLAIM_EXTRA_PROBES = 8  # probes of a pair that turned out free (the intent moved, or a slot was given back)


_COUNTERS = (POSITION, RESERVED_LONG, RESERVED_SHORT)


def _all_counters(signed_qty: Any) -> dict[str, int]:
    """A reservation's increments with the other exposure counters moved by zero: the commit then
    answers the whole exposure document as it left it (issue 17: no read back after a reservation;
    a store whose commit cannot answer it is read back instead)."""
    return {**{name: 0 for name in _COUNTERS}, **reserve_increments(signed_qty)}


def commit_with_side_writes(uow: UnitOfWork, ops: list[Op], side: Sequence[Op], intent_id: str) -> Any:
    """Commit ``ops`` with the request's side writes (``unit_of_work.SideWrites``: the rate limiter's
    blind counter increments, issue 17). They carry no precondition, so they cannot make the commit a
    ``Conflict``; if the commit still runs out of contention retries with them aboard (a hot counter
    document), it is committed once more without them: the trade never waits on the limiter's
    bookkeeping, which fails open on its shared counters as it always has (logged like the limiter's
    own failure, ``rate_limit.counters_unavailable``)."""
    if not side:
        return uow.commit(Commit(ops))
    try:
        return uow.commit(Commit([*ops, *side]))
    except StoreContention as exc:
        from backend.logs import log_event

        log_event("rate_limit.counters_unavailable", severity="ERROR", error_type=type(exc).__name__,
                  error=str(exc)[:300], intent_id=intent_id, note="committed without the rate counters")
        return uow.commit(Commit(ops))


def changed_fields(record: Mapping[str, Any], stored: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``record`` an update of the stored document ``stored`` must name: those absent
    from it or whose stored value is not the same (same types all the way down: ``True`` is not ``1``)
    and every field holding a sentinel (server time, increments, array unions: always applied)."""
    return {k: v for k, v in record.items() if k not in stored or _has_sentinel(v) or not _same(v, stored[k])}


def _has_sentinel(value: Any) -> bool:
    if value is SERVER_TIME or isinstance(value, (Inc, ArrayUnion)):
        return True
    if isinstance(value, Mapping):
        return any(_has_sentinel(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_sentinel(v) for v in value)
    return False


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (Mapping, list, tuple)) or isinstance(b, (Mapping, list, tuple)):
        return False
    return type(a) is type(b) and a == b


def _exact_counts(uow: UnitOfWork, claim: Claim) -> tuple[int, int | None] | None:
    """The day's slots counted exactly (the tenant's and, when the account has a limit of its own, the
    account's; None where not counted), or None from a store that cannot count."""
    if claim.account_id is not None and claim.account_daily_limit is not None:
        counts = getattr(uow, "day_trade_counts", None)
        if callable(counts):
            tenant, account = counts(claim.tenant_id, claim.trade_day, claim.account_id)
            return int(tenant), int(account)
    count = getattr(uow, "count_trades", None)
    return (int(count(claim.tenant_id, claim.trade_day)), None) if callable(count) else None


def _probes_from(claim: Claim, exact: tuple[int, int | None]) -> tuple[int, AccountSlotProbe | None]:
    """The tenant count and the account's probe from exact counts (the account's as read when it was
    not counted: it has no limit of its own, so its slots take the tenant slot's number)."""
    count, account_seen = exact
    if claim.account_id is None:
        return count, None
    return count, AccountSlotProbe(claim.account_id, claim.trade_day, claim.account_daily_limit,
                                   claim.account_trades_seen if account_seen is None else account_seen)


def claim(uow: UnitOfWork, claim: Claim) -> ClaimOutcome:
    """Probe daily slots (``slot_probe_order``): one commit per probe — the intent record RESERVED
    with its lease (create, or update on the version read), the slot created (and, for a claim bound
    to an account, the account's slot: ``AccountSlotProbe``), the exposure reserved by a blind increment.
    A taken slot or a moved intent is a ``Conflict``: the intent is re-read."""
    ip = intent_path(claim.tenant_id, claim.intent_id)
    # The risk check read the counts a moment ago (or the day's tally: ``counts_are_hints``); a stale
    # count only shifts where probing starts (the create precondition on each slot keeps the limit
    # exact), so it is not counted again — unless a tally would refuse the claim, or its first slot
    # turns out taken (issue 17: then the slots are counted exactly and probing starts there).
    count = claim.trades_seen
    account = AccountSlotProbe.of(claim)
    hinted = claim.counts_are_hints
    if hinted and (count >= claim.daily_limit or (account is not None and account.full)):
        exact = _exact_counts(uow, claim)
        hinted = False
        if exact is not None:
            count, account = _probes_from(claim, exact)
    if count >= claim.daily_limit:
        return ClaimOutcome(ClaimResult.DAILY_LIMIT, trades_today=count)
    if account is not None and account.full:
        return ClaimOutcome(ClaimResult.DAILY_LIMIT, trades_today=count, account_trades_today=account.seen,
                            limit_scope=ACCOUNT_LIMIT)
    reserve = _all_counters(claim.signed_qty)
    ep = exposure_path(claim.tenant_id, claim.account_key)
    tally = tally_ops(claim.tenant_id, claim.trade_day, claim.intent_id, claim.account_id, 1)
    # issue 17: the first probe commits on the intent as the pre-claim read saw it (a moved intent is a
    # Conflict and every later probe reads it again)
    pending = (claim.prefetched or {}).get(ip)
    order = slot_probe_order(count, claim.daily_limit)
    at, spare = 0, CLAIM_EXTRA_PROBES
    while at < len(order) and (account is None or not account.exhausted):
        slot = order[at]
        if pending is not None:
            (doc, token), pending = pending, None
        else:
            doc, token = uow.get_all([ip])[ip]
        if doc is not None and (doc.get("status") or "new") != IntentStatus.NEW.value:
            return ClaimOutcome(ClaimResult.DUPLICATE, existing=_record(claim.tenant_id, claim.intent_id, doc))
        held = None if account is None else account.slot_for(slot)
        record = {**claim.record, "slot": slot, "lease_until": claim.lease_until, "updated_server_at": SERVER_TIME}
        if held is not None:
            record["account_slot"] = held.to_doc()
        ops: list[Op] = [Update(ip, record, token) if doc is not None
                         else Create(ip, {**record, "created_server_at": SERVER_TIME}),
                         Create(slot_path(claim.tenant_id, claim.trade_day, slot),
                                {"intent_id": claim.intent_id, "uid": claim.uid, "taken_at": SERVER_TIME})]
        if held is not None:
            ops.append(Create(held.path(claim.tenant_id), {"intent_id": claim.intent_id, "uid": claim.uid,
                                                           "tenant_slot": slot, "taken_at": SERVER_TIME}))
        ops.append(Increment(ep, reserve))
        ops.extend(tally)
        try:
            tokens = commit_with_side_writes(uow, ops, claim.side_ops, claim.intent_id)
        except Conflict:
            exact = _exact_counts(uow, claim) if hinted else None
            hinted = False
            if exact is not None:  # the tally was behind (or the intent moved): probe from the exact counts
                count, account = _probes_from(claim, exact)
                pending = None  # the intent is read again (it may have moved)
                if count >= claim.daily_limit or (account is not None and account.full):
                    break
                order, at = slot_probe_order(count, claim.daily_limit), 0
                continue
            if account is None:
                at += 1
                continue  # the slot or the intent was taken meanwhile; the intent is re-read above
            # which of the two slots was taken decides what to probe next (read with the intent)
            assert held is not None
            sp, ap = slot_path(claim.tenant_id, claim.trade_day, slot), held.path(claim.tenant_id)
            docs = uow.get_all([ip, sp, ap])
            pending = docs[ip]
            moved = account.advance(tenant_taken=docs[sp][0] is not None, account_taken=docs[ap][0] is not None)
            if moved:
                at += 1
            elif not account.moved_last:
                spare -= 1  # neither slot is taken now: the intent moved (re-read) or a slot was given back
                if spare < 0:
                    raise StoreContention(f"intent {claim.intent_id}: daily slots kept being taken concurrently")
            continue
        after = getattr(tokens, "increments", {}).get(ep)
        exposure = exposure_from_doc(after if after is not None and set(reserve) <= set(after)
                                     else uow.get_all([ep])[ep][0])
        return ClaimOutcome(ClaimResult.CLAIMED, slot=slot, exposure=exposure, trades_today=count + 1,
                            token=tokens[0] if tokens else None, committed=record if tokens else None,
                            account_slot=None if held is None else held.slot,
                            account_trades_today=None if account is None else account.seen + 1)
    doc = uow.get_all([ip])[ip][0]
    if doc is not None and (doc.get("status") or "new") != IntentStatus.NEW.value:
        return ClaimOutcome(ClaimResult.DUPLICATE, existing=_record(claim.tenant_id, claim.intent_id, doc))
    if count >= claim.daily_limit:  # counted exactly after the tally's probe found its slot taken
        return ClaimOutcome(ClaimResult.DAILY_LIMIT, trades_today=count)
    if account is not None and account.full:
        return ClaimOutcome(ClaimResult.DAILY_LIMIT, trades_today=count, account_trades_today=account.seen,
                            limit_scope=ACCOUNT_LIMIT)
    if account is not None and account.exhausted:
        return ClaimOutcome(ClaimResult.DAILY_LIMIT, trades_today=count, account_trades_today=account.limit,
                            limit_scope=ACCOUNT_LIMIT)
    return ClaimOutcome(ClaimResult.DAILY_LIMIT, trades_today=claim.daily_limit,
                        account_trades_today=None if account is None else account.seen)


def finish(uow: UnitOfWork, finish: Finish, backoff: Backoff = jitter_backoff) -> IntentRecord | None:
    """One commit: the final intent record (lease cleared), the ledger row and its metrics, the lot
    book, the history row, the exposure settled and the slot given back. An intent already final
    commits nothing and answers the stored record (a concurrent duplicate finished first)."""
    ip = intent_path(finish.tenant_id, finish.intent_id)
    reads = _Reads(finish.tenant_id, [(finish.ledger_id, finish.ledger)],
                   [(finish.uid, finish.tax, finish.ledger)] if finish.tax is not None else [])
    prefetched = dict(finish.prefetched or {})  # issue 17: used by the first attempt only
    pre_read = prefetched.get(ip, (None, None))[0]
    if finish.release_slot is not None and pre_read is not None and "slot" not in pre_read:
        # the record as pre-read does not say which slots it holds (the claim's account slot among
        # them): it is read with the rest of the plan (one round trip)
        prefetched.pop(ip, None)
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
        # issue 17: an update names only the fields whose stored value differs (the version is checked,
        # so the others are exactly as read): ~35 of a placed trade's ~50 fields are the claim's own
        ops: list[Op] = [Update(ip, changed_fields(record, doc), token) if doc is not None
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
            # the day the claim took the slot on (stored with it): a claim just before midnight and
            # refused just after gives back its own slot, never slot n of the new day
            claimed_day = (doc or {}).get("trade_day") or finish.trade_day
            ops.append(Delete(slot_path(finish.tenant_id, claimed_day, finish.release_slot)))
            held = AccountSlot.from_doc((doc or {}).get("account_slot"))  # issue 12: taken with it by the claim
            if held is not None:
                ops.append(Delete(held.path(finish.tenant_id)))
            ops.extend(tally_ops(finish.tenant_id, claimed_day, finish.intent_id, None, -1))
            if held is not None:  # the account's tally, on the day its slot was taken
                ops.append(account_tally_op(finish.tenant_id, held.day, held.account_id, -1))
        try:
            commit_with_side_writes(uow, ops, finish.side_ops, finish.intent_id)
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


def _settlement_ops(tenant_id: str, group_id: str, settlement: GroupSettlement | None,
                    reservation: Mapping[str, Any] | None = None) -> list[Op]:
    """``reservation``: the group's stored ``_reservation`` — the account slots it names for the legs
    whose tenant slots are given back are given back too."""
    if settlement is None:
        return []
    ops: list[Op] = []
    for key, filled, released in settlement.exposure:
        changes = settle_increments(filled, released)
        if changes:
            ops.append(Increment(exposure_path(tenant_id, key), changes))
    ops.extend(Delete(slot_path(tenant_id, settlement.trade_day, slot)) for slot in settlement.release_slots)
    held = reserved_account_slots(reservation, settlement.release_slots)
    ops.extend(Delete(slot.path(tenant_id)) for slot in held)
    # the tally follows the slots (issue 17): one increment per document
    ops.extend(tally_ops(tenant_id, settlement.trade_day, group_id, None, -len(settlement.release_slots)))
    given_back = Counter((slot.day, slot.account_id) for slot in held)
    ops.extend(account_tally_op(tenant_id, day, account_id, -n)
               for (day, account_id), n in sorted(given_back.items()))
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
                         *_settlement_ops(tenant_id, group_id, settlement, snapshot.doc.get("_reservation"))]
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
    created slot per leg (and, bound to an account, one account slot per leg: ``_GroupSlots``),
    exposure increments. A slot taken meanwhile (``Conflict`` EXISTS) lists the taken slots and
    chooses again; a moved group document is ``LeaseLost``."""
    tenant_id, group_id = snapshot.tenant_id, snapshot.group_id
    gp = group_path(tenant_id, group_id)
    slots_col = f"tenants/{tenant_id}/risk_days/{reservation.trade_day}/trade_slots"
    limit = reservation.daily_limit
    choice = _GroupSlots(tenant_id, reservation)
    for attempt in range(RESERVE_ATTEMPTS):
        if attempt:
            backoff(attempt)
        if attempt == 0:
            # First try without listing: slots below the count just read are most likely taken
            # (claims fill from the bottom); a wrong guess costs one conflict and a listing.
            taken = set(range(min(reservation.trades_seen, limit)))
        else:
            taken = {int(i) for i in uow.list_ids(slots_col, limit + 1000) if i.isdigit() and int(i) < limit}
        chosen, account_chosen, scope = choice.choose(uow, taken, listed=attempt > 0)
        if chosen is None and attempt == 0:
            continue  # the count says full: list the slots to be sure (one may have been given back)
        if chosen is None:
            return GroupReserveOutcome(ClaimResult.DAILY_LIMIT, trades_today=len(taken),
                                       account_trades_today=choice.account_count, limit_scope=scope)
        slots = {leg.leg_id: slot for leg, slot in zip(reservation.legs, chosen)}
        account_slots = (None if account_chosen is None
                         else {leg.leg_id: slot for leg, slot in zip(reservation.legs, account_chosen)})
        stored = {**doc, "_reservation": reservation.to_doc(slots, account_slots)}
        ops: list[Op] = [Update(gp, {**stored, "_updated_server_at": SERVER_TIME}, snapshot.token),
                         *_leg_ops(tenant_id, group_id, stored)]
        for leg in reservation.legs:
            taken_by = {"intent_id": group_id, "group_id": group_id, "leg_id": leg.leg_id, "uid": reservation.uid,
                        "taken_at": SERVER_TIME}
            ops.append(Create(slot_path(tenant_id, reservation.trade_day, slots[leg.leg_id]), taken_by))
            if account_slots is not None:
                ops.append(Create(account_slot_path(tenant_id, reservation.trade_day, str(reservation.account_id),
                                                    account_slots[leg.leg_id]),
                                  {**taken_by, "tenant_slot": slots[leg.leg_id]}))
            ops.append(Increment(exposure_path(tenant_id, leg.account_key), _all_counters(leg.signed_qty)))
        ops.extend(tally_ops(tenant_id, reservation.trade_day, group_id,
                             None if account_slots is None else str(reservation.account_id), len(reservation.legs)))
        try:
            tokens = uow.commit(Commit(ops))
        except Conflict as exc:
            if exc.kind == EXISTS_ALREADY:
                continue  # a slot was taken meanwhile: choose again
            raise LeaseLost(f"group {group_id} changed since it was read") from exc
        paths = [exposure_path(tenant_id, leg.account_key) for leg in reservation.legs]
        after = getattr(tokens, "increments", {})  # issue 17: the exposures as the commit left them
        unread = [p for p in paths if not set(_COUNTERS) <= set(after.get(p) or {})]
        docs = {**{p: (after[p], None) for p in paths if p not in unread}, **(uow.get_all(unread) if unread else {})}
        exposures = {leg.account_key: exposure_from_doc(docs[p][0]) for leg, p in zip(reservation.legs, paths)}
        legs = len(reservation.legs)
        return GroupReserveOutcome(ClaimResult.CLAIMED, GroupSnapshot(tenant_id, group_id, stored, tokens[0]),
                                   exposures, len(taken) + legs,
                                   None if choice.account_count is None else choice.account_count + legs)
    # slots kept being taken by concurrent claims: not a "no" (the day may have room); the group
    # stays VALIDATING with its lease, and a retry or the sweeper reserves again
    raise StoreContention(f"group {group_id}: daily slots kept being taken concurrently")


class _GroupSlots:
    """The slot numbers a group reservation tries: the tenant's (``choose_free_slots`` below the
    tenant limit) and, bound to an account, the account's — below its own limit, chosen apart; with no
    account limit, the tenant slot numbers themselves (avoiding account slots of those numbers taken
    while the account had a limit). The account's taken slots are guessed from its count on the
    first try and listed on every later one, like the tenant's."""

    def __init__(self, tenant_id: str, reservation: GroupReservation):
        self.reservation = reservation
        self.account_id = reservation.account_id
        self.limit = reservation.account_daily_limit
        self.collection = (None if self.account_id is None
                           else account_slots_collection(tenant_id, reservation.trade_day, self.account_id))
        self.account_count: int | None = None if self.account_id is None else reservation.account_trades_seen

    def choose(self, uow: UnitOfWork, taken: set[int], *, listed: bool
               ) -> tuple[list[int] | None, list[int] | None, str]:
        """(tenant slots, account slots or None, the scope that is full when the tenant slots are None)."""
        n, limit = len(self.reservation.legs), self.reservation.daily_limit
        if self.collection is None:
            return choose_free_slots(taken, limit, n), None, TENANT_LIMIT
        bound = self.limit if self.limit is not None else limit
        if listed:
            ids = uow.list_ids(self.collection, bound + 1000)
            self.account_count = len(ids)
            account_taken = {int(i) for i in ids if i.isdigit() and int(i) < bound}
        else:
            account_taken = set(range(min(self.reservation.account_trades_seen, bound)))
        if self.limit is None:
            chosen = choose_free_slots(taken | account_taken, limit, n)
            return chosen, chosen, TENANT_LIMIT
        account_chosen = choose_free_slots(account_taken, self.limit, n)
        if account_chosen is None:
            return None, None, ACCOUNT_LIMIT
        return choose_free_slots(taken, limit, n), account_chosen, TENANT_LIMIT


# --- order management (issue 15 item 6): cancel / replace events of a working single order -------------
def update_intent_if_unchanged(uow: UnitOfWork, tenant_id: str, intent_id: str, token: Any,
                               fields: Mapping[str, Any]) -> Any:
    """Merge ``fields`` into the intent record only if it is unchanged since ``token`` was read (the
    marker a cancel or a replace persists before it reaches the venue). The new token, or None on
    ``Conflict`` (another request changed the record first)."""
    try:
        tokens = uow.commit(Commit([Update(intent_path(tenant_id, intent_id),
                                           {**fields, "updated_server_at": SERVER_TIME}, token)]))
    except Conflict:
        return None
    return tokens[0] if tokens else None


def order_event_exposure(filled_signed: Any, reserved_delta: Any, direction: int) -> dict[str, int]:
    """Exposure increments of an order event: the position moves by ``filled_signed``; the order's
    reservation (reserved long for a buy, short for a sell: ``direction``) grows by ``reserved_delta``
    units (negative: released)."""
    from backend.execution.store_rules import to_nanos

    out: dict[str, int] = {}
    if filled_signed:
        out[POSITION] = to_nanos(filled_signed)
    if reserved_delta:
        nanos = to_nanos(abs(reserved_delta))
        out[RESERVED_LONG if direction > 0 else RESERVED_SHORT] = nanos if reserved_delta > 0 else -nanos
    return out


def record_order_event(uow: UnitOfWork, tenant_id: str, intent_id: str, token: Any, record: Mapping[str, Any],
                       ledger_id: str, ledger: Mapping[str, Any], fills: Sequence[FillWrite] = (),
                       exposure: tuple[str, Mapping[str, int]] | None = None) -> bool:
    """One commit: the intent record merged (only if unchanged since ``token``), the fills the venue
    reported before the event (rows, lot books, metrics), the event's ledger row (create-only: recorded
    once) and the exposure change. False on ``Conflict`` (nothing written: the caller re-reads)."""
    ops: list[Op] = [Update(intent_path(tenant_id, intent_id), {**record, "updated_server_at": SERVER_TIME}, token)]
    ops.extend(fill_ops(uow, tenant_id, fills))
    ops.append(Create(ledger_path(tenant_id, ledger_id), {**ledger, "recorded_at": SERVER_TIME}))
    if exposure is not None and exposure[1]:
        ops.append(Increment(exposure_path(tenant_id, exposure[0]), dict(exposure[1])))
    try:
        uow.commit(Commit(ops))
    except Conflict:
        return False
    return True


class MarkerCommit:
    """What ``commit_replace_marker`` answers: the record's new token and, when the commit moved the
    order's reservation, the exposure document as that commit left it (the transform results; read
    back only from a store whose commit does not answer them)."""

    def __init__(self, token: Any, exposure: Any = None):
        self.token, self.exposure = token, exposure


def commit_replace_marker(uow: UnitOfWork, tenant_id: str, intent_id: str, token: Any,
                          marker: Mapping[str, Any] | None, account_key: str, reserved_delta: Any,
                          direction: int) -> MarkerCommit | None:
    """One commit: the record's ``pending_replace`` set to ``marker`` (None: cleared) only if the record
    is unchanged since ``token``, and the order's reservation moved by ``reserved_delta`` units in the
    order's ``direction`` (a replace that raises the quantity reserves its extra here, before the venue
    is asked; clearing a marker releases what it held) — the claim's pattern: a blind increment whose
    result the caller re-checks against the position limit. None on ``Conflict`` (nothing written)."""
    ep = exposure_path(tenant_id, account_key)
    ops: list[Op] = [Update(intent_path(tenant_id, intent_id),
                            {"pending_replace": None if marker is None else dict(marker),
                             "updated_server_at": SERVER_TIME}, token)]
    moves = order_event_exposure(0, reserved_delta, direction) if reserved_delta else {}
    if moves:
        ops.append(Increment(ep, {**{name: 0 for name in _COUNTERS}, **moves}))
    try:
        tokens = uow.commit(Commit(ops))
    except Conflict:
        return None
    exposure = None
    if moves:
        after = getattr(tokens, "increments", {}).get(ep)
        exposure = exposure_from_doc(after if after is not None and set(_COUNTERS) <= set(after)
                                     else uow.get_all([ep])[ep][0])
    return MarkerCommit(tokens[0] if tokens else None, exposure)
