"""The execution store port: what the single-leg engine persists, and in which atomic steps.

One intent touches the store in at most two commits:

1. ``claim`` (only for intents that will reach the broker): the intent record moves to RESERVED
   with a lease, a daily trade slot is taken, and the position exposure is reserved — one atomic
   write, before the order is sent. A crash after it leaves a RESERVED record with an expiring
   lease that the sweeper finds and reconciles by client order id.
2. ``finish``: the intent record's final state, the immutable ledger row, the user's history row
   (placed trades), and the exposure settled or released — one atomic write.

Decisions that never reach the broker (downgrade, rejection, dry run) are one ``finish`` commit.

The port has two sides. ``Store`` (= ``ExecutionStore`` + ``GroupStore``) is the write side the core
uses: the engine, the group executor, the sweeper and approvals. ``ReadModel`` is what the API pages
over (history, ledger, metrics, tax exports); the core's decisions never read it.

The write side is a unit of work (``backend.execution.unit_of_work``): an adapter implements only
``get_all`` (one batched read), ``list_ids`` and ``commit`` (creates, preconditioned updates and
deletes, blind increments, all or nothing; ``Conflict`` on a failed precondition). ``claim``,
``finish``, ``apply_fill_update``, ``create_group``, ``save_group`` and ``reserve_group`` are
decided in the core (``backend.execution.store_writes``, over ``store_rules`` and
``backend.tax.state``) and both adapters delegate to it; the lease transactions, ``annotate_intent``
and ``put_rpm_approval`` are still one-document writes of each adapter. ``tests/contract`` runs every
behaviour below, and the unit of work itself, against both adapters.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

from backend.domain.errors import StoreContended
from backend.risk.manager import Exposure, RiskSnapshot

if TYPE_CHECKING:
    from backend.execution.unit_of_work import Commit


class IntentStatus(str, Enum):
    NEW = "new"  # written by a client, not yet picked up
    RESERVED = "reserved"  # risk reserved, order about to be / being sent
    PLACED = "placed"
    DOWNGRADED = "downgraded"
    REJECTED = "rejected"
    DRY_RUN = "dry_run"

    @property
    def is_final(self) -> bool:
        return self in (IntentStatus.PLACED, IntentStatus.DOWNGRADED, IntentStatus.REJECTED, IntentStatus.DRY_RUN)


@dataclass(frozen=True)
class IntentRecord:
    tenant_id: str
    intent_id: str
    status: IntentStatus
    data: Mapping[str, Any]  # the stored document as read


class ClaimResult(str, Enum):
    CLAIMED = "claimed"
    DUPLICATE = "duplicate"  # someone else holds or finished this intent
    DAILY_LIMIT = "daily_limit"


TENANT_LIMIT = "tenant"  # which daily limit a DAILY_LIMIT outcome hit (``limit_scope``)
ACCOUNT_LIMIT = "account"


@dataclass(frozen=True)
class Claim:
    tenant_id: str
    intent_id: str
    uid: str
    account_key: str  # broker_account_id + symbol, the exposure document key
    trade_day: str  # YYYY-MM-DD (UTC)
    daily_limit: int
    signed_qty: Decimal
    record: Mapping[str, Any]  # the RESERVED intent record fields
    lease_until: datetime
    trades_seen: int = 0  # the slot count the risk check just read: where probing for a free slot starts
    # issue 17: the intent document as the engine's batched pre-claim read answered it, path ->
    # (document or None, token); the first probe commits on it instead of reading it again
    prefetched: Mapping[str, tuple[Any, Any]] | None = None
    # issue 12: the bound account. With it, the claim also creates the account's daily slot
    # (``store_rules.account_slot_path``) in the same commit — always, so a limit set later in the day
    # counts the trades before it. ``account_daily_limit``: the account's own limit (None: the account
    # has none; its slot then takes the tenant slot's number); ``account_trades_seen``: its count as read.
    account_id: str | None = None
    account_daily_limit: int | None = None
    account_trades_seen: int = 0
    side_ops: tuple[Any, ...] = ()  # issue 17: blind writes that ride the claim's commit (unit_of_work.SideWrites)
    # issue 17: ``trades_seen`` / ``account_trades_seen`` are the day's tally (a hint): a taken slot
    # makes the claim count the slots exactly and probe from there
    counts_are_hints: bool = False


@dataclass(frozen=True)
class ClaimOutcome:
    result: ClaimResult
    slot: int | None = None
    exposure: Exposure = Exposure()  # read after the reservation, including it
    existing: IntentRecord | None = None
    trades_today: int = 0
    token: Any = None  # issue 17: the RESERVED intent record's version as committed (finish updates on it)
    # issue 17: the fields the claim wrote to the intent record at that version (the finish writes only
    # the fields it changes; None: unknown, the finish writes them all)
    committed: Mapping[str, Any] | None = None
    account_slot: int | None = None  # the account's slot taken with ``slot`` (a claim bound to an account)
    account_trades_today: int | None = None  # the account's count (None: the claim names no account)
    limit_scope: str = TENANT_LIMIT  # DAILY_LIMIT: the tenant's limit or the account's (ACCOUNT_LIMIT)


@dataclass(frozen=True)
class Finish:
    tenant_id: str
    intent_id: str
    uid: str
    record: Mapping[str, Any]  # final intent record fields
    ledger_id: str
    ledger: Mapping[str, Any]
    history_id: str | None = None
    history: Mapping[str, Any] | None = None
    # exposure bookkeeping (only when a claim was made)
    account_key: str | None = None
    reserved_signed_qty: Decimal | None = None  # the reservation to release
    filled_signed_qty: Decimal = Decimal(0)  # the position change to apply
    trade_day: str | None = None
    # give the daily slot back (no trade happened); the account slot the claim took with it (named by
    # the stored intent record's ``account_slot``) is given back in the same commit
    release_slot: int | None = None
    tax: Any = None  # backend.tax.Fill: the user's lot book advances in the same commit
    # issue 17: documents already read (path -> (document or None, token)): the intent as the claim
    # committed it, the lot book, tax settings and metrics shard from the pre-claim read. The first
    # attempt reads only what is missing; a moved document is a Conflict and the retry reads afresh.
    prefetched: Mapping[str, tuple[Any, Any]] | None = None
    side_ops: tuple[Any, ...] = ()  # issue 17: blind writes that ride this commit (unit_of_work.SideWrites)


@dataclass(frozen=True)
class FillUpdate:
    """Later fills of a placed single-leg order: new ledger/history rows for the increment, the
    intent record's result updated, exposure settled — one atomic write, only if the intent record
    is unchanged since it was read (``token``)."""

    tenant_id: str
    intent_id: str
    uid: str
    token: Any
    record: Mapping[str, Any]  # fields to merge into the intent record
    fills: tuple["FillWrite", ...]
    account_key: str
    filled_signed_qty: Decimal  # position change
    released_signed_qty: Decimal  # reservation released


class ExecutionStore(Protocol):
    def get_intent(self, tenant_id: str, intent_id: str) -> IntentRecord | None: ...

    def take_intent_lease(self, tenant_id: str, intent_id: str, now: datetime, lease_until: datetime) -> bool:
        """Transactionally extend an expired lease of a RESERVED intent; False if held or not reserved."""
        ...

    def annotate_intent(self, tenant_id: str, intent_id: str, fields: Mapping[str, Any], *,
                        only_if_status: str | None = None) -> bool:
        """Merge fields into the intent document (results of multi-leg intents, invalid documents)."""
        ...

    def get_intent_with_token(self, tenant_id: str, intent_id: str) -> tuple[IntentRecord, Any] | None: ...

    def apply_fill_update(self, update: FillUpdate) -> bool:
        """False when the intent changed since it was read (another worker reconciled it)."""
        ...

    def find_working_intents(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        """Placed intents whose order was still working, due for reconciliation."""
        ...

    def risk_snapshot(self, tenant_id: str, account_key: str, trade_day: str,
                      account_id: str | None = None) -> RiskSnapshot:
        """Halt flags, tenant overrides, the day's slot count and the exposure of ``account_key``; with
        ``account_id`` also that account's slot count (``account_trades_today``; else None), all in one
        round trip."""
        ...

    def kill_switches(self, tenant_id: str) -> RiskSnapshot:
        """The global and tenant halt flags only (a snapshot without counts or exposure)."""
        ...

    def count_trades(self, tenant_id: str, trade_day: str) -> int:
        """The daily slots taken on ``trade_day`` (one count aggregation): the group path reads the halt
        flags, exposures and approval in one ``get_all`` and only the count here."""
        ...

    def day_trade_counts(self, tenant_id: str, trade_day: str, account_id: str) -> tuple[int, int]:
        """The tenant's and the account's slots taken on ``trade_day``: both counts in one round trip
        (the group path, when the bound account has a daily limit of its own)."""
        ...

    # --- batched pre-claim read (issue 17)
    def read_pre_claim(self, tenant_id: str, account_key: str, trade_day: str, paths: Sequence[str],
                       account_id: str | None = None, tally: bool = False
                       ) -> tuple[dict[str, tuple[dict[str, Any] | None, Any]], RiskSnapshot]:
        """``get_all(paths)`` and ``risk_snapshot(tenant_id, account_key, trade_day, account_id)`` in ONE
        round trip: one ``get_all`` of ``paths`` plus the risk documents (``ops/execution``, the tenant's
        ``config/risk``, the exposure document), with the day's slot counts sent concurrently. Answers
        (path -> (document or None, token) for ``paths``, the snapshot exactly as ``risk_snapshot``
        builds it). Nothing is cached: every call reads the kill switches afresh. With ``tally`` the
        day's counts come from the tally documents read in the same ``get_all`` instead of count
        aggregations (``counts_are_hints``: see ``store_rules.tally_counts``; issue 17)."""
        ...

    def claim(self, claim: Claim) -> ClaimOutcome: ...

    def finish(self, finish: Finish) -> IntentRecord | None:
        """Commit atomically and return None (the record's lease is cleared). If the intent is
        already final, commit nothing and return the stored record (a concurrent duplicate finished
        first; its outcome wins)."""
        ...

    def find_stuck_intents(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        """RESERVED intents whose lease expired (a crash between claim and finish)."""
        ...

    def find_unstarted_intents(self, limit: int) -> list[tuple[str, str, dict[str, Any]]]:
        """(tenant, intent id, document) of intents an app wrote that no trigger claimed (status new)."""
        ...


# --- multi-leg groups -------------------------------------------------------------------------------
class LeaseLost(Exception):
    """The group document changed under us (another worker took the lease): stop acting on it."""


class StoreContention(StoreContended):
    """A write kept being aborted by contention; nothing was committed (the caller's state is
    unchanged and findable: a RESERVED intent is reconciled by the sweeper)."""


class IntentMissing(LookupError):
    """A group write carried an ``intent_update`` for an intent document that does not exist:
    nothing was written (only groups started from an app's intent document update it)."""


@dataclass(frozen=True)
class GroupSnapshot:
    tenant_id: str
    group_id: str
    doc: Mapping[str, Any]  # ExecutionGroup.to_dict() plus lease fields
    token: Any  # opaque write precondition (Firestore update_time)


@dataclass(frozen=True)
class FillWrite:
    """A ledger row and the matching user history row, both create-only, keyed by one id."""

    trade_id: str
    uid: str
    ledger: Mapping[str, Any]
    history: Mapping[str, Any] | None
    tax: Any = None  # backend.tax.Fill for the user's lot book


@dataclass(frozen=True)
class LegReservation:
    """One leg's share of a group reservation: its exposure key and signed units."""

    leg_id: str
    account_key: str  # risk.gate.account_key_for(broker_account_id, symbol)
    signed_qty: Decimal


@dataclass(frozen=True)
class GroupReservation:
    """Before a group's first submit: one daily slot per leg and exposure for every leg, reserved in
    the same commit as the group document (precondition on its last write). Slots are created with
    create-if-absent, exposure moves by blind increments — the same mechanics as ``claim``."""

    uid: str
    trade_day: str
    daily_limit: int
    legs: tuple[LegReservation, ...]
    broker_account_id: str = "default"
    trades_seen: int = 0  # the slot count the risk check just read: the first choice avoids the taken ones
    # issue 12: the bound account (as for ``Claim``): one account slot per leg in the same commit;
    # ``account_daily_limit`` None = the account has no limit of its own (still counted)
    account_id: str | None = None
    account_daily_limit: int | None = None
    account_trades_seen: int = 0

    def to_doc(self, slots: Mapping[str, int], account_slots: Mapping[str, int] | None = None) -> dict[str, Any]:
        """The ``_reservation`` field a group document carries once its legs are reserved (with an
        account: ``account_id`` and each leg's ``account_slot``, what the settlement gives back)."""
        legs = []
        for leg in self.legs:
            entry: dict[str, Any] = {"leg_id": leg.leg_id, "account_key": leg.account_key,
                                     "signed_qty": str(leg.signed_qty), "slot": slots[leg.leg_id]}
            if account_slots is not None:
                entry["account_slot"] = account_slots[leg.leg_id]
            legs.append(entry)
        doc: dict[str, Any] = {"trade_day": self.trade_day, "broker_account_id": self.broker_account_id, "legs": legs}
        if self.account_id is not None:
            doc["account_id"] = self.account_id
        return doc


@dataclass(frozen=True)
class GroupReserveOutcome:
    result: ClaimResult  # CLAIMED or DAILY_LIMIT (nothing written)
    snapshot: GroupSnapshot | None = None  # the group document after the commit (with ``_reservation``)
    exposures: Mapping[str, Exposure] | None = None  # per account key, read after the commit (including it)
    trades_today: int = 0
    account_trades_today: int | None = None  # with an account: its count (after the commit when CLAIMED)
    limit_scope: str = TENANT_LIMIT  # DAILY_LIMIT: the tenant's limit or the account's (ACCOUNT_LIMIT)


@dataclass(frozen=True)
class GroupSettlement:
    """On a group's final state, in the same commit as the final save: each leg's filled units (net
    of rollback fills) move into the position, its whole reservation is released, and the daily
    slots of legs that filled nothing are given back (with the account slots the stored
    ``_reservation`` names for those legs)."""

    trade_day: str
    exposure: tuple[tuple[str, Decimal, Decimal], ...]  # (account_key, filled_signed, released_signed)
    release_slots: tuple[int, ...] = ()


class GroupStore(Protocol):
    def reserve_group(self, snapshot: GroupSnapshot, doc: Mapping[str, Any],
                      reservation: GroupReservation) -> GroupReserveOutcome:
        """Save ``doc`` (precondition on ``snapshot``, else ``LeaseLost``) together with the daily
        slots and exposure of ``reservation``; the stored doc gets ``_reservation`` (legs, slots, day)."""

    def get_rpm_approval(self, tenant_id: str, decision_id: str) -> Mapping[str, Any] | None:
        """The server-issued approval ``tenants/{t}/rpm_approvals/{decision_id}`` (None if absent)."""

    def put_rpm_approval(self, tenant_id: str, decision_id: str, doc: Mapping[str, Any]) -> bool:
        """Create-only; False when the decision id exists already."""

    def create_group(self, tenant_id: str, group_id: str, doc: Mapping[str, Any],
                     intent_update: Mapping[str, Any] | None = None) -> GroupSnapshot | None:
        """Create the group document; None if it already exists. ``intent_update`` is merged into
        the existing intent document of the same id in the same commit (groups started from an
        app's doc); ``IntentMissing`` (nothing written) when there is no such document."""

    def load_group(self, tenant_id: str, group_id: str) -> GroupSnapshot | None: ...

    def save_group(self, snapshot: GroupSnapshot, doc: Mapping[str, Any],
                   fills: tuple[FillWrite, ...] = (), intent_update: Mapping[str, Any] | None = None,
                   settlement: GroupSettlement | None = None) -> GroupSnapshot:
        """Write the group doc (and its legs projection, any fills and the settlement of its
        reservation) atomically, only if nobody wrote it since ``snapshot``; raise ``LeaseLost`` otherwise
        (``IntentMissing`` as in ``create_group``)."""

    def take_lease(self, tenant_id: str, group_id: str, owner: str, now: datetime,
                   lease_until: datetime) -> GroupSnapshot | None:
        """Transactionally take an expired lease; None when it is held or the group is final."""

    def find_stuck_groups(self, now: datetime, limit: int) -> list[tuple[str, str]]: ...

    def find_stuck_intents(self, now: datetime, limit: int) -> list[tuple[str, str]]: ...

    def kill_switches(self, tenant_id: str) -> RiskSnapshot: ...


class UnitOfWork(Protocol):
    """What an adapter commits for the core (``backend.execution.unit_of_work`` holds the values,
    ``backend.execution.store_writes`` the operations built on it)."""

    def get_all(self, paths: Sequence[str]) -> dict[str, tuple[dict[str, Any] | None, Any]]:
        """path -> (document or None, token) for every path, in one round trip."""
        ...

    def list_ids(self, collection: str, limit: int) -> list[str]:
        """Up to ``limit`` document ids of one collection (a keys-only query)."""
        ...

    def commit(self, commit: "Commit") -> list[Any]:
        """Apply every op atomically and answer each op's new token; ``Conflict`` (nothing written)
        when a precondition failed, ``StoreContention`` when contention retries ran out."""
        ...


class TaxAdmin(Protocol):
    """Issue 16: the tax settings users and tenant admins write (decided in backend/tax/admin_writes.py
    over the unit of work)."""

    def record_tax_election(self, uid: str, method: Any, *, now: datetime, effective_at: datetime | None = None,
                            account: str | None = None, default_rule: Any = None,
                            request_key: str | None = None) -> Any:
        """One more forward-only lot-method election on ``users/<uid>/config/tax`` (an ElectionOutcome)."""
        ...

    def tax_books_for_symbol(self, symbol: str, *, after: str | None, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """Every user's lot book of ``symbol`` as (path, document), by path, after the path ``after``."""
        ...

    def apply_corporate_action(self, tenant_id: str, action: Any, *, recorded_by: str,
                               now: datetime) -> tuple[dict[str, Any], bool]:
        """Record a corporate action and apply it once to the tenant's lot books: (record, replayed)."""
        ...


class Store(ExecutionStore, GroupStore, UnitOfWork, TaxAdmin, Protocol):
    """The write side the core uses (engine, group executor, sweeper, approvals, tax settings)."""


# --- read models (API pages: never used by the core's decisions) ------------------------------------
Row = tuple[str, dict[str, Any]]  # (document id, document)


class ReadModel(Protocol):
    """Ordered, bounded pages over what the write side recorded. ``after`` is the last row's
    (ordering field value, document id); a page holds at most ``limit`` rows."""

    def read_metrics(self, tenant_id: str, from_day: str, to_day: str) -> list[dict[str, Any]]:
        """The metrics shard documents of days in [from_day, to_day] (``backend.execution.metrics``)."""
        ...

    def admin_page(self, tenant_id: str, collection: str, *, equals: Mapping[str, str],
                   contains: tuple[str, str] | None = None, after: str | None,
                   limit: int) -> list[tuple[str, dict[str, Any]]]:
        """A tenant admin collection (members, accounts, connections) by document id (issue 13)."""
        ...

    def audit_page(self, tenant_id: str, *, equals: Mapping[str, str], created_from: str | None,
                   created_before: str | None, after: tuple[str, str] | None,
                   limit: int) -> list[tuple[str, dict[str, Any]]]:
        """``tenants/{t}/audit_log`` newest first, filtered like the ledger (issue 13)."""
        ...

    def ledger_page(self, tenant_id: str, *, equals: Mapping[str, str], created_from: str | None,
                    created_before: str | None, after: tuple[str, str] | None, limit: int) -> list[Row]:
        """Ledger rows newest first by (created_at, id), equality filters, created_at in [from, before)."""
        ...

    def history_page(self, uid: str, *, equals: Mapping[str, str], after: tuple[str, str] | None,
                     limit: int) -> list[Row]:
        """The user's history rows newest first by (created_at, id), equality filters."""
        ...

    def groups_page(self, tenant_id: str, *, equals: Mapping[str, str], created_from: str | None,
                    created_before: str | None, after: tuple[str, str] | None, limit: int) -> list[Row]:
        """The tenant's execution group documents newest first by (created_timestamp, id), equality
        filters on ``uid``/``status``/``strategy_id`` (``backend.api.groups_list.INDEXED_FILTERS``),
        created_timestamp in [created_from, created_before)."""
        ...

    def tax_disposals_page(self, uid: str, *, sold_from: str, sold_to: str, after: tuple[str, str] | None,
                           limit: int) -> list[Row]:
        """Final disposals sold in [sold_from, sold_to], by (sold, id) ascending."""
        ...

    def tax_shortfalls_page(self, uid: str, *, day_from: str, day_to: str, after: tuple[str, str] | None,
                            limit: int) -> list[Row]:
        """Disposal documents with trade_date in [day_from, day_to] (the shortfall records), ascending."""
        ...

    def tax_books_page(self, uid: str, *, after: str | None, limit: int) -> list[Row]:
        """The user's lot books by id."""
        ...
