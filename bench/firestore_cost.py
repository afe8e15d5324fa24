"""Firestore cost per trade: commits, document reads and writes, on the official emulator.

The real ``FirestoreStore`` and ``ExecutionEngine`` run against the official Firestore emulator
with a google-cloud-firestore client whose RPCs are counted (bench/fscount.py). Paper broker,
``ManualClock``, no fill wait. Each scenario runs on an emptied database; the single-leg
scenarios report the second trade of the day (the first one additionally finds no exposure
document; its numbers are in the details).

Scenarios: a placed trade; a downgraded decision (spread wider than the threshold, paper
scenario ``wide_spread``); a rejected decision (position limit); a replay of the placed intent;
multi-leg groups of 2 and 4 FX legs through ``execute_group`` with an approved ``rpm_output``.

Target: one commit per single-leg trade.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterator

from bench.common import Figure, Mode, quiet_backend_logs
from bench.fscount import RpcLog, by_op, counting_store_class, instrument, round_trips, summarize

# the paper venue lists three FX pairs (backend/config/scenarios/default.json): a 4th leg is an equity
FX_LEGS = (("EURUSD", 1, 100000, "FX"), ("GBPUSD", -1, 50000, "FX"), ("USDJPY", 1, 20000, "FX"),
           ("SPY", -1, 10, "EQUITY"))


@dataclass
class FirestoreTarget:
    """Where to run: an emulator host, a project id and a way to empty the project."""

    host: str
    project: str
    reset: Callable[[], None]


@contextlib.contextmanager
def emulator_env(target: FirestoreTarget) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("FIRESTORE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT")}
    os.environ["FIRESTORE_EMULATOR_HOST"] = target.host
    os.environ["GOOGLE_CLOUD_PROJECT"] = os.environ["GCLOUD_PROJECT"] = target.project
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def counted_client(target: FirestoreTarget, log: RpcLog):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    return instrument(firestore.Client(project=target.project, credentials=AnonymousCredentials()), log)


def group_request(clock: Any, legs: int) -> dict[str, Any]:
    """A multi-leg request with an approved, unexpired rpm_output (as tests' ``pair_request``)."""
    chosen = [{"leg_id": f"leg_{i + 1:03d}", "symbol": s, "direction": d, "units": u, "asset_class": c}
              for i, (s, d, u, c) in enumerate(FX_LEGS[:legs])]
    return {"strategy_id": "stat_arb_01", "legs": chosen,
            "rpm_output": {"approved": True, "decision_id": "d1",
                           "expires_at": (clock.now() + timedelta(hours=1)).isoformat(),
                           "approved_legs": {leg["leg_id"]: str(leg["units"]) for leg in chosen}},
            "allow_partial_fills": True}


def approve(store: Any, request: dict[str, Any], ctx: Any, clock: Any) -> None:
    """Issue the risk desk's approval the request's rpm_output references (library form of
    POST /risk/approvals), outside the measured call."""
    from backend.risk.approvals import approval_for_legs, issue_approval

    issue_approval(store, ctx.tenant_id, decision_id=request["rpm_output"]["decision_id"], for_uid=ctx.uid,
                   issuer_uid="risk-desk", legs=approval_for_legs("d1", request["legs"]),
                   expires_at=clock.now() + timedelta(hours=1), now=clock.now())


def make_engine(store: Any, *, scenario: str | None = None, clock: Any = None, dry_run: bool = False):
    from backend.adapters.paper_broker import PaperBroker
    from backend.domain.clock import ManualClock
    from backend.execution.engine import ExecutionEngine
    from backend.settings import ExecSettings

    clock = clock or ManualClock()
    return ExecutionEngine(broker=PaperBroker(scenario, clock=clock), store=store, clock=clock, dry_run=dry_run,
                           settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0",
                                                           # FX legs of 100k units: a per-class limit
                                                           "EXEC_MAX_POSITION_QTY_FOREX": "100000000"}))


def _intent(intent_id: str, qty: str = "10"):
    from backend.execution.intent import OrderIntent

    return OrderIntent(strategy_id="momentum_01", broker_account_id="acct_main", symbol="AAPL", side="buy", qty=qty,
                       asset_class="EQUITY", intent_id=intent_id)


def _measure(log: RpcLog, action: Callable[[], Any]) -> tuple[Any, list[dict[str, Any]]]:
    mark = log.mark()
    outcome = action()
    return outcome, log.since(mark)


