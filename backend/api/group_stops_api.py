"""A FILLED group's protective stop per leg over HTTP (issue 15): ``DELETE`` (cancel) and ``PATCH``
(move) ``/groups/{group_id}/legs/{leg_id}/stop``.

Thin: path/body → ``backend.execution.group.stop_management.StopManager`` → ``GroupStopResponse``.
Only the group's owner acts on its stops: another user's group, another tenant's group with the same
id and a missing group answer the same 404. ``GET /groups/{group_id}`` shows every leg's stop
(``legs[i].stop_loss``); apps can listen to the group document with ``onSnapshot``.

=====  =========================  ===============================================================
200    canceled (or a replay of it); replaced (or a replay for the key: ``Idempotent-Replayed: true``)
202    ``outcome: pending`` — the cancel is stored and sent; the venue has not confirmed it (or could
       not be reached): the sweeper completes it
400    a bad id or body; ``Idempotency-Key`` missing on PATCH; ``stop_price`` off the tick (field
       ``stop_price``), ``STOP_PRICE_WRONG_SIDE`` against the current quote, or refused by the venue
404    no group of the caller with this id; no such leg, or no stop on it (``field`` says which)
409    ``STOP_NOT_CANCELABLE`` (it filled before the cancel reached the venue: its fill is in the
       ledger), ``STOP_NOT_WORKING``, ``STOP_CANCEL_PENDING``, ``REPLACE_NOT_SUPPORTED`` (the venue
       has no replace; a cancel + new order is never done silently), ``DRY_RUN`` (replace only),
       ``IDEMPOTENCY_KEY_REUSED`` — the body's ``stop`` is the stop as recorded when known
429    ``RATE_LIMITED`` (an order request: ``backend.api.rate_limit``), ``BROKER_RATE_LIMITED``;
503    ``BROKER_UNAVAILABLE``, ``GROUP_BUSY`` (the sweeper holds the group right now): retry
       (``Retry-After``; a replace with the same Idempotency-Key)
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
    from backend.execution.group.stop_management import StopManager

    return StopManager(engine)


def _check_ids(group_id: str, leg_id: str) -> None:
    for name, value in (("group_id", group_id), ("leg_id", leg_id)):
        problem = ID.problem(value)
        if problem is not None:
            raise bad_request(name, problem)


def _stop_out(view: Any) -> Any:
    from backend.api.models import GroupStopOut

    return GroupStopOut.model_validate(view).model_dump(mode="json")


def _response(view: Any, outcome: str, *, replayed: bool = False, status: int = 200) -> ApiResponse:
    from backend.api.models import GroupStopResponse

    body = GroupStopResponse.model_validate({"stop": view, "outcome": outcome, "replayed": replayed})
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    if status == 202:
        headers["Retry-After"] = "5"
    return ApiResponse(status, body.model_dump(mode="json"), headers)


def _mapped(call: Any) -> Any:
    """Run ``call``; the core's outcomes as HTTP errors (module docstring)."""
    from backend.execution.group import stop_management as sm

    try:
        return call()
    except sm.StopNotFound as exc:
        message = "no group of the caller with this id" if exc.field == "group_id" else exc.reason
        raise ApiError(404, "NOT_FOUND", message, field=exc.field, reason="not found") from None
    except sm.StopConflict as exc:
        extra = {"stop": _stop_out(exc.view)} if exc.view is not None else {}
        raise ApiError(409, exc.code, exc.message, extra=extra) from None
    except sm.StopRefused as exc:
        raise ApiError(400, exc.code, str(exc), field=exc.field, reason=exc.reason) from None
    except sm.VenueBusy as exc:
        status = 429 if exc.code == "BROKER_RATE_LIMITED" else 503
        seconds = exc.retry_after if exc.retry_after is not None and math.isfinite(float(exc.retry_after)) else 5
        raise ApiError(status, exc.code, exc.message,
                       headers={"Retry-After": str(min(max(int(math.ceil(float(seconds))), 1), 3600))}) from None


def cancel_stop(request: ApiRequest, identity: Identity, engine: Any, group_id: str, leg_id: str) -> ApiResponse:
    _check_ids(group_id, leg_id)
    if request.body and request.body.strip():
        raise bad_request(None, "DELETE /groups/{group_id}/legs/{leg_id}/stop takes no body", code="INVALID_JSON")
    outcome = _mapped(lambda: _manager(engine).cancel(identity.tenant_id, identity.uid, group_id, leg_id))
    status = 202 if outcome.status == "pending" else 200
    return _response(outcome.view, outcome.status, replayed=outcome.replayed, status=status)


