"""What each venue takes: order type × time in force × protective legs, per asset class (issue 15).

An order a venue cannot take is refused up front with ``ORDER_TYPE_NOT_SUPPORTED`` and a detail
such as ``trailing_stop for CRYPTO on alpaca``, before anything is written or sent. The paper
broker has no table of its own: for each asset class it takes exactly what the live venue of that
class takes (Alpaca for equities, crypto and options; OANDA for FX and metals), so a strategy
tested on paper never relies on something live would refuse. A venue name not in the table
(a test double, a future adapter) is held to the paper table for the same reason.

Sources (checked 2026-12; where two disagree the stricter is kept):

- Alpaca crypto: "order types market, limit and stop_limit; time_in_force gtc and ioc"
  (https://docs.alpaca.markets/docs/crypto-orders; a support page also lists fok — not relied on).
- Alpaca equities: time in force day/gtc/opg/cls/ioc/fok; stop, stop_limit and trailing_stop
  (trail_price or trail_percent) work day or gtc; bracket / OTO / OCO orders are equities only and
  day or gtc; an OCO is a limit order (its take-profit) with a stop-loss, ``limit_price`` omitted;
  fractional orders are simple and day only (https://docs.alpaca.markets/docs/orders-at-alpaca,
  https://docs.alpaca.markets/docs/fractional-trading). alpaca-py 0.44 ``alpaca/trading/requests.py``
  encodes the class rules: bracket and oco need take_profit.limit_price and stop_loss.stop_price, oto
  one of them, an OCO ``LimitOrderRequest`` may omit limit_price.
- Alpaca options: market, limit, stop, stop_limit; day only; no trailing stop, no bracket
  (https://docs.alpaca.markets/docs/options-trading).
  The Trading API and the Broker API place orders through the same order model, so
  ``alpaca_broker`` shares ``alpaca``'s rows.
- OANDA v20 (https://developer.oanda.com/rest-live-v20/order-df/): MarketOrderRequest timeInForce
  FOK or IOC (our ``day`` market order is sent FOK, as before); LimitOrderRequest and
  StopOrderRequest GTC/GFD/FOK/IOC (GTD not offered); MARKET_IF_TOUCHED exists but is not an order
  type here; no stop-limit entry and no trailing-stop entry (a TRAILING_STOP_LOSS order only closes
  a trade); protective legs are ``takeProfitOnFill`` {price}, ``stopLossOnFill`` {price} and
  ``trailingStopLossOnFill`` {distance} on a market, limit or stop entry (no limit price on a stop
  loss; no OCO of two exits).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterator, Mapping

from backend.domain.assets import AssetClass
from backend.domain.errors import RejectCode, Rejection
from backend.domain.orders import OrderClass, OrderType, TimeInForce

T = TimeInForce
_DAY_GTC = frozenset({T.DAY, T.GTC})
_ALL_TIF = frozenset(T)


@dataclass(frozen=True)
class ClassCapabilities:
    """What one venue takes for one asset class."""

    order_types: Mapping[OrderType, frozenset[TimeInForce]]  # type → the time in force it takes
    order_classes: frozenset[OrderClass] = frozenset({OrderClass.SIMPLE})
    protective_time_in_force: frozenset[TimeInForce] = frozenset()  # when order_class is not simple
    protective_entry_types: frozenset[OrderType] = frozenset()  # entry types of a bracket / oto
    stop_loss_limit: bool = False  # a stop-limit stop-loss leg
    trailing_stop_loss: bool = False  # a trailing stop-loss leg (``stop_loss.trail_price``)
    fractional: tuple[frozenset[OrderType], frozenset[TimeInForce]] | None = None  # None: no extra rule
    source: str = ""


@dataclass(frozen=True)
class VenueCapabilities:
    name: str
    classes: Mapping[AssetClass, ClassCapabilities] = field(default_factory=dict)


ALPACA_EQUITY = ClassCapabilities(
    order_types={OrderType.MARKET: _ALL_TIF, OrderType.LIMIT: _ALL_TIF, OrderType.STOP: _DAY_GTC,
                 OrderType.STOP_LIMIT: _DAY_GTC, OrderType.TRAILING_STOP: _DAY_GTC},
    order_classes=frozenset(OrderClass),
    protective_time_in_force=_DAY_GTC,
    protective_entry_types=frozenset({OrderType.MARKET, OrderType.LIMIT}),
    stop_loss_limit=True,
    fractional=(frozenset({OrderType.MARKET, OrderType.LIMIT, OrderType.STOP, OrderType.STOP_LIMIT}),
                frozenset({T.DAY})),
    source="https://docs.alpaca.markets/docs/orders-at-alpaca; .../fractional-trading; alpaca-py requests.py",
)
ALPACA_CRYPTO = ClassCapabilities(
    order_types={OrderType.MARKET: frozenset({T.GTC, T.IOC}), OrderType.LIMIT: frozenset({T.GTC, T.IOC}),
                 OrderType.STOP_LIMIT: frozenset({T.GTC, T.IOC})},
    source="https://docs.alpaca.markets/docs/crypto-orders",
)
ALPACA_OPTIONS = ClassCapabilities(
    order_types={OrderType.MARKET: frozenset({T.DAY}), OrderType.LIMIT: frozenset({T.DAY}),
                 OrderType.STOP: frozenset({T.DAY}), OrderType.STOP_LIMIT: frozenset({T.DAY})},
    source="https://docs.alpaca.markets/docs/options-trading",
)
OANDA_FX = ClassCapabilities(
    order_types={OrderType.MARKET: frozenset({T.DAY, T.IOC, T.FOK}),
                 OrderType.LIMIT: frozenset({T.DAY, T.GTC, T.IOC, T.FOK}),
                 OrderType.STOP: frozenset({T.DAY, T.GTC, T.IOC, T.FOK})},
    order_classes=frozenset({OrderClass.SIMPLE, OrderClass.BRACKET, OrderClass.OTO}),
    protective_time_in_force=frozenset({T.DAY, T.GTC, T.IOC, T.FOK}),
    protective_entry_types=frozenset({OrderType.MARKET, OrderType.LIMIT, OrderType.STOP}),
    trailing_stop_loss=True,
    source="https://developer.oanda.com/rest-live-v20/order-df/",
)

_ALPACA = {AssetClass.EQUITY: ALPACA_EQUITY, AssetClass.CRYPTO: ALPACA_CRYPTO, AssetClass.OPTIONS: ALPACA_OPTIONS}
_OANDA = {AssetClass.FOREX: OANDA_FX, AssetClass.COMMODITY: OANDA_FX}

VENUES: Mapping[str, VenueCapabilities] = {
    "alpaca": VenueCapabilities("alpaca", _ALPACA),
    "alpaca_broker": VenueCapabilities("alpaca_broker", _ALPACA),  # Broker API: the same order model
    "oanda": VenueCapabilities("oanda", _OANDA),
    # paper: what the live venue of each class takes, never more
    "paper": VenueCapabilities("paper", {**_ALPACA, **_OANDA}),
}
PAPER = VENUES["paper"]


def venue_capabilities(venue_name: str) -> VenueCapabilities:
    """The venue's table; an unknown name gets the paper table (what some live venue takes)."""
    return VENUES.get(str(venue_name), PAPER)


