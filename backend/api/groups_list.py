"""Read model: ``GET /groups`` — a user's own multi-leg groups, or a tenant admin's view of the tenant's.

Who. Every role lists groups of its token's tenant only: a ``trader`` (or ``risk_manager``) sees the
groups whose ``uid`` is theirs; a ``tenant_admin`` sees every group of the tenant (optionally one
user's, ``uid=``). ``tenant_id``, when given, must be the token's tenant (403 otherwise, before any
other parameter is looked at); ``uid`` from anyone but a tenant admin is a 403.

Rows. ``tenants/<t>/execution_groups/<group_id>`` documents, answered as ``GroupResponse`` (the
seed's shape, ``status`` the verdict) plus ``uid``, ``lifecycle_status`` (``GroupStatus``, what the
``status`` filter matches) and ``created_timestamp``.

Order and paging. ``created_timestamp`` (ISO-8601 UTC, sortable as text) descending, then the
document id descending; the cursor is the last row's (created_timestamp, id), encoded as the
ledger review's and the history's (``backend.api.history.Cursor``: base64url JSON, parsed strictly,
a reserved Firestore name in it is a 400). One query per page, ``limit + 1`` rows.

Filters. ``status``, ``strategy_id`` and ``uid`` (the trader's own, always) are equalities; ``from``
/ ``to`` (YYYY-MM-DD, inclusive) are UTC days on ``created_timestamp``. Every combination of the
equality fields is indexed (``INDEXED_FILTERS``; composite indexes (fields ASC, created_timestamp
DESC) in firestore.indexes.json, checked by tests/unit/test_groups_list_indexes.py), so no
combination is refused.
"""
from __future__ import annotations

from itertools import combinations
from typing import Any, Mapping

from backend.api.auth import Identity, forbidden
from backend.api.history import Cursor
from backend.api.http import ApiRequest, ApiResponse
from backend.api.ledger_review import check_day_range, day_after, single_valued

EQUALITY_FILTERS = ("status", "strategy_id", "uid")
INDEXED_FILTERS: frozenset[frozenset[str]] = frozenset(
    frozenset(combo) for n in range(len(EQUALITY_FILTERS) + 1) for combo in combinations(EQUALITY_FILTERS, n))
ORDER_FIELD = "created_timestamp"


def handle(request: ApiRequest, identity: Identity, store: Any) -> ApiResponse:
    from backend.api.app import parse_model
    from backend.api.models import GroupsPage, GroupsQuery

    raw = single_valued(request.query)
    tenant = raw.get("tenant_id")
    if tenant is not None and tenant != identity.tenant_id:
        raise forbidden("tenant_id is not the authenticated tenant", "tenant_id")
    query = parse_model(GroupsQuery, raw)
    if query.uid is not None and not identity.can_read_tenant:  # tenant_admin or (issue 13) auditor
        raise forbidden("only a tenant_admin or auditor may list another user's groups", "uid")
    check_day_range(query.from_, query.to)
    equals = {name: getattr(query, name) for name in EQUALITY_FILTERS if getattr(query, name) is not None}
    if not identity.can_read_tenant:
        equals["uid"] = identity.uid  # a trader's own groups, always
    after = Cursor.decode(query.cursor) if query.cursor is not None else None
    rows = store.groups_page(identity.tenant_id, equals=equals, created_from=query.from_,
                             created_before=day_after(query.to) if query.to else None,
                             after=(after.created_at, after.doc_id) if after else None, limit=query.limit + 1)
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    nxt = Cursor(str(rows[-1][1][ORDER_FIELD]), rows[-1][0]).encode() if (more and rows) else None
    items = [summary(doc) for _, doc in rows]
    return ApiResponse(200, GroupsPage(items=items, next_cursor=nxt).model_dump(mode="json", by_alias=True))


def summary(doc: Mapping[str, Any]) -> dict[str, Any]:
    from backend.api.app import _jsonable
    from backend.execution import groups as g

    group = g.ExecutionGroup.from_dict({k: v for k, v in doc.items() if not k.startswith("_")})
    return _jsonable({**group.to_api_response(), "uid": group.uid, "lifecycle_status": group.status.value,
                      "created_timestamp": doc.get(ORDER_FIELD)})


def openapi_path(error: Any) -> dict[str, Any]:
    """The ``/groups`` entry of docs/openapi.json (``backend.api.openapi``; ``error(code)`` its error
    response)."""
    from backend.api.models import DAY_PATTERN, GROUP_STATUSES, ID_PATTERN

    def q(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}

    ident = {"type": "string", "pattern": ID_PATTERN}
    day = {"type": "string", "pattern": DAY_PATTERN, "format": "date"}
    return {"get": {
        "summary": "List multi-leg groups: the caller's own (tenant_admin: the tenant's), newest first",
        "description": "Ordered by created_timestamp then group_id, descending; cursor pagination. Every "
                       "combination of status, strategy_id and uid is indexed; from/to are UTC days on "
                       "created_timestamp.",
        "security": [{"bearerAuth": []}],
        "parameters": [
            q("tenant_id", ident, "Must be the token's tenant (403 otherwise)."),
            q("status", {"type": "string", "enum": list(GROUP_STATUSES)}, "Lifecycle status, equality."),
            q("strategy_id", ident, "Equality."),
            q("uid", ident, "tenant_admin only: one user's groups."),
            q("from", day, "First UTC day (inclusive) of created_timestamp."),
            q("to", day, "Last UTC day (inclusive) of created_timestamp."),
            q("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}, "Page size."),
            q("cursor", {"type": "string"}, "next_cursor of the previous page (same filters).")],
        "responses": {"200": {"description": "One page.", "content": {"application/json": {"schema": {
            "$ref": "#/components/schemas/GroupsPage"}}}},
            **{code: error(code) for code in ("400", "401", "500")},
            "403": error("403", "tenant_id is not the token's tenant, or uid from a role other than tenant_admin.")}}}
