"""Request and response models of the HTTP API (pydantic v2).

Inputs refuse what they do not know (``extra="forbid"``: an unknown field is a 400 naming it) and
coerce nothing silently: strings must be strings, booleans booleans, a leg direction exactly
``1`` or ``-1``. Numbers that are money or size may be JSON numbers or decimal strings; the API
parses JSON with ``parse_float=Decimal`` so no binary float ever exists, and every such value
goes through ``backend.domain.money.to_decimal`` (NaN, infinities, booleans refused). Outputs
carry every decimal as a string of one representation, with a precision per kind of field
(``backend.domain.wire``, applied to every body by ``ApiApp.handle``; the ``*Out`` types below
document it in the OpenAPI document).

The models only check shape. What a symbol, lot size or tick means is decided by the core
(``OrderIntent``, the group executor), which raises ``InvalidInput`` naming the field.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

from backend.domain.assets import resolve_asset_class
from backend.domain import ids
from backend.domain.errors import InvalidInput
from backend.domain.group_rules import MAX_LEGS, MIN_LEGS
from backend.domain.ids import pydantic_check
from backend.domain.money import dec_str, to_decimal
from backend.domain.wire import DESCRIPTIONS, RESPONSE_DECIMAL_PATTERN

ID_PATTERN = ids.ID.json_pattern  # the one id rule (backend.domain.ids); reserved names refused by its validator
DECIMAL_PATTERN = r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$"
# Far beyond any real order, small enough that no Decimal context operation can overflow.
_MAX_ADJUSTED_EXPONENT = 15
_MIN_EXPONENT = -18


class _Input(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True, str_strip_whitespace=False)


class _Output(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="forbid")


# --------------------------------------------------------------------------------------- types


def _decimal(minimum: Decimal | None, exclusive: bool, maximum: Decimal | None):
    def parse(value: Any) -> Decimal:
        if isinstance(value, (dict, list)):
            raise ValueError(f"expected a number, got {'an object' if isinstance(value, dict) else 'an array'}")
        try:
            dec = to_decimal(value, "value")
        except InvalidInput as exc:
            raise ValueError(exc.reason) from None
        if dec.is_zero():
            dec = abs(dec)  # -0 is 0
        if not dec.is_zero() and (dec.adjusted() > _MAX_ADJUSTED_EXPONENT or dec.as_tuple().exponent < _MIN_EXPONENT):
            raise ValueError(f"out of range: at most {_MAX_ADJUSTED_EXPONENT + 1} integer digits and "
                             f"{-_MIN_EXPONENT} decimal places")
        if minimum is not None and (dec <= minimum if exclusive else dec < minimum):
            raise ValueError(f"must be {'>' if exclusive else '>='} {minimum}, got {dec_str(dec)}")
        if maximum is not None and dec > maximum:
            raise ValueError(f"must be <= {maximum}, got {dec_str(dec)}")
        return dec

    number: dict[str, Any] = {"type": "number"}
    if minimum is not None:
        number["exclusiveMinimum" if exclusive else "minimum"] = float(minimum) if minimum % 1 else int(minimum)
    if maximum is not None:
        number["maximum"] = float(maximum) if maximum % 1 else int(maximum)
    bound = "" if minimum is None else f" ({'>' if exclusive else '>='} {minimum}" + (
        f", <= {maximum})" if maximum is not None else ")")
    schema_in = {"anyOf": [{"type": "string", "pattern": DECIMAL_PATTERN}, number],
                 "description": f"A decimal as a JSON number or a string{bound}."}
    schema_out = {"type": "string", "pattern": DECIMAL_PATTERN, "description": "An exact decimal string."}
    return Annotated[Decimal, BeforeValidator(parse), PlainSerializer(dec_str, return_type=str, when_used="json"),
                     WithJsonSchema(schema_in, mode="validation"), WithJsonSchema(schema_out, mode="serialization")]


PositiveDecimal = _decimal(Decimal(0), True, None)
NonNegativeDecimal = _decimal(Decimal(0), False, None)
Fraction = _decimal(Decimal(0), False, Decimal(1))
AnyDecimal = _decimal(None, False, None)

Id = Annotated[str, Field(pattern=ID_PATTERN, description="1-100 characters of A-Z a-z 0-9 _ -, not of the form __…__ "
                                                         "(reserved by Firestore)"),
               AfterValidator(pydantic_check(ids.ID))]
Symbol = Annotated[str, Field(min_length=1, max_length=64, description="Instrument symbol, e.g. AAPL, BTC/USD, "
                                                                       "EUR/USD, an OCC option symbol.")]


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


AssetClassName = Annotated[
    Literal["EQUITY", "FOREX", "FX", "CRYPTO", "OPTIONS", "COMMODITY"], BeforeValidator(_upper),
    Field(description="Asset class (case-insensitive; FX is read as FOREX).")]


def _class_of_symbol(value: Any, info: ValidationInfo) -> Any:
    """A given asset class must not contradict the symbol (``BTC/USD`` given as EQUITY). An unusable
    symbol is left to its own field's error."""
    symbol = info.data.get("symbol")
    if value is None or not isinstance(symbol, str):
        return value
    try:
        resolve_asset_class(symbol, value)
    except InvalidInput as exc:
        if exc.field == "asset_class":
            raise ValueError(exc.reason) from None
    return value


_CLASS_DOC = ("Asset class (case-insensitive; FX is read as FOREX). Omitted: detected from the symbol (BTC/USD "
              "CRYPTO, EUR/USD FOREX, XAU/USD and GC=F COMMODITY, an OCC symbol OPTIONS, a plain ticker EQUITY). "
              "A class the symbol's form contradicts is a 400.")
SymbolAssetClass = Annotated[AssetClassName | None, AfterValidator(_class_of_symbol), Field(description=_CLASS_DOC)]
Side = Annotated[Literal["buy", "sell"], BeforeValidator(_lower)]
OrderTypeName = Annotated[Literal["market", "limit", "stop", "stop_limit", "trailing_stop"], BeforeValidator(_lower)]
TimeInForceName = Annotated[Literal["day", "gtc", "ioc", "fok", "opg", "cls"], BeforeValidator(_lower)]
OrderClassName = Annotated[Literal["simple", "bracket", "oto", "oco"], BeforeValidator(_lower)]
SignalTypeName = Annotated[Literal["BUY", "SELL", "WAIT"], BeforeValidator(_upper)]
WideSpreadName = Annotated[Literal["wait", "limit_at_touch", "limit_at_mid"], BeforeValidator(_lower)]


def _direction(value: Any) -> int:
    if type(value) is not int or value not in (1, -1):  # noqa: E721 - bool and 1.0 are refused on purpose
        raise ValueError(f"must be the integer 1 (buy) or -1 (sell), got {value!r}")
    return value


Direction = Annotated[int, BeforeValidator(_direction),
                      WithJsonSchema({"type": "integer", "enum": [1, -1],
                                      "description": "1 = buy (long), -1 = sell (short)."})]

_METADATA_KEY = ids.METADATA_KEY.pattern
_METADATA_MAX_ITEMS = 32


