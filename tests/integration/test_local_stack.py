"""The local stack of ``bash scripts/run.sh``: firebase-tools' emulator suite running our functions.

One suite for the module, started by the same code as run.sh (``EmulatorSuite`` from
scripts/stack.py) but on free ports in a temp folder, so it runs beside a developer's stack:
the official Firestore emulator with firestore.rules, the Auth emulator, Pub/Sub, and the
Functions emulator running functions/main.py with functions/.env.demo-exec (``wide_spread``
scenario, dry run off, strict accounts as deployed), plus run.sh's local OANDA server
(``DemoVenues``: its token only in the functions' environment). The test trader gets an account of
their own on the tenant's ``paper`` connection, written with admin credentials as run.sh does.
Every request goes over HTTP to the emulators; the only in-process code is the test's own client
and, for the sweeper test, an engine that leaves an intent stuck the way a crashed or cut-off
function would.
"""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

import pytest

from tests.support.stack_script import load_stack

pytestmark = [pytest.mark.slow, pytest.mark.emulator, pytest.mark.timeout(240)]


stack = load_stack()
TENANT = stack.TENANT
ACCOUNT = f"test_{uuid.uuid4().hex[:8]}"  # the test trader's account (paper connection), their default


@pytest.fixture(scope="module")
def venues():
    v = stack.DemoVenues.start(alpaca=False)  # the local OANDA server, as run.sh starts it
    try:
        yield v
    finally:
        v.stop()


@pytest.fixture(scope="module")
def suite(venues):
    s = stack.EmulatorSuite(free_ports=True, functions_env=venues.functions_env)
    s.start()
    print(f"emulator suite ready in {s.startup_seconds:.1f} s")
    try:
        yield s
    finally:
        s.stop()
    assert not s.running()


@pytest.fixture(scope="module")
def trader(suite):
    user = stack.AuthClient(suite).create_user(
        "trader", f"trader-{uuid.uuid4().hex[:8]}@acme.example", {"tenant_id": TENANT, "role": "trader"})
    stack.provision_paper_trader(suite, user, ACCOUNT)  # admin writes: connection, account, member
    return user


@pytest.fixture
def server(suite):
    """Server-side Firestore reads (``Bearer owner`` bypasses the rules in the emulator)."""
    return stack.FirestoreRest(suite, "owner")


def _events(suite, event: str, **match) -> list[dict]:
    return [e for e in suite.function_logs()
            if e.get("event") == event and all(e.get(k) == v for k, v in match.items())]


def _ledger_rows(server, intent_id: str) -> list[dict]:
    reply, rows = server.list(f"tenants/{TENANT}/ledger_trades")
    assert reply.status == 200, reply.body
    return [row for _, row in rows if row.get("intent_id") == intent_id]


def test_the_suite_runs_our_three_functions_with_the_demo_env(suite):
    backends = stack._http().get(f"http://{suite.host('functions')}/backends", timeout=10).json()
    triggers = {t["name"]: t for b in backends["backends"] for t in b["functionTriggers"]}
    assert set(triggers) == {"api", "on_order_intent_created", "sweep_stuck_work", "reconcile_daily"}
    assert "httpsTrigger" in triggers["api"]
    assert triggers["on_order_intent_created"]["eventTrigger"]["eventType"] == \
        "google.cloud.firestore.document.v1.created"
    assert triggers["sweep_stuck_work"]["schedule"]["schedule"] == "every 1 minutes"
    assert backends["backends"][0]["directory"].endswith("functions")
    assert "Loaded environment variables from functions/.env.demo-exec" in suite.log_text()


def test_the_api_answers_healthz_and_places_a_trade_through_the_functions_emulator(suite, trader, server):
    api = stack.ApiClient(suite, trader.token)
    health = api.call("GET", "/healthz", token=None)
    assert health.status == 200 and health.body == {"status": "ok", "service": "exec-api"}

    reply = api.call("POST", "/execute", stack.execute_body("SPY", qty="4", account=ACCOUNT),
                     headers={"Idempotency-Key": f"stack-{uuid.uuid4().hex[:8]}"})

    assert reply.status == 201, reply.body
    assert reply.get("status") == "placed" and reply.get("broker") == "paper"
    assert reply.get("uid") == trader.uid and reply.get("tenant_id") == TENANT
    assert reply.get("filled_qty") == "4.0000" and reply.get("filled_avg_price") == "520.01"
    [row] = _ledger_rows(server, reply.get("intent_id"))
    assert row["status"] == "placed" and row["uid"] == trader.uid and row["qty"] == "4.0000"
    assert row["broker_account_id"] == ACCOUNT and row["venue_account_id"] == f"book-{ACCOUNT}"
    assert api.call("POST", "/execute", stack.execute_body("SPY", account=ACCOUNT), token="garbage").status == 401
    engines = _events(suite, "api.engine_ready")  # functions/.env.demo-exec: live orders on the paper broker
    assert engines and all(e["dry_run"] is False and e["broker"] == "PaperBroker" for e in engines)


