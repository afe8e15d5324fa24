"""rpm_output becomes a real control (issue 10 item 3): approvals are issued by the backend to the
risk_manager role (POST /risk/approvals, or ``issue_approval`` for library use) and a group's own
rpm_output is only a reference to one. Fast path: the HTTP app on the in-memory store and paper venue."""
from __future__ import annotations

from datetime import timedelta

import pytest

from backend.domain.errors import InvalidInput
from backend.execution.groups import GroupStatus
from backend.execution.intent import ExecutionContext
from backend.risk.approvals import approval_for_legs, issue_approval
from tests.support.api_stack import make_stack, multileg_body

APPROVAL = {"decision_id": "rpm-42", "for_uid": "alice", "expires_at": "2099-01-01T00:00:00+00:00",
            "legs": [{"leg_id": "leg_001", "symbol": "EURUSD", "direction": 1, "max_units": "100000"},
                     {"leg_id": "leg_002", "symbol": "GBPUSD", "direction": -1, "max_units": "50000"}]}


def group_status(stack, response) -> str:
    return stack.store.get(f"tenants/acme/execution_groups/{response.json()['group_id']}")["status"]


def test_a_group_whose_rpm_output_the_trader_wrote_is_refused_and_sends_nothing():
    stack = make_stack(paper=True)

    response = stack.post("/execute/multi-leg", multileg_body())

    assert response.status == 201 and response.json()["status"] == "REJECTED"
    stored = stack.store.get(f"tenants/acme/execution_groups/{response.json()['group_id']}")
    assert stored["rejection"]["code"] == "RPM_NOT_AUTHORIZED" and stack.broker.venue.orders() == []


def test_an_approval_issued_by_a_risk_manager_lets_the_same_group_fill():
    stack = make_stack(paper=True)

    issued = stack.post("/risk/approvals", APPROVAL, token="tok-risk")
    response = stack.post("/execute/multi-leg", multileg_body())

    assert issued.status == 201 and issued.json()["issuer_uid"] == "rita"
    assert response.json()["status"] == "FILLED"
    assert stack.store.get("tenants/acme/rpm_approvals/rpm-42")["for_uid"] == "alice"


@pytest.mark.parametrize("change, status", [
    ({"legs": [{**APPROVAL["legs"][0], "max_units": "99999"}, APPROVAL["legs"][1]]}, "REJECTED"),  # units above
    ({"legs": [{**APPROVAL["legs"][0], "direction": -1}, APPROVAL["legs"][1]]}, "REJECTED"),  # other direction
    ({"for_uid": "bob"}, "REJECTED"),  # another trader's approval
])
def test_a_stored_approval_that_does_not_cover_the_group_refuses_it(change, status):
    stack = make_stack(paper=True)
    assert stack.post("/risk/approvals", {**APPROVAL, **change}, token="tok-risk").status == 201

    response = stack.post("/execute/multi-leg", multileg_body())

    assert response.json()["status"] == status and stack.broker.venue.orders() == []


def test_an_approval_that_expires_before_the_second_leg_stops_it():
    stack = make_stack(paper=True)
    expires = (stack.clock.now() + timedelta(seconds=30)).isoformat()
    assert stack.post("/risk/approvals", {**APPROVAL, "expires_at": expires}, token="tok-risk").status == 201
    original = stack.broker.submit_order

    def submit_then_wait(request):
        order = original(request)
        if len(stack.broker.venue.orders()) == 1:
            stack.clock.advance(31)  # the approval expires between the legs
        return order

    stack.broker.submit_order = submit_then_wait
    response = stack.post("/execute/multi-leg", multileg_body())

    assert response.json()["status"] == "REJECTED" and response.json()["rollback_executed"] is True


@pytest.mark.parametrize("token, body, status", [
    ("tok-alice", APPROVAL, 403),  # a trader cannot issue (nor approve themselves)
    ("tok-admin", APPROVAL, 403),  # nor can a tenant admin
    ("tok-risk", {**APPROVAL, "for_uid": "rita"}, 400),  # a risk manager approving their own trades
    ("tok-risk", {**APPROVAL, "expires_at": "2001-01-01T00:00:00+00:00"}, 400),
    ("tok-risk", {**APPROVAL, "expires_at": "2099-01-01T00:00:00"}, 400),  # no UTC offset
    ("tok-risk", {**APPROVAL, "legs": []}, 400),
    ("tok-risk", {**APPROVAL, "approved": True}, 400),  # unknown field
])
def test_only_a_risk_manager_issues_a_well_formed_approval_and_nothing_is_written_otherwise(token, body, status):
    stack = make_stack(paper=True)

    response = stack.post("/risk/approvals", body, token=token)

    assert response.status == status, response.json()
    assert stack.store.get("tenants/acme/rpm_approvals/rpm-42") is None


def test_a_decision_id_is_issued_once():
    stack = make_stack(paper=True)

    first = stack.post("/risk/approvals", APPROVAL, token="tok-risk")
    again = stack.post("/risk/approvals", {**APPROVAL, "for_uid": "bob"}, token="tok-risk")

    assert (first.status, again.status) == (201, 409)
    assert stack.store.get("tenants/acme/rpm_approvals/rpm-42")["for_uid"] == "alice"


def test_the_library_issues_the_same_document_through_the_store():
    stack = make_stack(paper=True)
    body = multileg_body()
    now = stack.clock.now()

    issue_approval(stack.store, "acme", decision_id="rpm-42", for_uid="alice", issuer_uid="risk-desk",
                   legs=approval_for_legs("rpm-42", body["legs"]), expires_at=now + timedelta(hours=1), now=now)
    with pytest.raises(InvalidInput):
        issue_approval(stack.store, "acme", decision_id="rpm-42", for_uid="alice", issuer_uid="risk-desk",
                       legs=approval_for_legs("rpm-42", body["legs"]), expires_at=now + timedelta(hours=1), now=now)

    group = stack.engine.execute_group(body, ExecutionContext("acme", "alice"), group_id="lib-1")
    assert group.status is GroupStatus.FILLED
