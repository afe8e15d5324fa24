"""POST /risk/approvals: a risk manager issues the approval (``rpm_output``) a trader's group references.

Only a verified token with ``role: risk_manager`` may call it; the approval is written by the
backend to ``tenants/{token tenant}/rpm_approvals/{decision_id}`` (create-only; firestore.rules deny
every client access there), for ``for_uid`` — never for the issuer themselves. A group then sends
``rpm_output: {"decision_id": ...}``; the executor trusts only the stored document
(backend/risk/approvals.py).

201 the approval as stored; 400 a malformed body (field + reason, nothing written); 403 another
role; 409 the decision id was issued already.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, Field

from backend.api.auth import Identity, forbidden
from backend.api.http import ApiError, ApiRequest, ApiResponse, bad_request
from backend.api.models import Direction, Id, PositiveDecimal, Symbol, _Input
from backend.domain.errors import InvalidInput
from backend.domain.group_rules import MAX_LEGS
from backend.domain.money import dec_str
from backend.risk import approvals


class ApprovedLeg(_Input):
    leg_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")
    symbol: Symbol
    direction: Direction
    max_units: PositiveDecimal


class RiskApprovalRequest(_Input):
    """POST /risk/approvals (role risk_manager)."""

    decision_id: Id
    for_uid: Id = Field(description="The trader whose group may reference this decision.")
    expires_at: AwareDatetime
    legs: list[ApprovedLeg] = Field(min_length=1, max_length=MAX_LEGS)


def handle(request: ApiRequest, identity: Identity, store: Any, now: datetime) -> ApiResponse:
    if identity.role != approvals.ROLE:
        raise forbidden(f"only the {approvals.ROLE} role issues risk approvals")
    from backend.api.app import parse_json_object, parse_model

    body = parse_model(RiskApprovalRequest, parse_json_object(request.body))
    legs = [{"leg_id": leg.leg_id, "symbol": leg.symbol, "direction": leg.direction,
             "max_units": dec_str(leg.max_units)} for leg in body.legs]
    try:
        doc = approvals.build_approval(decision_id=body.decision_id, for_uid=body.for_uid,
                                       issuer_uid=identity.uid, legs=legs, expires_at=body.expires_at, now=now)
    except InvalidInput as exc:
        raise bad_request(exc.field, exc.reason) from None
    if not store.put_rpm_approval(identity.tenant_id, doc["decision_id"], doc):
        raise ApiError(409, "CONFLICT", f"decision {doc['decision_id']} was issued already", field="decision_id",
                       reason="already issued")
    return ApiResponse(201, {**doc, "tenant_id": identity.tenant_id})
