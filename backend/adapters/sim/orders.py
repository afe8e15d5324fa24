"""Orders of the simulated venue: multi-leg requests, fills and order snapshots (public), and the
mutable working order, holding and armed fault the venue keeps behind its lock (package-internal).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from backend.adapters.sim.scenario import FaultSpec, FillSpec
from backend.domain.assets import AssetClass, is_occ_option, occ_underlying
from backend.domain.money import ZERO
from backend.domain.orders import (
    BrokerOrder,
    OrderSide,
    OrderState,
    OrderType,
    check_client_order_id,
    check_limit_price,
)

DEFAULT_ACCOUNT_ID = "default"  # the account of a single-account venue (the Trading API's one account)


@dataclass(frozen=True)
class LegRequest:
    """One leg of a multi-leg (mleg) option order; leg qty = parent qty × ``ratio_qty``."""

    symbol: str
    ratio_qty: int
    side: OrderSide
    position_intent: str | None = None


@dataclass(frozen=True)
class MlegRequest:
    client_order_id: str
    qty: Decimal
    legs: tuple[LegRequest, ...]
    order_type: OrderType = OrderType.MARKET
    limit_price: Decimal | None = None  # net per unit: positive a debit, negative a credit
    time_in_force: str = "day"

    def __post_init__(self) -> None:
        check_client_order_id(self.client_order_id)
        if self.qty <= ZERO or self.qty != self.qty.to_integral_value():
            raise ValueError("mleg qty must be a positive whole number")
        if not 2 <= len(self.legs) <= 4:
            raise ValueError("an mleg order has 2 to 4 legs")
        if len({leg.symbol for leg in self.legs}) != len(self.legs):
            raise ValueError("mleg legs must have unique symbols")
        for leg in self.legs:
            if not is_occ_option(leg.symbol):
                raise ValueError(f"mleg legs must be OCC option symbols, got {leg.symbol!r}")
            if leg.ratio_qty < 1:
                raise ValueError("leg ratio_qty must be >= 1")
        check_limit_price(self.order_type, self.limit_price)


@dataclass(frozen=True)
class Fill:
    fill_id: str
    broker_order_id: str
    client_order_id: str
    symbol: str
    side: OrderSide
    qty: Decimal
    price: Decimal
    timestamp: datetime
    account_id: str = DEFAULT_ACCOUNT_ID


@dataclass(frozen=True)
class VenueOrder:
    """A snapshot of one order as the venue sees it (richer than ``BrokerOrder``)."""

    broker_order_id: str
    client_order_id: str
    symbol: str  # "" for an mleg parent
    asset_class: AssetClass
    side: OrderSide
    qty: Decimal
    order_type: OrderType
    limit_price: Decimal | None
    time_in_force: str
    state: OrderState
    filled_qty: Decimal
    filled_avg_price: Decimal | None
    created_at: datetime
    updated_at: datetime
    filled_at: datetime | None = None
    canceled_at: datetime | None = None
    failed_at: datetime | None = None
    reject_reason: str | None = None
    order_class: str = "simple"  # "simple" or "mleg"
    legs: tuple["VenueOrder", ...] = ()
    ratio_qty: int | None = None
    position_intent: str | None = None
    extended_hours: bool = False
    account_id: str = DEFAULT_ACCOUNT_ID
    # issue 15: stops and protective legs (``legs`` then holds a bracket's / oto's / oco's legs)
    stop_price: Decimal | None = None  # a trailing stop: its current stop
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    hwm: Decimal | None = None  # a trailing stop's best price so far (high for a sell, low for a buy)
    held: bool = False  # a protective leg waiting for its entry to fill ("held" at Alpaca)
    replaces: str | None = None
    replaced_by: str | None = None

    @property
    def remaining_qty(self) -> Decimal:
        return self.qty - self.filled_qty

    @property
    def venue_status(self) -> str:
        if self.replaced_by is not None:
            return "replaced"
        return "held" if self.held and not self.state.is_final else self.state.value

    def to_broker_order(self) -> BrokerOrder:
        """An mleg parent reports the legs' underlying as its symbol."""
        symbol = self.symbol or (occ_underlying(self.legs[0].symbol) or "" if self.legs else "")
        return BrokerOrder(
            broker_order_id=self.broker_order_id, client_order_id=self.client_order_id, symbol=symbol,
            side=self.side, qty=self.qty, state=self.state, filled_qty=self.filled_qty,
            filled_avg_price=self.filled_avg_price, submitted_at=self.created_at, updated_at=self.updated_at,
            venue_status=self.venue_status, legs=tuple(leg.to_broker_order() for leg in self.legs),
            replaces=self.replaces, replaced_by=self.replaced_by)


