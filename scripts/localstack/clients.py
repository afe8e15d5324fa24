"""Clients of the local stack, as an app uses it: the Auth emulator's REST API (users with custom
claims), the HTTP API with an ID token, Firestore REST with an end-user token (so the emulator
evaluates ``firestore.rules`` exactly as production would; values through the shared codec of
``tests/support/firestore_rest.py``) and the scheduled function invoked as Cloud Scheduler would.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

import requests

from scripts.localstack.suite import REGION, EmulatorSuite, StackError, loopback_session
from tests.support.firestore_rest import decode_fields, encode_fields

PASSWORD = "demo-password-1"  # Auth emulator only; not a secret


@dataclass
class User:
    name: str
    email: str
    uid: str
    token: str
    claims: dict[str, Any]


class AuthClient:
    def __init__(self, suite: EmulatorSuite):
        self.base = suite.auth_url
        self.project = suite.project
        self.http = loopback_session()

    def _identity(self, method: str, body: Mapping[str, Any]) -> dict[str, Any]:
        r = self.http.post(f"{self.base}/identitytoolkit.googleapis.com/v1/accounts:{method}?key=demo-api-key",
                           json=body, timeout=30)
        if r.status_code != 200:
            raise StackError(f"Auth emulator accounts:{method}: HTTP {r.status_code} {r.text}")
        return r.json()

    def sign_in(self, email: str, password: str = PASSWORD) -> str:
        return self._identity("signInWithPassword", {"email": email, "password": password,
                                                     "returnSecureToken": True})["idToken"]

    def create_user(self, name: str, email: str, claims: Mapping[str, Any], password: str = PASSWORD) -> User:
        """Sign up, set custom claims (admin call), sign in again so the ID token carries them."""
        reply = self._identity("signUp", {"email": email, "password": password, "returnSecureToken": True})
        uid = reply["localId"]
        r = self.http.post(f"{self.base}/identitytoolkit.googleapis.com/v1/projects/{self.project}/accounts:update",
                           json={"localId": uid, "customAttributes": json.dumps(dict(claims))},
                           headers={"Authorization": "Bearer owner"}, timeout=30)
        if r.status_code != 200:
            raise StackError(f"Auth emulator accounts:update: HTTP {r.status_code} {r.text}")
        return User(name, email, uid, self.sign_in(email, password), dict(claims))


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: Any

    def get(self, key: str, default: Any = None) -> Any:
        return self.body.get(key, default) if isinstance(self.body, dict) else default


def _reply(r: requests.Response) -> Reply:
    try:
        body = r.json() if r.content else None
    except ValueError:
        body = r.text
    return Reply(r.status_code, r.headers, body)


class ApiClient:
    def __init__(self, suite: EmulatorSuite, token: str | None = None):
        self.base = suite.api_url
        self.token = token
        self.http = loopback_session()

    def call(self, method: str, path: str, body: Any = None, *, headers: Mapping[str, str] | None = None,
             token: str | None | bool = True, timeout: float = 90.0) -> Reply:
        hdrs = dict(headers or {})
        use = self.token if token is True else token
        if use:
            hdrs["Authorization"] = f"Bearer {use}"
        return _reply(self.http.request(method, self.base + path, json=body, headers=hdrs, timeout=timeout))


class FirestoreRest:
    """The Firestore REST API as a client app uses it: with an end-user ID token, so the emulator
    evaluates firestore.rules exactly as production would."""

    def __init__(self, suite: EmulatorSuite, token: str):
        self.base = suite.documents_url
        self.token = token
        self.http = loopback_session()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def create(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> Reply:
        return _reply(self.http.post(f"{self.base}/{collection}", params={"documentId": doc_id},
                                     json={"fields": encode_fields(data)},
                                     headers=self._headers(), timeout=30))

    def set(self, path: str, data: Mapping[str, Any]) -> Reply:
        """Create or replace the document at ``path`` (a PATCH without a field mask: the Admin SDK's
        ``set``). Used with the emulator's ``owner`` token for the admin writes of the session."""
        return _reply(self.http.patch(f"{self.base}/{path}", json={"fields": encode_fields(data)},
                                      headers=self._headers(), timeout=30))

    def get(self, path: str) -> tuple[Reply, dict[str, Any] | None]:
        reply = _reply(self.http.get(f"{self.base}/{path}", headers=self._headers(), timeout=30))
        doc = None
        if reply.status == 200 and isinstance(reply.body, dict):
            doc = decode_fields(reply.body.get("fields"))
        return reply, doc

    def list(self, collection: str, page_size: int = 300) -> tuple[Reply, list[tuple[str, dict[str, Any]]]]:
        rows: list[tuple[str, dict[str, Any]]] = []
        token = None
        while True:
            params: dict[str, Any] = {"pageSize": page_size}
            if token:
                params["pageToken"] = token
            reply = _reply(self.http.get(f"{self.base}/{collection}", params=params, headers=self._headers(),
                                         timeout=30))
            if reply.status != 200:
                return reply, rows
            for doc in reply.get("documents") or []:
                rows.append((doc["name"].rsplit("/", 1)[-1], decode_fields(doc.get("fields"))))
            token = reply.get("nextPageToken")
            if not token:
                return reply, rows


def wait_for(fetch: Callable[[], Any], done: Callable[[Any], bool], timeout: float, interval: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    value = fetch()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(interval)
        value = fetch()
    return value


def invoke_scheduled(suite: EmulatorSuite, name: str = "sweep_stuck_work") -> Reply:
    """What Cloud Scheduler does for a v2 scheduled function, through the Functions emulator."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {"X-CloudScheduler-ScheduleTime": stamp, "X-CloudScheduler-JobName": f"firebase-schedule-{name}-{REGION}"}
    return _reply(loopback_session().post(suite.function_url(f"{name}-0"), json={}, timeout=120, headers=headers))
