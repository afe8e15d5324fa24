"""Issue 15 item 6: the caller's orders over the API — list, read, cancel, replace — on the real
ApiApp + engine + embedded paper venue + in-memory store (tests/support/api_stack.py).

Each test states the behaviour; the ledger is read back from the store and compared with what the
paper venue holds (ledger = venue)."""
from __future__ import annotations

import os
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.adapters.paper_broker import PaperBroker
from backend.domain.clock import ManualClock
from backend.domain.orders import OrderState
from backend.execution.engine import ExecutionEngine, RiskManager, SmartRouter
from backend.execution.records import LEDGER_FIELDS
from backend.execution.sweeper import Sweeper
from backend.risk.manager import RiskLimits
from backend.settings import ExecSettings
from tests.support.api_stack import execute_body, make_stack

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
# SPY fills in steps of 25% then 50% of what is left each time the venue is observed (a working order)
PARTIAL_SPY = {"seed": 1, "symbols": {"SPY": {"asset_class": "EQUITY", "mid": "520.00", "spread": "0.02",
                                              "fill": {"model": "partial", "ratios": ["0.25", "0.5"]}}}}


def resting_limit(**overrides):
    """A buy far below the market: the paper venue rests it (a working order)."""
    return execute_body(**{"symbol": "SPY", "order_type": "limit", "limit_price": "100.00", "time_in_force": "gtc",
                           **overrides})


def place(stack, key="o1", body=None, token="tok-alice"):
    response = stack.post("/execute", body or resting_limit(), headers={"Idempotency-Key": key}, token=token)
    assert response.status == 201, response.json()
    assert response.json()["status"] == "placed"
    return response.json()["intent_id"]


def ledger(stack, intent_id):
    prefix = f"tenants/acme/ledger_trades/{intent_id}"
    return {path.rsplit("/", 1)[1]: doc for path, doc in stack.store.docs.items() if path.startswith(prefix)}


def ledger_filled(rows):
    return sum((Decimal(row["filled_qty"]) for row in rows.values()
                if row["kind"] in ("order", "fill") and row.get("filled_qty")), Decimal(0))


def exposure(stack, account="main-alice", symbol="SPY"):
    return stack.store.docs.get(f"tenants/acme/exposure/{account}__{symbol}") or {}


@pytest.fixture
def stack():
    return make_stack(paper=True)


