"""Broker connections and accounts of a tenant (issue 13 item 2): ``/tenants/{t}/connections…``,
``/tenants/{t}/accounts…`` and a member's default account.

Documents are built by the domain codecs (``backend.domain.accounts``: ``BrokerConnection`` and
``Account`` validate every field, the venue × environment table, the venue's account id shape, the
asset classes a venue trades and the status transition table) and committed with their audit entry
in one commit with preconditions (create-if-absent, update-if-unchanged): a race is a 409
``CONCURRENT_CHANGE`` and writes nothing.

Credentials. A request may carry a connection's credentials (``credentials``: key_id + secret_key for
the Alpaca venues, token for OANDA). They are validated against the venue's fields, written through
the secret sink (``backend.ports.secret_sink``: the local JSON file or a new Secret Manager version)
*before* the document, and only the reference the sink answers is stored, returned and audited. If
the commit then fails, an unused secret version remains (never a document pointing at nothing).
Without a sink configured, a request with credentials is a 400 naming ``credentials``.

Bindings. ``owner_uids`` must be members of the tenant. Removing an owner, or closing the account,
clears the default account of every owner whose default it was (same commit), so no member is left
with a default they cannot trade. ``PUT /tenants/{t}/members/{uid}/default-account`` sets a member's
default to an account they own that is not closed (``default_account_id`` is the only field it
writes on the member document). Per-account limits are not written here (the risk settings API
owns them); they are kept as stored.
"""
from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Mapping

from backend.api.admin_members import AdminDeps, commit, encode_id_cursor, page_rows, require_admin
from backend.api.audit import audit_op, request_id_of
from backend.api.auth import Identity, forbidden
from backend.api.http import ApiError, ApiRequest, ApiResponse, bad_request
from backend.domain.accounts import (CREDENTIAL_FIELDS, Account, AccountStatus, BrokerConnection, Venue,
                                     account_path, connection_path)
from backend.domain.errors import InvalidInput
from backend.domain.ids import ID
from backend.domain.secrets import Secret, SecretRef
from backend.execution.unit_of_work import Commit, Create, Update
from backend.ports.accounts import DEPLOYMENT_CONNECTION_ID, member_path


def _id_param(name: str, value: str) -> None:
    problem = ID.problem(value)
    if problem is not None:
        raise bad_request(name, problem)


def _out(doc: Mapping[str, Any]) -> dict[str, Any]:
    from backend.api.app import _jsonable

    return _jsonable(dict(doc))


def _page(request: ApiRequest, identity: Identity, deps: AdminDeps, collection: str, page_model: Any,
          query_model: Any) -> ApiResponse:
    from backend.api.app import parse_model
    from backend.api.ledger_review import single_valued

    if not identity.can_read_tenant:
        raise forbidden(f"only a tenant_admin or auditor may list {collection}")
    query = parse_model(query_model, single_valued(request.query))
    equals = {"status": query.status} if getattr(query, "status", None) else {}
    owner = getattr(query, "owner_uid", None)
    rows = page_rows(deps.store, identity.tenant_id, collection, equals, query.cursor, query.limit,
                     contains=("owner_uids", owner) if owner else None)
    nxt = encode_id_cursor(rows[query.limit - 1][0]) if len(rows) > query.limit else None
    items = [_out(doc) for _, doc in rows[: query.limit]]
    return ApiResponse(200, page_model.model_validate({"items": items, "next_cursor": nxt}).model_dump(mode="json"))


# -------------------------------------------------------------------------------- connections


def _credentials_value(venue: Venue, credentials: Any) -> Secret:
    wanted = CREDENTIAL_FIELDS[venue]
    if not wanted:
        raise bad_request("credentials", f"the {venue.value} venue takes no credentials")
    given = {name for name in ("key_id", "secret_key", "token") if getattr(credentials, name) is not None}
    for name in sorted(given - set(wanted)):
        raise bad_request(f"credentials.{name}",
                          f"not a credential of the {venue.value} venue (it takes {list(wanted)})")
    for name in wanted:
        if name not in given:
            raise bad_request(f"credentials.{name}", f"required for the {venue.value} venue")
    return Secret(json.dumps({name: getattr(credentials, name).get_secret_value() for name in wanted},
                             separators=(",", ":")))


