"""The HTTP handler, in process: routing, identity, body parsing, validation, idempotency and the
mapping of every engine outcome to a status code. Real engine on a stub broker and the in-memory
store; a fake TokenVerifier."""
import io
import json
from decimal import Decimal

import pytest

from backend import logs
from backend.api.app import ApiApp
from backend.api.http import ApiRequest
from backend.api.idempotency import derived_id
from backend.ports.broker import BrokerError, BrokerErrorCode
from backend.risk.manager import RiskLimits
from tests.support.api_stack import execute_body, make_stack


@pytest.fixture
def log_lines():
    stream = io.StringIO()
    logs.set_stream(stream)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    finally:
        logs.set_stream(None)


@pytest.fixture
def stack(log_lines):
    return make_stack()


def error_of(response):
    body = response.json()
    assert set(body["error"]) >= {"code", "message", "field", "reason"}, body
    return body["error"]


# ---------------------------------------------------------------------------- identity


@pytest.mark.parametrize("headers, status, reason", [
    ({}, 401, "missing Authorization header"),
    ({"Authorization": ""}, 401, "missing Authorization header"),
    ({"Authorization": "Basic dXNlcjpwdw=="}, 401, "Authorization must be 'Bearer <Firebase ID token>'"),
    ({"Authorization": "Bearer"}, 401, "Authorization must be 'Bearer <Firebase ID token>'"),
    ({"Authorization": "Bearer garbage.token.here"}, 401, "invalid ID token (InvalidIdTokenError)"),
    ({"Authorization": "Bearer a b"}, 401, "malformed bearer token"),
    ({"Authorization": "Bearer tok-notenant"}, 403, "token has no tenant_id claim"),
    ({"Authorization": "Bearer tok-norole"}, 403, "token has no role claim"),
    ({"Authorization": "Bearer tok-badrole"}, 403,
     "role claim must be one of ['auditor', 'platform_operator', 'risk_manager', 'tenant_admin', 'trader']"),
])
@pytest.mark.parametrize("method, path", [("POST", "/execute"), ("POST", "/execute/multi-leg"),
                                          ("POST", "/signals"), ("GET", "/groups/g1"),
                                          ("GET", "/portfolio/history")])
def test_every_protected_route_refuses_missing_invalid_or_unusable_tokens(stack, headers, status, reason, method,
                                                                          path):
    response = stack.app.handle(ApiRequest(method, path, headers, {}, json.dumps(execute_body()).encode()))
    assert response.status == status
    err = error_of(response)
    assert err["reason"] == reason and err["code"] == ("UNAUTHENTICATED" if status == 401 else "FORBIDDEN")
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert stack.store.docs == {}


def test_bearer_scheme_is_case_insensitive(stack):
    response = stack.post("/execute", execute_body(), token=None, headers={"Authorization": "bearer tok-alice"})
    assert response.status == 201


@pytest.mark.parametrize("path", ["/healthz", "/openapi.json", "/api/healthz", "/healthz/"])
def test_health_and_openapi_need_no_token(stack, path):
    response = stack.get(path, token=None)
    assert response.status == 200 and stack.verifier.calls == []


def test_health_check_does_not_build_the_engine(log_lines):
    built = []

    def factory():
        built.append(1)
        raise AssertionError("not needed")

    app = ApiApp(engine=factory, verifier=lambda: None)
    assert app.handle(ApiRequest("GET", "/healthz")).status == 200 and built == []


@pytest.mark.parametrize("metadata, field", [
    ({"tenant_id": "globex"}, "metadata.tenant_id"),
    ({"uid": "bob"}, "metadata.uid"),
    ({"tenant_id": "acme", "uid": "bob"}, "metadata.uid"),
    ({"tenant_id": 7}, "metadata.tenant_id"),
])
def test_a_foreign_tenant_or_user_in_the_body_is_forbidden_and_nothing_is_written(stack, metadata, field):
    response = stack.post("/execute", execute_body(metadata=metadata))
    assert response.status == 403 and error_of(response)["field"] == field
    assert stack.store.docs == {} and stack.broker.submits == []


