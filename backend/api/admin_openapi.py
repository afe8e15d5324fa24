"""The OpenAPI paths of the tenant administration API (issue 13): members, tenants, connections,
accounts, ledger corrections and the audit log (``backend.api.openapi`` merges them)."""
from __future__ import annotations

from typing import Any, Callable

REF = "#/components/schemas/{model}"
ID_SCHEMA = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,100}$"}


def _json(model: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": REF.format(model=model)}}}}


def _object(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"type": "object"}}}}


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": ID_SCHEMA, "description": description}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


TENANT = _path_param("tenant_id", "Must be the token's tenant_id.")
LIMIT = {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}
CURSOR = _query("cursor", {"type": "string"}, "next_cursor of the previous page (same filters).")
WHO_WRITES = ("Role tenant_admin of {tenant_id}, active in the tenant (a suspended member: 403 MEMBER_SUSPENDED). "
              "Refused: traders, risk managers, auditors (read-only), other tenants' admins (403), no token (401). "
              "Each change writes one audit entry in the same commit.")
WHO_READS = "Roles tenant_admin and auditor of {tenant_id} (active)."


def paths(error: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    def errors(*codes: str) -> dict[str, Any]:
        return {code: error(code) for code in sorted(set(("400", "401", "403", "500") + codes))}

    def write(summary: str, request: str, ok: dict[str, Any], params: list[dict[str, Any]], description: str = "",
              extra: tuple[str, ...] = ()) -> dict[str, Any]:
        return {"summary": summary, "description": (description + " " + WHO_WRITES).strip(),
                "security": [{"bearerAuth": []}], "parameters": [TENANT, *params],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "$ref": REF.format(model=request)}}}},
                "responses": {**ok, **errors("413", "415", *extra)}}

    def read(summary: str, model: str, params: list[dict[str, Any]], description: str = "") -> dict[str, Any]:
        return {"summary": summary, "description": (description + " " + WHO_READS).strip(),
                "security": [{"bearerAuth": []}], "parameters": [TENANT, *params],
                "responses": {"200": _json(model, "One page."), **errors()}}

    uid = _path_param("uid", "The member's uid.")
    connection = _path_param("connection_id", "A broker connection of the tenant.")
    account = _path_param("account_id", "An account of the tenant.")
    member_ok = {"200": _object("{member, changed}: the member document as stored.")}
    return {
        "/tenants": {"post": {
            "summary": "Create a tenant and its first admin (role platform_operator)",
            "description": "Only a platform_operator token (claims set out of band; no tenant_id). Writes the tenant "
                           "document (admin roster), the admin's member document and the first audit entry in one "
                           "commit, then sets the admin's claims (tenant_id, role tenant_admin): they are in the "
                           "admin's next ID token. 409 TENANT_EXISTS; 409 MEMBER_OF_ANOTHER_TENANT.",
            "security": [{"bearerAuth": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "$ref": REF.format(model="CreateTenantRequest")}}}},
            "responses": {"201": _object("{tenant, admin}."), **errors("404", "409", "413", "415")}}},
        "/tenants/{tenant_id}/members": {
            "get": read("List the tenant's members, by uid", "MembersPage", [
                _query("role", {"type": "string", "enum": ["trader", "tenant_admin", "auditor"]}, "Equality."),
                _query("status", {"type": "string", "enum": ["active", "suspended"]}, "Equality."),
                _query("limit", LIMIT, "Page size."), CURSOR]),
            "post": write("Add a user (by uid or e-mail) to the tenant with a role", "AddMemberRequest",
                          {"201": _object("{member, created: true}."),
                           "200": _object("Already a member with this role (claims re-applied).")}, [],
                          "Sets the custom claims tenant_id and role (in the user's next ID token: the app calls "
                          "getIdToken(true)). create_user with an e-mail invites a new user. 404 USER_NOT_FOUND; "
                          "409 MEMBER_EXISTS (another role: use PUT …/role) or MEMBER_OF_ANOTHER_TENANT.",
                          ("404", "409"))},
        "/tenants/{tenant_id}/members/{uid}/role": {"put": write(
            "Set a member's role, or remove the member (role null)", "SetRoleRequest", member_ok, [uid],
            "Claims follow the member document; a token issued before the change answers 401 CLAIMS_CHANGED on "
            "mutating and tenant-wide calls until the app refreshes it. Removal also revokes the refresh tokens. "
            "409 LAST_ADMIN: the tenant's last active admin cannot be demoted or removed.", ("404", "409"))},
        "/tenants/{tenant_id}/members/{uid}/status": {"put": write(
            "Suspend or reactivate a member", "SetMemberStatusRequest", member_ok, [uid],
            "Suspension revokes the member's refresh tokens (their ID token is refused at once, 401 TOKEN_REVOKED; "
            "after a new sign-in every admin call and every order is refused: MEMBER_SUSPENDED); their open groups "
            "still finish or roll back. 409 LAST_ADMIN.", ("404", "409"))},
        "/tenants/{tenant_id}/members/{uid}/default-account": {"put": write(
            "Set (or clear) a member's default account", "SetDefaultAccountRequest", member_ok, [uid],
            "An account the member owns and that is not closed.", ("404",))},
        "/tenants/{tenant_id}/connections": {
            "get": read("List the tenant's broker connections", "ConnectionsPage",
                        [_query("limit", LIMIT, "Page size."), CURSOR],
                        "Credentials appear only as their reference (credentials_ref)."),
            "post": write("Create a broker connection", "CreateConnectionRequest",
                          {"201": _object("{connection, credentials_written}.")}, [],
                          "credentials (optional) are written to the secret sink (EXEC_SECRET_SINK: a local file or a "
                          "Secret Manager version); only the reference is stored and returned. 409 CONNECTION_EXISTS.",
                          ("409", "503"))},
        "/tenants/{tenant_id}/connections/{connection_id}": {"patch": write(
            "Update a broker connection (environment, base_url, credentials_ref, credentials rotation)",
            "UpdateConnectionRequest", {"200": _object("{connection, changed}.")}, [connection],
            "The venue never changes.", ("404", "409", "503"))},
        "/tenants/{tenant_id}/accounts": {
            "get": read("List the tenant's accounts", "AccountsPage", [
                _query("owner_uid", ID_SCHEMA, "Accounts this member owns."),
                _query("status", {"type": "string", "enum": ["active", "reduce_only", "halted", "closed"]},
                       "Equality (not with owner_uid)."),
                _query("limit", LIMIT, "Page size."), CURSOR]),
            "post": write("Create an account on a connection, owned by members", "CreateAccountRequest",
                          {"201": _object("{account}.")}, [],
                          "The venue's account-id shape and asset classes are checked against the connection. "
                          "409 ACCOUNT_EXISTS (ids are never reused).", ("409",))},
        "/tenants/{tenant_id}/accounts/{account_id}": {"patch": write(
            "Change an account's owners or asset classes", "UpdateAccountRequest",
            {"200": _object("{account, changed}.")}, [account],
            "A removed owner whose default it was loses it as default in the same commit.", ("404", "409"))},
        "/tenants/{tenant_id}/accounts/{account_id}/status": {"put": write(
            "Close an account (status closed, final)", "SetAccountStatusRequest",
            {"200": _object("{account, changed}.")}, [account],
            "The account's lifecycle: closed is final (a closed account answers 409 INVALID_TRANSITION to any other "
            "status) and clears the owners' default account. active / reduce_only / halted are set with PUT "
            "/tenants/{tenant_id}/accounts/{account_id}/trading-state (which also sets the venue's trade "
            "suspension); here they are a 400.", ("404", "409"))},
        "/tenants/{tenant_id}/ledger/{ledger_id}/corrections": {"post": {
            **write("Append a correction of a ledger row (the original stays immutable)", "LedgerCorrectionRequest",
                    {"201": _object("{correction}: the new ledger row (kind correction, corrects = ledger_id)."),
                     "200": _object("Replay of the correction of this Idempotency-Key.")},
                    [_path_param("ledger_id", "The row to correct."),
                     {"name": "Idempotency-Key", "in": "header", "required": False, "schema": ID_SCHEMA,
                      "description": "The same key answers the stored correction (200)."}],
                    "Shows in GET /tenants/{tenant_id}/ledger (status=correction) and its CSV export (columns "
                    "corrects, correction_reason, correction_fields).", ("404", "409"))}},
        "/tenants/{tenant_id}/audit-log": {"get": read(
            "The tenant's audit log, newest first", "AuditPage", [
                _query("action", {"type": "string", "pattern": "^[a-z_.]+$"}, "e.g. member.role_set."),
                _query("actor_uid", ID_SCHEMA, "Who acted."),
                _query("target", {"type": "string"}, "<target_type>/<id>, e.g. member/uid123."),
                _query("from", {"type": "string", "format": "date"}, "First UTC day (inclusive)."),
                _query("to", {"type": "string", "format": "date"}, "Last UTC day (inclusive)."),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}, "Page size."),
                CURSOR],
            "Append-only (firestore.rules: no client writes). At most one of action, actor_uid, target (each has an "
            "index); others: 400 UNSUPPORTED_FILTER.")},
    }
