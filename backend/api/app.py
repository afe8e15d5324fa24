"""The request handler: routing, authentication, parsing and the HTTP mapping of core outcomes.

Handlers translate only: JSON → pydantic model → core command (``OrderIntent``, the multi-leg
request, a cost-checked signal) → engine → response. Status codes:

=====  ==================================================================================
200    GET success; an idempotent replay (header ``Idempotent-Replayed: true``); a signal
       that did not execute (WAIT or downgraded by the cost check)
201    a new outcome recorded: placed, downgraded, rejected (a coded decision), dry_run;
       a new multi-leg group
202    pending: accepted, outcome not known yet (another request holds the intent; a group
       still working, continued by the sweeper); retry with the same Idempotency-Key
400    malformed JSON, a field error (``field`` + ``reason``), an unusable header/query
401    no / malformed / invalid bearer token; on a POST or a ``/tenants/…`` read also a token the
       account no longer backs: ``USER_DISABLED``, ``TOKEN_REVOKED``, ``CLAIMS_CHANGED``
       (backend.api.auth, account state cached ≤ ``EXEC_AUTH_STATE_CACHE_SECONDS``)
403    token without tenant or role; a tenant/uid in the body that is not the caller's;
       ``/tenants/{tenant_id}/…`` by anyone but a tenant_admin of that tenant (reads: or an
       auditor); a suspended member on ``/tenants/…`` (``MEMBER_SUSPENDED``); an auditor on any
       write; a platform_operator anywhere but ``PLATFORM_ROUTES`` (issue 13);
       ``ACCOUNT_NOT_OWNED``: ``/accounts/{id}…`` of another user's or an unknown account
404    unknown route; a group that does not exist or is another user's (one answer for both:
       the status never tells a colleague that an id exists)
405    known route, other method (``Allow`` header)
409    the caller's own Idempotency-Key (or intent_id) reused with a different body. Ids a
       client chooses are per user (``k-``/``g-`` + sha256(tenant, uid, id)): a colleague's
       same id is their own intent, never this user's. Administration (issue 13): ``LAST_ADMIN``,
       ``CONCURRENT_CHANGE``, ``*_EXISTS``, ``MEMBER_OF_ANOTHER_TENANT``, ``INVALID_TRANSITION``
413    body over 64 KB
415    a body that is declared as something other than JSON (POST /portfolio/tax-lots/reconcile also
       takes text/csv)
429    ``RATE_LIMITED``: the caller's or the tenant's order-request limit (``Retry-After``;
       nothing written; backend.api.rate_limit); or pending because the broker is rate limiting
500    an unexpected exception: a generic body and a structured ERROR log line
502    ``VENUE_ERROR``: an account read (``/accounts/{id}/positions|balance``) the venue refused
503    pending because the broker is unavailable (``Retry-After``); an account read whose venue is
       down or cannot be built (``BROKER_UNAVAILABLE``, ``VENUE_UNAVAILABLE``, ``Retry-After``)
=====  ==================================================================================

Nothing is written for a request refused with a 4xx: every check above runs before the engine.

Exports (``/portfolio/tax-lots/export``, ``/tenants/{tenant_id}/ledger?format=csv``) answer with a
``StreamingResponse``: every check runs before it is returned; a failure while streaming is logged
(``api.stream_error``) and aborts the transfer.
"""
from __future__ import annotations

import json
import math
import re
import time
import traceback
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, replace as _replace
from decimal import Decimal
from enum import Enum
from typing import Any, Callable, Mapping

from backend.api import rate_limit
from backend.api.auth import Identity, TokenVerifier, bearer_token, forbidden
from backend.api.http import MAX_BODY_BYTES, ApiError, ApiRequest, ApiResponse, StreamingResponse, bad_request
from backend.api.idempotency import KEY_HEADER, check_group, check_intent_record, derived_id, parse_key, \
    resolve_intent_id
from backend.domain.errors import InvalidInput, StoreContended
from backend.domain.wire import encode as encode_decimals
from backend.domain.ids import ID
from backend.logs import log_event

SERVICE = "exec-api"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PLATFORM_ROUTES = frozenset({("POST", "/tenants"),  # the only routes a platform_operator token may call
                             ("PUT", "/ops/trading-state")})  # issue 13: the operator's kill switch
MAX_JSON_DEPTH = 32
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    name: str
    handler: str
    auth: bool = True
    media: tuple[str, ...] = ()  # body media types a POST accepts besides JSON; such a body may come with a query


def _route(method: str, path: str, handler: str, auth: bool = True, media: tuple[str, ...] = ()) -> Route:
    """``<name>`` or ``{name}`` (the OpenAPI spelling, kept as the route's name) is one path segment."""
    regex = "^" + re.sub(r"<(\w+)>|\{(\w+)\}", lambda m: f"(?P<{m.group(1) or m.group(2)}>[^/]+)", path) + "$"
    return Route(method, re.compile(regex), path, handler, auth, media)