def partial_stack(ratios=("0.25", "0.5")):
    """The engine on a paper venue whose SPY fills by cumulative ``ratios`` as the venue steps."""
    clock = ManualClock()
    scenario = {**PARTIAL_SPY, "symbols": {"SPY": {**PARTIAL_SPY["symbols"]["SPY"],
                                                   "fill": {"model": "partial", "ratios": list(ratios)}}}}
    broker = PaperBroker(scenario, clock=clock)
    from backend.adapters.memory_store import InMemoryStore

    engine = ExecutionEngine(broker=broker, router=SmartRouter(max_spread_pct="0.001"),
                             risk=RiskManager(RiskLimits(max_position_qty=Decimal("1000000"))), store=InMemoryStore(),
                             clock=clock, dry_run=False, settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0"}))
    stack = make_stack(engine=engine)
    stack.broker, stack.store = broker, engine.store  # what the engine trades on and writes to
    return stack


# ------------------------------------------------------------------------------------ reads
def test_a_resting_limit_order_is_listed_as_working_and_read_by_its_owner(stack):
    intent_id = place(stack)

    page = stack.get("/orders")
    one = stack.get(f"/orders/{intent_id}")

    assert page.status == 200 and [o["intent_id"] for o in page.json()["items"]] == [intent_id]
    item = page.json()["items"][0]
    assert item["working"] is True and item["order_status"] == "new" and item["limit_price"] == "100.00"
    assert item["account_id"] == "main-alice" and item["symbol"] == "SPY"
    assert one.status == 200 and one.json()["outcome"] == "order" and one.json()["order"] == item


def test_another_users_order_answers_404_like_an_id_that_does_not_exist(stack):
    intent_id = place(stack)

    foreign = [stack.request(method, f"/orders/{intent_id}", token="tok-bob", **kw)
               for method, kw in (("GET", {}), ("DELETE", {}),
                                  ("PATCH", {"body": {"limit_price": "101"}, "headers": {"Idempotency-Key": "p"}}))]
    missing = stack.get("/orders/k-does-not-exist", token="tok-bob")

    assert [r.status for r in foreign] == [404, 404, 404]
    assert {r.json()["error"]["message"] for r in foreign + [missing]} == {"no order of the caller with this id"}
    assert stack.get("/orders", token="tok-bob").json()["items"] == []
    assert stack.get(f"/orders/{intent_id}").json()["order"]["working"] is True  # untouched


def test_the_list_filters_by_account_symbol_and_status_and_pages_with_a_cursor(stack):
    ids = sorted(place(stack, key=f"o{n}", body=resting_limit(symbol=symbol))
                 for n, symbol in enumerate(["SPY", "SPY", "AAPL"]))
    place(stack, key="market", body=execute_body(symbol="SPY"))  # filled at once: not working

    spy = stack.get("/orders", query={"symbol": "SPY"}).json()["items"]
    first = stack.get("/orders", query={"limit": "2"}).json()
    second = stack.get("/orders", query={"limit": "2", "cursor": first["next_cursor"]}).json()

    assert len(spy) == 2 and {o["symbol"] for o in spy} == {"SPY"}
    assert [o["intent_id"] for o in first["items"] + second["items"]] == ids and second["next_cursor"] is None
    assert stack.get("/orders", query={"account": "other"}).json()["items"] == []
    assert len(stack.get("/orders", query={"status": "new"}).json()["items"]) == 3
    assert stack.get("/orders", query={"status": "partially_filled"}).json()["items"] == []
    assert stack.get("/orders", query={"status": "filled"}).status == 400


# ------------------------------------------------------------------------------------ cancel
def test_cancel_reaches_the_venue_records_one_cancel_row_and_releases_the_reservation(stack):
    intent_id = place(stack)
    reserved = exposure(stack)["reserved_long_nanos"]

    first = stack.request("DELETE", f"/orders/{intent_id}")
    again = stack.request("DELETE", f"/orders/{intent_id}")

    assert reserved == 10 * 10**9
    assert first.status == 200 and first.json()["outcome"] == "canceled" and first.json()["replayed"] is False
    assert again.status == 200 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["order"] == first.json()["order"]
    rows = ledger(stack, intent_id)
    assert sorted(row["kind"] for row in rows.values()) == ["cancel", "order"]
    cancel = rows[f"{intent_id}--cancel"]
    assert cancel["status"] == "canceled" and cancel["qty"] == "10.0000" and cancel["filled_qty"] is None
    assert set(cancel) - {"recorded_at"} == set(LEDGER_FIELDS)
    assert exposure(stack)["reserved_long_nanos"] == 0 and exposure(stack)["position_nanos"] == 0
    broker_id = first.json()["order"]["broker_order_id"]
    assert stack.broker.get_order(broker_id).state is OrderState.CANCELED
    assert stack.get("/orders").json()["items"] == []


def test_cancel_after_a_partial_fill_folds_the_fills_first_so_the_ledger_equals_the_venue():
    stack = partial_stack()
    intent_id = place(stack, body=execute_body(symbol="SPY", order_type="limit", limit_price="520.01", qty="8"))
    assert stack.get(f"/orders/{intent_id}").json()["order"]["working"] is True

    response = stack.request("DELETE", f"/orders/{intent_id}")

    order = response.json()["order"]
    venue = stack.broker.get_order(order["broker_order_id"])
    assert response.status == 200 and order["order_status"] == "canceled"
    assert Decimal(0) < venue.filled_qty < Decimal(8)
    rows = ledger(stack, intent_id)
    assert ledger_filled(rows) == venue.filled_qty == Decimal(order["filled_qty"])
    assert [k for k in sorted(rows) if k.endswith("--cancel")] == [f"{intent_id}--cancel"]
    assert Decimal(rows[f"{intent_id}--cancel"]["qty"]) == Decimal(8) - venue.filled_qty
    assert exposure(stack)["reserved_long_nanos"] == 0
    assert exposure(stack)["position_nanos"] == int(venue.filled_qty * 10**9)


def test_a_fill_that_beat_the_cancel_is_recorded_and_the_cancel_is_refused_409():
    stack = partial_stack(ratios=("0.25", "1.0"))
    intent_id = place(stack, body=execute_body(symbol="SPY", order_type="limit", limit_price="520.01", qty="8"))
    broker_id = stack.get(f"/orders/{intent_id}").json()["order"]["broker_order_id"]
    for _ in range(20):  # the venue fills it completely before the cancel arrives
        if stack.broker.get_order(broker_id).state.is_final:
            break
        stack.clock.advance(1)
        stack.broker.venue.step()
    assert stack.broker.get_order(broker_id).state is OrderState.FILLED

    response = stack.request("DELETE", f"/orders/{intent_id}")

    assert response.status == 409 and response.json()["error"]["code"] == "ORDER_NOT_CANCELABLE"
    assert response.json()["order"]["order_status"] == "filled"
    rows = ledger(stack, intent_id)
    assert ledger_filled(rows) == Decimal(8) and not any(r["kind"] == "cancel" for r in rows.values())
    assert exposure(stack)["reserved_long_nanos"] == 0 and exposure(stack)["position_nanos"] == 8 * 10**9


def test_a_sweep_after_the_cancel_adds_nothing_twice():
    stack = partial_stack()
    intent_id = place(stack, body=execute_body(symbol="SPY", order_type="limit", limit_price="520.01", qty="8"))
    stack.request("DELETE", f"/orders/{intent_id}")
    before = ledger(stack, intent_id)

    stack.clock.advance(60)
    Sweeper(stack.engine).sweep()
    again = stack.request("DELETE", f"/orders/{intent_id}")

    assert ledger(stack, intent_id).keys() == before.keys() and again.status == 200


def test_a_decided_intent_that_never_reached_a_venue_is_not_working_409(stack):
    response = stack.post("/execute", execute_body(symbol="WIDE"), headers={"Idempotency-Key": "w"})
    intent_id = response.json()["intent_id"]

    cancel = stack.request("DELETE", f"/orders/{intent_id}")

    assert cancel.status == 409 and cancel.json()["error"]["code"] == "ORDER_NOT_WORKING"


# ------------------------------------------------------------------------------------ replace
def test_replace_leaves_one_working_order_at_the_venue_and_links_old_and_new_in_the_ledger(stack):
    intent_id = place(stack)
    old_id = stack.get(f"/orders/{intent_id}").json()["order"]["broker_order_id"]

    response = stack.request("PATCH", f"/orders/{intent_id}", {"limit_price": "101.50", "qty": "6"},
                             headers={"Idempotency-Key": "r1"})

    assert response.status == 200, response.json()
    order = response.json()["order"]
    assert response.json()["outcome"] == "replaced" and order["limit_price"] == "101.50" and Decimal(order["qty"]) == 6
    assert order["broker_order_id"] != old_id and order["replaced_orders"][0]["broker_order_id"] == old_id
    assert stack.broker.get_order(old_id).state is OrderState.CANCELED
    assert stack.broker.get_order(order["broker_order_id"]).state is OrderState.NEW
    working = stack.broker.venue.list_orders(status="open", account_id=stack.broker.account_id)
    assert [o.broker_order_id for o in working] == [order["broker_order_id"]]  # one working order at the venue
    row = ledger(stack, intent_id)[f"{intent_id}--r1"]
    assert row["kind"] == "replace" and row["broker_order_id"] == order["broker_order_id"]
    assert row["replaces"]["broker_order_id"] == old_id and row["replaces"]["limit_price"] == "100.00"
    assert set(row) - {"recorded_at"} == set(LEDGER_FIELDS)
    assert exposure(stack)["reserved_long_nanos"] == 6 * 10**9  # the reservation follows the new quantity
    assert [o["broker_order_id"] for o in stack.get("/orders").json()["items"]] == [order["broker_order_id"]]


def test_replace_is_idempotent_by_key_and_a_reused_key_with_another_body_is_409(stack):
    intent_id = place(stack)
    first = stack.request("PATCH", f"/orders/{intent_id}", {"limit_price": "101"}, headers={"Idempotency-Key": "r1"})

    again = stack.request("PATCH", f"/orders/{intent_id}", {"limit_price": "101"}, headers={"Idempotency-Key": "r1"})
    other = stack.request("PATCH", f"/orders/{intent_id}", {"limit_price": "102"}, headers={"Idempotency-Key": "r1"})
    nokey = stack.request("PATCH", f"/orders/{intent_id}", {"limit_price": "102"})

    assert again.status == 200 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["order"]["broker_order_id"] == first.json()["order"]["broker_order_id"]
    assert other.status == 409 and other.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert nokey.status == 400 and nokey.json()["error"]["field"] == "Idempotency-Key"
    assert sorted(k for k in ledger(stack, intent_id) if "--r" in k) == [f"{intent_id}--r1"]


def test_a_replaced_order_is_canceled_and_swept_with_its_new_venue_order(stack):
    intent_id = place(stack)
    stack.request("PATCH", f"/orders/{intent_id}", {"limit_price": "101"}, headers={"Idempotency-Key": "r1"})

    stack.clock.advance(60)
    report = Sweeper(stack.engine).sweep()
    cancel = stack.request("DELETE", f"/orders/{intent_id}")

    assert report.errors == [] and cancel.status == 200
    assert sorted(r["kind"] for r in ledger(stack, intent_id).values()) == ["cancel", "order", "replace"]
    assert exposure(stack)["reserved_long_nanos"] == 0


@pytest.mark.parametrize("body,field", [
    ({"stop_price": "99"}, "stop_price"),  # a limit order has no stop price
    ({"qty": "10.00001"}, "qty"),  # off the lot (an increase above the remainder is gated, not invalid)
    ({"limit_price": "100.001"}, "limit_price"),  # off the tick: refused, never rounded
    ({}, None),
    ({"limit_price": "-1"}, "limit_price"),
    ({"limit_price": "101", "extra": 1}, "extra"),
])
def test_an_invalid_replacement_is_400_and_changes_nothing(stack, body, field):
    intent_id = place(stack)
    before = stack.get(f"/orders/{intent_id}").json()["order"]

    response = stack.request("PATCH", f"/orders/{intent_id}", body, headers={"Idempotency-Key": "bad"})

    assert response.status == 400, response.json()
    assert response.json()["error"]["field"] == field
    assert stack.get(f"/orders/{intent_id}").json()["order"] == before
    assert stack.broker.get_order(before["broker_order_id"]).state is OrderState.NEW
    assert not any("--r" in k for k in ledger(stack, intent_id))


def test_replace_under_dry_run_is_refused_409(stack):
    intent_id = place(stack)
    stack.engine.dry_run = True

    response = stack.request("PATCH", f"/orders/{intent_id}", {"limit_price": "101"},
                             headers={"Idempotency-Key": "r1"})

    assert response.status == 409 and response.json()["error"]["code"] == "DRY_RUN"


# ------------------------------------------------------------------------------------ fuzz
_values = st.one_of(st.text(max_size=20), st.integers(-10**6, 10**6).map(str),
                    st.sampled_from(["", "0", "-1", "1e9", "NaN", "__x__", "..", "x" * 300, "new", "filled", "SPY",
                                     "201", "\u0000", "١٠"]))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.dictionaries(st.one_of(st.sampled_from(["account", "symbol", "status", "limit", "cursor"]),
                                       st.text(min_size=1, max_size=8)), _values, max_size=5))
