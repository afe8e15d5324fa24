"""OANDA v20 venue adapter (FX and metals): ``OandaBroker`` over a thin ``httpx`` client.

- ``client``: configuration (practice/live hosts, base-URL override), the shared kept-alive
  ``httpx.Client``, timeouts, error classification, the 429/5xx retry budget;
- ``models``: pydantic models of the v20 responses used, and the order request body;
- ``instruments``: ``EUR/USD`` ↔ ``EUR_USD`` and the venue's sizing metadata, cross-checked
  against ``asset_specs.json``;
- ``broker``: the ``BrokerPort`` (orders with client-id lookups before any resubmit, pricing,
  positions, account summary, candles);
- ``replace``: ``replace_order`` (PUT orders/{id}: cancel and replace a pending order, issue 15).

Importing this package imports neither httpx nor pydantic; ``OandaBroker`` loads them on first use.
"""
from __future__ import annotations

from typing import Any

__all__ = ["OandaBroker", "OandaConfig"]


def __getattr__(name: str) -> Any:
    if name == "OandaBroker":
        from backend.adapters.oanda.broker import OandaBroker

        return OandaBroker
    if name == "OandaConfig":
        from backend.adapters.oanda.client import OandaConfig

        return OandaConfig
    raise AttributeError(name)