def _write_credentials(deps: AdminDeps, tenant: str, connection: BrokerConnection, credentials: Any,
                       named_ref: str | None) -> BrokerConnection:
    """The connection with its credentials written to the sink and ``credentials_ref`` = the stored ref."""
    from backend.ports.secret_sink import SecretWriteFailed

    value = _credentials_value(connection.venue, credentials)
    sink = deps.secret_sink()
    if sink is None:
        raise bad_request("credentials", "no secret sink is configured here (EXEC_SECRET_SINK); store the "
                                         "credentials yourself and send credentials_ref")
    ref = (SecretRef.parse(named_ref, "credentials_ref") if named_ref is not None
           else connection.credentials_ref or sink.default_ref(tenant, connection.connection_id))
    try:
        stored = sink.put(ref, value)
    except SecretWriteFailed as exc:
        if exc.transient:
            raise ApiError(503, "SECRET_SINK_UNAVAILABLE", "the credentials could not be stored; retry",
                           reason=exc.reason, headers={"Retry-After": "5"}) from None
        raise bad_request("credentials_ref", exc.reason) from None
    return replace(connection, credentials_ref=stored)


def create_connection(request: ApiRequest, identity: Identity, deps: AdminDeps) -> ApiResponse:
    """POST /tenants/{t}/connections → 201; 409 CONNECTION_EXISTS."""
    from backend.api.admin_models import CreateConnectionRequest
    from backend.api.app import parse_json_object, parse_model

    require_admin(identity)
    body = parse_model(CreateConnectionRequest, parse_json_object(request.body))
    tenant, now = identity.tenant_id, deps.now
    if body.connection_id == DEPLOYMENT_CONNECTION_ID:
        raise bad_request("connection_id", f"{DEPLOYMENT_CONNECTION_ID} is reserved for this deployment's venues")
    path = connection_path(tenant, body.connection_id)
    if deps.store.get_all([path])[path][0] is not None:
        raise ApiError(409, "CONNECTION_EXISTS", f"connection {body.connection_id} exists", field="connection_id",
                       reason="exists; update it with PATCH /tenants/{tenant_id}/connections/{connection_id}")
    provisional = body.credentials_ref
    if body.credentials is not None:
        _credentials_value(Venue(body.venue), body.credentials)  # the venue's fields, before anything else
        sink = deps.secret_sink()
        if sink is None:
            raise bad_request("credentials", "no secret sink is configured here (EXEC_SECRET_SINK); store the "
                                             "credentials yourself and send credentials_ref")
        if provisional is None:
            provisional = sink.default_ref(tenant, body.connection_id).text
    # every field is validated before anything is written, the secret included
    connection = BrokerConnection(connection_id=body.connection_id, venue=body.venue, environment=body.environment,
                                  base_url=body.base_url, created_at=now, updated_at=now,
                                  credentials_ref=None if provisional is None else SecretRef.parse(provisional))
    if body.credentials is not None:
        connection = _write_credentials(deps, tenant, connection, body.credentials, body.credentials_ref)
    connection.storable(tenant)
    doc = connection.to_dict()
    ops = Commit().add(Create(path, doc))
    ops.add(audit_op(identity, tenant_id=tenant, action="connection.create", target_type="connection",
                     target_id=body.connection_id, before=None, after=doc, request_id=request_id_of(request), now=now))
    commit(deps.store, ops)
    return ApiResponse(201, {"connection": _out(doc), "credentials_written": body.credentials is not None})


