"""The pre-trade gate with accounts (issue 12 item 3, issue 13 item 4): per-account limits (the
stricter of operator, tenant and account wins), account statuses, and the three trading states at
three levels — operator (``ops/execution``), tenant (``config/risk``) and account (status) — where
the most restrictive wins and rollbacks (``purpose=flatten``) always pass.

Pure: ``PreTradeGate`` over hand-built ``RiskSnapshot``s and ``Account``s; no store, no venue.
"""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal as D

import pytest

from backend.domain.accounts import Account, AccountLimits, AccountStatus
from backend.domain.assets import AssetClass
from backend.domain.errors import InvalidInput, RejectCode
from backend.risk.gate import FLATTEN, PreTradeGate, account_in, halt_flags, halt_paths
from backend.risk.manager import (Exposure, RiskLimits, RiskManager, RiskSnapshot, TradingState, most_restrictive,
                                  snapshot_from_docs, switch_fields, trading_state_of)

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
EQ = AssetClass.EQUITY


def account(status: str = "active", limits: AccountLimits | None = None, account_id: str = "acct-1") -> Account:
    return Account(account_id=account_id, connection_id="deployment", venue_account_id="t1-acct-1",
                   owner_uids=("u1",), status=AccountStatus(status), asset_classes=frozenset({EQ, AssetClass.CRYPTO}),
                   created_at=NOW, updated_at=NOW, limits=limits)


def gate(limits: RiskLimits = RiskLimits(max_position_qty=D("100"), max_daily_trades=50), *,
         env_kill: bool = False) -> PreTradeGate:
    return PreTradeGate(RiskManager(limits), lambda: False, env_kill_switch=env_kill)


def snap(position: str = "0", *, ops: dict | None = None, tenant: dict | None = None, trades: int = 0,
         account_trades: int | None = 0, reserved_long: str = "0", reserved_short: str = "0") -> RiskSnapshot:
    return snapshot_from_docs(ops, tenant, trades_today=trades, account_trades_today=account_trades,
                              exposure=Exposure(D(position), D(reserved_long), D(reserved_short)))


def code(rejection):
    return None if rejection is None else rejection.code


# ------------------------------------------------------------------------------ trading states


@pytest.mark.parametrize("doc,expected", [
    (None, TradingState.ACTIVE),
    ({}, TradingState.ACTIVE),
    ({"kill_switch": False}, TradingState.ACTIVE),
    ({"kill_switch": True}, TradingState.HALTED),  # the legacy boolean: true = halted
    ({"trading_state": "reduce_only"}, TradingState.REDUCE_ONLY),
    ({"trading_state": "reduce_only", "kill_switch": True}, TradingState.HALTED),  # the stricter of the two
    ({"trading_state": "active", "kill_switch": True}, TradingState.HALTED),
    ({"trading_state": "halted", "kill_switch": False}, TradingState.HALTED),
    ({"trading_state": "paused"}, TradingState.HALTED),  # unreadable: fail closed
    ({"trading_state": 3}, TradingState.HALTED),
])
def test_a_switch_document_sets_the_stricter_of_trading_state_and_the_legacy_kill_switch(doc, expected):
    assert trading_state_of(doc) is expected


def test_switch_fields_keep_the_legacy_boolean_for_readers_that_only_know_it():
    assert switch_fields(TradingState.HALTED) == {"trading_state": "halted", "kill_switch": True}
    assert switch_fields(TradingState.REDUCE_ONLY) == {"trading_state": "reduce_only", "kill_switch": False}
    for state in TradingState:
        assert trading_state_of(switch_fields(state)) is state


def test_most_restrictive_orders_active_reduce_only_halted():
    assert most_restrictive() is TradingState.ACTIVE
    assert most_restrictive(None, TradingState.REDUCE_ONLY, TradingState.ACTIVE) is TradingState.REDUCE_ONLY
    assert most_restrictive(TradingState.HALTED, TradingState.REDUCE_ONLY) is TradingState.HALTED


LEVELS = ("operator", "tenant", "account")


def at_level(level: str, state: TradingState, position: str = "0") -> tuple[RiskSnapshot, Account]:
    """A snapshot and account where exactly ``level`` is in ``state``."""
    doc = switch_fields(state)
    status = {"active": "active", "reduce_only": "reduce_only", "halted": "halted"}[state.value]
    return (snap(position, ops=doc if level == "operator" else None, tenant=doc if level == "tenant" else None),
            account(status if level == "account" else "active"))


HALT_CODE = {"operator": RejectCode.KILL_SWITCH, "tenant": RejectCode.KILL_SWITCH, "account": RejectCode.ACCOUNT_HALTED}