def test_fuzzed_list_queries_never_500_and_never_write(stack, query):
    before = dict(stack.store.docs)

    response = stack.get("/orders", query=query)

    assert response.status in (200, 400), response.json()
    if response.status == 400:
        assert response.json()["error"]["code"] and response.json()["error"]["message"]
    assert stack.store.docs == before


_bodies = st.one_of(
    st.dictionaries(st.sampled_from(["qty", "limit_price", "stop_price", "trail", "time_in_force", "x"]),
                    st.one_of(_values, st.integers(-5, 500), st.floats(allow_nan=True), st.none(), st.booleans(),
                              st.lists(st.integers(), max_size=2)), max_size=4),
    st.lists(st.integers(), max_size=2), st.text(max_size=10))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_bodies, segment=st.one_of(st.text(min_size=1, max_size=20), st.just("k-none")))
def test_fuzzed_replace_and_cancel_requests_never_500(stack, body, segment):
    segment = segment.replace("/", "_")
    responses = [stack.request("PATCH", f"/orders/{segment}", body, headers={"Idempotency-Key": "fz"}),
                 stack.request("DELETE", f"/orders/{segment}")]

    for response in responses:
        assert response.status in (400, 404, 405), response.json()
        assert response.json()["error"]["code"]


# ------------------------------------------------------------------ a venue that confirms later / cannot replace
def test_a_cancel_the_venue_has_not_confirmed_is_202_and_a_retry_records_it_once():
    stack = make_stack()  # the recording stub venue: orders rest, a cancel is only recorded
    stack.broker.fill_ratio = Decimal(0)
    intent_id = place(stack, body=execute_body(order_type="limit", limit_price="189.00"))
    coid = stack.get(f"/orders/{intent_id}").json()["order"]["client_order_id"]

    pending = stack.request("DELETE", f"/orders/{intent_id}")
    stack.broker.orders[coid] = stack.broker.orders[coid].with_state(OrderState.CANCELED)  # the venue confirms
    done = stack.request("DELETE", f"/orders/{intent_id}")
    again = stack.request("DELETE", f"/orders/{intent_id}")

    assert pending.status == 202 and pending.json()["outcome"] == "pending"
    assert ("cancel", pending.json()["order"]["broker_order_id"]) in stack.broker.calls
    assert stack.store.get_intent("acme", intent_id).data["cancel_requested_at"]
    assert done.status == 200 and done.json()["outcome"] == "canceled"
    assert again.status == 200 and again.json()["replayed"] is True
    assert [k for k in ledger(stack, intent_id) if k.endswith("--cancel")] == [f"{intent_id}--cancel"]
    assert exposure(stack, symbol="AAPL")["reserved_long_nanos"] == 0


