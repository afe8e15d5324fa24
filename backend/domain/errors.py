"""Errors and coded rejections.

Two kinds of "no":
- ``InvalidInput``: the request itself is malformed (a field and a reason). It changes nothing and
  maps to HTTP 400.
- ``Rejection``: a well-formed request that the system decided not to execute (risk, cost, venue,
  broker). It is a value with a code and is recorded in the ledger as a decision.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class StoreContended(RuntimeError):
    """A store write kept being aborted by contention and nothing was committed. The caller's work is
    left where the sweeper finds it (a RESERVED intent, a group with an expiring lease); over HTTP it
    is a 503 with ``Retry-After``: the same request (same Idempotency-Key) resumes it."""


class InvalidInput(ValueError):
    """A malformed request: ``field`` names the offending input, ``reason`` says why."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason}


class RejectCode(str, Enum):
    SPREAD_TOO_WIDE = "SPREAD_TOO_WIDE"
    KILL_SWITCH = "KILL_SWITCH"
    DAILY_TRADE_LIMIT = "DAILY_TRADE_LIMIT"
    POSITION_LIMIT = "POSITION_LIMIT"
    RISK_DATA_UNAVAILABLE = "RISK_DATA_UNAVAILABLE"
    NO_VENUE_FOR_ASSET_CLASS = "NO_VENUE_FOR_ASSET_CLASS"
    UNSUPPORTED_ASSET_CLASS = "UNSUPPORTED_ASSET_CLASS"
    MARKET_DATA_UNAVAILABLE = "MARKET_DATA_UNAVAILABLE"
    STALE_TICK = "STALE_TICK"
    INVALID_QUOTE = "INVALID_QUOTE"
    SPREAD_WIDENED = "SPREAD_WIDENED"
    INSUFFICIENT_MARGIN = "INSUFFICIENT_MARGIN"
    CORRELATION_TOO_HIGH = "CORRELATION_TOO_HIGH"
    RPM_NOT_AUTHORIZED = "RPM_NOT_AUTHORIZED"
    BROKER_REJECTED = "BROKER_REJECTED"
    BROKER_INSUFFICIENT_BUYING_POWER = "BROKER_INSUFFICIENT_BUYING_POWER"
    BROKER_UNAVAILABLE = "BROKER_UNAVAILABLE"
    BROKER_RATE_LIMITED = "BROKER_RATE_LIMITED"
    FILL_RATIO_TOO_LOW = "FILL_RATIO_TOO_LOW"
    GROUP_SLIPPAGE_EXCEEDED = "GROUP_SLIPPAGE_EXCEEDED"
    ORDER_TIMEOUT = "ORDER_TIMEOUT"
    # a venue answered one of our client order ids with an order we did not ask for (another
    # tenant's, or a venue fault): refused, never adopted; logged as exec.client_id_mismatch (ALERT)
    CLIENT_ORDER_ID_MISMATCH = "CLIENT_ORDER_ID_MISMATCH"
    # issue 12, accounts (backend/domain/accounts.py resolve_account). Over HTTP "not found" and
    # "not owned" are both answered ACCOUNT_NOT_OWNED (403) so account ids cannot be probed.
    ACCOUNT_NOT_FOUND = "ACCOUNT_NOT_FOUND"
    ACCOUNT_NOT_OWNED = "ACCOUNT_NOT_OWNED"
    ACCOUNT_CLOSED = "ACCOUNT_CLOSED"
    ACCOUNT_HALTED = "ACCOUNT_HALTED"
    ASSET_CLASS_NOT_ENABLED = "ASSET_CLASS_NOT_ENABLED"
    MEMBER_SUSPENDED = "MEMBER_SUSPENDED"  # tenants/{t}/members/{uid}.status == suspended
    # issue 13: a reduce-only state (operator, tenant or account) refused an order that would grow
    # a position
    REDUCE_ONLY = "REDUCE_ONLY"
    # issue 19 item 2: instruments from the venue's metadata
    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
    NOT_TRADABLE = "NOT_TRADABLE"
    # issue 15: order type / time in force the venue does not support for the asset class
    ORDER_TYPE_NOT_SUPPORTED = "ORDER_TYPE_NOT_SUPPORTED"
    # a venue's connection could not be built (credentials unavailable, connection missing)
    VENUE_UNAVAILABLE = "VENUE_UNAVAILABLE"
    # issue 15 item 3: a leg's stop_loss at or beyond its intended price (it would fire at once)
    STOP_PRICE_WRONG_SIDE = "STOP_PRICE_WRONG_SIDE"
    # a lot book (users/{uid}/tax_books/{symbol}) too full for an order that opens lots
    # (backend/execution/lot_capacity.py): refused before anything is sent
    LOT_BOOK_FULL = "LOT_BOOK_FULL"
    # an app-chosen id (intent document) the same user already traded under in another tenant: its
    # trade ids (history rows, lot ids) are per user (backend/execution/preflight.py check_trade_id)
    TRADE_ID_IN_USE = "TRADE_ID_IN_USE"


@dataclass(frozen=True)
class Rejection:
    """A coded, human-readable reason: ``DAILY_TRADE_LIMIT: count=50 limit=50``."""

    code: RejectCode
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.code.value}: {self.detail}" if self.detail else self.code.value

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code.value, "detail": self.detail, "text": str(self)}
