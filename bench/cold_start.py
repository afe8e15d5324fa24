"""Cold start: importing ``functions.main`` versus importing firebase_functions' trigger modules alone.

Each sample is a fresh interpreter (``python -c``) from the repo root that times only the import
statement with ``perf_counter`` (interpreter start-up is excluded; it is reported separately as
the whole-process wall time). The two programs alternate which goes first (AB, BA, AB, ...) so drift on a shared
machine hits both; bytecode is warm (one untimed run of each first), as on a warm instance image.

Figure: the median over pairs of (main ÷ triggers), each pair measured back to back (robust to
the machine's drift); the ratio of the two medians is in the note. Target <= 1.15.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from bench.common import REPO, Figure, Mode, median, repo_env, rounded

TRIGGER_MODULES = (
    "firebase_functions.https_fn",
    "firebase_functions.firestore_fn",
    "firebase_functions.scheduler_fn",
    "firebase_functions.options",
    "firebase_functions.params",
)
MAIN_MODULE = "functions.main"

_PROGRAM = """\
import sys, time, json
_t0 = time.perf_counter()
{imports}
_t1 = time.perf_counter()
print(json.dumps({{"import_s": _t1 - _t0, "modules": sorted(sys.modules)}}))
"""


def _program(modules: tuple[str, ...]) -> str:
    return _PROGRAM.format(imports="\n".join(f"import {name}" for name in modules))


API_INSTANCE_ENV = {"FUNCTION_TARGET": "api"}  # what the platform sets in the api function's instances


def _sample(modules: tuple[str, ...], python: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    start = time.perf_counter()
    child = repo_env(**(env or {}))
    if not env:
        child.pop("FUNCTION_TARGET", None)  # deploy-time discovery and trigger instances
    proc = subprocess.run([python, "-c", _program(modules)], cwd=REPO, env=child,
                          capture_output=True, text=True, timeout=120)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"importing {modules} failed:\n{proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"import_s": out["import_s"], "wall_s": wall, "modules": out["modules"]}


def _top_level(names: list[str]) -> list[str]:
    return sorted({name.split(".")[0] for name in names})


def run(mode: Mode, *, python: str | None = None) -> dict[str, Any]:
    python = python or sys.executable
    runs = mode.pick(1, 9, 25)
    programs = {"main": (MAIN_MODULE,), "triggers": TRIGGER_MODULES, "api_instance": (MAIN_MODULE,)}
    envs = {"api_instance": API_INSTANCE_ENV}
    warm = {name: _sample(mods, python, envs.get(name)) for name, mods in programs.items()}  # .pyc; untimed
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in programs}
    for i in range(runs):
        order = ("main", "triggers", "api_instance") if i % 2 == 0 else ("api_instance", "triggers", "main")
        for name in order:
            samples[name].append(_sample(programs[name], python, envs.get(name)))

    imp = {name: [s["import_s"] for s in runs_] for name, runs_ in samples.items()}
    wall = {name: [s["wall_s"] for s in runs_] for name, runs_ in samples.items()}
    ratio = median(imp["main"]) / median(imp["triggers"])
    paired = median([m / t for m, t in zip(imp["main"], imp["triggers"])])
    main_modules, trigger_modules = set(warm["main"]["modules"]), set(warm["triggers"]["modules"])
    figures = [
        Figure("cold_start.ratio", "Cold start: import functions.main ÷ firebase_functions trigger modules",
               rounded(paired), "×", 1.15, "<=",
               note=f"median of {runs} back-to-back pairs of fresh interpreters; ratio of the medians "
                    f"{rounded(ratio)}"),
        Figure("cold_start.main_import_ms", "Cold start: import functions.main", rounded(median(imp["main"]) * 1e3),
               "ms"),
        Figure("cold_start.triggers_import_ms", "Cold start: import trigger modules alone",
               rounded(median(imp["triggers"]) * 1e3), "ms"),
        Figure("cold_start.api_instance_import_ms",
               "Cold start, the api function's instance (FUNCTION_TARGET=api): import functions.main with the "
               "order path preloaded before the server listens", rounded(median(imp["api_instance"]) * 1e3), "ms",
               note=f"{rounded(median(imp['api_instance']) / median(imp['triggers']))} × the trigger modules; "
                    "deploy-time discovery and trigger instances import as in the first row"),
    ]
    details = {
        "runs": runs,
        "python": python,
        "trigger_modules": list(TRIGGER_MODULES),
        "import_s": {name: [round(v, 4) for v in values] for name, values in imp.items()},
        "process_wall_median_s": {name: round(median(values), 4) for name, values in wall.items()},
        "paired_ratio_median": paired,
        "ratio_of_medians": ratio,
        "modules_loaded": {"main": len(main_modules), "triggers": len(trigger_modules)},
        "packages_only_in_main": _top_level(sorted(main_modules - trigger_modules)),
        "packages_only_in_triggers": _top_level(sorted(trigger_modules - main_modules)),
        "main_imports_backend": any(name == "backend" or name.startswith("backend.") for name in main_modules),
    }
    return {"figures": [f.to_dict() for f in figures], "details": details}
