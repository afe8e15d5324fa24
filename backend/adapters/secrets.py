"""Secret sources: the environment, an ignored local file, Google Secret Manager, and a TTL cache.

Every source implements ``backend.ports.secrets.SecretSource`` (``get(ref) -> Secret``) for one
scheme of ``SecretRef``; ``RoutingSecretSource`` sends each reference to the source of its scheme.
Values never leave as ``str``; errors are ``SecretUnavailable`` naming the reference, never the value
(an exception that may carry the value, such as ``JSONDecodeError.doc`` or
``UnicodeDecodeError.object``, is never chained).

Caching (``CachedSecretSource``, usable around any source; ``secret_manager_source`` wraps Google
Secret Manager in it). The decisions:

- A value is fresh for ``ttl_seconds`` (default 300) after it was fetched; a ``get`` after that
  fetches again. ``invalidate(ref)`` drops it at once (call it when the venue answers 401: the key
  was rotated).
- If the re-fetch fails *transiently* (timeout, 5xx, rate limit, checksum mismatch), the expired
  value is served for at most ``stale_grace_seconds`` (default 900) past its expiry, with a WARNING
  ``secrets.stale_served`` line, and the source is not asked again for ``retry_interval_seconds``
  (default 30) so an outage does not add a timeout to every order. After the grace, the failure is
  raised.
- A *decisive* failure (not found, permission denied, version disabled or destroyed) is raised at
  once and the cached value is dropped: an operator who disables a leaked key's version must not
  see it used for another 15 minutes.
- Failures are not cached: the next ``get`` after a raised failure asks the source again.
- Only time from ``clock.monotonic()`` is used (a wall-clock jump neither expires nor revives).
- One fetch per reference at a time (a lock per reference); other references are not blocked.
"""
from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from backend.domain.clock import Clock, SystemClock
from backend.logs import log_event
from backend.ports.secrets import Secret, SecretRef, SecretSource, SecretUnavailable

# The default local secrets file (relative to the working directory). Ignored by git (.gitignore:
# ``.secrets.local*``). JSON ({"NAME": "value" | {...}}) or .env (NAME=value lines).
DEFAULT_LOCAL_SECRETS_FILE = ".secrets.local"

DEFAULT_TTL_SECONDS = 300.0
DEFAULT_STALE_GRACE_SECONDS = 900.0
DEFAULT_RETRY_INTERVAL_SECONDS = 30.0
DEFAULT_GSM_TIMEOUT_SECONDS = 10.0


def _require_scheme(ref: SecretRef, scheme: str, source: str) -> None:
    if ref.scheme != scheme:
        raise SecretUnavailable(ref, f"the {source} source reads only {scheme} references")


# ------------------------------------------------------------------------------------------------
# (a) environment variables
# ------------------------------------------------------------------------------------------------

class EnvSecretSource:
    """``env:NAME`` → the environment variable ``NAME`` (read at each ``get``). ``environ`` defaults
    to ``os.environ``; tests pass a dict."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        self._environ = os.environ if environ is None else environ

    def get(self, ref: SecretRef) -> Secret:
        _require_scheme(ref, "env", "environment")
        value = self._environ.get(ref.name)
        if value is None:
            raise SecretUnavailable(ref, f"environment variable {ref.name} is not set")
        if not value:
            raise SecretUnavailable(ref, f"environment variable {ref.name} is empty")
        return Secret(value)

    def __repr__(self) -> str:
        return "EnvSecretSource()"


# ------------------------------------------------------------------------------------------------
# (b) an ignored local file
# ------------------------------------------------------------------------------------------------

_DOTENV_LINE = re.compile(r"(?:export\s+)?(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)\s*=\s?(?P<value>.*)", re.ASCII)


def _parse_dotenv(text: str, path: Path, ref: SecretRef) -> dict[str, str]:
    """``NAME=value`` lines; blank lines and ``#`` lines skipped; an optional ``export``; a value in
    matching single or double quotes loses them (no escapes, no inline comments: ``#`` may be part of
    a secret). A malformed line is named by number, never shown."""
    out: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _DOTENV_LINE.fullmatch(line)
        if match is None:
            raise SecretUnavailable(ref, f"local secrets file {path}: line {number} is not NAME=value")
        value = match.group("value").strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[match.group("name")] = value
    return out


def _parse_json(text: str, path: Path, ref: SecretRef) -> dict[str, str]:
    """A JSON object; a value that is an object is kept as its JSON text (a credential secret such as
    ``{"key_id": …, "secret_key": …}``); other non-string values are refused."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None  # JSONDecodeError.doc is the whole file: never chain it
    if not isinstance(data, dict):
        raise SecretUnavailable(ref, f"local secrets file {path}: not a JSON object")
    out: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, str):
            out[key] = value
        elif isinstance(value, dict):
            out[key] = json.dumps(value, separators=(",", ":"))
        else:
            raise SecretUnavailable(ref, f"local secrets file {path}: the value of {key[:80]!r} must be a "
                                         "string or an object")
    return out


