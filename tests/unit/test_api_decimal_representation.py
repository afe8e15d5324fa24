"""One representation for every decimal in every response (issue 19 item 11): a decimal is a JSON
string matching ``RESPONSE_DECIMAL_PATTERN``, within its field's documented scale
(``backend.domain.wire``), never a JSON number; the OpenAPI document says so for each such field."""
from __future__ import annotations

import io
import json
import re
from decimal import Decimal
from typing import Any, Iterator

import pytest

from backend import logs
from backend.api.openapi import openapi_document
from backend.domain.wire import FIELD_KINDS, RESPONSE_DECIMAL_PATTERN, SCALES, decimal_out, encode
from tests.support.api_stack import ApiStack, execute_body, make_stack, multileg_body, signal_body
from tests.support.group_harness import approve

# JSON numbers a response may carry: counts, ids and flags that are integers by nature
INTEGER_FIELDS = {"decisions", "placed", "downgraded", "rejected", "dry_run", "fills", "group_leg_fills",
                  "shard_documents", "direction", "schema_version", "count", "year", "tax_year", "fill_seq",
                  "seq", "disposals", "provisional", "shortfalls", "open_lots",
                  # metrics: final groups, one decision each (issue 19 item 7)
                  "group_decisions", "filled", "partially_filled", "rolled_back", "failed_needs_attention"}
_DECIMAL_TEXT = re.compile(r"^-?\d*\.\d{11,}$")  # a decimal string finer than any documented scale


@pytest.fixture(autouse=True)
def quiet():
    logs.set_stream(io.StringIO())
    yield
    logs.set_stream(None)


