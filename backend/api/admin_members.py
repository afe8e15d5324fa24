"""Members and roles of a tenant (issue 13 item 1): ``/tenants/{t}/members…`` and ``POST /tenants``.

Where a role lives. Twice, kept in step: the custom claims ``tenant_id`` and ``role`` of the user at
the identity provider (what every ID token carries and ``backend.api.auth`` trusts), and the member
document ``tenants/{t}/members/{uid}`` (``uid, role, status, email, default_account_id, created_at,
updated_at``: docs/coord ACCOUNTS.md). This module writes ``role``/``status``/``email`` and the
timestamps with merges that never touch ``default_account_id`` (the account binding's field).

Order of effects (every request can be retried as is). The member document, the tenant's admin
roster and the audit entry are committed first, in one commit with preconditions; then the claims
are set to what the document now says, and on suspension or removal the user's refresh tokens are
revoked. A retry finds the document already changed, writes no second audit entry, and sets the
claims again (idempotent). A crash between the two leaves the document ahead of the claims until the
retry: the document is what the server trusts for suspension (``require_active_actor``, and the
account binding refuses a suspended member's orders with ``MEMBER_SUSPENDED``).

When a change reaches the user. A new role is in the user's *next* ID token: the app forces one with
``await user.getIdToken(true)`` (Web; ``getIDTokenForcingRefresh`` on iOS, ``getIdToken(true)`` on
Android) after the admin's change, or within the hour when the token expires. Meanwhile every
mutating or tenant-wide call compares the token's claims with the user's current ones and answers
401 ``CLAIMS_CHANGED`` (``backend.api.auth.account_refusal``), which is the app's cue to refresh.
Suspension and removal also revoke the refresh tokens (``auth.revoke_refresh_tokens``): the old
ID token is refused at once (401 ``TOKEN_REVOKED``) and the refresh fails, so the app must sign the
user in again — after which a suspended member is still refused by the member document.

Rules enforced here:
- Only a ``tenant_admin`` of the token's tenant changes members: the path's ``{tenant_id}`` must be
  the token's (``ApiApp._same_tenant``, 403 before anything is read; handlers then use the token's
  tenant), and a suspended admin changes nothing at all (``require_active_actor``).
- A user who belongs to another tenant (claims ``tenant_id`` set to another tenant) or holds the
  ``platform_operator`` role cannot be added: 409 ``MEMBER_OF_ANOTHER_TENANT``.
- The last active admin cannot be demoted, removed or suspended: 409 ``LAST_ADMIN``. The set of
  active admins is kept on the tenant document (``tenants/{t}.active_admin_uids``) and every change
  that touches it commits with a precondition on it, so two admins demoting each other at the same
  time cannot both succeed (the second gets 409 ``CONCURRENT_CHANGE`` and, retried, ``LAST_ADMIN``).
- ``platform_operator`` (claims set out of band) creates a tenant and its first admin.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping, Protocol

from backend.api.audit import audit_op, request_id_of
from backend.api.auth import PLATFORM_OPERATOR, Identity, forbidden
from backend.api.http import ApiError, ApiRequest, ApiResponse
from backend.execution.unit_of_work import Commit, Conflict, Create, Delete, Update
from backend.ports.accounts import MEMBER_ACTIVE, MEMBER_SUSPENDED, member_path

ADMIN = "tenant_admin"
ROSTER_FIELD = "active_admin_uids"
ROSTER_SCAN_LIMIT = 1000


@dataclass(frozen=True)
class UserInfo:
    uid: str
    email: str | None
    claims: Mapping[str, Any]
    disabled: bool = False


class IdentityAdmin(Protocol):
    """The identity provider's user management (``backend.api.firebase_auth.FirebaseIdentityAdmin``)."""

    def get_user(self, uid: str) -> UserInfo | None: ...

    def get_user_by_email(self, email: str) -> UserInfo | None: ...

    def create_user(self, email: str) -> UserInfo: ...

    def set_claims(self, uid: str, claims: Mapping[str, Any]) -> None: ...

    def revoke_refresh_tokens(self, uid: str) -> None: ...


@dataclass
class AdminDeps:
    """What an admin handler uses; built per request by ``ApiApp`` (factories: nothing is built
    before it is needed)."""

    store: Any
    now: datetime
    identity_admin: Callable[[], IdentityAdmin]
    secret_sink: Callable[[], Any]