def _metadata(value: Any) -> Any:
    """Scalars only (string <= 500 chars, integer, boolean, null), at most 32 keys; no float."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError("must be an object")
    if len(value) > _METADATA_MAX_ITEMS:
        raise ValueError(f"at most {_METADATA_MAX_ITEMS} keys")
    for key, item in value.items():
        if not ids.METADATA_KEY.is_valid(key):
            raise ValueError(f"keys are {ids.METADATA_KEY.description}, got {str(key)[:70]!r}")
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, int):
            if abs(item) > 2**53:
                raise ValueError(f"{key}: integer out of range")
            continue
        if isinstance(item, str):
            if len(item) > 500:
                raise ValueError(f"{key}: strings are at most 500 characters")
            continue
        raise ValueError(f"{key}: values must be a string, an integer, a boolean or null")
    return dict(value)


Metadata = Annotated[
    dict[str, Any] | None, BeforeValidator(_metadata),
    WithJsonSchema({"anyOf": [{"type": "object", "maxProperties": _METADATA_MAX_ITEMS,
                               "propertyNames": {"pattern": f"^{_METADATA_KEY}$"},
                               "additionalProperties": {"anyOf": [{"type": "string", "maxLength": 500},
                                                                  {"type": "integer"}, {"type": "boolean"},
                                                                  {"type": "null"}]}},
                              {"type": "null"}],
                    "description": "Free-form scalars stored with the intent. tenant_id / uid, when present, "
                                   "must be the caller's."})]


# ----------------------------------------------------------------------------------- requests


class TakeProfitBody(_Input):
    """A take-profit leg: a limit order on the other side."""

    limit_price: PositiveDecimal


class StopLossBody(_Input):
    """A stop-loss leg: ``stop_price`` (+ ``limit_price`` for a stop-limit), or ``trail_price`` (a
    trailing stop on fill, OANDA)."""

    stop_price: PositiveDecimal | None = None
    limit_price: PositiveDecimal | None = None
    trail_price: PositiveDecimal | None = None

    @model_validator(mode="after")
    def _one_stop(self) -> "StopLossBody":
        if (self.stop_price is None) == (self.trail_price is None):
            raise ValueError("stop_price: exactly one of stop_price and trail_price")
        if self.limit_price is not None and self.stop_price is None:
            raise ValueError("limit_price: needs stop_price")
        return self

    def to_mapping(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class ExecuteRequest(_Input):
    """POST /execute: one order intent (seed 001)."""

    strategy_id: Id
    broker_account_id: Id | None = Field(None, description="The account to trade: an account id of the tenant that the caller owns; omitted = the caller's default account. Another user's (or an unknown) id is 403 ACCOUNT_NOT_OWNED; closed/halted/class not enabled is 400.")
    symbol: Symbol
    side: Side
    qty: PositiveDecimal
    asset_class: SymbolAssetClass = None
    order_type: OrderTypeName = "market"
    limit_price: PositiveDecimal | None = Field(None, description="Required for limit orders, refused otherwise.")
    estimated_slippage: Fraction | None = Field(None, description="Pre-computed slippage share (0.0005 = 0.05%).")
    intent_id: Id | None = Field(None, description="Client idempotency id; prefer the Idempotency-Key header.")
    metadata: Metadata = None

    # issue 15: order types, time in force and protective legs held at the venue. Which venue and
    # asset class take which combination: backend/domain/capabilities.py (ORDER_TYPE_NOT_SUPPORTED).
    time_in_force: TimeInForceName | None = Field(
        None, description="day, gtc, ioc, fok, opg or cls where the venue takes it; omitted: gtc for crypto, "
                          "day otherwise.")
    stop_price: PositiveDecimal | None = Field(None, description="Required for stop and stop_limit orders, "
                                                                 "refused otherwise; on the asset's tick.")
    trail_price: PositiveDecimal | None = Field(None, description="trailing_stop: the trail in price units "
                                                                  "(exactly one of trail_price, trail_percent).")
    trail_percent: PositiveDecimal | None = Field(None, description="trailing_stop: the trail in percent "
                                                                    "(1.5 = 1.5%), below 100.")
    order_class: OrderClassName | None = Field(
        None, description="simple, bracket (take_profit + stop_loss), oto (one of them) or oco (an exit: a limit "
                          "order whose limit is take_profit.limit_price, with a stop_loss); omitted: bracket with "
                          "both legs, oto with one, simple with none.")
    take_profit: TakeProfitBody | None = None
    stop_loss: StopLossBody | None = None
    # issue 15 item 5 (backend/execution/wide_spread.py): what a spread too wide for the cost check does
    wide_spread: WideSpreadName = Field(
        "wait", description="A market order whose spread fails the cost check: wait (downgraded, nothing sent), "
                            "limit_at_touch (a passive limit at the bid for a buy, the ask for a sell) or "
                            "limit_at_mid (at the mid, rounded to the tick away from the far side), canceled "
                            "after limit_timeout_seconds; simple market orders with time_in_force day/gtc only.")
    limit_timeout_seconds: Annotated[int, Field(ge=1, le=604800, strict=True)] | None = Field(
        None, description="Required with wide_spread limit_at_touch / limit_at_mid: the sweeper cancels the "
                          "limit this many seconds after it was placed (fills before are kept).")

    @model_validator(mode="after")
    def _limit_needs_price(self) -> "ExecuteRequest":
        from backend.domain.orders import OrderClass, OrderType, check_order_prices

        klass = OrderClass(self.order_class) if self.order_class is not None else OrderClass.SIMPLE
        problem = check_order_prices(OrderType(self.order_type), self.limit_price, self.stop_price,
                                     self.trail_price, self.trail_percent, klass)
        if problem is not None:
            raise ValueError(f"{problem[0]}: {problem[1]}")
        return self


class LegStopLossRequest(_Input):
    """A leg's protective stop (issue 15 item 3), placed at the venue once the whole group is FILLED."""

    stop_price: PositiveDecimal = Field(description="A multiple of the instrument's tick size (never rounded), below "
                                                    "the leg's intended price for a long (direction 1), above it for "
                                                    "a short; else the group is refused (STOP_PRICE_WRONG_SIDE).")


class LegRequest(_Input):
    leg_id: Id
    symbol: Symbol
    direction: Direction
    units: PositiveDecimal
    asset_class: SymbolAssetClass = None
    stop_loss: LegStopLossRequest | None = Field(
        None, description="Optional: once the group is FILLED, one stop order for the leg's filled units on the "
                          "opposite side (gtc), where the venue and class take stop orders (else recorded as "
                          "refused with ORDER_TYPE_NOT_SUPPORTED; the group stays FILLED). Never on a partial, "
                          "rejected or rolled-back group.")

    def to_engine_leg(self) -> dict[str, Any]:
        """The leg as the engine takes it; an omitted class is the symbol's (so a replay compares equal)."""
        leg = self.model_dump()
        if leg["stop_loss"] is None:
            del leg["stop_loss"]  # absent, as before stops existed (a replay compares equal)
        if leg["asset_class"] is None:
            try:
                leg["asset_class"] = resolve_asset_class(self.symbol).value
            except InvalidInput:
                pass  # an unusable symbol: the core names it
        return leg