def test_matching_tenant_and_uid_in_metadata_are_accepted(stack):
    response = stack.post("/execute", execute_body(metadata={"tenant_id": "acme", "uid": "alice", "note": "x"}))
    assert response.status == 201 and response.json()["tenant_id"] == "acme"


def test_the_tenant_comes_from_the_token_not_the_body(stack):
    response = stack.post("/execute", execute_body(), token="tok-zed")
    assert response.status == 201
    assert stack.store.get(f"tenants/globex/ledger_trades/{response.json()['intent_id']}")["uid"] == "zed"
    assert stack.store.collection("tenants/acme/ledger_trades") == {}


# ------------------------------------------------------------------------------ routing


@pytest.mark.parametrize("method, path, status, allow", [
    ("GET", "/nope", 404, None),
    ("POST", "/execute/other", 404, None),
    ("POST", "/groups", 405, "GET"),
    ("GET", "/groups/a/b", 404, None),
    ("GET", "/execute", 405, "POST"),
    ("PUT", "/execute", 405, "POST"),
    ("DELETE", "/groups/g1", 405, "GET"),
    ("POST", "/healthz", 405, "GET"),
    ("PATCH", "/portfolio/history", 405, "GET"),
    ("OPTIONS", "/signals", 405, "POST"),
])
def test_unknown_routes_are_404_and_wrong_methods_405_with_allow(stack, method, path, status, allow):
    response = stack.request(method, path, execute_body())
    assert response.status == status
    assert error_of(response)["code"] == ("NOT_FOUND" if status == 404 else "METHOD_NOT_ALLOWED")
    assert response.headers.get("Allow") == allow
    assert stack.store.docs == {}


def test_hosting_prefix_and_trailing_slash_reach_the_same_route(stack):
    assert stack.post("/api/execute/", execute_body(intent_id="p1")).status == 201


def test_every_response_has_a_request_id_and_no_store(stack):
    response = stack.get("/healthz", token=None, headers={"X-Request-Id": "req-123"})
    assert response.headers["X-Request-Id"] == "req-123" and response.headers["Cache-Control"] == "no-store"
    generated = stack.get("/nope", headers={"X-Request-Id": "bad id with spaces"})
    assert len(generated.headers["X-Request-Id"]) == 32 and error_of(generated)["request_id"] == generated.headers[
        "X-Request-Id"]


# --------------------------------------------------------------------------- body / JSON


@pytest.mark.parametrize("raw, reason_part", [
    (b"", "the request body is empty"),
    (b"   ", "the request body is empty"),
    (b"{", "invalid JSON"),
    (b"[1, 2]", "expected a JSON object, got list"),
    (b'"text"', "expected a JSON object, got str"),
    (b"null", "expected a JSON object, got NoneType"),
    (b'{"qty": NaN}', "NaN is not a number JSON allows"),
    (b'{"qty": Infinity}', "Infinity is not a number JSON allows"),
    (b'{"qty": 1, "qty": 1000}', "duplicate key 'qty'"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b"[" * 5000 + b"]" * 5000, "nested deeper than 32"),
    (b'{"a":' * 40 + b"1" + b"}" * 40, "nested deeper than 32"),
    (b'{"qty": 1' + b"0" * 5000 + b"}", "invalid JSON"),
])
def test_malformed_json_is_a_400_never_a_500(stack, raw, reason_part):
    response = stack.post("/execute", raw=raw)
    assert response.status == 400, response.json()
    err = error_of(response)
    assert err["code"] == "INVALID_JSON" and reason_part in err["reason"]
    assert stack.store.docs == {}


def test_a_body_over_64_kb_is_413_before_anything_else(stack):
    big = json.dumps(execute_body(metadata={"pad": "x" * 400})).encode() + b" " * (64 * 1024)
    response = stack.post("/execute", raw=big, token=None)
    assert response.status == 413 and error_of(response)["code"] == "PAYLOAD_TOO_LARGE"
    assert stack.verifier.calls == []


def test_exactly_64_kb_is_accepted(stack):
    raw = json.dumps(execute_body()).encode()
    raw += b" " * (64 * 1024 - len(raw))
    assert stack.post("/execute", raw=raw, headers={"Content-Type": "application/json"}).status == 201