ROUTES: tuple[Route, ...] = (
    _route("POST", "/execute", "_execute"),
    _route("POST", "/execute/multi-leg", "_execute_multi_leg"),
    _route("POST", "/signals", "_signals"),
    _route("GET", "/groups", "_list_groups"),
    _route("GET", "/groups/<group_id>", "_get_group"),
    _route("GET", "/portfolio/history", "_history"),
    _route("GET", "/portfolio/tax-lots/export", "_tax_export"),
    _route("POST", "/portfolio/tax-lots/reconcile", "_tax_reconcile", media=("text/csv",)),
    _route("POST", "/portfolio/tax-lots/election", "_tax_election"),
    _route("POST", "/tenants/{tenant_id}/corporate-actions", "_corporate_action"),
    _route("GET", "/tenants/{tenant_id}/ledger", "_tenant_ledger"),
    _route("GET", "/tenants/{tenant_id}/metrics", "_tenant_metrics"),
    _route("POST", "/risk/approvals", "_risk_approvals"),
    # --- risk admin (issue 13): backend/api/risk_settings.py, backend/api/reconciliation_api.py
    _route("GET", "/tenants/{tenant_id}/risk/limits", "_risk_admin"),
    _route("PUT", "/tenants/{tenant_id}/risk/limits", "_risk_admin"),
    _route("GET", "/tenants/{tenant_id}/accounts/{account_id}/limits", "_risk_admin"),
    _route("PUT", "/tenants/{tenant_id}/accounts/{account_id}/limits", "_risk_admin"),
    _route("PUT", "/tenants/{tenant_id}/trading-state", "_risk_admin"),
    _route("PUT", "/tenants/{tenant_id}/accounts/{account_id}/trading-state", "_risk_admin"),
    _route("PUT", "/ops/trading-state", "_risk_admin"),
    _route("POST", "/tenants/{tenant_id}/reconciliation", "_reconciliation"),
    _route("GET", "/tenants/{tenant_id}/reconciliation", "_reconciliation"),
    # --- tenant administration (issue 13): backend/api/admin_members.py, admin_accounts.py, admin_ledger.py, audit.py
    _route("POST", "/tenants", "_admin_create_tenant"),
    _route("GET", "/tenants/{tenant_id}/members", "_admin_list_members"),
    _route("POST", "/tenants/{tenant_id}/members", "_admin_add_member"),
    _route("PUT", "/tenants/{tenant_id}/members/{uid}/role", "_admin_set_role"),
    _route("PUT", "/tenants/{tenant_id}/members/{uid}/status", "_admin_set_member_status"),
    _route("PUT", "/tenants/{tenant_id}/members/{uid}/default-account", "_admin_set_default_account"),
    _route("GET", "/tenants/{tenant_id}/connections", "_admin_list_connections"),
    _route("POST", "/tenants/{tenant_id}/connections", "_admin_create_connection"),
    _route("PATCH", "/tenants/{tenant_id}/connections/{connection_id}", "_admin_update_connection"),
    _route("GET", "/tenants/{tenant_id}/accounts", "_admin_list_accounts"),
    _route("POST", "/tenants/{tenant_id}/accounts", "_admin_create_account"),
    _route("PATCH", "/tenants/{tenant_id}/accounts/{account_id}", "_admin_update_account"),
    _route("PUT", "/tenants/{tenant_id}/accounts/{account_id}/status", "_admin_set_account_status"),
    _route("POST", "/tenants/{tenant_id}/ledger/{ledger_id}/corrections", "_admin_ledger_correction"),
    _route("GET", "/tenants/{tenant_id}/audit-log", "_admin_audit_log"),
    # --- the caller's accounts, positions and balances (issue 19 item 9): backend/api/accounts_api.py
    _route("GET", "/accounts", "_accounts_list"),
    _route("GET", "/accounts/{account_id}", "_accounts_get"),
    _route("GET", "/accounts/{account_id}/positions", "_accounts_positions"),
    _route("GET", "/accounts/{account_id}/balance", "_accounts_balance"),
    # --- the caller's orders: list, read, cancel, replace (issue 15 item 6): backend/api/orders_api.py
    _route("GET", "/orders", "_orders_list"),
    _route("GET", "/orders/{intent_id}", "_orders_get"),
    _route("DELETE", "/orders/{intent_id}", "_orders_cancel"),
    _route("PATCH", "/orders/{intent_id}", "_orders_replace"),
    # --- a FILLED group leg's protective stop: cancel, move (issue 15): backend/api/group_stops_api.py
    _route("DELETE", "/groups/{group_id}/legs/{leg_id}/stop", "_group_stop_cancel"),
    _route("PATCH", "/groups/{group_id}/legs/{leg_id}/stop", "_group_stop_replace"),
    _route("GET", "/healthz", "_healthz", auth=False),
    _route("GET", "/openapi.json", "_openapi", auth=False),
)


def normalize_path(path: str) -> str:
    """``/api/execute/`` (a Hosting rewrite, a trailing slash) → ``/execute``."""
    path = path or "/"
    if path == "/api" or path.startswith("/api/"):
        path = path[4:] or "/"
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path


def match(method: str, path: str) -> tuple[Route, dict[str, str]]:
    allowed: list[str] = []
    for route in ROUTES:
        found = route.pattern.match(path)
        if found is None:
            continue
        if route.method == method:
            return route, found.groupdict()
        allowed.append(route.method)
    if allowed:
        raise ApiError(405, "METHOD_NOT_ALLOWED", f"{method} is not allowed on {path}",
                       reason=f"allowed: {', '.join(sorted(set(allowed)))}",
                       headers={"Allow": ", ".join(sorted(set(allowed)))})
    raise ApiError(404, "NOT_FOUND", f"no route for {method} {path}")


# ----------------------------------------------------------------------------------- parsing


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key[:60]!r}")
        out[key] = value
    return out


