"""Risk settings and the kill switch over HTTP (issue 13 items 3 and 4).

Routes (``backend.api.app`` dispatches them here; ``ROUTE_HANDLERS``):

==========================================================  ===================  =============================
route                                                       who                  document
==========================================================  ===================  =============================
``GET/PUT /tenants/{t}/risk/limits``                        tenant_admin of t    ``tenants/{t}/config/risk``
``GET/PUT /tenants/{t}/accounts/{a}/limits``                tenant_admin of t    ``tenants/{t}/accounts/{a}``
``PUT /tenants/{t}/trading-state``                          tenant_admin of t    ``tenants/{t}/config/risk``
``PUT /tenants/{t}/accounts/{a}/trading-state``             tenant_admin of t    ``tenants/{t}/accounts/{a}``
``PUT /ops/trading-state``                                  platform_operator    ``ops/execution``
==========================================================  ===================  =============================

Traders, auditors, risk managers and admins of another tenant get a 403 before the body is read.

Limits are exact decimals (decimal strings or JSON numbers, which the API parses as ``Decimal``;
``max_daily_trades`` an integer). A ``PUT`` of limits replaces the level's limit set: an omitted or
null field removes that level's own limit (the operator's, or the tenant's for an account, still
applies). A tenant can only tighten the operator's limits (``EXEC_MAX_POSITION_QTY``,
``EXEC_MAX_POSITION_QTY_<CLASS>``, ``EXEC_MAX_DAILY_TRADES``): a looser value is a 400 naming the
operator's bound (``max_position_qty: must be <= 100, the operator's limit``); an account's limits
are held to the same bounds (and to the tenant's at decision time: the stricter always wins).

Trading state ``{"state": "active" | "reduce_only" | "halted"}``: one call per level. The switch
documents keep the legacy ``kill_switch`` boolean beside ``trading_state`` (``switch_fields``); an
account's state is its ``status`` (``closed`` is final and not settable here). For an account on an
Alpaca Broker API connection, ``halted`` also sets the venue's trade suspension
(``set_trade_suspension``) so it holds even if this backend is down, and leaving ``halted`` clears
it. The status is committed first, then the venue is called (both idempotent: a failed venue call is
a 502 ``VENUE_SUSPENSION_FAILED`` and the same PUT again completes it). Note: while suspended at the
venue, that account's rollback orders are refused by the venue too; the group stays ROLLING_BACK and
the sweeper retries after the account is resumed.

Staleness: nothing here is cached. The gate reads ``ops/execution``, ``config/risk`` and the account
document fresh for every decision (the single-order path once per intent, the group path once at
validation and once per leg before it is sent), so a change is seen by the next decision after the
commit — a budget of zero plus one decision already past its read.

Every change is one commit with its audit entry (``backend.api.audit.audit_op``); a PUT that changes
nothing writes nothing. Operator changes have no tenant: they are logged (``risk.operator_state``,
WARNING) and the ``ops/execution`` document records ``updated_by``/``updated_at``.
"""
from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Mapping

from pydantic import Field, StrictInt

from backend.api.auth import Identity, forbidden
from backend.api.http import ApiError, ApiRequest, ApiResponse, bad_request
from backend.api.models import AssetClassName, NonNegativeDecimal, PositiveDecimal, _Input
from backend.domain.accounts import Account, AccountLimits, AccountStatus, account_path
from backend.domain.assets import AssetClass
from backend.domain.errors import InvalidInput
from backend.domain.ids import check_id
from backend.domain.money import dec_str
from backend.execution.unit_of_work import Commit, Conflict, Create, Set, Update
from backend.logs import log_event
from backend.risk.gate import GLOBAL_SWITCH_PATH
from backend.risk.manager import RiskLimits, TradingState, switch_fields, trading_state_of

PLATFORM_OPERATOR = "platform_operator"
LIMIT_FIELDS = ("max_position_qty", "max_daily_trades", "max_position_by_class", "max_order_notional")