def test_an_intent_document_written_by_a_client_is_executed_once_by_the_trigger(suite, trader, server):
    client = stack.FirestoreRest(suite, trader.token)  # an end-user token: the rules apply
    intent_id = f"client-{uuid.uuid4().hex[:10]}"
    path = f"tenants/{TENANT}/order_intents/{intent_id}"

    created = client.create(f"tenants/{TENANT}/order_intents", intent_id,
                            stack.intent_document(trader.uid, qty="3", account=ACCOUNT))

    assert created.status == 200, created.body
    _, doc = stack.wait_for(lambda: client.get(path),
                            lambda v: (v[1] or {}).get("status") in stack.FINAL_INTENT_STATUSES, 60)
    assert doc is not None and doc["status"] == "placed", doc
    assert doc["result"]["status"] == "placed" and doc["result"]["intent_id"] == intent_id
    assert doc["uid"] == trader.uid and doc["tenant_id"] == TENANT and doc["broker"] == "paper"
    assert doc["broker_order_id"] and doc["result"]["filled_qty"] == "3.0000"
    time.sleep(2)  # a second delivery or a re-trigger on the engine's own writes would show by now
    assert len(_ledger_rows(server, intent_id)) == 1
    assert len(_events(suite, "exec.placed", intent_id=intent_id)) == 1
    _, history = server.get(f"users/{trader.uid}/portfolio/history/trades/{intent_id}")
    assert history is not None and history["execution"]["intent_id"] == intent_id


def test_the_rules_refuse_a_client_intent_in_another_tenant_and_nothing_runs(suite, trader, server):
    client = stack.FirestoreRest(suite, trader.token)
    intent_id = f"client-{uuid.uuid4().hex[:10]}"

    refused = client.create("tenants/globex/order_intents", intent_id,
                            stack.intent_document(trader.uid, account=ACCOUNT))
    forged = client.create(f"tenants/{TENANT}/order_intents", intent_id,
                           dict(stack.intent_document(trader.uid, account=ACCOUNT), status="placed"))
    foreign = client.create(f"tenants/{TENANT}/order_intents", intent_id,  # an account the trader does not own
                            stack.intent_document(trader.uid, account=stack.TRADER2_ACCOUNT))

    assert refused.status == 403 and forged.status == 403 and foreign.status == 403
    assert server.get(f"tenants/globex/order_intents/{intent_id}")[1] is None
    assert server.get(f"tenants/{TENANT}/order_intents/{intent_id}")[1] is None


def test_the_scheduled_sweeper_runs_through_the_emulator_and_resumes_a_stuck_intent(suite, trader, server,
                                                                                    monkeypatch):
    # Arrange: an intent left RESERVED with a lapsed lease, as a function cut off after the claim
    # leaves it (here the broker call failed UNAVAILABLE: outcome unknown, reservation kept).
    from backend.adapters.firestore_store import FirestoreStore, make_client
    from backend.execution.engine import ExecutionEngine
    from backend.execution.intent import ExecutionContext, OrderIntent
    from backend.ports.broker import BrokerError, BrokerErrorCode
    from backend.settings import ExecSettings
    from tests.support.stub_broker import StubBroker

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", suite.host("firestore"))
    db = make_client(suite.project)
    broker = StubBroker(quotes={"SPY": ("519.99", "520.01")}, now=lambda: datetime.now(timezone.utc),
                        fail_submit=BrokerError(BrokerErrorCode.UNAVAILABLE, "connection reset"))
    from backend.execution.broker_router import BrokerRouter

    class StubVenues:  # the account's venue as this "crashed function" saw it: unreachable
        def router_for(self, tenant_id, binding):
            return BrokerRouter.single(broker)

    engine = ExecutionEngine(broker=broker, store=FirestoreStore(db), venue_pool=StubVenues(),
                             settings=ExecSettings.from_env(
        {"EXEC_DRY_RUN": "0", "EXECUTION_ENGINE_LEASE_SECONDS": "1", "EXEC_FILL_WAIT_SECONDS": "0",
         "EXEC_ACCOUNTS": "strict"}))
    intent_id = f"stuck-{uuid.uuid4().hex[:10]}"
    intent = OrderIntent(strategy_id="s1", broker_account_id=ACCOUNT, symbol="SPY", side="buy", qty="2",
                         intent_id=intent_id)
    assert engine.execute_intent(intent, ExecutionContext(TENANT, trader.uid)).status == "pending"
    path = f"tenants/{TENANT}/order_intents/{intent_id}"
    assert server.get(path)[1]["status"] == "reserved"
    db.close()
    time.sleep(1.5)  # the lease lapses
    sweeps_before = len(_events(suite, "exec.sweep"))

    # Act: what Cloud Scheduler does every minute
    reply = stack.invoke_scheduled(suite)

    # Assert
    assert reply.status == 200, reply.body
    _, doc = stack.wait_for(lambda: server.get(path), lambda v: (v[1] or {}).get("status") == "placed", 30)
    assert doc["status"] == "placed" and doc["broker"] == "paper", doc
    assert doc["account"]["account_id"] == ACCOUNT and doc["account"]["connection_id"] == "demo_paper"
    sweeps = _events(suite, "exec.sweep")[sweeps_before:]
    assert sweeps and all(not s["errors"] for s in sweeps), sweeps
    assert sum(s["intents_final"] for s in sweeps) >= 1
    assert _events(suite, "exec.resumed", intent_id=intent_id, found=False)
    assert len(_ledger_rows(server, intent_id)) == 1


