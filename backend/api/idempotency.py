"""Idempotency keys → deterministic intent / group ids, and the "same key, different body" check.

``Idempotency-Key`` (the one id rule, ``backend.domain.ids.ID``) names one side effect of one
user: the intent id is ``k-`` + sha256(tenant, uid, key) (groups: ``g-`` + ...), so a retry
reaches the same intent record and the engine replays its stored outcome. A body ``intent_id``
is the same thing as the header (same derivation), so ids a client chooses over HTTP are per user:
a colleague sending the same id gets their own intent — no squatting, no 409 that reveals the id
exists. Before executing, the stored record is compared with the new request: a different
normalized intent under the caller's own id is a 409, never a replay of another outcome.

Intent documents (``tenants/<t>/order_intents/<id>``, written by apps) use the app's document id
as is. The rules let a member only *create* such a document, with their own uid, an id of the
``ID`` rule, and never an id of the derived shape ``[kg]-<48 hex>`` (so no app can pre-create the
id of another user's HTTP intent or group). A colleague can therefore: create documents of their
own under ids they choose, and learn that an id is taken from a refused create (ids are
first-come; apps should use Firestore auto-ids, which cannot be guessed). A colleague cannot: read,
change or delete another user's intent document, or any group, ledger or history row of theirs.
"""
from __future__ import annotations

import hashlib
import re
from decimal import Decimal
from typing import Any, Mapping

from backend.api.http import ApiError, bad_request
from backend.domain.ids import ID

KEY_HEADER = "Idempotency-Key"


def parse_key(raw: str | None) -> str | None:
    """The one id rule (``backend.domain.ids.ID``), like every other client-chosen id."""
    if raw is None:
        return None
    problem = ID.problem(raw)
    if problem is not None:
        raise bad_request(KEY_HEADER, problem)
    return raw


def derived_id(prefix: str, tenant_id: str, uid: str, key: str) -> str:
    digest = hashlib.sha256(f"{prefix}\x1f{tenant_id}\x1f{uid}\x1f{key}".encode()).hexdigest()[:48]
    return f"{prefix}-{digest}"


def resolve_intent_id(key: str | None, body_intent_id: str | None, tenant_id: str, uid: str) -> str | None:
    """The stored intent id for a request: ``k-`` + sha256(tenant, uid, id) of the header or, without
    one, of the body's ``intent_id`` (both must agree when both are sent). Ids a client chooses are
    thus per user: a colleague sending the same id reaches their own intent, never squats this
    user's (no 409 that tells them it exists)."""
    if key is not None and body_intent_id is not None and body_intent_id != key:
        raise bad_request("intent_id", f"differs from the {KEY_HEADER} header; send one or make them equal")
    chosen = key if key is not None else body_intent_id
    return None if chosen is None else derived_id("k", tenant_id, uid, chosen)


def conflict(reason: str, field: str = KEY_HEADER) -> ApiError:
    return ApiError(409, "IDEMPOTENCY_CONFLICT",
                    "this idempotency key was already used for a different request", field=field, reason=reason)


def check_intent_record(record: Any, new_intent: Mapping[str, Any], uid: str, field: str = KEY_HEADER) -> None:
    """Raise 409 unless the stored intent record is this user's and holds the same normalized intent."""
    if record is None:
        return
    data = record.data
    if data.get("uid") != uid:
        raise conflict("the id belongs to another request", field)
    stored = data.get("intent")
    if not isinstance(stored, Mapping):
        raise conflict("the id is taken by a request of another kind", field)
    if new_intent.get("broker_account_id") is None:  # "my default": the stored intent holds what it bound to
        stored = {k: v for k, v in stored.items() if k != "broker_account_id"}
        new_intent = {k: v for k, v in new_intent.items() if k != "broker_account_id"}
    if _normalize(stored) != _normalize(new_intent):
        different = sorted(k for k in set(stored) | set(new_intent) if _norm(stored.get(k)) != _norm(new_intent.get(k)))
        raise conflict(f"fields differ from the first request: {', '.join(different)}", field)


def _norm(value: Any) -> Any:
    if isinstance(value, (str, int, float, Decimal)) and not isinstance(value, bool):
        try:
            return Decimal(str(value)).normalize() if not isinstance(value, str) or _is_number(value) else value
        except ArithmeticError:
            return value
    if isinstance(value, Mapping):
        return {k: _norm(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    return value


def _is_number(text: str) -> bool:
    return bool(re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", text))


def _normalize(intent: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _norm(v) for k, v in intent.items()}


def check_group(existing: Any, request: Mapping[str, Any], uid: str) -> None:
    """Raise 409 unless a stored group is this user's and has the same strategy and legs."""
    if existing is None:
        return
    owner = getattr(existing, "uid", None)
    if owner is not None and owner != uid:
        raise conflict("the group id belongs to another request")
    stored = existing.to_api_response()
    if _group_shape(stored) != _group_shape(request):
        raise conflict("strategy or legs differ from the first request")
    # options the seed's response does not echo, compared when the group keeps them
    for name in ("allow_partial_fills", "max_group_slippage_pips", "execution_priority"):
        if hasattr(existing, name):
            kept, sent = getattr(existing, name), request.get(name)
            if name == "execution_priority":
                kept, sent = (None if kept is None else list(kept)), (None if sent is None else list(sent))
            if _norm(kept) != _norm(sent):
                raise conflict(f"{name} differs from the first request")


def _group_shape(body: Mapping[str, Any]) -> tuple[Any, ...]:
    from backend.domain.assets import AssetClass, normalize_symbol

    legs = []
    for leg in body.get("legs") or []:
        try:
            symbol = normalize_symbol(leg.get("symbol"))
            klass = AssetClass.parse(leg.get("asset_class")).value
        except Exception:  # noqa: BLE001 - an unparsable stored leg simply compares unequal
            symbol, klass = leg.get("symbol"), leg.get("asset_class")
        legs.append((leg.get("leg_id"), symbol, int(leg.get("direction") or 0), _norm(leg.get("units")), klass))
    return body.get("strategy_id"), tuple(sorted(legs, key=lambda x: str(x[0])))
