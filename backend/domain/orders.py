"""Orders as the core and every venue speak of them: sides, types, states, quotes, requests, broker
orders, positions, accounts, and the coded broker failure, all in Decimals.

These are domain values, not part of any port: the engine, the group planner and the client-id
rules build and read them, and every venue adapter translates its SDK's objects into them.
``BrokerError`` lives here too because it is a domain failure, not an adapter exception: each
venue maps its own errors onto a ``BrokerErrorCode``, and the core decides from that code alone
whether a failure is retryable and which coded ``Rejection`` it records (``to_rejection``), so the
mapping must sit beside ``RejectCode`` and not in any one adapter. ``backend/ports/broker.py`` holds
the ``BrokerPort`` protocol and re-exports these names for older importers.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from enum import Enum

from backend.domain.assets import AssetClass, AssetSpec, AssetSpecRegistry, default_registry
from backend.domain.errors import RejectCode, Rejection
from backend.domain.money import ZERO


class OrderSide(str, Enum):
    BUY = "buy"
    SELL = "sell"

    @property
    def direction(self) -> int:
        return 1 if self is OrderSide.BUY else -1

    @property
    def opposite(self) -> "OrderSide":
        return OrderSide.SELL if self is OrderSide.BUY else OrderSide.BUY

    @classmethod
    def from_direction(cls, direction: int) -> "OrderSide":
        return cls.BUY if direction > 0 else cls.SELL


class OrderType(str, Enum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"  # a market order once the stop price trades (buy: at or above; sell: at or below)
    STOP_LIMIT = "stop_limit"  # a limit order once the stop price trades
    TRAILING_STOP = "trailing_stop"  # a stop that follows the best price by trail_price or trail_percent


class TimeInForce(str, Enum):
    """How long an order works. Which venue takes which is ``backend/domain/capabilities.py``."""

    DAY = "day"
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"
    OPG = "opg"  # at the opening auction
    CLS = "cls"  # at the closing auction


class OrderClass(str, Enum):
    """An order alone or with protective legs the venue holds (never this backend: a function cannot
    watch prices). BRACKET: entry + take-profit + stop-loss (the exits cancel each other once the
    entry filled); OTO: entry + one of them; OCO: two exits of an open position, one cancels the other
    (the order itself is the take-profit limit, ``limit_price`` omitted)."""

    SIMPLE = "simple"
    BRACKET = "bracket"
    OTO = "oto"
    OCO = "oco"


@dataclass(frozen=True)
class TakeProfit:
    """The take-profit leg: a limit order on the opposite side at ``limit_price``."""

    limit_price: Decimal

    def __post_init__(self) -> None:
        if self.limit_price <= ZERO:
            raise ValueError("take_profit.limit_price must be positive")

    def to_dict(self) -> dict[str, str]:
        return {"limit_price": str(self.limit_price)}


@dataclass(frozen=True)
class StopLoss:
    """The stop-loss leg: a stop at ``stop_price`` (a stop-limit with ``limit_price``), or a trailing
    stop ``trail_price`` away from the best price since the fill (OANDA's trailing stop on fill)."""

    stop_price: Decimal | None = None
    limit_price: Decimal | None = None
    trail_price: Decimal | None = None

    def __post_init__(self) -> None:
        if (self.stop_price is None) == (self.trail_price is None):
            raise ValueError("stop_loss takes exactly one of stop_price and trail_price")
        if self.limit_price is not None and self.stop_price is None:
            raise ValueError("stop_loss.limit_price needs stop_loss.stop_price")
        for name in ("stop_price", "limit_price", "trail_price"):
            value = getattr(self, name)
            if value is not None and value <= ZERO:
                raise ValueError(f"stop_loss.{name} must be positive")

    @property
    def trailing(self) -> bool:
        return self.trail_price is not None

    def to_dict(self) -> dict[str, str | None]:
        return {"stop_price": _text(self.stop_price), "limit_price": _text(self.limit_price),
                "trail_price": _text(self.trail_price)}


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


LIMIT_PRICED = frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT})
STOP_PRICED = frozenset({OrderType.STOP, OrderType.STOP_LIMIT})
TRAIL_PERCENT_MAX = Decimal(100)