@pytest.mark.parametrize("ctype, status", [
    ("application/json", 201), ("application/json; charset=utf-8", 201), ("application/merge-patch+json", 201),
    ("text/plain", 415), ("application/x-www-form-urlencoded", 415), ("multipart/form-data; boundary=x", 415),
])
def test_content_type_must_be_json_when_declared(stack, ctype, status):
    response = stack.post("/execute", raw=json.dumps(execute_body(intent_id=f"c{status}")).encode(),
                          headers={"Content-Type": ctype})
    assert response.status == status


def test_query_parameters_on_a_post_are_refused(stack):
    response = stack.post("/execute", execute_body(), query={"dry": "1"})
    assert response.status == 400 and error_of(response)["field"] == "dry"


# --------------------------------------------------------------------- /execute validation


@pytest.mark.parametrize("change, field, reason_part", [
    ({"strategy_id": None}, "strategy_id", "field required"),
    ({"broker_account_id": "a b"}, "broker_account_id", "pattern"),
    ({"symbol": None}, "symbol", "field required"),
    ({"side": None}, "side", "field required"),
    ({"qty": None}, "qty", "field required"),
    ({"surprise": 1}, "surprise", "unknown field"),
    ({"tenant_id": "acme"}, "tenant_id", "unknown field"),
    ({"strategy_id": "has space"}, "strategy_id", "pattern"),
    ({"strategy_id": "x" * 101}, "strategy_id", "pattern"),
    ({"strategy_id": 12}, "strategy_id", "valid string"),
    ({"broker_account_id": ["a"]}, "broker_account_id", "valid string"),
    ({"side": "hold"}, "side", "'buy' or 'sell'"),
    ({"side": 1}, "side", "'buy' or 'sell'"),
    ({"qty": "0"}, "qty", "must be > 0"),
    ({"qty": -5}, "qty", "must be > 0"),
    ({"qty": "abc"}, "qty", "expected a number"),
    ({"qty": ""}, "qty", "empty string"),
    ({"qty": True}, "qty", "expected a number, got True"),
    ({"qty": "NaN"}, "qty", "must be finite"),
    ({"qty": "Infinity"}, "qty", "must be finite"),
    ({"qty": {"v": 1}}, "qty", "got an object"),
    ({"qty": "1e30"}, "qty", "out of range"),
    ({"qty": "1e-30"}, "qty", "out of range"),
    ({"qty": "0.00001"}, "qty", "not a multiple of"),  # the core's lot size
    ({"qty": 0.30000000000000004}, "qty", "not a multiple of"),  # float noise is refused, not rounded
    ({"asset_class": "BONDS"}, "asset_class", "Input should be"),
    ({"order_type": "stop_loss"}, "order_type", "Input should be"),
    ({"order_type": "limit"}, "limit_price", "required for limit orders"),
    ({"limit_price": "190"}, "limit_price", "only limit orders"),
    ({"order_type": "limit", "limit_price": "190.001"}, "limit_price", "not a multiple of"),
    ({"estimated_slippage": "1.5"}, "estimated_slippage", "must be <= 1"),
    ({"estimated_slippage": -0.1}, "estimated_slippage", "must be >= 0"),
    ({"intent_id": "a/b"}, "intent_id", "pattern"),
    ({"metadata": []}, "metadata", "must be an object"),
    ({"metadata": {"x": 1.5}}, "metadata", "x: values must be a string"),
    ({"metadata": {"x": {"y": 1}}}, "metadata", "x: values must be a string"),
    ({"metadata": {"bad key": 1}}, "metadata", "keys are"),
    ({"metadata": {f"k{i}": i for i in range(33)}}, "metadata", "at most 32 keys"),
    ({"symbol": "???"}, "symbol", "invalid symbol"),
    ({"symbol": ""}, "symbol", "at least 1 character"),
])
def test_execute_field_errors_name_the_field_and_write_nothing(stack, change, field, reason_part):
    body = execute_body()
    for key, value in change.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    response = stack.post("/execute", body)
    assert response.status == 400, response.json()
    err = error_of(response)
    assert err["field"] == field and reason_part in err["reason"], err
    assert err["message"].startswith(field)
    assert stack.store.docs == {} and stack.broker.submits == []


