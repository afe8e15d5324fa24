"""Alpaca Broker API adapter: many end-user accounts behind one set of keys (alpaca-py ``BrokerClient``).

``AlpacaBrokerApiConnection`` is one Broker API connection (key, secret, sandbox or live, optional
base-URL override): one ``BrokerClient`` plus the market-data clients, built lazily on first use and
cached per process by (credential fingerprint, environment, URLs, timeout), so every account of the
connection — and every later ``AlpacaBrokerApiConnection`` with the same settings — shares them.
``AlpacaBrokerApiAccount(connection, account_id)`` is the ``BrokerPort`` for one account (the Alpaca
account UUID): orders, positions and the trade account go to the account-scoped Broker API routes
(``/v1/trading/accounts/{account_id}/...``); quotes and bars come from Alpaca's market data under the
same broker keys (HTTP Basic auth, ``use_basic_auth=True``; ``data_url_override`` for local servers).

Same guarantees as ``AlpacaBroker``, by construction: ``AlpacaBrokerApiAccount`` IS an ``AlpacaBroker``
whose trading client is an account-scoped view of the connection's ``BrokerClient``
(``_AccountTrading``: the seven ``TradingClient`` calls ``AlpacaBroker`` makes, answered by
``submit_order_for_account``, ``get_order_for_account_by_client_id``, ...). So the retry engine, the
bounded timeouts (``harden_client``), the idempotent submit (lookup by client order id before any resubmit
after an unknown outcome), the refusal mapping to coded ``BrokerError``s and the parsing helpers are
``AlpacaBroker``'s own, not copies; each account instance has its own 429 budget
(``max_rate_limit_retries`` within ``time_budget_seconds``). Client order ids are scoped per account at
Alpaca (the same id in two accounts is two orders), which is exactly the lookup this adapter does.

``set_trade_suspension(account_id, suspended)`` flips the account's ``suspend_trade`` configuration
(``update_trade_configuration_for_account``): a suspended account refuses new orders at the venue
(403 → ``BrokerError(REJECTED)``).

Secrets: the key and secret live only in the connection object and alpaca-py's clients; no repr,
log line or error message of this module contains them (the cache key is a SHA-256 fingerprint).
alpaca-py is imported lazily, like ``AlpacaBroker``.
"""
from __future__ import annotations

import hashlib
import threading
import uuid
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterable

from backend.adapters.alpaca_broker import AlpacaBroker, AlpacaClients, harden_client, read_reply
from backend.adapters.venue_common import is_loopback_url
from backend.domain.assets import AssetClass, AssetSpecRegistry
from backend.domain.clock import Clock
from backend.domain.money import to_decimal
from backend.domain.orders import (
    BrokerError,
    BrokerErrorCode,
    OrderSide,
    VenueActivities,
    VenueFee,
    VenueFill,
    quote_currency,
)

__all__ = ["AlpacaBrokerApiAccount", "AlpacaBrokerApiConnection", "activities_from_alpaca", "clear_client_cache"]

_CACHE: dict[tuple[Any, ...], "_ConnectionClients"] = {}
_CACHE_LOCK = threading.Lock()


def clear_client_cache() -> None:
    """Forget every cached client (tests; a rotated secret gets new clients anyway: it is in the key)."""
    with _CACHE_LOCK:
        _CACHE.clear()


class _ConnectionClients:
    def __init__(self, broker: Any, stock: Any, crypto: Any, option: Any):
        self.broker = broker
        self.stock = stock
        self.crypto = crypto
        self.option = option


