"""Issue 10 items 2-3 over the paths the attack used: HTTP with real ID tokens (functions-framework child
process, Auth emulator, Firestore emulator, the local Alpaca server as the venue whose orders are
counted), intent documents on the emulator (FirestoreStore + the paper venue), and the sweeper.

- dry run: a group sends 0 venue orders over HTTP, from an intent document and through the sweeper;
- limits: 8 groups against a position limit of 100 and 5 trades a day are refused beyond the limits;
  concurrent groups cannot exceed the position limit; a 1-leg group is a 400 / a rejected document;
- rpm_output: a self-written approval is refused (RPM_NOT_AUTHORIZED); only a risk_manager issues one.
"""
from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal as D
from typing import Any

import pytest

from backend.adapters.firestore_store import FirestoreStore
from backend.adapters.paper_broker import PaperBroker
from backend.adapters.sim_venue import SimulatedVenue
from backend.domain.clock import ManualClock
from backend.execution.engine import ExecutionEngine
from backend.execution.groups import GroupStatus
from backend.execution.intent import ExecutionContext
from backend.execution.sweeper import Sweeper
from backend.service.intake import handle_intent_document
from backend.settings import ExecSettings
from tests.support.alpaca_server import LocalAlpacaServer
from tests.support.api_stack import FunctionsServer, http_call
from tests.support.group_harness import GROUP_LIMITS_ENV, approve, group_request, leg, scenario
from tests.support.invariants import assert_no_group_fills_beyond_limits, assert_no_venue_orders

pytestmark = pytest.mark.slow

CTX = ExecutionContext("acme", "u1")
FX_PAIR = (leg("leg_001", "EURUSD", 1, 40, "FX"), leg("leg_002", "GBPUSD", -1, 40, "FX"))


# ------------------------------------------------------------------------------ HTTP (real tokens)


def _env(firestore_emulator, auth_emulator, venue, **extra: str) -> dict[str, str]:
    project = auth_emulator.project
    return {"FIRESTORE_EMULATOR_HOST": firestore_emulator.host, "FIREBASE_AUTH_EMULATOR_HOST": auth_emulator.host,
            "GOOGLE_CLOUD_PROJECT": project, "GCLOUD_PROJECT": project, "GOOGLE_APPLICATION_CREDENTIALS": "",
            "EXEC_BROKER_ROUTES": "EQUITY=alpaca", "ALPACA_URL_OVERRIDE": venue.url, "ALPACA_API_KEY": "PKLOCALTEST",
            "ALPACA_SECRET_KEY": "local-secret", "EXEC_ACCOUNTS": "auto", **extra}  # legacy labels (issue 12)


@pytest.fixture(scope="module")
def dry_venue():
    with LocalAlpacaServer("default") as venue:
        yield venue


@pytest.fixture(scope="module")
def dry_server(firestore_emulator, auth_emulator, dry_venue):
    with FunctionsServer(_env(firestore_emulator, auth_emulator, dry_venue, EXEC_DRY_RUN="1")) as server:
        yield server


@pytest.fixture(scope="module")
def limit_venue():
    with LocalAlpacaServer("default") as venue:
        yield venue


@pytest.fixture(scope="module")
def limit_server(firestore_emulator, auth_emulator, limit_venue):
    env = _env(firestore_emulator, auth_emulator, limit_venue, EXEC_DRY_RUN="0", EXEC_MAX_POSITION_QTY="100",
               EXEC_MAX_DAILY_TRADES="5")
    with FunctionsServer(env) as server:
        yield server


@pytest.fixture
def users(auth, firestore_project):
    def user(name: str, tenant: str | None = "acme", role: str | None = "trader") -> tuple[str, str]:
        email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
        uid, _ = auth.sign_up(email, "secret-pw-1")
        auth.set_claims(uid, {"tenant_id": tenant, "role": role})
        return uid, auth.sign_in(email, "secret-pw-1")

    return user


def call(server, token: str, method: str, path: str, body: Any = None):
    return http_call(method, server.url + path, body, {"Authorization": f"Bearer {token}"})


