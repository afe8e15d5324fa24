"""Daily reconciliation over HTTP and on a schedule (issue 13 item 7): positions and the day's cash per
account. The comparison itself is the pure ``backend.risk.reconciliation``; this module only finds each
account's venues (positions; their optional ``get_activities`` capability for cash) and answers.

- ``POST /tenants/{t}/reconciliation`` — a tenant_admin of ``t`` runs it now (no body): the report of
  today (UTC) is written (replacing an earlier run of the day; ``since`` of a persisting break is kept)
  and returned; the run is recorded in the audit log.
- ``GET /tenants/{t}/reconciliation?day=YYYY-MM-DD`` — tenant_admin or auditor of ``t``: the stored
  report of that day (default today), 404 when none was written; its ``status`` (``clean``, ``breaks``,
  ``incomplete``) is what an admin queries.
- ``run_scheduled(engine)`` — the scheduled function (``functions/main.py``: ``reconcile_daily``): every
  tenant with a ``tenants/{t}`` document (written when a platform operator creates a tenant).

An account's venues: ``VenuePool.router_for(tenant, AccountBinding.of(account, connection))`` — the
same resolver orders use, so positions and activities are read from exactly the account's venue account.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

from backend.api.auth import Identity, forbidden
from backend.api.http import ApiError, ApiRequest, ApiResponse, bad_request
from backend.domain.ids import check_id
from backend.risk import reconciliation

MAX_TENANTS = 10_000
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def venues_for(engine: Any) -> Any:
    """``(tenant_id, account) -> venues`` of an account, through the engine's venue pool."""
    from backend.api.risk_settings import venue_pool
    from backend.ports.accounts import DEPLOYMENT_CONNECTION_ID, AccountBinding

    pool = venue_pool(engine)

    def resolve(tenant_id: str, account: Any) -> Sequence[Any]:
        connection = None if account.connection_id == DEPLOYMENT_CONNECTION_ID else \
            engine.store.get_connection(tenant_id, account.connection_id)
        return pool.router_for(tenant_id, AccountBinding.of(account, connection)).venues()

    return resolve


def _now(engine: Any) -> Any:
    from backend.api.app import _clock_of

    return _clock_of(engine).now()


def run(request: ApiRequest, identity: Identity, engine: Any, tenant_id: str) -> ApiResponse:
    from backend.api.audit import audit_op, request_id_of
    from backend.api.risk_settings import require_risk_admin
    from backend.execution.unit_of_work import Commit

    require_risk_admin(identity, tenant_id)
    if request.body and request.body.strip():
        raise bad_request(None, "this endpoint takes no body")
    now = _now(engine)
    report = reconciliation.reconcile_tenant(engine.store, venues_for(engine), tenant_id, now)
    engine.store.commit(Commit([audit_op(
        identity, tenant_id=tenant_id, action="reconciliation.run", target_type="reconciliation",
        target_id=report["day"], before=None,
        after={"status": report["status"], "break_count": report["break_count"],
               "cash_break_count": report["cash_break_count"]},
        request_id=request_id_of(request), now=now)]))
    return ApiResponse(200, report)


def get(request: ApiRequest, identity: Identity, engine: Any, tenant_id: str) -> ApiResponse:
    from backend.api.ledger_review import single_valued

    if not getattr(identity, "can_read_tenant", identity.is_admin):
        raise forbidden("only a tenant_admin or auditor may read reconciliation reports", "tenant_id")
    if identity.tenant_id != tenant_id:
        raise forbidden("tenant_id is not the authenticated tenant", "tenant_id")
    query = single_valued(request.query)
    unknown = sorted(set(query) - {"day"})
    if unknown:
        raise bad_request(unknown[0], "unknown query parameter")
    day = query.get("day") or _now(engine).date().isoformat()
    if not _DAY.fullmatch(day):
        raise bad_request("day", "must be a date YYYY-MM-DD")
    path = reconciliation.report_path(check_id(tenant_id, "tenant_id"), day)
    doc = engine.store.get_all([path])[path][0]
    if doc is None:
        raise ApiError(404, "NOT_FOUND", f"no reconciliation report for {day}", field="day", reason="not found")
    return ApiResponse(200, doc)


def run_scheduled(engine: Any) -> dict[str, str]:
    """Every tenant's report of today; tenant → status."""
    tenants = engine.store.list_ids("tenants", MAX_TENANTS)
    return reconciliation.reconcile_all(engine.store, venues_for(engine), _now(engine), tenants)


ROUTES = (
    ("POST", "/tenants/{tenant_id}/reconciliation", run),
    ("GET", "/tenants/{tenant_id}/reconciliation", get),
)


def openapi_paths(error: Any) -> dict[str, Any]:
    obj = {"application/json": {"schema": {"type": "object"}}}
    param = [{"name": "tenant_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    return {"/tenants/{tenant_id}/reconciliation": {
        "post": {"summary": "Run today's reconciliation of every account of the tenant (tenant_admin)",
                 "description": "Ledger net position per account and symbol vs the venue's positions, and the "
                                "ledger's cash effect of the day (fills and fees) per account and currency vs "
                                "the venue's account activities of the day (cash: unavailable when the venue "
                                "reports none; the report is then incomplete); breaks and cash_breaks are "
                                "reported and logged at ERROR, never corrected.",
                 "security": [{"bearerAuth": []}], "parameters": param,
                 "responses": {"200": {"description": "The report as stored.", "content": obj},
                               **{c: error(c) for c in ("400", "401", "403", "429", "500")}}},
        "get": {"summary": "A day's reconciliation report and status (tenant_admin or auditor)",
                "security": [{"bearerAuth": []}],
                "parameters": param + [{"name": "day", "in": "query", "required": False,
                                        "schema": {"type": "string", "format": "date"},
                                        "description": "Default: today (UTC)."}],
                "responses": {"200": {"description": "The report: status clean | breaks | incomplete.",
                                      "content": obj},
                              **{c: error(c) for c in ("400", "401", "403", "404", "500")}}}}}
