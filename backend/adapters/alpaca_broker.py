"""Alpaca adapter: ``BrokerPort`` on the real alpaca-py clients (equities, crypto, options).

Three modules: ``alpaca_wire.py`` turns the venue's JSON and errors into domain values (status
mapping, symbols, error classification, parsing, multi-leg validation; re-exported here, so
``from backend.adapters.alpaca_broker import order_from_raw`` keeps working); ``venue_common.py``
holds the retry and time-budget rules this adapter shares with OANDA's; this module owns the two
concerns below.

Time (every call bounded)
    alpaca-py sets no HTTP timeout and retries 429/504 three times, 3 s apart, POSTs included.
    Each client's ``_session`` is replaced by ``_TimeoutSession`` (a ``requests.Session`` whose
    ``request`` defaults ``timeout``) and its ``_retry`` is set to 0, so the SDK raises on the
    first 429/504 and this adapter owns backoff: Retry-After when present, otherwise exponential,
    slept on the injected clock, and never past ``time_budget_seconds`` (the retry that would
    cross the budget is not attempted; the coded error is raised instead). Both are private
    attributes of alpaca-py 0.44's ``RESTClient``; ``harden_client`` checks they exist so an SDK upgrade
    that renames them fails loudly at client creation instead of silently losing the bounds.

Idempotency (submit)
    Every order carries the caller's deterministic ``client_order_id``.
    - 422 "client_order_id must be unique" means the order is already placed: fetch and return it.
    - An ambiguous failure (read timeout, dropped connection, 5xx, unreadable 2xx body) means the
      order may be live: look it up by client id first; only a definite "not found" allows a
      resubmit (same client id, so a late-appearing original still turns the resubmit into the
      duplicate case above). When the lookup itself cannot be done the call fails UNAVAILABLE
      with "outcome unknown" and never resubmits.
    - A refused connection (nothing reached the venue) fails fast, UNAVAILABLE, no lookup needed.
    - 429 is a definite refusal (the venue did not process the request), so the POST is retried
      after the backoff without a lookup; the unique client id still guards it.

Instruments (issue 19 item 2)
    ``instrument(symbol, asset_class)`` reads ``GET /v2/assets/{symbol}`` (equities, crypto; the
    Broker API's ``/v1/assets/{symbol}`` through the same call) or ``GET /v2/options/contracts/{symbol}``
    (options) and answers an ``InstrumentInfo`` (tradable, fractionable, crypto increments), None on
    404. Answers, 404s included, are cached per process for ``instrument_ttl_seconds`` (300 s) per
    (venue kind, base URL, environment, class, symbol) — metadata is the venue's, not an account's —
    so repeated checks cost one HTTP call; transient failures are not cached and raise as usual.

alpaca-py is imported lazily (pandas makes it ≈0.45 s of a cold start); importing this module
imports neither alpaca nor requests.
"""
from __future__ import annotations

import logging
import os
import threading
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable, Mapping, Sequence, TypeVar

