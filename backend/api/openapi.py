"""The OpenAPI 3.1 document, generated from the pydantic models plus the route table.

Regenerate the committed copy after changing a model or a route:

    .venv/bin/python -m backend.api.openapi --write    # writes docs/openapi.json

``tests/unit/test_api_openapi.py`` fails while docs/openapi.json is stale.
"""
from __future__ import annotations

import argparse
import copy
import functools
import json
import sys
from pathlib import Path
from typing import Any

VERSION = "1.0.0"
DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
REF = "#/components/schemas/{model}"

_ERRORS = {
    "400": "Malformed JSON or field errors: `error.errors` lists every field error as {field, reason}; "
           "`error.field` and `error.reason` repeat the first.",
    "401": "No, malformed or invalid bearer token.",
    "403": "The token has no tenant/role claim, or the body names another tenant or user.",
    "404": "Unknown route or resource.",
    "405": "Method not allowed on this route (see the Allow header).",
    "409": "The Idempotency-Key (or intent_id) was already used with a different body or by another user.",
    "413": "Body larger than 64 KB.",
    "415": "Body declared as something other than application/json.",
    "429": "Pending: the broker is rate limiting. Retry after Retry-After seconds with the same Idempotency-Key.",
    "500": "Unexpected error (logged with the request id).",
    "503": "Pending: the broker is unavailable. Retry after Retry-After seconds with the same Idempotency-Key.",
}


def _error(code: str, description: str | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description or _ERRORS[code],
                                "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorResponse")}}}}
    if code in ("429", "503"):
        response["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}}
    return response


def _json(model: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, **extra,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=model)}}}}


def _body(model: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": REF.format(model=model)}}}}


_IDEMPOTENCY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "1-100 of A-Z a-z 0-9 _ -. The same key returns the first outcome; a different body with "
                   "the same key is a 409. The intent/group id is derived from (tenant, user, key).",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,100}$"},
}
_REPLAYED = {"Idempotent-Replayed": {"schema": {"type": "string", "enum": ["true"]},
                                     "description": "Present on a replay of a stored outcome."}}
_AUTH_ERRORS = ("400", "401", "403", "413", "415", "500")


def _post(summary: str, request: str, ok: dict[str, dict[str, Any]], extra_errors: tuple[str, ...]) -> dict[str, Any]:
    responses = dict(ok)
    for code in sorted(set(_AUTH_ERRORS + extra_errors)):
        responses[code] = _error(code)
    return {"post": {"summary": summary, "security": [{"bearerAuth": []}], "parameters": [_IDEMPOTENCY],
                     "requestBody": _body(request), "responses": responses}}


