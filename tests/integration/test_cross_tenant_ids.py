"""Issue 10 item 1 — the cross-tenant order hijack, over the paths the attack used.

(c) The official Firestore emulator with ``firestore.rules`` loaded: each tenant's trader writes an
    intent document through the rules with an (unsigned, emulator-only) ID token carrying their tenant
    claim, and the trigger's intake (``backend.service.intake.handle_intent_document``) executes it on a
    ``FirestoreStore``. Tenant B writes ``tenants/B/order_intents/<A's group id>`` with A's leg ids.
(d) The local Alpaca-compatible server with real alpaca-py (``AlpacaBroker``): the venue answers a
    duplicate client order id with a 422 and the adapter returns the order that holds it — here an
    order that is not ours — and the core refuses it.

Both tenants trade through ONE venue account (one client-id namespace), as tenants of one deployment do.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from decimal import Decimal as D
from pathlib import Path
from typing import Any, Callable

import pytest

from backend import logs
from backend.adapters.alpaca_broker import AlpacaBroker
from backend.adapters.firestore_store import FirestoreStore
from backend.adapters.paper_broker import PaperBroker
from backend.adapters.sim_venue import SimulatedVenue
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.domain.errors import RejectCode
from backend.execution.engine import ExecutionEngine
from backend.execution.intent import ExecutionContext, OrderIntent
from backend.ports.broker import BrokerOrder, OrderRequest, OrderSide, OrderState
from backend.service.intake import handle_intent_document
from backend.settings import ExecSettings
from tests.support.alpaca_server import LocalAlpacaServer
from tests.support.group_harness import approve
from tests.support.invariants import EQUITY_PAIR, foreign_adoptions, intent_fields, pair_request, scenario
from tests.support.rules_client import RulesClient, fake_id_token

pytestmark = pytest.mark.emulator

RULES = (Path(__file__).resolve().parents[2] / "firestore.rules").read_text()
PROJECT = "demo-xtenant"  # its own project on the session emulator: the rules loaded here touch no other test
ENV = {"EXEC_DRY_RUN": "0", "EXEC_FILL_WAIT_SECONDS": "0", "EXEC_MAX_POSITION_QTY": "100000"}
MISMATCH = "exec.client_id_mismatch"


def token(uid: str, tenant: str) -> str:
    return fake_id_token(uid, PROJECT, tenant_id=tenant, role="trader")


@pytest.fixture
def alerts():
    stream = io.StringIO()
    logs.set_stream(stream)

    def read() -> list[dict]:
        lines = [json.loads(x) for x in stream.getvalue().splitlines() if x.strip()]
        return [x for x in lines if x.get("event") == MISMATCH]

    try:
        yield read
    finally:
        logs.set_stream(None)


@pytest.fixture
def rules_db(firestore_emulator, firestore_env):
    """(admin client, rules-checked REST client) on a fresh project with firestore.rules loaded."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    firestore_emulator.reset(PROJECT)
    firestore_emulator.set_rules(PROJECT, RULES)
    client = firestore.Client(project=PROJECT, credentials=AnonymousCredentials())
    try:
        yield client, RulesClient(firestore_emulator.base_url, PROJECT)
    finally:
        client.close()


def engine_on(broker: Any, store: Any, clock: Any) -> ExecutionEngine:
    return ExecutionEngine(broker=broker, store=store, clock=clock, dry_run=False, settings=ExecSettings.from_env(ENV))


def ledger(db: Any, tenant: str) -> list[dict]:
    return [s.to_dict() for s in db.collection(f"tenants/{tenant}/ledger_trades").stream()]


def history(db: Any, uid: str) -> list[dict]:
    return [s.to_dict() for s in db.collection(f"users/{uid}/portfolio/history/trades").stream()]


# --------------------------------------------------------------------------------------------------
# (c) Intent documents written through the rules, executed by the trigger's intake
# --------------------------------------------------------------------------------------------------


def test_tenant_b_writing_tenant_a_group_id_through_the_rules_gets_its_own_orders(rules_db, alerts):
    db, rest = rules_db
    clock = ManualClock()
    venue = SimulatedVenue(scenario(), clock=clock)
    store = FirestoreStore(db)
    body = {"status": "new", "kind": "multi_leg", "request": pair_request(clock.now(), EQUITY_PAIR)}

    def app_writes_and_trigger_runs(tenant: str, uid: str) -> dict:
        reply = rest.create(f"tenants/{tenant}/order_intents/grp-1", {**body, "uid": uid}, token=token(uid, tenant))
        assert reply.ok, reply
        approve(store, body["request"], tenant_id=tenant, uid=uid)  # the risk desk's approval for this user
        doc = db.document(f"tenants/{tenant}/order_intents/grp-1").get().to_dict()
        handle_intent_document(engine_on(PaperBroker(venue=venue), store, clock), tenant, "grp-1", doc)
        return db.document(f"tenants/{tenant}/order_intents/grp-1").get().to_dict()

    doc_a = app_writes_and_trigger_runs("A", "alice")
    a_orders = {o.broker_order_id for o in venue.orders()}
    a_ledger = ledger(db, "A")

    doc_b = app_writes_and_trigger_runs("B", "carol")

    assert doc_a["status"] == doc_b["status"] == "filled"
    assert len(venue.orders()) == 4 and len({o.client_order_id for o in venue.orders()}) == 4
    b_orders = {o.broker_order_id for o in venue.orders()} - a_orders
    assert {r["broker_order_id"] for r in ledger(db, "B") if r["kind"] != "group_decision"} == b_orders
    assert {r["execution"]["broker_order_id"] for r in history(db, "carol")} == b_orders
    assert ledger(db, "A") == a_ledger  # A untouched
    group_a = db.document("tenants/A/execution_groups/grp-1").get().to_dict()
    group_b = db.document("tenants/B/execution_groups/grp-1").get().to_dict()
    assert not {x["client_order_id"] for x in group_a["legs"]} & {x["client_order_id"] for x in group_b["legs"]}
    assert {x["broker_order_id"] for x in group_b["legs"]} == b_orders
    assert foreign_adoptions(store, venue) == []
    assert alerts() == []
    # and B still cannot read A's document (nor A's fills) through the rules
    assert rest.get("tenants/A/order_intents/grp-1", token=token("carol", "B")).denied


