"""Issue 12 on the fast path (paper venue + in-memory store): every new intent, group, intent document
and signal binds to an account the caller owns, before anything is written or sent. The same paths on
the emulator, over HTTP and on the local Alpaca Broker API server: tests/integration/test_issue12_accounts.py."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal as D

import pytest

from backend.adapters.memory_store import InMemoryStore
from backend.adapters.paper_broker import PaperBroker
from backend.adapters.sim_venue import SimulatedVenue
from backend.domain.accounts import Account, AccountLimits
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.domain.errors import RejectCode
from backend.execution.accounts import AccountRefused, deployment_venue_account_id as book
from backend.execution.engine import ExecutionEngine
from backend.execution.groups import GroupStatus
from backend.execution.intent import ExecutionContext, OrderIntent
from backend.service.intake import handle_intent_document
from backend.settings import ExecSettings
from tests.support.group_harness import GROUP_LIMITS_ENV, approve, group_request, leg, scenario

T0 = datetime(2026, 1, 5, tzinfo=timezone.utc)
U1 = ExecutionContext("acme", "u1")
U2 = ExecutionContext("acme", "u2")
OTHER_TENANT = ExecutionContext("beta", "u9")


class World:
    def __init__(self, mode: str = "auto", **env: str):
        self.clock = ManualClock()
        self.venue = SimulatedVenue(scenario(None), clock=self.clock)
        self.broker = PaperBroker(venue=self.venue)
        self.store = InMemoryStore()
        self.env = {"EXEC_FILL_WAIT_SECONDS": "0", "EXEC_DRY_RUN": "0", "EXEC_ACCOUNTS": mode, **env}

    def engine(self) -> ExecutionEngine:
        return ExecutionEngine(broker=self.broker, store=self.store, clock=self.clock,
                               settings=ExecSettings.from_env(self.env), books_per_account=True)

    def account(self, tenant: str, account_id: str, *owners: str, status: str = "active",
                classes=tuple(AssetClass), limits: AccountLimits | None = None, default: bool = True) -> Account:
        account = Account(account_id=account_id, connection_id="deployment", venue_account_id=book(tenant, account_id),
                          owner_uids=owners, status=status, asset_classes=classes, created_at=T0, updated_at=T0,
                          limits=limits)
        self.store.put_account(tenant, account)
        if default:
            for uid in owners:
                self.store.set_default_account(tenant, uid, account_id)
        return account

    def position(self, tenant: str, account_id: str, symbol: str) -> D:
        paper = self.broker.for_account(book(tenant, account_id))
        return sum((p.qty for p in paper.get_positions() if p.symbol == symbol), D(0))

    def ledger(self, tenant: str = "acme") -> dict:
        return {path.rsplit("/", 1)[1]: row for path, row in self.store.collection(f"tenants/{tenant}/ledger_trades").items()}


def buy(account: str | None, qty: str = "100", *, intent_id: str, side: str = "buy", symbol: str = "SPY") -> OrderIntent:
    return OrderIntent("s1", account, symbol, side, qty, intent_id=intent_id)


# ------------------------------------------------------------------ the label bypass is impossible


def test_invented_labels_no_longer_multiply_the_position_limit():
    """The issue's reproduction: five intents of 100 SPY with acct0..acct4 and a limit of 100."""
    world = World(EXEC_MAX_POSITION_QTY="100")
    engine = world.engine()

    results = [engine.execute_intent(buy(f"acct{i}", intent_id=f"i{i}"), U1) for i in range(5)]

    assert [r.status for r in results] == ["placed"] + ["rejected"] * 4
    assert {r.rejection.code for r in results[1:]} == {RejectCode.ACCOUNT_NOT_OWNED}
    assert world.position("acme", "acct0", "SPY") == D(100)
    assert len(world.venue.orders()) == 1  # the venue holds 100, in acct0's book
    assert set(world.ledger()) == {"i0"}  # the refusals wrote nothing
    assert world.store.get("tenants/acme/order_intents/i1") is None
    assert world.store.get("tenants/acme/members/u1")["default_account_id"] == "acct0"


def test_an_omitted_account_is_the_callers_default():
    world = World()
    engine = world.engine()
    first = engine.execute_intent(buy(None, "5", intent_id="a"), U1)
    second = engine.execute_intent(buy(None, "5", intent_id="b"), U1)

    assert first.status == second.status == "placed"
    rows = world.ledger()
    assert {rows[i]["broker_account_id"] for i in ("a", "b")} == {"main-u1"}
    assert rows["a"]["venue_account_id"] == book("acme", "main-u1")
    assert world.position("acme", "main-u1", "SPY") == D(10)


def test_a_retry_without_an_account_replays_the_bound_intent():
    world = World()
    engine = world.engine()
    first = engine.execute_intent(buy("acct1", "5", intent_id="a"), U1)
    again = engine.execute_intent(buy(None, "5", intent_id="a"), U1)
    assert first.status == "placed" and again.replayed and again.broker_order_id == first.broker_order_id
    assert len(world.venue.orders()) == 1


