"""Issue 10 items 5 and 11 (and issue 11 item 4): one id rule per kind of id, Firestore's reserved
names refused before anything is written or sent, ASCII-only amounts.

``strategy_id="__rt__"`` used to pass the id pattern; the order filled at the venue and then the
write that records it failed (``__…__`` is reserved in Firestore field paths and document ids).
"""
import base64
import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from backend.api.history import Cursor
from backend.domain import ids
from backend.domain.errors import InvalidInput
from backend.domain.money import to_decimal
from backend.domain.storable import MAX_RECORD_BYTES, check_storable
from backend.execution.groups import ExecutionGroup
from backend.execution.intent import ExecutionContext, OrderIntent
from backend.execution.preflight import check_intent_writes
from tests.support.api_stack import execute_body, make_stack, multileg_body, signal_body

RESERVED = ["__rt__", "__grp__", "____", "__a b__"]


@pytest.fixture
def stack(quiet_logs):
    return make_stack()


@pytest.fixture
def paper(quiet_logs):
    return make_stack(paper=True)


def error_of(response):
    return response.json()["error"]


def _cursor(created_at: str, doc_id: str) -> str:
    raw = json.dumps({"c": created_at, "i": doc_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# ------------------------------------------------------------------------------ the rules


@pytest.mark.parametrize("name", ["__rt__", "____", "__x.y__", ".", "..", "a/b", "", "x" * 1501])
def test_firestore_reserved_or_impossible_names_are_refused(name):
    assert ids.firestore_name_problem(name) is not None


@pytest.mark.parametrize("name", ["__", "___", "_a_", "__rt", "rt__", "a__b", "s1", "(other)", "a.b"])
def test_ordinary_names_are_storable(name):
    assert ids.firestore_name_problem(name) is None


@pytest.mark.parametrize("kind", [ids.ID, ids.METADATA_KEY, ids.LOT_ID])
@pytest.mark.parametrize("name", RESERVED[:3])
def test_every_id_kind_refuses_reserved_names_that_its_charset_allows(kind, name):
    with pytest.raises(InvalidInput, match="reserved by Firestore"):
        kind.check(name, "field")


def test_every_id_kind_refuses_dot_names_where_its_charset_allows_dots():
    for kind in (ids.METADATA_KEY, ids.LOT_ID):
        for name in (".", ".."):
            assert not kind.is_valid(name)


@pytest.mark.parametrize("field", ["strategy_id", "broker_account_id", "intent_id"])
def test_an_order_intent_refuses_a_reserved_id(field):
    base = dict(strategy_id="s1", broker_account_id="acct1", symbol="AAPL", side="buy", qty="1")
    with pytest.raises(InvalidInput) as err:
        OrderIntent(**{**base, field: "__rt__"})
    assert err.value.field == field


@pytest.mark.parametrize("metadata, field", [
    ({"__x__": "1"}, "metadata.__x__"),
    ({".": "1"}, "metadata.."),
    ({"lot_ids": {"__lot__": "1"}}, "metadata.lot_ids"),
    ({"lot_ids": {"b1": "1_000"}}, "metadata.lot_ids.b1"),
    ({"note": {"nested": {"deeper": 1}}}, "metadata.note"),
    ({"note": "x" * 501}, "metadata.note"),
    ({f"k{i}": i for i in range(65)}, "metadata"),
])
def test_intent_metadata_keys_depth_and_size_are_bounded(metadata, field):
    with pytest.raises(InvalidInput) as err:
        OrderIntent("s1", "acct1", "AAPL", "buy", "1", metadata=metadata)
    assert err.value.field == field


def test_lot_ids_are_stored_as_exact_strings_never_decimals():
    intent = OrderIntent("s1", "acct1", "AAPL", "sell", "2", metadata={"lot_ids": {"b1": Decimal("2"), "b2": 1}})
    assert intent.to_dict()["metadata"]["lot_ids"] == {"b1": "2", "b2": "1"}


def test_a_group_refuses_a_reserved_strategy_id():
    with pytest.raises(InvalidInput) as err:
        ExecutionGroup.create(group_id="g1", strategy_id="__grp__", tenant_id="acme", uid="u1",
                              legs=multileg_body()["legs"], now=datetime(2026, 1, 5, tzinfo=timezone.utc),
                              rpm_output=multileg_body()["rpm_output"])
    assert err.value.field == "strategy_id"


# ---------------------------------------------------------------------- the storable check


@pytest.mark.parametrize("doc, path", [
    ({"by_strategy": {"__rt__": {"decisions": 1}}}, "by_strategy.__rt__"),
    ({"a": [{"__x__": 1}]}, "a[0].__x__"),
    ({"qty": Decimal("1")}, "qty"),
    ({"n": 2 ** 63}, "n"),
])
def test_check_storable_names_the_first_unstorable_path(doc, path):
    with pytest.raises(InvalidInput) as err:
        check_storable(doc)
    assert err.value.field == path


def test_check_storable_refuses_documents_near_the_size_limit_and_reserved_document_ids():
    with pytest.raises(InvalidInput, match="bytes"):
        check_storable({"pad": "x" * MAX_RECORD_BYTES})
    with pytest.raises(InvalidInput):
        check_storable({}, "tenants/acme/order_intents/__x__")
    deep: dict = {}
    node = deep
    for _ in range(25):
        node["d"] = {}
        node = node["d"]
    with pytest.raises(InvalidInput, match="deeper"):
        check_storable(deep)


def test_the_preflight_refuses_a_hand_built_intent_with_a_reserved_strategy_before_any_write():
    intent = OrderIntent("s1", "acct1", "AAPL", "buy", "1")
    object.__setattr__(intent, "strategy_id", "__rt__")  # a library caller that bypassed the constructor
    with pytest.raises(InvalidInput):
        check_intent_writes(intent, ExecutionContext("acme", "u1"), datetime(2026, 1, 5, tzinfo=timezone.utc))


def test_the_engine_refuses_such_an_intent_with_nothing_written_and_no_order(stack):
    intent = OrderIntent("s1", "acct1", "AAPL", "buy", "1")
    object.__setattr__(intent, "strategy_id", "__rt__")
    with pytest.raises(InvalidInput):
        stack.engine.execute_intent(intent, ExecutionContext("acme", "alice"))
    assert stack.store.docs == {} and stack.broker.submits == []


def test_a_library_group_with_a_reserved_strategy_sends_nothing(paper):
    with pytest.raises(InvalidInput):
        paper.engine.execute_group({**multileg_body(strategy_id="__grp__")}, ExecutionContext("acme", "alice"))
    assert paper.store.docs == {}


def test_a_group_whose_rpm_output_has_a_reserved_key_is_refused_before_it_is_created(paper):
    body = multileg_body(rpm_output={**multileg_body()["rpm_output"], "__x__": 1})
    response = paper.post("/execute/multi-leg", body)
    assert response.status == 400 and error_of(response)["field"] == "rpm_output.__x__"
    assert paper.store.docs == {}


# ------------------------------------------------------------------------------ over HTTP


@pytest.mark.parametrize("field", ["strategy_id", "broker_account_id", "intent_id"])
@pytest.mark.parametrize("name", RESERVED[:3])
def test_execute_with_a_reserved_id_is_a_400_naming_it_and_nothing_is_written_or_sent(stack, field, name):
    response = stack.post("/execute", execute_body(**{field: name}))
    assert response.status == 400 and error_of(response)["field"] == field
    assert "reserved" in error_of(response)["reason"]
    assert stack.store.docs == {} and stack.broker.submits == []


def test_execute_with_a_reserved_metadata_key_is_a_400(stack):
    response = stack.post("/execute", execute_body(metadata={"__x__": "1"}))
    assert response.status == 400 and error_of(response)["field"] == "metadata"
    assert stack.store.docs == {} and stack.broker.submits == []


def test_a_signal_with_a_reserved_strategy_is_a_400(stack):
    response = stack.post("/signals", signal_body(strategy_id="__rt__"))
    assert response.status == 400 and error_of(response)["field"] == "strategy_id"
    assert stack.store.docs == {} and stack.broker.submits == []


def test_a_reserved_idempotency_key_is_a_400(stack):
    response = stack.post("/execute", execute_body(), headers={"Idempotency-Key": "__k__"})
    assert response.status == 400 and error_of(response)["field"] == "Idempotency-Key"
    assert stack.store.docs == {}


@pytest.mark.parametrize("override", [{"strategy_id": "__grp__"},
                                      {"execution_priority": ["__l__", "leg_002"]}])
def test_a_multi_leg_group_with_a_reserved_id_is_a_400_and_nothing_is_sent(paper, override):
    body = multileg_body(**override)
    if "execution_priority" in override:
        body["legs"] = [{**body["legs"][0], "leg_id": "__l__"}, body["legs"][1]]
    response = paper.post("/execute/multi-leg", body)
    assert response.status == 400, response.json()
    assert paper.store.docs == {}


@pytest.mark.parametrize("group_id", ["__x__", "..", "."])
def test_get_group_with_a_reserved_id_is_a_400_not_a_500(stack, group_id):
    response = stack.get(f"/groups/{group_id}")
    assert response.status in (400, 404) and error_of(response)["field"] in ("group_id", None)


@pytest.mark.parametrize("doc_id", ["__x__", "..", ".", "__name__"])
def test_ledger_and_history_cursors_with_reserved_names_are_a_400(stack, doc_id):
    cursor = _cursor("2026-01-05T10:00:00+00:00", doc_id)
    ledger = stack.get("/tenants/acme/ledger", token="tok-admin", query={"cursor": cursor})
    history = stack.get("/portfolio/history", query={"cursor": cursor})
    assert ledger.status == history.status == 400
    assert error_of(ledger)["field"] == error_of(history)["field"] == "cursor"


def test_a_cursor_with_a_lone_surrogate_timestamp_is_a_400(stack):
    cursor = base64.urlsafe_b64encode(b'{"c":"\\ud800","i":"a1"}').decode().rstrip("=")
    assert stack.get("/portfolio/history", query={"cursor": cursor}).status == 400
    assert Cursor.decode(_cursor("2026-01-05", "a1")).doc_id == "a1"


# -------------------------------------------------------------------- ASCII amounts (item 11)


@pytest.mark.parametrize("text", ["١٠", "1_000", "٣.٥", "１０", "1 000", "10\u00a0000"])
def test_amounts_accept_only_ascii_decimal_notation(text):
    with pytest.raises(InvalidInput) as err:
        to_decimal(text, "qty")
    assert err.value.field == "qty" and "ASCII" in err.value.reason


@pytest.mark.parametrize("text, value", [("10", "10"), (" 2.5 ", "2.5"), ("1e3", "1000"), (".5", "0.5"),
                                         ("-0", "0"), ("+7", "7")])
def test_ascii_decimal_notation_is_still_accepted(text, value):
    assert to_decimal(text, "qty") == Decimal(value)


@pytest.mark.parametrize("field, text", [("qty", "١٠"), ("qty", "1_000"), ("limit_price", "1_90"),
                                         ("estimated_slippage", "٠.١")])
def test_non_ascii_or_underscored_amounts_over_http_are_a_400(stack, field, text):
    body = execute_body(**{field: text}, **({"order_type": "limit"} if field == "limit_price" else {}))
    response = stack.post("/execute", body)
    assert response.status == 400 and error_of(response)["field"] == field
    assert stack.store.docs == {} and stack.broker.submits == []


def test_a_multi_leg_unit_in_arabic_indic_digits_is_a_400(paper):
    body = multileg_body()
    body["legs"][0]["units"] = "١٠٠٠٠٠"
    response = paper.post("/execute/multi-leg", body)
    assert response.status == 400 and error_of(response)["field"] == "legs[0].units"
    assert paper.store.docs == {}


@pytest.mark.parametrize("path, query", [("/portfolio/history", {"limit": "١٠"}),
                                         ("/tenants/acme/ledger", {"limit": "٥"})])
def test_query_integers_accept_only_ascii_digits(stack, path, query):
    response = stack.get(path, token="tok-admin", query=query)
    assert response.status == 400 and error_of(response)["field"] == "limit"
