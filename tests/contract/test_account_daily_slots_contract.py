"""Per-account daily trade slots (issue 12, item 3) on both stores (fixture ``h``: in-memory and the
Firestore emulator).

A trade bound to an account creates ``tenants/{t}/risk_days/{day}/accounts/{account_id}/trade_slots/{n}``
in the same commit as the tenant's slot (both create-if-absent), and gives it back wherever the
tenant slot is given back (a finish that releases, a group settlement). Their count is the snapshot's
``account_trades_today``. With an account limit the account's slots are numbered below it, so
concurrent claims stop exactly at it; without one they take the tenant slot's number (still counted,
so a limit set later in the day sees the trades before it).
"""
from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal as D

from backend.ports.store import (ACCOUNT_LIMIT, TENANT_LIMIT, Claim, ClaimResult, Finish, GroupReservation,
                                 GroupSettlement, LegReservation)
from tests.contract.test_store_contract import DAY, NOW, group_doc, ledger_row

TENANT_SLOTS = f"tenants/acme/risk_days/{DAY}/trade_slots"


def account_slots(account: str) -> str:
    return f"tenants/acme/risk_days/{DAY}/accounts/{account}/trade_slots"


def claim(intent_id: str, account: str | None = "a1", *, limit: int = 20, account_limit: int | None = None,
          seen: int = 0, account_seen: int = 0) -> Claim:
    return Claim(tenant_id="acme", intent_id=intent_id, uid="alice", account_key=f"{account}__AAPL", trade_day=DAY,
                 daily_limit=limit, signed_qty=D(1), record={"status": "reserved", "uid": "alice"},
                 lease_until=NOW + timedelta(seconds=30), trades_seen=seen, account_id=account,
                 account_daily_limit=account_limit, account_trades_seen=account_seen)


def release(intent_id: str, slot: int, account: str = "a1", prefetched=None) -> Finish:
    return Finish(tenant_id="acme", intent_id=intent_id, uid="alice",
                  record={"status": "rejected", "result": {"status": "rejected"}}, ledger_id=f"L-{intent_id}",
                  ledger=ledger_row(f"L-{intent_id}", status="rejected"), account_key=f"{account}__AAPL",
                  reserved_signed_qty=D(1), trade_day=DAY, release_slot=slot, prefetched=prefetched)


def numbers(h, collection: str) -> list[int]:
    return sorted(int(p.rsplit("/", 1)[1]) for p in h.paths(collection))


# --- claims --------------------------------------------------------------------------------------------
def test_a_bound_claim_creates_the_accounts_slot_with_the_tenants_and_the_snapshot_counts_it(h):
    outcome = h.store.claim(claim("i1"))

    assert outcome.result is ClaimResult.CLAIMED and (outcome.slot, outcome.account_slot) == (0, 0)
    assert outcome.account_trades_today == 1
    assert numbers(h, TENANT_SLOTS) == [0] and numbers(h, account_slots("a1")) == [0]
    assert h.raw(f"{account_slots('a1')}/0")["intent_id"] == "i1"
    assert h.store.get_intent("acme", "i1").data["account_slot"] == {"account_id": "a1", "day": DAY, "slot": 0}
    snap = h.store.risk_snapshot("acme", "a1__AAPL", DAY, account_id="a1")
    assert (snap.trades_today, snap.account_trades_today) == (1, 1)
    assert h.store.risk_snapshot("acme", "a1__AAPL", DAY, account_id="a2").account_trades_today == 0
    assert h.store.risk_snapshot("acme", "a1__AAPL", DAY).account_trades_today is None  # not asked: not read
    assert h.store.day_trade_counts("acme", DAY, "a1") == (1, 1)


def test_an_unbound_claim_counts_no_account(h):
    outcome = h.store.claim(claim("i1", account=None))

    assert outcome.result is ClaimResult.CLAIMED and outcome.account_slot is None
    assert outcome.account_trades_today is None and "account_slot" not in h.store.get_intent("acme", "i1").data
    assert numbers(h, TENANT_SLOTS) == [0]


def test_with_an_account_limit_its_slots_are_numbered_below_it_apart_from_the_tenants(h):
    for n in range(4):  # another account's trades hold tenant slots 0-3
        h.store.claim(claim(f"other{n}", "a2", seen=n))

    outcome = h.store.claim(claim("i1", account_limit=2, seen=4))

    assert (outcome.slot, outcome.account_slot) == (4, 0)
    assert numbers(h, account_slots("a1")) == [0] and numbers(h, account_slots("a2")) == [0, 1, 2, 3]


