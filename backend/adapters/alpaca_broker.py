"""Alpaca adapter: ``BrokerPort`` on the real alpaca-py clients (equities, crypto, options).

Three concerns live here and nowhere else:

Parsing (wire → domain)
    Clients are built with ``raw_data=True``: the adapter reads the few fields it needs from the
    venue's JSON and turns them into Decimals itself (strings straight to Decimal; a JSON number
    goes through ``to_decimal``'s shortest-repr rule). A field the venue adds or omits that we do
    not use can then never turn an accepted order into an exception. Requests still go through
    alpaca-py's request models, so its validators (qty XOR notional, 2–4 unique mleg legs) run
    before anything is sent.

Time (every call bounded)
    alpaca-py sets no HTTP timeout and retries 429/504 three times, 3 s apart, POSTs included.
    Each client's ``_session`` is replaced by ``_TimeoutSession`` (a ``requests.Session`` whose
    ``request`` defaults ``timeout``) and its ``_retry`` is set to 0, so the SDK raises on the
    first 429/504 and this adapter owns backoff: Retry-After when present, otherwise exponential,
    slept on the injected clock, and never past ``time_budget_seconds`` (the retry that would
    cross the budget is not attempted; the coded error is raised instead). Both are private
    attributes of alpaca-py 0.44's ``RESTClient``; ``_harden`` checks they exist so an SDK upgrade
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

alpaca-py is imported lazily (pandas makes it ≈0.45 s of a cold start); importing this module
imports neither alpaca nor requests.
"""
from __future__ import annotations

import logging
import math
import os
import sys
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Mapping, Sequence, TypeVar

