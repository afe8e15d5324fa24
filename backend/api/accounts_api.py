"""The trader's side of accounts (issue 12, issue 19 item 9): ``GET /accounts``, ``GET /accounts/{id}``,
``GET /accounts/{id}/positions`` and ``GET /accounts/{id}/balance``.

Who sees what. Every role reads accounts of its token's tenant only.

- A trader (or risk_manager) sees the accounts whose ``owner_uids`` hold their uid. An account of
  another user and an id that does not exist get the same answer, 403 ``ACCOUNT_NOT_OWNED`` (the
  status never tells a colleague that an id exists), as the order binding answers.
- A tenant_admin or auditor (``Identity.can_read_tenant``) reads every account of the tenant (an
  unknown id is then a 404) and may list one member's with ``?uid=``; a suspended admin is refused
  (``MEMBER_SUSPENDED``, ``admin_members.require_active_actor``).

Listing. ``tenants/{t}/accounts`` by document id, cursor-paged (``store.admin_page``: an
``array_contains`` on ``owner_uids`` for one user's accounts, served by Firestore's automatic
single-field index). ``is_default`` and ``default_for`` come from the owners' member documents
(``tenants/{t}/members/{uid}.default_account_id``), read in one batch per page; a trader sees only
their own default, never a co-owner's. A document the strict codec refuses is left out with an
ERROR line (``api.account_unreadable``); on a single read it is a 500 to whoever may see it.

Positions and balance. The account's venue is the one orders use: ``engine.venues_for(tenant,
AccountBinding)`` (``backend/adapters/venue_pool.py``), so the venue account read is exactly the one
the account trades. Each distinct venue of the account's router is asked ``get_positions()`` (and
``get_account()`` for the balance) during the request; nothing is cached between requests. The
ledger's view beside it is ``backend.risk.reconciliation.ledger_net_positions`` of the tenant's
ledger rows with ``broker_account_id`` = the account (the ledger review's indexed equality filter,
``store.ledger_page``, every page), matched to the venue's symbols with ``position_key``
(``BTC/USD`` = ``BTCUSD``). Every symbol of either side is listed with ``qty`` (venue),
``ledger_qty`` and ``difference`` = qty - ledger_qty: a difference is shown, never hidden. The venue is
read before the ledger, so an order filling in between shows as a difference until the next read
(as in the daily reconciliation).

Decimals leave as exact strings of ``backend.domain.wire``'s kinds (quantity, price, money), rounded
half-even only beyond the kind's documented scale.

Failures (nothing is written by any of these reads):

=====  ======================  ===================================================================
503    ``VENUE_UNAVAILABLE``   the account's venue cannot be built (connection document missing or
                               invalid, credentials unreadable); ``Retry-After``
503    ``BROKER_UNAVAILABLE``  the venue did not answer (timeout, 5xx, outage); ``Retry-After``
429    ``BROKER_RATE_LIMITED`` the venue is rate limiting; ``Retry-After``
502    ``VENUE_ERROR``         the venue answered with another error (e.g. it does not know the
                               account); the reason is the venue's error code only
=====  ======================  ===================================================================
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Iterable, Mapping, Sequence

from backend.api.auth import Identity, forbidden
from backend.api.http import ApiError, ApiRequest, ApiResponse, bad_request
from backend.domain.errors import InvalidInput
from backend.domain.ids import ID
from backend.domain.money import ZERO
from backend.domain.wire import decimal_out
from backend.logs import log_event

LEDGER_PAGE_SIZE = 500
VENUE_RETRY_AFTER = "30"  # the venue pool re-reads a connection after CONNECTION_TTL_SECONDS (30 s)
BROKER_RETRY_AFTER = 5


# ------------------------------------------------------------------------------------ access


def _not_owned(account_id: str) -> ApiError:
    return ApiError(403, "ACCOUNT_NOT_OWNED", f"account {account_id} is not an account of the caller",
                    field="account_id", reason="not an account of the caller")


def _check_id(name: str, value: str) -> None:
    problem = ID.problem(value)
    if problem is not None:
        raise bad_request(name, problem)


def _require_active_reader(store: Any, identity: Identity) -> None:
    if identity.can_read_tenant:
        from backend.api.admin_members import require_active_actor

        require_active_actor(store, identity)


def _parse(doc: Mapping[str, Any], tenant_id: str, doc_id: str) -> Any:
    """The account document parsed strictly, or None (logged) when the codec refuses it."""
    from backend.domain.accounts import Account

    try:
        return Account.from_dict(doc)
    except (InvalidInput, TypeError, ValueError) as exc:
        log_event("api.account_unreadable", severity="ERROR", tenant_id=tenant_id, account_id=doc_id,
                  error=str(exc)[:300])
        return None


def readable_account(store: Any, identity: Identity, account_id: str) -> Any:
    """The ``Account`` the caller may read, or the refusal (module docstring)."""
    from backend.domain.accounts import account_path

    _check_id("account_id", account_id)
    _require_active_reader(store, identity)
    path = account_path(identity.tenant_id, account_id)
    doc = store.get_all([path])[path][0]
    owners = doc.get("owner_uids") if isinstance(doc, Mapping) else None
    owned = isinstance(owners, list) and identity.uid in owners
    if doc is None or not (owned or identity.can_read_tenant):
        if doc is None and identity.can_read_tenant:
            raise ApiError(404, "NOT_FOUND", f"no account {account_id}", field="account_id", reason="not found")
        raise _not_owned(account_id)
    account = _parse(doc, identity.tenant_id, account_id)
    if account is None:
        raise ApiError(500, "ACCOUNT_UNREADABLE", "the account document cannot be read; it has been logged",
                       field="account_id", reason="the stored document does not parse")
    return account


# ----------------------------------------------------------------------------------- listing


def _venues_of(store: Any, tenant_id: str, connection_ids: Iterable[str]) -> dict[str, str | None]:
    """connection id → its venue (``deployment`` for the reserved one; None when the document is missing)."""
    from backend.domain.accounts import connection_path
    from backend.ports.accounts import DEPLOYMENT_CONNECTION_ID, DEPLOYMENT_VENUE

    out: dict[str, str | None] = {}
    paths = {}
    for cid in set(connection_ids):
        if cid == DEPLOYMENT_CONNECTION_ID:
            out[cid] = DEPLOYMENT_VENUE
        else:
            paths[cid] = connection_path(tenant_id, cid)
    docs = store.get_all(list(paths.values())) if paths else {}
    for cid, path in paths.items():
        doc = docs[path][0]
        venue = doc.get("venue") if isinstance(doc, Mapping) else None
        out[cid] = venue if isinstance(venue, str) else None
    return out


def _defaults_of(store: Any, tenant_id: str, uids: Iterable[str]) -> dict[str, str | None]:
    """uid → their default account id (None: no member document or no default)."""
    from backend.ports.accounts import member_path

    paths = {uid: member_path(tenant_id, uid) for uid in set(uids)}
    docs = store.get_all(list(paths.values())) if paths else {}
    out: dict[str, str | None] = {}
    for uid, path in paths.items():
        doc = docs[path][0]
        value = doc.get("default_account_id") if isinstance(doc, Mapping) else None
        out[uid] = value if isinstance(value, str) and value else None
    return out


def _summaries(store: Any, identity: Identity, accounts: Sequence[Any], subject: str | None) -> list[dict[str, Any]]:
    """``MyAccountOut`` items. ``subject``: the user whose default ``is_default`` answers (None: every account)."""
    from backend.api.app import _jsonable

    venues = _venues_of(store, identity.tenant_id, (a.connection_id for a in accounts))
    if identity.can_read_tenant:
        visible = {uid for a in accounts for uid in a.owner_uids}
    else:
        visible = {identity.uid}  # a trader never learns a co-owner's default
    defaults = _defaults_of(store, identity.tenant_id, visible | ({subject} if subject else set()))
    items = []
    for account in accounts:
        doc = account.to_dict()
        default_for = [uid for uid in account.owner_uids if uid in visible and defaults.get(uid) == account.account_id]
        items.append(_jsonable({
            **{k: doc[k] for k in ("account_id", "connection_id", "venue_account_id", "owner_uids", "status",
                                   "asset_classes", "limits", "created_at", "updated_at")},
            "venue": venues.get(account.connection_id),
            "is_default": None if subject is None else defaults.get(subject) == account.account_id,
            "default_for": default_for}))
    return items


def list_accounts(request: ApiRequest, identity: Identity, store: Any) -> ApiResponse:
    """GET /accounts."""
    from backend.api.admin_members import encode_id_cursor, page_rows
    from backend.api.app import parse_model
    from backend.api.ledger_review import single_valued
    from backend.api.models import MyAccountsPage, MyAccountsQuery

    query = parse_model(MyAccountsQuery, single_valued(request.query))
    if query.uid is not None and query.uid != identity.uid and not identity.can_read_tenant:
        raise forbidden("only a tenant_admin or auditor may list another member's accounts", "uid")
    _require_active_reader(store, identity)
    subject = query.uid if query.uid is not None else (None if identity.can_read_tenant else identity.uid)
    rows = page_rows(store, identity.tenant_id, "accounts", {}, query.cursor, query.limit,
                     contains=("owner_uids", subject) if subject is not None else None)
    nxt = encode_id_cursor(rows[query.limit - 1][0]) if len(rows) > query.limit else None
    accounts = [a for a in (_parse(doc, identity.tenant_id, doc_id) for doc_id, doc in rows[: query.limit])
                if a is not None and (subject is None or a.is_owned_by(subject))]
    body = MyAccountsPage.model_validate({"items": _summaries(store, identity, accounts, subject), "next_cursor": nxt})
    return ApiResponse(200, body.model_dump(mode="json"))


def get_account(request: ApiRequest, identity: Identity, store: Any, account_id: str) -> ApiResponse:
    """GET /accounts/{account_id}."""
    from backend.api.models import MyAccountResponse

    _no_query(request)
    account = readable_account(store, identity, account_id)
    subject = identity.uid if account.is_owned_by(identity.uid) or not identity.can_read_tenant else None
    item = _summaries(store, identity, [account], subject)[0]
    return ApiResponse(200, MyAccountResponse.model_validate({"account": item}).model_dump(mode="json"))


def _no_query(request: ApiRequest) -> None:
    if request.query:
        raise bad_request(sorted(request.query)[0], "this endpoint takes no query parameters")


# ------------------------------------------------------------------------------------ venues


def account_router(engine: Any, tenant_id: str, account: Any) -> tuple[Any, Any]:
    """(binding, router) of ``account``: the venues its orders use; 503 ``VENUE_UNAVAILABLE`` otherwise."""
    from backend.ports.accounts import DEPLOYMENT_CONNECTION_ID, AccountBinding, VenueUnavailable

    try:
        if account.connection_id == DEPLOYMENT_CONNECTION_ID:
            connection = None
        else:
            connection = engine.store.get_connection(tenant_id, account.connection_id)
            if connection is None:
                raise VenueUnavailable(f"connection {account.connection_id}: no such connection document")
        binding = AccountBinding.of(account, connection)
        resolve = getattr(engine, "venues_for", None)
        if resolve is None:  # an engine without the method: the pool the risk API uses
            from backend.api.risk_settings import venue_pool

            resolve = venue_pool(engine).router_for
        return binding, resolve(tenant_id, binding)
    except InvalidInput as exc:  # the connection document an admin wrote does not parse
        raise _venue_unavailable(tenant_id, account, f"the connection document is invalid ({exc.field})") from None
    except VenueUnavailable as exc:
        raise _venue_unavailable(tenant_id, account, exc.reason) from None


def _venue_unavailable(tenant_id: str, account: Any, reason: str) -> ApiError:
    log_event("api.account_venue_unavailable", severity="WARNING", tenant_id=tenant_id,
              account_id=account.account_id, connection_id=account.connection_id, reason=reason[:300])
    return ApiError(503, "VENUE_UNAVAILABLE", "the account's venue cannot be reached as configured; retry later",
                    reason=reason[:300], headers={"Retry-After": VENUE_RETRY_AFTER})


def _venue_call(tenant_id: str, account: Any, what: str, call: Any) -> Any:
    """One venue read; a ``BrokerError`` becomes 503 / 429 / 502 (module docstring)."""
    from backend.api.app import _retry_after_header
    from backend.domain.orders import BrokerError, BrokerErrorCode

    try:
        return call()
    except BrokerError as exc:
        log_event("api.account_venue_error", severity="WARNING", tenant_id=tenant_id, account_id=account.account_id,
                  call=what, code=exc.code.value)
        if exc.code is BrokerErrorCode.RATE_LIMITED:
            raise ApiError(429, "BROKER_RATE_LIMITED", "the venue is rate limiting; retry later", reason=exc.code.value,
                           headers={"Retry-After": _retry_after_header(getattr(exc, "retry_after", None), 1)}) from None
        if exc.code is BrokerErrorCode.UNAVAILABLE:
            raise ApiError(503, "BROKER_UNAVAILABLE", "the venue did not answer; retry later", reason=exc.code.value,
                           headers={"Retry-After": _retry_after_header(getattr(exc, "retry_after", None),
                                                                       BROKER_RETRY_AFTER)}) from None
        raise ApiError(502, "VENUE_ERROR", f"the venue refused the {what} read", reason=exc.code.value) from None


def _venue_name(venue: Any) -> str:
    return str(getattr(venue, "name", None) or type(venue).__name__)


# ------------------------------------------------------------------------------------ ledger


def ledger_view(store: Any, tenant_id: str, account_id: str) -> tuple[dict[str, Decimal], dict[str, str], int]:
    """(position key → net filled quantity, position key → the ledger's symbol spelling, fill rows summed)
    of the tenant's ledger rows of ``account_id``: every page of the indexed equality filter."""
    from backend.risk.reconciliation import FILL_KINDS, ledger_net_positions, position_key

    rows: list[Mapping[str, Any]] = []
    after: tuple[str, str] | None = None
    while True:
        page = store.ledger_page(tenant_id, equals={"broker_account_id": account_id}, created_from=None,
                                 created_before=None, after=after, limit=LEDGER_PAGE_SIZE)
        rows.extend(doc for _, doc in page if doc.get("kind") in FILL_KINDS)
        if len(page) < LEDGER_PAGE_SIZE:
            break
        after = (str(page[-1][1].get("created_at")), page[-1][0])
    spelling: dict[str, str] = {}
    for row in reversed(rows):  # oldest first: the first spelling booked names the symbol
        symbol = str(row.get("symbol") or "")
        spelling.setdefault(position_key(symbol), symbol)
    net = ledger_net_positions(rows).get(account_id, {})
    counted = sum(1 for row in rows if str(row.get("side") or "").lower() in ("buy", "sell")
                  and _dec(row.get("filled_qty") or 0) != ZERO)
    return net, spelling, counted


def _dec(value: Any) -> Decimal | None:
    if value is None:
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


def position_rows(venue_positions: Sequence[tuple[str, Any]], ledger: Mapping[str, Decimal],
                  spelling: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every symbol of the venue or the ledger: venue qty, avg entry, market value, ledger qty, difference."""
    from backend.risk.reconciliation import position_key

    held: dict[str, dict[str, Any]] = {}
    for venue_name, position in venue_positions:
        key = position_key(str(position.symbol))
        row = held.setdefault(key, {"symbol": str(position.symbol), "venue_name": venue_name, "qty": ZERO,
                                    "avg_entry_price": None, "market_value": None})
        row["qty"] += _dec(position.qty)
        row["avg_entry_price"] = _dec(getattr(position, "avg_entry_price", None))
        value = _dec(getattr(position, "market_value", None))  # where the venue's position carries one
        if value is not None:
            row["market_value"] = value + (row["market_value"] or ZERO)
    out = []
    for key in sorted(set(held) | {k for k, v in ledger.items() if v != ZERO}):
        row = held.get(key) or {"symbol": spelling.get(key, key), "venue_name": None, "qty": ZERO,
                                "avg_entry_price": None, "market_value": None}
        booked = ledger.get(key, ZERO)
        out.append({"symbol": row["symbol"], "venue_name": row["venue_name"],
                    "qty": decimal_out(row["qty"], "quantity"),
                    "avg_entry_price": decimal_out(row["avg_entry_price"], "price"),
                    "market_value": decimal_out(row["market_value"], "money"),
                    "ledger_qty": decimal_out(booked, "quantity"),
                    "difference": decimal_out(row["qty"] - booked, "quantity")})
    return out


# --------------------------------------------------------------------------------- endpoints


def _header(binding: Any, now: Any) -> dict[str, Any]:
    return {"account_id": binding.account_id, "connection_id": binding.connection_id, "venue": binding.venue,
            "venue_account_id": binding.venue_account_id, "as_of": now.isoformat()}


def _read_positions(engine: Any, identity: Identity, account: Any, router: Any) -> tuple[list[dict[str, Any]], int]:
    tenant = identity.tenant_id
    held = [(_venue_name(venue), position) for venue in router.venues()
            for position in _venue_call(tenant, account, "positions", venue.get_positions)]
    ledger, spelling, counted = ledger_view(engine.store, tenant, account.account_id)
    return position_rows(held, ledger, spelling), counted


def positions(request: ApiRequest, identity: Identity, engine: Any, now: Any, account_id: str) -> ApiResponse:
    """GET /accounts/{account_id}/positions."""
    from backend.api.models import AccountPositionsResponse

    _no_query(request)
    account = readable_account(engine.store, identity, account_id)
    binding, router = account_router(engine, identity.tenant_id, account)
    rows, counted = _read_positions(engine, identity, account, router)
    differences = sum(1 for row in rows if Decimal(row["difference"]) != ZERO)
    body = {**_header(binding, now), "positions": rows, "in_balance": differences == 0, "differences": differences,
            "ledger_fill_rows": counted}
    return ApiResponse(200, AccountPositionsResponse.model_validate(body).model_dump(mode="json"))


def balance(request: ApiRequest, identity: Identity, engine: Any, now: Any, account_id: str) -> ApiResponse:
    """GET /accounts/{account_id}/balance."""
    from backend.api.models import AccountBalanceResponse

    _no_query(request)
    account = readable_account(engine.store, identity, account_id)
    binding, router = account_router(engine, identity.tenant_id, account)
    balances = []
    for venue in router.venues():
        figures = _venue_call(identity.tenant_id, account, "balance", venue.get_account)
        balances.append({"venue_name": _venue_name(venue), "currency": str(getattr(figures, "currency", "") or "USD"),
                         "cash": decimal_out(figures.cash, "money"), "equity": decimal_out(figures.equity, "money"),
                         "buying_power": decimal_out(figures.buying_power, "money")})
    rows, _ = _read_positions(engine, identity, account, router)
    body = {**_header(binding, now), "balances": balances, "ledger_positions": rows,
            "in_balance": all(Decimal(row["difference"]) == ZERO for row in rows)}
    return ApiResponse(200, AccountBalanceResponse.model_validate(body).model_dump(mode="json"))


# ----------------------------------------------------------------------------------- OpenAPI


def openapi_paths(error: Any) -> dict[str, Any]:
    """The ``/accounts…`` entries of docs/openapi.json (``error(code, description)`` builds an error response)."""
    from backend.api.models import ID_PATTERN

    ident = {"type": "string", "pattern": ID_PATTERN}
    account_param = {"name": "account_id", "in": "path", "required": True, "schema": ident,
                     "description": "The tenant's account id."}

    def ok(model: str, description: str) -> dict[str, Any]:
        return {"description": description,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}}}

    not_owned = error("403", "ACCOUNT_NOT_OWNED: not an account of the caller (the same answer for an id that does "
                             "not exist); MEMBER_SUSPENDED for a suspended tenant_admin/auditor.")
    venue_errors = {
        "429": error("429", "BROKER_RATE_LIMITED: the venue is rate limiting; retry after Retry-After seconds."),
        "502": error("500", "VENUE_ERROR: the venue answered with an error (reason: its code)."),
        "503": error("503", "VENUE_UNAVAILABLE (the account's connection or credentials cannot be used) or "
                            "BROKER_UNAVAILABLE (the venue did not answer); retry after Retry-After seconds."),
    }
    one = {"security": [{"bearerAuth": []}], "parameters": [account_param]}
    return {
        "/accounts": {"get": {
            "summary": "The caller's accounts (tenant_admin/auditor: the tenant's, or one member's with uid)",
            "description": "By account_id, cursor pagination. is_default and default_for come from the members' "
                           "default_account_id.",
            "security": [{"bearerAuth": []}],
            "parameters": [
                {"name": "uid", "in": "query", "required": False, "schema": ident,
                 "description": "tenant_admin/auditor: one member's accounts (a trader may name only themself)."},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}},
                {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"},
                 "description": "next_cursor of the previous page (same uid)."}],
            "responses": {"200": ok("MyAccountsPage", "One page."),
                          **{c: error(c) for c in ("400", "401", "500")},
                          "403": error("403", "uid from a trader naming someone else; MEMBER_SUSPENDED.")}}},
        "/accounts/{account_id}": {"get": {
            "summary": "One account of the caller", **one,
            "responses": {"200": ok("MyAccountResponse", "The account."),
                          **{c: error(c) for c in ("400", "401", "500")}, "403": not_owned,
                          "404": error("404", "tenant_admin/auditor: no such account.")}}},
        "/accounts/{account_id}/positions": {"get": {
            "summary": "The account's positions at its venue, with the ledger's net filled quantity beside them",
            "description": "Read from the account's venue during the request (never cached). Every symbol of the "
                           "venue or of the ledger rows of this account is listed with qty (venue), ledger_qty and "
                           "difference = qty - ledger_qty; in_balance says whether all differences are zero.",
            **one,
            "responses": {"200": ok("AccountPositionsResponse", "Venue and ledger positions."),
                          **{c: error(c) for c in ("400", "401", "500")}, "403": not_owned,
                          "404": error("404", "tenant_admin/auditor: no such account."), **venue_errors}}},
        "/accounts/{account_id}/balance": {"get": {
            "summary": "The account's cash, equity and buying power at its venue, with the ledger's positions beside",
            "description": "One entry per distinct venue of the account, read during the request (never cached). "
                           "The ledger books fills, not cash: ledger_positions compares positions.",
            **one,
            "responses": {"200": ok("AccountBalanceResponse", "Venue balances and the ledger's positions."),
                          **{c: error(c) for c in ("400", "401", "500")}, "403": not_owned,
                          "404": error("404", "tenant_admin/auditor: no such account."), **venue_errors}}},
    }
