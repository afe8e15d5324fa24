"""The venues of bound accounts (issue 12): ``VenuePool.router_for(tenant_id, binding)`` gives the
``BrokerRouter`` whose brokers trade exactly ``binding.venue_account_id``. Implements the
``VenueResolver`` port (``backend/ports/accounts.py``); built by ``backend.bootstrap.build_venue_pool``.

By connection (``tenants/{t}/broker_connections/{connection_id}``, read with
``AccountStore.get_connection``):

==================  ===================================================================================
connection          the account's router
==================  ===================================================================================
``deployment``      (reserved, no document) the deployment's own router (``EXEC_BROKER_ROUTES``; the
                    embedded paper venue by default) with each route's broker ``.for_account(venue
                    account id)`` where it has that method (``PaperBroker``: a book of the one shared
                    simulated venue), else the broker itself (a single-account venue: env-keyed Alpaca,
                    OANDA from ``OANDA_*``)
``paper``           one simulated venue per (tenant, connection) for the life of the process (it holds
                    the books: never rebuilt, never evicted); ``PaperBroker.for_account``
``alpaca_broker``   one ``AlpacaBrokerApiConnection`` per connection (one alpaca-py ``BrokerClient`` for
                    all its accounts), ``.account(venue account id)``
``alpaca_trading``  one ``AlpacaBroker(key_id, secret_key, url_override=base_url)`` per connection (the
                    key pair *is* the one account)
``oanda``           ``OandaBroker(OandaConfig(account_id=venue account id, token, practice|live,
                    base_url))``; every account of the connection shares the process's one kept-alive
                    ``httpx`` client for that host and token
==================  ===================================================================================

Every router but ``deployment``'s is a single-venue router: an asset class the venue does not trade
is ``NO_VENUE_FOR_ASSET_CLASS`` (e.g. FOREX on an Alpaca account).

Caching (per process):

- A connection is read at most once per ``connection_ttl_seconds`` (default ``CONNECTION_TTL_SECONDS``
  = 30 s) per (tenant, connection). On a re-read its credentials are read again (through the secret
  source and its own cache); when the document (``updated_at`` or any field) or the credentials
  changed, the connection's clients are built anew and its routers dropped. So an admin's edit or a
  key rotation reaches every order within the TTL (plus the secret source's TTL for Secret Manager).
  If the store cannot be read (an outage, not a missing document), a loaded connection keeps serving
  for ``STALE_GRACE_SECONDS`` (300 s) past its TTL with a ``venues.connection_stale_served`` WARNING,
  so rollbacks and the sweeper are not stopped by a blip; then the store's error is raised. A
  document that does not parse is ``VenueUnavailable`` (an admin's bad write, not the caller's input).
- Routers are cached per (tenant, connection, ``updated_at``, build generation, venue account id) in
  an LRU bounded by ``max_routers`` (default 1024).

Failures: a missing connection document, credentials that cannot be read (``SecretUnavailable``), or
a binding that no longer fits its connection (venue changed, venue account id of the wrong shape)
raise ``VenueUnavailable`` (coded ``VENUE_UNAVAILABLE``) before anything is sent, with a
``venues.unavailable`` WARNING line. No message, log line or ``repr`` of this module contains a
credential: values travel as ``Secret`` until the adapter's constructor (``reveal()`` only there),
and the credential fingerprint used to notice a rotation is kept in memory, never logged.

Deployment accounts share one simulated venue across tenants: a paper book id (the venue account id)
used by one tenant is refused to another in this process (``VenueUnavailable``), so two tenants'
trades can never net in one book. Whoever provisions accounts on ``deployment`` must therefore make
venue account ids unique across tenants.
"""
from __future__ import annotations

