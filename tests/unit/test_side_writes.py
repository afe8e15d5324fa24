"""The rate limiter's counters ride the engine's first commit (``unit_of_work.SideWrites``, issue 17)
but never stand between a trade and its commit: a commit that runs out of contention retries with
them aboard is committed once more without them, logged as the limiter's own failure (fail open)."""
from __future__ import annotations

from backend.execution.store_writes import commit_with_side_writes
from backend.execution.unit_of_work import Create, Inc, Set
from backend.ports.store import StoreContention


class _Uow:
    def __init__(self, contended_paths: tuple[str, ...] = ()):
        self.commits: list[list[str]] = []
        self.contended = contended_paths

    def commit(self, commit):
        paths = [op.path for op in commit.ops]
        if any(p in self.contended for p in paths):
            raise StoreContention("commit aborted by contention")
        self.commits.append(paths)
        return ["token"]


TRADE = [Create("tenants/t/order_intents/i1", {"status": "reserved"})]
COUNTER = (Set("tenants/t/rate_counters/u_a-1-0", {"n": Inc(1)}, merge=True),)


def test_side_writes_ride_the_same_commit():
    uow = _Uow()
    assert commit_with_side_writes(uow, list(TRADE), COUNTER, "i1") == ["token"]
    assert uow.commits == [["tenants/t/order_intents/i1", "tenants/t/rate_counters/u_a-1-0"]]


def test_a_contended_counter_never_blocks_the_trade(capsys):
    uow = _Uow(contended_paths=("tenants/t/rate_counters/u_a-1-0",))
    assert commit_with_side_writes(uow, list(TRADE), COUNTER, "i1") == ["token"]
    assert uow.commits == [["tenants/t/order_intents/i1"]]
    assert "rate_limit.counters_unavailable" in capsys.readouterr().out


def test_without_side_writes_contention_is_the_callers():
    uow = _Uow(contended_paths=("tenants/t/order_intents/i1",))
    try:
        commit_with_side_writes(uow, list(TRADE), (), "i1")
    except StoreContention:
        pass
    else:
        raise AssertionError("contention on the trade's own documents must reach the caller")