# --------------------------------------------------------------------------------------------------
# (d) Through the local Alpaca server with real alpaca-py: the 422 duplicate answered with a foreign order
# --------------------------------------------------------------------------------------------------


@dataclass
class Squatter:
    """An AlpacaBroker whose next submit meets a client id someone else already used at the venue (a
    different order: SPY, sell, 7). The venue answers 422 duplicate; the adapter fetches the holder."""

    inner: AlpacaBroker
    venue: SimulatedVenue
    squat: Callable[[str], bool]

    def __post_init__(self) -> None:
        self.name = self.inner.name
        self.planted: dict[str, BrokerOrder] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        cid = request.client_order_id
        if cid not in self.planted and self.squat(cid):
            foreign = OrderRequest(client_order_id=cid, symbol="SPY", asset_class=AssetClass.EQUITY,
                                   side=OrderSide.SELL, qty=D("7"))
            self.planted[cid] = self.venue.submit_order(foreign).to_broker_order()
        return self.inner.submit_order(request)


@pytest.fixture
def alpaca(db):
    clock = ManualClock()
    with LocalAlpacaServer(scenario(), clock=clock) as server:
        def broker(squat: Callable[[str], bool]) -> Squatter:
            inner = AlpacaBroker("k", "s", url_override=server.url, clock=clock, timeout_seconds=5)
            return Squatter(inner, server.venue, squat)

        yield server, broker, FirestoreStore(db), clock


def test_alpaca_a_single_intent_answered_with_a_foreign_order_on_duplicate_is_refused(db, alpaca, alerts):
    server, make_broker, store, clock = alpaca
    broker = make_broker(lambda cid: True)
    intent = OrderIntent.from_dict({**intent_fields("AAPL", "buy", "3", account="x1"), "intent_id": "i-1"})

    result = engine_on(broker, store, clock).execute_intent(intent, ExecutionContext("B", "carol"))

    assert result.status == "rejected" and result.rejection.code is RejectCode.CLIENT_ORDER_ID_MISMATCH
    (planted,) = broker.planted.values()
    assert any(r.method == "POST" and r.path == "/v2/orders" and r.status == 422 for r in server.requests)
    row = db.document("tenants/B/ledger_trades/i-1").get().to_dict()
    assert row["status"] == "rejected" and row.get("broker_order_id") in (None, "")
    assert history(db, "carol") == []
    assert server.venue.peek_order(planted.broker_order_id).state is OrderState.FILLED  # untouched
    (alert,) = alerts()
    assert alert["severity"] == "ALERT" and alert["tenant_id"] == "B" and alert["where"] == "engine.submit"
    assert alert["got"]["symbol"] == "SPY" and alert["expected"]["symbol"] == "AAPL"
    assert foreign_adoptions(store, server.venue) == []


def test_alpaca_a_group_leg_answered_with_a_foreign_order_is_rejected_and_nothing_is_booked(db, alpaca, alerts):
    server, make_broker, store, clock = alpaca
    broker = make_broker(lambda cid: cid.startswith("mleg-"))  # every entry leg's id is taken

    body = pair_request(clock.now(), EQUITY_PAIR)
    approve(store, body, tenant_id="B", uid="carol")

    group = engine_on(broker, store, clock).execute_group(body, ExecutionContext("B", "carol"), group_id="g1")

    first = group.leg("leg_002")  # the short leg goes first
    assert first.rejection.code is RejectCode.CLIENT_ORDER_ID_MISMATCH and first.broker_order_id is None
    assert group.status.value == "REJECTED" and group.rejection.code is RejectCode.CLIENT_ORDER_ID_MISMATCH
    assert group.leg("leg_001").status.value == "CANCELED"
    assert [r for r in ledger(db, "B") if r.get("kind") in ("group_fill", "rollback_fill")] == []
    assert history(db, "carol") == []
    assert [a["where"] for a in alerts()] == ["group.submit"]
    assert foreign_adoptions(store, server.venue) == []