def update_connection(request: ApiRequest, identity: Identity, deps: AdminDeps, connection_id: str) -> ApiResponse:
    """PATCH /tenants/{t}/connections/{connection_id}: environment, base_url (null clears), credentials_ref,
    credentials (rotation: a new secret version). 200 with ``changed``."""
    from backend.api.admin_models import UpdateConnectionRequest
    from backend.api.app import parse_json_object, parse_model

    require_admin(identity)
    _id_param("connection_id", connection_id)
    body = parse_model(UpdateConnectionRequest, parse_json_object(request.body))
    tenant, now = identity.tenant_id, deps.now
    path = connection_path(tenant, connection_id)
    before, token = deps.store.get_all([path])[path]
    if before is None:
        raise ApiError(404, "NOT_FOUND", f"no connection {connection_id}", field="connection_id", reason="not found")
    current = BrokerConnection.from_dict(before)
    changes: dict[str, Any] = {}
    if body.environment is not None:
        changes["environment"] = body.environment
    if "base_url" in body.model_fields_set:
        changes["base_url"] = body.base_url
    if body.credentials_ref is not None:
        changes["credentials_ref"] = SecretRef.parse(body.credentials_ref)
    updated = replace(current, **changes, updated_at=now) if changes else current
    if body.credentials is not None:
        _credentials_value(updated.venue, body.credentials)
        updated = _write_credentials(deps, tenant, replace(updated, updated_at=now), body.credentials,
                                     body.credentials_ref)
    after = updated.to_dict()
    if body.credentials is None and {k: v for k, v in after.items() if k != "updated_at"} == {
            k: v for k, v in current.to_dict().items() if k != "updated_at"}:
        return ApiResponse(200, {"connection": _out(before), "changed": False})
    updated.storable(tenant)
    # new credentials are a change even under the same reference (a file entry rewritten in place)
    action = "connection.credentials_rotated" if body.credentials is not None else "connection.update"
    ops = Commit().add(Update(path, after, token))
    ops.add(audit_op(identity, tenant_id=tenant, action=action, target_type="connection",
                     target_id=connection_id, before=before, after=after, request_id=request_id_of(request), now=now))
    commit(deps.store, ops)
    return ApiResponse(200, {"connection": _out(after), "changed": True})


def list_connections(request: ApiRequest, identity: Identity, deps: AdminDeps) -> ApiResponse:
    from backend.api.admin_models import ConnectionsPage, PageQuery

    return _page(request, identity, deps, "broker_connections", ConnectionsPage, PageQuery)


# ----------------------------------------------------------------------------------- accounts


def _members(deps: AdminDeps, tenant: str, uids: list[str]) -> dict[str, tuple[dict[str, Any] | None, Any]]:
    paths = {uid: member_path(tenant, uid) for uid in uids}
    docs = deps.store.get_all(list(paths.values())) if paths else {}
    return {uid: docs[path] for uid, path in paths.items()}


def _check_owners(members: Mapping[str, tuple[Any, Any]], owners: list[str]) -> None:
    for i, uid in enumerate(owners):
        doc = members[uid][0]
        if doc is None or not doc.get("role"):
            raise bad_request(f"owner_uids[{i}]", f"{uid} is not a member of this tenant")


def _connection_for(deps: AdminDeps, tenant: str, connection_id: str) -> BrokerConnection | None:
    if connection_id == DEPLOYMENT_CONNECTION_ID:
        return None
    path = connection_path(tenant, connection_id)
    doc = deps.store.get_all([path])[path][0]
    if doc is None:
        raise bad_request("connection_id", f"no connection {connection_id} in this tenant")
    return BrokerConnection.from_dict(doc)


def _clear_defaults(ops: Commit, tenant: str, account_id: str, members: Mapping[str, tuple[Any, Any]],
                    uids: list[str], now: Any) -> None:
    """Owners losing the account (removed, or the account closed) lose it as their default too."""
    for uid in uids:
        doc, token = members[uid]
        if doc is not None and doc.get("default_account_id") == account_id:
            ops.add(Update(member_path(tenant, uid), {"default_account_id": None, "updated_at": now}, token))


