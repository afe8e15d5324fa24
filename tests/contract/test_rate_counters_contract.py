"""The rate limiter's shared counters (``backend.risk.rate_limit.RateCounters``) behave alike in
memory and on the Firestore emulator: per scope, per window, summed over the shards asked for."""
from __future__ import annotations

import pytest

from backend.adapters.rate_counters import FirestoreRateCounters, MemoryRateCounters
from backend.risk.rate_limit import Scope

ALICE = Scope("u", "acme", "alice")
BOB = Scope("u", "acme", "bob")
TENANT = Scope("t", "acme")
OTHER_TENANT = Scope("t", "globex")


@pytest.fixture(params=["memory", "firestore"])
def counters(request: pytest.FixtureRequest):
    if request.param == "memory":
        return MemoryRateCounters()
    request.node.add_marker(pytest.mark.emulator)
    return FirestoreRateCounters(request.getfixturevalue("db"))


def test_a_quiet_window_counts_zero(counters):
    assert counters.counts([ALICE, TENANT], 100, {ALICE: 2, TENANT: 4}) == {ALICE: 0, TENANT: 0}


def test_increments_are_summed_over_the_shards_of_each_scope_and_window(counters):
    counters.increment([(ALICE, 0), (TENANT, 3)], 100, 1e9)
    counters.increment([(ALICE, 1), (TENANT, 3)], 100, 1e9)
    counters.increment([(BOB, 0), (OTHER_TENANT, 0)], 100, 1e9)
    counters.increment([(ALICE, 0)], 101, 1e9)

    assert counters.counts([ALICE, BOB, TENANT, OTHER_TENANT], 100, {ALICE: 2, BOB: 1, TENANT: 4, OTHER_TENANT: 1}) == {
        ALICE: 2, BOB: 1, TENANT: 2, OTHER_TENANT: 1}
    assert counters.counts([ALICE], 101, {ALICE: 2}) == {ALICE: 1}


def test_only_the_shards_asked_for_are_counted(counters):
    counters.increment([(ALICE, 0), (ALICE, 1)], 100, 1e9)

    assert counters.counts([ALICE], 100, {ALICE: 1}) == {ALICE: 1}
