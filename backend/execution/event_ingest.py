"""Venue event ingestion (issue 15 item 7): a stop that fires overnight reaches the ledger sooner.

A working order or a protective exit leg changes state at the venue while no function runs. The
sweeper already polls every working intent (``engine.reconcile_intent``, ``exit_legs.follow_exit_legs``)
once its ``reconcile_after`` is due; this step reads the venue's own event feed where one exists and
makes the sweeper look *now* at exactly the intents the events name:

- OANDA: ``GET /v3/accounts/{id}/transactions/sinceid?id=<cursor>`` → ``ORDER_FILL`` / ``ORDER_CANCEL``
  (``OandaBroker.events_since``);
- Alpaca Broker API: the trade events feed ``GET /v1/events/trades?since_id=<cursor>`` (an SSE stream,
  read with alpaca-py's ``BrokerClient.get_trade_events`` and bounded; ``AlpacaBrokerApiAccount.events_since``)
  → ``fill`` / ``partial_fill`` / ``canceled`` / ``expired`` / ... events of that account.

Events never write a fill themselves. Each event is mapped to an intent record of the same
(tenant, connection, venue account) by its client order id (tenant-namespaced: ``client_ids.py``, so
an id can only ever match the record that derived it) or venue order id (the entry's, or an exit leg's
recorded in ``exit_legs``); an event for an exit leg not yet recorded (the first sweep after the entry
filled has not run) makes every protected (bracket / OTO) intent of that account with a filled entry
look again. For each intent named, in the order of the feed, the existing idempotent folding runs:
``reconcile_intent``, ``follow_exit_legs``, ``settle_requested_cancel`` — exactly the sweeper's
working-order calls, whose create-only rows and token-guarded record updates give exactly-once. So a
duplicate or out-of-order event changes nothing: it names an intent whose venue state is already folded.

A replaced order (``PATCH /orders/{id}``; OANDA ``ORDER_CANCEL`` with reason ``CLIENT_REQUEST_REPLACED``,
kind ``replaced``) never finalises its intent: once the replace is recorded the old ids name nothing;
while it is pending (a lost answer) the replacement is looked up by its client id and recorded first
(``replacement_pending``), or the intent is left alone.

The cursor (the last event id folded) lives in a server-only document per (tenant, connection, venue
account), ``tenants/{t}/venue_cursors/{connection_id}__{venue_account_id}``: read with its token,
advanced (never moved back) only after every folding of the page returned without an error, with a
create-only / token-guarded write, so two sweepers racing advance it once and a failed fold reads the
same page again next minute. No cursor yet: the feed is read from its start (``0``), a page at a time.

Which accounts: those of the working intents (``find_working_intents`` with a horizon, so intents not
yet due are included — the ones events make the sweeper look at sooner). An account with no working
intent has nothing an event could fold. Unbound (pre-accounts) records and venues without the
capability (paper, the Alpaca Trading API) are left to the polling sweep.

Pure core: the store through its unit of work (``get_all`` / ``commit``), venues through the engine.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Mapping

from backend.execution.accounts import stored_binding
from backend.execution.exit_legs import entry_filled
from backend.execution.unit_of_work import Commit, Conflict, Create, Update
from backend.logs import log_event

CURSORS_COLLECTION = "venue_cursors"
WORKING_HORIZON = timedelta(days=400)  # a GTC order can rest this long; its reconcile_after is sooner anyway
DEFAULT_WORKING_LIMIT = 200  # working intents read per sweep to map events (a batched read)
MAX_PAGES_PER_ACCOUNT = 5  # feed pages per account per sweep; the rest is read next minute
FOLD_EVENT_KINDS = frozenset({"fill", "partial_fill", "canceled", "expired", "rejected", "replaced",
                              "done_for_day", "stopped", "suspended"})
PROTECTED_CLASSES = ("bracket", "oto")


@dataclass(frozen=True)
class VenueEvent:
    """One event of a venue's feed, as the adapters answer it: the feed's id (increasing integers on
    both venues), what happened (``fill``, ``partial_fill``, ``canceled``, ...) and the order's ids."""

    event_id: str
    kind: str
    client_order_id: str | None = None
    broker_order_id: str | None = None


@dataclass(frozen=True)
class VenueEventPage:
    """Events after a cursor, oldest first; ``cursor`` is where the next read starts once these are
    folded (the last id read, also when none of them was an order event); ``more``: the page was full."""

    events: tuple[VenueEvent, ...]
    cursor: str | None
    more: bool = False


@dataclass
class EventIngestReport:
    accounts: int = 0
    events_read: int = 0
    intents_folded: int = 0
    cursors_advanced: int = 0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def cursor_path(tenant_id: str, connection_id: str, venue_account_id: str) -> str:
    """The cursor document of one (tenant, connection, venue account)."""
    return f"tenants/{tenant_id}/{CURSORS_COLLECTION}/{connection_id}__{venue_account_id}"


def _seq(event_id: Any) -> int | None:
    text = str(event_id or "")
    return int(text) if text.isdigit() else None


