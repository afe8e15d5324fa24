"""An account's own daily trade limit through the engine and the group executor (issue 12, item 3), on
the paper venue and the in-memory store (the store behaviour on both stores:
tests/contract/test_account_daily_slots_contract.py).

Every trade bound to an account takes one of that account's daily slots with the tenant's slot; the
gate refuses once the account's count reaches ``limits.max_daily_trades`` (DAILY_TRADE_LIMIT naming the
account scope), while the tenant's own daily limit still applies to every account.
"""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal as D

from backend.adapters.memory_store import InMemoryStore
from backend.adapters.paper_broker import PaperBroker
from backend.adapters.sim_venue import SimulatedVenue
from backend.domain.accounts import Account, AccountLimits
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.domain.errors import RejectCode
from backend.execution.accounts import deployment_venue_account_id as book
from backend.execution.engine import ExecutionEngine
from backend.execution.groups import GroupStatus
from backend.execution.intent import ExecutionContext, OrderIntent
from backend.settings import ExecSettings
from tests.support.group_harness import approve, group_request, leg, scenario

T0 = datetime(2026, 1, 5, tzinfo=timezone.utc)
U1 = ExecutionContext("acme", "u1")
U2 = ExecutionContext("acme", "u2")


class World:
    def __init__(self, **env: str):
        self.clock = ManualClock()
        self.venue = SimulatedVenue(scenario(None), clock=self.clock)
        self.broker = PaperBroker(venue=self.venue)
        self.store = InMemoryStore()
        self.env = {"EXEC_FILL_WAIT_SECONDS": "0", "EXEC_DRY_RUN": "0", "EXEC_ACCOUNTS": "strict",
                    "EXEC_MAX_POSITION_QTY": "100000", **env}

    def engine(self) -> ExecutionEngine:
        return ExecutionEngine(broker=self.broker, store=self.store, clock=self.clock,
                               settings=ExecSettings.from_env(self.env), books_per_account=True)

    def account(self, account_id: str, owner: str, daily: int | None = None) -> None:
        limits = AccountLimits(max_daily_trades=daily) if daily is not None else None
        self.store.put_account("acme", Account(
            account_id=account_id, connection_id="deployment", venue_account_id=book("acme", account_id),
            owner_uids=(owner,), status="active", asset_classes=tuple(AssetClass), created_at=T0, updated_at=T0,
            limits=limits))
        self.store.set_default_account("acme", owner, account_id)

    def account_slots(self, account_id: str) -> int:
        day = self.clock.now().date().isoformat()
        return len(self.store.collection(f"tenants/acme/risk_days/{day}/accounts/{account_id}/trade_slots"))

    def tenant_slots(self) -> int:
        day = self.clock.now().date().isoformat()
        return len(self.store.collection(f"tenants/acme/risk_days/{day}/trade_slots"))

    def group(self, ctx: ExecutionContext, group_id: str):
        request = group_request((leg("a", "SPY", 1, 10, "EQUITY"), leg("b", "MSFT", -1, 5, "EQUITY")),
                                now=self.clock.now())
        approve(self.store, request, uid=ctx.uid)
        return self.engine().execute_group(request, ctx, group_id=group_id)


def order(intent_id: str, qty: str = "1") -> OrderIntent:
    return OrderIntent("s1", None, "SPY", "buy", qty, intent_id=intent_id)  # the caller's default account


def test_an_accounts_third_order_is_refused_at_its_limit_of_two_while_another_account_trades():
    world = World()
    world.account("a1", "u1", daily=2)
    world.account("a2", "u2")  # no limit of its own: still counted
    engine = world.engine()

    results = [engine.execute_intent(order(f"o{n}"), U1) for n in range(3)]
    other = engine.execute_intent(order("p1"), U2)

    assert [r.status for r in results] == ["placed", "placed", "rejected"]
    refused = results[2].rejection
    assert refused.code is RejectCode.DAILY_TRADE_LIMIT and "account" in refused.detail
    assert "count=2 limit=2" in refused.detail
    assert other.status == "placed"
    assert (world.account_slots("a1"), world.account_slots("a2"), world.tenant_slots()) == (2, 1, 3)
    assert world.store.get("tenants/acme/order_intents/o0")["account_slot"]["account_id"] == "a1"


def test_the_tenants_daily_limit_still_applies_to_every_account():
    world = World(EXEC_MAX_DAILY_TRADES="3")
    world.account("a1", "u1", daily=5)
    world.account("a2", "u2", daily=5)
    engine = world.engine()

    placed = [engine.execute_intent(order(f"o{n}"), U1).status for n in range(2)]
    placed.append(engine.execute_intent(order("p1"), U2).status)
    fourth = engine.execute_intent(order("p2"), U2)

    assert placed == ["placed"] * 3
    assert fourth.status == "rejected" and fourth.rejection.code is RejectCode.DAILY_TRADE_LIMIT
    assert "account" not in fourth.rejection.detail and "limit=3" in fourth.rejection.detail
    assert (world.account_slots("a1"), world.account_slots("a2")) == (2, 1)


def test_a_refused_order_takes_no_account_slot():
    world = World()
    world.account("a1", "u1", daily=1)
    engine = world.engine()

    engine.execute_intent(order("o1"), U1)
    refused = engine.execute_intent(order("o2"), U1)

    assert refused.rejection.code is RejectCode.DAILY_TRADE_LIMIT and world.account_slots("a1") == 1
    assert world.store.get("tenants/acme/order_intents/o2")["status"] == "rejected"


def test_a_group_counts_one_account_slot_per_leg_and_the_next_group_past_the_limit_is_refused():
    world = World(EXEC_MAX_POSITION_QTY="100000000", EXEC_MAX_DAILY_TRADES="10000")
    world.account("a1", "u1", daily=3)

    first = world.group(U1, "g1")
    second = world.group(U1, "g2")  # 2 + 2 legs > 3
    single = world.engine().execute_intent(order("o1"), U1)  # the third trade still fits
    past = world.engine().execute_intent(order("o2"), U1)

    assert first.status is GroupStatus.FILLED
    assert second.status is GroupStatus.REJECTED and second.rejection.code is RejectCode.DAILY_TRADE_LIMIT
    assert "account a1" in second.rejection.detail and "limit=3" in second.rejection.detail
    assert single.status == "placed"
    assert past.rejection.code is RejectCode.DAILY_TRADE_LIMIT and "account" in past.rejection.detail
    assert world.account_slots("a1") == world.tenant_slots() == 3
    reservation = world.store.get("tenants/acme/execution_groups/g1")["_reservation"]
    assert reservation["account_id"] == "a1" and len({leg["account_slot"] for leg in reservation["legs"]}) == 2


def test_a_group_of_an_account_without_a_limit_is_counted_too():
    world = World(EXEC_MAX_POSITION_QTY="100000000", EXEC_MAX_DAILY_TRADES="10000")
    world.account("a1", "u1")

    group = world.group(U1, "g1")

    assert group.status is GroupStatus.FILLED
    assert world.account_slots("a1") == world.tenant_slots() == 2
    assert D(world.store.get("tenants/acme/execution_groups/g1")["_reservation"]["legs"][0]["signed_qty"]) == D(10)
