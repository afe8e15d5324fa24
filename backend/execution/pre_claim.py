"""The engine's batched pre-claim read (issue 17): everything a single intent needs before its claim,
in ONE round trip (``ExecutionStore.read_pre_claim``: one ``get_all``, the day's tallies in it).

What one read fetches (``pre_claim_paths``):

- the intent document (replay / resume / the claim's first probe commits on its version);
- the account binding's documents (``backend.execution.account_writes.read_binding``): the member
  and the named account — or, when none is named, the account the member's default is *expected* to
  be (the default this instance saw last for the user; in auto mode a user's first account id) —
  and the account's connection document when this instance saw it on a non-deployment connection;
- the risk documents (``ops/execution``, the tenant's ``config/risk``, the exposure document of the
  expected account and symbol) and the day's tally documents (``store_rules.tally_counts``: the
  tenant's and the account's slots as a hint, no count aggregation — a count aggregation on the
  emulator took 3–5 ms alone and 8–12 ms beside the batched read; the engine counts exactly only when
  a tally is at a limit, and a claim only when its slot turned out taken): the risk snapshot;
- the user's history row of the intent id: present only for a trade of the same uid in another
  tenant (an app-chosen id reused), refused before anything is written (``preflight.check_trade_id``);
- for the finish of a placed trade: the user's lot book of the symbol, their tax settings and the
  ledger row's metrics shard (``finish_paths``). The lot book is also what the capacity guard judges
  before anything is written (``preflight.check_lot_book``, ``backend/execution/lot_capacity.py``):
  no read of its own.

Nothing is cached between requests: the "expected" default account and connection are only *which
documents to fetch*. Every decision uses the documents read in this very request and is checked
against them (the member's ``default_account_id``, the account's ``connection_id``); a wrong guess
costs the read it would have cost anyway (``PrefetchedDocs.get_all`` fetches what is missing).
Kill switches are read afresh by every request (staleness budget: none beyond the request itself;
they are now read before the quote instead of after it, so the window between their read and the
claim grows by the quote's own time; the post-claim re-check uses that same read, as before).

Documents taken from this read later than the claim: the lot book (updated only on the version read,
so a moved book is a conflict and is read again), the metrics shard (its ``strategies`` list bounds
the per-strategy counters; a concurrent admission may exceed the bound by one, as before) and the tax
settings (as of the request's start: an election recorded while the order's own broker call is in
flight applies from the next fill).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from backend.domain.accounts import account_path, connection_path
from backend.execution.store_rules import book_path, history_path, intent_path, metrics_path, tax_config_path
from backend.ports.accounts import DEPLOYMENT_CONNECTION_ID, AccountRead, member_path
from backend.risk.gate import account_key_for
from backend.risk.manager import RiskSnapshot

_HINTS_MAX = 50_000  # per process; cleared when full (a hint only chooses what to fetch)


class AccountHints:
    """Which account and connection documents to fetch with the next pre-claim read of a user: the
    default account id and the connection id this instance last saw. Never trusted: every bind
    checks them against the documents read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._default: dict[tuple[str, str], str] = {}
        self._connection: dict[tuple[str, str], str] = {}

    def default_for(self, tenant_id: str, uid: str) -> str | None:
        return self._default.get((tenant_id, uid))

    def connection_for(self, tenant_id: str, account_id: str) -> str | None:
        return self._connection.get((tenant_id, account_id))

    def learn(self, tenant_id: str, uid: str, default_id: str | None, account_id: str, connection_id: str) -> None:
        with self._lock:
            if len(self._default) > _HINTS_MAX or len(self._connection) > _HINTS_MAX:
                self._default.clear()
                self._connection.clear()
            if default_id:
                self._default[(tenant_id, uid)] = default_id
            self._connection[(tenant_id, account_id)] = connection_id


@dataclass(frozen=True)
class PreClaimPlan:
    """The paths of one pre-claim read and the account whose exposure it reads (None: unknown)."""

    paths: tuple[str, ...]
    account_id: str | None
    account_key: str | None


