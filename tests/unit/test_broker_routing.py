"""Broker routing per asset class: built from configuration, strict at build time, coded
``NO_VENUE_FOR_ASSET_CLASS`` at run time."""
from __future__ import annotations

import pytest

from backend.adapters.alpaca_broker import AlpacaBroker
from backend.adapters.routing import DEFAULT_ROUTES, BrokerRouter, RoutingConfigError
from backend.domain.assets import AssetClass
from backend.domain.errors import RejectCode
from backend.ports.broker import BrokerError, BrokerErrorCode
from tests.support.stub_broker import StubBroker

A = AssetClass


@pytest.fixture
def brokers():
    return {"alpaca": AlpacaBroker(env={}), "paper": StubBroker(name="paper")}


def test_the_default_table_sends_fx_and_commodities_to_paper_and_the_rest_to_alpaca(brokers):
    router = BrokerRouter.from_config(DEFAULT_ROUTES, brokers)

    assert router.describe() == {"EQUITY": "alpaca", "CRYPTO": "alpaca", "OPTIONS": "alpaca",
                                 "FOREX": "paper", "COMMODITY": "paper"}
    assert router.broker_for(A.FOREX) is brokers["paper"]
    assert router.broker_for("crypto") is brokers["alpaca"]


def test_an_unrouted_asset_class_is_a_coded_no_venue_error(brokers):
    router = BrokerRouter.from_config({"EQUITY": "alpaca"}, brokers)

    with pytest.raises(BrokerError) as info:
        router.broker_for(A.FOREX)

    assert info.value.code is BrokerErrorCode.UNSUPPORTED
    assert info.value.message == "NO_VENUE_FOR_ASSET_CLASS: FOREX"
    assert info.value.to_rejection().code is RejectCode.NO_VENUE_FOR_ASSET_CLASS


def test_rejection_for_returns_the_decision_as_a_value(brokers):
    router = BrokerRouter.from_config({"EQUITY": "alpaca", "FX": None}, brokers)

    rejection = router.rejection_for("FX")

    assert rejection is not None and str(rejection) == "NO_VENUE_FOR_ASSET_CLASS: FOREX"
    assert router.rejection_for(A.EQUITY) is None
    assert not router.supports(A.FOREX) and router.supports(A.EQUITY)


def test_routes_come_from_a_json_env_var(brokers):
    env = {"EXEC_BROKER_ROUTES": '{"equity": "paper", "FX": "paper"}'}

    router = BrokerRouter.from_env(brokers, env=env)

    assert router.describe() == {"EQUITY": "paper", "FOREX": "paper"}


def test_an_unset_env_var_uses_the_default_table(brokers):
    assert BrokerRouter.from_env(brokers, env={}).describe() == dict(DEFAULT_ROUTES)


@pytest.mark.parametrize("config, problem", [
    ({"FOREX": "alpaca"}, "does not support FOREX"),
    ({"COMMODITY": "alpaca"}, "does not support COMMODITY"),
    ({"EQUITY": "ibkr"}, "no such broker"),
    ({"BONDS": "paper"}, "unknown asset class"),
    ({"FX": "paper", "FOREX": "paper"}, "routed twice"),
    ({"FX": None, "forex": "paper"}, "routed twice"),
    ({"EQUITY": ""}, "non-empty string or null"),
    ({"EQUITY": 3}, "non-empty string or null"),
    ('{"EQUITY": "alpaca"', "not valid JSON"),
    ('["alpaca"]', "must be a JSON object"),
])
def test_a_bad_route_table_fails_loudly_at_build_time(brokers, config, problem):
    with pytest.raises(RoutingConfigError) as info:
        BrokerRouter.from_config(config, brokers)

    assert problem in str(info.value)


def test_the_constructor_checks_support_too():
    with pytest.raises(RoutingConfigError):
        BrokerRouter({A.FOREX: AlpacaBroker(env={})})
    with pytest.raises(RoutingConfigError):
        BrokerRouter({A.EQUITY: object()})  # type: ignore[dict-item]


def test_a_paper_broker_limited_to_some_classes_is_checked_as_well():
    paper = StubBroker(name="paper", supported=frozenset({A.FOREX}))

    with pytest.raises(RoutingConfigError) as info:
        BrokerRouter.from_config({"COMMODITY": "paper"}, {"paper": paper})

    assert "'paper'" in str(info.value)


def test_the_route_table_is_read_only(brokers):
    router = BrokerRouter.from_config(DEFAULT_ROUTES, brokers)

    with pytest.raises(TypeError):
        router.routes[A.FOREX] = brokers["alpaca"]  # type: ignore[index]
