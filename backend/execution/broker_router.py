"""Which venue executes which asset class: the one broker-router type the engine and the group
executor always use. Pure: no SDK imports (the composition root, ``backend/bootstrap.py``, builds
the venues and hands them in).

A route table maps each asset class to a named broker instance; in production it comes from
``EXEC_BROKER_ROUTES`` (``EQUITY=alpaca,FOREX=oanda`` or the same as a JSON object)::

    {"EQUITY": "alpaca", "CRYPTO": "alpaca", "OPTIONS": "alpaca", "FOREX": "paper", "COMMODITY": "paper"}

Build time is strict: an unknown asset class, an unknown broker name, the same class routed twice
(``FX`` and ``FOREX``), or a route to a broker that does not support the class raises
``RoutingConfigError`` so a bad deploy fails at start, not on the first FX order. An asset class
left out (or routed to ``null``) has no venue: orders for it are rejected with
``NO_VENUE_FOR_ASSET_CLASS: <CLASS>``.

A single venue is a router with one route (:meth:`BrokerRouter.single`): every asset class the
venue supports (asked per call, as a venue's own ``supports`` answers) goes to it. ``as_router``
turns whatever a library caller passes (a router or one ``BrokerPort``) into a router.
"""
from __future__ import annotations

import json
import os
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from backend.domain.assets import AssetClass
from backend.domain.errors import InvalidInput, RejectCode, Rejection
from backend.domain.instruments import InstrumentInfo, InstrumentProvider
from backend.domain.orders import BrokerError, BrokerErrorCode, Quote
from backend.ports.broker import BrokerPort

ROUTES_ENV_VAR = "EXEC_BROKER_ROUTES"  # the one name production reads (backend/bootstrap.py)

DEFAULT_ROUTES: Mapping[str, str] = MappingProxyType({
    "EQUITY": "alpaca",
    "CRYPTO": "alpaca",
    "OPTIONS": "alpaca",
    "FOREX": "paper",  # Alpaca has no FX; "oanda" (backend.adapters.oanda) trades FX on a real venue
    "COMMODITY": "paper",  # metals (XAU/USD, XAG/USD): "oanda" as well
})


class RoutingConfigError(ValueError):
    """The route table cannot be used as configured. Raised at build time, never per order."""


def no_venue(asset_class: AssetClass) -> Rejection:
    return Rejection(RejectCode.NO_VENUE_FOR_ASSET_CLASS, asset_class.value)