def pre_claim_plan(tenant_id: str, uid: str, intent_id: str, requested_id: str | None, symbol: str, day: str,
                   hints: AccountHints, auto_default: str | None) -> PreClaimPlan:
    """``auto_default``: the id auto mode provisions for a user who names none (None in strict mode)."""
    expected = requested_id or hints.default_for(tenant_id, uid) or auto_default
    # the user's history row of this id: another tenant's trade when it exists (preflight.check_trade_id)
    paths = [intent_path(tenant_id, intent_id), member_path(tenant_id, uid), history_path(uid, intent_id)]
    if expected is not None:
        paths.append(account_path(tenant_id, expected))
        connection = hints.connection_for(tenant_id, expected)
        if connection is not None and connection != DEPLOYMENT_CONNECTION_ID:
            paths.append(connection_path(tenant_id, connection))
    paths.extend(finish_paths(tenant_id, uid, intent_id, symbol, day))
    return PreClaimPlan(tuple(dict.fromkeys(paths)), expected,
                        None if expected is None else account_key_for(expected, symbol))


def finish_paths(tenant_id: str, uid: str, intent_id: str, symbol: str, day: str) -> list[str]:
    """What ``store_writes.finish`` of a placed trade reads: the user's lot book of the symbol, their
    tax settings and the ledger row's metrics shard (the row id is the intent id, dated ``day``)."""
    from backend.tax.state import book_key

    return [book_path(uid, book_key(symbol)), tax_config_path(uid),
            metrics_path(tenant_id, intent_id, {"trade_date": day})]


class PrefetchedDocs:
    """The account store the binder reads through for one request: documents of the pre-claim read
    are answered from it, anything else is read from the store (``account_writes`` decides what is
    read, exactly as the stores' own ``read_account_binding`` / ``get_connection`` do). A provision
    (auto mode's first account) writes through and forgets what was read."""

    def __init__(self, store: Any, docs: Mapping[str, tuple[Any, Any]]):
        self.store = store
        self.docs: dict[str, tuple[Any, Any]] = dict(docs)

    def get_all(self, paths: Sequence[str]) -> dict[str, tuple[Any, Any]]:
        missing = [p for p in paths if p not in self.docs]
        fetched = self.store.get_all(missing) if missing else {}
        return {p: (self.docs[p] if p in self.docs else fetched[p]) for p in paths}  # parsed, never mutated

    def read_account_binding(self, tenant_id: str, uid: str, account_id: str | None) -> AccountRead:
        from backend.execution import account_writes

        return account_writes.read_binding(self, tenant_id, uid, account_id)

    def get_connection(self, tenant_id: str, connection_id: str) -> Any:
        from backend.execution import account_writes

        return account_writes.get_connection(self, tenant_id, connection_id)

    def provision_account(self, tenant_id: str, uid: str, account: Any) -> Any:
        self.docs.clear()
        return self.store.provision_account(tenant_id, uid, account)


@dataclass(frozen=True)
class PreClaimRead:
    plan: PreClaimPlan
    docs: Mapping[str, tuple[Any, Any]]
    snapshot: RiskSnapshot | None  # of ``plan.account_key`` (None when the account was unknown)

    def snapshot_for(self, account_key: str) -> RiskSnapshot | None:
        return self.snapshot if account_key == self.plan.account_key else None

    def subset(self, paths: Sequence[str]) -> dict[str, tuple[Any, Any]]:
        return {p: self.docs[p] for p in paths if p in self.docs}


def read_pre_claim(store: Any, plan: PreClaimPlan, tenant_id: str, day: str) -> PreClaimRead:
    """One round trip; without a known account the risk snapshot is read later (the account binds
    first), and the documents alone come back."""
    if plan.account_key is None:
        return PreClaimRead(plan, store.get_all(list(plan.paths)), None)
    docs, snapshot = store.read_pre_claim(tenant_id, plan.account_key, day, list(plan.paths),
                                          account_id=plan.account_id, tally=True)  # + the day's tallies
    return PreClaimRead(plan, docs, snapshot)
