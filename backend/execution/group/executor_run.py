"""The state of one group run and its control-flow signals, shared by the executor's parts.

``GroupExecutor`` (backend/execution/group_executor.py) drives a group in runs: each entry point loads
the stored group into a ``_Run`` (the snapshot it saves against, the domain group, and the risk reads
made during the run); a step raises ``_Stop`` when the venue cannot be reached, and the run then
persists what it has and leaves the group for the sweeper. group_executor.py imports these back and
still exports ``VenueUnreachable`` and ``DEFAULT_GROUP_ACCOUNT``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from backend.execution import groups as g
from backend.ports.store import GroupSnapshot
from backend.risk.manager import RiskSnapshot

DEFAULT_GROUP_ACCOUNT = "default"  # a group's account label when the request names none


class VenueUnreachable(Exception):
    """``run_leased``: the venue could not be reached; what was persisted stays for the sweeper."""


class _Stop(Exception):
    """The broker cannot be reached: leave the group for the sweeper."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Run:
    snapshot: GroupSnapshot
    group: g.ExecutionGroup
    dirty: bool = False
    # risk reads of this run (see ``GroupExecutor._risk_reads``): the stored approval, read at most once
    # per run (immutable: see ``_rpm``); the halt flags and the day's slot count of the validation read
    approval: Mapping[str, Any] | None = None
    approval_read: bool = False
    flags: RiskSnapshot | None = None
    trades_seen: int = 0
    account_trades_seen: int = 0  # the bound account's slot count (read only when it has a daily limit)
    # the group's bound account as read with the halt flags (status, limits); None: unbound/absent
    account: Any = None
    account_missing: bool = False
    # the legs' lot books as the validation's batched read saw them (backend/execution/lot_capacity.py)
    books: Mapping[str, Any] | None = None
    # legs whose first fill's history row this user already holds (another tenant's group of this id)
    trade_ids_in_use: tuple[str, ...] = ()


def leg_trade_id(group_id: str, leg_id: str) -> str:
    """The trade id of a leg's fill (its ledger and history rows, its lots)."""
    return f"{group_id}--{leg_id}"
