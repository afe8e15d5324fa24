"""bench/fscount.round_trips (issue 17): RPCs in flight together count as one sequential round trip;
a wave with a commit is a commit round trip. Synthetic events: correctness only, no timing."""
from bench.fscount import round_trips


def ev(rpc: str, t0: float, t1: float, op: str = "x", **extra):
    base = {"batch_get_documents": {"requested": 2}, "commit": {}, "run_aggregation_query": {},
            "begin_transaction": {}}[rpc]
    return {"rpc": rpc, "t0": t0, "t1": t1, "op": op, **base, **extra}


def test_overlapping_reads_are_one_round_trip_and_commits_are_counted_apart():
    events = [ev("batch_get_documents", 0.0, 1.0), ev("run_aggregation_query", 0.1, 1.2),  # concurrent
              ev("commit", 2.0, 3.0), ev("batch_get_documents", 3.5, 4.0), ev("commit", 5.0, 6.0)]

    rt = round_trips(events)

    assert (rt["read_round_trips"], rt["commit_round_trips"], rt["other_round_trips"], rt["round_trips"]) == \
        (2, 2, 0, 4)
    assert rt["sequence"][0] == "read[x:get_all(2)+x:count]"


def test_a_wave_with_a_commit_is_a_commit_round_trip_and_transactions_are_other():
    rt = round_trips([ev("batch_get_documents", 0.0, 2.0), ev("commit", 1.0, 3.0), ev("begin_transaction", 4, 5)])

    assert (rt["read_round_trips"], rt["commit_round_trips"], rt["other_round_trips"]) == (0, 1, 1)


def test_back_to_back_reads_are_sequential():
    rt = round_trips([ev("batch_get_documents", 0.0, 1.0), ev("batch_get_documents", 1.0, 2.0)])

    assert rt["read_round_trips"] == 2
