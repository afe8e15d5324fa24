"""Shared pytest fixtures: the official Firestore emulator and firebase-tools' Auth emulator.

Fixtures (all emulators start lazily, only when a test asks for them):
    firestore_emulator  session   FirestoreEmulator (.host "127.0.0.1:PORT", .reset(p), .set_rules(p, src))
    firestore_project   function  project id (str), its documents deleted before the test
    firestore_env       function  sets FIRESTORE_EMULATOR_HOST / GOOGLE_CLOUD_PROJECT for the test only
    db                  function  google.cloud.firestore.Client on the emulator, reset project
    auth_emulator       session   AuthEmulator (.host, .project, .sign_up, .sign_in, .set_claims, .reset)
    auth                function  the AuthEmulator, users deleted, FIREBASE_AUTH_EMULATOR_HOST set
    firebase_admin_app  function  a firebase_admin App for the same project (for auth.verify_id_token)

Each xdist worker runs its own emulators; the project id is demo-test-<worker> (demo-test-main
without xdist), the same for Firestore and Auth.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.support.emulators import AuthEmulator, FirestoreEmulator

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
PROJECT_ID = f"demo-test-{WORKER}"

_EMULATOR_FIXTURES = {
    "firestore_emulator", "firestore_project", "firestore_env", "db",
    "auth_emulator", "auth", "firebase_admin_app",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _EMULATOR_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.emulator)


# ---- logs --------------------------------------------------------------------------------------


@pytest.fixture
def quiet_logs():
    """The structured log lines of the test go to a buffer (yielded) instead of stdout."""
    import io

    from backend import logs

    stream = io.StringIO()
    logs.set_stream(stream)
    try:
        yield stream
    finally:
        logs.set_stream(None)


# ---- Firestore -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def firestore_emulator() -> Iterator[FirestoreEmulator]:
    emulator = FirestoreEmulator().start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def firestore_project(firestore_emulator: FirestoreEmulator) -> str:
    firestore_emulator.reset(PROJECT_ID)
    return PROJECT_ID


@pytest.fixture
def firestore_env(
    firestore_emulator: FirestoreEmulator, firestore_project: str, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Point any Firestore client created during the test at the emulator; undone afterwards."""
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", firestore_emulator.host)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", firestore_project)
    monkeypatch.setenv("GCLOUD_PROJECT", firestore_project)
    return firestore_emulator.host


@pytest.fixture
def db(firestore_env: str, firestore_project: str):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    client = firestore.Client(project=firestore_project, credentials=AnonymousCredentials())
    try:
        yield client
    finally:
        client.close()


# ---- Auth ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def auth_emulator() -> Iterator[AuthEmulator]:
    emulator = AuthEmulator(PROJECT_ID).start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def auth(auth_emulator: AuthEmulator, monkeypatch: pytest.MonkeyPatch) -> AuthEmulator:
    auth_emulator.reset()
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", auth_emulator.host)
    return auth_emulator


@pytest.fixture
def firebase_admin_app(auth: AuthEmulator):
    """A fresh named firebase_admin App (no real credentials) whose auth talks to the emulator."""
    import firebase_admin

    app = firebase_admin.initialize_app(
        options={"projectId": auth.project}, name=f"test-{uuid.uuid4().hex}"
    )
    try:
        yield app
    finally:
        firebase_admin.delete_app(app)
