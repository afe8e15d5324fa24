"""The benchmark harness (bench/) in its tiny mode: correctness only, never timing.

Each benchmark runs on minimal inputs and must produce its figures with targets and statuses, the
contenders of a comparison must agree on what they computed (same intents accepted, same gains),
and the Firestore RPC counter must count what a known sequence of calls sends. The optional
contenders (nautilus in bench/.venv, rp2 in .venv; see bench/setup.sh) are skipped with a reason
when absent — CI does not install them.
"""
from __future__ import annotations

import argparse
import json
import os
from decimal import Decimal

import pytest

from bench import cold_start, decision, firestore_cost, sweeper_reads, tax_export
from bench.common import TINY, Figure, have_module, nautilus_python
from bench.firestore_cost import FirestoreTarget
from bench.fscount import RpcLog, counting_store_class, instrument, summarize
from bench.intent_model import IntentModel, intent_json

PROJECT = "demo-bench-smoke"


def figures_by_key(out):
    return {f["key"]: f for f in out["figures"]}


@pytest.fixture
def target(firestore_emulator, monkeypatch):
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", firestore_emulator.host)
    firestore_emulator.reset(PROJECT)
    return FirestoreTarget(firestore_emulator.host, PROJECT, lambda: firestore_emulator.reset(PROJECT))


# --- figures ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, target, op, status", [
    (1.0, 1.15, "<=", "pass"), (1.2, 1.15, "<=", "miss"), (3, None, "<=", "info"), (None, 1, "<=", "skipped"),
    (0, 0, "==", "pass"), (5, 4, ">=", "pass"),
])
def test_a_figure_derives_its_status_from_the_target(value, target, op, status):
    assert Figure("k", "label", value, target=target, op=op).status == status


# --- cold start ------------------------------------------------------------------------------------

def test_cold_start_compares_main_with_the_trigger_modules():
    out = cold_start.run(TINY)

    figs = figures_by_key(out)
    ratio = figs["cold_start.ratio"]
    assert ratio["target"] == 1.15 and ratio["value"] > 0 and ratio["status"] in ("pass", "miss")
    assert figs["cold_start.main_import_ms"]["value"] > 0 and figs["cold_start.triggers_import_ms"]["value"] > 0
    assert out["details"]["modules_loaded"]["main"] > 0


# --- decision path ---------------------------------------------------------------------------------

def test_the_yardstick_model_accepts_the_intent_and_refuses_unknown_fields():
    assert IntentModel.model_validate(intent_json("i1")).qty == Decimal("10")
    with pytest.raises(ValueError):
        IntentModel.model_validate({**intent_json("i1"), "tenant_id": "x"})


def test_decision_contenders_accept_the_same_intents():
    out = decision.run(TINY, nautilus=False)

    n = out["details"]["intents_per_round"]
    outcomes = out["details"]["outcomes"]
    assert outcomes["ours_decision"]["statuses"] == {"dry_run": n}
    assert outcomes["ours_placed"]["statuses"] == {"placed": n}
    assert outcomes["pydantic"]["valid"] == n
    figs = figures_by_key(out)
    assert figs["decision.ours_decision.vs_pydantic"]["target"] == 3.0
    assert figs["decision.ours_decision.vs_pydantic"]["value"] > 0
    assert figs["decision.ours_placed.vs_nautilus"]["status"] == "skipped"
    assert figs["decision.ours_decision.p99_us"]["value"] >= figs["decision.ours_decision.p50_us"]["value"]


def test_nautilus_creates_and_risk_checks_the_same_orders():
    python = nautilus_python()
    if python is None:
        pytest.skip("nautilus venv bench/.venv absent (bench/setup.sh installs it; CI does not)")

    out = decision.run(TINY, nautilus=python)

    n = out["details"]["intents_per_round"]
    assert out["details"]["outcomes"]["nautilus"] == {"accepted": n, "denied": 0, "reasons": []}
    vs = figures_by_key(out)["decision.ours_decision.vs_nautilus"]
    assert vs["target"] == 1.0 and vs["value"] > 0