class AlpacaBrokerApiConnection:
    """One Broker API connection serving many accounts; see the module docstring."""

    def __init__(self, api_key: str, secret_key: str, *, sandbox: bool = True, url_override: str | None = None,
                 data_url_override: str | None = None, timeout_seconds: float = 10.0):
        if not (isinstance(api_key, str) and api_key and isinstance(secret_key, str) and secret_key):
            raise ValueError("api_key and secret_key must be non-empty strings")  # never echo them
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        self._api_key = api_key
        self._secret_key = secret_key
        self.sandbox = bool(sandbox)
        self.url_override = url_override
        self.data_url_override = data_url_override or url_override
        self.timeout_seconds = float(timeout_seconds)

    def __repr__(self) -> str:  # never show keys
        return (f"AlpacaBrokerApiConnection(sandbox={self.sandbox}, url_override={self.url_override!r}, "
                f"data_url_override={self.data_url_override!r})")

    def _cache_key(self) -> tuple[Any, ...]:
        fingerprint = hashlib.sha256(f"{self._api_key}\0{self._secret_key}".encode()).hexdigest()
        return (fingerprint, self.sandbox, self.url_override, self.data_url_override, self.timeout_seconds)

    def clients(self) -> _ConnectionClients:
        """The connection's clients: built once per process for these settings, then shared."""
        key = self._cache_key()
        with _CACHE_LOCK:
            cached = _CACHE.get(key)
            if cached is None:
                cached = _CACHE[key] = self._build_clients()
            return cached

    def _build_clients(self) -> _ConnectionClients:
        from alpaca.broker.client import BrokerClient
        from alpaca.data.historical.crypto import CryptoHistoricalDataClient
        from alpaca.data.historical.option import OptionHistoricalDataClient
        from alpaca.data.historical.stock import StockHistoricalDataClient

        keys = dict(api_key=self._api_key, secret_key=self._secret_key, raw_data=True)
        data = dict(keys, use_basic_auth=True, sandbox=self.sandbox, url_override=self.data_url_override)
        broker = BrokerClient(sandbox=self.sandbox, url_override=self.url_override, **keys)
        stock = StockHistoricalDataClient(**data)
        crypto = CryptoHistoricalDataClient(**data)
        option = OptionHistoricalDataClient(**data)
        for client, url in ((broker, self.url_override), (stock, self.data_url_override),
                            (crypto, self.data_url_override), (option, self.data_url_override)):
            harden_client(client, self.timeout_seconds, trust_env=not is_loopback_url(url))
        return _ConnectionClients(broker, stock, crypto, option)

    def account(self, account_id: str, **kwargs: Any) -> "AlpacaBrokerApiAccount":
        """The ``BrokerPort`` of one account of this connection (kwargs as ``AlpacaBrokerApiAccount``)."""
        return AlpacaBrokerApiAccount(self, account_id, **kwargs)

    def set_trade_suspension(self, account_id: str, suspended: bool, **kwargs: Any) -> None:
        """Suspend (or resume) trading of one account at the venue; bounded and retried like any call."""
        self.account(account_id, **kwargs).set_trade_suspension(suspended)


class _AccountTrading:
    """The ``TradingClient`` calls ``AlpacaBroker`` makes, answered for one account by ``BrokerClient``."""

    def __init__(self, broker: Any, account_id: str):
        self._broker = broker
        self._account_id = account_id

    def submit_order(self, order_data: Any) -> Any:
        # alpaca-py's broker submit only calls order_data.to_request_fields(): the trading request
        # models AlpacaBroker builds (with their validators) serialize exactly like the broker ones.
        return self._broker.submit_order_for_account(self._account_id, order_data)

    def get_order_by_id(self, order_id: str) -> Any:
        return self._broker.get_order_for_account_by_id(self._account_id, order_id)

    def get_order_by_client_id(self, client_order_id: str) -> Any:
        return self._broker.get_order_for_account_by_client_id(self._account_id, client_order_id)

    def cancel_order_by_id(self, order_id: str) -> Any:
        return self._broker.cancel_order_for_account_by_id(self._account_id, order_id)

    def replace_order_by_id(self, order_id: str, order_data: Any) -> Any:  # issue 15: PATCH replace
        return self._broker.replace_order_for_account_by_id(self._account_id, order_id, order_data)

    def close_position(self, symbol_or_asset_id: str) -> Any:
        return self._broker.close_position_for_account(self._account_id, symbol_or_asset_id)

    def get_all_positions(self) -> Any:
        return self._broker.get_all_positions_for_account(self._account_id)

    def get_account(self) -> Any:
        return self._broker.get_trade_account_by_id(self._account_id)

    def get_asset(self, symbol_or_asset_id: str) -> Any:
        # instruments (issue 19 item 2): the Broker API's GET /v1/assets/{symbol}; not per account
        return self._broker.get_asset(symbol_or_asset_id)


