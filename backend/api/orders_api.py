"""The caller's orders over HTTP (issue 15 item 6): ``GET /orders``, ``GET /orders/{intent_id}``,
``DELETE /orders/{intent_id}`` (cancel), ``PATCH /orders/{intent_id}`` (replace).

Thin: query/body → ``backend.execution.order_management.OrderManager`` → ``OrderResponse``. The
order's id is its intent id (``intent_id`` of ``POST /execute``'s answer, or the id of an intent
document the app wrote). Every role sees only its own orders: another user's id answers 404 exactly
like an id that does not exist. Apps follow an order live by listening to
``tenants/{tenant_id}/order_intents/{intent_id}`` with ``onSnapshot`` (``firestore.rules`` lets the
owner — and the tenant's admins — read it, nobody else); these endpoints are for listing and acting.

=====  =========================  ===============================================================
200    read; canceled (or a replay of it); replaced (or a replay: ``Idempotent-Replayed: true``)
202    ``outcome: pending`` — the cancel was sent, the venue has not confirmed it yet
400    a bad query/body/id; ``Idempotency-Key`` missing on PATCH; a replacement the order or the
       venue refuses (a price it does not have, off the tick); ``ACCOUNT_HALTED`` / ``ACCOUNT_CLOSED`` /
       ``ACCOUNT_NOT_FOUND`` refusing a quantity increase (as the account binding answers them)
404    no order of the caller with this id
409    ``ORDER_NOT_PLACED`` (outcome still unknown), ``ORDER_NOT_WORKING`` (final, or never placed),
       ``ORDER_NOT_CANCELABLE`` (it filled before the cancel reached the venue; its fills are in the
       ledger), ``ORDER_CANCEL_PENDING``, ``REPLACE_NOT_SUPPORTED`` (a venue without replace),
       ``DRY_RUN``, ``IDEMPOTENCY_KEY_REUSED``, ``ORDER_REPLACE_PENDING`` (another key's replace is in
       flight); a quantity increase the pre-trade gate refuses: ``KILL_SWITCH``, ``REDUCE_ONLY``,
       ``POSITION_LIMIT`` — the body carries the order as recorded when known
429    ``RATE_LIMITED`` (a cancel or a replace counts as an order request: ``backend.api.rate_limit``),
       ``BROKER_RATE_LIMITED``; 503 ``BROKER_UNAVAILABLE`` / ``VENUE_UNAVAILABLE`` /
       ``STORE_CONTENDED``: retry (``Retry-After``; a replace with the same Idempotency-Key)
=====  =========================  ===============================================================
"""
from __future__ import annotations

import math
from typing import Any

from backend.api.auth import Identity
from backend.api.http import ApiError, ApiRequest, ApiResponse, bad_request
from backend.api.idempotency import KEY_HEADER, parse_key
from backend.domain.ids import ID


def _manager(engine: Any) -> Any:
    from backend.execution.order_management import OrderManager

    return OrderManager(engine)


def _check_id(intent_id: str) -> None:
    problem = ID.problem(intent_id)
    if problem is not None:
        raise bad_request("intent_id", problem)


def _response(view: Any, outcome: str, *, replayed: bool = False, status: int = 200) -> ApiResponse:
    from backend.api.models import OrderResponse

    body = OrderResponse.model_validate({"order": view, "outcome": outcome, "replayed": replayed})
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    return ApiResponse(status, body.model_dump(mode="json"), headers)


def _mapped(call: Any) -> Any:
    """Run ``call``; the core's outcomes as HTTP errors (module docstring)."""
    from backend.execution import order_management as om

    try:
        return call()
    except om.OrderNotFound:
        raise ApiError(404, "NOT_FOUND", "no order of the caller with this id", field="intent_id",
                       reason="not found") from None
    except om.OrderConflict as exc:
        extra = {"order": _order_out(exc.view)} if exc.view is not None else {}
        raise ApiError(409, exc.code, exc.message, extra=extra) from None
    except om.ReplaceRefused as exc:
        raise ApiError(400, "VALIDATION_ERROR", str(exc), field=exc.field, reason=exc.reason) from None
    except om.ReplaceRejected as exc:  # the pre-trade gate refused an increase: its code, nothing written
        from backend.execution.accounts import HTTP_STATUS

        extra = {"order": _order_out(exc.view)} if exc.view is not None else {}
        raise ApiError(HTTP_STATUS.get(exc.rejection.code, 409), exc.rejection.code.value, str(exc.rejection),
                       extra=extra) from None
    except om.VenueBusy as exc:
        status = 429 if exc.code == "BROKER_RATE_LIMITED" else 503
        seconds = exc.retry_after if exc.retry_after is not None and math.isfinite(float(exc.retry_after)) else 5
        raise ApiError(status, exc.code, exc.message,
                       headers={"Retry-After": str(min(max(int(math.ceil(float(seconds))), 1), 3600))}) from None