def pair(decision_id: str, units: int = 30, **extra: Any) -> dict[str, Any]:
    return {"strategy_id": "pairs_01",
            "legs": [{"leg_id": "long_spy", "symbol": "SPY", "direction": 1, "units": units, "asset_class": "EQUITY"},
                     {"leg_id": "short_msft", "symbol": "MSFT", "direction": -1, "units": units,
                      "asset_class": "EQUITY"}],
            "rpm_output": {"decision_id": decision_id, "approved": True, "expires_at": "2099-01-01T00:00:00+00:00",
                           "approved_legs": {"long_spy": units, "short_msft": units}},
            "max_group_slippage_pips": 50, "allow_partial_fills": False, **extra}


def issue(server, risk_token: str, for_uid: str, decision_id: str, units: int = 30):
    return call(server, risk_token, "POST", "/risk/approvals", {
        "decision_id": decision_id, "for_uid": for_uid, "expires_at": "2099-01-01T00:00:00+00:00",
        "legs": [{"leg_id": "long_spy", "symbol": "SPY", "direction": 1, "max_units": str(units)},
                 {"leg_id": "short_msft", "symbol": "MSFT", "direction": -1, "max_units": str(units)}]})


def test_a_group_under_dry_run_over_http_sends_no_order_and_answers_dry_run(dry_server, dry_venue, users, db):
    dry_venue.venue.reset() if hasattr(dry_venue.venue, "reset") else None
    before = len(dry_venue.venue.orders())
    uid, token = users("dora")
    _, risk = users("rita", role="risk_manager")
    assert issue(dry_server, risk, uid, "rpm-dry")[0] == 201

    status, _, group = call(dry_server, token, "POST", "/execute/multi-leg", pair("rpm-dry"))

    assert status == 201 and group["status"] == "dry_run", group
    assert_no_venue_orders(dry_venue.venue.orders()[before:], "POST /execute/multi-leg under EXEC_DRY_RUN=1")
    row = db.document(f"tenants/acme/ledger_trades/{group['group_id']}--dry_run").get().to_dict()
    assert row["status"] == "dry_run" and row["uid"] == uid


def test_a_one_leg_group_over_http_is_a_400_and_nothing_is_written(limit_server, users, db):
    uid, token = users("olga")
    body = pair("rpm-one")
    body["legs"] = body["legs"][:1]

    status, _, reply = call(limit_server, token, "POST", "/execute/multi-leg", body)

    assert status == 400 and reply["error"]["field"] == "legs", reply
    assert list(db.collection("tenants/acme/execution_groups").stream()) == []


def test_eight_groups_over_http_stop_at_the_position_limit_and_the_daily_count(limit_server, limit_venue, users, db):
    before = len(limit_venue.venue.orders())
    uid, token = users("mallory")
    _, risk = users("rita", role="risk_manager")
    assert issue(limit_server, risk, uid, "rpm-eight")[0] == 201

    replies = [call(limit_server, token, "POST", "/execute/multi-leg", pair("rpm-eight"))[2] for _ in range(8)]

    assert [r["status"] for r in replies[:2]] == ["FILLED", "FILLED"], replies
    assert all(r["status"] == "REJECTED" for r in replies[2:]), replies  # a third pair needs 6 slots > 5
    assert len(limit_venue.venue.orders()) - before == 4
    assert_no_group_fills_beyond_limits(FirestoreStore(db), "acme", position_limit=D("100"), daily_limit=5)
    # the group's exposure is the one single orders see: 60 SPY held, +50 would pass 100
    status, _, single = call(limit_server, token, "POST", "/execute",
                             {"strategy_id": "s1", "symbol": "SPY", "side": "buy",  # the groups' default account
                              "qty": "50"})
    assert status == 201 and single["status"] == "rejected" and single["rejection"]["code"] in (
        "POSITION_LIMIT", "DAILY_TRADE_LIMIT"), single


def test_a_self_written_rpm_output_is_refused_over_http(limit_server, limit_venue, users, db):
    before = len(limit_venue.venue.orders())
    uid, token = users("trudy")

    status, _, group = call(limit_server, token, "POST", "/execute/multi-leg", pair("rpm-self", units=1))

    assert status == 201 and group["status"] == "REJECTED", group
    stored = db.document(f"tenants/acme/execution_groups/{group['group_id']}").get().to_dict()
    assert stored["rejection"]["code"] == "RPM_NOT_AUTHORIZED"
    assert len(limit_venue.venue.orders()) == before