# state x level x order kind -> the expected refusal (None = allowed)
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("state,order,position,expected", [
    (TradingState.ACTIVE, "10", "0", None),  # opening
    (TradingState.ACTIVE, "-10", "50", None),  # reducing
    (TradingState.REDUCE_ONLY, "10", "0", RejectCode.REDUCE_ONLY),  # opening from flat
    (TradingState.REDUCE_ONLY, "10", "50", RejectCode.REDUCE_ONLY),  # growing a long
    (TradingState.REDUCE_ONLY, "-10", "50", None),  # shrinking a long
    (TradingState.REDUCE_ONLY, "-50", "50", None),  # to flat
    (TradingState.REDUCE_ONLY, "-60", "50", RejectCode.REDUCE_ONLY),  # crossing to short
    (TradingState.REDUCE_ONLY, "10", "-50", None),  # shrinking a short
    (TradingState.REDUCE_ONLY, "-10", "-50", RejectCode.REDUCE_ONLY),  # growing a short
    (TradingState.HALTED, "10", "0", "halt"),
    (TradingState.HALTED, "-10", "50", "halt"),  # halted refuses even a reducing order
])
def test_each_state_at_each_level_for_new_orders(level, state, order, position, expected):
    snapshot, acct = at_level(level, state, position)

    rejection = gate().check(D(order), snapshot, asset_class=EQ, account=acct)

    assert code(rejection) == (HALT_CODE[level] if expected == "halt" else expected)
    if expected == RejectCode.REDUCE_ONLY:
        assert rejection.detail.startswith(f"{level} is reduce-only")


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("state", list(TradingState))
@pytest.mark.parametrize("position,order", [("50", "-50"), ("-20", "20"), ("0", "10")])
def test_a_rollback_order_passes_every_state_at_every_level(level, state, position, order):
    snapshot, acct = at_level(level, state, position)

    assert gate().check(D(order), snapshot, asset_class=EQ, account=acct, purpose=FLATTEN) is None


def test_a_closed_account_refuses_new_orders_but_its_rollbacks_pass():
    g, closed = gate(), account("closed")

    assert code(g.check(D("-1"), snap("5"), asset_class=EQ, account=closed)) is RejectCode.ACCOUNT_CLOSED
    assert g.check(D("-5"), snap("5"), asset_class=EQ, account=closed, purpose=FLATTEN) is None


@pytest.mark.parametrize("operator,tenant,acct,expected", [
    ("active", "active", "active", TradingState.ACTIVE),
    ("reduce_only", "active", "active", TradingState.REDUCE_ONLY),
    ("active", "reduce_only", "halted", TradingState.HALTED),
    ("halted", "reduce_only", "active", TradingState.HALTED),
    ("reduce_only", "active", "halted", TradingState.HALTED),
    ("active", "active", "reduce_only", TradingState.REDUCE_ONLY),
])
def test_the_most_restrictive_level_wins(operator, tenant, acct, expected):
    snapshot = snap(ops=switch_fields(TradingState(operator)), tenant=switch_fields(TradingState(tenant)))

    assert gate().trading_state(snapshot, account(acct)) is expected


def test_the_environment_kill_switch_halts_whatever_the_documents_say():
    rejection = gate(env_kill=True).check(D("1"), snap(), asset_class=EQ, account=account())

    assert code(rejection) is RejectCode.KILL_SWITCH and "global" in rejection.detail


def test_reduce_only_counts_in_flight_reservations_in_the_orders_direction():
    # long 50 with 40 already being sold: selling 20 more could end short 10
    snapshot = snap("50", tenant=switch_fields(TradingState.REDUCE_ONLY), reserved_short="40")

    assert code(gate().check(D("-20"), snapshot, asset_class=EQ)) is RejectCode.REDUCE_ONLY
    assert gate().check(D("-10"), snapshot, asset_class=EQ) is None
    # the post-reservation re-check: the order's own 10 is already in reserved_short (40 = 30 + 10)
    after = snap("50", tenant=switch_fields(TradingState.REDUCE_ONLY), reserved_short="40")
    assert gate().check(D("-10"), after, asset_class=EQ, include_own_reservation=True) is None


def test_halted_reports_only_halts_and_reduce_only_is_decided_per_order():
    g = gate()
    snapshot = snap(tenant=switch_fields(TradingState.REDUCE_ONLY))

    assert g.halted(snapshot, account()) is None
    assert g.reduce_only_level(snapshot, account()) == "tenant"
    assert code(g.halted(snap(), account("halted"))) is RejectCode.ACCOUNT_HALTED


# ------------------------------------------------------------------------------ account limits


