"""A real local Alpaca-compatible HTTP server over a ``SimulatedVenue``, for tests and demos.

Point the real alpaca-py clients at it with ``url_override=server.url``; the same scenario gives the
same fills here as through ``PaperBroker``. Stdlib only (``ThreadingHTTPServer`` on 127.0.0.1 in a
background thread, HTTP/1.0: one connection per request).

    with LocalAlpacaServer("partial_fills", clock=ManualClock()) as server:
        client = TradingClient("k", "s", paper=True, url_override=server.url)
        server.inject("POST /v2/orders", "timeout_after_accept", seconds=2)

Routes (the ones alpaca-py 0.44 calls): ``POST/GET/DELETE /v2/orders``, ``GET/DELETE /v2/orders/{id}``,
``GET /v2/orders:by_client_order_id``, ``GET/DELETE /v2/positions``, ``GET/DELETE /v2/positions/{symbol}``
(crypto as ``BTCUSD``), ``GET /v2/account``, ``GET /v2/clock``, ``GET /v2/assets/{symbol}`` and
``GET /v2/options/contracts/{symbol}`` (the venue's listed symbols — the scenario's ``symbols`` and
``instruments``; any other symbol is 404 ``40410000``; ``"tradable": false`` in the scenario answers a
non-tradable asset), latest quotes
(``/v2/stocks/quotes/latest``, ``/v1beta3/crypto/us/latest/quotes``, ``/v1beta1/options/quotes/latest``)
and daily bars (``/v2/stocks/bars``, ``/v1beta3/crypto/us/bars``, ``/v1beta1/options/bars``).
Any ``APCA-API-KEY-ID``/``APCA-API-SECRET-KEY`` (or ``Authorization``) header is accepted; trading and
stock/option data routes answer 401 without one.

Broker API (what alpaca-py's ``BrokerClient`` calls, ``url_override=server.url``, API version v1), one
book per account of the venue (``server.open_account(uuid)``; an unknown account id → 404):
``POST/GET/DELETE /v1/trading/accounts/{account_id}/orders``, ``GET .../orders:by_client_order_id``,
``GET/DELETE .../orders/{order_id}``, ``GET/DELETE .../positions``, ``GET/DELETE .../positions/{symbol}``,
``GET .../account`` (the trade account), ``GET/PATCH .../account/configurations`` (``suspend_trade``: a
suspended account answers 403 ``40310000`` to new orders), ``GET /v1/accounts/{account_id}`` and
``GET /v1/assets/{symbol}`` (the same asset records as ``/v2/assets``), ``GET /v1/accounts/activities``
(one ``FILL`` activity per venue fill, with Alpaca's fields, plus the non-trade activities booked with
``server.add_fee(account_id, "-0.02")``; filters ``account_id``, ``activity_types``, ``date`` / ``after`` /
``until``, ``page_size``, ``page_token``, as alpaca-py's ``get_account_activities`` pages them). The
Trading API's ``/v2`` routes trade the venue's default account. A client order id is unique per
account: the same id in two accounts is two orders; twice in one account → 422 ``40010001``. Faults
are injected the same way (``server.inject("POST /v1/trading/accounts/*/orders", "500")``).
``GET /v1/events/trades?since_id=`` answers the Broker API trade events (SSE, then closes; see
``_AlpacaApi.trade_events``).

Errors use Alpaca's bodies: 422 ``40010001`` duplicate client order id, 404 ``40410000`` not found,
403 ``40310000`` insufficient buying power, 422 ``42210000`` invalid or not cancelable, 429 ``42910000``
rate limited (a venue RATE_LIMITED fault), 503 ``50310000`` unavailable (a venue UNAVAILABLE fault);
a venue ``lost_response`` fault drops the connection after the order is stored.

``inject(route, kind, times=1, seconds=0.0)``: ``route`` is ``"METHOD /path"`` (a glob, query
excluded) or ``"*"``; ``times=None`` keeps the fault until ``clear_faults()``. Kinds:
``latency`` (wait ``seconds``, then answer), ``drop`` (close the socket, no response, nothing done),
``timeout_after_accept`` (do the work, wait ``seconds``, then close without a response), ``reject``
(422 ``42210000``, nothing done), and any status code as a string (``"429"``, ``"500"``, ``"503"``,
``"504"``...) answered with an Alpaca-style JSON body, nothing done. Note alpaca-py retries 429 and
504 (3 times, 3 s apart) unless the client's ``_retry`` / ``_retry_wait`` are lowered.
"""
from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import parse_qs, unquote, urlsplit

from backend.adapters.sim_venue import (
    LegRequest,
    LostResponse,
    MlegRequest,
    Scenario,
    SimulatedVenue,
    VenueOrder,
    derived_uuid,
)
from backend.domain.assets import AssetClass, detect_asset_class, normalize_symbol
from backend.domain.clock import Clock
from backend.domain.errors import InvalidInput
from backend.domain.money import ZERO, round_to_step, to_decimal
from backend.domain.capabilities import check_capability
from backend.domain.orders import OrderClass, ReplaceRequest, StopLoss, TakeProfit
from backend.ports.broker import BrokerError, BrokerErrorCode, OrderRequest, OrderSide, OrderState, OrderType
from tests.support.local_venue_server import STATUS_KIND, Drop, LocalVenueServer, RequestRecord


FAULT_KINDS = ("latency", "drop", "timeout_after_accept", "reject")
_STATUS_KIND = STATUS_KIND

_ALPACA_CLASS = {AssetClass.EQUITY: "us_equity", AssetClass.CRYPTO: "crypto", AssetClass.OPTIONS: "us_option"}
_EXCHANGE = {AssetClass.EQUITY: "NASDAQ", AssetClass.CRYPTO: "CRYPTO", AssetClass.OPTIONS: ""}
_STATUS_ERRORS = {
    400: (40010000, "bad request"), 401: (40110000, "request is not authorized"),
    403: (40310000, "forbidden"), 404: (40410000, "not found"), 422: (42210000, "unprocessable entity"),
    429: (42910000, "rate limit exceeded"), 500: (50010000, "internal server error"),
    503: (50310000, "service unavailable"), 504: (50410000, "gateway timeout"),
}
_INTENT_SIDE = {"buy_to_open": OrderSide.BUY, "buy_to_close": OrderSide.BUY,
                "sell_to_open": OrderSide.SELL, "sell_to_close": OrderSide.SELL}


class _HttpError(Exception):
    def __init__(self, status: int, code: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})


_Drop = Drop


