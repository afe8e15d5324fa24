"""Scenarios of the simulated venue: the markets, account, fill models and faults a run starts with.

Format (JSON or dict; decimals as strings or ints, floats refused; unknown keys refused)::

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
                 "count": 1, "retry_after": 1}],
     "instruments": {"DOGE/USD": {"asset_class": "CRYPTO", "tradable": true, "tick_size": "0.00001",
                                  "lot_size": "1", "min_qty": "10", "fractionable": false},
                     "GME": {"asset_class": "EQUITY", "tradable": false}},
     "instruments_from": "default"}

Every key but ``symbols.*.mid`` is optional; ``market.py`` gives unlisted symbols a default market.

Instruments (what the venue lists, issue 19 item 2): every symbol in ``symbols`` is listed and
tradable, with the spec table's tick and lot (``asset_specs.json``). ``instruments`` lists more
symbols (they get a default market) or gives listed ones the venue's own metadata: ``tradable``
(false: listed but refused ``NOT_TRADABLE``), ``tick_size``, ``lot_size``, ``min_qty``,
``fractionable``; a tick or lot given here is the market's too. ``instruments_from`` names another
scenario (a name or a path) whose listed symbols this one lists as well (its own entries win), so a
scenario that shapes a few markets still lists the usual universe. A symbol no listing names is
``UNKNOWN_SYMBOL`` to ``SimulatedVenue.instrument``.
``Scenario.load`` is the only I/O of the ``sim`` package. Fill models and faults are described in
``venue.py``, where they act.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any, Mapping

from backend.domain.assets import AssetClass, crypto_pair, detect_asset_class, normalize_symbol
from backend.domain.errors import InvalidInput
from backend.domain.money import ONE, ZERO, to_decimal

SCENARIOS_DIR = Path(__file__).resolve().parents[2] / "config" / "scenarios"


class ScenarioError(InvalidInput):
    """A scenario that cannot be used; ``field`` is the path of the offending key."""


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
    "list_orders", "instrument",
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
class InstrumentSpec:
    """A listed symbol's venue metadata; ``None`` fields fall back to the spec table."""

    asset_class: AssetClass | None = None
    tradable: bool = True
    tick_size: Decimal | None = None
    lot_size: Decimal | None = None
    min_qty: Decimal | None = None
    fractionable: bool | None = None


@dataclass(frozen=True)
class Scenario:
    seed: int = 7
    account: AccountSpec = field(default_factory=AccountSpec)
    symbols: Mapping[str, SymbolSpec] = field(default_factory=dict)
    default_fill: FillSpec = field(default_factory=FillSpec)
    faults: tuple[FaultSpec, ...] = ()
    step_seconds: float = 0.0
    description: str = ""
    # listed beyond ``symbols`` or with the venue's own metadata (own entries, then instruments_from's)
    instruments: Mapping[str, InstrumentSpec] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, _inheriting: tuple[str, ...] = ()) -> "Scenario":
        _expect_mapping(data, "scenario")
        _check_keys(data, {"seed", "account", "symbols", "default_fill", "faults", "step_seconds",
                           "description", "_comment", "instruments", "instruments_from"}, "scenario")
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
        faults = tuple(parse_fault(raw, f"faults[{i}]") for i, raw in enumerate(raw_faults))
        description = data.get("description", "")
        if not isinstance(description, str):
            raise ScenarioError("description", "expected a string")
        instruments = _instruments(data.get("instruments", {}), symbols)
        if "instruments_from" in data:
            inherited = _inherited_instruments(data["instruments_from"], _inheriting)
            instruments = {**{k: v for k, v in inherited.items() if k not in symbols}, **instruments}
        return cls(seed=seed, account=account, symbols=symbols, default_fill=default_fill, faults=faults,
                   step_seconds=_seconds(data.get("step_seconds", 0), "step_seconds"), description=description,
                   instruments=instruments)

    @classmethod
    def load(cls, path_or_name: str | Path, *, _inheriting: tuple[str, ...] = ()) -> "Scenario":
        """Load a JSON file; a bare name such as ``"default"`` means ``backend/config/scenarios/<name>.json``."""
        path = _scenario_path(path_or_name)
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            raise ScenarioError("scenario", f"no scenario file {path}") from None
        except json.JSONDecodeError as exc:
            raise ScenarioError("scenario", f"{path} is not valid JSON: {exc}") from None
        return cls.from_dict(data, _inheriting=_inheriting)

    def listed(self) -> dict[str, InstrumentSpec]:
        """Every symbol this venue lists, canonical key → its instrument metadata."""
        out = {key: InstrumentSpec(asset_class=spec.asset_class) for key, spec in self.symbols.items()}
        out.update(self.instruments)
        return out

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


