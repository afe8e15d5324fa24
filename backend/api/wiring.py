"""Build the engine and the API once per process, from the environment (lazily, cached).

The engine comes from the one composition root, ``backend/bootstrap.py`` (settings, Firestore store,
venues from ``EXEC_BROKER_ROUTES`` / ``EXEC_PAPER_SCENARIO``, the pre-trade gate): see its docstring.
This module adds the edge's own parts: identity (``FirebaseTokenVerifier`` for the project,
``GOOGLE_CLOUD_PROJECT``/``GCLOUD_PROJECT``), the rate limiter, the history reader and the
deployed-emulator guard.

A bad configuration raises here (``RoutingConfigError``, ``InvalidInput`` naming the variable); the
API reports it as a 500 with an ERROR log line and tries again on the next request.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Mapping

from backend.logs import log_event

_FROM_BOOTSTRAP = {"build_broker": "build_broker", "parse_routes": "parse_routes",
                   "PAPER_SCENARIO_ENV": "PAPER_SCENARIO_ENV", "ROUTES_ENV": "ROUTES_ENV_VAR"}


def __getattr__(name: str) -> Any:
    # Old names, now the composition root's; loaded on first use (main's import stays cheap).
    if name in _FROM_BOOTSTRAP:
        from backend import bootstrap

        return getattr(bootstrap, _FROM_BOOTSTRAP[name])
    raise AttributeError(name)

_lock = threading.Lock()
_app: Any = None
_verifier: Any = None  # the default app's token verifier (warmed up by ``warm_up``)
_engine: Any = None
_limiter: Any = None


def build_engine(env: Mapping[str, str] | None = None, secrets: Mapping[str, str | None] | None = None) -> Any:
    """The deployed engine, built by the composition root (``backend.bootstrap``) on Firestore."""
    from backend import bootstrap

    env = os.environ if env is None else env
    refuse_emulators_when_deployed(env)
    engine = bootstrap.build_engine(env, secrets or {})
    log_event("api.engine_ready", dry_run=engine.dry_run, broker=type(engine.broker).__name__,
              firestore_emulator=bool(env.get("FIRESTORE_EMULATOR_HOST")))
    return engine


def history_reader_for(store: Any) -> Any:
    from backend.api.history import FirestoreHistoryReader, MemoryHistoryReader

    if hasattr(store, "db"):
        return FirestoreHistoryReader(store.db)
    return MemoryHistoryReader(store)


def get_engine(secrets: Mapping[str, str | None] | None = None) -> Any:
    global _engine
    if _engine is None:
        with _lock:
            if _engine is None:
                _engine = build_engine(secrets=secrets)
    return _engine


def default_app(secrets: Mapping[str, str | None] | None = None) -> Any:
    """The process-wide ``ApiApp``; nothing heavy is built until a request needs it."""
    global _app
    if _app is None:
        from backend.api.app import ApiApp
        from backend.api.firebase_auth import FirebaseTokenVerifier
        from backend.settings import ApiSettings

        refuse_emulators_when_deployed(os.environ)
        api_settings = ApiSettings.from_env(os.environ)
        verifier = FirebaseTokenVerifier(cache_seconds=float(api_settings.auth_state_cache_seconds))
        with _lock:
            if _app is None:
                global _verifier
                _verifier = verifier
                _app = ApiApp(engine=lambda: get_engine(secrets), verifier=lambda: verifier,
                              history=lambda: history_reader_for(get_engine(secrets).store),
                              rate_limiter=lambda: get_rate_limiter(secrets))
    return _app


def build_rate_limiter(settings: Any, store: Any) -> Any:
    """The per-user / per-tenant limiter (``backend.risk.rate_limit``) on the store's database."""
    from backend import bootstrap
    from backend.risk.rate_limit import RateLimiter

    counters = bootstrap.rate_counters(store)
    return RateLimiter(user_per_min=settings.rate_user_per_min, tenant_per_min=settings.rate_tenant_per_min,
                       counters=counters, shards=settings.rate_shards,
                       refresh_seconds=float(settings.rate_refresh_seconds),
                       on_error=lambda exc: log_event("rate_limit.counters_unavailable", severity="ERROR",
                                                      error_type=type(exc).__name__, error=str(exc)[:300]))


