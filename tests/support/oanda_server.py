"""A real local OANDA-v20-compatible HTTP server over a ``SimulatedVenue``, for tests and demos.

Point ``OandaBroker`` at it with ``OandaConfig(account_id=server.account_id, token="t",
base_url=server.url)``. It sits on the same simulated venue as ``PaperBroker`` and the local
Alpaca server (pass ``venue=`` to share one), so one scenario gives the same fills through all
three. Stdlib only: ``ThreadingHTTPServer`` on 127.0.0.1, HTTP/1.1 keep-alive (``connections``
counts the TCP connections opened, so tests can see the client reuses one).

Faithful where it matters for idempotency: OANDA refuses a duplicate ``clientExtensions.id``
only while the first order is PENDING. A market order is final at once, so a second POST with
the same client id creates a *second* order here, as it would at OANDA (each OANDA order gets its
own venue client id; ``orders_for_client_id`` counts what a client id produced).

Routes (under ``/v3``): ``POST accounts/{a}/orders``, ``GET accounts/{a}/orders/{id|@clientID}``,
``PUT accounts/{a}/orders/{spec}`` (replace), ``PUT accounts/{a}/orders/{spec}/cancel``, ``GET accounts/{a}/transactions/{id}``,
``GET accounts/{a}/transactions/sinceid?id=N``, ``GET accounts/{a}/pricing?instruments=``,
``GET accounts/{a}/trades/{tradeID}``,
``GET accounts/{a}/openPositions``, ``PUT accounts/{a}/positions/{instrument}/close``,
``GET accounts/{a}/summary``, ``GET accounts/{a}/instruments``,
``GET instruments/{instrument}/candles?count=&granularity=&price=M``. A bearer token is required
(``token=`` pins it); another account id answers 403.

Orders on fill (issue 15): an entry with ``takeProfitOnFill`` / ``stopLossOnFill`` /
``trailingStopLossOnFill`` opens a trade when it fills, as OANDA does: its ``ORDER_FILL`` carries
``tradeOpened`` (trade id = the fill's id), the entry order shows ``tradeOpenedID``, and the trade's
dependent orders are created in the fill's batch (``TAKE_PROFIT_ORDER`` / ``STOP_LOSS_ORDER`` /
``TRAILING_STOP_LOSS_ORDER`` transactions, reason ``ON_FILL``, each with ``tradeID``), held at the
simulated venue as the entry's protective legs. An entry that filled in part and ended (its remainder
canceled or expired, an IOC) opens the trade for the filled units, its dependent orders placed for them
(``_exit_orders``). ``PUT orders/{spec}`` replaces a pending order (``replace_order``). When one fills, its ``ORDER_FILL`` carries
``tradesClosed`` and the trade's other dependent orders are canceled with reason
``LINKED_TRADE_CLOSED`` at once. ``GET trades/{id}`` answers the trade with ``takeProfitOrder`` /
``stopLossOrder`` / ``trailingStopLossOrder`` (kept after the trade closed here; the adapter also
reads ``closingTransactionIDs``, which OANDA always keeps).

Instrument metadata is derived from the venue's asset specs (pip = tick, units step = lot,
marginRate = margin% / 100, displayPrecision one digit past the pip); ``instruments=`` overrides
fields per instrument (e.g. ``{"XAU_USD": {"tradeUnitsPrecision": 0}}``) to test the adapter's
cross-check.

``inject(route, kind, times=1, seconds=0.0)`` — ``route`` is ``"METHOD /path"`` (a glob, query
excluded) or ``"*"``; ``times=None`` keeps the fault until ``clear_faults()``. Kinds:
``latency``/``stall`` (wait ``seconds``, then do the work and answer), ``drop`` (close the socket,
nothing done), ``timeout_after_accept`` (do the work, wait ``seconds``, close without an answer),
``insufficient_margin`` / ``market_halted`` (an order POST is created and canceled at once with
that reason, as OANDA answers: 201 with ``orderCancelTransaction``), and any HTTP status as a
string (``"429"`` with Retry-After, ``"500"``, ``"503"``...), nothing done. ``halt(instrument)``
makes the market itself halted (pricing ``tradeable: false``, orders canceled MARKET_HALTED)
until ``resume(instrument)``. Venue faults (``venue.inject_fault``) surface as 429 / 503 / a
dropped connection after the venue acted.
"""
from __future__ import annotations

import json
import re
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import parse_qs, unquote, urlsplit

from backend.adapters.sim_venue import LostResponse, Scenario, SimulatedVenue, VenueOrder
from backend.domain.assets import METALS, AssetClass
from backend.domain.clock import Clock
from backend.domain.errors import InvalidInput
from backend.domain.money import ZERO
from backend.domain.orders import OrderClass, StopLoss, TakeProfit
from backend.ports.broker import BrokerError, BrokerErrorCode, OrderRequest, OrderSide, OrderState, OrderType
from tests.support.local_venue_server import STATUS_KIND, Drop, LocalVenueServer, RequestRecord


FAULT_KINDS = ("latency", "stall", "drop", "timeout_after_accept", "insufficient_margin", "market_halted")
_STATUS_KIND = STATUS_KIND
DEFAULT_ACCOUNT = "101-001-0000001-001"
KNOWN_INSTRUMENTS = ("EUR_USD", "GBP_USD", "USD_JPY", "AUD_USD", "USD_CHF", "XAU_USD", "XAG_USD")
_STATUS_MESSAGES = {400: "Invalid value specified", 401: "Insufficient authorization to perform request.",
                    403: "Insufficient authorization to perform request.", 404: "Not found",
                    405: "Method not allowed", 429: "Requests are being rate limited",
                    500: "Internal server error", 502: "Bad gateway", 503: "Service unavailable",
                    504: "Gateway timeout"}


class _HttpError(Exception):
    def __init__(self, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None):
        super().__init__(str(body))
        self.status, self.body, self.headers = status, dict(body), dict(headers or {})


def _error(status: int, message: str | None = None, code: str | None = None, **extra: Any) -> _HttpError:
    body: dict[str, Any] = {"errorMessage": message or _STATUS_MESSAGES.get(status, "error")}
    if code:
        body["errorCode"] = code
    body.update(extra)
    return _HttpError(status, body)


_Drop = Drop