class LocalAlpacaServer(LocalVenueServer):
    """See the module docstring. ``venue`` may be shared with a ``PaperBroker``."""

    fault_kinds = FAULT_KINDS
    thread_name = "local-alpaca"
    route_example = "POST /v2/orders"

    def __init__(self, scenario: Scenario | Mapping[str, Any] | str | Path | None = None, *,
                 clock: Clock | None = None, port: int = 0, venue: SimulatedVenue | None = None,
                 host: str = "127.0.0.1"):
        super().__init__(host, port)
        self.venue = venue or SimulatedVenue(scenario, clock=clock)
        self._api = _AlpacaApi(self.venue)

    # -- accounts

    def open_account(self, account_id: str | None = None, spec: Any = None) -> str:
        """Open a Broker API account on the venue (a new UUID unless given); returns its id."""
        return self.venue.open_account(account_id or str(uuid.uuid4()), spec)

    def add_fee(self, account_id: str, net_amount: str, *, day: Any = None, activity_type: str = "FEE",
                description: str = "REG fee", symbol: str | None = None) -> str:
        """Book a non-trade activity (a regulatory ``FEE``, ``CFEE``, ``PTC``...) on a Broker API account, as
        Alpaca does after fills; ``net_amount`` signed (negative = charged), ``day`` a date (default
        today, venue clock). Returns the activity id."""
        return self._api.add_fee(account_id, net_amount, day=day, activity_type=activity_type,
                                 description=description, symbol=symbol)


class _Handler(BaseHTTPRequestHandler):
    server_version = "LocalAlpaca/0.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        return

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        app: LocalAlpacaServer = self.server.app  # type: ignore[attr-defined]
        split = urlsplit(self.path)
        path = split.path
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fault = app._take_fault(method, path)
        if fault is not None:
            if fault.kind == "drop":
                return self._drop(app, method, path)
            if fault.kind == "latency":
                app._wait(fault.seconds)
            elif fault.kind == "reject":
                return self._send(app, method, path, 422,
                                  {"code": 42210000, "message": "order rejected by the local server (injected)"})
            elif _STATUS_KIND.match(fault.kind):
                status = int(fault.kind)
                code, message = _STATUS_ERRORS.get(status, (status * 100000, "injected error"))
                headers = {"Retry-After": "1"} if status == 429 else {}
                return self._send(app, method, path, status, {"code": code, "message": message}, headers)
        try:
            if not self._authorized(path):
                raise _HttpError(401, 40110000, "request is not authorized")
            status, payload = app._api.handle(method, path, query, body)
            headers: dict[str, str] = {}
        except _Drop:
            return self._drop(app, method, path)
        except _HttpError as exc:
            status, payload, headers = exc.status, {"code": exc.code, "message": exc.message}, exc.headers
        except Exception as exc:  # a bug in the server: answer 500 so the test sees it
            status, payload, headers = 500, {"code": 50010000, "message": f"local server error: {exc!r}"}, {}
        if fault is not None and fault.kind == "timeout_after_accept":
            app._wait(fault.seconds)
            return self._drop(app, method, path)
        self._send(app, method, path, status, payload, headers)

    def _authorized(self, path: str) -> bool:
        if path.startswith("/v1beta3/crypto/"):
            return True  # Alpaca's crypto data needs no keys
        has_keys = self.headers.get("APCA-API-KEY-ID") and self.headers.get("APCA-API-SECRET-KEY")
        return bool(has_keys or self.headers.get("Authorization"))

    def _send(self, app: LocalAlpacaServer, method: str, path: str, status: int, payload: Any,
              headers: Mapping[str, str] | None = None) -> None:
        stream = isinstance(payload, EventStream)
        data = payload.body() if stream else (
            b"" if payload is None else json.dumps(payload, default=_json_default).encode())
        # logged before the response goes out: the log's order is the order the client saw answers in
        app._record(method, path, status)
        try:
            self.send_response(status)
            if data:
                self.send_header("Content-Type", "text/event-stream" if stream else "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if data:
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _drop(self, app: LocalAlpacaServer, method: str, path: str) -> None:
        self.close_connection = True
        app._record(method, path, None)


class EventStream:
    """A ``text/event-stream`` answer (SSE): one ``data:`` line of JSON per event, a heartbeat comment
    first, then the connection closes (HTTP/1.0) — the events up to now, as Alpaca's stream delivers them
    before it waits for live ones."""

    def __init__(self, events: list[dict[str, Any]]):
        self.events = events

    def body(self) -> bytes:
        lines = [": heartbeat\n\n"] + [f"data: {json.dumps(e, default=_json_default)}\n\n" for e in self.events]
        return "".join(lines).encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)  # quotes and bars are JSON numbers in Alpaca's data API
    if isinstance(value, datetime):
        return _ts(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def _ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _num(value: Decimal | None) -> str | None:
    """Alpaca's string numbers: exact, no exponent, no trailing zeros."""
    if value is None:
        return None
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def _asset_id(symbol: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"local-alpaca:asset:{symbol}"))