def get_rate_limiter(secrets: Mapping[str, str | None] | None = None) -> Any:
    """The process-wide limiter shared by the HTTP API and the intent-document trigger."""
    global _limiter
    store = get_engine(secrets).store
    cached = _limiter
    if cached is None or cached[0] is not store:  # built once per engine store
        from backend.settings import ApiSettings

        with _lock:
            if _limiter is None or _limiter[0] is not store:
                _limiter = (store, build_rate_limiter(ApiSettings.from_env(os.environ), store))
            cached = _limiter
    return cached[1]


# ------------------------------------------------------------------ the deployed-emulator guard

EMULATOR_HOST_VARS = ("FIRESTORE_EMULATOR_HOST", "FIREBASE_AUTH_EMULATOR_HOST", "FIREBASE_STORAGE_EMULATOR_HOST",
                      "FIREBASE_DATABASE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST",
                      "FIREBASE_EMULATOR_HUB", "FUNCTIONS_EMULATOR_HOST")
DEPLOYED_MARKERS = ("K_SERVICE", "FUNCTION_TARGET", "K_REVISION")
PROJECT_VARS = ("GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "GCP_PROJECT")


class DeployedEmulatorError(RuntimeError):
    """An emulator host variable is set where real users can call: refuse to start."""


def refuse_emulators_when_deployed(env: Mapping[str, str]) -> None:
    """Refuse to start when an emulator host variable is set in a deployed environment.

    The Auth emulator's tokens are unsigned: with ``FIREBASE_AUTH_EMULATOR_HOST`` set, firebase-admin
    accepts a token anyone can write. Deployed = a Cloud Run / Cloud Functions marker is set
    (``K_SERVICE``, ``FUNCTION_TARGET``, ``K_REVISION``; the Functions emulator sets them too) and
    the project is not a ``demo-`` project (demo projects cannot reach production resources). A
    deployed function with no project id at all is treated as production. There is deliberately
    no override variable (``FUNCTIONS_EMULATOR`` can be put in a deployed ``.env``): run the
    emulator suite with a ``demo-`` project."""
    present = sorted(name for name in EMULATOR_HOST_VARS if (env.get(name) or "").strip())
    if not present:
        return
    markers = sorted(name for name in DEPLOYED_MARKERS if (env.get(name) or "").strip())
    if not markers:
        return
    project = next(((env.get(name) or "").strip() for name in PROJECT_VARS if (env.get(name) or "").strip()), "")
    if project.startswith("demo-"):
        return
    log_event("api.emulator_in_deployment", severity="CRITICAL", emulator_vars=present, deployed_markers=markers,
              project=project or None)
    raise DeployedEmulatorError(
        f"refusing to start: {', '.join(present)} set in a deployed environment ({', '.join(markers)}; "
        f"project {project or '(none)'} is not a demo- project); unset them or deploy to a demo- project")


# Models the first order request of an API instance validates (their pydantic schemas are built on
# first use: ``defer_build`` in backend.api.models keeps the import cheap).
_HOT_MODELS = ("ExecuteRequest", "MultiLegRequest", "SignalRequest", "ExecutionResponse", "SignalResponse")


def warm_up(secrets: Mapping[str, str | None] | None = None, *, api: bool = True) -> dict[str, float]:
    """Build, off any request, what a new instance's first request would otherwise build (issue 17):
    the engine and the rate limiter (their modules, the Firestore client), the lot-book and metrics
    modules the first placed trade imports, the API and its hot models' schemas (``api``), and the
    gRPC channel — connected by one read of ``ops/execution``, the document every order request
    reads first. Answers the milliseconds each step took. Safe to run concurrently with a request:
    everything it builds is the same process-wide cached object (built once under the lock) and
    imports are thread-safe. Run by ``functions/main.py`` on a thread started right after the
    worker process forks (``os.register_at_fork``), so it overlaps the server's own start-up and
    the first request's arrival; never before the fork (a gRPC channel does not survive one). With
    ``api``, also the token verifier: the Admin SDK app, the auth client and its HTTP connection
    (``FirebaseTokenVerifier.warm_up``: one lookup of a uid that does not exist)."""
    import time

    took: dict[str, float] = {}
    mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        took[name] = round((now - mark) * 1e3, 1)
        mark = now

    auth = None
    if api:  # the token verifier's HTTP warm-up waits on the network: alongside the rest
        default_app(secrets)
        auth = threading.Thread(target=_warm_verifier, name="warm-up-auth", daemon=True)
        auth.start()
    engine = get_engine(secrets)
    lap("engine")
    warm = getattr(engine.store, "warm_connection", None)
    if warm is not None:  # first after the engine: the channel's connect is the longest wait of a first request
        warm()
        lap("channel")
    get_rate_limiter(secrets)
    import backend.execution.metrics  # noqa: F401 - what the first ledger row imports
    import backend.tax.state  # noqa: F401 - what the first lot-book step imports
    lap("modules")
    if api:
        _build_hot_models()
        lap("api")
    if auth is not None:
        auth.join(timeout=10)
        lap("auth")
    return took


def _warm_verifier() -> None:
    if not callable(getattr(_verifier, "warm_up", None)):
        return
    try:
        _verifier.warm_up()
    except Exception as exc:  # noqa: BLE001 - the first request verifies (and reports) as before
        log_event("api.warm_up_auth_failed", severity="WARNING", error_type=type(exc).__name__, error=str(exc)[:300])


def preload_api(secrets: Any = None, *, build: bool = True) -> float:
    """Import the order path, build the hot models' schemas and (``build``) the process-wide objects
    — in the API instance's module import, before the server listens (issue 17). Safe before gunicorn
    forks the worker: no thread, no gRPC channel, no kept connection (those are made after the fork
    by ``warm_up``). Ends with ``gc.freeze()``: what the import made is never scanned again by the
    worker's collector (a full collection of it took 16-19 ms on this machine). Answers the
    milliseconds it took. ``functions/main.py`` calls it only when the instance serves the ``api``
    function (``FUNCTION_TARGET``): trigger instances and deploy-time discovery keep a cheap import."""
    import gc
    import time

    started = time.perf_counter()
    from backend import bootstrap

    bootstrap.preload()  # the engine's modules and the adapters the deployed engine is built from
    import backend.api.app  # noqa: F401
    import backend.api.firebase_auth  # noqa: F401
    import backend.api.flask_bridge  # noqa: F401 - functions/main.py's api() imports it per request
    import backend.execution.metrics  # noqa: F401
    import backend.pools  # noqa: F401 - the account lookup's pool (made after the fork)
    import backend.tax.state  # noqa: F401

    _build_hot_models()
    _prime_pure_paths()
    if build:
        build_before_fork(secrets() if callable(secrets) else secrets)
    gc.freeze()
    return round((time.perf_counter() - started) * 1e3, 1)


def build_before_fork(secrets: Mapping[str, str | None] | None = None) -> None:
    """The objects every request of an API instance uses, built once before the fork (issue 17): the
    API, the token verifier and its Admin SDK app, the engine (settings, venues, the Firestore client
    object — its gRPC channel is made on first use, by the warm-up after the fork) and the rate
    limiter. Pure construction: no thread is started and no connection kept (in production the
    credentials lookup may ask the metadata server once, on a connection it closes). A failure is
    logged, never raised: the warm-up or the first request builds it again and reports it as before."""
    try:
        default_app(secrets)
        if _verifier is not None and callable(getattr(_verifier, "_get_app", None)):
            _verifier._get_app()
        get_engine(secrets)
        get_rate_limiter(secrets)
    except Exception as exc:  # noqa: BLE001 - built (and reported) again after the fork
        log_event("api.prebuild_failed", severity="WARNING", error_type=type(exc).__name__, error=str(exc)[:300])


def _prime_pure_paths() -> None:
    """Run the order path's pure steps once on a made-up order (issue 17): what they compute once
    per process and cache (the lot book's worst-case sizes, the field names' storability, the
    request model's first validation, the lot book's first steps) is then computed before the
    fork, in the instance's import, not by its first request (here: ~2 ms added to the import,
    ~0.75 ms less CPU in a first order). Nothing is read, written, sent or logged: no store, venue
    or clock is involved. Only ``preload_api`` calls it, before any request (it empties the
    packed-lots memo it used). A failure is logged, never raised — the first request computes it
    instead."""
    try:
        from datetime import datetime, timezone
        from decimal import Decimal

        from backend.api.app import parse_json_object, parse_model
        from backend.api.models import ExecuteRequest
        from backend.domain.assets import AssetClass
        from backend.execution import lot_capacity
        from backend.execution.intent import ExecutionContext, OrderIntent
        from backend.execution.preflight import check_intent_writes
        from backend.tax.model import Fill, Side
        from backend.tax.state import PACKED_LOTS, plan_books

        body = parse_model(ExecuteRequest, parse_json_object(
            b'{"strategy_id": "warm-up", "symbol": "SPY", "side": "buy", "qty": "1", "asset_class": "EQUITY"}'))
        intent = OrderIntent(strategy_id=body.strategy_id, broker_account_id=None, symbol=body.symbol,
                             side=body.side, qty=body.qty, asset_class=body.asset_class, intent_id="i-warm-up")
        at = datetime(2000, 1, 3, 15, tzinfo=timezone.utc)
        check_intent_writes(intent, ExecutionContext(tenant_id="warm-up", uid="warm-up"), at)
        lot_capacity.order_margin_bytes()
        lot_capacity.worst_sizes()
        state = None
        for n, side in enumerate((Side.BUY, Side.BUY, Side.SELL)):
            fill = Fill(trade_id=f"warm-up-{n}", symbol="SPY", side=side, qty=Decimal(1), price=Decimal(100 + n),
                        timestamp=at, asset_class=AssetClass.EQUITY, book="warm-up:default")
            state = plan_books({("warm-up", "SPY"): state}, [("warm-up", fill)], {}).states[("warm-up", "SPY")]
        PACKED_LOTS.clear()  # the made-up book leaves nothing behind
    except Exception as exc:  # noqa: BLE001 - a warm-up; the first request computes it instead
        log_event("api.prime_failed", severity="WARNING", error_type=type(exc).__name__, error=str(exc)[:300])


def _build_hot_models() -> None:
    """Build the deferred pydantic schemas of the models a first order request validates (once each:
    a built model's ``model_rebuild`` does nothing)."""
    from backend.api import models

    for name in _HOT_MODELS:
        model = getattr(models, name, None)
        if model is not None:
            model.model_rebuild()


def start_warm_up_after_fork(secrets: Any, *, api: bool) -> None:
    """Start ``warm_up`` on a daemon thread, once per process (the fork hook of functions/main.py)."""
    global _warm_pid
    if _warm_pid == os.getpid():
        return
    _warm_pid = os.getpid()

    def run() -> None:
        try:
            took = warm_up(secrets() if callable(secrets) else secrets, api=api)
            log_event("api.warmed_up", took_ms=took, api=api)
        except Exception as exc:  # noqa: BLE001 - the first request builds (and reports) it instead
            log_event("api.warm_up_failed", severity="WARNING", error_type=type(exc).__name__, error=str(exc)[:300])

    threading.Thread(target=run, name="warm-up", daemon=True).start()


_warm_pid: int | None = None


def reset() -> None:
    """Forget the cached app, engine and limiter (tests)."""
    global _app, _engine, _limiter, _verifier
    with _lock:
        _app = None
        _verifier = None
        _engine = None
        _limiter = None
