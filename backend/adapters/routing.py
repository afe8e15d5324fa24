"""Which broker executes which asset class, from configuration. Pure: no SDK imports.

A route table maps each asset class to a named broker instance, e.g. (env ``BROKER_ROUTES``)::

    {"EQUITY": "alpaca", "CRYPTO": "alpaca", "OPTIONS": "alpaca", "FOREX": "paper", "COMMODITY": "paper"}

Build time is strict: an unknown asset class, an unknown broker name, the same class routed twice
(``FX`` and ``FOREX``), or a route to a broker that does not support the class raises
``RoutingConfigError`` so a bad deploy fails at start, not on the first FX order. An asset class
left out (or routed to ``null``) has no venue: orders for it are rejected with
``NO_VENUE_FOR_ASSET_CLASS: <CLASS>``.
"""
from __future__ import annotations

import json
import os
from types import MappingProxyType
from typing import Any, Mapping

from backend.domain.assets import AssetClass
from backend.domain.errors import InvalidInput, RejectCode, Rejection
from backend.ports.broker import BrokerError, BrokerErrorCode, BrokerPort

ROUTES_ENV_VAR = "BROKER_ROUTES"

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
    """Asset class → broker. ``broker_for`` raises a coded ``BrokerError``; ``rejection_for``
    returns the same decision as a ``Rejection`` value (``None`` when routable)."""

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

    @property
    def routes(self) -> Mapping[AssetClass, BrokerPort]:
        return self._routes

    def supports(self, asset_class: AssetClass | str) -> bool:
        return AssetClass.parse(asset_class) in self._routes

    def rejection_for(self, asset_class: AssetClass | str) -> Rejection | None:
        klass = AssetClass.parse(asset_class)
        return None if klass in self._routes else no_venue(klass)

    def broker_for(self, asset_class: AssetClass | str) -> BrokerPort:
        klass = AssetClass.parse(asset_class)
        broker = self._routes.get(klass)
        if broker is None:
            raise BrokerError(BrokerErrorCode.UNSUPPORTED, str(no_venue(klass)))
        return broker

    def describe(self) -> dict[str, str]:
        """Class → broker name, for logs and the health endpoint."""
        return {klass.value: str(getattr(broker, "name", type(broker).__name__))
                for klass, broker in self._routes.items()}

    # ------------------------------------------------------------------ builders

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | str, brokers: Mapping[str, BrokerPort]) -> "BrokerRouter":
        """``config`` maps asset class names (any case, ``FX`` alias) to broker names, as a
        mapping or a JSON object string; ``brokers`` holds the named instances."""
        mapping = _load_config(config)
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
        """Routes from ``BROKER_ROUTES`` (a JSON object) or ``default`` when unset/empty."""
        env = os.environ if env is None else env
        raw = (env.get(ROUTES_ENV_VAR) or "").strip()
        return cls.from_config(raw or default, brokers)


def _parse_class(value: Any) -> AssetClass:
    try:
        return AssetClass.parse(value, "route")
    except InvalidInput as exc:
        raise RoutingConfigError(str(exc)) from None


def _load_config(config: Mapping[str, Any] | str) -> Mapping[str, Any]:
    if isinstance(config, str):
        try:
            data = json.loads(config)
        except ValueError as exc:
            raise RoutingConfigError(f"{ROUTES_ENV_VAR} is not valid JSON: {exc}") from None
    else:
        data = config
    if not isinstance(data, Mapping):
        raise RoutingConfigError(f"{ROUTES_ENV_VAR} must be a JSON object of asset class -> broker name")
    return data
