"""The accounts stack over real HTTP, shared by the end-to-end account tests
(tests/integration/test_issue12_accounts.py, tests/integration/test_api_accounts_http.py).

``functions-framework --target api`` (``FunctionsServer``) runs with the deployed default
(``EXEC_ACCOUNTS`` unset = strict: only admin-written account documents count) against the
official Firestore emulator and the Auth emulator. Orders go to the local Alpaca-compatible server's
Broker API through one ``alpaca_broker`` connection, ``broker-1``, whose credentials are in a
secret source — the function's environment variable ``BROKER_API_CREDS`` holding a JSON object —
and only its reference (``env:BROKER_API_CREDS``) is in Firestore.

    venue, server = broker_api_fixtures(KEY, SECRET)  # the module's two module-scoped fixtures
    uid, token = sign_up(auth, "u1", "acme")
    db.document("tenants/acme/broker_connections/broker-1").set(broker_api_connection(venue.url).to_dict())

Documents are built here and written by the caller with admin credentials, as the admin API
would; what each test module's world holds (tenants, owners, defaults) stays in the module.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator

import pytest

from backend.domain.accounts import Account, BrokerConnection
from tests.support.alpaca_server import LocalAlpacaServer
from tests.support.api_stack import FunctionsServer
from tests.support.emulators import AuthEmulator, FirestoreEmulator

CONNECTION_ID = "broker-1"
CREDENTIALS_ENV = "BROKER_API_CREDS"
T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)  # created_at / updated_at of every seeded document
PASSWORD = "secret-pw-1"


def broker_api_server_env(firestore_emulator: FirestoreEmulator, auth_emulator: AuthEmulator, *,
                          key_id: str, secret_key: str) -> dict[str, str]:
    """The environment of the function under test: the emulators, live (not dry-run) execution with
    limits high enough not to interfere, no Secret Manager, no auth-state cache, and the Broker API
    credentials ``{"key_id", "secret_key"}`` in ``BROKER_API_CREDS``."""
    project = auth_emulator.project
    return {"FIRESTORE_EMULATOR_HOST": firestore_emulator.host, "FIREBASE_AUTH_EMULATOR_HOST": auth_emulator.host,
            "GOOGLE_CLOUD_PROJECT": project, "GCLOUD_PROJECT": project, "GOOGLE_APPLICATION_CREDENTIALS": "",
            "EXEC_DRY_RUN": "0", "EXEC_FILL_WAIT_SECONDS": "1", "EXEC_MAX_POSITION_QTY": "1000",
            "EXEC_MAX_DAILY_TRADES": "1000", "EXEC_SECRET_MANAGER": "0", "EXEC_AUTH_STATE_CACHE_SECONDS": "0",
            CREDENTIALS_ENV: json.dumps({"key_id": key_id, "secret_key": secret_key})}


def broker_api_fixtures(key_id: str, secret_key: str) -> tuple[Any, Any]:
    """The module-scoped fixtures ``venue`` (a local Alpaca-compatible server, scenario ``default``)
    and ``server`` (the function, started after ``venue``, with ``broker_api_server_env`` and these
    credentials) for a test module: ``venue, server = broker_api_fixtures(KEY, SECRET)`` at module
    level makes both names fixtures of that module."""

    @pytest.fixture(scope="module")
    def venue() -> Iterator[LocalAlpacaServer]:
        with LocalAlpacaServer("default") as alpaca:
            yield alpaca

    @pytest.fixture(scope="module")
    def server(firestore_emulator: FirestoreEmulator, auth_emulator: AuthEmulator,
               venue: LocalAlpacaServer) -> Iterator[FunctionsServer]:
        env = broker_api_server_env(firestore_emulator, auth_emulator, key_id=key_id, secret_key=secret_key)
        with FunctionsServer(env) as function:
            yield function

    return venue, server


def sign_up(auth: AuthEmulator, name: str, tenant: str, role: str = "trader") -> tuple[str, str]:
    """A new email/password user of the Auth emulator (a fresh address from ``name``) with the custom
    claims ``tenant_id`` and ``role``, signed in after the claims are set: ``(uid, ID token)``."""
    email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
    uid, _ = auth.sign_up(email, PASSWORD)
    auth.set_claims(uid, {"tenant_id": tenant, "role": role})
    return uid, auth.sign_in(email, PASSWORD)


def broker_api_connection(base_url: str) -> BrokerConnection:
    """The ``broker-1`` connection to the Broker API at ``base_url`` (sandbox), credentials by
    reference only."""
    return BrokerConnection(connection_id=CONNECTION_ID, venue="alpaca_broker", environment="sandbox",
                            credentials_ref=f"env:{CREDENTIALS_ENV}", base_url=base_url, created_at=T0,
                            updated_at=T0)


def broker_api_account(account_id: str, venue_account_id: str, owner_uids: Iterable[str],
                       status: str = "active") -> Account:
    """An account on ``broker-1`` (equities and crypto) for the venue's ``venue_account_id``."""
    return Account(account_id=account_id, connection_id=CONNECTION_ID, venue_account_id=venue_account_id,
                   owner_uids=list(owner_uids), status=status, asset_classes=["EQUITY", "CRYPTO"],
                   created_at=T0, updated_at=T0)


def member_doc(uid: str, role: str, default_account_id: str | None) -> dict[str, Any]:
    """``tenants/{t}/members/{uid}``: an active member without an email on file."""
    return {"uid": uid, "role": role, "status": "active", "default_account_id": default_account_id, "email": None,
            "created_at": T0, "updated_at": T0}


def bearer(token: str, idempotency_key: str | None = None) -> dict[str, str]:
    """Request headers for a caller's ID token, with an ``Idempotency-Key`` when one is given."""
    headers = {"Authorization": f"Bearer {token}"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    return headers
