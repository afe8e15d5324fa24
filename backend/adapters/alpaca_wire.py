"""Alpaca wire ↔ domain, without I/O: status mapping, symbols, error classification, JSON parsing
and multi-leg validation for ``AlpacaBroker`` (``backend/adapters/alpaca_broker.py``).

Parsing (wire → domain)
    Clients are built with ``raw_data=True``: the adapter reads the few fields it needs from the
    venue's JSON and turns them into Decimals itself (strings straight to Decimal; a JSON number
    goes through ``to_decimal``'s shortest-repr rule). A field the venue adds or omits that we do
    not use can then never turn an accepted order into an exception. Requests still go through
    alpaca-py's request models, so its validators (qty XOR notional, 2–4 unique mleg legs) run
    before anything is sent.

Imports neither alpaca nor requests: exceptions are classified by looking their modules up in
``sys.modules`` (only a loaded module can have raised).
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Mapping, Sequence, TypeVar

from backend.adapters.venue_common import parse_retry_after
from backend.domain.assets import (
    AssetClass,
    crypto_pair,
    detect_asset_class,
    is_occ_option,
    normalize_symbol,
    occ_underlying,
)
from backend.domain.clock import Clock
from backend.domain.errors import InvalidInput
from backend.domain.instruments import InstrumentInfo
from backend.domain.money import ZERO, to_decimal
from backend.domain.orders import (
    BrokerError,
    BrokerErrorCode,
    BrokerOrder,
    OrderClass,
    OrderRequest,
    OrderSide,
    OrderState,
    OrderType,
    Position,
    Quote,
    ReplaceRequest,
)

T = TypeVar("T")

# Alpaca's error code for 422s it cannot process. It is also the code of the duplicate
# client_order_id error, so the duplicate case is recognised by its message, not its code.
ALPACA_UNPROCESSABLE = 40010001
# 403 code 40310000 covers buying power but also "not allowed to short", "wash trade", ...: the
# message decides. Crypto says "insufficient balance for USD".
_BUYING_POWER_MARKERS = ("buying power", "insufficient balance", "insufficient funds")
_DUPLICATE_MARKERS = ("client_order_id must be unique", "client_order_id already exists")


# --------------------------------------------------------------------------------------------
# Status mapping
# --------------------------------------------------------------------------------------------

_WORKING = "working"  # sentinel: NEW or PARTIALLY_FILLED, decided by filled_qty

# Every value of alpaca.trading.enums.OrderStatus (0.44), with its meaning at Alpaca.
ALPACA_STATUS_TO_STATE: Mapping[str, OrderState | str] = {
    # Received by Alpaca, not yet routed / not yet acknowledged by the execution venue.
    "accepted": OrderState.PENDING_NEW,
    "pending_new": OrderState.PENDING_NEW,
    "pending_review": OrderState.PENDING_NEW,  # held for compliance review before routing
    # Live at the venue.
    "new": OrderState.NEW,
    "accepted_for_bidding": OrderState.NEW,  # at the exchange, being evaluated for pricing
    "held": _WORKING,  # waiting on a trigger (e.g. a bracket leg); alive and cancelable
    "partially_filled": OrderState.PARTIALLY_FILLED,
    # Still working although the word sounds final: each can still fill or be canceled.
    "pending_cancel": _WORKING,  # a cancel was requested; fills can land until "canceled"
    "pending_replace": _WORKING,  # a replace was requested; the original works until "replaced"
    "stopped": _WORKING,  # a trade is guaranteed at a stated price but has not happened yet
    "suspended": _WORKING,  # not eligible for trading for now; may resume; not final
    # done_for_day: no more executions today. NOT final: a GTC order resumes next session and a
    # DAY order later turns canceled/expired, which the next poll sees. Until then: working.
    "done_for_day": _WORKING,
    # calculated: done for the day, settlement figures pending. The fill quantities are final
    # for the day, so it maps by fill like done_for_day (FILLED when fully filled).
    "calculated": _WORKING,
    "filled": OrderState.FILLED,
    "canceled": OrderState.CANCELED,
    # replaced: this order id is dead; its remainder lives on in the replacing order (a new id
    # with a new client id). For the id we hold, nothing more will fill: CANCELED. This backend
    # never replaces orders, so a replacement was made outside it (e.g. in the dashboard).
    "replaced": OrderState.CANCELED,
    "expired": OrderState.EXPIRED,
    "rejected": OrderState.REJECTED,
}


def map_order_state(status: str, qty: Decimal, filled_qty: Decimal) -> OrderState:
    """Alpaca status word (+ fill) → ``OrderState``. Unknown future words map like a working
    order: keep polling rather than assume an outcome."""
    target = ALPACA_STATUS_TO_STATE.get(status, _WORKING)
    if isinstance(target, OrderState):
        return target
    if qty > ZERO and filled_qty >= qty:
        return OrderState.FILLED
    return OrderState.PARTIALLY_FILLED if filled_qty > ZERO else OrderState.NEW


# --------------------------------------------------------------------------------------------
# Symbols
# --------------------------------------------------------------------------------------------


def order_symbol(symbol: str, asset_class: AssetClass) -> str:
    """The symbol Alpaca's order and data endpoints take: ``BTC/USD``, ``AAPL``, OCC as is."""
    if asset_class is AssetClass.CRYPTO:
        return crypto_pair(symbol)
    text = normalize_symbol(symbol)
    if asset_class is AssetClass.OPTIONS and not is_occ_option(text):
        raise InvalidInput("symbol", f"{symbol!r} is not an OCC option symbol")
    return text


