"""``POST /portfolio/tax-lots/reconcile``: the caller's 1099-B / 1099-DA statement against their
disposals (``backend/tax/reconcile.py`` documents the CSV columns, the matching and the reasons).

Body, either
- JSON: ``{"year": 2025, "account": "<tenant>:<account>" | omitted, "csv": "<the statement CSV>"}``; or
- the statement itself, ``Content-Type: text/csv`` (UTF-8, a BOM is allowed), with ``year`` and
  ``account`` in the query: ``POST /portfolio/tax-lots/reconcile?year=2025&account=acme:a1``.
Both are bounded by the API's body limit, ``MAX_BODY_BYTES`` (64 KB: the HTTP bridge reads no more,
``backend/api/flask_bridge.py``): a larger body is a 413 naming the limit; a statement that does not
fit is split by account (``account``) and reconciled in parts. Only the caller's data: the uid comes
from the token. Nothing is written.

Our side: the disposals sold in ``year`` (final documents and the books' pending losses, as the
export reads them), of ``account`` when given; replacement purchases (for naming wash sales across
accounts) from the open lots tagged ``wash_replacement`` and the year's disposals whose basis
carried a wash-sale loss.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from backend.api.auth import Identity
from backend.api.http import MAX_BODY_BYTES, ApiError, ApiRequest, ApiResponse, bad_request
from backend.api.ledger_review import single_valued
from backend.api.tax_export import TaxExport, reporting_profile
from backend.tax.holding import resolve_tz, trade_date
from backend.tax.reconcile import match_json, parse_statement, reconcile, replacements_from
from backend.tax.state import book_lots, lot_from_dict

CSV_MEDIA = "text/csv"


def handle(request: ApiRequest, identity: Identity, store: Any, now: datetime) -> ApiResponse:
    body = _request(request)
    statement = parse_statement(body.csv)  # InvalidInput → 400 naming the line and column
    profile = reporting_profile(store, identity.uid)
    export = TaxExport(store, identity.uid, body.year, trade_date(now, resolve_tz(None)), profile=profile)
    export.load_pending()
    disposals = [d for _, d in export.disposals()]
    lots = [lot_from_dict(lot) for book in export.books() for lot in book_lots(book)]
    replacements = replacements_from(lots, disposals)
    if body.account is not None:
        disposals = [d for d in disposals if d.book == body.account]
    result = reconcile(statement, disposals, replacements=replacements, profile=profile)
    return ApiResponse(200, {"year": body.year, "account": body.account,
                             "rows": [match_json(item) for item in result.matches], "totals": result.totals()})


def _request(request: ApiRequest) -> Any:
    """The JSON body, or a ``text/csv`` body with ``year``/``account`` from the query, as one
    ``TaxReconcileRequest``."""
    from backend.api.app import parse_json_object, parse_model
    from backend.api.models import TaxReconcileCsvQuery, TaxReconcileRequest

    media = (request.header("Content-Type") or "").split(";", 1)[0].strip().lower()
    if media != CSV_MEDIA:
        return parse_model(TaxReconcileRequest, parse_json_object(request.body))
    query = parse_model(TaxReconcileCsvQuery, single_valued(request.query))
    if len(request.body) > MAX_BODY_BYTES:  # the app refuses it first (413); kept for direct callers
        raise ApiError(413, "PAYLOAD_TOO_LARGE", f"the statement exceeds {MAX_BODY_BYTES} bytes",
                       reason=f"{len(request.body)} bytes")
    try:
        text = request.body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise bad_request("body", "the statement CSV is not UTF-8") from None
    if not text.strip():
        raise bad_request("body", "the statement CSV is empty")
    return parse_model(TaxReconcileRequest, {"year": query.year, "account": query.account, "csv": text})
