"""The store operations behind the tax admin endpoints, decided once over the unit of work
(``backend.execution.unit_of_work``: ``get_all`` + ``commit``), like ``backend.execution.store_writes``:
both stores (Firestore, in-memory) delegate here and keep only I/O. This is the one module of
``backend/tax`` that drives a port; the rules it applies are the pure ones of ``election.py`` and
``corporate.py``.

- ``record_election``: one more lot-method election on ``users/<uid>/config/tax`` (forward only,
  ``election.record_election``), written with a precondition on the version read (an update) or as
  a create; a concurrent change is re-read and re-decided. The fills' commits read the same
  document (``store_rules.plan_tax``), so a sale uses the elections committed before it.
- ``apply_corporate_action``: a tenant admin's split / reverse split / symbol change. First the
  record ``tenants/<tenant>/corporate_actions/<action_id>`` is created (status ``APPLYING``), so
  the action is persisted before any book changes; then every user's lot book of the symbol
  (``tax_books_for_symbol``, paged by path) is advanced by ``corporate.apply_tenant_action``, one
  commit per book with a precondition on the version read (a fill that moved the book meanwhile is
  re-read), and last the record gets the counts (``books.applied``: books that carry the action
  now; ``books.refused`` with the reasons) and status ``APPLIED``. The same action id again answers
  the APPLIED record without touching a book; an ``APPLYING`` record (a request that died midway)
  is resumed: books already carrying the id in their history count as applied and are not changed
  again (a resumed symbol change counts only the books it still finds under the old symbol). The
  same id with a different action is a ``CorporateActionConflict``.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from backend.domain.errors import StoreContended
from backend.execution.store_rules import book_path, tax_config_path
from backend.execution.unit_of_work import (SERVER_TIME, Commit, Conflict, Create, Delete, Update, no_backoff)
from backend.tax.corporate import (ActionKind, CorporateAction, CorporateActionConflict, Outcome,
                                   apply_tenant_action)
from backend.tax.election import ElectionOutcome, record_election as plan_election
from backend.tax.state import book_key, book_write_fields

ATTEMPTS = 8
PAGE_SIZE = 200
MAX_REFUSALS_KEPT = 100  # refused books listed on the record (the counts are complete)

Backoff = Callable[[int], None]


def corporate_action_path(tenant_id: str, action_id: str) -> str:
    return f"tenants/{tenant_id}/corporate_actions/{action_id}"


def book_action_id(tenant_id: str, action_id: str) -> str:
    """The id written into a book's history: the tenant's id namespaced, so two tenants' ids never meet."""
    return f"{tenant_id}/{action_id}"


def record_election(uow: Any, uid: str, method: Any, *, now: Any, effective_at: Any = None,
                    account: str | None = None, default_rule: Any = None, request_key: str | None = None,
                    backoff: Backoff = no_backoff) -> ElectionOutcome:
    path = tax_config_path(uid)
    for attempt in range(ATTEMPTS):
        if attempt:
            backoff(attempt)
        doc, token = uow.get_all([path])[path]
        outcome = plan_election(doc, method, now=now, effective_at=effective_at, account=account,
                                default_rule=default_rule, request_key=request_key)
        if outcome.config is None:
            return outcome
        fields = {"elections": outcome.config["elections"], "updated_server_at": SERVER_TIME}
        op = Update(path, fields, token) if doc is not None else Create(path, fields)
        try:
            uow.commit(Commit([op]))
        except Conflict:
            continue  # another election (or a first write) landed meanwhile: decide again on it
        return outcome
    raise StoreContended("the tax settings kept changing; retry with the same Idempotency-Key")


