"""Issue 19 item 1: an omitted asset class is the symbol's own (BTC/USD CRYPTO, EUR/USD FOREX), never a
silent EQUITY; a given class that the symbol's form contradicts is a 400 naming asset_class, and
nothing is written. Paths: POST /execute, POST /signals, POST /execute/multi-leg, an intent document."""
import io

import pytest

from backend import logs
from backend.domain.assets import AssetClass, resolve_asset_class
from backend.domain.errors import InvalidInput
from backend.service.intake import handle_intent_document
from tests.support.api_stack import execute_body, make_stack, multileg_body, signal_body
from tests.unit.test_sweeper_and_intake import make_engine

A = AssetClass
CALL = "AAPL240119C00190000"


@pytest.fixture(autouse=True)
def quiet_logs():
    logs.set_stream(io.StringIO())
    yield
    logs.set_stream(None)


@pytest.mark.parametrize("symbol, given, expected", [
    ("BTC/USD", None, A.CRYPTO), ("EUR/USD", None, A.FOREX), ("EURUSD", None, A.FOREX), ("AAPL", None, A.EQUITY),
    ("XAU/USD", None, A.COMMODITY), ("GC=F", None, A.COMMODITY), (CALL, None, A.OPTIONS),
    ("EUR/USD", "FX", A.FOREX), ("btc/usd", "crypto", A.CRYPTO),
    ("GLD", "COMMODITY", A.COMMODITY), ("GLD", "EQUITY", A.EQUITY),  # a plain ticker's class is the caller's
])
def test_the_class_is_the_symbols_own_unless_a_compatible_one_is_given(symbol, given, expected):
    assert resolve_asset_class(symbol, given) is expected


@pytest.mark.parametrize("symbol, given, detected", [
    ("EUR/USD", "EQUITY", "FOREX"), ("BTC/USD", "EQUITY", "CRYPTO"), ("BTC/USD", "FX", "CRYPTO"),
    ("EURUSD", "CRYPTO", "FOREX"), (CALL, "EQUITY", "OPTIONS"), ("AAPL", "OPTIONS", "EQUITY"),
    ("GC=F", "EQUITY", "COMMODITY"),
])
def test_a_class_the_symbol_contradicts_is_refused_naming_the_detected_class(symbol, given, detected):
    with pytest.raises(InvalidInput) as err:
        resolve_asset_class(symbol, given)
    assert err.value.field == "asset_class" and f"which is {detected}" in err.value.reason


@pytest.mark.parametrize("symbol, expected", [("BTC/USD", "CRYPTO"), ("EUR/USD", "FOREX"), ("AAPL", "EQUITY")])
def test_execute_without_asset_class_books_the_symbols_class(symbol, expected):
    stack = make_stack()
    response = stack.post("/execute", execute_body(symbol=symbol, qty="1"))
    assert response.status == 201, response.json()
    intent_id = response.json()["intent_id"]
    assert stack.store.get(f"tenants/acme/ledger_trades/{intent_id}")["asset_class"] == expected


@pytest.mark.parametrize("path, body", [
    ("/execute", execute_body(symbol="EUR/USD", asset_class="EQUITY")),
    ("/signals", signal_body(symbol="EUR/USD", asset_class="EQUITY", market_data=None)),
])
def test_a_contradicting_asset_class_is_a_400_and_nothing_is_written(path, body):
    stack = make_stack()
    before = dict(stack.store.docs)
    response = stack.post(path, body)
    assert response.status == 400
    err = response.json()["error"]
    assert err["field"] == "asset_class" and "which is FOREX" in err["reason"], err
    assert stack.store.docs == before and stack.broker.submits == []


def test_a_signal_without_asset_class_trades_the_symbols_class():
    stack = make_stack()
    body = stack.post("/signals", signal_body(symbol="BTC/USD", qty="1", market_data=None)).json()
    assert body["signal"]["asset_class"] == "CRYPTO" and body["execution"]["status"] == "placed"
    assert stack.store.get(f"tenants/acme/order_intents/{body['execution']['intent_id']}")["intent"]["asset_class"] \
        == "CRYPTO"


def test_group_legs_without_asset_class_reach_the_engine_with_the_symbols_class():
    stack = make_stack(group_engine=True)
    body = multileg_body()
    for leg in body["legs"]:
        del leg["asset_class"]
    first = stack.post("/execute/multi-leg", body, headers={"Idempotency-Key": "g-1"})
    replay = stack.post("/execute/multi-leg", body, headers={"Idempotency-Key": "g-1"})
    assert (first.status, replay.status) == (201, 200)
    sent = stack.engine.group_calls[0][0]["legs"]
    assert [leg["asset_class"] for leg in sent] == ["FOREX", "FOREX"]


def test_a_group_leg_whose_class_contradicts_its_symbol_is_a_400_naming_the_leg():
    stack = make_stack(group_engine=True)
    body = multileg_body()
    body["legs"][1]["asset_class"] = "EQUITY"
    response = stack.post("/execute/multi-leg", body)
    err = response.json()["error"]
    assert response.status == 400 and err["field"] == "legs[1].asset_class" and "which is FOREX" in err["reason"]
    assert stack.engine.group_calls == []


def test_an_intent_document_without_asset_class_trades_the_symbols_class():
    engine = make_engine()
    doc = {"uid": "u1", "status": "new", "kind": "single",
           "intent": {"strategy_id": "s1", "broker_account_id": "acct", "symbol": "EUR/USD", "side": "buy",
                      "qty": "50"}}
    engine.store.set_doc("tenants/acme/order_intents/fx1", doc)
    out = handle_intent_document(engine, "acme", "fx1", doc)
    assert out["status"] == "placed"
    assert engine.store.get("tenants/acme/ledger_trades/fx1")["asset_class"] == "FOREX"
    assert engine.broker.venue.orders()[0].asset_class is A.FOREX


def test_a_group_intent_document_without_leg_classes_runs_with_the_symbols_class():
    from tests.unit.test_sweeper_and_intake import pair_request

    engine = make_engine()
    request = pair_request(engine.clock)
    for leg in request["legs"]:
        del leg["asset_class"]
    doc = {"uid": "u1", "status": "new", "kind": "multi_leg", "request": request}
    engine.store.set_doc("tenants/acme/order_intents/grp1", doc)
    handle_intent_document(engine, "acme", "grp1", doc)
    group = engine.get_group("acme", "grp1")
    assert group.status.value == "FILLED" and {leg.asset_class for leg in group.legs} == {A.FOREX}


def test_an_intent_document_with_a_contradicting_class_is_rejected_on_the_document():
    engine = make_engine()
    doc = {"uid": "u1", "status": "new", "kind": "single",
           "intent": {"strategy_id": "s1", "broker_account_id": "acct", "symbol": "BTC/USD", "side": "buy",
                      "qty": "1", "asset_class": "EQUITY"}}
    engine.store.set_doc("tenants/acme/order_intents/bad", doc)
    out = handle_intent_document(engine, "acme", "bad", doc)
    assert out["error"]["field"] == "asset_class" and "which is CRYPTO" in out["error"]["reason"]
    assert engine.broker.venue.orders() == []