def position_symbol(symbol: str, asset_class: AssetClass) -> str:
    """The symbol Alpaca's position paths take: crypto without the slash (``BTCUSD``)."""
    return order_symbol(symbol, asset_class).replace("/", "")


_ALPACA_CLASS = {"us_equity": AssetClass.EQUITY, "crypto": AssetClass.CRYPTO,
                 "us_option": AssetClass.OPTIONS, "crypto_perp": AssetClass.CRYPTO}


def domain_symbol(venue_symbol: str, venue_asset_class: str | None = None) -> str:
    """A symbol coming back from Alpaca → ours: ``BTCUSD`` (positions) → ``BTC/USD``."""
    klass = _ALPACA_CLASS.get(venue_asset_class or "") or detect_asset_class(venue_symbol)
    return crypto_pair(venue_symbol) if klass is AssetClass.CRYPTO else normalize_symbol(venue_symbol)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """A classified exception: the coded error plus what the retry logic needs to know."""

    error: BrokerError
    duplicate: bool = False  # venue says this client_order_id already exists
    never_sent: bool = False  # the request certainly did not reach the venue (refused, connect timeout)


def map_api_error(status: int | None, code: int | None, message: str,
                  retry_after: float | None = None) -> Failure:
    """HTTP status + Alpaca error code/message → coded ``BrokerError``."""
    text = message or f"HTTP {status}"
    where = f"HTTP {status}" + (f" code {code}" if code is not None else "")
    detail = f"{text} ({where})"
    lowered = text.lower()
    if status == 422 and any(marker in lowered for marker in _DUPLICATE_MARKERS):
        return Failure(BrokerError(BrokerErrorCode.DUPLICATE, detail), duplicate=True)
    if status == 429:
        return Failure(BrokerError(BrokerErrorCode.RATE_LIMITED, detail, retry_after=retry_after))
    if status is None or status >= 500 or status == 408:
        return Failure(BrokerError(BrokerErrorCode.UNAVAILABLE, detail))
    if any(marker in lowered for marker in _BUYING_POWER_MARKERS):
        return Failure(BrokerError(BrokerErrorCode.INSUFFICIENT_BUYING_POWER, detail))
    if status == 404:
        return Failure(BrokerError(BrokerErrorCode.NOT_FOUND, detail))
    if status == 400 or (status == 422 and code == ALPACA_UNPROCESSABLE):
        # the request's fields were refused (bad qty, tif, symbol): fix the request, not a retry
        return Failure(BrokerError(BrokerErrorCode.INVALID, detail))
    # 401/403 (auth, account restrictions, wash trade), other 422s and 4xx: the venue said no.
    return Failure(BrokerError(BrokerErrorCode.REJECTED, detail))


