"""Decision path latency: intent JSON → OrderIntent → routing → risk → records → result, no I/O.

Contenders, all fed the same intent JSON dicts (``intent_model.intent_json``), measured per
intent with ``perf_counter_ns`` in rounds that rotate their order (medians over rounds):

- ``ours_decision``: ``ExecutionEngine.execute_intent`` with ``dry_run=True`` on the paper broker
  and the in-memory store: venue choice, quote + spread check, risk snapshot + checks, the intent
  record and the ledger row built and committed (one in-memory ``finish``), structured log lines
  JSON-encoded (to a null sink).
- ``ours_placed``: the same with ``dry_run=False``: plus the reservation (``claim``), the paper
  venue's order and fill, and the ledger + history rows (two in-memory commits).
- ``pydantic``: ``IntentModel.model_validate`` of the same dict (target: ours ≤ 3 × this).
- ``nautilus``: nautilus_trader creating the market order and running it through its
  ``RiskEngine`` into its ``ExecutionEngine`` (bench/nautilus_worker.py; target: ours ≤ 1 × this).

The in-memory store is a test fake that scans and deep-copies its whole dict; it is emptied after
every intent (outside the timed region) so each intent sees the steady state of a fresh day.
When a target is missed, the path is profiled with pyinstrument (bench/results/profile-*.txt).
"""
from __future__ import annotations

import contextlib
import gc
import json
import subprocess
import time
import types
from collections import Counter
from typing import Any, Callable, Iterator

from bench.common import (BENCH_DIR, RESULTS_DIR, Figure, Mode, have_module, latency_summary, median,
                          nautilus_python, quiet_backend_logs, rounded, skipped)
from bench.intent_model import IntentModel, intent_json

TARGET_VS_PYDANTIC = 3.0
TARGET_VS_NAUTILUS = 1.0


# --- our path ------------------------------------------------------------------------------------