def create_account(request: ApiRequest, identity: Identity, deps: AdminDeps) -> ApiResponse:
    """POST /tenants/{t}/accounts → 201; 409 ACCOUNT_EXISTS (a closed account's id is never reused)."""
    from backend.api.admin_models import CreateAccountRequest
    from backend.api.app import parse_json_object, parse_model

    require_admin(identity)
    body = parse_model(CreateAccountRequest, parse_json_object(request.body))
    tenant, now = identity.tenant_id, deps.now
    path = account_path(tenant, body.account_id)
    if deps.store.get_all([path])[path][0] is not None:
        raise ApiError(409, "ACCOUNT_EXISTS", f"account {body.account_id} exists", field="account_id",
                       reason="exists (account ids are never reused)")
    connection = _connection_for(deps, tenant, body.connection_id)
    account = Account(account_id=body.account_id, connection_id=body.connection_id,
                      venue_account_id=body.venue_account_id, owner_uids=tuple(body.owner_uids), status=body.status,
                      asset_classes=tuple(body.asset_classes), created_at=now, updated_at=now)
    if connection is not None:
        account.check_connection(connection)
    _check_owners(_members(deps, tenant, list(account.owner_uids)), list(account.owner_uids))
    account.storable(tenant)
    doc = account.to_dict()
    ops = Commit().add(Create(path, doc))
    ops.add(audit_op(identity, tenant_id=tenant, action="account.create", target_type="account",
                     target_id=body.account_id, before=None, after=doc, request_id=request_id_of(request), now=now))
    commit(deps.store, ops)
    return ApiResponse(201, {"account": _out(doc)})


def _load_account(deps: AdminDeps, tenant: str, account_id: str) -> tuple[Account, dict[str, Any], Any]:
    _id_param("account_id", account_id)
    path = account_path(tenant, account_id)
    doc, token = deps.store.get_all([path])[path]
    if doc is None:
        raise ApiError(404, "NOT_FOUND", f"no account {account_id}", field="account_id", reason="not found")
    return Account.from_dict(doc), doc, token


def update_account(request: ApiRequest, identity: Identity, deps: AdminDeps, account_id: str) -> ApiResponse:
    """PATCH /tenants/{t}/accounts/{account_id}: owner_uids and/or asset_classes."""
    from backend.api.admin_models import UpdateAccountRequest
    from backend.api.app import parse_json_object, parse_model

    require_admin(identity)
    body = parse_model(UpdateAccountRequest, parse_json_object(request.body))
    tenant, now = identity.tenant_id, deps.now
    account, before, token = _load_account(deps, tenant, account_id)
    if account.status is AccountStatus.CLOSED:
        raise bad_request("account_id", "the account is closed")
    changes: dict[str, Any] = {}
    if body.owner_uids is not None:
        changes["owner_uids"] = tuple(body.owner_uids)
    if body.asset_classes is not None:
        changes["asset_classes"] = tuple(body.asset_classes)
    updated = replace(account, **changes, updated_at=now)
    connection = _connection_for(deps, tenant, account.connection_id)
    if connection is not None:
        updated.check_connection(connection)
    if updated.owner_uids == account.owner_uids and updated.asset_classes == account.asset_classes:
        return ApiResponse(200, {"account": _out(before), "changed": False})
    removed = [uid for uid in account.owner_uids if uid not in updated.owner_uids]
    members = _members(deps, tenant, sorted(set(updated.owner_uids) | set(removed)))
    _check_owners(members, list(updated.owner_uids))
    updated.storable(tenant)
    after = updated.to_dict()
    ops = Commit().add(Update(account_path(tenant, account_id), after, token))
    _clear_defaults(ops, tenant, account_id, members, removed, now)
    ops.add(audit_op(identity, tenant_id=tenant, action="account.update", target_type="account", target_id=account_id,
                     before=before, after=after, request_id=request_id_of(request), now=now))
    commit(deps.store, ops)
    return ApiResponse(200, {"account": _out(after), "changed": True})


