"""Pydantic models of the OANDA v20 responses this adapter reads (only the fields it uses).

Responses ignore fields they do not know (OANDA adds fields; a new one must never turn an accepted
order into an exception). Decimals arrive as JSON strings and become ``Decimal`` directly; a JSON
float is refused (no binary rounding on money). Request bodies are built by ``build_order_body``
from typed arguments, never from free dicts.
"""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from backend.domain.money import to_decimal


def _decimal(value: Any) -> Decimal:
    if isinstance(value, float):
        raise ValueError("OANDA sends decimals as strings; a JSON float is refused")
    return _plain(to_decimal(value, "oanda"))


def _plain(value: Decimal) -> Decimal:
    """``1.08510`` → ``1.0851``, ``100000`` stays ``100000`` (no exponent): venue strings carry
    display zeros; the domain compares and stores the number."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


def parse_time(value: Any) -> datetime:
    """RFC 3339 with up to nine fractional digits (``2024-01-05T14:30:00.123456789Z``) or UNIX seconds."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    text = str(value).strip()
    if text.replace(".", "", 1).isdigit():
        return datetime.fromtimestamp(float(text), tz=timezone.utc)
    text = text.replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits):]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


Dec = Annotated[Decimal, BeforeValidator(_decimal)]
Time = Annotated[datetime, BeforeValidator(parse_time)]


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class ClientExtensions(_Response):
    id: str | None = None
    tag: str | None = None
    comment: str | None = None


class Transaction(_Response):
    """Any transaction; the fields that matter per type are optional."""

    id: str
    type: str
    time: Time | None = None
    order_id: str | None = Field(None, alias="orderID")
    instrument: str | None = None
    units: Dec | None = None
    price: Dec | None = None
    full_vwap: Dec | None = Field(None, alias="fullVWAP")
    reason: str | None = None
    reject_reason: str | None = Field(None, alias="rejectReason")
    client_extensions: ClientExtensions | None = Field(None, alias="clientExtensions")
    client_order_id: str | None = Field(None, alias="clientOrderID")  # on ORDER_FILL / ORDER_CANCEL
    replaced_by_order_id: str | None = Field(None, alias="replacedByOrderID")  # ORDER_CANCEL of a replaced order

    @property
    def fill_price(self) -> Decimal | None:
        return self.full_vwap if self.full_vwap is not None else self.price


class OrderCreateResponse(_Response):
    order_create_transaction: Transaction = Field(alias="orderCreateTransaction")
    order_fill_transaction: Transaction | None = Field(None, alias="orderFillTransaction")
    order_cancel_transaction: Transaction | None = Field(None, alias="orderCancelTransaction")
    last_transaction_id: str | None = Field(None, alias="lastTransactionID")


class OrderReplaceResponse(_Response):
    """``PUT orders/{specifier}`` (201): the old order's cancel (reason CLIENT_REQUEST_REPLACED), the
    replacing order's create (``replacesOrderID``) and, when it filled or was canceled at once, its fill
    or ``replacingOrderCancelTransaction``."""

    order_cancel_transaction: Transaction | None = Field(None, alias="orderCancelTransaction")
    order_create_transaction: Transaction = Field(alias="orderCreateTransaction")
    order_fill_transaction: Transaction | None = Field(None, alias="orderFillTransaction")
    replacing_order_cancel_transaction: Transaction | None = Field(None, alias="replacingOrderCancelTransaction")
    last_transaction_id: str | None = Field(None, alias="lastTransactionID")


class ErrorBody(_Response):
    """4xx/5xx bodies: ``errorCode``/``errorMessage`` plus, for orders, the reject transaction."""

    error_code: str | None = Field(None, alias="errorCode")
    error_message: str | None = Field(None, alias="errorMessage")
    order_reject_transaction: Transaction | None = Field(None, alias="orderRejectTransaction")
    last_transaction_id: str | None = Field(None, alias="lastTransactionID")


