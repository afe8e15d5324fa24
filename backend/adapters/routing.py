"""Moved: the broker router is core (``backend/execution/broker_router.py``, pure, no SDK); the
composition root (``backend/bootstrap.py``) builds the venues it routes to. Re-exported here so
``from backend.adapters.routing import BrokerRouter`` keeps working."""
from backend.execution.broker_router import (  # noqa: F401
    DEFAULT_ROUTES,
    ROUTES_ENV_VAR,
    BrokerRouter,
    RoutingConfigError,
    as_router,
    no_venue,
    parse_routes,
)

__all__ = ["DEFAULT_ROUTES", "ROUTES_ENV_VAR", "BrokerRouter", "RoutingConfigError", "as_router", "no_venue",
           "parse_routes"]