class LimitsRequest(_Input):
    """PUT …/risk/limits and …/accounts/{a}/limits: the level's whole limit set (omitted = none)."""

    max_position_qty: NonNegativeDecimal | None = None
    max_daily_trades: StrictInt | None = Field(None, ge=0, le=1_000_000)
    max_position_by_class: dict[AssetClassName, NonNegativeDecimal] | None = None
    max_order_notional: PositiveDecimal | None = None


class TradingStateRequest(_Input):
    state: Literal["active", "reduce_only", "halted"]


def config_path(tenant_id: str) -> str:
    return f"tenants/{check_id(tenant_id, 'tenant_id')}/config/risk"


# ------------------------------------------------------------------------------------ pure rules


def check_against_operator(body: LimitsRequest, operator: RiskLimits) -> None:
    """A 400 naming the operator's bound for any value looser than it."""
    if body.max_position_qty is not None and body.max_position_qty > operator.max_position_qty:
        raise bad_request("max_position_qty", f"must be <= {dec_str(operator.max_position_qty)}, the operator's limit")
    if body.max_daily_trades is not None and body.max_daily_trades > operator.max_daily_trades:
        raise bad_request("max_daily_trades", f"must be <= {operator.max_daily_trades}, the operator's limit")
    for name, value in (body.max_position_by_class or {}).items():
        bound = operator.position_limit(AssetClass(name))
        if value > bound:
            raise bad_request(f"max_position_by_class.{name}", f"must be <= {dec_str(bound)}, the operator's limit")
    if operator.max_order_notional is not None and body.max_order_notional is not None \
            and body.max_order_notional > operator.max_order_notional:
        raise bad_request("max_order_notional",
                          f"must be <= {dec_str(operator.max_order_notional)}, the operator's limit")


def stored_limits(body: LimitsRequest) -> dict[str, Any]:
    """The tenant document's limit fields (exact decimal strings; None = no tenant limit)."""
    return {"max_position_qty": dec_str(body.max_position_qty), "max_daily_trades": body.max_daily_trades,
            "max_position_by_class": None if not body.max_position_by_class else
            {k: dec_str(v) for k, v in sorted(body.max_position_by_class.items())},
            "max_order_notional": dec_str(body.max_order_notional)}


def account_limits(body: LimitsRequest) -> AccountLimits | None:
    """The account's ``AccountLimits`` (None when the body sets none); the domain refuses 0 (400)."""
    if all(getattr(body, name) in (None, {}) for name in LIMIT_FIELDS):
        return None
    try:
        return AccountLimits(max_position_qty=body.max_position_qty, max_order_notional=body.max_order_notional,
                             max_daily_trades=body.max_daily_trades,
                             max_position_by_class=dict(body.max_position_by_class or {}))
    except InvalidInput as exc:
        raise bad_request(exc.field.removeprefix("limits."), exc.reason) from None


def operator_view(limits: RiskLimits) -> dict[str, Any]:
    return {"max_position_qty": dec_str(limits.max_position_qty), "max_daily_trades": limits.max_daily_trades,
            "max_position_by_class": {k.value: dec_str(v) for k, v in sorted(limits.max_position_by_class.items(),
                                                                             key=lambda kv: kv[0].value)},
            "max_order_notional": dec_str(limits.max_order_notional)}


def effective_view(limits: RiskLimits) -> dict[str, Any]:
    view = operator_view(limits)
    view["max_position_by_class"] = {k.value: dec_str(limits.position_limit(k)) for k in AssetClass}
    view["max_daily_trades_account"] = limits.max_daily_trades_account
    return view


# ------------------------------------------------------------------------------------ handlers