from backend.adapters import alpaca_wire
from backend.adapters.alpaca_wire import (  # re-exported: the old import path keeps working
    ALPACA_STATUS_TO_STATE,
    ALPACA_UNPROCESSABLE,
    Failure,
    Leg,
    build_order_request,
    build_replace_request,
    classify_exception,
    domain_symbol,
    map_api_error,
    map_order_state,
    order_from_raw,
    order_symbol,
    parse_timestamp,
    position_from_raw,
    position_symbol,
    quote_from_raw,
    read_reply,
    to_wire_number,
    validate_multileg,
)
from backend.adapters.alpaca_wire import asset_path_symbol, instrument_from_raw
from backend.adapters.venue_common import (
    AssetClassGate,
    is_loopback_url,
    rate_limit_wait,
    resubmit_wait,
    transient_wait,
)
from backend.domain.assets import AssetClass, AssetSpecRegistry
from backend.domain.clock import Clock, SystemClock
from backend.domain.instruments import InstrumentInfo
from backend.domain.money import to_decimal
from backend.domain.orders import (
    Account,
    AssetSpecMixin,
    BrokerError,
    BrokerErrorCode,
    BrokerOrder,
    OrderRequest,
    ReplaceRequest,
    OrderSide,
    OrderType,
    Position,
    Quote,
    VenueActivities,
    VenueFill,
    check_client_order_id,
    quote_currency,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

SUPPORTED_ASSET_CLASSES = frozenset({AssetClass.EQUITY, AssetClass.CRYPTO, AssetClass.OPTIONS})

INSTRUMENT_TTL_SECONDS = 300.0
# per process: (venue kind, base URL, paper, class, path symbol) → (expires at, monotonic; answer)
_instruments_lock = threading.Lock()
_INSTRUMENTS: dict[tuple[Any, ...], tuple[float, InstrumentInfo | None]] = {}
_INSTRUMENTS_MAX = 20_000


def forget_instruments() -> None:
    """Drop the per-process instrument cache (tests)."""
    with _instruments_lock:
        _INSTRUMENTS.clear()

# --------------------------------------------------------------------------------------------
# The adapter
# --------------------------------------------------------------------------------------------


def _env_paper(env: Mapping[str, str]) -> bool:
    raw = env.get("ALPACA_PAPER", "").strip().lower()
    if raw in ("", "1", "true", "yes", "paper"):
        return True
    if raw in ("0", "false", "no", "live"):
        return False
    raise ValueError(f"ALPACA_PAPER must be 1/0/true/false, got {raw!r}")


class AlpacaClients:
    """The four alpaca-py clients one ``AlpacaBroker`` talks to: ``trading`` (a ``TradingClient``,
    or anything answering its seven calls, e.g. ``alpaca_broker_api._AccountTrading``) and the
    ``stock`` / ``crypto`` / ``option`` historical-data clients. Each built client is passed
    through ``harden_client`` first."""

    def __init__(self, trading: Any, stock: Any, crypto: Any, option: Any):
        self.trading = trading
        self.stock = stock
        self.crypto = crypto
        self.option = option


class AlpacaBroker(AssetClassGate, AssetSpecMixin):
    """``BrokerPort`` for Alpaca. Paper unless ``paper=False`` (or env ``ALPACA_PAPER=0``)."""

    name = "alpaca"
    supported = SUPPORTED_ASSET_CLASSES
    unsupported_message = "NO_VENUE_FOR_ASSET_CLASS: {asset_class}"
    instrument_classes = SUPPORTED_ASSET_CLASSES  # classes with instrument metadata (InstrumentProvider)
    instrument_ttl_seconds = INSTRUMENT_TTL_SECONDS

    def __init__(
        self,
        api_key: str | None = None,
        secret_key: str | None = None,
        *,
        paper: bool | None = None,
        url_override: str | None = None,
        data_url_override: str | None = None,
        timeout_seconds: float = 10.0,
        time_budget_seconds: float = 30.0,
        max_rate_limit_retries: int = 3,
        specs: AssetSpecRegistry | None = None,
        clock: Clock | None = None,
        env: Mapping[str, str] | None = None,
    ):
        """``paper=None`` reads ``ALPACA_PAPER`` (default paper); an explicit bool wins.
        ``data_url_override`` defaults to ``url_override`` (one local server serves both)."""
        env = os.environ if env is None else env
        if timeout_seconds <= 0 or time_budget_seconds <= 0:
            raise ValueError("timeout_seconds and time_budget_seconds must be positive")
        if max_rate_limit_retries < 0:
            raise ValueError("max_rate_limit_retries must be >= 0")
        self._api_key = api_key or env.get("ALPACA_API_KEY") or None
        self._secret_key = secret_key or env.get("ALPACA_SECRET_KEY") or None
        self.paper = _env_paper(env) if paper is None else bool(paper)
        self.url_override = url_override
        self.data_url_override = data_url_override or url_override
        self.timeout_seconds = float(timeout_seconds)
        self.time_budget_seconds = float(time_budget_seconds)
        self.max_rate_limit_retries = int(max_rate_limit_retries)
        self.specs = specs  # type: ignore[assignment]  # None → default registry (AssetSpecMixin)
        self._clock: Clock = clock or SystemClock()
        self._clients_cache: AlpacaClients | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never show keys
        return f"AlpacaBroker(paper={self.paper}, url_override={self.url_override!r})"

    # ---------------------------------------------------------------- port: orders

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        klass = self._require(request.asset_class)
        alpaca_request = self._guard(lambda: self._build_order_request(request, klass))
        return self._submit_idempotent(request.client_order_id, alpaca_request, default_side=request.side)

    def submit_multileg_options(
        self,
        client_order_id: str,
        legs: Sequence[Leg],
        qty: Decimal | int,
        order_type: OrderType | str = OrderType.MARKET,
        limit_price: Decimal | None = None,
        time_in_force: str = "day",
    ) -> BrokerOrder:
        """One ``order_class=mleg`` order: 2–4 legs of (occ_symbol, side, ratio_qty) on one
        underlying. ``limit_price`` is the net price per spread (positive debit, negative credit)."""
        try:
            check_client_order_id(client_order_id)
        except ValueError as exc:
            raise BrokerError(BrokerErrorCode.INVALID, str(exc)) from None
        try:
            kind = OrderType(order_type.value if isinstance(order_type, OrderType) else str(order_type).lower())
        except ValueError:
            raise BrokerError(BrokerErrorCode.INVALID, f"MLEG_INVALID: order_type {order_type!r}") from None
        if (kind is OrderType.LIMIT) != (limit_price is not None):
            raise BrokerError(BrokerErrorCode.INVALID, "MLEG_INVALID: limit_price is required for limit orders and only for them")
        clean = validate_multileg(legs, qty)

        def build() -> Any:
            from alpaca.trading.enums import OrderClass, TimeInForce
            from alpaca.trading.enums import OrderSide as AlpacaSide
            from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest, OptionLegRequest

            fields: dict[str, Any] = dict(
                qty=to_wire_number(Decimal(qty), "qty"),
                time_in_force=TimeInForce(time_in_force),
                order_class=OrderClass.MLEG,
                client_order_id=client_order_id,
                legs=[OptionLegRequest(symbol=s, side=AlpacaSide(side.value), ratio_qty=ratio)
                      for s, side, ratio in clean],
            )
            if kind is OrderType.LIMIT:
                assert limit_price is not None
                return LimitOrderRequest(limit_price=to_wire_number(Decimal(limit_price), "limit_price"), **fields)
            return MarketOrderRequest(**fields)

        alpaca_request = self._guard(build)
        return self._submit_idempotent(client_order_id, alpaca_request, default_side=clean[0][1])

    def get_order(self, broker_order_id: str) -> BrokerOrder:
        raw = self._call("get_order", lambda c: c.trading.get_order_by_id(broker_order_id), retry_reads=True)
        return read_reply(f"order {broker_order_id}", lambda: order_from_raw(raw))

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        return self._lookup_by_client_id(client_order_id, self._deadline())

    def cancel_order(self, broker_order_id: str) -> None:
        # DELETE /orders/{id} is idempotent at Alpaca (a second cancel is a 422 "not cancelable"
        # once the order is final), so transient failures are retried like reads.
        self._call("cancel_order", lambda c: c.trading.cancel_order_by_id(broker_order_id), retry_reads=True)

    def replace_order(self, broker_order_id: str, request: ReplaceRequest) -> BrokerOrder:
        """PATCH the working order (issue 15 item 6): Alpaca cancels it and answers the new order,
        which carries ``replaces``. Not retried blindly: after an ambiguous failure the new client id
        is looked up, so a replace is made at most once."""
        alpaca_request = self._guard(lambda: build_replace_request(request))
        deadline = self._deadline()
        try:
            raw = self._call("replace_order", lambda c: c.trading.replace_order_by_id(broker_order_id, alpaca_request),
                             retry_reads=False, deadline=deadline)
        except BrokerError as error:
            if error.code is not BrokerErrorCode.UNAVAILABLE:
                raise
            found = self._lookup_by_client_id(request.client_order_id, deadline)
            if found is None:
                raise
            return found
        return read_reply(f"order {request.client_order_id}", lambda: order_from_raw(raw))

    def close_position(self, symbol: str, asset_class: AssetClass) -> BrokerOrder | None:
        klass = self._require(asset_class)
        path_symbol = self._guard(lambda: position_symbol(symbol, klass))
        # Not retried on ambiguous failures: closing places an order without our client id, so
        # a blind retry could double it. Only 429 (definitely not processed) is retried.
        try:
            raw = self._call("close_position", lambda c: c.trading.close_position(path_symbol), retry_reads=False)
        except BrokerError as error:
            if error.code is BrokerErrorCode.NOT_FOUND:
                return None  # no open position
            raise
        return read_reply(f"close order for {path_symbol}", lambda: order_from_raw(raw)) if raw else None

    # ---------------------------------------------------------------- port: account

    def get_positions(self) -> Sequence[Position]:
        raw = self._call("get_positions", lambda c: c.trading.get_all_positions(), retry_reads=True)
        return read_reply("positions", lambda: [position_from_raw(item) for item in (raw or [])])

    def get_account(self) -> Account:
        raw = self._call("get_account", lambda c: c.trading.get_account(), retry_reads=True)
        return read_reply("account", lambda: Account(
            buying_power=to_decimal(raw["buying_power"], "buying_power"),
            equity=to_decimal(raw.get("equity", raw.get("portfolio_value", "0")), "equity"),
            cash=to_decimal(raw.get("cash", "0"), "cash"),
            currency=str(raw.get("currency") or "USD"),
        ))

    # ---------------------------------------------------------------- capability: activities

    ORDERS_LOOKBACK_DAYS = 7  # a GTC order submitted up to a week before may fill on the day
    ORDERS_PAGE = 500  # Alpaca's maximum ``limit`` for GET /v2/orders

    def get_activities(self, day: date) -> VenueActivities:
        """The fills of the UTC ``day`` from the account's closed orders (alpaca-py 0.44's ``TradingClient``
        has no account-activities call): every order (and nested leg) with a fill whose ``filled_at``
        (``updated_at`` for a canceled partial fill) falls on the day counts with its ``filled_qty`` at
        ``filled_avg_price``. Orders are the venue's own records, but coarser than activities: an order
        filled across two days counts on the day of its last fill, and the venue's fees are not in them."""
        start = datetime.combine(day, time.min, tzinfo=timezone.utc)
        day_end = start + timedelta(days=1)
        after = start - timedelta(days=self.ORDERS_LOOKBACK_DAYS)  # submitted after (Alpaca: exclusive)
        seen: dict[str, Any] = {}
        until = day_end  # submitted before; narrowed page by page
        while True:
            def fetch(c: AlpacaClients, until: datetime = until) -> Any:
                from alpaca.trading.enums import QueryOrderStatus
                from alpaca.trading.requests import GetOrdersRequest

                return c.trading.get_orders(GetOrdersRequest(status=QueryOrderStatus.CLOSED, after=after, until=until,
                                                             limit=self.ORDERS_PAGE, nested=True))

            page = self._call("get_activities", fetch, retry_reads=True) or []
            fresh = [o for o in page if isinstance(o, Mapping) and str(o.get("id")) not in seen]
            for order in fresh:
                seen[str(order.get("id"))] = order
            if len(page) < self.ORDERS_PAGE or not fresh:
                break
            # Alpaca answers newest first: the next page ends at the oldest order seen (inclusive, so an
            # order sharing its instant is not skipped; the ones already seen are dropped above)
            until = read_reply("closed orders", lambda: min(
                parse_timestamp(o.get("submitted_at") or o.get("created_at")) for o in fresh)) \
                + timedelta(microseconds=1)
        return read_reply("closed orders", lambda: VenueActivities(fills=tuple(
            fill for order in seen.values() for fill in _order_fills(order, start, end_of_day=day_end))))

    # ---------------------------------------------------------------- port: market data

    def get_latest_quote(self, symbol: str, asset_class: AssetClass) -> Quote:
        klass = self._require(asset_class)
        venue_symbol = self._guard(lambda: order_symbol(symbol, klass))

        def fetch(c: AlpacaClients) -> Any:
            if klass is AssetClass.CRYPTO:
                from alpaca.data.requests import CryptoLatestQuoteRequest
                return c.crypto.get_crypto_latest_quote(CryptoLatestQuoteRequest(symbol_or_symbols=venue_symbol))
            if klass is AssetClass.OPTIONS:
                from alpaca.data.requests import OptionLatestQuoteRequest
                return c.option.get_option_latest_quote(OptionLatestQuoteRequest(symbol_or_symbols=venue_symbol))
            from alpaca.data.requests import StockLatestQuoteRequest
            return c.stock.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols=venue_symbol))

        raw = self._call("get_latest_quote", fetch, retry_reads=True) or {}
        item = raw.get(venue_symbol) or raw.get(venue_symbol.replace("/", ""))
        if not item:
            raise BrokerError(BrokerErrorCode.NOT_FOUND, f"no quote for {venue_symbol}")
        return read_reply(f"quote for {venue_symbol}", lambda: quote_from_raw(venue_symbol, item))

    def get_recent_closes(self, symbol: str, asset_class: AssetClass, limit: int) -> Sequence[Decimal]:
        """The last ``limit`` daily closes, oldest first."""
        klass = self._require(asset_class)
        if limit < 1:
            return []
        venue_symbol = self._guard(lambda: order_symbol(symbol, klass))
        # enough calendar days to hold `limit` sessions (weekends, holidays); crypto trades daily
        days = limit + 3 if klass is AssetClass.CRYPTO else limit * 7 // 5 + 10
        start = self._clock.now() - timedelta(days=days)

        def fetch(c: AlpacaClients) -> Any:
            from alpaca.common.enums import Sort
            from alpaca.data.timeframe import TimeFrame
            fields = dict(symbol_or_symbols=venue_symbol, timeframe=TimeFrame.Day, start=start,
                          limit=limit, sort=Sort.DESC)
            if klass is AssetClass.CRYPTO:
                from alpaca.data.requests import CryptoBarsRequest
                return c.crypto.get_crypto_bars(CryptoBarsRequest(**fields))
            if klass is AssetClass.OPTIONS:
                from alpaca.data.requests import OptionBarsRequest
                return c.option.get_option_bars(OptionBarsRequest(**fields))
            from alpaca.data.requests import StockBarsRequest
            return c.stock.get_stock_bars(StockBarsRequest(**fields))

        try:
            raw = self._call("get_recent_closes", fetch, retry_reads=True) or {}
        except BrokerError as error:
            if error.code in (BrokerErrorCode.NOT_FOUND, BrokerErrorCode.INVALID, BrokerErrorCode.REJECTED):
                raise BrokerError(BrokerErrorCode.UNAVAILABLE,
                                  f"recent closes unavailable for {venue_symbol}: {error.message}") from error
            raise
        bars = raw.get(venue_symbol) or raw.get(venue_symbol.replace("/", "")) or []

        def closes() -> list[Decimal]:
            ordered = sorted(bars, key=lambda bar: parse_timestamp(bar["t"]))
            return [to_decimal(bar["c"], "c") for bar in ordered[-limit:]]

        return read_reply(f"bars for {venue_symbol}", closes)

    # ---------------------------------------------------------------- instruments

    def instrument(self, symbol: str, asset_class: AssetClass) -> InstrumentInfo | None:
        """The venue's asset record for ``symbol`` (None: Alpaca does not list it); cached per process."""
        klass = self._require(asset_class)
        if klass not in self.instrument_classes:
            raise BrokerError(BrokerErrorCode.UNSUPPORTED, f"{self.name} has no instrument metadata for {klass.value}")
        path_symbol = self._guard(lambda: asset_path_symbol(symbol, klass))
        key = (self.name, self.url_override or "", self.paper, klass.value, path_symbol)
        now = self._clock.monotonic()
        with _instruments_lock:
            cached = _INSTRUMENTS.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        if klass is AssetClass.OPTIONS:
            fetch: Callable[[AlpacaClients], Any] = lambda c: c.trading.get_option_contract(path_symbol)
        else:
            fetch = lambda c: c.trading.get_asset(path_symbol)
        try:
            raw = self._call("instrument", fetch, retry_reads=True)
        except BrokerError as error:
            if error.code is not BrokerErrorCode.NOT_FOUND:
                raise
            info = None
        else:
            info = read_reply(f"asset {path_symbol}", lambda: instrument_from_raw(raw, klass))
        with _instruments_lock:
            if len(_INSTRUMENTS) >= _INSTRUMENTS_MAX:
                _INSTRUMENTS.clear()
            _INSTRUMENTS[key] = (now + self.instrument_ttl_seconds, info)
        return info

    # ---------------------------------------------------------------- submit + idempotency

    def _submit_idempotent(self, client_order_id: str, alpaca_request: Any, *, default_side: OrderSide) -> BrokerOrder:
        deadline = self._deadline()
        rate_limited = 0
        resubmits = 0
        while True:
            clients = self._clients()
            try:
                raw = clients.trading.submit_order(alpaca_request)
            except Exception as exc:  # classified below; unknown exceptions re-raise
                failure = self._classify(exc)
            else:
                # parsed outside the try: a bad body after a 200 must not look like a refused request
                return read_reply(f"order {client_order_id}", lambda: order_from_raw(raw, default_side=default_side))
            error = failure.error
            if failure.duplicate:
                log.info("alpaca: client_order_id %s already placed; returning the existing order", client_order_id)
                existing = self._lookup_by_client_id(client_order_id, deadline)
                if existing is None:
                    raise BrokerError(BrokerErrorCode.UNAVAILABLE,
                                      f"venue reports client_order_id={client_order_id} as a duplicate but the "
                                      "lookup found no order; outcome unknown") from None
                return existing
            if error.code is BrokerErrorCode.RATE_LIMITED:
                self._clock.sleep(self._rate_limit_wait(error, rate_limited, deadline, "submit_order"))
                rate_limited += 1
                continue
            if error.code is not BrokerErrorCode.UNAVAILABLE or failure.never_sent:
                raise error from None
            # Ambiguous: the venue may have accepted it. Look up before anything else.
            log.warning("alpaca: submit %s ambiguous (%s); looking it up by client id", client_order_id, error.message)
            try:
                existing = self._lookup_by_client_id(client_order_id, deadline)
            except BrokerError as lookup_error:
                raise BrokerError(
                    BrokerErrorCode.UNAVAILABLE,
                    f"submit outcome unknown for client_order_id={client_order_id} ({error.message}); "
                    f"lookup failed: {lookup_error.message}. Look it up before resubmitting.",
                ) from None
            if existing is not None:
                return existing
            wait = resubmit_wait(resubmits, deadline=deadline, clock=self._clock)
            if wait is None:
                raise BrokerError(BrokerErrorCode.UNAVAILABLE,
                                  f"submit failed for client_order_id={client_order_id} ({error.message}); "
                                  "not at the venue after lookup; not resubmitted within the time budget") from None
            resubmits += 1
            self._clock.sleep(wait)

    def _lookup_by_client_id(self, client_order_id: str, deadline: float) -> BrokerOrder | None:
        try:
            raw = self._call("get_order_by_client_id",
                             lambda c: c.trading.get_order_by_client_id(client_order_id),
                             retry_reads=True, deadline=deadline)
        except BrokerError as error:
            if error.code is BrokerErrorCode.NOT_FOUND:
                return None
            raise
        return read_reply(f"order {client_order_id}", lambda: order_from_raw(raw))

    # ---------------------------------------------------------------- call + retry engine

    def _deadline(self) -> float:
        return self._clock.monotonic() + self.time_budget_seconds

    def _call(self, op: str, fn: Callable[[AlpacaClients], T], *, retry_reads: bool,
              deadline: float | None = None) -> T:
        """Run one SDK call; retry 429s (always) and transient failures (reads only) within budget."""
        deadline = self._deadline() if deadline is None else deadline
        rate_limited = 0
        transient = 0
        while True:
            clients = self._clients()
            try:
                return fn(clients)
            except Exception as exc:  # classified below; unknown exceptions re-raise
                failure = self._classify(exc)
            error = failure.error
            if error.code is BrokerErrorCode.RATE_LIMITED:
                wait = self._rate_limit_wait(error, rate_limited, deadline, op)
                rate_limited += 1
            else:
                retry = error.code is BrokerErrorCode.UNAVAILABLE and retry_reads and not failure.never_sent
                next_wait = transient_wait(error, transient, deadline=deadline, clock=self._clock, op=op,
                                           venue="alpaca", logger=log) if retry else None
                if next_wait is None:
                    raise BrokerError(error.code, f"{op}: {error.message}", retry_after=error.retry_after) from None
                wait = next_wait
                transient += 1
            self._clock.sleep(wait)

    def _rate_limit_wait(self, error: BrokerError, attempts: int, deadline: float, op: str) -> float:
        """``venue_common.rate_limit_wait`` with this broker's retry limit and time budget."""
        return rate_limit_wait(error, attempts, deadline=deadline, clock=self._clock,
                               max_retries=self.max_rate_limit_retries, budget_seconds=self.time_budget_seconds,
                               op=op, venue="alpaca", logger=log)

    def _classify(self, exc: Exception) -> Failure:
        failure = classify_exception(exc, clock=self._clock)
        if failure is None:
            raise exc
        return failure

    def _guard(self, fn: Callable[[], T]) -> T:
        """Run local request building; validation failures become INVALID before any I/O."""
        try:
            return fn()
        except BrokerError:
            raise
        except Exception as exc:
            failure = classify_exception(exc, clock=self._clock)
            if failure is None:
                raise
            raise failure.error from None

    def _build_order_request(self, request: OrderRequest, klass: AssetClass) -> Any:
        # every order type, time in force and protective leg: alpaca_wire.build_order_request (issue 15)
        return build_order_request(request, klass)

    # ---------------------------------------------------------------- clients (lazy)

    def _clients(self) -> AlpacaClients:
        cached = self._clients_cache
        if cached is not None:
            return cached
        if not (self._api_key and self._secret_key):
            raise BrokerError(BrokerErrorCode.UNAVAILABLE, "no Alpaca credentials configured")
        with self._lock:
            if self._clients_cache is None:
                self._clients_cache = self._build_clients()
            return self._clients_cache

    def _build_clients(self) -> AlpacaClients:
        from alpaca.data.historical.crypto import CryptoHistoricalDataClient
        from alpaca.data.historical.option import OptionHistoricalDataClient
        from alpaca.data.historical.stock import StockHistoricalDataClient
        from alpaca.trading.client import TradingClient

        keys = dict(api_key=self._api_key, secret_key=self._secret_key, raw_data=True)
        data_url = self.data_url_override
        trading = TradingClient(paper=self.paper, url_override=self.url_override, **keys)
        stock = StockHistoricalDataClient(url_override=data_url, **keys)
        crypto = CryptoHistoricalDataClient(url_override=data_url, **keys)
        option = OptionHistoricalDataClient(url_override=data_url, **keys)
        for client, url in ((trading, self.url_override), (stock, data_url), (crypto, data_url), (option, data_url)):
            # a loopback override (the local test server) must never go through an env proxy
            harden_client(client, self.timeout_seconds, trust_env=not is_loopback_url(url))
        return AlpacaClients(trading, stock, crypto, option)


