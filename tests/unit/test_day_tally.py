"""The day's tally rules (issue 17, ``backend.execution.store_rules``): pure, no store."""
from __future__ import annotations

from backend.execution.store_rules import (TALLY_SHARDS, account_tally_path, counts_near_limit, tally_counts,
                                           tally_ops, tally_path, tally_paths)
from backend.execution.unit_of_work import Increment

DAY = "2026-03-02"


def _docs(values: dict[str, object]) -> dict[str, tuple[object, None]]:
    return {p: (doc, None) for p, doc in values.items()}


def test_the_tally_sums_its_shards_and_reads_the_accounts_document():
    docs = _docs({tally_path("acme", DAY, 0): {"taken": 3}, tally_path("acme", DAY, 5): {"taken": 4},
                  account_tally_path("acme", DAY, "a1"): {"taken": 2}})

    assert tally_counts(docs, "acme", DAY, "a1") == (7, 2)
    assert tally_counts(docs, "acme", DAY, None) == (7, None)
    assert tally_counts({}, "acme", DAY, "a2") == (0, 0)


def test_values_that_are_not_counts_count_nothing_and_a_negative_sum_is_zero():
    docs = _docs({tally_path("acme", DAY, 0): {"taken": "9"}, tally_path("acme", DAY, 1): {"taken": True},
                  tally_path("acme", DAY, 2): {"taken": 2.5}, tally_path("acme", DAY, 3): {"taken": -4},
                  account_tally_path("acme", DAY, "a1"): {"taken": -1}})

    assert tally_counts(docs, "acme", DAY, "a1") == (0, 0)


def test_the_ops_move_one_shard_and_the_accounts_document_by_the_same_delta():
    ops = tally_ops("acme", DAY, "intent-1", "a1", 2)

    assert len(ops) == 2 and all(isinstance(op, Increment) for op in ops)
    assert ops[0].path in tally_paths("acme", DAY) and ops[0].fields == {"taken": 2}
    assert ops[1].path == account_tally_path("acme", DAY, "a1") and ops[1].fields == {"taken": 2}
    assert tally_ops("acme", DAY, "intent-1", None, -1)[0].path == ops[0].path  # same key, same shard
    assert tally_ops("acme", DAY, "intent-1", "a1", 0) == []
    assert len({tally_ops("acme", DAY, f"i{n}", None, 1)[0].path for n in range(200)}) == TALLY_SHARDS


def test_only_a_count_at_a_limit_is_near_it():
    assert not counts_near_limit(4, 5, None, None)
    assert counts_near_limit(5, 5, None, None)
    assert not counts_near_limit(0, 5, 1, 2)
    assert counts_near_limit(0, 5, 2, 2)
    assert counts_near_limit(0, 5, None, 2)  # an account limit with no count: count it