class OrderState(str, Enum):
    """Venue-neutral order states. Alpaca's many statuses map onto these in the Alpaca adapter."""

    PENDING_NEW = "pending_new"
    NEW = "new"  # accepted by the venue, working
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REJECTED = "rejected"

    @property
    def is_final(self) -> bool:
        return self in _FINAL_ORDER_STATES


_FINAL_ORDER_STATES = frozenset({OrderState.FILLED, OrderState.CANCELED, OrderState.EXPIRED, OrderState.REJECTED})


@dataclass(frozen=True)
class Quote:
    symbol: str
    bid: Decimal
    ask: Decimal
    timestamp: datetime
    bid_size: Decimal = ZERO
    ask_size: Decimal = ZERO

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2

    @property
    def spread(self) -> Decimal:
        return self.ask - self.bid

    @property
    def spread_pct(self) -> Decimal:
        """Spread as a share of the mid price (0.001 = 0.1%)."""
        return self.spread / self.mid

    def problem(self) -> Rejection | None:
        """A coded reason when this quote cannot be traded on (zero, negative or crossed)."""
        if self.bid <= ZERO or self.ask <= ZERO:
            return Rejection(RejectCode.INVALID_QUOTE, f"non-positive quote bid={self.bid} ask={self.ask}")
        if self.bid > self.ask:
            return Rejection(RejectCode.INVALID_QUOTE, f"crossed quote bid={self.bid} ask={self.ask}")
        return None

    def age_seconds(self, now: datetime) -> float:
        return (now - self.timestamp).total_seconds()


CLIENT_ORDER_ID_MAX = 48  # the longest client order id every venue accepts (Alpaca's limit)


def check_client_order_id(client_order_id: str) -> None:
    """ValueError unless the id is 1..``CLIENT_ORDER_ID_MAX`` characters (every order request)."""
    if not client_order_id or len(client_order_id) > CLIENT_ORDER_ID_MAX:
        raise ValueError(f"client_order_id must be 1..{CLIENT_ORDER_ID_MAX} characters")


def check_limit_price(order_type: OrderType, limit_price: Decimal | None) -> None:
    """ValueError unless a limit price is given exactly for limit orders."""
    if (order_type is OrderType.LIMIT) != (limit_price is not None):
        raise ValueError("limit_price is required for limit orders and only for them")


def check_order_prices(order_type: OrderType, limit_price: Decimal | None, stop_price: Decimal | None = None,
                       trail_price: Decimal | None = None, trail_percent: Decimal | None = None,
                       order_class: OrderClass = OrderClass.SIMPLE) -> tuple[str, str] | None:
    """(field, reason) when the prices do not fit the order type, else None. A limit price belongs to
    limit and stop-limit orders (an OCO's limit is its take-profit's, so it is omitted), a stop price
    to stop and stop-limit orders, exactly one of trail_price / trail_percent to trailing stops."""
    wants_limit = order_type in LIMIT_PRICED and not (order_class is OrderClass.OCO and order_type is OrderType.LIMIT)
    if wants_limit and limit_price is None:
        return "limit_price", f"is required for {order_type.value} orders"
    if not wants_limit and limit_price is not None:
        return "limit_price", (f"an oco order's limit is take_profit.limit_price" if order_class is OrderClass.OCO
                               else "only limit orders and stop_limit orders take a limit price")
    if order_type in STOP_PRICED and stop_price is None:
        return "stop_price", f"is required for {order_type.value} orders"
    if order_type not in STOP_PRICED and stop_price is not None:
        return "stop_price", f"{order_type.value} orders take no stop price"
    if order_type is OrderType.TRAILING_STOP:
        if (trail_price is None) == (trail_percent is None):
            return "trail_price", "a trailing stop takes exactly one of trail_price and trail_percent"
    elif trail_price is not None or trail_percent is not None:
        return ("trail_price" if trail_price is not None else "trail_percent"), \
            f"{order_type.value} orders take no trail"
    for name, value in (("limit_price", limit_price), ("stop_price", stop_price), ("trail_price", trail_price),
                        ("trail_percent", trail_percent)):
        if value is not None and value <= ZERO:
            return name, "must be positive"
    if trail_percent is not None and trail_percent >= TRAIL_PERCENT_MAX:
        return "trail_percent", f"must be below {TRAIL_PERCENT_MAX} (a percent: 1.5 is 1.5%)"
    return None


