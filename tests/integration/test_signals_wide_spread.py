"""Issue 15 item 5 for POST /signals, end to end: ``functions-framework --target api`` as a child
process, the official Firestore emulator, the Auth emulator's real ID tokens, and equities routed to
the local Alpaca-compatible server (real alpaca-py clients) whose AAPL quote is wider than the 0.1%
threshold.

A BUY/SELL whose market data fails the strategy-side cost check is WAIT as before, unless the
request sets ``wide_spread``: then it goes to the engine as a market intent with that option and the
engine rests one passive limit at the venue (tick-aligned, recorded as such, counted as placed, not
as a downgrade), which the sweeper cancels at its deadline. Every guarantee comes from the engine:
account binding, dry run (a second function server), the kill switch, position limits and
idempotency (a retried signal places one limit). Bad option values are the 400s of POST /execute.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from backend.adapters.firestore_store import FirestoreStore
from backend.domain.clock import ManualClock
from backend.execution.sweeper import Sweeper
from tests.support.alpaca_server import LocalAlpacaServer
from tests.support.api_stack import FunctionsServer, http_call

pytestmark = pytest.mark.slow

# The venue's AAPL: mid 190.00, spread 0.51 → bid 189.74, ask 190.25 (0.27%, over the 0.1% threshold);
# its mid 189.995 is off the 0.01 tick, so a limit at the mid rounds (a buy down, a sell up).
BID, ASK = Decimal("189.74"), Decimal("190.25")
WIDE_MARKET = {"symbol": "AAPL", "price": "190.00", "bid": "189.74", "ask": "190.25"}
MAX_POSITION = "100"


def _env(firestore_emulator, auth_emulator, venue, **extra: str) -> dict[str, str]:
    project = auth_emulator.project
    return {"FIRESTORE_EMULATOR_HOST": firestore_emulator.host, "FIREBASE_AUTH_EMULATOR_HOST": auth_emulator.host,
            "GOOGLE_CLOUD_PROJECT": project, "GCLOUD_PROJECT": project, "GOOGLE_APPLICATION_CREDENTIALS": "",
            "EXEC_BROKER_ROUTES": "EQUITY=alpaca", "ALPACA_URL_OVERRIDE": venue.url,
            "ALPACA_API_KEY": "PKLOCALTEST", "ALPACA_SECRET_KEY": "local-secret", "EXEC_ACCOUNTS": "auto",
            "EXEC_MAX_POSITION_QTY": MAX_POSITION, **extra}


@pytest.fixture(scope="module")
def venue():
    with LocalAlpacaServer("wide_spread") as server:
        yield server


@pytest.fixture(scope="module")
def live_env(firestore_emulator, auth_emulator, venue):
    return _env(firestore_emulator, auth_emulator, venue, EXEC_DRY_RUN="0")


@pytest.fixture(scope="module")
def live(live_env):
    with FunctionsServer(live_env) as server:
        yield server
        errors = [line for line in server.log_lines() if line.get("severity") == "ERROR"]
        assert errors == [], f"the function logged errors: {errors}"


@pytest.fixture(scope="module")
def dry(firestore_emulator, auth_emulator, venue):
    with FunctionsServer(_env(firestore_emulator, auth_emulator, venue, EXEC_DRY_RUN="1")) as server:
        yield server


@pytest.fixture
def wide(venue):
    """The venue's AAPL as described above (the module's tests share the venue)."""
    venue.venue.market.set_mid("AAPL", Decimal("190.00"))
    venue.venue.market.set_spread("AAPL", Decimal("0.51"))
    quote = venue.venue.get_latest_quote("AAPL", "EQUITY")
    assert (quote.bid, quote.ask) == (BID, ASK)
    return venue


@pytest.fixture
def user(auth, firestore_project):
    def make(name: str, role: str = "trader") -> tuple[str, str]:
        email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
        uid, _ = auth.sign_up(email, "secret-pw-1")
        auth.set_claims(uid, {"tenant_id": "acme", "role": role})
        return uid, auth.sign_in(email, "secret-pw-1")

    return make


def call(server, token: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None):
    return http_call(method, server.url + path, body, {"Authorization": f"Bearer {token}", **(headers or {})})


def signal(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"strategy_id": "momo", "signal_type": "BUY", "symbol": "AAPL", "qty": "5",
                            "confidence": "0.8", "reasoning": "momentum", "market_data": WIDE_MARKET}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def new_orders(venue, before: int) -> list[Any]:
    return venue.venue.orders()[before:]


def intent_docs(db) -> list[str]:
    return [doc.id for doc in db.collection("tenants/acme/order_intents").stream()]


# ------------------------------------------------------------------------------ without the option


def test_without_the_option_a_wide_signal_is_wait_as_today(live, wide, user, db):
    _, token = user("wes")
    before = len(wide.venue.orders())
    status, _, body = call(live, token, "POST", "/signals", signal(), {"Idempotency-Key": "plain-1"})
    assert status == 200, body
    assert body["signal"]["signal_type"] == "WAIT" and body["signal"]["downgraded"] is True
    assert body["signal"]["wide_spread"] is None and body["wide_spread_limit"] is None
    assert body["executed"] is False and body["execution"] is None
    assert body["reason"].startswith("Spread 0.27% exceeds threshold 0.10%")
    assert new_orders(wide, before) == [] and intent_docs(db) == []


# ------------------------------------------------------------------------------ the limit instead of WAIT


@pytest.mark.parametrize("mode, side, price", [
    ("limit_at_touch", "BUY", "189.74"),  # the bid
    ("limit_at_touch", "SELL", "190.25"),  # the ask
    ("limit_at_mid", "BUY", "189.99"),  # 189.995 rounded down
    ("limit_at_mid", "SELL", "190.00"),  # 189.995 rounded up
])
def test_the_option_rests_one_tick_aligned_limit_at_the_venue_recorded_as_such(live, wide, user, db, mode, side,
                                                                               price):
    uid, token = user("lia")
    before = len(wide.venue.orders())
    status, _, body = call(live, token, "POST", "/signals",
                           signal(signal_type=side, wide_spread=mode, limit_timeout_seconds=300),
                           {"Idempotency-Key": f"wide-{mode}-{side}"})

    assert status == 201, body
    sig = body["signal"]
    assert (sig["signal_type"], sig["downgraded"], sig["wide_spread"]) == (side, False, mode)
    assert body["cost_check"]["downgrade"] is True  # the check found it too wide; the option answered it
    execution = body["execution"]
    assert execution["status"] == "placed" and body["executed"] is True and execution["broker"] == "alpaca"
    assert execution["order_status"] in ("new", "accepted") and Decimal(execution["filled_qty"]) == 0
    assert execution["reason"].startswith(("limit at touch instead of WAIT", "limit at mid instead of WAIT"))
    limit = body["wide_spread_limit"]
    assert limit["mode"] == mode and Decimal(limit["limit_price"]) == Decimal(price)
    assert limit["timeout_seconds"] == 300 and limit["time_in_force"] == "day"

    [order] = new_orders(wide, before)  # one order, resting, at the passive price
    assert order.order_type.value == "limit" and order.limit_price == Decimal(price)
    assert order.side.value == side.lower() and order.qty == 5 and not order.state.is_final
    assert order.broker_order_id == execution["broker_order_id"]

    intent_id = execution["intent_id"]
    record = db.document(f"tenants/acme/order_intents/{intent_id}").get().to_dict()
    assert record["intent"]["order_type"] == "limit" and Decimal(record["intent"]["limit_price"]) == Decimal(price)
    assert record["requested_intent"]["order_type"] == "market"
    assert record["requested_intent"]["wide_spread"] == mode
    assert record["requested_intent"]["metadata"]["source"] == "signal"
    assert record["wide_spread_limit"]["mode"] == mode and record["wide_spread_limit"]["timeout_seconds"] == 300
    row = db.document(f"tenants/acme/ledger_trades/{intent_id}").get().to_dict()
    assert (row["status"], row["order_type"], Decimal(row["limit_price"])) == ("placed", "limit", Decimal(price))
    assert row["reason"].startswith(execution["reason"][:20])

    # counted as /execute counts its wide-spread limit: a placed decision, not a downgrade to WAIT
    _, admin = user("ada", role="tenant_admin")
    day = datetime.now(timezone.utc).date().isoformat()
    status, _, metrics = call(live, admin, "GET", f"/tenants/acme/metrics?from={day}&to={day}")
    assert status == 200, metrics
    summary = metrics["summary"]
    assert (summary["decisions"], summary["placed"], summary["downgraded"]) == (1, 1, 0), summary


def test_the_sweeper_cancels_the_signals_limit_at_its_deadline(live, live_env, wide, user, db):
    _, token = user("tim")
    before = len(wide.venue.orders())
    status, _, body = call(live, token, "POST", "/signals",
                           signal(wide_spread="limit_at_touch", limit_timeout_seconds=30))
    assert status == 201 and body["execution"]["status"] == "placed", body
    intent_id = body["execution"]["intent_id"]
    [order] = new_orders(wide, before)
    deadline = datetime.fromisoformat(body["wide_spread_limit"]["deadline"])

    from backend import bootstrap  # the sweeper as the scheduled function runs it, on the same emulator and venue

    clock = ManualClock(max(deadline, datetime.now(timezone.utc)) + timedelta(seconds=60))
    sweeper_engine = bootstrap.build_engine(live_env, store=FirestoreStore(db), clock=clock)
    report = Sweeper(sweeper_engine).sweep()

    assert report.working_updated >= 1 and not report.errors, report
    assert wide.venue.get_order(order.broker_order_id).state.value == "canceled"
    record = db.document(f"tenants/acme/order_intents/{intent_id}").get().to_dict()
    assert record["order_final"] is True and record["result"]["order_status"] == "canceled"
    assert record["wide_spread_limit"]["expired_at"]
    account = record["account"]["account_id"]
    exposure = db.document(f"tenants/acme/exposure/{account}__AAPL").get().to_dict()
    assert exposure["position_nanos"] == 0 and exposure["reserved_long_nanos"] == 0


# ------------------------------------------------------------------------------ bad option values


@pytest.mark.parametrize("option, field", [
    ({"wide_spread": "limit_at_bid", "limit_timeout_seconds": 60}, "wide_spread"),
    ({"wide_spread": "limit_at_touch"}, "limit_timeout_seconds"),
    ({"limit_timeout_seconds": 60}, "limit_timeout_seconds"),
    ({"wide_spread": "limit_at_mid", "limit_timeout_seconds": 0}, "limit_timeout_seconds"),
    ({"wide_spread": "limit_at_mid", "limit_timeout_seconds": 604801}, "limit_timeout_seconds"),
    ({"wide_spread": "limit_at_mid", "limit_timeout_seconds": "60"}, "limit_timeout_seconds"),
    ({"wide_spread": "limit_at_mid", "limit_timeout_seconds": 1.5}, "limit_timeout_seconds"),
    ({"wide_spread": None, "limit_timeout_seconds": 60}, "wide_spread"),
])
def test_a_bad_option_is_the_400_of_post_execute_and_nothing_happens(live, wide, user, db, option, field):
    _, token = user("bea")
    before = len(wide.venue.orders())
    status, _, body = call(live, token, "POST", "/signals", signal(**option) | option)
    assert status == 400 and body["error"]["field"] == field, body
    execute = {"strategy_id": "s1", "symbol": "AAPL", "side": "buy", "qty": "5", **option}
    status, _, same = call(live, token, "POST", "/execute", execute)
    assert status == 400
    assert (same["error"]["code"], same["error"]["field"], same["error"]["reason"]) == \
        (body["error"]["code"], body["error"]["field"], body["error"]["reason"])
    assert new_orders(wide, before) == [] and intent_docs(db) == []


# ------------------------------------------------------------------------------ the engine's guarantees


def test_under_dry_run_the_signal_sends_nothing_and_answers_the_limit_it_would_place(dry, wide, user, db):
    _, token = user("dory")
    before = len(wide.venue.orders())
    status, _, body = call(dry, token, "POST", "/signals", signal(wide_spread="limit_at_mid", limit_timeout_seconds=60))
    assert status == 201 and body["execution"]["status"] == "dry_run" and body["executed"] is False, body
    assert Decimal(body["wide_spread_limit"]["limit_price"]) == Decimal("189.99")
    assert new_orders(wide, before) == []
    row = db.document(f"tenants/acme/ledger_trades/{body['execution']['intent_id']}").get().to_dict()
    assert row["status"] == "dry_run" and row["order_type"] == "limit"


def test_a_retried_signal_places_one_limit(live, wide, user, db):
    _, token = user("rey")
    before = len(wide.venue.orders())
    body = signal(wide_spread="limit_at_touch", limit_timeout_seconds=120)
    first = call(live, token, "POST", "/signals", body, {"Idempotency-Key": "retry-1"})
    again = call(live, token, "POST", "/signals", body, {"Idempotency-Key": "retry-1"})
    assert first[0] == 201 and again[0] == 200 and again[1].get("Idempotent-Replayed") == "true", again
    assert again[2]["execution"]["replayed"] is True
    assert again[2]["execution"]["broker_order_id"] == first[2]["execution"]["broker_order_id"]
    assert again[2]["wide_spread_limit"] == first[2]["wide_spread_limit"]
    by_id = call(live, token, "POST", "/signals", {**body, "intent_id": "sig-7"})
    by_id_again = call(live, token, "POST", "/signals", {**body, "intent_id": "sig-7"})
    assert by_id[0] == 201 and by_id_again[0] == 200 and by_id_again[2]["execution"]["replayed"] is True
    # the same key with another option is another request: refused, nothing sent
    other = call(live, token, "POST", "/signals", {**body, "wide_spread": "limit_at_mid"},
                 {"Idempotency-Key": "retry-1"})
    assert other[0] == 409, other
    assert len(new_orders(wide, before)) == 2  # one per id
    assert all(o.order_type.value == "limit" for o in new_orders(wide, before))


def test_another_users_account_is_refused_before_anything_is_sent(live, wide, user, db):
    _, alice = user("alice")
    _, bob = user("bob")
    body = signal(wide_spread="limit_at_touch", limit_timeout_seconds=60, broker_account_id="alice-main")
    assert call(live, alice, "POST", "/signals", body)[0] == 201  # alice's first named account is hers
    before = len(wide.venue.orders())
    status, _, refused = call(live, bob, "POST", "/signals", body)
    assert status == 403 and refused["error"]["code"] == "ACCOUNT_NOT_OWNED", refused
    assert new_orders(wide, before) == []


def test_the_kill_switch_refuses_the_limit(live, wide, user, db):
    _, token = user("kim")
    db.document("tenants/acme/config/risk").set({"kill_switch": True})
    before = len(wide.venue.orders())
    status, _, body = call(live, token, "POST", "/signals", signal(wide_spread="limit_at_touch",
                                                                   limit_timeout_seconds=60))
    assert status == 201 and body["execution"]["status"] == "rejected", body
    assert body["execution"]["rejection"]["code"] == "KILL_SWITCH" and body["executed"] is False
    assert body["wide_spread_limit"] is None and new_orders(wide, before) == []


def test_the_position_limit_refuses_the_limit(live, wide, user, db):
    _, token = user("lim")
    before = len(wide.venue.orders())
    status, _, body = call(live, token, "POST", "/signals", signal(qty="500", wide_spread="limit_at_touch",
                                                                   limit_timeout_seconds=60))
    assert status == 201 and body["execution"]["status"] == "rejected", body
    assert body["execution"]["rejection"]["code"] == "POSITION_LIMIT"
    assert body["wide_spread_limit"] is None and new_orders(wide, before) == []