def build_openapi() -> dict[str, Any]:
    from pydantic.json_schema import models_json_schema

    from backend.api import accounts_api, admin_models, admin_openapi, group_stops_api, groups_list, orders_api
    from backend.api import models as m
    from backend.api.risk_approvals import RiskApprovalRequest

    _, schemas = models_json_schema(
        [(m.ExecuteRequest, "validation"), (m.MultiLegRequest, "validation"), (m.SignalRequest, "validation"),
         (m.ExecutionResponse, "serialization"), (m.SignalResponse, "serialization"),
         (m.GroupResponse, "serialization"), (m.GroupsPage, "serialization"), (m.HistoryPage, "serialization"), (m.ErrorResponse, "serialization"),
         (m.HealthResponse, "serialization"), (m.TaxExport, "serialization"), (m.LedgerPage, "serialization"),
         (m.MetricsResponse, "serialization"), (RiskApprovalRequest, "validation"),
         (m.TaxReconcileRequest, "validation"), (m.TaxReconciliation, "serialization"),
         (m.TaxElectionRequest, "validation"), (m.TaxElectionResponse, "serialization"),
         (m.CorporateActionRequest, "validation"), (m.CorporateActionRecord, "serialization"),
         (m.MyAccountsPage, "serialization"), (m.MyAccountResponse, "serialization"),  # issue 19 item 9
         (m.AccountPositionsResponse, "serialization"), (m.AccountBalanceResponse, "serialization"),
         (m.OrdersPage, "serialization"), (m.OrderResponse, "serialization"),  # issue 15 item 6: orders
         (m.ReplaceOrderRequest, "validation"),
         (m.GroupStopResponse, "serialization"), (m.GroupStopReplaceRequest, "validation"),  # issue 15: leg stops
         *admin_models.OPENAPI_MODELS],  # issue 13: tenant administration
        ref_template=REF)
    components = schemas.get("$defs", {})
    execution_ok = {
        "200": _json("ExecutionResponse", "Replay of the stored outcome of this Idempotency-Key.", headers=_REPLAYED),
        "201": _json("ExecutionResponse", "A new outcome was recorded: placed, downgraded, rejected (coded) or dry_run."),
        "202": _json("ExecutionResponse", "Pending: another request holds this intent; retry with the same key."),
    }
    paths: dict[str, Any] = {
        "/execute": _post("Execute one order intent", "ExecuteRequest", execution_ok, ("409", "429", "503")),
        "/execute/multi-leg": _post(
            "Execute a multi-leg group (seed 000)", "MultiLegRequest",
            {"200": _json("GroupResponse", "Replay of the group of this Idempotency-Key.", headers=_REPLAYED),
             "201": _json("GroupResponse", "The group was executed; see status and legs."),
             "202": _json("GroupResponse", "Accepted, still working (e.g. the broker is unavailable); the sweeper "
                                           "continues it. Poll GET /groups/{group_id}.")}, ("409",)),
        "/signals": _post(
            "Cost-check a strategy signal and execute it if it is still a BUY/SELL", "SignalRequest",
            {"200": _json("SignalResponse", "Not forwarded (WAIT, or downgraded by the strategy-side cost check), "
                                            "or a replayed execution."),
             "201": _json("SignalResponse", "Forwarded to the engine and a new outcome recorded (execution.status); "
                                            "executed is true only when an order reached a venue (placed)."),
             "202": _json("SignalResponse", "Forwarded, pending (executed false until the outcome is known).")},
            ("409", "429", "503")),
        "/groups": groups_list.openapi_path(_error),
        **accounts_api.openapi_paths(_error),  # issue 19 item 9: the caller's accounts, positions, balances
        **orders_api.openapi_paths(_error),  # issue 15 item 6: the caller's orders, cancel and replace
        **group_stops_api.openapi_paths(_error),  # issue 15: cancel / move a FILLED group leg's stop
        "/groups/{group_id}": {"get": {
            "summary": "A multi-leg group of the caller's tenant", "security": [{"bearerAuth": []}],
            "parameters": [{"name": "group_id", "in": "path", "required": True,
                            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,100}$"}}],
            "responses": {"200": _json("GroupResponse", "The group."),
                          **{c: _error(c) for c in ("400", "401", "403", "404", "500")}}}},
        "/portfolio/history": {"get": {
            "summary": "The caller's own trade history, newest first", "security": [{"bearerAuth": []}],
            "parameters": [
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
                {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"},
                 "description": "next_cursor of the previous page."},
                {"name": "tenant_id", "in": "query", "required": False,
                 "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,100}$"},
                 "description": "Only rows recorded in this tenant (every row is labelled with its tenant_id)."},
                {"name": "broker_account_id", "in": "query", "required": False,
                 "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,100}$"},
                 "description": "Only rows of this account label (rows without one are labelled 'default')."}],
            "responses": {"200": _json("HistoryPage", "One page."),
                          **{c: _error(c) for c in ("400", "401", "403", "500")}}}},
        **_read_models(),
        "/portfolio/tax-lots/reconcile": {"post": {
            "summary": "Reconcile the caller's 1099-B / 1099-DA statement (CSV) with their disposals",
            "description": "Matches each statement row to a disposal sold in `year` (same date sold, asset and "
                           "quantity) and reports the differences (ours - statement) in proceeds, basis, wash-sale "
                           "adjustment and term with named reasons (e.g. WASH_SALE_ACROSS_ACCOUNTS), plus totals. "
                           "CSV columns: backend/tax/reconcile.py. Writes nothing. The body is JSON "
                           "(TaxReconcileRequest), or the statement itself as text/csv with year (and account) "
                           "in the query; either is at most 65536 bytes (413 names the limit).",
            "security": [{"bearerAuth": []}],
            "parameters": [
                _query("year", {"type": "integer", "minimum": 1900, "maximum": 9999},
                       "text/csv body only (required then): tax year (date sold)."),
                _query("account", {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,100}:[A-Za-z0-9_-]{1,100}$"},
                       "text/csv body only: the lot book the statement covers, '<tenant_id>:<broker_account_id>'.")],
            "requestBody": {"required": True, "content": {
                **_body("TaxReconcileRequest")["content"],
                **_csv("The statement CSV (UTF-8; columns: backend/tax/reconcile.py), at most 65536 bytes.")}},
            "responses": {"200": _json("TaxReconciliation", "One row per statement row and per unmatched "
                                                            "disposal, with totals."),
                          **{c: _error(c) for c in ("400", "401", "403", "413", "415", "429", "500")}}}},
        **_tax_admin(),
        "/risk/approvals": {"post": {
            "summary": "Issue a risk approval (rpm_output) for a trader's group (role risk_manager)",
            "description": "Stores tenants/{tenant}/rpm_approvals/{decision_id} (server-only). A group's rpm_output "
                           "then references it by decision_id; its other content is not trusted.",
            "security": [{"bearerAuth": []}],
            "requestBody": _body("RiskApprovalRequest"),
            "responses": {"201": {"description": "The approval as stored.",
                                  "content": {"application/json": {"schema": {"type": "object"}}}},
                          **{c: _error(c) for c in ("400", "401", "403", "409", "413", "415", "500")}}}},
        **_risk_admin_paths(),  # issue 13: risk settings, kill switch, reconciliation
        **admin_openapi.paths(_error),  # issue 13: members, tenants, connections, accounts, corrections, audit
        "/healthz": {"get": {"summary": "Liveness (no authentication)", "security": [],
                             "responses": {"200": _json("HealthResponse", "Alive.")}}},
        "/openapi.json": {"get": {"summary": "This document (no authentication)", "security": [],
                                  "responses": {"200": {"description": "OpenAPI 3.1 document.",
                                                        "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Trade execution API", "version": VERSION,
                 "description": "Single- and multi-leg execution, strategy signals, portfolio history, the "
                                "tax-lot export and the tenant admin's ledger review and metrics. "
                                "Every decimal in a response (and in an intent document's result) is a JSON string, "
                                "never a number: a plain decimal matching ^-?(0|[1-9][0-9]*)(\\.[0-9]+)?$ that keeps "
                                "the scale it was quantized to, at most 18 places for quantities (on the lot), 10 for "
                                "prices (on the tick; average fills may be finer) and shares (spread_pct, "
                                "slippage, rates), 4 for ticks/pips, 6 for money, rounded half-even beyond "
                                "(backend/domain/wire.py); each field's description names its precision. Tax exports "
                                "use Form 8949 cents. Requests also accept JSON numbers. "
                                "Every error has the body {\"error\": {code, message, field, reason, errors}}; a 400 "
                                "lists all of a request's field errors in errors.",
                 # issue 19 item 12: the Firestore path (intent documents) is published beside this file
                 "x-intent-document-schema": {
                     "url": "intent-document.schema.json",
                     "description": "JSON Schema of the documents apps may create at "
                                    "tenants/{tenant_id}/order_intents/{intent_id} instead of calling POST /execute "
                                    "or POST /execute/multi-leg, and of what the server writes back on them "
                                    "(backend/api/intent_schema.py)."}},
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                                                          "description": "A Firebase ID token with custom claims "
                                                                         "tenant_id and role (trader, "
                                                                         "tenant_admin, risk_manager, auditor; "
                                                                         "platform_operator has no tenant_id)."}}},
    }


