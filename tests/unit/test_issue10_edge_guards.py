"""Issue 10 items 7, 8 and 12 at unit level: the account-state verdict and its cache window, the
rate limiter's two lines, the HTTP hook (FakeVerifier stack) and the deployed-emulator guard."""
from __future__ import annotations

import pytest

from backend.adapters.rate_counters import MemoryRateCounters
from backend.api.auth import AccountState, AccountStateCache, account_refusal, must_check_account
from backend.api.wiring import DeployedEmulatorError, refuse_emulators_when_deployed
from backend.risk.rate_limit import RateLimiter, Scope
from backend.settings import ApiSettings
from backend.domain.errors import InvalidInput
from tests.support.api_stack import execute_body, make_stack

CLAIMS = {"uid": "u1", "tenant_id": "acme", "role": "trader", "iat": 1_000}


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------------------- item 7


@pytest.mark.parametrize("state, code", [
    (AccountState(claims={"tenant_id": "acme", "role": "trader"}), None),
    (AccountState(exists=False), "USER_DISABLED"),
    (AccountState(disabled=True, claims={"tenant_id": "acme", "role": "trader"}), "USER_DISABLED"),
    (AccountState(tokens_valid_after_ms=1_000_001, claims={"tenant_id": "acme", "role": "trader"}), "TOKEN_REVOKED"),
    (AccountState(tokens_valid_after_ms=1_000_000, claims={"tenant_id": "acme", "role": "trader"}), None),
    (AccountState(claims={"tenant_id": "acme", "role": "tenant_admin"}), "CLAIMS_CHANGED"),
    (AccountState(claims={"tenant_id": "globex", "role": "trader"}), "CLAIMS_CHANGED"),
    (AccountState(claims={}), "CLAIMS_CHANGED"),
])
def test_the_account_state_decides_whether_a_verified_token_may_still_act(state, code):
    error = account_refusal(CLAIMS, state)
    assert (error.code if error else None) == code
    if error:
        assert error.status == 401


def test_mutations_and_admin_power_check_the_account_plain_trader_reads_do_not():
    assert must_check_account(True, CLAIMS)
    assert must_check_account(False, {**CLAIMS, "role": "tenant_admin"})
    assert not must_check_account(False, CLAIMS)


def test_the_account_state_cache_holds_a_state_for_its_window_only():
    clock = Clock()
    cache = AccountStateCache(10, clock=clock)
    cache.put("u1", AccountState())
    clock.now += 9.9
    assert cache.get("u1") == AccountState()
    clock.now += 0.1
    assert cache.get("u1") is None


def test_a_zero_window_never_caches():
    cache = AccountStateCache(0)
    cache.put("u1", AccountState())
    assert cache.get("u1") is None


def test_the_api_asks_for_the_account_check_on_posts_and_tenant_reads_only():
    stack = make_stack()
    stack.post("/execute", execute_body())
    stack.get("/portfolio/history")
    stack.get("/tenants/acme/ledger", token="tok-admin")
    assert stack.verifier.fresh_calls == [True, False, True]


def test_api_settings_bound_the_cache_window():
    assert ApiSettings.from_env({}).auth_state_cache_seconds == 10
    with pytest.raises(InvalidInput):
        ApiSettings.from_env({"EXEC_AUTH_STATE_CACHE_SECONDS": "3600"})


# ------------------------------------------------------------------------------- item 8


def limiter(user=3, tenant=100, counters=None, wall=None, mono=None, shards=4, refresh=1.0):
    return RateLimiter(user_per_min=user, tenant_per_min=tenant, counters=counters, shards=shards,
                       refresh_seconds=refresh, wall=wall or Clock(), monotonic=mono or Clock())


