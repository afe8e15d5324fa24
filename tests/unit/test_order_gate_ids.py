"""Issue 10 item 1 — cross-tenant order hijack: client order ids carry the tenant (and the account label),
and no order a venue hands back is adopted unless it is the order we asked for.

The venue here is the paper venue (``SimulatedVenue``), shared by both tenants the way one broker account is
shared: one client-id namespace, a duplicate client id answered with the order that already exists. The
store is the InMemoryStore; the integration suite repeats the attack on the Firestore emulator and through
the local Alpaca server (tests/integration/test_cross_tenant_ids.py).
"""
from __future__ import annotations

import io
import json
from dataclasses import replace
from decimal import Decimal as D
from typing import Any, Callable

import pytest

from backend import logs
from backend.adapters.memory_store import InMemoryStore
from backend.adapters.paper_broker import PaperBroker
from backend.adapters.sim_venue import SimulatedVenue
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.domain.errors import InvalidInput, RejectCode
from backend.execution import client_ids
from backend.execution import groups as g
from backend.execution.engine import ExecutionEngine
from backend.execution.intent import ExecutionContext, OrderIntent, client_order_id_for
from backend.ports.broker import BrokerError, BrokerErrorCode, BrokerOrder, OrderRequest, OrderSide, OrderState
from tests.support.group_harness import EQUITY_LEGS, T0, approve, exec_settings, group_request, leg, scenario
from tests.support.invariants import foreign_adoptions

CTX_A = ExecutionContext(tenant_id="tenant-a", uid="alice")
CTX_B = ExecutionContext(tenant_id="tenant-b", uid="bob")
LIMITS = {"EXEC_MAX_POSITION_QTY": "100000", "EXEC_FILL_WAIT_SECONDS": "0",
          "EXECUTION_ENGINE_ORDER_TIMEOUT_SECONDS": "5"}
ROLLBACK_LEGS = (leg("leg_001", "AAPL", 1, 10, "EQUITY"), leg("leg_002", "MSFT", -1, 5, "EQUITY"))


# --------------------------------------------------------------------------------------------------
# Helpers: a shared venue, engines per tenant, captured logs, a venue where our ids are already taken
# --------------------------------------------------------------------------------------------------


class SquattedBroker:
    """The paper broker on a venue where, right before one of our submits, someone else already placed a
    *different* order (another symbol, side and quantity) under the very client id we are about to use —
    what another tenant sharing the broker account did when ids were not namespaced. The venue then answers
    our submit with that existing order, exactly as a real venue answers a duplicate client id."""

    def __init__(self, inner: PaperBroker, squat: Callable[[str], bool]):
        self.inner = inner
        self.name = inner.name
        self.squat = squat
        self.planted: dict[str, BrokerOrder] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        cid = request.client_order_id
        if cid not in self.planted and self.squat(cid):
            self.planted[cid] = plant_foreign(self.inner.venue, cid)
        return self.inner.submit_order(request)


def plant_foreign(venue: SimulatedVenue, client_order_id: str) -> BrokerOrder:
    """Another party's order under ``client_order_id``: SPY, sell, 7 (none of our tests trade SPY)."""
    foreign = OrderRequest(client_order_id=client_order_id, symbol="SPY", asset_class=AssetClass.EQUITY,
                           side=OrderSide.SELL, qty=D("7"))
    return venue.submit_order(foreign).to_broker_order()


class World:
    def __init__(self, symbols: dict | None = None):
        self.clock = ManualClock()
        self.venue = SimulatedVenue(scenario(symbols), clock=self.clock)
        self.store = InMemoryStore()

    def broker(self, squat: Callable[[str], bool] | None = None) -> Any:
        inner = PaperBroker(venue=self.venue)
        return inner if squat is None else SquattedBroker(inner, squat)

    def engine(self, broker: Any = None) -> ExecutionEngine:
        return ExecutionEngine(broker=broker or self.broker(), store=self.store, clock=self.clock, dry_run=False,
                               settings=exec_settings(**LIMITS))

    def group(self, ctx: ExecutionContext, group_id: str = "g1", legs=EQUITY_LEGS, broker: Any = None) -> g.ExecutionGroup:
        body = group_request(legs, now=self.clock.now())
        approve(self.store, body, tenant_id=ctx.tenant_id, uid=ctx.uid)  # the risk desk's approval
        return self.engine(broker).execute_group(body, ctx, group_id=group_id)

    def ledger(self, tenant_id: str) -> dict[str, dict]:
        return self.store.collection(f"tenants/{tenant_id}/ledger_trades")

    def history(self, uid: str) -> dict[str, dict]:
        return self.store.collection(f"users/{uid}/portfolio/history/trades")