import hashlib
import itertools
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from backend.domain.accounts import CREDENTIAL_FIELDS, BrokerConnection, Environment, Venue, venue_account_id_problem
from backend.domain.clock import Clock, SystemClock
from backend.domain.errors import InvalidInput
from backend.execution.broker_router import BrokerRouter, as_router
from backend.logs import log_event
from backend.ports.accounts import (
    DEPLOYMENT_CONNECTION_ID,
    AccountBinding,
    AccountStore,
    VenueUnavailable,
)
from backend.ports.secrets import Secret, SecretSource, SecretUnavailable, read_credentials

__all__ = ["VenuePool", "VenueUnavailable", "CONNECTION_TTL_SECONDS", "STALE_GRACE_SECONDS", "MAX_ROUTERS"]

CONNECTION_TTL_SECONDS = 30.0
STALE_GRACE_SECONDS = 300.0  # a loaded connection serves on past its TTL while the store cannot be read
MAX_ROUTERS = 1024
DEFAULT_TIMEOUT_SECONDS = 10.0

_GENERATIONS = itertools.count(1)


@dataclass
class _ConnectionEntry:
    """One loaded connection and what was built from it (clients shared by all its accounts)."""

    connection: BrokerConnection
    fingerprint: str  # SHA-256 of the credential fields; "" without credentials. Never logged.
    venue: Any  # AlpacaBrokerApiConnection | AlpacaBroker | PaperBroker | the OANDA token (Secret)
    generation: int
    loaded_at: float


def _fingerprint(credentials: Mapping[str, Secret]) -> str:
    if not credentials:
        return ""
    digest = hashlib.sha256()
    for name in sorted(credentials):
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(credentials[name].reveal().encode())
        digest.update(b"\0")
    return digest.hexdigest()


