"""Intent documents written by apps (``tenants/<t>/order_intents/<id>``) → execution → outcome on the doc.

The Firestore trigger calls ``handle_intent_document``. Identity: the tenant comes from the
document path and the uid from the document, which the security rules only let a user create
with their own uid in their own tenant. Triggers are delivered at least once: a replay finds the
intent record (single leg) or the group (multi-leg, group id = intent id) and places nothing new.
A malformed document gets a coded rejection written back (status ``rejected``) and nothing else.
"""
from __future__ import annotations

from typing import Any, Mapping

from backend.domain.errors import InvalidInput
from backend.execution.intent import ExecutionContext, OrderIntent
from backend.logs import log_event


def handle_intent_document(engine: Any, tenant_id: str, intent_id: str, data: Mapping[str, Any] | None,
                           *, limiter: Any = None) -> dict[str, Any]:
    """``limiter``: the per-user/per-tenant ``RateLimiter`` (``backend.risk.rate_limit``); a new
    document over the limit is refused on the document itself (status ``rejected``, error code
    ``RATE_LIMITED`` with ``retry_after``) and nothing else is written: no ledger row, no metrics,
    no counter increment. A multi-leg replay (status ``accepted``) is a resume and is not limited."""
    if not data:
        return {"status": "ignored", "reason": "empty document"}
    status = data.get("status")
    if status not in (None, "new"):
        if data.get("kind") == "multi_leg" and status == "accepted":
            pass  # a replay while the group runs: execute_group resumes or returns it
        else:
            log_event("exec.trigger_replay", tenant_id=tenant_id, intent_id=intent_id, status=status)
            return {"status": "ignored", "reason": f"already {status}"}
    try:
        ctx = ExecutionContext(tenant_id=tenant_id, uid=str(data.get("uid") or ""))
        kind = data.get("kind", "single")
        if kind == "multi_leg":
            if not isinstance(data.get("request"), Mapping):
                raise InvalidInput("request", "must be an object")
            if status != "accepted" and (refused := _rate_limited(engine, limiter, ctx, intent_id)) is not None:
                return refused
            out = _group(engine, ctx, intent_id, data)
            if status != "accepted" and (out.get("error") or {}).get("code") != "INVALID_INPUT":
                _record(limiter, ctx)  # an invalid request is refused with nothing counted
            return out
        if kind != "single":
            raise InvalidInput("kind", "must be 'single' or 'multi_leg'")
        raw = data.get("intent")
        if not isinstance(raw, Mapping):
            raise InvalidInput("intent", "must be an object")
        intent = OrderIntent.from_dict({**raw, "intent_id": intent_id})
    except InvalidInput as exc:
        return _invalid(engine, tenant_id, intent_id, exc)
    if (refused := _rate_limited(engine, limiter, ctx, intent_id)) is not None:
        return refused
    try:
        result = engine.execute_intent(intent, ctx)
    except InvalidInput as exc:  # refused before anything was written or sent (an unstorable record)
        return _invalid(engine, tenant_id, intent_id, exc)
    _record(limiter, ctx)
    if (result.extra or {}).get("persisted") is False and result.rejection is not None:
        return _refused(engine, tenant_id, intent_id, result.rejection)  # the account binding said no
    return result.to_dict()


# --------------------------------------------------------------------------- rate limit hook


def _limited_uid(ctx: ExecutionContext) -> str | None:
    from backend.execution.intent import validate_id

    try:
        validate_id(ctx.uid, "uid")
    except InvalidInput:
        return None  # no usable uid: only the tenant's limit applies (the engine refuses the rest)
    return ctx.uid


def _rate_limited(engine: Any, limiter: Any, ctx: ExecutionContext, intent_id: str) -> dict[str, Any] | None:
    if limiter is None:
        return None
    decision = limiter.admit(ctx.tenant_id, _limited_uid(ctx))
    if decision.allowed:
        return None
    error = {"code": "RATE_LIMITED", "field": None, "reason": decision.reason,
             "retry_after": decision.retry_after_seconds}
    engine.store.annotate_intent(ctx.tenant_id, intent_id, {"status": "rejected", "result": {"error": error}},
                                 only_if_status="new")
    log_event("api.rate_limited", severity="WARNING", source="intent_document", tenant_id=ctx.tenant_id,
              uid=ctx.uid, intent_id=intent_id, scope=decision.scope, limit_per_min=decision.limit,
              line=decision.line, retry_after=decision.retry_after_seconds)
    return {"status": "rejected", "error": error}


def _record(limiter: Any, ctx: ExecutionContext) -> None:
    if limiter is not None:
        limiter.record(ctx.tenant_id, _limited_uid(ctx))


def _group(engine: Any, ctx: ExecutionContext, intent_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
    # The document turns "accepted" in the commit that creates the group, and gets its outcome in
    # the commit that makes the group final (GroupExecutor, from_intent_doc): no gap to fall into.
    from backend.execution.accounts import AccountRefused

    try:
        group = engine.execute_group(data["request"], ctx, group_id=intent_id, from_intent_doc=True)
    except InvalidInput as exc:  # a malformed leg: a coded rejection on the document, no order
        return _invalid(engine, ctx.tenant_id, intent_id, exc)
    except AccountRefused as refused:  # not the caller's account (rules refuse it first): no group
        return _refused(engine, ctx.tenant_id, intent_id, refused.rejection)
    return group.to_api_response()


def _refused(engine: Any, tenant_id: str, intent_id: str, rejection: Any) -> dict[str, Any]:
    """A refusal of the account binding (issue 12), written on the document; nothing else."""
    error = {"code": rejection.code.value, "field": "broker_account_id", "reason": rejection.detail}
    engine.store.annotate_intent(tenant_id, intent_id, {"status": "rejected", "result": {"error": error}},
                                 only_if_status="new")
    log_event("exec.trigger_refused", severity="WARNING", tenant_id=tenant_id, intent_id=intent_id, error=error)
    return {"status": "rejected", "error": error}


def _invalid(engine: Any, tenant_id: str, intent_id: str, exc: InvalidInput) -> dict[str, Any]:
    error = {"code": "INVALID_INPUT", "field": exc.field, "reason": exc.reason}
    engine.store.annotate_intent(tenant_id, intent_id, {"status": "rejected", "result": {"error": error}},
                                 only_if_status="new")
    log_event("exec.trigger_invalid", severity="WARNING", tenant_id=tenant_id, intent_id=intent_id, error=error)
    return {"status": "rejected", "error": error}
