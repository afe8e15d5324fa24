"""A rejected group says why (issue 19 item 6): POST /execute/multi-leg and GET /groups/{id} answer
the group's coded ``rejection`` and each leg's, on the real engine and the paper venue."""
from __future__ import annotations

import dataclasses
import io
from decimal import Decimal
from typing import Any

import pytest

from backend import logs
from backend.adapters.memory_store import InMemoryStore
from backend.adapters.paper_broker import PaperBroker
from backend.domain.clock import ManualClock
from backend.execution.engine import ExecutionEngine, RiskManager, SmartRouter
from backend.risk.manager import RiskLimits
from backend.settings import ExecSettings
from tests.support.api_stack import ApiStack, make_stack
from tests.support.group_harness import approve


@pytest.fixture(autouse=True)
def quiet():
    logs.set_stream(io.StringIO())
    yield
    logs.set_stream(None)


def paper_stack(symbols: dict[str, Any]) -> ApiStack:
    """The API on the real engine and a paper venue quoting ``symbols`` (the default market otherwise)."""
    clock = ManualClock()
    scenario = {"description": "test", "seed": 7, "default_fill": {"model": "immediate"},
                "account": {"cash": "1000000", "buying_power": "2000000", "equity": "1000000"},
                "symbols": {"SPY": {"asset_class": "EQUITY", "mid": "520.00", "spread": "0.02"},
                            "MSFT": {"asset_class": "EQUITY", "mid": "420.00", "spread": "0.04"}, **symbols}}
    broker = PaperBroker(scenario, clock=clock)
    store = InMemoryStore()
    engine = ExecutionEngine(broker=broker, router=SmartRouter(max_spread_pct="0.001"),
                             risk=RiskManager(RiskLimits(max_position_qty=Decimal("1000000"))), dry_run=False, store=store,
                             clock=clock, settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0"}))
    return dataclasses.replace(make_stack(engine=engine), broker=broker, store=store, clock=clock)


def equity_pair(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "strategy_id": "pairs_01",
        "legs": [{"leg_id": "long_spy", "symbol": "SPY", "direction": 1, "units": "10", "asset_class": "EQUITY"},
                 {"leg_id": "short_msft", "symbol": "MSFT", "direction": -1, "units": "5", "asset_class": "EQUITY"}],
        "rpm_output": {"decision_id": "rpm-7", "approved": True, "expires_at": "2099-01-01T00:00:00+00:00",
                       "approved_legs": {"long_spy": "10", "short_msft": "5"}},
        "max_group_slippage_pips": "50", "allow_partial_fills": False}
    body.update(overrides)
    return body


def post_and_read(stack: ApiStack, body: dict[str, Any], key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    posted = stack.post("/execute/multi-leg", body, headers={"Idempotency-Key": key})
    assert posted.status == 201, posted.json()
    read = stack.get(f"/groups/{posted.json()['group_id']}")
    assert read.status == 200
    return posted.json(), read.json()


def test_a_group_without_the_risk_desks_approval_answers_rpm_not_authorized():
    stack = paper_stack({})  # no approval stored for rpm-7

    posted, read = post_and_read(stack, equity_pair(), "no-approval")

    assert posted["status"] == "REJECTED" and posted["rollback_executed"] is False
    assert posted["rejection"]["code"] == "RPM_NOT_AUTHORIZED" and posted["rejection"]["detail"]
    assert posted["rejection"]["text"].startswith("RPM_NOT_AUTHORIZED")
    assert read["rejection"] == posted["rejection"] and read["legs"] == posted["legs"]
    assert [leg["rejection"]["code"] for leg in read["legs"]] == ["RPM_NOT_AUTHORIZED"] * 2  # none was authorized


def test_a_group_refused_at_validation_for_a_wide_spread_answers_spread_too_wide_on_the_leg_too():
    stack = paper_stack({"MSFT": {"asset_class": "EQUITY", "mid": "420.00", "spread": "40.00"}})
    approve(stack.store, equity_pair(), tenant_id="acme", uid="alice", issuer_uid="rita")

    posted, read = post_and_read(stack, equity_pair(), "wide")

    assert posted["status"] == "REJECTED" and posted["rejection"]["code"] == "SPREAD_TOO_WIDE"
    assert "short_msft" in posted["rejection"]["detail"]
    assert read["rejection"] == posted["rejection"]
    legs = {leg["leg_id"]: leg for leg in read["legs"]}
    assert legs["short_msft"]["rejection"] == legs["long_spy"]["rejection"] == posted["rejection"]  # all refused
    assert all(leg["filled_units"] == "0" for leg in read["legs"])


def test_a_rolled_back_group_names_the_failing_legs_code_on_the_group_and_the_leg():
    stack = paper_stack({"MSFT": {"asset_class": "EQUITY", "mid": "420.00", "spread": "0.04",
                                  "fill": {"model": "reject", "reject_reason": "symbol halted"}}})
    body = equity_pair(execution_priority=["long_spy", "short_msft"])  # SPY fills, then MSFT is refused
    approve(stack.store, body, tenant_id="acme", uid="alice", issuer_uid="rita")

    posted, read = post_and_read(stack, body, "halted")

    assert posted["status"] == "REJECTED" and posted["rollback_executed"] is True
    legs = {leg["leg_id"]: leg for leg in read["legs"]}
    assert legs["short_msft"]["rejection"]["code"] == "BROKER_REJECTED"
    assert legs["short_msft"]["rejection"]["detail"].startswith("short_msft MSFT")
    assert posted["rejection"]["code"] == "BROKER_REJECTED" and read["rejection"] == posted["rejection"]
    assert legs["long_spy"]["filled_units"] == "10.0000" and legs["long_spy"]["rejection"] is None


def test_a_filled_group_has_no_rejection():
    stack = paper_stack({})
    approve(stack.store, equity_pair(), tenant_id="acme", uid="alice", issuer_uid="rita")

    posted, read = post_and_read(stack, equity_pair(), "ok")

    assert posted["status"] == "FILLED" and posted["rejection"] is None
    assert [leg["rejection"] for leg in read["legs"]] == [None, None]


def test_a_multi_leg_intent_document_refused_by_the_risk_gate_carries_the_coded_reason_in_its_result():
    from tests.unit.test_sweeper_and_intake import make_engine, pair_request
    from backend.service.intake import handle_intent_document

    engine = make_engine()
    request = pair_request(engine.clock)
    request["rpm_output"] = {**request["rpm_output"], "decision_id": "never-issued"}
    doc = {"uid": "u1", "status": "new", "kind": "multi_leg", "request": request}
    engine.store.set_doc("tenants/acme/order_intents/grp-r", doc)

    handle_intent_document(engine, "acme", "grp-r", doc)

    stored = engine.store.get("tenants/acme/order_intents/grp-r")
    assert stored["status"] == "rejected" and stored["result"]["rejection"]["code"] == "RPM_NOT_AUTHORIZED"
    assert [leg["rejection"]["code"] for leg in stored["result"]["legs"]] == ["RPM_NOT_AUTHORIZED"] * 2
    assert [leg["units"] for leg in stored["result"]["legs"]] == ["100000", "50000"]  # strings, as the API answers
    assert engine.broker.venue.orders() == []