@pytest.fixture
def alerts():
    stream = io.StringIO()
    logs.set_stream(stream)
    captured: list[dict] = []

    def read() -> list[dict]:
        captured[:] = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
        return [r for r in captured if r.get("event") == client_ids.MISMATCH_EVENT]

    try:
        yield read
    finally:
        logs.set_stream(None)


def expected_leg_ids(ctx: ExecutionContext, group_id: str, legs=EQUITY_LEGS) -> dict[str, str]:
    """The client ids the domain gives a new group's legs (read from the domain, whatever its scheme)."""
    group = g.ExecutionGroup.create(group_id=group_id, strategy_id="s", tenant_id=ctx.tenant_id, uid=ctx.uid,
                                    legs=[dict(x) for x in legs], now=T0)
    return {x.leg_id: x.client_order_id for x in group.legs}


def broker_order(request: OrderRequest, **changes: Any) -> BrokerOrder:
    base = BrokerOrder(broker_order_id="b-1", client_order_id=request.client_order_id, symbol=request.symbol,
                       side=request.side, qty=request.qty, state=OrderState.FILLED, filled_qty=request.qty,
                       filled_avg_price=D("190.01"))
    return replace(base, **changes)


# --------------------------------------------------------------------------------------------------
# Ids: every scope in the id, deterministic, short
# --------------------------------------------------------------------------------------------------


def test_two_tenants_with_the_same_group_and_leg_ids_get_different_client_order_ids():
    a = expected_leg_ids(CTX_A, "g1")
    b = expected_leg_ids(CTX_B, "g1")

    assert set(a) == set(b) == {"leg_001", "leg_002"}
    assert not set(a.values()) & set(b.values())
    assert expected_leg_ids(CTX_B, "g1") == b  # deterministic: a resume re-derives the same ids


def test_rollback_ids_carry_the_tenant_too():
    ids = {client_ids.rollback_client_order_id("g1", "leg_001", 1, tenant_id=t) for t in ("tenant-a", "tenant-b")}

    assert len(ids) == 2 and all(len(x) <= 48 and x.startswith("mlrb-") for x in ids)


def test_single_order_ids_carry_the_tenant_and_the_account_label():
    ids = {client_order_id_for("tenant-a", "i1", account="x1"), client_order_id_for("tenant-a", "i1", account="x2"),
           client_order_id_for("tenant-b", "i1", account="x1")}

    assert len(ids) == 3
    assert client_order_id_for("tenant-a", "i1", account="x1") == client_order_id_for("tenant-a", "i1", account="x1")
    assert all(len(x) <= 48 for x in ids)


def test_length_prefixed_parts_cannot_imitate_another_split():
    assert client_ids.leg_client_order_id("g", "1:x", tenant_id="t") != client_ids.leg_client_order_id(
        "g1", ":x", tenant_id="t")
    assert client_order_id_for("t", "b", account="a") != client_order_id_for("t", "ab", account=None)


def test_a_group_stored_before_namespacing_still_loads_and_replans_with_its_own_ids():
    legacy = g.ExecutionGroup.create(group_id="old", strategy_id="s", tenant_id="tenant-a", uid="alice",
                                     legs=[dict(x) for x in EQUITY_LEGS], now=T0)
    doc = legacy.to_dict()
    doc.pop("client_id_scheme")
    for raw in doc["legs"]:
        raw["client_order_id"] = client_ids.legacy_leg_client_order_id("old", raw["leg_id"])

    loaded = g.ExecutionGroup.from_dict(doc)

    assert loaded.client_id_scheme == client_ids.LEGACY_CLIENT_ID_SCHEME
    assert loaded.leg("leg_001").client_order_id == client_ids.legacy_leg_client_order_id("old", "leg_001")
    assert g.group_rollback_client_order_id(loaded, "leg_001", 1) == \
        client_ids.legacy_rollback_client_order_id("old", "leg_001", 1)


