"""The OpenAPI document: generated from the models, committed as docs/openapi.json, served."""
import io
import json

from backend import logs
from backend.api.app import ROUTES
from backend.api.openapi import DOC_PATH, build_openapi, render
from tests.support.api_stack import make_stack

REGENERATE = ".venv/bin/python -m backend.api.openapi --write"


def test_committed_openapi_json_is_current():
    assert DOC_PATH.exists(), f"docs/openapi.json is missing: run {REGENERATE}"
    assert DOC_PATH.read_text() == render(), f"docs/openapi.json is stale: run {REGENERATE}"


def test_every_route_is_documented_with_its_method_and_security():
    doc = build_openapi()
    assert doc["openapi"] == "3.1.0"
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        **doc["components"]["securitySchemes"]["bearerAuth"], "type": "http", "scheme": "bearer"}
    for route in ROUTES:
        path = route.name.replace("<group_id>", "{group_id}")
        operation = doc["paths"][path][route.method.lower()]
        assert operation["security"] == ([{"bearerAuth": []}] if route.auth else [])
        if route.auth:
            assert {"401", "500"} <= set(operation["responses"])


def test_request_schemas_forbid_unknown_fields_and_accept_decimal_strings():
    schemas = build_openapi()["components"]["schemas"]
    for name in ("ExecuteRequest", "MultiLegRequest", "LegRequest", "SignalRequest", "MarketData"):
        assert schemas[name]["additionalProperties"] is False, name
    qty = schemas["ExecuteRequest"]["properties"]["qty"]
    assert {branch["type"] for branch in qty["anyOf"]} == {"string", "number"}
    assert schemas["ExecutionResponse"]["properties"]["filled_qty"]["anyOf"][0]["type"] == "string"
    assert set(schemas["MultiLegRequest"]["required"]) == {"strategy_id", "legs", "rpm_output",
                                                           "max_group_slippage_pips", "allow_partial_fills"}


def test_the_document_is_served_without_a_token():
    logs.set_stream(io.StringIO())
    try:
        response = make_stack().get("/openapi.json", token=None)
    finally:
        logs.set_stream(None)
    assert response.status == 200 and response.json() == json.loads(DOC_PATH.read_text())


def test_the_committed_document_passes_openapi_spec_validator():
    from openapi_spec_validator import OpenAPIV31SpecValidator

    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in OpenAPIV31SpecValidator(json.loads(DOC_PATH.read_text())).iter_errors()]
    assert errors == []


def test_the_error_schema_documents_every_field_error():
    schemas = build_openapi()["components"]["schemas"]
    errors = schemas["ErrorBody"]["properties"]["errors"]
    assert errors["type"] == "array" and errors["items"] == {"$ref": "#/components/schemas/FieldErrorOut"}
    assert set(schemas["FieldErrorOut"]["properties"]) == {"field", "reason"}
