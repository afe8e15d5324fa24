"""Identity: the ``TokenVerifier`` port, the verified ``Identity`` and bearer-header parsing.

The tenant and the role come only from the verified token's custom claims (``tenant_id``,
``role``), never from a request body. A token without a usable tenant or role is authenticated
but not authorized (403).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol

from backend.api.http import ApiError
from backend.domain.errors import InvalidInput
from backend.execution.intent import ExecutionContext, validate_id

ROLES = frozenset({"trader", "tenant_admin"})


@dataclass(frozen=True)
class Identity:
    uid: str
    tenant_id: str
    role: str

    def context(self) -> ExecutionContext:
        return ExecutionContext(tenant_id=self.tenant_id, uid=self.uid, role=self.role)

    @property
    def is_admin(self) -> bool:
        return self.role == "tenant_admin"


class TokenVerifier(Protocol):
    def verify(self, token: str) -> Identity:
        """Return the verified identity, or raise ``ApiError`` (401 invalid token, 403 no tenant/role)."""
        ...


def unauthenticated(reason: str) -> ApiError:
    return ApiError(401, "UNAUTHENTICATED", "a valid Firebase ID token is required", reason=reason,
                    headers={"WWW-Authenticate": 'Bearer realm="exec-api"'})


def forbidden(reason: str, field: str | None = None) -> ApiError:
    return ApiError(403, "FORBIDDEN", "not allowed for this identity", field=field, reason=reason)


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or a 401."""
    if authorization is None or not authorization.strip():
        raise unauthenticated("missing Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthenticated("Authorization must be 'Bearer <Firebase ID token>'")
    if len(token) > 8192 or any(c.isspace() for c in token):
        raise unauthenticated("malformed bearer token")
    return token


def identity_from_claims(claims: Mapping[str, Any]) -> Identity:
    """Build the identity from verified claims: ``uid`` (or ``sub``), ``tenant_id`` and ``role``."""
    uid = claims.get("uid") or claims.get("sub")
    if not isinstance(uid, str) or not uid:
        raise unauthenticated("token has no subject")
    tenant = claims.get("tenant_id")
    if tenant is None:
        raise forbidden("token has no tenant_id claim")
    role = claims.get("role")
    if role is None:
        raise forbidden("token has no role claim")
    if not isinstance(role, str) or role not in ROLES:
        raise forbidden(f"role claim must be one of {sorted(ROLES)}")
    try:
        validate_id(tenant, "tenant_id")
        validate_id(uid, "uid")
    except InvalidInput as exc:
        raise forbidden(f"{exc.field} claim is not usable: {exc.reason}") from None
    return Identity(uid=uid, tenant_id=tenant, role=role)
