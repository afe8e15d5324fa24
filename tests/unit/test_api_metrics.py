"""GET /tenants/{tenant_id}/metrics: the execution-quality summary from the sharded day counters
(never the ledger), per strategy, for a tenant admin of that tenant."""
from types import SimpleNamespace

import pytest

from backend.api.app import ApiApp
from backend.api.http import ApiRequest
from backend.api.models import MetricsResponse
from backend.execution.metrics import summarize
from tests.support.api_stack import execute_body, make_stack

METRICS = "/tenants/acme/metrics"
JANUARY = {"from": "2026-01-01", "to": "2026-01-31"}


@pytest.fixture
def stack(quiet_logs):
    stack = make_stack()
    stack.verifier.add("tok-globex-admin", uid="gus", tenant_id="globex", role="tenant_admin")
    return stack


def run(stack, token="tok-alice", **body):
    response = stack.post("/execute", execute_body(**body), token=token)
    assert response.status == 201, response.json()
    return response.json()["status"]


@pytest.fixture
def session(stack):
    """Day 1 (01-05): s1 placed AAPL, s1 downgraded WIDE, s2 rejected (no quote), s2 placed EUR/USD.
    Day 2 (01-06): s1 placed AAPL. Another tenant: one placed."""
    statuses = [run(stack, intent_id="a1", strategy_id="s1", symbol="AAPL"),
                run(stack, intent_id="a2", strategy_id="s1", symbol="WIDE"),
                run(stack, token="tok-bob", intent_id="b1", strategy_id="s2", symbol="NOQUOTE"),
                run(stack, token="tok-bob", intent_id="b2", strategy_id="s2", symbol="EUR/USD", asset_class="FOREX",
                    qty="1000")]
    stack.clock.advance(86400)
    statuses.append(run(stack, intent_id="a3", strategy_id="s1", symbol="AAPL"))
    run(stack, token="tok-zed", intent_id="z1", strategy_id="s1", symbol="AAPL")
    assert statuses == ["placed", "downgraded", "rejected", "placed", "placed"]


def get(stack, token="tok-admin", **query):
    return stack.get(METRICS, token=token, query=query)


def test_a_mixed_session_is_summarized_with_a_breakdown_per_strategy(stack, session):
    response = get(stack, **JANUARY)
    body = response.json()

    assert response.status == 200
    MetricsResponse.model_validate(body)
    summary = body["summary"]
    assert (summary["decisions"], summary["placed"], summary["downgraded"], summary["rejected"]) == (5, 3, 1, 1)
    assert summary["downgrade_rate"] == "0.2" and summary["rejection_rate"] == "0.2"
    assert summary["asset_class_distribution"] == {"EQUITY": {"decisions": 4, "placed": 2},
                                                   "FOREX": {"decisions": 1, "placed": 1}}
    assert summary["tca"]["fills"] == 3 and summary["cost_savings"] != "0"
    assert set(body["by_strategy"]) == {"s1", "s2"}
    s1, s2 = body["by_strategy"]["s1"], body["by_strategy"]["s2"]
    assert (s1["decisions"], s1["placed"], s1["downgraded"], s1["rejected"]) == (3, 2, 1, 0)
    assert (s2["decisions"], s2["placed"], s2["downgraded"], s2["rejected"]) == (2, 1, 0, 1)
    assert s2["rejection_rate"] == "0.5" and s1["downgrade_rate"] == "0.3333333333"
    assert body["tenant_id"] == "acme" and body["from"] == "2026-01-01" and body["strategy_id"] is None


def test_the_body_is_metrics_summarize_of_the_shards_of_the_period(stack, session):
    docs = stack.store.read_metrics("acme", "2026-01-01", "2026-01-31")

    body = get(stack, **JANUARY).json()

    assert body["summary"] == summarize(docs) and body["by_strategy"]["s2"] == summarize(docs, "s2")
    assert body["shard_documents"] == len(docs)