def default_time_in_force(asset_class: AssetClass) -> TimeInForce:
    """An omitted time in force: gtc for crypto (Alpaca takes gtc/ioc only), day otherwise."""
    return T.GTC if asset_class is AssetClass.CRYPTO else T.DAY


def sent_time_in_force(asset_class: AssetClass, time_in_force: str) -> str:
    """The time in force an adapter actually sends for an ``OrderRequest``: crypto ``day`` goes out as
    ``gtc`` (``OrderRequest``'s default is ``day``; group legs, rollbacks and closes keep it). A
    caller's explicit ``day`` on a crypto intent is refused before this (the intent is checked)."""
    tif = str(time_in_force).lower()
    return T.GTC.value if asset_class is AssetClass.CRYPTO and tif == T.DAY.value else tif


@dataclass(frozen=True)
class OrderShape:
    """The parts of an order the table looks at (read from an ``OrderIntent`` or an ``OrderRequest``)."""

    order_type: OrderType
    time_in_force: TimeInForce
    order_class: OrderClass = OrderClass.SIMPLE
    stop_loss_limit: bool = False
    stop_loss_trailing: bool = False
    fractional: bool = False


def shape_of(order: Any, asset_class: AssetClass) -> OrderShape:
    """``order``: an ``OrderIntent``, an ``OrderRequest`` or anything with ``order_type`` (and
    optionally ``time_in_force``, ``order_class``, ``stop_loss``, ``qty``)."""
    tif = getattr(order, "time_in_force", None)
    tif = default_time_in_force(asset_class) if tif is None else TimeInForce(getattr(tif, "value", tif).lower())
    stop_loss = getattr(order, "stop_loss", None)
    qty = getattr(order, "qty", None)
    return OrderShape(
        order_type=OrderType(getattr(order, "order_type", OrderType.MARKET)),
        time_in_force=tif,
        order_class=OrderClass(getattr(order, "order_class", None) or OrderClass.SIMPLE),
        stop_loss_limit=stop_loss is not None and stop_loss.limit_price is not None,
        stop_loss_trailing=stop_loss is not None and stop_loss.trail_price is not None,
        fractional=isinstance(qty, Decimal) and qty != qty.to_integral_value(),
    )