def tenant_path(tenant_id: str) -> str:
    return f"tenants/{tenant_id}"


def require_admin(identity: Identity) -> None:
    if not identity.is_admin:
        raise forbidden("only a tenant_admin of this tenant may change it")


def require_active_actor(store: Any, identity: Identity) -> None:
    """A suspended member's token still verifies until it is refreshed; the member document decides.
    (Tenants whose admins were set up by hand, without member documents, count as active.)"""
    if not identity.tenant_id:
        return
    doc, _ = store.get_all([member_path(identity.tenant_id, identity.uid)])[member_path(identity.tenant_id,
                                                                                          identity.uid)]
    if doc is not None and doc.get("status") == MEMBER_SUSPENDED:
        raise ApiError(403, "MEMBER_SUSPENDED", "this member is suspended in the tenant", reason="status suspended")


def concurrent_change() -> ApiError:
    return ApiError(409, "CONCURRENT_CHANGE", "the documents changed while this request ran; retry it",
                    reason="a precondition failed; nothing was written")


def commit(store: Any, ops: Commit) -> None:
    """Commit; a failed precondition (changed, exists, missing) is a 409 and nothing was written."""
    try:
        store.commit(ops)
    except Conflict:
        raise concurrent_change() from None


def member_out(doc: Mapping[str, Any]) -> dict[str, Any]:
    from backend.api.admin_models import MemberOut
    from backend.api.app import _jsonable

    fields = {k: doc.get(k) for k in MemberOut.model_fields}
    return MemberOut.model_validate(_jsonable(fields)).model_dump(mode="json")


def _is_active_admin(doc: Mapping[str, Any] | None) -> bool:
    return bool(doc) and doc.get("role") == ADMIN and (doc.get("status") or MEMBER_ACTIVE) == MEMBER_ACTIVE


def _roster(store: Any, tenant_id: str, tenant_doc: Mapping[str, Any] | None) -> list[str]:
    """The tenant's active admins: the roster on the tenant document, or (first change of a tenant set
    up before issue 13) the member documents, which the same commit then writes as the roster."""
    if tenant_doc is not None and isinstance(tenant_doc.get(ROSTER_FIELD), list):
        return sorted(str(uid) for uid in tenant_doc[ROSTER_FIELD])
    rows = store.admin_page(tenant_id, "members", equals={"role": ADMIN, "status": MEMBER_ACTIVE}, after=None,
                            limit=ROSTER_SCAN_LIMIT)
    return sorted(uid for uid, _ in rows)


def _roster_op(tenant_id: str, tenant_doc: Mapping[str, Any] | None, token: Any, roster: list[str],
               now: datetime) -> Any:
    if tenant_doc is None:
        return Create(tenant_path(tenant_id), {"tenant_id": tenant_id, ROSTER_FIELD: sorted(roster),
                                               "created_at": now, "updated_at": now})
    return Update(tenant_path(tenant_id), {ROSTER_FIELD: sorted(roster), "updated_at": now}, token)


def _sync_claims(idp: IdentityAdmin, uid: str, tenant_id: str, role: str | None) -> None:
    """Make the user's claims say (tenant_id, role), or drop them (role None) if they name this tenant;
    other custom claims are kept. No call when they already agree."""
    user = idp.get_user(uid)
    if user is None:
        return
    claims = dict(user.claims or {})
    if role is None:
        if claims.get("tenant_id") != tenant_id:
            return
        claims.pop("tenant_id", None)
        claims.pop("role", None)
    else:
        claims.update({"tenant_id": tenant_id, "role": role})
    if claims != dict(user.claims or {}):
        idp.set_claims(uid, claims)


def _resolve_user(idp: IdentityAdmin, uid: str | None, email: str | None, create: bool) -> UserInfo:
    user = idp.get_user(uid) if uid is not None else idp.get_user_by_email(email or "")
    if user is None and create and email is not None:
        user = idp.create_user(email)
    if user is None:
        field = "uid" if uid is not None else "email"
        raise ApiError(404, "USER_NOT_FOUND", "no user with this identity", field=field,
                       reason="not found (give create_user: true with an e-mail to invite)")
    return user


