"""Issue 10 items 2-4 on the fast path (paper venue + in-memory store): every venue-bound order passes
one pre-trade gate (backend/risk/gate.py). Dry run holds for groups, intent documents, resumes and
rollbacks; groups obey the position limit per class, the daily trade count and reserve exposure.
The same paths on the emulator and over HTTP: tests/integration/test_issue10_gate_e2e.py."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal as D

import pytest

from backend.adapters.memory_store import InMemoryStore
from backend.adapters.paper_broker import PaperBroker
from backend.adapters.sim_venue import SimulatedVenue
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.domain.errors import RejectCode
from backend.execution.engine import ExecutionEngine
from backend.execution.groups import GroupStatus
from backend.execution.intent import ExecutionContext, OrderIntent
from backend.execution.sweeper import Sweeper
from backend.ports.broker import OrderRequest, OrderSide
from backend.risk.gate import DryRunBlocked, GuardedVenue
from backend.service.intake import handle_intent_document
from backend.settings import ExecSettings
from backend.tax.state import book_lots
from tests.support.group_harness import GROUP_LIMITS_ENV, approve, group_request, leg, scenario
from tests.support.invariants import assert_no_group_fills_beyond_limits, assert_no_venue_orders

CTX = ExecutionContext("acme", "u1")
FX_PAIR = (leg("leg_001", "EURUSD", 1, 40, "FX"), leg("leg_002", "GBPUSD", -1, 40, "FX"))


class World:
    def __init__(self, symbols: dict | None = None, **env: str):
        self.clock = ManualClock()
        self.venue = SimulatedVenue(scenario(symbols), clock=self.clock)
        self.broker = PaperBroker(venue=self.venue)
        self.store = InMemoryStore()
        self.env = {"EXEC_FILL_WAIT_SECONDS": "0", "EXEC_DRY_RUN": "0", **env}

    def engine(self, *, dry_run: bool = False) -> ExecutionEngine:
        return ExecutionEngine(broker=self.broker, store=self.store, clock=self.clock, dry_run=dry_run,
                               settings=ExecSettings.from_env(self.env))

    def orders(self) -> list:
        return self.venue.orders()


def run(engine: ExecutionEngine, request: dict, group_id: str):
    approve(engine.store, request)  # the risk desk's stored approval (rpm_output only references it)
    return engine.execute_group(request, CTX, group_id=group_id)


def wide(symbols: dict | None = None, **env: str) -> World:
    return World(symbols, **{**GROUP_LIMITS_ENV, **env})


# ------------------------------------------------------------------------------ item 2: dry run


def test_a_group_under_dry_run_runs_every_gate_and_ends_dry_run_without_any_order():
    world = wide()

    group = run(world.engine(dry_run=True), group_request(now=world.clock.now()), "g1")

    assert group.status is GroupStatus.DRY_RUN and group.to_api_response()["status"] == "dry_run"
    assert_no_venue_orders(world.orders())
    row = world.store.get("tenants/acme/ledger_trades/g1--dry_run")
    assert row["status"] == "dry_run" and row["kind"] == "group_decision" and len(row["legs"]) == 2
    assert world.store.collection("tenants/acme/risk_days/" + world.clock.now().date().isoformat() + "/trade_slots") == {}


def test_a_group_under_dry_run_still_reports_a_failing_gate():
    world = World(EXEC_MAX_POSITION_QTY="100")  # the seed's 100k FX legs are beyond the limit

    group = run(world.engine(dry_run=True), group_request(now=world.clock.now()), "g1")

    assert group.status is GroupStatus.REJECTED and group.rejection.code is RejectCode.POSITION_LIMIT
    assert_no_venue_orders(world.orders())


def test_a_multi_leg_intent_document_under_dry_run_sends_nothing_and_says_dry_run():
    world = wide()
    data = {"uid": "u1", "status": "new", "kind": "multi_leg", "request": group_request(now=world.clock.now())}
    world.store.set_doc("tenants/acme/order_intents/doc-1", data)
    approve(world.store, data["request"])

    handle_intent_document(world.engine(dry_run=True), "acme", "doc-1", data)

    assert world.store.get("tenants/acme/order_intents/doc-1")["status"] == "dry_run"
    assert_no_venue_orders(world.orders())


def test_dry_run_switched_on_mid_group_parks_it_without_any_further_order_until_it_is_off():
    world = wide()
    engine = world.engine()
    original = world.broker.submit_order

    def submit_then_switch_on(request):
        order = original(request)
        engine.dry_run = True  # the operator turns dry run on while the group is between legs
        return order

    world.broker.submit_order = submit_then_switch_on
    group = run(engine, group_request(FX_PAIR, now=world.clock.now()), "g1")

    assert not group.status.is_final and len(world.orders()) == 1  # parked: no second leg, no rollback
    world.broker.submit_order = original
    world.clock.advance(1)
    report = Sweeper(world.engine(dry_run=True)).sweep()  # the sweeper under dry run: still nothing
    assert report.groups_found == 1 and len(world.orders()) == 1
    assert not world.engine().get_group("acme", "g1").status.is_final

    world.clock.advance(1)
    Sweeper(world.engine(dry_run=False)).sweep()  # dry run off again: the group completes
    assert world.engine().get_group("acme", "g1").status is GroupStatus.FILLED and len(world.orders()) == 2


def test_a_rollback_is_not_sent_while_dry_run_is_on():
    world = wide({"GBP/USD": {"fill": {"model": "reject"}}})  # leg 2 fails: leg 1 must be flattened
    engine = world.engine()
    original = world.broker.submit_order

    def submit(request):
        order = original(request)
        if request.client_order_id == engine.get_group("acme", "g1").leg("leg_001").client_order_id:
            engine.dry_run = True  # on before the rollback order would go out
        return order

    world.broker.submit_order = submit
    group = run(engine, group_request(FX_PAIR, now=world.clock.now(), execution_priority=["leg_001", "leg_002"]), "g1")

    assert not group.status.is_final
    assert all(o.side is OrderSide.BUY for o in world.orders())  # the entry only: no opposite order


def test_a_reserved_single_intent_is_not_resent_by_the_sweeper_while_dry_run_is_on():
    world = World()
    intent = OrderIntent("s1", "acct1", "SPY", "buy", "3", intent_id="i-1", asset_class="EQUITY")
    live = world.engine()
    original = world.broker.submit_order

    def crash(request):
        raise SystemExit("process died after the claim, before the order")

    world.broker.submit_order = crash
    with pytest.raises(SystemExit):
        live.execute_intent(intent, CTX)
    world.broker.submit_order = original
    world.clock.advance(float(live.settings.lease_seconds) + 1)

    Sweeper(world.engine(dry_run=True)).sweep()

    assert_no_venue_orders(world.orders())
    assert world.store.get_intent("acme", "i-1").status.value == "reserved"


def test_the_venue_guard_refuses_every_submit_under_dry_run():
    world = World()
    guarded = GuardedVenue(world.broker, lambda: True)
    request = OrderRequest(client_order_id="x-1", symbol="SPY", asset_class=AssetClass.EQUITY, side=OrderSide.BUY,
                           qty=D("1"))

    with pytest.raises(DryRunBlocked):
        guarded.submit_order(request)
    assert_no_venue_orders(world.orders())
    assert guarded.name == world.broker.name  # reads pass through
    with pytest.raises(DryRunBlocked):
        guarded.close_position("SPY", AssetClass.EQUITY)  # a close is an order too
    assert_no_venue_orders(world.orders())


# ------------------------------------------------------------------------------ item 3: limits


def run_groups(world: World, n: int, legs=FX_PAIR) -> list:
    engine = world.engine()
    return [run(engine, group_request(legs, now=world.clock.now()), f"g{i}")
            for i in range(n)]


def test_eight_fx_groups_stop_at_the_position_limit():
    world = World(EXEC_MAX_POSITION_QTY="100", EXEC_MAX_DAILY_TRADES="1000")

    groups = run_groups(world, 8)

    assert [g.status for g in groups[:2]] == [GroupStatus.FILLED] * 2
    assert all(g.status is GroupStatus.REJECTED and g.rejection.code is RejectCode.POSITION_LIMIT for g in groups[2:])
    assert len(world.orders()) == 4
    assert_no_group_fills_beyond_limits(world.store, "acme", position_limit=D("100"), daily_limit=1000)


def test_eight_fx_groups_stop_at_the_daily_trade_count_one_slot_per_leg():
    world = World(EXEC_MAX_POSITION_QTY="100000000", EXEC_MAX_DAILY_TRADES="5")

    groups = run_groups(world, 8)

    assert [g.status for g in groups[:2]] == [GroupStatus.FILLED] * 2  # 4 slots; a third needs 6 > 5
    assert all(g.rejection.code is RejectCode.DAILY_TRADE_LIMIT for g in groups[2:])
    assert len(world.orders()) == 4
    assert_no_group_fills_beyond_limits(world.store, "acme", position_limit=D("100000000"), daily_limit=5)


def test_a_group_and_single_orders_share_the_exposure_of_one_account():
    world = World(EXEC_MAX_POSITION_QTY="100", EXEC_MAX_DAILY_TRADES="1000")
    engine = world.engine()
    legs = (leg("a", "SPY", 1, 60, "EQUITY"), leg("b", "MSFT", -1, 10, "EQUITY"))
    group = run(engine, {**group_request(legs, now=world.clock.now()), "broker_account_id": "acct1"}, "g1")
    assert group.status is GroupStatus.FILLED

    single = engine.execute_intent(OrderIntent("s1", "acct1", "SPY", "buy", "50", intent_id="i-1"), CTX)

    assert single.status == "rejected" and single.rejection.code is RejectCode.POSITION_LIMIT  # 60 + 50 > 100
    exposure = world.store.get("tenants/acme/exposure/acct1__SPY")
    assert exposure["position_nanos"] == 60 * 10**9 and exposure.get("reserved_long_nanos", 0) == 0


def test_a_rejected_group_releases_its_reservation_and_its_slots():
    world = wide({"GBP/USD": {"fill": {"model": "reject"}}})

    request = group_request(FX_PAIR, now=world.clock.now(), execution_priority=["leg_001", "leg_002"])
    group = run(world.engine(), request, "g0")

    assert group.status is GroupStatus.ROLLED_BACK
    exposure = world.store.get("tenants/acme/exposure/main-u1__EURUSD")  # the user's default account
    assert {k: exposure.get(k, 0) for k in ("position_nanos", "reserved_long_nanos", "reserved_short_nanos")} == {
        "position_nanos": 0, "reserved_long_nanos": 0, "reserved_short_nanos": 0}  # bought, rolled back
    slots = world.store.collection("tenants/acme/risk_days/" + world.clock.now().date().isoformat() + "/trade_slots")
    assert [s["leg_id"] for s in slots.values()] == ["leg_001"]  # the leg that traded keeps its slot


def test_concurrent_groups_cannot_exceed_the_position_limit():
    world = World(EXEC_MAX_POSITION_QTY="100", EXEC_MAX_DAILY_TRADES="1000")

    def one(i: int):
        return run(world.engine(), group_request(FX_PAIR, now=world.clock.now()), f"c{i}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        groups = list(pool.map(one, range(8)))

    filled = [g for g in groups if g.status is GroupStatus.FILLED]
    assert len(filled) <= 2 and all(g.status.is_final for g in groups)
    assert_no_group_fills_beyond_limits(world.store, "acme", position_limit=D("100"), daily_limit=1000)


def test_a_one_leg_group_is_refused_before_anything_is_written():
    world = World(EXEC_MAX_POSITION_QTY="100")
    from backend.domain.errors import InvalidInput

    with pytest.raises(InvalidInput) as err:
        world.engine().execute_group(group_request((leg("x", "SPY", 1, 5000, "EQUITY"),), now=world.clock.now()),
                                     CTX, group_id="g1")

    assert err.value.field == "legs" and world.store.load_group("acme", "g1") is None
    assert_no_venue_orders(world.orders())


# ------------------------------------------------------------------------------ item 4: accounts


def test_account_labels_do_not_multiply_the_position_limit():
    world = World(EXEC_MAX_POSITION_QTY="100")
    engine = world.engine()

    results = [engine.execute_intent(OrderIntent("s1", account, "SPY", "buy", "100", intent_id=f"i-{account}"), CTX)
               for account in ("x1", "x2", "x3")]

    assert [r.status for r in results].count("placed") == 1


def test_group_fills_are_labelled_and_booked_in_the_groups_account():
    world = World(EXEC_MAX_POSITION_QTY="100", EXEC_MAX_DAILY_TRADES="1000")
    legs = (leg("a", "SPY", 1, 60, "EQUITY"), leg("b", "MSFT", -1, 10, "EQUITY"))

    group = run(world.engine(), {**group_request(legs, now=world.clock.now()), "broker_account_id": "acct1"}, "g1")

    assert group.status is GroupStatus.FILLED
    ledger = world.store.collection("tenants/acme/ledger_trades")
    fills = [row for row in ledger.values() if row.get("kind") == "group_fill"]
    assert len(fills) == 2 and {row["broker_account_id"] for row in fills} == {"acct1"}
    history = world.store.collection("users/u1/portfolio/history/trades")
    assert {row["broker_account_id"] for row in history.values()} == {"acct1"}
    book = world.store.get("users/u1/tax_books/SPY")
    assert [lot["book"] for lot in book_lots(book)] == ["acme:acct1"]