class MultiLegRequest(_Input):
    """POST /execute/multi-leg: the request of seed 000, exactly."""

    strategy_id: Id
    legs: list[LegRequest] = Field(min_length=MIN_LEGS, max_length=MAX_LEGS)
    broker_account_id: Id | None = Field(None, description="The account the whole group trades: an account id "
                                                           "of the tenant that the caller owns; omitted = the "
                                                           "caller's default account. Every leg's asset class must "
                                                           "be enabled on it.")
    rpm_output: dict[str, Any] = Field(
        description="The risk/portfolio manager's authorization for this group, e.g. {\"decision_id\": \"rpm-42\", "
                    "\"approved\": true, \"expires_at\": \"2024-12-22T10:09:00+00:00\", \"approved_legs\": "
                    "{\"leg_001\": \"100000\"}}; checked by the group executor (RPM_NOT_AUTHORIZED).")
    max_group_slippage_pips: NonNegativeDecimal
    allow_partial_fills: StrictBool
    execution_priority: list[Id] | None = Field(
        None, description="Optional submission order as leg ids (a permutation of the legs); "
                          "default: shorts before longs.")

    @model_validator(mode="after")
    def _unique_legs(self) -> "MultiLegRequest":
        ids = [leg.leg_id for leg in self.legs]
        if len(set(ids)) != len(ids):
            raise ValueError("legs: leg_id values must be unique")
        if self.execution_priority is not None and sorted(self.execution_priority) != sorted(ids):
            raise ValueError("execution_priority: must list every leg_id exactly once")
        return self

    def to_engine_request(self) -> dict[str, Any]:
        """The mapping ``engine.execute_group`` takes (Decimals kept, absent options left out)."""
        body: dict[str, Any] = {
            "strategy_id": self.strategy_id,
            "legs": [leg.to_engine_leg() for leg in self.legs],
            "rpm_output": _exact_strings(self.rpm_output),
            "max_group_slippage_pips": self.max_group_slippage_pips,
            "allow_partial_fills": self.allow_partial_fills,
        }
        if self.execution_priority is not None:
            body["execution_priority"] = list(self.execution_priority)
        if self.broker_account_id is not None:
            body["broker_account_id"] = self.broker_account_id
        return body


def _exact_strings(value: Any) -> Any:
    """Decimals (JSON numbers with a fraction) inside free-form objects → exact decimal strings, so
    what is stored (Firestore has no Decimal) is exactly what was sent, and never a float."""
    if isinstance(value, Decimal):
        return dec_str(value)
    if isinstance(value, dict):
        return {k: _exact_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_exact_strings(v) for v in value]
    return value


