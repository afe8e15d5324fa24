"""The real ``google-cloud-secret-manager`` client, through our source, over real HTTP.

Secret Manager has no emulator. The unit tests (tests/unit/test_secrets.py) cover caching and error
mapping with a stub of ``access_secret_version``; this file checks the part a stub cannot: that the
official client (REST transport, anonymous credentials, endpoint pointed at a local server that
answers like ``GET /v1/{name}:access``) accepts the request and the bounded retry we pass, that its
real response type carries the payload and CRC32C the way the source reads them, and that its real
exceptions map to the same coded ``SecretUnavailable``."""
from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import google_crc32c
import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import secretmanager

from backend.adapters.secrets import GoogleSecretManagerSource, secret_manager_source
from backend.domain.clock import ManualClock
from backend.ports.secrets import SecretRef, SecretUnavailable, read_credentials

VALUE = json.dumps({"key_id": "PK-LOCAL", "secret_key": "sk-l0cal-S3cret-value"})


class _SecretManagerREST(BaseHTTPRequestHandler):
    """Answers ``GET /v1/projects/p/secrets/<name>/versions/<v>:access`` like Secret Manager's REST
    API: ``ok`` → the payload with its CRC32C, ``badcrc`` → a wrong CRC32C, ``missing`` → 404,
    ``down`` → 503. Every request path is recorded."""

    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.requests.append(self.path)
        name = self.path.split("?")[0].removeprefix("/v1/").removesuffix(":access")
        secret = name.split("/")[3]
        if secret in ("missing", "down"):
            code, status = (404, "NOT_FOUND") if secret == "missing" else (503, "UNAVAILABLE")
            self._send(code, {"error": {"code": code, "message": f"{secret}", "status": status}})
            return
        data = VALUE.encode()
        crc = int(google_crc32c.Checksum(data).hexdigest(), 16) ^ (1 if secret == "badcrc" else 0)
        self._send(200, {"name": name, "payload": {"data": base64.b64encode(data).decode(), "dataCrc32c": str(crc)}})

    def _send(self, code: int, body: dict) -> None:
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def local_secret_manager(monkeypatch) -> Iterator[tuple[secretmanager.SecretManagerServiceClient, list[str]]]:
    for name in ("NO_PROXY", "no_proxy"):  # the client's requests session must not use a proxy for loopback
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    _SecretManagerREST.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SecretManagerREST)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = secretmanager.SecretManagerServiceClient(
        credentials=AnonymousCredentials(), transport="rest",
        client_options=ClientOptions(api_endpoint=f"http://127.0.0.1:{server.server_port}"))
    try:
        yield client, _SecretManagerREST.requests
    finally:
        server.shutdown()
        server.server_close()


def ref(secret: str) -> SecretRef:
    return SecretRef.gsm("acme-prod", secret)


def test_the_official_client_reads_a_version_through_the_source(local_secret_manager):
    client, requests = local_secret_manager
    source = secret_manager_source(client, ttl_seconds=60, clock=ManualClock(), timeout_seconds=2)

    creds = read_credentials(source, ref("ok"), ["key_id", "secret_key"])
    read_credentials(source, ref("ok"), ["key_id", "secret_key"])  # cached: no second request

    assert creds["key_id"].reveal() == "PK-LOCAL"
    assert [r.split("?")[0] for r in requests] == ["/v1/projects/acme-prod/secrets/ok/versions/latest:access"]


@pytest.mark.parametrize("secret, reason, transient", [
    ("missing", "Secret Manager: not found", False),
    ("down", "Secret Manager: unavailable", True),
    ("badcrc", "Secret Manager: payload checksum mismatch", True),
])
def test_the_official_clients_failures_map_to_coded_unavailability(local_secret_manager, secret, reason, transient):
    client, _ = local_secret_manager
    source = GoogleSecretManagerSource(client, timeout_seconds=0.5)

    with pytest.raises(SecretUnavailable) as err:
        source.get(ref(secret))

    assert str(err.value).startswith(f"secret {ref(secret).text} unavailable: {reason}")
    assert err.value.transient is transient
    assert "sk-l0cal-S3cret-value" not in str(err.value)