def _check_joinable(user: UserInfo, tenant_id: str, field: str) -> None:
    claims = user.claims or {}
    other = claims.get("tenant_id")
    if claims.get("role") == PLATFORM_OPERATOR or (other is not None and other != tenant_id):
        raise ApiError(409, "MEMBER_OF_ANOTHER_TENANT", "this user belongs to another tenant or to the platform",
                       field=field, reason="remove them there first")


# ----------------------------------------------------------------------------------- handlers


def add_member(request: ApiRequest, identity: Identity, deps: AdminDeps) -> ApiResponse:
    """POST /tenants/{t}/members → 201 (added), 200 (already a member with this role: claims re-synced)."""
    from backend.api.admin_models import AddMemberRequest
    from backend.api.app import parse_json_object, parse_model

    require_admin(identity)
    body = parse_model(AddMemberRequest, parse_json_object(request.body))
    tenant = identity.tenant_id
    idp = deps.identity_admin()
    user = _resolve_user(idp, body.uid, body.email, body.create_user)
    _check_joinable(user, tenant, "uid" if body.uid is not None else "email")
    mpath, tpath = member_path(tenant, user.uid), tenant_path(tenant)
    docs = deps.store.get_all([mpath, tpath])
    before, token = docs[mpath]
    tenant_doc, tenant_token = docs[tpath]
    if before is not None and before.get("role"):
        if before["role"] != body.role:
            raise ApiError(409, "MEMBER_EXISTS", "already a member with another role", field="role",
                           reason=f"is {before['role']}; use PUT /tenants/{{tenant_id}}/members/{{uid}}/role")
        _sync_claims(idp, user.uid, tenant, before["role"])
        return ApiResponse(200, {"member": member_out(before), "created": False})
    now = deps.now
    fields = {"uid": user.uid, "role": body.role, "status": MEMBER_ACTIVE, "email": user.email, "updated_at": now}
    ops = Commit()
    if before is None:
        after = {**fields, "default_account_id": None, "created_at": now}
        ops.add(Create(mpath, after))
    else:  # a document the account binding created (default_account_id only): keep its fields
        after = {**before, **fields, "created_at": before.get("created_at") or now}
        ops.add(Update(mpath, {**fields, "created_at": after["created_at"]}, token))
    if body.role == ADMIN:
        roster = _roster(deps.store, tenant, tenant_doc)
        ops.add(_roster_op(tenant, tenant_doc, tenant_token, sorted(set(roster) | {user.uid}), now))
    ops.add(audit_op(identity, tenant_id=tenant, action="member.add", target_type="member", target_id=user.uid,
                     before=before, after=after, request_id=request_id_of(request), now=now))
    commit(deps.store, ops)
    _sync_claims(idp, user.uid, tenant, body.role)
    return ApiResponse(201, {"member": member_out(after), "created": True})


def _load_member(deps: AdminDeps, tenant: str, uid: str) -> tuple[dict[str, Any], Any, Any, Any]:
    from backend.api.http import bad_request
    from backend.domain.ids import ID

    problem = ID.problem(uid)
    if problem is not None:
        raise bad_request("uid", problem)
    mpath, tpath = member_path(tenant, uid), tenant_path(tenant)
    docs = deps.store.get_all([mpath, tpath])
    doc, token = docs[mpath]
    if doc is None or not doc.get("role"):
        raise ApiError(404, "NOT_FOUND", f"no member {uid} in this tenant", field="uid", reason="not found")
    return doc, token, docs[tpath][0], docs[tpath][1]


def _last_admin_guard(deps: AdminDeps, tenant: str, uid: str, before: Mapping[str, Any],
                      after: Mapping[str, Any] | None, tenant_doc: Any, tenant_token: Any, ops: Commit) -> None:
    """Add the roster change to ``ops`` when the member's admin power changes; 409 LAST_ADMIN when it
    would leave the tenant without an active admin."""
    was, will = _is_active_admin(before), _is_active_admin(after)
    if was == will:
        return
    roster = set(_roster(deps.store, tenant, tenant_doc))
    roster = roster | {uid} if will else roster - {uid}
    if not roster:
        raise ApiError(409, "LAST_ADMIN", "the tenant would have no active tenant_admin", field="uid",
                       reason="make another member tenant_admin first")
    ops.add(_roster_op(tenant, tenant_doc, tenant_token, sorted(roster), deps.now))


