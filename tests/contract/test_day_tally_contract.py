"""The day's tally (issue 17) on both stores (fixture ``h``: in-memory and the Firestore emulator).

The engine's pre-claim read takes the day's slot counts from the tally documents
(``tenants/{t}/risk_days/{day}/tally/{k}`` and the account's ``risk_days/{day}/accounts/{account_id}``)
instead of count aggregations. The tally moves in the same commit as the slots (claims, give-backs,
group reservations and settlements), so it equals them; where it does not (slots taken before the
tally existed, or written around it) a claim that finds its slot taken counts exactly and probes from
there, and the daily limits stay exact — a tally is never the reason for a refusal.
"""
from __future__ import annotations

import threading
from dataclasses import replace
from decimal import Decimal as D

from backend.execution.store_rules import (TALLY_SHARDS, account_tally_path, tally_counts, tally_path,
                                           tally_paths)
from backend.ports.store import ACCOUNT_LIMIT, TENANT_LIMIT, ClaimResult, GroupSettlement, IntentStatus
from tests.contract.test_account_daily_slots_contract import (TENANT_SLOTS, account_slots, claim, numbers, release,
                                                              reservation)
from tests.contract.test_store_contract import DAY, group_doc


def tally(h, account: str | None = "a1") -> tuple[int, int | None]:
    paths = [*tally_paths("acme", DAY), *([] if account is None else [account_tally_path("acme", DAY, account)])]
    return tally_counts({p: (h.raw(p), None) for p in paths}, "acme", DAY, account)


def hinted(intent_id: str, account: str | None = "a1", **kw):
    return replace(claim(intent_id, account, **kw), counts_are_hints=True)


def put_untallied_slots(h, numbers_: range, account: str | None = None) -> None:
    """Slots as a day before the tally existed left them (no tally documents)."""
    for n in numbers_:
        h.put(f"{TENANT_SLOTS}/{n}", {"intent_id": f"old{n}", "uid": "alice"})
        if account is not None:
            h.put(f"{account_slots(account)}/{n}", {"intent_id": f"old{n}", "uid": "alice", "tenant_slot": n})


def test_the_tally_follows_the_slots_through_claims_give_backs_groups_and_settlements(h):
    for n in range(4):
        h.store.claim(claim(f"i{n}", "a1" if n % 2 else "a2"))
    assert tally(h, "a1") == (4, 2) and tally(h, "a2") == (4, 2)

    given_back = h.store.get_intent("acme", "i1").data["slot"]
    h.store.finish(release("i1", given_back))  # refused by the venue: its slots (and tally) given back
    assert tally(h, "a1") == (3, 1) == (len(h.paths(TENANT_SLOTS)), len(h.paths(account_slots("a1"))))

    snap = h.store.create_group("acme", "g1", group_doc())
    reserved = h.store.reserve_group(snap, group_doc(), reservation(account_limit=10, seen=3, account_seen=1))
    assert reserved.result is ClaimResult.CLAIMED
    assert tally(h, "a1") == (5, 3) == (len(h.paths(TENANT_SLOTS)), len(h.paths(account_slots("a1"))))

    legs = {leg["leg_id"]: leg for leg in reserved.snapshot.doc["_reservation"]["legs"]}
    h.store.save_group(reserved.snapshot, {**group_doc(status="PARTIAL", _final=True),
                                           "_reservation": reserved.snapshot.doc["_reservation"]},
                       settlement=GroupSettlement(DAY, (("a1__AAPL", D(10), D(10)), ("a1__MSFT", D(0), D(-5))),
                                                  release_slots=(legs["b"]["slot"],)))
    assert tally(h, "a1") == (4, 2) == (len(h.paths(TENANT_SLOTS)), len(h.paths(account_slots("a1"))))
    assert tally(h, "a2") == (4, 2) == (4, len(h.paths(account_slots("a2"))))


def test_the_pre_claim_read_answers_the_tally_as_a_hint_and_the_exact_counts_without_it(h):
    put_untallied_slots(h, range(3), account="a1")  # 3 slots the tally does not know
    h.store.claim(claim("i9", "a1"))  # 1 it does

    _, hint = h.store.read_pre_claim("acme", "a1__AAPL", DAY, [], account_id="a1", tally=True)
    _, exact = h.store.read_pre_claim("acme", "a1__AAPL", DAY, [], account_id="a1")

    assert (hint.trades_today, hint.account_trades_today, hint.counts_are_hints) == (1, 1, True)
    assert (exact.trades_today, exact.account_trades_today, exact.counts_are_hints) == (4, 4, False)