def dispatch(request: ApiRequest, identity: Identity, engine: Any, **params: str) -> ApiResponse:
    """The handler of ``ROUTES`` that matches the request's method and path (``backend.api.app``
    matched the same table already)."""
    from backend.api.app import normalize_path

    path = normalize_path(request.path)
    for method, pattern, key in ROUTES:
        if method == request.method and _PATTERNS[pattern].fullmatch(path):
            return ROUTE_HANDLERS[key](request, identity, engine, **params)
    raise ApiError(404, "NOT_FOUND", f"no route for {request.method} {path[:200]}")


def require_risk_admin(identity: Identity, tenant_id: str) -> None:
    """A ``tenant_admin`` of ``tenant_id`` only (auditors read the ledger, not these settings)."""
    if not identity.is_admin:
        raise forbidden("only a tenant_admin may read or change the tenant's risk settings", "tenant_id")
    if identity.tenant_id != tenant_id:
        raise forbidden("tenant_id is not the authenticated tenant", "tenant_id")


def _body(request: ApiRequest, model: Any) -> Any:
    from backend.api.app import _require_json, parse_json_object, parse_model

    from backend.api.http import MAX_BODY_BYTES

    if len(request.body) > MAX_BODY_BYTES:
        raise ApiError(413, "PAYLOAD_TOO_LARGE", f"the body exceeds {MAX_BODY_BYTES} bytes")
    if request.query:
        raise bad_request(sorted(request.query)[0], "this endpoint takes no query parameters")
    _require_json(request)
    return parse_model(model, parse_json_object(request.body))


def _now(engine: Any) -> datetime:
    from backend.api.app import _clock_of

    return _clock_of(engine).now()


def _operator_limits(engine: Any) -> RiskLimits:
    return engine.risk.limits


def _commit(store: Any, commit: Commit, what: str) -> None:
    try:
        store.commit(commit)
    except Conflict:
        raise ApiError(409, "CONFLICT", f"{what} changed while this request ran; read it again and retry",
                       reason="concurrent change") from None


def _write(path: str, current: Mapping[str, Any] | None, token: Any, fields: Mapping[str, Any]) -> Any:
    return Create(path, dict(fields)) if current is None else Update(path, dict(fields), token)


def _audit(identity: Identity, request: ApiRequest, tenant_id: str, now: datetime, **kwargs: Any) -> Any:
    from backend.api.audit import audit_op, request_id_of

    return audit_op(identity, tenant_id=tenant_id, request_id=request_id_of(request), now=now, **kwargs)


def get_tenant_limits(request: ApiRequest, identity: Identity, engine: Any, tenant_id: str) -> ApiResponse:
    require_risk_admin(identity, tenant_id)
    if request.query:
        raise bad_request(sorted(request.query)[0], "this endpoint takes no query parameters")
    store = engine.store
    docs = store.get_all([config_path(tenant_id), GLOBAL_SWITCH_PATH])
    config, ops = docs[config_path(tenant_id)][0], docs[GLOBAL_SWITCH_PATH][0]
    operator = _operator_limits(engine)
    return ApiResponse(200, {
        "tenant_id": tenant_id, "operator": operator_view(operator),
        "tenant": {name: (config or {}).get(name) for name in LIMIT_FIELDS},
        "effective": effective_view(operator.tightened_by(config)),
        "trading_state": {"operator": trading_state_of(ops).value, "tenant": trading_state_of(config).value}})


def put_tenant_limits(request: ApiRequest, identity: Identity, engine: Any, tenant_id: str) -> ApiResponse:
    require_risk_admin(identity, tenant_id)
    body = _body(request, LimitsRequest)
    check_against_operator(body, _operator_limits(engine))
    store, path, now = engine.store, config_path(tenant_id), _now(engine)
    current, token = store.get_all([path])[path]
    fields = stored_limits(body)
    before = {name: (current or {}).get(name) for name in LIMIT_FIELDS}
    if current is not None and before == fields:
        return get_tenant_limits(request, identity, engine, tenant_id)  # nothing changed: nothing written
    _commit(store, Commit([_write(path, current, token, fields),
                           _audit(identity, request, tenant_id, now, action="risk.tenant_limits.set",
                                  target_type="config", target_id="risk", before=before, after=fields)]),
            "the tenant's risk settings")
    log_event("risk.tenant_limits", tenant_id=tenant_id, uid=identity.uid, after=fields)
    return get_tenant_limits(request, identity, engine, tenant_id)


