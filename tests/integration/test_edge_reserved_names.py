"""Issue 10 items 5, 6, 10 and 11 over the paths the attacks used: real HTTP with real ID tokens
(functions-framework + the Auth emulator), intent documents through the trigger's intake on the
official Firestore emulator, and the store's metrics shards on the emulator.

Before the fix: ``strategy_id="__rt__"`` filled at the venue and then the finish write failed
(HTTP 500, intent stuck ``reserved``); ``GET /groups/__x__`` and ledger cursors naming ``__x__``
were 500s; 5,000 strategy ids grew a metrics shard to 1 MiB; a colleague could squat a body
``intent_id`` (409) and tell "exists" (403) from "does not exist" (404); ``qty="١٠"`` bought 10.
"""
from __future__ import annotations

import base64
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest

from backend.adapters.firestore_store import FirestoreStore
from backend.domain.clock import ManualClock
from backend.domain.storable import check_storable, record_size
from backend.execution import metrics
from backend.execution.engine import ExecutionEngine, OrderIntent, RiskManager, SmartRouter
from backend.execution.intent import ExecutionContext
from backend.risk.manager import RiskLimits
from backend.service.intake import handle_intent_document
from backend.settings import ExecSettings
from tests.support.api_stack import FunctionsServer, http_call
from tests.support.stub_broker import StubBroker

pytestmark = pytest.mark.slow

CTX = ExecutionContext(tenant_id="acme", uid="u1")
QUOTES = {"AAPL": ("189.99", "190.01"), "EURUSD": ("1.1000", "1.1001"), "GBPUSD": ("1.2700", "1.2701")}


