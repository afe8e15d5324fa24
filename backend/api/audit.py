"""The tenant audit log (issue 13): ``tenants/{t}/audit_log/{audit_id}``, and ``GET /tenants/{t}/audit-log``.

One entry per admin action that changed something: who (``actor_uid``, ``actor_role``), what
(``action``, ``target_type``, ``target_id``, ``target`` = ``<type>/<id>``), the document before and
after (``before``/``after``: the stored fields, credentials only ever as their reference), the
request id (``X-Request-Id``, or the one the API generated), and when (``created_at``: ISO-8601 UTC
text, sortable; ``created_day``). ``audit_op`` builds the entry as a ``Create`` op that the caller
adds to the *same commit* as the change it records, so there is never a change without its entry or
an entry without its change. A request that changes nothing (a retry) writes no entry.

Append-only: the server creates entries and nothing updates or deletes them; ``firestore.rules``
denies every client write and lets only the tenant's ``tenant_admin`` and ``auditor`` read.

Reading: ``tenant_admin`` and ``auditor`` of the token's tenant. Newest first by (created_at, id);
filters ``action``, ``actor_uid``, ``target`` (equality, at most one: each has a composite index
(field ASC, created_at DESC) in firestore.indexes.json) and ``from``/``to`` (UTC days on
created_at); cursor pages as in the ledger review (``backend.api.history.Cursor``).

Other admin modules (risk settings, kill switch, reconciliation) record their changes the same way:
``commit.add(audit_op(identity, tenant_id=…, action=…, target_type=…, target_id=…, before=…,
after=…, request_id=request_id_of(request), now=…))``.
"""
from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timezone
from typing import Any, Mapping

from backend.api.auth import Identity, forbidden
from backend.api.http import ApiRequest, ApiResponse, bad_request
from backend.domain.ids import check_id
from backend.domain.storable import check_storable
from backend.execution.unit_of_work import Create

COLLECTION = "audit_log"
FILTERS = ("action", "actor_uid", "target")
INDEXED_FILTERS: frozenset[frozenset[str]] = frozenset([frozenset()] + [frozenset({name}) for name in FILTERS])
ENTRY_FIELDS = ("audit_id", "tenant_id", "actor_uid", "actor_role", "action", "target_type", "target_id", "target",
                "before", "after", "request_id", "created_at", "created_day")


def audit_path(tenant_id: str, audit_id: str) -> str:
    return f"tenants/{check_id(tenant_id, 'tenant_id')}/{COLLECTION}/{audit_id}"


_SEQUENCE = itertools.count()


def new_audit_id(now: datetime) -> str:
    """Time-ordered and unique: ``<UTC yyyymmddThhmmssffffff>-<process sequence>-<12 hex>`` (entries of one
    process in the same microsecond keep their order; the random part keeps processes apart)."""
    return (f"{now.astimezone(timezone.utc).strftime('%Y%m%dT%H%M%S%f')}-{next(_SEQUENCE) % 10**9:09d}-"
            f"{uuid.uuid4().hex[:12]}")


def request_id_of(request: ApiRequest) -> str | None:
    """The request id ``ApiApp.handle`` answers with (the caller's valid X-Request-Id or a generated one)."""
    return request.header("X-Request-Id")


def audit_entry(actor: Identity, *, tenant_id: str, action: str, target_type: str, target_id: str,
                before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, request_id: str | None,
                now: datetime) -> tuple[str, dict[str, Any]]:
    """(path, document) of one entry."""
    audit_id = new_audit_id(now)
    stamp = now.astimezone(timezone.utc)
    doc = {"audit_id": audit_id, "tenant_id": tenant_id, "actor_uid": actor.uid, "actor_role": actor.role,
           "action": action, "target_type": target_type, "target_id": target_id,
           "target": f"{target_type}/{target_id}", "before": dict(before) if before is not None else None,
           "after": dict(after) if after is not None else None, "request_id": request_id,
           "created_at": stamp.isoformat(), "created_day": stamp.date().isoformat()}
    path = audit_path(tenant_id, audit_id)
    check_storable(doc, path)
    return path, doc


def audit_op(actor: Identity, **kwargs: Any) -> Create:
    """The entry as a ``Create`` op for the change's own commit (see ``audit_entry`` for the arguments)."""
    path, doc = audit_entry(actor, **kwargs)
    return Create(path, doc)


# ------------------------------------------------------------------------ GET /tenants/{t}/audit-log


def require_reader(identity: Identity) -> None:
    if not identity.can_read_tenant:
        raise forbidden("only a tenant_admin or auditor of this tenant may read the audit log")


def handle_list(request: ApiRequest, identity: Identity, store: Any) -> ApiResponse:
    from backend.api.admin_models import AuditPage, AuditQuery
    from backend.api.app import _jsonable, parse_model
    from backend.api.history import Cursor
    from backend.api.ledger_review import check_day_range, day_after, single_valued

    require_reader(identity)
    query = parse_model(AuditQuery, single_valued(request.query))
    check_day_range(query.from_, query.to)
    equals = {name: getattr(query, name) for name in FILTERS if getattr(query, name) is not None}
    if frozenset(equals) not in INDEXED_FILTERS:
        raise bad_request(sorted(equals)[-1], f"filters {' + '.join(sorted(equals))} have no index; filter on one "
                                              f"of {', '.join(FILTERS)}", code="UNSUPPORTED_FILTER")
    after = Cursor.decode(query.cursor) if query.cursor is not None else None
    rows = store.audit_page(identity.tenant_id, equals=equals, created_from=query.from_,
                            created_before=day_after(query.to) if query.to else None,
                            after=(after.created_at, after.doc_id) if after else None, limit=query.limit + 1)
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    nxt = Cursor(str(rows[-1][1]["created_at"]), rows[-1][0]).encode() if (more and rows) else None
    items = [_jsonable(doc) for _, doc in rows]
    return ApiResponse(200, AuditPage(items=items, next_cursor=nxt).model_dump(mode="json"))
