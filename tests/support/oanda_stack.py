"""The engine on an OANDA connection to a local OANDA-v20 server (tests/support/oanda_server.py): the
adapter with the server's account and token, FX routed to it, an in-memory store unless one is given,
live (not dry run), position limits out of the way, no fill wait."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from backend.adapters.memory_store import InMemoryStore
from backend.adapters.oanda import OandaBroker, OandaConfig
from backend.adapters.routing import BrokerRouter
from backend.domain.assets import AssetClass
from backend.execution.engine import ExecutionEngine, RiskManager
from backend.risk.manager import RiskLimits
from backend.settings import ExecSettings


def oanda_engine(server: Any, token: str, clock: Any, store: Any = None) -> tuple[OandaBroker, ExecutionEngine]:
    broker = OandaBroker(OandaConfig(server.account_id, token, base_url=server.url, timeout_seconds=2.0), clock=clock)
    engine = ExecutionEngine(broker=BrokerRouter({AssetClass.FOREX: broker}),
                             store=store if store is not None else InMemoryStore(), clock=clock, dry_run=False,
                             risk=RiskManager(RiskLimits(max_position_qty=Decimal("100000000"))),
                             settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0"}))
    return broker, engine