class _AlpacaApi:
    """Alpaca's REST shapes over the venue: JSON in, (status, JSON) out."""

    def __init__(self, venue: SimulatedVenue):
        self.venue = venue
        self._fees: list[dict[str, Any]] = []  # non-trade activities booked by add_fee
        # trade events (GET /v1/events/trades): the log, and what of each order it already holds
        self._events: list[dict[str, Any]] = []
        self._event_fill_ids: set[str] = set()
        self._event_filled: dict[str, Decimal] = {}
        self._event_final: dict[str, str] = {}
        sym = r"(?P<symbol>[^/]+)"
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., tuple[int, Any]]]] = [
            ("POST", re.compile(r"^/v2/orders$"), self.submit_order),
            ("GET", re.compile(r"^/v2/orders$"), self.list_orders),
            ("DELETE", re.compile(r"^/v2/orders$"), self.cancel_all),
            ("GET", re.compile(r"^/v2/orders:by_client_order_id$"), self.order_by_client_id),
            ("GET", re.compile(r"^/v2/orders/(?P<order_id>[^/]+)$"), self.get_order),
            ("DELETE", re.compile(r"^/v2/orders/(?P<order_id>[^/]+)$"), self.cancel_order),
            ("PATCH", re.compile(r"^/v2/orders/(?P<order_id>[^/]+)$"), self.replace_order),
            ("GET", re.compile(r"^/v2/positions$"), self.list_positions),
            ("DELETE", re.compile(r"^/v2/positions$"), self.close_all),
            ("GET", re.compile(rf"^/v2/positions/{sym}$"), self.get_position),
            ("DELETE", re.compile(rf"^/v2/positions/{sym}$"), self.close_position),
            ("GET", re.compile(r"^/v2/account$"), self.account),
            ("GET", re.compile(r"^/v2/clock$"), self.market_clock),
            ("GET", re.compile(rf"^/v2/assets/{sym}$"), self.asset),
            ("GET", re.compile(rf"^/v2/options/contracts/{sym}$"), self.option_contract),
            ("GET", re.compile(r"^/v2/stocks/quotes/latest$"), self._quotes(AssetClass.EQUITY)),
            ("GET", re.compile(r"^/v1beta3/crypto/us/latest/quotes$"), self._quotes(AssetClass.CRYPTO)),
            ("GET", re.compile(r"^/v1beta1/options/quotes/latest$"), self._quotes(AssetClass.OPTIONS)),
            ("GET", re.compile(r"^/v2/stocks/bars$"), self._bars(AssetClass.EQUITY)),
            ("GET", re.compile(r"^/v1beta3/crypto/us/bars$"), self._bars(AssetClass.CRYPTO)),
            ("GET", re.compile(r"^/v1beta1/options/bars$"), self._bars(AssetClass.OPTIONS)),
        ]
        acct = r"^/v1/trading/accounts/(?P<account_id>[^/]+)"
        self._routes += [
            ("POST", re.compile(rf"{acct}/orders$"), self.submit_order),
            ("GET", re.compile(rf"{acct}/orders$"), self.list_orders),
            ("DELETE", re.compile(rf"{acct}/orders$"), self.cancel_all),
            ("GET", re.compile(rf"{acct}/orders:by_client_order_id$"), self.order_by_client_id),
            ("GET", re.compile(rf"{acct}/orders/(?P<order_id>[^/]+)$"), self.get_order),
            ("DELETE", re.compile(rf"{acct}/orders/(?P<order_id>[^/]+)$"), self.cancel_order),
            ("PATCH", re.compile(rf"{acct}/orders/(?P<order_id>[^/]+)$"), self.replace_order),
            ("GET", re.compile(rf"{acct}/positions$"), self.list_positions),
            ("DELETE", re.compile(rf"{acct}/positions$"), self.close_all),
            ("GET", re.compile(rf"{acct}/positions/{sym}$"), self.get_position),
            ("DELETE", re.compile(rf"{acct}/positions/{sym}$"), self.close_position),
            ("GET", re.compile(rf"{acct}/account$"), self.account),
            ("GET", re.compile(rf"{acct}/account/configurations$"), self.trade_configuration),
            ("PATCH", re.compile(rf"{acct}/account/configurations$"), self.update_trade_configuration),
            ("GET", re.compile(r"^/v1/accounts/activities$"), self.activities),
            ("GET", re.compile(r"^/v1/accounts/(?P<account_id>[^/]+)$"), self.broker_account),
            ("GET", re.compile(rf"^/v1/assets/{sym}$"), self.asset),  # Broker API: the same asset records
            ("GET", re.compile(r"^/v1/events/trades$"), self.trade_events),  # issue 15: SSE, see trade_events
        ]

    def handle(self, method: str, path: str, query: dict[str, str], body: bytes) -> tuple[int, Any]:
        known_path = False
        for route_method, pattern, handler in self._routes:
            match = pattern.match(path)
            if match is None:
                continue
            known_path = True
            if route_method != method:
                continue
            params = match.groupdict()
            try:
                if params.get("account_id") is not None and not self.venue.has_account(params["account_id"]):
                    raise _HttpError(404, 40410000, "account not found")
                return handler(query=query, body=body, **params)
            except LostResponse:
                raise _Drop() from None
            except BrokerError as exc:
                raise _broker_http_error(exc) from None
            except InvalidInput as exc:
                raise _HttpError(422, 42210000, str(exc)) from None
        if known_path:
            raise _HttpError(405, 40510000, "method not allowed")
        raise _HttpError(404, 40410000, "endpoint not found")

    # -- orders

    def submit_order(self, query: dict[str, str], body: bytes, account_id: str | None = None) -> tuple[int, Any]:
        data = _json_body(body)
        client_id = data.get("client_order_id") or self.venue.new_client_order_id()
        if not isinstance(client_id, str) or len(client_id) > 48:
            raise _HttpError(422, 40010001, "client_order_id must be no more than 48 characters")
        order_type = _enum(data.get("type") or data.get("order_type"), OrderType, "type")
        tif = str(data.get("time_in_force") or "")
        if not tif:
            raise _HttpError(422, 40010001, "time_in_force is required")
        limit = _decimal_field(data, "limit_price")
        order_class = str(data.get("order_class") or "simple")
        if order_class == "mleg":
            if (order_type is OrderType.LIMIT) != (limit is not None) or order_type not in (OrderType.MARKET,
                                                                                         OrderType.LIMIT):
                raise _HttpError(422, 40010001, "mleg orders are market, or limit with a limit_price")
            return 200, self._order_json(self._submit_mleg(data, client_id, order_type, limit, tif, account_id))
        klass_of_order = _enum(order_class, OrderClass, "order_class")
        symbol = data.get("symbol")
        if not isinstance(symbol, str) or not symbol:
            raise _HttpError(422, 40010001, "symbol is required")
        klass = _alpaca_tradable(symbol)
        side = _side(data)
        qty = _decimal_field(data, "qty")
        notional = _decimal_field(data, "notional")
        if (qty is None) == (notional is None):
            raise _HttpError(422, 40010001, "exactly one of qty or notional is required")
        if notional is not None:
            if order_type is not OrderType.MARKET:
                raise _HttpError(422, 42210000, "notional orders must be market orders")
            quote = self.venue.market.quote(symbol, klass)
            price = quote.ask if side is OrderSide.BUY else quote.bid
            qty = round_to_step(notional / price, self.venue.market.spec(symbol, klass).lot_size, down=True)
            if qty <= ZERO:
                raise _HttpError(422, 40010001, f"notional {notional} is below the minimum order size")
        try:
            take_profit, stop_loss = _protective_legs(data)
            request = OrderRequest(client_order_id=client_id, symbol=symbol, asset_class=klass, side=side,
                                   qty=qty, order_type=order_type, limit_price=limit, time_in_force=tif,
                                   stop_price=_decimal_field(data, "stop_price"),
                                   trail_price=_decimal_field(data, "trail_price"),
                                   trail_percent=_decimal_field(data, "trail_percent"),
                                   order_class=klass_of_order, take_profit=take_profit, stop_loss=stop_loss)
        except ValueError as exc:
            raise _HttpError(422, 40010001, str(exc)) from None
        refused = check_capability("alpaca", klass, request)  # what Alpaca itself refuses (issue 15)
        if refused is not None:
            raise _HttpError(422, 42210000, refused.detail)
        order = self.venue.submit_order(request, on_duplicate="raise", account_id=account_id)
        return 200, self._order_json(order, notional=notional)

    def _submit_mleg(self, data: dict[str, Any], client_id: str, order_type: OrderType, limit: Decimal | None,
                     tif: str, account_id: str | None = None) -> VenueOrder:
        raw_legs = data.get("legs")
        if not isinstance(raw_legs, list):
            raise _HttpError(422, 40010001, "legs is required for the mleg order class")
        qty = _decimal_field(data, "qty")
        if qty is None:
            raise _HttpError(422, 40010001, "qty is required for the mleg order class")
        legs = []
        for i, raw in enumerate(raw_legs):
            if not isinstance(raw, dict) or not raw.get("symbol"):
                raise _HttpError(422, 40010001, f"legs[{i}]: symbol is required")
            ratio = _decimal_field(raw, "ratio_qty")
            if ratio is None or ratio != ratio.to_integral_value() or ratio < 1:
                raise _HttpError(422, 40010001, f"legs[{i}]: ratio_qty must be a positive whole number")
            intent = raw.get("position_intent")
            if intent is not None and intent not in _INTENT_SIDE:
                raise _HttpError(422, 40010001, f"legs[{i}]: unknown position_intent {intent!r}")
            side = _enum(raw["side"], OrderSide, f"legs[{i}].side") if raw.get("side") else _INTENT_SIDE.get(intent)
            if side is None:
                raise _HttpError(422, 40010001, f"legs[{i}]: side or position_intent is required")
            legs.append(LegRequest(symbol=normalize_symbol(raw["symbol"]), ratio_qty=int(ratio), side=side,
                                   position_intent=intent))
        try:
            request = MlegRequest(client_order_id=client_id, qty=qty, legs=tuple(legs), order_type=order_type,
                                  limit_price=limit, time_in_force=tif)
        except ValueError as exc:
            raise _HttpError(422, 40010001, str(exc)) from None
        return self.venue.submit_mleg(request, on_duplicate="raise", account_id=account_id)

    def list_orders(self, query: dict[str, str], body: bytes, account_id: str | None = None) -> tuple[int, Any]:
        status = query.get("status") or "open"
        if status not in ("open", "closed", "all"):
            raise _HttpError(422, 40010001, f"invalid status {status!r}")
        orders = self.venue.list_orders(status=status, account_id=account_id)
        symbols = {normalize_symbol(s) for s in (query.get("symbols") or "").split(",") if s}
        if symbols:
            orders = [o for o in orders if o.symbol in symbols or o.symbol.replace("/", "") in symbols]
        if query.get("side"):
            orders = [o for o in orders if o.side.value == query["side"]]
        try:  # submitted after / until these instants, both exclusive (Alpaca's GET /orders)
            if query.get("after"):
                orders = [o for o in orders if o.created_at > _parse_ts(query["after"])]
            if query.get("until"):
                orders = [o for o in orders if o.created_at < _parse_ts(query["until"])]
        except ValueError:
            raise _HttpError(422, 40010001, "invalid after or until") from None
        if (query.get("direction") or "desc") == "desc":
            orders.reverse()
        limit = int(query.get("limit") or 50)
        return 200, [self._order_json(o) for o in orders[:limit]]

    def order_by_client_id(self, query: dict[str, str], body: bytes, account_id: str | None = None) -> tuple[int, Any]:
        order = self.venue.get_order_by_client_id(query.get("client_order_id") or "", account_id=account_id)
        if order is None:
            raise _HttpError(404, 40410000, "order not found")
        return 200, self._order_json(order)

    def get_order(self, query: dict[str, str], body: bytes, order_id: str,
                  account_id: str | None = None) -> tuple[int, Any]:
        try:
            order = self.venue.get_order(order_id, account_id=account_id)
        except BrokerError as exc:
            if exc.code is BrokerErrorCode.NOT_FOUND:
                raise _HttpError(404, 40410000, "order not found") from None
            raise
        return 200, self._order_json(order)

    def cancel_order(self, query: dict[str, str], body: bytes, order_id: str,
                     account_id: str | None = None) -> tuple[int, Any]:
        try:
            before = self.venue.peek_order(order_id, account_id=account_id)
        except BrokerError:
            raise _HttpError(404, 40410000, "order not found") from None
        after = self.venue.cancel_order(order_id, account_id=account_id)
        if before.state.is_final or after.state is not OrderState.CANCELED:
            raise _HttpError(422, 42210000, f'order is already in "{after.state.value}" state')
        return 204, None

    def replace_order(self, query: dict[str, str], body: bytes, order_id: str,
                      account_id: str | None = None) -> tuple[int, Any]:
        """PATCH: qty, limit_price, stop_price, trail, time_in_force, client_order_id → the new order."""
        data = _json_body(body)
        client_id = data.get("client_order_id") or self.venue.new_client_order_id()
        if not isinstance(client_id, str) or len(client_id) > 48:
            raise _HttpError(422, 40010001, "client_order_id must be no more than 48 characters")
        try:
            request = ReplaceRequest(client_order_id=client_id, qty=_decimal_field(data, "qty"),
                                     limit_price=_decimal_field(data, "limit_price"),
                                     stop_price=_decimal_field(data, "stop_price"), trail=_decimal_field(data, "trail"),
                                     time_in_force=data.get("time_in_force") or None)
        except ValueError as exc:
            raise _HttpError(422, 40010001, str(exc)) from None
        try:
            self.venue.peek_order(order_id, account_id=account_id)
        except BrokerError:
            raise _HttpError(404, 40410000, "order not found") from None
        return 200, self._order_json(self.venue.replace_order(order_id, request, account_id=account_id))

    def cancel_all(self, query: dict[str, str], body: bytes, account_id: str | None = None) -> tuple[int, Any]:
        out = []
        for order in self.venue.list_orders(status="open", account_id=account_id):
            canceled = self.venue.cancel_order(order.broker_order_id, account_id=account_id)
            out.append({"id": canceled.broker_order_id, "status": 200, "body": self._order_json(canceled)})
        return 207, out

    # -- positions and account

    def _alpaca_positions(self, account_id: str | None = None) -> list[tuple[Any, AssetClass]]:
        out = []
        for position in self.venue.get_positions(account_id=account_id):
            klass = self.venue.position_asset_class(position.symbol, account_id=account_id)
            if klass in _ALPACA_CLASS:
                out.append((position, klass))
        return out

    def _position_json(self, position: Any, klass: AssetClass) -> dict[str, Any]:
        spec = self.venue.market.spec(position.symbol, klass)
        price = self.venue.market.mid(position.symbol, klass)
        qty, avg = position.qty, position.avg_entry_price
        cost = qty * avg * spec.multiplier
        value = qty * price * spec.multiplier
        pnl = value - cost
        symbol = position.symbol.replace("/", "") if klass is AssetClass.CRYPTO else position.symbol
        return {
            "asset_id": _asset_id(symbol), "symbol": symbol, "exchange": _EXCHANGE[klass],
            "asset_class": _ALPACA_CLASS[klass], "asset_marginable": klass is not AssetClass.CRYPTO,
            "avg_entry_price": _num(avg), "qty": _num(qty), "qty_available": _num(qty),
            "side": "long" if qty > ZERO else "short", "market_value": _num(value), "cost_basis": _num(cost),
            "unrealized_pl": _num(pnl), "unrealized_plpc": _num(pnl / abs(cost)) if cost else "0",
            "unrealized_intraday_pl": _num(pnl), "unrealized_intraday_plpc": _num(pnl / abs(cost)) if cost else "0",
            "current_price": _num(price), "lastday_price": _num(price), "change_today": "0",
        }

    def _find_position(self, symbol_or_id: str, account_id: str | None = None) -> tuple[Any, AssetClass]:
        for position, klass in self._alpaca_positions(account_id):
            symbol = position.symbol.replace("/", "") if klass is AssetClass.CRYPTO else position.symbol
            if symbol_or_id.upper() == symbol or symbol_or_id.lower() == _asset_id(symbol):
                return position, klass
        raise _HttpError(404, 40410000, "position does not exist")

    def list_positions(self, query: dict[str, str], body: bytes, account_id: str | None = None) -> tuple[int, Any]:
        return 200, [self._position_json(p, k) for p, k in self._alpaca_positions(account_id)]

    def get_position(self, query: dict[str, str], body: bytes, symbol: str,
                     account_id: str | None = None) -> tuple[int, Any]:
        return 200, self._position_json(*self._find_position(symbol, account_id))

    def close_position(self, query: dict[str, str], body: bytes, symbol: str,
                       account_id: str | None = None) -> tuple[int, Any]:
        position, klass = self._find_position(symbol, account_id)
        qty = None
        if query.get("qty"):
            qty = to_decimal(query["qty"], "qty")
        elif query.get("percentage"):
            pct = to_decimal(query["percentage"], "percentage")
            if not ZERO < pct <= 100:
                raise _HttpError(422, 40010001, "percentage must be in (0, 100]")
            lot = self.venue.market.spec(position.symbol, klass).lot_size
            qty = round_to_step(abs(position.qty) * pct / 100, lot, down=True)
        if qty is not None and not ZERO < qty <= abs(position.qty):
            raise _HttpError(403, 40310000, f"insufficient qty available for order (requested: {_num(qty)}, "
                                            f"available: {_num(abs(position.qty))})")
        order = self.venue.close_position(position.symbol, klass, qty=qty, account_id=account_id)
        if order is None:
            raise _HttpError(404, 40410000, "position does not exist")
        return 200, self._order_json(order)

    def close_all(self, query: dict[str, str], body: bytes, account_id: str | None = None) -> tuple[int, Any]:
        out = []
        for position, klass in self._alpaca_positions(account_id):
            order = self.venue.close_position(position.symbol, klass, account_id=account_id)
            if order is not None:
                symbol = position.symbol.replace("/", "") if klass is AssetClass.CRYPTO else position.symbol
                out.append({"symbol": symbol, "status": 200, "order_id": order.broker_order_id,
                            "body": self._order_json(order)})
        return 207, out

    def account(self, query: dict[str, str], body: bytes, account_id: str | None = None) -> tuple[int, Any]:
        account = self.venue.get_account(account_id=account_id)
        long_value = short_value = ZERO
        for position, klass in self._alpaca_positions(account_id):
            spec = self.venue.market.spec(position.symbol, klass)
            value = position.qty * self.venue.market.mid(position.symbol, klass) * spec.multiplier
            if value > ZERO:
                long_value += value
            else:
                short_value += value
        created = datetime(2024, 1, 2, tzinfo=timezone.utc)
        return 200, {
            "id": account_id or derived_uuid(self.venue.scenario.seed, "account"),
            "account_number": _account_number(account_id),
            "status": "ACTIVE", "crypto_status": "ACTIVE", "currency": account.currency,
            "buying_power": _num(account.buying_power), "regt_buying_power": _num(account.buying_power),
            "daytrading_buying_power": _num(account.buying_power),
            "non_marginable_buying_power": _num(account.cash), "options_buying_power": _num(account.buying_power),
            "cash": _num(account.cash), "accrued_fees": "0", "pending_transfer_in": "0",
            "portfolio_value": _num(account.equity), "equity": _num(account.equity),
            "last_equity": _num(self.venue.account_spec(account_id).equity),
            "long_market_value": _num(long_value), "short_market_value": _num(short_value),
            "initial_margin": "0", "maintenance_margin": "0", "last_maintenance_margin": "0", "sma": "0",
            "multiplier": "2", "pattern_day_trader": False, "trading_blocked": False, "transfers_blocked": False,
            "account_blocked": False,
            "trade_suspended_by_user": self.venue.trade_suspended(account_id), "shorting_enabled": True,
            "daytrade_count": 0, "options_approved_level": 3, "options_trading_level": 3,
            "created_at": _ts(created), **(self._trade_account_extra(account_id, account) if account_id else {}),
        }

    def _trade_account_extra(self, account_id: str, account: Any) -> dict[str, Any]:
        """The Broker API's trade account adds the previous session's figures and the clearing broker."""
        spec = self.venue.account_spec(account_id)
        return {"cash_withdrawable": _num(account.cash), "cash_transferable": _num(account.cash),
                "previous_close": _ts(self.venue.clock.now() - timedelta(days=1)), "last_long_market_value": "0",
                "last_short_market_value": "0", "last_cash": _num(spec.cash), "last_initial_margin": "0",
                "last_regt_buying_power": _num(spec.buying_power), "last_buying_power": _num(spec.buying_power),
                "clearing_broker": "VELOX"}

    def trade_configuration(self, query: dict[str, str], body: bytes, account_id: str) -> tuple[int, Any]:
        return 200, self._configuration_json(account_id)

    def update_trade_configuration(self, query: dict[str, str], body: bytes, account_id: str) -> tuple[int, Any]:
        data = _json_body(body)
        if "suspend_trade" in data and data["suspend_trade"] is not None:
            if not isinstance(data["suspend_trade"], bool):
                raise _HttpError(422, 40010001, "suspend_trade must be a boolean")
            self.venue.set_trade_suspended(account_id, data["suspend_trade"])
        return 200, self._configuration_json(account_id)

    def _configuration_json(self, account_id: str) -> dict[str, Any]:
        return {"dtbp_check": "entry", "fractional_trading": True, "max_margin_multiplier": "2",
                "no_shorting": False, "pdt_check": "entry", "suspend_trade": self.venue.trade_suspended(account_id),
                "trade_confirm_email": "all", "ptp_no_exception_entry": False, "max_options_trading_level": 3}

    def broker_account(self, query: dict[str, str], body: bytes, account_id: str) -> tuple[int, Any]:
        """The Broker API's account record (the onboarding side; the money is in ``.../account``)."""
        return 200, {
            "id": account_id, "account_number": _account_number(account_id), "account_type": "trading",
            "status": "ACTIVE", "crypto_status": "ACTIVE", "currency": "USD",
            "last_equity": _num(self.venue.account_spec(account_id).equity),
            "created_at": _ts(datetime(2024, 1, 2, tzinfo=timezone.utc)),
        }

    # -- account activities (Broker API): what BrokerClient.get_account_activities calls

    def add_fee(self, account_id: str, net_amount: str, *, day: Any, activity_type: str, description: str,
                symbol: str | None) -> str:
        if not self.venue.has_account(account_id):
            raise KeyError(f"no account {account_id}")
        now = self.venue.clock.now()
        on = day or now.astimezone(timezone.utc).date()
        activity_id = f"{on:%Y%m%d}{now:%H%M%S}{now.microsecond // 1000:03d}::{uuid.uuid4()}"
        self._fees.append({"id": activity_id, "account_id": account_id, "activity_type": activity_type,
                           "date": on.isoformat(), "net_amount": _num(to_decimal(net_amount, "net_amount")),
                           "description": description, "status": "executed", "symbol": symbol,
                           "qty": None, "price": None, "per_share_amount": None})
        return activity_id

    def _fill_activities(self, account_id: str | None) -> list[dict[str, Any]]:
        """One ``FILL`` activity per venue fill of the Broker API accounts (the Trading API's default book
        is not a Broker API account), with Alpaca's fields: cum/leaves qty and the order status then."""
        out = []
        cumulative: dict[str, Decimal] = {}
        for fill in self.venue.fills(account_id):
            if account_id is None and fill.account_id == "default":
                continue
            cum = cumulative[fill.broker_order_id] = cumulative.get(fill.broker_order_id, ZERO) + fill.qty
            try:
                ordered = self.venue.peek_order(fill.broker_order_id, account_id=fill.account_id).qty
            except BrokerError:  # an mleg leg is not a book order of its own: its fills are its quantity
                ordered = cum
            leaves = max(ordered - cum, ZERO)
            at = fill.timestamp.astimezone(timezone.utc)
            activity_uuid = uuid.uuid5(uuid.NAMESPACE_URL, f"local-alpaca:activity:{fill.fill_id}")
            out.append({"id": f"{at:%Y%m%d%H%M%S}{at.microsecond // 1000:03d}::{activity_uuid}",
                        "account_id": fill.account_id, "activity_type": "FILL", "transaction_time": _ts(at),
                        "type": "partial_fill" if leaves > ZERO else "fill", "price": _num(fill.price),
                        "qty": _num(fill.qty), "side": fill.side.value, "symbol": fill.symbol,
                        "leaves_qty": _num(leaves), "order_id": fill.broker_order_id, "cum_qty": _num(cum),
                        "order_status": "partially_filled" if leaves > ZERO else "filled"})
        return out

    def activities(self, query: dict[str, str], body: bytes) -> tuple[int, Any]:
        """``GET /v1/accounts/activities``: ``account_id`` (else every Broker API account),
        ``activity_types`` (comma list), ``date`` (a day: every match, no page limit) or ``after`` /
        ``until`` (exclusive bounds), ``direction`` (desc by default), ``page_size`` (≤ 100 without
        ``date``), ``page_token`` (the id after which — in the direction — the page starts)."""
        account_id = query.get("account_id") or None
        if account_id is not None and not self.venue.has_account(account_id):
            raise _HttpError(404, 40410000, "account not found")
        if query.get("date") and (query.get("after") or query.get("until")):
            raise _HttpError(422, 40010001, "date cannot be combined with after or until")
        types = {t.strip().upper() for t in (query.get("activity_types") or "").split(",") if t.strip()}
        items = self._fill_activities(account_id) + [dict(f) for f in self._fees
                                                      if account_id is None or f["account_id"] == account_id]
        if types:
            items = [a for a in items if a["activity_type"] in types]

        def when(activity: dict[str, Any]) -> datetime:
            if activity.get("transaction_time"):
                return _parse_ts(activity["transaction_time"])
            return _parse_ts(activity["date"])

        try:
            if query.get("date"):
                day = _parse_ts(query["date"][:10]).date()
                items = [a for a in items if when(a).date() == day]
            if query.get("after"):
                after = _parse_ts(query["after"])
                items = [a for a in items if when(a) > after]
            if query.get("until"):
                until = _parse_ts(query["until"])
                items = [a for a in items if when(a) < until]
        except ValueError:
            raise _HttpError(422, 40010001, "invalid date, after or until") from None
        descending = "asc" not in (query.get("direction") or "desc").lower()
        items.sort(key=lambda a: a["id"], reverse=descending)
        token = query.get("page_token")
        if token:
            items = [a for a in items if (a["id"] < token if descending else a["id"] > token)]
        size = int(query.get("page_size") or (0 if query.get("date") else 100))
        if not query.get("date"):
            size = min(size, 100)
        return 200, items[:size] if size else items

    def trade_events(self, query: dict[str, str], body: bytes) -> tuple[int, Any]:
        """``GET /v1/events/trades`` (Broker API trade events, SSE): every Broker API account's order events
        with Alpaca's v1 fields (``event_id`` increasing integers, ``event`` fill / partial_fill / canceled /
        expired / rejected / replaced, ``account_id``, ``at``, ``order``, and for fills ``price``, ``qty``,
        ``execution_id``). ``since_id`` / ``until_id`` (exclusive / inclusive). The venue's fills and final
        states are logged as events when first seen (each once, so a read never reorders the log); the
        stream then closes — a client reads it with a bounded read either way."""
        try:
            since = int(query["since_id"]) if query.get("since_id") else None
            until = int(query["until_id"]) if query.get("until_id") else None
        except ValueError:
            raise _HttpError(422, 40010001, "since_id and until_id must be integers") from None
        if until is not None and since is None:
            raise _HttpError(422, 40010001, "since_id is required if until_id is specified")
        self._log_trade_events()
        if since is None:
            return 200, EventStream([])  # no since_id: no history, only live events (none while we answer)
        return 200, EventStream([e for e in self._events if e["event_id"] > since
                                 and (until is None or e["event_id"] <= until)])

    def _log_trade_events(self) -> None:
        pending: dict[str, list[Any]] = {}
        for fill in self.venue.fills():
            if fill.account_id != "default" and fill.fill_id not in self._event_fill_ids:
                pending.setdefault(fill.broker_order_id, []).append(fill)
        for account_id in self.venue.account_ids():
            if account_id == "default":
                continue  # the Trading API's book is not a Broker API account
            for order in self.venue.list_orders(status="all", account_id=account_id):
                oid = order.broker_order_id
                cum = self._event_filled.get(oid, ZERO)
                for fill in pending.get(oid, ()):
                    cum += fill.qty
                    self._event_fill_ids.add(fill.fill_id)
                    self._add_event(account_id, "fill" if cum >= order.qty else "partial_fill", order,
                                    fill.timestamp, price=_num(fill.price), qty=_num(fill.qty),
                                    execution_id=str(uuid.uuid5(uuid.NAMESPACE_URL,
                                                                f"local-alpaca:execution:{fill.fill_id}")))
                self._event_filled[oid] = cum
                final = "replaced" if order.replaced_by else order.state.value
                if final in ("canceled", "expired", "rejected", "replaced") and oid not in self._event_final:
                    self._event_final[oid] = final
                    self._add_event(account_id, final, order, order.canceled_at or order.updated_at)

    def _add_event(self, account_id: str, kind: str, order: VenueOrder, at: datetime | None, **fields: Any) -> None:
        at = at or self.venue.clock.now()
        self._events.append({"event_id": len(self._events) + 1, "account_id": account_id, "event": kind,
                             "at": _ts(at), "timestamp": _ts(at), "order": self._order_json(order), **fields})

    def market_clock(self, query: dict[str, str], body: bytes) -> tuple[int, Any]:
        now = self.venue.clock.now()
        return 200, {"timestamp": _ts(now), "is_open": True, "next_open": _ts(now + timedelta(days=1)),
                     "next_close": _ts(now + timedelta(hours=6))}

    def _listed(self, symbol: str) -> tuple[Any, AssetClass]:
        """The venue's listing of a path symbol (``BTCUSD``, ``BTC%2FUSDT``, ``AAPL``): the scenario's
        symbols and instruments; anything else is Alpaca's 404 ``40410000``."""
        text = unquote(symbol)
        klass = _alpaca_tradable(text)
        info = self.venue.instrument(text, klass)
        if info is None:
            raise _HttpError(404, 40410000, f"asset not found for {text}")
        return info, klass

    def asset(self, query: dict[str, str], body: bytes, symbol: str) -> tuple[int, Any]:
        """``GET /v2/assets/{symbol}`` (and the Broker API's ``/v1/assets/{symbol}``): Alpaca's asset
        record; crypto carries its increments as strings, stocks only ``fractionable``."""
        info, klass = self._listed(symbol)
        record: dict[str, Any] = {
            "id": _asset_id(info.symbol.replace("/", "") if klass is AssetClass.CRYPTO else info.symbol),
            "class": _ALPACA_CLASS[klass], "exchange": _EXCHANGE[klass], "symbol": info.symbol, "name": info.symbol,
            "status": info.status or "active", "tradable": info.tradable, "marginable": klass is not AssetClass.CRYPTO,
            "shortable": klass is AssetClass.EQUITY, "easy_to_borrow": klass is AssetClass.EQUITY,
            "fractionable": bool(info.fractionable), "attributes": [],
        }
        if klass is AssetClass.CRYPTO:
            record.update({"min_order_size": _num(info.min_qty or info.lot_step),
                           "min_trade_increment": _num(info.lot_step), "price_increment": _num(info.tick_size)})
        else:
            record["maintenance_margin_requirement"] = 30
        return 200, record

    def option_contract(self, query: dict[str, str], body: bytes, symbol: str) -> tuple[int, Any]:
        """``GET /v2/options/contracts/{symbol}``: the contract record of a listed OCC symbol."""
        info, klass = self._listed(symbol)
        if klass is not AssetClass.OPTIONS:
            raise _HttpError(404, 40410000, f"option contract not found for {info.symbol}")
        root, expiry, kind, strike = _OCC.match(info.symbol).groups()  # type: ignore[union-attr]
        return 200, {
            "id": _asset_id(info.symbol), "symbol": info.symbol, "name": info.symbol,
            "status": info.status or "active", "tradable": info.tradable,
            "expiration_date": f"20{expiry[:2]}-{expiry[2:4]}-{expiry[4:]}", "root_symbol": root,
            "underlying_symbol": root, "underlying_asset_id": _asset_id(root),
            "type": "call" if kind == "C" else "put", "style": "american",
            "strike_price": _num(Decimal(strike) / 1000), "multiplier": "100", "size": "100",
            "open_interest": None, "open_interest_date": None, "close_price": None, "close_price_date": None,
        }

    # -- market data

    def _quotes(self, klass: AssetClass) -> Callable[..., tuple[int, Any]]:
        def handler(query: dict[str, str], body: bytes) -> tuple[int, Any]:
            quotes = {}
            for symbol in _symbols(query):
                quote = self.venue.get_latest_quote(symbol, klass)
                entry: dict[str, Any] = {"t": quote.timestamp, "bp": quote.bid, "bs": quote.bid_size,
                                         "ap": quote.ask, "as": quote.ask_size}
                if klass is AssetClass.EQUITY:
                    entry.update({"bx": "V", "ax": "V", "c": ["R"], "z": "C"})
                elif klass is AssetClass.OPTIONS:
                    entry.update({"bx": "C", "ax": "C", "c": "A"})
                quotes[symbol] = entry
            return 200, {"quotes": quotes}
        return handler

    def _bars(self, klass: AssetClass) -> Callable[..., tuple[int, Any]]:
        def handler(query: dict[str, str], body: bytes) -> tuple[int, Any]:
            timeframe = query.get("timeframe") or "1Day"
            if timeframe not in ("1Day", "1D"):
                raise _HttpError(422, 42210000, f"the local server only serves daily bars, not {timeframe!r}")
            count = min(int(query.get("limit") or 1000), 1000)
            if query.get("start"):
                start = _parse_ts(query["start"])
                end = _parse_ts(query["end"]) if query.get("end") else self.venue.clock.now()
                count = min(count, max(0, (end - start).days + 1))
            today = self.venue.clock.now().astimezone(timezone.utc).replace(hour=5, minute=0, second=0,
                                                                           microsecond=0)
            bars = {}
            for symbol in _symbols(query):
                closes = self.venue.get_recent_closes(symbol, count, klass)
                rows = []
                for i, close in enumerate(closes):
                    previous = closes[i - 1] if i else close
                    rows.append({"t": today - timedelta(days=len(closes) - 1 - i), "o": previous,
                                 "h": max(previous, close), "l": min(previous, close), "c": close,
                                 "v": 1000, "n": 10, "vw": (previous + close) / 2})
                bars[symbol] = rows
            return 200, {"bars": bars, "next_page_token": None}
        return handler

    # -- rendering

    def _order_json(self, order: VenueOrder, *, notional: Decimal | None = None, leg: bool = False) -> dict[str, Any]:
        mleg_parent = order.order_class == "mleg" and not leg
        klass = order.asset_class
        symbol = order.symbol
        return {
            "id": order.broker_order_id, "client_order_id": order.client_order_id,
            "created_at": _ts(order.created_at), "updated_at": _ts(order.updated_at),
            "submitted_at": _ts(order.created_at), "filled_at": _ts(order.filled_at),
            "expired_at": None, "canceled_at": _ts(order.canceled_at), "failed_at": _ts(order.failed_at),
            "replaced_at": _ts(order.canceled_at) if order.replaced_by else None,
            "replaced_by": order.replaced_by, "replaces": order.replaces,
            "asset_id": "" if mleg_parent else _asset_id(symbol.replace("/", "")),
            "symbol": "" if mleg_parent else symbol,
            "asset_class": "" if mleg_parent else _ALPACA_CLASS.get(klass, "us_equity"),
            "notional": _num(notional), "qty": _num(order.qty), "filled_qty": _num(order.filled_qty),
            "filled_avg_price": _num(order.filled_avg_price),
            "order_class": "mleg" if leg and order.order_class == "simple" else order.order_class,
            "order_type": order.order_type.value, "type": order.order_type.value,
            "side": "" if mleg_parent else order.side.value,
            "position_intent": order.position_intent or ("" if mleg_parent else None),
            "time_in_force": order.time_in_force, "limit_price": _num(order.limit_price),
            "stop_price": _num(order.stop_price),
            "status": "replaced" if order.replaced_by else (
                "held" if order.held and not order.state.is_final else order.state.value),
            "extended_hours": order.extended_hours,
            "legs": [self._order_json(child, leg=True) for child in order.legs] if order.legs else None,
            "trail_percent": _num(order.trail_percent), "trail_price": _num(order.trail_price),
            "hwm": _num(order.hwm),
            "ratio_qty": str(order.ratio_qty) if order.ratio_qty is not None else None,
            "subtag": None, "source": None,
        }


