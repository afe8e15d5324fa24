"""The one composition root: settings, store, venues (routing), smart router, risk, the pre-trade
gate, the engine and the group executor, built from the environment (+ the function's secrets).

Everything that picks an adapter lives here; the core receives what it needs. Callers:
``backend/api/wiring.py`` (the deployed functions: Firestore, the configured venues),
``ExecutionEngine()`` with no arguments (seed 001: the defaults below), ``engine.default_store()``
and the engine's per-call ``GroupExecutor``. Adapters are imported lazily (inside the builders) so
importing the engine never imports alpaca-py or google-cloud-firestore (cold starts).

- settings: :class:`backend.settings.ExecSettings` (``EXEC_*`` and ``EXECUTION_ENGINE_*``, the group
  gates' ``GroupSettings`` included), validated once here;
- store: Firestore when ``FIRESTORE_EMULATOR_HOST`` is set or ``EXEC_STORE=firestore``, else the
  in-memory store (with a warning); the API always uses Firestore;
- venues: the embedded ``PaperBroker`` by default (market scenario ``EXEC_PAPER_SCENARIO``), or the
  brokers named in ``EXEC_BROKER_ROUTES`` (``EQUITY=alpaca,CRYPTO=alpaca,OPTIONS=alpaca,FOREX=paper,
  COMMODITY=paper`` or the same as a JSON object; ``FOREX=oanda,COMMODITY=oanda`` routes FX and metals
  to OANDA, configured by ``OANDA_*``); only the brokers named there are built. Alpaca keys come from
  the secrets (passed in) or the environment; ``ALPACA_URL_OVERRIDE`` points every Alpaca client at
  a local server. The engine always routes through one :class:`BrokerRouter` (a single venue is a
  router with one route).

A bad configuration raises here (``RoutingConfigError``, ``InvalidInput`` naming the variable).
"""
from __future__ import annotations

import os
from typing import Any, Callable, Mapping

from backend.domain.clock import Clock, SystemClock
from backend.execution.broker_router import ROUTES_ENV_VAR, BrokerRouter, RoutingConfigError, as_router, parse_routes
from backend.logs import log_event
from backend.settings import ExecSettings

PAPER_SCENARIO_ENV = "EXEC_PAPER_SCENARIO"
STORE_ENV = "EXEC_STORE"

__all__ = ["ROUTES_ENV_VAR", "PAPER_SCENARIO_ENV", "build_settings", "build_store", "firestore_store",
           "memory_store", "paper_broker", "build_broker", "build_router", "build_smart_router", "build_risk",
           "build_gate", "build_engine", "group_executor", "rate_counters", "seed_adapter", "parse_routes",
           "RoutingConfigError"]


# --------------------------------------------------------------------------- settings and store

def build_settings(env: Mapping[str, str] | None = None) -> ExecSettings:
    return ExecSettings.from_env(os.environ if env is None else env)


def firestore_store() -> Any:
    from backend.adapters.firestore_store import FirestoreStore, make_client

    return FirestoreStore(make_client())


def memory_store() -> Any:
    from backend.adapters.memory_store import InMemoryStore

    return InMemoryStore()


def build_store(env: Mapping[str, str] | None = None) -> Any:
    """Firestore when an emulator or project is configured, else an in-memory store (with a warning)."""
    env = os.environ if env is None else env
    if env.get("FIRESTORE_EMULATOR_HOST") or env.get(STORE_ENV) == "firestore":
        from backend.adapters.firestore_store import FirestoreStore

        return FirestoreStore.from_env()
    log_event("exec.store_in_memory", severity="WARNING",
              note="no Firestore configured: ledger and history are kept in memory only")
    return memory_store()


# --------------------------------------------------------------------------- venues

def paper_broker(env: Mapping[str, str] | None = None, clock: Clock | None = None) -> Any:
    """The embedded paper venue; ``EXEC_PAPER_SCENARIO``: a scenario name
    (backend/config/scenarios/<name>.json) or a path."""
    from backend.adapters.paper_broker import PaperBroker

    scenario = ((env or {}).get(PAPER_SCENARIO_ENV) or "").strip() or None
    return PaperBroker(scenario, clock=clock) if clock is not None else PaperBroker(scenario)


