"""Read model: a tenant admin reviews the tenant's immutable ledger, ``GET /tenants/{tenant_id}/ledger``.

Who. A ``tenant_admin`` whose token's tenant is ``tenant_id``; a trader, or an admin of another
tenant, gets a 403 before any parameter is looked at (nothing about another tenant leaks).

Rows. ``tenants/<t>/ledger_trades/<id>`` (docs/ARCHITECTURE.md) plus ``ledger_id`` (the document
id: the trade id, or ``<group>--<leg>`` for group fills).

Order and paging. ``created_at`` (ISO-8601 UTC, sortable as text) descending, then the document id
descending: a total order. The cursor is the last row's (created_at, id), as in
``backend.api.history`` (base64url JSON, parsed strictly). A page is one query
``start_after(cursor).limit(limit + 1)``, so pages never repeat or skip a row, also while rows are
being added: a new row is newer than every cursor handed out so far and lands before them (it shows
on a fresh first page, not in the middle of a walk).

Filters.
- ``from`` / ``to`` (YYYY-MM-DD, both inclusive) are UTC calendar days on ``created_at``:
  ``created_at >= from`` and ``created_at < to + 1 day``. ``created_at`` rather than ``trade_date``
  because the query is ordered by it: Firestore needs the range field to be the first ordering,
  so a range on ``created_at`` uses the same indexes as the ordering alone (``trade_date`` is the
  UTC date of ``created_at``, so the days are the same).
- ``symbol`` (case-insensitive, normalized as orders are), ``strategy_id``, ``status`` (placed,
  downgraded, rejected, dry_run, fill, group_fill, rollback_fill, and the group decisions filled,
  partially_filled, rolled_back, failed_needs_attention) and ``uid``: equality.

Indexed combinations. Each composite index in firestore.indexes.json is (equality field ASC,
created_at DESC) or (status ASC, field ASC, created_at DESC) on the ``ledger_trades`` collection;
Firestore appends the document id in the last field's direction. So these are served, each with
or without ``from``/``to``:

    no equality filter (single-field index on created_at)
    exactly one of: symbol, strategy_id, status, uid, broker_account_id (the account, issue 12)
    status + one of: symbol, strategy_id, uid, broker_account_id

Any other combination (two of symbol/strategy_id/uid, or three filters) is a 400
``UNSUPPORTED_FILTER`` naming a filter to drop, instead of a FAILED_PRECONDITION "needs an index"
at run time in production (the emulator would accept it silently). ``INDEXED_FILTERS`` is the single
source; a unit test checks firestore.indexes.json against it.

CSV. ``format=csv`` streams every matching row (all pages, ``PAGE_SIZE`` rows per query) with the
columns ``CSV_COLUMNS``; ``limit`` and ``cursor`` are refused with it. Text cells that a
spreadsheet would run as a formula get a leading apostrophe.
"""
from __future__ import annotations

import csv
import io
import re
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Iterator, Mapping

from backend.api.auth import Identity, forbidden
from backend.api.history import Cursor
from backend.api.http import ApiRequest, ApiResponse, StreamingResponse, bad_request

PAGE_SIZE = 500
EQUALITY_FILTERS = ("symbol", "strategy_id", "status", "uid", "broker_account_id")
INDEXED_FILTERS: frozenset[frozenset[str]] = frozenset(
    [frozenset()] + [frozenset({name}) for name in EQUALITY_FILTERS]
    + [frozenset({"status", name}) for name in ("symbol", "strategy_id", "uid", "broker_account_id")])

CSV_COLUMNS = (
    "ledger_id", "created_at", "trade_date", "status", "kind", "uid", "strategy_id", "broker_account_id",
    "venue_account_id", "symbol",
    "asset_class", "side", "qty", "order_type", "limit_price", "filled_qty", "filled_avg_price", "notional", "fees",
    "reason_code", "reason", "spread_pct", "estimated_slippage", "arrival_mid", "actual_slippage_pct",
    "actual_slippage_ticks", "quote_bid", "quote_ask", "quote_mid", "quote_timestamp", "broker", "client_order_id",
    "broker_order_id", "order_status", "intent_id", "group_id", "leg_id",
    # issue 13: a correction row (kind correction) names the row it corrects, why, and the corrected values
    "corrects", "correction_reason", "correction_fields",
)
_NUMBER = re.compile(r"^-?\d+(\.\d+)?([eE][+-]?\d+)?$")


# ------------------------------------------------------------------------- shared helpers


def single_valued(query: Mapping[str, list[str]]) -> dict[str, str]:
    """Each query parameter once (a repeated one is a 400 naming it)."""
    for name, values in query.items():
        if len(values) != 1:
            raise bad_request(name, "give this parameter once")
    return {name: values[0] for name, values in query.items()}


def require_tenant_admin(identity: Identity, tenant_id: str) -> None:
    """Tenant-wide reads: a tenant_admin or (issue 13) an auditor of ``tenant_id``."""
    if not identity.can_read_tenant:
        raise forbidden("only a tenant_admin or auditor may read tenant data", "tenant_id")
    if identity.tenant_id != tenant_id:
        raise forbidden("tenant_id is not the authenticated tenant", "tenant_id")