class Order(_Response):
    id: str
    type: str
    state: Literal["PENDING", "FILLED", "TRIGGERED", "CANCELLED"] | str
    instrument: str | None = None
    units: Dec | None = None
    price: Dec | None = None
    time_in_force: str | None = Field(None, alias="timeInForce")
    create_time: Time | None = Field(None, alias="createTime")
    filled_time: Time | None = Field(None, alias="filledTime")
    cancelled_time: Time | None = Field(None, alias="cancelledTime")
    filling_transaction_id: str | None = Field(None, alias="fillingTransactionID")
    cancelling_transaction_id: str | None = Field(None, alias="cancellingTransactionID")
    client_extensions: ClientExtensions | None = Field(None, alias="clientExtensions")
    # issue 15: an entry's orders on fill and the trade its fill opened; a dependent order's trade
    take_profit_on_fill: dict[str, Any] | None = Field(None, alias="takeProfitOnFill")
    stop_loss_on_fill: dict[str, Any] | None = Field(None, alias="stopLossOnFill")
    trailing_stop_loss_on_fill: dict[str, Any] | None = Field(None, alias="trailingStopLossOnFill")
    trade_opened_id: str | None = Field(None, alias="tradeOpenedID")
    trade_id: str | None = Field(None, alias="tradeID")
    position_fill: str | None = Field(None, alias="positionFill")
    # issue 15 item 6: a cancel/replace links the two orders both ways
    replaces_order_id: str | None = Field(None, alias="replacesOrderID")
    replaced_by_order_id: str | None = Field(None, alias="replacedByOrderID")

    @property
    def has_orders_on_fill(self) -> bool:
        return any(x is not None for x in (self.take_profit_on_fill, self.stop_loss_on_fill,
                                           self.trailing_stop_loss_on_fill))


class Trade(_Response):
    """``GET trades/{id}``: a trade and its dependent orders (present while they exist) and, once it
    closed, the transactions that closed it."""

    id: str
    instrument: str | None = None
    price: Dec | None = None
    state: str | None = None
    initial_units: Dec | None = Field(None, alias="initialUnits")
    current_units: Dec | None = Field(None, alias="currentUnits")
    take_profit_order: Order | None = Field(None, alias="takeProfitOrder")
    stop_loss_order: Order | None = Field(None, alias="stopLossOrder")
    trailing_stop_loss_order: Order | None = Field(None, alias="trailingStopLossOrder")
    closing_transaction_ids: list[str] = Field(default_factory=list, alias="closingTransactionIDs")

    @property
    def dependent_orders(self) -> list[Order]:
        return [o for o in (self.take_profit_order, self.stop_loss_order, self.trailing_stop_loss_order)
                if o is not None]


class TradeResponse(_Response):
    trade: Trade
    last_transaction_id: str | None = Field(None, alias="lastTransactionID")


class OrderResponse(_Response):
    order: Order
    last_transaction_id: str | None = Field(None, alias="lastTransactionID")


class TransactionResponse(_Response):
    transaction: Transaction
    last_transaction_id: str | None = Field(None, alias="lastTransactionID")


class TransactionsResponse(_Response):
    transactions: list[Transaction] = []
    last_transaction_id: str | None = Field(None, alias="lastTransactionID")


class CancelResponse(_Response):
    order_cancel_transaction: Transaction | None = Field(None, alias="orderCancelTransaction")
    last_transaction_id: str | None = Field(None, alias="lastTransactionID")


class PriceBucket(_Response):
    price: Dec
    liquidity: Dec | None = None


class Price(_Response):
    instrument: str
    time: Time
    tradeable: bool = True
    bids: list[PriceBucket] = []
    asks: list[PriceBucket] = []


class PricingResponse(_Response):
    prices: list[Price] = []


class PositionSide(_Response):
    units: Dec
    average_price: Dec | None = Field(None, alias="averagePrice")


class OandaPosition(_Response):
    instrument: str
    long: PositionSide
    short: PositionSide


class PositionsResponse(_Response):
    positions: list[OandaPosition] = []
    last_transaction_id: str | None = Field(None, alias="lastTransactionID")


class AccountSummary(_Response):
    currency: str
    balance: Dec
    nav: Dec = Field(alias="NAV")
    margin_available: Dec = Field(alias="marginAvailable")


