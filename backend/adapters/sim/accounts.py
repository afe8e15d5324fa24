"""Accounts of the simulated venue: one ``Book`` per account id, kept in ``Books`` (package-internal;
the venue holds the lock).

A book is one account's cash, realized P&L, holdings, orders and client-order-id namespace — a
client order id is unique per account, as at Alpaca's Broker API, so the same id in two accounts is
two orders. The default account ``DEFAULT_ACCOUNT_ID`` exists from the start, so single-account
callers never name one; other accounts are opened explicitly and start from the scenario's account
unless given their own ``AccountSpec``. An unknown account id is NOT_FOUND. A suspended account
refuses new orders (REJECTED, "trading is suspended") until cleared; cancels still work.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from backend.adapters.sim.orders import DEFAULT_ACCOUNT_ID, Holding, WorkingOrder
from backend.adapters.sim.scenario import AccountSpec
from backend.domain.assets import AssetClass
from backend.domain.money import ZERO
from backend.domain.orders import BrokerError, BrokerErrorCode


@dataclass
class Book:
    account_id: str
    spec: AccountSpec
    cash: Decimal
    realized: Decimal = ZERO
    orders: dict[str, WorkingOrder] = field(default_factory=dict)  # broker id → order, submission order
    by_client: dict[str, str] = field(default_factory=dict)  # client order id → broker id
    holdings: dict[str, Holding] = field(default_factory=dict)
    trade_suspended: bool = False

    def check_tradable(self) -> None:
        if self.trade_suspended:
            raise BrokerError(BrokerErrorCode.REJECTED, "trading is suspended for this account")

    def apply_fill(self, symbol: str, klass: AssetClass, signed_qty: Decimal, price: Decimal,
                   multiplier: Decimal) -> None:
        """Cash, average entry and realized P&L after a fill of ``signed_qty`` (buy > 0) at ``price``."""
        holding = self.holdings.setdefault(symbol, Holding(asset_class=klass))
        self.cash -= signed_qty * price * multiplier
        old = holding.qty
        new = old + signed_qty
        if old == ZERO or (old > ZERO) == (signed_qty > ZERO):
            holding.avg_entry = (abs(old) * holding.avg_entry + abs(signed_qty) * price) / abs(new)
        else:
            closed = min(abs(old), abs(signed_qty))
            direction = 1 if old > ZERO else -1
            self.realized += closed * (price - holding.avg_entry) * direction * multiplier
            if new != ZERO and (new > ZERO) != (old > ZERO):
                holding.avg_entry = price  # crossed through zero: the rest opens at this price
        holding.qty = new
        if new == ZERO:
            del self.holdings[symbol]


class Books:
    """The venue's books by account id; ``get(None)`` is the default account."""

    def __init__(self, default_spec: AccountSpec):
        self._default_spec = default_spec
        self._books: dict[str, Book] = {}
        self.open(DEFAULT_ACCOUNT_ID)

    def open(self, account_id: str, spec: AccountSpec | None = None) -> str:
        if not isinstance(account_id, str) or not account_id.strip():
            raise BrokerError(BrokerErrorCode.INVALID, "account_id must be a non-empty string")
        if account_id not in self._books:
            start = spec or self._default_spec
            self._books[account_id] = Book(account_id=account_id, spec=start, cash=start.cash)
        return account_id

    def get(self, account_id: str | None) -> Book:
        book = self._books.get(DEFAULT_ACCOUNT_ID if account_id is None else account_id)
        if book is None:
            raise BrokerError(BrokerErrorCode.NOT_FOUND, f"account not found: {account_id}")
        return book

    def ids(self) -> list[str]:
        return list(self._books)

    def __contains__(self, account_id: object) -> bool:
        return account_id in self._books