def _read_account(store: Any, tenant_id: str, account_id: str) -> tuple[Account, Any]:
    path = account_path(tenant_id, account_id)
    doc, token = store.get_all([path])[path]
    if doc is None:
        raise ApiError(404, "NOT_FOUND", f"no account {account_id}", field="account_id", reason="not found")
    return Account.from_dict(doc), token


def _account_body(account: Account, engine: Any, config: Mapping[str, Any] | None) -> dict[str, Any]:
    from backend.api.app import _jsonable

    limits = _operator_limits(engine).tightened_by(config).tightened_by_account(account.limits)
    return {"tenant_id": None, "account_id": account.account_id, "status": account.status.value,
            "limits": None if account.limits is None else _jsonable(account.limits.to_dict()),
            "effective": effective_view(limits)}


def get_account_limits(request: ApiRequest, identity: Identity, engine: Any, tenant_id: str,
                       account_id: str) -> ApiResponse:
    require_risk_admin(identity, tenant_id)
    if request.query:
        raise bad_request(sorted(request.query)[0], "this endpoint takes no query parameters")
    check_id(account_id, "account_id")
    account, _ = _read_account(engine.store, tenant_id, account_id)
    config = engine.store.get_all([config_path(tenant_id)])[config_path(tenant_id)][0]
    return ApiResponse(200, {**_account_body(account, engine, config), "tenant_id": tenant_id})


def put_account_limits(request: ApiRequest, identity: Identity, engine: Any, tenant_id: str,
                       account_id: str) -> ApiResponse:
    require_risk_admin(identity, tenant_id)
    body = _body(request, LimitsRequest)
    check_id(account_id, "account_id")
    check_against_operator(body, _operator_limits(engine))
    limits = account_limits(body)
    store, now = engine.store, _now(engine)
    account, token = _read_account(store, tenant_id, account_id)
    if account.limits != limits:
        updated = replace(account, limits=limits, updated_at=max(now, account.updated_at))
        before = None if account.limits is None else account.limits.to_dict()
        after = None if limits is None else limits.to_dict()
        _commit(store, Commit([Update(account_path(tenant_id, account_id), updated.to_dict(), token),
                               _audit(identity, request, tenant_id, now, action="risk.account_limits.set",
                                      target_type="account", target_id=account_id,
                                      before={"limits": before}, after={"limits": after})]),
                f"account {account_id}")
        log_event("risk.account_limits", tenant_id=tenant_id, account_id=account_id, uid=identity.uid)
    return get_account_limits(request, identity, engine, tenant_id, account_id)


def put_tenant_state(request: ApiRequest, identity: Identity, engine: Any, tenant_id: str) -> ApiResponse:
    require_risk_admin(identity, tenant_id)
    state = TradingState(_body(request, TradingStateRequest).state)
    store, path, now = engine.store, config_path(tenant_id), _now(engine)
    current, token = store.get_all([path])[path]
    before = trading_state_of(current)
    fields = switch_fields(state)
    if current is None or {k: current.get(k) for k in fields} != fields:
        _commit(store, Commit([_write(path, current, token, fields),
                               _audit(identity, request, tenant_id, now, action="risk.tenant_state.set",
                                      target_type="config", target_id="risk",
                                      before={"trading_state": before.value}, after={"trading_state": state.value})]),
                "the tenant's risk settings")
        log_event("risk.tenant_state", severity="WARNING" if state is not TradingState.ACTIVE else "INFO",
                  tenant_id=tenant_id, uid=identity.uid, before=before.value, after=state.value)
    return ApiResponse(200, {"tenant_id": tenant_id, "level": "tenant", "trading_state": state.value,
                             "previous": before.value})


