"""One leg-count rule (issue 11 item 1, issue 10 item 3): backend/domain/group_rules.py MIN_LEGS..MAX_LEGS.

The domain, the API model, firestore.rules and docs/openapi.json all agree with it; a one-leg
"group" (which bought 5,000 SPY past the position limit in the red-team pass) is refused everywhere.
"""
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from backend.api.models import MultiLegRequest
from backend.domain.errors import InvalidInput
from backend.domain.group_rules import MAX_LEGS, MIN_LEGS
from backend.execution.groups import ExecutionGroup

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 1, 5, 14, 30, tzinfo=timezone.utc)
SYMBOLS = ["AAPL", "MSFT", "SPY", "QQQ", "IWM", "TSLA", "NVDA", "AMZN", "GOOG", "META", "NFLX", "AMD"]


def legs(n: int) -> list[dict]:
    return [{"leg_id": f"leg_{i}", "symbol": SYMBOLS[i], "direction": 1 if i % 2 else -1, "units": 1,
             "asset_class": "EQUITY"} for i in range(n)]


def create(n: int) -> ExecutionGroup:
    return ExecutionGroup.create(group_id="g1", strategy_id="s1", tenant_id="t1", uid="u1", legs=legs(n), now=NOW)


def test_the_rule_is_two_to_ten_legs():
    assert (MIN_LEGS, MAX_LEGS) == (2, 10)


@pytest.mark.parametrize("n", [0, 1, MAX_LEGS + 1])
def test_the_domain_refuses_a_group_outside_the_rule(n):
    with pytest.raises(InvalidInput) as err:
        create(n)
    assert err.value.field == "legs"


@pytest.mark.parametrize("n", [MIN_LEGS, MAX_LEGS])
def test_the_domain_accepts_the_bounds(n):
    assert len(create(n).legs) == n


@pytest.mark.parametrize("n, ok", [(MIN_LEGS - 1, False), (MIN_LEGS, True), (MAX_LEGS, True), (MAX_LEGS + 1, False)])
def test_the_api_model_applies_the_same_rule(n, ok):
    body = {"strategy_id": "s1", "legs": legs(n), "rpm_output": {"decision_id": "d1"},
            "max_group_slippage_pips": "1", "allow_partial_fills": False}
    if ok:
        assert len(MultiLegRequest.model_validate(body).legs) == n
    else:
        with pytest.raises(ValidationError):
            MultiLegRequest.model_validate(body)


def test_firestore_rules_bound_intent_documents_by_the_same_numbers():
    rules = (ROOT / "firestore.rules").read_text()
    low = re.findall(r"r\.legs\.size\(\) >= (\d+)", rules)
    high = re.findall(r"r\.legs\.size\(\) <= (\d+)", rules)
    assert low == [str(MIN_LEGS)] and high == [str(MAX_LEGS)]


def test_the_committed_openapi_document_states_the_same_bounds():
    doc = json.loads((ROOT / "docs" / "openapi.json").read_text())
    schema = doc["components"]["schemas"]["MultiLegRequest"]["properties"]["legs"]
    assert (schema["minItems"], schema["maxItems"]) == (MIN_LEGS, MAX_LEGS)