class BrokerRouter:
    """Asset class → venue. :meth:`route` answers a venue or the coded ``Rejection``;
    :meth:`broker_for` raises the same decision as a ``BrokerError``; ``rejection_for`` returns
    only the rejection (``None`` when routable). Market data (quotes, closes) is read from the venue
    that trades the class."""

    def __init__(self, routes: Mapping[AssetClass, BrokerPort]):
        table: dict[AssetClass, BrokerPort] = {}
        for raw_class, broker in routes.items():
            klass = _parse_class(raw_class)
            if klass in table:
                raise RoutingConfigError(f"asset class {klass.value} is routed twice")
            if not isinstance(broker, BrokerPort):
                raise RoutingConfigError(f"route {klass.value}: {broker!r} is not a BrokerPort")
            if not broker.supports(klass):
                raise RoutingConfigError(
                    f"route {klass.value} -> {getattr(broker, 'name', broker)!r}: that broker does not support {klass.value}"
                )
            table[klass] = broker
        self._routes: Mapping[AssetClass, BrokerPort] = MappingProxyType(table)
        self._single: Any = None

    @classmethod
    def single(cls, venue: Any) -> "BrokerRouter":
        """One venue for every asset class it supports (its ``supports`` is asked per call)."""
        router = cls({})
        router._single = venue
        return router

    @property
    def venue(self) -> Any:
        """The one venue of a single-venue router (None for a route table)."""
        return self._single

    @property
    def routes(self) -> Mapping[AssetClass, BrokerPort]:
        if self._single is not None:
            return MappingProxyType({k: self._single for k in AssetClass if self._single.supports(k)})
        return self._routes

    def route(self, asset_class: AssetClass | str) -> Any:
        """The venue for the class, or ``NO_VENUE_FOR_ASSET_CLASS: <CLASS>`` as a value."""
        klass = AssetClass.parse(asset_class)
        if self._single is not None:
            return self._single if self._single.supports(klass) else no_venue(klass)
        venue = self._routes.get(klass)
        return no_venue(klass) if venue is None else venue

    def supports(self, asset_class: AssetClass | str) -> bool:
        return not isinstance(self.route(asset_class), Rejection)

    def rejection_for(self, asset_class: AssetClass | str) -> Rejection | None:
        venue = self.route(asset_class)
        return venue if isinstance(venue, Rejection) else None

    def broker_for(self, asset_class: AssetClass | str) -> BrokerPort:
        venue = self.route(asset_class)
        if isinstance(venue, Rejection):
            raise BrokerError(BrokerErrorCode.UNSUPPORTED, str(venue))
        return venue

    def venues(self) -> tuple[Any, ...]:
        """Each distinct venue once."""
        if self._single is not None:
            return (self._single,)
        return tuple({id(v): v for v in self._routes.values()}.values())

    # market data from the venue that trades the class (the smart router's quote source)
    def get_latest_quote(self, symbol: str, asset_class: AssetClass) -> Quote:
        return self.broker_for(asset_class).get_latest_quote(symbol, asset_class)

    def get_recent_closes(self, symbol: str, asset_class: AssetClass, limit: int) -> Sequence[Decimal]:
        return self.broker_for(asset_class).get_recent_closes(symbol, asset_class, limit)

    # instrument metadata (issue 19 item 2): the optional capability, passed through to the class's venue
    @property
    def instrument_classes(self) -> frozenset[AssetClass]:
        """The classes whose venue offers instrument metadata (``InstrumentProvider``)."""
        return frozenset(klass for klass, broker in self.routes.items()
                         if isinstance(broker, InstrumentProvider) and klass in broker.instrument_classes)

    def instrument(self, symbol: str, asset_class: AssetClass) -> InstrumentInfo | None:
        """The class's venue's metadata for ``symbol`` (None: that venue does not list it);
        ``BrokerError(UNSUPPORTED)`` when no venue trades the class or it has no metadata."""
        klass = AssetClass.parse(asset_class)
        venue = self.broker_for(klass)
        if not isinstance(venue, InstrumentProvider) or klass not in venue.instrument_classes:
            raise BrokerError(BrokerErrorCode.UNSUPPORTED,
                              f"{getattr(venue, 'name', type(venue).__name__)} has no instrument metadata for {klass.value}")
        return venue.instrument(symbol, klass)

    def describe(self) -> dict[str, str]:
        """Class → broker name, for logs and the health endpoint."""
        return {klass.value: str(getattr(broker, "name", type(broker).__name__))
                for klass, broker in self.routes.items()}

    # ------------------------------------------------------------------ builders

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | str, brokers: Mapping[str, BrokerPort]) -> "BrokerRouter":
        """``config`` maps asset class names (any case, ``FX`` alias) to broker names, as a
        mapping, a JSON object string or ``CLASS=broker,...`` text; ``brokers`` holds the named
        instances."""
        mapping = parse_routes(config) if isinstance(config, str) else _load_config(config)
        seen: set[AssetClass] = set()
        routes: dict[AssetClass, BrokerPort] = {}
        for raw_class, broker_name in mapping.items():
            klass = _parse_class(raw_class)
            if klass in seen:
                raise RoutingConfigError(f"asset class {klass.value} is routed twice")
            seen.add(klass)
            if broker_name is None:
                continue  # explicitly no venue
            if not isinstance(broker_name, str) or not broker_name.strip():
                raise RoutingConfigError(f"route {klass.value}: broker name must be a non-empty string or null, "
                                         f"got {broker_name!r}")
            name = broker_name.strip()
            if name not in brokers:
                raise RoutingConfigError(f"route {klass.value} -> {name!r}: no such broker; "
                                         f"configured brokers are {sorted(brokers)}")
            routes[klass] = brokers[name]
        return cls(routes)

    @classmethod
    def from_env(cls, brokers: Mapping[str, BrokerPort], env: Mapping[str, str] | None = None,
                 default: Mapping[str, Any] = DEFAULT_ROUTES) -> "BrokerRouter":
        """Routes from ``EXEC_BROKER_ROUTES`` or ``default`` when unset/empty."""
        env = os.environ if env is None else env
        raw = (env.get(ROUTES_ENV_VAR) or "").strip()
        return cls.from_config(raw or default, brokers)


def as_router(broker: Any) -> BrokerRouter:
    """A library caller's broker as a router: a router as is, one venue as a one-route router."""
    return broker if isinstance(broker, BrokerRouter) else BrokerRouter.single(broker)


def parse_routes(raw: str) -> dict[str, str | None]:
    """``EQUITY=alpaca,FOREX=paper`` (or a JSON object) → {asset class: broker name}."""
    text = raw.strip()
    if text.startswith("{") or text.startswith("["):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise RoutingConfigError(f"{ROUTES_ENV_VAR} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise RoutingConfigError(f"{ROUTES_ENV_VAR} must be a JSON object of asset class -> broker name")
        return data
    routes: dict[str, str | None] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        klass, sep, name = part.partition("=")
        if not sep or not klass.strip():
            raise RoutingConfigError(f"{ROUTES_ENV_VAR}: expected CLASS=broker, got {part!r}")
        key = klass.strip().upper()
        if key in routes:
            raise RoutingConfigError(f"{ROUTES_ENV_VAR}: {key} is routed twice")
        value = name.strip()
        routes[key] = None if value.lower() in ("", "none", "null") else value.lower()
    if not routes:
        raise RoutingConfigError(f"{ROUTES_ENV_VAR} is set but names no route")
    return routes


def _parse_class(value: Any) -> AssetClass:
    try:
        return AssetClass.parse(value, "route")
    except InvalidInput as exc:
        raise RoutingConfigError(str(exc)) from None


def _load_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(config, Mapping):
        raise RoutingConfigError(f"{ROUTES_ENV_VAR} must be a JSON object of asset class -> broker name")
    return config
