"""Build the engine and the API once per process, from the environment (lazily, cached).

- store: ``FirestoreStore(make_client())`` (the emulator with anonymous credentials when
  ``FIRESTORE_EMULATOR_HOST`` is set);
- broker: the embedded ``PaperBroker`` by default (market scenario ``EXEC_PAPER_SCENARIO``, default
  ``default``), or a ``BrokerRouter`` from
  ``EXEC_BROKER_ROUTES`` (``EQUITY=alpaca,CRYPTO=alpaca,OPTIONS=alpaca,FOREX=paper,COMMODITY=paper``,
  or the same as a JSON object; ``FOREX=oanda,COMMODITY=oanda`` routes FX and metals to OANDA,
  configured by ``OANDA_*``, see ``backend.adapters.oanda.client.OandaConfig.from_env``); only the
  brokers named there are built. Alpaca keys come from
  the function's secrets (passed in) or the environment; ``ALPACA_URL_OVERRIDE`` points every
  Alpaca client at a local server;
- settings: ``ExecSettings.from_env()`` (``EXEC_DRY_RUN`` defaults to 1: dry run);
- identity: ``FirebaseTokenVerifier`` for the project (``GOOGLE_CLOUD_PROJECT``/``GCLOUD_PROJECT``).

A bad configuration raises here (``RoutingConfigError``, ``InvalidInput`` naming the variable); the
API reports it as a 500 with an ERROR log line and tries again on the next request.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Mapping

from backend.logs import log_event

ROUTES_ENV = "EXEC_BROKER_ROUTES"
PAPER_SCENARIO_ENV = "EXEC_PAPER_SCENARIO"

_lock = threading.Lock()
_app: Any = None
_engine: Any = None
_limiter: Any = None


def parse_routes(raw: str) -> dict[str, str | None]:
    """``EQUITY=alpaca,FOREX=paper`` (or a JSON object) → {asset class: broker name}."""
    from backend.adapters.routing import RoutingConfigError

    text = raw.strip()
    if text.startswith("{"):
        import json

        try:
            data = json.loads(text)
        except ValueError as exc:
            raise RoutingConfigError(f"{ROUTES_ENV} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise RoutingConfigError(f"{ROUTES_ENV} must map asset classes to broker names")
        return data
    routes: dict[str, str | None] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        klass, sep, name = part.partition("=")
        if not sep or not klass.strip():
            raise RoutingConfigError(f"{ROUTES_ENV}: expected CLASS=broker, got {part!r}")
        key = klass.strip().upper()
        if key in routes:
            raise RoutingConfigError(f"{ROUTES_ENV}: {key} is routed twice")
        value = name.strip()
        routes[key] = None if value.lower() in ("", "none", "null") else value.lower()
    if not routes:
        raise RoutingConfigError(f"{ROUTES_ENV} is set but names no route")
    return routes


def _paper(env: Mapping[str, str], clock: Any) -> Any:
    from backend.adapters.paper_broker import PaperBroker

    # EXEC_PAPER_SCENARIO: a scenario name (backend/config/scenarios/<name>.json) or a path.
    return PaperBroker((env.get(PAPER_SCENARIO_ENV) or "").strip() or None, clock=clock)


def build_broker(env: Mapping[str, str], secrets: Mapping[str, str | None], clock: Any) -> Any:
    raw = (env.get(ROUTES_ENV) or "").strip()
    if not raw:
        return _paper(env, clock)
    from backend.adapters.routing import BrokerRouter, RoutingConfigError

    routes = parse_routes(raw)
    names = {name for name in routes.values() if name}
    brokers: dict[str, Any] = {}
    for name in sorted(names):
        if name == "alpaca":
            from backend.adapters.alpaca_broker import AlpacaBroker

            brokers[name] = AlpacaBroker(api_key=secrets.get("ALPACA_API_KEY") or env.get("ALPACA_API_KEY"),
                                         secret_key=secrets.get("ALPACA_SECRET_KEY") or env.get("ALPACA_SECRET_KEY"),
                                         url_override=(env.get("ALPACA_URL_OVERRIDE") or None), clock=clock, env=env)
        elif name == "paper":
            brokers[name] = _paper(env, clock)
        elif name == "oanda":  # FX and metals; OANDA_ACCOUNT_ID, OANDA_API_TOKEN, OANDA_ENVIRONMENT, OANDA_BASE_URL
            from backend.adapters.oanda import OandaBroker, OandaConfig

            brokers[name] = OandaBroker(OandaConfig.from_env(env, secrets), clock=clock)
        else:
            raise RoutingConfigError(f"{ROUTES_ENV}: unknown broker {name!r}; known: alpaca, oanda, paper")
    router = BrokerRouter.from_config(routes, brokers)
    log_event("api.broker_routes", routes=router.describe())
    return router


def build_engine(env: Mapping[str, str] | None = None, secrets: Mapping[str, str | None] | None = None) -> Any:
    from backend.adapters.firestore_store import FirestoreStore, make_client
    from backend.domain.clock import SystemClock
    from backend.execution.engine import ExecutionEngine
    from backend.settings import ExecSettings

    env = os.environ if env is None else env
    refuse_emulators_when_deployed(env)
    settings = ExecSettings.from_env(env)
    clock = SystemClock()
    store = FirestoreStore(make_client())
    broker = build_broker(env, secrets or {}, clock)
    engine = ExecutionEngine(broker=broker, store=store, clock=clock, settings=settings)
    log_event("api.engine_ready", dry_run=engine.dry_run, broker=type(broker).__name__,
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
                _app = ApiApp(engine=lambda: get_engine(secrets), verifier=lambda: verifier,
                              history=lambda: history_reader_for(get_engine(secrets).store),
                              rate_limiter=lambda: get_rate_limiter(secrets))
    return _app


def build_rate_limiter(settings: Any, store: Any) -> Any:
    """The per-user / per-tenant limiter (``backend.risk.rate_limit``) on the store's database."""
    from backend.adapters.rate_counters import FirestoreRateCounters, MemoryRateCounters
    from backend.risk.rate_limit import RateLimiter

    counters = FirestoreRateCounters(store.db) if hasattr(store, "db") else MemoryRateCounters()
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


def reset() -> None:
    """Forget the cached app, engine and limiter (tests)."""
    global _app, _engine, _limiter
    with _lock:
        _app = None
        _engine = None
        _limiter = None
