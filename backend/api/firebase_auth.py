"""``TokenVerifier`` on firebase-admin: ``auth.verify_id_token`` on a dedicated, lazily created app.

No credentials are needed to verify ID tokens: firebase-admin checks the signature against
Google's public certificates (production) or, when ``FIREBASE_AUTH_EMULATOR_HOST`` is set, accepts
the Auth emulator's unsigned tokens. The app only needs the project id.

Revocation: a mutating call (``fresh=True``) and any call by a token claiming ``tenant_admin``,
``auditor`` or ``platform_operator`` (``auth.ACCOUNT_CHECK_ROLES``) also
read the user record (``auth.get_user``: disabled, ``tokens_valid_after_timestamp``, current custom
claims) — the same check as ``verify_id_token(check_revoked=True)`` plus a claims comparison —
cached per uid for ``cache_seconds`` (default 10 s, ``EXEC_AUTH_STATE_CACHE_SECONDS``). The user
record lookup needs credentials allowed to read users (the function's service account in
production; none on the emulator). If it fails, the call is refused with 503 (fail closed).

A token's verification (signature, issuer, audience, times) is kept until the token's own ``exp``
(``VerifiedTokens``, issue 17: ~0.5 ms of CPU per request otherwise): an app resends one token for
up to an hour, and nothing its verification answered can change before it expires. The account
check above still runs on every call that needs it.
"""
from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from typing import Any, Mapping

from backend.api.auth import AccountState, AccountStateCache, Identity, account_refusal, identity_from_claims, \
    log_refused_token, must_check_account, unauthenticated
from backend.api.http import ApiError
from backend.logs import log_event

APP_NAME = "exec-api"
DEFAULT_CACHE_SECONDS = 10.0