def test_a_venue_without_replace_is_refused_409_and_nothing_is_sent():
    stack = make_stack()
    stack.broker.fill_ratio = Decimal(0)
    intent_id = place(stack, body=execute_body(order_type="limit", limit_price="189.00"))
    submits = len(stack.broker.submits)

    response = stack.request("PATCH", f"/orders/{intent_id}", {"limit_price": "189.50"},
                             headers={"Idempotency-Key": "r1"})

    assert response.status == 409 and response.json()["error"]["code"] == "REPLACE_NOT_SUPPORTED"
    assert len(stack.broker.submits) == submits
    assert "pending_replace" not in stack.store.get_intent("acme", intent_id).data


def test_a_retry_of_the_first_request_after_a_replace_replays_it(stack):
    intent_id = place(stack)
    stack.request("PATCH", f"/orders/{intent_id}", {"limit_price": "101"}, headers={"Idempotency-Key": "r1"})

    retry = stack.post("/execute", resting_limit(), headers={"Idempotency-Key": "o1"})
    other = stack.post("/execute", resting_limit(limit_price="99.00"), headers={"Idempotency-Key": "o1"})

    assert retry.status == 200 and retry.json()["intent_id"] == intent_id and retry.json()["replayed"] is True
    assert other.status == 409
    assert len(stack.broker.venue.list_orders(status="open", account_id=stack.broker.account_id)) == 1


