"""Property tests over request bodies: whatever arrives, the API never answers 500, a refused
request (4xx) writes nothing and sends nothing, and every error names a code and a message."""
import copy
import io
import json
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend import logs
from backend.domain.storable import check_storable
from tests.support.api_stack import execute_body, make_stack, multileg_body, signal_body


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
    st.sampled_from(["", "0", "-1", "1e400", "1e-400", "NaN", "Infinity", "buy", "sell", "BUY", "WAIT", "FX",
                     "EQUITY", "limit", "market", "AAPL", "EUR/USD", "acme", "globex", "alice", "0.1", "10",
                     "x" * 200, "\u0000", "leg_001",
                     # Firestore-reserved names and non-ASCII / underscored amounts (issue 10 items 5, 11)
                     "__rt__", "__x.y__", ".", "..", "__name__", "١٠", "1_000", "１０",
                     # issue 15: order types, time in force, order classes, off-tick prices
                     "stop", "stop_limit", "trailing_stop", "gtc", "ioc", "fok", "opg", "cls", "bracket", "oto",
                     "oco", "simple", "100.005", "99", "101",
                     # issue 15 item 5: the wide-spread option of /execute and /signals
                     "wait", "limit_at_touch", "limit_at_mid", "LIMIT_AT_MID", "604800", "604801"]),
)
keys = st.one_of(st.text(max_size=12), st.sampled_from(["__x__", ".", "..", "__name__", "a.b", "lot_ids"]))
json_values = st.recursive(scalars, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)), max_leaves=12)

VALID = {"/execute": execute_body(), "/signals": signal_body(), "/execute/multi-leg": multileg_body()}
# issue 15: /execute bodies with every new field, mutated like the others (posted to /execute)
ORDER_BODIES = [
    execute_body(order_type="stop", stop_price="150.00", time_in_force="gtc"),
    execute_body(order_type="stop_limit", stop_price="150.00", limit_price="151.00", time_in_force="day"),
    execute_body(order_type="trailing_stop", trail_percent="1.5"),
    execute_body(order_type="trailing_stop", trail_price="2.00", time_in_force="gtc"),
    execute_body(order_type="limit", limit_price="100.00", take_profit={"limit_price": "110.00"},
                 stop_loss={"stop_price": "95.00", "limit_price": "94.50"}),
    execute_body(side="sell", order_type="limit", order_class="oco", take_profit={"limit_price": "110.00"},
                 stop_loss={"stop_price": "95.00"}),
    execute_body(symbol="EUR/USD", qty="1000", order_type="stop", stop_price="1.10000",
                 stop_loss={"trail_price": "0.00200"}),
]
# issue 15 item 5: /signals bodies with the wide-spread option, on a wide and a tight market, mutated
# like the others (posted to /signals)
WIDE_MARKET = {"symbol": "AAPL", "price": 190.0, "bid": 189.5, "ask": 190.5}
SIGNAL_BODIES = [
    signal_body(wide_spread="limit_at_touch", limit_timeout_seconds=60, market_data=WIDE_MARKET),
    signal_body(signal_type="SELL", wide_spread="limit_at_mid", limit_timeout_seconds=604800,
                market_data=WIDE_MARKET),
    signal_body(wide_spread="limit_at_mid", limit_timeout_seconds=1),
    signal_body(symbol="WIDE", wide_spread="limit_at_touch", limit_timeout_seconds=30,  # wide at the venue too
                market_data={"symbol": "WIDE", "bid": 99.8, "ask": 100.2}),
    signal_body(signal_type="WAIT", qty=None, wide_spread="wait"),
]


def _paths(body, prefix=()):
    yield prefix
    if isinstance(body, dict):
        for key, value in body.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(body, list):
        for i, value in enumerate(body):
            yield from _paths(value, prefix + (i,))


@st.composite
def mutated_bodies(draw):
    path, body = draw(st.sampled_from(sorted(VALID.items()) + [("/execute", b) for b in ORDER_BODIES]
                                      + [("/signals", b) for b in SIGNAL_BODIES]))
    body = copy.deepcopy(body)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        where = draw(st.sampled_from(list(_paths(body))))
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if not where:
            if action == "replace":
                body = draw(json_values)
            continue
        parent = body
        try:
            for step in where[:-1]:
                parent = parent[step]
        except (KeyError, IndexError, TypeError):
            continue
        last = where[-1]
        if action == "replace":
            parent[last] = draw(json_values)
        elif action == "delete" and isinstance(parent, dict):
            parent.pop(last, None)
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.one_of(st.text(min_size=1, max_size=10), keys))] = draw(json_values)
    return path, json.dumps(body).encode()


@st.composite
def raw_bodies(draw):
    path = draw(st.sampled_from(sorted(VALID)))
    raw = draw(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                         json_values.map(lambda v: json.dumps(v).encode())))
    return path, raw


def _assert_storable(docs):
    """Whatever was written could be written to Firestore too: no reserved names in document ids or
    field names at any depth, no Decimal, bounded size (exposure documents are kept as Decimals by
    the in-memory store only; Firestore holds nanos)."""
    for path, doc in docs.items():
        check_storable({} if "/exposure/" in path else doc, path)


def _check(path, raw, headers=None):
    logs.set_stream(io.StringIO())
    try:
        stack = make_stack(group_engine=True)
        before = json.dumps(stack.store.docs, sort_keys=True, default=str)
        response = stack.post(path, raw=raw, headers={"Content-Type": "application/json", **(headers or {})})
    finally:
        logs.set_stream(None)
    assert response.status != 500, (path, raw, response.json())
    _assert_storable(stack.store.docs)
    assert response.status in (200, 201, 202, 400, 403, 409, 413, 429, 503), response.status
    body = response.json()
    json.dumps(body)  # the body is plain JSON
    if response.status >= 400:
        err = body["error"]
        assert isinstance(err["code"], str) and err["code"] and isinstance(err["message"], str) and err["message"]
        if response.status == 400 and err["code"] == "VALIDATION_ERROR":
            assert err["field"] and err["reason"], err
        assert json.dumps(stack.store.docs, sort_keys=True, default=str) == before, "a refused request wrote"
        assert stack.broker.submits == [] and stack.engine.group_calls == []
    return response


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_bodies())
def test_mutated_valid_bodies_never_500_and_refusals_write_nothing(case):
    _check(*case)


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "200")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_bodies())
def test_arbitrary_bytes_never_500(case):
    response = _check(*case)
    assert response.status in (400, 403, 413) or response.status < 300


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "100")), deadline=None)
@given(st.sampled_from(sorted(VALID)), st.text(max_size=120))
def test_arbitrary_idempotency_keys_never_500(path, key):
    try:
        key.encode("latin-1")
    except UnicodeEncodeError:
        key = key.encode("utf-8").decode("latin-1")  # what a real HTTP header can carry
    _check(path, json.dumps(VALID[path]).encode(), {"Idempotency-Key": key})
