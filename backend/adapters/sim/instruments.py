"""The simulated venue's instrument list (issue 19 item 2): what ``SimulatedVenue.instrument`` answers.

A venue lists the symbols its scenario names (``symbols``, ``instruments``, ``instruments_from``;
see ``scenario.py``). Each listed symbol's tick and lot are the scenario's when it gives them, else
the spec table's — the same values its market quotes and fills with (``MarketSimulator.listed_spec``).
Any other symbol is not listed (None), although the market still quotes it for the sim's own callers.
"""
from __future__ import annotations

from backend.adapters.sim.market import MarketSimulator
from backend.adapters.sim.scenario import Scenario
from backend.domain.assets import AssetClass, detect_asset_class
from backend.domain.instruments import InstrumentInfo
from backend.domain.money import ONE

SOURCE = "paper:scenario"


def listed_instrument(scenario: Scenario, market: MarketSimulator, symbol: str,
                      asset_class: AssetClass | str | None) -> InstrumentInfo | None:
    """The venue's metadata for ``symbol`` under ``asset_class``; None when the scenario does not list
    it under that class. A non-fractionable listing trades whole lots of at least 1."""
    key, klass = market.resolve(symbol, asset_class)
    listing = scenario.listed().get(key)
    if listing is None or (listing.asset_class or detect_asset_class(key)) is not klass:
        return None
    spec = market.listed_spec(key, klass)
    fractionable = listing.fractionable if listing.fractionable is not None else spec.lot_size < ONE
    return InstrumentInfo(symbol=key, asset_class=klass, tradable=listing.tradable, tick_size=spec.tick_size,
                          lot_step=spec.lot_size if fractionable else max(spec.lot_size, ONE),
                          min_qty=listing.min_qty, fractionable=fractionable, source=SOURCE,
                          status="active" if listing.tradable else "inactive")


__all__ = ["listed_instrument"]
