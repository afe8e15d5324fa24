"""The broker port: what the engine and the group executor need from any venue, in Decimals.

Adapters (paper, Alpaca) implement ``BrokerPort``. Contract every adapter keeps:

- ``submit_order`` is idempotent by ``client_order_id``: a second submit with the same id returns
  the existing order (a venue's "duplicate client order id" is "already placed", not an error),
  and after an ambiguous failure (timeout, 5xx, dropped connection) the adapter looks the order up
  by client id before it would ever resubmit.
- Every call is bounded in time; failures surface as ``BrokerError`` with a ``BrokerErrorCode``.
- Quantities and prices in and out are ``Decimal``; floats exist only inside an adapter at the SDK
  or JSON edge.

The value types the protocol speaks in (``OrderRequest``, ``BrokerOrder``, ``Quote``, ...) and
``BrokerError`` are domain values and live in ``backend/domain/orders.py``; they are re-exported
here so ``from backend.ports.broker import OrderSide`` keeps working.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Protocol, Sequence, runtime_checkable

from backend.domain.assets import AssetClass
from backend.domain.orders import (
    Account,
    AssetSpecMixin,
    BrokerError,
    BrokerErrorCode,
    BrokerOrder,
    OrderRequest,
    OrderSide,
    OrderState,
    OrderType,
    Position,
    Quote,
    VenueActivities,
    VenueFee,
    VenueFill,
)

__all__ = [
    "Account", "AssetSpecMixin", "BrokerError", "BrokerErrorCode", "BrokerOrder", "BrokerPort",
    "OrderRequest", "OrderSide", "OrderState", "OrderType", "Position", "Quote", "VenueActivities", "VenueFee",
    "VenueFill",
]


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