def build_broker(env: Mapping[str, str], secrets: Mapping[str, str | None], clock: Clock) -> Any:
    """The venue(s) from ``EXEC_BROKER_ROUTES``: a ``BrokerRouter``, or the paper broker when unset."""
    raw = (env.get(ROUTES_ENV_VAR) or "").strip()
    if not raw:
        return paper_broker(env, clock)
    routes = parse_routes(raw)
    brokers: dict[str, Any] = {}
    for name in sorted({name for name in routes.values() if name}):
        if name == "alpaca":
            from backend.adapters.alpaca_broker import AlpacaBroker

            brokers[name] = AlpacaBroker(api_key=secrets.get("ALPACA_API_KEY") or env.get("ALPACA_API_KEY"),
                                         secret_key=secrets.get("ALPACA_SECRET_KEY") or env.get("ALPACA_SECRET_KEY"),
                                         url_override=(env.get("ALPACA_URL_OVERRIDE") or None), clock=clock, env=env)
        elif name == "paper":
            brokers[name] = paper_broker(env, clock)
        elif name == "oanda":  # FX and metals; OANDA_ACCOUNT_ID, OANDA_API_TOKEN, OANDA_ENVIRONMENT, OANDA_BASE_URL
            from backend.adapters.oanda import OandaBroker, OandaConfig

            brokers[name] = OandaBroker(OandaConfig.from_env(env, secrets), clock=clock)
        else:
            raise RoutingConfigError(f"{ROUTES_ENV_VAR}: unknown broker {name!r}; known: alpaca, oanda, paper")
    router = BrokerRouter.from_config(routes, brokers)
    log_event("api.broker_routes", routes=router.describe())
    return router


def build_router(broker: Any) -> BrokerRouter:
    """The one router type the engine and the group executor use (one venue = one route)."""
    return as_router(broker)


# --------------------------------------------------------------------------- core services

def build_smart_router(settings: ExecSettings) -> Any:
    from backend.execution.router import SmartRouter

    return SmartRouter(settings.max_spread_pct)


def build_risk(settings: ExecSettings) -> Any:
    from backend.risk.manager import RiskManager

    return RiskManager(settings=settings)


def build_gate(risk: Any, dry_run: Callable[[], bool], settings: ExecSettings | None = None) -> Any:
    """The one pre-trade gate (backend/risk/gate.py) for single orders, group legs and rollbacks."""
    from backend.risk.gate import PreTradeGate

    return PreTradeGate(risk, dry_run, env_kill_switch=bool(settings.kill_switch) if settings is not None else False)


def build_engine(env: Mapping[str, str] | None = None, secrets: Mapping[str, str | None] | None = None, *,
                 store: Any = None, clock: Clock | None = None) -> Any:
    """The deployed engine: settings and venues from ``env``, Firestore unless a store is given."""
    from backend.execution.engine import ExecutionEngine

    env = os.environ if env is None else env
    settings = build_settings(env)
    clock = clock or SystemClock()
    store = store if store is not None else firestore_store()
    broker = build_broker(env, secrets or {}, clock)
    return ExecutionEngine(broker=broker, store=store, clock=clock, settings=settings)


def group_executor(engine: Any) -> Any:
    """The engine's group executor: the same venues (router), store, clock, settings and gate."""
    from backend.execution.group_executor import GroupExecutor

    return GroupExecutor(engine.venues, engine.store, engine.clock, engine.settings, engine.settings.group,
                         kill_switches=getattr(engine.store, "kill_switches", None),
                         max_drive_seconds=engine.group_drive_seconds, gate=engine.gate)


def rate_counters(store: Any) -> Any:
    """The rate limiter's shared counters on the store's database (in memory for the memory store)."""
    from backend.adapters.rate_counters import FirestoreRateCounters, MemoryRateCounters

    return FirestoreRateCounters(store.db) if hasattr(store, "db") else MemoryRateCounters()


def seed_adapter(name: str) -> Any:
    """The adapter classes seed 001 imports from ``backend.execution.engine`` (loaded on first use)."""
    if name == "AlpacaBroker":
        from backend.adapters.alpaca_broker import AlpacaBroker

        return AlpacaBroker
    if name == "PaperBroker":
        from backend.adapters.paper_broker import PaperBroker

        return PaperBroker
    raise AttributeError(name)