def test_the_account_limit_refuses_past_it_even_with_a_stale_count_and_writes_nothing(h):
    h.store.claim(claim("i1", account_limit=2))
    h.store.claim(claim("i2", account_limit=2, seen=1, account_seen=1))

    third = h.store.claim(claim("i3", account_limit=2, seen=2, account_seen=0))  # the slots say no

    assert third.result is ClaimResult.DAILY_LIMIT and third.limit_scope == ACCOUNT_LIMIT
    assert third.account_trades_today == 2
    assert h.store.get_intent("acme", "i3") is None
    assert numbers(h, TENANT_SLOTS) == [0, 1] and numbers(h, account_slots("a1")) == [0, 1]


def test_a_count_at_the_account_limit_refuses_before_probing(h):
    outcome = h.store.claim(claim("i1", account_limit=2, account_seen=2))

    assert outcome.result is ClaimResult.DAILY_LIMIT and outcome.limit_scope == ACCOUNT_LIMIT
    assert h.store.get_intent("acme", "i1") is None and h.paths(TENANT_SLOTS) == []


def test_the_tenant_limit_still_binds_every_account(h):
    h.store.claim(claim("i1", "a1", limit=2))
    h.store.claim(claim("i2", "a2", limit=2, seen=1))

    third = h.store.claim(claim("i3", "a3", limit=2, account_limit=5))

    assert third.result is ClaimResult.DAILY_LIMIT and third.limit_scope == TENANT_LIMIT
    assert h.paths(account_slots("a3")) == []


def test_an_account_slot_left_from_a_limited_period_moves_an_unlimited_claim_on(h):
    h.put(f"{account_slots('a1')}/0", {"intent_id": "earlier", "tenant_slot": 7})  # taken under a limit

    outcome = h.store.claim(claim("i1"))  # no account limit now: the account slot takes the tenant's number

    assert (outcome.slot, outcome.account_slot) == (1, 1)
    assert numbers(h, TENANT_SLOTS) == [1] and numbers(h, account_slots("a1")) == [0, 1]


def test_concurrent_claims_of_one_account_stop_exactly_at_its_limit_while_another_account_still_trades(h):
    results: dict[str, list] = {"a1": [], "a2": []}
    go = threading.Barrier(10)

    def run(account: str, n: int) -> None:
        go.wait()  # every claim read the same (empty) counts: only the create preconditions decide
        results[account].append(h.store.claim(claim(f"{account}-{n}", account, account_limit=3)))

    threads = [threading.Thread(target=run, args=("a1", n)) for n in range(7)]
    threads += [threading.Thread(target=run, args=("a2", n)) for n in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]

    a1 = [r.result for r in results["a1"]]
    assert a1.count(ClaimResult.CLAIMED) == 3 and a1.count(ClaimResult.DAILY_LIMIT) == 4
    assert all(r.limit_scope == ACCOUNT_LIMIT for r in results["a1"] if r.result is ClaimResult.DAILY_LIMIT)
    assert [r.result for r in results["a2"]] == [ClaimResult.CLAIMED] * 3
    assert numbers(h, account_slots("a1")) == [0, 1, 2] and numbers(h, account_slots("a2")) == [0, 1, 2]
    assert len(h.paths(TENANT_SLOTS)) == 6
    assert h.store.day_trade_counts("acme", DAY, "a1") == (6, 3)


# --- releases --------------------------------------------------------------------------------------------
def test_a_finish_that_releases_the_tenant_slot_releases_the_accounts_too(h):
    taken = h.store.claim(claim("i1", account_limit=1))
    h.store.claim(claim("i2", "a2", seen=1))

    h.store.finish(release("i1", taken.slot))

    assert numbers(h, TENANT_SLOTS) == [1] and h.paths(account_slots("a1")) == []
    again = h.store.claim(claim("i3", account_limit=1, seen=1))  # the account's one trade is free again
    assert again.result is ClaimResult.CLAIMED and again.account_slot == 0


def test_a_release_reads_the_record_when_the_pre_read_one_does_not_name_its_slots(h):
    taken = h.store.claim(claim("i1", account_limit=1))
    ip = "tenants/acme/order_intents/i1"
    partial = {ip: ({"status": "reserved"}, taken.token)}  # what the engine keeps after its claim

    assert h.store.finish(release("i1", taken.slot, prefetched=partial)) is None

    assert h.paths(TENANT_SLOTS) == [] and h.paths(account_slots("a1")) == []
    assert h.store.get_intent("acme", "i1").status.value == "rejected"


def test_a_placed_trade_keeps_both_slots(h):
    taken = h.store.claim(claim("i1", account_limit=2))

    h.store.finish(Finish(tenant_id="acme", intent_id="i1", uid="alice", record={"status": "placed"},
                          ledger_id="L-i1", ledger=ledger_row("L-i1"), account_key="a1__AAPL",
                          reserved_signed_qty=D(1), filled_signed_qty=D(1), trade_day=DAY))

    assert numbers(h, TENANT_SLOTS) == [taken.slot] and numbers(h, account_slots("a1")) == [taken.account_slot]
    assert h.store.risk_snapshot("acme", "a1__AAPL", DAY, account_id="a1").account_trades_today == 1


