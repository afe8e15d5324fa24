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
from dataclasses import replace
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
           "RoutingConfigError", "secret_source", "secret_sink", "build_venue_pool"]


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


# --------------------------------------------------------------------------- accounts' venues (issue 12)

SECRETS_FILE_ENV = "EXEC_SECRETS_FILE"  # a local secrets file for file:NAME references (emulator stack, tests)
SECRET_MANAGER_ENV = "EXEC_SECRET_MANAGER"  # 1/0; unset: on when deployed (K_SERVICE, FUNCTION_TARGET, K_REVISION)
_DEPLOYED_MARKERS = ("K_SERVICE", "FUNCTION_TARGET", "K_REVISION")


def secret_source(env: Mapping[str, str] | None = None,
                  secrets: Mapping[str, str | None] | None = None) -> Any:
    """Where broker connections' credentials_ref resolve: ``env:NAME`` from ``env`` (plus the
    function's ``secrets``), ``file:NAME`` from ``EXEC_SECRETS_FILE`` when set, Google Secret Manager
    (``projects/…``, cached: TTL 300 s) when ``EXEC_SECRET_MANAGER=1`` or, unset, when deployed."""
    from backend.adapters.secrets import build_secret_source
    from backend.domain.errors import InvalidInput

    env = os.environ if env is None else env
    environ: Mapping[str, str] = env
    extra = {name: value for name, value in (secrets or {}).items() if value}
    if extra:
        environ = {**env, **extra}
    raw = (env.get(SECRET_MANAGER_ENV) or "").strip().lower()
    if raw in ("1", "true", "yes", "on"):
        use_gsm = True
    elif raw in ("0", "false", "no", "off"):
        use_gsm = False
    elif not raw:
        use_gsm = any((env.get(name) or "").strip() for name in _DEPLOYED_MARKERS)
    else:
        raise InvalidInput(SECRET_MANAGER_ENV, f"must be 1 or 0, got {raw[:20]!r}")
    local_file = (env.get(SECRETS_FILE_ENV) or "").strip() or None
    return build_secret_source(environ=environ, local_file=local_file, secret_manager=use_gsm)


def secret_sink(env: Mapping[str, str] | None = None) -> Any:
    """Where the admin API writes connection credentials (issue 13, ``backend/adapters/secret_sink.py``):
    ``EXEC_SECRET_SINK`` = ``file`` (the ``EXEC_SECRETS_FILE`` the source reads), ``file:<path>``,
    ``gsm:<project>`` (Secret Manager versions), or unset/``none`` (no sink: credentials are refused)."""
    from backend.adapters.secret_sink import sink_from_env

    env = os.environ if env is None else env
    return sink_from_env(env, default_file=(env.get(SECRETS_FILE_ENV) or "").strip() or None)


def build_venue_pool(env: Mapping[str, str] | None, secrets: Any, clock: Clock, store: Any, deployment: Any,
                     *, deployment_books: bool = True) -> Any:
    """The ``VenueResolver`` of bound accounts (``backend/adapters/venue_pool.py``). ``secrets``: a
    ``SecretSource``, or the function's secrets mapping / None (then ``secret_source(env, secrets)``);
    ``store``: the ``AccountStore``; ``deployment``: the deployment's venue(s) from ``build_broker``
    (the same object the engine routes with, so the embedded paper venue is shared);
    ``deployment_books=False``: accounts on the ``deployment`` connection trade the deployment's
    brokers as given, without ``for_account`` (a venue instance a library caller passed in)."""
    from backend.adapters.venue_pool import VenuePool

    env = os.environ if env is None else env
    if secrets is None or isinstance(secrets, Mapping):
        secrets = secret_source(env, secrets)
    return VenuePool(store, secrets, deployment=deployment, paper_venue=lambda: paper_broker(env, clock),
                     clock=clock, deployment_books=deployment_books)


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
    if settings.accounts_mode is None:  # deployed: only account documents written by admins count
        settings = replace(settings, accounts_mode="strict")
    clock = clock or SystemClock()
    store = store if store is not None else firestore_store()
    broker = build_broker(env, secrets or {}, clock)
    # the deployment's paper venue keeps one book per account (issue 12)
    return ExecutionEngine(broker=broker, store=store, clock=clock, settings=settings, books_per_account=True)


def group_executor(engine: Any) -> Any:
    """The engine's group executor: the same venues (router), store, clock, settings and gate."""
    from backend.execution.group_executor import GroupExecutor

    return GroupExecutor(engine.venues, engine.store, engine.clock, engine.settings, engine.settings.group,
                         kill_switches=getattr(engine.store, "kill_switches", None),
                         max_drive_seconds=engine.group_drive_seconds, gate=engine.gate,
                         accounts=getattr(engine, "accounts", None), venue_pool=getattr(engine, "venue_pool", None))


def preload() -> None:
    """Import the engine's modules and the adapters ``build_engine`` builds a deployed engine from
    (Firestore store, paper venue), without building anything: the api instance's module import
    calls it before the server listens (issue 17, ``backend.api.wiring.preload_api``)."""
    import concurrent.futures.thread  # noqa: F401 - the Firestore store's read pool
    import netrc  # noqa: F401 - what requests imports on its first call (the token verifier's warm-up)
    import shlex  # noqa: F401
    import grpc._interceptor  # noqa: F401 - the Firestore channel's first call (modules only: no channel)

    import backend.adapters.firestore_store  # noqa: F401
    import backend.adapters.paper_broker  # noqa: F401
    import backend.adapters.rate_counters  # noqa: F401
    import backend.adapters.secrets  # noqa: F401
    import backend.adapters.venue_pool  # noqa: F401
    import backend.execution.engine  # noqa: F401
    import backend.execution.groups  # noqa: F401 - the settings' group section (build_settings) is typed by it
    import backend.risk.rate_limit  # noqa: F401
    import backend.tax.election  # noqa: F401 - the first fill's lot method


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