def _order_fills(order: Mapping[str, Any], start: datetime, *, end_of_day: datetime) -> list[VenueFill]:
    """One ``VenueFill`` per order or nested leg (Alpaca order JSON) filled within [start, end_of_day)."""
    from backend.domain.assets import default_registry

    out = []
    symbol = str(order.get("symbol") or "")
    filled = order.get("filled_qty")
    price = order.get("filled_avg_price")
    when_raw = order.get("filled_at") or (order.get("updated_at") if filled not in (None, "", "0") else None)
    if symbol and filled not in (None, "", "0") and price not in (None, "") and when_raw:
        when = parse_timestamp(when_raw)
        qty = to_decimal(filled, "filled_qty")
        if qty > 0 and start <= when < end_of_day:
            out.append(VenueFill(
                fill_id=str(order.get("id")), symbol=domain_symbol(symbol), side=OrderSide(str(order["side"]).lower()),
                qty=qty, price=to_decimal(price, "filled_avg_price"), time=when, currency=quote_currency(symbol),
                multiplier=default_registry().spec_for(domain_symbol(symbol)).multiplier,
                order_id=str(order.get("id")), client_order_id=order.get("client_order_id")))
    for leg in order.get("legs") or ():
        if isinstance(leg, Mapping):
            out.extend(_order_fills(leg, start, end_of_day=end_of_day))
    return out