def test_without_an_account_the_gate_behaves_as_before():
    g = gate(RiskLimits(max_position_qty=D("100"), max_daily_trades=2))

    assert g.check(D("100"), snap(), asset_class=EQ) is None
    assert code(g.check(D("101"), snap(), asset_class=EQ)) is RejectCode.POSITION_LIMIT
    assert code(g.check(D("1"), snap(trades=2), asset_class=EQ)) is RejectCode.DAILY_TRADE_LIMIT
    assert code(g.check(D("1"), snap(tenant={"kill_switch": True}), asset_class=EQ)) is RejectCode.KILL_SWITCH


@pytest.mark.parametrize("operator,tenant,acct,order,expected", [
    ("100", None, "10", "10", None),
    ("100", None, "10", "11", RejectCode.POSITION_LIMIT),  # the account is stricter
    ("100", "5", "10", "6", RejectCode.POSITION_LIMIT),  # the tenant is stricter
    ("8", "50", "10", "9", RejectCode.POSITION_LIMIT),  # the operator is stricter
    ("100", None, None, "100", None),  # an account without limits adds none
])
def test_the_strictest_position_limit_of_operator_tenant_and_account_wins(operator, tenant, acct, order, expected):
    limits = AccountLimits(max_position_qty=D(acct)) if acct else None
    rejection = gate(RiskLimits(max_position_qty=D(operator))).check(
        D(order), snap(tenant={"max_position_qty": tenant} if tenant else None), asset_class=EQ,
        account=account(limits=limits))

    assert code(rejection) == expected


def test_an_accounts_limit_per_class_applies_to_that_class_only():
    acct = account(limits=AccountLimits(max_position_by_class={AssetClass.CRYPTO: D("0.5")}))
    g = gate(RiskLimits(max_position_qty=D("100")))

    assert code(g.check(D("0.6"), snap(), asset_class=AssetClass.CRYPTO, account=acct)) is RejectCode.POSITION_LIMIT
    assert g.check(D("0.5"), snap(), asset_class=AssetClass.CRYPTO, account=acct) is None
    assert g.check(D("60"), snap(), asset_class=EQ, account=acct) is None


def test_a_tenants_limit_per_class_tightens_the_operators():
    g = gate(RiskLimits(max_position_qty=D("100"), max_position_by_class={AssetClass.FOREX: D("100000")}))
    tenant = {"max_position_by_class": {"FOREX": "20000"}}

    assert code(g.check(D("20001"), snap(tenant=tenant), asset_class=AssetClass.FOREX)) is RejectCode.POSITION_LIMIT
    assert g.check(D("20000"), snap(tenant=tenant), asset_class=AssetClass.FOREX) is None


def test_order_notional_is_limited_only_when_a_price_is_known():
    acct = account(limits=AccountLimits(max_order_notional=D("1000")))
    g = gate()

    refused = g.check(D("10"), snap(), asset_class=EQ, account=acct, price=D("100.01"))
    assert code(refused) is RejectCode.POSITION_LIMIT and "max_order_notional=1000" in refused.detail
    assert g.check(D("10"), snap(), asset_class=EQ, account=acct, price=D("100")) is None
    assert g.check(D("10"), snap(), asset_class=EQ, account=acct) is None  # no price: not judged here
    # the tenant's notional limit and the account's: the stricter wins
    tenant = {"max_order_notional": "500"}
    assert code(g.check(D("6"), snap(tenant=tenant), asset_class=EQ, account=acct, price=D("100"))) \
        is RejectCode.POSITION_LIMIT


def test_the_accounts_daily_limit_counts_the_accounts_own_trades():
    acct = account(limits=AccountLimits(max_daily_trades=3))
    g = gate(RiskLimits(max_daily_trades=50))

    assert g.check(D("1"), snap(trades=40, account_trades=2), asset_class=EQ, account=acct) is None
    refused = g.check(D("1"), snap(trades=10, account_trades=3), asset_class=EQ, account=acct)
    assert code(refused) is RejectCode.DAILY_TRADE_LIMIT and "account acct-1 count=3 limit=3" in refused.detail
    # the slot is held already (a leg re-checked at submit): the count is not judged again
    assert g.check(D("1"), snap(account_trades=3), asset_class=EQ, account=acct, count_daily=False) is None


def test_an_account_daily_limit_without_its_count_fails_closed():
    acct = account(limits=AccountLimits(max_daily_trades=3))

    rejection = gate().check(D("1"), snap(account_trades=None), asset_class=EQ, account=acct)

    assert code(rejection) is RejectCode.RISK_DATA_UNAVAILABLE