def test_a_replace_whose_answer_was_lost_is_recorded_once_by_the_retry(stack, monkeypatch):
    from backend.domain.orders import BrokerError, BrokerErrorCode

    intent_id = place(stack)
    calls = []
    real = stack.broker.replace_order

    def lost_answer(broker_order_id, request):  # the venue replaces, the answer never arrives
        calls.append(request.client_order_id)
        real(broker_order_id, request)
        raise BrokerError(BrokerErrorCode.UNAVAILABLE, "connection reset")

    monkeypatch.setattr(stack.broker, "replace_order", lost_answer)
    first = stack.request("PATCH", f"/orders/{intent_id}", {"limit_price": "101"}, headers={"Idempotency-Key": "r1"})
    monkeypatch.setattr(stack.broker, "replace_order", real)
    retry = stack.request("PATCH", f"/orders/{intent_id}", {"limit_price": "101"}, headers={"Idempotency-Key": "r1"})

    assert first.status == 503 and first.json()["error"]["code"] == "BROKER_UNAVAILABLE"
    assert retry.status == 200 and retry.json()["order"]["limit_price"] == "101.00"
    assert len(calls) == 1  # replaced once at the venue
    open_orders = stack.broker.venue.list_orders(status="open", account_id=stack.broker.account_id)
    assert [o.client_order_id for o in open_orders] == calls
    assert sorted(k for k in ledger(stack, intent_id) if "--r" in k) == [f"{intent_id}--r1"]


