"""Secret sinks (``backend.ports.secret_sink.SecretSink``): an ignored local file and Google Secret Manager.

- ``LocalFileSecretSink`` writes ``file:NAME`` entries into the JSON local secrets file that
  ``LocalFileSecretSource`` reads (``.secrets.local`` by default, git-ignored): read, change one
  entry, write a temp file (mode 0600) and ``os.replace`` it, under a process lock. A .env-format
  file is refused rather than rewritten (its comments and layout would be lost).
- ``GoogleSecretManagerSink`` adds a version to ``projects/<p>/secrets/<name>`` with the official
  client's ``add_secret_version`` (payload CRC32C sent, bounded retry and timeout), creating the
  secret (automatic replication) on first use; it answers ``…/versions/<n>`` — the version written.
- ``RoutingSecretSink`` dispatches by scheme; ``env:`` references are never writable (the process
  environment is configuration, not storage).

``sink_from_env(environ)`` (called by ``backend.bootstrap.secret_sink``): ``EXEC_SECRET_SINK`` =
``file`` / ``file:<path>`` (local runs, emulator stack, tests) or ``gsm:<project>`` (production);
unset or ``none`` = no sink (a request that carries credentials is then a 400 naming ``credentials``).
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

from backend.adapters.secrets import DEFAULT_GSM_TIMEOUT_SECONDS, DEFAULT_LOCAL_SECRETS_FILE
from backend.domain.secrets import Secret, SecretRef
from backend.logs import log_event
from backend.ports.secret_sink import SecretSink, SecretWriteFailed

SINK_ENV = "EXEC_SECRET_SINK"
_FILE_LOCK = threading.Lock()


class LocalFileSecretSink:
    """``file:NAME`` → the entry ``NAME`` of a local JSON secrets file (created if absent)."""

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_LOCAL_SECRETS_FILE):
        self.path = Path(path)

    def default_ref(self, tenant_id: str, connection_id: str) -> SecretRef:
        return SecretRef.file(f"connection.{tenant_id}.{connection_id}")

    def _entries(self, ref: SecretRef) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:  # never chain: a decode error carries the bytes
            reason = f"local secrets file {self.path} unreadable ({type(exc).__name__})"
        else:
            if not text.strip():
                return {}
            if not text.lstrip().startswith("{"):
                raise SecretWriteFailed(ref, f"local secrets file {self.path} is not JSON; only a JSON file is "
                                             "written (a .env file would lose its layout)")
            try:
                data = json.loads(text)
            except ValueError:
                data = None
            if isinstance(data, dict):
                return data
            reason = f"local secrets file {self.path}: not a JSON object"
        raise SecretWriteFailed(ref, reason)

    def put(self, ref: SecretRef, value: Secret) -> SecretRef:
        if ref.scheme != "file":
            raise SecretWriteFailed(ref, "the local file sink writes only file: references")
        if not isinstance(value, Secret):
            raise TypeError("put() takes a Secret")
        with _FILE_LOCK:
            entries = self._entries(ref)
            entries[ref.name] = value.reveal()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".secrets-", dir=str(self.path.parent))
            try:
                os.fchmod(fd, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    json.dump(entries, handle, indent=1, sort_keys=True)
                os.replace(tmp, self.path)
            except OSError as exc:
                Path(tmp).unlink(missing_ok=True)
                raise SecretWriteFailed(ref, f"local secrets file {self.path} not written "
                                             f"({type(exc).__name__})") from None
        log_event("secrets.written", ref=ref.text, scheme="file")
        return ref

    def __repr__(self) -> str:
        return f"LocalFileSecretSink({str(self.path)!r})"


def _gsm_parts(ref: SecretRef) -> tuple[str, str]:
    parts = ref.text.split("/")  # projects/<p>/secrets/<name>/versions/<v> (SecretRef.parse checked it)
    return parts[1], parts[3]


class GoogleSecretManagerSink:
    """Adds a version to a Secret Manager secret (created on first use); answers the version's ref."""

    def __init__(self, project: str, client: Any = None, *, timeout_seconds: float = DEFAULT_GSM_TIMEOUT_SECONDS,
                 client_factory: Callable[[], Any] | None = None):
        SecretRef.gsm(project, "probe")  # the project id must be one a reference can name
        self.project = project
        self._client = client
        self._factory = client_factory
        self.timeout_seconds = float(timeout_seconds)
        self._lock = threading.Lock()

    def default_ref(self, tenant_id: str, connection_id: str) -> SecretRef:
        return SecretRef.gsm(self.project, f"exec-{tenant_id}-{connection_id}")

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                if self._factory is not None:
                    self._client = self._factory()
                else:
                    from google.cloud import secretmanager  # lazy: only deployments that write secrets

                    self._client = secretmanager.SecretManagerServiceClient()
            return self._client

    def _retry(self) -> Any:
        from google.api_core import retry as gretry

        return gretry.Retry(predicate=gretry.if_transient_error, initial=0.2, maximum=2.0, multiplier=2.0,
                            timeout=self.timeout_seconds)

    def put(self, ref: SecretRef, value: Secret) -> SecretRef:
        if ref.scheme != "gsm":
            raise SecretWriteFailed(ref, "the Secret Manager sink writes only projects/… references")
        if not isinstance(value, Secret):
            raise TypeError("put() takes a Secret")
        from google.api_core import exceptions as gexc

        from backend.adapters.secrets import _crc32c

        project, name = _gsm_parts(ref)
        parent = f"projects/{project}/secrets/{name}"
        data = value.reveal().encode("utf-8")
        request = {"parent": parent, "payload": {"data": data, "data_crc32c": _crc32c(data)}}
        try:
            client = self._get_client()
            try:
                response = client.add_secret_version(request=request, retry=self._retry(),
                                                     timeout=self.timeout_seconds)
            except gexc.NotFound:
                try:
                    client.create_secret(request={"parent": f"projects/{project}", "secret_id": name,
                                                  "secret": {"replication": {"automatic": {}}}},
                                         retry=self._retry(), timeout=self.timeout_seconds)
                except gexc.AlreadyExists:
                    pass  # created concurrently
                response = client.add_secret_version(request=request, retry=self._retry(),
                                                     timeout=self.timeout_seconds)
        except SecretWriteFailed:
            raise
        except Exception as exc:  # every SDK failure becomes a coded SecretWriteFailed (the request holds the value)
            # weather (5xx, 429, timeouts, connection errors) may pass; a refusal (403/PermissionDenied,
            # 400, 401, 404, 409…, over gRPC or REST) will not
            transient = isinstance(exc, (gexc.ServerError, gexc.TooManyRequests, gexc.RetryError,
                                         gexc.DeadlineExceeded, OSError, TimeoutError))
            raise SecretWriteFailed(ref, f"Secret Manager: {type(exc).__name__}", transient=transient) from None
        written = getattr(response, "name", None)
        try:
            stored = SecretRef.parse(written, "credentials_ref")
        except Exception:  # noqa: BLE001 - an answer we cannot name is a failure, not a stored ref
            raise SecretWriteFailed(ref, "Secret Manager: the answer names no version") from None
        log_event("secrets.written", ref=stored.text, scheme="gsm")
        return stored

    def __repr__(self) -> str:
        return f"GoogleSecretManagerSink({self.project!r})"