@pytest.mark.parametrize("qty, stored", [("10", "10.0000"), (10, "10.0000"), (10.5, "10.5000"), ("1E+1", "10.0000"),
                                         (" 2.5 ", "2.5000")])
def test_numbers_may_be_json_numbers_or_decimal_strings_and_are_stored_exactly(stack, qty, stored):
    response = stack.post("/execute", execute_body(qty=qty))
    assert response.status == 201
    assert stack.store.get(f"tenants/acme/ledger_trades/{response.json()['intent_id']}")["qty"] == stored


def test_case_insensitive_enums_and_fx_alias_reach_the_core(stack):
    response = stack.post("/execute", execute_body(symbol="eur/usd", side="BUY", asset_class="fx", qty="1000"))
    assert response.status == 201, response.json()
    row = stack.store.get(f"tenants/acme/ledger_trades/{response.json()['intent_id']}")
    assert row["asset_class"] == "FOREX" and row["symbol"] == "EUR/USD" and row["side"] == "buy"


# ------------------------------------------------------------------------------ outcomes


def test_placed_trade_is_201_with_ledger_and_history(stack):
    response = stack.post("/execute", execute_body())
    body = response.json()
    assert response.status == 201 and body["status"] == "placed" and body["filled_qty"] == "10.0000"
    assert body["filled_avg_price"] == "190.01" and body["replayed"] is False
    assert stack.store.get(f"tenants/acme/ledger_trades/{body['intent_id']}")["status"] == "placed"
    assert stack.store.get(f"users/alice/portfolio/history/trades/{body['intent_id']}")["price"] == "190.01"


def test_downgrade_is_a_recorded_decision_201_with_the_reason(stack):
    response = stack.post("/execute", execute_body(symbol="WIDE"))
    body = response.json()
    assert response.status == 201 and body["status"] == "downgraded"
    assert body["reason"] == "Spread 0.40% exceeds threshold 0.10%" and body["routing"]["downgraded"] is True
    assert stack.store.get(f"tenants/acme/ledger_trades/{body['intent_id']}")["status"] == "downgraded"
    assert stack.broker.submits == []


@pytest.mark.parametrize("limits, code", [
    (RiskLimits(kill_switch=True), "KILL_SWITCH"),
    (RiskLimits(max_position_qty=Decimal("5")), "POSITION_LIMIT"),
    (RiskLimits(max_daily_trades=0), "DAILY_TRADE_LIMIT"),
])
def test_risk_rejections_are_recorded_decisions_with_their_code(log_lines, limits, code):
    stack = make_stack(limits=limits)
    response = stack.post("/execute", execute_body())
    body = response.json()
    assert response.status == 201 and body["status"] == "rejected" and body["rejection"]["code"] == code
    assert stack.store.get(f"tenants/acme/ledger_trades/{body['intent_id']}")["reason_code"] == code


def test_dry_run_is_recorded_and_sends_nothing(log_lines):
    stack = make_stack(dry_run=True)
    response = stack.post("/execute", execute_body())
    assert response.status == 201 and response.json()["status"] == "dry_run" and stack.broker.submits == []


@pytest.mark.parametrize("code, status, retry_after, header", [
    (BrokerErrorCode.RATE_LIMITED, 429, 7.2, "8"),
    (BrokerErrorCode.RATE_LIMITED, 429, None, "1"),
    (BrokerErrorCode.UNAVAILABLE, 503, None, "5"),
    (BrokerErrorCode.UNAVAILABLE, 503, 2, "2"),
])
def test_a_pending_outcome_from_an_unreachable_broker_is_429_or_503_with_retry_after(stack, code, status, retry_after,
                                                                                       header):
    stack.broker.fail_submit = BrokerError(code, "venue says no", retry_after=retry_after)
    response = stack.post("/execute", execute_body(), headers={"Idempotency-Key": "k1"})
    assert response.status == status and response.headers["Retry-After"] == header
    err = error_of(response)
    assert err["code"] == ("BROKER_RATE_LIMITED" if status == 429 else "BROKER_UNAVAILABLE")
    assert "same Idempotency-Key" in err["message"]
    assert response.json()["execution"]["status"] == "pending"
    intent_id = derived_id("k", "acme", "alice", "k1")
    assert stack.store.get(f"tenants/acme/order_intents/{intent_id}")["status"] == "reserved"