def test_a_stored_group_whose_leg_ids_belong_to_another_tenant_does_not_load():
    doc = g.ExecutionGroup.create(group_id="g1", strategy_id="s", tenant_id="tenant-b", uid="bob",
                                  legs=[dict(x) for x in EQUITY_LEGS], now=T0).to_dict()
    doc["legs"][0]["client_order_id"] = expected_leg_ids(CTX_A, "g1")["leg_001"]

    with pytest.raises(InvalidInput):
        g.ExecutionGroup.from_dict(doc)


# --------------------------------------------------------------------------------------------------
# The check on every venue answer (pure)
# --------------------------------------------------------------------------------------------------

REQUEST = OrderRequest(client_order_id="x-1", symbol="AAPL", asset_class=AssetClass.EQUITY, side=OrderSide.BUY,
                       qty=D("10"))


@pytest.mark.parametrize("changes, differs", [
    ({"symbol": "SPY"}, "symbol"),
    ({"side": OrderSide.SELL}, "side"),
    ({"qty": D("11")}, "qty"),
    ({"client_order_id": "x-2"}, "client_order_id"),
    ({"symbol": ""}, "symbol"),
    ({"symbol": "SPY", "side": OrderSide.SELL, "qty": D("7")}, "symbol, side, qty"),
])
def test_an_order_that_differs_in_any_field_is_a_client_id_mismatch(changes, differs):
    foreign = broker_order(REQUEST, broker_order_id="their-order", **changes)

    rejection = client_ids.venue_order_mismatch(REQUEST, foreign)

    assert rejection is not None and rejection.code is RejectCode.CLIENT_ORDER_ID_MISMATCH
    assert f"(differs in {differs})" in rejection.detail
    # the stored reason never carries the other order's values or id (it may be another tenant's)
    assert "their-order" not in rejection.detail and "SPY" not in rejection.detail and "7" not in rejection.detail


@pytest.mark.parametrize("ours, venue_symbol, klass", [
    ("AAPL", "AAPL", AssetClass.EQUITY), ("EURUSD", "EUR/USD", AssetClass.FOREX),
    ("BTCUSD", "BTC/USD", AssetClass.CRYPTO), ("XAUUSD", "XAU/USD", AssetClass.COMMODITY),
])
def test_our_own_order_passes_whatever_the_venue_spelling_of_the_symbol(ours, venue_symbol, klass):
    request = replace(REQUEST, symbol=ours, asset_class=klass, qty=D("1.0"))

    assert client_ids.venue_order_mismatch(request, broker_order(request, symbol=venue_symbol, qty=D("1"))) is None


def test_apply_broker_order_refuses_a_foreign_order_under_the_legs_client_id():
    group = g.ExecutionGroup.create(group_id="g1", strategy_id="s", tenant_id="tenant-b", uid="bob",
                                    legs=[dict(x) for x in EQUITY_LEGS], now=T0, rpm_output=None)
    group = replace(group, status=g.GroupStatus.SUBMITTING)
    group = g.mark_leg_submitted(group, "leg_001", T0)
    request = g.leg_order_request(group, "leg_001")
    foreign = broker_order(request, symbol="SPY", side=OrderSide.SELL, qty=D("7"))

    with pytest.raises(g.ForeignOrder) as err:
        g.apply_broker_order(group, "leg_001", foreign, T0)

    assert err.value.rejection.code is RejectCode.CLIENT_ORDER_ID_MISMATCH
    assert g.apply_broker_order(group, "leg_001", broker_order(request), T0).leg("leg_001").filled_units == D("10")


