"""Identity: the ``TokenVerifier`` port, the verified ``Identity`` and bearer-header parsing.

The tenant and the role come only from the verified token's custom claims (``tenant_id``,
``role``), never from a request body. A token without a usable tenant or role is authenticated
but not authorized (403).
"""
from __future__ import annotations

import re

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

from backend.api.http import ApiError
from backend.domain.errors import InvalidInput
from backend.execution.intent import ExecutionContext, validate_id

# risk_manager: issues rpm approvals (POST /risk/approvals) for traders' groups; see backend/risk/approvals.py
# auditor (issue 13): reads the ledger, metrics, groups, members and the audit log; refused on every write.
# platform_operator (issue 13): set out of band (never by the API); creates tenants and their first admin
# (POST /admin/tenants) and nothing else. Its token needs no tenant_id claim.
ROLES = frozenset({"trader", "tenant_admin", "risk_manager", "auditor", "platform_operator"})
TENANT_ROLES = ("trader", "tenant_admin", "auditor")  # what a tenant admin may grant (backend.api.admin_members)
PLATFORM_OPERATOR = "platform_operator"
AUDITOR = "auditor"


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

    @property
    def can_read_tenant(self) -> bool:
        """Tenant-wide reads (ledger, metrics, groups, members, audit log): tenant_admin and auditor."""
        return self.role in ("tenant_admin", AUDITOR)

    @property
    def is_read_only(self) -> bool:
        """The auditor changes nothing: every write endpoint refuses it (``ApiApp.handle``)."""
        return self.role == AUDITOR

    @property
    def is_platform_operator(self) -> bool:
        return self.role == PLATFORM_OPERATOR


class TokenVerifier(Protocol):
    def verify(self, token: str, *, fresh: bool = False) -> Identity:
        """Return the verified identity, or raise ``ApiError`` (401 invalid token, 403 no tenant/role).
        ``fresh``: the call mutates (or uses admin power): the account's current state is checked too
        (401 ``USER_DISABLED`` / ``TOKEN_REVOKED`` / ``CLAIMS_CHANGED``, see ``account_refusal``)."""
        ...


def unauthenticated(reason: str) -> ApiError:
    return ApiError(401, "UNAUTHENTICATED", "a valid Firebase ID token is required", reason=reason,
                    headers={"WWW-Authenticate": 'Bearer realm="exec-api"'})


def forbidden(reason: str, field: str | None = None) -> ApiError:
    return ApiError(403, "FORBIDDEN", "not allowed for this identity", field=field, reason=reason)


_WHITESPACE = re.compile(r"\s")


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or a 401."""
    if authorization is None or not authorization.strip():
        raise unauthenticated("missing Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthenticated("Authorization must be 'Bearer <Firebase ID token>'")
    if len(token) > 8192 or _WHITESPACE.search(token):
        raise unauthenticated("malformed bearer token")
    return token


def identity_from_claims(claims: Mapping[str, Any]) -> Identity:
    """Build the identity from verified claims: ``uid`` (or ``sub``), ``tenant_id`` and ``role``."""
    uid = claims.get("uid") or claims.get("sub")
    if not isinstance(uid, str) or not uid:
        raise unauthenticated("token has no subject")
    role = claims.get("role")
    tenant = claims.get("tenant_id")
    if role == PLATFORM_OPERATOR and tenant is None:
        # the operator acts across tenants and only on /admin/tenants; "" never names a tenant
        # (ApiApp.handle refuses this identity on every other route before a handler runs)
        try:
            validate_id(uid, "uid")
        except InvalidInput as exc:
            raise forbidden(f"{exc.field} claim is not usable: {exc.reason}") from None
        return Identity(uid=uid, tenant_id="", role=role)
    if tenant is None:
        raise forbidden("token has no tenant_id claim")
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


# ------------------------------------------------------------------ revocation and suspension
#
# A verified signature proves who signed a token, not that the account may still act: a user who
# is disabled, whose refresh tokens were revoked (suspension, demotion) or whose tenant/role claims
# changed keeps a valid-looking ID token for up to an hour. Every mutating call (any POST) and
# every call by a token claiming ``tenant_admin`` therefore also checks the account's current
# state at the identity provider (Firebase: the user record). The state is cached per uid for a
# few seconds (``EXEC_AUTH_STATE_CACHE_SECONDS``, default 10): that is the window in which a
# suspension may not yet be seen by a warm instance.

ACCOUNT_CHECK_ROLES = frozenset({"tenant_admin", AUDITOR, PLATFORM_OPERATOR})
_CHECKED_CLAIMS = ("tenant_id", "role")


@dataclass(frozen=True)
class AccountState:
    """The identity provider's current view of a user (Firebase: ``UserRecord``)."""

    exists: bool = True
    disabled: bool = False
    tokens_valid_after_ms: int | None = None  # tokens issued (``iat``) before this are revoked
    claims: Mapping[str, Any] = field(default_factory=dict)  # the current custom claims


