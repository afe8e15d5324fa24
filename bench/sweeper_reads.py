"""Sweeper reads with many finished groups and a few stuck ones, on the official emulator.

As tests/integration/test_sweeper_firestore.py: 10,000 finished group documents (7 tenants) are
written directly; 10 two-leg groups are parked by a paper-broker outage (their lease expires);
then one ``Sweeper.sweep()`` runs. Every RPC is counted at the client (bench/fscount.py) and split
by the store operation that sent it:

- query reads: documents returned by the sweeper's stuck-work queries (every store ``find_*``:
  ``find_stuck_groups``, ``find_stuck_intents``, ``find_working_intents``; an empty query is
  billed one read) — target ≤ stuck + 1 = 11, set when the sweeper ran two queries;
- resume reads: everything read while resuming the groups (lease transaction, reloads, ...).

A second sweep (nothing stuck any more) shows the idle cost.
"""
from __future__ import annotations

import time
from typing import Any

from bench.common import Figure, Mode, quiet_backend_logs
from bench.firestore_cost import FirestoreTarget, approve, counted_client, emulator_env, group_request, make_engine
from bench.fscount import RpcLog, by_op, counting_store_class, summarize



def run(mode: Mode, *, target: FirestoreTarget) -> dict[str, Any]:
    from backend.domain.clock import ManualClock
    from backend.execution.intent import ExecutionContext
    from backend.execution.sweeper import Sweeper

    finished = mode.pick(300, 10_000, 10_000)
    stuck = mode.pick(2, 10, 10)
    ctx = ExecutionContext(tenant_id="acme", uid="u1")
    with emulator_env(target), quiet_backend_logs():
        target.reset()
        log = RpcLog()
        client = counted_client(target, log)
        store = counting_store_class()(client, log)
        started = time.perf_counter()
        done = {"_final": True, "_lease_until": None, "status": "FILLED", "strategy_id": "s"}
        for start in range(0, finished, 500):
            batch = client.batch()
            for n in range(start, min(start + 500, finished)):
                batch.set(client.document(f"tenants/t{n % 7}/execution_groups/done{n}"), done)
            batch.commit()
        seed_seconds = time.perf_counter() - started

        clock = ManualClock()
        engine = make_engine(store, clock=clock)
        engine.broker.venue.inject_fault("submit_order", "unavailable", count=None)
        approve(store, group_request(clock, 2), ctx, clock)
        for n in range(stuck):
            engine.execute_group(group_request(clock, 2), ctx, group_id=f"stuck{n}")
        engine.broker.venue.clear_faults()
        clock.advance(1)

        mark = log.mark()
        report = Sweeper(engine).sweep()
        events = log.since(mark)
        mark = log.mark()
        idle = Sweeper(engine).sweep()
        idle_events = log.since(mark)
        client.close()

    if report.groups_found != stuck or report.groups_final != stuck or report.errors:
        raise AssertionError(f"sweep did not finish the stuck groups: {report.to_dict()}")
    if idle.groups_found != 0:
        raise AssertionError(f"second sweep found groups again: {idle.to_dict()}")
    query = [e for e in events if e["op"].startswith("find_")]  # the sweeper's stuck-work queries
    resume = [e for e in events if not e["op"].startswith("find_")]
    q, r, i = summarize(query), summarize(resume), summarize(idle_events)
    figures = [
        Figure("sweeper.query_reads", f"Sweeper query reads ({finished:,} finished, {stuck} stuck groups)",
               q["billed_reads"], "", stuck + 1, "<=", note=f"{q['query_docs']} documents from {q['queries']} queries "
                    f"({', '.join(sorted(by_op(query)))}); empty queries bill 1 read each"),
        Figure("sweeper.resume_reads", "Sweeper reads while resuming the stuck groups", r["billed_reads"],
               note=f"{r['billed_reads'] / stuck:.1f} per group; commits {r['commits']} "
                    f"({r['commits_in_transaction']} in transactions)"),
        Figure("sweeper.idle_reads", "Sweeper reads when nothing is stuck", i["billed_reads"]),
    ]
    details = {
        "finished_groups": finished, "stuck_groups": stuck, "seed_seconds": round(seed_seconds, 2),
        "report": report.to_dict(), "query": q, "resume": r, "idle": i,
        "resume_by_op": by_op(resume), "query_by_op": by_op(query),
    }
    return {"figures": [f.to_dict() for f in figures], "details": details}