def test_apply_rollback_order_refuses_an_order_that_is_not_the_planned_one():
    group = g.ExecutionGroup.create(group_id="g1", strategy_id="s", tenant_id="tenant-b", uid="bob",
                                    legs=[dict(x) for x in EQUITY_LEGS], now=T0)
    group = replace(group, status=g.GroupStatus.SUBMITTING)
    group = g.mark_leg_submitted(group, "leg_001", T0)
    group = g.apply_broker_order(group, "leg_001", broker_order(g.leg_order_request(group, "leg_001")), T0)
    group = replace(group, status=g.GroupStatus.ROLLING_BACK, verdict=g.GroupVerdict.REJECTED)
    group, (planned,) = g.plan_rollback(group, T0, g.GroupSettings())
    request = g.rollback_order_request(group, planned)

    for changes in ({"symbol": "SPY"}, {"side": OrderSide.BUY}, {"qty": D("11")}):
        with pytest.raises(g.ForeignOrder):
            g.apply_rollback_order(group, broker_order(request, **changes), T0)

    done = g.apply_rollback_order(group, broker_order(request), T0)
    assert done.rollback_orders[0].status is g.RollbackStatus.FILLED


# --------------------------------------------------------------------------------------------------
# (a) The attack: tenant B reuses tenant A's group id and leg ids on the shared venue
# --------------------------------------------------------------------------------------------------


def test_tenant_b_reusing_tenant_a_group_and_leg_ids_gets_its_own_orders_and_none_of_a_s(alerts):
    world = World()
    group_a = world.group(CTX_A, "g1")
    a_orders = {x.broker_order_id for x in group_a.legs}

    group_b = world.group(CTX_B, "g1")

    assert group_a.status is group_b.status is g.GroupStatus.FILLED
    assert not {x.client_order_id for x in group_a.legs} & {x.client_order_id for x in group_b.legs}
    b_orders = {x.broker_order_id for x in group_b.legs}
    assert len(world.venue.orders()) == 4 and not a_orders & b_orders
    b_rows = [r for r in world.ledger("tenant-b").values() if r["kind"] != "group_decision"]  # fills only
    assert {r["broker_order_id"] for r in b_rows} == b_orders
    assert {r["execution"]["broker_order_id"] for r in world.history("bob").values()} == b_orders
    assert {r["broker_order_id"] for r in world.ledger("tenant-a").values() if r["kind"] != "group_decision"} == a_orders
    assert foreign_adoptions(world.store, world.venue) == []
    assert alerts() == []


# --------------------------------------------------------------------------------------------------
# (b) A forged collision: the venue answers our client id with an order that is not ours
# --------------------------------------------------------------------------------------------------


def test_a_leg_answered_with_a_foreign_order_is_rejected_alerted_and_never_adopted(alerts):
    world = World()
    target = expected_leg_ids(CTX_B, "g1")["leg_002"]  # the short leg: sent first
    broker = world.broker(squat=lambda cid: cid == target)

    group = world.group(CTX_B, "g1", broker=broker)

    leg2 = group.leg("leg_002")
    assert leg2.status is g.LegStatus.REJECTED and leg2.rejection.code is RejectCode.CLIENT_ORDER_ID_MISMATCH
    assert leg2.broker_order_id is None and leg2.filled_units == 0
    assert group.status is g.GroupStatus.REJECTED and group.rejection.code is RejectCode.CLIENT_ORDER_ID_MISMATCH
    assert group.leg("leg_001").status is g.LegStatus.CANCELED  # never sent: the group aborted first
    assert world.ledger("tenant-b") == {} or all(r.get("kind") not in ("group_fill", "rollback_fill")
                                                 for r in world.ledger("tenant-b").values())
    assert world.history("bob") == {}
    planted = broker.planted[target]
    stored = json.dumps(world.store.get("tenants/tenant-b/execution_groups/g1"), default=str)
    assert "SPY" not in stored and planted.broker_order_id not in stored
    assert world.venue.peek_order(planted.broker_order_id).state is OrderState.FILLED  # never canceled by us
    (alert,) = alerts()
    assert alert["severity"] == "ALERT" and alert["tenant_id"] == "tenant-b" and alert["group_id"] == "g1"
    assert {**alert["expected"], "qty": D(alert["expected"]["qty"])} == {
        "client_order_id": target, "symbol": "MSFT", "side": "sell", "qty": D("5")}
    assert alert["got"]["symbol"] == "SPY" and alert["got"]["broker_order_id"] == planted.broker_order_id
    assert "filled_qty" not in alert["got"] and "filled_avg_price" not in alert["got"]


