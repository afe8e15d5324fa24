"""Ledger corrections (issue 13 item 6): ``POST /tenants/{t}/ledger/{ledger_id}/corrections``.

The ledger stays immutable: a correction is a *new* row in ``tenants/{t}/ledger_trades`` (``kind`` and
``status`` ``correction``, ``backend.execution.records.correction_row``) that references the
original (``corrects``) and carries the admin's reason and the corrected values with what they were
(``correction.fields.<name>.{from,to}``). Its own quantity and price fields stay null, so totals over
fills (metrics, reconciliation, tax lots) are unchanged by it; readers that apply corrections look
for rows with ``corrects``. It shows in ``GET /tenants/{t}/ledger`` (newest first like every row;
filter ``status=correction``) and in the CSV export (columns ``corrects``, ``correction_reason``,
``correction_fields``).

Only a tenant_admin of the row's tenant; the original must exist and must not itself be a
correction (correct the original again instead). The row and its audit entry are one commit.
Idempotent with ``Idempotency-Key``: the row id is derived from (tenant, original, key), and a retry
answers the stored correction with 200 (a different body with the same key is a 409).
"""
from __future__ import annotations

import hashlib
import uuid
from typing import Any

from backend.api.admin_members import AdminDeps, commit, require_admin
from backend.api.audit import audit_op, request_id_of
from backend.api.auth import Identity
from backend.api.http import ApiError, ApiRequest, ApiResponse, bad_request
from backend.domain.ids import ID
from backend.domain.money import dec_str
from backend.execution.unit_of_work import Commit, Create

LEDGER = "ledger_trades"


def _ledger_path(tenant_id: str, row_id: str) -> str:
    return f"tenants/{tenant_id}/{LEDGER}/{row_id}"


def correction_id(tenant_id: str, original_id: str, key: str | None) -> str:
    """``corr-`` + 40 hex: derived from the Idempotency-Key when given, else random."""
    seed = f"{len(tenant_id)}:{tenant_id}|{len(original_id)}:{original_id}|{key}" if key else uuid.uuid4().hex
    return "corr-" + hashlib.sha256(seed.encode()).hexdigest()[:40]


def create_correction(request: ApiRequest, identity: Identity, deps: AdminDeps, ledger_id: str) -> ApiResponse:
    from backend.api.admin_models import LedgerCorrectionRequest
    from backend.api.app import _jsonable, parse_json_object, parse_model
    from backend.api.idempotency import KEY_HEADER, parse_key
    from backend.execution.records import correction_row

    require_admin(identity)
    problem = ID.problem(ledger_id)
    if problem is not None:
        raise bad_request("ledger_id", problem)
    body = parse_model(LedgerCorrectionRequest, parse_json_object(request.body))
    key = parse_key(request.header(KEY_HEADER))
    tenant, now = identity.tenant_id, deps.now
    row_id = correction_id(tenant, ledger_id, key)
    original_path, row_path = _ledger_path(tenant, ledger_id), _ledger_path(tenant, row_id)
    docs = deps.store.get_all([original_path, row_path])
    original = docs[original_path][0]
    if original is None:
        raise ApiError(404, "NOT_FOUND", f"no ledger row {ledger_id}", field="ledger_id", reason="not found")
    if original.get("kind") == "correction":
        raise bad_request("ledger_id", "this row is a correction; correct the original row")
    corrected: dict[str, Any] = {}
    if body.corrected is not None:
        for name, value in body.corrected.model_dump(exclude_none=True).items():
            corrected[name] = value if name == "side" else dec_str(value)
    existing = docs[row_path][0]
    if existing is not None:  # a retry with the same Idempotency-Key
        stored = (existing.get("correction") or {})
        same = stored.get("reason") == body.reason and {k: v.get("to") for k, v in
                                                        (stored.get("fields") or {}).items()} == corrected
        if not same:
            raise ApiError(409, "IDEMPOTENCY_KEY_REUSED", "this Idempotency-Key was used for another correction",
                           field=KEY_HEADER, reason="different body")
        return ApiResponse(200, {"correction": _jsonable({"ledger_id": row_id, **existing})},
                           {"Idempotent-Replayed": "true"})
    row = correction_row(original_id=ledger_id, original=original, trade_id=row_id, reason=body.reason,
                         corrected=corrected, actor_uid=identity.uid, actor_role=identity.role, now=now)
    ops = Commit().add(Create(row_path, row))
    ops.add(audit_op(identity, tenant_id=tenant, action="ledger.correction", target_type="ledger",
                     target_id=ledger_id, before=None, after={"ledger_id": row_id, **row},
                     request_id=request_id_of(request), now=now))
    commit(deps.store, ops)
    return ApiResponse(201, {"correction": _jsonable({"ledger_id": row_id, **row})},
                       {"Location": f"/tenants/{tenant}/ledger?status=correction"})