def _account_number(account_id: str | None) -> str:
    if account_id is None:
        return "PA0LOCAL0001"
    return "LA" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"local-alpaca:account:{account_id}").int)[:10]


def _broker_http_error(exc: BrokerError) -> _HttpError:
    code = exc.code
    if code is BrokerErrorCode.REJECTED and "suspended" in (exc.message or ""):
        return _HttpError(403, 40310000, exc.message)
    if code is BrokerErrorCode.DUPLICATE:
        return _HttpError(422, 40010001, "client_order_id must be unique")
    if code is BrokerErrorCode.NOT_FOUND:
        return _HttpError(404, 40410000, exc.message or "not found")
    if code is BrokerErrorCode.INSUFFICIENT_BUYING_POWER:
        return _HttpError(403, 40310000, "insufficient buying power")
    if code is BrokerErrorCode.RATE_LIMITED:
        return _HttpError(429, 42910000, "rate limit exceeded",
                          {"Retry-After": str(max(1, round(exc.retry_after or 1)))})
    if code is BrokerErrorCode.UNAVAILABLE:
        return _HttpError(503, 50310000, exc.message or "service unavailable")
    return _HttpError(422, 42210000, exc.message or code.value)


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}", parse_float=Decimal)
    except ValueError:
        raise _HttpError(400, 40010000, "request body must be JSON") from None
    if not isinstance(data, dict):
        raise _HttpError(400, 40010000, "request body must be a JSON object")
    return data