class FirebaseTokenVerifier:
    def __init__(self, project_id: str | None = None, *, check_revoked: bool = False, app: Any = None,
                 cache_seconds: float = DEFAULT_CACHE_SECONDS, cache: AccountStateCache | None = None):
        self.project_id = project_id or os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCLOUD_PROJECT")
        self.check_revoked = check_revoked  # True: check the account on every call, reads included
        self._app = app
        self._lock = threading.Lock()
        self.cache = cache or AccountStateCache(cache_seconds)
        self.verified = VerifiedTokens()

    def _get_app(self) -> Any:
        if self._app is not None:
            return self._app
        import firebase_admin

        with self._lock:
            if self._app is None:
                try:
                    self._app = firebase_admin.get_app(APP_NAME)
                except ValueError:
                    options = {"projectId": self.project_id} if self.project_id else None
                    self._app = firebase_admin.initialize_app(options=options, name=APP_NAME)
            return self._app

    def warm_up(self) -> None:
        """Before the first request (``backend.api.wiring.warm_up``): the Admin SDK app, Google's
        token-signing certificates (``prefetch_signing_certificates``; a failure is logged and the
        first request fetches them as before), the auth client and its HTTP connection — one user
        lookup of a uid that does not exist (what a write's account check costs a new instance's first
        caller otherwise; ``UserNotFoundError`` is the answer)."""
        from firebase_admin import auth

        app = self._get_app()
        try:
            self.prefetch_signing_certificates(app)
        except Exception as exc:  # noqa: BLE001 - a warm-up; the first verification fetches them again
            log_event("api.warm_up_certs_failed", severity="WARNING", error_type=type(exc).__name__,
                      error=str(exc)[:300])
        try:
            auth.get_user("warm-up-probe", app=app)
        except auth.UserNotFoundError:
            pass

    def prefetch_signing_certificates(self, app: Any = None) -> bool:
        """Fetch the ID-token signing certificates into the Admin SDK's own cache: the first
        ``verify_id_token`` of a process fetches them over HTTPS (kept for their ``Cache-Control``
        lifetime by the SDK's cache-control session), so fetched here, after the fork and before the
        first request, that request verifies its token without a network call. False on the Auth
        emulator, whose tokens are unsigned (nothing to fetch). Uses the SDK's per-app client and its
        verifier's transport (private attributes: the SDK has no public prefetch)."""
        from firebase_admin import auth

        client = auth._get_client(app or self._get_app())  # noqa: SLF001 - the client verify_id_token uses
        if getattr(client, "emulated", False):
            return False
        verifier = client._token_verifier  # noqa: SLF001
        response = verifier.request(verifier.id_token_verifier.cert_url, method="GET")
        if response.status != 200:
            raise RuntimeError(f"signing certificates answered HTTP {response.status}")
        return True

    def verify_deferred(self, token: str, *, fresh: bool = False) -> tuple[Identity, "DeferredAccountCheck | None"]:
        """``verify`` with the account lookup (a user lookup over HTTP when the uid's state is not
        cached) started on a thread instead of waited for (issue 17): the caller runs it alongside its
        own reads and calls the answered check before anything is written. None: nothing to wait for."""
        claims, app = self._claims(token)
        uid = self._uid_to_check(claims, fresh)
        state = None if uid is None else self.cache.get(uid)
        if state is not None:
            self._refuse_if(claims, state)
        identity = identity_from_claims(claims)
        if uid is None or state is not None:
            return identity, None
        return identity, DeferredAccountCheck(self, claims, _account_pool().submit(self._account_state, uid, app))

    def _uid_to_check(self, claims: Mapping[str, Any], fresh: bool) -> str | None:
        """The uid whose account state this call checks (None: a read that needs no check)."""
        if not must_check_account(fresh or self.check_revoked, claims):
            return None
        uid = claims.get("uid") or claims.get("sub")
        if not isinstance(uid, str) or not uid:
            raise unauthenticated("token has no subject")
        return uid

    def _claims(self, token: str) -> tuple[dict[str, Any], Any]:
        from firebase_admin import auth

        app = self._get_app()
        known = self.verified.get(token)
        if known is not None:
            return known, app
        try:
            claims = auth.verify_id_token(token, app=app, check_revoked=False)
        except auth.CertificateFetchError as exc:
            log_event("api.auth_unavailable", severity="ERROR", error=type(exc).__name__)
            raise _unavailable() from None
        except auth.ExpiredIdTokenError:
            raise unauthenticated("ID token expired") from None
        except (auth.InvalidIdTokenError, ValueError) as exc:
            raise unauthenticated(f"invalid ID token ({type(exc).__name__})") from None
        self.verified.put(token, claims)
        return claims, app

    @staticmethod
    def _refuse_if(claims: Mapping[str, Any], state: AccountState) -> None:
        error = account_refusal(claims, state)
        if error is not None:
            log_refused_token(claims, error)
            raise error

    def verify(self, token: str, *, fresh: bool = False) -> Identity:
        claims, app = self._claims(token)
        uid = self._uid_to_check(claims, fresh)
        if uid is not None:
            state = self.cache.get(uid)
            if state is None:
                state = self._account_state(uid, app)
                self.cache.put(uid, state)
            self._refuse_if(claims, state)
        return identity_from_claims(claims)

    def _account_state(self, uid: str, app: Any) -> AccountState:
        from firebase_admin import auth, exceptions

        try:
            user = auth.get_user(uid, app=app)
        except auth.UserNotFoundError:
            return AccountState(exists=False)
        except (exceptions.FirebaseError, ValueError, OSError) as exc:
            log_event("api.auth_unavailable", severity="ERROR", error=type(exc).__name__, step="get_user")
            raise _unavailable() from None
        return AccountState(exists=True, disabled=bool(user.disabled),
                            tokens_valid_after_ms=user.tokens_valid_after_timestamp or None,
                            claims=dict(user.custom_claims or {}))


class VerifiedTokens:
    """The claims of ID tokens this process verified, each until its own ``exp`` (issue 17): an app
    sends the same token for up to an hour, and verifying it again (the RS256 signature against
    Google's certificates, parsed from PEM each time) is ~0.5 ms of CPU per request here. A token is
    immutable, so what its verification answered holds until it expires: nothing the signature or
    the claims say can change. Revocation, a disabled account and changed claims are not part of it
    — the account check after it (``AccountStateCache``) decides those, as before. Only a successful
    verification is kept; keyed by the token's SHA-256; bounded (the least recently used goes first);
    thread-safe. ``clock``: seconds since the epoch (tests)."""

    def __init__(self, max_entries: int = 10_000, *, clock: Any = None):
        self._max = max_entries
        self._clock = clock or time.time
        self._items: "OrderedDict[bytes, tuple[dict[str, Any], float]]" = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(token: str) -> bytes:
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()

    def get(self, token: str) -> dict[str, Any] | None:
        """A copy of the claims, or None: never verified here, or expired (``exp`` is in seconds; the
        SDK refuses a token once ``now > exp``, this once ``now >= exp``)."""
        key = self._key(token)
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if self._clock() >= item[1]:
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return dict(item[0])

    def put(self, token: str, claims: Mapping[str, Any]) -> None:
        exp = claims.get("exp")
        if isinstance(exp, bool) or not isinstance(exp, (int, float)):
            return  # no expiry to keep it by: verified every time
        key = self._key(token)
        with self._lock:
            self._items[key] = (dict(claims), float(exp))
            self._items.move_to_end(key)
            while len(self._items) > self._max:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class DeferredAccountCheck:
    """The account check of one request, running on a thread (``verify_deferred``): calling it waits
    for the lookup, caches the state as ``verify`` does and raises the same 401 / 503."""

    def __init__(self, verifier: FirebaseTokenVerifier, claims: Mapping[str, Any], future: Any):
        self._verifier, self._claims, self._future = verifier, claims, future
        self.called = False

    def __call__(self) -> None:
        self.called = True
        state = self._future.result()  # the lookup's own ApiError (503) propagates
        uid = self._claims.get("uid") or self._claims.get("sub")
        self._verifier.cache.put(str(uid), state)
        self._verifier._refuse_if(self._claims, state)