def _risk_admin_paths() -> dict[str, Any]:
    """Issue 13: backend/api/risk_settings.py and backend/api/reconciliation_api.py describe their routes."""
    from backend.api import reconciliation_api, risk_settings

    return {**risk_settings.openapi_paths(_error), **reconciliation_api.openapi_paths(_error)}


def _query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


def _csv(description: str) -> dict[str, Any]:
    # A Media Type Object has no description (OpenAPI 3.1 §4.8.14): it goes on the schema.
    return {"text/csv": {"schema": {"type": "string", "description": description}}}


def _read_models() -> dict[str, Any]:
    """The tax export (the caller's own) and the tenant-admin reads: ledger review and metrics."""
    from backend.api.ledger_review import INDEXED_FILTERS
    from backend.api.metrics_api import MAX_DAYS
    from backend.api.models import DAY_PATTERN, ID_PATTERN, LEDGER_STATUSES

    day = {"type": "string", "pattern": DAY_PATTERN, "format": "date"}
    ident = {"type": "string", "pattern": ID_PATTERN}
    fmt = {"type": "string", "enum": ["json", "csv"], "default": "json"}
    tenant = {"name": "tenant_id", "in": "path", "required": True, "schema": ident,
              "description": "Must be the token's tenant_id."}
    admin_403 = _error("403", "The token's role is not tenant_admin or auditor, or tenant_id is not the token's "
                              "tenant, or the member is suspended (MEMBER_SUSPENDED).")
    combos = sorted(" + ".join(sorted(c)) or "(none)" for c in INDEXED_FILTERS)
    return {
        "/portfolio/tax-lots/export": {"get": {
            "summary": "The caller's Form 8949 rows for a tax year, shortfalls and open lots (streamed)",
            "description": "Disposals sold in `year` (final documents plus the lot books' pending losses: "
                           "PROVISIONAL while their 30-day wash-sale window is open), LOT_SHORTFALL sells (never "
                           "dropped) and every open lot as of today. Money rounded half-up to cents, dates "
                           "MM/DD/YYYY. CSV: `section=disposals` (default) is the Form 8949 table with shortfall "
                           "rows (Status SHORTFALL) and LOT_BOOK_OVERFLOW rows (a fill recorded without its lot "
                           "step: a full lot book) after the disposals; `section=open_lots` the open lots. 409: "
                           "`LOT_BOOK_INCOMPLETE` (format=txf while a LOT_BOOK_OVERFLOW marker can change the "
                           "year's rows) or `AS_OF_NOT_RECONSTRUCTIBLE` (as_of), before any byte is sent.",
            "security": [{"bearerAuth": []}],
            "parameters": [
                _query("year", {"type": "integer", "minimum": 1900, "maximum": 9999}, "Tax year (date sold).",
                       required=True),
                _query("format", {"type": "string", "enum": ["json", "csv", "txf"], "default": "json"},
                       "json (TaxExport), csv, or txf (TXF V042: one record per Form 8949 row, reference "
                       "number per box and term, wash-sale amount; digital-asset boxes G-L, which V042 lacks, "
                       "use the number of the same part and reporting status)."),
                _query("section", {"type": "string", "enum": ["disposals", "open_lots"]},
                       "CSV only; default disposals."),
                _query("digital_assets", {"type": "string", "enum": ["refuse", "omit"]},
                       "TXF only. V042 has no reference number for the digital-asset boxes G-L (tax year 2025 on): "
                       "refuse (default) answers 400 for a year with such rows; omit writes the A-F rows only "
                       "(header X-Omitted-Digital-Asset-Rows).")],
            "responses": {"200": {"description": "The export, streamed.",
                                  "content": {"application/json": {"schema": {"$ref": REF.format(model="TaxExport")}},
                                              **_csv("Form 8949 columns with Part and Box (or the open-lot "
                                                     "columns)."),
                                              "text/plain": {"schema": {"type": "string",
                                                                        "description": "format=txf: TXF V042."}}}},
                          **{c: _error(c) for c in ("400", "401", "403", "409", "500")}}}},
        "/tenants/{tenant_id}/ledger": {"get": {
            "summary": "Review the tenant's ledger, newest first (tenant_admin of that tenant)",
            "description": "Ordered by created_at then document id, descending; cursor pagination. `from`/`to` "
                           "are UTC days on created_at. Indexed equality-filter combinations (each also with "
                           f"from/to): {'; '.join(combos)}. Others are a 400 UNSUPPORTED_FILTER. "
                           "format=csv streams every matching row (no limit/cursor).",
            "security": [{"bearerAuth": []}],
            "parameters": [
                tenant, _query("from", day, "First UTC day (inclusive) of created_at."),
                _query("to", day, "Last UTC day (inclusive) of created_at."),
                _query("symbol", {"type": "string", "minLength": 1, "maxLength": 64}, "Case-insensitive."),
                _query("strategy_id", ident, "Equality."),
                _query("status", {"type": "string", "enum": list(LEDGER_STATUSES)}, "Equality."),
                _query("uid", ident, "Equality: one user's rows."),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}, "Page size."),
                _query("cursor", {"type": "string"}, "next_cursor of the previous page (same filters)."),
                _query("format", fmt, "json (one page) or csv (every matching row, streamed).")],
            "responses": {"200": {"description": "One page, or the CSV export.",
                                  "content": {"application/json": {"schema": {"$ref": REF.format(
                                      model="LedgerPage")}}, **_csv("One row per ledger row.")}},
                          "400": _error("400"), "401": _error("401"), "403": admin_403, "500": _error("500")}}},
        "/tenants/{tenant_id}/metrics": {"get": {
            "summary": "Execution-quality metrics of the tenant (tenant_admin of that tenant)",
            "description": "From the sharded day counters (never the ledger). Without strategy_id, "
                           "by_strategy has one summary per strategy present and by_asset_class one per asset "
                           f"class present. At most {MAX_DAYS} days.",
            "security": [{"bearerAuth": []}],
            "parameters": [tenant, _query("from", day, "First trade day (inclusive).", required=True),
                           _query("to", day, "Last trade day (inclusive).", required=True),
                           _query("strategy_id", ident, "One strategy's summary.")],
            "responses": {"200": _json("MetricsResponse", "The summary."),
                          "400": _error("400"), "401": _error("401"), "403": admin_403, "500": _error("500")}}},
    }