def _order_out(view: Any) -> Any:
    from backend.api.models import OrderOut

    return OrderOut.model_validate(view).model_dump(mode="json")


def list_orders(request: ApiRequest, identity: Identity, engine: Any) -> ApiResponse:
    from backend.api.app import parse_model
    from backend.api.ledger_review import single_valued
    from backend.api.models import OrdersPage, OrdersQuery

    query = parse_model(OrdersQuery, single_valued(request.query))
    items, cursor = _manager(engine).list_orders(identity.tenant_id, identity.uid, account=query.account,
                                                 symbol=query.symbol, state=query.status, after=query.cursor,
                                                 limit=query.limit)
    return ApiResponse(200, OrdersPage.model_validate({"items": items, "next_cursor": cursor}).model_dump(mode="json"))


def get_order(request: ApiRequest, identity: Identity, engine: Any, intent_id: str) -> ApiResponse:
    _check_id(intent_id)
    if request.query:
        raise bad_request(sorted(request.query)[0], "this endpoint takes no query parameters")
    view = _mapped(lambda: _manager(engine).get_order(identity.tenant_id, identity.uid, intent_id))
    return _response(view, "order")


def cancel_order(request: ApiRequest, identity: Identity, engine: Any, intent_id: str) -> ApiResponse:
    _check_id(intent_id)
    if request.body and request.body.strip():
        raise bad_request(None, "DELETE /orders/{intent_id} takes no body", code="INVALID_JSON")
    outcome = _mapped(lambda: _manager(engine).cancel(identity.tenant_id, identity.uid, intent_id))
    status = 202 if outcome.status == "pending" else 200
    return _response(outcome.view, outcome.status, replayed=outcome.replayed, status=status)


def replace_order(request: ApiRequest, identity: Identity, engine: Any, intent_id: str) -> ApiResponse:
    from backend.api.app import parse_json_object, parse_model
    from backend.api.models import ReplaceOrderRequest
    from backend.execution.order_management import ReplaceChanges

    _check_id(intent_id)
    body = parse_model(ReplaceOrderRequest, parse_json_object(request.body))
    key = parse_key(request.header(KEY_HEADER))
    if key is None:
        raise bad_request(KEY_HEADER, "required: a replace is made once per key (a retry with the same key "
                                      "answers the first replacement)")
    changes = ReplaceChanges(qty=body.qty, limit_price=body.limit_price, stop_price=body.stop_price,
                             trail=body.trail, time_in_force=body.time_in_force)
    outcome = _mapped(lambda: _manager(engine).replace(identity.tenant_id, identity.uid, intent_id, changes, key))
    return _response(outcome.view, outcome.status, replayed=outcome.replayed)


