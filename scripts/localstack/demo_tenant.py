"""The demo tenant of the local stack (issue 12 item 7, issue 14 item 7): its venues and the admin
writes that give its users accounts.

- ``DemoVenues`` — the local venue servers of a run, threads of the calling process: the OANDA
  v20-compatible server (tests/support/oanda_server.py) always, for FOREX/COMMODITY, and with
  ``--alpaca`` the Alpaca-compatible server (tests/support/alpaca_server.py) whose Broker API holds
  one venue account per trader. Their credentials are random per run and reach the functions only
  through their environment (``functions_env``): connection documents name them by reference
  (``env:DEMO_...``, resolved by ``backend.bootstrap.secret_source``), never by value.
- ``write_connection`` / ``write_account`` / ``write_member`` — the documents of
  docs/ARCHITECTURE.md "Accounts", written with the emulator's admin credentials (``owner``: the
  rules are bypassed, as the Admin SDK or the admin API would write them); values built and checked by
  ``backend.domain.accounts`` (``BrokerConnection``, ``Account``) so a wrong document cannot be written.
- ``provision_paper_trader`` — one user's account on the tenant's ``paper`` connection, made their
  default (used by tests/integration/test_local_stack.py).

The functions run with strict accounts (``EXEC_ACCOUNTS`` unset, the deployed default): only these
documents count.
"""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from scripts.localstack.clients import FirestoreRest, User
from scripts.localstack.suite import EmulatorSuite, StackError
from tests.support.firestore_rest import Timestamp

TENANT = "acme_corp"
# The demo tenant's accounts (admin-written documents; see the module docstring)
PAPER_CONNECTION = "demo_paper"
ALPACA_CONNECTION = "demo_alpaca"
OANDA_CONNECTION = "demo_oanda"
ALPACA_CREDENTIALS_ENV = "DEMO_ALPACA_BROKER_CREDENTIALS"  # the functions' env only: {"key_id", "secret_key"}
OANDA_CREDENTIALS_ENV = "DEMO_OANDA_CREDENTIALS"  # the functions' env only: {"token"}
TRADER_ACCOUNT = "trader_main"
TRADER2_ACCOUNT = "trader2_main"
FX_ACCOUNT = "trader_fx"
VENUE_SCENARIO = "wide_spread"  # the local venues' market, as EXEC_PAPER_SCENARIO for the paper venue

@dataclass
class DemoVenues:
    """The local venue servers of a run (threads of this process) and the credentials the functions
    get in their environment; the connection documents only name them (``env:NAME``).

    ``oanda``: ``LocalOandaServer`` for FOREX/COMMODITY (always started: a thread, cheap).
    ``alpaca``: the local Alpaca-compatible server, whose Broker API holds the traders' accounts
    (``--alpaca``); without it the traders' accounts are on the ``paper`` venue, simulated inside the
    functions. The credentials are random per run and exist only here and in the functions' env."""

    alpaca: Any = None
    oanda: Any = None
    credentials: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def start(cls, *, alpaca: bool = False, oanda: bool = True, scenario: str = VENUE_SCENARIO) -> "DemoVenues":
        venues = cls()
        try:
            if oanda:
                from tests.support.oanda_server import LocalOandaServer

                token = secrets.token_urlsafe(24)
                venues.oanda = LocalOandaServer(scenario, token=token).start()
                venues.credentials[OANDA_CREDENTIALS_ENV] = json.dumps({"token": token})
            if alpaca:
                from tests.support.alpaca_server import LocalAlpacaServer

                venues.alpaca = LocalAlpacaServer(scenario).start()
                venues.credentials[ALPACA_CREDENTIALS_ENV] = json.dumps(
                    {"key_id": "PKDEMO" + secrets.token_hex(6).upper(), "secret_key": secrets.token_urlsafe(24)})
        except BaseException:
            venues.stop()
            raise
        return venues

    @property
    def functions_env(self) -> dict[str, str]:
        """What ``EmulatorSuite(functions_env=...)`` adds to the functions' environment."""
        return dict(self.credentials)

    @property
    def broker(self) -> str:
        """The venue name the traders' main accounts answer with (``broker`` of a result)."""
        return "alpaca_broker" if self.alpaca is not None else "paper"

    def secret_values(self) -> list[str]:
        """Every credential value (to check that none of them is in Firestore)."""
        return [v for raw in self.credentials.values() for v in json.loads(raw).values()]

    def describe(self) -> str:
        parts = [f"traders' accounts on {ALPACA_CONNECTION} (alpaca_broker, local Alpaca-compatible server "
                 f"{self.alpaca.url})" if self.alpaca is not None else
                 f"traders' accounts on {PAPER_CONNECTION} (paper venue inside the functions)"]
        if self.oanda is not None:
            parts.append(f"FX on {OANDA_CONNECTION} (oanda, local OANDA v20 server {self.oanda.url})")
        return "; ".join(parts)

    def stop(self) -> None:
        for name in ("alpaca", "oanda"):
            server = getattr(self, name)
            if server is not None:
                setattr(self, name, None)
                server.stop()


