"""Fuzzing the GET endpoints' query strings and path segments: never a 500, never a write, and
every refusal carries a code and a message. ``FUZZ_EXAMPLES`` sets the cases per endpoint (CI: 60;
the long run: ``FUZZ_EXAMPLES=1000 bash scripts/test.sh tests/unit/test_api_fuzz_queries.py
tests/unit/test_api_properties.py``)."""
import io
import json
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend import logs
from tests.support.api_stack import make_stack

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
ENDPOINTS = {
    "/portfolio/history": ["limit", "cursor"],
    "/portfolio/tax-lots/export": ["year", "format", "section", "digital_assets"],
    "/tenants/acme/ledger": ["from", "to", "symbol", "strategy_id", "status", "uid", "limit", "cursor", "format"],
    "/tenants/acme/metrics": ["from", "to", "strategy_id"],
    "/groups/g-1": [],
    # issue 13: tenant administration reads
    "/tenants/acme/members": ["role", "status", "limit", "cursor"],
    "/tenants/acme/connections": ["limit", "cursor"],
    "/tenants/acme/accounts": ["owner_uid", "status", "limit", "cursor"],
    "/tenants/acme/audit-log": ["action", "actor_uid", "target", "from", "to", "limit", "cursor"],
    # issue 19 item 9: the caller's accounts, positions and balances
    "/accounts": ["uid", "limit", "cursor"],
    "/accounts/a1": [],
    "/accounts/a1/positions": [],
    "/accounts/a1/balance": [],
}
values = st.one_of(
    st.text(max_size=30), st.integers(-10**12, 10**12).map(str),
    st.sampled_from(["2026", "2026-01-05", "2026-13-40", "csv", "json", "xml", "open_lots", "disposals", "0", "-1",
                     "501", "100", "AAPL", "placed", "downgraded", "rejected", "", "\u0000", "%", "x" * 300,
                     "eyJhIjoxfQ==", "bad-cursor!", "1e9", "NaN", "__rt__", ".", "..", "١٠", "txf", "omit", "refuse",
                     # cursors naming Firestore-reserved document ids (issue 10 item 5)
                     "eyJjIjoiMjAyNi0wMS0wNSIsImkiOiJfX3hfXyJ9", "eyJjIjoiMjAyNi0wMS0wNSIsImkiOiIuLiJ9",
                     "eyJjIjoiXHVkODAwIiwiaSI6ImExIn0"]))


@st.composite
def queries(draw):
    path = draw(st.sampled_from(sorted(ENDPOINTS)))
    known = ENDPOINTS[path]
    keys = draw(st.lists(st.one_of(st.sampled_from(known or ["x"]), st.text(min_size=1, max_size=8)),
                         max_size=5, unique=True))
    query = {key: draw(values) for key in keys}
    token = draw(st.sampled_from(["tok-alice", "tok-admin", "tok-zed", "tok-norole", None, "garbage"]))
    return path, query, token


@st.composite
def odd_paths(draw):
    segment = draw(st.one_of(st.text(min_size=0, max_size=40), st.sampled_from(["__x__", "..", ".", "__name__"])))
    base = draw(st.sampled_from(["/groups/", "/tenants/", "/tenants/acme/", "/portfolio/", "/", "/accounts/"]))
    return base + segment


def _seeded_stack():
    stack = make_stack(paper=True)
    stack.post("/execute", {"strategy_id": "s1", "broker_account_id": "a1", "symbol": "AAPL", "side": "buy",
                            "qty": "1"}, headers={"Idempotency-Key": "seed-1"})
    return stack


def _assert_clean(stack, before, response):
    assert response.status != 500, response.json()
    if response.status >= 400:
        err = response.json()["error"]
        assert err["code"] and err["message"]
    assert json.dumps(stack.store.docs, sort_keys=True, default=str) == before, "a GET wrote"


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(queries())
def test_query_strings_never_500_and_never_write(case):
    path, query, token = case
    logs.set_stream(io.StringIO())
    try:
        stack = _seeded_stack()
        before = json.dumps(stack.store.docs, sort_keys=True, default=str)
        response = stack.get(path, query=query, token=token)
        if hasattr(response, "iter_bytes"):
            b"".join(response.iter_bytes())  # a streamed body must stream without error too
    finally:
        logs.set_stream(None)
    _assert_clean(stack, before, response)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(odd_paths(), st.sampled_from(["GET", "POST", "DELETE", "PUT"]))
def test_odd_paths_and_methods_never_500(path, method):
    logs.set_stream(io.StringIO())
    try:
        stack = _seeded_stack()
        before = json.dumps(stack.store.docs, sort_keys=True, default=str)
        response = stack.request(method, path, raw=b"{}", headers={"Content-Type": "application/json"})
    finally:
        logs.set_stream(None)
    assert response.status != 500, (path, response.json())
    if response.status >= 400:
        assert json.dumps(stack.store.docs, sort_keys=True, default=str) == before