class LocalFileSecretSource:
    """``file:NAME`` → the entry ``NAME`` of a local file (JSON object or .env lines, told apart by a
    leading ``{``). The file is read at each ``get`` (local runs and tests edit it freely); keep it out
    of git (``.secrets.local*`` is ignored) and out of the deploy bundle."""

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_LOCAL_SECRETS_FILE):
        self.path = Path(path)

    def _entries(self, ref: SecretRef) -> dict[str, str]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raise SecretUnavailable(ref, f"local secrets file {self.path} not found") from None
        except OSError as exc:
            raise SecretUnavailable(ref, f"local secrets file {self.path} unreadable "
                                         f"({type(exc).__name__})") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:  # .object is the file's bytes: never chain it
            text = None
        if text is None:
            raise SecretUnavailable(ref, f"local secrets file {self.path} is not UTF-8 text")
        if text.lstrip().startswith("{"):
            return _parse_json(text, self.path, ref)
        return _parse_dotenv(text, self.path, ref)

    def get(self, ref: SecretRef) -> Secret:
        _require_scheme(ref, "file", "local file")
        value = self._entries(ref).get(ref.name)
        if value is None:
            raise SecretUnavailable(ref, f"{ref.name} is not in the local secrets file {self.path}")
        if not value:
            raise SecretUnavailable(ref, f"{ref.name} is empty in the local secrets file {self.path}")
        return Secret(value)

    def __repr__(self) -> str:
        return f"LocalFileSecretSource({str(self.path)!r})"


# ------------------------------------------------------------------------------------------------
# (c) Google Secret Manager
# ------------------------------------------------------------------------------------------------

def _map_gsm_error(ref: SecretRef, exc: Exception) -> SecretUnavailable:
    """Secret Manager's errors as ``SecretUnavailable``: decisions (not transient) vs. weather."""
    from google.api_core import exceptions as gexc  # lazy: the core never imports google.*

    decisive = (
        (gexc.NotFound, "not found"),
        (gexc.PermissionDenied, "permission denied"),
        (gexc.Unauthenticated, "not authenticated"),
        (gexc.FailedPrecondition, "the version is disabled or destroyed"),
        (gexc.InvalidArgument, "refused as an invalid name"),
    )
    for kind, reason in decisive:
        if isinstance(exc, kind):
            return SecretUnavailable(ref, f"Secret Manager: {reason}", transient=False)
    try:  # no Application Default Credentials on this machine: a configuration error, not weather
        from google.auth import exceptions as auth_exc

        if isinstance(exc, auth_exc.DefaultCredentialsError):
            return SecretUnavailable(ref, "Secret Manager: no Google credentials", transient=False)
    except ImportError:  # pragma: no cover - google-auth ships with google-api-core
        pass
    return SecretUnavailable(ref, f"Secret Manager: unavailable ({type(exc).__name__})", transient=True)


def _crc_present(payload: Any, expected: Any) -> bool:
    """Did Secret Manager send a checksum? (proto-plus answers ``in``; an unset field reads 0)."""
    if expected is None:
        return False
    try:
        return "data_crc32c" in payload
    except TypeError:
        return True


def _crc32c(data: bytes) -> int:
    import google_crc32c  # lazy; ships with google-cloud-storage / google-resumable-media

    return int(google_crc32c.Checksum(data).hexdigest(), 16)