class AccountSummaryResponse(_Response):
    account: AccountSummary
    last_transaction_id: str | None = Field(None, alias="lastTransactionID")


class CandleData(_Response):
    o: Dec
    h: Dec
    l: Dec  # noqa: E741 - OANDA's field name
    c: Dec


class Candle(_Response):
    time: Time
    complete: bool = True
    mid: CandleData | None = None


class CandlesResponse(_Response):
    instrument: str | None = None
    granularity: str | None = None
    candles: list[Candle] = []


class Instrument(_Response):
    name: str
    type: str = "CURRENCY"
    pip_location: int = Field(alias="pipLocation")
    display_precision: int = Field(alias="displayPrecision")
    trade_units_precision: int = Field(alias="tradeUnitsPrecision")
    minimum_trade_size: Dec = Field(alias="minimumTradeSize")
    maximum_order_units: Dec | None = Field(None, alias="maximumOrderUnits")
    margin_rate: Dec = Field(alias="marginRate")


class InstrumentsResponse(_Response):
    instruments: list[Instrument] = []
    last_transaction_id: str | None = Field(None, alias="lastTransactionID")


ORDER_TYPES = ("MARKET", "LIMIT", "STOP")
TIME_IN_FORCE = ("FOK", "IOC", "GTC", "GFD", "GTD")
POSITION_FILL = ("DEFAULT", "REDUCE_FIRST", "REDUCE_ONLY", "OPEN_ONLY")


def build_order_body(*, order_type: str, instrument: str, units: str, time_in_force: str, client_id: str,
                     price: str | None = None, price_bound: str | None = None, position_fill: str = "DEFAULT",
                     tag: str | None = None, comment: str | None = None,
                     take_profit_price: str | None = None, stop_loss_price: str | None = None,
                     trailing_stop_distance: str | None = None) -> dict[str, Any]:
    """The ``{"order": {...}}`` body of ``POST /v3/accounts/{id}/orders``; refuses what OANDA would."""
    if order_type not in ORDER_TYPES:
        raise ValueError(f"order type must be one of {ORDER_TYPES}, got {order_type!r}")
    if time_in_force not in TIME_IN_FORCE:
        raise ValueError(f"timeInForce must be one of {TIME_IN_FORCE}, got {time_in_force!r}")
    if order_type == "MARKET" and time_in_force not in ("FOK", "IOC"):
        raise ValueError("a MARKET order takes timeInForce FOK or IOC")
    if position_fill not in POSITION_FILL:
        raise ValueError(f"positionFill must be one of {POSITION_FILL}, got {position_fill!r}")
    if (order_type in ("LIMIT", "STOP")) != (price is not None):
        raise ValueError("price is required for LIMIT and STOP orders and only for them")
    if stop_loss_price is not None and trailing_stop_distance is not None:
        raise ValueError("one stop loss on fill: stopLossOnFill or trailingStopLossOnFill")
    if not client_id or len(client_id) > 128:
        raise ValueError("clientExtensions.id must be 1..128 characters")
    extensions: dict[str, str] = {"id": client_id}
    if tag:
        extensions["tag"] = tag
    if comment:
        extensions["comment"] = comment
    order: dict[str, Any] = {"type": order_type, "instrument": instrument, "units": units,
                             "timeInForce": time_in_force, "positionFill": position_fill,
                             "clientExtensions": extensions}
    if price is not None:
        order["price"] = price
    if price_bound is not None:
        order["priceBound"] = price_bound
    # protective orders OANDA creates on the trade once the order fills (issue 15); GTC: they live
    # with the trade, not with the day
    if take_profit_price is not None:
        order["takeProfitOnFill"] = {"price": take_profit_price, "timeInForce": "GTC"}
    if stop_loss_price is not None:
        order["stopLossOnFill"] = {"price": stop_loss_price, "timeInForce": "GTC"}
    if trailing_stop_distance is not None:
        order["trailingStopLossOnFill"] = {"distance": trailing_stop_distance, "timeInForce": "GTC"}
    return {"order": order}
