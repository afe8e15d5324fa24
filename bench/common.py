"""Shared pieces of the benchmarks: run modes, figures with targets, statistics, machine facts.

Every benchmark module has ``run(mode, **resources) -> dict`` returning
``{"figures": [Figure.to_dict(), ...], "details": {...}}``. A figure carries its target and a
status: ``pass`` / ``miss`` (compared with the target), ``info`` (no target) or ``skipped``
(with the reason, e.g. an optional package is not installed).
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import math
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO / "bench"
RESULTS_DIR = BENCH_DIR / "results"
NAUTILUS_VENV_PYTHON = BENCH_DIR / ".venv" / "bin" / "python"


# --- modes ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Mode:
    """How much work each benchmark does. ``tiny`` is for the smoke test (correctness only, numbers
    meaningless), ``quick`` for a ~2 minute run, ``full`` for the figures that get published."""

    name: str

    def pick(self, tiny: Any, quick: Any, full: Any) -> Any:
        return {"tiny": tiny, "quick": quick, "full": full}[self.name]


TINY, QUICK, FULL = Mode("tiny"), Mode("quick"), Mode("full")


# --- figures -------------------------------------------------------------------------------------

@dataclass
class Figure:
    key: str
    label: str
    value: float | int | None
    unit: str = ""
    target: float | int | None = None
    op: str = "<="  # how value compares with target to pass: "<=", ">=", "=="
    note: str = ""
    status: str = ""  # pass / miss / info / skipped; derived when empty

    def __post_init__(self) -> None:
        if not self.status:
            if self.value is None:
                self.status = "skipped"
            elif self.target is None:
                self.status = "info"
            else:
                ok = {"<=": self.value <= self.target, ">=": self.value >= self.target,
                      "==": self.value == self.target}[self.op]
                self.status = "pass" if ok else "miss"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def skipped(key: str, label: str, reason: str, *, target: float | None = None, op: str = "<=",
            unit: str = "") -> Figure:
    return Figure(key, label, None, unit, target, op, note=reason, status="skipped")


# --- statistics ----------------------------------------------------------------------------------

def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def latency_summary(ns: Sequence[int]) -> dict[str, float]:
    """p50 / p99 / mean in microseconds and the rate one core sustains (1 / mean)."""
    mean = sum(ns) / len(ns)
    return {"n": len(ns), "p50_us": percentile(ns, 50) / 1e3, "p99_us": percentile(ns, 99) / 1e3,
            "mean_us": mean / 1e3, "per_second": 1e9 / mean if mean else float("inf")}


def rounded(value: float | None, digits: int = 3) -> float | None:
    if value is None:
        return None
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, max(0, digits - 1 - int(math.floor(math.log10(abs(value))))))


# --- environment ---------------------------------------------------------------------------------

def have_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def nautilus_python() -> str | None:
    """The interpreter of the separate nautilus venv (bench/setup.sh), or None when absent.
    ``BENCH_NAUTILUS_PYTHON`` overrides the location."""
    candidate = os.environ.get("BENCH_NAUTILUS_PYTHON") or str(NAUTILUS_VENV_PYTHON)
    if not Path(candidate).exists():
        return None
    probe = subprocess.run([candidate, "-c", "import nautilus_trader"], capture_output=True, timeout=120)
    return candidate if probe.returncode == 0 else None


def repo_env(**extra: str) -> dict[str, str]:
    """Environment for child interpreters: the repo importable, no emulator or bytecode surprises."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


class _NullStream(io.TextIOBase):
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


@contextlib.contextmanager
def quiet_backend_logs() -> Iterator[None]:
    """Structured log lines still get built and JSON-encoded (that is real work), then dropped."""
    from backend import logs

    logs.set_stream(_NullStream())
    try:
        yield
    finally:
        logs.set_stream(None)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    dirty = _git("status", "--porcelain")
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": affinity,
        "load_average_at_start": load,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(dirty) if dirty is not None else None,
        "packages": {name: _version(name) for name in (
            "firebase-functions", "google-cloud-firestore", "pydantic", "rp2", "pyinstrument")},
    }


@dataclass
class BenchResult:
    name: str
    mode: str
    figures: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    measured_at: str = ""
    error: str | None = None


def python_exe() -> str:
    return sys.executable
