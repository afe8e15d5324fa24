"""A hand-written BrokerPort stub that records calls (no MagicMock). For fast engine unit tests;
the real paths are covered by the paper broker and the local Alpaca server."""
from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Callable

from backend.domain.assets import AssetClass
from backend.ports.broker import (Account, AssetSpecMixin, BrokerError, BrokerErrorCode, BrokerOrder, OrderRequest,
                                  OrderState, Position, Quote)


@dataclass
class StubBroker(AssetSpecMixin):
    quotes: dict[str, tuple[str, str]] = field(default_factory=dict)  # symbol -> (bid, ask)
    quote_time: datetime | None = None
    supported: frozenset[AssetClass] = frozenset(AssetClass)
    fail_submit: BrokerError | None = None
    fail_submit_after_accept: BrokerError | None = None  # store the order, then raise
    fill_ratio: Decimal = Decimal("1")
    now: Callable[[], datetime] = lambda: datetime(2026, 1, 5, 14, 30, tzinfo=timezone.utc)
    name: str = "stub"

    def __post_init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.orders: dict[str, BrokerOrder] = {}
        self._lock = threading.Lock()

    def supports(self, asset_class: AssetClass) -> bool:
        return asset_class in self.supported

    def get_latest_quote(self, symbol: str, asset_class: AssetClass) -> Quote:
        self.calls.append(("quote", symbol))
        if symbol not in self.quotes:
            raise BrokerError(BrokerErrorCode.NOT_FOUND, f"no quote for {symbol}")
        bid, ask = self.quotes[symbol]
        return Quote(symbol, Decimal(bid), Decimal(ask), self.quote_time or self.now())

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        with self._lock:
            self.calls.append(("submit", request.client_order_id))
            if self.fail_submit is not None:
                raise self.fail_submit
            if request.client_order_id in self.orders:
                return self.orders[request.client_order_id]
            bid, ask = self.quotes.get(request.symbol, ("100", "100"))
            price = Decimal(ask) if request.side.value == "buy" else Decimal(bid)
            filled = request.qty * self.fill_ratio
            state = OrderState.FILLED if filled == request.qty else (
                OrderState.PARTIALLY_FILLED if filled > 0 else OrderState.NEW)
            order = BrokerOrder(str(uuid.uuid4()), request.client_order_id, request.symbol, request.side, request.qty,
                                state, filled, price if filled > 0 else None, self.now(), self.now(), state.value)
            self.orders[request.client_order_id] = order
            if self.fail_submit_after_accept is not None:
                raise self.fail_submit_after_accept
            return order

    def get_order(self, broker_order_id: str) -> BrokerOrder:
        for order in self.orders.values():
            if order.broker_order_id == broker_order_id:
                return order
        raise BrokerError(BrokerErrorCode.NOT_FOUND, broker_order_id)

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        self.calls.append(("lookup", client_order_id))
        return self.orders.get(client_order_id)

    def cancel_order(self, broker_order_id: str) -> None:
        self.calls.append(("cancel", broker_order_id))

    def close_position(self, symbol: str, asset_class: AssetClass) -> BrokerOrder | None:
        return None

    def get_positions(self) -> list[Position]:
        return []

    def get_account(self) -> Account:
        return Account(Decimal("1000000"), Decimal("1000000"), Decimal("1000000"))

    def get_recent_closes(self, symbol: str, asset_class: AssetClass, limit: int) -> list[Decimal]:
        return []

    @property
    def submits(self) -> list[object]:
        return [arg for name, arg in self.calls if name == "submit"]