class AlpacaBrokerApiAccount(AlpacaBroker):
    """``BrokerPort`` for one Broker API account; see the module docstring."""

    name = "alpaca_broker"
    # alpaca-py's BrokerClient has the assets endpoint but no option-contract call: options keep
    # the spec table's rules on this venue (backend/execution/instruments.py)
    instrument_classes = frozenset({AssetClass.EQUITY, AssetClass.CRYPTO})

    def __init__(self, connection: AlpacaBrokerApiConnection, account_id: str, *,
                 time_budget_seconds: float = 30.0, max_rate_limit_retries: int = 3,
                 specs: AssetSpecRegistry | None = None, clock: Clock | None = None):
        try:
            account_uuid = str(uuid.UUID(str(account_id)))
        except ValueError:
            raise BrokerError(BrokerErrorCode.INVALID, "account_id must be an Alpaca account UUID") from None
        super().__init__(None, None, paper=connection.sandbox, url_override=connection.url_override,
                         data_url_override=connection.data_url_override,
                         timeout_seconds=connection.timeout_seconds, time_budget_seconds=time_budget_seconds,
                         max_rate_limit_retries=max_rate_limit_retries, specs=specs, clock=clock, env={})
        self.connection = connection
        self.account_id = account_uuid

    def __repr__(self) -> str:  # never show keys
        return f"AlpacaBrokerApiAccount(account_id={self.account_id!r}, connection={self.connection!r})"

    def _clients(self) -> AlpacaClients:
        cached = self._clients_cache
        if cached is not None:
            return cached
        shared = self.connection.clients()
        with self._lock:
            if self._clients_cache is None:
                self._clients_cache = AlpacaClients(_AccountTrading(shared.broker, self.account_id),
                                               shared.stock, shared.crypto, shared.option)
            return self._clients_cache

    def get_activities(self, day: date) -> VenueActivities:
        """The account's ``FILL`` activities and trade fees (``FEE``, ``CFEE``, ``PTC``) of the UTC ``day``
        (``BrokerClient.get_account_activities``, every page; ``after``/``until`` around the day, then the
        day's records kept by ``transaction_time`` — a fee by its ``date``). alpaca-py parses numbers to
        floats; they are read back with ``repr`` (the venue's shortest decimal string), exact."""
        start = datetime.combine(day, time.min, tzinfo=timezone.utc)
        end = start + timedelta(days=1)

        def fetch(c: AlpacaClients) -> Any:
            from alpaca.broker.requests import GetAccountActivitiesRequest
            from alpaca.trading.enums import ActivityType

            request = GetAccountActivitiesRequest(
                account_id=self.account_id, after=start - timedelta(seconds=1), until=end,
                activity_types=[ActivityType.FILL, ActivityType.FEE, ActivityType.CFEE, ActivityType.PTC])
            return self.connection.clients().broker.get_account_activities(request)

        raw = self._call("get_activities", fetch, retry_reads=True) or []
        return read_reply("account activities", lambda: activities_from_alpaca(raw, start, end))

    EVENTS_PAGE = 500  # events one read takes at most (more: the next read goes on from the cursor)
    EVENTS_READ_SECONDS = 5.0  # one read's wall-clock bound: the stream stays open for live events
    EVENTS_QUIET_SECONDS = 2.0  # a stream silent this long has delivered everything up to now

    def events_since(self, cursor: str | None) -> Any:
        """Issue 15 item 7, capability "event feed": the connection's Broker API trade events after
        ``event_id`` ``cursor`` (None: from the start, ``since_id=0``), this account's only, oldest first,
        as a ``VenueEventPage`` (backend/execution/event_ingest.py).

        ``GET /v1/events/trades`` is a Server-Sent-Events stream that replays history and then stays open
        for live events (``until`` needs ``since``, ``until_id`` an id we do not know yet). alpaca-py's
        ``BrokerClient.get_trade_events`` iterates it without any bound, so it is read here with the
        connection's own session and headers (its credentials, never logged) and bounded: at most
        ``EVENTS_PAGE`` events, ``EVENTS_READ_SECONDS`` in all, and a read that stays silent
        ``EVENTS_QUIET_SECONDS`` ends the page. The cursor is the last event id read (any account's:
        the feed is the connection's), so the next read starts after it."""
        import json as _json

        import requests

        from backend.execution.event_ingest import VenueEvent, VenueEventPage

        broker = self.connection.clients().broker
        url = f"{broker._base_url}/v1/events/trades"
        since = str(cursor) if cursor else "0"
        started = self._clock.monotonic()
        quiet = min(self.EVENTS_QUIET_SECONDS, self.connection.timeout_seconds)
        records: list[dict[str, Any]] = []
        last_id: str | None = None
        more = False
        try:
            response = broker._session.get(url, params={"since_id": since}, stream=True,
                                           headers=broker._get_sse_headers(),
                                           timeout=(self.connection.timeout_seconds, quiet))
        except requests.RequestException as exc:
            raise BrokerError(BrokerErrorCode.UNAVAILABLE, f"trade events unreachable: {type(exc).__name__}") from None
        try:
            if response.status_code != 200:
                code = {404: BrokerErrorCode.NOT_FOUND, 429: BrokerErrorCode.RATE_LIMITED,
                        401: BrokerErrorCode.REJECTED, 403: BrokerErrorCode.REJECTED,
                        422: BrokerErrorCode.INVALID}.get(response.status_code, BrokerErrorCode.UNAVAILABLE)
                raise BrokerError(code, f"trade events answered HTTP {response.status_code}")
            try:
                for raw_line in response.iter_lines():  # bytes: SSE is UTF-8 whatever the header says
                    line = raw_line.decode("utf-8", "replace")
                    if line.startswith("data:"):
                        record = _json.loads(line[5:].strip())
                        last_id = str(record.get("event_id"))
                        records.append(record)
                        if len(records) >= self.EVENTS_PAGE:
                            more = True
                            break
                    if self._clock.monotonic() - started >= self.EVENTS_READ_SECONDS:
                        more = True
                        break
            except (requests.RequestException, OSError):
                pass  # silent for ``quiet`` seconds (or cut): everything up to now was delivered
            except ValueError:
                raise BrokerError(BrokerErrorCode.UNAVAILABLE, "unreadable trade event") from None
        finally:
            response.close()
        events = []
        for record in records:
            order = record.get("order") or {}
            if str(record.get("account_id") or "") != self.account_id or not str(record.get("event_id", "")).isdigit():
                continue
            events.append(VenueEvent(event_id=str(record["event_id"]), kind=str(record.get("event") or ""),
                                     client_order_id=order.get("client_order_id"),
                                     broker_order_id=order.get("id")))
        return VenueEventPage(events=tuple(events), cursor=last_id or cursor, more=more)

    def trade_suspended(self) -> bool:
        raw = self._call("get_trade_configuration",
                         lambda c: self.connection.clients().broker.get_trade_configuration_for_account(
                             self.account_id), retry_reads=True)
        return bool((raw or {}).get("suspend_trade"))

    def set_trade_suspension(self, suspended: bool) -> None:
        """Set ``suspend_trade`` on this account (read-modify-write of its trade configuration; the
        PATCH sets a value, so a retry after an unknown outcome is harmless)."""
        def update(c: AlpacaClients) -> Any:
            from alpaca.trading.models import AccountConfiguration

            broker = self.connection.clients().broker
            current = broker.get_trade_configuration_for_account(self.account_id)
            config = AccountConfiguration(**{**current, "suspend_trade": bool(suspended)})
            return broker.update_trade_configuration_for_account(self.account_id, config)

        raw = self._call("set_trade_suspension", update, retry_reads=True)
        if bool((raw or {}).get("suspend_trade")) is not bool(suspended):
            raise BrokerError(BrokerErrorCode.UNAVAILABLE,
                              f"set_trade_suspension: the venue did not apply suspend_trade={bool(suspended)}")