def _protective_legs(data: Mapping[str, Any]) -> tuple[TakeProfit | None, StopLoss | None]:
    """A bracket's / oto's / oco's ``take_profit`` {limit_price} and ``stop_loss`` {stop_price, limit_price}."""
    take, stop = data.get("take_profit"), data.get("stop_loss")
    for name, raw in (("take_profit", take), ("stop_loss", stop)):
        if raw is not None and not isinstance(raw, dict):
            raise _HttpError(422, 40010001, f"{name} must be an object")
    take_profit = None
    if take is not None:
        price = _decimal_field(take, "limit_price")
        if price is None:
            raise _HttpError(422, 40010001, "take_profit.limit_price is required")
        take_profit = TakeProfit(limit_price=price)
    stop_loss = None
    if stop is not None:
        stop_loss = StopLoss(stop_price=_decimal_field(stop, "stop_price"),
                             limit_price=_decimal_field(stop, "limit_price"))
    return take_profit, stop_loss


def _decimal_field(data: Mapping[str, Any], name: str) -> Decimal | None:
    raw = data.get(name)
    if raw is None or raw == "":
        return None
    try:
        return to_decimal(raw, name)
    except InvalidInput as exc:
        raise _HttpError(422, 40010001, str(exc)) from None


def _enum(raw: Any, enum: Any, name: str) -> Any:
    try:
        return enum(str(raw).lower())
    except ValueError:
        allowed = [m.value for m in enum]
        raise _HttpError(422, 40010001, f"{name} must be one of {allowed}, got {raw!r}") from None


def _side(data: Mapping[str, Any]) -> OrderSide:
    if data.get("side"):
        return _enum(data["side"], OrderSide, "side")
    intent = _INTENT_SIDE.get(str(data.get("position_intent")))
    if intent is None:
        raise _HttpError(422, 40010001, "side is required")
    return intent


def _alpaca_tradable(symbol: str) -> AssetClass:
    try:
        klass = detect_asset_class(symbol)
    except InvalidInput as exc:
        raise _HttpError(422, 40010001, str(exc)) from None
    if klass not in _ALPACA_CLASS:
        raise _HttpError(422, 42210000, f'asset "{symbol}" not found')
    return klass


_OCC = re.compile(r"^([A-Z]{1,6})(\d{6})([CP])(\d{8})$")


def _symbols(query: Mapping[str, str]) -> list[str]:
    symbols = [s.strip() for s in (query.get("symbols") or "").split(",") if s.strip()]
    if not symbols:
        raise _HttpError(400, 40010000, "symbols is required")
    return symbols


def _parse_ts(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00")) if "T" in text else datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


LocalAlpacaServer.handler = _Handler

__all__ = ["LocalAlpacaServer", "RequestRecord", "FAULT_KINDS"]
