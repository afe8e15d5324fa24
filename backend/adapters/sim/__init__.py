"""A deterministic simulated venue, all in Decimals: ``scenario`` (what a run starts with),
``market`` (seeded quotes and closes), ``orders`` (requests, fills, snapshots) and ``venue``
(matching, one book per account — cash, positions, orders — and faults).

Pure Python; the only I/O is ``Scenario.load``. ``PaperBroker`` and the local Alpaca and OANDA
test servers (``tests/support/``) sit on ``SimulatedVenue``. ``backend/adapters/sim_venue.py``
re-exports these names for older importers.
"""
from backend.adapters.sim.market import MarketSimulator
from backend.adapters.sim.orders import DEFAULT_ACCOUNT_ID, Fill, LegRequest, MlegRequest, VenueOrder
from backend.adapters.sim.scenario import (
    FAULT_OPERATIONS,
    SCENARIOS_DIR,
    AccountSpec,
    FaultKind,
    FaultSpec,
    FillModel,
    FillSpec,
    InstrumentSpec,
    Scenario,
    ScenarioError,
    SymbolSpec,
    canonical_symbol,
    derived_uuid,
)
from backend.adapters.sim.venue import TIME_IN_FORCE, DuplicatePolicy, LostResponse, SimulatedVenue

__all__ = [
    "DEFAULT_ACCOUNT_ID", "FAULT_OPERATIONS", "SCENARIOS_DIR", "TIME_IN_FORCE", "AccountSpec", "DuplicatePolicy", "FaultKind", "FaultSpec",
    "Fill", "FillModel", "FillSpec", "InstrumentSpec", "LegRequest", "LostResponse", "MarketSimulator", "MlegRequest", "Scenario",
    "ScenarioError", "SimulatedVenue", "SymbolSpec", "VenueOrder", "canonical_symbol", "derived_uuid",
]
