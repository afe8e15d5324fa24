"""Tax settings a user or a tenant admin writes (issue 16); thin handlers over the store operations
of ``backend/tax/admin_writes.py``.

``POST /portfolio/tax-lots/election`` (the caller's own ``users/<uid>/config/tax``): one more
lot-method election, effective from ``effective_at`` (default: now) for every account of the caller
or for ``broker_account_id`` of the token's tenant. Forward only: an ``effective_at`` before the
server's now, before an existing election or more than 366 days ahead is a 400 naming the field;
nothing is written. Retries: with an ``Idempotency-Key`` the election recorded under that key is
answered again (200, ``Idempotent-Replayed: true``) and a different body under it is a 409; without
one, repeating the latest election of the same scope changes nothing (200, replayed). A new
election is a 201. Sales booked from ``effective_at`` on use it (the fills' commits read the
document, ``backend/execution/store_rules.plan_tax``); past disposals never change.

``POST /tenants/{tenant_id}/corporate-actions`` (a ``tenant_admin`` of that tenant): a split,
reverse split (ratio < 1) or symbol change applied to the lot books of the tenant's accounts
(``backend/tax/corporate.py``: ``apply_tenant_action`` says which books change and why others are
refused). 201 with the stored record when new; the same ``action_id`` again is a 200 replay
(applied once); the same id with a different action is a 409.
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Any

from backend.api.auth import Identity
from backend.api.http import ApiError, ApiRequest, ApiResponse, bad_request
from backend.api.idempotency import KEY_HEADER, derived_id, parse_key
from backend.api.ledger_review import require_tenant_admin


def election(request: ApiRequest, identity: Identity, store: Any, now: datetime) -> ApiResponse:
    from backend.api.app import parse_json_object, parse_model
    from backend.api.models import TaxElectionOut, TaxElectionRequest, TaxElectionResponse
    from backend.tax.election import ElectionConflict

    body = parse_model(TaxElectionRequest, parse_json_object(request.body))
    key = parse_key(request.header(KEY_HEADER))
    account = f"{identity.tenant_id}:{body.broker_account_id}" if body.broker_account_id else None
    try:
        outcome = store.record_tax_election(
            identity.uid, body.method, now=now, effective_at=body.effective_at, account=account,
            default_rule=body.default_rule,
            request_key=derived_id("e", identity.tenant_id, identity.uid, key) if key is not None else None)
    except ElectionConflict as exc:
        raise ApiError(409, "IDEMPOTENCY_CONFLICT", str(exc), field=KEY_HEADER, reason="used for another election") \
            from None
    shown = {k: v for k, v in outcome.election.items() if k in TaxElectionOut.model_fields}
    out = TaxElectionResponse(election=TaxElectionOut.model_validate(shown), replayed=outcome.replayed)
    if outcome.replayed:
        return ApiResponse(200, out.model_dump(mode="json"), {"Idempotent-Replayed": "true"})
    return ApiResponse(201, out.model_dump(mode="json"))


def corporate_action(request: ApiRequest, identity: Identity, store: Any, now: datetime,
                     tenant_id: str) -> ApiResponse:
    from backend.api.app import parse_json_object, parse_model
    from backend.api.models import CorporateActionRecord, CorporateActionRequest
    from backend.tax.corporate import CorporateAction, CorporateActionConflict

    require_tenant_admin(identity, tenant_id)
    body = parse_model(CorporateActionRequest, parse_json_object(request.body))
    try:
        effective = date.fromisoformat(body.effective)
    except ValueError:
        raise bad_request("effective", f"not a calendar date: {body.effective!r}") from None
    action = CorporateAction(action_id=body.action_id, kind=body.kind, symbol=body.symbol,
                             effective=effective, ratio=body.ratio,
                             new_symbol=body.new_symbol)  # InvalidInput (e.g. ratio 1) → 400 naming the field
    try:
        record, replayed = store.apply_corporate_action(tenant_id, action, recorded_by=identity.uid, now=now)
    except CorporateActionConflict as exc:
        raise ApiError(409, "ACTION_ID_CONFLICT", str(exc), field="action_id",
                       reason="recorded for a different action") from None
    out = CorporateActionRecord.model_validate({**record, "replayed": replayed}).model_dump(mode="json")
    if replayed:
        return ApiResponse(200, out, {"Idempotent-Replayed": "true"})
    return ApiResponse(201, out)