def check_order_class(order_class: OrderClass, order_type: OrderType, side: OrderSide, limit_price: Decimal | None,
                      take_profit: TakeProfit | None, stop_loss: StopLoss | None) -> tuple[str, str] | None:
    """(field, reason) when the protective legs do not fit the order class, else None. The exits must
    sit on the right sides: for a buy the take-profit above the stop-loss (and above a limit entry,
    the stop below it); for a sell the reverse."""
    if order_class is OrderClass.SIMPLE:
        if take_profit is not None or stop_loss is not None:
            return "order_class", "take_profit / stop_loss need order_class bracket, oto or oco"
        return None
    if order_class in (OrderClass.BRACKET, OrderClass.OCO) and (take_profit is None or stop_loss is None):
        return ("take_profit" if take_profit is None else "stop_loss"), \
            f"is required for {order_class.value} orders"
    if order_class is OrderClass.OTO and (take_profit is None) == (stop_loss is None):
        return "take_profit", "an oto order takes exactly one of take_profit and stop_loss"
    if order_class is OrderClass.OCO and order_type is not OrderType.LIMIT:
        return "order_type", "an oco order is a limit order (its take-profit) with a stop-loss"
    up = side is OrderSide.BUY  # a buy's profit is above, its loss below
    stop = stop_loss.stop_price if stop_loss is not None else None
    if order_class is OrderClass.OCO:
        up = side is OrderSide.SELL  # an OCO exits a position: selling a long takes profit above
    if take_profit is not None and stop is not None and (take_profit.limit_price <= stop if up
                                                          else take_profit.limit_price >= stop):
        return "take_profit.limit_price", ("must be above stop_loss.stop_price" if up
                                           else "must be below stop_loss.stop_price")
    if limit_price is not None and order_class is not OrderClass.OCO:
        if take_profit is not None and (take_profit.limit_price <= limit_price if up
                                        else take_profit.limit_price >= limit_price):
            return "take_profit.limit_price", ("must be above the entry limit_price" if up
                                               else "must be below the entry limit_price")
        if stop is not None and (stop >= limit_price if up else stop <= limit_price):
            return "stop_loss.stop_price", ("must be below the entry limit_price" if up
                                            else "must be above the entry limit_price")
    return None


@dataclass(frozen=True)
class OrderRequest:
    """One order as every venue adapter receives it. The fields after ``time_in_force`` (issue 15)
    default to a simple order; which venue and asset class take which combination is checked by
    ``backend.domain.capabilities.check_capability`` before anything is written or sent."""

    client_order_id: str
    symbol: str
    asset_class: AssetClass
    side: OrderSide
    qty: Decimal
    order_type: OrderType = OrderType.MARKET
    limit_price: Decimal | None = None
    time_in_force: str = "day"
    stop_price: Decimal | None = None
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    order_class: OrderClass = OrderClass.SIMPLE
    take_profit: TakeProfit | None = None
    stop_loss: StopLoss | None = None
    # the worst fill price a market order accepts (OANDA ``priceBound``: the venue cancels the order
    # with BOUNDS_VIOLATION instead of filling beyond it); venues without such a field ignore it
    price_bound: Decimal | None = None

    def __post_init__(self) -> None:
        check_client_order_id(self.client_order_id)
        if self.price_bound is not None and (self.order_type is not OrderType.MARKET or self.price_bound <= ZERO):
            raise ValueError("price_bound: only a market order takes one, and it must be positive")
        if self.qty <= ZERO:
            raise ValueError("qty must be positive")
        problem = (check_order_prices(self.order_type, self.limit_price, self.stop_price, self.trail_price,
                                      self.trail_percent, self.order_class)
                   or check_order_class(self.order_class, self.order_type, self.side, self.limit_price,
                                        self.take_profit, self.stop_loss))
        if problem is not None:
            raise ValueError(f"{problem[0]}: {problem[1]}")

    @property
    def tif(self) -> TimeInForce:
        """The time in force as the enum (ValueError for a word no venue knows; each venue refuses
        such a request itself, as before issue 15)."""
        return TimeInForce(str(self.time_in_force).lower())