def _cursor(doc_id: str, created_at: str = "2026-01-05T10:00:00+00:00") -> str:
    raw = json.dumps({"c": created_at, "i": doc_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _written(db, tenant: str = "acme") -> dict[str, list[str]]:
    out = {}
    for name in ("order_intents", "ledger_trades", "execution_groups", "metrics", "exposure"):
        ids = [d.id for d in db.collection(f"tenants/{tenant}/{name}").stream()]
        if ids:
            out[name] = ids
    return out


# ----------------------------------------------------------------------------- the premise


def test_firestore_refuses_the_names_check_storable_refuses(db):
    """The emulator refuses a reserved map key at write time: exactly what must never happen after
    an order was sent. check_storable refuses the same document up front."""
    doc = {"by_strategy": {"__rt__": {"decisions": 1}}}
    with pytest.raises(Exception):
        db.document("probe/one").set(doc)
    with pytest.raises(Exception):
        check_storable(doc)
    db.document("probe/two").set({"by_strategy": {"(other)": {"decisions": 1}, "a-b.c": {"decisions": 1}}})
    assert db.document("probe/two").get().to_dict()["by_strategy"]["(other)"] == {"decisions": 1}


# ------------------------------------------------------------ intent documents (the trigger)


@pytest.fixture
def engine(db):
    clock = ManualClock()
    broker = StubBroker(quotes=dict(QUOTES), now=clock.now)
    eng = ExecutionEngine(broker=broker, router=SmartRouter(0.001),
                          risk=RiskManager(RiskLimits(max_position_qty=Decimal("1000000"))), dry_run=False,
                          store=FirestoreStore(db), clock=clock,
                          settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0"}))
    return eng, broker


def _put_intent(db, intent_id: str, data: dict[str, Any]) -> dict[str, Any]:
    db.document(f"tenants/acme/order_intents/{intent_id}").set(data)
    return data


@pytest.mark.parametrize("intent", [
    {"strategy_id": "__rt__", "broker_account_id": "acct1", "symbol": "AAPL", "side": "buy", "qty": "10"},
    {"strategy_id": "s1", "broker_account_id": "__acct__", "symbol": "AAPL", "side": "buy", "qty": "10"},
    {"strategy_id": "s1", "broker_account_id": "acct1", "symbol": "AAPL", "side": "buy", "qty": "١٠"},
    {"strategy_id": "s1", "broker_account_id": "acct1", "symbol": "AAPL", "side": "buy", "qty": "1_000"},
    {"strategy_id": "s1", "broker_account_id": "acct1", "symbol": "AAPL", "side": "sell", "qty": "1",
     "metadata": {"lot_ids": {"..": "1"}}},
])
def test_an_intent_document_with_an_unstorable_or_non_ascii_field_is_rejected_on_the_doc(db, engine, intent):
    eng, broker = engine
    data = _put_intent(db, "app-1", {"uid": "u1", "status": "new", "kind": "single", "intent": intent})

    out = handle_intent_document(eng, "acme", "app-1", data)

    assert out["status"] == "rejected" and out["error"]["code"] == "INVALID_INPUT"
    stored = db.document("tenants/acme/order_intents/app-1").get().to_dict()
    assert stored["status"] == "rejected" and stored["result"]["error"]["field"] == out["error"]["field"]
    assert broker.submits == [] and _written(db) == {"order_intents": ["app-1"]}


def test_a_multi_leg_intent_document_with_a_reserved_strategy_sends_no_leg(db, engine):
    eng, broker = engine
    request = {"strategy_id": "__grp__",
               "legs": [{"leg_id": "l1", "symbol": "EURUSD", "direction": 1, "units": "1000", "asset_class": "FX"},
                        {"leg_id": "l2", "symbol": "GBPUSD", "direction": -1, "units": "1000", "asset_class": "FX"}],
               "rpm_output": {"decision_id": "r1", "approved": True, "expires_at": "2099-01-01T00:00:00+00:00",
                              "approved_legs": {"l1": "1000", "l2": "1000"}},
               "max_group_slippage_pips": "10", "allow_partial_fills": False}
    data = _put_intent(db, "grp-1", {"uid": "u1", "status": "new", "kind": "multi_leg", "request": request})

    out = handle_intent_document(eng, "acme", "grp-1", data)

    assert out["status"] == "rejected" and out["error"]["field"] == "strategy_id"
    assert broker.submits == [] and _written(db) == {"order_intents": ["grp-1"]}


# --------------------------------------------------------------- metrics shards (item 6)


def test_five_thousand_strategy_ids_do_not_grow_a_shard_and_a_victims_trade_still_finishes(db, engine):
    eng, broker = engine
    store = FirestoreStore(db)
    day = eng.clock.now().date().isoformat()
    long_id = "s" * 90

    def add(i: int) -> None:  # one attacker decision row per strategy id, committed as the engine does
        batch = db.batch()
        row = {"kind": "order", "status": "rejected", "asset_class": "EQUITY", "trade_date": day,
               "strategy_id": f"{long_id}{i:05d}"}
        store._add_metrics(batch, "acme", f"attack-{i}", row)
        batch.commit()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(add, range(5000)))

    result = eng.execute_intent(OrderIntent("victim_strategy", "acct1", "AAPL", "buy", "1", intent_id="victim"), CTX)

    assert result.status == "placed" and len(broker.submits) == 1
    assert db.document("tenants/acme/ledger_trades/victim").get().exists
    shards = {d.id: d.to_dict() for d in db.collection("tenants/acme/metrics").stream()}
    assert len(shards) == metrics.SHARDS
    for doc_id, doc in shards.items():
        # at most the cap plus what concurrent writers admitted in the same instant
        assert len(doc["by_strategy"]) <= metrics.MAX_STRATEGIES_PER_SHARD + 8 + 1, doc_id  # was ~625 each
        assert len(doc["strategies"]) <= metrics.MAX_STRATEGIES_PER_SHARD + 8, doc_id
        assert set(doc["by_strategy"]) <= set(doc["strategies"]) | {metrics.OTHER_STRATEGIES}
        assert record_size(doc) < 200_000, doc_id  # far from 1 MiB, whatever the number of ids
    summary = metrics.summarize(shards.values())
    assert summary["decisions"] == 5001 and summary["rejected"] == 5000  # totals stay exact


# ---------------------------------------------------------------- real HTTP, real tokens


def _env(firestore_emulator, auth_emulator) -> dict[str, str]:
    project = auth_emulator.project
    return {"FIRESTORE_EMULATOR_HOST": firestore_emulator.host, "FIREBASE_AUTH_EMULATOR_HOST": auth_emulator.host,
            "GOOGLE_CLOUD_PROJECT": project, "GCLOUD_PROJECT": project, "EXEC_DRY_RUN": "0",
           "EXEC_ACCOUNTS": "auto",  # legacy labels: one account per user (issue 12)
            "GOOGLE_APPLICATION_CREDENTIALS": "", "EXEC_PAPER_SCENARIO": "wide_spread"}


@pytest.fixture(scope="module")
def server(firestore_emulator, auth_emulator):
    with FunctionsServer(_env(firestore_emulator, auth_emulator)) as srv:
        yield srv
        errors = [line for line in srv.log_lines() if line.get("severity") == "ERROR"]
        assert errors == [], f"the function logged errors: {errors}"


@pytest.fixture
def users(auth, firestore_project):
    def user(name: str, tenant: str = "acme", role: str = "trader") -> tuple[str, str]:
        email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
        uid, _ = auth.sign_up(email, "secret-pw-1")
        auth.set_claims(uid, {"tenant_id": tenant, "role": role})
        return uid, auth.sign_in(email, "secret-pw-1")

    return user


def _call(server, token, method, path, body=None, headers=None):
    hdrs = {"Authorization": f"Bearer {token}", **(headers or {})}
    return http_call(method, server.url + path, body, hdrs)


def _execute(**overrides):
    # no account named: each user trades their own default account (issue 12)
    return {"strategy_id": "s1", "symbol": "SPY", "side": "buy", "qty": "3", **overrides}


def _group(**overrides):
    return {"strategy_id": "pairs_01",
            "legs": [{"leg_id": "long_spy", "symbol": "SPY", "direction": 1, "units": 10, "asset_class": "EQUITY"},
                     {"leg_id": "short_msft", "symbol": "MSFT", "direction": -1, "units": 5, "asset_class": "EQUITY"}],
            "rpm_output": {"decision_id": "rpm-1", "approved": True, "expires_at": "2099-01-01T00:00:00+00:00",
                           "approved_legs": {"long_spy": 10, "short_msft": 5}},
            "max_group_slippage_pips": 50, "allow_partial_fills": False, **overrides}


@pytest.mark.parametrize("body, field", [
    (_execute(strategy_id="__rt__"), "strategy_id"),
    (_execute(intent_id="__rt__"), "intent_id"),
    (_execute(metadata={"__x__": "1"}), "metadata"),
    (_execute(qty="١٠"), "qty"),
    (_execute(qty="1_000"), "qty"),
])
def test_execute_with_a_reserved_name_or_non_ascii_amount_is_a_400_and_nothing_is_written(server, users, db,
                                                                                         body, field):
    _, token = users("alice")
    status, _, reply = _call(server, token, "POST", "/execute", body)
    assert status == 400 and reply["error"]["field"] == field, reply
    assert _written(db) == {}


def test_a_group_with_a_reserved_strategy_is_a_400_and_nothing_is_written(server, users, db):
    _, token = users("alice")
    status, _, reply = _call(server, token, "POST", "/execute/multi-leg", _group(strategy_id="__grp__"))
    assert status == 400 and reply["error"]["field"] == "strategy_id", reply
    assert _written(db) == {}


@pytest.mark.parametrize("path", ["/groups/__x__", "/groups/..", "/groups/__name__"])
def test_get_group_with_a_reserved_id_is_a_4xx_not_a_500(server, users, path):
    _, token = users("alice")
    status, _, reply = _call(server, token, "GET", path)
    assert status in (400, 404), reply


@pytest.mark.parametrize("doc_id", ["__x__", "..", "__name__"])
def test_ledger_and_history_cursors_naming_reserved_ids_are_a_400(server, users, doc_id):
    _, admin = users("carol", role="tenant_admin")
    _, trader = users("alice")
    status, _, reply = _call(server, admin, "GET", f"/tenants/acme/ledger?cursor={_cursor(doc_id)}")
    assert status == 400 and reply["error"]["field"] == "cursor", reply
    status, _, reply = _call(server, trader, "GET", f"/portfolio/history?cursor={_cursor(doc_id)}")
    assert status == 400 and reply["error"]["field"] == "cursor", reply


def test_two_users_of_one_tenant_have_separate_intent_ids_and_groups_answer_404_either_way(server, users, db):
    """Item 10: a colleague's same body intent_id is their own intent (no 409 squat), and another
    user's group is indistinguishable from a missing one (404 both)."""
    alice_uid, alice = users("alice")
    bob_uid, bob = users("bob")

    s1, _, first = _call(server, alice, "POST", "/execute", _execute(intent_id="order-1"))
    s2, _, second = _call(server, bob, "POST", "/execute", _execute(intent_id="order-1"))
    assert (s1, s2) == (201, 201), (first, second)
    assert first["intent_id"] != second["intent_id"] and (first["uid"], second["uid"]) == (alice_uid, bob_uid)
    assert second["broker_order_id"] != first["broker_order_id"]

    status, _, group = _call(server, alice, "POST", "/execute/multi-leg", _group(), {"Idempotency-Key": "pair-1"})
    assert status in (201, 202), group
    theirs = _call(server, bob, "GET", f"/groups/{group['group_id']}")
    missing = _call(server, bob, "GET", "/groups/g-does-not-exist")
    assert theirs[0] == missing[0] == 404
    assert theirs[2]["error"]["reason"] == missing[2]["error"]["reason"]
    assert _call(server, alice, "GET", f"/groups/{group['group_id']}")[0] == 200