def set_role(request: ApiRequest, identity: Identity, deps: AdminDeps, uid: str) -> ApiResponse:
    """PUT /tenants/{t}/members/{uid}/role {role}; role null removes the member (claims dropped, sessions
    revoked, member document deleted: the audit entry keeps it)."""
    from backend.api.admin_models import SetRoleRequest
    from backend.api.app import parse_json_object, parse_model

    require_admin(identity)
    body = parse_model(SetRoleRequest, parse_json_object(request.body))
    tenant = identity.tenant_id
    before, token, tenant_doc, tenant_token = _load_member(deps, tenant, uid)
    idp = deps.identity_admin()
    if before.get("role") == body.role:
        _sync_claims(idp, uid, tenant, body.role)
        return ApiResponse(200, {"member": member_out(before), "changed": False})
    now = deps.now
    ops = Commit()
    if body.role is None:
        after = None
        _last_admin_guard(deps, tenant, uid, before, after, tenant_doc, tenant_token, ops)
        ops.add(Delete(member_path(tenant, uid), token))
        action = "member.remove"
    else:
        after = {**before, "role": body.role, "updated_at": now}
        _last_admin_guard(deps, tenant, uid, before, after, tenant_doc, tenant_token, ops)
        ops.add(Update(member_path(tenant, uid), {"role": body.role, "updated_at": now}, token))
        action = "member.role_set"
    ops.add(audit_op(identity, tenant_id=tenant, action=action, target_type="member", target_id=uid, before=before,
                     after=after, request_id=request_id_of(request), now=now))
    commit(deps.store, ops)
    _sync_claims(idp, uid, tenant, body.role)
    if body.role is None:
        idp.revoke_refresh_tokens(uid)
        return ApiResponse(200, {"member": None, "removed_uid": uid, "changed": True})
    return ApiResponse(200, {"member": member_out(after), "changed": True})


def set_status(request: ApiRequest, identity: Identity, deps: AdminDeps, uid: str) -> ApiResponse:
    """PUT /tenants/{t}/members/{uid}/status {status}: suspended revokes the member's refresh tokens."""
    from backend.api.admin_models import SetMemberStatusRequest
    from backend.api.app import parse_json_object, parse_model

    require_admin(identity)
    body = parse_model(SetMemberStatusRequest, parse_json_object(request.body))
    tenant = identity.tenant_id
    before, token, tenant_doc, tenant_token = _load_member(deps, tenant, uid)
    idp = deps.identity_admin()
    changed = (before.get("status") or MEMBER_ACTIVE) != body.status
    after = before
    if changed:
        now = deps.now
        after = {**before, "status": body.status, "updated_at": now}
        ops = Commit()
        _last_admin_guard(deps, tenant, uid, before, after, tenant_doc, tenant_token, ops)
        ops.add(Update(member_path(tenant, uid), {"status": body.status, "updated_at": now}, token))
        ops.add(audit_op(identity, tenant_id=tenant, action="member.status_set", target_type="member", target_id=uid,
                         before=before, after=after, request_id=request_id_of(request), now=now))
        commit(deps.store, ops)
    if body.status == MEMBER_SUSPENDED:
        idp.revoke_refresh_tokens(uid)  # also on a retry: a session opened since is closed again
    return ApiResponse(200, {"member": member_out(after), "changed": changed})


def list_members(request: ApiRequest, identity: Identity, deps: AdminDeps) -> ApiResponse:
    """GET /tenants/{t}/members (tenant_admin, auditor): ordered by uid, filters role / status."""
    from backend.api.admin_models import MembersPage, MembersQuery
    from backend.api.app import parse_model
    from backend.api.ledger_review import single_valued

    if not identity.can_read_tenant:
        raise forbidden("only a tenant_admin or auditor may list members")
    query = parse_model(MembersQuery, single_valued(request.query))
    equals = {k: getattr(query, k) for k in ("role", "status") if getattr(query, k) is not None}
    rows = page_rows(deps.store, identity.tenant_id, "members", equals, query.cursor, query.limit)
    items = [member_out(doc) for _, doc in rows[: query.limit] if doc.get("role")]
    nxt = encode_id_cursor(rows[query.limit - 1][0]) if len(rows) > query.limit else None
    return ApiResponse(200, MembersPage.model_validate({"items": items, "next_cursor": nxt}).model_dump(mode="json"))