def check_capability(venue_name: str, asset_class: AssetClass | str, order: Any) -> Rejection | None:
    """``ORDER_TYPE_NOT_SUPPORTED`` (or ``NO_VENUE_FOR_ASSET_CLASS``) when ``venue_name`` cannot take
    ``order`` for ``asset_class``; None when it can. Pure: call it before anything is written."""
    klass = AssetClass.parse(asset_class)
    venue = venue_capabilities(venue_name)
    caps = venue.classes.get(klass)
    if caps is None:
        return Rejection(RejectCode.NO_VENUE_FOR_ASSET_CLASS, f"{klass.value} is not traded on {venue.name}")
    return check_shape(venue.name, klass, caps, shape_of(order, klass))


def check_shape(venue: str, klass: AssetClass, caps: ClassCapabilities, shape: OrderShape) -> Rejection | None:
    where = f"for {klass.value} on {venue}"

    def refuse(what: str) -> Rejection:
        return Rejection(RejectCode.ORDER_TYPE_NOT_SUPPORTED, f"{what} {where}")

    kind, tif = shape.order_type, shape.time_in_force
    if kind not in caps.order_types:
        return refuse(kind.value)
    if tif not in caps.order_types[kind]:
        return refuse(f"{kind.value} with time_in_force {tif.value}")
    if shape.order_class is not OrderClass.SIMPLE:
        if shape.order_class not in caps.order_classes:
            return refuse(f"order_class {shape.order_class.value}")
        if tif not in caps.protective_time_in_force:
            return refuse(f"order_class {shape.order_class.value} with time_in_force {tif.value}")
        if shape.order_class is not OrderClass.OCO and kind not in caps.protective_entry_types:
            return refuse(f"order_class {shape.order_class.value} with a {kind.value} entry")
        if shape.stop_loss_limit and not caps.stop_loss_limit:
            return refuse("a stop-limit stop_loss")
        if shape.stop_loss_trailing and not caps.trailing_stop_loss:
            return refuse("a trailing stop_loss")
    if shape.fractional and caps.fractional is not None:
        types, tifs = caps.fractional
        if shape.order_class is not OrderClass.SIMPLE:
            return refuse(f"a fractional qty with order_class {shape.order_class.value}")
        if kind not in types:
            return refuse(f"a fractional qty with a {kind.value} order")
        if tif not in tifs:
            return refuse(f"a fractional qty with time_in_force {tif.value}")
    return None


def cells() -> Iterator[tuple[str, AssetClass, OrderType, TimeInForce, bool]]:
    """Every (venue, class, simple order type, time in force, accepted) cell, for tests and docs."""
    for name, venue in VENUES.items():
        for klass in AssetClass:
            caps = venue.classes.get(klass)
            for kind in OrderType:
                for tif in TimeInForce:
                    accepted = caps is not None and tif in caps.order_types.get(kind, frozenset())
                    yield name, klass, kind, tif, accepted


def describe(venue_name: str) -> dict[str, dict[str, Any]]:
    """The venue's table as JSON-ready data (class → type → time in force list, classes, source)."""
    venue = venue_capabilities(venue_name)
    return {klass.value: {"order_types": {k.value: sorted(t.value for t in tifs) for k, tifs in caps.order_types.items()},
                          "order_classes": sorted(c.value for c in caps.order_classes),
                          "source": caps.source}
            for klass, caps in venue.classes.items()}
