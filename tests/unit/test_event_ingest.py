"""Issue 15 item 7, the core of venue event ingestion (backend/execution/event_ingest.py): events name
the intents to fold now; the folding is the sweeper's idempotent one, so an event delivered twice,
an older event or an event of an order we do not know changes nothing; the cursor moves forward
only after the folding returned, and never back.

The venue is the paper broker with a scripted event feed (``FeedBroker.events_since``: the events the
test appends, after the cursor — or all of them again when ``replay`` is set, a feed that delivers
twice). The store is the in-memory one; tests/integration/test_event_ingest_venues.py runs the same
path on the official emulator with the local OANDA and Alpaca Broker API servers."""
from __future__ import annotations

from decimal import Decimal as D

import pytest

from backend.adapters.memory_store import InMemoryStore
from backend.adapters.paper_broker import PaperBroker
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.execution.engine import ExecutionEngine
from backend.execution.event_ingest import (VenueEvent, VenueEventPage, cursor_path, ingest_venue_events,
                                            newer_than)
from backend.execution.intent import ExecutionContext, OrderIntent
from backend.settings import ExecSettings

CTX = ExecutionContext("acme", "u1")


class FeedBroker(PaperBroker):
    """The paper venue plus an event feed the test writes; records every read's cursor."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.feed: list[VenueEvent] = []
        self.reads: list[str | None] = []
        self.replay = False

    def emit(self, kind: str, *, client_order_id: str | None = None, broker_order_id: str | None = None) -> str:
        event_id = str(len(self.feed) + 1)
        self.feed.append(VenueEvent(event_id, kind, client_order_id, broker_order_id))
        return event_id

    def events_since(self, cursor):
        self.reads.append(cursor)
        events = list(self.feed) if self.replay else [e for e in self.feed if newer_than(cursor, e.event_id)]
        return VenueEventPage(tuple(events), events[-1].event_id if events else cursor)


def make_engine():
    clock = ManualClock()
    broker = FeedBroker(clock=clock)
    engine = ExecutionEngine(broker=broker, store=InMemoryStore(), clock=clock, dry_run=False,
                             settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0"}))
    return engine, broker


def place_resting_limit(engine, broker, intent_id="l1"):
    quote = broker.get_latest_quote("SPY", AssetClass.EQUITY)
    limit = (quote.bid - D("5")).quantize(D("0.01"))
    result = engine.execute_intent(OrderIntent("s1", "acct", "SPY", "buy", "2", intent_id=intent_id,
                                               order_type="limit", limit_price=str(limit), time_in_force="gtc"), CTX)
    assert result.status == "placed" and result.order_status == "new", result
    return limit


def fill_rows(engine):
    return sorted(p for p, d in engine.store.docs.items()
                  if p.startswith("tenants/acme/ledger_trades/") and d.get("kind") == "fill")


def the_cursor(engine):
    (path, doc), = [(p, d) for p, d in engine.store.docs.items() if "/venue_cursors/" in p]
    return path, doc


def fill_at_venue(broker, limit):
    """The market trades through the limit while nothing of ours runs."""
    broker.venue.market.set_mid("SPY", limit - D("1"), AssetClass.EQUITY)
    broker.venue.poll()


@pytest.mark.parametrize("cursor, event_id, newer", [
    (None, "1", True), ("5", "6", True), ("5", "5", False), ("5", "4", False), ("9", "10", True),
    ("5", "abc", False), (None, "", False)])
def test_an_event_is_new_only_after_the_cursor(cursor, event_id, newer):
    assert newer_than(cursor, event_id) is newer


def test_a_fill_event_folds_its_intent_once_and_stores_the_cursor():
    engine, broker = make_engine()
    limit = place_resting_limit(engine, broker)
    coid = engine.store.get_intent("acme", "l1").data["client_order_id"]
    fill_at_venue(broker, limit)
    broker.emit("fill", client_order_id=coid)

    report = ingest_venue_events(engine)  # the clock did not move: the polling sweep would not look yet

    assert (report.accounts, report.events_read, report.intents_folded, report.cursors_advanced) == (1, 1, 1, 1)
    assert len(fill_rows(engine)) == 1
    path, doc = the_cursor(engine)
    binding = engine.store.get_intent("acme", "l1").data["account"]
    assert path == cursor_path("acme", binding["connection_id"], binding["venue_account_id"])
    assert doc["cursor"] == "1" and doc["venue_account_id"] == binding["venue_account_id"]
    assert engine.store.get_intent("acme", "l1").data["order_final"] is True


def test_an_event_delivered_twice_changes_nothing():
    engine, broker = make_engine()
    limit = place_resting_limit(engine, broker)
    place_resting_limit(engine, broker, "l2")  # keeps the account working once l1 is final
    coid = engine.store.get_intent("acme", "l1").data["client_order_id"]
    fill_at_venue(broker, limit)
    broker.emit("partial_fill", client_order_id=coid)
    broker.emit("fill", client_order_id=coid)
    ingest_venue_events(engine)
    rows, (_, cursor) = fill_rows(engine), the_cursor(engine)

    broker.replay = True  # the feed sends every event again, cursor or not
    again = ingest_venue_events(engine)

    assert again.events_read == 0  # at or before the cursor: dropped before anything is looked up
    assert fill_rows(engine) == rows and len(rows) == 1  # l1 once (l2 filled too, but no event named it:
    #                                                        it stays with the polling sweep)
    assert the_cursor(engine)[1]["cursor"] == cursor["cursor"] == "2"


def test_a_cursor_moved_back_redelivers_and_still_adds_nothing():
    engine, broker = make_engine()
    limit = place_resting_limit(engine, broker)
    place_resting_limit(engine, broker, "l2")
    fill_at_venue(broker, limit)
    for intent_id in ("l1", "l2"):
        broker.emit("fill", client_order_id=engine.store.get_intent("acme", intent_id).data["client_order_id"])
    broker.emit("new", client_order_id="someone-else")
    ingest_venue_events(engine)
    rows = fill_rows(engine)
    path, _ = the_cursor(engine)
    engine.store.docs[path]["cursor"] = "0"

    again = ingest_venue_events(engine)

    assert again.events_read == 0 and again.intents_folded == 0  # both final: the account has no working intent
    assert fill_rows(engine) == rows
    place_resting_limit(engine, broker, "l3")  # a working intent again: the account is read from cursor 0
    replayed = ingest_venue_events(engine)
    assert replayed.events_read == 3 and fill_rows(engine) == rows
    assert the_cursor(engine)[1]["cursor"] == "3"


def test_an_older_page_never_moves_the_cursor_back():
    engine, broker = make_engine()
    place_resting_limit(engine, broker)
    broker.emit("new", client_order_id="x")
    broker.emit("new", client_order_id="y")
    ingest_venue_events(engine)
    assert the_cursor(engine)[1]["cursor"] == "2"
    broker.feed[:] = broker.feed[:1]  # a venue answering an older page (id 1 only)
    broker.replay = True

    ingest_venue_events(engine)

    assert the_cursor(engine)[1]["cursor"] == "2"


def test_a_fold_that_fails_leaves_the_cursor_and_the_next_run_folds_it():
    engine, broker = make_engine()
    limit = place_resting_limit(engine, broker)
    coid = engine.store.get_intent("acme", "l1").data["client_order_id"]
    fill_at_venue(broker, limit)
    broker.emit("fill", client_order_id=coid)
    real = engine.reconcile_intent

    def broken(tenant_id, intent_id):
        raise RuntimeError("store unavailable")

    engine.reconcile_intent = broken
    failed = ingest_venue_events(engine)
    assert failed.errors and failed.cursors_advanced == 0
    assert not [p for p in engine.store.docs if "/venue_cursors/" in p] and fill_rows(engine) == []

    engine.reconcile_intent = real
    ok = ingest_venue_events(engine)

    assert ok.errors == [] and len(fill_rows(engine)) == 1 and the_cursor(engine)[1]["cursor"] == "1"


def test_an_unknown_order_event_makes_the_accounts_brackets_follow_their_exits():
    engine, broker = make_engine()
    quote = broker.get_latest_quote("SPY", AssetClass.EQUITY)
    stop = (quote.bid - D("10")).quantize(D("0.01"))
    placed = engine.execute_intent(OrderIntent(
        "s1", "acct", "SPY", "buy", "3", intent_id="b1", time_in_force="gtc", order_class="bracket",
        take_profit={"limit_price": str((quote.ask + D("10")).quantize(D("0.01")))},
        stop_loss={"stop_price": str(stop)}), CTX)
    assert placed.order_status == "filled"
    broker.venue.market.set_mid("SPY", stop - D("0.50"), AssetClass.EQUITY)  # the stop fires overnight
    broker.venue.poll()
    broker.emit("fill", client_order_id="leg-id-we-never-saw", broker_order_id="leg-venue-id")

    report = ingest_venue_events(engine)
    ingest_venue_events(engine)

    exits = [p for p in engine.store.docs if p.startswith("tenants/acme/ledger_trades/") and "--x" in p]
    assert report.intents_folded == 1 and len(exits) == 1
    assert engine.store.get_intent("acme", "b1").data["exits_final"] is True


def test_events_of_an_account_with_no_working_intent_are_not_read():
    engine, broker = make_engine()
    engine.execute_intent(OrderIntent("s1", "acct", "SPY", "buy", "1", intent_id="m1"), CTX)  # filled at once
    broker.emit("fill", client_order_id="whatever")

    report = ingest_venue_events(engine)

    assert report.accounts == 0 and broker.reads == []


def test_the_sweep_runs_the_ingestion_and_reports_it():
    from backend.execution.sweeper import Sweeper

    engine, broker = make_engine()
    limit = place_resting_limit(engine, broker)
    fill_at_venue(broker, limit)
    broker.emit("fill", client_order_id=engine.store.get_intent("acme", "l1").data["client_order_id"])

    report = Sweeper(engine).sweep()

    assert (report.events_read, report.event_intents_folded, report.errors) == (1, 1, [])
    assert report.working_found == 0  # not due yet: the event made it look sooner
    assert len(fill_rows(engine)) == 1
