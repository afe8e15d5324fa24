"""What every store adapter writes, computed once in the core (the adapters only commit it).

A store adapter (``backend/adapters/firestore_store.py``, ``backend/adapters/memory_store.py``)
must not carry rules of its own: the document shapes, increments and slot order below are decided
here, and the contract suite (``tests/contract``) runs both adapters through the same behaviours.

- Exposure documents ``tenants/<t>/exposure/<account>__<symbol>`` hold integer nano-units
  (``position_nanos``, ``reserved_long_nanos``, ``reserved_short_nanos``): they only move by blind
  increments, which must be exact.
- A claim probes daily slots starting at the count the risk check just read, then wraps around.
  A trade bound to an account also creates that account's slot in the same commit
  (``account_slot_path``, numbered below the account's own daily limit, or — with no account limit —
  the tenant slot's number); both are created with a create-if-absent precondition and given back
  together, so both counts stay exact under concurrency.
- The day's *tally* (issue 17) says where probing starts without a count aggregation on the order
  path: ``TALLY_SHARDS`` documents ``risk_days/<day>/tally/<k>`` (``taken``: +1 in the commit that
  creates a slot, -1 in the one that gives it back; the sum is the day's slots) and, for a trade
  bound to an account, ``risk_days/<day>/accounts/<account_id>`` (``taken``: the account's slots).
  A tally is a hint, never a decision: the slots' preconditions keep the limits exact, a claim that
  finds its slot taken counts the slots exactly and probes from there, and an order whose tally is
  at a limit is checked against the exact counts before it is refused (``counts_near_limit``).
- Metrics increments of a ledger row go to one shard document of the day; per-strategy counters
  are bounded by ``MAX_STRATEGIES_PER_SHARD`` (``backend.execution.metrics``); per-asset-class
  counters (``by_asset_class``) by the ``AssetClass`` enum.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from decimal import Decimal
from collections.abc import Sequence
from typing import Any, Collection, Mapping

from backend.execution.unit_of_work import Increment
from backend.risk.manager import Exposure

NANO = Decimal("1000000000")
POSITION = "position_nanos"
RESERVED_LONG = "reserved_long_nanos"
RESERVED_SHORT = "reserved_short_nanos"


def to_nanos(qty: Decimal) -> int:
    scaled = qty * NANO
    if scaled != scaled.to_integral_value():
        raise ValueError(f"quantity {qty} is finer than 1e-9")
    return int(scaled)


def from_nanos(value: Any) -> Decimal:
    return Decimal(int(value or 0)) / NANO


def exposure_from_doc(doc: Mapping[str, Any] | None) -> Exposure:
    doc = doc or {}
    return Exposure(position=from_nanos(doc.get(POSITION)), reserved_long=from_nanos(doc.get(RESERVED_LONG)),
                    reserved_short=from_nanos(doc.get(RESERVED_SHORT)))


def reserve_increments(signed_qty: Decimal) -> dict[str, int]:
    """A reservation of ``signed_qty`` units (buy > 0, sell < 0): one field grows."""
    return {RESERVED_LONG if signed_qty > 0 else RESERVED_SHORT: to_nanos(abs(signed_qty))}


def settle_increments(filled_signed: Decimal, released_signed: Decimal) -> dict[str, int]:
    """The position moves by the fill; the reservation shrinks by the release (empty: no write)."""
    out: dict[str, int] = {}
    if filled_signed:
        out[POSITION] = to_nanos(filled_signed)
    if released_signed > 0:
        out[RESERVED_LONG] = -to_nanos(released_signed)
    elif released_signed < 0:
        out[RESERVED_SHORT] = -to_nanos(-released_signed)
    return out


class SlotProbeOrder(Sequence[int]):
    """The order a claim tries daily slots in: from the count just read (slots below it are most
    likely taken: claims fill from the bottom) up to the limit, then the ones below it (given back).
    Computed per index (issue 17: a limit of 100,000 trades a day built a 100,000-element list on
    every claim, ~2 ms of a placed trade's CPU)."""

    __slots__ = ("start", "limit")

    def __init__(self, trades_seen: int, daily_limit: int):
        self.limit = max(0, int(daily_limit))
        self.start = max(0, min(int(trades_seen), self.limit))

    def __len__(self) -> int:
        return self.limit

    def __getitem__(self, index: int) -> int:  # type: ignore[override] - integer positions only
        if not 0 <= index < self.limit:
            raise IndexError(index)
        return (self.start + index) % self.limit


def slot_probe_order(trades_seen: int, daily_limit: int) -> SlotProbeOrder:
    """See ``SlotProbeOrder``: ``start .. limit-1`` then ``0 .. start-1``."""
    return SlotProbeOrder(trades_seen, daily_limit)


@dataclass(frozen=True)
class MetricsWrite:
    """The increments one ledger row adds to its shard document ``tenants/<t>/metrics/<doc_id>``."""

    doc_id: str
    day: str
    increments: Mapping[str, int]
    strategy_bucket: str | None = None  # the ``by_strategy`` key the same increments go under
    admit: str | None = None  # a strategy id to append to the shard's ``strategies`` list
    asset_class: str | None = None  # the ``by_asset_class`` key (an ``AssetClass`` value)
    asset_class_increments: Mapping[str, int] | None = None  # what goes under it


def metrics_doc_id(row_id: str, row: Mapping[str, Any]) -> str:
    from backend.execution.metrics import shard_for

    return f"{row.get('trade_date') or 'unknown'}__{shard_for(row_id)}"


def metrics_write(row_id: str, row: Mapping[str, Any], admitted: Collection[str]) -> MetricsWrite | None:
    """``admitted``: the shard document's current ``strategies`` list (read only when the row names
    a strategy). None when the row adds nothing."""
    from backend.execution.metrics import asset_class_bucket, asset_class_increments, increments, strategy_bucket

    inc = increments(row)
    if not inc:
        return None
    day = row.get("trade_date") or "unknown"
    klass = asset_class_bucket(row)
    by_class = {"asset_class": klass, "asset_class_increments": asset_class_increments(inc)} if klass else {}
    strategy = row.get("strategy_id")
    if not strategy:
        return MetricsWrite(metrics_doc_id(row_id, row), day, inc, **by_class)
    bucket = strategy_bucket(strategy, admitted)
    admit = strategy if bucket == strategy and strategy not in admitted else None
    return MetricsWrite(metrics_doc_id(row_id, row), day, inc, bucket, admit, **by_class)


# --- lot books: what a commit that carries tax fills reads, and what it writes --------------------------
def book_path(uid: str, key: str) -> str:
    return f"users/{uid}/tax_books/{key}"


def tax_config_path(uid: str) -> str:
    """The user's tax settings (legacy ``lot_method``, dated ``elections``): read in the same commit as
    the books they govern. Server-written only (the rules give clients no access)."""
    return f"users/{uid}/config/tax"


def disposal_path(uid: str, doc_id: str) -> str:
    return f"users/{uid}/tax_disposals/{doc_id}"


@dataclass(frozen=True)
class TaxReads:
    """The documents a commit with tax fills must read first: the users' lot books and settings."""

    fills: list[tuple[str, Any]]  # (uid, backend.tax.Fill in its book), in commit order
    books: list[tuple[str, str]]  # (uid, book key), sorted
    uids: list[str]  # sorted

    @property
    def book_paths(self) -> list[str]:
        return [book_path(uid, key) for uid, key in self.books]

    @property
    def config_paths(self) -> list[str]:
        return [tax_config_path(uid) for uid in self.uids]


def tax_reads(items: list[tuple[Any, ...]]) -> TaxReads | None:
    """``items``: (uid, fill or None, ledger row) — the row names the fill's tenant and account, its
    lot book. None when no item carries a fill (nothing to read or write)."""
    from backend.tax.state import book_key, scoped_fills

    fills = scoped_fills(items)
    if not fills:
        return None
    return TaxReads(fills, sorted({(uid, book_key(fill.symbol)) for uid, fill in fills}),
                    sorted({uid for uid, _ in fills}))


def plan_tax(reads: TaxReads, books: Mapping[str, Mapping[str, Any] | None],
             configs: Mapping[str, Mapping[str, Any] | None]) -> Any:
    """The new lot-book states and disposal documents (``backend.tax.state.BooksPlan``) from the
    documents read at ``reads.book_paths`` / ``reads.config_paths`` (path -> doc, None if absent)."""
    from backend.tax.state import plan_books

    current = {(uid, key): books.get(book_path(uid, key)) for uid, key in reads.books}
    # The whole ``config/tax`` document: the election in force at each fill's time for its account
    # applies (backend/tax/election.py); a document with only the legacy ``lot_method`` behaves as before.
    methods = {uid: dict(configs.get(tax_config_path(uid)) or {}) for uid in reads.uids}
    return plan_books(current, reads.fills, methods)


# --- document paths (the Firestore layout; the in-memory store uses the same ones) ------------------
def intent_path(tenant_id: str, intent_id: str) -> str:
    return f"tenants/{tenant_id}/order_intents/{intent_id}"


def group_path(tenant_id: str, group_id: str) -> str:
    return f"tenants/{tenant_id}/execution_groups/{group_id}"


def ledger_path(tenant_id: str, trade_id: str) -> str:
    return f"tenants/{tenant_id}/ledger_trades/{trade_id}"


def history_path(uid: str, trade_id: str) -> str:
    return f"users/{uid}/portfolio/history/trades/{trade_id}"


def exposure_path(tenant_id: str, account_key: str) -> str:
    return f"tenants/{tenant_id}/exposure/{account_key}"


def slot_path(tenant_id: str, day: str, slot: int) -> str:
    return f"tenants/{tenant_id}/risk_days/{day}/trade_slots/{slot}"


def account_slots_collection(tenant_id: str, day: str, account_id: str) -> str:
    """An account's daily slots (issue 12): created in the same commit as the tenant's slot of the same
    trade and given back with it, so their count is the account's trades of the day."""
    return f"tenants/{tenant_id}/risk_days/{day}/accounts/{account_id}/trade_slots"


def account_slot_path(tenant_id: str, day: str, account_id: str, slot: int) -> str:
    return f"{account_slots_collection(tenant_id, day, account_id)}/{slot}"


TALLY_SHARDS = 8  # as the metrics shards: a tenant's claims spread over 8 documents of the day
TALLY_FIELD = "taken"


def tally_path(tenant_id: str, day: str, shard: int) -> str:
    return f"tenants/{tenant_id}/risk_days/{day}/tally/{shard}"


def tally_paths(tenant_id: str, day: str) -> list[str]:
    return [tally_path(tenant_id, day, k) for k in range(TALLY_SHARDS)]


def account_tally_path(tenant_id: str, day: str, account_id: str) -> str:
    """The parent document of the account's ``trade_slots`` (its tally)."""
    return f"tenants/{tenant_id}/risk_days/{day}/accounts/{account_id}"


def day_tally_paths(tenant_id: str, day: str, account_id: str | None) -> list[str]:
    """The documents a day's tally is read from: its shards and, for a trade bound to an account,
    the account's."""
    account = [] if account_id is None else [account_tally_path(tenant_id, day, account_id)]
    return [*tally_paths(tenant_id, day), *account]


def account_tally_op(tenant_id: str, day: str, account_id: str, delta: int) -> Any:
    """The increment of the account's tally for ``delta`` of its slots taken (> 0) or given back."""
    return Increment(account_tally_path(tenant_id, day, account_id), {TALLY_FIELD: int(delta)})


def _tally_shard(key: str) -> int:
    return zlib.crc32(key.encode()) % TALLY_SHARDS


def tally_ops(tenant_id: str, day: str, key: str, account_id: str | None, delta: int) -> list[Any]:
    """The increments that keep the tally equal to the slots: ``delta`` slots taken (> 0) or given
    back (< 0) by ``key`` (an intent or group id), in the same commit as the slots themselves."""
    if not delta:
        return []
    ops = [Increment(tally_path(tenant_id, day, _tally_shard(key)), {TALLY_FIELD: int(delta)})]
    if account_id is not None:
        ops.append(account_tally_op(tenant_id, day, account_id, delta))
    return ops


def tally_counts(docs: Mapping[str, tuple[Mapping[str, Any] | None, Any]], tenant_id: str, day: str,
                 account_id: str | None) -> tuple[int, int | None]:
    """The tenant's and (with ``account_id``) the account's slots of the day as the tally documents in
    ``docs`` say (absent documents count 0; a sum below 0 — a give-back of a slot taken before the
    tally existed — counts 0)."""
    def taken(path: str) -> int:
        doc = (docs.get(path) or (None, None))[0] or {}
        value = doc.get(TALLY_FIELD, 0)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    tenant = max(0, sum(taken(p) for p in tally_paths(tenant_id, day)))
    account = None if account_id is None else max(0, taken(account_tally_path(tenant_id, day, account_id)))
    return tenant, account


def counts_near_limit(trades_today: int, daily_limit: int, account_trades_today: int | None,
                      account_daily_limit: int | None) -> bool:
    """Whether counts taken from the tally are at a limit (or cannot say): only then are the slots
    counted exactly before the order is refused — a tally is never the reason for a refusal."""
    if trades_today >= daily_limit:
        return True
    return account_daily_limit is not None and (account_trades_today is None
                                                or account_trades_today >= account_daily_limit)


@dataclass(frozen=True)
class AccountSlot:
    """The account slot a claim took next to its tenant slot, as its intent record stores it
    (``account_slot`` = {account_id, day, slot}): what a release gives back."""

    account_id: str
    day: str
    slot: int

    def to_doc(self) -> dict[str, Any]:
        return {"account_id": self.account_id, "day": self.day, "slot": self.slot}

    @classmethod
    def from_doc(cls, doc: Any) -> "AccountSlot | None":
        if not isinstance(doc, Mapping) or doc.get("account_id") is None or doc.get("slot") is None:
            return None
        return cls(str(doc["account_id"]), str(doc["day"]), int(doc["slot"]))

    def path(self, tenant_id: str) -> str:
        return account_slot_path(tenant_id, self.day, self.account_id, self.slot)


class AccountSlotProbe:
    """Which account slot a bound claim creates next to tenant slot ``n``. With an account limit: its
    own probe order below that limit (``slot_probe_order`` from the account's count), advanced
    independently of the tenant's when a conflict shows its slot taken. Without one: the tenant
    slot's number (unique while the tenant slot is held), so a taken account slot of that number
    (one taken while the account had a limit) moves the tenant probe on too."""

    def __init__(self, account_id: str, day: str, limit: int | None, seen: int):
        self.account_id, self.day, self.limit, self.seen = account_id, day, limit, seen
        self.order = slot_probe_order(seen, limit) if limit is not None else None
        self.at = 0
        self.moved_last = False  # the last ``advance`` moved the account probe alone

    @classmethod
    def of(cls, claim: Any) -> "AccountSlotProbe | None":
        """The probe of a ``backend.ports.store.Claim`` bound to an account (None: unbound)."""
        if claim.account_id is None:
            return None
        return cls(claim.account_id, claim.trade_day, claim.account_daily_limit, claim.account_trades_seen)

    @property
    def full(self) -> bool:
        return self.limit is not None and self.seen >= self.limit

    @property
    def exhausted(self) -> bool:
        return self.order is not None and self.at >= len(self.order)

    def slot_for(self, tenant_slot: int) -> AccountSlot:
        number = tenant_slot if self.order is None else self.order[self.at]
        return AccountSlot(self.account_id, self.day, number)

    def advance(self, *, tenant_taken: bool, account_taken: bool) -> bool:
        """Move past what a conflict showed taken; True when the tenant probe moves on."""
        self.moved_last = False
        if self.order is None:
            return tenant_taken or account_taken
        if account_taken:
            self.at += 1
            self.moved_last = not tenant_taken
        return tenant_taken


def reserved_account_slots(reservation: Mapping[str, Any] | None, tenant_slots: Collection[int]) -> list[AccountSlot]:
    """The account slots a group's stored ``_reservation`` holds next to the tenant slots ``tenant_slots``
    (the legs whose tenant slot a settlement gives back); none for a reservation without an account."""
    if not reservation or reservation.get("account_id") is None:
        return []
    wanted = {int(s) for s in tenant_slots}
    return [AccountSlot(str(reservation["account_id"]), str(reservation["trade_day"]), int(leg["account_slot"]))
            for leg in reservation.get("legs") or ()
            if leg.get("account_slot") is not None and int(leg["slot"]) in wanted]


def metrics_path(tenant_id: str, row_id: str, row: Mapping[str, Any]) -> str:
    return f"tenants/{tenant_id}/metrics/{metrics_doc_id(row_id, row)}"


def choose_free_slots(taken: set[int], limit: int, n: int) -> list[int] | None:
    """``n`` distinct free slot numbers below ``limit`` for a group's legs, chosen at random so
    concurrent groups rarely race for the same ones (the create precondition keeps the count exact
    either way); None if the day has fewer than ``n`` free slots."""
    import random

    if limit - len(taken) < n:
        return None
    if limit <= 4096:
        return random.sample([s for s in range(limit) if s not in taken], n)
    picks: set[int] = set()
    while len(picks) < n:
        slot = random.randrange(limit)
        if slot not in taken:
            picks.add(slot)
    return sorted(picks)
