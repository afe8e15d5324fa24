"""Run the benchmarks and write bench/results/latest.json and latest.md.

    bench/setup.sh                               # once: rp2 + pyinstrument, and the nautilus venv
    .venv/bin/python -m bench.run                # full run (~4-6 min on 2 cores)
    .venv/bin/python -m bench.run --quick        # ~1-2 min, smaller inputs, same figures
    .venv/bin/python -m bench.run --only decision tax

Benchmarks: cold_start, decision, firestore, sweeper, tax (see bench/README.md). ``--only``
merges its results into the existing latest.json, so the file always holds the newest figure of
every benchmark, each with its own mode and time. A missed target is a result, not an error: the
exit status is non-zero only when a benchmark could not run.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from bench.common import FULL, QUICK, RESULTS_DIR, BenchResult, Mode, machine_info

BENCHMARKS = ("cold_start", "decision", "firestore", "sweeper", "tax", "http")
NEEDS_EMULATOR = {"firestore", "sweeper"}
PROJECT = "demo-bench"


class _Emulator:
    """The official Firestore emulator, started on first use (tests/support/emulators.py)."""

    def __init__(self) -> None:
        self._emulator: Any = None

    def target(self):
        from bench.firestore_cost import FirestoreTarget
        from tests.support.emulators import FirestoreEmulator

        if self._emulator is None:
            self._emulator = FirestoreEmulator().start()
        emulator = self._emulator
        return FirestoreTarget(emulator.host, PROJECT, lambda: emulator.reset(PROJECT))

    def stop(self) -> None:
        if self._emulator is not None:
            self._emulator.stop()
            self._emulator = None


def _runner(name: str, mode: Mode, args: argparse.Namespace, emulator: _Emulator) -> Callable[[], dict[str, Any]]:
    if name == "cold_start":
        from bench import cold_start

        return lambda: cold_start.run(mode)
    if name == "decision":
        from bench import decision

        return lambda: decision.run(mode, nautilus=not args.no_nautilus, profile=True if args.profile else None)
    if name == "firestore":
        from bench import firestore_cost

        return lambda: firestore_cost.run(mode, target=emulator.target())
    if name == "sweeper":
        from bench import sweeper_reads

        return lambda: sweeper_reads.run(mode, target=emulator.target())
    if name == "tax":
        from bench import tax_export

        return lambda: tax_export.run(mode)
    if name == "http":
        from bench import http_latency

        return lambda: http_latency.run(mode)
    raise ValueError(name)


def run_benchmarks(names: list[str], mode: Mode, args: argparse.Namespace) -> dict[str, BenchResult]:
    emulator = _Emulator()
    results: dict[str, BenchResult] = {}
    try:
        for name in names:
            print(f"[bench] {name} ({mode.name}) ...", file=sys.stderr, flush=True)
            started = time.perf_counter()
            result = BenchResult(name=name, mode=mode.name,
                                 measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
            try:
                out = _runner(name, mode, args, emulator)()
                result.figures, result.details = out["figures"], out["details"]
            except Exception as exc:  # one broken benchmark must not hide the others' figures
                result.error = f"{type(exc).__name__}: {exc}"
                result.details = {"traceback": traceback.format_exc()[-4000:]}
            result.seconds = round(time.perf_counter() - started, 1)
            results[name] = result
            status = "ERROR " + result.error if result.error else ", ".join(
                f"{f['key'].split('.', 1)[1]}={f['value']}{'' if f['status'] in ('info', 'pass') else ' ' + f['status']}"
                for f in result.figures if f["target"] is not None)
            print(f"[bench] {name} done in {result.seconds}s: {status}", file=sys.stderr, flush=True)
    finally:
        emulator.stop()
    return results


# --- output --------------------------------------------------------------------------------------

def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if value == int(value) and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


_STATUS = {"pass": "✅ pass", "miss": "❌ miss", "info": "", "skipped": "⏭ skipped", "error": "💥 error"}


def figures_table(doc: dict[str, Any]) -> str:
    lines = ["| Figure | Value | Target | Status | Note |", "|---|---|---|---|---|"]
    for name in BENCHMARKS:
        bench = doc["benchmarks"].get(name)
        if bench is None:
            continue
        if bench.get("error"):
            lines.append(f"| **{name}** | — | — | {_STATUS['error']} | {bench['error']} |")
            continue
        for f in bench["figures"]:
            target = f"{f['op']} {_fmt(f['target'])}" if f["target"] is not None else ""
            value = f"{_fmt(f['value'])} {f['unit']}".strip() if f["value"] is not None else "—"
            lines.append(f"| {f['label']} | {value} | {target} | {_STATUS.get(f['status'], f['status'])} "
                         f"| {f['note'].replace('|', '/')} |")
    return "\n".join(lines)


def _md_details(name: str, bench: dict[str, Any]) -> list[str]:
    d = bench.get("details") or {}
    out: list[str] = []
    if name == "cold_start":
        out.append(f"- {d.get('runs')} fresh interpreters per program; process wall medians "
                   f"{d.get('process_wall_median_s')} s; modules loaded {d.get('modules_loaded')}.")
        out.append(f"- Packages only main loads: {', '.join(d.get('packages_only_in_main') or []) or 'none'}; "
                   f"only the trigger set loads: {', '.join(d.get('packages_only_in_triggers') or []) or 'none'}.")
    elif name == "decision":
        out.append(f"- {d.get('rounds')} rounds × {d.get('intents_per_round')} intents; outcomes "
                   f"`{json.dumps(d.get('outcomes'))}`.")
        if d.get("nautilus_worker"):
            out.append(f"- nautilus worker: `{json.dumps(d['nautilus_worker'])}`; cross-check through the pydantic "
                       f"yardstick (ours ÷ nautilus): `{json.dumps(d.get('ours_vs_nautilus_via_pydantic_yardstick'))}`.")
        for label, prof in (d.get("profile") or {}).items():
            top = sorted(prof["inclusive_percent"].items(), key=lambda kv: -kv[1])[:14]
            out.append(f"- Profile `{label}` ({prof['file']}), inclusive % of time: "
                       + ", ".join(f"{k} {v}%" for k, v in top))
            out.append("  - self time by file: " + ", ".join(f"{k} {v}%" for k, v in
                                                               list(prof["self_percent_by_file"].items())[:8]))
    elif name == "firestore":
        for scenario, s in (d.get("scenarios") or {}).items():
            out.append(f"- **{scenario}** ({s.get('status')}): {s['commits']} commits, {s['billed_reads']} billed reads, "
                       f"{s['writes']} writes, {s['deletes']} deletes, {s['begin_transaction']} transactions")
            rt = s.get("round_trips")
            if rt:
                out.append(f"  - sequential round trips: {rt['read_round_trips']} read, {rt['commit_round_trips']} "
                           f"commit, {rt['other_round_trips']} other: " + " → ".join(rt["sequence"]))
            for op, rpcs in s["by_op"].items():
                out.append(f"  - `{op}`: " + "; ".join(rpcs))
    elif name == "sweeper":
        out.append(f"- {d.get('finished_groups'):,} finished + {d.get('stuck_groups')} stuck groups "
                   f"(seeded in {d.get('seed_seconds')} s); report `{json.dumps(d.get('report'))}`.")
        for op, rpcs in {**(d.get("query_by_op") or {}), **(d.get("resume_by_op") or {})}.items():
            shown = rpcs if len(rpcs) <= 4 else rpcs[:4] + [f"… {len(rpcs) - 4} more"]
            out.append(f"  - `{op}` ({len(rpcs)} RPCs): " + "; ".join(shown))
    elif name == "http":
        fl = d.get("floor") or {}
        out.append(f"- floor {fl.get('floor_ms', 0):.1f} ms = read {fl.get('read_ms', 0):.1f} + 2 × commit "
                   f"{fl.get('commit_ms', 0):.1f} + GET /healthz {fl.get('healthz_ms', 0):.1f} ms "
                   f"(medians of {fl.get('samples')} samples each, interleaved with the phases); "
                   f"{d.get('users')} users; first request {d.get('first_request_ms', 0):.0f} ms; "
                   f"ERROR lines in the function's log: {d.get('errors_logged')}.")
        for phase, s in (d.get("phases") or {}).items():
            out.append(f"  - {phase}: n={s['n']}, p50 {s['p50_ms']:.1f} ms, p90 {s['p90_ms']:.1f} ms, "
                       f"p99 {s['p99_ms']:.1f} ms, max {s['max_ms']:.1f} ms")
    elif name == "tax":
        out.append(f"- {d.get('fills'):,} fills, year {d.get('year')}, seed {d.get('seed')}, {d.get('repeats')} "
                   f"repeat(s); gains equal exactly: {d.get('gains_equal_exactly')}.")
        if d.get("ours"):
            o = d["ours"][0]
            out.append(f"- ours: gains by year `{json.dumps(o.get('gains_by_year'))}`, {o.get('disposals')} disposals, "
                       f"CSV {o.get('csv_bytes'):,} bytes, CSV gain column total {o.get('csv_gain_total')} "
                       f"(rows rounded to cents).")
        if d.get("rp2"):
            r = d["rp2"][0]
            out.append(f"- rp2 {r.get('rp2_version')}: gains by year `{json.dumps(r.get('gains_by_year'))}`, "
                       f"{r.get('gain_losses')} gain/loss entries, max RSS {r.get('maxrss_mb'):.0f} MB.")
    if bench.get("error"):
        out.append("```\n" + (d.get("traceback") or bench["error"]) + "\n```")
    return out


def render_markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    head = [
        "# Benchmark results",
        "",
        f"Machine: {m['cpu_model']}, {m['cores']} cores ({m['cores_usable']} usable), load average at start "
        f"{m['load_average_at_start']}; Python {m['python']} ({m['platform']}); commit {m['git_commit']}"
        f"{' + uncommitted changes' if m.get('git_dirty') else ''}; {m['date']}.",
        "",
        "Command: `" + doc["command"] + "`. Ratios are measured in the same run (medians of repeated "
        "runs); see bench/README.md for what each figure means.",
        "",
        figures_table(doc),
        "",
    ]
    for name in BENCHMARKS:
        bench = doc["benchmarks"].get(name)
        if bench is None:
            continue
        head.append(f"## {name} — {bench['mode']} mode, {bench['measured_at']}, {bench['seconds']} s")
        head.append("")
        head.extend(_md_details(name, bench))
        head.append("")
    return "\n".join(head)


def write_results(results: dict[str, BenchResult], merge: bool, command: str,
                  results_dir: Path = RESULTS_DIR, machine: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write latest.json (merged into the existing file when ``merge``) and latest.md; return the doc."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / "latest.json"
    doc: dict[str, Any] = {"schema": 1, "benchmarks": {}}
    if merge and path.exists():
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            pass
    doc["schema"] = 1
    doc["machine"] = machine or machine_info()
    doc["command"] = command
    doc.setdefault("benchmarks", {})
    for name, result in results.items():
        doc["benchmarks"][name] = result.__dict__
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    tmp.replace(path)
    (results_dir / "latest.md").write_text(render_markdown(doc))
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs, ~2 minutes")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, metavar="NAME",
                        help=f"run only these ({', '.join(BENCHMARKS)}); merged into latest.json")
    parser.add_argument("--no-nautilus", action="store_true", help="skip the nautilus contender")
    parser.add_argument("--profile", action="store_true", help="profile the decision path even if it passes")
    args = parser.parse_args(argv)
    mode = QUICK if args.quick else FULL
    names = list(args.only) if args.only else list(BENCHMARKS)
    command = "python -m bench.run" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    started = time.perf_counter()
    machine = machine_info()  # before the run: the load average is the one the run started under
    results = run_benchmarks(names, mode, args)
    doc = write_results(results, merge=bool(args.only), command=command.strip(), machine=machine)
    print(figures_table(doc))
    print(f"\n[bench] {time.perf_counter() - started:.0f}s; wrote {RESULTS_DIR / 'latest.json'} and latest.md",
          file=sys.stderr)
    return 1 if any(r.error for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