TIME_IN_FORCE_VALUES = frozenset(t.value for t in TimeInForce)


@dataclass(frozen=True)
class ReplaceRequest:
    """Replace a working order (issue 15 item 6, ``PATCH /orders/{id}``): the venue cancels it and
    places a new one with ``client_order_id``, the old order's fields except those given here.
    ``qty`` is the new order's whole quantity; ``trail`` is a trailing stop's new trail_price or
    trail_percent (whichever the order has)."""

    client_order_id: str
    qty: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail: Decimal | None = None
    time_in_force: str | None = None

    def __post_init__(self) -> None:
        check_client_order_id(self.client_order_id)
        values = (self.qty, self.limit_price, self.stop_price, self.trail)
        if all(v is None for v in values) and self.time_in_force is None:
            raise ValueError("a replace changes at least one of qty, limit_price, stop_price, trail, time_in_force")
        if any(v is not None and v <= ZERO for v in values):
            raise ValueError("qty and prices must be positive")
        if self.time_in_force is not None and str(self.time_in_force).lower() not in TIME_IN_FORCE_VALUES:
            raise ValueError(f"time_in_force must be one of {sorted(TIME_IN_FORCE_VALUES)}")


@dataclass(frozen=True)
class BrokerOrder:
    broker_order_id: str
    client_order_id: str
    symbol: str
    side: OrderSide
    qty: Decimal
    state: OrderState
    filled_qty: Decimal = ZERO
    filled_avg_price: Decimal | None = None
    submitted_at: datetime | None = None
    updated_at: datetime | None = None
    venue_status: str = ""  # the venue's own status word, for the audit trail
    legs: tuple["BrokerOrder", ...] = field(default_factory=tuple)  # mleg legs; bracket / oto / oco exits
    replaces: str | None = None  # the venue id of the order this one replaced
    replaced_by: str | None = None  # the venue id of the order that replaced this one

    @property
    def remaining_qty(self) -> Decimal:
        return self.qty - self.filled_qty

    def with_state(self, state: OrderState, **changes: object) -> "BrokerOrder":
        return replace(self, state=state, **changes)


@dataclass(frozen=True)
class Position:
    symbol: str
    qty: Decimal  # signed: negative is short
    avg_entry_price: Decimal | None = None
    market_value: Decimal | None = None  # signed, in the quote currency, as the venue values it (None: not given)


@dataclass(frozen=True)
class Account:
    buying_power: Decimal
    equity: Decimal
    cash: Decimal
    currency: str = "USD"


def quote_currency(symbol: str) -> str:
    """The currency a symbol's price is quoted in: the part after ``/`` or ``_`` of a pair (``EUR/USD``,
    ``EUR_USD``, ``ETH/BTC``), USD otherwise (equities, options, ``BTCUSD``)."""
    text = str(symbol or "").strip().upper().replace("_", "/")
    if "/" in text:
        quote = text.rsplit("/", 1)[1]
        if quote:
            return quote
    return "USD"


@dataclass(frozen=True)
class VenueFill:
    """One execution as the venue's own records report it (account activities, transactions), for the
    daily cash reconciliation (``backend/risk/reconciliation.py``). ``qty`` > 0 in units (contracts for
    options), ``price`` per unit in ``currency``, ``multiplier`` the contract size, ``fees`` what the
    venue charged for this execution (commission), positive = a cost."""

    fill_id: str
    symbol: str
    side: OrderSide
    qty: Decimal
    price: Decimal
    time: datetime
    currency: str = "USD"
    multiplier: Decimal = Decimal(1)
    fees: Decimal = ZERO
    order_id: str | None = None
    client_order_id: str | None = None

    @property
    def cash_effect(self) -> Decimal:
        """−side × qty × price × multiplier − fees: what the execution did to the account's cash."""
        return -self.side.direction * self.qty * self.price * self.multiplier - self.fees