def apply_corporate_action(uow: Any, tenant_id: str, action: CorporateAction, *, recorded_by: str, now: Any,
                           page_size: int = PAGE_SIZE, backoff: Backoff = no_backoff) -> tuple[dict[str, Any], bool]:
    """(the record as stored, whether this id had been recorded before). ``uow`` also answers
    ``tax_books_for_symbol(symbol, after=path, limit=n)`` → [(path, doc)] by path."""
    record_path = corporate_action_path(tenant_id, action.action_id)
    existing = _create_record(uow, record_path, action, recorded_by, now)
    if existing is not None and existing.get("status") == "APPLIED":
        return _public(existing), True  # done before: the same id twice is applied once
    scoped = CorporateAction(action_id=book_action_id(tenant_id, action.action_id), kind=action.kind,
                             symbol=action.symbol, effective=action.effective, ratio=action.ratio,
                             new_symbol=action.new_symbol)
    counts = {outcome.value: 0 for outcome in Outcome}
    refusals: list[dict[str, str]] = []
    after: str | None = None
    while True:
        page = uow.tax_books_for_symbol(action.symbol, after=after, limit=page_size)
        for path, _ in page:
            outcome, reason = _apply_to_book(uow, path, scoped, tenant_id, backoff)
            counts[outcome.value] += 1
            if outcome is Outcome.REFUSED and len(refusals) < MAX_REFUSALS_KEPT:
                refusals.append({"uid": path.split("/")[1], "reason": reason})
        if len(page) < page_size:
            break
        after = page[-1][0]
    books = {"applied": counts["APPLIED"] + counts["ALREADY_APPLIED"], "refused": counts["REFUSED"]}
    summary = {"status": "APPLIED", "books": books, "refusals": refusals, "applied_at": now.isoformat(),
               "updated_server_at": SERVER_TIME}
    uow.commit(Commit([Update(record_path, summary)]))
    stored = uow.get_all([record_path])[record_path][0] or {}
    return _public(stored), existing is not None


def _create_record(uow: Any, path: str, action: CorporateAction, recorded_by: str,
                   now: Any) -> dict[str, Any] | None:
    """Create the record (APPLYING) and answer None, or check that the one there is this action
    and answer it."""
    doc, _ = uow.get_all([path])[path]
    if doc is None:
        try:
            uow.commit(Commit([Create(path, {"action": action.to_dict(), "status": "APPLYING",
                                             "recorded_by": recorded_by, "recorded_at": now.isoformat(),
                                             "created_server_at": SERVER_TIME})]))
            return None
        except Conflict:
            doc, _ = uow.get_all([path])[path]
    if (doc or {}).get("action") != action.to_dict():
        raise CorporateActionConflict(f"action_id {action.action_id} was recorded for a different action")
    return dict(doc or {})


def _apply_to_book(uow: Any, path: str, action: CorporateAction, tenant_id: str,
                   backoff: Backoff) -> tuple[Outcome, str]:
    uid = path.split("/")[1]
    target_path = book_path(uid, book_key(action.new_symbol)) if action.kind is ActionKind.SYMBOL_CHANGE else None
    paths = [path] + ([target_path] if target_path else [])
    for attempt in range(ATTEMPTS):
        if attempt:
            backoff(attempt)
        docs = uow.get_all(paths)
        doc, token = docs[path]
        target, target_token = docs[target_path] if target_path else (None, None)
        if doc is None:
            return Outcome.NOT_THE_TENANTS, ""  # moved away meanwhile (a symbol change of another request)
        step = apply_tenant_action(doc, action, tenant_id, target)
        if step.outcome is not Outcome.APPLIED:
            return step.outcome, step.reason
        new = {**(step.state or {}), "updated_server_at": SERVER_TIME}
        if target_path is None:  # packed (issue 17): an older document's list fields are cleared
            ops: list[Any] = [Update(path, book_write_fields(new, doc), token)]
        else:
            ops = [Update(target_path, book_write_fields(new, target), target_token) if target is not None
                   else Create(target_path, book_write_fields(new, None)), Delete(path, token)]
        try:
            uow.commit(Commit(ops))
        except Conflict:
            continue  # a fill advanced the book meanwhile: re-read and decide again
        return Outcome.APPLIED, ""
    raise StoreContended(f"the lot book {path} kept changing; retry the same action_id")


def _public(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record without server timestamps (what the API answers)."""
    return {k: v for k, v in record.items() if not k.endswith("_server_at")}