def _rest_value(value: Any) -> Any:
    """A document as the REST codec takes it (datetimes as ``Timestamp``)."""
    if isinstance(value, datetime):
        return Timestamp(value)
    if isinstance(value, Mapping):
        return {k: _rest_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rest_value(v) for v in value]
    return value


def write_connection(admin: FirestoreRest, connection: Any, tenant: str = TENANT) -> Any:
    """``tenants/{t}/broker_connections/{id}`` as ``BrokerConnection.to_dict()`` (a reference only)."""
    return admin.set(f"tenants/{tenant}/broker_connections/{connection.connection_id}",
                     _rest_value(connection.to_dict()))


def write_account(admin: FirestoreRest, account: Any, tenant: str = TENANT) -> Any:
    return admin.set(f"tenants/{tenant}/accounts/{account.account_id}", _rest_value(account.to_dict()))


def write_member(admin: FirestoreRest, user: User, default_account_id: str, at: datetime, tenant: str = TENANT) -> Any:
    """``tenants/{t}/members/{uid}``: role and status, and the account trades without a named one use."""
    return admin.set(f"tenants/{tenant}/members/{user.uid}", _rest_value({
        "uid": user.uid, "role": user.claims.get("role", "trader"), "status": "active",
        "default_account_id": default_account_id, "email": user.email, "created_at": at, "updated_at": at}))


def paper_connection(at: datetime) -> Any:
    from backend.domain.accounts import BrokerConnection

    return BrokerConnection(connection_id=PAPER_CONNECTION, venue="paper", environment="paper", credentials_ref=None,
                            created_at=at, updated_at=at)


def trader_account(account_id: str, user: User, connection: Any, venue_account_id: str, at: datetime) -> Any:
    """An active account of ``user`` on ``connection`` with every asset class that venue trades."""
    from backend.domain.accounts import VENUE_ASSET_CLASSES, Account

    classes = sorted(c.value for c in VENUE_ASSET_CLASSES[connection.venue])
    account = Account(account_id=account_id, connection_id=connection.connection_id,
                      venue_account_id=venue_account_id, owner_uids=(user.uid,), status="active",
                      asset_classes=classes, created_at=at, updated_at=at)
    account.check_connection(connection)
    return account


def provision_paper_trader(suite: EmulatorSuite, user: User, account_id: str, tenant: str = TENANT) -> Any:
    """Give ``user`` an account of their own on the tenant's ``paper`` connection and make it their
    default (admin writes: the connection, the account, the member document). Returns the account."""
    admin = FirestoreRest(suite, "owner")
    at = datetime.now(timezone.utc)
    connection = paper_connection(at)
    account = trader_account(account_id, user, connection, f"book-{account_id}", at)
    for reply in (write_connection(admin, connection, tenant), write_account(admin, account, tenant),
                  write_member(admin, user, account_id, at, tenant)):
        if reply.status != 200:
            raise StackError(f"admin write refused: HTTP {reply.status} {reply.body}")
    return account
