"""Issue 10 items 7, 8 and 9 over real HTTP: revoked, disabled and demoted users; per-user and
per-tenant rate limits (HTTP and intent documents); a user who moves tenants.

Stack: ``functions-framework --target api`` (functions/main.py) as a child process, the official
Firestore emulator and firebase-tools' Auth emulator with real ID tokens. The server checks the
account state on every mutating call and admin read without caching
(``EXEC_AUTH_STATE_CACHE_SECONDS=0``; the cache itself is unit-tested) and limits each user to 5
and each tenant to 8 order requests a minute over 4 counter shards. Every test uses its own tenant,
so the limits of one test never touch another's.
"""
from __future__ import annotations

import math
import time
import uuid
from decimal import Decimal
from typing import Any

import pytest

from backend.tax.state import book_lots
from tests.support.api_stack import FunctionsServer, http_call

pytestmark = pytest.mark.slow

USER_LIMIT = 5
TENANT_LIMIT = 8
SHARDS = 4


@pytest.fixture(scope="module")
def server(firestore_emulator, auth_emulator):
    project = auth_emulator.project
    env = {"FIRESTORE_EMULATOR_HOST": firestore_emulator.host, "FIREBASE_AUTH_EMULATOR_HOST": auth_emulator.host,
           "GOOGLE_CLOUD_PROJECT": project, "GCLOUD_PROJECT": project, "EXEC_DRY_RUN": "0",
           "EXEC_ACCOUNTS": "auto",  # legacy labels: one account per user (issue 12)
           "GOOGLE_APPLICATION_CREDENTIALS": "", "EXEC_AUTH_STATE_CACHE_SECONDS": "0",
           "EXEC_RATE_LIMIT_USER_PER_MIN": str(USER_LIMIT), "EXEC_RATE_LIMIT_TENANT_PER_MIN": str(TENANT_LIMIT),
           "EXEC_RATE_LIMIT_SHARDS": str(SHARDS), "EXEC_MAX_DAILY_TRADES": "1000"}
    with FunctionsServer(env) as srv:
        yield srv


@pytest.fixture
def admin_auth(firebase_admin_app):
    from firebase_admin import auth as fb_auth

    class Admin:
        def disable(self, uid: str) -> None:
            fb_auth.update_user(uid, disabled=True, app=firebase_admin_app)

        def revoke(self, uid: str) -> None:
            fb_auth.revoke_refresh_tokens(uid, app=firebase_admin_app)

        def claims(self, uid: str, claims: dict[str, Any]) -> None:
            fb_auth.set_custom_user_claims(uid, claims, app=firebase_admin_app)

    return Admin()


@pytest.fixture
def tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def users(auth, firestore_project):
    """name → (uid, email, token) of real Auth-emulator users with tenant/role claims."""

    def user(name: str, tenant: str, role: str = "trader") -> tuple[str, str, str]:
        email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
        uid, _ = auth.sign_up(email, "secret-pw-1")
        auth.set_claims(uid, {"tenant_id": tenant, "role": role})
        return uid, email, auth.sign_in(email, "secret-pw-1")

    return user


def fresh_window(margin: float = 20.0) -> None:
    """The limiter counts per epoch minute: a burst that straddles a minute boundary is counted in
    two windows. Start a burst at least ``margin`` seconds before the next boundary."""
    into = time.time() % 60
    if into > 60 - margin:
        time.sleep(60 - into + 0.05)


def post(server, token: str, body: dict[str, Any] | None = None, path: str = "/execute"):
    body = body or {"strategy_id": "s1", "symbol": "SPY", "side": "buy", "qty": "1"}  # each user's default account
    return http_call("POST", server.url + path, body, {"Authorization": f"Bearer {token}"})


def get(server, token: str, path: str):
    return http_call("GET", server.url + path, None, {"Authorization": f"Bearer {token}"})


def docs(db, path: str) -> list[dict[str, Any]]:
    return [snap.to_dict() for snap in db.collection(path).stream()]


