"""The simulated venue now lives in the ``backend.adapters.sim`` package (scenario, market, orders,
venue); this module re-exports its names so ``from backend.adapters.sim_venue import ...`` keeps
working. New code imports from ``backend.adapters.sim``.
"""
from backend.adapters.sim import *  # noqa: F403 - the package's public names, listed once there
from backend.adapters.sim import __all__  # noqa: F401