def test_nautilus_risk_engine_denies_an_order_beyond_the_cash_balance():
    python = nautilus_python()
    if python is None:
        pytest.skip("nautilus venv bench/.venv absent (bench/setup.sh installs it; CI does not)")
    worker = decision.NautilusWorker(python)
    try:
        answer = worker.call("measure", [intent_json("big", qty="100000")])  # 19 M USD on a 1 M account
    finally:
        worker.close()
    assert answer["accepted"] == 0 and answer["denied"] == 1
    assert "NOTIONAL_EXCEEDS_FREE_BALANCE" in answer["reasons"][0]


# --- Firestore counting ----------------------------------------------------------------------------

def test_the_rpc_counter_counts_commits_reads_and_queries(target):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    log = RpcLog()
    client = instrument(firestore.Client(project=PROJECT, credentials=AnonymousCredentials()), log)
    try:
        batch = client.batch()
        batch.create(client.document("a/1"), {"x": 1})
        batch.set(client.document("a/2"), {"x": 2})
        batch.set(client.document("b/1"), {"n": firestore.Increment(1)}, merge=True)
        batch.commit()
        client.document("a/1").get()
        client.document("a/missing").get()
        list(client.get_all([client.document("a/1"), client.document("a/2")]))
        list(client.collection("a").stream())
        list(client.collection("empty").stream())
        client.collection("a").count().get()
        client.document("a/2").delete()
    finally:
        client.close()

    totals = summarize(log.events)
    assert totals["commits"] == 2 and totals["writes"] == 3 and totals["deletes"] == 1
    assert totals["writes_by_kind"] == {"create": 1, "delete": 1, "merge": 1, "set": 1}
    assert (totals["docs_found"], totals["docs_missing"]) == (3, 1)
    assert (totals["queries"], totals["query_docs"], totals["aggregations"]) == (2, 2, 1)
    assert totals["billed_reads"] == 4 + 2 + 1 + 1  # lookups + query docs + empty query + count


def test_the_counting_store_labels_rpcs_with_the_outermost_operation(target):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    log = RpcLog()
    client = instrument(firestore.Client(project=PROJECT, credentials=AnonymousCredentials()), log)
    store = counting_store_class()(client, log)
    try:
        store.get_intent("acme", "nothing")
    finally:
        client.close()
    assert [e["op"] for e in log.events] == ["get_intent"]


def test_firestore_cost_scenarios_reach_their_outcomes(target):
    out = firestore_cost.run(TINY, target=target)

    scenarios = out["details"]["scenarios"]
    assert {s: scenarios[s]["status"] for s in ("placed", "downgraded", "rejected", "dry_run")} == {
        "placed": "placed", "downgraded": "downgraded", "rejected": "rejected", "dry_run": "dry_run"}
    assert scenarios["replay"]["replayed"] and scenarios["replay"]["commits"] == 0
    assert scenarios["group_2"]["status"] == "FILLED"
    for name in ("placed", "downgraded", "rejected", "group_2"):
        assert scenarios[name]["commits"] >= 1 and scenarios[name]["writes"] >= 1 and scenarios[name]["by_op"]
    commits = figures_by_key(out)["firestore.placed.commits"]
    assert commits["target"] == 1 and commits["value"] == scenarios["placed"]["commits"]


def test_sweeper_reads_split_queries_from_resumes(target):
    out = sweeper_reads.run(TINY, target=target)

    details = out["details"]
    assert details["report"]["groups_final"] == details["stuck_groups"] and not details["report"]["errors"]
    query = figures_by_key(out)["sweeper.query_reads"]
    assert query["target"] == details["stuck_groups"] + 1
    assert details["query"]["query_docs"] == details["stuck_groups"]
    assert details["resume"]["billed_reads"] > 0 and all(op.startswith("find_") for op in details["query_by_op"])


# --- tax export ------------------------------------------------------------------------------------

