"""Build the engine and the API once per process, from the environment (lazily, cached).

- store: ``FirestoreStore(make_client())`` (the emulator with anonymous credentials when
  ``FIRESTORE_EMULATOR_HOST`` is set);
- broker: the embedded ``PaperBroker`` by default (market scenario ``EXEC_PAPER_SCENARIO``, default
  ``default``), or a ``BrokerRouter`` from
  ``EXEC_BROKER_ROUTES`` (``EQUITY=alpaca,CRYPTO=alpaca,OPTIONS=alpaca,FOREX=paper,COMMODITY=paper``,
  or the same as a JSON object); only the brokers named there are built. Alpaca keys come from
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
        else:
            raise RoutingConfigError(f"{ROUTES_ENV}: unknown broker {name!r}; known: alpaca, paper")
    router = BrokerRouter.from_config(routes, brokers)
    log_event("api.broker_routes", routes=router.describe())
    return router


def build_engine(env: Mapping[str, str] | None = None, secrets: Mapping[str, str | None] | None = None) -> Any:
    from backend.adapters.firestore_store import FirestoreStore, make_client
    from backend.domain.clock import SystemClock
    from backend.execution.engine import ExecutionEngine
    from backend.settings import ExecSettings

    env = os.environ if env is None else env
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

        verifier = FirebaseTokenVerifier()
        with _lock:
            if _app is None:
                _app = ApiApp(engine=lambda: get_engine(secrets), verifier=lambda: verifier,
                              history=lambda: history_reader_for(get_engine(secrets).store))
    return _app


def reset() -> None:
    """Forget the cached app and engine (tests)."""
    global _app, _engine
    with _lock:
        _app = None
        _engine = None