def put_account_state(request: ApiRequest, identity: Identity, engine: Any, tenant_id: str,
                      account_id: str) -> ApiResponse:
    require_risk_admin(identity, tenant_id)
    state = TradingState(_body(request, TradingStateRequest).state)
    check_id(account_id, "account_id")
    store, now = engine.store, _now(engine)
    account, token = _read_account(store, tenant_id, account_id)
    before = account.status
    try:
        updated = account.with_status(AccountStatus(state.value), max(now, account.updated_at))
    except InvalidInput as exc:
        raise ApiError(409, "INVALID_TRANSITION", f"state: {exc.reason}", field="state", reason=exc.reason) from None
    if updated is not account:
        _commit(store, Commit([Update(account_path(tenant_id, account_id), updated.to_dict(), token),
                               _audit(identity, request, tenant_id, now, action="risk.account_state.set",
                                      target_type="account", target_id=account_id,
                                      before={"status": before.value}, after={"status": updated.status.value})]),
                f"account {account_id}")
        log_event("risk.account_state", severity="WARNING" if state is not TradingState.ACTIVE else "INFO",
                  tenant_id=tenant_id, account_id=account_id, uid=identity.uid, before=before.value,
                  after=updated.status.value)
    body: dict[str, Any] = {"tenant_id": tenant_id, "account_id": account_id, "level": "account",
                            "trading_state": state.value, "previous": before.value, "venue_suspension": None}
    body["venue_suspension"] = sync_venue_suspension(engine, tenant_id, updated)
    return ApiResponse(200, body)


def sync_venue_suspension(engine: Any, tenant_id: str, account: Account) -> str | None:
    """For an Alpaca Broker API account: the venue's ``suspend_trade`` set to (status is halted).
    None for other venues; ``suspended`` / ``active`` after the venue confirmed; a 502 when it failed
    (the status is already stored; the same PUT again retries the venue)."""
    connection = engine.store.get_connection(tenant_id, account.connection_id) \
        if account.connection_id != "deployment" else None
    if connection is None or connection.venue.value != "alpaca_broker":
        return None
    from backend.domain.orders import BrokerError
    from backend.ports.accounts import AccountBinding

    suspended = account.status is AccountStatus.HALTED
    try:
        router = venue_pool(engine).router_for(tenant_id, AccountBinding.of(account, connection))
        for venue in router.venues():
            setter = getattr(venue, "set_trade_suspension", None)
            if setter is not None:
                setter(suspended)
    except (BrokerError, InvalidInput, RuntimeError) as exc:
        log_event("risk.venue_suspension_failed", severity="ERROR", tenant_id=tenant_id,
                  account_id=account.account_id, suspended=suspended, error_type=type(exc).__name__,
                  error=str(exc)[:300])
        raise ApiError(502, "VENUE_SUSPENSION_FAILED",
                       "the account's state is stored, but the venue's trade suspension could not be "
                       f"{'set' if suspended else 'cleared'}; repeat the same request",
                       reason=type(exc).__name__) from None
    log_event("risk.venue_suspension", tenant_id=tenant_id, account_id=account.account_id, suspended=suspended)
    return "suspended" if suspended else "active"


def venue_pool(engine: Any) -> Any:
    """The engine's ``VenuePool`` (``backend/adapters/venue_pool.py``), or one built on its store."""
    pool = getattr(engine, "venue_pool", None)
    if pool is not None:
        return pool
    from backend import bootstrap

    pool = bootstrap.build_venue_pool(None, None, _clock_of_engine(engine), engine.store, engine.venues)
    engine.venue_pool = pool
    return pool


def _clock_of_engine(engine: Any) -> Any:
    from backend.api.app import _clock_of

    return _clock_of(engine)


