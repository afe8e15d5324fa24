"""The instrument check every order passes before it is written or sent (issue 19 item 2).

``check_instrument(venue, symbol, asset_class, qty, limit_price)`` asks the venue that trades the
class for its own metadata (``InstrumentProvider``: Alpaca's assets, OANDA's instruments, the paper
venue's scenario) and answers a coded ``Rejection`` or ``None``:

- ``UNKNOWN_SYMBOL``: the venue does not list the symbol (``ZZZZQ``, ``DOGE/USD`` on a venue
  without it), or the venue says the symbol's form is not one it trades.
- ``NOT_TRADABLE``: listed, but the venue says it cannot be traded now (inactive, halted, or a
  scenario's ``"tradable": false``).
- ``BROKER_REJECTED`` with the rule in the detail (``lot step``, ``minimum``, ``tick``): the
  quantity is not a multiple of the venue's lot step or is under its minimum, or the limit price
  is not on the venue's tick. Nothing is rounded: the caller sends a size the venue takes.
- Metadata that cannot be read now fails closed: ``BROKER_UNAVAILABLE`` (venue down, timeout,
  unreadable reply) or ``BROKER_RATE_LIMITED``; any other coded venue refusal is its
  ``BrokerError.to_rejection()`` (``BROKER_REJECTED`` for auth refusals).

A venue without the capability (or without metadata for the class, ``instrument_classes``) is not
checked here: the spec table's rules (``backend/config/asset_specs.json``, applied when the intent
is parsed) stand alone, as before. Where the venue's tick or lot step differs from the spec table
the venue's governs; the difference is logged once per venue source and symbol
(``exec.instrument_spec_mismatch``).

``venue`` may be a ``BrokerRouter`` (it passes the capability through to the class's route), a
``GuardedVenue`` or a broker. Pure apart from that one venue read and the log line.
"""
from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

from backend.domain.assets import AssetClass, AssetSpecRegistry, default_registry
from backend.domain.errors import InvalidInput, RejectCode, Rejection
from backend.domain.instruments import InstrumentInfo, InstrumentProvider
from backend.domain.orders import BrokerError, BrokerErrorCode
from backend.logs import log_event

_UNKNOWN_CODES = frozenset({BrokerErrorCode.NOT_FOUND, BrokerErrorCode.INVALID})

_logged_lock = threading.Lock()
_LOGGED: set[tuple[str, str, tuple[str, ...]]] = set()
_LOGGED_MAX = 10_000


def instrument_provider(venue: Any, asset_class: AssetClass) -> Any | None:
    """``venue`` when it offers instrument metadata for ``asset_class``, else None."""
    if not isinstance(venue, InstrumentProvider):
        return None
    try:
        classes = venue.instrument_classes
    except AttributeError:
        return None
    return venue if asset_class in classes else None


def check_instrument(venue: Any, symbol: str, asset_class: AssetClass | str, qty: Decimal,
                     limit_price: Decimal | None, *, specs: AssetSpecRegistry | None = None) -> Rejection | None:
    """The venue's verdict on this order's instrument, size and limit price; see the module docstring."""
    klass = AssetClass.parse(asset_class)
    provider = instrument_provider(venue, klass)
    if provider is None:
        return None
    try:
        info = provider.instrument(symbol, klass)
    except BrokerError as error:
        return _metadata_failure(symbol, klass, error)
    if info is None:
        return Rejection(RejectCode.UNKNOWN_SYMBOL,
                         f"{symbol} ({klass.value}) is not listed by {_venue_name(venue, klass)}")
    if not info.tradable:
        status = f", status {info.status}" if info.status else ""
        return Rejection(RejectCode.NOT_TRADABLE, f"{info.symbol} is listed by {info.source} but not tradable{status}")
    _log_spec_differences(info, specs or getattr(provider, "specs", None) or default_registry())
    problem = info.qty_problem(Decimal(qty))
    if problem is None and limit_price is not None:
        problem = info.price_problem(Decimal(limit_price))
    if problem is not None:
        return Rejection(RejectCode.BROKER_REJECTED, f"{problem} ({info.source})")
    return None


def _metadata_failure(symbol: str, klass: AssetClass, error: BrokerError) -> Rejection:
    """Fail closed: a venue that cannot answer now refuses the order with a coded reason."""
    if error.code in _UNKNOWN_CODES:
        return Rejection(RejectCode.UNKNOWN_SYMBOL, f"{symbol} ({klass.value}): {error.message or error.code.value}")
    rejection = error.to_rejection()
    return Rejection(rejection.code, f"instrument metadata for {symbol} unavailable: {rejection.detail}")


def _venue_name(venue: Any, klass: AssetClass) -> str:
    route = getattr(venue, "route", None)
    if callable(route):  # a BrokerRouter: name the class's venue
        try:
            venue = route(klass)
        except InvalidInput:
            pass
    return str(getattr(venue, "name", type(venue).__name__))


def _log_spec_differences(info: InstrumentInfo, specs: AssetSpecRegistry) -> None:
    try:
        spec = specs.spec_for(info.symbol, info.asset_class)
    except (InvalidInput, KeyError):
        return
    differences = tuple(info.spec_differences(spec))
    if not differences:
        return
    marker = (info.source, info.symbol, differences)
    with _logged_lock:
        if marker in _LOGGED:
            return
        if len(_LOGGED) >= _LOGGED_MAX:
            _LOGGED.clear()
        _LOGGED.add(marker)
    log_event("exec.instrument_spec_mismatch", severity="WARNING", symbol=info.symbol,
              asset_class=info.asset_class.value, source=info.source, differences=list(differences),
              note="the venue's values govern this symbol's orders")


def forget_logged_differences() -> None:
    """Forget which differences were logged (tests)."""
    with _logged_lock:
        _LOGGED.clear()


__all__ = ["check_instrument", "forget_logged_differences", "instrument_provider"]