def walk(value: Any, path: str = "$", key: str | None = None) -> Iterator[tuple[str, str | None, Any]]:
    yield path, key, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk(v, f"{path}.{k}", k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk(v, f"{path}[{i}]", key)


def problems(body: Any) -> list[str]:
    out = []
    for path, key, value in walk(json.loads(json.dumps(body))):  # exactly what goes on the wire
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if key not in INTEGER_FIELDS or isinstance(value, float):
                out.append(f"{path}: a JSON number {value!r}")
        elif key in FIELD_KINDS and value is not None and not isinstance(value, (dict, list)):
            if not isinstance(value, str) or not re.fullmatch(RESPONSE_DECIMAL_PATTERN, value):
                out.append(f"{path}: {value!r} is not a response decimal")
            elif -Decimal(value).as_tuple().exponent > SCALES[FIELD_KINDS[key]]:  # type: ignore[operator]
                out.append(f"{path}: {value!r} finer than its {FIELD_KINDS[key]} scale")
        elif isinstance(value, str) and _DECIMAL_TEXT.fullmatch(value):
            out.append(f"{path}: {value!r} has more places than any documented precision")
    return out


def sample_responses() -> dict[str, Any]:
    """One response of each JSON endpoint, on the paper venue (a 2-leg group) and the stub broker."""
    out: dict[str, Any] = {}
    paper = make_stack(paper=True)
    out["POST /risk/approvals"] = paper.post("/risk/approvals", {
        "decision_id": "rpm-42", "for_uid": "alice", "expires_at": "2099-01-01T00:00:00+00:00",
        "legs": [{"leg_id": "leg_001", "symbol": "EURUSD", "direction": 1, "max_units": "100000"},
                 {"leg_id": "leg_002", "symbol": "GBPUSD", "direction": -1, "max_units": "50000"}]}, token="tok-risk")
    group = paper.post("/execute/multi-leg", multileg_body(), headers={"Idempotency-Key": "g"})
    out["POST /execute/multi-leg"] = group
    out["GET /groups/{id}"] = paper.get(f"/groups/{group.json()['group_id']}")
    out["POST /execute/multi-leg (rejected)"] = paper.post(
        "/execute/multi-leg", multileg_body(rpm_output={"decision_id": "nope", "approved": True,
                                                        "expires_at": "2099-01-01T00:00:00+00:00",
                                                        "approved_legs": {"leg_001": 1, "leg_002": 1}}))
    stub: ApiStack = make_stack()
    out["POST /execute"] = stub.post("/execute", execute_body(intent_id="e1"))
    out["POST /execute (limit, fractional)"] = stub.post("/execute", execute_body(
        intent_id="e2", qty="1.5", order_type="limit", limit_price="190.01"))
    out["POST /execute (downgraded)"] = stub.post("/execute", execute_body(intent_id="e3", symbol="WIDE"))
    out["POST /execute (replay)"] = stub.post("/execute", execute_body(intent_id="e1"))
    out["POST /signals"] = stub.post("/signals", signal_body(intent_id="s1"))
    out["POST /signals (downgraded)"] = stub.post("/signals", signal_body(
        intent_id="s2", market_data={"symbol": "AAPL", "price": 190.0, "bid": 180.123, "ask": 199.877}))
    out["GET /portfolio/history"] = stub.get("/portfolio/history")
    out["GET /tenants/{tenant_id}/ledger"] = stub.get("/tenants/acme/ledger", token="tok-admin")
    day = stub.clock.now().date().isoformat()
    out["GET /tenants/{tenant_id}/metrics"] = stub.get("/tenants/acme/metrics", token="tok-admin",
                                                       query={"from": day, "to": day})
    return out


def test_every_decimal_in_every_sample_response_is_a_string_of_its_documented_precision():
    samples = sample_responses()

    for name, response in samples.items():
        assert response.status < 300, (name, response.json())
    found = {name: problems(response.json()) for name, response in samples.items()}

    assert {name: p for name, p in found.items() if p} == {}
    seen = {key for response in samples.values() for _, key, v in walk(response.json()) if isinstance(v, str)}
    assert {"units", "filled_units", "fill_price", "slippage_pips", "avg_slippage_pips", "filled_qty",
            "filled_avg_price", "spread_pct", "estimated_slippage", "bid", "mid", "confidence", "threshold",
            "qty", "limit_price", "cost_savings", "implementation_shortfall", "max_units"} <= seen


def test_a_32_digit_spread_share_is_answered_at_the_documented_ten_places():
    stack = make_stack()

    body = stack.post("/execute", execute_body(intent_id="p1")).json()

    spread = body["routing"]["spread_pct"]
    assert re.fullmatch(r"0\.\d{1,10}", spread), spread
    bid, ask = Decimal(body["routing"]["quote"]["bid"]), Decimal(body["routing"]["quote"]["ask"])
    assert spread == decimal_out((ask - bid) / ((ask + bid) / 2), "ratio")
    stored = stack.store.get(f"tenants/acme/order_intents/{body['intent_id']}")["result"]
    assert stored["routing"]["spread_pct"] == spread  # the intent document's result: the same representation


def test_the_group_document_result_uses_the_response_representation():
    stack = make_stack(paper=True)
    approve(stack.store, multileg_body(), tenant_id="acme", uid="alice", issuer_uid="rita")
    body = stack.post("/execute/multi-leg", multileg_body()).json()

    group = stack.engine.get_group("acme", body["group_id"])

    assert group.to_api_response() == body and problems(group.to_api_response()) == []


@pytest.mark.parametrize("value, kind, text", [
    (Decimal("0.000499875031234567890123456789"), "ratio", "0.0004998750"),
    (Decimal("1E+5"), "quantity", "100000"), (Decimal("10.0000"), "quantity", "10.0000"),
    (Decimal("99.80"), "price", "99.80"), (Decimal("1.234567891234"), "price", "1.2345678912"),
    (Decimal("-0.00"), "ticks", "0.00"), (Decimal("0E+4"), "ticks", "0"), (Decimal("1.23455"), "ticks", "1.2346"),
    (5.0, "ticks", "5.0"), (100000, "quantity", "100000"), ("0.1234567", "money", "0.123457"),
])
def test_decimal_out_is_exact_within_the_scale_and_rounds_half_even_beyond(value, kind, text):
    assert decimal_out(value, kind) == text and re.fullmatch(RESPONSE_DECIMAL_PATTERN, text)


def test_encode_converts_numbers_under_decimal_fields_and_leaves_other_values_alone():
    body = {"legs": [{"units": 100000, "fill_price": 1.1005, "direction": -1, "leg_id": "1.5"}],
            "retry_after": 2, "quote": {"bid": Decimal("99.80"), "timestamp": "2026-01-01T00:00:00+00:00"},
            "price": "n/a", "other": Decimal("1.50")}

    assert encode(body) == {"legs": [{"units": "100000", "fill_price": "1.1005", "direction": -1, "leg_id": "1.5"}],
                            "retry_after": 2, "quote": {"bid": "99.80", "timestamp": "2026-01-01T00:00:00+00:00"},
                            "price": "n/a", "other": "1.50"}


RESPONSE_SCHEMAS = ("ExecutionResponse", "RoutingOut", "QuoteOut", "SignalOut", "CostCheckOut", "GroupLegOut",
                    "GroupResponse", "MetricsSummaryOut", "TcaOut")


def test_the_openapi_document_gives_each_decimal_field_its_pattern_and_precision():
    schemas = openapi_document()["components"]["schemas"]
    checked = []

    for name in RESPONSE_SCHEMAS:
        for prop, schema in schemas[name]["properties"].items():
            if prop not in FIELD_KINDS:
                continue
            string = next(s for s in schema.get("anyOf", [schema]) if s.get("type") == "string")
            assert string["pattern"] == RESPONSE_DECIMAL_PATTERN, (name, prop)
            described = string.get("description", "") + schema.get("description", "")
            assert "decimal string" in described and "decimal places" in described, (name, prop)
            checked.append(f"{name}.{prop}")

    assert {"GroupLegOut.fill_price", "GroupResponse.avg_slippage_pips", "RoutingOut.spread_pct",
            "TcaOut.implementation_shortfall", "MetricsSummaryOut.cost_savings"} <= set(checked)
    for name in ("GroupLegOut", "GroupResponse"):
        assert "rejection" in schemas[name]["properties"]