@dataclass
class WorkingOrder:
    broker_order_id: str
    client_order_id: str
    symbol: str
    asset_class: AssetClass
    side: OrderSide
    qty: Decimal
    order_type: OrderType
    limit_price: Decimal | None
    time_in_force: str
    fill: FillSpec
    lot: Decimal
    created_at: datetime
    updated_at: datetime
    eligible_at: datetime
    state: OrderState = OrderState.NEW
    filled_qty: Decimal = ZERO
    filled_value: Decimal = ZERO  # Σ qty × price (net per unit × qty for mleg)
    step: int = 0  # partial-fill ratios applied so far
    filled_at: datetime | None = None
    canceled_at: datetime | None = None
    failed_at: datetime | None = None
    reject_reason: str | None = None
    legs: list["WorkingOrder"] = field(default_factory=list)
    ratio_qty: int | None = None
    position_intent: str | None = None
    account_id: str = DEFAULT_ACCOUNT_ID
    # issue 15: stop, stop-limit and trailing stop orders rest until their stop trades (``triggered``);
    # a bracket / oto / oco keeps its protective legs in ``children`` (each also a working order of
    # the book, ``parent_id`` set), held until the entry fills; one leg filling cancels the other
    stop_price: Decimal | None = None
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    hwm: Decimal | None = None
    triggered: bool = False
    order_class: str = "simple"
    children: list["WorkingOrder"] = field(default_factory=list)
    parent_id: str | None = None
    held: bool = False
    replaces: str | None = None  # issue 15 item 6: replace = cancel + a new order that names the old
    replaced_by: str | None = None

    @property
    def armed_stop(self) -> Decimal | None:
        """The price that triggers this order now (a trailing stop's follows ``hwm``); None if none."""
        if self.trail_price is None and self.trail_percent is None:
            return self.stop_price
        if self.hwm is None:
            return None
        sign = -1 if self.side is OrderSide.SELL else 1
        if self.trail_price is not None:
            return self.hwm + sign * self.trail_price
        assert self.trail_percent is not None
        return self.hwm * (1 + sign * self.trail_percent / 100)

    def snapshot(self) -> VenueOrder:
        avg = self.filled_value / self.filled_qty if self.filled_qty else None
        return VenueOrder(
            broker_order_id=self.broker_order_id, client_order_id=self.client_order_id, symbol=self.symbol,
            asset_class=self.asset_class, side=self.side, qty=self.qty, order_type=self.order_type,
            limit_price=self.limit_price, time_in_force=self.time_in_force, state=self.state,
            filled_qty=self.filled_qty, filled_avg_price=avg, created_at=self.created_at,
            updated_at=self.updated_at, filled_at=self.filled_at, canceled_at=self.canceled_at,
            failed_at=self.failed_at, reject_reason=self.reject_reason,
            order_class="mleg" if self.legs else self.order_class,
            legs=tuple(leg.snapshot() for leg in (self.legs or self.children)),
            ratio_qty=self.ratio_qty, position_intent=self.position_intent, account_id=self.account_id,
            stop_price=self.armed_stop, trail_price=self.trail_price, trail_percent=self.trail_percent,
            hwm=self.hwm, held=self.held, replaces=self.replaces, replaced_by=self.replaced_by)


@dataclass
class Holding:
    qty: Decimal = ZERO  # signed
    avg_entry: Decimal = ZERO
    asset_class: AssetClass = AssetClass.EQUITY


@dataclass
class ActiveFault:
    spec: FaultSpec
    seen: int = 0
    fired: int = 0

    def fires(self, operation: str) -> bool:
        if self.spec.operation not in ("*", operation):
            return False
        self.seen += 1
        if self.seen <= self.spec.after_calls:
            return False
        if self.spec.count is not None and self.fired >= self.spec.count:
            return False
        self.fired += 1
        return True
