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


@dataclass(frozen=True)
class OrderRequest:
    client_order_id: str
    symbol: str
    asset_class: AssetClass
    side: OrderSide
    qty: Decimal
    order_type: OrderType = OrderType.MARKET
    limit_price: Decimal | None = None
    time_in_force: str = "day"

    def __post_init__(self) -> None:
        check_client_order_id(self.client_order_id)
        if self.qty <= ZERO:
            raise ValueError("qty must be positive")
        check_limit_price(self.order_type, self.limit_price)


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
    legs: tuple["BrokerOrder", ...] = field(default_factory=tuple)  # multi-leg (mleg) children

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


@dataclass(frozen=True)
class Account:
    buying_power: Decimal
    equity: Decimal
    cash: Decimal
    currency: str = "USD"


class BrokerErrorCode(str, Enum):
    INSUFFICIENT_BUYING_POWER = "INSUFFICIENT_BUYING_POWER"
    REJECTED = "REJECTED"
    NOT_FOUND = "NOT_FOUND"
    DUPLICATE = "DUPLICATE"
    RATE_LIMITED = "RATE_LIMITED"
    UNAVAILABLE = "UNAVAILABLE"
    UNSUPPORTED = "UNSUPPORTED"
    INVALID = "INVALID"


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
