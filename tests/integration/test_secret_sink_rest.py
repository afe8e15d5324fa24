"""The Secret Manager sink with the real ``google-cloud-secret-manager`` client over real HTTP.

Secret Manager has no emulator; as in tests/integration/test_secret_manager_rest.py, the official
client (REST transport, anonymous credentials) talks to a local server that answers like the REST
API: ``POST /v1/projects/p/secrets/<name>:addVersion`` (404 until the secret exists) and
``POST /v1/projects/p/secrets?secretId=<name>``. Checked: the first write creates the secret and
adds version 1, a rotation adds version 2, the payload and its CRC32C arrive intact, the answer is
the written version's reference, and a refusal maps to ``SecretWriteFailed`` without the value."""
from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import google_crc32c
import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import secretmanager

from backend.adapters.secret_sink import GoogleSecretManagerSink
from backend.adapters.secrets import GoogleSecretManagerSource
from backend.domain.secrets import Secret, SecretRef
from backend.ports.secret_sink import SecretWriteFailed

VALUE = json.dumps({"key_id": "CK-1", "secret_key": "sk-sink-S3cret"})


class _SecretManagerREST(BaseHTTPRequestHandler):
    secrets: dict[str, list[bytes]] = {}
    crc_ok: list[bool] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        url = urlsplit(self.path)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if url.path.endswith(":addVersion"):
            name = url.path.removeprefix("/v1/").removesuffix(":addVersion")
            if name.endswith("/forbidden"):
                return self._send(403, {"error": {"code": 403, "message": "denied", "status": "PERMISSION_DENIED"}})
            if name not in self.secrets:
                return self._send(404, {"error": {"code": 404, "message": "no secret", "status": "NOT_FOUND"}})
            data = base64.b64decode(body["payload"]["data"])
            self.crc_ok.append(int(body["payload"]["dataCrc32c"]) == int(google_crc32c.Checksum(data).hexdigest(), 16))
            self.secrets[name].append(data)
            return self._send(200, {"name": f"{name}/versions/{len(self.secrets[name])}", "state": "ENABLED"})
        if url.path.endswith("/secrets"):
            name = f"{url.path.removeprefix('/v1/')}/{parse_qs(url.query)['secretId'][0]}"
            self.secrets.setdefault(name, [])
            return self._send(200, {"name": name, "replication": {"automatic": {}}})
        self._send(404, {"error": {"code": 404, "message": "route", "status": "NOT_FOUND"}})

    def do_GET(self) -> None:  # noqa: N802 - access a version (the source reads what the sink wrote)
        name = self.path.split("?")[0].removeprefix("/v1/").removesuffix(":access")
        secret, _, version = name.rpartition("/versions/")
        data = self.secrets[secret][int(version) - 1]
        crc = int(google_crc32c.Checksum(data).hexdigest(), 16)
        self._send(200, {"name": name, "payload": {"data": base64.b64encode(data).decode(), "dataCrc32c": str(crc)}})

    def _send(self, code: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def client(monkeypatch) -> Iterator[secretmanager.SecretManagerServiceClient]:
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    _SecretManagerREST.secrets, _SecretManagerREST.crc_ok = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SecretManagerREST)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield secretmanager.SecretManagerServiceClient(
            credentials=AnonymousCredentials(), transport="rest",
            client_options=ClientOptions(api_endpoint=f"http://127.0.0.1:{server.server_port}"))
    finally:
        server.shutdown()
        server.server_close()


def test_the_first_write_creates_the_secret_and_each_write_adds_a_version(client):
    sink = GoogleSecretManagerSink("acme-prod", client, timeout_seconds=5)
    ref = sink.default_ref("acme", "broker1")
    assert ref.text == "projects/acme-prod/secrets/exec-acme-broker1/versions/latest"

    first = sink.put(ref, Secret(VALUE))
    second = sink.put(ref, Secret(VALUE.replace("S3cret", "R0tated")))

    assert first.text == "projects/acme-prod/secrets/exec-acme-broker1/versions/1"
    assert second.text == "projects/acme-prod/secrets/exec-acme-broker1/versions/2"
    assert _SecretManagerREST.crc_ok == [True, True]
    source = GoogleSecretManagerSource(client, timeout_seconds=5)
    assert source.get(first).reveal() == VALUE  # the read side finds exactly what was written
    assert "R0tated" in source.get(second).reveal()


def test_a_refusal_is_a_coded_failure_that_never_shows_the_value(client):
    sink = GoogleSecretManagerSink("acme-prod", client, timeout_seconds=5)
    with pytest.raises(SecretWriteFailed) as err:
        sink.put(SecretRef.gsm("acme-prod", "forbidden"), Secret(VALUE))
    assert err.value.transient is False and "Forbidden" in err.value.reason  # REST's 403 (gRPC: PermissionDenied)
    assert "sk-sink-S3cret" not in str(err.value) and err.value.__cause__ is None
    with pytest.raises(SecretWriteFailed):
        sink.put(SecretRef.file("x"), Secret(VALUE))  # not a Secret Manager reference