def replace_stop(request: ApiRequest, identity: Identity, engine: Any, group_id: str, leg_id: str) -> ApiResponse:
    from backend.api.app import parse_json_object, parse_model
    from backend.api.models import GroupStopReplaceRequest

    _check_ids(group_id, leg_id)
    body = parse_model(GroupStopReplaceRequest, parse_json_object(request.body))
    key = parse_key(request.header(KEY_HEADER))
    if key is None:
        raise bad_request(KEY_HEADER, "required: a stop is moved once per key (a retry with the same key answers "
                                      "the first move)")
    outcome = _mapped(lambda: _manager(engine).replace(identity.tenant_id, identity.uid, group_id, leg_id,
                                                       body.stop_price, key))
    return _response(outcome.view, outcome.status, replayed=outcome.replayed)


def openapi_paths(error: Any) -> dict[str, Any]:
    """The ``/groups/{group_id}/legs/{leg_id}/stop`` entry of docs/openapi.json."""
    from backend.api.models import ID_PATTERN

    ident = {"type": "string", "pattern": ID_PATTERN}
    params = [{"name": "group_id", "in": "path", "required": True, "schema": ident,
               "description": "The group's id (POST /execute/multi-leg's group_id)."},
              {"name": "leg_id", "in": "path", "required": True, "schema": ident, "description": "The leg's id."}]

    def ok(description: str, **extra: Any) -> dict[str, Any]:
        return {"description": description, **extra,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/GroupStopResponse"}}}}

    not_found = error("404", "No group of the caller with this id (another user's or tenant's answers the same), "
                             "or no such leg / no stop on it.")
    conflict = error("409", "STOP_NOT_CANCELABLE, STOP_NOT_WORKING, STOP_CANCEL_PENDING, REPLACE_NOT_SUPPORTED, "
                            "DRY_RUN or IDEMPOTENCY_KEY_REUSED; the body's `stop` is the stop as recorded.")
    venue = {"429": error("429", "RATE_LIMITED or BROKER_RATE_LIMITED: retry after Retry-After seconds."),
             "503": error("503", "BROKER_UNAVAILABLE or GROUP_BUSY: retry after Retry-After seconds (a replace "
                                 "with the same Idempotency-Key).")}
    replayed = {"Idempotent-Replayed": {"schema": {"type": "string", "enum": ["true"]},
                                        "description": "Present on a replay of a stored outcome."}}
    key = {"name": "Idempotency-Key", "in": "header", "required": True,
           "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,100}$"},
           "description": "Required: the new stop order's client id is derived from it, so a retry with the same "
                          "key answers the first move; another stop_price with the same key is a 409."}
    return {"/groups/{group_id}/legs/{leg_id}/stop": {
        "delete": {"summary": "Cancel a FILLED group leg's protective stop at its venue (owner only, idempotent)",
                   "description": "The request is stored on the group first, then the venue cancels the stop; the "
                                  "ledger gets one row of kind cancel ({group_id}--{leg_id}--stop--cancel). A stop "
                                  "that filled first answers 409 STOP_NOT_CANCELABLE with its fill in the ledger. "
                                  "Allowed under dry run and while trading is halted (it adds no exposure).",
                   "security": [{"bearerAuth": []}], "parameters": params,
                   "responses": {"200": ok("Canceled (or the replay of an earlier cancel).", headers=replayed),
                                 "202": ok("Stored and sent; the venue has not confirmed (the sweeper completes it)."),
                                 "404": not_found, "409": conflict, **venue,
                                 **{c: error(c) for c in ("400", "401", "403", "500")}}},
        "patch": {"summary": "Move a FILLED group leg's protective stop (owner only; the venue's replace)",
                  "description": "The venue replaces the stop order with one at the new stop_price; the ledger row "
                                 "of kind replace ({group_id}--{leg_id}--stop--r{n}) links the new venue order to "
                                 "the old one (replaces). Refused under dry run (DRY_RUN); allowed while trading "
                                 "is halted (it adds no exposure).",
                  "security": [{"bearerAuth": []}], "parameters": [*params, key],
                  "requestBody": {"required": True, "content": {"application/json": {"schema": {
                      "$ref": "#/components/schemas/GroupStopReplaceRequest"}}}},
                  "responses": {"200": ok("Replaced (or the replay for this key).", headers=replayed),
                                "404": not_found, "409": conflict, **venue,
                                **{c: error(c) for c in ("400", "401", "403", "413", "415", "500")}}},
    }}
