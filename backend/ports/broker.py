"""The broker port: what the engine and the group executor need from any venue, in Decimals.

Adapters (paper, Alpaca) implement ``BrokerPort``. Contract every adapter keeps:

- ``submit_order`` is idempotent by ``client_order_id``: a second submit with the same id returns
  the existing order (a venue's "duplicate client order id" is "already placed", not an error),
  and after an ambiguous failure (timeout, 5xx, dropped connection) the adapter looks the order up
  by client id before it would ever resubmit.
- Every call is bounded in time; failures surface as ``BrokerError`` with a ``BrokerErrorCode``.
- Quantities and prices in and out are ``Decimal``; floats exist only inside an adapter at the SDK
  or JSON edge.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Protocol, Sequence, runtime_checkable

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
        if not self.client_order_id or len(self.client_order_id) > 48:
            raise ValueError("client_order_id must be 1..48 characters")
        if self.qty <= ZERO:
            raise ValueError("qty must be positive")
        if (self.order_type is OrderType.LIMIT) != (self.limit_price is not None):
            raise ValueError("limit_price is required for limit orders and only for them")


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


@runtime_checkable
class BrokerPort(Protocol):
    name: str

    def supports(self, asset_class: AssetClass) -> bool: ...

    def submit_order(self, request: OrderRequest) -> BrokerOrder: ...

    def get_order(self, broker_order_id: str) -> BrokerOrder: ...

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None: ...

    def cancel_order(self, broker_order_id: str) -> None: ...

    def close_position(self, symbol: str, asset_class: AssetClass) -> BrokerOrder | None: ...

    def get_positions(self) -> Sequence[Position]: ...

    def get_account(self) -> Account: ...

    def get_latest_quote(self, symbol: str, asset_class: AssetClass) -> Quote: ...

    def get_recent_closes(self, symbol: str, asset_class: AssetClass, limit: int) -> Sequence[Decimal]: ...


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