def create_tenant(request: ApiRequest, identity: Identity, deps: AdminDeps) -> ApiResponse:
    """POST /tenants (platform_operator): the tenant document, its first admin's member document, the
    first audit entry — one commit — then the claims. The same request again (same operator, that
    admin still active) answers 200 and re-applies the claims; anything else on an existing tenant is
    409 TENANT_EXISTS."""
    from backend.api.admin_models import CreateTenantRequest
    from backend.api.app import parse_json_object, parse_model

    if not identity.is_platform_operator:
        raise forbidden("only a platform_operator creates tenants")
    body = parse_model(CreateTenantRequest, parse_json_object(request.body))
    tenant = body.tenant_id
    idp = deps.identity_admin()
    user = _resolve_user(idp, body.admin_uid, body.admin_email, body.create_user)
    _check_joinable(user, tenant, "admin_uid" if body.admin_uid is not None else "admin_email")
    mpath, tpath = member_path(tenant, user.uid), tenant_path(tenant)
    docs = deps.store.get_all([tpath, mpath])
    if docs[tpath][0] is not None:
        existing, member_doc = docs[tpath][0], docs[mpath][0]
        if existing.get("created_by") == identity.uid and _is_active_admin(member_doc):
            # a retry of this very request (the claims step may have failed): finish it
            _sync_claims(idp, user.uid, tenant, ADMIN)
            from backend.api.app import _jsonable

            return ApiResponse(200, {"tenant": _jsonable(existing), "admin": member_out(member_doc)})
        raise ApiError(409, "TENANT_EXISTS", f"tenant {tenant} exists", field="tenant_id", reason="exists")
    now = deps.now
    tenant_doc = {"tenant_id": tenant, ROSTER_FIELD: [user.uid], "created_by": identity.uid, "created_at": now,
                  "updated_at": now}
    member = {"uid": user.uid, "role": ADMIN, "status": MEMBER_ACTIVE, "email": user.email,
              "default_account_id": (docs[mpath][0] or {}).get("default_account_id"), "created_at": now,
              "updated_at": now}
    ops = Commit().add(Create(tpath, tenant_doc))
    ops.add(Create(mpath, member) if docs[mpath][0] is None else Update(mpath, member, docs[mpath][1]))
    ops.add(audit_op(identity, tenant_id=tenant, action="tenant.create", target_type="tenant", target_id=tenant,
                     before=None, after={"tenant": tenant_doc, "first_admin": member},
                     request_id=request_id_of(request), now=now))
    try:
        deps.store.commit(ops)
    except Conflict:
        raise ApiError(409, "TENANT_EXISTS", f"tenant {tenant} exists", field="tenant_id", reason="exists") from None
    _sync_claims(idp, user.uid, tenant, ADMIN)
    from backend.api.app import _jsonable

    return ApiResponse(201, {"tenant": _jsonable(tenant_doc), "admin": member_out(member)})


# ----------------------------------------------------------------------------------- paging


def encode_id_cursor(doc_id: str) -> str:
    import base64
    import json

    return base64.urlsafe_b64encode(json.dumps({"i": doc_id}).encode()).decode().rstrip("=")


def decode_id_cursor(text: str) -> str:
    import base64
    import json

    from backend.api.http import bad_request
    from backend.domain.ids import ID

    try:
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode())
        value = data["i"] if isinstance(data, dict) and set(data) == {"i"} else None
    except (ValueError, UnicodeDecodeError, KeyError):
        value = None
    if not isinstance(value, str) or ID.problem(value) is not None:
        raise bad_request("cursor", "not a cursor this endpoint handed out")
    return value


def page_rows(store: Any, tenant_id: str, collection: str, equals: Mapping[str, str], cursor: str | None, limit: int,
              contains: tuple[str, str] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """limit + 1 rows (the extra one says there is a next page) of one tenant collection by id."""
    after = decode_id_cursor(cursor) if cursor is not None else None
    return store.admin_page(tenant_id, collection, equals=equals, contains=contains, after=after, limit=limit + 1)