def tenant_writes(db, tenant: str) -> dict[str, int]:
    names = ("ledger_trades", "order_intents", "rate_counters", "metrics_daily", "exposure", "daily_slots")
    return {name: len(docs(db, f"tenants/{tenant}/{name}")) for name in names}


def revoked_logs(server) -> list[dict[str, Any]]:
    return [line for line in server.log_lines() if line.get("event") == "api.revoked_token_used"]


def pass_a_second() -> None:
    # revocation compares whole seconds: a token issued in the second of the revocation stays valid
    time.sleep(1.1)


# ------------------------------------------------------------------------------- item 7


def test_a_disabled_users_old_token_is_refused_and_writes_nothing(server, users, admin_auth, tenant, db):
    uid, _, token = users("dora", tenant)
    admin_auth.disable(uid)

    status, headers, body = post(server, token)

    assert status == 401 and body["error"]["code"] == "USER_DISABLED"
    assert "invalid_token" in headers["WWW-Authenticate"]
    assert sum(tenant_writes(db, tenant).values()) == 0
    assert list(db.collection(f"users/{uid}/portfolio/history/trades").stream()) == []
    assert any(line["uid"] == uid and line["code"] == "USER_DISABLED" and line["severity"] == "WARNING"
               for line in revoked_logs(server))


def test_revoked_refresh_tokens_refuse_the_old_token_for_orders_and_admin_reads(server, users, admin_auth, tenant,
                                                                                db):
    uid, email, token = users("rex", tenant)
    admin_uid, _, admin_token = users("ada", tenant, role="tenant_admin")
    assert post(server, token)[0] == 201
    assert get(server, admin_token, f"/tenants/{tenant}/ledger")[0] == 200
    pass_a_second()

    admin_auth.revoke(uid)
    admin_auth.revoke(admin_uid)
    refused_post = post(server, token)
    refused_signal = post(server, token, {"strategy_id": "m", "broker_account_id": "acct1", "signal_type": "BUY",
                                          "symbol": "SPY", "qty": "1", "confidence": 0.9}, path="/signals")
    refused_ledger = get(server, admin_token, f"/tenants/{tenant}/ledger")
    refused_metrics = get(server, admin_token, f"/tenants/{tenant}/metrics")

    for status, _, body in (refused_post, refused_signal, refused_ledger, refused_metrics):
        assert status == 401 and body["error"]["code"] == "TOKEN_REVOKED"
    assert len(docs(db, f"tenants/{tenant}/ledger_trades")) == 1  # only the trade before the revocation
    assert {line["uid"] for line in revoked_logs(server)} >= {uid, admin_uid}
    # a trader's own read is not a mutation: it stays valid until the token expires (≤ 1 h)
    assert get(server, token, "/portfolio/history")[0] == 200


def test_a_demoted_admins_old_token_cannot_read_the_ledger(server, users, admin_auth, tenant):
    uid, _, token = users("dee", tenant, role="tenant_admin")
    assert get(server, token, f"/tenants/{tenant}/ledger")[0] == 200
    pass_a_second()

    admin_auth.claims(uid, {"tenant_id": tenant, "role": "trader"})
    admin_auth.revoke(uid)
    status, _, body = get(server, token, f"/tenants/{tenant}/ledger")

    assert status == 401 and body["error"]["code"] == "TOKEN_REVOKED"


def test_a_demotion_without_revocation_is_seen_as_changed_claims(server, users, admin_auth, tenant):
    uid, _, token = users("dan", tenant, role="tenant_admin")
    assert get(server, token, f"/tenants/{tenant}/ledger")[0] == 200

    admin_auth.claims(uid, {"tenant_id": tenant, "role": "trader"})
    status, _, body = get(server, token, f"/tenants/{tenant}/ledger")

    assert status == 401 and body["error"]["code"] == "CLAIMS_CHANGED"


# ------------------------------------------------------------------------------- item 8


