"""The HTTP layer of the OANDA adapter: configuration, one kept-alive ``httpx.Client`` per process per
host and token, bounded timeouts, error classification and the 429/5xx retry budget.

- **Hosts**: ``practice`` → ``https://api-fxpractice.oanda.com``, ``live`` →
  ``https://api-fxtrade.oanda.com``; ``base_url`` overrides both (the local test server). A
  loopback override never goes through an environment proxy.
- **Connections**: OANDA asks for at most 2 new connections per second and 100 requests per second
  per connection, so every ``OandaHttp`` with the same host and token shares one ``httpx.Client``
  (a keep-alive pool, ``retries=0`` at the transport: a POST is sent at most once by httpx).
- **Time**: every request has ``timeout_seconds`` for connect and for each read/write; a call's
  retries never go past ``time_budget_seconds`` (the retry that would cross it is not attempted:
  the coded error is raised instead). Sleeps go through the injected clock.
- **Retries**: 429 is a definite refusal (nothing was processed): retried after Retry-After (or
  exponential backoff), at most ``max_rate_limit_retries`` times. 5xx, timeouts and dropped
  connections are retried (at most twice) only for reads; a POST/PUT is never retried here: the
  broker decides after looking the order up (``OandaBroker._submit``).
- **Secrets**: the bearer token lives only in the client's default headers; no message, log line
  or ``repr`` contains it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping

from backend.adapters.venue_common import (
    MAX_READ_RETRIES,
    backoff,  # noqa: F401  (re-exported: the broker's resubmit budget)
    is_loopback_url,
    parse_retry_after,
    rate_limit_wait,
    transient_wait,
)
from backend.domain.clock import Clock, SystemClock
from backend.domain.errors import InvalidInput
from backend.domain.orders import BrokerError, BrokerErrorCode

log = logging.getLogger(__name__)

HOSTS = {"practice": "https://api-fxpractice.oanda.com", "live": "https://api-fxtrade.oanda.com"}
ENVIRONMENTS = tuple(HOSTS)

# OANDA reject / cancel reasons that mean "not enough margin" and "the market is not trading".
MARGIN_REASONS = frozenset({"INSUFFICIENT_MARGIN"})
HALT_REASONS = frozenset({"MARKET_HALTED", "INSTRUMENT_NOT_TRADEABLE", "ACCOUNT_LOCKED",
                          "ACCOUNT_ORDER_CREATION_LOCKED", "ACCOUNT_ORDER_FILL_LOCKED",
                          "ACCOUNT_NEW_POSITIONS_LOCKED", "ACCOUNT_NOT_ACTIVE"})
DUPLICATE_REASONS = frozenset({"CLIENT_ORDER_ID_ALREADY_EXISTS"})


@dataclass(frozen=True)
class OandaConfig:
    """One OANDA connection: the account, its token and where to reach it. Constructible from
    explicit values (a broker connection of the account model) or from the environment."""

    account_id: str
    token: str = field(repr=False)
    environment: str = "practice"
    base_url: str | None = None
    timeout_seconds: float = 10.0
    time_budget_seconds: float = 30.0
    max_rate_limit_retries: int = 5

    def __post_init__(self) -> None:
        if self.environment not in ENVIRONMENTS:
            raise InvalidInput("OANDA_ENVIRONMENT", f"must be one of {list(ENVIRONMENTS)}, got {self.environment!r}")
        if not self.account_id or "/" in self.account_id:
            raise InvalidInput("OANDA_ACCOUNT_ID", "an OANDA account id such as 101-004-1234567-001 is required")
        if not self.token:
            raise InvalidInput("OANDA_API_TOKEN", "an OANDA API token is required")
        if not (0 < self.timeout_seconds <= 120) or not (0 < self.time_budget_seconds <= 600):
            raise InvalidInput("OANDA_TIMEOUT_SECONDS", "timeouts must be positive and bounded")
        if self.max_rate_limit_retries < 0:
            raise InvalidInput("max_rate_limit_retries", "must be >= 0")

    @property
    def url(self) -> str:
        return (self.base_url or HOSTS[self.environment]).rstrip("/")

    @classmethod
    def from_env(cls, env: Mapping[str, str], secrets: Mapping[str, str | None] | None = None) -> "OandaConfig":
        """``OANDA_ACCOUNT_ID``, ``OANDA_API_TOKEN`` (a function secret or the environment),
        ``OANDA_ENVIRONMENT`` (practice | live, default practice), ``OANDA_BASE_URL`` (override),
        ``OANDA_TIMEOUT_SECONDS`` (default 10)."""
        secrets = secrets or {}
        timeout_raw = (env.get("OANDA_TIMEOUT_SECONDS") or "").strip()
        try:
            timeout = float(timeout_raw) if timeout_raw else 10.0
        except ValueError:
            raise InvalidInput("OANDA_TIMEOUT_SECONDS", f"expected seconds, got {timeout_raw!r}") from None
        if not math.isfinite(timeout):
            raise InvalidInput("OANDA_TIMEOUT_SECONDS", "must be finite")
        return cls(account_id=(env.get("OANDA_ACCOUNT_ID") or "").strip(),
                   token=(secrets.get("OANDA_API_TOKEN") or env.get("OANDA_API_TOKEN") or "").strip(),
                   environment=(env.get("OANDA_ENVIRONMENT") or "practice").strip().lower(),
                   base_url=(env.get("OANDA_BASE_URL") or "").strip() or None,
                   timeout_seconds=timeout)


# --------------------------------------------------------------------------------------------
# Failures
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """A classified failed request."""

    error: BrokerError
    status: int | None = None
    never_sent: bool = False  # certainly not processed (connection refused, connect timeout, pool)
    duplicate: bool = False  # OANDA: CLIENT_ORDER_ID_ALREADY_EXISTS
    body: Mapping[str, Any] | None = None
    in_flight: bool = False  # read/write timeout: no answer, the venue may still be working on it

    @property
    def ambiguous(self) -> bool:
        """The request may have been processed (timeout after send, dropped response, 5xx)."""
        return self.error.code is BrokerErrorCode.UNAVAILABLE and not self.never_sent


class FailedRequest(Exception):
    def __init__(self, failure: Failure):
        super().__init__(str(failure.error))
        self.failure = failure


def reason_error(reason: str, detail: str) -> BrokerError:
    """An OANDA reject / cancel reason → coded error (INSUFFICIENT_MARGIN → buying power, ...)."""
    if reason in MARGIN_REASONS:
        return BrokerError(BrokerErrorCode.INSUFFICIENT_BUYING_POWER, f"{reason}: {detail}")
    return BrokerError(BrokerErrorCode.REJECTED, f"{reason}: {detail}")


def map_status(status: int, body: Mapping[str, Any], retry_after: float | None) -> Failure:
    """An HTTP error answer → ``Failure``. ``body`` is OANDA's JSON (``errorCode``, ``errorMessage``,
    ``orderRejectTransaction.rejectReason``) or ``{}``."""
    reject = body.get("orderRejectTransaction") if isinstance(body.get("orderRejectTransaction"), Mapping) else {}
    reason = str(reject.get("rejectReason") or body.get("errorCode") or "")
    message = str(body.get("errorMessage") or "") or f"HTTP {status}"
    detail = f"{message} (HTTP {status}{', ' + reason if reason else ''})"
    if status == 429:
        return Failure(BrokerError(BrokerErrorCode.RATE_LIMITED, detail, retry_after=retry_after), status, body=body)
    if status >= 500 or status == 408:
        return Failure(BrokerError(BrokerErrorCode.UNAVAILABLE, detail), status, body=body)
    if reason in DUPLICATE_REASONS:
        return Failure(BrokerError(BrokerErrorCode.DUPLICATE, detail), status, duplicate=True, body=body)
    if reason in MARGIN_REASONS or reason in HALT_REASONS:
        return Failure(reason_error(reason, detail), status, body=body)
    if status == 404:
        return Failure(BrokerError(BrokerErrorCode.NOT_FOUND, detail), status, body=body)
    if status == 400:
        return Failure(BrokerError(BrokerErrorCode.INVALID, detail), status, body=body)
    # 401/403 (token, permissions), 405, other 4xx: the venue said no
    return Failure(BrokerError(BrokerErrorCode.REJECTED, detail), status, body=body)


def map_transport(exc: BaseException) -> Failure:
    import httpx

    text = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}".rstrip(": ")
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)):
        return Failure(BrokerError(BrokerErrorCode.UNAVAILABLE, f"not sent ({text})"), never_sent=True)
    in_flight = isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout))
    return Failure(BrokerError(BrokerErrorCode.UNAVAILABLE, f"outcome unknown ({text})"), in_flight=in_flight)


# --------------------------------------------------------------------------------------------
# Shared clients
# --------------------------------------------------------------------------------------------

_clients_lock = threading.Lock()
_CLIENTS: dict[tuple[str, str], Any] = {}


def shared_client(url: str, token: str) -> Any:
    """The process's one ``httpx.Client`` for this host and token (created on first use)."""
    key = (url, hashlib.sha256(token.encode()).hexdigest())
    client = _CLIENTS.get(key)
    if client is not None and not client.is_closed:
        return client
    import httpx

    with _clients_lock:
        client = _CLIENTS.get(key)
        if client is None or client.is_closed:
            client = httpx.Client(
                base_url=url,
                headers={"Authorization": f"Bearer {token}", "Accept-Datetime-Format": "RFC3339",
                         "Content-Type": "application/json", "User-Agent": "exec-backend-oanda/1"},
                transport=httpx.HTTPTransport(retries=0),  # never resend at the transport level
                limits=httpx.Limits(max_connections=8, max_keepalive_connections=8, keepalive_expiry=30),
                trust_env=not is_loopback_url(url),
                follow_redirects=False,
            )
            _CLIENTS[key] = client
        return client