def test_generated_fills_are_deterministic_ordered_and_never_oversold():
    first, second = list(tax_export.raw_fills(500)), list(tax_export.raw_fills(500))
    assert first == second
    assert [r["timestamp"] for r in first] == sorted(r["timestamp"] for r in first)
    held: dict[str, Decimal] = {}
    for r in first:
        held[r["symbol"]] = held.get(r["symbol"], Decimal(0)) + Decimal(r["qty"]) * (1 if r["side"] == "BUY" else -1)
        assert held[r["symbol"]] >= 0
    assert {r["timestamp"].year for r in first} == {2024, 2025}


def test_tax_export_streams_rows_and_reports_memory():
    out = tax_export.run(TINY, rp2=False)

    figs = figures_by_key(out)
    assert figs["tax.peak_rss_mb"]["target"] == 200 and figs["tax.peak_rss_mb"]["value"] > 0
    assert figs["tax.time_ratio"]["status"] == "skipped"
    ours = out["details"]["ours"][0]
    assert ours["rows"] > 0 and set(ours["gains_by_year"]) == {"2024", "2025"}


@pytest.mark.skipif(not have_module("rp2"), reason="rp2 not installed (bench/requirements.txt; CI does not)")
def test_tax_gains_equal_rp2_fifo_gains():
    out = tax_export.run(TINY)

    assert out["details"]["gains_equal_exactly"] is True
    assert figures_by_key(out)["tax.gain_difference"]["value"] == 0
    assert out["details"]["ours"][0]["gains_by_year"] == out["details"]["rp2"][0]["gains_by_year"]


# --- the runner ------------------------------------------------------------------------------------

def test_runner_writes_json_and_markdown_with_machine_and_targets(tmp_path):
    from bench import run

    results = run.run_benchmarks(["tax"], TINY, argparse.Namespace(no_nautilus=True, profile=False))
    run.write_results(results, merge=False, command="python -m bench.run --only tax", results_dir=tmp_path)
    results = run.run_benchmarks(["cold_start"], TINY, argparse.Namespace(no_nautilus=True, profile=False))
    doc = run.write_results(results, merge=True, command="python -m bench.run --only cold_start",
                            results_dir=tmp_path)

    stored = json.loads((tmp_path / "latest.json").read_text())
    assert stored == json.loads(json.dumps(doc, default=str))
    assert {"cpu_model", "cores", "python", "date"} <= set(stored["machine"])
    assert set(stored["benchmarks"]) == {"tax", "cold_start"}  # --only merges
    for bench in stored["benchmarks"].values():
        assert bench["error"] is None and bench["mode"] == "tiny"
        for fig in bench["figures"]:
            assert {"key", "value", "unit", "target", "op", "status", "note"} <= set(fig)
    markdown = (tmp_path / "latest.md").read_text()
    assert "| Figure | Value | Target | Status |" in markdown and "Cold start" in markdown


@pytest.mark.slow
def test_http_latency_runs_end_to_end_in_tiny_mode():
    """The HTTP benchmark's whole sequence on the real stack (its own emulators, functions-framework
    servers): the emulator warm-up on orders, both variants, the phases, the first-request starts —
    every request must have answered placed / FILLED (the harness raises otherwise)."""
    from bench import http_latency

    out = http_latency.run(TINY, users=2, baseline=True)
    figures = figures_by_key(out)
    assert figures["http.single.p50_over_floor"]["target"] == 2.0
    assert figures["http.first_over_warm"]["target"] == 3.0
    assert figures["http.single.p50_over_floor"]["status"] in ("pass", "miss")
    assert "http.baseline.single.p50_over_floor" in figures
    details = out["details"]
    assert details["errors_logged"] == 0
    assert details["emulator_warm_up"]["orders"] == 4 and details["emulator_warm_up"]["groups"] == 1
    assert details["phases"]["single_sequential"]["n"] == 4 and details["phases"]["group_concurrent"]["n"] >= 2
    # the function's own CPU per order, from the scheduler's counters of the server's processes: a
    # placed order costs some CPU, and no more than its wall time on the machine's cores
    cpu = figures["http.single.cpu_ms_per_order"]["value"]
    wall = details["phases"]["single_sequential"]["p90_ms"]
    assert 0.5 < cpu < wall * (os.cpu_count() or 1), (cpu, wall)
    assert all(v["cpu_ms_per_order"] > 0 for v in details["variants"].values())