from backend.domain.assets import (
    AssetClass,
    AssetSpecRegistry,
    crypto_pair,
    detect_asset_class,
    is_occ_option,
    normalize_symbol,
    occ_underlying,
)
from backend.domain.clock import Clock, SystemClock
from backend.domain.errors import InvalidInput
from backend.domain.money import ZERO, to_decimal
from backend.domain.orders import (
    Account,
    AssetSpecMixin,
    BrokerError,
    BrokerErrorCode,
    BrokerOrder,
    OrderRequest,
    OrderSide,
    OrderState,
    OrderType,
    Position,
    Quote,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

SUPPORTED_ASSET_CLASSES = frozenset({AssetClass.EQUITY, AssetClass.CRYPTO, AssetClass.OPTIONS})

# Alpaca's error code for 422s it cannot process. It is also the code of the duplicate
# client_order_id error, so the duplicate case is recognised by its message, not its code.
ALPACA_UNPROCESSABLE = 40010001
# 403 code 40310000 covers buying power but also "not allowed to short", "wash trade", ...: the
# message decides. Crypto says "insufficient balance for USD".
_BUYING_POWER_MARKERS = ("buying power", "insufficient balance", "insufficient funds")
_DUPLICATE_MARKERS = ("client_order_id must be unique", "client_order_id already exists")

# Retry policy (the budget itself is a constructor argument).
_BACKOFF_BASE_SECONDS = 0.5
_BACKOFF_CAP_SECONDS = 8.0
_MAX_READ_RETRIES = 2  # 5xx/timeouts/drops on reads (GET, cancel), each after a backoff
_MAX_AMBIGUOUS_RESUBMITS = 2  # resubmits after "ambiguous failure, lookup says not found"


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
class _Failure:
    """A classified exception: the coded error plus what the retry logic needs to know."""

    error: BrokerError
    duplicate: bool = False  # venue says this client_order_id already exists
    never_sent: bool = False  # the request certainly did not reach the venue (refused, connect timeout)


def map_api_error(status: int | None, code: int | None, message: str,
                  retry_after: float | None = None) -> _Failure:
    """HTTP status + Alpaca error code/message → coded ``BrokerError``."""
    text = message or f"HTTP {status}"
    where = f"HTTP {status}" + (f" code {code}" if code is not None else "")
    detail = f"{text} ({where})"
    lowered = text.lower()
    if status == 422 and any(marker in lowered for marker in _DUPLICATE_MARKERS):
        return _Failure(BrokerError(BrokerErrorCode.DUPLICATE, detail), duplicate=True)
    if status == 429:
        return _Failure(BrokerError(BrokerErrorCode.RATE_LIMITED, detail, retry_after=retry_after))
    if status is None or status >= 500 or status == 408:
        return _Failure(BrokerError(BrokerErrorCode.UNAVAILABLE, detail))
    if any(marker in lowered for marker in _BUYING_POWER_MARKERS):
        return _Failure(BrokerError(BrokerErrorCode.INSUFFICIENT_BUYING_POWER, detail))
    if status == 404:
        return _Failure(BrokerError(BrokerErrorCode.NOT_FOUND, detail))
    if status == 400 or (status == 422 and code == ALPACA_UNPROCESSABLE):
        # the request's fields were refused (bad qty, tif, symbol): fix the request, not a retry
        return _Failure(BrokerError(BrokerErrorCode.INVALID, detail))
    # 401/403 (auth, account restrictions, wash trade), other 422s and 4xx: the venue said no.
    return _Failure(BrokerError(BrokerErrorCode.REJECTED, detail))


def classify_exception(exc: BaseException, *, clock: Clock | None = None) -> _Failure | None:
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
        return _Failure(BrokerError(BrokerErrorCode.INVALID, str(exc)))
    if isinstance(exc, ValueError):  # pydantic ValidationError is a ValueError: refused before sending
        return _Failure(BrokerError(BrokerErrorCode.INVALID, _first_line(str(exc))), never_sent=True)
    return None


def _classify_transport(exc: BaseException, rex: Any) -> _Failure:
    if isinstance(exc, rex.ConnectTimeout):
        return _Failure(BrokerError(BrokerErrorCode.UNAVAILABLE, f"connect timeout: {exc}"), never_sent=True)
    if isinstance(exc, rex.Timeout):
        return _Failure(BrokerError(BrokerErrorCode.UNAVAILABLE, f"read timeout: {_first_line(str(exc))}"))
    if isinstance(exc, rex.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        never_sent = _is_new_connection_error(reason)
        what = "connection refused/unreachable" if never_sent else "connection dropped"
        return _Failure(BrokerError(BrokerErrorCode.UNAVAILABLE, f"{what}: {_first_line(str(exc))}"),
                        never_sent=never_sent)
    # InvalidJSONError (an unreadable 2xx body) and anything else from the transport: ambiguous.
    return _Failure(BrokerError(BrokerErrorCode.UNAVAILABLE, f"{type(exc).__name__}: {_first_line(str(exc))}"))


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
    raw = str(raw).strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        now = clock.now() if clock is not None else datetime.now(timezone.utc)
        seconds = (when - now).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


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
    )


def position_from_raw(raw: Mapping[str, Any]) -> Position:
    qty = _dec(raw["qty"], "qty")
    if str(raw.get("side", "")).lower() == "short" and qty > ZERO:
        qty = -qty
    return Position(
        symbol=domain_symbol(str(raw["symbol"]), raw.get("asset_class")),
        qty=qty,
        avg_entry_price=_dec_or_none(raw.get("avg_entry_price"), "avg_entry_price"),
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


def _read(what: str, parse: Callable[[], T]) -> T:
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
# The adapter
# --------------------------------------------------------------------------------------------


def _env_paper(env: Mapping[str, str]) -> bool:
    raw = env.get("ALPACA_PAPER", "").strip().lower()
    if raw in ("", "1", "true", "yes", "paper"):
        return True
    if raw in ("0", "false", "no", "live"):
        return False
    raise ValueError(f"ALPACA_PAPER must be 1/0/true/false, got {raw!r}")


class _Clients:
    def __init__(self, trading: Any, stock: Any, crypto: Any, option: Any):
        self.trading = trading
        self.stock = stock
        self.crypto = crypto
        self.option = option


class AlpacaBroker(AssetSpecMixin):
    """``BrokerPort`` for Alpaca. Paper unless ``paper=False`` (or env ``ALPACA_PAPER=0``)."""

    name = "alpaca"

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
        self._clients_cache: _Clients | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never show keys
        return f"AlpacaBroker(paper={self.paper}, url_override={self.url_override!r})"

    # ---------------------------------------------------------------- port: capabilities

    def supports(self, asset_class: AssetClass) -> bool:
        return AssetClass.parse(asset_class) in SUPPORTED_ASSET_CLASSES

    def _require_supported(self, asset_class: AssetClass) -> AssetClass:
        klass = AssetClass.parse(asset_class)
        if klass not in SUPPORTED_ASSET_CLASSES:
            raise BrokerError(BrokerErrorCode.UNSUPPORTED, f"NO_VENUE_FOR_ASSET_CLASS: {klass.value}")
        return klass

    # ---------------------------------------------------------------- port: orders

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        klass = self._require_supported(request.asset_class)
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
        if not client_order_id or len(client_order_id) > 48:
            raise BrokerError(BrokerErrorCode.INVALID, "client_order_id must be 1..48 characters")
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
        return _read(f"order {broker_order_id}", lambda: order_from_raw(raw))

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        return self._lookup_by_client_id(client_order_id, self._deadline())

    def cancel_order(self, broker_order_id: str) -> None:
        # DELETE /orders/{id} is idempotent at Alpaca (a second cancel is a 422 "not cancelable"
        # once the order is final), so transient failures are retried like reads.
        self._call("cancel_order", lambda c: c.trading.cancel_order_by_id(broker_order_id), retry_reads=True)

    def close_position(self, symbol: str, asset_class: AssetClass) -> BrokerOrder | None:
        klass = self._require_supported(asset_class)
        path_symbol = self._guard(lambda: position_symbol(symbol, klass))
        # Not retried on ambiguous failures: closing places an order without our client id, so
        # a blind retry could double it. Only 429 (definitely not processed) is retried.
        try:
            raw = self._call("close_position", lambda c: c.trading.close_position(path_symbol), retry_reads=False)
        except BrokerError as error:
            if error.code is BrokerErrorCode.NOT_FOUND:
                return None  # no open position
            raise
        return _read(f"close order for {path_symbol}", lambda: order_from_raw(raw)) if raw else None

    # ---------------------------------------------------------------- port: account

    def get_positions(self) -> Sequence[Position]:
        raw = self._call("get_positions", lambda c: c.trading.get_all_positions(), retry_reads=True)
        return _read("positions", lambda: [position_from_raw(item) for item in (raw or [])])

    def get_account(self) -> Account:
        raw = self._call("get_account", lambda c: c.trading.get_account(), retry_reads=True)
        return _read("account", lambda: Account(
            buying_power=_dec(raw["buying_power"], "buying_power"),
            equity=_dec(raw.get("equity", raw.get("portfolio_value", "0")), "equity"),
            cash=_dec(raw.get("cash", "0"), "cash"),
            currency=str(raw.get("currency") or "USD"),
        ))

    # ---------------------------------------------------------------- port: market data

    def get_latest_quote(self, symbol: str, asset_class: AssetClass) -> Quote:
        klass = self._require_supported(asset_class)
        venue_symbol = self._guard(lambda: order_symbol(symbol, klass))

        def fetch(c: _Clients) -> Any:
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
        return _read(f"quote for {venue_symbol}", lambda: quote_from_raw(venue_symbol, item))

    def get_recent_closes(self, symbol: str, asset_class: AssetClass, limit: int) -> Sequence[Decimal]:
        """The last ``limit`` daily closes, oldest first."""
        klass = self._require_supported(asset_class)
        if limit < 1:
            return []
        venue_symbol = self._guard(lambda: order_symbol(symbol, klass))
        # enough calendar days to hold `limit` sessions (weekends, holidays); crypto trades daily
        days = limit + 3 if klass is AssetClass.CRYPTO else limit * 7 // 5 + 10
        start = self._clock.now() - timedelta(days=days)

        def fetch(c: _Clients) -> Any:
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
            return [_dec(bar["c"], "c") for bar in ordered[-limit:]]

        return _read(f"bars for {venue_symbol}", closes)

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
                return _read(f"order {client_order_id}", lambda: order_from_raw(raw, default_side=default_side))
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
                wait = self._rate_limit_wait(error, rate_limited, deadline, "submit_order")
                rate_limited += 1
                self._clock.sleep(wait)
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
            wait = self._backoff(resubmits)
            if resubmits >= _MAX_AMBIGUOUS_RESUBMITS or self._clock.monotonic() + wait > deadline:
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
        return _read(f"order {client_order_id}", lambda: order_from_raw(raw))

    # ---------------------------------------------------------------- call + retry engine

    def _deadline(self) -> float:
        return self._clock.monotonic() + self.time_budget_seconds

    def _call(self, op: str, fn: Callable[[_Clients], T], *, retry_reads: bool, deadline: float | None = None) -> T:
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
            elif (error.code is BrokerErrorCode.UNAVAILABLE and retry_reads and not failure.never_sent
                  and transient < _MAX_READ_RETRIES and self._clock.monotonic() + self._backoff(transient) <= deadline):
                wait = self._backoff(transient)
                transient += 1
                log.info("alpaca: %s transient failure (%s); retry %d in %.2fs", op, error.message, transient, wait)
            else:
                raise BrokerError(error.code, f"{op}: {error.message}", retry_after=error.retry_after) from None
            self._clock.sleep(wait)

    def _rate_limit_wait(self, error: BrokerError, attempts: int, deadline: float, op: str) -> float:
        wait = error.retry_after if error.retry_after is not None else self._backoff(attempts)
        if attempts >= self.max_rate_limit_retries:
            raise BrokerError(BrokerErrorCode.RATE_LIMITED,
                              f"{op}: still rate limited after {attempts} retries ({error.message})",
                              retry_after=wait) from None
        remaining = deadline - self._clock.monotonic()
        if wait > remaining:
            raise BrokerError(BrokerErrorCode.RATE_LIMITED,
                              f"{op}: rate limited; waiting {wait:.2f}s would exceed the "
                              f"{self.time_budget_seconds:g}s time budget ({error.message})",
                              retry_after=wait) from None
        log.info("alpaca: %s rate limited; retry %d in %.2fs", op, attempts + 1, wait)
        return wait

    @staticmethod
    def _backoff(attempt: int) -> float:
        return min(_BACKOFF_BASE_SECONDS * (2 ** attempt), _BACKOFF_CAP_SECONDS)

    def _classify(self, exc: Exception) -> _Failure:
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
        from alpaca.trading.enums import OrderSide as AlpacaSide
        from alpaca.trading.enums import TimeInForce
        from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest

        symbol = order_symbol(request.symbol, klass)
        if klass is AssetClass.OPTIONS and request.qty != request.qty.to_integral_value():
            raise BrokerError(BrokerErrorCode.INVALID, f"option qty must be whole contracts, got {request.qty}")
        tif = request.time_in_force.lower()
        if klass is AssetClass.CRYPTO and tif == "day":
            tif = "gtc"  # Alpaca crypto takes gtc/ioc only; "day" is our default, not a choice
        fields: dict[str, Any] = dict(
            symbol=symbol,
            qty=to_wire_number(request.qty, "qty"),
            side=AlpacaSide(request.side.value),
            time_in_force=TimeInForce(tif),
            client_order_id=request.client_order_id,
        )
        if request.order_type is OrderType.LIMIT:
            assert request.limit_price is not None
            return LimitOrderRequest(limit_price=to_wire_number(request.limit_price, "limit_price"), **fields)
        return MarketOrderRequest(**fields)

    # ---------------------------------------------------------------- clients (lazy)

    def _clients(self) -> _Clients:
        cached = self._clients_cache
        if cached is not None:
            return cached
        if not (self._api_key and self._secret_key):
            raise BrokerError(BrokerErrorCode.UNAVAILABLE, "no Alpaca credentials configured")
        with self._lock:
            if self._clients_cache is None:
                self._clients_cache = self._build_clients()
            return self._clients_cache

    def _build_clients(self) -> _Clients:
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
            _harden(client, self.timeout_seconds, trust_env=not _is_loopback(url))
        return _Clients(trading, stock, crypto, option)


def _is_loopback(url: str | None) -> bool:
    if not url:
        return False
    from urllib.parse import urlsplit

    return (urlsplit(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


def _harden(client: Any, timeout_seconds: float, *, trust_env: bool = True) -> None:
    """Give an alpaca-py REST client a default HTTP timeout and switch off its own retries."""
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
    "ALPACA_STATUS_TO_STATE",
    "map_order_state",
    "map_api_error",
    "classify_exception",
    "order_symbol",
    "position_symbol",
    "domain_symbol",
    "order_from_raw",
    "validate_multileg",
]