def openapi_paths(error: Any) -> dict[str, Any]:
    """The ``/orders…`` entries of docs/openapi.json (``error(code, description)`` builds an error response)."""
    from backend.api.models import ID_PATTERN, ORDER_WORKING_STATES

    ident = {"type": "string", "pattern": ID_PATTERN}
    id_param = {"name": "intent_id", "in": "path", "required": True, "schema": ident,
                "description": "The order's intent id (POST /execute's intent_id, or an intent document's id)."}

    def ok(model: str, description: str, **extra: Any) -> dict[str, Any]:
        return {"description": description, **extra,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}}}

    def q(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}

    not_found = error("404", "No order of the caller with this id (another user's id answers the same).")
    conflict = error("409", "ORDER_NOT_PLACED, ORDER_NOT_WORKING, ORDER_NOT_CANCELABLE, ORDER_CANCEL_PENDING, "
                            "REPLACE_NOT_SUPPORTED, DRY_RUN, IDEMPOTENCY_KEY_REUSED or ORDER_REPLACE_PENDING; on "
                            "PATCH a quantity increase the pre-trade gate refuses (KILL_SWITCH, REDUCE_ONLY, "
                            "POSITION_LIMIT); the body's `order` is the order as recorded.")
    venue = {"429": error("429", "RATE_LIMITED (a cancel or a replace is an order request of the caller's and the "
                                 "tenant's limit) or BROKER_RATE_LIMITED: retry after Retry-After seconds."),
             "503": error("503", "BROKER_UNAVAILABLE, VENUE_UNAVAILABLE or STORE_CONTENDED: retry after Retry-After "
                                 "seconds (a replace with the same Idempotency-Key).")}
    replayed = {"Idempotent-Replayed": {"schema": {"type": "string", "enum": ["true"]},
                                        "description": "Present on a replay of a stored outcome."}}
    key = {"name": "Idempotency-Key", "in": "header", "required": True,
           "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,100}$"},
           "description": "Required: the replacement's client order id is derived from it, so a retry with the "
                          "same key answers the first replacement; another body with the same key is a 409."}
    one = {"security": [{"bearerAuth": []}], "parameters": [id_param]}
    return {
        "/orders": {"get": {
            "summary": "The caller's working orders (placed, not final), by intent_id",
            "description": "One indexed query on the caller's intent records (uid, status placed, order_final "
                           "false); account, symbol and status filter that set. A page may hold fewer than limit "
                           "rows and still have a next_cursor. Apps follow one order live by listening to "
                           "tenants/{tenant_id}/order_intents/{intent_id} (onSnapshot).",
            "security": [{"bearerAuth": []}],
            "parameters": [
                q("account", ident, "Only orders of this account (the tenant's account id)."),
                q("symbol", {"type": "string", "minLength": 1, "maxLength": 64}, "Only orders of this symbol."),
                q("status", {"type": "string", "enum": list(ORDER_WORKING_STATES)}, "The venue order's state."),
                q("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}, "Page size."),
                q("cursor", ident, "next_cursor of the previous page (same filters).")],
            "responses": {"200": ok("OrdersPage", "One page."), **{c: error(c) for c in ("400", "401", "500")}}}},
        "/orders/{intent_id}": {
            "get": {"summary": "One order of the caller", **one,
                    "responses": {"200": ok("OrderResponse", "The order (outcome: order)."), "404": not_found,
                                  **{c: error(c) for c in ("400", "401", "500")}}},
            "delete": {"summary": "Cancel a working order at its venue (idempotent)",
                       "description": "Fills the venue reports before the cancel are recorded first (ledger = "
                                      "venue); once the venue confirms, the unfilled remainder's reservation is "
                                      "released and the ledger gets one row of kind cancel ({intent_id}--cancel).",
                       **one,
                       "responses": {"200": ok("OrderResponse", "Canceled (or the replay of an earlier cancel).",
                                               headers=replayed),
                                     "202": ok("OrderResponse", "Sent; the venue has not confirmed yet."),
                                     "404": not_found, "409": conflict, **venue,
                                     **{c: error(c) for c in ("400", "401", "403", "500")}}},
            "patch": {"summary": "Replace a working order's price / quantity where the venue allows",
                      "description": "The venue cancels the order and places its replacement; the ledger row of "
                                     "kind replace ({intent_id}--r{n}) links the new venue order to the old one "
                                     "(replaces); one order works at the venue afterwards. A qty above the "
                                     "unfilled remainder passes the pre-trade gate for the extra units (trading "
                                     "states, account, position limit; no daily trade is consumed) and the extra "
                                     "is reserved before the venue is asked; a decrease or a price change is let "
                                     "through under every trading state, like a cancel.",
                      "security": [{"bearerAuth": []}], "parameters": [id_param, key],
                      "requestBody": {"required": True, "content": {"application/json": {"schema": {
                          "$ref": "#/components/schemas/ReplaceOrderRequest"}}}},
                      "responses": {"200": ok("OrderResponse", "Replaced (or the replay for this key).",
                                              headers=replayed),
                                    "404": not_found, "409": conflict, **venue,
                                    **{c: error(c) for c in ("400", "401", "403", "413", "415", "500")}}},
        },
    }
