"""A small Firestore REST client for security-rules tests against the official emulator.

The emulator evaluates security rules for requests that carry an end-user ID token. It does not
check signatures, so an unsigned JWT (``alg: none``) built by ``fake_id_token`` stands in for a
Firebase Auth token: ``sub`` / ``user_id`` become ``request.auth.uid`` and every other claim
appears in ``request.auth.token``. ``Authorization: Bearer owner`` (``OWNER``) bypasses the rules,
like the admin SDK in production; no Authorization header is an unauthenticated client.

    client = RulesClient(emulator.base_url, "demo-rules")
    client.patch("tenants/A/ledger_trades/t1", {"qty": "1"}, token=OWNER)
    status = client.get("tenants/A/ledger_trades/t1", token=fake_id_token("u1", role="trader"))

Each call returns a ``Reply`` (HTTP status and decoded body); nothing raises on 4xx. Values go
through the shared codec of ``tests/support/firestore_rest.py``.

The rules test modules share their set-up through the helpers at the end: ``token_minter(project)``
(the cast's tokens, ``tenant_id`` / ``role`` claims only when given), ``open_rules_project`` (a
project of the session emulator with firestore.rules loaded, compiled and seeded),
``rules_compile_error``, ``seed_documents`` and ``new_id``.
"""
from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import requests

from tests.support.firestore_rest import (
    SERVER_TIMESTAMP,
    ServerTimestamp,
    Timestamp,
    decode_fields,
    decode_value,
    encode_fields,
    encode_value,
    server_timestamp_paths,
)

if TYPE_CHECKING:
    from tests.support.emulators import FirestoreEmulator

__all__ = [  # the codec's names stay importable from here
    "OWNER", "RULES_PATH", "SERVER_TIMESTAMP", "Reply", "RulesClient", "ServerTimestamp", "Timestamp",
    "decode_fields", "decode_value", "encode_fields", "encode_value", "fake_id_token", "new_id",
    "open_rules_project", "rules_compile_error", "seed_documents", "tenant_token", "token_minter",
]

OWNER = "owner"
RULES_PATH = Path(__file__).resolve().parents[2] / "firestore.rules"


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def fake_id_token(uid: str, project: str = "demo-rules", **claims: Any) -> str:
    """An unsigned Firebase-shaped ID token for ``uid`` with extra custom ``claims``."""
    now = int(time.time())
    payload = {
        "iss": f"https://securetoken.google.com/{project}",
        "aud": project,
        "iat": now,
        "exp": now + 3600,
        "auth_time": now,
        "sub": uid,
        "user_id": uid,
        "firebase": {"sign_in_provider": "custom", "identities": {}},
        **claims,
    }
    header = {"alg": "none", "typ": "JWT"}
    return f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(payload).encode())}."


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def denied(self) -> bool:
        return self.status == 403

    def data(self) -> dict[str, Any]:
        return decode_fields(self.body.get("fields", {}))

    def __str__(self) -> str:  # shows up in assertion messages
        return f"HTTP {self.status} {json.dumps(self.body)[:300]}"