# --- groups ----------------------------------------------------------------------------------------------
def reservation(account: str | None = "a1", *, limit: int = 20, account_limit: int | None = None,
                seen: int = 0, account_seen: int = 0) -> GroupReservation:
    return GroupReservation(uid="alice", trade_day=DAY, daily_limit=limit, broker_account_id=account or "default",
                            legs=(LegReservation("a", f"{account}__AAPL", D(10)),
                                  LegReservation("b", f"{account}__MSFT", D(-5))),
                            trades_seen=seen, account_id=account, account_daily_limit=account_limit,
                            account_trades_seen=account_seen)


def test_a_bound_group_takes_one_account_slot_per_leg_with_its_tenant_slots(h):
    h.store.claim(claim("i1", "a2"))  # tenant slot 0 belongs to another account
    snap = h.store.create_group("acme", "g1", group_doc())

    outcome = h.store.reserve_group(snap, group_doc(), reservation(account_limit=2, seen=1))

    assert outcome.result is ClaimResult.CLAIMED and outcome.account_trades_today == 2
    stored = outcome.snapshot.doc["_reservation"]
    assert stored["account_id"] == "a1"
    assert sorted(leg["account_slot"] for leg in stored["legs"]) == [0, 1]
    assert numbers(h, account_slots("a1")) == [0, 1] and len(h.paths(TENANT_SLOTS)) == 3
    assert {h.raw(f"{account_slots('a1')}/{leg['account_slot']}")["tenant_slot"] for leg in stored["legs"]} == \
        {leg["slot"] for leg in stored["legs"]}


def test_a_group_past_the_account_limit_is_refused_naming_the_account_scope_and_writes_nothing(h):
    h.store.claim(claim("i1", account_limit=2))  # the account has one trade left
    snap = h.store.create_group("acme", "g1", group_doc())

    outcome = h.store.reserve_group(snap, group_doc(), reservation(account_limit=2, seen=1, account_seen=0))

    assert outcome.result is ClaimResult.DAILY_LIMIT and outcome.limit_scope == ACCOUNT_LIMIT
    assert outcome.account_trades_today == 1
    assert "_reservation" not in h.store.load_group("acme", "g1").doc
    assert numbers(h, TENANT_SLOTS) == [0] and numbers(h, account_slots("a1")) == [0]


def test_an_unlimited_bound_group_numbers_its_account_slots_like_its_tenant_slots(h):
    snap = h.store.create_group("acme", "g1", group_doc())

    outcome = h.store.reserve_group(snap, group_doc(), reservation())

    legs = outcome.snapshot.doc["_reservation"]["legs"]
    assert all(leg["account_slot"] == leg["slot"] for leg in legs)
    assert numbers(h, account_slots("a1")) == numbers(h, TENANT_SLOTS)


def test_the_settlement_gives_back_the_account_slots_of_legs_that_filled_nothing(h):
    snap = h.store.create_group("acme", "g1", group_doc())
    reserved = h.store.reserve_group(snap, group_doc(), reservation(account_limit=2))
    legs = {leg["leg_id"]: leg for leg in reserved.snapshot.doc["_reservation"]["legs"]}

    h.store.save_group(reserved.snapshot, {**group_doc(status="PARTIAL", _final=True),
                                           "_reservation": reserved.snapshot.doc["_reservation"]},
                       settlement=GroupSettlement(DAY, (("a1__AAPL", D(10), D(10)), ("a1__MSFT", D(0), D(-5))),
                                                  release_slots=(legs["b"]["slot"],)))

    assert numbers(h, TENANT_SLOTS) == [legs["a"]["slot"]]
    assert numbers(h, account_slots("a1")) == [legs["a"]["account_slot"]]


def test_concurrent_groups_and_claims_of_one_account_never_pass_its_limit(h):
    for n in range(3):
        h.store.create_group("acme", f"g{n}", {**group_doc(), "group_id": f"g{n}"})
    outcomes: list = []
    go = threading.Barrier(6)

    def group(n: int) -> None:
        snap = h.store.load_group("acme", f"g{n}")
        go.wait()
        outcomes.append(("group", h.store.reserve_group(snap, {**group_doc(), "group_id": f"g{n}"},
                                                        reservation(account_limit=5))))

    def single(n: int) -> None:
        go.wait()
        outcomes.append(("claim", h.store.claim(claim(f"i{n}", account_limit=5))))

    threads = [threading.Thread(target=group, args=(n,)) for n in range(3)]
    threads += [threading.Thread(target=single, args=(n,)) for n in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]

    taken = sum(2 if kind == "group" else 1 for kind, o in outcomes if o.result is ClaimResult.CLAIMED)
    assert taken == len(h.paths(account_slots("a1"))) == len(h.paths(TENANT_SLOTS))
    assert taken == 5  # every refusal saw the account full: exactly at its limit, never past it
    assert all(n < 5 for n in numbers(h, account_slots("a1")))