def test_only_a_risk_manager_issues_approvals_and_never_for_themselves(limit_server, users, db):
    uid, trader = users("trent")
    risk_uid, risk = users("rita", role="risk_manager")

    assert issue(limit_server, trader, uid, "rpm-own")[0] == 403  # the trader approving themselves
    assert issue(limit_server, risk, risk_uid, "rpm-own")[0] == 400  # a risk manager approving themselves
    assert not db.document("tenants/acme/rpm_approvals/rpm-own").get().exists
    assert issue(limit_server, risk, uid, "rpm-own")[0] == 201
    assert issue(limit_server, risk, uid, "rpm-own")[0] == 409  # create-only
    stored = db.document("tenants/acme/rpm_approvals/rpm-own").get().to_dict()
    assert stored["for_uid"] == uid and stored["issuer_uid"] == risk_uid


# ------------------------------------------------------------------------------ the emulator, in process


class World:
    def __init__(self, db, symbols: dict | None = None, **env: str):
        self.clock = ManualClock()
        self.venue = SimulatedVenue(scenario(symbols), clock=self.clock)
        self.store = FirestoreStore(db)
        self.env = {"EXEC_FILL_WAIT_SECONDS": "0", "EXEC_DRY_RUN": "0", **env}

    def engine(self, *, dry_run: bool = False) -> ExecutionEngine:
        return ExecutionEngine(broker=PaperBroker(venue=self.venue), store=self.store, clock=self.clock,
                               dry_run=dry_run, settings=ExecSettings.from_env(self.env))


def test_a_multi_leg_intent_document_under_dry_run_sends_no_order(db):
    world = World(db, **GROUP_LIMITS_ENV)
    data = {"uid": "u1", "status": "new", "kind": "multi_leg", "request": group_request(now=world.clock.now())}
    db.document("tenants/acme/order_intents/doc-dry").set(data)
    approve(world.store, data["request"])

    handle_intent_document(world.engine(dry_run=True), "acme", "doc-dry", data)

    assert db.document("tenants/acme/order_intents/doc-dry").get().to_dict()["status"] == "dry_run"
    assert_no_venue_orders(world.venue.orders())


def test_a_one_leg_intent_document_is_rejected_on_the_document(db):
    world = World(db, EXEC_MAX_POSITION_QTY="100")
    request = group_request((leg("x", "SPY", 1, 5000, "EQUITY"),), now=world.clock.now())
    data = {"uid": "u1", "status": "new", "kind": "multi_leg", "request": request}
    db.document("tenants/acme/order_intents/doc-one").set(data)

    handle_intent_document(world.engine(), "acme", "doc-one", data)

    doc = db.document("tenants/acme/order_intents/doc-one").get().to_dict()
    assert doc["status"] == "rejected" and doc["result"]["error"]["field"] == "legs", doc
    assert_no_venue_orders(world.venue.orders())


def test_the_sweeper_resumes_no_group_into_an_order_while_dry_run_is_on(db):
    world = World(db, **GROUP_LIMITS_ENV)
    live = world.engine()
    request = group_request(FX_PAIR, now=world.clock.now())
    approve(world.store, request)
    world.venue.inject_fault("submit_order", "unavailable", count=None)  # parked before any leg reached the venue
    parked = live.execute_group(request, CTX, group_id="g-park")
    world.venue.clear_faults()
    assert not parked.status.is_final
    world.clock.advance(float(live.settings.lease_seconds) + 1)

    Sweeper(world.engine(dry_run=True)).sweep()

    assert_no_venue_orders(world.venue.orders(), "sweeper under dry run")
    world.clock.advance(float(live.settings.lease_seconds) + 1)
    Sweeper(world.engine()).sweep()
    assert world.engine().get_group("acme", "g-park").status is GroupStatus.FILLED


def test_concurrent_groups_on_the_emulator_cannot_exceed_the_position_limit(db):
    world = World(db, EXEC_MAX_POSITION_QTY="100", EXEC_MAX_DAILY_TRADES="1000")
    request = group_request(FX_PAIR, now=world.clock.now())
    approve(world.store, request)

    def one(i: int):
        return world.engine().execute_group(request, CTX, group_id=f"c{i}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        groups = list(pool.map(one, range(8)))

    assert sum(g.status is GroupStatus.FILLED for g in groups) <= 2 and all(g.status.is_final for g in groups)
    assert_no_group_fills_beyond_limits(world.store, "acme", position_limit=D("100"), daily_limit=1000)
    exposure = db.document("tenants/acme/exposure/main-u1__EURUSD").get().to_dict()  # the default account
    assert exposure.get("reserved_long_nanos", 0) == 0  # every reservation settled or released