def _depth_ok(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Strict JSON: UTF-8, numbers with a fraction or exponent become Decimal (never float), no
    NaN/Infinity, no duplicate keys, nesting at most 32 deep, and an object at the top."""
    if not body or not body.strip():
        raise bad_request(None, "the request body is empty; expected a JSON object", code="INVALID_JSON")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request(None, "the request body is not UTF-8", code="INVALID_JSON") from None
    try:
        data = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant,
                          object_pairs_hook=_no_duplicate_keys)
    except RecursionError:
        raise bad_request(None, f"JSON nested deeper than {MAX_JSON_DEPTH} levels", code="INVALID_JSON") from None
    except ValueError as exc:
        raise bad_request(None, f"invalid JSON: {str(exc)[:200]}", code="INVALID_JSON") from None
    if not _depth_ok(data, MAX_JSON_DEPTH):
        raise bad_request(None, f"JSON nested deeper than {MAX_JSON_DEPTH} levels", code="INVALID_JSON")
    if not isinstance(data, dict):
        raise bad_request(None, f"expected a JSON object, got {type(data).__name__}", code="INVALID_JSON")
    return data


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + (str(part) if part != "" else '""')  # an empty key is named too
    return out


def _field_error(err: Mapping[str, Any]) -> dict[str, Any]:
    """One pydantic error → ``{field, reason}`` (a model validator's ``"field: reason"`` is split)."""
    field = _loc(tuple(err.get("loc") or ()))[:200]  # an unknown key is the client's text: bounded
    reason = str(err.get("msg") or "invalid")[:500]
    kind = err.get("type")
    for prefix in ("Value error, ", "Assertion failed, "):
        if reason.startswith(prefix):
            reason = reason[len(prefix):]
    if not field:
        head, sep, tail = reason.partition(": ")
        if sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\[\]]*", head):
            field, reason = head, tail
    if kind == "extra_forbidden":
        reason = "unknown field"
    elif kind == "missing":
        reason = "field required"
    return {"field": field or None, "reason": reason}


MAX_FIELD_ERRORS = 50


def validation_error(exc: Any) -> ApiError:
    """A pydantic ValidationError → 400 listing every field error in ``errors`` (at most 50);
    ``field``/``reason`` are the first one's, as before."""
    errors: list[dict[str, Any]] = []
    for err in exc.errors(include_url=False, include_input=False):
        item = _field_error(err)
        if item not in errors:
            errors.append(item)
        if len(errors) == MAX_FIELD_ERRORS:
            break
    first = errors[0] if errors else {"field": None, "reason": "invalid"}
    field, reason = first["field"], first["reason"]
    count = len(errors)
    message = f"{field}: {reason}" if field else reason
    if count > 1:
        message += f" (and {count - 1} more error{'s' if count > 2 else ''})"
    return ApiError(400, "VALIDATION_ERROR", message, field=field, reason=reason, errors=errors)


def parse_model(model: Any, data: Mapping[str, Any]) -> Any:
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def invalid_input(exc: InvalidInput, prefix: str = "") -> ApiError:
    field = f"{prefix}{exc.field}" if exc.field else (prefix.rstrip(".") or None)
    return ApiError(400, "VALIDATION_ERROR", f"{field}: {exc.reason}" if field else exc.reason,
                    field=field, reason=exc.reason)


# ------------------------------------------------------------------------------- the handler


def _retry_after_header(seconds: Any, default: int) -> str:
    try:
        value = float(seconds) if seconds is not None else float(default)
    except (TypeError, ValueError):
        value = float(default)
    if not math.isfinite(value):
        value = float(default)
    return str(min(max(int(math.ceil(value)), 1), 3600))


# The request's rate-counter writes (``unit_of_work.SideWrites``) for the engine call of the handler
# (``_run_intent``): set by ``handle`` around the handler, never shared between requests.
_SIDE_WRITES: ContextVar[Any] = ContextVar("side_writes", default=None)
# The request's deferred shared rate check (``rate_limit.DeferredRateCheck``) for that same engine call.
_RATE_CHECK: ContextVar[Any] = ContextVar("rate_check", default=None)
# ... and its account check still running (``firebase_auth.DeferredAccountCheck``), for the same call.
_IDENTITY_CHECK: ContextVar[Any] = ContextVar("identity_check", default=None)


class ApiApp:
    """``handle(ApiRequest) -> ApiResponse``. Dependencies are factories so that a health check or
    an unauthenticated request never builds the engine (cold starts)."""

    def __init__(self, *, engine: Callable[[], Any], verifier: Callable[[], TokenVerifier],
                 history: Callable[[], Any] | None = None, rate_limiter: Callable[[], Any] | None = None,
                 identity_admin: Callable[[], Any] | None = None, secret_sink: Callable[[], Any] | None = None):
        self._engine_factory = engine
        self._verifier_factory = verifier
        self._history_factory = history
        self._rate_limiter_factory = rate_limiter  # backend.risk.rate_limit.RateLimiter; None: no limit
        # issue 13: user management (None: Firebase Admin on the verifier's app) and the secret sink
        # (None: EXEC_SECRET_SINK); both built on first use
        self._identity_admin_factory = identity_admin
        self._secret_sink_factory = secret_sink
        self._admin_cache: dict[str, Any] = {}

    @classmethod
    def with_instances(cls, *, engine: Any, verifier: TokenVerifier, history: Any = None,
                       rate_limiter: Any = None, identity_admin: Any = None, secret_sink: Any = None) -> "ApiApp":
        return cls(engine=lambda: engine, verifier=lambda: verifier,
                   history=(lambda: history) if history is not None else None,
                   rate_limiter=(lambda: rate_limiter) if rate_limiter is not None else None,
                   identity_admin=(lambda: identity_admin) if identity_admin is not None else None,
                   secret_sink=(lambda: secret_sink) if secret_sink is not None else None)

    # --- entry point -----------------------------------------------------------------------
    def handle(self, request: ApiRequest) -> ApiResponse:
        started = time.monotonic()
        rid = request.header("X-Request-Id")
        request_id = rid if rid and _REQUEST_ID_RE.fullmatch(rid) else uuid.uuid4().hex
        if rid != request_id:  # handlers (the audit log) read the id the response will carry
            request = _replace(request, headers={**request.headers, "x-request-id": request_id})
        path = normalize_path(request.path)
        route_name = path[:200]
        identity: Identity | None = None
        limiter: Any = None
        side: Any = None  # the rate counters' writes, riding the engine's first commit (issue 17)
        rate_check: Any = None  # the shared counts' read, riding the engine's batched read (issue 17)
        identity_check: Any = None  # the account lookup, running alongside the engine's read (issue 17)
        try:
            route, params = match(request.method, path)
            route_name = route.name
            writes = route.method in WRITE_METHODS
            if writes and len(request.body) > MAX_BODY_BYTES:
                raise ApiError(413, "PAYLOAD_TOO_LARGE", f"the body exceeds {MAX_BODY_BYTES} bytes",
                               reason=f"{len(request.body)} bytes")
            if route.auth:
                # mutating calls and tenant-admin reads also check revocation (backend.api.auth)
                fresh = writes or route.name.startswith("/tenants")
                verifier = self._verifier_factory()
                deferred_verify = getattr(verifier, "verify_deferred", None)
                if route.handler == "_execute" and deferred_verify is not None:
                    # issue 17: the account lookup runs alongside the engine's batched read; the engine
                    # calls it before anything is written (ExecutionContext.identity_check)
                    identity, identity_check = deferred_verify(bearer_token(request.header("Authorization")),
                                                               fresh=fresh)
                else:
                    identity = verifier.verify(bearer_token(request.header("Authorization")), fresh=fresh)
                _check_role_for_route(identity, route)
                if route.name.startswith("/tenants/"):  # every tenant-wide read and admin write (issue 13)
                    from backend.api.admin_members import require_active_actor

                    require_active_actor(self._engine().store, identity)  # a suspended member: 403
                if writes:
                    media = _require_json(request, route.media)
                    if request.query and media not in route.media:
                        name = sorted(request.query)[0]
                        raise bad_request(name, "this endpoint takes no query parameters")
                    # order requests: every POST but administration, and a cancel / replace (issue 15: they
                    # reach a venue too)
                    limited = (route.method == "POST" and not route.handler.startswith("_admin_")) \
                        or route.handler in ("_orders_cancel", "_orders_replace", "_group_stop_cancel",
                                             "_group_stop_replace")
                    limiter = self._rate_limiter_factory() if self._rate_limiter_factory and limited else None
                    if limiter is not None:  # 429 + Retry-After before anything is parsed or written
                        # POST /execute: shared counts due a read ride the engine's batched read (issue 17)
                        rate_check = rate_limit.admit(limiter, identity.tenant_id, identity.uid,
                                                      defer=route.handler == "_execute")
                        side = rate_limit.side_writes(limiter, identity.tenant_id, identity.uid)
            reset = _SIDE_WRITES.set(side)
            reset_check = _RATE_CHECK.set(rate_check)
            reset_identity = _IDENTITY_CHECK.set(identity_check)
            try:
                response = getattr(self, route.handler)(request, identity, **params)
            finally:
                _SIDE_WRITES.reset(reset)
                _RATE_CHECK.reset(reset_check)
                _IDENTITY_CHECK.reset(reset_identity)
                if identity_check is not None and not identity_check.called:
                    identity_check()  # the engine was not reached (nothing written): its refusal still wins
            if limiter is not None and rate_limit.reached_engine(response.status):
                rate_limit.record(limiter, identity.tenant_id, identity.uid, side)
        except ApiError as exc:
            response = exc.to_response(request_id)
        except InvalidInput as exc:  # the core refused a value the models let through
            if getattr(exc, "code", None) == "LOT_BOOK_FULL":  # a state of the user's tax book, not the body
                response = ApiError(409, "LOT_BOOK_FULL", exc.reason, field=exc.field,
                                    reason=exc.reason).to_response(request_id)
            else:
                response = invalid_input(exc).to_response(request_id)
        except StoreContended as exc:  # nothing committed; the sweeper or a retry with the same key resumes
            log_event("api.store_contended", severity="WARNING", request_id=request_id, route=route_name,
                      error=str(exc)[:500])
            response = ApiError(503, "STORE_CONTENDED", "the store is busy; retry with the same Idempotency-Key",
                                headers={"Retry-After": "1"}).to_response(request_id)
        except Exception as exc:  # noqa: BLE001 - the one place that turns a bug into a 500
            log_event("api.unhandled_error", severity="ERROR", request_id=request_id, method=request.method,
                      route=route_name, error_type=type(exc).__name__, error=str(exc)[:500],
                      uid=identity.uid if identity else None,
                      tenant_id=identity.tenant_id if identity else None,
                      traceback=traceback.format_exc()[-4000:])
            response = ApiError(500, "INTERNAL", "internal error; it has been logged",
                                reason=f"request_id={request_id}").to_response(request_id)
        if isinstance(response, StreamingResponse):
            response.chunks = _logged_stream(response.chunks, request_id, route_name, identity)
        elif route_name != "/openapi.json":
            response.body = encode_decimals(response.body)  # the one decimal representation (domain/wire.py)
        response.headers.setdefault("X-Request-Id", request_id)
        response.headers.setdefault("Cache-Control", "no-store")
        log_event("api.request", severity="WARNING" if response.status >= 500 else "INFO", request_id=request_id,
                  method=request.method, route=route_name, status=response.status,
                  uid=identity.uid if identity else None, tenant_id=identity.tenant_id if identity else None,
                  duration_ms=round((time.monotonic() - started) * 1000, 1))
        return response

    # --- dependencies ----------------------------------------------------------------------
    def _engine(self) -> Any:
        try:
            return self._engine_factory()
        except Exception as exc:  # a configuration error must not look like a client error
            raise _EngineUnavailable(exc) from exc

    # --- endpoints -------------------------------------------------------------------------
    def _healthz(self, request: ApiRequest, identity: None) -> ApiResponse:
        return ApiResponse(200, {"status": "ok", "service": SERVICE})

    def _openapi(self, request: ApiRequest, identity: None) -> ApiResponse:
        from backend.api.openapi import openapi_document

        return ApiResponse(200, openapi_document(), {"Cache-Control": "public, max-age=300"})

    def _execute(self, request: ApiRequest, identity: Identity) -> ApiResponse:
        from backend.api.models import ExecuteRequest
        from backend.execution.intent import OrderIntent

        body = parse_model(ExecuteRequest, parse_json_object(request.body))
        _check_owner(body.metadata, identity)
        key = parse_key(request.header(KEY_HEADER))
        intent_id = resolve_intent_id(key, body.intent_id, identity.tenant_id, identity.uid)
        intent = OrderIntent(strategy_id=body.strategy_id, broker_account_id=body.broker_account_id,
                             symbol=body.symbol, side=body.side, qty=body.qty,
                             asset_class=body.asset_class, estimated_slippage=body.estimated_slippage,
                             metadata=body.metadata, intent_id=intent_id, order_type=body.order_type,
                             limit_price=body.limit_price, time_in_force=body.time_in_force,
                             stop_price=body.stop_price, trail_price=body.trail_price,
                             trail_percent=body.trail_percent, order_class=body.order_class,
                             take_profit=body.take_profit.model_dump() if body.take_profit else None,
                             stop_loss=body.stop_loss.to_mapping() if body.stop_loss else None,
                             wide_spread=body.wide_spread, limit_timeout_seconds=body.limit_timeout_seconds)
        result = self._run_intent(intent, identity, id_source=_id_source(key, intent_id))
        return _result_response(result)

    def _signals(self, request: ApiRequest, identity: Identity) -> ApiResponse:
        from backend.api import signals
        from backend.api.models import SignalRequest
        from backend.execution.intent import OrderIntent

        body = parse_model(SignalRequest, parse_json_object(request.body))
        _check_owner(body.metadata, identity)
        key = parse_key(request.header(KEY_HEADER))
        intent_id = resolve_intent_id(key, body.intent_id, identity.tenant_id, identity.uid)
        engine = self._engine()
        try:
            decision = signals.decide(signal_type=body.signal_type, symbol=body.symbol, asset_class=body.asset_class,
                                      confidence=body.confidence, reasoning=body.reasoning,
                                      market_data=body.market_data.to_mapping() if body.market_data else None,
                                      max_spread_pct=engine.settings.max_spread_pct, wide_spread=body.wide_spread)
        except InvalidInput as exc:
            prefix = "market_data." if exc.field in ("bid", "ask", "price", "spread", "spread_pct") else ""
            raise invalid_input(exc, prefix) from None
        out: dict[str, Any] = {"signal": signals.signal_out(decision), "cost_check": decision.cost_check,
                               "executed": False, "reason": decision.reason, "execution": None}
        if not decision.executes:
            log_event("api.signal_not_executed", tenant_id=identity.tenant_id, uid=identity.uid,
                      strategy_id=body.strategy_id, symbol=body.symbol, signal_type=body.signal_type,
                      downgraded=out["signal"]["downgraded"], reason=decision.reason)
            return ApiResponse(200, _signal_body(out))
        metadata: dict[str, Any] = dict(body.metadata or {})
        metadata.update({"source": "signal", "signal_type": body.signal_type,
                         "signal_confidence": format(decision.signal.confidence, "f")})
        if body.reasoning:
            metadata["signal_reasoning"] = body.reasoning[:500]
        intent = OrderIntent(strategy_id=body.strategy_id, broker_account_id=body.broker_account_id,
                             symbol=body.symbol, side=body.signal_type.lower(), qty=body.qty,
                             asset_class=body.asset_class,
                             estimated_slippage=signals.intent_slippage(decision), metadata=metadata,
                             intent_id=intent_id, wide_spread=body.wide_spread,  # issue 15 item 5: a limit, not WAIT
                             limit_timeout_seconds=body.limit_timeout_seconds)
        result = self._run_intent(intent, identity, id_source=_id_source(key, intent_id), engine=engine)
        response = _result_response(result)
        out["executed"] = signals.reached_venue(result)
        out["reason"] = result.reason or decision.reason
        if response.status >= 400:  # 429 / 503: the error body, with the signal beside it
            response.body["signal"] = out["signal"]
            response.body["cost_check"] = _jsonable(decision.cost_check)
            return response
        out["execution"] = response.body
        if body.wide_spread != "wait":
            out["wide_spread_limit"] = signals.wide_spread_limit(engine.store, identity.tenant_id, intent.intent_id,
                                                                 result)
        response.body = _signal_body(out)
        return response

    def _execute_multi_leg(self, request: ApiRequest, identity: Identity) -> ApiResponse:
        from backend.api.models import MultiLegRequest

        body = parse_model(MultiLegRequest, parse_json_object(request.body))
        key = parse_key(request.header(KEY_HEADER))
        engine = self._engine()
        group_id = derived_id("g", identity.tenant_id, identity.uid, key) if key is not None else None
        engine_request = body.to_engine_request()
        existing = None
        if group_id is not None:
            existing = engine.get_group(identity.tenant_id, group_id)
            check_group(existing, engine_request, identity.uid)
        from backend.execution.accounts import AccountRefused

        try:
            group = engine.execute_group(engine_request, identity.context(), group_id=group_id)
        except AccountRefused as refused:  # nothing written, nothing sent
            raise ApiError(refused.http_status, refused.rejection.code.value, str(refused.rejection),
                           field="broker_account_id", reason=refused.rejection.detail) from None
        body = _jsonable(group.to_api_response())
        headers = {"Location": f"/groups/{body['group_id']}"}
        if not getattr(getattr(group, "status", None), "is_final", True):
            # still working (the broker could not be reached, or the time budget ran out): the
            # sweeper continues it; GET /groups/<id> shows the progress
            headers["Retry-After"] = "5"
            return ApiResponse(202, body, headers)
        if existing is not None:
            headers["Idempotent-Replayed"] = "true"
            return ApiResponse(200, body, headers)
        return ApiResponse(201, body, headers)

    # --- accounts (issue 19 item 9) ----------------------------------------------------------
    def _accounts_list(self, request: ApiRequest, identity: Identity) -> ApiResponse:
        from backend.api import accounts_api

        return accounts_api.list_accounts(request, identity, self._engine().store)

    def _accounts_get(self, request: ApiRequest, identity: Identity, account_id: str) -> ApiResponse:
        from backend.api import accounts_api

        return accounts_api.get_account(request, identity, self._engine().store, account_id)

    def _accounts_positions(self, request: ApiRequest, identity: Identity, account_id: str) -> ApiResponse:
        from backend.api import accounts_api

        engine = self._engine()
        return accounts_api.positions(request, identity, engine, _clock_of(engine).now(), account_id)

    def _accounts_balance(self, request: ApiRequest, identity: Identity, account_id: str) -> ApiResponse:
        from backend.api import accounts_api

        engine = self._engine()
        return accounts_api.balance(request, identity, engine, _clock_of(engine).now(), account_id)

    def _list_groups(self, request: ApiRequest, identity: Identity) -> ApiResponse:
        from backend.api import groups_list

        return groups_list.handle(request, identity, self._engine().store)

    def _get_group(self, request: ApiRequest, identity: Identity, group_id: str) -> ApiResponse:
        if request.query:
            raise bad_request(sorted(request.query)[0], "this endpoint takes no query parameters")
        problem = ID.problem(group_id)  # the one id rule: a reserved name never reaches Firestore
        if problem is not None:
            raise bad_request("group_id", problem)
        group = self._engine().get_group(identity.tenant_id, group_id)
        owner = getattr(group, "uid", None)
        if group is None or (owner is not None and owner != identity.uid and not identity.can_read_tenant):
            # one answer for "does not exist" and "another user's": a status must not say which
            raise ApiError(404, "NOT_FOUND", f"no group {group_id}", field="group_id", reason="not found")
        return ApiResponse(200, _jsonable(group.to_api_response()))

    def _history(self, request: ApiRequest, identity: Identity) -> ApiResponse:
        from backend.api.history import Cursor
        from backend.api.models import HistoryPage, HistoryQuery

        for name, values in request.query.items():
            if len(values) != 1:
                raise bad_request(name, "give this parameter once")
        query = parse_model(HistoryQuery, {k: v[0] for k, v in request.query.items()})
        after = Cursor.decode(query.cursor) if query.cursor is not None else None
        reader = self._history_factory() if self._history_factory is not None else None
        if reader is None:
            raise RuntimeError("no history reader configured")
        page = reader.page(identity.uid, limit=query.limit, after=after, tenant_id=query.tenant_id,
                           broker_account_id=query.broker_account_id)
        body = HistoryPage(items=[_jsonable(dict(item)) for item in page.items], next_cursor=page.next_cursor)
        return ApiResponse(200, body.model_dump(mode="json"))

    def _tax_export(self, request: ApiRequest, identity: Identity) -> ApiResponse:
        from backend.api import tax_export

        engine = self._engine()
        return tax_export.handle(request, identity, engine.store, _clock_of(engine).now())

    def _tax_reconcile(self, request: ApiRequest, identity: Identity) -> ApiResponse:
        from backend.api import tax_reconcile

        engine = self._engine()
        return tax_reconcile.handle(request, identity, engine.store, _clock_of(engine).now())

    def _tax_election(self, request: ApiRequest, identity: Identity) -> ApiResponse:
        from backend.api import tax_admin

        engine = self._engine()
        return tax_admin.election(request, identity, engine.store, _clock_of(engine).now())

    def _corporate_action(self, request: ApiRequest, identity: Identity, tenant_id: str) -> ApiResponse:
        from backend.api import tax_admin

        engine = self._engine()
        return tax_admin.corporate_action(request, identity, engine.store, _clock_of(engine).now(), tenant_id)

    def _tenant_ledger(self, request: ApiRequest, identity: Identity, tenant_id: str) -> ApiResponse:
        from backend.api import ledger_review

        return ledger_review.handle(request, identity, self._engine().store, tenant_id)

    def _risk_approvals(self, request: ApiRequest, identity: Identity) -> ApiResponse:
        from backend.api import risk_approvals

        engine = self._engine()
        return risk_approvals.handle(request, identity, engine.store, _clock_of(engine).now())

    def _tenant_metrics(self, request: ApiRequest, identity: Identity, tenant_id: str) -> ApiResponse:
        from backend.api import metrics_api

        return metrics_api.handle(request, identity, self._engine().store, tenant_id)

    # --- risk admin (issue 13) -------------------------------------------------------------
    def _risk_admin(self, request: ApiRequest, identity: Identity, **params: str) -> ApiResponse:
        from backend.api import risk_settings

        return risk_settings.dispatch(request, identity, self._engine(), **params)

    def _reconciliation(self, request: ApiRequest, identity: Identity, tenant_id: str) -> ApiResponse:
        from backend.api import reconciliation_api

        handler = reconciliation_api.run if request.method == "POST" else reconciliation_api.get
        return handler(request, identity, self._engine(), tenant_id)

    # --- tenant administration (issue 13) -------------------------------------------------------
    def _admin_deps(self) -> Any:
        from backend.api.admin_members import AdminDeps

        engine = self._engine()
        return AdminDeps(store=engine.store, now=_clock_of(engine).now(), identity_admin=self._identity_admin,
                         secret_sink=self._secret_sink)

    def _identity_admin(self) -> Any:
        if self._identity_admin_factory is not None:
            return self._identity_admin_factory()
        if "identity_admin" not in self._admin_cache:
            from backend.api.firebase_auth import FirebaseIdentityAdmin, FirebaseTokenVerifier

            verifier = self._verifier_factory()
            self._admin_cache["identity_admin"] = FirebaseIdentityAdmin(
                verifier=verifier if isinstance(verifier, FirebaseTokenVerifier) else None)
        return self._admin_cache["identity_admin"]

    def _secret_sink(self) -> Any:
        if self._secret_sink_factory is not None:
            return self._secret_sink_factory()
        if "secret_sink" not in self._admin_cache:
            from backend import bootstrap

            self._admin_cache["secret_sink"] = bootstrap.secret_sink()
        return self._admin_cache["secret_sink"]

    def _admin_create_tenant(self, request: ApiRequest, identity: Identity) -> ApiResponse:
        from backend.api import admin_members

        return admin_members.create_tenant(request, identity, self._admin_deps())

    def _admin_list_members(self, request: ApiRequest, identity: Identity, tenant_id: str) -> ApiResponse:
        from backend.api import admin_members

        _same_tenant(identity, tenant_id)
        return admin_members.list_members(request, identity, self._admin_deps())

    def _admin_add_member(self, request: ApiRequest, identity: Identity, tenant_id: str) -> ApiResponse:
        from backend.api import admin_members

        _same_tenant(identity, tenant_id)
        return admin_members.add_member(request, identity, self._admin_deps())

    def _admin_set_role(self, request: ApiRequest, identity: Identity, tenant_id: str, uid: str) -> ApiResponse:
        from backend.api import admin_members

        _same_tenant(identity, tenant_id)
        return admin_members.set_role(request, identity, self._admin_deps(), uid)

    def _admin_set_member_status(self, request: ApiRequest, identity: Identity, tenant_id: str,
                                 uid: str) -> ApiResponse:
        from backend.api import admin_members

        _same_tenant(identity, tenant_id)
        return admin_members.set_status(request, identity, self._admin_deps(), uid)

    def _admin_set_default_account(self, request: ApiRequest, identity: Identity, tenant_id: str,
                                   uid: str) -> ApiResponse:
        from backend.api import admin_accounts

        _same_tenant(identity, tenant_id)
        return admin_accounts.set_default_account(request, identity, self._admin_deps(), uid)

    def _admin_list_connections(self, request: ApiRequest, identity: Identity, tenant_id: str) -> ApiResponse:
        from backend.api import admin_accounts

        _same_tenant(identity, tenant_id)
        return admin_accounts.list_connections(request, identity, self._admin_deps())

    def _admin_create_connection(self, request: ApiRequest, identity: Identity, tenant_id: str) -> ApiResponse:
        from backend.api import admin_accounts

        _same_tenant(identity, tenant_id)
        return admin_accounts.create_connection(request, identity, self._admin_deps())

    def _admin_update_connection(self, request: ApiRequest, identity: Identity, tenant_id: str,
                                 connection_id: str) -> ApiResponse:
        from backend.api import admin_accounts

        _same_tenant(identity, tenant_id)
        return admin_accounts.update_connection(request, identity, self._admin_deps(), connection_id)

    def _admin_list_accounts(self, request: ApiRequest, identity: Identity, tenant_id: str) -> ApiResponse:
        from backend.api import admin_accounts

        _same_tenant(identity, tenant_id)
        return admin_accounts.list_accounts(request, identity, self._admin_deps())

    def _admin_create_account(self, request: ApiRequest, identity: Identity, tenant_id: str) -> ApiResponse:
        from backend.api import admin_accounts

        _same_tenant(identity, tenant_id)
        return admin_accounts.create_account(request, identity, self._admin_deps())

    def _admin_update_account(self, request: ApiRequest, identity: Identity, tenant_id: str,
                              account_id: str) -> ApiResponse:
        from backend.api import admin_accounts

        _same_tenant(identity, tenant_id)
        return admin_accounts.update_account(request, identity, self._admin_deps(), account_id)

    def _admin_set_account_status(self, request: ApiRequest, identity: Identity, tenant_id: str,
                                  account_id: str) -> ApiResponse:
        from backend.api import admin_accounts

        _same_tenant(identity, tenant_id)
        return admin_accounts.set_account_status(request, identity, self._admin_deps(), account_id)

    def _admin_ledger_correction(self, request: ApiRequest, identity: Identity, tenant_id: str,
                                 ledger_id: str) -> ApiResponse:
        from backend.api import admin_ledger

        _same_tenant(identity, tenant_id)
        return admin_ledger.create_correction(request, identity, self._admin_deps(), ledger_id)

    def _admin_audit_log(self, request: ApiRequest, identity: Identity, tenant_id: str) -> ApiResponse:
        from backend.api import audit

        _same_tenant(identity, tenant_id)
        return audit.handle_list(request, identity, self._engine().store)

    # --- the caller's orders (issue 15 item 6) ---------------------------------------------------
    def _orders_list(self, request: ApiRequest, identity: Identity) -> ApiResponse:
        from backend.api import orders_api

        return orders_api.list_orders(request, identity, self._engine())

    def _orders_get(self, request: ApiRequest, identity: Identity, intent_id: str) -> ApiResponse:
        from backend.api import orders_api

        return orders_api.get_order(request, identity, self._engine(), intent_id)

    def _orders_cancel(self, request: ApiRequest, identity: Identity, intent_id: str) -> ApiResponse:
        from backend.api import orders_api

        return orders_api.cancel_order(request, identity, self._engine(), intent_id)

    def _orders_replace(self, request: ApiRequest, identity: Identity, intent_id: str) -> ApiResponse:
        from backend.api import orders_api

        return orders_api.replace_order(request, identity, self._engine(), intent_id)

    def _group_stop_cancel(self, request: ApiRequest, identity: Identity, group_id: str, leg_id: str) -> ApiResponse:
        from backend.api import group_stops_api

        return group_stops_api.cancel_stop(request, identity, self._engine(), group_id, leg_id)

    def _group_stop_replace(self, request: ApiRequest, identity: Identity, group_id: str, leg_id: str) -> ApiResponse:
        from backend.api import group_stops_api

        return group_stops_api.replace_stop(request, identity, self._engine(), group_id, leg_id)

    # --- shared ----------------------------------------------------------------------------
    def _run_intent(self, intent: Any, identity: Identity, *, id_source: str | None, engine: Any = None) -> Any:
        """Execute; with a client-chosen id (``id_source``: the header or intent_id) the stored record
        must be this very request, before and (if the engine replayed or is still pending: a
        concurrent request may have won the race) after."""
        engine = engine or self._engine()
        check = None
        if id_source is not None:  # issue 17: on the record the engine's batched read answers (no read here)
            def check(record: Any) -> None:
                check_intent_record(_as_requested(record), intent.to_dict(), identity.uid, id_source)
        ctx = _replace(identity.context(), side_writes=_SIDE_WRITES.get(), record_check=check,
                       rate_check=_RATE_CHECK.get(), identity_check=_IDENTITY_CHECK.get())
        _RATE_CHECK.set(None)  # one engine call decides them
        _IDENTITY_CHECK.set(None)
        result = engine.execute_intent(intent, ctx)
        if id_source is not None and (result.replayed or result.status == "pending"):
            check_intent_record(_as_requested(engine.store.get_intent(identity.tenant_id, intent.intent_id)),
                                intent.to_dict(), identity.uid, id_source)
        return result


def _as_requested(record: Any) -> Any:
    """The stored record as first requested: a replaced order (PATCH /orders/{id}, issue 15) holds the
    working order in ``intent`` and the first request in ``requested_intent``; a retry of that first
    request is compared with the latter."""
    requested = record.data.get("requested_intent") if record is not None else None
    if not isinstance(requested, Mapping):
        return record
    from dataclasses import replace as _replace

    return _replace(record, data={**record.data, "intent": requested})


def _clock_of(engine: Any) -> Any:
    clock = getattr(engine, "clock", None)
    if clock is None:
        from backend.domain.clock import SystemClock

        clock = SystemClock()
    return clock


def _logged_stream(chunks: Any, request_id: str, route: str, identity: Identity | None) -> Any:
    """A streamed body's failure can no longer change the status: log it (ERROR) and re-raise, so the
    server aborts the transfer instead of ending a truncated body cleanly."""
    try:
        yield from chunks
    except Exception as exc:
        log_event("api.stream_error", severity="ERROR", request_id=request_id, route=route,
                  error_type=type(exc).__name__, error=str(exc)[:500], uid=identity.uid if identity else None,
                  tenant_id=identity.tenant_id if identity else None, traceback=traceback.format_exc()[-4000:])
        raise


def _id_source(key: str | None, intent_id: str | None) -> str | None:
    if key is not None:
        return KEY_HEADER
    return "intent_id" if intent_id is not None else None


class _EngineUnavailable(Exception):
    """The engine could not be built (configuration); reported as a 500 with an ERROR log."""


def _check_role_for_route(identity: Identity, route: Route) -> None:
    """Issue 13: a platform_operator token calls only the platform routes (it has no tenant); every
    other role is refused there by the handler; an auditor is refused on every write."""
    platform = (route.method, route.name) in PLATFORM_ROUTES
    if identity.is_platform_operator and not platform:
        raise forbidden("a platform_operator token only calls POST /tenants and PUT /ops/trading-state")
    if identity.is_read_only and route.method in WRITE_METHODS:
        raise forbidden("the auditor role is read-only")


def _same_tenant(identity: Identity, tenant_id: str) -> None:
    """``/tenants/{tenant_id}/…`` administration: only the token's own tenant (403 before anything is read)."""
    if identity.tenant_id != tenant_id:
        raise forbidden("tenant_id is not the authenticated tenant", "tenant_id")


def _require_json(request: ApiRequest, also: tuple[str, ...] = ()) -> str | None:
    """The body's media type (None when undeclared): JSON, or one of the route's ``also``."""
    ctype = request.header("Content-Type")
    if ctype is None or not ctype.strip():
        return None
    media = ctype.split(";", 1)[0].strip().lower()
    if media in also:
        return media
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        accepted = " or ".join(("application/json",) + also)
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", f"send the body as {accepted}",
                       field="Content-Type", reason=f"got {media[:80]!r}")
    return media