class GoogleSecretManagerSource:
    """``projects/<p>/secrets/<name>/versions/<v>`` → Secret Manager's ``access_secret_version``.

    ``client`` is anything with the official client's ``access_secret_version(request=…, retry=…,
    timeout=…)``; None builds ``secretmanager.SecretManagerServiceClient()`` on first use (imported
    lazily; one client per source object, so per process when the composition root builds one). Each
    call is bounded: ``timeout_seconds`` per attempt and for the SDK's retries of transient errors
    together. The payload's CRC32C is checked when Secret Manager sends one. Not cached by itself:
    use ``secret_manager_source`` (or ``CachedSecretSource``)."""

    def __init__(self, client: Any = None, *, timeout_seconds: float = DEFAULT_GSM_TIMEOUT_SECONDS,
                 client_factory: Callable[[], Any] | None = None):
        if not timeout_seconds > 0:
            raise ValueError("timeout_seconds must be positive")
        self._client = client
        self._factory = client_factory
        self.timeout_seconds = float(timeout_seconds)
        self._lock = threading.Lock()
        self._retry: Any = None

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                if self._factory is not None:
                    self._client = self._factory()
                else:
                    from google.cloud import secretmanager  # lazy: only deployments that use it pay

                    self._client = secretmanager.SecretManagerServiceClient()
            return self._client

    def _get_retry(self) -> Any:
        if self._retry is None:
            from google.api_core import retry as gretry

            self._retry = gretry.Retry(predicate=gretry.if_transient_error, initial=0.2, maximum=2.0,
                                       multiplier=2.0, timeout=self.timeout_seconds)
        return self._retry

    def get(self, ref: SecretRef) -> Secret:
        _require_scheme(ref, "gsm", "Secret Manager")
        try:
            client = self._get_client()
            response = client.access_secret_version(request={"name": ref.text}, retry=self._get_retry(),
                                                    timeout=self.timeout_seconds)
        except SecretUnavailable:
            raise
        except Exception as exc:  # every SDK failure becomes a coded SecretUnavailable (never swallowed)
            raise _map_gsm_error(ref, exc) from exc
        payload = getattr(response, "payload", None)
        data = getattr(payload, "data", None)
        if not isinstance(data, (bytes, bytearray)):
            raise SecretUnavailable(ref, "Secret Manager: the response has no payload", transient=True)
        expected = getattr(payload, "data_crc32c", None)
        if _crc_present(payload, expected) and _crc32c(bytes(data)) != int(expected):
            raise SecretUnavailable(ref, "Secret Manager: payload checksum mismatch", transient=True)
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:  # .object is the secret's bytes: never chain it
            text = None
        if text is None:
            raise SecretUnavailable(ref, "Secret Manager: the payload is not UTF-8 text")
        if not text:
            raise SecretUnavailable(ref, "Secret Manager: the payload is empty")
        return Secret(text)

    def __repr__(self) -> str:
        return f"GoogleSecretManagerSource(timeout_seconds={self.timeout_seconds})"


# ------------------------------------------------------------------------------------------------
# routing and caching
# ------------------------------------------------------------------------------------------------

class RoutingSecretSource:
    """Each reference to the source of its scheme (``{"gsm": …, "env": …, "file": …}``). A scheme
    with no source is refused: production can be built without ``file:``, tests without ``gsm``."""

    def __init__(self, sources: Mapping[str, SecretSource]):
        self._sources = dict(sources)

    def get(self, ref: SecretRef) -> Secret:
        source = self._sources.get(ref.scheme)
        if source is None:
            raise SecretUnavailable(ref, f"no secret source is configured for {ref.scheme} references")
        return source.get(ref)

    def invalidate(self, ref: SecretRef | None = None) -> None:
        for source in self._sources.values():
            invalidate = getattr(source, "invalidate", None)
            if invalidate is not None:
                invalidate(ref)

    def __repr__(self) -> str:
        return f"RoutingSecretSource({sorted(self._sources)})"


@dataclass
class _Entry:
    value: Secret
    expires_at: float
    retry_at: float = 0.0