def test_each_asset_class_has_its_own_slippage_and_cost_savings(stack, session):
    docs = stack.store.read_metrics("acme", "2026-01-01", "2026-01-31")

    body = get(stack, **JANUARY).json()

    by_class = body["by_asset_class"]
    assert list(by_class) == ["EQUITY", "FOREX"]  # the AssetClass order, only classes that traded
    equity, forex = by_class["EQUITY"], by_class["FOREX"]
    assert (equity["decisions"], equity["placed"], equity["downgraded"], equity["rejected"]) == (4, 2, 1, 1)
    assert (forex["decisions"], forex["placed"], forex["downgraded"]) == (1, 1, 0)
    assert equity["cost_savings"] == body["summary"]["cost_savings"] != "0" and forex["cost_savings"] == "0"
    assert (equity["tca"]["fills"], forex["tca"]["fills"]) == (2, 1)
    for klass in (equity, forex):
        assert klass["avg_estimated_slippage"] is not None and klass["tca"]["avg_actual_slippage"] is not None
    assert forex["tca"]["avg_estimated_slippage_of_filled"] != equity["tca"]["avg_estimated_slippage_of_filled"]
    assert forex == summarize(docs, asset_class="FOREX")


def test_one_strategy_only(stack, session):
    body = get(stack, strategy_id="s2", **JANUARY).json()
    assert body["strategy_id"] == "s2" and body["by_strategy"] is None and body["by_asset_class"] is None
    assert (body["summary"]["decisions"], body["summary"]["rejected"]) == (2, 1)


def test_an_unknown_strategy_is_an_empty_summary(stack, session):
    summary = get(stack, strategy_id="nope", **JANUARY).json()["summary"]
    assert summary["decisions"] == 0 and summary["downgrade_rate"] is None


def test_the_period_selects_trade_days(stack, session):
    day2 = get(stack, **{"from": "2026-01-06", "to": "2026-01-06"}).json()
    before = get(stack, **{"from": "2025-12-01", "to": "2026-01-04"}).json()
    assert day2["summary"]["decisions"] == 1 and set(day2["by_strategy"]) == {"s1"}
    assert before["summary"]["decisions"] == 0 and before["by_strategy"] == {} and before["shard_documents"] == 0
    assert before["by_asset_class"] == {} and set(day2["by_asset_class"]) == {"EQUITY"}


def test_other_tenants_counters_are_separate(stack, session):
    body = stack.get("/tenants/globex/metrics", token="tok-globex-admin", query=JANUARY).json()
    assert body["summary"]["decisions"] == 1 and set(body["by_strategy"]) == {"s1"}


def test_only_the_shards_are_read_never_the_ledger(stack, session):
    calls = []

    class Recording:
        def __getattr__(self, name):
            calls.append(name)
            return getattr(stack.store, name)

    app = ApiApp.with_instances(engine=SimpleNamespace(store=Recording(), clock=stack.clock), verifier=stack.verifier)
    response = app.handle(ApiRequest("GET", METRICS, {"Authorization": "Bearer tok-admin"}, JANUARY))
    # get_all: the caller's member document (a suspended admin is refused, issue 13); then the shards only
    assert response.status == 200 and calls == ["get_all", "read_metrics"]


@pytest.mark.parametrize("token, path", [("tok-alice", METRICS), ("tok-admin", "/tenants/globex/metrics"),
                                         ("tok-globex-admin", METRICS)])
def test_only_an_admin_of_that_tenant(stack, token, path):
    response = stack.get(path, token=token, query=JANUARY)
    assert response.status == 403 and response.json()["error"]["code"] == "FORBIDDEN"


def test_a_token_is_required(stack):
    assert stack.get(METRICS, token=None, query=JANUARY).status == 401


@pytest.mark.parametrize("query, field", [
    ({"to": "2026-01-31"}, "from"), ({"from": "2026-01-01"}, "to"),
    ({"from": "2026-01-32", "to": "2026-02-01"}, "from"),
    ({"from": "01/01/2026", "to": "2026-01-31"}, "from"), ({"from": "2026-02-01", "to": "2026-01-31"}, "to"),
    ({"from": "2025-01-01", "to": "2026-01-02"}, "to"), ({**JANUARY, "strategy_id": "a b"}, "strategy_id"),
    ({**JANUARY, "uid": "alice"}, "uid"), ({"from": ["2026-01-01", "2026-01-02"], "to": "2026-01-31"}, "from"),
])
def test_bad_parameters_are_400_naming_the_parameter(stack, query, field):
    response = get(stack, **query)
    assert response.status == 400 and response.json()["error"]["field"] == field, response.json()


def test_a_full_leap_year_is_allowed(stack):
    assert get(stack, **{"from": "2024-01-01", "to": "2024-12-31"}).status == 200