def test_a_recovered_leg_whose_lookup_finds_a_foreign_order_is_rejected_not_adopted(alerts):
    world = World()
    ids = expected_leg_ids(CTX_B, "g1")
    # the first submit times out at the venue without an answer: the leg stays SUBMITTED with no broker id
    world.venue.inject_fault("submit_order", "unavailable", count=1)
    parked = world.group(CTX_B, "g1")
    assert parked.leg("leg_002").status is g.LegStatus.SUBMITTED and parked.leg("leg_002").broker_order_id is None
    planted = plant_foreign(world.venue, ids["leg_002"])  # meanwhile someone else used the id

    world.clock.advance(121)
    group = world.engine().resume_group("tenant-b", "g1")

    assert group.leg("leg_002").rejection.code is RejectCode.CLIENT_ORDER_ID_MISMATCH
    assert group.leg("leg_002").broker_order_id is None and group.status is g.GroupStatus.REJECTED
    assert [a["where"] for a in alerts()] == ["group.recover"]
    assert planted.broker_order_id not in {r.get("broker_order_id") for r in world.ledger("tenant-b").values()}


def test_a_rollback_order_answered_with_a_foreign_order_is_refused_and_replanned(alerts):
    # the short MSFT leg is sent first and fills; the AAPL leg is refused: MSFT is rolled back
    world = World({"AAPL": {"fill": {"model": "reject", "reject_reason": "no liquidity"}}})
    broker = world.broker(squat=lambda cid: cid.startswith("mlrb-") and cid.endswith("-1"))

    group = world.group(CTX_B, "g1", legs=ROLLBACK_LEGS, broker=broker)

    first, second = group.rollback_orders
    assert first.status is g.RollbackStatus.REJECTED and first.rejection.code is RejectCode.CLIENT_ORDER_ID_MISMATCH
    assert first.broker_order_id is None and first.filled_qty == 0
    assert (second.seq, second.status, second.side, second.qty) == (2, g.RollbackStatus.FILLED, OrderSide.BUY, D("5"))
    assert group.status is g.GroupStatus.ROLLED_BACK
    planted = broker.planted[first.client_order_id]
    kinds = sorted((r["kind"], r["symbol"], r["broker_order_id"]) for r in world.ledger("tenant-b").values()
                   if r.get("kind") in ("group_fill", "rollback_fill"))
    assert kinds == [("group_fill", "MSFT", group.leg("leg_002").broker_order_id),
                     ("rollback_fill", "MSFT", second.broker_order_id)]
    assert planted.broker_order_id not in {r["execution"]["broker_order_id"] for r in world.history("bob").values()}
    assert world.venue.peek_order(planted.broker_order_id).state is OrderState.FILLED  # never canceled by us
    assert world.venue.net_position("MSFT") == 0
    assert [a["where"] for a in alerts()] == ["group.rollback"]


class SwappingBroker:
    """A venue fault: a poll by broker order id answers with another order (``foreign``)."""

    def __init__(self, inner: PaperBroker, foreign: BrokerOrder):
        self.inner, self.name, self.foreign = inner, inner.name, foreign

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get_order(self, broker_order_id: str) -> BrokerOrder:
        return self.inner.venue.peek_order(self.foreign.broker_order_id).to_broker_order()