def newer_than(cursor: str | None, event_id: str) -> bool:
    """True when ``event_id`` comes after ``cursor`` (no cursor: everything is new)."""
    after, seq = _seq(cursor), _seq(event_id)
    if seq is None:
        return False  # an id we cannot order is never folded twice by mistake: skipped
    return after is None or seq > after


@dataclass
class _AccountWork:
    """The working intents of one (tenant, connection, venue account), indexed by order ids."""

    tenant_id: str
    binding: Any
    by_client_id: dict[str, str] = field(default_factory=dict)
    by_venue_id: dict[str, str] = field(default_factory=dict)
    protected: list[str] = field(default_factory=list)  # filled (or partly filled, ended) bracket/OTO entries

    def add(self, intent_id: str, data: Mapping[str, Any]) -> None:
        if data.get("client_order_id"):
            self.by_client_id[str(data["client_order_id"])] = intent_id
        if data.get("broker_order_id"):
            self.by_venue_id[str(data["broker_order_id"])] = intent_id
        for leg_id, leg in (data.get("exit_legs") or {}).items():
            self.by_venue_id[str(leg_id)] = intent_id
            if isinstance(leg, Mapping) and leg.get("client_order_id"):
                self.by_client_id[str(leg["client_order_id"])] = intent_id
        order_class = (data.get("intent") or {}).get("order_class")
        if order_class in PROTECTED_CLASSES and not data.get("exits_final") and entry_filled(data):
            self.protected.append(intent_id)

    def intents_for(self, events: Iterable[VenueEvent]) -> list[str]:
        """The intents the events name, in feed order, each once; unknown order events of the account
        add its protected intents (an exit leg not yet recorded)."""
        named: list[str] = []
        unknown = False
        for event in events:
            if event.kind not in FOLD_EVENT_KINDS:
                continue
            intent_id = self.by_client_id.get(event.client_order_id or "") or \
                self.by_venue_id.get(event.broker_order_id or "")
            if intent_id is None:
                # an unrecorded exit leg's event; a replaced order's is not one (its intent follows the new order)
                unknown = unknown or event.kind != "replaced"
            elif intent_id not in named:
                named.append(intent_id)
        if unknown:
            named.extend(i for i in self.protected if i not in named)
        return named


def working_accounts(store: Any, now: datetime, limit: int) -> dict[tuple[str, str, str], _AccountWork]:
    """The working intents (due or not) grouped by (tenant, connection, venue account); one batched read."""
    found = store.find_working_intents(now + WORKING_HORIZON, limit)
    paths = {f"tenants/{t}/order_intents/{i}": (t, i) for t, i in found}
    docs = store.get_all(list(paths)) if paths else {}
    accounts: dict[tuple[str, str, str], _AccountWork] = {}
    for path, (tenant_id, intent_id) in paths.items():
        data = (docs.get(path) or (None, None))[0]
        if not data:
            continue
        binding = stored_binding(data.get("account"))
        if binding is None:
            continue  # unbound (pre-accounts) work: the polling sweep keeps it
        key = (tenant_id, binding.connection_id, binding.venue_account_id)
        work = accounts.get(key)
        if work is None:
            work = accounts[key] = _AccountWork(tenant_id, binding)
        work.add(intent_id, data)
    return accounts


def _event_venue(engine: Any, work: _AccountWork) -> Any:
    """The account's venue that has an event feed, or None."""
    router = engine.venues_for(work.tenant_id, work.binding)
    for venue in router.venues():
        if callable(getattr(venue, "events_since", None)):
            return venue
    return None


def _store_cursor(store: Any, path: str, token: Any, previous: Mapping[str, Any] | None, work: _AccountWork,
                  cursor: str, events: int, now: datetime) -> bool:
    """Advance the cursor document (create-only first, then token-guarded); False when another sweeper
    moved it meanwhile (it folded the same events: nothing is lost)."""
    doc = {"tenant_id": work.tenant_id, "connection_id": work.binding.connection_id,
           "venue": work.binding.venue, "venue_account_id": work.binding.venue_account_id,
           "cursor": cursor, "events_seen": int((previous or {}).get("events_seen") or 0) + events,
           "updated_at": now.isoformat()}
    op = Create(path, doc) if previous is None else Update(path, doc, token)
    try:
        store.commit(Commit([op]))
    except Conflict:
        return False
    return True