def set_account_status(request: ApiRequest, identity: Identity, deps: AdminDeps, account_id: str) -> ApiResponse:
    """PUT /tenants/{t}/accounts/{account_id}/status: the account's lifecycle — ``closed`` (final).

    The trading states active / reduce_only / halted are set with ``PUT …/trading-state``
    (``backend.api.risk_settings``), which also sets or clears the venue's trade suspension of an
    Alpaca Broker API account; setting them here would skip that, so they are a 400 naming it.
    Closing clears the owners' default account (same commit)."""
    from backend.api.admin_models import SetAccountStatusRequest
    from backend.api.app import parse_json_object, parse_model

    require_admin(identity)
    body = parse_model(SetAccountStatusRequest, parse_json_object(request.body))
    tenant, now = identity.tenant_id, deps.now
    account, before, token = _load_account(deps, tenant, account_id)
    try:
        updated = account.with_status(body.status, max(now, account.updated_at))
    except InvalidInput as exc:
        raise ApiError(409, "INVALID_TRANSITION", exc.reason, field="status", reason=exc.reason) from None
    if updated is account:
        return ApiResponse(200, {"account": _out(before), "changed": False})
    if updated.status is not AccountStatus.CLOSED:
        raise bad_request("status", f"set {body.status} with PUT /tenants/{tenant}/accounts/{account_id}/trading-state "
                                    "(it also sets the venue's trade suspension); this endpoint closes accounts")
    after = updated.to_dict()
    ops = Commit().add(Update(account_path(tenant, account_id), {"status": after["status"], "updated_at": now}, token))
    if updated.status is AccountStatus.CLOSED:
        owners = list(account.owner_uids)
        _clear_defaults(ops, tenant, account_id, _members(deps, tenant, owners), owners, now)
    ops.add(audit_op(identity, tenant_id=tenant, action="account.status_set", target_type="account",
                     target_id=account_id, before=before, after=after, request_id=request_id_of(request), now=now))
    commit(deps.store, ops)
    return ApiResponse(200, {"account": _out(after), "changed": True})


def list_accounts(request: ApiRequest, identity: Identity, deps: AdminDeps) -> ApiResponse:
    from backend.api.admin_models import AccountsPage, AccountsQuery

    return _page(request, identity, deps, "accounts", AccountsPage, AccountsQuery)


def set_default_account(request: ApiRequest, identity: Identity, deps: AdminDeps, uid: str) -> ApiResponse:
    """PUT /tenants/{t}/members/{uid}/default-account {account_id | null}."""
    from backend.api.admin_members import member_out
    from backend.api.admin_models import SetDefaultAccountRequest
    from backend.api.app import parse_json_object, parse_model

    require_admin(identity)
    _id_param("uid", uid)
    body = parse_model(SetDefaultAccountRequest, parse_json_object(request.body))
    tenant, now = identity.tenant_id, deps.now
    mpath = member_path(tenant, uid)
    paths = [mpath] + ([account_path(tenant, body.account_id)] if body.account_id else [])
    docs = deps.store.get_all(paths)
    before, token = docs[mpath]
    if before is None or not before.get("role"):
        raise ApiError(404, "NOT_FOUND", f"no member {uid} in this tenant", field="uid", reason="not found")
    if body.account_id is not None:
        doc = docs[paths[1]][0]
        account = Account.from_dict(doc) if doc is not None else None
        if account is None or not account.is_owned_by(uid):
            raise bad_request("account_id", f"{body.account_id} is not an account of {uid}")
        if account.status is AccountStatus.CLOSED:
            raise bad_request("account_id", f"{body.account_id} is closed")
    if before.get("default_account_id") == body.account_id:
        return ApiResponse(200, {"member": member_out(before), "changed": False})
    after = {**before, "default_account_id": body.account_id, "updated_at": now}
    ops = Commit().add(Update(mpath, {"default_account_id": body.account_id, "updated_at": now}, token))
    ops.add(audit_op(identity, tenant_id=tenant, action="member.default_account_set", target_type="member",
                     target_id=uid, before=before, after=after, request_id=request_id_of(request), now=now))
    commit(deps.store, ops)
    return ApiResponse(200, {"member": member_out(after), "changed": True})
