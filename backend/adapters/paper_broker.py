"""The embedded paper broker: ``BrokerPort`` over a ``SimulatedVenue`` (the default for local runs and demos).

``PaperBroker()`` trades every asset class on ``backend/config/scenarios/default.json``: tight
spreads, fresh quotes, immediate fills. Pass another scenario (a name such as ``"partial_fills"``,
a path, a dict or a ``Scenario``) for partial fills, rejections, latency or outages, and a
``ManualClock`` for reproducible runs. ``submit_order`` is idempotent by ``client_order_id``.

Accounts: the venue keeps one book per account (cash, positions, orders, client order ids), like a
broker serving many end users. ``PaperBroker(account_id="acct-1", venue=shared)`` trades only that
account's book of the shared venue (opened on first use, starting from the scenario's account);
without ``account_id`` it trades the venue's default account, as before.

Instruments: ``instrument(symbol, asset_class)`` answers the scenario's listing (``symbols``,
``instruments``, ``instruments_from``; see ``sim/scenario.py``); a symbol it does not list is None,
which ``backend/execution/instruments.py`` refuses ``UNKNOWN_SYMBOL`` before anything is written.
Quotes and fills still work for any symbol (tests and the sim's own callers rely on that).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from backend.adapters.sim import DEFAULT_ACCOUNT_ID, AccountSpec, LegRequest, MlegRequest, Scenario, SimulatedVenue
from backend.adapters.venue_common import AssetClassGate
from backend.domain.assets import AssetClass, AssetSpecRegistry, default_registry, normalize_symbol, occ_underlying
from backend.domain.capabilities import check_capability, sent_time_in_force
from backend.domain.clock import Clock
from backend.domain.errors import InvalidInput
from backend.domain.instruments import InstrumentInfo
from backend.domain.orders import (
    Account,
    AssetSpecMixin,
    BrokerError,
    BrokerErrorCode,
    BrokerOrder,
    OrderRequest,
    OrderSide,
    OrderType,
    Position,
    Quote,
    ReplaceRequest,
    VenueActivities,
    VenueFill,
    quote_currency,
)


class PaperBroker(AssetClassGate, AssetSpecMixin):
    """``seed`` overrides the scenario's seed (None keeps it; ``default.json`` has 7); ``supported``
    limits the asset classes (all by default); ``venue`` shares an existing venue (then ``scenario``,
    ``seed`` and ``clock`` are ignored); ``account_id`` picks the venue account this broker trades
    (default: the venue's default account), opened with ``account_spec`` if it does not exist yet."""

    name = "paper"
    unsupported_message = "the paper broker is not set up for {asset_class}"

    def __init__(self, scenario: Scenario | Mapping[str, Any] | str | Path | None = None, *,
                 seed: int | None = None, clock: Clock | None = None, specs: AssetSpecRegistry | None = None,
                 supported: Iterable[AssetClass | str] | None = None, venue: SimulatedVenue | None = None,
                 account_id: str | None = None, account_spec: AccountSpec | None = None):
        self.specs = specs or (venue.specs if venue is not None else default_registry())
        self.venue = venue or SimulatedVenue(scenario, clock=clock, specs=self.specs, seed=seed)
        self.account_id = self.venue.open_account(account_id or DEFAULT_ACCOUNT_ID, account_spec)
        self.supported = frozenset(AssetClass) if supported is None else frozenset(
            AssetClass.parse(klass) for klass in supported)

    def for_account(self, account_id: str, account_spec: AccountSpec | None = None) -> "PaperBroker":
        """A paper broker for another account of the same venue (same market, clock and asset classes)."""
        return PaperBroker(venue=self.venue, specs=self.specs, supported=self.supported, account_id=account_id,
                           account_spec=account_spec)

    def __repr__(self) -> str:
        return f"PaperBroker(account_id={self.account_id!r})"

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        self._require(request.asset_class)
        sent = replace(request, time_in_force=sent_time_in_force(request.asset_class, request.time_in_force))
        refused = check_capability(self.name, request.asset_class, sent)  # what live takes, never more
        if refused is not None:
            raise BrokerError(BrokerErrorCode.ORDER_TYPE_NOT_SUPPORTED, refused.detail)
        with _coded():
            return self.venue.submit_order(request, on_duplicate="return",
                                           account_id=self.account_id).to_broker_order()

    def submit_multileg_options(self, client_order_id: str, legs: Sequence[tuple[str, OrderSide | str, int]],
                                qty: Decimal | int, order_type: OrderType | str = OrderType.MARKET,
                                limit_price: Decimal | None = None, time_in_force: str = "day") -> BrokerOrder:
        """One mleg order of 2–4 ``(occ_symbol, side, ratio_qty)`` legs on one underlying, filled together;
        ``limit_price`` is the net per spread (positive debit). Idempotent by ``client_order_id``."""
        self._require(AssetClass.OPTIONS)
        try:
            kind = OrderType(order_type.value if isinstance(order_type, OrderType) else str(order_type).lower())
            requested = tuple(LegRequest(symbol=normalize_symbol(symbol), ratio_qty=int(ratio),
                                         side=side if isinstance(side, OrderSide) else OrderSide(str(side).lower()))
                              for symbol, side, ratio in legs)
            request = MlegRequest(client_order_id=client_order_id, qty=Decimal(qty), legs=requested,
                                  order_type=kind, limit_price=None if limit_price is None else Decimal(limit_price),
                                  time_in_force=time_in_force)
            if len({occ_underlying(leg.symbol) for leg in requested}) > 1:
                raise ValueError("mleg legs must share one underlying")
        except (ValueError, TypeError) as exc:
            raise BrokerError(BrokerErrorCode.INVALID, f"MLEG_INVALID: {exc}") from None
        with _coded():
            return self.venue.submit_mleg(request, on_duplicate="return", account_id=self.account_id).to_broker_order()

    def get_order(self, broker_order_id: str) -> BrokerOrder:
        with _coded():
            return self.venue.get_order(broker_order_id, account_id=self.account_id).to_broker_order()

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        with _coded():
            order = self.venue.get_order_by_client_id(client_order_id, account_id=self.account_id)
        return order.to_broker_order() if order is not None else None

    def replace_order(self, broker_order_id: str, request: ReplaceRequest) -> BrokerOrder:
        """Cancel the working order and place its replacement (new client id, linked both ways)."""
        with _coded():
            return self.venue.replace_order(broker_order_id, request, account_id=self.account_id).to_broker_order()

    def cancel_order(self, broker_order_id: str) -> None:
        """Cancel the unfilled remainder; canceling a final order changes nothing."""
        with _coded():
            self.venue.cancel_order(broker_order_id, account_id=self.account_id)

    def close_position(self, symbol: str, asset_class: AssetClass) -> BrokerOrder | None:
        klass = self._require(asset_class)
        with _coded():
            order = self.venue.close_position(symbol, klass, account_id=self.account_id)
        return order.to_broker_order() if order is not None else None

    def get_positions(self) -> Sequence[Position]:
        with _coded():
            return self.venue.get_positions(account_id=self.account_id)

    def get_account(self) -> Account:
        with _coded():
            return self.venue.get_account(account_id=self.account_id)

    def get_latest_quote(self, symbol: str, asset_class: AssetClass) -> Quote:
        klass = self._require(asset_class)
        with _coded():
            return self.venue.get_latest_quote(symbol, klass)

    def get_recent_closes(self, symbol: str, asset_class: AssetClass, limit: int) -> Sequence[Decimal]:
        klass = self._require(asset_class)
        if limit < 0:
            raise BrokerError(BrokerErrorCode.INVALID, f"limit must be >= 0, got {limit}")
        with _coded():
            return self.venue.get_recent_closes(symbol, limit, klass)

    def get_activities(self, day: date) -> VenueActivities:
        """This account's fills of the UTC ``day`` as the simulated venue recorded them (reconciliation;
        the venue charges no fees). Reads only: nothing progresses."""
        start = datetime.combine(day, time.min, tzinfo=timezone.utc)
        end = start + timedelta(days=1)
        fills = []
        for fill in self.venue.fills(self.account_id):
            when = fill.timestamp if fill.timestamp.tzinfo else fill.timestamp.replace(tzinfo=timezone.utc)
            if not start <= when < end:
                continue
            fills.append(VenueFill(
                fill_id=fill.fill_id, symbol=fill.symbol, side=fill.side, qty=fill.qty, price=fill.price, time=when,
                currency=quote_currency(fill.symbol), multiplier=self.specs.spec_for(fill.symbol).multiplier,
                order_id=fill.broker_order_id, client_order_id=fill.client_order_id))
        return VenueActivities(fills=tuple(fills))

    # -- instruments (issue 19 item 2): the scenario's listed symbols; any other symbol is unknown

    @property
    def instrument_classes(self) -> frozenset[AssetClass]:
        return self.supported

    def instrument(self, symbol: str, asset_class: AssetClass) -> InstrumentInfo | None:
        """The paper venue's metadata for ``symbol`` (None: the scenario does not list it)."""
        klass = self._require(asset_class)
        with _coded():
            return self.venue.instrument(symbol, klass)


@contextmanager
def _coded() -> Iterator[None]:
    """Malformed input (a bad symbol) surfaces as a coded BrokerError, like every other failure."""
    try:
        yield
    except InvalidInput as exc:
        raise BrokerError(BrokerErrorCode.INVALID, str(exc)) from None