class MarketData(_Input):
    """The strategy's market snapshot (seed 001). Bid/ask win over spread and spread_pct."""

    symbol: Symbol | None = None
    asset_class: AssetClassName | None = None
    price: PositiveDecimal | None = None
    bid: PositiveDecimal | None = None
    ask: PositiveDecimal | None = None
    spread: NonNegativeDecimal | None = None
    spread_pct: NonNegativeDecimal | None = None
    timestamp: Annotated[str, Field(max_length=64)] | None = None

    def to_mapping(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class SignalRequest(_Input):
    """POST /signals: a strategy signal, cost-checked, and executed when it is still a BUY/SELL."""

    strategy_id: Id
    broker_account_id: Id | None = Field(None, description="The account to trade: an account id of the tenant that the caller owns; omitted = the caller's default account. Another user's (or an unknown) id is 403 ACCOUNT_NOT_OWNED; closed/halted/class not enabled is 400.")
    signal_type: SignalTypeName
    symbol: Symbol
    asset_class: SymbolAssetClass = None
    qty: PositiveDecimal | None = Field(None, description="Required for BUY and SELL.")
    confidence: Fraction | None = None
    reasoning: Annotated[str, Field(max_length=2000)] | None = None
    market_data: MarketData | None = Field(
        None, description="When given, the strategy-side cost check (BaseStrategy.apply_cost_check) runs on it; "
                          "the engine always checks the live quote as well.")
    intent_id: Id | None = None
    metadata: Metadata = None
    # issue 15 item 5 (backend/api/signals.py): the seed's "limit orders for wide spreads" as an option,
    # the same fields and checks as POST /execute's
    wide_spread: WideSpreadName = Field(
        "wait", description="A BUY/SELL whose spread fails the cost check (market_data here, or the live quote in "
                            "the engine): wait (downgraded to WAIT, nothing sent, as before) or limit_at_touch / "
                            "limit_at_mid: the signal goes to the engine as a market order with this option and "
                            "the engine places a passive limit instead (at the bid for a buy, the ask for a sell; "
                            "or at the mid, rounded to the tick away from the far side), canceled after "
                            "limit_timeout_seconds. An unknown spread (no bid/ask or spread_pct) stays WAIT.")
    limit_timeout_seconds: Annotated[int, Field(ge=1, le=604800, strict=True)] | None = Field(
        None, description="Required with wide_spread limit_at_touch / limit_at_mid, refused otherwise: the sweeper "
                          "cancels the limit this many seconds after it was placed (fills before are kept).")

    @model_validator(mode="after")
    def _trade_needs_qty(self) -> "SignalRequest":
        if self.signal_type in ("BUY", "SELL") and self.qty is None:
            raise ValueError("qty: is required for BUY and SELL signals")
        return self

    @model_validator(mode="after")
    def _wide_spread_option(self) -> "SignalRequest":
        """The option as POST /execute checks it (a signal is a simple market order, class default
        time in force): the same field and reason for the same mistake."""
        from backend.execution.wide_spread import parse_wide_spread
        from backend.domain.orders import OrderClass, OrderType

        try:
            parse_wide_spread(self.wide_spread, self.limit_timeout_seconds, order_type=OrderType.MARKET,
                              order_class=OrderClass.SIMPLE, time_in_force=None)
        except InvalidInput as exc:
            raise ValueError(f"{exc.field}: {exc.reason}") from None
        return self


class HistoryQuery(_Input):
    """GET /portfolio/history query string."""

    limit: Annotated[int, Field(ge=1, le=100)] = 20
    cursor: Annotated[str, Field(min_length=1, max_length=512)] | None = None
    # Rows of one tenant / one account only (a user who moved tenants keeps their older rows).
    tenant_id: Id | None = None
    broker_account_id: Id | None = None

    @model_validator(mode="before")
    @classmethod
    def _parse_limit(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("limit"), str):
            text = data["limit"]
            if not (text.isascii() and text.isdigit()) or len(text) > 4:  # no "١٠"
                raise ValueError(f"limit: expected an integer from 1 to 100, got {text[:20]!r}")
            data = {**data, "limit": int(text)}
        return data


# ---------------------------------------------------------------------------------- responses
# Every decimal in a response is a string of one of the kinds of backend.domain.wire (applied once,
# to every body, by ApiApp.handle); the models below document each field's kind and pattern.


def _decimal_out(kind: str, extra: str = ""):
    return Annotated[str, WithJsonSchema({"type": "string", "pattern": RESPONSE_DECIMAL_PATTERN,
                                          "description": (extra + " " if extra else "") + DESCRIPTIONS[kind]},
                                         mode="serialization")]


QuantityOut = _decimal_out("quantity")
PriceOut = _decimal_out("price")
RatioOut = _decimal_out("ratio")
TicksOut = _decimal_out("ticks")
MoneyOut = _decimal_out("money")


class RejectionOut(_Output):
    code: str
    detail: str
    text: str


class QuoteOut(_Output):
    bid: PriceOut | None
    ask: PriceOut | None
    mid: PriceOut | None
    timestamp: str | None


class RoutingOut(_Output):
    should_execute: bool
    downgraded: bool
    reason: str
    spread_pct: RatioOut | None = Field(description="(ask - bid) / mid of the quote the router checked.")
    estimated_slippage: RatioOut | None = Field(description="The estimated cost of crossing the spread, as a share "
                                                            "of price (= spread_pct in this cost model).")
    quote: QuoteOut | None
    rejection: RejectionOut | None


class ExecutionResponse(_Output):
    """The outcome of one intent. ``status``: placed, downgraded, rejected, dry_run or pending."""

    status: Literal["placed", "downgraded", "rejected", "dry_run", "pending"]
    intent_id: str
    tenant_id: str
    uid: str
    trade_id: str | None
    reason: str
    rejection: RejectionOut | None
    routing: RoutingOut | None
    client_order_id: str | None
    broker_order_id: str | None
    broker: str | None
    order_status: str | None = Field(
        description="The venue order's state when the call answered (new, accepted, partially_filled, filled, "
                    "canceled, ...). A market or marketable limit order waits briefly for its fill; a resting limit "
                    "order (not marketable against the quote at submission) answers at once with its working "
                    "state: follow it on the intent document (listener) while the sweeper records later fills.")
    filled_qty: QuantityOut | None
    filled_avg_price: PriceOut | None
    replayed: bool = Field(description="True when this is the stored outcome of an earlier request.")
    retry_after: float | None = Field(None, description="Seconds, for a pending outcome.")


class SignalOut(_Output):
    signal_type: Literal["BUY", "SELL", "WAIT"]
    original_signal_type: Literal["BUY", "SELL", "WAIT"]
    symbol: str
    asset_class: str
    confidence: RatioOut = Field(description="The signal's confidence, 0..1. " + DESCRIPTIONS["ratio"])
    reasoning: str
    estimated_slippage: RatioOut | None
    downgraded: bool
    wide_spread: Literal["limit_at_touch", "limit_at_mid"] | None = Field(
        None, description="Set when the cost check found the spread too wide and the request's wide_spread option "
                          "answered it instead of WAIT: the signal stays a BUY/SELL (downgraded false) and went to "
                          "the engine as a market order with this option (see wide_spread_limit for the limit).")


class CostCheckOut(_Output):
    performed: bool
    downgrade: bool = Field(description="The spread fails the check: the BUY/SELL is downgraded to WAIT, unless "
                                        "the wide_spread option answers it with a limit (signal.wide_spread).")
    estimated_slippage: RatioOut | None = Field(description="Spread / price of the market data (share).")
    threshold: RatioOut = Field(description="The engine's max_spread_pct (share): above it a BUY/SELL is "
                                            "downgraded to WAIT. " + DESCRIPTIONS["ratio"])
    reason: str


class WideSpreadLimitOut(_Output):
    """The limit the engine placed (or, under dry run, would have placed) instead of a WAIT."""

    mode: Literal["limit_at_touch", "limit_at_mid"]
    limit_price: PriceOut = Field(description="On the instrument's tick, rounded the passive way.")
    time_in_force: str
    timeout_seconds: int
    deadline: str = Field(description="When the sweeper cancels what is still working (ISO 8601, UTC).")


class SignalResponse(_Output):
    signal: SignalOut
    cost_check: CostCheckOut | None
    executed: bool = Field(description="True only when an order reached a venue (execution.status placed); false "
                                       "for a WAIT, a signal downgraded by either cost check, a rejection, a dry "
                                       "run or a pending outcome.")
    reason: str
    execution: ExecutionResponse | None
    wide_spread_limit: WideSpreadLimitOut | None = Field(
        None, description="With the wide_spread option: the passive limit the engine placed instead of WAIT (also "
                          "under dry run, or pending); null when no limit was involved (the live quote passed and a "
                          "market order was sent, or the signal was refused before the spread was checked).")


class GroupLegOut(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="allow")

    leg_id: str
    symbol: str
    direction: int
    units: QuantityOut
    asset_class: str
    status: str
    filled_units: QuantityOut | None = None
    fill_price: PriceOut | None = Field(None, description="Average fill price; null before a fill.")
    slippage_pips: TicksOut | None = Field(None, description="(fill_price - intended price) x direction / tick; "
                                                             "null before a fill.")
    rejection: RejectionOut | None = Field(None, description="Why this leg was refused, failed or unwound (the "
                                                             "coded reason), else null.")


class GroupResponse(BaseModel):
    """The seed-000 response of a multi-leg group, every decimal a string (backend.domain.wire)."""

    model_config = ConfigDict(defer_build=True, extra="allow")

    group_id: str
    strategy_id: str
    status: str
    legs: list[GroupLegOut]
    avg_slippage_pips: TicksOut | None = Field(None, description="Simple mean of the legs' slippage_pips over "
                                                                 "legs with a fill; null without one.")
    rollback_executed: bool = False
    completed_timestamp: str | None = None
    rejection: RejectionOut | None = Field(
        None, description="The group's coded reason when status is REJECTED or ROLLED_BACK (the first failure in "
                          "execution order: e.g. SPREAD_TOO_WIDE, RPM_NOT_AUTHORIZED at validation; the failing "
                          "leg's code after a rollback), else null. Each leg carries its own.")


class HistoryPage(_Output):
    items: list[dict[str, Any]] = Field(description="users/<uid>/portfolio/history/trades rows, newest first; each "
                                                    "labelled with the tenant_id and broker_account_id it was "
                                                    "recorded in ('default' when the row names no account). "
                                                    "Decimals (quantity, price, notional, cost_analysis.*) are "
                                                    "strings of backend.domain.wire's kinds, as everywhere.")
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page.")


class FieldErrorOut(_Output):
    field: str | None = Field(description="The input, e.g. qty, legs[1].units, market_data.bid.")
    reason: str


class ErrorBody(_Output):
    code: str
    message: str
    field: str | None = Field(description="The first field error's input (also errors[0].field); null when the "
                                          "error is about no single input.")
    reason: str | None
    errors: list[FieldErrorOut] = Field(
        description="Every field error of the request at once (all of a body's validation errors, at most 50), in "
                    "the order found; one entry for an error about one input (a header, a path id); empty when "
                    "the error names no input (a bad token, a conflict, a 500).")
    request_id: str | None = None


class ErrorResponse(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="allow")

    error: ErrorBody


class HealthResponse(_Output):
    status: Literal["ok"]
    service: str


# ------------------------------------------- tax export, tenant ledger review, metrics (issue 6)

LEDGER_STATUSES = ("placed", "downgraded", "rejected", "dry_run", "fill", "group_fill", "rollback_fill",
                   # a group's decision row carries its final status (records.GROUP_DECISION_STATUSES)
                   "filled", "partially_filled", "rolled_back", "failed_needs_attention",
                   "correction",  # issue 13: an admin's correction of an earlier row (backend/api/admin_ledger.py)
                   "canceled", "replaced")  # issue 15: order management events (backend/execution/order_management.py)
DAY_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
Day = Annotated[str, Field(pattern=DAY_PATTERN, description="A calendar date, YYYY-MM-DD.")]


def _query_int(low: int, high: int):
    """A query-string integer: digits only (no sign, no fraction), checked before pydantic's own
    range check so the reason names the accepted range."""

    def parse(value: Any) -> Any:
        if isinstance(value, str):
            if not (value.isascii() and value.isdigit()) or len(value) > len(str(high)):  # no "١٠"
                raise ValueError(f"expected an integer from {low} to {high}, got {value[:20]!r}")
            return int(value)
        return value

    return Annotated[int, BeforeValidator(parse), Field(ge=low, le=high)]


class _Query(_Input):
    """A query string: every value arrives as one string; unknown parameters are a 400."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True, populate_by_name=False)


class TaxExportQuery(_Query):
    """GET /portfolio/tax-lots/export query string."""

    year: _query_int(1900, 9999) = Field(description="Tax year: disposals sold in this calendar year.")
    format: Literal["json", "csv", "txf"] = Field(
        "json", description="json, csv, or txf (TXF V042 for desktop tax software: one record per Form 8949 row).")
    section: Literal["disposals", "open_lots"] | None = Field(
        None, description="CSV only: `disposals` (default; Form 8949 rows, then LOT_SHORTFALL rows, then LOT_BOOK_OVERFLOW rows) or `open_lots`.")
    digital_assets: Literal["refuse", "omit"] | None = Field(
        None, description="TXF only (issue 16): V042 has no reference number for the digital-asset boxes G-L. "
                          "`refuse` (default): a year with such rows is a 400; `omit`: the file has the A-F rows "
                          "only (header X-Omitted-Digital-Asset-Rows), the G-L rows come from the CSV/JSON export.")
    as_of: Day | None = Field(
        None, description="Issue 16: the open lots held at the end of this day (tax time zone, up to today), "
                          "reconstructed from the stored lot books, their corporate-action history and the final "
                          "disposals (backend/tax/as_of.py); JSON or CSV section=open_lots only. A 409 "
                          "AS_OF_NOT_RECONSTRUCTIBLE names what the records cannot give exactly.")

    @model_validator(mode="after")
    def _section_is_csv_only(self) -> "TaxExportQuery":
        if self.section is not None and self.format != "csv":
            raise ValueError("section: only with format=csv (the JSON body has every section)")
        if self.digital_assets is not None and self.format != "txf":
            raise ValueError("digital_assets: only with format=txf")
        if self.as_of is not None and not (self.format == "json" or self.section == "open_lots"):
            raise ValueError("as_of: only for the open lots (format=json, or format=csv with section=open_lots)")
        return self


class LedgerQuery(_Query):
    """GET /tenants/{tenant_id}/ledger query string."""

    from_: Day | None = Field(None, alias="from", description="First UTC day of created_at (inclusive).")
    to: Day | None = Field(None, description="Last UTC day of created_at (inclusive).")
    symbol: Symbol | None = None
    strategy_id: Id | None = None
    status: Literal[LEDGER_STATUSES] | None = None  # type: ignore[valid-type]
    uid: Id | None = None
    broker_account_id: Id | None = Field(None, description="Only this account's rows (the tenant's account id).")
    limit: _query_int(1, 500) = 100
    cursor: Annotated[str, Field(min_length=1, max_length=512)] | None = None
    format: Literal["json", "csv"] = "json"


GROUP_STATUSES = ("PENDING", "VALIDATING", "REJECTED", "SUBMITTING", "MONITORING", "RESOLVING", "FILLED",
                  "PARTIALLY_FILLED", "ROLLING_BACK", "ROLLED_BACK", "FAILED_NEEDS_ATTENTION", "DRY_RUN")


class GroupsQuery(_Query):
    """GET /groups query string (issue 19 item 8)."""

    tenant_id: Id | None = Field(None, description="Must be the token's tenant when given.")
    status: Literal[GROUP_STATUSES] | None = Field(  # type: ignore[valid-type]
        None, description="The group's lifecycle status (GroupStatus), equality.")
    strategy_id: Id | None = None
    uid: Id | None = Field(None, description="tenant_admin only: one user's groups.")
    from_: Day | None = Field(None, alias="from", description="First UTC day of created_timestamp (inclusive).")
    to: Day | None = Field(None, description="Last UTC day of created_timestamp (inclusive).")
    limit: _query_int(1, 200) = 50
    cursor: Annotated[str, Field(min_length=1, max_length=512)] | None = None


class GroupSummaryOut(GroupResponse):
    """One group of GET /groups: the GroupResponse fields plus who and when."""

    uid: str
    lifecycle_status: str = Field(description="GroupStatus (the filter's values); `status` is the seed's verdict.")
    created_timestamp: str


class GroupsPage(_Output):
    items: list[GroupSummaryOut] = Field(description="Groups newest first (created_timestamp, then group_id).")
    next_cursor: str | None = Field(description="Pass as ?cursor= (same filters) for the next page; null at the end.")


class MetricsQuery(_Query):
    """GET /tenants/{tenant_id}/metrics query string."""

    from_: Day = Field(alias="from", description="First trade day (inclusive).")
    to: Day = Field(description="Last trade day (inclusive); at most 366 days after `from`.")
    strategy_id: Id | None = None


class Form8949RowOut(_Output):
    """One disposal as a Form 8949 line: money rounded half-up to cents, dates MM/DD/YYYY,
    gain_or_loss = proceeds - cost_basis + adjustment_amount of the rounded columns."""

    disposal_id: str
    symbol: str
    quantity: str
    description: str = Field(description="Column (a): quantity and symbol, e.g. \"4 AAPL\".")
    date_acquired: str = Field(description="Column (b), MM/DD/YYYY.")
    date_sold: str = Field(description="Column (c), MM/DD/YYYY.")
    proceeds: str = Field(description="Column (d).")
    cost_basis: str = Field(description="Column (e).")
    adjustment_code: str = Field(description="Column (f): \"W\" for a wash sale, else empty.")
    adjustment_amount: str = Field(description="Column (g): the disallowed loss, positive.")
    gain_or_loss: str = Field(description="Column (h).")
    term: Literal["SHORT", "LONG"]
    status: Literal["FINAL", "PROVISIONAL"] = Field(
        description="PROVISIONAL: a loss whose 30-day wash-sale window has not closed yet.")
    part: Literal["I", "II"] = Field(description="Form 8949 part: I short-term, II long-term.")
    box: Literal["A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "L"] = Field(
        description="Form 8949 check box (backend/tax/boxes.py): A/D basis reported on 1099-B, B/E not reported, "
                    "C/F no 1099-B; from 2025 digital assets G/J (1099-DA, basis reported), H/K (not), I/L (none).")
    lot_method: Literal["FIFO", "LIFO", "HIFO", "SPECIFIC"] | None = Field(
        None, description="The lot method applied at the sale (SPECIFIC when the order named its lots); absent for "
                          "disposals recorded before methods were stored.")
    account: str | None = Field(None, description="The lot book: '<tenant_id>:<broker_account_id>' (lots are "
                                                  "matched within it); null for rows booked before accounts.")


class ShortfallOut(_Output):
    """A gap in the lot records, reported, never dropped: a sell that found no open lot (LOT_SHORTFALL: its
    basis is unknown), or a fill recorded without its lot step because its lot book was full
    (LOT_BOOK_OVERFLOW, backend/execution/lot_capacity.py: a buy's lot, or a sell's disposals, are missing)."""

    code: Literal["LOT_SHORTFALL", "LOT_BOOK_OVERFLOW"]
    trade_id: str
    symbol: str
    side: Literal["BUY", "SELL"] | None = Field(None, description="LOT_BOOK_OVERFLOW only: the fill's side.")
    quantity: str
    date_sold: str | None = Field(None, description="MM/DD/YYYY: the trade date of a LOT_SHORTFALL or of a "
                                                    "LOT_BOOK_OVERFLOW sell.")
    date_acquired: str | None = Field(None, description="MM/DD/YYYY: the trade date of a LOT_BOOK_OVERFLOW buy "
                                                        "(the day its missing lot was bought).")
    proceeds: str | None = Field(description="Net proceeds (qty x price x multiplier - fees, rounded to cents) of "
                                             "the sell; null for a LOT_BOOK_OVERFLOW buy.")
    text: str
    account: str | None = Field(None, description="The lot book: '<tenant_id>:<broker_account_id>' (lots are "
                                                  "matched within it); null for rows booked before accounts.")


class OpenLotOut(_Output):
    symbol: str
    lot_id: str
    position: Literal["LONG", "SHORT"]
    quantity: str
    date_acquired: str
    holding_start: str
    cost_basis: str
    cost_per_unit: str
    wash_adjustment: str
    long_term_from: str = Field(description="MM/DD/YYYY; empty for a short lot.")
    term_if_sold: Literal["SHORT", "LONG"] = Field(description="The term if sold on as_of.")
    account: str | None = Field(None, description="The lot book: '<tenant_id>:<broker_account_id>' (lots are "
                                                  "matched within it); null for rows booked before accounts.")


class TermTotals(_Output):
    count: int
    proceeds: str
    cost_basis: str
    adjustment_amount: str
    gain_or_loss: str


class BoxTotals(TermTotals):
    """Schedule D input: the totals of one Form 8949 box."""

    part: Literal["I", "II"]


class TaxTotals(_Output):
    disposals: int
    provisional: int
    proceeds: str
    cost_basis: str
    adjustment_amount: str
    gain_or_loss: str
    short_term: TermTotals
    long_term: TermTotals
    boxes: dict[str, BoxTotals] = Field(description="Per Form 8949 box (A–L) present in the year, as Schedule D "
                                                    "lines 1b–3 / 8b–10 take them.")
    shortfalls: int = Field(description="LOT_SHORTFALL records of the year.")
    shortfall_proceeds: str
    lot_book_overflows: int | None = Field(None, description="LOT_BOOK_OVERFLOW markers of the year (fills "
                                                             "recorded without their lot step); absent when none.")
    open_lots: int


class TaxReconcileRequest(_Input):
    """POST /portfolio/tax-lots/reconcile: the broker's 1099-B / 1099-DA statement as CSV text
    (columns: backend/tax/reconcile.py), matched to the caller's disposals sold in ``year``."""

    year: int = Field(ge=1900, le=9999, description="Tax year (date sold).")
    account: Annotated[str, Field(min_length=1, max_length=201, pattern=r"^[A-Za-z0-9_-]{1,100}:[A-Za-z0-9_-]{1,100}$",
                                  description="The lot book the statement covers, '<tenant_id>:<broker_account_id>'; "
                                              "omitted: every account's disposals are candidates.")] | None = None
    csv: Annotated[str, Field(min_length=1, description="The statement CSV: a header row naming description, "
                                                        "date_sold, proceeds and optionally date_acquired, cost_basis, "
                                                        "wash_sale_disallowed, term, box, symbol, quantity.")]


class ReconcileTotals(_Output):
    statement_rows: int
    ledger_rows: int
    matched: int
    with_differences: int
    ours: dict[str, str]
    statement: dict[str, str]
    difference: dict[str, str] = Field(description="ours - statement, per column (proceeds, cost_basis, "
                                                   "wash_sale_disallowed).")


class ReconcileRow(_Output):
    status: Literal["MATCHED", "DIFFERENT", "UNMATCHED"]
    reasons: list[str] = Field(description="WASH_SALE_ACROSS_ACCOUNTS, WASH_BASIS_FROM_ANOTHER_ACCOUNT, "
                                           "WASH_SALE_DIFFERS, BASIS_NOT_REPORTED, PROCEEDS_DIFFER, BASIS_DIFFERS, "
                                           "TERM_DIFFERS, NOT_IN_LEDGER, NOT_ON_STATEMENT.")
    statement: dict[str, Any] | None = None
    ours: dict[str, Any] | None = None
    differences: dict[str, str]


class TaxReconciliation(_Output):
    year: int
    account: str | None
    rows: list[ReconcileRow]
    totals: ReconcileTotals


class TaxExport(_Output):
    """The JSON export (streamed). ``provisional`` is true when any row is provisional."""

    year: int
    as_of: str = Field(description="Today in the tax time zone (America/New_York), YYYY-MM-DD.")
    disposals: list[Form8949RowOut]
    shortfalls: list[ShortfallOut]
    open_lots_as_of: str | None = Field(
        None, description="With ?as_of=: the day (YYYY-MM-DD) the open lots are of, reconstructed; absent otherwise.")
    open_lots: list[OpenLotOut] = Field(description="Every open lot now (not filtered by year), or at the end of "
                                                    "open_lots_as_of.")
    totals: TaxTotals
    provisional: bool


class LedgerPage(_Output):
    items: list[dict[str, Any]] = Field(
        description="tenants/<t>/ledger_trades rows plus ledger_id (the document id), newest first. Decimals "
                    "(qty, prices, spread_pct, slippage, notional, fees) are strings of backend.domain.wire's "
                    "kinds, as everywhere.")
    next_cursor: str | None = Field(description="Pass as ?cursor= (same filters) for the next page; null at the end.")


class TcaOut(BaseModel):
    """Post-trade transaction cost analysis over the fills of the period (backend.execution.metrics)."""

    model_config = ConfigDict(defer_build=True, extra="allow")

    fills: int = Field(description="Ledger rows with a fill (single orders, group legs, rollback orders).")
    avg_actual_slippage: RatioOut | None = Field(
        description="Mean over fills of (fill price - arrival mid) x direction / arrival mid: the realized cost as a "
                    "share of the mid at routing (positive = paid more than mid); null without a fill with a quote.")
    avg_estimated_slippage_of_filled: RatioOut | None = Field(
        description="Mean estimated slippage (share) of the same fills, to compare with avg_actual_slippage.")
    implementation_shortfall: MoneyOut = Field(
        description="Sum over fills of (fill price - arrival mid) x direction x filled quantity, in the quote "
                    "currency (positive = cost against the arrival mid). " + DESCRIPTIONS["money"])
    group_leg_fills: int = Field(description="Filled group legs with a slippage in ticks.")
    avg_legging_cost_ticks: TicksOut | None = Field(
        description="Mean slippage of group leg fills against their intended price, in ticks (positive = adverse); "
                    "null without a group leg fill.")


class MetricsSummaryOut(BaseModel):
    """backend.execution.metrics.summarize over the period: counts as integers, rates, averages and
    money as decimal strings (rates and averages null without data)."""

    model_config = ConfigDict(defer_build=True, extra="allow")

    decisions: int = Field(description="Decisions: routing decisions of single orders (placed + downgraded + "
                                       "rejected + dry_run) plus one per multi-leg group that reached a final "
                                       "state (group_decisions).")
    placed: int
    downgraded: int
    rejected: int = Field(description="Rejected single orders and rejected groups.")
    dry_run: int
    group_decisions: int = Field(0, description="Multi-leg groups that reached a final state, one each.")
    group_statuses: dict[str, int] = Field(
        default_factory=dict, description="Final groups by status: filled, partially_filled, rolled_back, "
                                          "failed_needs_attention (rejected and dry_run groups count above).")
    downgrade_rate: RatioOut | None = Field(description="downgraded / decisions.")
    rejection_rate: RatioOut | None = Field(description="rejected / decisions.")
    avg_estimated_slippage: RatioOut | None = Field(
        description="Mean estimated slippage (spread / price, a share) over decisions that had a quote.")
    cost_savings: MoneyOut = Field(
        description="Sum over downgraded intents of qty x arrival mid x estimated slippage: the spread cost the "
                    "cost check avoided, in the quote currency. " + DESCRIPTIONS["money"])
    asset_class_distribution: dict[str, dict[str, int]] = Field(
        description="Per asset class: {decisions, placed}.")
    tca: TcaOut


class MetricsResponse(_Output):
    tenant_id: str
    from_: str = Field(alias="from", serialization_alias="from")
    to: str
    strategy_id: str | None
    shard_documents: int = Field(description="Metric shard documents read (days x shards; never ledger rows).")
    summary: MetricsSummaryOut
    by_strategy: dict[str, MetricsSummaryOut] | None = Field(
        description="Per strategy present in the period; null when strategy_id is given.")
    by_asset_class: dict[str, MetricsSummaryOut] | None = Field(
        description="Per asset class (EQUITY, FOREX, CRYPTO, OPTIONS, COMMODITY) with counters in the period: "
                    "decisions and rates of single orders, avg_estimated_slippage, cost_savings and tca "
                    "(avg_actual_slippage vs avg_estimated_slippage_of_filled) of that class's orders and fills. "
                    "Multi-leg group decisions count in summary only (a group may span classes); their leg "
                    "fills count in their leg's class. Null when strategy_id is given.")


# --- issue 16: tax lot-method elections, corporate actions, the CSV reconcile query ---------------------
LOT_METHODS = ("FIFO", "LIFO", "HIFO", "SPECIFIC")
BOOK_PATTERN = r"^[A-Za-z0-9_-]{1,100}:[A-Za-z0-9_-]{1,100}$"


def _aware(value: Any) -> Any:
    from datetime import datetime

    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
        except ValueError:
            raise ValueError(f"expected an ISO-8601 time with an offset, got {value[:40]!r}") from None
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("expected an ISO-8601 time with an offset (e.g. 2026-01-02T14:30:00+00:00)")
    return value


AwareTime = Annotated[Any, BeforeValidator(_aware), WithJsonSchema({"type": "string", "format": "date-time"})]


class TaxElectionRequest(_Input):
    """POST /portfolio/tax-lots/election: one more lot-method election (backend/tax/election.py)."""

    method: Literal[LOT_METHODS] = Field(  # type: ignore[valid-type]
        description="The lot method for sales from effective_at on: FIFO, LIFO, HIFO, or SPECIFIC (each sale "
                    "names its lots in metadata.lot_ids).")
    effective_at: AwareTime | None = Field(
        None, description="When the election takes effect (ISO-8601 with an offset): not before the server's now "
                          "and not before an earlier election; omitted: now. At most 366 days ahead.")
    broker_account_id: Id | None = Field(
        None, description="Only this account of the caller's tenant (lot book '<tenant_id>:<broker_account_id>'); "
                          "omitted: every account of the caller (an account's own election wins a tie).")
    default_rule: Literal["FIFO", "LIFO", "HIFO"] | None = Field(
        None, description="SPECIFIC only: the rule for a sale that names no lots (default FIFO).")


class TaxElectionOut(_Output):
    method: str
    effective_at: str
    recorded_at: str
    account: str | None = None
    default_rule: str | None = None


class TaxElectionResponse(_Output):
    election: TaxElectionOut = Field(description="The election recorded, or the earlier one this request repeats.")
    replayed: bool


class CorporateActionRequest(_Input):
    """POST /tenants/{tenant_id}/corporate-actions (backend/tax/corporate.py)."""

    action_id: Id = Field(description="The client's id of the action: the same id again is applied once.")
    kind: Literal["SPLIT", "SYMBOL_CHANGE"] = Field(
        description="SPLIT (a reverse split is a ratio below 1) or SYMBOL_CHANGE.")
    symbol: Symbol
    effective: Day = Field(description="The ex-date: lots acquired before it are adjusted.")
    ratio: PositiveDecimal | None = Field(
        None, description="SPLIT only: new units per old unit, an exact decimal (2 for 2-for-1, 0.1 for 1-for-10).")
    new_symbol: Symbol | None = Field(None, description="SYMBOL_CHANGE only: the new symbol.")

    @model_validator(mode="after")
    def _fields_of_the_kind(self) -> "CorporateActionRequest":
        if self.kind == "SPLIT" and self.ratio is None:
            raise ValueError("ratio: required for SPLIT")
        if self.kind == "SPLIT" and self.new_symbol is not None:
            raise ValueError("new_symbol: only for SYMBOL_CHANGE")
        if self.kind == "SYMBOL_CHANGE" and self.new_symbol is None:
            raise ValueError("new_symbol: required for SYMBOL_CHANGE")
        if self.kind == "SYMBOL_CHANGE" and self.ratio is not None:
            raise ValueError("ratio: only for SPLIT")
        return self


class CorporateActionBooks(_Output):
    applied: int = Field(description="The users' lot books that carry the action now.")
    refused: int = Field(description="Books left unchanged, reasons in refusals.")


class CorporateActionRecord(_Output):
    """tenants/{tenant_id}/corporate_actions/{action_id} as stored (server timestamps left out)."""

    action: dict[str, str]
    status: Literal["APPLYING", "APPLIED"]
    recorded_by: str
    recorded_at: str
    applied_at: str | None = None
    books: CorporateActionBooks | None = None
    refusals: list[dict[str, str]] = Field(
        default_factory=list, description="At most 100 refused books: {uid, reason} with reason CODE: text "
                                          "(MIXED_BOOK, DUPLICATE_ACTION, FILLS_AFTER_EX_DATE, TARGET_HAS_LOTS).")
    replayed: bool = False


class TaxReconcileCsvQuery(_Query):
    """POST /portfolio/tax-lots/reconcile with a ``text/csv`` body: year and account in the query."""

    year: _query_int(1900, 9999) = Field(description="Tax year (date sold).")
    account: Annotated[str, Field(min_length=1, max_length=201, pattern=BOOK_PATTERN)] | None = None


# --- issue 19 item 9: the caller's accounts, their positions and balances (backend/api/accounts_api.py) ---

class MyAccountsQuery(_Query):
    """GET /accounts query string."""

    uid: Id | None = Field(None, description="tenant_admin or auditor: one member's accounts (a trader may name only "
                                             "themself). Without it a tenant_admin/auditor lists every account.")
    limit: _query_int(1, 200) = 50
    cursor: Annotated[str, Field(min_length=1, max_length=512)] | None = None


class MyAccountOut(_Output):
    """One account of the tenant as its owner (or a tenant_admin/auditor) sees it."""

    account_id: str
    connection_id: str
    venue: str | None = Field(description="The connection's venue (alpaca_broker, alpaca_trading, paper, oanda), "
                                          "`deployment` for the deployment's own venues, null when the connection "
                                          "document is missing.")
    venue_account_id: str = Field(description="The venue's own id of this account.")
    owner_uids: list[str]
    status: Literal["active", "reduce_only", "halted", "closed"]
    asset_classes: list[str]
    limits: dict[str, Any] | None = Field(description="Per-account limits (decimals as exact strings), null when none.")
    is_default: bool | None = Field(description="Whether it is the default account of the user listed (the caller, or "
                                                "?uid=); null when a tenant_admin/auditor lists every account.")
    default_for: list[str] = Field(description="Owners whose default account it is (a trader sees only themself).")
    created_at: str
    updated_at: str


class MyAccountsPage(_Output):
    items: list[MyAccountOut] = Field(description="Accounts by account_id ascending.")
    next_cursor: str | None = Field(description="Pass as ?cursor= (same uid) for the next page; null at the end.")


class MyAccountResponse(_Output):
    account: MyAccountOut


class AccountPositionOut(_Output):
    """One symbol held at the venue or booked in the ledger (or both)."""

    symbol: str = Field(description="As the venue spells it; the ledger's spelling for a symbol the venue does not hold.")
    venue_name: str | None = Field(description="The adapter that reported it (null: only in the ledger).")
    qty: QuantityOut = Field(description="Venue quantity, signed (negative: short); \"0\" when the venue holds none.")
    avg_entry_price: PriceOut | None = Field(description="The venue's average entry price, when it gives one.")
    market_value: MoneyOut | None = Field(description="The venue's market value (signed), when it gives one.")
    ledger_qty: QuantityOut = Field(description="Net filled quantity of this account's ledger fill rows (buys positive).")
    difference: QuantityOut = Field(description="qty - ledger_qty: non-zero is a break between venue and ledger.")


class AccountPositionsResponse(_Output):
    account_id: str
    connection_id: str
    venue: str
    venue_account_id: str
    as_of: str = Field(description="When the venue was read (ISO-8601 UTC); nothing is cached between requests.")
    positions: list[AccountPositionOut] = Field(description="Every symbol of the venue or the ledger, by symbol.")
    in_balance: bool = Field(description="True when every difference is zero.")
    differences: int = Field(description="How many symbols differ.")
    ledger_fill_rows: int = Field(description="Ledger rows of this account that carry a fill (order, fill, group_fill, "
                                              "rollback_fill) and were summed.")


class VenueBalanceOut(_Output):
    venue_name: str = Field(description="The adapter (one entry per distinct venue of the account).")
    currency: str
    cash: MoneyOut
    equity: MoneyOut
    buying_power: MoneyOut


class AccountBalanceResponse(_Output):
    account_id: str
    connection_id: str
    venue: str
    venue_account_id: str
    as_of: str = Field(description="When the venue was read (ISO-8601 UTC); nothing is cached between requests.")
    balances: list[VenueBalanceOut]
    ledger_positions: list[AccountPositionOut] = Field(
        description="The ledger's view beside the venue's: net filled quantity per symbol of this account's ledger "
                    "rows with the venue's quantity and the difference (the ledger books no cash: deposits and "
                    "transfers are the venue's, so cash has no ledger counterpart).")
    in_balance: bool = Field(description="True when every position difference is zero.")


# --- issue 15 item 6: the caller's working orders, cancel and replace (backend/api/orders_api.py) ---

ORDER_WORKING_STATES = ("pending_new", "new", "partially_filled")


class OrdersQuery(_Query):
    """GET /orders query string."""

    account: Id | None = Field(None, description="Only orders of this account (the tenant's account id).")
    symbol: Symbol | None = Field(None, description="Only orders of this symbol, as the order named it.")
    status: Literal[ORDER_WORKING_STATES] | None = Field(  # type: ignore[valid-type]
        None, description="The venue order's state as last recorded: pending_new, new or partially_filled.")
    limit: _query_int(1, 200) = 50
    cursor: Id | None = Field(None, description="next_cursor of the previous page (same filters).")


class ReplaceOrderRequest(_Input):
    """PATCH /orders/{intent_id}: what the replacement changes (at least one field; the rest is kept)."""

    qty: PositiveDecimal | None = Field(None, description="The new order's whole quantity; on the lot. Above the "
                                                          "unfilled remainder of the order it replaces, the extra "
                                                          "passes the pre-trade gate.")
    limit_price: PositiveDecimal | None = Field(None, description="limit and stop_limit orders; on the tick.")
    stop_price: PositiveDecimal | None = Field(None, description="stop and stop_limit orders; on the tick.")
    trail: PositiveDecimal | None = Field(None, description="trailing_stop orders: the new trail_price or "
                                                            "trail_percent (whichever the order has).")
    time_in_force: TimeInForceName | None = Field(None, description="Where the venue takes it for the order.")

    @model_validator(mode="after")
    def _changes_something(self) -> "ReplaceOrderRequest":
        if all(getattr(self, name) is None for name in ("qty", "limit_price", "stop_price", "trail", "time_in_force")):
            raise ValueError("a replace changes at least one of qty, limit_price, stop_price, trail, time_in_force")
        return self


class ReplacedOrderOut(_Output):
    broker_order_id: str
    client_order_id: str | None
    qty: QuantityOut | None
    filled_qty: QuantityOut | None
    filled_avg_price: PriceOut | None
    limit_price: PriceOut | None
    stop_price: PriceOut | None
    replaced_by: str | None
    replaced_at: str | None


class OrderCancelOut(_Output):
    at: str
    ledger_id: str
    order_status: str | None
    canceled_qty: QuantityOut | None
    filled_qty: QuantityOut | None


class OrderOut(_Output):
    """One order of the caller: its intent record tenants/{t}/order_intents/{intent_id} (listen to it with
    onSnapshot for updates), as the API answers it."""

    intent_id: str
    uid: str | None
    tenant_id: str | None
    account_id: str | None
    strategy_id: str | None
    symbol: str | None
    asset_class: str | None
    side: str | None
    order_type: str | None
    time_in_force: str | None
    order_class: str
    qty: QuantityOut | None = Field(description="The working venue order's quantity (after a replace: the new one's).")
    limit_price: PriceOut | None
    stop_price: PriceOut | None
    trail_price: PriceOut | None
    trail_percent: RatioOut | None
    status: str | None = Field(description="The intent's status (placed, reserved, rejected, ...).")
    working: bool = Field(description="True while the order works at the venue (placed, not final).")
    order_status: str | None = Field(description="The venue order's state as last recorded.")
    filled_qty: QuantityOut | None = Field(description="Filled over every venue order of this intent (replaced ones "
                                                       "included); equal to the sum of its ledger fill rows.")
    filled_avg_price: PriceOut | None
    broker: str | None
    broker_order_id: str | None = Field(description="The working venue order (after a replace: the new one).")
    client_order_id: str | None
    replaced_orders: list[ReplacedOrderOut] = Field(description="Venue orders this one replaced, oldest first.")
    cancel: OrderCancelOut | None = Field(description="The recorded cancel (ledger row ledger_id), null if none.")
    updated_at: str | None


class OrdersPage(_Output):
    items: list[OrderOut] = Field(description="The caller's working orders by intent_id.")
    next_cursor: str | None = Field(description="Pass as ?cursor= (same filters) for the next page; null at the end.")


class OrderResponse(_Output):
    order: OrderOut
    outcome: Literal["order", "canceled", "pending", "replaced"] = Field(
        description="order: a read; canceled: the venue confirmed the cancel (the ledger holds its row); pending: "
                    "the cancel was sent and the venue has not confirmed yet (retry or listen); replaced: a new venue "
                    "order replaced the old one (the ledger links them).")
    replayed: bool = Field(description="True when this is the stored outcome of an earlier request.")


# --- issue 15: a FILLED group's protective stop per leg, cancel and move (backend/api/group_stops_api.py) ---


class GroupStopReplaceRequest(_Input):
    """PATCH /groups/{group_id}/legs/{leg_id}/stop: the stop's new price."""

    stop_price: PositiveDecimal = Field(description="On the leg's tick (never rounded); a long's sell stop below the "
                                                    "current bid, a short's buy stop above the current ask (else "
                                                    "STOP_PRICE_WRONG_SIDE).")


class GroupStopOut(_Output):
    """One leg's protective stop as stored on the group document (tenants/{t}/execution_groups/{group_id})."""

    group_id: str
    leg_id: str
    symbol: str
    asset_class: str
    side: str = Field(description="The stop order's side: sell for a long leg, buy for a short one.")
    qty: QuantityOut | None = Field(description="The stop order's quantity (the leg's filled units); null before "
                                                "it is planned.")
    working: bool = Field(description="True while the stop works at the venue.")
    stop_price: PriceOut
    status: Literal["REQUESTED", "PLANNED", "WORKING", "FILLED", "CANCELED", "REFUSED"]
    broker_order_id: str | None
    client_order_id: str | None
    filled_qty: QuantityOut
    fill_price: PriceOut | None
    rejection: RejectionOut | None
    cancel_requested_at: str | None = Field(description="When the owner asked to cancel it (stored before the venue "
                                                        "was asked).")
    cancel: dict[str, Any] | None = Field(description="The recorded cancel {at, ledger_id, order_status, "
                                                      "canceled_qty, filled_qty, broker_order_id, client_order_id}.")
    replace_pending: bool = Field(description="A replace was sent and its outcome is not recorded yet.")
    replacements: list[dict[str, Any]] = Field(description="Each move, oldest first: {ledger_id, broker_order_id, "
                                                           "client_order_id, stop_price, at, replaces}.")


class GroupStopResponse(_Output):
    stop: GroupStopOut
    outcome: Literal["stop", "canceled", "pending", "replaced"] = Field(
        description="canceled: the venue confirmed the cancel (ledger row {group}--{leg}--stop--cancel); pending: "
                    "the cancel is stored and sent, the venue has not confirmed (the sweeper completes it); "
                    "replaced: the venue replaced the stop (ledger row {group}--{leg}--stop--r{n} links old and new).")
    replayed: bool = Field(description="True when this is the stored outcome of an earlier request.")