def test_a_tenants_daily_limit_still_applies_with_an_account():
    g = gate(RiskLimits(max_daily_trades=50))

    assert code(g.check(D("1"), snap(trades=5, tenant={"max_daily_trades": 5}), asset_class=EQ,
                        account=account())) is RejectCode.DAILY_TRADE_LIMIT


def test_a_position_above_the_limit_may_still_be_reduced_in_an_account():
    acct = account(limits=AccountLimits(max_position_qty=D("10")))

    assert gate().check(D("-5"), snap("30"), asset_class=EQ, account=acct) is None


def test_a_negative_stored_limit_is_refused_not_used():
    with pytest.raises(InvalidInput):
        gate().check(D("1"), snap(tenant={"max_position_qty": "-1"}), asset_class=EQ)


# ------------------------------------------------------------------------------ batched reads


def test_halt_paths_with_an_account_add_its_document_and_account_in_parses_it():
    paths = halt_paths("t1", "acct-1")
    doc = account("reduce_only").to_dict()
    docs = {paths[0]: ({"trading_state": "reduce_only"}, None), paths[1]: (None, None), paths[2]: (doc, None)}

    flags = halt_flags(docs, "t1")
    acct = account_in(docs, "t1", "acct-1")

    assert paths == ("ops/execution", "tenants/t1/config/risk", "tenants/t1/accounts/acct-1")
    assert halt_paths("t1") == paths[:2]
    assert flags.operator_trading_state is TradingState.REDUCE_ONLY and not flags.global_kill_switch
    assert acct.status is AccountStatus.REDUCE_ONLY
    assert account_in({**docs, paths[2]: (None, None)}, "t1", "acct-1") is None


def test_with_counts_keeps_the_switch_fields():
    base = snap(ops={"trading_state": "reduce_only"}, account_trades=1)

    fresher = base.with_counts(trades_today=7, exposure=Exposure(D("3")))

    assert fresher.operator_state is TradingState.REDUCE_ONLY and fresher.account_trades_today == 1
    assert fresher.trades_today == 7 and fresher.exposure.position == D("3")


def test_a_legacy_snapshot_built_positionally_still_reads_the_global_kill_switch():
    legacy = RiskSnapshot(True, None, 0, Exposure())

    assert legacy.operator_trading_state is TradingState.HALTED
    assert code(gate().check(D("1"), legacy, asset_class=EQ)) is RejectCode.KILL_SWITCH


# ------------------------------------------------------------------------------ groups mid-flight
# The tenant level reaches the group path today through the switch documents it already reads
# (ops/execution, config/risk: halt_flags). A group's legs are shorts first: GBPUSD -50,000 (a new
# short), then EURUSD +100,000 (a new long); the state changes right after the first leg is sent.


def _group_world(state_after_first_leg: str):
    from backend.adapters.memory_store import InMemoryStore
    from backend.adapters.paper_broker import PaperBroker
    from backend.domain.clock import ManualClock
    from backend.execution.engine import ExecutionEngine
    from backend.execution.intent import ExecutionContext
    from backend.settings import ExecSettings
    from tests.support.group_harness import GROUP_LIMITS_ENV, approve
    from tests.unit.test_sweeper_and_intake import pair_request

    clock = ManualClock()
    store = InMemoryStore()
    broker = PaperBroker(clock=clock)
    engine = ExecutionEngine(broker=broker, store=store, clock=clock, dry_run=False,
                             settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0", **GROUP_LIMITS_ENV}))
    original = broker.submit_order
    sent: list[str] = []

    def submit_then_switch(request):
        order = original(request)
        sent.append(request.client_order_id)
        if len(sent) == 1:
            store.set_doc("tenants/acme/config/risk", switch_fields(TradingState(state_after_first_leg)))
        return order

    broker.submit_order = submit_then_switch
    approve(store, pair_request(clock))
    group = engine.execute_group(pair_request(clock), ExecutionContext("acme", "u1"), group_id=f"g-{state_after_first_leg}")
    return group, broker, sent


@pytest.mark.parametrize("state,code_", [("halted", RejectCode.KILL_SWITCH), ("reduce_only", RejectCode.REDUCE_ONLY)])
def test_a_tenant_state_set_mid_group_starts_no_further_leg_and_the_rollback_still_flattens(state, code_):
    group, broker, sent = _group_world(state)

    assert group.status.value == "ROLLED_BACK" and group.rejection.code is code_
    assert len(sent) == 2  # the first leg and its rollback order; the second leg never went out
    assert all(broker.venue.net_position(sym) == 0 for sym in ("EURUSD", "GBPUSD", "EUR/USD", "GBP/USD"))


def test_a_group_runs_through_when_the_tenant_stays_active():
    group, broker, sent = _group_world("active")

    assert group.status.value == "FILLED" and len(sent) == 2
