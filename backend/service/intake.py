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


def handle_intent_document(engine: Any, tenant_id: str, intent_id: str, data: Mapping[str, Any] | None
                           ) -> dict[str, Any]:
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
            return _group(engine, ctx, intent_id, data)
        if kind != "single":
            raise InvalidInput("kind", "must be 'single' or 'multi_leg'")
        raw = data.get("intent")
        if not isinstance(raw, Mapping):
            raise InvalidInput("intent", "must be an object")
        intent = OrderIntent.from_dict({**raw, "intent_id": intent_id})
    except InvalidInput as exc:
        return _invalid(engine, tenant_id, intent_id, exc)
    result = engine.execute_intent(intent, ctx)
    return result.to_dict()


def _group(engine: Any, ctx: ExecutionContext, intent_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
    # The document turns "accepted" in the commit that creates the group, and gets its outcome in
    # the commit that makes the group final (GroupExecutor, from_intent_doc): no gap to fall into.
    try:
        group = engine.execute_group(data["request"], ctx, group_id=intent_id, from_intent_doc=True)
    except InvalidInput as exc:  # a malformed leg: a coded rejection on the document, no order
        return _invalid(engine, ctx.tenant_id, intent_id, exc)
    return group.to_api_response()


def _invalid(engine: Any, tenant_id: str, intent_id: str, exc: InvalidInput) -> dict[str, Any]:
    error = {"code": "INVALID_INPUT", "field": exc.field, "reason": exc.reason}
    engine.store.annotate_intent(tenant_id, intent_id, {"status": "rejected", "result": {"error": error}},
                                 only_if_status="new")
    log_event("exec.trigger_invalid", severity="WARNING", tenant_id=tenant_id, intent_id=intent_id, error=error)
    return {"status": "rejected", "error": error}
