"""A deterministic simulated venue: scenario, market simulator and order matching, all in Decimals.

Pure Python and thread-safe (one lock); the only I/O is ``Scenario.load``. The same scenario,
seed, clock and sequence of calls give the same order ids, fills and quotes. ``PaperBroker`` and
the local Alpaca test server (``tests/support/alpaca_server.py``) both sit on ``SimulatedVenue``.

Scenario format (JSON or dict; decimals as strings or ints, floats refused; unknown keys refused)::

    {"seed": 42,
     "account": {"cash": "1000000", "buying_power": "2000000", "equity": "1000000"},
     "step_seconds": 0,              # > 0: the market takes one random step per N clock seconds
     "default_fill": {...},          # fill model of symbols without their own "fill"
     "symbols": {"AAPL": {"asset_class": "EQUITY", "mid": "190.00", "spread": "0.02",
                          "drift_ticks": 0, "volatility_ticks": "0", "quote_age_seconds": 0,
                          "bid_size": "100", "ask_size": "100", "closes": ["188.1", "189.0"],
                          "fill": {"model": "immediate", "ratios": ["0.5", "1.0"],
                                   "latency_seconds": 0, "step_seconds": 0,
                                   "slippage_ticks": 0, "reject_reason": "..."}}},
     "faults": [{"operation": "submit_order", "kind": "unavailable", "after_calls": 0,
                 "count": 1, "retry_after": 1}]}

Every key but ``symbols.*.mid`` is optional. Symbols not listed get a tight default market
derived from the seed and the symbol name, so any symbol works. Quotes: bid = mid − spread/2
rounded down to the tick, ask = bid + spread rounded up to the tick, stamped ``now −
quote_age_seconds``. Each market step (``step()``, or every ``step_seconds`` of clock time) moves
the mid by ``drift_ticks`` plus a seeded Gaussian of ``volatility_ticks`` ticks.

Fill models (all wait ``latency_seconds`` after submission before anything happens):

- ``immediate``: the whole order fills (at submit when the latency is 0).
- ``latency``: the same as ``immediate``; the name says the latency is the point.
- ``partial``: ``ratios`` are cumulative filled shares of the order (``["0.5", "1.0"]``). The first
  applies when the order becomes eligible; each later one on the next observation of the order
  (``get_order``, ``get_order_by_client_id``, ``poll``, ``step``) or, with ``step_seconds`` > 0,
  every ``step_seconds`` of clock time. A last ratio below 1 leaves the order working.
- ``reject``: the order becomes REJECTED with ``reject_reason``.
- ``never``: the order stays NEW until canceled.

Market orders fill at the touch (buy at the ask, sell at the bid) moved ``slippage_ticks`` against
the order; limit orders fill only when marketable and never through their limit. ``ioc`` cancels
what did not fill at submission, ``fok`` cancels unless everything filled at submission.
Multi-leg option orders (``submit_mleg``) fill every leg together at one net price per unit
(positive a debit), by the first leg's fill model.

Account: ``cash`` moves by each fill's notional; ``buying_power`` is margin based: an order needs
``AssetSpec.margin(qty, price)`` of it, opening exposure uses that margin at the entry price,
closing releases it and realized P&L is added; ``equity`` is the starting equity plus the cash
change plus the positions marked at the current mid.

Faults: a scenario fault (or ``inject_fault``) makes calls of ``operation`` (a venue method name,
or ``*``) fail after ``after_calls`` matching calls, ``count`` times (``null``: until cleared):
``unavailable`` and ``rate_limited`` raise ``BrokerError`` before anything happens;
``lost_response`` performs the call and then raises ``LostResponse`` (an UNAVAILABLE
``BrokerError``: the ambiguous failure, the order exists).
"""
from __future__ import annotations

import hashlib
import json
import random
import threading
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from backend.domain.assets import (
    AssetClass,
    AssetSpec,
    AssetSpecRegistry,
    crypto_pair,
    default_registry,
    detect_asset_class,
    is_occ_option,
    normalize_symbol,
    occ_underlying,
)
from backend.domain.clock import Clock, SystemClock
from backend.domain.errors import InvalidInput
from backend.domain.money import ONE, ZERO, round_to_step, to_decimal
from backend.ports.broker import (
    Account,
    BrokerError,
    BrokerErrorCode,
    BrokerOrder,
    OrderRequest,
    OrderSide,
    OrderState,
    OrderType,
    Position,
    Quote,
)

SCENARIOS_DIR = Path(__file__).resolve().parent.parent / "config" / "scenarios"

DuplicatePolicy = Literal["return", "raise"]
TIME_IN_FORCE = frozenset({"day", "gtc", "ioc", "fok", "opg", "cls"})


class ScenarioError(InvalidInput):
    """A scenario that cannot be used; ``field`` is the path of the offending key."""


class LostResponse(BrokerError):
    """UNAVAILABLE raised after the venue acted (the ``lost_response`` fault): the order may exist."""

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(BrokerErrorCode.UNAVAILABLE, message, retry_after=retry_after)


# --------------------------------------------------------------------------- scenario


class FillModel(str, Enum):
    IMMEDIATE = "immediate"
    LATENCY = "latency"
    PARTIAL = "partial"
    REJECT = "reject"
    NEVER = "never"


class FaultKind(str, Enum):
    UNAVAILABLE = "unavailable"
    RATE_LIMITED = "rate_limited"
    LOST_RESPONSE = "lost_response"


FAULT_OPERATIONS = frozenset({
    "*", "submit_order", "submit_mleg", "get_order", "get_order_by_client_id", "cancel_order",
    "close_position", "get_positions", "get_account", "get_latest_quote", "get_recent_closes",
    "list_orders",
})


@dataclass(frozen=True)
class FillSpec:
    model: FillModel = FillModel.IMMEDIATE
    ratios: tuple[Decimal, ...] = (ONE,)
    latency_seconds: float = 0.0
    step_seconds: float = 0.0
    slippage_ticks: int = 0
    reject_reason: str = "rejected by the simulated venue"


@dataclass(frozen=True)
class SymbolSpec:
    mid: Decimal
    asset_class: AssetClass | None = None
    spread: Decimal | None = None  # None: 2 bps of the mid, at least one tick
    drift_ticks: int = 0
    volatility_ticks: Decimal = ZERO
    quote_age_seconds: float = 0.0
    bid_size: Decimal = Decimal("100")
    ask_size: Decimal = Decimal("100")
    closes: tuple[Decimal, ...] = ()
    fill: FillSpec | None = None