class CachedSecretSource:
    """A per-process TTL cache around any ``SecretSource`` (see the module docstring for the rules)."""

    def __init__(self, inner: SecretSource, *, ttl_seconds: float = DEFAULT_TTL_SECONDS,
                 stale_grace_seconds: float = DEFAULT_STALE_GRACE_SECONDS,
                 retry_interval_seconds: float = DEFAULT_RETRY_INTERVAL_SECONDS,
                 clock: Clock | None = None):
        if ttl_seconds < 0 or stale_grace_seconds < 0 or retry_interval_seconds <= 0:
            raise ValueError("ttl_seconds and stale_grace_seconds must be >= 0, retry_interval_seconds > 0")
        self.inner = inner
        self.ttl_seconds = float(ttl_seconds)
        self.stale_grace_seconds = float(stale_grace_seconds)
        self.retry_interval_seconds = float(retry_interval_seconds)
        self._clock = clock or SystemClock()
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock_for(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def get(self, ref: SecretRef) -> Secret:
        key = ref.text
        entry = self._entries.get(key)
        if entry is not None and self._clock.monotonic() < entry.expires_at:
            return entry.value
        with self._lock_for(key):
            now = self._clock.monotonic()
            entry = self._entries.get(key)
            if entry is not None and now < entry.expires_at:
                return entry.value  # refreshed by another thread while we waited
            grace_ends = None if entry is None else entry.expires_at + self.stale_grace_seconds
            if entry is not None and now < entry.retry_at and now < grace_ends:
                return entry.value  # serving stale, and the source failed less than retry_interval ago
            try:
                value = self.inner.get(ref)
            except SecretUnavailable as exc:
                if entry is not None and exc.transient and now < grace_ends:
                    entry.retry_at = now + self.retry_interval_seconds
                    log_event("secrets.stale_served", "WARNING", ref=key, reason=exc.reason,
                              stale_seconds=round(now - entry.expires_at, 3),
                              grace_left_seconds=round(grace_ends - now, 3))
                    return entry.value
                if entry is not None:
                    self._entries.pop(key, None)
                log_event("secrets.unavailable", "ERROR", ref=key, reason=exc.reason, transient=exc.transient)
                raise
            self._entries[key] = _Entry(value=value, expires_at=now + self.ttl_seconds)
            log_event("secrets.fetched", ref=key, scheme=ref.scheme, ttl_seconds=self.ttl_seconds)
            return value

    def invalidate(self, ref: SecretRef | None = None) -> None:
        """Forget ``ref`` (or everything): the next ``get`` fetches. Call it when the venue refuses the
        credentials (rotated key)."""
        with self._guard:
            if ref is None:
                self._entries.clear()
            else:
                self._entries.pop(ref.text, None)

    def __repr__(self) -> str:
        return f"CachedSecretSource({self.inner!r}, ttl_seconds={self.ttl_seconds})"


def secret_manager_source(client: Any = None, *, ttl_seconds: float = DEFAULT_TTL_SECONDS,
                          stale_grace_seconds: float = DEFAULT_STALE_GRACE_SECONDS,
                          retry_interval_seconds: float = DEFAULT_RETRY_INTERVAL_SECONDS,
                          timeout_seconds: float = DEFAULT_GSM_TIMEOUT_SECONDS,
                          clock: Clock | None = None) -> CachedSecretSource:
    """Google Secret Manager behind the per-process TTL cache: what production uses."""
    return CachedSecretSource(GoogleSecretManagerSource(client, timeout_seconds=timeout_seconds),
                              ttl_seconds=ttl_seconds, stale_grace_seconds=stale_grace_seconds,
                              retry_interval_seconds=retry_interval_seconds, clock=clock)


def build_secret_source(*, environ: Mapping[str, str] | None = None,
                        local_file: str | os.PathLike[str] | None = None,
                        secret_manager: bool = False, secret_manager_client: Any = None,
                        ttl_seconds: float = DEFAULT_TTL_SECONDS,
                        stale_grace_seconds: float = DEFAULT_STALE_GRACE_SECONDS,
                        clock: Clock | None = None) -> RoutingSecretSource:
    """The source the composition root builds from explicit config: ``env:`` always, ``file:`` when a
    local file is named (emulator stack, tests), ``projects/…`` when Secret Manager is enabled."""
    sources: dict[str, SecretSource] = {"env": EnvSecretSource(environ)}
    if local_file is not None:
        sources["file"] = LocalFileSecretSource(local_file)
    if secret_manager or secret_manager_client is not None:
        sources["gsm"] = secret_manager_source(secret_manager_client, ttl_seconds=ttl_seconds,
                                               stale_grace_seconds=stale_grace_seconds, clock=clock)
    return RoutingSecretSource(sources)
