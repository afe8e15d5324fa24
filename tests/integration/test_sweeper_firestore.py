"""The sweeper on the official Firestore emulator: indexed stuck-work queries whose reads follow
the stuck groups, not all groups; lease takeover that lets only one sweeper act."""
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from backend.adapters.firestore_store import FirestoreStore
from backend.adapters.paper_broker import PaperBroker
from backend.domain.clock import ManualClock
from backend.execution.engine import ExecutionEngine
from backend.execution.intent import ExecutionContext
from backend.execution.sweeper import Sweeper
from backend.settings import ExecSettings
from tests.support.group_harness import GROUP_LIMITS_ENV, approve
from tests.unit.test_sweeper_and_intake import orders_per_client_id, pair_request

CTX = ExecutionContext("acme", "u1")


class CountingStore(FirestoreStore):
    """Counts documents the sweeper's queries return (Firestore bills a read per document and one
    for an empty query)."""

    def __init__(self, client):
        super().__init__(client)
        self.query_reads = 0

    def find_stuck_groups(self, now, limit):
        found = super().find_stuck_groups(now, limit)
        self.query_reads += max(1, len(found))  # an empty query still costs one read
        return found

    def find_stuck_intents(self, now, limit):
        found = super().find_stuck_intents(now, limit)
        self.query_reads += max(1, len(found))
        return found

    def find_working_intents(self, now, limit):
        found = super().find_working_intents(now, limit)
        self.query_reads += max(1, len(found))
        return found

    def find_unstarted_intents(self, limit):
        found = super().find_unstarted_intents(limit)
        self.query_reads += max(1, len(found))
        return found


def test_sweeper_reads_follow_stuck_groups_not_all_groups(db):
    clock = ManualClock()
    store = CountingStore(db)
    broker = PaperBroker(clock=clock)
    engine = ExecutionEngine(broker=broker, store=store, clock=clock, dry_run=False,
                             settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0", **GROUP_LIMITS_ENV}))
    approve(store, pair_request(clock))  # the risk desk's approval "d1" the requests reference
    finished = {"_final": True, "_lease_until": None, "status": "FILLED", "strategy_id": "s"}
    for start in range(0, 10_000, 500):
        batch = db.batch()
        for n in range(start, start + 500):
            batch.set(db.document(f"tenants/t{n % 7}/execution_groups/done{n}"), finished)
        batch.commit()
    broker.venue.inject_fault("submit_order", "unavailable", count=None)
    for n in range(10):
        engine.execute_group(pair_request(clock), CTX, group_id=f"stuck{n}")
    broker.venue.clear_faults()
    clock.advance(1)

    report = Sweeper(engine).sweep()

    assert report.groups_found == 10 and report.groups_final == 10 and not report.errors
    # 10 stuck groups + four empty queries (reserved, working, unstarted intents, and the working intents
    # the venue event feeds are mapped to — issue 15, event_ingest.py): proportional to the stuck work,
    # not to the 10,000 finished groups
    assert store.query_reads == 14
    assert set(orders_per_client_id(broker).values()) == {1}
    assert Sweeper(engine).sweep().groups_found == 0


def test_racing_sweepers_on_the_emulator_act_once_per_group(db):
    clock = ManualClock()
    broker = PaperBroker(clock=clock)
    engine = ExecutionEngine(broker=broker, store=FirestoreStore(db), clock=clock, dry_run=False,
                             settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0", **GROUP_LIMITS_ENV}))
    approve(engine.store, pair_request(clock))  # the risk desk's approval "d1" the requests reference
    broker.venue.inject_fault("submit_order", "unavailable", count=None, after_calls=1)
    for n in range(4):
        engine.execute_group(pair_request(clock), CTX, group_id=f"r{n}")
    broker.venue.clear_faults()
    clock.advance(1)
    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(pool.map(lambda _: Sweeper(engine).sweep(), range(2)))
    assert sum(r.groups_resumed for r in reports) == 4
    assert set(orders_per_client_id(broker).values()) == {1}
    for n in range(4):
        assert db.document(f"tenants/acme/execution_groups/r{n}").get().get("_final") is True