@dataclass(frozen=True)
class AccountSpec:
    cash: Decimal = Decimal("1000000")
    buying_power: Decimal = Decimal("2000000")
    equity: Decimal = Decimal("1000000")


@dataclass(frozen=True)
class FaultSpec:
    operation: str
    kind: FaultKind
    after_calls: int = 0
    count: int | None = 1  # None: every matching call until cleared
    retry_after: float = 1.0


@dataclass(frozen=True)
class Scenario:
    seed: int = 7
    account: AccountSpec = field(default_factory=AccountSpec)
    symbols: Mapping[str, SymbolSpec] = field(default_factory=dict)
    default_fill: FillSpec = field(default_factory=FillSpec)
    faults: tuple[FaultSpec, ...] = ()
    step_seconds: float = 0.0
    description: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Scenario":
        _expect_mapping(data, "scenario")
        _check_keys(data, {"seed", "account", "symbols", "default_fill", "faults", "step_seconds",
                           "description", "_comment"}, "scenario")
        seed = _int(data.get("seed", 7), "seed")
        account = _account(data.get("account", {}))
        default_fill = _fill(data["default_fill"], "default_fill") if "default_fill" in data else FillSpec()
        raw_symbols = data.get("symbols", {})
        _expect_mapping(raw_symbols, "symbols")
        symbols: dict[str, SymbolSpec] = {}
        for name, raw in raw_symbols.items():
            where = f"symbols.{name}"
            spec = _symbol(raw, where)
            try:
                key, _ = canonical_symbol(name, spec.asset_class)
            except InvalidInput as exc:
                raise ScenarioError(where, exc.reason) from None
            if key in symbols:
                raise ScenarioError(where, f"listed twice (as {key})")
            symbols[key] = spec
        raw_faults = data.get("faults", [])
        if not isinstance(raw_faults, list):
            raise ScenarioError("faults", "expected a list")
        faults = tuple(_fault(raw, f"faults[{i}]") for i, raw in enumerate(raw_faults))
        description = data.get("description", "")
        if not isinstance(description, str):
            raise ScenarioError("description", "expected a string")
        return cls(seed=seed, account=account, symbols=symbols, default_fill=default_fill, faults=faults,
                   step_seconds=_seconds(data.get("step_seconds", 0), "step_seconds"), description=description)

    @classmethod
    def load(cls, path_or_name: str | Path) -> "Scenario":
        """Load a JSON file; a bare name such as ``"default"`` means ``backend/config/scenarios/<name>.json``."""
        path = Path(path_or_name)
        if not path.suffix and not path.exists() and "/" not in str(path_or_name):
            path = SCENARIOS_DIR / f"{path_or_name}.json"
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            raise ScenarioError("scenario", f"no scenario file {path}") from None
        except json.JSONDecodeError as exc:
            raise ScenarioError("scenario", f"{path} is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def resolve(cls, scenario: "Scenario | Mapping[str, Any] | str | Path | None") -> "Scenario":
        """None → ``default.json``; a Scenario as is; a dict parsed; a str/Path loaded."""
        if scenario is None:
            return cls.load("default")
        if isinstance(scenario, Scenario):
            return scenario
        if isinstance(scenario, Mapping):
            return cls.from_dict(scenario)
        if isinstance(scenario, (str, Path)):
            return cls.load(scenario)
        raise ScenarioError("scenario", f"expected a Scenario, dict, path or name, got {type(scenario).__name__}")

    def with_seed(self, seed: int) -> "Scenario":
        return replace(self, seed=_int(seed, "seed"))


def _expect_mapping(raw: Any, where: str) -> None:
    if not isinstance(raw, Mapping):
        raise ScenarioError(where, f"expected an object, got {type(raw).__name__}")


def _check_keys(raw: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(raw) - allowed
    if unknown:
        raise ScenarioError(where, f"unknown keys {sorted(unknown)}; allowed {sorted(allowed - {'_comment'})}")


def _dec(raw: Any, where: str, *, positive: bool = False, non_negative: bool = False) -> Decimal:
    if isinstance(raw, float):
        raise ScenarioError(where, "write decimals as strings, not floats")
    try:
        value = to_decimal(raw, where)
    except InvalidInput as exc:
        raise ScenarioError(where, exc.reason) from None
    if positive and value <= ZERO:
        raise ScenarioError(where, f"must be positive, got {value}")
    if non_negative and value < ZERO:
        raise ScenarioError(where, f"must not be negative, got {value}")
    return value


def _int(raw: Any, where: str, *, non_negative: bool = False) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ScenarioError(where, f"expected an integer, got {raw!r}")
    if non_negative and raw < 0:
        raise ScenarioError(where, f"must not be negative, got {raw}")
    return raw


def _seconds(raw: Any, where: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise ScenarioError(where, f"expected a number of seconds, got {raw!r}")
    try:
        value = float(raw)
    except ValueError:
        raise ScenarioError(where, f"expected a number of seconds, got {raw!r}") from None
    if not value >= 0 or value == float("inf"):
        raise ScenarioError(where, f"must be a finite number >= 0, got {raw!r}")
    return value


def _account(raw: Any) -> AccountSpec:
    _expect_mapping(raw, "account")
    _check_keys(raw, {"cash", "buying_power", "equity"}, "account")
    base = AccountSpec()
    return AccountSpec(
        cash=_dec(raw["cash"], "account.cash") if "cash" in raw else base.cash,
        buying_power=(_dec(raw["buying_power"], "account.buying_power", non_negative=True)
                      if "buying_power" in raw else base.buying_power),
        equity=_dec(raw["equity"], "account.equity") if "equity" in raw else base.equity,
    )


def _fill(raw: Any, where: str) -> FillSpec:
    _expect_mapping(raw, where)
    _check_keys(raw, {"model", "ratios", "latency_seconds", "step_seconds", "slippage_ticks", "reject_reason"},
                where)
    try:
        model = FillModel(raw.get("model", "immediate"))
    except ValueError:
        raise ScenarioError(f"{where}.model",
                            f"expected one of {[m.value for m in FillModel]}, got {raw.get('model')!r}") from None
    if "ratios" in raw:
        if not isinstance(raw["ratios"], list) or not raw["ratios"]:
            raise ScenarioError(f"{where}.ratios", "expected a non-empty list of cumulative fill ratios")
        ratios = tuple(_dec(r, f"{where}.ratios[{i}]", positive=True) for i, r in enumerate(raw["ratios"]))
        if any(r > ONE for r in ratios):
            raise ScenarioError(f"{where}.ratios", "ratios are cumulative shares of the order and must be <= 1")
        if any(b <= a for a, b in zip(ratios, ratios[1:])):
            raise ScenarioError(f"{where}.ratios", "ratios are cumulative and must increase strictly")
        if model is not FillModel.PARTIAL:
            raise ScenarioError(f"{where}.ratios", f"only the partial model takes ratios, not {model.value}")
    else:
        ratios = (Decimal("0.5"), ONE) if model is FillModel.PARTIAL else (ONE,)
    reason = raw.get("reject_reason", FillSpec.reject_reason)
    if not isinstance(reason, str) or not reason:
        raise ScenarioError(f"{where}.reject_reason", "expected a non-empty string")
    return FillSpec(
        model=model,
        ratios=ratios,
        latency_seconds=_seconds(raw.get("latency_seconds", 0), f"{where}.latency_seconds"),
        step_seconds=_seconds(raw.get("step_seconds", 0), f"{where}.step_seconds"),
        slippage_ticks=_int(raw.get("slippage_ticks", 0), f"{where}.slippage_ticks", non_negative=True),
        reject_reason=reason,
    )


def _symbol(raw: Any, where: str) -> SymbolSpec:
    _expect_mapping(raw, where)
    _check_keys(raw, {"asset_class", "mid", "spread", "drift_ticks", "volatility_ticks", "quote_age_seconds",
                      "bid_size", "ask_size", "closes", "fill"}, where)
    if "mid" not in raw:
        raise ScenarioError(f"{where}.mid", "is required")
    klass = None
    if "asset_class" in raw:
        try:
            klass = AssetClass.parse(raw["asset_class"], f"{where}.asset_class")
        except InvalidInput as exc:
            raise ScenarioError(exc.field, exc.reason) from None
    closes = raw.get("closes", [])
    if not isinstance(closes, list):
        raise ScenarioError(f"{where}.closes", "expected a list of prices, oldest first")
    return SymbolSpec(
        mid=_dec(raw["mid"], f"{where}.mid", positive=True),
        asset_class=klass,
        spread=_dec(raw["spread"], f"{where}.spread", non_negative=True) if "spread" in raw else None,
        drift_ticks=_int(raw.get("drift_ticks", 0), f"{where}.drift_ticks"),
        volatility_ticks=_dec(raw.get("volatility_ticks", 0), f"{where}.volatility_ticks", non_negative=True),
        quote_age_seconds=_seconds(raw.get("quote_age_seconds", 0), f"{where}.quote_age_seconds"),
        bid_size=_dec(raw.get("bid_size", "100"), f"{where}.bid_size", non_negative=True),
        ask_size=_dec(raw.get("ask_size", "100"), f"{where}.ask_size", non_negative=True),
        closes=tuple(_dec(c, f"{where}.closes[{i}]", positive=True) for i, c in enumerate(closes)),
        fill=_fill(raw["fill"], f"{where}.fill") if "fill" in raw else None,
    )


def _fault(raw: Any, where: str) -> FaultSpec:
    _expect_mapping(raw, where)
    _check_keys(raw, {"operation", "kind", "after_calls", "count", "retry_after"}, where)
    operation = raw.get("operation")
    if operation not in FAULT_OPERATIONS:
        raise ScenarioError(f"{where}.operation", f"expected one of {sorted(FAULT_OPERATIONS)}, got {operation!r}")
    try:
        kind = FaultKind(raw.get("kind"))
    except ValueError:
        raise ScenarioError(f"{where}.kind",
                            f"expected one of {[k.value for k in FaultKind]}, got {raw.get('kind')!r}") from None
    count = raw.get("count", 1)
    if count is not None:
        count = _int(count, f"{where}.count")
        if count < 1:
            raise ScenarioError(f"{where}.count", "must be >= 1, or null for every call")
    return FaultSpec(operation=operation, kind=kind,
                     after_calls=_int(raw.get("after_calls", 0), f"{where}.after_calls", non_negative=True),
                     count=count, retry_after=_seconds(raw.get("retry_after", 1), f"{where}.retry_after"))


def canonical_symbol(symbol: str, asset_class: AssetClass | str | None = None) -> tuple[str, AssetClass]:
    """The venue's key for a symbol: pairs as ``BASE/QUOTE`` (``BTCUSD`` → ``BTC/USD``), others normalized."""
    text = normalize_symbol(symbol)
    klass = AssetClass.parse(asset_class) if asset_class is not None else detect_asset_class(text)
    if klass in (AssetClass.CRYPTO, AssetClass.FOREX, AssetClass.COMMODITY):
        text = crypto_pair(text)
    return text, klass


def _derived_int(*parts: object) -> int:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def derived_uuid(*parts: object) -> str:
    """A version-4-shaped UUID that depends only on ``parts`` (reproducible ids)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


# --------------------------------------------------------------------------- market


# Default markets for symbols a scenario does not list: a price range per class, two basis points
# of spread (at least one tick), so spreads stay under 0.1% of the price.
_DEFAULT_RANGES = {
    AssetClass.EQUITY: (Decimal("20"), Decimal("500")),
    AssetClass.OPTIONS: (Decimal("12"), Decimal("40")),
    AssetClass.CRYPTO: (Decimal("2000"), Decimal("60000")),
    AssetClass.FOREX: (Decimal("0.5"), Decimal("2")),
    AssetClass.COMMODITY: (Decimal("20"), Decimal("2500")),
}
_DEFAULT_SPREAD_RATIO = Decimal("0.0002")
_CLOSE_VOLATILITY = 0.01  # generated closes: 1% daily moves


@dataclass
class _SymbolState:
    symbol: str
    asset_class: AssetClass
    spec: AssetSpec
    config: SymbolSpec
    mid: Decimal
    spread: Decimal
    rng: random.Random
    steps: int = 0


class MarketSimulator:
    """Per-symbol mid, spread, drift and volatility; quotes rounded to the asset spec tick.

    The market moves one step per ``step()`` call and, when the scenario has ``step_seconds``, one
    more per ``step_seconds`` of clock time. Each symbol has its own seeded generator and catches up
    on the steps when first touched, so prices do not depend on the order symbols are asked for.
    """

    def __init__(self, scenario: Scenario, clock: Clock, specs: AssetSpecRegistry | None = None):
        self._scenario = scenario
        self._clock = clock
        self._specs = specs or default_registry()
        self._lock = threading.RLock()
        self._states: dict[str, _SymbolState] = {}
        self._manual_steps = 0
        self._t0 = clock.now()

    # -- lookup

    def resolve(self, symbol: str, asset_class: AssetClass | str | None = None) -> tuple[str, AssetClass]:
        """Canonical symbol and asset class; a class given in the scenario wins over detection."""
        text = normalize_symbol(symbol)
        for candidate in (text, crypto_pair(text)):
            config = self._scenario.symbols.get(candidate)
            if config is not None and asset_class is None:
                return candidate, config.asset_class or detect_asset_class(candidate)
        return canonical_symbol(text, asset_class)

    def spec(self, symbol: str, asset_class: AssetClass | str | None = None) -> AssetSpec:
        return self._state(symbol, asset_class).spec

    def fill_spec(self, symbol: str, asset_class: AssetClass | str | None = None) -> FillSpec:
        return self._state(symbol, asset_class).config.fill or self._scenario.default_fill

    def _state(self, symbol: str, asset_class: AssetClass | str | None = None) -> _SymbolState:
        key, klass = self.resolve(symbol, asset_class)
        with self._lock:
            state = self._states.get(key)
            if state is None:
                state = self._new_state(key, klass)
                self._states[key] = state
            self._catch_up(state)
            return state

    def _new_state(self, symbol: str, klass: AssetClass) -> _SymbolState:
        seed = self._scenario.seed
        spec = self._specs.spec_for(symbol, klass)
        config = self._scenario.symbols.get(symbol)
        if config is None:
            config = self._default_config(symbol, klass, spec)
        mid = spec.round_price(config.mid)
        spread = config.spread if config.spread is not None else self._default_spread(mid, spec)
        return _SymbolState(symbol=symbol, asset_class=klass, spec=spec, config=config, mid=mid, spread=spread,
                            rng=random.Random(_derived_int(seed, symbol, "walk")))

    def _default_config(self, symbol: str, klass: AssetClass, spec: AssetSpec) -> SymbolSpec:
        low, high = _DEFAULT_RANGES[klass]
        low = max(low, spec.tick_size * 2000)  # keep one tick under 0.05% of the price
        high = max(high, low * 3)
        rng = random.Random(_derived_int(self._scenario.seed, symbol, "market"))
        ticks = rng.randint(int(low / spec.tick_size), int(high / spec.tick_size))
        return SymbolSpec(mid=ticks * spec.tick_size, asset_class=klass)

    @staticmethod
    def _default_spread(mid: Decimal, spec: AssetSpec) -> Decimal:
        return max(spec.tick_size, round_to_step(mid * _DEFAULT_SPREAD_RATIO, spec.tick_size))

    # -- movement

    def _target_steps(self) -> int:
        steps = self._manual_steps
        if self._scenario.step_seconds > 0:
            elapsed = (self._clock.now() - self._t0).total_seconds()
            steps += max(0, int(elapsed // self._scenario.step_seconds))
        return steps

    def _catch_up(self, state: _SymbolState) -> None:
        target = self._target_steps()
        config = state.config
        tick = state.spec.tick_size
        while state.steps < target:
            shock = 0
            if config.volatility_ticks > ZERO:
                shock = round(state.rng.gauss(0.0, float(config.volatility_ticks)))
            state.mid = max(tick, state.mid + (config.drift_ticks + shock) * tick)
            state.steps += 1

    def step(self, n: int = 1) -> None:
        """Move every symbol ``n`` steps (drift plus a seeded random shock)."""
        if n < 0:
            raise ValueError("n must be >= 0")
        with self._lock:
            self._manual_steps += n
            for state in self._states.values():
                self._catch_up(state)

    def set_mid(self, symbol: str, mid: Decimal, asset_class: AssetClass | str | None = None) -> None:
        """Move a market by hand (a gap, a shock), rounded to the tick."""
        with self._lock:
            state = self._state(symbol, asset_class)
            state.mid = state.spec.round_price(Decimal(mid))

    def set_spread(self, symbol: str, spread: Decimal, asset_class: AssetClass | str | None = None) -> None:
        with self._lock:
            state = self._state(symbol, asset_class)
            if Decimal(spread) < ZERO:
                raise ValueError("spread must be >= 0")
            state.spread = Decimal(spread)

    # -- reads

    def quote(self, symbol: str, asset_class: AssetClass | str | None = None) -> Quote:
        with self._lock:
            state = self._state(symbol, asset_class)
            tick = state.spec.tick_size
            bid = _round(state.mid - state.spread / 2, tick, ROUND_FLOOR)
            bid = max(bid, tick)
            ask = bid + _round(state.spread, tick, ROUND_CEILING)
            stamp = self._clock.now() - timedelta(seconds=state.config.quote_age_seconds)
            return Quote(symbol=state.symbol, bid=bid, ask=ask, timestamp=stamp,
                         bid_size=state.config.bid_size, ask_size=state.config.ask_size)

    def mid(self, symbol: str, asset_class: AssetClass | str | None = None) -> Decimal:
        return self.quote(symbol, asset_class).mid

    def recent_closes(self, symbol: str, n: int, asset_class: AssetClass | str | None = None) -> list[Decimal]:
        """The last ``n`` daily closes, oldest first.

        Explicit scenario closes are returned as given (at most ``n``, possibly fewer). Otherwise a
        seeded 1%-a-day walk that ends at the symbol's starting mid; it depends only on the seed,
        the symbol and ``n``.
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        with self._lock:
            state = self._state(symbol, asset_class)
            if state.config.closes:
                return list(state.config.closes[-n:]) if n else []
            rng = random.Random(_derived_int(self._scenario.seed, state.symbol, "closes"))
            tick = state.spec.tick_size
            price = state.config.mid
            closes = [state.spec.round_price(price)]
            for _ in range(n - 1):
                move = Decimal(repr(round(rng.gauss(0.0, _CLOSE_VOLATILITY), 6)))
                price = max(tick, price / (ONE + move))
                closes.append(max(tick, state.spec.round_price(price)))
            closes.reverse()
            return closes[-n:] if n else []


def _round(value: Decimal, step: Decimal, rounding: str) -> Decimal:
    return ((value / step).to_integral_value(rounding=rounding) * step).quantize(step)


# --------------------------------------------------------------------------- orders


@dataclass(frozen=True)
class LegRequest:
    """One leg of a multi-leg (mleg) option order; leg qty = parent qty × ``ratio_qty``."""

    symbol: str
    ratio_qty: int
    side: OrderSide
    position_intent: str | None = None


@dataclass(frozen=True)
class MlegRequest:
    client_order_id: str
    qty: Decimal
    legs: tuple[LegRequest, ...]
    order_type: OrderType = OrderType.MARKET
    limit_price: Decimal | None = None  # net per unit: positive a debit, negative a credit
    time_in_force: str = "day"

    def __post_init__(self) -> None:
        if not self.client_order_id or len(self.client_order_id) > 48:
            raise ValueError("client_order_id must be 1..48 characters")
        if self.qty <= ZERO or self.qty != self.qty.to_integral_value():
            raise ValueError("mleg qty must be a positive whole number")
        if not 2 <= len(self.legs) <= 4:
            raise ValueError("an mleg order has 2 to 4 legs")
        if len({leg.symbol for leg in self.legs}) != len(self.legs):
            raise ValueError("mleg legs must have unique symbols")
        for leg in self.legs:
            if not is_occ_option(leg.symbol):
                raise ValueError(f"mleg legs must be OCC option symbols, got {leg.symbol!r}")
            if leg.ratio_qty < 1:
                raise ValueError("leg ratio_qty must be >= 1")
        if (self.order_type is OrderType.LIMIT) != (self.limit_price is not None):
            raise ValueError("limit_price is required for limit orders and only for them")


@dataclass(frozen=True)
class Fill:
    fill_id: str
    broker_order_id: str
    client_order_id: str
    symbol: str
    side: OrderSide
    qty: Decimal
    price: Decimal
    timestamp: datetime


@dataclass(frozen=True)
class VenueOrder:
    """A snapshot of one order as the venue sees it (richer than ``BrokerOrder``)."""

    broker_order_id: str
    client_order_id: str
    symbol: str  # "" for an mleg parent
    asset_class: AssetClass
    side: OrderSide
    qty: Decimal
    order_type: OrderType
    limit_price: Decimal | None
    time_in_force: str
    state: OrderState
    filled_qty: Decimal
    filled_avg_price: Decimal | None
    created_at: datetime
    updated_at: datetime
    filled_at: datetime | None = None
    canceled_at: datetime | None = None
    failed_at: datetime | None = None
    reject_reason: str | None = None
    order_class: str = "simple"  # "simple" or "mleg"
    legs: tuple["VenueOrder", ...] = ()
    ratio_qty: int | None = None
    position_intent: str | None = None
    extended_hours: bool = False

    @property
    def remaining_qty(self) -> Decimal:
        return self.qty - self.filled_qty

    def to_broker_order(self) -> BrokerOrder:
        """An mleg parent reports the legs' underlying as its symbol."""
        symbol = self.symbol or (occ_underlying(self.legs[0].symbol) or "" if self.legs else "")
        return BrokerOrder(
            broker_order_id=self.broker_order_id, client_order_id=self.client_order_id, symbol=symbol,
            side=self.side, qty=self.qty, state=self.state, filled_qty=self.filled_qty,
            filled_avg_price=self.filled_avg_price, submitted_at=self.created_at, updated_at=self.updated_at,
            venue_status=self.state.value, legs=tuple(leg.to_broker_order() for leg in self.legs))


@dataclass
class _Order:
    broker_order_id: str
    client_order_id: str
    symbol: str
    asset_class: AssetClass
    side: OrderSide
    qty: Decimal
    order_type: OrderType
    limit_price: Decimal | None
    time_in_force: str
    fill: FillSpec
    lot: Decimal
    created_at: datetime
    updated_at: datetime
    eligible_at: datetime
    state: OrderState = OrderState.NEW
    filled_qty: Decimal = ZERO
    filled_value: Decimal = ZERO  # Σ qty × price (net per unit × qty for mleg)
    step: int = 0  # partial-fill ratios applied so far
    filled_at: datetime | None = None
    canceled_at: datetime | None = None
    failed_at: datetime | None = None
    reject_reason: str | None = None
    legs: list["_Order"] = field(default_factory=list)
    ratio_qty: int | None = None
    position_intent: str | None = None

    def snapshot(self) -> VenueOrder:
        avg = self.filled_value / self.filled_qty if self.filled_qty else None
        return VenueOrder(
            broker_order_id=self.broker_order_id, client_order_id=self.client_order_id, symbol=self.symbol,
            asset_class=self.asset_class, side=self.side, qty=self.qty, order_type=self.order_type,
            limit_price=self.limit_price, time_in_force=self.time_in_force, state=self.state,
            filled_qty=self.filled_qty, filled_avg_price=avg, created_at=self.created_at,
            updated_at=self.updated_at, filled_at=self.filled_at, canceled_at=self.canceled_at,
            failed_at=self.failed_at, reject_reason=self.reject_reason,
            order_class="mleg" if self.legs else "simple", legs=tuple(leg.snapshot() for leg in self.legs),
            ratio_qty=self.ratio_qty, position_intent=self.position_intent)


@dataclass
class _Holding:
    qty: Decimal = ZERO  # signed
    avg_entry: Decimal = ZERO
    asset_class: AssetClass = AssetClass.EQUITY


@dataclass
class _ActiveFault:
    spec: FaultSpec
    seen: int = 0
    fired: int = 0

    def fires(self, operation: str) -> bool:
        if self.spec.operation not in ("*", operation):
            return False
        self.seen += 1
        if self.seen <= self.spec.after_calls:
            return False
        if self.spec.count is not None and self.fired >= self.spec.count:
            return False
        self.fired += 1
        return True


class SimulatedVenue:
    """Orders, fills, positions and account over a ``MarketSimulator``; see the module docstring."""

    def __init__(self, scenario: Scenario | Mapping[str, Any] | str | Path | None = None, *,
                 clock: Clock | None = None, specs: AssetSpecRegistry | None = None, seed: int | None = None):
        resolved = Scenario.resolve(scenario)
        if seed is not None:
            resolved = resolved.with_seed(seed)
        self.scenario = resolved
        self.clock: Clock = clock or SystemClock()
        self.specs = specs or default_registry()
        self.market = MarketSimulator(resolved, self.clock, self.specs)
        self._lock = threading.RLock()
        self._orders: dict[str, _Order] = {}
        self._by_client: dict[str, str] = {}
        self._fills: list[Fill] = []
        self._holdings: dict[str, _Holding] = {}
        self._cash = resolved.account.cash
        self._realized = ZERO
        self._counter = 0
        self._faults = [_ActiveFault(f) for f in resolved.faults]

    # -- ids and faults

    def _next_id(self, kind: str) -> str:
        self._counter += 1
        return derived_uuid(self.scenario.seed, kind, self._counter)

    def new_client_order_id(self) -> str:
        """A reproducible client order id for callers that did not bring one."""
        with self._lock:
            return self._next_id("client")

    def inject_fault(self, operation: str, kind: FaultKind | str, *, count: int | None = 1, after_calls: int = 0,
                     retry_after: float = 1.0) -> None:
        spec = _fault({"operation": operation, "kind": FaultKind(kind).value, "count": count,
                       "after_calls": after_calls, "retry_after": retry_after}, "inject_fault")
        with self._lock:
            self._faults.append(_ActiveFault(spec))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _check_faults(self, operation: str) -> FaultSpec | None:
        """Raise a pre-call fault; return a ``lost_response`` fault to raise after the call."""
        lost = None
        for spec in [f.spec for f in self._faults if f.fires(operation)]:  # every fault counts the call
            if spec.kind is FaultKind.RATE_LIMITED:
                raise BrokerError(BrokerErrorCode.RATE_LIMITED, f"{operation}: rate limited (simulated)",
                                  retry_after=spec.retry_after)
            if spec.kind is FaultKind.UNAVAILABLE:
                raise BrokerError(BrokerErrorCode.UNAVAILABLE, f"{operation}: venue unavailable (simulated)",
                                  retry_after=spec.retry_after)
            lost = spec
        return lost

    @staticmethod
    def _raise_lost(operation: str, lost: FaultSpec | None) -> None:
        if lost is not None:
            raise LostResponse(f"{operation}: connection lost after the venue acted (simulated)",
                               retry_after=lost.retry_after)

    # -- submission

    def submit_order(self, request: OrderRequest, *, on_duplicate: DuplicatePolicy = "return") -> VenueOrder:
        """Accept an order; a known ``client_order_id`` returns the existing order or raises DUPLICATE."""
        with self._lock:
            lost = self._check_faults("submit_order")
            order = self._submit(request, on_duplicate)
            self._raise_lost("submit_order", lost)
            return order

    def _submit(self, request: OrderRequest, on_duplicate: DuplicatePolicy) -> VenueOrder:
        existing = self._duplicate(request.client_order_id, on_duplicate)
        if existing is not None:
            return existing
        try:
            symbol, klass = self.market.resolve(request.symbol, request.asset_class)
            spec = self.market.spec(symbol, klass)
            qty = spec.quantize_qty(request.qty)
            limit = spec.quantize_price(request.limit_price, "limit_price") if request.limit_price else None
        except InvalidInput as exc:
            raise BrokerError(BrokerErrorCode.INVALID, str(exc)) from None
        tif = _tif(request.time_in_force)
        quote = self.market.quote(symbol, klass)
        price = quote.ask if request.side is OrderSide.BUY else quote.bid
        if limit is not None:
            price = limit
        self._check_buying_power(symbol, request.side, qty, price, spec)
        now = self.clock.now()
        fill = self.market.fill_spec(symbol, klass)
        order = _Order(
            broker_order_id=self._next_id("order"), client_order_id=request.client_order_id, symbol=symbol,
            asset_class=klass, side=request.side, qty=qty, order_type=request.order_type, limit_price=limit,
            time_in_force=tif, fill=fill, lot=spec.lot_size, created_at=now, updated_at=now,
            eligible_at=now + timedelta(seconds=fill.latency_seconds))
        self._accept(order)
        return order.snapshot()

    def submit_mleg(self, request: MlegRequest, *, on_duplicate: DuplicatePolicy = "return") -> VenueOrder:
        """Accept a multi-leg option order; the legs fill together, by the first leg's fill model."""
        with self._lock:
            lost = self._check_faults("submit_mleg")
            existing = self._duplicate(request.client_order_id, on_duplicate)
            if existing is not None:
                self._raise_lost("submit_mleg", lost)
                return existing
            tif = _tif(request.time_in_force)
            request_limit = None
            if request.limit_price is not None:
                tick = self.market.spec(request.legs[0].symbol, AssetClass.OPTIONS).tick_size
                if request.limit_price % tick != ZERO:
                    raise BrokerError(BrokerErrorCode.INVALID,
                                      f"limit_price: {request.limit_price} is not a multiple of {tick}")
                request_limit = request.limit_price
            net = self._mleg_net_price(request.legs)
            if net > ZERO:
                spec = self.market.spec(request.legs[0].symbol, AssetClass.OPTIONS)
                self._check_buying_power_amount(spec.margin(request.qty, net))
            now = self.clock.now()
            first = request.legs[0]
            fill = self.market.fill_spec(first.symbol, AssetClass.OPTIONS)
            parent_id = self._next_id("order")
            legs = []
            for leg in request.legs:
                symbol, _ = self.market.resolve(leg.symbol, AssetClass.OPTIONS)
                legs.append(_Order(
                    broker_order_id=self._next_id("order"), client_order_id=self._next_id("client"), symbol=symbol,
                    asset_class=AssetClass.OPTIONS, side=leg.side, qty=request.qty * leg.ratio_qty,
                    order_type=request.order_type, limit_price=None, time_in_force=tif, fill=fill, lot=ONE,
                    created_at=now, updated_at=now, eligible_at=now, ratio_qty=leg.ratio_qty,
                    position_intent=leg.position_intent))
            parent = _Order(
                broker_order_id=parent_id, client_order_id=request.client_order_id, symbol="",
                asset_class=AssetClass.OPTIONS, side=first.side, qty=request.qty, order_type=request.order_type,
                limit_price=request_limit, time_in_force=tif, fill=fill, lot=ONE, created_at=now, updated_at=now,
                eligible_at=now + timedelta(seconds=fill.latency_seconds), legs=legs)
            self._accept(parent)
            snapshot = parent.snapshot()
            self._raise_lost("submit_mleg", lost)
            return snapshot

    def _duplicate(self, client_order_id: str, on_duplicate: DuplicatePolicy) -> VenueOrder | None:
        broker_id = self._by_client.get(client_order_id)
        if broker_id is None:
            return None
        if on_duplicate == "raise":
            raise BrokerError(BrokerErrorCode.DUPLICATE, "client_order_id must be unique")
        return self._orders[broker_id].snapshot()

    def _accept(self, order: _Order) -> None:
        self._orders[order.broker_order_id] = order
        self._by_client[order.client_order_id] = order.broker_order_id
        if order.time_in_force == "fok" and not self._fills_at_once(order):
            self._cancel(order)  # fill or kill: nothing fills unless everything can, now
            return
        self._progress(order, observe=False)
        if not order.state.is_final and order.time_in_force in ("ioc", "fok"):
            self._cancel(order)

    def _fills_at_once(self, order: _Order) -> bool:
        fill = order.fill
        if self.clock.now() < order.eligible_at:
            return False
        if fill.model is FillModel.REJECT:
            return True  # let the progression reject it
        if fill.model is FillModel.NEVER or (fill.model is FillModel.PARTIAL and fill.ratios[0] < ONE):
            return False
        if order.legs:
            return all(self._fill_price(leg, None) is not None for leg in order.legs) and (
                order.limit_price is None or self._mleg_net_price(order.legs) <= order.limit_price)
        return self._fill_price(order, order.limit_price) is not None

    def _check_buying_power(self, symbol: str, side: OrderSide, qty: Decimal, price: Decimal,
                            spec: AssetSpec) -> None:
        holding = self._holdings.get(symbol)
        held = holding.qty if holding else ZERO
        opening = qty if held * side.direction >= 0 else max(ZERO, qty - abs(held))
        if opening > ZERO:
            self._check_buying_power_amount(spec.margin(opening, price))

    def _check_buying_power_amount(self, required: Decimal) -> None:
        available = self._buying_power()
        if required > available:
            raise BrokerError(BrokerErrorCode.INSUFFICIENT_BUYING_POWER,
                              f"insufficient buying power: required={required} available={available}")

    # -- progression

    def _progress(self, order: _Order, *, observe: bool) -> None:
        """Apply whatever the fill model says is due by now (one more partial step when observed)."""
        if order.state.is_final:
            return
        now = self.clock.now()
        if now < order.eligible_at:
            return
        model = order.fill.model
        if model is FillModel.NEVER:
            return
        if model is FillModel.REJECT:
            order.state = OrderState.REJECTED
            order.reject_reason = order.fill.reject_reason
            order.failed_at = order.updated_at = now
            return
        if model is not FillModel.PARTIAL:
            self._fill_to(order, order.qty, now)
            return
        target = max(order.step, 1)
        if observe and order.step >= 1:
            target = order.step + 1
        if order.fill.step_seconds > 0:
            elapsed = (now - order.eligible_at).total_seconds()
            target = max(target, 1 + int(elapsed // order.fill.step_seconds))
        target = min(target, len(order.fill.ratios))
        while order.step < target:
            ratio = order.fill.ratios[order.step]
            goal = order.qty if ratio == ONE else round_to_step(order.qty * ratio, order.lot, down=True)
            if goal > order.filled_qty and not self._fill_to(order, goal, now):
                return  # not marketable: the step waits
            order.step += 1

    def _fill_to(self, order: _Order, goal: Decimal, now: datetime) -> bool:
        """Fill ``order`` up to ``goal`` cumulative qty at the current touch; False if not marketable."""
        qty = goal - order.filled_qty
        if qty <= ZERO:
            return True
        if order.legs:
            prices = [self._fill_price(leg, None) for leg in order.legs]
            if any(p is None for p in prices):
                return False
            net = sum((p * leg.ratio_qty * leg.side.direction for p, leg in zip(prices, order.legs)), ZERO)
            if order.limit_price is not None and net > order.limit_price:
                return False
            for leg, price in zip(order.legs, prices):
                self._record_fill(leg, qty * leg.ratio_qty, price, now)
            order.filled_qty += qty
            order.filled_value += net * qty
        else:
            price = self._fill_price(order, order.limit_price)
            if price is None:
                return False
            self._record_fill(order, qty, price, now)
            return True
        self._update_state(order, now)
        return True

    def _fill_price(self, order: _Order, limit: Decimal | None) -> Decimal | None:
        quote = self.market.quote(order.symbol, order.asset_class)
        tick = self.market.spec(order.symbol, order.asset_class).tick_size
        slip = order.fill.slippage_ticks * tick
        if order.side is OrderSide.BUY:
            if limit is not None and quote.ask > limit:
                return None
            price = quote.ask + slip
            return min(price, limit) if limit is not None else price
        if limit is not None and quote.bid < limit:
            return None
        price = max(tick, quote.bid - slip)
        return max(price, limit) if limit is not None else price

    def _record_fill(self, order: _Order, qty: Decimal, price: Decimal, now: datetime) -> None:
        order.filled_qty += qty
        order.filled_value += qty * price
        self._fills.append(Fill(fill_id=self._next_id("fill"), broker_order_id=order.broker_order_id,
                                client_order_id=order.client_order_id, symbol=order.symbol, side=order.side,
                                qty=qty, price=price, timestamp=now))
        self._apply_to_holdings(order.symbol, order.asset_class, order.side.direction * qty, price)
        self._update_state(order, now)

    @staticmethod
    def _update_state(order: _Order, now: datetime) -> None:
        order.updated_at = now
        if order.filled_qty >= order.qty:
            order.state = OrderState.FILLED
            order.filled_at = now
        elif order.filled_qty > ZERO:
            order.state = OrderState.PARTIALLY_FILLED

    def _apply_to_holdings(self, symbol: str, klass: AssetClass, signed_qty: Decimal, price: Decimal) -> None:
        spec = self.market.spec(symbol, klass)
        holding = self._holdings.setdefault(symbol, _Holding(asset_class=klass))
        self._cash -= signed_qty * price * spec.multiplier
        old = holding.qty
        new = old + signed_qty
        if old == ZERO or (old > ZERO) == (signed_qty > ZERO):
            holding.avg_entry = (abs(old) * holding.avg_entry + abs(signed_qty) * price) / abs(new)
        else:
            closed = min(abs(old), abs(signed_qty))
            direction = 1 if old > ZERO else -1
            self._realized += closed * (price - holding.avg_entry) * direction * spec.multiplier
            if new != ZERO and (new > ZERO) != (old > ZERO):
                holding.avg_entry = price  # crossed through zero: the rest opens at this price
        holding.qty = new
        if new == ZERO:
            del self._holdings[symbol]

    def _mleg_net_price(self, legs: Sequence[_Order] | Sequence[LegRequest]) -> Decimal:
        """Net per unit at the touch: Σ side × ratio × (ask for buys, bid for sells); positive a debit."""
        net = ZERO
        for leg in legs:
            quote = self.market.quote(leg.symbol, AssetClass.OPTIONS)
            price = quote.ask if leg.side is OrderSide.BUY else quote.bid
            net += price * (leg.ratio_qty or 1) * leg.side.direction
        return net

    # -- reads that observe (and so progress) orders

    def get_order(self, broker_order_id: str) -> VenueOrder:
        with self._lock:
            lost = self._check_faults("get_order")
            order = self._find(broker_order_id)
            self._progress(order, observe=True)
            self._raise_lost("get_order", lost)
            return order.snapshot()

    def get_order_by_client_id(self, client_order_id: str) -> VenueOrder | None:
        with self._lock:
            lost = self._check_faults("get_order_by_client_id")
            broker_id = self._by_client.get(client_order_id)
            if broker_id is None:
                self._raise_lost("get_order_by_client_id", lost)
                return None
            order = self._orders[broker_id]
            self._progress(order, observe=True)
            self._raise_lost("get_order_by_client_id", lost)
            return order.snapshot()

    def list_orders(self, *, status: str = "all") -> list[VenueOrder]:
        """Orders in submission order, each observed once; ``status`` is open, closed or all."""
        if status not in ("open", "closed", "all"):
            raise BrokerError(BrokerErrorCode.INVALID, f"status must be open, closed or all, got {status!r}")
        with self._lock:
            lost = self._check_faults("list_orders")
            out = []
            for order in self._orders.values():
                self._progress(order, observe=True)
                if status == "all" or (status == "open") != order.state.is_final:
                    out.append(order.snapshot())
            self._raise_lost("list_orders", lost)
            return out

    def poll(self) -> list[VenueOrder]:
        """Observe every working order once (one partial step each); returns the ones still working."""
        with self._lock:
            for order in self._orders.values():
                self._progress(order, observe=True)
            return [o.snapshot() for o in self._orders.values() if not o.state.is_final]

    def step(self, n: int = 1) -> None:
        """Move the market ``n`` steps, then observe working orders once."""
        with self._lock:
            self.market.step(n)
            self.poll()

    def cancel_order(self, broker_order_id: str) -> VenueOrder:
        """Cancel the unfilled remainder (fills due by now are applied first). A final order is returned as is."""
        with self._lock:
            lost = self._check_faults("cancel_order")
            order = self._find(broker_order_id)
            self._progress(order, observe=False)
            if not order.state.is_final:
                self._cancel(order)
            self._raise_lost("cancel_order", lost)
            return order.snapshot()

    def _cancel(self, order: _Order) -> None:
        now = self.clock.now()
        order.state = OrderState.CANCELED
        order.canceled_at = order.updated_at = now
        for leg in order.legs:
            if not leg.state.is_final:
                leg.state = OrderState.CANCELED
                leg.canceled_at = leg.updated_at = now

    def _find(self, broker_order_id: str) -> _Order:
        order = self._orders.get(str(broker_order_id))
        if order is None:
            raise BrokerError(BrokerErrorCode.NOT_FOUND, f"order not found: {broker_order_id}")
        return order

    # -- positions and account

    def get_positions(self) -> list[Position]:
        with self._lock:
            lost = self._check_faults("get_positions")
            out = [Position(symbol=s, qty=h.qty, avg_entry_price=h.avg_entry) for s, h in self._holdings.items()]
            self._raise_lost("get_positions", lost)
            return out

    def get_position(self, symbol: str, asset_class: AssetClass | str | None = None) -> Position | None:
        with self._lock:
            key, _ = self.market.resolve(symbol, asset_class)
            holding = self._holdings.get(key)
            return Position(symbol=key, qty=holding.qty, avg_entry_price=holding.avg_entry) if holding else None

    def net_position(self, symbol: str, asset_class: AssetClass | str | None = None) -> Decimal:
        position = self.get_position(symbol, asset_class)
        return position.qty if position else ZERO

    def position_asset_class(self, symbol: str) -> AssetClass | None:
        with self._lock:
            holding = self._holdings.get(self.market.resolve(symbol)[0])
            return holding.asset_class if holding else None

    def close_position(self, symbol: str, asset_class: AssetClass | str | None = None, *,
                       qty: Decimal | None = None, client_order_id: str | None = None) -> VenueOrder | None:
        """Submit a market order for the opposite side of the position (all of it unless ``qty``); None if flat."""
        with self._lock:
            lost = self._check_faults("close_position")
            key, _ = self.market.resolve(symbol, asset_class)
            holding = self._holdings.get(key)
            if holding is None:
                self._raise_lost("close_position", lost)
                return None
            size = abs(holding.qty) if qty is None else min(abs(holding.qty), Decimal(qty))
            if size <= ZERO:
                raise BrokerError(BrokerErrorCode.INVALID, f"close qty must be positive, got {qty}")
            request = OrderRequest(
                client_order_id=client_order_id or self._next_id("client"), symbol=key,
                asset_class=holding.asset_class, side=OrderSide.SELL if holding.qty > ZERO else OrderSide.BUY,
                qty=size)
            order = self._submit(request, "raise")
            self._raise_lost("close_position", lost)
            return order

    def _buying_power(self) -> Decimal:
        used = ZERO
        for symbol, holding in self._holdings.items():
            used += self.market.spec(symbol, holding.asset_class).margin(abs(holding.qty), holding.avg_entry)
        return self.scenario.account.buying_power + self._realized - used

    def get_account(self) -> Account:
        with self._lock:
            lost = self._check_faults("get_account")
            market_value = ZERO
            for symbol, holding in self._holdings.items():
                spec = self.market.spec(symbol, holding.asset_class)
                market_value += holding.qty * self.market.mid(symbol, holding.asset_class) * spec.multiplier
            account = self.scenario.account
            equity = account.equity + (self._cash - account.cash) + market_value
            result = Account(buying_power=self._buying_power(), equity=equity, cash=self._cash)
            self._raise_lost("get_account", lost)
            return result

    # -- market data

    def get_latest_quote(self, symbol: str, asset_class: AssetClass | str | None = None) -> Quote:
        with self._lock:
            lost = self._check_faults("get_latest_quote")
            quote = self.market.quote(symbol, asset_class)
            self._raise_lost("get_latest_quote", lost)
            return quote

    def get_recent_closes(self, symbol: str, n: int, asset_class: AssetClass | str | None = None) -> list[Decimal]:
        with self._lock:
            lost = self._check_faults("get_recent_closes")
            closes = self.market.recent_closes(symbol, n, asset_class)
            self._raise_lost("get_recent_closes", lost)
            return closes

    # -- invariant checks (no progression, no faults)

    def orders(self) -> list[VenueOrder]:
        """Every order ever accepted, in submission order, as it stands (nothing progresses)."""
        with self._lock:
            return [o.snapshot() for o in self._orders.values()]

    def peek_order(self, broker_order_id: str) -> VenueOrder:
        with self._lock:
            return self._find(broker_order_id).snapshot()

    def fills(self) -> list[Fill]:
        with self._lock:
            return list(self._fills)

    def client_order_ids(self) -> list[str]:
        with self._lock:
            return [o.client_order_id for o in self._orders.values()]


def _tif(value: str) -> str:
    tif = (value or "day").lower()
    if tif not in TIME_IN_FORCE:
        raise BrokerError(BrokerErrorCode.INVALID,
                          f"time_in_force must be one of {sorted(TIME_IN_FORCE)}, got {value!r}")
    return tif

