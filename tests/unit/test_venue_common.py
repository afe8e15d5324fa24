"""The helpers every venue adapter shares (backend/adapters/venue_common.py), and that the adapters use
them rather than copies: the asset-class gate, the retry/time-budget rules, Retry-After, loopback."""
from __future__ import annotations

import logging
from datetime import datetime, timezone

import pytest

from backend.adapters import alpaca_broker, venue_common
from backend.adapters.alpaca_broker import AlpacaBroker
from backend.adapters.oanda.broker import OandaBroker
from backend.adapters.oanda.client import OandaConfig
from backend.adapters.paper_broker import PaperBroker
from backend.adapters.venue_common import (
    MAX_AMBIGUOUS_RESUBMITS,
    MAX_READ_RETRIES,
    backoff,
    is_loopback_url,
    parse_retry_after,
    rate_limit_wait,
    resubmit_wait,
    transient_wait,
)
from backend.domain import orders
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.ports.broker import BrokerError, BrokerErrorCode

LOG = logging.getLogger("test.venue_common")


def rate_limited(retry_after: float | None = None) -> BrokerError:
    return BrokerError(BrokerErrorCode.RATE_LIMITED, "slow down", retry_after=retry_after)


def test_backoff_doubles_from_half_a_second_and_stops_at_eight():
    assert [backoff(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_a_rate_limit_waits_retry_after_when_the_venue_sent_it_and_backoff_otherwise():
    clock = ManualClock()
    common = dict(deadline=30.0, clock=clock, max_retries=3, budget_seconds=30.0, op="get", venue="x", logger=LOG)

    assert rate_limit_wait(rate_limited(2.5), 0, **common) == 2.5
    assert rate_limit_wait(rate_limited(), 1, **common) == 1.0


def test_a_rate_limit_past_the_retry_count_or_the_deadline_raises_coded_with_the_wait():
    clock = ManualClock()
    common = dict(clock=clock, budget_seconds=30.0, op="submit_order", venue="x", logger=LOG)

    with pytest.raises(BrokerError) as used_up:
        rate_limit_wait(rate_limited(1.0), 3, deadline=30.0, max_retries=3, **common)
    with pytest.raises(BrokerError) as too_late:
        rate_limit_wait(rate_limited(5.0), 0, deadline=4.0, max_retries=3, **common)

    assert used_up.value.code is BrokerErrorCode.RATE_LIMITED and "after 3 retries" in used_up.value.message
    assert too_late.value.code is BrokerErrorCode.RATE_LIMITED and too_late.value.retry_after == 5.0
    assert "30s time budget" in too_late.value.message


def test_transient_reads_retry_twice_within_the_deadline_and_never_past_it():
    clock = ManualClock()
    error = BrokerError(BrokerErrorCode.UNAVAILABLE, "502")
    common = dict(clock=clock, op="get", venue="x", logger=LOG)

    waits = [transient_wait(error, n, deadline=30.0, **common) for n in range(MAX_READ_RETRIES + 1)]

    assert waits == [0.5, 1.0, None]
    assert transient_wait(error, 0, deadline=0.4, **common) is None


def test_an_unfound_ambiguous_submit_is_resubmitted_at_most_twice_within_the_deadline():
    clock = ManualClock()

    waits = [resubmit_wait(n, deadline=30.0, clock=clock) for n in range(MAX_AMBIGUOUS_RESUBMITS + 1)]

    assert waits == [0.5, 1.0, None]
    assert resubmit_wait(0, deadline=0.4, clock=clock) is None


def test_retry_after_reads_seconds_and_http_dates_and_refuses_garbage():
    now = datetime(2026, 1, 5, 14, 30, tzinfo=timezone.utc)

    assert parse_retry_after("2", now) == 2.0
    assert parse_retry_after("Mon, 05 Jan 2026 14:30:03 GMT", now) == 3.0
    assert parse_retry_after("-4", now) == 0.0
    assert [parse_retry_after(raw, now) for raw in (None, "soon", "nan", "inf")] == [None, None, None, None]


@pytest.mark.parametrize("url, loopback", [
    ("http://127.0.0.1:8080", True), ("http://localhost/v2", True), ("http://[::1]:9000", True),
    ("https://paper-api.alpaca.markets", False), ("", False), (None, False),
])
def test_only_local_server_urls_count_as_loopback(url, loopback):
    assert is_loopback_url(url) is loopback


@pytest.mark.parametrize("make_broker, klass, message", [
    (lambda: AlpacaBroker(env={}), AssetClass.FOREX, "NO_VENUE_FOR_ASSET_CLASS: FOREX"),
    (lambda: OandaBroker(OandaConfig(account_id="101-004-1-001", token="t")), AssetClass.EQUITY,
     "OANDA does not trade EQUITY"),
    (lambda: PaperBroker(supported=[AssetClass.EQUITY]), AssetClass.CRYPTO, "the paper broker is not set up for CRYPTO"),
])
def test_every_adapter_refuses_an_asset_class_it_does_not_trade_as_unsupported_in_its_own_words(
        make_broker, klass, message):
    broker = make_broker()

    with pytest.raises(BrokerError) as caught:
        broker.close_position("X", klass)

    assert caught.value.code is BrokerErrorCode.UNSUPPORTED and caught.value.message == message
    assert broker.supports(klass) is False and broker.supports(klass.value.lower()) is False


def test_alpaca_multileg_client_ids_follow_the_one_domain_length_rule(monkeypatch):
    broker = AlpacaBroker(env={})
    legs = [("AAPL260116C00150000", "buy", 1), ("AAPL260116C00160000", "sell", 1)]
    monkeypatch.setattr(orders, "CLIENT_ORDER_ID_MAX", 10)

    with pytest.raises(BrokerError) as caught:
        broker.submit_multileg_options("c" * 11, legs, 1)

    assert caught.value.code is BrokerErrorCode.INVALID
    assert caught.value.message == "client_order_id must be 1..10 characters"


def test_the_alpaca_adapter_uses_the_shared_helpers_not_copies():
    assert alpaca_broker.rate_limit_wait is venue_common.rate_limit_wait
    assert issubclass(AlpacaBroker, venue_common.AssetClassGate)
    assert issubclass(OandaBroker, venue_common.AssetClassGate)
    assert issubclass(PaperBroker, venue_common.AssetClassGate)
