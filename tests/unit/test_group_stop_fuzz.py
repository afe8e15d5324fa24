"""Fuzzing ``PATCH`` / ``DELETE /groups/{group_id}/legs/{leg_id}/stop`` (issue 15): bodies, headers and
path segments never answer 500, every refusal carries a code and a message, and a refused request
changes nothing (the group document and the venue's orders as before). ``FUZZ_EXAMPLES`` sets the
cases (CI: 60). One FILLED paper group with a working stop on leg_001, on the in-memory store."""
from __future__ import annotations

import io
import json
import os
from functools import lru_cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend import logs
from tests.support.api_stack import make_stack, multileg_body
from tests.support.group_harness import approve

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))

_values = st.one_of(st.text(max_size=20), st.integers(-10**6, 10**6), st.floats(allow_nan=True), st.none(),
                    st.booleans(), st.lists(st.integers(), max_size=2),
                    st.sampled_from(["", "0", "-1", "1e9", "NaN", "Infinity", "1.05005", "1.0900", "1.0849", "0.0001",
                                     "1.0500", "__x__", "..", "x" * 300, "\u0000", "١٠", "1,05", " 1.06"]))
_bodies = st.one_of(
    st.dictionaries(st.sampled_from(["stop_price", "limit_price", "qty", "x", "stop_loss"]), _values, max_size=3),
    st.lists(st.integers(), max_size=2), st.text(max_size=10), st.none())
_segments = st.one_of(st.text(min_size=1, max_size=30), st.sampled_from(["__x__", "..", ".", "leg_002", "leg_001"]))


@lru_cache(maxsize=1)
def _stack():
    logs.set_stream(io.StringIO())
    try:
        stack = make_stack(paper=True)
        body = multileg_body()
        body["legs"][0]["stop_loss"] = {"stop_price": "1.0500"}
        approve(stack.store, body, tenant_id="acme", uid="alice", issuer_uid="rita")
        placed = stack.post("/execute/multi-leg", body, headers={"Idempotency-Key": "fz-group"})
    finally:
        logs.set_stream(None)
    assert placed.status == 201 and placed.json()["legs"][0]["stop_loss"]["status"] == "WORKING", placed.json()
    return stack, placed.json()["group_id"]


def _state(stack) -> str:
    groups = {p: d for p, d in stack.store.docs.items() if "/execution_groups/" in p}
    venue_orders = [(o.broker_order_id, o.state.value, str(o.stop_price)) for o in stack.broker.venue.orders()]
    return json.dumps([groups, venue_orders], sort_keys=True, default=str)


def _checked(stack, before: str, response) -> None:
    assert response.status != 500, response.json()
    if response.status >= 400:
        error = response.json()["error"]
        assert error["code"] and error["message"]
        if response.status not in (503,):
            assert _state(stack) == before, "a refused request changed something"


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_bodies, key=st.one_of(st.none(), st.sampled_from(["k1", "bad key!", "x" * 120, ""])),
       token=st.sampled_from(["tok-alice", "tok-bob", "tok-zed", "tok-norole", None, "garbage"]))
def test_fuzzed_stop_moves_never_500_and_a_refusal_changes_nothing(body, key, token):
    stack, group_id = _stack()
    before = _state(stack)
    headers = {} if key is None else {"Idempotency-Key": key}
    logs.set_stream(io.StringIO())
    try:
        response = stack.request("PATCH", f"/groups/{group_id}/legs/leg_001/stop", body, headers=headers, token=token)
    finally:
        logs.set_stream(None)
    _checked(stack, before, response)
    if response.status == 200:  # a valid move: one working stop at the venue at the answered price
        working = [o for o in stack.broker.venue.orders() if not o.state.is_final and o.client_order_id[:4] in
                   ("mlst", "mlsr")]
        assert [str(o.stop_price) for o in working] == [response.json()["stop"]["stop_price"]]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(group_segment=_segments, leg_segment=_segments, method=st.sampled_from(["PATCH", "DELETE", "GET", "POST"]),
       raw=st.sampled_from([b"", b"{}", b"{", b'{"stop_price": "1.0600"}', b"null", b"[]"]))
def test_fuzzed_stop_paths_never_500_and_never_touch_the_group(group_segment, leg_segment, method, raw):
    stack, _ = _stack()
    before = _state(stack)
    path = f"/groups/{group_segment.replace('/', '_')}/legs/{leg_segment.replace('/', '_')}/stop"
    logs.set_stream(io.StringIO())
    try:
        response = stack.request(method, path, raw=raw, headers={"Content-Type": "application/json",
                                                                 "Idempotency-Key": "fz-path"})
    finally:
        logs.set_stream(None)
    assert response.status in (400, 404, 405), response.json()
    assert response.json()["error"]["code"]
    assert _state(stack) == before