def _check_owner(metadata: Mapping[str, Any] | None, identity: Identity) -> None:
    if not metadata:
        return
    if "tenant_id" in metadata and metadata["tenant_id"] != identity.tenant_id:
        raise forbidden("metadata.tenant_id is not the authenticated tenant", "metadata.tenant_id")
    if "uid" in metadata and metadata["uid"] != identity.uid:
        raise forbidden("metadata.uid is not the authenticated user", "metadata.uid")


def _jsonable(value: Any) -> Any:
    """Decimals → exact strings, datetimes → ISO-8601; containers recursively."""
    from datetime import date, datetime

    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Enum):
        return value.value
    return value


def _signal_body(out: Mapping[str, Any]) -> dict[str, Any]:
    from backend.api.models import SignalResponse

    return SignalResponse.model_validate(_jsonable(dict(out))).model_dump(mode="json")


def _result_response(result: Any) -> ApiResponse:
    from backend.api.models import ExecutionResponse

    from backend.execution.accounts import HTTP_STATUS, is_binding_rejection

    if (result.extra or {}).get("persisted") is False and is_binding_rejection(result.rejection):
        # refused by the account binding before anything was written: 403 (not the caller's account,
        # suspended member) or 400 (closed, halted, class not enabled, no default account)
        raise ApiError(HTTP_STATUS[result.rejection.code], result.rejection.code.value, str(result.rejection),
                       field="broker_account_id", reason=result.rejection.detail)
    data = {**result.to_dict(), "replayed": bool(result.replayed),
            "retry_after": (result.extra or {}).get("retry_after")}
    body = ExecutionResponse.model_validate(data).model_dump(mode="json")
    if result.status == "pending":
        code = result.rejection.code.value if result.rejection is not None else None
        if code in ("BROKER_RATE_LIMITED", "BROKER_UNAVAILABLE"):
            status = 429 if code == "BROKER_RATE_LIMITED" else 503
            retry = _retry_after_header(body.get("retry_after"), 1 if status == 429 else 5)
            message = ("the broker is rate limiting; retry with the same Idempotency-Key" if status == 429 else
                       "the broker is unavailable; the order's outcome is reconciled on a retry with the same "
                       "Idempotency-Key")
            return ApiError(status, code, message, reason=result.reason, headers={"Retry-After": retry},
                            extra={"execution": body}).to_response()
        return ApiResponse(202, body, {"Retry-After": _retry_after_header(body.get("retry_after"), 1)})
    if result.replayed:
        return ApiResponse(200, body, {"Idempotent-Replayed": "true"})
    return ApiResponse(201, body)


_default_app: ApiApp | None = None


def handle(request: ApiRequest) -> ApiResponse:
    """The process-wide app (see ``backend.api.wiring``)."""
    global _default_app
    if _default_app is None:
        from backend.api.wiring import default_app

        _default_app = default_app()
    return _default_app.handle(request)
