"""Issue 19 item 10: a 400 lists every field error of the request at once (``error.errors``), while
``error.field`` / ``error.reason`` keep naming the first one."""

import pytest

from tests.support.api_stack import execute_body, make_stack, multileg_body, signal_body


@pytest.fixture
def stack(quiet_logs):
    return make_stack()


def test_an_empty_execute_body_reports_every_missing_field_in_one_response(stack):
    before = dict(stack.store.docs)
    response = stack.post("/execute", {})
    err = response.json()["error"]
    assert response.status == 400 and err["code"] == "VALIDATION_ERROR"
    assert err["errors"] == [{"field": name, "reason": "field required"}
                             for name in ("strategy_id", "symbol", "side", "qty")]  # no account = the default
    assert (err["field"], err["reason"]) == ("strategy_id", "field required")
    assert err["message"] == "strategy_id: field required (and 3 more errors)"
    assert stack.store.docs == before


def test_errors_in_several_fields_and_nested_legs_are_all_named(stack):
    body = multileg_body(max_group_slippage_pips="lots", allow_partial_fills="yes")
    body["legs"][0]["units"] = "-5"
    body["legs"][1]["colour"] = "red"
    err = stack.post("/execute/multi-leg", body).json()["error"]
    assert {e["field"] for e in err["errors"]} == {"legs[0].units", "legs[1].colour", "max_group_slippage_pips",
                                                    "allow_partial_fills"}
    assert err["field"] == err["errors"][0]["field"] and err["reason"] == err["errors"][0]["reason"]


def test_a_signal_with_two_bad_fields_reports_both(stack):
    err = stack.post("/signals", signal_body(confidence=2, foo=1)).json()["error"]
    assert [(e["field"], e["reason"]) for e in err["errors"]] == [("confidence", "must be <= 1, got 2"),
                                                                  ("foo", "unknown field")]


def test_a_single_field_error_is_a_list_of_one_and_other_errors_have_none(stack):
    one = stack.post("/execute", execute_body(qty="abc")).json()["error"]
    unauthenticated = stack.post("/execute", execute_body(), token=None).json()["error"]
    assert one["errors"] == [{"field": "qty", "reason": one["reason"]}]
    assert unauthenticated["errors"] == []
