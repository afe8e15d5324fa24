"""Issue 17, a new instance's first request in production: verifying an ID token needs Google's
token-signing certificates, which the Admin SDK fetches over HTTPS on the first ``verify_id_token``
of a process and then keeps for their ``Cache-Control`` lifetime. The warm-up after the fork
(``FirebaseTokenVerifier.warm_up``) fetches them into that same cache, so the first request verifies
its token without a network call.

Real parts: the Admin SDK's own verification (``auth.verify_id_token`` of an RS256 token signed by a
key made here), its own cache-control session, and a local HTTP server standing in for the
certificate endpoint (the emulator signs nothing: its tokens are verified without certificates, and
the warm-up fetches none there).
"""
from __future__ import annotations

import datetime
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import firebase_admin
import pytest
from firebase_admin import auth, credentials

from backend.api.firebase_auth import FirebaseTokenVerifier, VerifiedTokens
from backend.api.http import ApiError

PROJECT = "demo-signing-certs"


class _AnonymousCredential(credentials.Base):
    def get_credential(self):
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials()


def _key_and_cert():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "securetoken.system.gserviceaccount.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()


class _CertServer:
    """The certificate endpoint: ``{kid: PEM}`` with the Cache-Control Google sends; counts its GETs."""

    def __init__(self, certs: dict[str, str]):
        body = json.dumps(certs).encode()
        self.gets = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                outer.gets += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Cache-Control", "public, max-age=21600, must-revalidate, no-transform")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/robot/v1/metadata/x509/securetoken"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


_SIGNING: dict[str, tuple[str, str]] = {}  # app name -> the key and kid its certificate endpoint serves


@pytest.fixture
def signed(monkeypatch):
    """A production-shaped app (no Auth emulator) whose certificate URL is the local server."""
    monkeypatch.delenv("FIREBASE_AUTH_EMULATOR_HOST", raising=False)
    key_pem, cert_pem = _key_and_cert()
    kid = uuid.uuid4().hex
    server = _CertServer({kid: cert_pem})
    app = firebase_admin.initialize_app(_AnonymousCredential(), {"projectId": PROJECT},
                                        name=f"certs-{uuid.uuid4().hex[:8]}")
    client = auth._get_client(app)  # noqa: SLF001 - the per-app client verify_id_token uses
    client._token_verifier.id_token_verifier.cert_url = server.url  # noqa: SLF001
    _SIGNING[app.name] = (key_pem, kid)
    try:
        yield app, server, _token(key_pem, kid)
    finally:
        server.close()
        firebase_admin.delete_app(app)


def _token(key_pem: str, kid: str, uid: str = "u-certs", lifetime: int = 3600) -> str:
    from google.auth import crypt, jwt

    now = int(time.time())
    claims = {"iss": f"https://securetoken.google.com/{PROJECT}", "aud": PROJECT, "sub": uid, "user_id": uid,
              "auth_time": now - 10, "iat": now - 10, "exp": now + lifetime, "tenant_id": "acme", "role": "trader"}
    return jwt.encode(crypt.RSASigner.from_string(key_pem, kid), claims).decode()


def test_the_warm_up_fetches_the_signing_certificates_and_the_first_verification_uses_them(signed):
    app, server, token = signed
    verifier = FirebaseTokenVerifier(PROJECT, app=app)

    assert verifier.prefetch_signing_certificates() is True
    assert server.gets == 1

    identity = verifier.verify(token)  # what the first request does: no fetch, the cache answers
    assert identity.uid == "u-certs" and identity.tenant_id == "acme"
    assert auth.verify_id_token(token, app=app)["uid"] == "u-certs"
    assert server.gets == 1


def test_without_the_warm_up_the_first_verification_fetches_them(signed):
    app, server, token = signed

    assert auth.verify_id_token(token, app=app)["uid"] == "u-certs"
    assert server.gets == 1  # on the request's path: what the prefetch takes off it


