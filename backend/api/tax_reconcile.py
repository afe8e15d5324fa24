"""``POST /portfolio/tax-lots/reconcile``: the caller's 1099-B / 1099-DA statement against their
disposals (``backend/tax/reconcile.py`` documents the CSV columns, the matching and the reasons).

Body (JSON, like every POST of this API; bounded by its 64 KB body limit, ``MAX_BODY_BYTES``):
``{"year": 2025, "account": "<tenant>:<account>" | omitted, "csv": "<the statement CSV>"}``.
Only the caller's data: the uid comes from the token. Nothing is written.

Our side: the disposals sold in ``year`` (final documents and the books' pending losses, as the
export reads them), of ``account`` when given; replacement purchases (for naming wash sales across
accounts) from the open lots tagged ``wash_replacement`` and the year's disposals whose basis
carried a wash-sale loss.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from backend.api.auth import Identity
from backend.api.http import ApiRequest, ApiResponse
from backend.api.tax_export import TaxExport, reporting_profile
from backend.tax.holding import resolve_tz, trade_date
from backend.tax.reconcile import match_json, parse_statement, reconcile, replacements_from
from backend.tax.state import lot_from_dict


def handle(request: ApiRequest, identity: Identity, store: Any, now: datetime) -> ApiResponse:
    from backend.api.app import parse_json_object, parse_model
    from backend.api.models import TaxReconcileRequest

    body = parse_model(TaxReconcileRequest, parse_json_object(request.body))
    statement = parse_statement(body.csv)  # InvalidInput → 400 naming the line and column
    profile = reporting_profile(store, identity.uid)
    export = TaxExport(store, identity.uid, body.year, trade_date(now, resolve_tz(None)), profile=profile)
    export.load_pending()
    disposals = [d for _, d in export.disposals()]
    lots = [lot_from_dict(lot) for book in export.books() for lot in book.get("lots") or ()]
    replacements = replacements_from(lots, disposals)
    if body.account is not None:
        disposals = [d for d in disposals if d.book == body.account]
    result = reconcile(statement, disposals, replacements=replacements, profile=profile)
    return ApiResponse(200, {"year": body.year, "account": body.account,
                             "rows": [match_json(item) for item in result.matches], "totals": result.totals()})