def test_a_poll_answered_with_another_order_rejects_the_leg_and_never_cancels_that_order(alerts):
    # the short MSFT leg rests (never fills) and is polled; the AAPL leg fills at once; the other
    # order rests too, so canceling it (as a timed-out leg is canceled) would really cancel it
    world = World({"MSFT": {"fill": {"model": "never"}}, "SPY": {"fill": {"model": "never"}}})
    foreign = plant_foreign(world.venue, "someone-elses-order")
    world.clock.advance(1)

    group = world.group(CTX_B, "g1", broker=SwappingBroker(world.broker(), foreign))

    short = group.leg("leg_002")
    assert short.status is g.LegStatus.REJECTED and short.rejection.code is RejectCode.CLIENT_ORDER_ID_MISMATCH
    assert short.filled_units == 0
    assert world.venue.peek_order(foreign.broker_order_id).state is OrderState.NEW  # never canceled by us
    assert foreign.broker_order_id not in {r.get("broker_order_id") for r in world.ledger("tenant-b").values()}
    assert "group.poll" in [a["where"] for a in alerts()]


def test_a_single_intent_whose_submit_returns_a_foreign_order_is_refused(alerts):
    world = World()
    broker = world.broker(squat=lambda cid: True)
    intent = OrderIntent(strategy_id="s1", broker_account_id="x1", symbol="AAPL", side="buy", qty="3",
                         asset_class="EQUITY", intent_id="i1")

    result = world.engine(broker).execute_intent(intent, CTX_B)

    assert result.status == "rejected" and result.rejection.code is RejectCode.CLIENT_ORDER_ID_MISMATCH
    record = world.store.get("tenants/tenant-b/order_intents/i1")
    assert record["status"] == "rejected" and not record.get("broker_order_id")
    row = world.store.get("tenants/tenant-b/ledger_trades/i1")
    assert row["status"] == "rejected" and not row.get("broker_order_id") and D(row.get("filled_qty") or 0) == 0
    assert world.history("bob") == {} and world.store.get("users/bob/tax_books/AAPL") is None
    planted = next(iter(broker.planted.values()))
    for doc in (record, row):  # what bob can read names nothing of the other order
        assert "SPY" not in json.dumps(doc, default=str) and planted.broker_order_id not in json.dumps(doc, default=str)
    exposure = world.store.get("tenants/tenant-b/exposure/x1__AAPL")
    assert exposure is None or (exposure.get("reserved_long_nanos", 0) == 0 and exposure.get("position_nanos", 0) == 0)
    assert [a["where"] for a in alerts()] == ["engine.submit"]


def test_a_single_intent_resumed_onto_a_foreign_order_is_refused_not_adopted(alerts):
    world = World()
    intent = OrderIntent(strategy_id="s1", broker_account_id="x1", symbol="AAPL", side="buy", qty="3",
                         asset_class="EQUITY", intent_id="i1")
    world.venue.inject_fault("submit_order", "unavailable", count=1)
    pending = world.engine().execute_intent(intent, CTX_B)
    assert pending.status == "pending"
    coid = world.store.get("tenants/tenant-b/order_intents/i1")["client_order_id"]
    planted = plant_foreign(world.venue, coid)

    world.clock.advance(121)
    result = world.engine().execute_intent(intent, CTX_B)

    assert result.status == "rejected" and result.rejection.code is RejectCode.CLIENT_ORDER_ID_MISMATCH
    row = world.store.get("tenants/tenant-b/ledger_trades/i1")
    assert row["status"] == "rejected" and row.get("broker_order_id") != planted.broker_order_id
    assert world.history("bob") == {}
    assert [a["where"] for a in alerts()] == ["engine.resume"]
    assert [a["got"]["broker_order_id"] for a in alerts()] == [planted.broker_order_id]


def test_the_invariant_names_an_order_adopted_from_another_tenant():
    world = World()
    group_a = world.group(CTX_A, "g1")
    # what the old code wrote for tenant B: A's broker order id under B's ledger
    stolen = dict(next(iter(world.ledger("tenant-a").values())))
    world.store.set_doc(f"tenants/tenant-b/ledger_trades/{stolen['trade_id']}", {**stolen, "tenant_id": "tenant-b"})

    problems = foreign_adoptions(world.store, world.venue)

    assert len(problems) == 1 and "tenant-b" in problems[0]
    assert group_a.status is g.GroupStatus.FILLED
