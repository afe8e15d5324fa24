"""A small Firestore REST client for security-rules tests against the official emulator.

The emulator evaluates security rules for requests that carry an end-user ID token. It does not
check signatures, so an unsigned JWT (``alg: none``) built by ``fake_id_token`` stands in for a
Firebase Auth token: ``sub`` / ``user_id`` become ``request.auth.uid`` and every other claim
appears in ``request.auth.token``. ``Authorization: Bearer owner`` (``OWNER``) bypasses the rules,
like the admin SDK in production; no Authorization header is an unauthenticated client.

    client = RulesClient(emulator.base_url, "demo-rules")
    client.set("tenants/A/ledger_trades/t1", {"qty": "1"}, token=OWNER)
    status = client.get("tenants/A/ledger_trades/t1", token=fake_id_token("u1", role="trader"))

Each call returns a ``Reply`` (HTTP status and decoded body); nothing raises on 4xx. Values go
through the shared codec of ``tests/support/firestore_rest.py``.
"""
from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any, Mapping

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

__all__ = [  # the codec's names stay importable from here
    "OWNER", "SERVER_TIMESTAMP", "Reply", "RulesClient", "ServerTimestamp", "Timestamp", "decode_fields",
    "decode_value", "encode_fields", "encode_value", "fake_id_token",
]

OWNER = "owner"


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