def test_warm_up_prefetches_then_looks_up_and_a_failed_fetch_is_logged_not_raised(signed, monkeypatch, capsys):
    app, server, _ = signed
    verifier = FirebaseTokenVerifier(PROJECT, app=app)
    looked_up: list[str] = []

    def get_user(uid, app=None):
        looked_up.append(uid)
        raise auth.UserNotFoundError("no such user")

    monkeypatch.setattr(auth, "get_user", get_user)
    verifier.warm_up()
    assert server.gets == 1 and looked_up == ["warm-up-probe"]

    server.close()  # the endpoint is gone: the lookup still runs, the failure is a log line
    client = auth._get_client(app)  # noqa: SLF001
    client._token_verifier.id_token_verifier.cert_url = server.url + "-moved"  # noqa: SLF001 - not cached
    verifier.warm_up()
    assert looked_up == ["warm-up-probe", "warm-up-probe"]
    assert "api.warm_up_certs_failed" in capsys.readouterr().out


def test_on_the_auth_emulator_there_is_nothing_to_fetch(auth_emulator, monkeypatch):
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", auth_emulator.host)
    app = firebase_admin.initialize_app(_AnonymousCredential(), {"projectId": auth_emulator.project},
                                        name=f"certs-emu-{uuid.uuid4().hex[:8]}")
    try:
        assert FirebaseTokenVerifier(auth_emulator.project, app=app).prefetch_signing_certificates() is False
    finally:
        firebase_admin.delete_app(app)


# --- verified tokens are not verified again until they expire (issue 17) ------------------------------

def _counting(monkeypatch):
    calls: list[str] = []
    real = auth.verify_id_token

    def verify_id_token(token, *args, **kwargs):
        calls.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(auth, "verify_id_token", verify_id_token)
    return calls


def test_a_verified_token_is_not_verified_again_and_each_token_keeps_its_own_claims(signed, monkeypatch):
    app, _, token = signed
    key_pem, kid = _SIGNING[app.name]
    other = _token(key_pem, kid, uid="u-other")
    verifier = FirebaseTokenVerifier(PROJECT, app=app)
    calls = _counting(monkeypatch)

    first, again = verifier.verify(token), verifier.verify(token)
    assert first == again and first.uid == "u-certs"
    assert verifier.verify(other).uid == "u-other" and verifier.verify(other).uid == "u-other"
    assert calls == [token, other]  # the signature checked once per token


def test_a_kept_token_is_verified_again_once_it_expires_and_then_refused(signed, monkeypatch):
    app, _, _ = signed
    key_pem, kid = _SIGNING[app.name]
    short = _token(key_pem, kid, lifetime=1)
    verifier = FirebaseTokenVerifier(PROJECT, app=app)
    calls = _counting(monkeypatch)

    assert verifier.verify(short).uid == "u-certs"
    time.sleep(2.1)  # past its exp: the SDK refuses it too
    with pytest.raises(ApiError) as caught:
        verifier.verify(short)
    assert caught.value.status == 401 and "expired" in str(caught.value.reason)
    assert calls == [short, short]


def test_a_refused_token_is_not_kept(signed, monkeypatch):
    app, _, _ = signed
    stranger_key, _ = _key_and_cert()  # signed by a key the endpoint does not serve
    forged = _token(stranger_key, _SIGNING[app.name][1])
    verifier = FirebaseTokenVerifier(PROJECT, app=app)
    calls = _counting(monkeypatch)

    for _ in range(2):
        with pytest.raises(ApiError) as caught:
            verifier.verify(forged)
        assert caught.value.status == 401
    assert calls == [forged, forged]


def test_verified_tokens_expire_by_their_exp_are_bounded_and_answer_copies():
    now = [1_000.0]
    kept = VerifiedTokens(max_entries=2, clock=lambda: now[0])
    kept.put("a", {"uid": "a", "exp": 1_010})
    kept.put("b", {"uid": "b", "exp": 1_010})
    kept.put("no-exp", {"uid": "c"})  # nothing to keep it by
    assert kept.get("no-exp") is None

    answer = kept.get("a")
    answer["role"] = "tenant_admin"  # a caller changing its copy changes nothing kept
    assert kept.get("a") == {"uid": "a", "exp": 1_010}
    kept.put("c", {"uid": "c", "exp": 1_010})  # "b" was used least recently
    assert kept.get("b") is None and kept.get("a") is not None and kept.get("c") is not None
    now[0] = 1_010.0
    assert kept.get("a") is None and kept.get("c") is None
    assert kept.get("\ud800 not utf-8") is None  # any header text: no error
