"""Issue 17 on both stores: the batched pre-claim read answers what ``get_all`` and ``risk_snapshot``
answer; a claim and a finish that start from documents read earlier are exactly as correct as ones
that read them (a moved document is a conflict and is read again); a commit answers the values its
increments left (so a reservation needs no read back)."""
from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

from backend.execution.store_rules import exposure_path, intent_path
from backend.execution.unit_of_work import Commit, Increment
from backend.ports.store import ClaimResult, IntentStatus
from backend.risk.manager import Exposure
from tests.contract.test_store_contract import DAY, KEY, claim, finish

IP = intent_path("acme", "i1")


def test_the_pre_claim_read_answers_the_documents_and_the_risk_snapshot(h):
    h.put("ops/execution", {"kill_switch": True})
    h.put("tenants/acme/config/risk", {"max_trades_per_day": 3})
    h.put("tenants/acme/members/alice", {"uid": "alice", "status": "active"})
    h.store.claim(claim("i0"))

    docs, snapshot = h.store.read_pre_claim("acme", KEY, DAY, [IP, "tenants/acme/members/alice"])

    assert docs[IP] == (None, None)
    assert docs["tenants/acme/members/alice"][0] == {"uid": "alice", "status": "active"}
    expected = h.store.risk_snapshot("acme", KEY, DAY)
    assert snapshot == expected
    assert (snapshot.global_kill_switch, snapshot.trades_today, snapshot.exposure) == \
        (True, 1, Exposure(reserved_long=D(10)))
    assert snapshot.tenant_overrides == {"max_trades_per_day": 3}


def test_the_pre_claim_read_of_a_quiet_tenant(h):
    docs, snapshot = h.store.read_pre_claim("acme", KEY, DAY, [IP])

    assert docs == {IP: (None, None)}
    assert (snapshot.global_kill_switch, snapshot.tenant_overrides, snapshot.trades_today, snapshot.exposure) == \
        (False, None, 0, Exposure())


def test_a_claim_on_the_intent_as_read_before_commits_without_reading_it_again(h):
    docs, _ = h.store.read_pre_claim("acme", KEY, DAY, [IP])

    outcome = h.store.claim(replace(claim("i1"), prefetched={IP: docs[IP]}))

    assert outcome.result is ClaimResult.CLAIMED and outcome.exposure == Exposure(reserved_long=D(10))
    assert h.store.get_intent("acme", "i1").status is IntentStatus.RESERVED


def test_a_claim_on_a_stale_read_finds_the_intent_taken_meanwhile(h):
    docs, _ = h.store.read_pre_claim("acme", KEY, DAY, [IP])  # absent when read
    h.store.claim(claim("i1"))  # another worker claims it meanwhile

    outcome = h.store.claim(replace(claim("i1"), prefetched={IP: docs[IP]}))

    assert outcome.result is ClaimResult.DUPLICATE and outcome.existing.status is IntentStatus.RESERVED
    assert exposure_of(h) == Exposure(reserved_long=D(10))  # reserved once


def test_the_claims_exposure_is_the_commits_own_answer_including_earlier_reservations(h):
    h.store.claim(claim("i0", qty="-4"))
    outcome = h.store.claim(claim("i1", qty="10", seen=1))

    assert outcome.exposure == Exposure(reserved_long=D(10), reserved_short=D(4))
    assert outcome.token is not None


def test_a_commit_answers_the_values_its_increments_left(h):
    path = exposure_path("acme", KEY)
    h.store.commit(Commit([Increment(path, {"position_nanos": 7})]))

    result = h.store.commit(Commit([Increment(path, {"position_nanos": 5, "reserved_long_nanos": 0})]))

    assert result.increments[path] == {"position_nanos": 12, "reserved_long_nanos": 0}
    assert len(result) == 1  # still one token per op


def test_a_finish_on_the_claims_token_commits_once_and_a_stale_token_is_read_again(h):
    first = h.store.claim(claim("i1"))
    h.store.finish(replace(finish("i1", slot=None), prefetched={IP: ({"status": "reserved"}, first.token)}))
    assert h.store.get_intent("acme", "i1").status is IntentStatus.PLACED

    second = h.store.claim(claim("i2", seen=1))
    ip2 = intent_path("acme", "i2")
    h.store.annotate_intent("acme", "i2", {"note": "moved"})  # the record moves after the claim
    h.store.finish(replace(finish("i2", slot=None), prefetched={ip2: ({"status": "reserved"}, second.token)}))
    record = h.store.get_intent("acme", "i2")
    assert record.status is IntentStatus.PLACED and record.data["note"] == "moved"
    assert exposure_of(h) == Exposure(position=D(20))
    assert sorted(p.rsplit("/", 1)[1] for p in h.paths("tenants/acme/ledger_trades")) == ["L-i1", "L-i2"]


def exposure_of(h) -> Exposure:
    from backend.execution.store_rules import exposure_from_doc

    return exposure_from_doc(h.raw(exposure_path("acme", KEY)))


def test_a_finish_on_the_record_the_claim_committed_names_only_what_it_changes_and_stores_the_whole_record(h):
    from backend.execution.unit_of_work import Update
    from tests.contract.test_store_contract import finish

    claimed = h.store.claim(replace(claim("i1"), record={"status": "reserved", "uid": "alice", "symbol": "AAPL",
                                                         "intent": {"symbol": "AAPL", "qty": "10"}}))
    h.store.claim(replace(claim("i2"), record={"status": "reserved", "uid": "alice", "symbol": "AAPL",
                                               "intent": {"symbol": "AAPL", "qty": "10"}}))
    assert claimed.committed is not None and claimed.committed["intent"] == {"symbol": "AAPL", "qty": "10"}
    record = {"status": "placed", "uid": "alice", "symbol": "AAPL", "intent": {"symbol": "AAPL", "qty": "10"},
              "result": {"ok": 1}}
    commits = []
    real = h.store.commit
    h.store.commit = lambda c: commits.append(c) or real(c)
    try:
        h.store.finish(replace(finish("i1"), record=record,
                               prefetched={intent_path("acme", "i1"): (dict(claimed.committed), claimed.token)}))
        h.store.finish(replace(finish("i2"), record=record))  # read from the store: the same rule
    finally:
        h.store.commit = real

    updates = [op for c in commits for op in c.ops if isinstance(op, Update) and "order_intents" in op.path]
    assert [sorted(op.fields) for op in updates] == [["lease_until", "result", "status", "updated_server_at"]] * 2
    one, two = h.store.get_intent("acme", "i1").data, h.store.get_intent("acme", "i2").data
    for data in (one, two):
        assert (data["status"], data["intent"], data["result"], data["lease_until"], data["slot"]) == \
            ("placed", {"symbol": "AAPL", "qty": "10"}, {"ok": 1}, None, data["slot"])