# ------------------------------------------------------------------ strict mode: admin-written accounts


def test_strict_mode_refuses_everything_without_an_account_document():
    world = World("strict")
    engine = world.engine()
    named = engine.execute_intent(buy("acct1", intent_id="a"), U1)
    default = engine.execute_intent(buy(None, intent_id="b"), U1)
    assert named.rejection.code is RejectCode.ACCOUNT_NOT_OWNED  # absent = foreign: ids cannot be probed
    assert default.rejection.code is RejectCode.ACCOUNT_NOT_FOUND
    assert world.venue.orders() == [] and world.ledger() == {}
    assert world.store.get("tenants/acme/accounts/acct1") is None  # strict never provisions


@pytest.mark.parametrize("status, code", [("closed", RejectCode.ACCOUNT_CLOSED), ("halted", RejectCode.ACCOUNT_HALTED)])
def test_a_closed_or_halted_account_refuses_new_orders(status, code):
    world = World("strict")
    world.account("acme", "acct1", "u1", status=status)
    result = world.engine().execute_intent(buy("acct1", intent_id="a"), U1)
    assert result.rejection.code is code and world.venue.orders() == [] and world.ledger() == {}


def test_another_users_account_is_refused_and_a_shared_account_is_allowed():
    world = World("strict")
    world.account("acme", "acct1", "u1")
    world.account("acme", "joint", "u1", "u2", default=False)
    engine = world.engine()
    assert engine.execute_intent(buy("acct1", "1", intent_id="a"), U2).rejection.code is RejectCode.ACCOUNT_NOT_OWNED
    assert engine.execute_intent(buy("joint", "1", intent_id="b"), U2).status == "placed"
    assert engine.execute_intent(buy("acct1", "1", intent_id="c"), OTHER_TENANT).rejection.code \
        is RejectCode.ACCOUNT_NOT_OWNED  # same id, another tenant: a different (absent) document


def test_an_asset_class_not_enabled_on_the_account_is_refused():
    world = World("strict")
    world.account("acme", "acct1", "u1", classes=(AssetClass.EQUITY,))
    result = world.engine().execute_intent(OrderIntent("s1", "acct1", "BTC/USD", "buy", "0.1", intent_id="a"), U1)
    assert result.rejection.code is RejectCode.ASSET_CLASS_NOT_ENABLED and world.venue.orders() == []


def test_a_suspended_member_is_refused():
    world = World("strict")
    world.account("acme", "acct1", "u1")
    world.store.set_doc("tenants/acme/members/u1", {**world.store.get("tenants/acme/members/u1"), "status": "suspended"})
    result = world.engine().execute_intent(buy("acct1", intent_id="a"), U1)
    assert result.rejection.code is RejectCode.MEMBER_SUSPENDED and world.venue.orders() == []


# ------------------------------------------------------------------ separate books per account


def test_two_users_and_two_tenants_trading_one_symbol_each_hold_their_own_position():
    world = World("strict", EXEC_MAX_POSITION_QTY="1000")
    world.account("acme", "a1", "u1")
    world.account("acme", "a2", "u2")
    world.account("beta", "a1", "u9")  # the same account id in another tenant
    engine = world.engine()

    assert engine.execute_intent(buy("a1", "30", intent_id="x1"), U1).status == "placed"
    assert engine.execute_intent(buy("a2", "20", intent_id="x2", side="sell"), U2).status == "placed"
    assert engine.execute_intent(buy("a1", "7", intent_id="x1"), OTHER_TENANT).status == "placed"

    assert world.position("acme", "a1", "SPY") == D(30)
    assert world.position("acme", "a2", "SPY") == D(-20)
    assert world.position("beta", "a1", "SPY") == D(7)
    acme = world.ledger("acme")
    assert (acme["x1"]["broker_account_id"], acme["x1"]["venue_account_id"]) == ("a1", book("acme", "a1"))
    assert (acme["x2"]["broker_account_id"], acme["x2"]["venue_account_id"]) == ("a2", book("acme", "a2"))
    assert world.ledger("beta")["x1"]["venue_account_id"] == book("beta", "a1")


# ------------------------------------------------------------------ groups and intent documents


def _group(world: World, ctx: ExecutionContext, group_id: str, account: str | None, legs=None) -> object:
    request = group_request(legs or (leg("a", "SPY", 1, 60, "EQUITY"), leg("b", "MSFT", -1, 10, "EQUITY")),
                            now=world.clock.now())
    if account is not None:
        request["broker_account_id"] = account
    approve(world.store, request)
    return world.engine().execute_group(request, ctx, group_id=group_id)


