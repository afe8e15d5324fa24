"""Optional broker capability for the daily reconciliation (issue 13 item 7): a venue account's
executions and trade-related fees of one UTC day, as the venue's own records report them.

Implemented by the adapters: Alpaca Broker API (account activities: ``FILL``, ``FEE``, ``CFEE``, ``PTC``),
Alpaca Trading API (closed orders: alpaca-py 0.44's ``TradingClient`` has no activities call), OANDA
(``ORDER_FILL`` transactions; financing reported apart), the paper broker (the simulated venue's fills).
A venue without it is reported ``cash: unavailable`` by the reconciliation, never clean. Kept apart
from ``backend/ports/broker.py``, which holds the ``BrokerPort`` protocol only.
"""
from __future__ import annotations

from datetime import date
from typing import Protocol, runtime_checkable

from backend.domain.orders import VenueActivities, VenueFee, VenueFill

__all__ = ["ActivityProvider", "VenueActivities", "VenueFee", "VenueFill"]


@runtime_checkable
class ActivityProvider(Protocol):
    """``get_activities(day)``: the account's fills and fees whose time falls in [day 00:00, next day
    00:00) UTC, exact Decimals; failures as coded ``BrokerError``s like every port call."""

    def get_activities(self, day: date) -> VenueActivities: ...