def close_shared_clients() -> None:
    """Close every cached client (tests, shutdown)."""
    with _clients_lock:
        for client in _CLIENTS.values():
            client.close()
        _CLIENTS.clear()


# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    data: Mapping[str, Any]


class OandaHttp:
    """Requests against one account. ``request_once`` sends exactly once; ``call`` adds the retry
    budget (429 always, transient failures for reads only)."""

    def __init__(self, config: OandaConfig, *, clock: Clock | None = None):
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.last_transaction_id: str | None = None  # the newest lastTransactionID any answer carried

    @property
    def account_path(self) -> str:
        return f"/v3/accounts/{self.config.account_id}"

    def deadline(self) -> float:
        return self.clock.monotonic() + self.config.time_budget_seconds

    def request_once(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                     body: Mapping[str, Any] | None = None) -> Reply:
        """One HTTP exchange. 2xx → ``Reply``; anything else raises ``FailedRequest``."""
        import httpx

        client = shared_client(self.config.url, self.config.token)
        try:
            response = client.request(method, path, params=params,
                                      content=None if body is None else json.dumps(body).encode(),
                                      timeout=httpx.Timeout(self.config.timeout_seconds))
            raw = response.content
        except httpx.TransportError as exc:
            raise FailedRequest(map_transport(exc)) from None
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = None
        if isinstance(data, Mapping):
            self._note_transaction(data.get("lastTransactionID"))
        if not 200 <= response.status_code < 300:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self.clock.now())
            raise FailedRequest(map_status(response.status_code, data if isinstance(data, Mapping) else {},
                                           retry_after))
        if not isinstance(data, Mapping):
            # a 2xx we cannot read: the request was processed, its result is unknown
            raise FailedRequest(Failure(BrokerError(BrokerErrorCode.UNAVAILABLE,
                                                    f"unreadable {response.status_code} body; outcome unknown"),
                                        response.status_code))
        return Reply(response.status_code, data)

    def _note_transaction(self, last: Any) -> None:
        if isinstance(last, str) and last.isdigit():
            if self.last_transaction_id is None or int(last) > int(self.last_transaction_id):
                self.last_transaction_id = last

    def call(self, op: str, method: str, path: str, *, params: Mapping[str, Any] | None = None,
             body: Mapping[str, Any] | None = None, retry_transient: bool = True,
             deadline: float | None = None) -> Reply:
        deadline = self.deadline() if deadline is None else deadline
        rate_limited = transient = 0
        while True:
            try:
                return self.request_once(method, path, params=params, body=body)
            except FailedRequest as failed:
                failure = failed.failure
            error = failure.error
            if error.code is BrokerErrorCode.RATE_LIMITED:
                wait = self.rate_limit_wait(error, rate_limited, deadline, op)
                rate_limited += 1
            else:
                retry = error.code is BrokerErrorCode.UNAVAILABLE and retry_transient
                next_wait = transient_wait(error, transient, deadline=deadline, clock=self.clock, op=op,
                                           venue="oanda", logger=log) if retry else None
                if next_wait is None:
                    raise FailedRequest(Failure(BrokerError(error.code, f"{op}: {error.message}",
                                                            retry_after=error.retry_after),
                                                failure.status, failure.never_sent, failure.duplicate,
                                                failure.body, failure.in_flight)) from None
                wait = next_wait
                transient += 1
            self.clock.sleep(wait)

    def rate_limit_wait(self, error: BrokerError, attempts: int, deadline: float, op: str) -> float:
        """``venue_common.rate_limit_wait`` with this account's retry limit and time budget."""
        return rate_limit_wait(error, attempts, deadline=deadline, clock=self.clock,
                               max_retries=self.config.max_rate_limit_retries,
                               budget_seconds=self.config.time_budget_seconds, op=op, venue="oanda", logger=log)


__all__ = ["OandaConfig", "OandaHttp", "Failure", "FailedRequest", "Reply", "HOSTS", "shared_client",
           "close_shared_clients", "map_status", "map_transport", "reason_error", "parse_retry_after",
           "backoff", "MAX_READ_RETRIES"]