class RoutingSecretSink:
    """Each reference to the sink of its scheme; ``default_ref`` from the first (preferred) sink."""

    def __init__(self, sinks: Mapping[str, SecretSink], default_scheme: str):
        if default_scheme not in sinks:
            raise ValueError("default_scheme must name one of the sinks")
        self._sinks = dict(sinks)
        self._default = default_scheme

    def put(self, ref: SecretRef, value: Secret) -> SecretRef:
        sink = self._sinks.get(ref.scheme)
        if sink is None:
            raise SecretWriteFailed(ref, f"{ref.scheme} references are not writable here "
                                         f"(writable: {sorted(self._sinks)})")
        return sink.put(ref, value)

    def default_ref(self, tenant_id: str, connection_id: str) -> SecretRef:
        return self._sinks[self._default].default_ref(tenant_id, connection_id)

    def __repr__(self) -> str:
        return f"RoutingSecretSink({sorted(self._sinks)})"


def sink_from_env(environ: Mapping[str, str] | None = None, *,
                  default_file: str | None = None) -> SecretSink | None:
    """``EXEC_SECRET_SINK``: ``file`` (``default_file``, the file the secret source reads; else
    ``.secrets.local``), ``file:<path>``, ``gsm:<project>``, or unset/``none`` (None)."""
    env = os.environ if environ is None else environ
    raw = (env.get(SINK_ENV) or "").strip()
    if not raw or raw.lower() == "none":
        return None
    kind, _, arg = raw.partition(":")
    if kind == "file":
        path = arg or default_file or DEFAULT_LOCAL_SECRETS_FILE
        return RoutingSecretSink({"file": LocalFileSecretSink(path)}, "file")
    if kind == "gsm" and arg:
        return RoutingSecretSink({"gsm": GoogleSecretManagerSink(arg)}, "gsm")
    from backend.domain.errors import InvalidInput

    raise InvalidInput(SINK_ENV, "must be file:<path>, gsm:<project> or none")