def test_the_scripted_session_of_run_sh_passes_every_step(suite, venues, server):
    lines: list[str] = []
    session = stack.Session(suite, venues=venues, out=lines.append)

    ok = session.run()

    assert ok, "\n".join(lines)
    results = {label: detail for label, _, detail in session.results}
    assert any("downgraded" in d or "AAPL" in label for label, d in results.items())
    assert len(results) >= 30
    # two users, two accounts: refusals are coded, each account holds its owner's trades, FX went to OANDA
    assert sum("ACCOUNT_NOT_OWNED" in d for d in results.values()) == 2
    assert any(label.startswith(f"POST /tenants/{TENANT}/reconciliation") for label in results)
    _, rows = server.list(f"tenants/{TENANT}/ledger_trades")
    by_account = {}
    for _, row in rows:
        if row.get("status") == "placed":
            owners = by_account.setdefault(row.get("broker_account_id"), set())
            owners.add((row.get("uid"), row.get("venue_account_id")))
    assert by_account[stack.TRADER_ACCOUNT] == {(session.trader.uid, f"book-{stack.TRADER_ACCOUNT}")}
    assert by_account[stack.TRADER2_ACCOUNT] == {(session.trader2.uid, f"book-{stack.TRADER2_ACCOUNT}")}
    assert by_account[stack.FX_ACCOUNT] == {(session.trader.uid, venues.oanda.account_id)}
    assert venues.oanda.venue.net_position("GBP/USD") == 50
    # the connections hold references; the values are nowhere in Firestore or the log
    _, connections = server.list(f"tenants/{TENANT}/broker_connections")
    refs = {doc_id: row.get("credentials_ref") for doc_id, row in connections}
    assert refs["demo_oanda"] == f"env:{stack.OANDA_CREDENTIALS_ENV}" and refs["demo_paper"] is None
    log = suite.log_text()
    assert all(v not in log and v not in str(connections) for v in venues.secret_values())
    curls = stack.curl_examples(suite, session)
    assert any("/execute/multi-leg" in c for c in curls) and any("sweep_stuck_work-0" in c for c in curls)
    assert any('"broker_account_id":"trader2_main"' in c and "$TRADER2_TOKEN" in c for c in curls)


def test_the_scheduler_ticker_of_run_sh_fires_the_sweeper_through_the_emulator(suite):
    # run.sh ticks every 60 s; a short interval shows the same calls in a second
    before, failures = len(_events(suite, "exec.sweep")), []
    ticker = stack.SchedulerTicker(lambda: stack.invoke_scheduled(suite), interval=0.5, report=failures.append)

    ticker.start()
    try:
        sweeps = stack.wait_for(lambda: _events(suite, "exec.sweep"), lambda v: len(v) >= before + 2, 30)
    finally:
        ticker.stop(timeout=30)

    assert len(sweeps) >= before + 2 and failures == [] and ticker.failures == 0
    assert all(not s["errors"] for s in sweeps[before:])


def test_an_intent_document_without_asset_class_trades_the_symbols_class(suite, trader, server):
    # issue 19 item 1: GBP/USD is FOREX, not the EQUITY an omitted class used to default to
    client = stack.FirestoreRest(suite, trader.token)
    intent_id = f"client-fx-{uuid.uuid4().hex[:8]}"
    path = f"tenants/{TENANT}/order_intents/{intent_id}"

    created = client.create(f"tenants/{TENANT}/order_intents", intent_id,
                            stack.intent_document(trader.uid, symbol="GBP/USD", qty="50", account=None))

    assert created.status == 200, created.body
    _, doc = stack.wait_for(lambda: client.get(path),
                            lambda v: (v[1] or {}).get("status") in stack.FINAL_INTENT_STATUSES, 60)
    assert doc is not None and doc["status"] == "placed", doc
    [row] = _ledger_rows(server, intent_id)
    assert row["asset_class"] == "FOREX" and doc["intent"]["asset_class"] == "FOREX"
    assert row["broker_account_id"] == ACCOUNT  # no account named: the member's default