def must_check_account(fresh: bool, claims: Mapping[str, Any]) -> bool:
    """Mutating calls (``fresh``) and every call made with admin power check the account state."""
    return fresh or claims.get("role") in ACCOUNT_CHECK_ROLES


def account_refusal(claims: Mapping[str, Any], state: AccountState) -> ApiError | None:
    """A 401 for a token the account no longer backs, else None. Codes: ``USER_DISABLED`` (disabled
    or deleted), ``TOKEN_REVOKED`` (issued before the refresh tokens were revoked),
    ``CLAIMS_CHANGED`` (tenant or role differ from the user's current claims: sign in again)."""
    if not state.exists:
        return _refused("USER_DISABLED", "the user no longer exists")
    if state.disabled:
        return _refused("USER_DISABLED", "the user is disabled")
    if state.tokens_valid_after_ms is not None:
        iat = claims.get("iat")
        if not isinstance(iat, (int, float)) or iat * 1000 < state.tokens_valid_after_ms:
            return _refused("TOKEN_REVOKED", "the token was issued before the user's sessions were revoked")
    current = state.claims or {}
    for name in _CHECKED_CLAIMS:
        if claims.get(name) != current.get(name):
            return _refused("CLAIMS_CHANGED", f"the {name} claim changed since the token was issued; sign in again")
    return None


def _refused(code: str, reason: str) -> ApiError:
    return ApiError(401, code, "this token may no longer be used", reason=reason,
                    headers={"WWW-Authenticate": 'Bearer realm="exec-api", error="invalid_token"'})


def log_refused_token(claims: Mapping[str, Any], error: ApiError) -> None:
    """The alert a revoked/disabled/demoted identity's attempt raises (see docs/RUNBOOK.md)."""
    from backend.logs import log_event

    log_event("api.revoked_token_used", severity="WARNING", code=error.code, reason=error.reason,
              uid=str(claims.get("uid") or claims.get("sub") or "")[:128],
              claimed_tenant_id=str(claims.get("tenant_id") or "")[:128],
              claimed_role=str(claims.get("role") or "")[:64])


class AccountStateCache:
    """uid → (AccountState, fetched at) for ``ttl_seconds`` (0: no caching), bounded, thread-safe."""

    def __init__(self, ttl_seconds: float, *, clock: Callable[[], float] | None = None, max_entries: int = 10_000):
        import threading
        import time

        self.ttl_seconds = float(ttl_seconds)
        self._clock = clock or time.monotonic
        self._max = max_entries
        self._items: dict[str, tuple[AccountState, float]] = {}
        self._lock = threading.Lock()

    def get(self, uid: str) -> AccountState | None:
        if self.ttl_seconds <= 0:
            return None
        with self._lock:
            item = self._items.get(uid)
            if item is None:
                return None
            if self._clock() - item[1] >= self.ttl_seconds:
                del self._items[uid]
                return None
            return item[0]

    def put(self, uid: str, state: AccountState) -> None:
        if self.ttl_seconds <= 0:
            return
        with self._lock:
            if len(self._items) >= self._max:
                now = self._clock()
                for key in [k for k, (_, at) in self._items.items() if now - at >= self.ttl_seconds]:
                    del self._items[key]
                if len(self._items) >= self._max:
                    self._items.pop(next(iter(self._items)))
            self._items[uid] = (state, self._clock())

    def forget(self, uid: str) -> None:
        """Drop ``uid`` at once (the admin API changed its claims or revoked its sessions in this process)."""
        with self._lock:
            self._items.pop(uid, None)