def test_a_group_trades_its_account_and_refuses_another_users():
    world = World("strict", **GROUP_LIMITS_ENV)
    world.account("acme", "a1", "u1")
    world.account("acme", "a2", "u2")

    with pytest.raises(AccountRefused) as refused:
        _group(world, U2, "g-steal", "a1")
    assert refused.value.rejection.code is RejectCode.ACCOUNT_NOT_OWNED and refused.value.http_status == 403
    assert world.store.get("tenants/acme/execution_groups/g-steal") is None and world.venue.orders() == []

    group = _group(world, U1, "g1", None)  # the default account
    assert group.status is GroupStatus.FILLED
    assert world.position("acme", "a1", "SPY") == D(60) and world.position("acme", "a1", "MSFT") == D(-10)
    assert world.position("acme", "a2", "SPY") == D(0)
    stored = world.store.get("tenants/acme/execution_groups/g1")
    assert stored["_binding"] == {"account_id": "a1", "connection_id": "deployment", "venue": "deployment",
                                  "venue_account_id": book("acme", "a1")}
    fills = [r for r in world.ledger().values() if r["kind"] == "group_fill"]
    assert {(r["broker_account_id"], r["venue_account_id"]) for r in fills} == {("a1", book("acme", "a1"))}


def test_a_group_whose_legs_span_a_class_the_account_lacks_is_refused():
    world = World("strict", **GROUP_LIMITS_ENV)
    world.account("acme", "a1", "u1", classes=(AssetClass.EQUITY,))
    with pytest.raises(AccountRefused) as refused:
        _group(world, U1, "g1", "a1", legs=(leg("a", "SPY", 1, 60, "EQUITY"), leg("b", "EURUSD", -1, 1000, "FX")))
    assert refused.value.rejection.code is RejectCode.ASSET_CLASS_NOT_ENABLED
    assert world.store.get("tenants/acme/execution_groups/g1") is None


def test_an_intent_document_naming_another_users_account_is_rejected_on_the_document():
    world = World("strict")
    world.account("acme", "a1", "u1")
    doc = {"uid": "u2", "kind": "single", "status": "new",
           "intent": {"strategy_id": "s1", "broker_account_id": "a1", "symbol": "SPY", "side": "buy", "qty": "1"}}
    world.store.set_doc("tenants/acme/order_intents/d1", doc)

    out = handle_intent_document(world.engine(), "acme", "d1", doc)

    assert out["status"] == "rejected" and out["error"]["code"] == "ACCOUNT_NOT_OWNED"
    stored = world.store.get("tenants/acme/order_intents/d1")
    assert stored["status"] == "rejected" and stored["result"]["error"]["field"] == "broker_account_id"
    assert world.venue.orders() == [] and world.ledger() == {}
    # delivered twice: still nothing
    assert handle_intent_document(world.engine(), "acme", "d1", stored)["status"] == "ignored"


def test_a_group_intent_document_for_another_users_account_is_rejected_on_the_document():
    world = World("strict", **GROUP_LIMITS_ENV)
    world.account("acme", "a1", "u1")
    world.account("acme", "a2", "u2")
    request = group_request((leg("a", "SPY", 1, 60, "EQUITY"), leg("b", "MSFT", -1, 10, "EQUITY")),
                            now=world.clock.now())
    request["broker_account_id"] = "a1"
    approve(world.store, request)
    doc = {"uid": "u2", "kind": "multi_leg", "status": "new", "request": request}
    world.store.set_doc("tenants/acme/order_intents/gdoc", doc)

    out = handle_intent_document(world.engine(), "acme", "gdoc", doc)

    assert out["error"]["code"] == "ACCOUNT_NOT_OWNED" and world.venue.orders() == []
    assert world.store.get("tenants/acme/execution_groups/gdoc") is None


def test_an_account_whose_venue_cannot_be_built_is_refused_with_nothing_written():
    """The connection exists but its credentials cannot be read: VENUE_UNAVAILABLE, no record, no order,
    and the refusal names the connection, never a credential."""
    from backend.domain.accounts import BrokerConnection

    world = World("strict")
    world.store.put_connection("acme", BrokerConnection(
        connection_id="broker-1", venue="alpaca_broker", environment="sandbox",
        credentials_ref="env:ISSUE12_CREDENTIALS_THAT_ARE_NOT_SET", base_url="http://127.0.0.1:9",
        created_at=T0, updated_at=T0))
    account = Account(account_id="a1", connection_id="broker-1", venue_account_id="0f0f0f0f-0000-4000-8000-000000000001",
                      owner_uids=("u1",), status="active", asset_classes=(AssetClass.EQUITY,),
                      created_at=T0, updated_at=T0)
    world.store.put_account("acme", account)

    result = world.engine().execute_intent(buy("a1", intent_id="v1"), U1)

    assert result.status == "rejected" and result.rejection.code is RejectCode.VENUE_UNAVAILABLE
    assert result.extra == {"persisted": False}
    assert world.store.get("tenants/acme/order_intents/v1") is None and world.ledger() == {}
    assert world.venue.orders() == []