def _tax_admin() -> dict[str, Any]:
    """Issue 16: the caller's lot-method election and the tenant admin's corporate actions."""
    from backend.api.models import ID_PATTERN

    replay = {"Idempotent-Replayed": {"schema": {"type": "string", "enum": ["true"]},
                                      "description": "Present on a replay."}}
    return {
        "/portfolio/tax-lots/election": {"post": {
            "summary": "Elect the caller's lot method from a time on (forward only)",
            "description": "Appends an election to users/{uid}/config/tax: sales from effective_at on (for every "
                           "account, or broker_account_id of the token's tenant) use the method; past disposals "
                           "never change. effective_at before now or before an earlier election is a 400 "
                           "(field effective_at). Idempotency-Key: the same key answers the recorded election; "
                           "without one, repeating the latest election of the same scope changes nothing.",
            "security": [{"bearerAuth": []}], "parameters": [_IDEMPOTENCY],
            "requestBody": _body("TaxElectionRequest"),
            "responses": {"200": _json("TaxElectionResponse", "The earlier election this request repeats.",
                                       headers=replay),
                          "201": _json("TaxElectionResponse", "The election was recorded."),
                          **{c: _error(c) for c in ("400", "401", "403", "409", "413", "415", "429", "500",
                                                    "503")}}}},
        "/tenants/{tenant_id}/corporate-actions": {"post": {
            "summary": "Record a split, reverse split or symbol change for the tenant's lot books (tenant_admin)",
            "description": "Stores tenants/{tenant_id}/corporate_actions/{action_id} (server-only), then adjusts "
                           "every lot book holding the symbol in the tenant's accounts: a split multiplies the "
                           "quantity of lots acquired before the ex-date by ratio (total basis, dates and holding "
                           "period unchanged: no taxable event); a symbol change moves the lots to the new "
                           "symbol. Each book records the action in its history. The same action_id again is "
                           "applied once (200); another action under it is a 409. Books that cannot be adjusted "
                           "are listed in refusals with a coded reason.",
            "security": [{"bearerAuth": []}],
            "parameters": [{"name": "tenant_id", "in": "path", "required": True,
                            "schema": {"type": "string", "pattern": ID_PATTERN},
                            "description": "Must be the token's tenant_id."}],
            "requestBody": _body("CorporateActionRequest"),
            "responses": {"200": _json("CorporateActionRecord", "This action_id was recorded before (applied once).",
                                       headers=replay),
                          "201": _json("CorporateActionRecord", "Recorded and applied."),
                          "403": _error("403", "The token's role is not tenant_admin, or tenant_id is not the "
                                               "token's tenant."),
                          **{c: _error(c) for c in ("400", "401", "409", "413", "415", "429", "500", "503")}}}},
    }


@functools.lru_cache(maxsize=1)
def _cached() -> str:
    return json.dumps(build_openapi(), sort_keys=True)


def openapi_document() -> dict[str, Any]:
    return copy.deepcopy(json.loads(_cached()))


def render() -> str:
    return json.dumps(build_openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {DOC_PATH}")
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed file is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        DOC_PATH.parent.mkdir(parents=True, exist_ok=True)
        DOC_PATH.write_text(text)
        print(f"wrote {DOC_PATH}")
        return 0
    if args.check:
        current = DOC_PATH.read_text() if DOC_PATH.exists() else ""
        if current != text:
            print(f"{DOC_PATH} is stale: run .venv/bin/python -m backend.api.openapi --write", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