@dataclass
class _Order:
    id: str
    type: str  # MARKET | LIMIT | STOP
    instrument: str
    units: Decimal  # signed
    time_in_force: str
    client_extensions: dict[str, str]
    create_time: datetime
    venue_id: str | None = None
    price: Decimal | None = None
    state: str = "PENDING"
    fill_txn: str | None = None
    cancel_txn: str | None = None
    filled_time: datetime | None = None
    cancelled_time: datetime | None = None
    on_fill: dict[str, Any] = field(default_factory=dict)  # the entry's takeProfitOnFill / ... as sent
    trade_opened: str | None = None  # an entry: the trade its fill opened (when it carried on-fill orders)
    trade_id: str | None = None  # a dependent exit (TAKE_PROFIT / STOP_LOSS / TRAILING_STOP_LOSS): its trade
    distance: Decimal | None = None  # a trailing stop loss's distance
    replaces: str | None = None  # issue 15: the order this one replaced (PUT orders/{id})
    replaced_by: str | None = None  # the order that replaced this one

    @property
    def client_id(self) -> str | None:
        return self.client_extensions.get("id")


class LocalOandaServer(LocalVenueServer):
    """See the module docstring. ``venue`` may be shared with a ``PaperBroker``."""

    fault_kinds = FAULT_KINDS
    thread_name = "local-oanda"
    route_example = "POST /v3/accounts/*/orders"

    def __init__(self, scenario: Scenario | Mapping[str, Any] | str | Path | None = None, *,
                 clock: Clock | None = None, port: int = 0, venue: SimulatedVenue | None = None,
                 host: str = "127.0.0.1", account_id: str = DEFAULT_ACCOUNT, token: str | None = None,
                 instruments: Mapping[str, Mapping[str, Any]] | None = None):
        super().__init__(host, port)
        self.venue = venue or SimulatedVenue(scenario, clock=clock)
        self.account_id = account_id
        self.token = token
        self.connections = 0
        self.api = _OandaApi(self, dict(instruments or {}))

    # -- market state

    def halt(self, instrument: str) -> None:
        self.api.halted.add(instrument)

    def resume(self, instrument: str) -> None:
        self.api.halted.discard(instrument)

    # -- inspection (no faults, no progression)

    def orders_for_client_id(self, client_id: str) -> list[dict[str, Any]]:
        with self.api.lock:
            return [self.api.render_order(o, sync=False) for o in self.api.orders.values() if o.client_id == client_id]

    def client_id_counts(self) -> Counter[str]:
        with self.api.lock:
            return Counter(o.client_id for o in self.api.orders.values() if o.client_id)

    def transactions(self) -> list[dict[str, Any]]:
        with self.api.lock:
            return [dict(t) for t in self.api.txns]


