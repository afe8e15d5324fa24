"""The market simulator of the simulated venue: seeded mids, spreads and closes, in Decimals.

Symbols a scenario does not list get a tight default market derived from the seed and the symbol
name, so any symbol works. Quotes: bid = mid − spread/2 rounded down to the tick, ask = bid +
spread rounded up to the tick, stamped ``now − quote_age_seconds``. Each market step (``step()``,
or every ``step_seconds`` of clock time) moves the mid by ``drift_ticks`` plus a seeded Gaussian of
``volatility_ticks`` ticks.
"""
from __future__ import annotations

import random
import threading
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from backend.adapters.sim.scenario import FillSpec, Scenario, SymbolSpec, canonical_symbol, derived_int
from backend.domain.assets import (
    AssetClass,
    AssetSpec,
    AssetSpecRegistry,
    crypto_pair,
    default_registry,
    detect_asset_class,
    normalize_symbol,
)
from backend.domain.clock import Clock
from backend.domain.money import ONE, ZERO, round_to_step
from backend.domain.orders import Quote

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
        spec = self.listed_spec(symbol, klass)
        config = self._scenario.symbols.get(symbol)
        if config is None:
            config = self._default_config(symbol, klass, spec)
        mid = spec.round_price(config.mid)
        spread = config.spread if config.spread is not None else self._default_spread(mid, spec)
        return _SymbolState(symbol=symbol, asset_class=klass, spec=spec, config=config, mid=mid, spread=spread,
                            rng=random.Random(derived_int(seed, symbol, "walk")))

    def listed_spec(self, symbol: str, klass: AssetClass) -> AssetSpec:
        """The spec table's spec for a canonical symbol, with the tick and lot the scenario's
        ``instruments`` give it (the venue's own metadata governs its market too)."""
        spec = self._specs.spec_for(symbol, klass)
        listing = self._scenario.instruments.get(symbol)
        if listing is not None and (listing.tick_size is not None or listing.lot_size is not None):
            spec = replace(spec, tick_size=listing.tick_size or spec.tick_size,
                           lot_size=listing.lot_size or spec.lot_size)
        return spec

    def _default_config(self, symbol: str, klass: AssetClass, spec: AssetSpec) -> SymbolSpec:
        low, high = _DEFAULT_RANGES[klass]
        low = max(low, spec.tick_size * 2000)  # keep one tick under 0.05% of the price
        high = max(high, low * 3)
        rng = random.Random(derived_int(self._scenario.seed, symbol, "market"))
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
            rng = random.Random(derived_int(self._scenario.seed, state.symbol, "closes"))
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