def test_a_users_burst_gets_429_with_retry_after_and_the_refused_requests_write_nothing(server, users, tenant, db):
    _, _, token = users("burst", tenant)
    fresh_window()

    replies = [post(server, token) for _ in range(USER_LIMIT + 4)]

    statuses = [status for status, _, _ in replies]
    assert statuses == [201] * USER_LIMIT + [429] * 4
    for status, headers, body in replies[USER_LIMIT:]:
        assert body["error"]["code"] == "RATE_LIMITED" and 1 <= int(headers["Retry-After"]) <= 60
    writes = tenant_writes(db, tenant)
    assert writes["ledger_trades"] == USER_LIMIT and writes["order_intents"] == USER_LIMIT
    counters = docs(db, f"tenants/{tenant}/rate_counters")
    assert sum(doc["n"] for doc in counters if doc["scope"] == "t") == USER_LIMIT  # only admitted ones count
    assert any(line.get("event") == "api.rate_limited" for line in server.log_lines())


def test_a_tenants_limit_spans_its_users_and_its_counters_are_spread_over_shards(server, users, tenant, db):
    tokens = [users(f"member{i}", tenant)[2] for i in range(3)]
    fresh_window()

    started = time.monotonic()
    statuses = [post(server, tokens[i % 3])[0] for i in range(TENANT_LIMIT + 3)]
    elapsed = time.monotonic() - started

    assert statuses.count(201) == TENANT_LIMIT and statuses.count(429) == 3
    assert statuses[:TENANT_LIMIT] == [201] * TENANT_LIMIT
    assert len(docs(db, f"tenants/{tenant}/ledger_trades")) == TENANT_LIMIT
    tenant_shards = [doc for doc in docs(db, f"tenants/{tenant}/rate_counters") if doc["scope"] == "t"]
    assert len(tenant_shards) == SHARDS
    per_doc = max(doc["n"] for doc in tenant_shards)
    assert per_doc == math.ceil(TENANT_LIMIT / SHARDS)  # round-robin: no shard takes more than its share
    assert per_doc / max(elapsed, 1.0) <= 2.0  # writes per second on any one counter document


def test_invalid_requests_write_nothing_not_even_a_counter_but_spend_the_instances_tokens(server, users, tenant,
                                                                                            db):
    _, _, token = users("sloppy", tenant)
    fresh_window()

    statuses = [post(server, token, {"symbol": "SPY"})[0] for _ in range(USER_LIMIT + 2)]

    assert statuses == [400] * USER_LIMIT + [429] * 2  # a junk flood is throttled too
    assert sum(tenant_writes(db, tenant).values()) == 0


