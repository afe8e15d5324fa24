"""Issue 19 item 7, on the in-memory store AND the official Firestore emulator: every multi-leg group
that reaches a final state is exactly one ``group_decision`` ledger row (status = its final status,
reason_code/reason = its coded rejection), written in the commit that makes it final, and one
decision of its strategy in the metrics — its fill rows add fills, never decisions.
"""
from __future__ import annotations

from backend.adapters.paper_broker import PaperBroker
from backend.domain.clock import ManualClock
from backend.domain.errors import RejectCode
from backend.execution.engine import ExecutionEngine
from backend.execution import metrics
from backend.execution.group.states import GroupStatus
from tests.integration.test_issue11_rows import CTX, engine_on, world  # noqa: F401  (the both-stores fixture)
from backend.settings import ExecSettings
from tests.support.group_harness import GROUP_LIMITS_ENV, approve, scenario
from tests.unit.test_sweeper_and_intake import pair_request

SECOND_LEG_REJECTS = scenario({"EUR/USD": {"fill": {"model": "reject"}}})  # leg_002 (GBP) goes first


def small_limits_engine(store, clock):
    """Position limit 10 units: the pair's 100000 units are refused at validation."""
    return ExecutionEngine(broker=PaperBroker(clock=clock), store=store, clock=clock, dry_run=False,
                           settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0", **GROUP_LIMITS_ENV,
                                                           "EXEC_MAX_POSITION_QTY": "10"}))


def decisions(rows):
    return {k: v for k, v in rows("tenants/acme/ledger_trades").items() if v["kind"] == "group_decision"}


def strategy_summary(store, clock):
    day = clock.now().date().isoformat()
    return metrics.summarize(store.read_metrics("acme", day, day), "stat_arb_01")


def test_a_rejected_a_rolled_back_and_a_filled_group_are_one_decision_row_each_and_three_decisions(world):
    store, put, rows = world
    clock = ManualClock()
    approve(store, pair_request(clock))

    rejected = small_limits_engine(store, clock).execute_group(pair_request(clock), CTX, group_id="g-rej")
    rolled = engine_on(store, clock=clock, broker=PaperBroker(SECOND_LEG_REJECTS, clock=clock)).execute_group(
        pair_request(clock), CTX, group_id="g-rb")
    filled = engine_on(store, clock=clock).execute_group(pair_request(clock), CTX, group_id="g-ok")

    assert (rejected.status, rolled.status, filled.status) == (
        GroupStatus.REJECTED, GroupStatus.ROLLED_BACK, GroupStatus.FILLED)
    rows_by_id = decisions(rows)
    assert set(rows_by_id) == {"g-rej--decision", "g-rb--decision", "g-ok--decision"}
    assert rows_by_id["g-rej--decision"]["status"] == "rejected"
    assert rows_by_id["g-rej--decision"]["reason_code"] == RejectCode.POSITION_LIMIT.value
    assert rows_by_id["g-rej--decision"]["reason"] == str(rejected.rejection)
    assert rows_by_id["g-rb--decision"]["status"] == "rolled_back"
    assert rows_by_id["g-rb--decision"]["reason_code"] == rolled.rejection.code.value
    assert rows_by_id["g-ok--decision"]["status"] == "filled" and rows_by_id["g-ok--decision"]["reason_code"] is None
    assert all(row["strategy_id"] == "stat_arb_01" and row["group_id"] for row in rows_by_id.values())
    summary = strategy_summary(store, clock)
    assert (summary["decisions"], summary["group_decisions"], summary["rejected"]) == (3, 3, 1)
    assert summary["group_statuses"]["filled"] == 1 and summary["group_statuses"]["rolled_back"] == 1
    assert summary["tca"]["fills"] >= 3  # g-ok's two legs + g-rb's leg and its rollback: fills, not decisions


def test_a_replayed_final_group_and_a_resume_write_no_second_decision_row(world):
    store, put, rows = world
    clock = ManualClock()
    approve(store, pair_request(clock))
    engine = engine_on(store, clock=clock)
    engine.execute_group(pair_request(clock), CTX, group_id="g-ok")

    engine.execute_group(pair_request(clock), CTX, group_id="g-ok")  # a redelivered request: replayed
    assert engine.resume_group("acme", "g-ok") is None  # final: the sweeper's resume takes no lease

    assert list(decisions(rows)) == ["g-ok--decision"]
    assert strategy_summary(store, clock)["decisions"] == 1


def test_a_dry_run_group_keeps_its_dry_run_decision_row_and_counts_once(world):
    store, put, rows = world
    clock = ManualClock()
    approve(store, pair_request(clock))
    engine_on(store, clock=clock, dry_run=True).execute_group(pair_request(clock), CTX, group_id="g-dry")

    [(trade_id, row)] = decisions(rows).items()
    assert trade_id == "g-dry--dry_run" and row["status"] == "dry_run"
    summary = strategy_summary(store, clock)
    assert (summary["decisions"], summary["dry_run"], summary["tca"]["fills"]) == (1, 1, 0)