def classify_exception(exc: BaseException, *, clock: Clock | None = None) -> Failure | None:
    """Map an alpaca-py / requests / validation exception; ``None`` for anything else (a bug)."""
    # Only modules that are already loaded can have raised: look them up, never import them here.
    alpaca_exceptions = sys.modules.get("alpaca.common.exceptions")
    if alpaca_exceptions is not None and isinstance(exc, alpaca_exceptions.APIError):
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        code, message = _error_body(str(exc))
        retry_after = _retry_after(getattr(response, "headers", None) or {}, clock)
        return map_api_error(status, code, message, retry_after)
    requests_exceptions = sys.modules.get("requests.exceptions")
    if requests_exceptions is not None and isinstance(exc, requests_exceptions.RequestException):
        return _classify_transport(exc, requests_exceptions)
    if isinstance(exc, InvalidInput):
        return Failure(BrokerError(BrokerErrorCode.INVALID, str(exc)))
    if isinstance(exc, ValueError):  # pydantic ValidationError is a ValueError: refused before sending
        return Failure(BrokerError(BrokerErrorCode.INVALID, _first_line(str(exc))), never_sent=True)
    return None


def _classify_transport(exc: BaseException, rex: Any) -> Failure:
    if isinstance(exc, rex.ConnectTimeout):
        return Failure(BrokerError(BrokerErrorCode.UNAVAILABLE, f"connect timeout: {exc}"), never_sent=True)
    if isinstance(exc, rex.Timeout):
        return Failure(BrokerError(BrokerErrorCode.UNAVAILABLE, f"read timeout: {_first_line(str(exc))}"))
    if isinstance(exc, rex.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        never_sent = _is_new_connection_error(reason)
        what = "connection refused/unreachable" if never_sent else "connection dropped"
        return Failure(BrokerError(BrokerErrorCode.UNAVAILABLE, f"{what}: {_first_line(str(exc))}"),
                        never_sent=never_sent)
    # InvalidJSONError (an unreadable 2xx body) and anything else from the transport: ambiguous.
    return Failure(BrokerError(BrokerErrorCode.UNAVAILABLE, f"{type(exc).__name__}: {_first_line(str(exc))}"))


def _is_new_connection_error(reason: object) -> bool:
    try:
        from urllib3.exceptions import NewConnectionError
    except ImportError:  # pragma: no cover - urllib3 ships with requests
        return False
    return isinstance(reason, NewConnectionError)


def _error_body(body: str) -> tuple[int | None, str]:
    """Alpaca error bodies are ``{"code": 40010001, "message": "..."}``; tolerate anything else."""
    import json

    try:
        data = json.loads(body)
    except ValueError:
        return None, _first_line(body)[:300]
    if not isinstance(data, dict):
        return None, _first_line(body)[:300]
    code = data.get("code")
    try:
        code = int(code) if code is not None else None
    except (TypeError, ValueError):
        code = None
    return code, str(data.get("message", "")) or _first_line(body)[:300]


def _retry_after(headers: Mapping[str, str], clock: Clock | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    raw = headers.get("Retry-After") if hasattr(headers, "get") else None
    if raw is None:
        return None
    return parse_retry_after(str(raw), clock.now() if clock is not None else None)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


# --------------------------------------------------------------------------------------------
# Wire parsing helpers
# --------------------------------------------------------------------------------------------


def _dec(value: Any, field: str) -> Decimal:
    return to_decimal(value, field)


def _dec_or_none(value: Any, field: str) -> Decimal | None:
    return None if value is None or value == "" else to_decimal(value, field)


def parse_timestamp(value: Any) -> datetime | None:
    """RFC 3339 with up to nanoseconds (Alpaca sends 9 fractional digits) → aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    text = str(value).strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    head, dot, rest = text.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}" if digits else head + rest
    parsed = datetime.fromisoformat(text)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def order_from_raw(raw: Mapping[str, Any], *, default_side: OrderSide | None = None) -> BrokerOrder:
    """An Alpaca order JSON (simple or mleg with nested legs) → ``BrokerOrder``."""
    qty = _dec_or_none(raw.get("qty"), "qty") or ZERO
    filled_qty = _dec_or_none(raw.get("filled_qty"), "filled_qty") or ZERO
    avg = _dec_or_none(raw.get("filled_avg_price"), "filled_avg_price")
    if filled_qty == ZERO:
        avg = None  # Alpaca may send 0 before anything filled
    status = str(raw.get("status", ""))
    legs = tuple(order_from_raw(leg) for leg in (raw.get("legs") or ()))
    side_text = raw.get("side")
    if side_text:
        side = OrderSide(str(side_text))
    elif default_side is not None:
        side = default_side
    elif legs:
        side = legs[0].side  # mleg parents carry no side; the legs do
    else:
        raise BrokerError(BrokerErrorCode.UNAVAILABLE, f"order {raw.get('id')} has no side")
    venue_symbol = raw.get("symbol")
    if venue_symbol:
        symbol = domain_symbol(str(venue_symbol), raw.get("asset_class"))
    elif legs:
        symbol = occ_underlying(legs[0].symbol) or legs[0].symbol  # mleg: the common underlying
    else:
        symbol = ""
    return BrokerOrder(
        broker_order_id=str(raw["id"]),
        client_order_id=str(raw.get("client_order_id", "")),
        symbol=symbol,
        side=side,
        qty=qty,
        state=map_order_state(status, qty, filled_qty),
        filled_qty=filled_qty,
        filled_avg_price=avg,
        submitted_at=parse_timestamp(raw.get("submitted_at")),
        updated_at=parse_timestamp(raw.get("updated_at")),
        venue_status=status,
        legs=legs,
        replaces=str(raw["replaces"]) if raw.get("replaces") else None,
        replaced_by=str(raw["replaced_by"]) if raw.get("replaced_by") else None,
    )


def position_from_raw(raw: Mapping[str, Any]) -> Position:
    qty = _dec(raw["qty"], "qty")
    if str(raw.get("side", "")).lower() == "short" and qty > ZERO:
        qty = -qty
    return Position(
        symbol=domain_symbol(str(raw["symbol"]), raw.get("asset_class")),
        qty=qty,
        avg_entry_price=_dec_or_none(raw.get("avg_entry_price"), "avg_entry_price"),
        market_value=_dec_or_none(raw.get("market_value"), "market_value"),
    )


def quote_from_raw(symbol: str, raw: Mapping[str, Any]) -> Quote:
    timestamp = parse_timestamp(raw.get("t"))
    if timestamp is None:
        raise BrokerError(BrokerErrorCode.UNAVAILABLE, f"quote for {symbol} has no timestamp")
    return Quote(
        symbol=symbol,
        bid=_dec(raw.get("bp", 0), "bp"),
        ask=_dec(raw.get("ap", 0), "ap"),
        timestamp=timestamp,
        bid_size=_dec(raw.get("bs", 0), "bs"),
        ask_size=_dec(raw.get("as", 0), "as"),
    )


def read_reply(what: str, parse: Callable[[], T]) -> T:
    """Parse a venue response; a body we cannot read is the venue's fault: UNAVAILABLE, coded."""
    try:
        return parse()
    except BrokerError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BrokerError(BrokerErrorCode.UNAVAILABLE,
                          f"unreadable {what} from Alpaca: {type(exc).__name__}: {exc}") from exc


def to_wire_number(value: Decimal, field: str) -> float:
    """alpaca-py's request models take floats. Send one only if it carries the Decimal exactly
    (its shortest repr reads back as the same number); otherwise refuse, never round."""
    as_float = float(value)
    if not math.isfinite(as_float) or Decimal(repr(as_float)) != value:
        raise BrokerError(BrokerErrorCode.INVALID, f"{field}={value} cannot be sent exactly to Alpaca")
    return as_float


# --------------------------------------------------------------------------------------------
# Multi-leg validation (before anything is sent)
# --------------------------------------------------------------------------------------------

Leg = tuple[str, OrderSide | str, int]


def validate_multileg(legs: Sequence[Leg], qty: Decimal | int) -> list[tuple[str, OrderSide, int]]:
    """2–4 option legs, unique OCC symbols, one underlying, positive integer ratios in lowest
    terms, positive integer qty. Raises ``BrokerError(INVALID)`` naming the first problem."""
    def bad(reason: str) -> BrokerError:
        return BrokerError(BrokerErrorCode.INVALID, f"MLEG_INVALID: {reason}")

    if not 2 <= len(legs) <= 4:
        raise bad(f"a multi-leg order needs 2 to 4 legs, got {len(legs)}")
    clean: list[tuple[str, OrderSide, int]] = []
    for i, leg in enumerate(legs):
        try:
            symbol, side, ratio = leg
        except (TypeError, ValueError):
            raise bad(f"leg {i} must be (occ_symbol, side, ratio_qty), got {leg!r}") from None
        if not isinstance(symbol, str) or not is_occ_option(symbol):
            raise bad(f"leg {i} symbol {symbol!r} is not an OCC option symbol")
        try:
            side = OrderSide(side.value if isinstance(side, OrderSide) else str(side).lower())
        except ValueError:
            raise bad(f"leg {i} side {side!r} must be buy or sell") from None
        if isinstance(ratio, bool) or not isinstance(ratio, (int, Decimal)) or ratio != int(ratio) or ratio < 1:
            raise bad(f"leg {i} ratio_qty {ratio!r} must be a positive integer")
        clean.append((normalize_symbol(symbol), side, int(ratio)))
    symbols = [s for s, _, _ in clean]
    if len(set(symbols)) != len(symbols):
        raise bad(f"leg symbols must be unique, got {symbols}")
    underlyings = sorted({occ_underlying(s) for s in symbols})
    if len(underlyings) != 1:
        raise bad(f"all legs must share one underlying, got {underlyings}")
    if math.gcd(*(r for _, _, r in clean)) != 1:
        raise bad(f"ratio_qty values {[r for _, _, r in clean]} must be in lowest terms (gcd 1)")
    if isinstance(qty, bool) or Decimal(qty) != Decimal(qty).to_integral_value() or Decimal(qty) < 1:
        raise bad(f"qty {qty!r} must be a positive whole number of spreads")
    return clean


# --------------------------------------------------------------------------------------------
# Order requests (issue 15): domain OrderRequest → alpaca-py request model
# --------------------------------------------------------------------------------------------

_REQUEST_CLASS = {
    OrderType.MARKET: "MarketOrderRequest",
    OrderType.LIMIT: "LimitOrderRequest",
    OrderType.STOP: "StopOrderRequest",
    OrderType.STOP_LIMIT: "StopLimitOrderRequest",
    OrderType.TRAILING_STOP: "TrailingStopOrderRequest",
}


def order_request_fields(request: OrderRequest, asset_class: AssetClass) -> tuple[str, dict[str, Any]]:
    """(alpaca-py request class name, its keyword fields as plain values) for one order. Prices go
    out exactly (``to_wire_number``) or not at all; a combination Alpaca has no field for (a trailing
    stop-loss leg) is INVALID here, though ``check_capability`` refuses it before any of this runs.

    Crypto ``day`` (our old default, not a choice) is sent as ``gtc``: Alpaca crypto takes gtc/ioc."""
    symbol = order_symbol(request.symbol, asset_class)
    if asset_class is AssetClass.OPTIONS and request.qty != request.qty.to_integral_value():
        raise BrokerError(BrokerErrorCode.INVALID, f"option qty must be whole contracts, got {request.qty}")
    tif = str(request.time_in_force).lower()
    if asset_class is AssetClass.CRYPTO and tif == "day":
        tif = "gtc"
    fields: dict[str, Any] = dict(symbol=symbol, qty=to_wire_number(request.qty, "qty"), side=request.side.value,
                                  time_in_force=tif, client_order_id=request.client_order_id)
    for name in ("limit_price", "stop_price", "trail_price", "trail_percent"):
        value = getattr(request, name)
        if value is not None:
            fields[name] = to_wire_number(value, name)
    if request.order_class is not OrderClass.SIMPLE:
        fields["order_class"] = request.order_class.value
        if request.take_profit is not None:
            fields["take_profit"] = {"limit_price": to_wire_number(request.take_profit.limit_price,
                                                                   "take_profit.limit_price")}
        stop_loss = request.stop_loss
        if stop_loss is not None:
            if stop_loss.stop_price is None:
                raise BrokerError(BrokerErrorCode.INVALID, "Alpaca takes no trailing stop_loss leg")
            leg: dict[str, Any] = {"stop_price": to_wire_number(stop_loss.stop_price, "stop_loss.stop_price")}
            if stop_loss.limit_price is not None:
                leg["limit_price"] = to_wire_number(stop_loss.limit_price, "stop_loss.limit_price")
            fields["stop_loss"] = leg
    return _REQUEST_CLASS[request.order_type], fields


def build_replace_request(request: ReplaceRequest) -> Any:
    """alpaca-py's ``ReplaceOrderRequest`` (PATCH /v2/orders/{id}); prices exact or refused."""
    from alpaca.trading.enums import TimeInForce as AlpacaTimeInForce
    from alpaca.trading.requests import ReplaceOrderRequest

    fields: dict[str, Any] = {"client_order_id": request.client_order_id}
    if request.qty is not None:
        fields["qty"] = int(request.qty) if request.qty == request.qty.to_integral_value() else None
        if fields["qty"] is None:
            raise BrokerError(BrokerErrorCode.INVALID, f"Alpaca replaces whole quantities only, got {request.qty}")
    for name in ("limit_price", "stop_price", "trail"):
        value = getattr(request, name)
        if value is not None:
            fields[name] = to_wire_number(value, name)
    if request.time_in_force is not None:
        fields["time_in_force"] = AlpacaTimeInForce(str(request.time_in_force).lower())
    return ReplaceOrderRequest(**fields)


def build_order_request(request: OrderRequest, asset_class: AssetClass) -> Any:
    """The alpaca-py request object for ``request`` (its validators run here, before any I/O)."""
    from alpaca.trading import requests as alpaca_requests
    from alpaca.trading.enums import OrderClass as AlpacaOrderClass
    from alpaca.trading.enums import OrderSide as AlpacaSide
    from alpaca.trading.enums import TimeInForce as AlpacaTimeInForce

    name, fields = order_request_fields(request, asset_class)
    fields["side"] = AlpacaSide(fields["side"])
    fields["time_in_force"] = AlpacaTimeInForce(fields["time_in_force"])
    if "order_class" in fields:
        fields["order_class"] = AlpacaOrderClass(fields["order_class"])
    if "take_profit" in fields:
        fields["take_profit"] = alpaca_requests.TakeProfitRequest(**fields["take_profit"])
    if "stop_loss" in fields:
        fields["stop_loss"] = alpaca_requests.StopLossRequest(**fields["stop_loss"])
    return getattr(alpaca_requests, name)(**fields)


# --------------------------------------------------------------------------------------------
# Instruments (issue 19 item 2): GET /v2/assets/{symbol} and /v2/options/contracts/{symbol}
# --------------------------------------------------------------------------------------------

ASSET_SOURCE = "alpaca:assets"
OPTION_CONTRACT_SOURCE = "alpaca:options/contracts"


def asset_path_symbol(symbol: str, asset_class: AssetClass) -> str:
    """The symbol the assets path takes: US-dollar crypto pairs in the old symbology (``BTCUSD``),
    other coin pairs with the slash URL-encoded (``BTC%2FUSDT``, as Alpaca documents), stocks and
    OCC option symbols as they are."""
    venue_symbol = order_symbol(symbol, asset_class)
    if asset_class is AssetClass.CRYPTO and "/" in venue_symbol:
        base, _, quote = venue_symbol.partition("/")
        return f"{base}{quote}" if quote == "USD" else f"{base}%2F{quote}"
    return venue_symbol


def instrument_from_raw(raw: Mapping[str, Any], asset_class: AssetClass) -> InstrumentInfo | None:
    """An Alpaca asset (or option contract) → ``InstrumentInfo``; None when the venue lists the
    symbol under another asset class than the one asked for.

    Tradable only when ``tradable`` is true and ``status`` is ``active``. Crypto carries
    ``min_order_size``, ``min_trade_increment`` and ``price_increment``; a stock carries none of
    them, so its lot step is 1 when it is not ``fractionable`` and otherwise left to the spec table,
    and its tick is always the spec table's. An option contract trades whole contracts."""
    status = str(raw.get("status") or "")
    tradable = raw.get("tradable") is True and status == "active"
    if asset_class is AssetClass.OPTIONS and "class" not in raw:  # an option contract record
        return InstrumentInfo(symbol=normalize_symbol(str(raw["symbol"])), asset_class=asset_class,
                              tradable=tradable, tick_size=None, lot_step=Decimal(1), min_qty=None,
                              fractionable=False, source=OPTION_CONTRACT_SOURCE, status=status)
    venue_class = _ALPACA_CLASS.get(str(raw.get("class") or ""))
    if venue_class is not asset_class:
        return None
    fractionable = raw.get("fractionable") is True
    lot = _positive_or_none(raw.get("min_trade_increment"), "min_trade_increment")
    if lot is None and not fractionable:
        lot = Decimal(1)
    return InstrumentInfo(
        symbol=domain_symbol(str(raw["symbol"]), str(raw.get("class") or "")), asset_class=asset_class,
        tradable=tradable, tick_size=_positive_or_none(raw.get("price_increment"), "price_increment"), lot_step=lot,
        min_qty=_positive_or_none(raw.get("min_order_size"), "min_order_size"), fractionable=fractionable,
        source=ASSET_SOURCE, status=status)


def _positive_or_none(value: Any, field: str) -> Decimal | None:
    """A sizing field the venue may omit or send as 0 (= it does not say)."""
    parsed = _dec_or_none(value, field)
    return parsed if parsed is not None and parsed > ZERO else None


__all__ = [
    "ALPACA_STATUS_TO_STATE",
    "ALPACA_UNPROCESSABLE",
    "Failure",
    "Leg",
    "classify_exception",
    "domain_symbol",
    "map_api_error",
    "map_order_state",
    "order_from_raw",
    "order_symbol",
    "parse_timestamp",
    "position_from_raw",
    "position_symbol",
    "quote_from_raw",
    "read_reply",
    "to_wire_number",
    "validate_multileg",
    "asset_path_symbol", "instrument_from_raw",  # instruments (issue 19 item 2)
    "build_order_request", "build_replace_request", "order_request_fields",  # order types (issue 15)
]