def run(mode: Mode, *, target: FirestoreTarget) -> dict[str, Any]:
    from backend.execution.intent import ExecutionContext

    ctx = ExecutionContext(tenant_id="acme", uid="u1")
    scenarios: dict[str, dict[str, Any]] = {}
    with emulator_env(target), quiet_backend_logs():
        log = RpcLog()
        client = counted_client(target, log)
        store = counting_store_class()(client, log)

        def single(name: str, expected: str, *, scenario: str | None = None, qty: str = "10",
                   dry_run: bool = False) -> None:
            target.reset()
            engine = make_engine(store, scenario=scenario, dry_run=dry_run)
            first, first_events = _measure(log, lambda: engine.execute_intent(_intent(f"{name}-1", qty), ctx))
            result, events = _measure(log, lambda: engine.execute_intent(_intent(f"{name}-2", qty), ctx))
            if result.status != expected or first.status != expected:
                raise AssertionError(f"{name}: expected {expected}, got {first.status}/{result.status} "
                                     f"({result.reason})")
            entry = {"status": result.status, "reason": result.reason, **summarize(events),
                     "round_trips": round_trips(events), "by_op": by_op(events),
                     "first_trade_of_day": {**summarize(first_events), "round_trips": round_trips(first_events)}}
            if name == "placed":
                replay, replay_events = _measure(log, lambda: engine.execute_intent(_intent(f"{name}-2", qty), ctx))
                scenarios["replay"] = {"status": replay.status, "replayed": replay.replayed,
                                       **summarize(replay_events), "by_op": by_op(replay_events)}
            scenarios[name] = entry

        single("placed", "placed")
        single("downgraded", "downgraded", scenario="wide_spread")
        single("rejected", "rejected", qty="1000")  # above EXEC_MAX_POSITION_QTY=100: POSITION_LIMIT
        single("dry_run", "dry_run", dry_run=True)

        for legs in mode.pick((2,), (2, 4), (2, 4)):
            target.reset()
            engine = make_engine(store)
            request = group_request(engine.clock, legs)
            approve(store, request, ctx, engine.clock)
            group, events = _measure(log, lambda: engine.execute_group(request, ctx, group_id=f"g{legs}"))
            if group.status.value != "FILLED":
                raise AssertionError(f"group of {legs}: expected FILLED, got {group.status.value}: "
                                     f"{str(group.to_api_response())[:600]}")
            scenarios[f"group_{legs}"] = {"status": group.status.value, "legs": legs, **summarize(events),
                                          "round_trips": round_trips(events), "by_op": by_op(events)}
        client.close()

    figures = []
    for name, label in (("placed", "placed trade"), ("downgraded", "downgraded decision"),
                        ("rejected", "rejected decision")):
        s = scenarios[name]
        figures.append(Figure(f"firestore.{name}.commits", f"Firestore commits per {label}", s["commits"], "",
                              1, "<=", note=f"reads {s['billed_reads']}, writes {s['writes']}, deletes {s['deletes']}"))
        figures.append(Figure(f"firestore.{name}.reads", f"Firestore billed reads per {label}", s["billed_reads"]))
        figures.append(Figure(f"firestore.{name}.writes", f"Firestore document writes per {label}",
                              s["writes"] + s["deletes"]))
    rt = scenarios["placed"]["round_trips"]
    figures.append(Figure("firestore.placed.read_round_trips", "Sequential Firestore read round trips per placed trade",
                          rt["read_round_trips"], "", 1, "<=",
                          note=f"commit round trips {rt['commit_round_trips']}; concurrent RPCs count once; "
                               + " → ".join(rt["sequence"])))
    for key, s in scenarios.items():
        if key.startswith("group_"):
            grt = s["round_trips"]
            figures.append(Figure(f"firestore.{key}.read_round_trips",
                                  f"Sequential Firestore read round trips per {s['legs']}-leg group",
                                  grt["read_round_trips"], note=f"commit round trips {grt['commit_round_trips']}, "
                                                                f"other {grt['other_round_trips']}"))
            legs = s["legs"]
            figures.append(Figure(f"firestore.{key}.commits", f"Firestore commits per {legs}-leg group", s["commits"],
                                  note=f"reads {s['billed_reads']}, writes {s['writes']}, "
                                       f"transactions {s['begin_transaction']}"))
            figures.append(Figure(f"firestore.{key}.reads", f"Firestore billed reads per {legs}-leg group",
                                  s["billed_reads"]))
            figures.append(Figure(f"firestore.{key}.writes", f"Firestore document writes per {legs}-leg group",
                                  s["writes"] + s["deletes"]))
    return {"figures": [f.to_dict() for f in figures], "details": {"scenarios": scenarios}}