def _value(obj: Any, name: str) -> Any:
    value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
    return getattr(value, "value", value)  # alpaca-py enums → their wire value


def activities_from_alpaca(activities: Iterable[Any], start: datetime, end: datetime) -> VenueActivities:
    """Alpaca account activities (alpaca-py ``TradeActivity`` / ``NonTradeActivity`` or their JSON) in
    [start, end) as ``VenueActivities``: each ``FILL`` a ``VenueFill`` (contract multiplier from the
    symbol's spec: OCC options ×100), each fee a ``VenueFee`` (``net_amount`` as booked: negative = charged)."""
    from backend.domain.assets import default_registry

    fills, fees = [], []
    for activity in activities:
        kind = str(_value(activity, "activity_type") or "").upper()
        if kind == "FILL":
            when = _value(activity, "transaction_time")
            when = datetime.fromisoformat(str(when).replace("Z", "+00:00")) if isinstance(when, str) else when
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            if not start <= when < end:
                continue
            symbol = str(_value(activity, "symbol"))
            fills.append(VenueFill(
                fill_id=str(_value(activity, "id")), symbol=symbol,
                side=OrderSide(str(_value(activity, "side")).lower()),
                qty=to_decimal(_value(activity, "qty"), "qty"), price=to_decimal(_value(activity, "price"), "price"),
                time=when, currency=quote_currency(symbol), multiplier=default_registry().spec_for(symbol).multiplier,
                order_id=str(_value(activity, "order_id")) if _value(activity, "order_id") is not None else None))
        elif kind:
            on = _value(activity, "date")
            on = date.fromisoformat(str(on)[:10]) if isinstance(on, str) else on
            if not start.date() <= on < end.date():
                continue
            fees.append(VenueFee(fee_id=str(_value(activity, "id")), kind=kind,
                                 amount=to_decimal(_value(activity, "net_amount"), "net_amount"),
                                 time=datetime.combine(on, time.min, tzinfo=timezone.utc),
                                 symbol=_value(activity, "symbol")))
    return VenueActivities(fills=tuple(fills), fees=tuple(fees))
