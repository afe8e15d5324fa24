"""The JSON Schema of intent documents: what an app may create at
``tenants/{tenant_id}/order_intents/{intent_id}`` with a Firebase client SDK, and what the server
writes back on the same document.

Regenerate the committed copy after changing an id rule, the leg count, a status or firestore.rules:

    .venv/bin/python -m backend.api.intent_schema --write    # writes docs/intent-document.schema.json

Built from the code's own rules (``backend.domain.ids`` patterns, ``backend.domain.group_rules``
leg bounds, the id shape of ``backend.api.idempotency.derived_id``, the status enums of the single
and group executors), so it cannot drift from them; tests/integration/test_intent_document_schema.py
fails while the committed copy is stale and checks it against firestore.rules on the emulator: every
schema-valid example is accepted by the rules, every example the rules refuse is schema-invalid.

The schema says what the rules accept *and* intake (``backend.service.intake``) takes: where the
rules are looser than intake (strategy ids of any characters, ``limit_price`` on a market order, a
malformed leg), the schema follows intake, since such a document is written but then rejected
(``status: "rejected"``, ``result.error.code: "INVALID_INPUT"``). Where intake is looser than the
rules (``metadata``, ``estimated_slippage``, ``execution_priority``, a missing ``kind``, a decimal
string for ``max_group_slippage_pips``), the schema follows the rules: the write is refused.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from backend.api.idempotency import derived_id
from backend.domain import ids
from backend.domain.assets import AssetClass
from backend.domain.group_rules import MAX_LEGS, MIN_LEGS
from backend.domain.orders import OrderClass, OrderType, TimeInForce
from backend.execution.group.aggregate import LEG_REQUEST_OPTIONAL, LEG_REQUEST_REQUIRED
from backend.execution.group.states import GroupStatus, GroupVerdict
from backend.ports.store import IntentStatus

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "intent-document.schema.json"
SCHEMA_ID = "urn:trade-execution:schema:intent-document"
DEF = "#/$defs/{name}"

# firestore.rules (isMember): the custom claims a writer's ID token carries.
WRITER_ROLES = ("trader", "tenant_admin")
# firestore.rules (isSingleIntent / isMultiLegRequest): string bounds the rules apply.
MAX_ID_CHARS = 100
MAX_SYMBOL_CHARS = 32
# Symbols are ASCII: backend.domain.assets reads a symbol upper-cased as [A-Z0-9][A-Z0-9./=-]{0,31}
# or an OCC option symbol (letters, optional spaces, digits). The rules' size() bound counts UTF-16
# units, so a 32-character symbol of characters beyond the BMP is refused by the rules.
SYMBOL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9./= -]{0,%d}$" % (MAX_SYMBOL_CHARS - 1)
# firestore.rules (isPositiveAmount): a JSON number in (0, 10^15), or a plain decimal string of at
# most 15 integer and 18 fraction digits with a non-zero digit.
AMOUNT_LIMIT = 10**15
AMOUNT_STRING = r"^[0-9]{0,15}(\.[0-9]{0,18})?$"
# Prefixes of the ids the HTTP API derives (backend/api/app.py: "k" intents, "g" groups).
DERIVED_PREFIXES = ("k", "g")


ACCOUNT_DESCRIPTION = ("The account to trade: an account id of the writer's tenant that lists the writer in "
                       "owner_uids and is active or reduce_only (firestore.rules get() the account document; the "
                       "trigger checks again). Omitted: the writer's default account.")


def _ref(name: str, **extra: Any) -> dict[str, Any]:
    return {"$ref": DEF.format(name=name), **extra}


def _derived_hex_length() -> int:
    return len(derived_id("k", "t", "u", "key").split("-", 1)[1])


def server_chosen_id_pattern() -> str:
    return f"^[{''.join(DERIVED_PREFIXES)}]-[0-9a-f]{{{_derived_hex_length()}}}$"


RESERVED_NAME_PATTERN = f"^{ids.RESERVED_NAME.pattern}$"


def _id(kind: ids.IdKind, description: str) -> dict[str, Any]:
    return {"type": "string", "pattern": kind.json_pattern, "not": {"pattern": RESERVED_NAME_PATTERN},
            "description": f"{description} {kind.description[0].upper()}{kind.description[1:]}."}


def _asset_class() -> dict[str, Any]:
    return {"type": "string", "enum": [c.value for c in AssetClass] + ["FX"],
            "description": "Omitted: detected from the symbol (BTC/USD CRYPTO, EUR/USD FOREX, a plain ticker "
                           "EQUITY). FX is read as FOREX; the server also reads other letter cases. A class the "
                           "symbol's form contradicts is rejected by the server (INVALID_INPUT)."}


def _symbol(description: str) -> dict[str, Any]:
    return {"type": "string", "pattern": SYMBOL_PATTERN,
            "description": f"{description} ASCII, 1-{MAX_SYMBOL_CHARS} characters; the server upper-cases it and "
                           f"refuses a symbol it cannot trade."}


def _single_intent() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "One order (the body of POST /execute without intent_id, estimated_slippage and metadata, "
                       "which the rules refuse on documents).",
        "required": ["strategy_id", "symbol", "side", "qty"],
        "additionalProperties": False,
        "properties": {
            "strategy_id": _ref("Id"),
            "broker_account_id": _ref("Id", description=ACCOUNT_DESCRIPTION),
            "symbol": _symbol("Instrument symbol, e.g. AAPL, BTC/USD, EUR/USD."),
            "side": {"type": "string", "enum": ["buy", "sell"]},
            "qty": _ref("PositiveAmount", description="Quantity; a multiple of the instrument's lot size "
                                                      "(checked by the server)."),
            "asset_class": _asset_class(),
            "order_type": {"type": "string", "enum": [t.value for t in OrderType], "default": "market"},
            "limit_price": _ref("PositiveAmount", description="Required for limit and stop_limit orders (an oco's "
                                                              "limit is take_profit.limit_price), refused otherwise; "
                                                              "a multiple of the tick size."),
            # issue 15: which venue and asset class take which combination is checked by the server
            # (ORDER_TYPE_NOT_SUPPORTED, backend/domain/capabilities.py)
            "time_in_force": {"type": "string", "enum": [t.value for t in TimeInForce],
                              "description": "Omitted: gtc for crypto, day otherwise."},
            "stop_price": _ref("PositiveAmount", description="Required for stop and stop_limit orders, refused "
                                                             "otherwise; a multiple of the tick size."),
            "trail_price": _ref("PositiveAmount", description="trailing_stop: the trail in price units."),
            "trail_percent": _ref("PositiveAmount", description="trailing_stop: the trail in percent (below 100)."),
            "order_class": {"type": "string", "enum": [c.value for c in OrderClass],
                            "description": "Omitted: bracket with take_profit and stop_loss, oto with one, simple "
                                           "with none; oco is always explicit."},
            "take_profit": {"type": "object", "required": ["limit_price"], "additionalProperties": False,
                            "properties": {"limit_price": _ref("PositiveAmount")}},
            "stop_loss": {"type": "object", "minProperties": 1, "additionalProperties": False,
                          "properties": {"stop_price": _ref("PositiveAmount"), "limit_price": _ref("PositiveAmount"),
                                         "trail_price": _ref("PositiveAmount")}},
            # issue 15 item 5: a limit instead of WAIT when the spread is too wide (backend/execution/wide_spread.py)
            "wide_spread": {"type": "string", "enum": ["wait", "limit_at_touch", "limit_at_mid"], "default": "wait",
                            "description": "A market order whose spread fails the cost check: wait (downgraded, "
                                           "nothing sent), limit_at_touch (a passive limit at the bid for a buy, the "
                                           "ask for a sell) or limit_at_mid, canceled after limit_timeout_seconds. "
                                           "Simple market orders with time_in_force day or gtc only."},
            "limit_timeout_seconds": {"type": "integer", "minimum": 1, "maximum": 604800,
                                      "description": "Required with limit_at_touch / limit_at_mid, refused "
                                                     "otherwise: the limit is canceled this long after it was "
                                                     "placed (fills before are kept)."},
        },
        "allOf": [
            {"if": {"required": ["order_type"], "properties": {"order_type": {"enum": ["limit", "stop_limit"]}}},
             "then": {"if": {"required": ["order_class"], "properties": {"order_class": {"const": "oco"}}},
                      "then": {"not": {"required": ["limit_price"]}}, "else": {"required": ["limit_price"]}},
             "else": {"not": {"required": ["limit_price"]}}},
            {"if": {"required": ["order_type"], "properties": {"order_type": {"enum": ["stop", "stop_limit"]}}},
             "then": {"required": ["stop_price"]}, "else": {"not": {"required": ["stop_price"]}}},
            {"if": {"required": ["order_type"], "properties": {"order_type": {"const": "trailing_stop"}}},
             "then": {"oneOf": [{"required": ["trail_price"]}, {"required": ["trail_percent"]}]},
             "else": {"not": {"anyOf": [{"required": ["trail_price"]}, {"required": ["trail_percent"]}]}}},
            {"if": {"required": ["wide_spread"], "properties": {"wide_spread": {"enum": ["limit_at_touch",
                                                                                         "limit_at_mid"]}}},
             "then": {"required": ["limit_timeout_seconds"],
                      "properties": {"order_type": {"const": "market"}, "order_class": {"const": "simple"},
                                     "time_in_force": {"enum": ["day", "gtc"]}},
                      "not": {"anyOf": [{"required": ["take_profit"]}, {"required": ["stop_loss"]}]}},
             "else": {"not": {"required": ["limit_timeout_seconds"]}}},
        ],
    }


def _leg() -> dict[str, Any]:
    properties = {
        "leg_id": _id(ids.GROUP_PART_ID, "Unique within the group."),
        "symbol": _symbol("Instrument symbol; unique within the group."),
        "direction": {"type": "integer", "enum": [1, -1], "description": "1 = buy (long), -1 = sell (short)."},
        "units": _ref("PositiveAmount", description="Size; a multiple of the instrument's lot size."),
        "asset_class": _asset_class(),
        "stop_loss": {"type": ["object", "null"], "required": ["stop_price"], "additionalProperties": False,
                      "description": "Optional protective stop, placed once the group is FILLED (issue 15 item 3).",
                      "properties": {"stop_price": _ref("PositiveAmount", description="A multiple of the tick size: "
                                                        "below the intended price for a long, above for a short.")}},
    }
    if set(properties) != {*LEG_REQUEST_REQUIRED, *LEG_REQUEST_OPTIONAL}:
        raise RuntimeError("the leg fields intake takes (backend/execution/group/aggregate.py) changed")
    return {"type": "object", "required": list(LEG_REQUEST_REQUIRED), "additionalProperties": False,
            "properties": properties, "x-server-checks": ["leg_id values are unique", "symbols are unique"]}


def _rpm_output() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "The risk manager's authorization (as on POST /execute/multi-leg): it must name an approval "
                       "the backend issued (POST /risk/approvals). Without a valid one the group is rejected "
                       "(RPM_NOT_AUTHORIZED).",
        "required": ["decision_id", "approved", "expires_at", "approved_legs"],
        "additionalProperties": False,
        "properties": {
            "decision_id": {"type": "string", "minLength": 1},
            "approved": {"type": "boolean"},
            "expires_at": {"type": "string", "format": "date-time"},
            "approved_legs": {"description": "leg_id -> max units, or a list of {leg_id, max_units, symbol?, "
                                             "direction?}.",
                              "anyOf": [{"type": "object", "additionalProperties": _ref("PositiveAmount")},
                                        {"type": "array", "items": {"type": "object"}}]},
            "meta": {"type": "object", "description": "Carried, not read."},
        },
    }


def _multi_leg_request() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "A group (the body of POST /execute/multi-leg, except execution_priority, which the rules "
                       "refuse on documents). The group id is the document id.",
        "required": ["strategy_id", "legs"],
        "additionalProperties": False,
        "properties": {
            "strategy_id": _ref("Id"),
            "legs": {"type": "array", "minItems": MIN_LEGS, "maxItems": MAX_LEGS, "items": _ref("Leg")},
            "rpm_output": _rpm_output(),
            "max_group_slippage_pips": {"type": "number", "minimum": 0,
                                        "description": "A JSON number (the rules refuse a decimal string here)."},
            "allow_partial_fills": {"type": "boolean", "default": False},
            "broker_account_id": _ref("Id", description=ACCOUNT_DESCRIPTION),
        },
    }


def _created_at() -> dict[str, Any]:
    return {"not": {},
            "description": "Optional, and only as the server-timestamp sentinel (serverTimestamp() in the SDKs, a "
                           "REQUEST_TIME field transform in REST): the rules require request.time. No JSON value "
                           "is accepted, so a document body validated by this schema leaves it out.",
            "x-field-transform": "REQUEST_TIME"}


def _document(kind: str, body_key: str, body_def: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["uid", "status", "kind", body_key],
        "additionalProperties": False,
        "properties": {
            "uid": _ref("Id", description="The writer's own uid (request.auth.uid); the rules refuse any other.",
                        **{"x-must-equal": "request.auth.uid"}),
            "status": {"const": "new", "description": "Always \"new\"; the server owns every later status."},
            "kind": {"const": kind},
            body_key: _ref(body_def),
            "created_at": _created_at(),
        },
        "x-document-id": _ref("MultiLegIntentId" if kind == "multi_leg" else "SingleIntentId"),
    }


def _positive_amount() -> dict[str, Any]:
    return {
        "description": "A quantity or price > 0: a JSON number (stored as a double; prefer strings for exact "
                       "values) or a plain decimal string such as \"10\" or \"0.5\" (no sign, no exponent).",
        "oneOf": [
            {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": AMOUNT_LIMIT},
            {"type": "string", "allOf": [{"pattern": AMOUNT_STRING}, {"pattern": "[1-9]"}]},
        ],
    }


def _intent_id(extra_kind: ids.IdKind | None = None) -> dict[str, Any]:
    base = [{"pattern": ids.ID.json_pattern}]
    if extra_kind is not None:
        base.append({"pattern": extra_kind.json_pattern})
    return {
        "type": "string",
        "allOf": base,
        "not": {"anyOf": [{"pattern": server_chosen_id_pattern()}, {"pattern": RESERVED_NAME_PATTERN}]},
    }


def single_statuses() -> list[str]:
    return [s.value for s in IntentStatus]


def multi_leg_statuses() -> list[str]:
    final = {v.value.lower() for v in GroupVerdict} | {GroupStatus.FAILED_NEEDS_ATTENTION.value.lower()}
    return ["new", "accepted", *sorted(final)]


def _stored_document() -> dict[str, Any]:
    error = {"type": "object", "required": ["code", "reason"],
             "properties": {"code": {"type": "string", "description": "INVALID_INPUT (a malformed document) or "
                                                                      "RATE_LIMITED."},
                            "field": {"type": ["string", "null"], "description": "The input, e.g. qty or "
                                                                                 "legs[1].units."},
                            "reason": {"type": "string"},
                            "retry_after": {"type": "number", "description": "Seconds (RATE_LIMITED)."}}}
    return {
        "type": "object",
        "description": "The document as a client reads it (owner or tenant admin) after the server picked it up. "
                       "The app's fields stay; the server adds the ones marked readOnly and may add bookkeeping "
                       "fields (slot, lease_until, fill_seq, reconcile_after, *_server_at) not part of this "
                       "contract. Follow it with a snapshot listener until the status is final.",
        "required": ["uid", "status"],
        "properties": {
            "uid": _ref("Id"),
            "kind": {"enum": ["single", "multi_leg"],
                     "description": "Written by the app; the server writes \"single\" on single intents."},
            "status": {"type": "string", "readOnly": True, "enum": sorted(set(single_statuses())
                                                                            | set(multi_leg_statuses())),
                       "x-single": single_statuses(), "x-multi-leg": multi_leg_statuses(),
                       "x-final": {"single": [s.value for s in IntentStatus if s.is_final],
                                   "multi_leg": [s for s in multi_leg_statuses() if s not in ("new", "accepted")]},
                       "description": "single: new → reserved → placed | downgraded | rejected | dry_run. "
                                      "multi_leg: new → accepted (the group exists, group_id = document id) → "
                                      "filled | partially_filled | rejected | dry_run | failed_needs_attention. "
                                      "A malformed or rate-limited document goes from new to rejected with "
                                      "result.error."},
            "intent": {"type": "object", "readOnly": True,
                       "description": "single: the normalized intent (symbol upper-cased, qty a decimal string, "
                                      "asset_class resolved, intent_id = document id)."},
            "request": {"type": "object"},
            "tenant_id": {"type": "string", "readOnly": True},
            "group_id": {"type": "string", "readOnly": True, "description": "multi_leg: = the document id."},
            "updated_at": {"type": "string", "readOnly": True},
            "order_final": {"type": "boolean", "readOnly": True},
            "wide_spread_limit": {
                "type": "object", "readOnly": True,
                "description": "single, wide_spread limit_at_touch / limit_at_mid, when the spread was too wide: the "
                               "limit placed instead of WAIT (intent then holds that limit order, requested_intent "
                               "the market order as written) — mode, limit_price, time_in_force, timeout_seconds, "
                               "deadline (ISO time after which the sweeper cancels it), reason, "
                               "requested_order_type."},
            "requested_intent": {"type": "object", "readOnly": True,
                                 "description": "The intent as first requested, when intent holds another order "
                                                "(a wide-spread limit, or a replace)."},
            "result": {
                "type": "object", "readOnly": True,
                "description": "The outcome, as the HTTP API answers it: for single intents an ExecutionResponse, "
                               "for groups a GroupResponse (docs/openapi.json components), or {error} when the "
                               "document was refused before anything ran.",
                "x-openapi-schemas": {"single": "openapi.json#/components/schemas/ExecutionResponse",
                                      "multi_leg": "openapi.json#/components/schemas/GroupResponse"},
                "properties": {"error": error},
            },
        },
    }


def build() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Order intent document",
        "description": (
            "What an app writes to Firestore at tenants/{tenant_id}/order_intents/{intent_id} to trade without the "
            "HTTP API: one create per intent, by a signed-in member of the tenant, checked by firestore.rules. The "
            "server executes it (at least once, idempotently by document id) and writes the outcome on the same "
            "document; the app never updates or deletes it. This schema validates the created body; "
            "x-document-id (SingleIntentId / MultiLegIntentId) the document id, uid must be the writer's own, and "
            "$defs/StoredIntentDocument describes the document as read back. Generated by "
            "backend/api/intent_schema.py; tested against firestore.rules on the emulator."),
        "x-firestore-path": "tenants/{tenant_id}/order_intents/{intent_id}",
        "x-writer": {"claims": {"tenant_id": "= {tenant_id} of the path", "role": list(WRITER_ROLES)},
                     "operation": "create only (no update, no delete)"},
        "oneOf": [_ref("SingleIntentDocument"), _ref("MultiLegIntentDocument")],
        "$defs": {
            "SingleIntentDocument": _document("single", "intent", "SingleIntent"),
            "MultiLegIntentDocument": _document("multi_leg", "request", "MultiLegRequest"),
            "SingleIntent": _single_intent(),
            "MultiLegRequest": _multi_leg_request(),
            "Leg": _leg(),
            "Id": _id(ids.ID, "An id."),
            "PositiveAmount": _positive_amount(),
            "SingleIntentId": {
                **_intent_id(),
                "description": "The document id of a single intent: the ID rule, never of the shape the HTTP API "
                               "derives (k-/g- + 48 hex). Use Firestore auto-ids: ids are first-come per tenant.",
            },
            "MultiLegIntentId": {
                **_intent_id(ids.GROUP_PART_ID),
                "description": "The document id of a multi-leg intent, which becomes the group id: also a group-part "
                               "id, so it starts with a letter or digit (the rules accept a leading _ or -, then "
                               "the server rejects the document).",
            },
            "StoredIntentDocument": _stored_document(),
        },
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {DOC_PATH.name} instead of printing it")
    args = parser.parse_args(argv)
    if args.write:
        DOC_PATH.write_text(render(), encoding="utf-8")
        print(f"wrote {DOC_PATH}")
    else:
        sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