def test_a_claim_whose_tally_is_behind_counts_exactly_and_takes_the_next_free_slot(h):
    put_untallied_slots(h, range(3))

    outcome = h.store.claim(hinted("i1", None, seen=0))

    assert outcome.result is ClaimResult.CLAIMED and outcome.slot == 3
    assert numbers(h, TENANT_SLOTS) == [0, 1, 2, 3]
    assert tally(h, None) == (1, None)  # its own claim; the tally stays a hint


def test_a_full_day_behind_its_tally_is_refused_on_the_exact_count_and_nothing_is_written(h):
    put_untallied_slots(h, range(3))

    outcome = h.store.claim(hinted("i1", None, limit=3, seen=0))

    assert outcome.result is ClaimResult.DAILY_LIMIT and outcome.trades_today == 3
    assert outcome.limit_scope == TENANT_LIMIT
    assert numbers(h, TENANT_SLOTS) == [0, 1, 2] and h.store.get_intent("acme", "i1") is None
    assert tally(h, None) == (0, None)


def test_an_account_full_behind_its_tally_is_refused_on_its_exact_count(h):
    put_untallied_slots(h, range(2), account="a1")

    outcome = h.store.claim(hinted("i1", limit=20, account_limit=2, seen=0, account_seen=0))

    assert outcome.result is ClaimResult.DAILY_LIMIT and outcome.limit_scope == ACCOUNT_LIMIT
    assert outcome.account_trades_today == 2
    assert numbers(h, account_slots("a1")) == [0, 1] and h.store.get_intent("acme", "i1") is None


def test_a_tally_ahead_of_the_slots_only_moves_where_probing_starts(h):
    h.put(tally_path("acme", DAY, 0), {"taken": 7})  # e.g. given back by a path that did not count down

    outcome = h.store.claim(hinted("i1", None, limit=10, seen=7))

    assert outcome.result is ClaimResult.CLAIMED and outcome.slot == 7
    second = h.store.claim(hinted("i2", None, limit=10, seen=9))
    third = h.store.claim(hinted("i3", None, limit=10, seen=10 % 10))  # wraps to the free slots below
    assert (second.slot, third.slot) == (9, 0)


def test_concurrent_claims_behind_a_stale_tally_stop_exactly_at_the_limit(h):
    put_untallied_slots(h, range(4))
    outcomes: list = []
    go = threading.Barrier(5)

    def one(n: int) -> None:
        go.wait()
        outcomes.append(h.store.claim(hinted(f"i{n}", None, limit=6, seen=0)))

    threads = [threading.Thread(target=one, args=(n,)) for n in range(5)]
    [t.start() for t in threads]
    [t.join() for t in threads]

    claimed = [o for o in outcomes if o.result is ClaimResult.CLAIMED]
    assert len(claimed) == 2 and len(h.paths(TENANT_SLOTS)) == 6
    assert all(o.result is ClaimResult.DAILY_LIMIT for o in outcomes if o not in claimed)
    assert sorted(o.slot for o in claimed) == [4, 5]
    assert all(h.store.get_intent("acme", f"i{n}") is None
               or h.store.get_intent("acme", f"i{n}").status is IntentStatus.RESERVED for n in range(5))


def test_the_tally_is_spread_over_its_shards(h):
    for n in range(16):
        h.store.claim(claim(f"i{n}", None))

    shards = [h.raw(tally_path("acme", DAY, k)) for k in range(TALLY_SHARDS)]

    assert sum((s or {}).get("taken", 0) for s in shards) == 16
    assert sum(1 for s in shards if s) > 1


def test_a_claim_whose_tally_says_full_is_counted_exactly_before_it_is_refused(h):
    h.put(tally_path("acme", DAY, 3), {"taken": 5})  # the tally says full; the day holds no slot

    outcome = h.store.claim(hinted("i1", "a1", limit=5, account_limit=2, seen=5, account_seen=2))

    assert outcome.result is ClaimResult.CLAIMED and (outcome.slot, outcome.account_slot) == (0, 0)