def _scenario_path(path_or_name: str | Path) -> Path:
    path = Path(path_or_name)
    if not path.suffix and not path.exists() and "/" not in str(path_or_name):
        path = SCENARIOS_DIR / f"{path_or_name}.json"
    return path


def _inherited_instruments(raw: Any, inheriting: tuple[str, ...]) -> dict[str, InstrumentSpec]:
    if not isinstance(raw, str) or not raw.strip():
        raise ScenarioError("instruments_from", "expected a scenario name or path")
    marker = str(_scenario_path(raw.strip()).resolve())
    if marker in inheriting:
        raise ScenarioError("instruments_from", f"{raw!r} inherits its instruments from itself")
    return Scenario.load(raw.strip(), _inheriting=(*inheriting, marker)).listed()


_INSTRUMENT_KEYS = {"asset_class", "tradable", "tick_size", "lot_size", "min_qty", "fractionable"}


def _instruments(raw: Any, symbols: Mapping[str, SymbolSpec]) -> dict[str, InstrumentSpec]:
    _expect_mapping(raw, "instruments")
    out: dict[str, InstrumentSpec] = {}
    for name, entry in raw.items():
        where = f"instruments.{name}"
        _expect_mapping(entry, where)
        _check_keys(entry, _INSTRUMENT_KEYS, where)
        klass = None
        if "asset_class" in entry:
            try:
                klass = AssetClass.parse(entry["asset_class"], f"{where}.asset_class")
            except InvalidInput as exc:
                raise ScenarioError(exc.field, exc.reason) from None
        try:
            key, _ = canonical_symbol(name, klass)
        except InvalidInput as exc:
            raise ScenarioError(where, exc.reason) from None
        if key in out:
            raise ScenarioError(where, f"listed twice (as {key})")
        market = symbols.get(key)
        if market is not None and klass is not None and market.asset_class not in (None, klass):
            raise ScenarioError(f"{where}.asset_class", f"contradicts symbols.{key}.asset_class")
        flags = {}
        for flag in ("tradable", "fractionable"):
            if flag in entry:
                if not isinstance(entry[flag], bool):
                    raise ScenarioError(f"{where}.{flag}", f"expected true or false, got {entry[flag]!r}")
                flags[flag] = entry[flag]
        out[key] = InstrumentSpec(
            asset_class=klass or (market.asset_class if market is not None else None),
            tick_size=_dec(entry["tick_size"], f"{where}.tick_size", positive=True) if "tick_size" in entry else None,
            lot_size=_dec(entry["lot_size"], f"{where}.lot_size", positive=True) if "lot_size" in entry else None,
            min_qty=_dec(entry["min_qty"], f"{where}.min_qty", non_negative=True) if "min_qty" in entry else None,
            **flags,
        )
    return out


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


def parse_fault(raw: Any, where: str) -> FaultSpec:
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


def _digest(parts: tuple[object, ...]) -> bytes:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()


def derived_int(*parts: object) -> int:
    """A 64-bit integer that depends only on ``parts`` (seeds of the per-symbol generators)."""
    return int.from_bytes(_digest(parts)[:8], "big")


def derived_uuid(*parts: object) -> str:
    """A version-4-shaped UUID that depends only on ``parts`` (reproducible ids)."""
    return str(uuid.UUID(bytes=_digest(parts)[:16], version=4))