def test_a_retry_after_the_broker_recovers_places_the_trade_exactly_once(stack):
    stack.broker.fail_submit = BrokerError(BrokerErrorCode.UNAVAILABLE, "down")
    assert stack.post("/execute", execute_body(), headers={"Idempotency-Key": "k1"}).status == 503
    stack.broker.fail_submit = None
    stack.clock.advance(600)  # the reservation's lease has expired
    retry = stack.post("/execute", execute_body(), headers={"Idempotency-Key": "k1"})
    assert retry.status == 201 and retry.json()["status"] == "placed"
    again = stack.post("/execute", execute_body(), headers={"Idempotency-Key": "k1"})
    assert again.status == 200 and again.json()["broker_order_id"] == retry.json()["broker_order_id"]
    assert len(stack.broker.orders) == 1


def test_a_retry_while_the_reservation_is_held_is_202_pending(stack):
    stack.broker.fail_submit = BrokerError(BrokerErrorCode.UNAVAILABLE, "down")
    stack.post("/execute", execute_body(), headers={"Idempotency-Key": "k1"})
    stack.broker.fail_submit = None
    stack.broker.orders.clear()
    response = stack.post("/execute", execute_body(), headers={"Idempotency-Key": "k1"})
    assert response.status == 202 and response.json()["status"] == "pending" and response.headers["Retry-After"] == "1"


# --------------------------------------------------------------------------- idempotency


def test_same_key_same_body_replays_the_first_outcome_with_200(stack):
    first = stack.post("/execute", execute_body(), headers={"Idempotency-Key": "order-1"})
    second = stack.post("/execute", execute_body(qty=10), headers={"Idempotency-Key": "order-1"})
    assert first.status == 201 and second.status == 200
    assert second.headers["Idempotent-Replayed"] == "true" and second.json()["replayed"] is True
    assert second.json()["broker_order_id"] == first.json()["broker_order_id"]
    assert len(stack.broker.submits) == 1
    assert first.json()["intent_id"] == derived_id("k", "acme", "alice", "order-1")


@pytest.mark.parametrize("change, differs", [
    ({"qty": "11"}, "qty"), ({"side": "sell"}, "side"), ({"symbol": "SPY"}, "symbol"),
    ({"metadata": {"note": "other"}}, "metadata"), ({"strategy_id": "s2"}, "strategy_id"),
])
def test_same_key_different_body_is_a_409_and_changes_nothing(stack, change, differs):
    stack.post("/execute", execute_body(), headers={"Idempotency-Key": "order-1"})
    before = json.dumps(stack.store.docs, sort_keys=True, default=str)
    response = stack.post("/execute", execute_body(**change), headers={"Idempotency-Key": "order-1"})
    assert response.status == 409
    err = error_of(response)
    assert err["code"] == "IDEMPOTENCY_CONFLICT" and differs in err["reason"] and err["field"] == "Idempotency-Key"
    assert json.dumps(stack.store.docs, sort_keys=True, default=str) == before and len(stack.broker.submits) == 1


def test_the_same_key_of_two_users_names_two_intents(stack):
    a = stack.post("/execute", execute_body(), headers={"Idempotency-Key": "same"})
    b = stack.post("/execute", execute_body(broker_account_id="acct-bob"), headers={"Idempotency-Key": "same"},
                   token="tok-bob")
    assert a.status == b.status == 201 and a.json()["intent_id"] != b.json()["intent_id"]


def test_a_body_intent_id_is_per_user_so_a_colleague_neither_squats_nor_learns_it_exists(stack):
    first = stack.post("/execute", execute_body(intent_id="my-intent-1"))
    assert first.status == 201 and first.json()["intent_id"] == derived_id("k", "acme", "alice", "my-intent-1")
    assert stack.post("/execute", execute_body(intent_id="my-intent-1")).status == 200
    other = stack.post("/execute", execute_body(intent_id="my-intent-1", broker_account_id="acct-bob"), token="tok-bob")
    assert other.status == 201 and other.json()["uid"] == "bob"  # bob's own intent, not alice's replayed
    assert other.json()["broker_order_id"] != first.json()["broker_order_id"]
    changed = stack.post("/execute", execute_body(intent_id="my-intent-1", qty="11"))
    assert changed.status == 409 and error_of(changed)["field"] == "intent_id"  # the owner's own reuse


