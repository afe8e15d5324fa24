"""Issue 15 item 5 on intent documents: ``wide_spread`` / ``limit_timeout_seconds`` against
firestore.rules on the official emulator, docs/intent-document.schema.json and intake — the same
three verdicts as tests/integration/test_intent_document_schema.py (whose helpers and emulator
fixture this module reuses)."""
from __future__ import annotations

import pytest

from tests.integration.test_intent_document_schema import (STORED, Example, create, intake, rules_client,  # noqa: F401
                                                            schema_problems, single)

VALID = {
    "limit-at-touch": Example(single(wide_spread="limit_at_touch", limit_timeout_seconds=60)),
    "limit-at-mid-gtc": Example(single(wide_spread="limit_at_mid", limit_timeout_seconds=3600, time_in_force="gtc",
                                       order_type="market")),
    "wait-explicit": Example(single(wide_spread="wait")),
}
REFUSED_BY_RULES = {
    "unknown-mode": Example(single(wide_spread="limit_at_best", limit_timeout_seconds=60)),
    "timeout-string": Example(single(wide_spread="limit_at_touch", limit_timeout_seconds="60")),
    "timeout-zero": Example(single(wide_spread="limit_at_touch", limit_timeout_seconds=0)),
    "timeout-fraction": Example(single(wide_spread="limit_at_touch", limit_timeout_seconds=1.5)),
    "timeout-over-a-week": Example(single(wide_spread="limit_at_touch", limit_timeout_seconds=604801)),
}
# the rules let these through; the schema states intake's rule and intake refuses them (INVALID_INPUT)
REFUSED_AT_INTAKE = {
    "touch-without-timeout": (Example(single(wide_spread="limit_at_touch")), "limit_timeout_seconds"),
    "timeout-without-mode": (Example(single(limit_timeout_seconds=60)), "limit_timeout_seconds"),
    "on-a-limit-order": (Example(single(wide_spread="limit_at_mid", limit_timeout_seconds=60, order_type="limit",
                                        limit_price="190.00")), "wide_spread"),
    "ioc": (Example(single(wide_spread="limit_at_touch", limit_timeout_seconds=60, time_in_force="ioc")),
            "time_in_force"),
}


@pytest.mark.parametrize("name", VALID)
def test_a_valid_document_passes_the_schema_the_rules_and_intake(rules_client, name):  # noqa: F811
    example = VALID[name]
    assert schema_problems(example.doc_id, example.doc, example.writer) == []
    assert create(rules_client, example).ok
    out, stored = intake(example.doc_id, example.doc)
    assert (out.get("error") or {}).get("code") != "INVALID_INPUT", out
    assert stored["status"] != "new" and STORED.is_valid(stored), list(STORED.iter_errors(stored))


@pytest.mark.parametrize("name", REFUSED_BY_RULES)
def test_the_rules_refuse_what_the_schema_refuses(rules_client, name):  # noqa: F811
    example = REFUSED_BY_RULES[name]
    assert create(rules_client, example).denied
    assert schema_problems(example.doc_id, example.doc, example.writer)


@pytest.mark.parametrize("name", REFUSED_AT_INTAKE)
def test_intake_refuses_what_the_schema_refuses_and_the_rules_let_through(rules_client, name):  # noqa: F811
    example, field = REFUSED_AT_INTAKE[name]
    assert schema_problems(example.doc_id, example.doc, example.writer)
    assert create(rules_client, example).ok
    out, stored = intake(example.doc_id, example.doc)
    assert out["status"] == "rejected" and out["error"]["code"] == "INVALID_INPUT", out
    assert field in out["error"]["field"], out
    assert stored["status"] == "rejected" and STORED.is_valid(stored)
