"""Issue 11, defect 2: ``allow_partial_fills`` is a boolean everywhere — the string ``"false"`` is
refused (it used to become True through ``bool(...)`` for library and intent-document callers).
HTTP refuses it through the pydantic model (tests/unit/test_api_multileg.py), the rules through
firestore.rules (tests/integration/test_firestore_rules.py)."""
import pytest

from backend.domain.errors import InvalidInput
from backend.execution.sweeper import Sweeper
from backend.service.intake import handle_intent_document
from tests.unit.test_sweeper_and_intake import CTX, make_engine, pair_request


@pytest.mark.parametrize("value", ["false", "true", 0, 1, None])
def test_a_library_group_with_a_non_boolean_allow_partial_fills_is_refused_and_nothing_written(value):
    engine = make_engine()
    request = pair_request(engine.clock, allow_partial_fills=value)

    with pytest.raises(InvalidInput) as refused:
        engine.execute_group(request, CTX, group_id="g1")

    assert refused.value.field == "allow_partial_fills"
    assert engine.store.load_group("acme", "g1") is None
    assert engine.broker.venue.orders() == []


def test_an_intent_document_with_the_string_false_is_rejected_on_the_document_by_the_sweeper():
    engine = make_engine()
    doc = {"uid": "u1", "status": "new", "kind": "multi_leg",
           "request": pair_request(engine.clock, allow_partial_fills="false")}
    engine.store.set_doc("tenants/acme/order_intents/grp1", doc)

    report = Sweeper(engine).sweep()

    stored = engine.store.get("tenants/acme/order_intents/grp1")
    assert report.unstarted_found == 1 and not report.errors
    assert stored["status"] == "rejected"
    assert stored["result"]["error"]["field"] == "allow_partial_fills"
    assert engine.store.load_group("acme", "grp1") is None
    assert engine.broker.venue.orders() == []


def test_an_omitted_allow_partial_fills_still_defaults_to_false():
    engine = make_engine()
    request = pair_request(engine.clock)
    del request["allow_partial_fills"]

    group = engine.execute_group(request, CTX, group_id="g1")

    assert group.allow_partial_fills is False


def test_an_intent_document_delivered_by_the_trigger_is_refused_alike():
    engine = make_engine()
    doc = {"uid": "u1", "status": "new", "kind": "multi_leg",
           "request": pair_request(engine.clock, allow_partial_fills="false")}
    engine.store.set_doc("tenants/acme/order_intents/grp2", doc)

    out = handle_intent_document(engine, "acme", "grp2", doc)

    assert out["status"] == "rejected" and out["error"]["field"] == "allow_partial_fills"