def day_after(day: str) -> str:
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


def check_day_range(first: str | None, last: str | None, *, max_days: int | None = None) -> None:
    """Real calendar days (the model checked the shape), ``from <= to``, at most ``max_days``."""
    parsed: dict[str, date] = {}
    for name, value in (("from", first), ("to", last)):
        if value is None:
            continue
        try:
            parsed[name] = date.fromisoformat(value)
        except ValueError:
            raise bad_request(name, f"not a calendar date: {value!r}") from None
    if "from" in parsed and "to" in parsed:
        span = (parsed["to"] - parsed["from"]).days
        if span < 0:
            raise bad_request("to", "must not be before from")
        if max_days is not None and span + 1 > max_days:
            raise bad_request("to", f"at most {max_days} days from 'from'")


# --------------------------------------------------------------------------------- the query


def check_indexed(equals: Mapping[str, str]) -> None:
    names = frozenset(equals)
    if names in INDEXED_FILTERS:
        return
    others = sorted(n for n in names if n != "status")
    raise bad_request(others[-1], f"filters {' + '.join(sorted(names))} have no index; filter on one of "
                                  f"symbol, strategy_id, status, uid, broker_account_id, or on status plus one of "
                                  f"symbol, strategy_id, uid, broker_account_id", code="UNSUPPORTED_FILTER")


def handle(request: ApiRequest, identity: Identity, store: Any, tenant_id: str) -> ApiResponse:
    from backend.api.app import _jsonable, parse_model
    from backend.api.models import LedgerPage, LedgerQuery
    from backend.domain.assets import normalize_symbol

    require_tenant_admin(identity, tenant_id)
    query = parse_model(LedgerQuery, single_valued(request.query))
    check_day_range(query.from_, query.to)
    equals = {name: getattr(query, name) for name in EQUALITY_FILTERS if getattr(query, name) is not None}
    if "symbol" in equals:
        equals["symbol"] = normalize_symbol(equals["symbol"])  # InvalidInput → 400 naming symbol
    check_indexed(equals)
    window = {"created_from": query.from_, "created_before": day_after(query.to) if query.to else None}
    if query.format == "csv":
        for name in ("limit", "cursor"):
            if name in query.model_fields_set:
                raise bad_request(name, "not used with format=csv: the export has every matching row")
        return StreamingResponse(200, headers={"Content-Disposition": f'attachment; filename="ledger-{tenant_id}.csv"'},
                                 chunks=csv_chunks(store, tenant_id, equals, window),
                                 media_type="text/csv; charset=utf-8")
    after = Cursor.decode(query.cursor) if query.cursor is not None else None
    rows = store.ledger_page(tenant_id, equals=equals, after=(after.created_at, after.doc_id) if after else None,
                             limit=query.limit + 1, **window)
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    nxt = Cursor(str(rows[-1][1]["created_at"]), rows[-1][0]).encode() if (more and rows) else None
    items = [_jsonable({"ledger_id": doc_id, **doc}) for doc_id, doc in rows]
    return ApiResponse(200, LedgerPage(items=items, next_cursor=nxt).model_dump(mode="json"))


# ---------------------------------------------------------------------------------------- CSV


def csv_chunks(store: Any, tenant_id: str, equals: Mapping[str, str], window: Mapping[str, str | None],
               page_size: int | None = None) -> Iterator[bytes]:
    """The header, then one chunk per page: at most one page of rows is in memory."""
    size = page_size or PAGE_SIZE
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    after: tuple[str, str] | None = None
    while True:
        rows = store.ledger_page(tenant_id, equals=equals, after=after, limit=size, **window)
        for doc_id, doc in rows:
            writer.writerow(csv_record(doc_id, doc))
        yield buf.getvalue().encode()
        buf.seek(0)
        buf.truncate()
        if len(rows) < size:
            return
        after = (str(rows[-1][1]["created_at"]), rows[-1][0])


def csv_record(doc_id: str, doc: Mapping[str, Any]) -> list[str]:
    quote = doc.get("quote") if isinstance(doc.get("quote"), Mapping) else {}
    correction = doc.get("correction") if isinstance(doc.get("correction"), Mapping) else {}
    fields = correction.get("fields") if isinstance(correction.get("fields"), Mapping) else None
    flat = {**doc, "ledger_id": doc_id, **{f"quote_{k}": v for k, v in quote.items()},
            "correction_reason": correction.get("reason"),
            "correction_fields": _correction_text(fields) if fields else None}
    return [_cell(flat.get(column)) for column in CSV_COLUMNS]


def _correction_text(fields: Mapping[str, Any]) -> str:
    """``qty: 10 -> 9; fees: 0 -> 1.5`` (the corrected values of a correction row, one CSV cell)."""
    parts = []
    for name, change in sorted(fields.items()):
        change = change if isinstance(change, Mapping) else {}
        parts.append(f"{name}: {_cell(change.get('from')) or '-'} -> {_cell(change.get('to')) or '-'}")
    return "; ".join(parts)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    text = str(value)
    if text and (text[0] in "=+@\t\r" or (text[0] == "-" and not _NUMBER.match(text))):
        return "'" + text  # a spreadsheet would evaluate it as a formula
    return text