@dataclass(frozen=True)
class VenueFee:
    """A cash movement the venue booked for trading that is not one execution (Alpaca ``FEE``/``CFEE``/
    ``PTC`` activities; OANDA financing). ``amount`` is signed as the venue books it: negative = charged."""

    fee_id: str
    amount: Decimal
    time: datetime
    currency: str = "USD"
    kind: str = "FEE"
    symbol: str | None = None


@dataclass(frozen=True)
class VenueActivities:
    """A venue account's executions and trade-related fees of one UTC day (the optional broker
    capability ``ActivityProvider.get_activities``)."""

    fills: tuple[VenueFill, ...] = ()
    fees: tuple[VenueFee, ...] = ()
    financing: tuple[VenueFee, ...] = ()  # carry (OANDA): reported, not part of the cash comparison


class BrokerErrorCode(str, Enum):
    INSUFFICIENT_BUYING_POWER = "INSUFFICIENT_BUYING_POWER"
    REJECTED = "REJECTED"
    NOT_FOUND = "NOT_FOUND"
    DUPLICATE = "DUPLICATE"
    RATE_LIMITED = "RATE_LIMITED"
    UNAVAILABLE = "UNAVAILABLE"
    UNSUPPORTED = "UNSUPPORTED"
    INVALID = "INVALID"
    ORDER_TYPE_NOT_SUPPORTED = "ORDER_TYPE_NOT_SUPPORTED"  # the capability table refused it (issue 15)


class BrokerError(Exception):
    """A coded broker failure. ``retryable`` errors (rate limits, outages) may succeed later."""

    def __init__(self, code: BrokerErrorCode, message: str = "", *, retry_after: float | None = None):
        super().__init__(f"{code.value}: {message}" if message else code.value)
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.code in (BrokerErrorCode.RATE_LIMITED, BrokerErrorCode.UNAVAILABLE)

    def to_rejection(self) -> Rejection:
        code = {
            BrokerErrorCode.INSUFFICIENT_BUYING_POWER: RejectCode.BROKER_INSUFFICIENT_BUYING_POWER,
            BrokerErrorCode.RATE_LIMITED: RejectCode.BROKER_RATE_LIMITED,
            BrokerErrorCode.UNAVAILABLE: RejectCode.BROKER_UNAVAILABLE,
            BrokerErrorCode.UNSUPPORTED: RejectCode.NO_VENUE_FOR_ASSET_CLASS,
            BrokerErrorCode.ORDER_TYPE_NOT_SUPPORTED: RejectCode.ORDER_TYPE_NOT_SUPPORTED,
        }.get(self.code, RejectCode.BROKER_REJECTED)
        detail = self.message or self.code.value
        prefix = f"{code.value}: "
        return Rejection(code, detail[len(prefix):] if detail.startswith(prefix) else detail)


class AssetSpecMixin:
    """The seed-000 asset-class methods every broker offers, backed by the spec registry."""

    specs: AssetSpecRegistry

    def _registry(self) -> AssetSpecRegistry:
        return getattr(self, "specs", None) or default_registry()

    def get_asset_spec(self, symbol: str, asset_class: AssetClass | str | None = None) -> AssetSpec:
        klass = AssetClass.parse(asset_class) if asset_class is not None else None
        return self._registry().spec_for(symbol, klass)

    def calculate_margin_requirement(self, symbol: str, units: Decimal, price: Decimal,
                                     asset_class: AssetClass | str | None = None) -> Decimal:
        """units × price × margin% / 100 (seed 000), with the option multiplier."""
        return self.get_asset_spec(symbol, asset_class).margin(Decimal(units), Decimal(price))

    def normalize_slippage(self, symbol: str, direction: int, intended_price: Decimal, fill_price: Decimal,
                           asset_class: AssetClass | str | None = None) -> Decimal:
        """Slippage in ticks, positive adverse: BUY (fill − intended)/tick, SELL (intended − fill)/tick."""
        return self.get_asset_spec(symbol, asset_class).slippage_ticks(direction, Decimal(intended_price),
                                                                       Decimal(fill_price))