def test_the_local_bucket_refuses_past_the_limit_and_refills_at_limit_per_minute():
    mono = Clock()
    lim = limiter(user=3, mono=mono)
    decisions = [lim.admit("acme", "u1") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[-1].scope == "user" and decisions[-1].line == "local"
    assert decisions[-1].retry_after_seconds == 20  # one token every 60/3 s
    mono.now += 20
    assert lim.admit("acme", "u1").allowed
    assert lim.admit("acme", "u2").allowed  # another user has their own bucket


def test_the_tenant_limit_spans_users():
    lim = limiter(user=10, tenant=4)
    allowed = [lim.admit("acme", f"u{i}").allowed for i in range(6)]
    assert allowed == [True] * 4 + [False] * 2
    assert lim.admit("globex", "u1").allowed


def test_the_shared_counters_refuse_what_other_instances_admitted_and_retry_at_the_window_end():
    counters = MemoryRateCounters()
    wall = Clock(600.0 * 1000 + 45)  # 45 s into a window
    other = limiter(user=3, counters=counters, wall=wall)
    for _ in range(3):
        assert other.admit("acme", "u1").allowed
        other.record("acme", "u1")
    this = limiter(user=3, counters=counters, wall=wall)  # a fresh instance: a full local bucket

    decision = this.admit("acme", "u1")

    assert not decision.allowed and decision.line == "shared" and decision.retry_after_seconds == 15
    wall.now += 15  # the next window
    assert this.admit("acme", "u1").allowed


def test_only_recorded_requests_are_written_and_they_spread_round_robin_over_the_shards():
    counters = MemoryRateCounters()
    lim = limiter(user=100, tenant=100, counters=counters, shards=4)
    for _ in range(8):
        assert lim.admit("acme", "u1").allowed
    assert counters.writes == 0  # admitting writes nothing
    for _ in range(8):
        lim.record("acme", "u1")
    tenant_docs = {k: v for k, v in counters.docs.items() if k[1].startswith("t-")}
    assert counters.writes == 8 and sorted(tenant_docs.values()) == [2, 2, 2, 2]
    assert lim.shard_count(Scope("u", "acme", "u1")) == 2  # ceil(100/60): enough for ~1 write/s/doc


def test_a_counter_outage_fails_open_on_the_shared_line_and_is_reported():
    class Broken:
        def counts(self, *a):
            raise OSError("firestore down")

        def increment(self, *a):
            raise OSError("firestore down")

    errors = []
    lim = RateLimiter(user_per_min=2, tenant_per_min=10, counters=Broken(), on_error=errors.append,
                      wall=Clock(), monotonic=Clock())
    assert lim.admit("acme", "u1").allowed
    lim.record("acme", "u1")
    assert len(errors) == 2
    assert lim.admit("acme", "u1").allowed and not lim.admit("acme", "u1").allowed  # the bucket still holds


def test_http_burst_is_429_with_retry_after_and_nothing_is_written_for_refused_requests():
    stack = make_stack()
    counters = MemoryRateCounters()
    lim = limiter(user=2, counters=counters)
    stack.app._rate_limiter_factory = lambda: lim

    replies = [stack.post("/execute", execute_body(qty="1")) for _ in range(4)]

    assert [r.status for r in replies] == [201, 201, 429, 429]
    assert replies[2].json()["error"]["code"] == "RATE_LIMITED" and replies[2].headers["Retry-After"] == "30"
    assert len([k for k in stack.store.docs if "/ledger_trades/" in k]) == 2
    assert counters.writes == 2


def test_intent_documents_over_the_limit_get_a_coded_refusal_and_no_ledger_row():
    from backend.service.intake import handle_intent_document

    stack = make_stack()
    lim = limiter(user=2)
    outcomes = []
    for i in range(3):
        doc = {"status": "new", "uid": "alice", "kind": "single",
               "intent": {"strategy_id": "s1", "broker_account_id": "acct1", "symbol": "AAPL", "side": "buy",
                          "qty": "1"}}
        stack.store.docs[f"tenants/acme/order_intents/app-{i}"] = dict(doc)
        outcomes.append(handle_intent_document(stack.engine, "acme", f"app-{i}", doc, limiter=lim))

    assert [o["status"] for o in outcomes] == ["placed", "placed", "rejected"]
    assert outcomes[2]["error"]["code"] == "RATE_LIMITED" and outcomes[2]["error"]["retry_after"] == 30
    stored = stack.store.docs["tenants/acme/order_intents/app-2"]
    assert stored["status"] == "rejected" and stored["result"]["error"]["code"] == "RATE_LIMITED"
    assert "tenants/acme/ledger_trades/app-2" not in stack.store.docs


# ------------------------------------------------------------------------------- item 12

EMU = {"FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099"}


@pytest.mark.parametrize("env, refused", [
    ({}, False),
    ({**EMU}, False),  # local: tests, scripts
    ({"K_SERVICE": "api", "GOOGLE_CLOUD_PROJECT": "prod-1"}, False),  # deployed, no emulator
    ({**EMU, "K_SERVICE": "api", "GOOGLE_CLOUD_PROJECT": "prod-1"}, True),
    ({"FIRESTORE_EMULATOR_HOST": "h:1", "FUNCTION_TARGET": "api", "GCLOUD_PROJECT": "prod-1"}, True),
    ({"PUBSUB_EMULATOR_HOST": "h:1", "K_REVISION": "api-1", "GCP_PROJECT": "prod-1"}, True),
    ({**EMU, "K_SERVICE": "api"}, True),  # no project id: production assumed
    ({**EMU, "K_SERVICE": "api", "GOOGLE_CLOUD_PROJECT": "demo-exec"}, False),  # the emulator suite
    ({**EMU, "K_SERVICE": "api", "GOOGLE_CLOUD_PROJECT": "prod-1", "FUNCTIONS_EMULATOR": "true"}, True),
    ({"FIREBASE_AUTH_EMULATOR_HOST": " ", "K_SERVICE": "api", "GOOGLE_CLOUD_PROJECT": "prod-1"}, False),
])
def test_the_startup_guard_refuses_emulator_hosts_in_a_deployed_non_demo_project(env, refused):
    if refused:
        with pytest.raises(DeployedEmulatorError, match="refusing to start"):
            refuse_emulators_when_deployed(env)
    else:
        refuse_emulators_when_deployed(env)


def test_functions_main_refuses_to_import_in_a_deployed_environment_with_an_emulator_host():
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, **EMU, "K_SERVICE": "api", "GOOGLE_CLOUD_PROJECT": "prod-1", "GCLOUD_PROJECT": "prod-1"}
    result = subprocess.run([sys.executable, "-c", "import functions.main"], cwd=root, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "DeployedEmulatorError" in result.stderr