def test_cancel_and_replace_count_as_order_requests_for_the_rate_limit(stack):
    from backend.adapters.rate_counters import MemoryRateCounters
    from backend.risk.rate_limit import RateLimiter

    intent_id = place(stack)
    limiter = RateLimiter(user_per_min=2, tenant_per_min=100, counters=MemoryRateCounters(), shards=4)
    stack.app._rate_limiter_factory = lambda: limiter

    replace = stack.request("PATCH", f"/orders/{intent_id}", {"limit_price": "101"}, headers={"Idempotency-Key": "a"})
    read = stack.get(f"/orders/{intent_id}")  # reads are not order requests
    cancel = stack.request("DELETE", f"/orders/{intent_id}")
    refused = stack.request("DELETE", f"/orders/{intent_id}")

    assert [replace.status, read.status, cancel.status, refused.status] == [200, 200, 200, 429]
    assert refused.json()["error"]["code"] == "RATE_LIMITED"


def test_a_pending_cancel_the_venue_confirms_later_is_recorded_by_the_sweep_step():
    from backend.execution.order_management import OrderManager

    stack = make_stack()
    stack.broker.fill_ratio = Decimal(0)
    intent_id = place(stack, body=execute_body(order_type="limit", limit_price="189.00"))
    coid = stack.get(f"/orders/{intent_id}").json()["order"]["client_order_id"]
    assert stack.request("DELETE", f"/orders/{intent_id}").status == 202
    stack.broker.orders[coid] = stack.broker.orders[coid].with_state(OrderState.CANCELED)

    stack.engine.reconcile_intent("acme", intent_id)  # what the sweeper's working-order loop runs, then:
    settled = OrderManager(stack.engine).settle_requested_cancel("acme", intent_id)
    again = OrderManager(stack.engine).settle_requested_cancel("acme", intent_id)

    assert (settled, again) == (True, False)
    assert f"{intent_id}--cancel" in ledger(stack, intent_id)
    assert stack.request("DELETE", f"/orders/{intent_id}").json()["replayed"] is True
