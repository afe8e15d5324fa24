"""What an app user waits for: ``POST /execute`` over real HTTP against the floor of the same run.

Setup (all real parts, nothing faked): the official Firestore emulator, firebase-tools' Auth
emulator (real ID tokens with custom claims), ``functions-framework --target api --source
functions/main.py`` as a child process (paper broker, ``EXEC_ACCOUNTS=auto``, live — not dry run),
and this process as the client (``http.client`` keep-alive connections, one per simulated user).

Before anything is measured the emulator is warmed on the order path's own writes (a separate server
process places orders and groups as a user of its own, then stops: ``_warm_emulator_with_orders``):
the emulator's JIT otherwise kept speeding up an order's commits for its first ~60 orders, long after
the floor's trivial operations were warm. The measured processes start cold.

Measured, in one run:

- **floor** = one read round trip + two commit round trips on the same emulator (a
  ``google-cloud-firestore`` client in this process: ``DocumentReference.get`` of one document,
  ``WriteBatch.commit`` of one document) + one HTTP round trip to ``GET /healthz`` of the same
  server (no auth, no I/O). Each is the median of ``floor_samples`` samples, interleaved with the
  measured requests (before, between and after the phases) so machine drift hits both sides. The
  floor's read is the library's default client; the function's own client (``make_client``) reads
  unary streams on the calling thread, and the same read on it is reported beside as a diagnostic.
- **first request**: the first ``POST /execute`` after the server process started (readiness is
  probed by a TCP connect, so no request warms the process before it), ÷ the warm sequential p50;
  the median over several process starts of the measured function (15 in a full run: one draw of a
  process start on a shared machine ranged 28-63 ms).
- **single orders** (an AAPL-like market buy of 1 share; the paper venue fills it at once) and
  **2-leg groups** (SPY long / MSFT short, an approval issued per group by a risk manager before
  the timed call): sequential (one user per variant: a user's lot book written by one deployment),
  then ``users`` concurrent users (a thread each, each
  sending its requests back to back). p50 / p90 / p99 are nearest-rank over all requests of the
  phase; the ratio is p50 ÷ floor.

Every request must answer 200 with status ``placed`` (single) or ``FILLED`` (group): a latency of
a failed request is not a latency. Rate limits, daily trade and position limits are raised for the
run (they are not what is measured).
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
import uuid
from typing import Any, Callable

from bench.common import Figure, Mode, percentile, rounded

PROJECT = "demo-bench-http"
SINGLE_SYMBOL = "SPY"


def _env(firestore_host: str, auth_host: str) -> dict[str, str]:
    return {"FIRESTORE_EMULATOR_HOST": firestore_host, "FIREBASE_AUTH_EMULATOR_HOST": auth_host,
            "GOOGLE_CLOUD_PROJECT": PROJECT, "GCLOUD_PROJECT": PROJECT, "EXEC_DRY_RUN": "0",
            "EXEC_ACCOUNTS": "auto", "GOOGLE_APPLICATION_CREDENTIALS": "",
            "EXEC_RATE_LIMIT_USER_PER_MIN": "1000000", "EXEC_RATE_LIMIT_TENANT_PER_MIN": "1000000",
            "EXEC_MAX_DAILY_TRADES": "100000", "EXEC_MAX_POSITION_QTY": "100000000",
            # as the platform starts the api function's instances (functions/main.py preloads the order
            # path for it); Secret Manager off: the bench's venues need no secret
            "FUNCTION_TARGET": "api", "EXEC_SECRET_MANAGER": "0"}


class _Conn:
    """One keep-alive HTTP/1.1 connection (as an app's HTTP client keeps one)."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any, float]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body).encode()
        for attempt in (0, 1):
            try:
                started = time.perf_counter()
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                payload = resp.read()
                elapsed = time.perf_counter() - started
                break
            except (http.client.HTTPException, OSError):
                if attempt:
                    raise
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            decoded = json.loads(payload) if payload else None
        except ValueError:
            decoded = payload.decode(errors="replace")
        return resp.status, decoded, elapsed

    def close(self) -> None:
        self.conn.close()


def _wait_tcp(port: int, proc: Any, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"functions-framework exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("functions-framework did not listen in time")


def _start_server(env: dict[str, str], source: str = "functions/main.py") -> Any:
    """functions-framework as tests/support/api_stack.FunctionsServer runs it, readiness by TCP only."""
    from tests.support.api_stack import FunctionsServer

    server = FunctionsServer(env)

    def start_tcp_only(timeout: float = 90.0) -> Any:
        import subprocess
        import sys
        import tempfile
        from pathlib import Path

        from tests.support.emulators import REPO_ROOT, free_port

        server.port = free_port()
        fd, log = tempfile.mkstemp(prefix="bench-ff-", suffix=".log")
        os.close(fd)
        server.log_path = Path(log)
        server._log = open(server.log_path, "ab")  # noqa: SIM115 - closed by server.stop()
        binary = Path(sys.executable).parent / "functions-framework"
        cmd = [str(binary), "--target", "api", "--source", source, "--port", str(server.port),
               "--host", "127.0.0.1"]
        child_env = {**os.environ, **server.env, "PYTHONUNBUFFERED": "1"}
        child_env.pop("PYTHONPATH", None)
        server.proc = subprocess.Popen(cmd, cwd=str(REPO_ROOT), env=child_env, stdin=subprocess.DEVNULL,
                                       stdout=server._log, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_tcp(server.port, server.proc, timeout)
        return server

    return start_tcp_only()


class _Floor:
    """One read, one commit (this process's Firestore client on the emulator), one /healthz."""

    def __init__(self) -> None:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import firestore

        from backend.adapters.firestore_store import make_client

        self.db = firestore.Client(project=PROJECT, credentials=AnonymousCredentials())
        self.doc = self.db.collection("bench_floor").document("probe")
        self.doc.set({"n": 0})
        # the same read on a client as the function makes it (make_client: single-threaded unary
        # streams): a diagnostic beside the floor, which stays the library's default client
        self.db_function = make_client(PROJECT)
        self.doc_function = self.db_function.collection("bench_floor").document("probe")
        self.reads_function: list[float] = []
        self.http: _Conn | None = None
        self.reads: list[float] = []
        self.commits: list[float] = []
        self.https: list[float] = []

    def sample(self, n: int) -> None:
        for i in range(n):
            t0 = time.perf_counter()
            self.doc.get()
            t1 = time.perf_counter()
            batch = self.db.batch()
            batch.set(self.doc, {"n": i})
            batch.commit()
            t2 = time.perf_counter()
            status, _, elapsed = self.http.call("GET", "/healthz")
            if status != 200:
                raise RuntimeError(f"/healthz answered {status}")
            t3 = time.perf_counter()
            self.doc_function.get()
            self.reads_function.append(time.perf_counter() - t3)
            self.reads.append(t1 - t0)
            self.commits.append(t2 - t1)
            self.https.append(elapsed)

    def summary(self) -> dict[str, float]:
        read, commit, hz = (percentile(v, 50) * 1e3 for v in (self.reads, self.commits, self.https))
        return {"read_ms": read, "commit_ms": commit, "healthz_ms": hz, "floor_ms": read + 2 * commit + hz,
                "read_function_client_ms": percentile(self.reads_function, 50) * 1e3, "samples": len(self.reads)}

    def warm_emulator(self, n: int) -> None:
        """Reads and commits before the server starts: the emulator's JVM answers its first requests
        ~1 s slower (JIT), which is the emulator's cold start, not the function's."""
        for i in range(n):
            self.doc.get()
            self.doc.set({"n": i})
            self.doc_function.get()

    def close(self) -> None:
        if self.http is not None:
            self.http.close()
        self.db.close()
        self.db_function.close()


def _provision(db: Any, uids: list[str]) -> None:
    """Each trader's first account, as auto mode provisions it on their first order (one commit per
    user, outside the measured requests): the first request measures the process, not the user."""
    from backend.adapters.firestore_store import FirestoreStore
    from backend.domain.clock import SystemClock
    from backend.execution.accounts import AccountBinder

    from bench.common import quiet_backend_logs

    binder = AccountBinder(FirestoreStore(db), SystemClock(), mode="auto")
    with quiet_backend_logs():
        for uid in uids:
            bound = binder.bind("acme", uid, None, ())
            if not hasattr(bound, "account_id"):
                raise RuntimeError(f"provisioning {uid}: {bound}")


def _warm_emulator_with_orders(env: dict[str, str], people: "_Users", floor: "_Floor", n_single: int,
                               n_group: int) -> dict[str, Any]:
    """The emulator's JVM compiles the code of each kind of write it serves on its own schedule: its
    answers to an order's commits (preconditions, transforms, a dozen documents) kept shrinking over
    the first ~60 orders (server-side request median 22.4 ms over the first 20, 12.5-12.7 ms over
    orders 60-100, the one-document floor unchanged), long after the floor's trivial reads and commits
    were warm. So before anything is measured, a separate server process places ``n_single`` orders
    and ``n_group`` groups as a user of its own, and is stopped: the measured processes start cold, the
    emulator does not. Answers the warm-up's own latencies (its first and last 20 orders)."""
    uid, token = people.trader("emulator-warm-up")
    _provision(floor.db, [uid])
    server = _start_server(env, SOURCES["batched"])
    conn, risk = _Conn(server.port), _Conn(server.port)
    singles: list[float] = []
    try:
        started = time.perf_counter()
        for _ in range(n_single):
            singles.append(_single(conn, token) * 1e3)
        for _ in range(n_group):
            _group(conn, token, uid, risk, people.risk_token)
        took = time.perf_counter() - started
    finally:
        conn.close()
        risk.close()
        server.stop()
    head, tail = singles[:20], singles[-20:]
    return {"orders": n_single, "groups": n_group, "seconds": round(took, 1),
            "first_20_p50_ms": percentile(head, 50) if head else None,
            "last_20_p50_ms": percentile(tail, 50) if tail else None}


def _process_cpu_ms(server: Any) -> float | None:
    """CPU time of the server's process tree so far, in ms: every thread of the functions-framework
    master and of its forked worker(s), from the scheduler's nanosecond counters
    (``/proc/<pid>/task/<tid>/schedstat``: time on a CPU). ``None`` where they are not there."""
    root = getattr(getattr(server, "proc", None), "pid", None)
    if root is None or not os.path.exists(f"/proc/{root}/task/{root}/schedstat"):
        return None
    pids, total = [root], 0
    while pids:
        pid = pids.pop()
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
                    total += int(fh.read().split()[0])
            with open(f"/proc/{pid}/task/{pid}/children") as fh:
                pids += [int(child) for child in fh.read().split()]
        except (OSError, ValueError, IndexError):
            continue  # a thread or process that just ended
    return total / 1e6


def _summary(latencies: list[float]) -> dict[str, float]:
    ms = [x * 1e3 for x in latencies]
    return {"n": len(ms), "p50_ms": percentile(ms, 50), "p90_ms": percentile(ms, 90),
            "p99_ms": percentile(ms, 99), "max_ms": max(ms)}


def _single_body() -> dict[str, Any]:
    return {"strategy_id": "bench", "symbol": SINGLE_SYMBOL, "side": "buy", "qty": "1", "asset_class": "EQUITY"}


def _group_body(decision_id: str) -> dict[str, Any]:
    return {"strategy_id": "pairs_bench",
            "legs": [{"leg_id": "long_spy", "symbol": "SPY", "direction": 1, "units": 2, "asset_class": "EQUITY"},
                     {"leg_id": "short_msft", "symbol": "MSFT", "direction": -1, "units": 1,
                      "asset_class": "EQUITY"}],
            "rpm_output": {"decision_id": decision_id, "approved": True, "expires_at": "2099-01-01T00:00:00+00:00",
                           "approved_legs": {"long_spy": 2, "short_msft": 1}},
            "max_group_slippage_pips": 1000, "allow_partial_fills": True}


class _Users:
    def __init__(self, auth: Any):
        self.auth = auth
        self.risk_token = self._user("risk", "risk_manager")[1]

    def _user(self, name: str, role: str) -> tuple[str, str]:
        email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
        uid, _ = self.auth.sign_up(email, "bench-pw-1")
        self.auth.set_claims(uid, {"tenant_id": "acme", "role": role})
        return uid, self.auth.sign_in(email, "bench-pw-1")

    def trader(self, name: str) -> tuple[str, str]:
        return self._user(name, "trader")


def _approve(conn: _Conn, risk_token: str, uid: str, decision_id: str) -> None:
    body = _group_body(decision_id)
    legs = [{"leg_id": leg["leg_id"], "symbol": leg["symbol"], "direction": leg["direction"],
             "max_units": str(leg["units"])} for leg in body["legs"]]
    status, reply, _ = conn.call("POST", "/risk/approvals", {"decision_id": decision_id, "for_uid": uid,
                                                              "expires_at": body["rpm_output"]["expires_at"],
                                                              "legs": legs}, risk_token)
    if status not in (200, 201):
        raise RuntimeError(f"approval refused: {status} {reply}")


def _single(conn: _Conn, token: str) -> float:
    status, reply, elapsed = conn.call("POST", "/execute", _single_body(), token)
    if status not in (200, 201) or not isinstance(reply, dict) or reply.get("status") != "placed":
        raise RuntimeError(f"POST /execute answered {status}: {str(reply)[:400]}")
    return elapsed


def _group(conn: _Conn, token: str, uid: str, risk_conn: _Conn, risk_token: str) -> float:
    decision = f"d-{uuid.uuid4().hex[:12]}"
    _approve(risk_conn, risk_token, uid, decision)  # untimed
    status, reply, elapsed = conn.call("POST", "/execute/multi-leg", _group_body(decision), token)
    if status not in (200, 201) or not isinstance(reply, dict) or reply.get("status") != "FILLED":
        raise RuntimeError(f"POST /execute/multi-leg answered {status}: {str(reply)[:400]}")
    return elapsed


def _concurrent(users: list[tuple[str, str]], per_user: int, port: int,
                one: Callable[[_Conn, str, str], float]) -> list[float]:
    out: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(users))

    def worker(uid: str, token: str) -> None:
        conn = _Conn(port)
        try:
            barrier.wait()
            for _ in range(per_user):
                elapsed = one(conn, token, uid)
                with lock:
                    out.append(elapsed)
        except BaseException as exc:  # noqa: BLE001 - reported after the join
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=u, daemon=True) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} concurrent user(s) failed: {errors[0]}")
    return out