def harden_client(client: Any, timeout_seconds: float, *, trust_env: bool = True) -> None:
    """Give an alpaca-py REST client (trading, broker or data) a default HTTP timeout of
    ``timeout_seconds`` and switch off its own retries (see the module docstring, "Time");
    ``trust_env=False`` keeps environment proxies away (a loopback test server). Raises
    ``RuntimeError`` when alpaca-py no longer has the private attributes this relies on."""
    for attribute in ("_session", "_retry", "_retry_codes"):
        if not hasattr(client, attribute):
            raise RuntimeError(f"alpaca-py changed: {type(client).__name__}.{attribute} is gone; "
                               "re-check how AlpacaBroker bounds timeouts and retries")
    old_session = client._session
    client._session = make_timeout_session(timeout_seconds)
    client._session.trust_env = trust_env
    old_session.close()
    client._retry = 0  # RESTClient retries only while retry > 0; 0 makes the first 429/504 raise
    client._retry_codes = []


def make_timeout_session(timeout_seconds: float) -> Any:
    """A ``requests.Session`` whose requests default to ``timeout=timeout_seconds`` (connect and
    each read) and which never retries at the transport level (a POST is sent at most once)."""
    import requests
    from requests.adapters import HTTPAdapter

    class _TimeoutSession(requests.Session):
        def __init__(self, timeout: float):
            super().__init__()
            self.default_timeout = timeout
            adapter = HTTPAdapter(max_retries=0)
            self.mount("https://", adapter)
            self.mount("http://", adapter)

        def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = self.default_timeout
            return super().request(method, url, *args, **kwargs)

    return _TimeoutSession(timeout_seconds)


__all__ = [
    "AlpacaBroker",
    "AlpacaClients",
    "forget_instruments",
    "SUPPORTED_ASSET_CLASSES",
    "harden_client",
    "make_timeout_session",
    *alpaca_wire.__all__,  # the old import path of the wire helpers
]