def test_intent_documents_over_the_limit_are_refused_on_the_document_with_no_ledger_row(db, tenant):
    from backend.adapters.firestore_store import FirestoreStore
    from backend.adapters.rate_counters import FirestoreRateCounters
    from backend.domain.clock import ManualClock
    from backend.execution.engine import ExecutionEngine, RiskManager, SmartRouter
    from backend.risk.manager import RiskLimits
    from backend.risk.rate_limit import RateLimiter
    from backend.service.intake import handle_intent_document
    from backend.settings import ExecSettings
    from tests.support.stub_broker import StubBroker

    clock = ManualClock()
    engine = ExecutionEngine(broker=StubBroker(quotes={"AAPL": ("189.99", "190.01")}, now=clock.now),
                             router=SmartRouter(0.001), risk=RiskManager(RiskLimits(max_position_qty=Decimal("1000"))),
                             dry_run=False, store=FirestoreStore(db), clock=clock,
                             settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0"}))
    limiter = RateLimiter(user_per_min=3, tenant_per_min=100, counters=FirestoreRateCounters(db), shards=4)
    outcomes = []
    for i in range(5):
        doc = {"status": "new", "uid": "alice", "kind": "single",
               "intent": {"strategy_id": "s1", "broker_account_id": "acct1", "symbol": "AAPL", "side": "buy",
                          "qty": "1"}}
        db.document(f"tenants/{tenant}/order_intents/app-{i}").set(doc)
        outcomes.append(handle_intent_document(engine, tenant, f"app-{i}", doc, limiter=limiter))

    assert [o["status"] for o in outcomes] == ["placed"] * 3 + ["rejected"] * 2
    for i in (3, 4):
        stored = db.document(f"tenants/{tenant}/order_intents/app-{i}").get().to_dict()
        assert stored["status"] == "rejected" and stored["result"]["error"]["code"] == "RATE_LIMITED"
        assert stored["result"]["error"]["retry_after"] >= 1
    assert len(docs(db, f"tenants/{tenant}/ledger_trades")) == 3
    assert sum(d["n"] for d in docs(db, f"tenants/{tenant}/rate_counters") if d["scope"] == "u_alice") == 3


# ------------------------------------------------------------------------------- item 9


def test_a_user_who_moves_tenants_keeps_labelled_history_and_books_lots_per_tenant(server, users, auth, tenant, db):
    other = f"{tenant}b"
    uid, email, token_a = users("mover", tenant)
    assert post(server, token_a, {"strategy_id": "s1", "broker_account_id": "acct1", "symbol": "SPY", "side": "buy",
                                  "qty": "3"})[0] == 201
    auth.set_claims(uid, {"tenant_id": other, "role": "trader"})
    token_b = auth.sign_in(email, "secret-pw-1")

    status, _, sold = post(server, token_b, {"strategy_id": "s1", "broker_account_id": "acct1", "symbol": "SPY",
                                             "side": "sell", "qty": "2"})
    both = get(server, token_b, "/portfolio/history")[2]["items"]
    only_a = get(server, token_b, f"/portfolio/history?tenant_id={tenant}")[2]["items"]
    only_b = get(server, token_b, f"/portfolio/history?tenant_id={other}&broker_account_id=acct1")[2]["items"]
    no_account = get(server, token_b, "/portfolio/history?broker_account_id=acct2")[2]["items"]

    assert status == 201 and sold["status"] == "placed"
    assert sorted((row["tenant_id"], row["broker_account_id"], row["side"]) for row in both) == \
        [(tenant, "acct1", "buy"), (other, "acct1", "sell")]
    assert [row["tenant_id"] for row in only_a] == [tenant] and [row["tenant_id"] for row in only_b] == [other]
    assert no_account == []
    # the sale in the new tenant did not consume the lot bought in the old one: it opened a SHORT
    # lot in the new tenant's book (issue 19; it was a recorded shortfall before short lots)
    book = db.document(f"users/{uid}/tax_books/SPY").get().to_dict()
    assert [(lot["book"], lot["position"], Decimal(lot["qty"])) for lot in book_lots(book)] == [
        (f"{tenant}:acct1", "LONG", 3), (f"{other}:acct1", "SHORT", 2)]
    assert docs(db, f"users/{uid}/tax_disposals") == []
    # the token that still claims the old tenant may no longer place orders
    status, _, body = post(server, token_a)
    assert status == 401 and body["error"]["code"] == "CLAIMS_CHANGED"


def test_history_filters_are_checked_at_the_edge(server, users, tenant):
    _, _, token = users("filters", tenant)
    status, _, body = get(server, token, "/portfolio/history?tenant_id=__x__")
    assert status == 400 and body["error"]["field"] == "tenant_id"


def test_the_account_state_is_cached_per_uid_for_the_stated_window_only(users, admin_auth, tenant, auth):
    from backend.api.auth import AccountStateCache
    from backend.api.firebase_auth import FirebaseTokenVerifier
    from backend.api.http import ApiError

    clock = [0.0]
    verifier = FirebaseTokenVerifier(auth.project, cache=AccountStateCache(10, clock=lambda: clock[0]))
    uid, _, token = users("cached", tenant)
    assert verifier.verify(token, fresh=True).uid == uid  # reads and caches the account state
    admin_auth.disable(uid)

    clock[0] = 9.9
    seen_within_window = verifier.verify(token, fresh=True)
    clock[0] = 10.0
    with pytest.raises(ApiError) as refused:
        verifier.verify(token, fresh=True)

    assert seen_within_window.uid == uid  # the documented window: up to 10 s on a warm instance
    assert refused.value.status == 401 and refused.value.code == "USER_DISABLED"
    assert verifier.verify(token).uid == uid  # a plain trader read does not check the account
