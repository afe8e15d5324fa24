"""The rate limiter's shared line, deferred to the engine's batched read (issue 17): admitted on the
local line, the counts' documents named for the caller's read, the decision taken on what it read."""
from __future__ import annotations

from backend.risk.rate_limit import RateLimiter, Scope


class _Counters:
    """Counters that can name their documents; ``counts`` must not be called on the deferred path."""

    def __init__(self) -> None:
        self.count_calls = 0

    def counts(self, scopes, window, shards):
        self.count_calls += 1
        return {scope: 0 for scope in scopes}

    def increment(self, items, window, expires_at):
        pass

    def count_paths(self, scopes, window, shards):
        return {f"tenants/{s.tenant_id}/rate_counters/{s.key}-{window}-{n}": s for s in scopes for n in range(shards[s])}


def _limiter(counters, **kw):
    clock = {"t": 1_000_000.0}
    return RateLimiter(user_per_min=3, tenant_per_min=100, counters=counters, shards=2, refresh_seconds=1.0,
                       wall=lambda: clock["t"], monotonic=lambda: clock["t"], **kw), clock


def test_due_counts_are_deferred_with_their_paths_and_not_read_here():
    counters = _Counters()
    limiter, _ = _limiter(counters)

    decision = limiter.admit("acme", "alice", defer_shared=True)

    assert decision.allowed and decision.deferred is not None and counters.count_calls == 0
    assert sorted(decision.deferred.paths) == sorted(
        [f"tenants/acme/rate_counters/u_alice-{int(1_000_000 // 60)}-0"]
        + [f"tenants/acme/rate_counters/t-{int(1_000_000 // 60)}-{n}" for n in range(2)])


def test_counts_at_the_limit_refuse_and_give_the_local_token_back():
    limiter, _ = _limiter(_Counters())
    decision = limiter.admit("acme", "alice", defer_shared=True)
    window = int(1_000_000 // 60)
    docs = {f"tenants/acme/rate_counters/u_alice-{window}-0": ({"n": 3}, None)}
    tokens_before = limiter._buckets[Scope("u", "acme", "alice")].tokens  # noqa: SLF001

    refused = decision.deferred.decide(docs)

    assert not refused.allowed and refused.scope == "user" and refused.line == "shared"
    assert limiter._buckets[Scope("u", "acme", "alice")].tokens == tokens_before + 1  # noqa: SLF001
    # the view is recorded: the next request is refused at once, without another read
    assert not limiter.admit("acme", "alice", defer_shared=True).allowed


def test_counts_below_the_limit_admit_and_the_fresh_view_needs_no_read():
    counters = _Counters()
    limiter, _ = _limiter(counters)
    decision = limiter.admit("acme", "alice", defer_shared=True)

    assert decision.deferred.decide({}).allowed  # no shard documents yet: nothing counted
    again = limiter.admit("acme", "alice", defer_shared=True)
    assert again.allowed and again.deferred is None and counters.count_calls == 0


def test_without_defer_the_counts_are_read_as_before():
    counters = _Counters()
    limiter, _ = _limiter(counters)

    decision = limiter.admit("acme", "alice")

    assert decision.allowed and decision.deferred is None and counters.count_calls == 1