def put_operator_state(request: ApiRequest, identity: Identity, engine: Any) -> ApiResponse:
    if identity.role != PLATFORM_OPERATOR:
        raise forbidden(f"only the {PLATFORM_OPERATOR} role sets the operator's trading state")
    state = TradingState(_body(request, TradingStateRequest).state)
    store, now = engine.store, _now(engine)
    current = store.get_all([GLOBAL_SWITCH_PATH])[GLOBAL_SWITCH_PATH][0]
    before = trading_state_of(current)
    fields = switch_fields(state)
    if current is None or {k: current.get(k) for k in fields} != fields:
        store.commit(Commit([Set(GLOBAL_SWITCH_PATH, {**fields, "updated_by": identity.uid,
                                                      "updated_at": now.isoformat()}, merge=True)]))
        log_event("risk.operator_state", severity="WARNING", uid=identity.uid, before=before.value,
                  after=state.value)
    return ApiResponse(200, {"level": "operator", "trading_state": state.value, "previous": before.value})


ROUTE_HANDLERS = {
    "get_tenant_limits": get_tenant_limits, "put_tenant_limits": put_tenant_limits,
    "get_account_limits": get_account_limits, "put_account_limits": put_account_limits,
    "put_tenant_state": put_tenant_state, "put_account_state": put_account_state,
    "put_operator_state": put_operator_state,
}

# (method, path, handler key) — the rows ``backend.api.app.ROUTES`` adds
ROUTES = (
    ("GET", "/tenants/{tenant_id}/risk/limits", "get_tenant_limits"),
    ("PUT", "/tenants/{tenant_id}/risk/limits", "put_tenant_limits"),
    ("GET", "/tenants/{tenant_id}/accounts/{account_id}/limits", "get_account_limits"),
    ("PUT", "/tenants/{tenant_id}/accounts/{account_id}/limits", "put_account_limits"),
    ("PUT", "/tenants/{tenant_id}/trading-state", "put_tenant_state"),
    ("PUT", "/tenants/{tenant_id}/accounts/{account_id}/trading-state", "put_account_state"),
    ("PUT", "/ops/trading-state", "put_operator_state"),
)


_PATTERNS = {path: re.compile(re.sub(r"\{(\w+)\}", "[^/]+", path)) for _, path, _ in ROUTES}


def openapi_paths(error: Any) -> dict[str, Any]:
    """The OpenAPI path items of ``ROUTES`` (``error(code)``: the shared error response)."""
    limits_schema = LimitsRequest.model_json_schema()
    state_schema = TradingStateRequest.model_json_schema()
    obj = {"application/json": {"schema": {"type": "object"}}}
    errors = {c: error(c) for c in ("400", "401", "403", "404", "409", "415", "500")}
    out: dict[str, Any] = {}
    docs = {
        "get_tenant_limits": ("The tenant's limits: the operator's, the tenant's own and the effective ones", None),
        "put_tenant_limits": ("Set the tenant's limits (only tighter than the operator's)", limits_schema),
        "get_account_limits": ("An account's limits and the effective ones", None),
        "put_account_limits": ("Set an account's limits (only tighter than the operator's)", limits_schema),
        "put_tenant_state": ("Set the tenant's trading state (active, reduce_only, halted)", state_schema),
        "put_account_state": ("Set an account's trading state; halting an Alpaca Broker API account also "
                              "suspends it at the venue", state_schema),
        "put_operator_state": ("Set the operator's trading state (role platform_operator)", state_schema),
    }
    for method, path, key in ROUTES:
        summary, schema = docs[key]
        operation: dict[str, Any] = {"summary": summary, "security": [{"bearerAuth": []}],
                                     "responses": {"200": {"description": "The settings after the call.",
                                                           "content": obj}, **errors}}
        names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
        if names:
            operation["parameters"] = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                                       for n in names]
        if schema is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
        if key == "put_account_state":
            operation["responses"]["502"] = error("500", "The state is stored; the venue's trade suspension "
                                                         "failed. Repeat the same request.")
        out.setdefault(path, {})[method.lower()] = operation
    return out