def ingest_account(engine: Any, work: _AccountWork, fold: Callable[[str, str], None], report: EventIngestReport,
                   *, max_pages: int = MAX_PAGES_PER_ACCOUNT) -> None:
    """Read one account's feed from its cursor, fold the intents its events name, advance the cursor."""
    store, now = engine.store, engine.clock.now()
    venue = _event_venue(engine, work)
    if venue is None:
        return
    report.accounts += 1
    path = cursor_path(work.tenant_id, work.binding.connection_id, work.binding.venue_account_id)
    for _ in range(max_pages):
        previous, token = store.get_all([path])[path]
        cursor = (previous or {}).get("cursor")
        page = venue.events_since(cursor)
        events = [e for e in page.events if newer_than(cursor, e.event_id)]
        seen: set[str] = set()
        fresh = [e for e in events if not (e.event_id in seen or seen.add(e.event_id))]
        report.events_read += len(fresh)
        for intent_id in work.intents_for(fresh):
            fold(work.tenant_id, intent_id)  # raises: the cursor stays, the page is read again
            report.intents_folded += 1
        new_cursor = page.cursor
        if new_cursor is None or not newer_than(cursor, new_cursor):
            return  # nothing past the cursor (a duplicate page, or an older one): nothing to store
        if not _store_cursor(store, path, token, previous, work, new_cursor, len(fresh), now):
            return
        report.cursors_advanced += 1
        log_event("exec.venue_events", tenant_id=work.tenant_id, connection_id=work.binding.connection_id,
                  venue_account_id=work.binding.venue_account_id, events=len(fresh), cursor=new_cursor)
        if not page.more:
            return


def fold_intent(engine: Any) -> Callable[[str, str], None]:
    """The sweeper's working-order folding for one intent (all idempotent)."""
    from backend.execution.exit_legs import follow_exit_legs
    from backend.execution.order_management import OrderManager

    manager = OrderManager(engine)

    def fold(tenant_id: str, intent_id: str) -> None:
        if replacement_pending(engine, manager, tenant_id, intent_id):
            return  # its old order was replaced: never finalised on that order's cancel
        engine.reconcile_intent(tenant_id, intent_id)
        follow_exit_legs(engine, tenant_id, intent_id)
        manager.settle_requested_cancel(tenant_id, intent_id)

    return fold


def replacement_pending(engine: Any, manager: Any, tenant_id: str, intent_id: str) -> bool:
    """A replace of this intent's order was asked (``pending_replace``, written before the venue call) and
    its outcome is not recorded (a lost answer, or the request still running). The venue has cancelled
    the old order for its replacement (OANDA ``ORDER_CANCEL`` reason ``CLIENT_REQUEST_REPLACED``, Alpaca
    ``replaced``), so folding the old order would finalise the intent and release its reservation while
    the new order works. Instead: the replacement found by its client id is recorded now (the order
    manager's own completion: ledger row ``{intent}--r{n}``, the record follows the new order; a later
    retry of the replace is a replay) and False is answered (fold on, now on the new order); not found and
    the old order replaced (or the venue cannot say) → True: leave the intent as it is. No marker, or the
    old order not replaced → False (fold as usual). A venue error raises: the cursor stays."""
    got = engine.store.get_intent_with_token(tenant_id, intent_id)
    data = got[0].data if got is not None else {}
    marker = data.get("pending_replace")
    if not isinstance(marker, Mapping) or data.get("order_final") or not data.get("broker_order_id"):
        return False
    intent, ctx = manager.intent_and_context(tenant_id, intent_id, data)
    venue = engine.broker_for(intent, ctx)
    if not callable(getattr(venue, "get_order_by_client_id", None)):
        return True
    found = venue.get_order_by_client_id(str(marker["client_order_id"]))
    if found is not None:
        manager.complete_replacement(tenant_id, intent_id, dict(marker), found, venue)  # the order manager's own step
        log_event("exec.venue_events_replace_recorded", tenant_id=tenant_id, intent_id=intent_id,
                  broker_order_id=found.broker_order_id)
        return False
    old = venue.get_order(data["broker_order_id"])
    replaced = bool(old.replaced_by) or "REPLACED" in str(old.venue_status or "").upper()
    if replaced:
        log_event("exec.venue_events_replace_pending", severity="WARNING", tenant_id=tenant_id,
                  intent_id=intent_id, old_broker_order_id=data["broker_order_id"])
    return replaced


def ingest_venue_events(engine: Any, *, limit: int = DEFAULT_WORKING_LIMIT) -> EventIngestReport:
    """One ingestion round over every account with working intents (the sweeper calls it each run).
    One account's failure (venue down, a fold that raised) is reported and leaves its cursor; the
    others go on."""
    report = EventIngestReport()
    fold = fold_intent(engine)
    try:
        accounts = working_accounts(engine.store, engine.clock.now(), limit)
    except Exception as exc:  # the store cannot answer now: the polling sweep still runs
        report.errors.append(f"events: {type(exc).__name__}: {str(exc)[:200]}")
        return report
    for (tenant_id, connection_id, venue_account_id), work in accounts.items():
        try:
            ingest_account(engine, work, fold, report)
        except Exception as exc:  # one account must not stop the others; its cursor did not move
            report.errors.append(f"events {tenant_id}/{connection_id}/{venue_account_id}: "
                                 f"{type(exc).__name__}: {str(exc)[:200]}")
    return report


__all__ = ["VenueEvent", "VenueEventPage", "EventIngestReport", "cursor_path", "newer_than",
           "working_accounts", "ingest_account", "ingest_venue_events", "fold_intent", "replacement_pending",
           "CURSORS_COLLECTION"]