class RulesClient:
    """Firestore REST v1 calls on behalf of an ID token (or the rule-bypassing ``OWNER``)."""

    def __init__(self, base_url: str, project: str, timeout: float = 30.0) -> None:
        self.project = project
        self.root = f"projects/{project}/databases/(default)/documents"
        self.url = f"{base_url}/v1/{self.root}"
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # never through a proxy from the environment

    def _send(self, method: str, url: str, token: str | None, timeout: float | None = None,
              **kwargs: Any) -> Reply:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        resp = self.session.request(method, url, headers=headers, timeout=timeout or self.timeout, **kwargs)
        try:
            body = resp.json() if resp.content else None
        except ValueError:
            body = resp.text
        return Reply(resp.status_code, body)

    # ---- single documents ------------------------------------------------------------------
    def get(self, path: str, *, token: str | None, timeout: float | None = None) -> Reply:
        return self._send("GET", f"{self.url}/{path}", token, timeout)

    def create(self, path: str, data: Mapping[str, Any], *, token: str | None) -> Reply:
        """createDocument (fails if it exists). A ``SERVER_TIMESTAMP`` field goes through
        ``commit`` with a precondition instead, as the SDKs do, since createDocument cannot
        carry transforms."""
        if server_timestamp_paths(data):
            return self.commit_write(path, data, token=token, must_not_exist=True)
        parent, _, doc_id = path.rpartition("/")
        return self._send("POST", f"{self.url}/{parent}", token,
                          params={"documentId": doc_id}, json={"fields": encode_fields(data)})

    def patch(self, path: str, data: Mapping[str, Any], *, token: str | None,
              mask: list[str] | None = None) -> Reply:
        """updateDocument: an upsert (a rules ``create`` if the document is absent, else
        ``update``). With ``mask``, only those fields change, like the SDKs' ``update()``."""
        params = [("updateMask.fieldPaths", f) for f in mask] if mask else None
        return self._send("PATCH", f"{self.url}/{path}", token, params=params,
                          json={"fields": encode_fields(data)})

    def delete(self, path: str, *, token: str | None) -> Reply:
        return self._send("DELETE", f"{self.url}/{path}", token)

    def commit_write(self, path: str, data: Mapping[str, Any], *, token: str | None,
                     must_not_exist: bool = False) -> Reply:
        write: dict[str, Any] = {"update": {"name": f"{self.root}/{path}", "fields": encode_fields(data)}}
        transforms = server_timestamp_paths(data)
        if transforms:
            write["updateTransforms"] = [
                {"fieldPath": p, "setToServerValue": "REQUEST_TIME"} for p in transforms
            ]
        if must_not_exist:
            write["currentDocument"] = {"exists": False}
        return self._send("POST", f"{self.url}:commit", token, json={"writes": [write]})

    # ---- queries ---------------------------------------------------------------------------
    def list_where(self, collection_path: str, *, token: str | None,
                   where: Mapping[str, Any] | None = None) -> Reply:
        """runQuery on one collection, optionally with ``field == value`` filters (ANDed)."""
        parent, _, collection_id = collection_path.rpartition("/")
        query: dict[str, Any] = {"from": [{"collectionId": collection_id}]}
        filters = [
            {"fieldFilter": {"field": {"fieldPath": f}, "op": "EQUAL", "value": encode_value(v)}}
            for f, v in (where or {}).items()
        ]
        if len(filters) == 1:
            query["where"] = filters[0]
        elif filters:
            query["where"] = {"compositeFilter": {"op": "AND", "filters": filters}}
        url = f"{self.url}/{parent}:runQuery" if parent else f"{self.url}:runQuery"
        reply = self._send("POST", url, token, json={"structuredQuery": query})
        return reply

    @staticmethod
    def query_docs(reply: Reply) -> list[dict[str, Any]]:
        """The documents of a successful runQuery reply."""
        return [item["document"] for item in reply.body if "document" in item]


# ---- shared set-up of the rules test modules ------------------------------------------------------

def tenant_token(project: str, uid: str, tenant: str | None = None, role: str | None = None) -> str:
    """``fake_id_token`` for ``uid`` on ``project`` with the ``tenant_id`` and ``role`` claims; a claim
    given as ``None`` is left out of the token (not set to null), so ``tenant_token(p, "alice")`` is
    signed in with neither."""
    claims = {k: v for k, v in (("tenant_id", tenant), ("role", role)) if v is not None}
    return fake_id_token(uid, project, **claims)


def token_minter(project: str) -> Callable[..., str]:
    """``tenant_token`` bound to one project: ``token = token_minter(PROJECT)``, then
    ``token("alice", "A", "trader")``."""

    def token(uid: str, tenant: str | None = None, role: str | None = None) -> str:
        return tenant_token(project, uid, tenant, role)

    return token


def rules_compile_error(client: RulesClient, timeout: float = 120) -> str | None:
    """Send a first (owner) request, which compiles the rules, and say what is wrong, or ``None``.

    Compiling takes seconds on a busy machine, hence the long timeout. A rules file that does not
    compile does not stop the emulator: every request, even the owner's, then answers 400 "Error
    compiling rules", which this reports once, clearly."""
    probe = client.get("ops/probe", token=OWNER, timeout=timeout)
    return None if probe.status in (200, 404) else f"firestore.rules not usable: {probe}"


def seed_documents(client: RulesClient, documents: Mapping[str, Mapping[str, Any]]) -> None:
    """Write each ``path: data`` with admin credentials (``OWNER``, bypassing the rules)."""
    for path, data in documents.items():
        reply = client.patch(path, data, token=OWNER)
        assert reply.ok, f"seeding {path}: {reply}"


def open_rules_project(emulator: FirestoreEmulator, project: str,
                       seed: Mapping[str, Mapping[str, Any]]) -> RulesClient:
    """A client on ``project`` of the (session) emulator, emptied, with firestore.rules
    (``RULES_PATH``) loaded, compiled and ``seed`` written: the module-scoped ``client`` fixture of
    a rules test module that has a project of its own."""
    emulator.reset(project)
    emulator.set_rules(project, RULES_PATH.read_text(encoding="utf-8"))
    client = RulesClient(emulator.base_url, project)
    problem = rules_compile_error(client)
    assert problem is None, problem
    seed_documents(client, seed)
    return client


def new_id(prefix: str = "t") -> str:
    """A fresh document id, ``{prefix}-`` and 12 hex digits, so a test that writes never meets
    another's document."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
