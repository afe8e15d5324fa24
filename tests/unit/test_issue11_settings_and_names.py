"""Issue 11, defects 5 and 8 and the one composition root.

5. The ``EXECUTION_ENGINE_*`` group-gate values are parsed once, into ``ExecSettings.group``
   (a ``GroupSettings``), validated at start; ``ExecSettings`` no longer carries copies nothing reads.
8. Names say what they are: the executor's ``kill_switches=`` (was ``risk_snapshot=``), no
   ``ExecutionEngine.execute_group`` called "the orchestrator", one routes variable
   ``EXEC_BROKER_ROUTES`` (the code once advertised ``BROKER_ROUTES``, which nothing in production read).
"""
from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from backend.adapters.memory_store import InMemoryStore
from backend.adapters.paper_broker import PaperBroker
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.domain.errors import InvalidInput, RejectCode, Rejection
from backend.execution.broker_router import BrokerRouter, as_router
from backend.execution.engine import ExecutionEngine
from backend.execution.group_executor import GroupExecutor
from backend.execution.groups import GroupSettings
from backend.settings import ExecSettings
from tests.support.stub_broker import StubBroker

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ defect 5: one settings object

@pytest.mark.parametrize("var, raw", [
    ("EXECUTION_ENGINE_MAX_ROLLBACK_ATTEMPTS", "0"),
    ("EXECUTION_ENGINE_CORRELATION_LOOKBACK", "ten"),
    ("EXECUTION_ENGINE_MARGIN_CUSHION", "0.5"),
    ("EXECUTION_ENGINE_MAX_CLOCK_SKEW_SECONDS", "-2"),
])
def test_an_invalid_group_gate_variable_fails_when_the_settings_are_built_not_at_the_first_group(var, raw):
    with pytest.raises(InvalidInput) as refused:
        ExecSettings.from_env({var: raw})

    assert refused.value.field == var


def test_the_group_gate_thresholds_are_parsed_once_into_the_settings():
    env = {"EXECUTION_ENGINE_MARGIN_CUSHION": "2", "EXECUTION_ENGINE_MAX_STALE_TICK_SECONDS": "9",
           "EXECUTION_ENGINE_MAX_ROLLBACK_ATTEMPTS": "5"}

    settings = ExecSettings.from_env(env)

    assert settings.group == GroupSettings.from_env(env)
    assert (settings.group.margin_cushion, settings.group.max_stale_seconds,
            settings.group.max_rollback_attempts) == (Decimal("2"), Decimal("9"), 5)
    for unread in ("margin_cushion", "correlation_threshold", "max_stale_tick_seconds",
                   "max_spread_widening_pips", "group_env"):
        assert not hasattr(settings, unread), f"ExecSettings.{unread} duplicates GroupSettings"


def test_the_engines_group_executor_uses_the_settings_group_object():
    group = GroupSettings(margin_cushion=Decimal("3"))
    settings = ExecSettings(group=group)
    engine = ExecutionEngine(broker=PaperBroker(), store=InMemoryStore(), settings=settings)

    assert engine._groups().gsettings is group


# ------------------------------------------------------------------ defect 8: names

def test_the_group_executor_takes_the_kill_switch_reader_by_its_name():
    store, clock = InMemoryStore(), ManualClock()
    store.set_doc("ops/execution", {"kill_switch": True})

    executor = GroupExecutor(PaperBroker(clock=clock), store, clock, ExecSettings(),
                             kill_switches=store.kill_switches)

    assert executor._kill_switch("acme") == Rejection(RejectCode.KILL_SWITCH, "trading halted (global)")


def test_no_module_calls_the_engine_the_group_orchestrator():
    offenders = [p.relative_to(ROOT).as_posix() for p in (ROOT / "backend").rglob("*.py")
                 if re.search(r"orchestrator \(``ExecutionEngine\.execute_group``\)", p.read_text())]

    assert offenders == []


def test_the_routes_variable_is_named_exec_broker_routes_everywhere():
    texts = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "backend").rglob("*.py"),
             *(ROOT / "functions").glob("*.py")]
    offenders = [p.relative_to(ROOT).as_posix() for p in texts
                 if re.search(r"(?<![A-Z_])BROKER_ROUTES", p.read_text())]

    assert offenders == []


def test_broker_router_from_env_reads_exec_broker_routes():
    brokers = {"paper": StubBroker(name="paper")}

    router = BrokerRouter.from_env(brokers, env={"EXEC_BROKER_ROUTES": "EQUITY=paper"})

    assert router.describe() == {"EQUITY": "paper"}


# ------------------------------------------------------------------ one router type, one composition root

def test_a_single_venue_is_a_router_with_one_route_answering_no_venue_as_a_value():
    venue = StubBroker(name="stocks", supported=[AssetClass.EQUITY])

    router = as_router(venue)

    assert isinstance(router, BrokerRouter) and as_router(router) is router
    assert router.route(AssetClass.EQUITY) is venue
    assert router.route(AssetClass.FOREX) == Rejection(RejectCode.NO_VENUE_FOR_ASSET_CLASS, "FOREX")
    assert router.describe() == {"EQUITY": "stocks"}


def test_the_engine_routes_a_library_callers_venue_through_the_router():
    venue = PaperBroker(supported=["EQUITY"])
    engine = ExecutionEngine(broker=venue, store=InMemoryStore(), dry_run=True)

    assert engine.broker is venue and isinstance(engine.venues, BrokerRouter)
    assert engine._groups().venues is engine.venues


def test_engine_with_no_arguments_is_built_by_the_composition_root(monkeypatch):
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("EXEC_STORE", raising=False)
    monkeypatch.setenv("EXECUTION_ENGINE_MAX_STALE_TICK_SECONDS", "7")

    engine = ExecutionEngine()

    assert type(engine.broker).__name__ == "PaperBroker" and type(engine.store).__name__ == "InMemoryStore"
    assert engine.dry_run is True and engine.settings.group.max_stale_seconds == Decimal("7")
    assert engine._groups().gsettings is engine.settings.group


def test_no_core_module_guesses_the_broker_kind():
    offenders = [p.relative_to(ROOT).as_posix() for p in (ROOT / "backend").rglob("*.py")
                 if 'hasattr(self.broker, "broker_for")' in p.read_text()]

    assert offenders == []
