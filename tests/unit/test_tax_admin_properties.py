"""Property tests over the issue 16 request bodies (POST /portfolio/tax-lots/election, POST
/tenants/acme/corporate-actions, a text/csv POST /portfolio/tax-lots/reconcile): whatever arrives,
never a 500, every error names a code and a message (a VALIDATION_ERROR also its field), and a
refused request writes nothing."""
import copy
import io
import json
import os
from datetime import datetime
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend import logs
from backend.domain.storable import check_storable
from backend.tax import Fill
from tests.support.api_stack import make_stack
from tests.unit.test_api_properties import json_values, keys

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
VALID = [  # (path, token, body)
    ("/portfolio/tax-lots/election", "tok-alice", {"method": "SPECIFIC", "effective_at": "2026-02-01T00:00:00Z",
                                                   "broker_account_id": "a", "default_rule": "HIFO"}),
    ("/tenants/acme/corporate-actions", "tok-admin", {"action_id": "s-1", "kind": "SPLIT", "symbol": "AAPL",
                                                      "effective": "2026-01-05", "ratio": "2"}),
    ("/tenants/acme/corporate-actions", "tok-admin", {"action_id": "c-1", "kind": "SYMBOL_CHANGE", "symbol": "AAPL",
                                                      "effective": "2026-01-05", "new_symbol": "AAPL2"}),
]
CSV_HEAD = "description,date_acquired,date_sold,proceeds,cost_basis,wash_sale_disallowed,term\n"


def _stack():
    stack = make_stack()
    for uid, book in (("alice", "acme:a"), ("bob", "globex:b")):
        for trade_id, day in (("b1", "2026-01-02"), ("b2", "2026-01-03")):
            stack.store._apply_tax([(uid, Fill(  # noqa: SLF001 - the step finish() runs
                trade_id=trade_id, symbol="AAPL", side="BUY", qty=Decimal("10"), price=Decimal("100"),
                timestamp=datetime.fromisoformat(f"{day}T15:00:00+00:00"), asset_class="EQUITY", book=book))])
    return stack


@st.composite
def mutated(draw):
    path, token, body = draw(st.sampled_from(VALID))
    body = copy.deepcopy(body)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        action = draw(st.sampled_from(["replace", "delete", "add", "whole"]))
        key = draw(st.sampled_from(sorted(body))) if isinstance(body, dict) and body else None
        if action == "whole":
            body = draw(json_values)
        elif not isinstance(body, dict):
            continue
        elif action == "replace" and key is not None:
            body[key] = draw(json_values)
        elif action == "delete" and key is not None:
            body.pop(key)
        elif action == "add":
            body[draw(st.one_of(st.text(min_size=1, max_size=10), keys))] = draw(json_values)
    return path, token, json.dumps(body).encode(), "application/json", {}


@st.composite
def csv_posts(draw):
    line = draw(st.lists(st.one_of(st.text(max_size=12), st.sampled_from(
        ["10 AAPL", "01/02/2026", "02/30/2026", "100.00", "-1", "SHORT", "LONG", "1e9", ""])), min_size=1, max_size=8))
    text = draw(st.sampled_from(["", CSV_HEAD])) + ",".join(line) + "\n"
    raw = draw(st.one_of(st.just(text.encode()), st.binary(max_size=120)))
    query = draw(st.dictionaries(st.sampled_from(["year", "account", "x"]),
                                 st.sampled_from(["2026", "2025", "0", "acme:a", "a", "", "١٠"]), max_size=3))
    return "/portfolio/tax-lots/reconcile", "tok-alice", raw, "text/csv", query


def _check(path, token, raw, media, query):
    logs.set_stream(io.StringIO())
    try:
        stack = _stack()
        before = json.dumps(stack.store.docs, sort_keys=True, default=str)
        response = stack.post(path, raw=raw, token=token, headers={"Content-Type": media}, query=query)
    finally:
        logs.set_stream(None)
    assert response.status != 500, (path, raw, response.json())
    assert response.status in (200, 201, 400, 403, 409, 413, 415), response.status
    for doc_path, doc in stack.store.docs.items():
        check_storable({} if "/exposure/" in doc_path else doc, doc_path)
    if response.status >= 400:
        err = response.json()["error"]
        assert err["code"] and err["message"]
        if err["code"] == "VALIDATION_ERROR":
            assert err["field"] and err["reason"], err
        assert json.dumps(stack.store.docs, sort_keys=True, default=str) == before, "a refused request wrote"


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(mutated(), csv_posts()))
def test_tax_admin_bodies_never_500_and_refusals_write_nothing(case):
    _check(*case)


def test_the_valid_bodies_are_accepted():
    for path, token, body in VALID:
        stack = _stack()
        response = stack.post(path, body, token=token)
        assert response.status == 201, (path, response.json())