def _account_pool() -> Any:
    from backend.pools import shared_pool

    return shared_pool("auth-lookup", 8)


def _unavailable() -> ApiError:
    return ApiError(503, "AUTH_UNAVAILABLE", "token verification is temporarily unavailable",
                    headers={"Retry-After": "5"})


# ------------------------------------------------------------------ user administration (issue 13)


class FirebaseIdentityAdmin:
    """``backend.api.admin_members.IdentityAdmin`` on firebase-admin's user management API (the Auth
    emulator when ``FIREBASE_AUTH_EMULATOR_HOST`` is set; in production the function's service account
    needs the Firebase Authentication Admin role). Shares the verifier's named app.

    Custom claims are replaced as a whole by ``set_custom_user_claims``: callers pass the complete
    claims (``admin_members`` merges tenant_id/role into the user's current ones). A failure of the
    identity provider is a 503 ``AUTH_UNAVAILABLE`` (the member document is already committed, so
    retrying the same request re-applies the claims)."""

    def __init__(self, project_id: str | None = None, *, app: Any = None, verifier: FirebaseTokenVerifier | None = None):
        self._verifier = verifier or FirebaseTokenVerifier(project_id, app=app)

    def _app(self) -> Any:
        return self._verifier._get_app()

    def _call(self, step: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from firebase_admin import exceptions

        try:
            return fn(*args, app=self._app(), **kwargs)
        except ValueError as exc:  # firebase-admin's own argument checks (an e-mail it refuses, a uid too long)
            raise ApiError(400, "VALIDATION_ERROR", f"the identity provider refused the value ({step})",
                           reason=str(exc)[:200]) from None
        except (exceptions.FirebaseError, OSError) as exc:
            if type(exc).__name__ in ("UserNotFoundError", "EmailAlreadyExistsError", "UidAlreadyExistsError"):
                raise
            log_event("api.auth_unavailable", severity="ERROR", error=type(exc).__name__, step=step)
            raise _unavailable() from None

    @staticmethod
    def _info(user: Any) -> Any:
        from backend.api.admin_members import UserInfo

        return UserInfo(uid=user.uid, email=user.email, claims=dict(user.custom_claims or {}),
                        disabled=bool(user.disabled))

    def get_user(self, uid: str) -> Any:
        from firebase_admin import auth

        try:
            return self._info(self._call("get_user", auth.get_user, uid))
        except auth.UserNotFoundError:
            return None

    def get_user_by_email(self, email: str) -> Any:
        from firebase_admin import auth

        try:
            return self._info(self._call("get_user_by_email", auth.get_user_by_email, email))
        except auth.UserNotFoundError:
            return None

    def create_user(self, email: str) -> Any:
        """A user without a password (the app sends a sign-in or password-reset email to invite them);
        a concurrent create of the same email answers the existing user."""
        from firebase_admin import auth

        try:
            return self._info(self._call("create_user", auth.create_user, email=email, email_verified=False))
        except auth.EmailAlreadyExistsError:
            existing = self.get_user_by_email(email)
            if existing is None:
                raise _unavailable() from None
            return existing

    def set_claims(self, uid: str, claims: Any) -> None:
        from firebase_admin import auth

        self._call("set_custom_user_claims", auth.set_custom_user_claims, uid, dict(claims) or None)
        self._verifier.cache.forget(uid)

    def revoke_refresh_tokens(self, uid: str) -> None:
        from firebase_admin import auth

        self._call("revoke_refresh_tokens", auth.revoke_refresh_tokens, uid)
        self._verifier.cache.forget(uid)
