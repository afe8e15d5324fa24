"""What order management answers (backend/execution/order_management.py and order_replace.py).

``order_view`` is the API's view of one order record (decimals as exact strings); ``Outcome`` the
result of a cancel or replace; ``OrderNotFound``, ``OrderConflict`` (409) and ``VenueBusy`` the coded
refusals both paths raise (``backend/api/orders_api.py`` maps them to HTTP). ``ATTEMPTS``: how often
either path re-reads a record that moved under it. All are imported back into order_management.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Mapping

from backend.domain.money import ZERO, dec_str
from backend.domain.orders import BrokerError, BrokerErrorCode
from backend.ports.store import IntentStatus

ATTEMPTS = 4  # re-reads when the record moved under us (a fill folded by the sweeper meanwhile)


class OrderNotFound(Exception):
    """No order of the caller with this id (another user's record answers the same)."""


class OrderConflict(Exception):
    """The order is not in a state this action applies to (HTTP 409): ``code`` + message."""

    def __init__(self, code: str, message: str, view: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.code, self.message, self.view = code, message, view


class VenueBusy(Exception):
    """Retry later (HTTP 429/503 with Retry-After): the venue did not answer (``BROKER_UNAVAILABLE``)
    or is rate limiting, or a group's lease is held by another worker (``GROUP_BUSY``). Nothing is
    lost: what was persisted (a marker) stays and a retry (same Idempotency-Key) continues."""

    def __init__(self, code: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.code, self.message, self.retry_after = code, message, retry_after


def venue_busy(exc: BrokerError, message: str = "the venue did not answer; retry") -> VenueBusy:
    """A retryable ``BrokerError`` as the ``VenueBusy`` a management request answers."""
    code = "BROKER_RATE_LIMITED" if exc.code is BrokerErrorCode.RATE_LIMITED else "BROKER_UNAVAILABLE"
    return VenueBusy(code, message, exc.retry_after)


def lookup_by_client_id(venue: Any, client_order_id: str, message: str = "the venue did not answer; retry") -> Any:
    """The venue's order under ``client_order_id`` (None: it has none, or refused the lookup for good);
    a retryable failure is ``venue_busy``."""
    try:
        return venue.get_order_by_client_id(client_order_id)
    except BrokerError as exc:
        if exc.retryable:
            raise venue_busy(exc, message) from None
        return None



@dataclass(frozen=True)
class Outcome:
    """``status``: canceled, pending (the venue has not confirmed yet), replaced; ``replayed`` when
    the stored outcome of an earlier request is answered."""

    status: str
    view: Mapping[str, Any]
    replayed: bool = False


def _dec(value: Any) -> Decimal | None:
    return None if value in (None, "") else Decimal(str(value))


# --------------------------------------------------------------------------------------- views
def order_view(intent_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """The API's view of one order record (decimals as exact strings)."""
    intent = data.get("intent") or {}
    result = data.get("result") or {}
    replaced = list(data.get("replaced_orders") or [])
    filled = sum((_dec(o.get("filled_qty")) or ZERO for o in replaced), ZERO) + (_dec(result.get("filled_qty")) or ZERO)
    notional = sum(((_dec(o.get("filled_qty")) or ZERO) * (_dec(o.get("filled_avg_price")) or ZERO) for o in replaced),
                   ZERO) + (_dec(result.get("filled_qty")) or ZERO) * (_dec(result.get("filled_avg_price")) or ZERO)
    account = data.get("account") or {}
    working = data.get("status") == IntentStatus.PLACED.value and not data.get("order_final")
    return {
        "intent_id": intent_id, "uid": data.get("uid"), "tenant_id": data.get("tenant_id"),
        "account_id": account.get("account_id") or intent.get("broker_account_id"),
        "strategy_id": intent.get("strategy_id"), "symbol": intent.get("symbol"),
        "asset_class": intent.get("asset_class"), "side": intent.get("side"),
        "order_type": intent.get("order_type"), "time_in_force": intent.get("time_in_force"),
        "order_class": intent.get("order_class") or "simple", "qty": intent.get("qty"),
        "limit_price": intent.get("limit_price"), "stop_price": intent.get("stop_price"),
        "trail_price": intent.get("trail_price"), "trail_percent": intent.get("trail_percent"),
        "status": data.get("status"), "working": working, "order_status": result.get("order_status"),
        "filled_qty": dec_str(filled), "filled_avg_price": dec_str(notional / filled) if filled else None,
        "broker": data.get("broker") or result.get("broker"), "broker_order_id": data.get("broker_order_id"),
        "client_order_id": data.get("client_order_id"),
        "replaced_orders": [dict(o) for o in replaced],
        "cancel": dict(data["cancel"]) if isinstance(data.get("cancel"), Mapping) else None,
        "updated_at": data.get("updated_at"),
    }