@pytest.mark.parametrize("key", ["", "has space", "x" * 101, "semi;colon", "ü"])
def test_a_malformed_idempotency_key_is_400(stack, key):
    response = stack.post("/execute", execute_body(), headers={"Idempotency-Key": key})
    assert response.status == 400 and error_of(response)["field"] == "Idempotency-Key"
    assert stack.store.docs == {}


def test_header_and_body_intent_id_must_agree(stack):
    response = stack.post("/execute", execute_body(intent_id="a1"), headers={"Idempotency-Key": "b2"})
    assert response.status == 400 and error_of(response)["field"] == "intent_id"
    same = stack.post("/execute", execute_body(intent_id="a1"), headers={"Idempotency-Key": "a1"})
    assert same.status == 201 and same.json()["intent_id"] == derived_id("k", "acme", "alice", "a1")


def test_a_key_used_by_a_client_written_intent_of_another_shape_is_a_409(stack):
    intent_id = derived_id("k", "acme", "alice", "k9")
    stack.store.set_doc(f"tenants/acme/order_intents/{intent_id}", {"status": "new", "uid": "alice", "payload": {}})
    response = stack.post("/execute", execute_body(), headers={"Idempotency-Key": "k9"})
    assert response.status == 409


# ------------------------------------------------------------------------------- failures


class _ExplodingEngine:
    def __init__(self, engine):
        self.store = engine.store
        self.settings = engine.settings

    def execute_intent(self, intent, context=None):
        raise RuntimeError("boom: secret internals")


def test_an_unexpected_exception_is_a_generic_500_with_an_error_log_line(stack, log_lines):
    app = ApiApp.with_instances(engine=_ExplodingEngine(stack.engine), verifier=stack.verifier)
    response = app.handle(ApiRequest("POST", "/execute", {"Authorization": "Bearer tok-alice"}, {},
                                     json.dumps(execute_body()).encode()))
    assert response.status == 500
    err = error_of(response)
    assert err["code"] == "INTERNAL" and "boom" not in json.dumps(response.json())
    errors = [line for line in log_lines() if line["event"] == "api.unhandled_error"]
    assert len(errors) == 1 and errors[0]["severity"] == "ERROR" and errors[0]["error_type"] == "RuntimeError"
    assert errors[0]["request_id"] == response.headers["X-Request-Id"] and errors[0]["uid"] == "alice"


def test_a_configuration_error_while_building_the_engine_is_a_500_not_a_400(stack, log_lines):
    from backend.settings import ExecSettings

    def factory():
        return ExecSettings.from_env({"EXEC_DRY_RUN": "maybe"})  # raises InvalidInput naming the variable

    app = ApiApp(engine=factory, verifier=lambda: stack.verifier)
    response = app.handle(ApiRequest("POST", "/execute", {"Authorization": "Bearer tok-alice"}, {},
                                     json.dumps(execute_body()).encode()))
    assert response.status == 500
    assert [line["error_type"] for line in log_lines() if line["event"] == "api.unhandled_error"] == [
        "_EngineUnavailable"]


def test_every_request_writes_one_access_log_line(stack, log_lines):
    stack.post("/execute", execute_body())
    stack.get("/nope")
    access = [line for line in log_lines() if line["event"] == "api.request"]
    assert [(a["route"], a["status"]) for a in access] == [("/execute", 201), ("/nope", 404)]
    assert access[0]["uid"] == "alice" and access[0]["tenant_id"] == "acme"


def test_a_store_that_stays_contended_answers_503_with_retry_after_and_commits_nothing(stack, monkeypatch):
    from backend.domain.errors import StoreContended

    def contended(claim):
        raise StoreContended("daily slots kept being taken concurrently")

    monkeypatch.setattr(stack.store, "claim", contended)

    response = stack.post("/execute", execute_body(intent_id="busy-1"))

    assert response.status == 503
    assert response.headers.get("Retry-After") == "1"
    assert response.json()["error"]["code"] == "STORE_CONTENDED"
    assert stack.store.collection("tenants/acme/ledger_trades") == {}
