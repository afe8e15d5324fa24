"""Issue 15 item 5 on the official Firestore emulator: a limit placed instead of WAIT persists its
deadline and the caller's request on the intent record, its ledger row says limit, a fill before the
timeout is kept, and the sweeper cancels it past the deadline and releases the remainder."""
import io
from decimal import Decimal

import pytest

from backend import logs
from backend.adapters.firestore_store import FirestoreStore
from backend.adapters.paper_broker import PaperBroker
from backend.domain.clock import ManualClock
from backend.execution.engine import ExecutionEngine, OrderIntent, RiskManager, SmartRouter
from backend.execution.intent import ExecutionContext
from backend.execution.sweeper import Sweeper
from backend.risk.manager import RiskLimits
from backend.settings import ExecSettings

CTX = ExecutionContext(tenant_id="acme", uid="u1")
SCENARIO = {"seed": 1, "symbols": {"AAPL": {"asset_class": "EQUITY", "mid": "190.00", "spread": "1.00",
                                            "fill": {"model": "partial", "ratios": ["0.5", "1.0"]}}}}


@pytest.fixture
def setup(db):
    logs.set_stream(io.StringIO())
    clock = ManualClock()
    broker = PaperBroker(SCENARIO, clock=clock)
    engine = ExecutionEngine(broker=broker, router=SmartRouter(0.001),
                             risk=RiskManager(RiskLimits(max_position_qty=Decimal("1000"))), dry_run=False,
                             store=FirestoreStore(db), clock=clock, settings=ExecSettings.from_env({}))
    try:
        yield engine, broker, clock, db
    finally:
        logs.set_stream(None)


def test_a_wide_spread_limit_persists_fills_and_is_canceled_past_its_deadline(setup):
    engine, broker, clock, db = setup
    intent = OrderIntent("s1", "acct1", "AAPL", "buy", "10", intent_id="ws1", wide_spread="limit_at_touch",
                         limit_timeout_seconds=60)
    result = engine.execute_intent(intent, CTX)
    assert result.status == "placed" and result.routing.reason.startswith("limit at touch instead of WAIT")
    record = db.document("tenants/acme/order_intents/ws1").get().to_dict()
    assert record["intent"]["order_type"] == "limit" and record["intent"]["limit_price"] == "189.50"
    assert record["requested_intent"]["order_type"] == "market"
    assert record["requested_intent"]["wide_spread"] == "limit_at_touch"
    assert record["wide_spread_limit"]["timeout_seconds"] == 60
    row = db.document("tenants/acme/ledger_trades/ws1").get().to_dict()
    assert row["order_type"] == "limit" and row["limit_price"] == "189.50" and row["status"] == "placed"

    again = engine.execute_intent(intent, CTX)  # the caller's own retry replays the placed limit
    assert again.replayed and again.broker_order_id == result.broker_order_id

    broker.venue.market.set_mid("AAPL", Decimal("189.00"))
    clock.advance(11)
    Sweeper(engine).sweep()  # half filled
    broker.venue.market.set_mid("AAPL", Decimal("190.00"))
    clock.advance(60)
    Sweeper(engine).sweep()  # past the deadline: canceled, the remainder released
    record = db.document("tenants/acme/order_intents/ws1").get().to_dict()
    assert record["order_final"] is True and record["result"]["order_status"] == "canceled"
    assert Decimal(record["result"]["filled_qty"]) == 5 and record["wide_spread_limit"]["expired_at"]
    assert record["wide_spread_limit"]["deadline"]  # the rest of the entry kept
    exposure = db.document("tenants/acme/exposure/acct1__AAPL").get().to_dict()
    assert exposure["position_nanos"] == 5 * 10**9 and exposure["reserved_long_nanos"] == 0