def _measure_all(sources: dict[str, str], env: dict[str, str], traders: list[tuple[str, str]], people: "_Users",
                 floor: "_Floor", mode: Mode) -> dict[str, dict[str, Any]]:
    """One server process per variant, all up at once. Each one's first request right after it
    listens; then the sequential phases with the variants' requests interleaved one by one (A, B,
    A, B, ...: the machine's load hits every variant alike) and floor samples between the rounds;
    then the concurrent phases, in alternating rounds per variant."""
    n_single, n_group = mode.pick(4, 40, 60), mode.pick(2, 15, 30)
    per_user_single, per_user_group = mode.pick(2, 4, 8), mode.pick(1, 2, 3)
    rounds = mode.pick(1, 2, 2)
    floor_every = mode.pick(2, 1, 1)  # a floor sample after every sequential order and group: ~90 samples
    # each variant trades as its own user in the sequential phases: a user's lot book is then written
    # by one deployment, as in production (two processes of different code alternating on one user's
    # book measured each one's reads of the other's writes)
    own = {n: traders[i % len(traders)] for i, n in enumerate(sources)}
    names = list(sources)
    servers: dict[str, Any] = {}
    out: dict[str, dict[str, Any]] = {n: {"source": sources[n], "phases": {}} for n in names}
    try:
        for name in names:
            started = time.perf_counter()
            servers[name] = _start_server(env, sources[name])
            out[name]["server_listen_s"] = time.perf_counter() - started
            conn = _Conn(servers[name].port)
            out[name]["first_request_ms"] = _single(conn, own[name][1]) * 1e3  # the first request of the process
            out[name]["second_request_ms"] = _single(conn, own[name][1]) * 1e3
            conn.close()
        conns = {n: _Conn(servers[n].port) for n in names}
        risk = {n: _Conn(servers[n].port) for n in names}
        floor.http = _Conn(servers[names[-1]].port)
        seq: dict[str, dict[str, list[float]]] = {n: {"single": [], "group": []} for n in names}
        # the function's own CPU per placed order: its process tree's CPU over the sequential single
        # orders (the floor's GET /healthz calls on the last server taken out)
        cpu = {n: 0.0 for n in names}
        for i in range(n_single):
            for n in (names if i % 2 == 0 else names[::-1]):
                before = _process_cpu_ms(servers[n])
                seq[n]["single"].append(_single(conns[n], own[n][1]))
                after = _process_cpu_ms(servers[n])
                cpu[n] = None if before is None or after is None or cpu[n] is None else cpu[n] + after - before
            if i % floor_every == 0:
                floor.sample(1)
        for n in names:
            out[n]["cpu_ms_per_order"] = None if cpu[n] is None else cpu[n] / n_single
        for n in names:
            _group(conns[n], own[n][1], own[n][0], risk[n], people.risk_token)  # the group path's first use: untimed
        for i in range(n_group):
            for n in (names if i % 2 == 0 else names[::-1]):
                seq[n]["group"].append(_group(conns[n], own[n][1], own[n][0], risk[n], people.risk_token))
            if i % floor_every == 0:
                floor.sample(1)
        conc: dict[str, dict[str, list[float]]] = {n: {"single": [], "group": []} for n in names}
        for r in range(rounds):
            for n in (names if r % 2 == 0 else names[::-1]):
                port = servers[n].port
                conc[n]["single"] += _concurrent(traders, max(1, per_user_single // rounds), port,
                                                 lambda c, t, u: _single(c, t))

                def group_of(c: _Conn, t: str, u: str, port: int = port) -> float:
                    rc = _Conn(port)
                    try:
                        return _group(c, t, u, rc, people.risk_token)
                    finally:
                        rc.close()

                conc[n]["group"] += _concurrent(traders, max(1, per_user_group // rounds), port, group_of)
                floor.sample(1)
        for n in names:
            conns[n].close()
            risk[n].close()
            out[n]["phases"] = {"single_sequential": _summary(seq[n]["single"]),
                                "group_sequential": _summary(seq[n]["group"]),
                                "single_concurrent": _summary(conc[n]["single"]),
                                "group_concurrent": _summary(conc[n]["group"])}
            out[n]["errors_logged"] = len([line for line in servers[n].log_lines()
                                           if line.get("severity") in ("ERROR", "CRITICAL")])
        floor.http.close()
        floor.http = None
    finally:
        for server in servers.values():
            server.stop()
    return out


SOURCES = {"batched": "functions/main.py", "baseline": "bench/http_baseline_main.py"}


def _first_request(env: dict[str, str], source: str, token: str) -> float:
    """One more process start: its first ``POST /execute`` (ms), sent the moment the port accepts."""
    server = _start_server(env, source)
    try:
        conn = _Conn(server.port)
        try:
            return _single(conn, token) * 1e3
        finally:
            conn.close()
    finally:
        server.stop()


def run(mode: Mode, *, users: int | None = None, baseline: bool = True) -> dict[str, Any]:
    """``baseline``: also measure the read path as it was before issue 17 (bench/http_baseline_main.py)
    in the same run, on the same emulators, against the same floor."""
    from tests.support.emulators import AuthEmulator, FirestoreEmulator

    n_users = users or mode.pick(3, 20, 20)
    firestore_emu = FirestoreEmulator().start()
    auth_emu = AuthEmulator(PROJECT).start()
    floor = None
    saved = {k: os.environ.get(k) for k in ("FIRESTORE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT")}
    variants: dict[str, dict[str, Any]] = {}
    try:
        os.environ["FIRESTORE_EMULATOR_HOST"] = firestore_emu.host
        os.environ["GOOGLE_CLOUD_PROJECT"] = PROJECT
        people = _Users(auth_emu)
        traders = [people.trader(f"trader{i}") for i in range(n_users)]
        floor = _Floor()
        floor.warm_emulator(mode.pick(5, 50, 50))
        _provision(floor.db, [uid for uid, _ in traders])  # each trader's account exists (auto mode's first use)
        env = _env(firestore_emu.host, auth_emu.host)
        emulator_warm_up = _warm_emulator_with_orders(env, people, floor, mode.pick(4, 120, 200),
                                                      mode.pick(1, 10, 20))
        chosen = ("baseline", "batched") if baseline else ("batched",)
        variants = _measure_all({n: SOURCES[n] for n in chosen}, env, traders, people, floor, mode)
        # the first request is one sample per process start: more starts of the measured function, so
        # the figure is a median, not one draw from a noisy machine
        variants["batched"]["first_request_samples_ms"] = [variants["batched"]["first_request_ms"]] + [
            _first_request(env, SOURCES["batched"], traders[0][1]) for _ in range(mode.pick(0, 2, 14))]
    finally:
        if floor is not None:
            floor.close()
        auth_emu.stop()
        firestore_emu.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    main = variants["batched"]
    first_samples = main.get("first_request_samples_ms") or [main["first_request_ms"]]
    phases, first = main["phases"], percentile(first_samples, 50) / 1e3
    second, listen_s, errors = main["second_request_ms"] / 1e3, main["server_listen_s"], main["errors_logged"]
    n_users = n_users
    fl = floor.summary()
    warm = phases["single_sequential"]["p50_ms"]
    first_ms = first * 1e3
    figures = [
        Figure("http.single.p50_over_floor", "POST /execute p50 ÷ floor (sequential, single order)",
               rounded(warm / fl["floor_ms"]), "×", 2.0, "<=",
               note=f"p50 {rounded(warm)} ms; floor {rounded(fl['floor_ms'])} ms = read {rounded(fl['read_ms'])} "
                    f"+ 2 × commit {rounded(fl['commit_ms'])} + GET /healthz {rounded(fl['healthz_ms'])} ms"),
        Figure("http.first_over_warm", "First POST /execute after process start ÷ warm p50", rounded(first_ms / warm),
               "×", 3.0, "<=", note=f"first {rounded(first_ms)} ms (median of {len(first_samples)} process starts: "
                                    f"{', '.join(str(rounded(x)) for x in first_samples)} ms), warm p50 {rounded(warm)} ms"),
        Figure("http.floor_ms", "Floor: 1 read + 2 commits + 1 HTTP round trip", rounded(fl["floor_ms"]), "ms"),
        Figure("http.single.p50_over_floor_function_client",
               "Diagnostic: POST /execute p50 ÷ the floor with its read on the function's client", rounded(
                   warm / (fl["floor_ms"] - fl["read_ms"] + fl["read_function_client_ms"])), "×",
               note=f"the function's Firestore client reads unary streams on the calling thread (make_client); "
                    f"the same one-document read there: {rounded(fl['read_function_client_ms'])} ms vs "
                    f"{rounded(fl['read_ms'])} ms on the library's default client (the floor's)"),
    ]
    cpu = main.get("cpu_ms_per_order")
    if cpu is not None:
        figures.append(Figure("http.single.cpu_ms_per_order", "Function CPU per placed order (sequential)",
                              rounded(cpu), "ms",
                              note=f"time on a CPU of the server's processes (every thread) per POST /execute, over "
                                   f"{phases['single_sequential']['n']} sequential orders, of a {rounded(warm)} ms p50: "
                                   f"the rest is waiting on the emulator and HTTP"))
    labels = {"single_sequential": "single order, sequential", "group_sequential": "2-leg group, sequential",
              "single_concurrent": f"single order, {n_users} concurrent users",
              "group_concurrent": f"2-leg group, {n_users} concurrent users"}
    for key, label in labels.items():
        s = phases[key]
        figures.append(Figure(f"http.{key}.p50_ms", f"POST {label}: p50 / p90 / p99", rounded(s["p50_ms"]), "ms",
                              note=f"p90 {rounded(s['p90_ms'])} ms, p99 {rounded(s['p99_ms'])} ms, n={s['n']}; "
                                   f"p50 ÷ floor {rounded(s['p50_ms'] / fl['floor_ms'])}"))
    base = variants.get("baseline")
    if base is not None:
        bw = base["phases"]["single_sequential"]["p50_ms"]
        figures.append(Figure("http.baseline.single.p50_over_floor",
                              "Same run, read path before issue 17: POST /execute p50 ÷ floor",
                              rounded(bw / fl["floor_ms"]), "×",
                              note=f"p50 {rounded(bw)} ms, first request {rounded(base['first_request_ms'])} ms; "
                                   f"group p50 {rounded(base['phases']['group_sequential']['p50_ms'])} ms; "
                                   f"{n_users} users: single p50 "
                                   f"{rounded(base['phases']['single_concurrent']['p50_ms'])} ms"))
    details = {"floor": fl, "phases": phases, "first_request_ms": first_ms, "second_request_ms": second * 1e3,
               "emulator_warm_up": emulator_warm_up,
               "server_listen_s": listen_s, "users": n_users, "errors_logged": errors,
               "variants": variants, "env": _env("<emulator>", "<auth>")}
    return {"figures": [f.to_dict() for f in figures], "details": details}


if __name__ == "__main__":
    import sys

    from bench.common import FULL, QUICK

    print(json.dumps(run(QUICK if "--quick" in sys.argv else FULL, baseline="--no-baseline" not in sys.argv),
                     indent=1, default=str))