def _engine(dry_run: bool):
    from backend.adapters.memory_store import InMemoryStore
    from backend.adapters.paper_broker import PaperBroker
    from backend.domain.clock import SystemClock
    from backend.execution.engine import ExecutionEngine
    from backend.settings import ExecSettings

    clock = SystemClock()
    store = InMemoryStore()
    engine = ExecutionEngine(broker=PaperBroker(clock=clock), store=store, clock=clock, dry_run=dry_run,
                             settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0"}))
    return engine, store


@contextlib.contextmanager
def _store_without_copies() -> Iterator[None]:
    """Diagnostic only: the in-memory store's defensive ``copy.deepcopy`` made an identity, to show
    the engine's own cost without the test fake's copying (Firestore serializes instead)."""
    from backend.adapters import memory_store

    saved = memory_store.copy
    memory_store.copy = types.SimpleNamespace(deepcopy=lambda value: value)  # type: ignore[assignment]
    try:
        yield
    finally:
        memory_store.copy = saved


def measure_ours(intents: list[dict], *, dry_run: bool, no_copy: bool = False) -> dict[str, Any]:
    from backend.execution.intent import ExecutionContext, OrderIntent

    engine, store = _engine(dry_run)
    ctx = ExecutionContext(tenant_id="bench_tenant", uid="bench_user")
    account = intents[0].get("broker_account_id") if intents else None
    with quiet_backend_logs():  # steady state: the user's account exists (auto mode made it on first use,
        engine.bind_account(ctx.tenant_id, ctx.uid, account, ())  # as the HTTP benchmark provisions it first)
    base_docs, base_versions = dict(store.docs), dict(store._versions)  # noqa: SLF001 - the bench's own store
    clock = time.perf_counter_ns
    ns: list[int] = []
    statuses: Counter[str] = Counter()
    gc.collect()
    with quiet_backend_logs(), (_store_without_copies() if no_copy else contextlib.nullcontext()):
        for data in intents:
            t0 = clock()
            result = engine.execute_intent(OrderIntent.from_dict(data), ctx)
            ns.append(clock() - t0)
            statuses[result.status] += 1
            if result.status != ("dry_run" if dry_run else "placed"):  # a refusal is not the path measured
                raise RuntimeError(f"bench intent {data['intent_id']}: {result.status} {result.reason}")
            store.docs.clear()  # every intent on the same state: the account, nothing of earlier intents
            store.docs.update(base_docs)
            store._versions.clear()  # noqa: SLF001
            store._versions.update(base_versions)  # noqa: SLF001
    return {"ns": ns, "statuses": dict(statuses)}


def measure_pydantic(intents: list[dict]) -> dict[str, Any]:
    clock = time.perf_counter_ns
    ns: list[int] = []
    valid = 0
    gc.collect()
    for data in intents:
        t0 = clock()
        model = IntentModel.model_validate(data)
        ns.append(clock() - t0)
        valid += model is not None
    return {"ns": ns, "valid": valid}


# --- nautilus worker -----------------------------------------------------------------------------

class NautilusWorker:
    """bench/nautilus_worker.py in the nautilus venv, driven over stdin/stdout JSON lines."""

    def __init__(self, python: str):
        self.proc = subprocess.Popen([python, str(BENCH_DIR / "nautilus_worker.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.info = self._read()
        if not self.info.get("ready"):
            raise RuntimeError(f"nautilus worker did not start: {self.info}")

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"nautilus worker exited (code {self.proc.poll()})")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"nautilus worker: {answer['error']}")
        return answer

    def call(self, cmd: str, intents: list[dict]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, "intents": intents}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


# --- profile -------------------------------------------------------------------------------------

# Functions whose inclusive time explains the path (outermost occurrence only).
PROFILE_KEYS = (
    "execute_intent", "from_dict", "__init__", "broker_for", "_route", "analyze_intent", "get_latest_quote",
    "risk_snapshot", "check", "claim", "_submit", "submit_order", "_await_fill", "_finish_decision",
    "_finish_placed", "ledger_row", "history_row", "_intent_record", "to_dict", "finish", "get_intent",
    "log_event", "deepcopy", "dumps", "isoformat", "now",
)


def _attribute(root: Any, keys: tuple[str, ...]) -> dict[str, float]:
    """Inclusive time of each key function, counting only its outermost occurrence on a stack."""
    totals = {key: 0.0 for key in keys}

    def walk(frame: Any, open_keys: frozenset[str]) -> None:
        name = frame.function
        if name in totals and name not in open_keys:
            totals[name] += frame.time
            open_keys = open_keys | {name}
        for child in frame.children:
            walk(child, open_keys)

    walk(root, frozenset())
    return totals


def _self_by_file(root: Any) -> dict[str, float]:
    totals: dict[str, float] = {}

    def walk(frame: Any) -> None:
        if frame.is_synthetic:  # "[self]" leaves are already in their parent's total_self_time
            return
        path = frame.file_path_short or frame.function or "?"
        if "/backend/" in (frame.file_path or ""):
            path = "backend/" + frame.file_path.split("/backend/", 1)[1]
        totals[path] = totals.get(path, 0.0) + frame.total_self_time
        for child in frame.children:
            walk(child)

    walk(root)
    return dict(sorted(totals.items(), key=lambda kv: -kv[1])[:15])


def profile_ours(intents: list[dict], *, dry_run: bool, label: str) -> dict[str, Any]:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0001)
    profiler.start()
    measure_ours(intents, dry_run=dry_run)
    profiler.stop()
    session = profiler.last_session
    root = session.root_frame()
    inclusive = _attribute(root, PROFILE_KEYS)
    total = inclusive["execute_intent"] + inclusive["from_dict"]  # the timed path, without harness overhead
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"profile-decision-{label}.txt"
    path.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
    share = lambda seconds: round(100 * seconds / total, 1) if total else 0.0  # noqa: E731
    return {
        "file": str(path.relative_to(RESULTS_DIR.parent.parent)),
        "intents": len(intents),
        "percent_of": "from_dict + execute_intent (the timed path)",
        "inclusive_percent": {k: share(v) for k, v in inclusive.items() if v},
        "self_percent_by_file": {k: share(v) for k, v in _self_by_file(root).items()},
    }


# --- the benchmark -------------------------------------------------------------------------------

def run(mode: Mode, *, nautilus: str | None | bool = True, profile: bool | None = None) -> dict[str, Any]:
    """``nautilus``: True finds bench/.venv, a path uses that interpreter, False/None skips it."""
    n = mode.pick(20, 300, 1000)
    rounds = mode.pick(1, 5, 15)
    python = nautilus_python() if nautilus is True else (nautilus or None)
    worker = NautilusWorker(python) if python else None
    try:
        return _run(mode, n, rounds, worker, profile)
    finally:
        if worker is not None:
            worker.close()


def _run(mode: Mode, n: int, rounds: int, worker: NautilusWorker | None, profile: bool | None) -> dict[str, Any]:
    def batch(tag: str, round_no: int) -> list[dict]:
        return [intent_json(f"{tag}{round_no}_{i}") for i in range(n)]

    contenders: dict[str, Callable[[list[dict]], dict[str, Any]]] = {
        "ours_decision": lambda intents: measure_ours(intents, dry_run=True),
        "ours_placed": lambda intents: measure_ours(intents, dry_run=False),
        "ours_decision_nocopy": lambda intents: measure_ours(intents, dry_run=True, no_copy=True),
        "ours_placed_nocopy": lambda intents: measure_ours(intents, dry_run=False, no_copy=True),
        "pydantic": measure_pydantic,
    }
    if worker is not None:
        contenders["nautilus"] = lambda intents: worker.call("measure", intents)
        contenders["pydantic_in_worker"] = lambda intents: worker.call("pydantic", intents)

    warm = batch("warm", 0)[: min(n, 200)]
    for fn in contenders.values():
        fn(warm)

    per_round: dict[str, list[dict[str, float]]] = {name: [] for name in contenders}
    all_ns: dict[str, list[int]] = {name: [] for name in contenders}
    outcomes: dict[str, Any] = {}
    names = list(contenders)
    for r in range(rounds):
        intents = batch("r", r)
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            out = contenders[name](intents)
            per_round[name].append(latency_summary(out["ns"]))
            all_ns[name].extend(out["ns"])
            outcomes[name] = {k: v for k, v in out.items() if k != "ns"}

    def ratio(a: str, b: str, stat: str = "p50_us") -> float | None:
        if b not in per_round:
            return None
        return median([x[stat] / y[stat] for x, y in zip(per_round[a], per_round[b])])

    # Per-contender figures: medians over rounds of each round's p50 / p99 / rate (a preempted
    # round on the shared machine moves one sample, not the figure).
    summary = {name: {"n": len(all_ns[name]), **{stat: median([r[stat] for r in rounds_])
                                                  for stat in ("p50_us", "p99_us", "mean_us", "per_second")}}
               for name, rounds_ in per_round.items()}
    pooled = {name: latency_summary(ns) for name, ns in all_ns.items()}
    figures: list[Figure] = []
    labels = {"ours_decision": "Decision path (dry run: routing + risk + ledger record)",
              "ours_placed": "Full paper path (claim + paper fill + ledger + history records)"}
    for ours, label in labels.items():
        figures.append(Figure(f"decision.{ours}.vs_pydantic", f"{label} ÷ pydantic validation",
                              rounded(ratio(ours, "pydantic")), "×", TARGET_VS_PYDANTIC, "<=",
                              note=f"p50 ratio, median of {rounds} rounds × {n} intents"))
        if worker is not None:
            figures.append(Figure(f"decision.{ours}.vs_nautilus", f"{label} ÷ nautilus order + risk check",
                                  rounded(ratio(ours, "nautilus")), "×", TARGET_VS_NAUTILUS, "<=",
                                  note=f"p50 ratio, median of {rounds} rounds × {n} intents"))
        else:
            figures.append(skipped(f"decision.{ours}.vs_nautilus", f"{label} ÷ nautilus order + risk check",
                                   "nautilus venv absent (run bench/setup.sh)", target=TARGET_VS_NAUTILUS))
    for ours in ("ours_decision_nocopy", "ours_placed_nocopy"):
        base = ours.replace("_nocopy", "")
        figures.append(Figure(f"decision.{ours}.vs_pydantic", f"{labels[base].split(' (')[0]} without the in-memory "
                              "store's deep copies ÷ pydantic (diagnostic)", rounded(ratio(ours, "pydantic")), "×",
                              note="the engine's own work; the store fake's copying removed"))
        if worker is not None:
            figures.append(Figure(f"decision.{ours}.vs_nautilus", f"{labels[base].split(' (')[0]} without the "
                                  "in-memory store's deep copies ÷ nautilus (diagnostic)",
                                  rounded(ratio(ours, "nautilus")), "×"))
    for name in ("ours_decision", "ours_placed", "ours_decision_nocopy", "ours_placed_nocopy", "pydantic",
                 "nautilus"):
        if name not in summary:
            continue
        s = summary[name]
        figures.append(Figure(f"decision.{name}.p50_us", f"{name}: p50 latency", rounded(s["p50_us"]), "µs",
                              note="median over rounds"))
        figures.append(Figure(f"decision.{name}.p99_us", f"{name}: p99 latency", rounded(s["p99_us"]), "µs",
                              note="median over rounds of each round's p99"))
        figures.append(Figure(f"decision.{name}.per_second", f"{name}: intents/s on one core",
                              rounded(s["per_second"]), "/s", note="1 / mean latency, median over rounds"))

    details: dict[str, Any] = {
        "intents_per_round": n, "rounds": rounds, "summary": summary, "pooled": pooled, "outcomes": outcomes,
        "ratios_p99": {f"{o}.vs_{b}": ratio(o, b, "p99_us") for o in labels for b in ("pydantic", "nautilus")
                       if b in per_round},
        "intent_example": intent_json("example"),
    }
    if worker is not None:
        details["nautilus_worker"] = worker.info
        # Cross-check through the common yardstick: (ours ÷ pydantic here) ÷ (nautilus ÷ pydantic there).
        naut_vs_pyd = ratio("nautilus", "pydantic_in_worker")
        details["nautilus_vs_pydantic_in_worker"] = naut_vs_pyd
        details["ours_vs_nautilus_via_pydantic_yardstick"] = {
            o: (ratio(o, "pydantic") / naut_vs_pyd) if naut_vs_pyd else None for o in labels}
    missed = any(f.status == "miss" for f in figures)
    if profile is None:
        profile = missed and mode.name != "tiny"
    if profile and have_module("pyinstrument"):
        sample = [intent_json(f"prof_{i}") for i in range(max(n, 300))]
        details["profile"] = {"decision": profile_ours(sample, dry_run=True, label="dry-run"),
                              "placed": profile_ours(sample, dry_run=False, label="placed")}
    return {"figures": [f.to_dict() for f in figures], "details": details}