class _Handler(BaseHTTPRequestHandler):
    server_version = "LocalOanda/0.1"
    protocol_version = "HTTP/1.1"  # keep-alive, as OANDA

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        return

    def setup(self) -> None:
        super().setup()
        app: LocalOandaServer = self.server.app  # type: ignore[attr-defined]
        with app._lock:
            app.connections += 1
        app._track(self.connection)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        app: LocalOandaServer = self.server.app  # type: ignore[attr-defined]
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fault = app._take_fault(method, path)
        forced: str | None = None
        if fault is not None:
            if fault.kind == "drop":
                return self._drop(app, method, path)
            if fault.kind in ("latency", "stall"):
                app._wait(fault.seconds)
            elif fault.kind == "insufficient_margin":
                forced = "INSUFFICIENT_MARGIN"
            elif fault.kind == "market_halted":
                forced = "MARKET_HALTED"
            elif _STATUS_KIND.match(fault.kind):
                status = int(fault.kind)
                headers = {"Retry-After": f"{fault.seconds:g}" if fault.seconds else "1"} if status == 429 else {}
                return self._send(app, method, path, status, {"errorMessage": _STATUS_MESSAGES.get(status, "error")},
                                  headers)
        try:
            self._authorize(app, path)
            status, payload = app.api.handle(method, path, query, body, forced=forced)
            headers: dict[str, str] = {}
        except _Drop:
            return self._drop(app, method, path)
        except _HttpError as exc:
            status, payload, headers = exc.status, exc.body, exc.headers
        except Exception as exc:  # a bug in the server: answer 500 so the test sees it
            status, payload, headers = 500, {"errorMessage": f"local server error: {exc!r}"}, {}
        if fault is not None and fault.kind == "timeout_after_accept":
            app._wait(fault.seconds)
            return self._drop(app, method, path)
        self._send(app, method, path, status, payload, headers)

    def _authorize(self, app: LocalOandaServer, path: str) -> None:
        auth = self.headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme != "Bearer" or not token or (app.token is not None and token != app.token):
            raise _error(401)
        match = re.match(r"^/v3/accounts/([^/]+)", path)
        if match and match.group(1) != app.account_id:
            raise _error(403)

    def _send(self, app: LocalOandaServer, method: str, path: str, status: int, payload: Any,
              headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        # logged before the response goes out: the log's order is the order the client saw answers in
        app._record(method, path, status)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _drop(self, app: LocalOandaServer, method: str, path: str) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        app._record(method, path, None)


# ------------------------------------------------------------------------------------------------
# The v20 shapes over the venue
# ------------------------------------------------------------------------------------------------


def _ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"  # nine digits, as OANDA


def _plain(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def _places(step: Decimal) -> int:
    return max(0, -step.normalize().as_tuple().exponent)  # type: ignore[operator]


@dataclass
class _Meta:
    name: str
    type: str
    pipLocation: int
    displayPrecision: int
    tradeUnitsPrecision: int
    minimumTradeSize: str
    maximumOrderUnits: str
    marginRate: str
    extra: dict[str, Any] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "displayName": self.name.replace("_", "/"),
                "pipLocation": self.pipLocation, "displayPrecision": self.displayPrecision,
                "tradeUnitsPrecision": self.tradeUnitsPrecision, "minimumTradeSize": self.minimumTradeSize,
                "maximumOrderUnits": self.maximumOrderUnits, "marginRate": self.marginRate,
                "maximumTrailingStopDistance": "1.00000", "minimumTrailingStopDistance": "0.00050",
                "maximumPositionSize": "0", "guaranteedStopLossOrderMode": "DISABLED", **self.extra}


class _OandaApi:
    def __init__(self, app: LocalOandaServer, instrument_overrides: dict[str, Mapping[str, Any]]):
        self.app = app
        self.venue = app.venue
        self.lock = threading.RLock()
        self.txns: list[dict[str, Any]] = []
        self.orders: dict[str, _Order] = {}
        self.by_client: dict[str, str] = {}  # client id → newest order id
        self.trades: dict[str, dict[str, Any]] = {}  # trade id → {instrument, units, price, orders, ...}
        self.halted: set[str] = set()
        self._next = 6000 + (self.venue.scenario.seed % 1000) * 10
        self._overrides = instrument_overrides
        acc = r"^/v3/accounts/(?P<account>[^/]+)"
        self.routes: list[tuple[str, re.Pattern[str], Callable[..., tuple[int, Any]]]] = [
            ("POST", re.compile(acc + r"/orders$"), self.create_order),
            ("GET", re.compile(acc + r"/orders/(?P<spec>[^/]+)$"), self.get_order),
            ("PUT", re.compile(acc + r"/orders/(?P<spec>[^/]+)/cancel$"), self.cancel_order),
            ("PUT", re.compile(acc + r"/orders/(?P<spec>[^/]+)$"), self.replace_order),
            ("GET", re.compile(acc + r"/transactions/sinceid$"), self.transactions_since),
            ("GET", re.compile(acc + r"/transactions/(?P<txn>\d+)$"), self.get_transaction),
            ("GET", re.compile(acc + r"/trades/(?P<trade>\d+)$"), self.get_trade),
            ("GET", re.compile(acc + r"/pricing$"), self.pricing),
            ("GET", re.compile(acc + r"/openPositions$"), self.open_positions),
            ("PUT", re.compile(acc + r"/positions/(?P<instrument>[A-Z0-9]+_[A-Z0-9]+)/close$"), self.close_position),
            ("GET", re.compile(acc + r"/summary$"), self.summary),
            ("GET", re.compile(acc + r"/instruments$"), self.instruments),
            ("GET", re.compile(r"^/v3/instruments/(?P<instrument>[A-Z0-9]+_[A-Z0-9]+)/candles$"), self.candles),
        ]

    def handle(self, method: str, path: str, query: dict[str, str], body: bytes, *,
               forced: str | None = None) -> tuple[int, Any]:
        known = False
        for route_method, pattern, handler in self.routes:
            match = pattern.match(path)
            if match is None:
                continue
            known = True
            if route_method != method:
                continue
            args = {k: v for k, v in match.groupdict().items() if k != "account"}
            try:
                with self.lock:
                    if handler in (self.create_order, self.replace_order):
                        return handler(query, body, forced=forced, **args)
                    return handler(query, body, **args)
            except LostResponse:
                raise _Drop() from None
            except BrokerError as exc:
                raise _venue_error(exc) from None
            except InvalidInput as exc:
                raise _error(400, str(exc)) from None
        if known:
            raise _error(405)
        raise _error(404, "endpoint not found")

    # -- ids, transactions, instruments

    def _txn(self, kind: str, **fields: Any) -> dict[str, Any]:
        self._next += 1
        txn = {"id": str(self._next), "time": _ts(self.venue.clock.now()), "userID": 1001,
               "accountID": self.app.account_id, "batchID": fields.pop("batchID", None) or str(self._next), "type": kind,
               **{k: v for k, v in fields.items() if v is not None}}
        self.txns.append(txn)
        return txn

    @property
    def last_id(self) -> str:
        return str(self._next)

    def meta(self, instrument: str) -> _Meta:
        klass = AssetClass.COMMODITY if instrument.partition("_")[0] in METALS else AssetClass.FOREX
        try:
            spec = self.venue.market.spec(instrument.replace("_", "/"), klass)
        except InvalidInput:
            raise _error(400, f"Invalid value specified for 'instrument': {instrument}") from None
        pip_places = _places(spec.tick_size)
        units_places = _places(spec.lot_size)
        meta = _Meta(name=instrument, type="METAL" if klass is AssetClass.COMMODITY else "CURRENCY",
                     pipLocation=-pip_places, displayPrecision=pip_places + 1, tradeUnitsPrecision=units_places,
                     minimumTradeSize=_plain(spec.lot_size), maximumOrderUnits="100000000",
                     marginRate=_plain(spec.margin_pct / 100))
        for key, value in self._overrides.get(instrument, {}).items():
            if hasattr(meta, key) and key != "extra":
                setattr(meta, key, value)
            else:
                meta.extra[key] = value
        return meta

    def _instrument_names(self) -> list[str]:
        names = set(KNOWN_INSTRUMENTS) | set(self._overrides)
        for symbol, spec in self.venue.scenario.symbols.items():
            if spec.asset_class in (AssetClass.FOREX, AssetClass.COMMODITY) and "/" in symbol:
                names.add(symbol.replace("/", "_"))
        return sorted(names)

    def _price(self, value: Decimal, meta: _Meta) -> str:
        return format(value.quantize(Decimal(10) ** -meta.displayPrecision), "f")

    def _units(self, value: Decimal, meta: _Meta) -> str:
        return format(value.quantize(Decimal(10) ** -meta.tradeUnitsPrecision), "f")

    # -- orders

    def create_order(self, query: dict[str, str], body: bytes, *, forced: str | None = None) -> tuple[int, Any]:
        data = _json_body(body)
        raw = data.get("order")
        if not isinstance(raw, dict):
            raise _error(400, "Invalid value specified for 'order'", "INVALID_ORDER")
        return self._create(raw, forced=forced)

    def replace_order(self, query: dict[str, str], body: bytes, spec: str, *,
                      forced: str | None = None) -> tuple[int, Any]:
        """``PUT orders/{spec}`` (issue 15 item 6), as OANDA: a pending order is canceled with reason
        ``CLIENT_REQUEST_REPLACED`` (``replacedByOrderID``) and the replacing order created in the same
        batch (reason ``REPLACEMENT``, ``replacesOrderID``), both in ``transactions/sinceid`` in that order.
        An order that is no longer pending (filled, canceled) or a dependent order answers 404
        ``ORDER_DOESNT_EXIST`` with an ``orderCancelRejectTransaction``; an invalid spec is rejected (400)
        and the old order keeps working."""
        old = self._order_for(spec)
        self._sync(old)
        data = _json_body(body)
        raw = data.get("order")
        if old.state != "PENDING" or old.trade_id is not None:
            txn = self._txn("ORDER_CANCEL_REJECT", orderID=old.id, clientOrderID=old.client_id,
                            rejectReason="ORDER_DOESNT_EXIST")
            raise _error(404, "The Order specified does not exist", "ORDER_DOESNT_EXIST",
                         orderCancelRejectTransaction=txn, lastTransactionID=self.last_id)
        if not isinstance(raw, dict):
            raise _error(400, "Invalid value specified for 'order'", "INVALID_ORDER")
        return self._create(raw, forced=forced, replacing=old)

    def _cancel_replaced(self, old: _Order) -> dict[str, Any]:
        """Cancel ``old`` for its replacement (at the venue first); 404 when it filled meanwhile."""
        if old.venue_id is not None:
            self._apply(old, self.venue.cancel_order(old.venue_id), cancel_reason="CLIENT_REQUEST_REPLACED")
        if old.state == "PENDING":
            self._cancel_record(old, "CLIENT_REQUEST_REPLACED")
        if old.cancel_txn is None:  # it filled before the cancel reached it
            txn = self._txn("ORDER_CANCEL_REJECT", orderID=old.id, clientOrderID=old.client_id,
                            rejectReason="ORDER_DOESNT_EXIST")
            raise _error(404, "The Order specified does not exist", "ORDER_DOESNT_EXIST",
                         orderCancelRejectTransaction=txn, lastTransactionID=self.last_id)
        return self._find_txn(old.cancel_txn)

    def _create(self, raw: dict[str, Any], *, forced: str | None, replacing: _Order | None = None
                ) -> tuple[int, Any]:
        """Create an order from its v20 spec (POST orders), or the replacement of ``replacing`` (PUT)."""
        kind = str(raw.get("type") or "MARKET")
        if kind not in ("MARKET", "LIMIT", "STOP"):
            raise _error(400, f"Order type {kind} is not supported here", "INVALID_ORDER_TYPE")
        instrument = str(raw.get("instrument") or "")
        if not re.match(r"^[A-Z]{3}_[A-Z]{3}$", instrument):
            return self._reject(raw, kind, "INSTRUMENT_MISSING" if not instrument else "INSTRUMENT_UNKNOWN")
        meta = self.meta(instrument)
        units_raw = raw.get("units")
        if not isinstance(units_raw, str):
            return self._reject(raw, kind, "UNITS_MISSING" if units_raw is None else "UNITS_INVALID")
        try:
            units = Decimal(units_raw)
        except ArithmeticError:
            return self._reject(raw, kind, "UNITS_INVALID")
        if not units.is_finite() or units == ZERO:
            return self._reject(raw, kind, "UNITS_INVALID")
        if units % (Decimal(10) ** -meta.tradeUnitsPrecision) != ZERO:
            return self._reject(raw, kind, "UNITS_PRECISION_EXCEEDED")
        if abs(units) < Decimal(meta.minimumTradeSize):
            return self._reject(raw, kind, "UNITS_MINIMUM_NOT_MET")
        tif = str(raw.get("timeInForce") or ("FOK" if kind == "MARKET" else "GTC"))
        if kind == "MARKET" and tif not in ("FOK", "IOC"):
            return self._reject(raw, kind, "TIME_IN_FORCE_INVALID")
        if tif not in ("FOK", "IOC", "GTC", "GFD"):
            return self._reject(raw, kind, "TIME_IN_FORCE_INVALID")
        if replacing is not None and (kind != replacing.type or instrument != replacing.instrument):
            return self._reject(raw, kind, "REPLACING_ORDER_INVALID")  # the local server keeps type and instrument
        price = None
        if kind in ("LIMIT", "STOP"):
            if not isinstance(raw.get("price"), str):
                return self._reject(raw, kind, "PRICE_MISSING")
            price = Decimal(raw["price"])
        try:  # issue 15: protective orders OANDA creates on the trade when this order fills
            on_fill = _on_fill(raw)
        except (ArithmeticError, ValueError, TypeError):
            return self._reject(raw, kind, "ON_FILL_INVALID")
        extensions = raw.get("clientExtensions") or {}
        if not isinstance(extensions, dict):
            return self._reject(raw, kind, "CLIENT_EXTENSIONS_INVALID")
        extensions = {k: str(v) for k, v in extensions.items() if k in ("id", "tag", "comment")}
        cid = extensions.get("id")
        if cid:
            existing = self.orders.get(self.by_client.get(cid, ""))
            if existing is not None:
                self._sync(existing)
                if existing.state == "PENDING":  # OANDA refuses a duplicate only while the first is pending
                    return self._reject(raw, kind, "CLIENT_ORDER_ID_ALREADY_EXISTS")
        if forced is None and instrument in self.halted:
            forced = "MARKET_HALTED"
        if forced is None and kind == "MARKET" and isinstance(raw.get("priceBound"), str):
            # like OANDA: a market order that would fill beyond its priceBound is cancelled, not filled
            touch = self.venue.get_latest_quote(instrument.replace("_", "/"),
                                                AssetClass.COMMODITY if meta.type == "METAL" else AssetClass.FOREX)
            bound = Decimal(raw["priceBound"])
            if (units > ZERO and touch.ask > bound) or (units < ZERO and touch.bid < bound):
                forced = "BOUNDS_VIOLATION"
        request = None
        if forced is None:
            sim_tif = {"FOK": "fok", "IOC": "ioc", "GTC": "gtc", "GFD": "day"}[tif]
            try:
                request = OrderRequest(client_order_id=self.venue.new_client_order_id(),
                                       symbol=instrument.replace("_", "/"),
                                       asset_class=AssetClass.COMMODITY if meta.type == "METAL" else AssetClass.FOREX,
                                       side=OrderSide.BUY if units > ZERO else OrderSide.SELL, qty=abs(units),
                                       order_type=OrderType(kind.lower()),
                                       limit_price=price if kind == "LIMIT" else None,
                                       stop_price=price if kind == "STOP" else None, time_in_force=sim_tif,
                                       **on_fill)
            except ValueError:  # e.g. a take profit on the losing side: OANDA rejects the order
                return self._reject(raw, kind, "ON_FILL_INVALID")
        replaced_cancel = self._cancel_replaced(replacing) if replacing is not None else None
        now = self.venue.clock.now()
        create = self._txn(f"{kind}_ORDER", instrument=instrument, units=self._units(units, meta),
                           timeInForce=tif, positionFill=str(raw.get("positionFill") or "DEFAULT"),
                           price=None if price is None else self._price(price, meta),
                           priceBound=raw.get("priceBound"),
                           reason="CLIENT_ORDER" if replacing is None else "REPLACEMENT",
                           replacesOrderID=None if replacing is None else replacing.id,
                           batchID=None if replaced_cancel is None else replaced_cancel["batchID"],
                           clientExtensions=extensions or None,
                           **{k: raw[k] for k in _ON_FILL if isinstance(raw.get(k), dict)})
        order = _Order(id=create["id"], type=kind, instrument=instrument, units=units, time_in_force=tif,
                       client_extensions=extensions, create_time=now, price=price,
                       on_fill={k: dict(raw[k]) for k in _ON_FILL if isinstance(raw.get(k), dict)},
                       replaces=None if replacing is None else replacing.id)
        if replacing is not None and replaced_cancel is not None:
            replacing.replaced_by = order.id
            replaced_cancel["replacedByOrderID"] = order.id
        self.orders[order.id] = order
        if cid:
            self.by_client[cid] = order.id
        related = [t for t in (replaced_cancel and replaced_cancel["id"], create["id"]) if t]
        if request is None:
            self._cancel_record(order, forced or "INTERNAL_SERVER_ERROR")
        else:
            try:
                venue_order = self.venue.submit_order(request, on_duplicate="raise")
            except LostResponse:
                found = [o for o in self.venue.orders() if o.client_order_id == request.client_order_id]
                if found:
                    order.venue_id = found[0].broker_order_id
                    self._apply(order, found[0])
                raise
            except BrokerError as exc:
                if exc.code is BrokerErrorCode.INSUFFICIENT_BUYING_POWER:
                    self._cancel_record(order, "INSUFFICIENT_MARGIN")
                elif exc.code is BrokerErrorCode.INVALID and replacing is None:
                    # OANDA would have rejected it: no order exists
                    self._unmake(order, cid, create)
                    return self._reject(raw, kind, "INVALID_ORDER", message=exc.message)
                elif replacing is None:
                    self._unmake(order, cid, create)
                    raise
                else:  # the old order is gone already: the replacement is canceled, as OANDA reports it
                    self._cancel_record(order, "INTERNAL_SERVER_ERROR")
            else:
                order.venue_id = venue_order.broker_order_id
                self._apply(order, venue_order)
        out: dict[str, Any] = {"orderCreateTransaction": create}
        if replaced_cancel is not None:
            out["orderCancelTransaction"] = replaced_cancel
        if order.fill_txn:
            out["orderFillTransaction"] = self._find_txn(order.fill_txn)
            related.append(order.fill_txn)
        if order.cancel_txn:
            out["replacingOrderCancelTransaction" if replacing is not None else "orderCancelTransaction"] = \
                self._find_txn(order.cancel_txn)
            related.append(order.cancel_txn)
        out.update(relatedTransactionIDs=related, lastTransactionID=self.last_id)
        return 201, out

    def _unmake(self, order: _Order, cid: str | None, create: dict[str, Any]) -> None:
        del self.orders[order.id]
        if cid and self.by_client.get(cid) == order.id:
            del self.by_client[cid]
        self.txns.remove(create)

    def _reject(self, raw: Mapping[str, Any], kind: str, reason: str, message: str | None = None) -> tuple[int, Any]:
        txn = self._txn(f"{kind}_ORDER_REJECT", instrument=raw.get("instrument"), units=raw.get("units"),
                        rejectReason=reason, clientExtensions=raw.get("clientExtensions"))
        raise _error(400, message or f"The order was rejected: {reason}", reason,
                     orderRejectTransaction=txn, relatedTransactionIDs=[txn["id"]], lastTransactionID=self.last_id)

    def _cancel_record(self, order: _Order, reason: str) -> None:
        txn = self._txn("ORDER_CANCEL", orderID=order.id, clientOrderID=order.client_id, reason=reason)
        order.state, order.cancel_txn, order.cancelled_time = "CANCELLED", txn["id"], self.venue.clock.now()

    def _apply(self, order: _Order, snap: VenueOrder, *, cancel_reason: str | None = None) -> None:
        """Turn the venue's view of the order into OANDA transactions (once, when it becomes final)."""
        if order.state != "PENDING" or not snap.state.is_final:
            return
        meta = self.meta(order.instrument)
        now = self.venue.clock.now()
        if snap.filled_qty > ZERO:
            signed = snap.filled_qty if order.units > ZERO else -snap.filled_qty
            price = self._price(snap.filled_avg_price or ZERO, meta)
            fill = self._txn("ORDER_FILL", orderID=order.id, clientOrderID=order.client_id,
                             instrument=order.instrument, units=self._units(signed, meta), price=price,
                             fullVWAP=price, reason=f"{order.type}_ORDER", pl="0.0000", financing="0.0000",
                             commission="0.0000", accountBalance=_plain(self.venue.get_account().cash))
            order.fill_txn, order.filled_time, order.state = fill["id"], now, "FILLED"
            if order.trade_id is not None:
                fill["reason"] = order.type + "_ORDER"
                fill["tradesClosed"] = [{"tradeID": order.trade_id, "units": fill["units"], "price": price}]
                self._close_trade(order, fill)
            elif order.on_fill and snap.state is OrderState.FILLED and snap.legs:
                self._open_trade(order, fill, snap.legs, meta)
            elif order.on_fill:
                # a partial fill (the remainder canceled or expired): OANDA opens the trade for the units
                # that filled and creates its dependent orders for them (the venue dropped the held legs)
                self._open_trade(order, fill, self._exit_orders(order, snap.filled_qty), meta)
        if snap.filled_qty < snap.qty:
            if snap.state is OrderState.REJECTED:
                reason = "MARKET_HALTED" if "halt" in (snap.reject_reason or "").lower() else "INTERNAL_SERVER_ERROR"
            elif snap.state is OrderState.EXPIRED:
                reason = "TIME_IN_FORCE_EXPIRED"
            elif order.time_in_force in ("FOK", "IOC"):
                reason = "INSUFFICIENT_LIQUIDITY"
            elif cancel_reason is not None:
                reason = cancel_reason
            elif order.trade_id is not None:
                reason = "LINKED_TRADE_CLOSED"  # the venue canceled a dependent order: its trade closed
            else:
                reason = "CLIENT_REQUEST"
            state = order.state
            self._cancel_record(order, reason)
            if state == "FILLED":
                order.state = "FILLED"  # a partial IOC fill: the order is FILLED, its remainder canceled

    def _exit_orders(self, entry: _Order, qty: Decimal) -> tuple[VenueOrder, ...]:
        """The trade's exits for ``qty`` as simple orders of the venue (take-profit limit, stop-loss stop or
        trailing stop, opposite side, gtc). Their link is the trade's: when one fills, ``_close_trade``
        cancels the other as soon as the server observes the fill (every read syncs its orders); a price
        path crossing both exits between two reads of the server would fill both (tests move one way)."""
        take = entry.on_fill.get("takeProfitOnFill")
        stop = entry.on_fill.get("stopLossOnFill")
        trail = entry.on_fill.get("trailingStopLossOnFill")
        common = dict(symbol=entry.instrument.replace("_", "/"),
                      asset_class=AssetClass.COMMODITY if self.meta(entry.instrument).type == "METAL"
                      else AssetClass.FOREX,
                      side=OrderSide.SELL if entry.units > ZERO else OrderSide.BUY, qty=qty, time_in_force="gtc")
        requests = []
        if take:
            requests.append(dict(order_type=OrderType.LIMIT, limit_price=Decimal(str(take["price"]))))
        if stop:
            requests.append(dict(order_type=OrderType.STOP, stop_price=Decimal(str(stop["price"]))))
        if trail:
            requests.append(dict(order_type=OrderType.TRAILING_STOP, trail_price=Decimal(str(trail["distance"]))))
        return tuple(self.venue.submit_order(OrderRequest(client_order_id=self.venue.new_client_order_id(),
                                                          **common, **fields)) for fields in requests)

    def _open_trade(self, entry: _Order, fill: dict[str, Any], legs: tuple[VenueOrder, ...], meta: _Meta) -> None:
        """The entry's fill opens a trade; its on-fill orders become the trade's dependent orders (the
        venue's protective legs), created in the fill's batch."""
        trade_id = fill["id"]
        fill["tradeOpened"] = {"tradeID": trade_id, "units": fill["units"], "price": fill["price"]}
        entry.trade_opened = trade_id
        kinds = {OrderType.LIMIT: ("TAKE_PROFIT", "takeProfitOrder"), OrderType.STOP: ("STOP_LOSS", "stopLossOrder"),
                 OrderType.TRAILING_STOP: ("TRAILING_STOP_LOSS", "trailingStopLossOrder")}
        orders: dict[str, str] = {}
        for leg in legs:
            kind, slot = kinds[leg.order_type]
            distance = leg.trail_price if leg.order_type is OrderType.TRAILING_STOP else None
            price = leg.limit_price if leg.order_type is OrderType.LIMIT else (
                None if distance is not None else leg.stop_price)
            txn = self._txn(f"{kind}_ORDER", tradeID=trade_id, timeInForce="GTC", triggerCondition="DEFAULT",
                            price=None if price is None else self._price(price, meta),
                            distance=None if distance is None else self._price(distance, meta),
                            reason="ON_FILL", batchID=fill["batchID"])
            exit_order = _Order(id=txn["id"], type=kind, instrument=entry.instrument, units=-entry.units,
                                time_in_force="GTC", client_extensions={}, create_time=self.venue.clock.now(),
                                venue_id=leg.broker_order_id, price=price, trade_id=trade_id, distance=distance)
            self.orders[exit_order.id] = exit_order
            orders[slot] = exit_order.id
        self.trades[trade_id] = {"id": trade_id, "instrument": entry.instrument, "price": fill["price"],
                                 "openTime": fill["time"], "initialUnits": fill["units"], "units": fill["units"],
                                 "orders": orders, "closing": [], "closeTime": None}

    def _close_trade(self, exit_order: _Order, fill: dict[str, Any]) -> None:
        """A dependent order filled: the trade closes and OANDA cancels its other dependent orders."""
        trade = self.trades.get(exit_order.trade_id or "")
        if trade is None:
            return
        trade["closing"].append(fill["id"])
        trade["closeTime"] = fill["time"]
        trade["units"] = "0"
        for sibling_id in trade["orders"].values():
            sibling = self.orders.get(sibling_id)
            if sibling is None or sibling is exit_order or sibling.state != "PENDING":
                continue
            snap = self.venue.get_order(sibling.venue_id) if sibling.venue_id is not None else None
            if snap is not None and not snap.state.is_final:
                snap = self.venue.cancel_order(sibling.venue_id)
            if snap is not None:
                self._apply(sibling, snap, cancel_reason="LINKED_TRADE_CLOSED")
            if sibling.state == "PENDING":
                self._cancel_record(sibling, "LINKED_TRADE_CLOSED")

    def get_trade(self, query: dict[str, str], body: bytes, trade: str) -> tuple[int, Any]:
        found = self.trades.get(trade)
        if found is None:
            raise _error(404, "The Trade specified does not exist", "NO_SUCH_TRADE", lastTransactionID=self.last_id)
        for order_id in found["orders"].values():
            self._sync(self.orders[order_id])
        open_ = not found["closing"]
        out: dict[str, Any] = {"id": found["id"], "instrument": found["instrument"], "price": found["price"],
                               "openTime": found["openTime"], "state": "OPEN" if open_ else "CLOSED",
                               "initialUnits": found["initialUnits"], "currentUnits": found["units"],
                               "realizedPL": "0.0000", "financing": "0.0000"}
        if not open_:
            out.update(closingTransactionIDs=list(found["closing"]), closeTime=found["closeTime"])
        for slot, order_id in found["orders"].items():
            out[slot] = self.render_order(self.orders[order_id], sync=False)
        return 200, {"trade": out, "lastTransactionID": self.last_id}

    def _sync(self, order: _Order) -> None:
        if order.state == "PENDING" and order.venue_id is not None:
            self._apply(order, self.venue.get_order(order.venue_id))

    def _find_txn(self, txn_id: str) -> dict[str, Any]:
        for txn in self.txns:
            if txn["id"] == txn_id:
                return txn
        raise _error(404, "Transaction not found", "NO_SUCH_TRANSACTION")

    def _order_for(self, spec: str) -> _Order:
        order_id = self.by_client.get(spec[1:]) if spec.startswith("@") else spec
        order = self.orders.get(order_id or "")
        if order is None:
            raise _error(404, "The Order specified does not exist", "NO_SUCH_ORDER", lastTransactionID=self.last_id)
        return order

    def render_order(self, order: _Order, *, sync: bool = True) -> dict[str, Any]:
        if sync:
            self._sync(order)
        meta = self.meta(order.instrument)
        out: dict[str, Any] = {"id": order.id, "createTime": _ts(order.create_time), "type": order.type,
                               "timeInForce": order.time_in_force, "state": order.state}
        if order.trade_id is None:
            out.update(instrument=order.instrument, units=self._units(order.units, meta), positionFill="DEFAULT",
                       **order.on_fill)
        else:  # a dependent order closes its trade: no instrument or units of its own, as at OANDA
            out.update(tradeID=order.trade_id, triggerCondition="DEFAULT")
        if order.trade_opened:
            out["tradeOpenedID"] = order.trade_opened
        if order.replaces:
            out["replacesOrderID"] = order.replaces
        if order.replaced_by:
            out["replacedByOrderID"] = order.replaced_by
        if order.price is not None:
            out["price"] = self._price(order.price, meta)
        if order.distance is not None:
            out["distance"] = self._price(order.distance, meta)
        if order.client_extensions:
            out["clientExtensions"] = dict(order.client_extensions)
        if order.fill_txn:
            out.update(fillingTransactionID=order.fill_txn, filledTime=_ts(order.filled_time))
        if order.cancel_txn:
            out.update(cancellingTransactionID=order.cancel_txn, cancelledTime=_ts(order.cancelled_time))
        return out

    def get_order(self, query: dict[str, str], body: bytes, spec: str) -> tuple[int, Any]:
        return 200, {"order": self.render_order(self._order_for(spec)), "lastTransactionID": self.last_id}

    def cancel_order(self, query: dict[str, str], body: bytes, spec: str) -> tuple[int, Any]:
        order = self._order_for(spec)
        self._sync(order)
        if order.state != "PENDING":
            txn = self._txn("ORDER_CANCEL_REJECT", orderID=order.id, rejectReason="ORDER_DOESNT_EXIST")
            raise _error(404, "The Order specified does not exist", "ORDER_DOESNT_EXIST",
                         orderCancelRejectTransaction=txn, lastTransactionID=self.last_id)
        if order.venue_id is not None:
            self._apply(order, self.venue.cancel_order(order.venue_id), cancel_reason="CLIENT_REQUEST")
        if order.state == "PENDING":
            self._cancel_record(order, "CLIENT_REQUEST")
        return 200, {"orderCancelTransaction": self._find_txn(order.cancel_txn or ""),
                     "relatedTransactionIDs": [order.cancel_txn], "lastTransactionID": self.last_id}

    def get_transaction(self, query: dict[str, str], body: bytes, txn: str) -> tuple[int, Any]:
        return 200, {"transaction": self._find_txn(txn), "lastTransactionID": self.last_id}

    def transactions_since(self, query: dict[str, str], body: bytes) -> tuple[int, Any]:
        raw = query.get("id") or ""
        if not raw.isdigit():
            raise _error(400, "Invalid value specified for 'id'")
        for order in list(self.orders.values()):  # a pending order that filled or ended at the venue since
            self._sync(order)                      # appears in the stream as it does at OANDA (issue 15)
        after = [t for t in self.txns if int(t["id"]) > int(raw)][:1000]
        return 200, {"transactions": after, "lastTransactionID": self.last_id}

    # -- positions, account

    def _fx_positions(self) -> list[tuple[str, Decimal, Decimal]]:
        out = []
        for position in self.venue.get_positions():
            klass = self.venue.position_asset_class(position.symbol)
            if klass in (AssetClass.FOREX, AssetClass.COMMODITY) and "/" in position.symbol and position.qty != ZERO:
                out.append((position.symbol.replace("/", "_"), position.qty, position.avg_entry_price or ZERO))
        return out

    def open_positions(self, query: dict[str, str], body: bytes) -> tuple[int, Any]:
        positions = []
        for instrument, qty, avg in self._fx_positions():
            meta = self.meta(instrument)
            long_side = {"units": self._units(qty if qty > ZERO else ZERO, meta), "pl": "0.0000",
                         "unrealizedPL": "0.0000"}
            short_side = {"units": self._units(qty if qty < ZERO else ZERO, meta), "pl": "0.0000",
                          "unrealizedPL": "0.0000"}
            (long_side if qty > ZERO else short_side)["averagePrice"] = self._price(avg, meta)
            positions.append({"instrument": instrument, "long": long_side, "short": short_side, "pl": "0.0000",
                              "unrealizedPL": "0.0000", "marginUsed": "0.0000"})
        return 200, {"positions": positions, "lastTransactionID": self.last_id}

    def close_position(self, query: dict[str, str], body: bytes, instrument: str) -> tuple[int, Any]:
        data = _json_body(body)
        held = {name: qty for name, qty, _ in self._fx_positions()}
        qty = held.get(instrument, ZERO)
        side = "long" if data.get("longUnits") else "short" if data.get("shortUnits") else None
        if side is None or (side == "long" and qty <= ZERO) or (side == "short" and qty >= ZERO):
            raise _error(400, "The Position requested to be closed out does not exist", "CLOSEOUT_POSITION_DOESNT_EXIST")
        meta = self.meta(instrument)
        units = -qty
        create = self._txn("MARKET_ORDER", instrument=instrument, units=self._units(units, meta), timeInForce="FOK",
                           positionFill="REDUCE_ONLY", reason="POSITION_CLOSEOUT")
        order = _Order(id=create["id"], type="MARKET", instrument=instrument, units=units, time_in_force="FOK",
                       client_extensions={}, create_time=self.venue.clock.now())
        self.orders[order.id] = order
        venue_order = self.venue.close_position(instrument.replace("_", "/"))
        if venue_order is not None:
            order.venue_id = venue_order.broker_order_id
            self._apply(order, venue_order)
        out: dict[str, Any] = {f"{side}OrderCreateTransaction": create}
        if order.fill_txn:
            out[f"{side}OrderFillTransaction"] = self._find_txn(order.fill_txn)
        if order.cancel_txn:
            out[f"{side}OrderCancelTransaction"] = self._find_txn(order.cancel_txn)
        out["lastTransactionID"] = self.last_id
        return 200, out

    def summary(self, query: dict[str, str], body: bytes) -> tuple[int, Any]:
        account = self.venue.get_account()
        return 200, {"account": {
            "id": self.app.account_id, "alias": "local", "currency": account.currency,
            "balance": _plain(account.cash), "NAV": _plain(account.equity),
            "marginAvailable": _plain(account.buying_power), "marginUsed": "0", "unrealizedPL": "0",
            "openPositionCount": len(self._fx_positions()),
            "pendingOrderCount": sum(1 for o in self.orders.values() if o.state == "PENDING"),
            "marginRate": "0.02", "hedgingEnabled": False, "lastTransactionID": self.last_id},
            "lastTransactionID": self.last_id}

    def instruments(self, query: dict[str, str], body: bytes) -> tuple[int, Any]:
        names = [n for n in (query.get("instruments") or "").split(",") if n] or self._instrument_names()
        return 200, {"instruments": [self.meta(n).json() for n in names], "lastTransactionID": self.last_id}

    # -- market data

    def pricing(self, query: dict[str, str], body: bytes) -> tuple[int, Any]:
        names = [n for n in (query.get("instruments") or "").split(",") if n]
        if not names:
            raise _error(400, "Invalid value specified for 'instruments'")
        prices = []
        for name in names:
            meta = self.meta(name)
            klass = AssetClass.COMMODITY if meta.type == "METAL" else AssetClass.FOREX
            quote = self.venue.get_latest_quote(name.replace("_", "/"), klass)
            tradeable = name not in self.halted
            prices.append({
                "type": "PRICE", "instrument": name, "time": _ts(quote.timestamp), "tradeable": tradeable,
                "status": "tradeable" if tradeable else "non-tradeable",
                "bids": [{"price": self._price(quote.bid, meta), "liquidity": int(quote.bid_size or 1000000)}],
                "asks": [{"price": self._price(quote.ask, meta), "liquidity": int(quote.ask_size or 1000000)}],
                "closeoutBid": self._price(quote.bid, meta), "closeoutAsk": self._price(quote.ask, meta)})
        return 200, {"prices": prices, "time": _ts(self.venue.clock.now())}

    def candles(self, query: dict[str, str], body: bytes, instrument: str) -> tuple[int, Any]:
        granularity = query.get("granularity") or "S5"
        if (query.get("price") or "M") != "M":
            raise _error(400, "the local server only serves mid candles (price=M)")
        step = {"D": timedelta(days=1), "H1": timedelta(hours=1), "M1": timedelta(minutes=1)}.get(granularity)
        if step is None:
            raise _error(400, f"Invalid value specified for 'granularity': {granularity}")
        count = min(int(query.get("count") or 500), 5000)
        meta = self.meta(instrument)
        klass = AssetClass.COMMODITY if meta.type == "METAL" else AssetClass.FOREX
        closes = self.venue.get_recent_closes(instrument.replace("_", "/"), count, klass)
        end = self.venue.clock.now().replace(microsecond=0)
        rows = []
        for i, close in enumerate(closes):
            previous = closes[i - 1] if i else close
            rows.append({"complete": True, "volume": 100, "time": _ts(end - step * (len(closes) - 1 - i)),
                         "mid": {"o": self._price(previous, meta), "h": self._price(max(previous, close), meta),
                                 "l": self._price(min(previous, close), meta), "c": self._price(close, meta)}})
        return 200, {"instrument": instrument, "granularity": granularity, "candles": rows}


def _venue_error(exc: BrokerError) -> _HttpError:
    if exc.code is BrokerErrorCode.RATE_LIMITED:
        return _HttpError(429, {"errorMessage": "Requests are being rate limited"},
                          {"Retry-After": str(max(1, round(exc.retry_after or 1)))})
    if exc.code is BrokerErrorCode.UNAVAILABLE:
        return _error(503, exc.message or None)
    if exc.code is BrokerErrorCode.NOT_FOUND:
        return _error(404, exc.message or None)
    return _error(400, exc.message or exc.code.value)


_ON_FILL = ("takeProfitOnFill", "stopLossOnFill", "trailingStopLossOnFill")


def _on_fill(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``takeProfitOnFill`` {price}, ``stopLossOnFill`` {price}, ``trailingStopLossOnFill`` {distance} →
    the simulated venue's protective legs (held until the entry fills, then one cancels the other)."""
    take, stop, trail = (raw.get(k) for k in _ON_FILL)
    take_profit = TakeProfit(Decimal(str(take["price"]))) if isinstance(take, dict) else None
    stop_loss = None
    if isinstance(stop, dict):
        stop_loss = StopLoss(stop_price=Decimal(str(stop["price"])))
    if isinstance(trail, dict):
        if stop_loss is not None:
            raise ValueError("one stop loss on fill")
        stop_loss = StopLoss(trail_price=Decimal(str(trail["distance"])))
    if take_profit is None and stop_loss is None:
        return {}
    both = take_profit is not None and stop_loss is not None
    return {"order_class": OrderClass.BRACKET if both else OrderClass.OTO, "take_profit": take_profit,
            "stop_loss": stop_loss}


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise _error(400, "Invalid JSON body") from None
    if not isinstance(data, dict):
        raise _error(400, "The request body must be a JSON object")
    return data


LocalOandaServer.handler = _Handler

__all__ = ["LocalOandaServer", "RequestRecord", "FAULT_KINDS", "DEFAULT_ACCOUNT"]