class VenuePool:
    """``VenueResolver``: the router of a bound account, cached per process (module docstring).

    ``store``: an ``AccountStore`` (``get_connection``). ``secrets``: a ``SecretSource``.
    ``deployment``: the deployment's venue(s), as ``bootstrap.build_broker`` builds them (a
    ``BrokerRouter`` or one broker). ``paper_venue``: builds the base ``PaperBroker`` of a new
    ``paper`` connection (the composition root passes one on the configured scenario and clock).
    ``deployment_books=False``: accounts on the ``deployment`` connection trade the deployment's
    brokers as given (no ``for_account``)."""

    def __init__(self, store: AccountStore, secrets: SecretSource, *, deployment: Any,
                 paper_venue: Callable[[], Any] | None = None, clock: Clock | None = None,
                 connection_ttl_seconds: float = CONNECTION_TTL_SECONDS, max_routers: int = MAX_ROUTERS,
                 timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS, deployment_books: bool = True):
        if connection_ttl_seconds < 0 or max_routers < 1 or timeout_seconds <= 0:
            raise ValueError("connection_ttl_seconds must be >= 0, max_routers >= 1, timeout_seconds > 0")
        self._store = store
        self._secrets = secrets
        self._deployment = as_router(deployment)
        # False: the deployment's brokers are traded as given (a library caller passed its own venue
        # instance: that instance is the venue account), never split into per-account books
        self.deployment_books = bool(deployment_books)
        self._paper_factory = paper_venue
        self._clock: Clock = clock or SystemClock()
        self.connection_ttl_seconds = float(connection_ttl_seconds)
        self.stale_grace_seconds = STALE_GRACE_SECONDS
        self.max_routers = int(max_routers)
        self.timeout_seconds = float(timeout_seconds)
        self._connections: dict[tuple[str, str], _ConnectionEntry] = {}
        self._paper: dict[tuple[str, str], Any] = {}  # (tenant, connection) → base PaperBroker (holds books)
        self._routers: OrderedDict[tuple[Any, ...], BrokerRouter] = OrderedDict()
        self._deployment_book_owners: dict[str, str] = {}  # venue account id → tenant (shared simulated venue)
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}

    def __repr__(self) -> str:
        return (f"VenuePool(connections={len(self._connections)}, routers={len(self._routers)}, "
                f"connection_ttl_seconds={self.connection_ttl_seconds})")

    # ------------------------------------------------------------------ the port

    def router_for(self, tenant_id: str, binding: AccountBinding) -> BrokerRouter:
        """The router trading ``binding.venue_account_id`` only; ``VenueUnavailable`` when it cannot
        be built."""
        if binding.connection_id == DEPLOYMENT_CONNECTION_ID:
            return self._deployment_router(tenant_id, binding.venue_account_id)
        entry = self._connection(tenant_id, binding.connection_id)
        self._check_binding(tenant_id, entry.connection, binding)
        key = (tenant_id, binding.connection_id, entry.connection.updated_at, entry.generation,
               binding.venue_account_id)
        router = self._cached_router(key)
        if router is not None:
            return router
        router = BrokerRouter.single(self._account_broker(entry, binding.venue_account_id))
        router = self._store_router(key, router)
        log_event("venues.router_built", tenant_id=tenant_id, connection_id=binding.connection_id,
                  venue=entry.connection.venue.value, venue_account_id=binding.venue_account_id)
        return router

    # ------------------------------------------------------------------ maintenance

    def invalidate(self, tenant_id: str | None = None, connection_id: str | None = None) -> None:
        """Forget loaded connections (all, one tenant's, or one) and their cached credentials, so the
        next order re-reads both: call it when a venue refuses the credentials (a rotated key). Paper
        venues (their books) are kept."""
        with self._guard:
            keys = [key for key in self._connections if (tenant_id is None or key[0] == tenant_id)
                    and (connection_id is None or key[1] == connection_id)]
            dropped = [self._connections.pop(key) for key in keys]
            for key in keys:
                self._drop_routers(*key)
        for entry in dropped:
            ref = entry.connection.credentials_ref
            forget = getattr(self._secrets, "invalidate", None)
            if ref is not None and forget is not None:
                forget(ref)

    # ------------------------------------------------------------------ deployment

    def _deployment_router(self, tenant_id: str, venue_account_id: str) -> BrokerRouter:
        key = (tenant_id, DEPLOYMENT_CONNECTION_ID, None, 0, venue_account_id)
        router = self._cached_router(key)
        if router is not None:
            return router
        scoped: dict[int, Any] = {}

        def for_account(broker: Any) -> Any:
            # declared by the venue's class (PaperBroker): a wrapper that only forwards attributes
            # (__getattr__: a fault injector, a recorder) is one venue account, traded as it is
            declared = self.deployment_books and callable(getattr(type(broker), "for_account", None))
            make = getattr(broker, "for_account", None) if declared else None
            if make is None:
                return broker  # a single-account venue: every deployment account trades it
            if id(broker) not in scoped:
                self._claim_deployment_book(tenant_id, venue_account_id)
                scoped[id(broker)] = make(venue_account_id)
            return scoped[id(broker)]

        base = self._deployment
        if base.venue is not None:
            router = BrokerRouter.single(for_account(base.venue))
        else:
            router = BrokerRouter({klass: for_account(broker) for klass, broker in base.routes.items()})
        router = self._store_router(key, router)
        log_event("venues.router_built", tenant_id=tenant_id, connection_id=DEPLOYMENT_CONNECTION_ID,
                  venue="deployment", venue_account_id=venue_account_id, routes=router.describe())
        return router

    def _claim_deployment_book(self, tenant_id: str, venue_account_id: str) -> None:
        with self._guard:
            owner = self._deployment_book_owners.setdefault(venue_account_id, tenant_id)
        if owner != tenant_id:
            self._unavailable(tenant_id, DEPLOYMENT_CONNECTION_ID,
                              f"venue account {venue_account_id} of the deployment connection is in use by "
                              "another tenant (deployment venue account ids must be unique across tenants)")

    # ------------------------------------------------------------------ connections

    def _lock_for(self, key: tuple[str, str]) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def _fresh(self, entry: _ConnectionEntry | None, now: float) -> bool:
        return entry is not None and now - entry.loaded_at < self.connection_ttl_seconds

    def _connection(self, tenant_id: str, connection_id: str) -> _ConnectionEntry:
        key = (tenant_id, connection_id)
        entry = self._connections.get(key)
        if self._fresh(entry, self._clock.monotonic()):
            return entry  # type: ignore[return-value]
        with self._lock_for(key):
            now = self._clock.monotonic()
            entry = self._connections.get(key)
            if self._fresh(entry, now):
                return entry  # type: ignore[return-value]  # reloaded by another thread meanwhile
            try:
                connection = self._store.get_connection(tenant_id, connection_id)
            except InvalidInput as exc:  # a document an admin client wrote wrong: not the caller's input
                self._forget(key)
                self._unavailable(tenant_id, connection_id, f"the connection document is invalid ({exc})")
            except Exception as exc:  # the store did not answer: keep trading on what was loaded, briefly
                if entry is not None and now - entry.loaded_at < self.connection_ttl_seconds + self.stale_grace_seconds:
                    log_event("venues.connection_stale_served", "WARNING", tenant_id=tenant_id,
                              connection_id=connection_id, error=type(exc).__name__,
                              stale_seconds=round(now - entry.loaded_at - self.connection_ttl_seconds, 3))
                    return entry
                raise
            if connection is None:
                self._forget(key)
                self._unavailable(tenant_id, connection_id, "no such connection document")
            credentials = self._credentials(tenant_id, connection)
            fingerprint = _fingerprint(credentials)
            if entry is not None and entry.connection == connection and entry.fingerprint == fingerprint:
                entry.loaded_at = now  # unchanged: keep the clients and routers
                return entry
            entry = _ConnectionEntry(connection=connection, fingerprint=fingerprint,
                                     venue=self._build_venue(tenant_id, connection, credentials),
                                     generation=next(_GENERATIONS), loaded_at=now)
            with self._guard:
                self._drop_routers(*key)
                self._connections[key] = entry
            log_event("venues.connection_loaded", tenant_id=tenant_id, connection_id=connection_id,
                      venue=connection.venue.value, environment=connection.environment.value,
                      base_url=connection.base_url, updated_at=connection.updated_at,
                      credentials_ref=None if connection.credentials_ref is None else connection.credentials_ref.text)
            return entry

    def _forget(self, key: tuple[str, str]) -> None:
        with self._guard:
            self._connections.pop(key, None)
            self._drop_routers(*key)

    def _credentials(self, tenant_id: str, connection: BrokerConnection) -> dict[str, Secret]:
        fields = CREDENTIAL_FIELDS[connection.venue]
        if not fields:
            return {}
        if connection.credentials_ref is None:  # the domain refuses this; defensive
            self._unavailable(tenant_id, connection.connection_id, "the connection has no credentials_ref")
        try:
            return read_credentials(self._secrets, connection.credentials_ref, fields)
        except SecretUnavailable as exc:  # names the reference and a reason, never the value
            self._unavailable(tenant_id, connection.connection_id, f"credentials unavailable: {exc}")
            raise  # unreachable: _unavailable raises

    def _build_venue(self, tenant_id: str, connection: BrokerConnection, credentials: Mapping[str, Secret]) -> Any:
        """What the accounts of ``connection`` share (no network: every adapter connects lazily)."""
        venue = connection.venue
        if venue is Venue.ALPACA_BROKER:
            from backend.adapters.alpaca_broker_api import AlpacaBrokerApiConnection

            return AlpacaBrokerApiConnection(credentials["key_id"].reveal(), credentials["secret_key"].reveal(),
                                             sandbox=connection.environment is not Environment.LIVE,
                                             url_override=connection.base_url, timeout_seconds=self.timeout_seconds)
        if venue is Venue.ALPACA_TRADING:
            from backend.adapters.alpaca_broker import AlpacaBroker

            return AlpacaBroker(credentials["key_id"].reveal(), credentials["secret_key"].reveal(),
                                paper=connection.environment is not Environment.LIVE,
                                url_override=connection.base_url, timeout_seconds=self.timeout_seconds,
                                clock=self._clock, env={})
        if venue is Venue.OANDA:
            return credentials["token"]  # one OandaBroker per account; the httpx client is shared per token
        if venue is Venue.PAPER:
            return self._paper_venue(tenant_id, connection.connection_id)
        self._unavailable(tenant_id, connection.connection_id, f"venue {venue.value} is not supported here")

    def _paper_venue(self, tenant_id: str, connection_id: str) -> Any:
        key = (tenant_id, connection_id)
        with self._guard:
            base = self._paper.get(key)
            if base is None:
                if self._paper_factory is not None:
                    base = self._paper_factory()
                else:
                    from backend.adapters.paper_broker import PaperBroker

                    base = PaperBroker(clock=self._clock)
                self._paper[key] = base
            return base

    def _check_binding(self, tenant_id: str, connection: BrokerConnection, binding: AccountBinding) -> None:
        if binding.venue != connection.venue.value:
            self._unavailable(tenant_id, connection.connection_id,
                              f"account {binding.account_id} was bound to venue {binding.venue}; the connection "
                              f"is now {connection.venue.value}")
        problem = venue_account_id_problem(connection.venue, binding.venue_account_id)
        if problem is not None:
            self._unavailable(tenant_id, connection.connection_id,
                              f"account {binding.account_id}: venue_account_id {problem}")

    def _account_broker(self, entry: _ConnectionEntry, venue_account_id: str) -> Any:
        connection = entry.connection
        if connection.venue is Venue.ALPACA_BROKER:
            return entry.venue.account(venue_account_id, clock=self._clock)
        if connection.venue is Venue.ALPACA_TRADING:
            return entry.venue
        if connection.venue is Venue.PAPER:
            return entry.venue.for_account(venue_account_id)
        from backend.adapters.oanda import OandaBroker, OandaConfig

        config = OandaConfig(account_id=venue_account_id, token=entry.venue.reveal(),
                             environment="live" if connection.environment is Environment.LIVE else "practice",
                             base_url=connection.base_url, timeout_seconds=self.timeout_seconds)
        return OandaBroker(config, clock=self._clock)

    # ------------------------------------------------------------------ routers (LRU)

    def _cached_router(self, key: tuple[Any, ...]) -> BrokerRouter | None:
        with self._guard:
            router = self._routers.get(key)
            if router is not None:
                self._routers.move_to_end(key)
            return router

    def _store_router(self, key: tuple[Any, ...], router: BrokerRouter) -> BrokerRouter:
        with self._guard:
            existing = self._routers.get(key)
            if existing is not None:  # built by another thread meanwhile: one router per key
                self._routers.move_to_end(key)
                return existing
            self._routers[key] = router
            while len(self._routers) > self.max_routers:
                self._routers.popitem(last=False)
            return router

    def _drop_routers(self, tenant_id: str, connection_id: str) -> None:
        """Under ``_guard``."""
        for key in [k for k in self._routers if k[0] == tenant_id and k[1] == connection_id]:
            del self._routers[key]

    # ------------------------------------------------------------------ failures

    def _unavailable(self, tenant_id: str, connection_id: str, reason: str) -> None:
        log_event("venues.unavailable", "WARNING", tenant_id=tenant_id, connection_id=connection_id, reason=reason)
        raise VenueUnavailable(f"connection {connection_id}: {reason}")

    # ------------------------------------------------------------------ introspection (tests, health)

    def shared_venue(self, tenant_id: str, connection_id: str) -> Any:
        """What every account of a loaded connection shares (its ``AlpacaBrokerApiConnection``,
        ``AlpacaBroker`` or base ``PaperBroker``; for OANDA the token as a ``Secret``), or None when
        the connection is not loaded."""
        entry = self._connections.get((tenant_id, connection_id))
        return None if entry is None else entry.venue
