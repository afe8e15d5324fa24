"""The account store (backend/ports/accounts.py ``AccountStore`` and ``AccountAdmin``) on both stores:
the in-memory fake and the Firestore adapter on the official emulator (fixture ``h``). Reads and
writes are decided once in backend/execution/account_writes.py; these tests pin what both stores
answer, how many round trips a binding read costs, and what a provision race leaves behind."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import pytest

from backend.domain.accounts import Account, AccountLimits, AccountStatus, BrokerConnection
from backend.domain.assets import AssetClass
from backend.domain.errors import InvalidInput
from backend.execution import account_writes
from backend.ports.accounts import MEMBER_FIELDS
from tests.contract.test_store_writes_contract import Recording

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=timezone.utc)
LATER = NOW + timedelta(minutes=5)
T = "acme"
ACCOUNTS = f"tenants/{T}/accounts"
UUID_A = "0f5c2a1e-9a3b-4c7d-8e2f-1a2b3c4d5e6f"


def account(account_id="acct-a", owners=("alice",), *, status=AccountStatus.ACTIVE, connection_id="deployment",
            limits=None, at=NOW) -> Account:
    return Account(account_id=account_id, connection_id=connection_id, venue_account_id=f"{T}-{account_id}",
                   owner_uids=owners, status=status, asset_classes=frozenset({AssetClass.EQUITY, AssetClass.CRYPTO}),
                   created_at=at, updated_at=at, limits=limits)


def connection(connection_id="alpaca-main") -> BrokerConnection:
    return BrokerConnection(connection_id=connection_id, venue="alpaca_broker", environment="sandbox",
                            base_url="http://127.0.0.1:9999", credentials_ref="env:ALPACA_BROKER_KEYS",
                            created_at=NOW, updated_at=NOW)


def member_path(uid):
    return f"tenants/{T}/members/{uid}"


class Interleaved(Recording):
    """A unit of work whose first read is followed at once by ``meanwhile`` (another writer's whole
    operation), so this caller's first commit is built on a stale read: the conflict path, made
    deterministic on both stores."""

    def __init__(self, store, meanwhile):
        super().__init__(store)
        self.meanwhile = meanwhile

    def get_all(self, paths):
        docs = super().get_all(paths)
        if self.meanwhile is not None:
            run, self.meanwhile = self.meanwhile, None
            run()
        return docs


# ---- read_account_binding ----------------------------------------------------------------------

def test_a_named_account_and_the_member_are_read_in_one_round_trip_whoever_owns_the_account(h):
    h.store.put_account(T, account("acct-b", ("bob",)))
    h.put(member_path("alice"), {"uid": "alice", "status": "active", "default_account_id": "acct-a"})
    uow = Recording(h.store)

    read = account_writes.read_binding(uow, T, "alice", "acct-b")

    assert len(uow.reads) == 1 and sorted(uow.reads[0]) == [f"{ACCOUNTS}/acct-b", member_path("alice")]
    assert read.requested == account("acct-b", ("bob",)) and read.default is None
    assert read.default_account_id == "acct-a" and read.member_status == "active"


def test_the_store_method_answers_what_the_core_read_answers(h):
    h.store.put_account(T, account())
    h.put(member_path("alice"), {"uid": "alice", "status": "suspended", "default_account_id": "acct-a"})

    read = h.store.read_account_binding(T, "alice", None)

    assert read.requested is None and read.default == account() and read.member_status == "suspended"


def test_without_a_named_id_the_default_account_costs_a_second_round_trip(h):
    h.store.put_account(T, account())
    h.put(member_path("alice"), {"uid": "alice", "status": "active", "default_account_id": "acct-a"})
    uow = Recording(h.store)

    read = account_writes.read_binding(uow, T, "alice", None)

    assert uow.reads == [[member_path("alice")], [f"{ACCOUNTS}/acct-a"]]
    assert read.requested is None and read.default == account()


@pytest.mark.parametrize("member", [None, {"uid": "alice", "status": "active", "default_account_id": None}],
                         ids=["no-member", "member-without-default"])
def test_without_a_named_id_or_a_default_there_is_one_round_trip_and_nothing_found(h, member):
    if member is not None:
        h.put(member_path("alice"), member)
    uow = Recording(h.store)

    read = account_writes.read_binding(uow, T, "alice", None)

    assert len(uow.reads) == 1
    assert (read.requested, read.default, read.default_account_id) == (None, None, None)
    assert read.member == member


def test_a_named_id_that_does_not_exist_reads_as_none(h):
    read = h.store.read_account_binding(T, "alice", "nope")

    assert read.requested is None and read.member is None and read.default is None


def test_a_default_whose_document_is_gone_reads_as_none(h):
    h.put(member_path("alice"), {"uid": "alice", "status": "active", "default_account_id": "gone"})

    read = h.store.read_account_binding(T, "alice", None)

    assert read.default_account_id == "gone" and read.default is None


# ---- strict parsing: a poisoned document stops the request ---------------------------------------

POISONED = [
    pytest.param({"api_key": "AKXXXX"}, "account.api_key", id="unknown-key"),
    pytest.param({"limits": {"max_position_qty": 100.0, "max_order_notional": None, "max_daily_trades": None,
                             "max_position_by_class": {}}}, "limits.max_position_qty", id="float-limit"),
    pytest.param({"limits": {"max_position_qty": "100", "max_order_notional": None, "max_daily_trades": None,
                             "max_position_by_class": {"EQUITY": 5.5}}}, "limits.max_position_by_class.EQUITY",
                 id="float-class-limit"),
    pytest.param({"status": "frozen"}, "status", id="unknown-status"),
    pytest.param({"owner_uids": "alice"}, "owner_uids", id="owners-a-string"),
    pytest.param({"account_id": "acct-z"}, "account.account_id", id="id-field-not-the-document-id"),
]


@pytest.mark.parametrize(("change", "field"), POISONED)
def test_a_poisoned_account_document_is_refused_not_half_read(h, change, field):
    h.put(f"{ACCOUNTS}/acct-a", {**account().to_dict(), **change})
    h.put(member_path("alice"), {"uid": "alice", "status": "active", "default_account_id": "acct-a"})

    for read in (lambda: h.store.read_account_binding(T, "alice", "acct-a"),
                 lambda: h.store.read_account_binding(T, "alice", None),
                 lambda: h.store.get_account(T, "acct-a")):
        with pytest.raises(InvalidInput) as err:
            read()
        assert err.value.field == field


def test_a_member_default_that_is_not_an_id_is_refused(h):
    h.put(member_path("alice"), {"uid": "alice", "status": "active", "default_account_id": "../x"})

    with pytest.raises(InvalidInput) as err:
        h.store.read_account_binding(T, "alice", None)

    assert err.value.field == "member.default_account_id"


def test_a_requested_id_that_is_not_an_id_is_invalid_input_before_any_read(h):
    uow = Recording(h.store)

    with pytest.raises(InvalidInput):
        account_writes.read_binding(uow, T, "alice", "a/b")

    assert uow.reads == []


# ---- connections -----------------------------------------------------------------------------------

def test_a_connection_is_written_and_read_back_as_the_same_value_with_only_its_reference(h):
    h.store.put_connection(T, connection())

    assert h.store.get_connection(T, "alpaca-main") == connection()
    assert h.raw(f"tenants/{T}/broker_connections/alpaca-main")["credentials_ref"] == "env:ALPACA_BROKER_KEYS"
    assert h.store.get_connection(T, "other") is None


def test_the_deployment_connection_has_no_document_and_is_never_read(h):
    uow = Recording(h.store)

    assert account_writes.get_connection(uow, T, "deployment") is None
    assert uow.reads == []
    with pytest.raises(InvalidInput) as err:
        h.store.put_connection(T, BrokerConnection(connection_id="deployment", venue="paper", environment="paper",
                                                   base_url=None, credentials_ref=None, created_at=NOW,
                                                   updated_at=NOW))
    assert err.value.field == "connection_id"


def test_a_poisoned_connection_document_is_refused(h):
    h.put(f"tenants/{T}/broker_connections/alpaca-main", {**connection().to_dict(), "secret_key": "sk-live"})

    with pytest.raises(InvalidInput) as err:
        h.store.get_connection(T, "alpaca-main")

    assert err.value.field == "connection.secret_key"


# ---- provision_account ------------------------------------------------------------------------------

def test_a_first_provision_creates_the_account_and_the_member_with_it_as_default_in_one_commit(h):
    uow = Recording(h.store)

    stored = account_writes.provision(uow, T, "alice", account())

    assert stored == account() == h.store.get_account(T, "acct-a")
    assert len(uow.commits) == 1 and sorted(kind for kind, _ in uow.commits[0]) == ["Create", "Create"]
    member = h.raw(member_path("alice"))
    assert set(member) == set(MEMBER_FIELDS)
    assert member == {"uid": "alice", "role": None, "status": "active", "default_account_id": "acct-a",
                      "email": None, "created_at": NOW, "updated_at": NOW}


def test_provision_sets_the_default_of_an_existing_member_and_keeps_their_other_fields(h):
    before = {"uid": "alice", "role": "trader", "status": "active", "default_account_id": None,
              "email": "alice@example.com", "created_at": NOW - timedelta(days=3), "updated_at": NOW}
    h.put(member_path("alice"), before)

    h.store.provision_account(T, "alice", account(at=LATER))

    assert h.raw(member_path("alice")) == {**before, "default_account_id": "acct-a", "updated_at": LATER}


def test_provision_of_an_account_the_user_already_owns_only_sets_the_missing_default(h):
    admin_made = account(owners=("alice", "bob"), limits=AccountLimits(max_position_qty=D("100")))
    h.store.put_account(T, admin_made)

    stored = h.store.provision_account(T, "alice", account(at=LATER))

    assert stored == admin_made == h.store.get_account(T, "acct-a")  # the stored one, not rewritten
    assert h.raw(member_path("alice"))["default_account_id"] == "acct-a"


def test_provision_never_overwrites_another_users_account_nor_makes_it_a_default(h):
    bobs = account(owners=("bob",))
    h.store.put_account(T, bobs)
    uow = Recording(h.store)

    stored = account_writes.provision(uow, T, "alice", account())

    assert stored == bobs and not stored.is_owned_by("alice")
    assert uow.commits == []
    assert h.store.get_account(T, "acct-a") == bobs and h.raw(member_path("alice")) is None


def test_a_user_with_a_default_gets_no_second_account_and_is_answered_their_default(h):
    h.store.provision_account(T, "alice", account("acct-a"))
    uow = Recording(h.store)

    stored = account_writes.provision(uow, T, "alice", account("acct-b"))

    assert stored == account("acct-a") and uow.commits == []
    assert h.raw(f"{ACCOUNTS}/acct-b") is None
    assert h.raw(member_path("alice"))["default_account_id"] == "acct-a"


def test_provision_refuses_an_account_not_owned_by_the_user_it_is_for(h):
    with pytest.raises(InvalidInput):
        h.store.provision_account(T, "alice", account(owners=("bob",)))

    assert h.raw(f"{ACCOUNTS}/acct-a") is None and h.raw(member_path("alice")) is None


# ---- provision races ---------------------------------------------------------------------------------

def test_two_provisions_of_different_ids_for_one_user_leave_one_account_and_one_default(h):
    uow = Interleaved(h.store, lambda: h.store.provision_account(T, "alice", account("acct-b")))

    stored = account_writes.provision(uow, T, "alice", account("acct-a"))

    assert len(uow.commits) == 1  # the stale commit conflicted and wrote nothing; the re-read decided
    assert stored == account("acct-b") == h.store.get_account(T, "acct-b")
    assert h.raw(f"{ACCOUNTS}/acct-a") is None
    assert h.raw(member_path("alice"))["default_account_id"] == "acct-b"


def test_two_provisions_of_one_id_for_two_users_leave_one_owner(h):
    uow = Interleaved(h.store, lambda: h.store.provision_account(T, "bob", account("shared", ("bob",))))

    stored = account_writes.provision(uow, T, "alice", account("shared", ("alice",)))

    assert stored.owner_uids == ("bob",) and h.store.get_account(T, "shared").owner_uids == ("bob",)
    assert h.raw(member_path("alice")) is None  # the loser's member document was never written
    assert h.raw(member_path("bob"))["default_account_id"] == "shared"


def test_a_member_written_between_the_read_and_the_commit_keeps_its_fields(h):
    admin_write = {"uid": "alice", "role": "trader", "status": "suspended", "default_account_id": None,
                   "email": "alice@example.com", "created_at": NOW, "updated_at": NOW}
    uow = Interleaved(h.store, lambda: h.put(member_path("alice"), admin_write))

    account_writes.provision(uow, T, "alice", account(at=LATER))

    assert h.raw(member_path("alice")) == {**admin_write, "default_account_id": "acct-a", "updated_at": LATER}


def test_concurrent_provisions_of_many_ids_for_one_user_give_exactly_one_account_and_default(h):
    ids = [f"acct-{n}" for n in range(6)]
    results: dict[str, Account] = {}
    barrier = threading.Barrier(len(ids))

    def run(account_id):
        barrier.wait()
        results[account_id] = h.store.provision_account(T, "alice", account(account_id))

    threads = [threading.Thread(target=run, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    default = h.raw(member_path("alice"))["default_account_id"]
    assert default in ids
    assert [p.rsplit("/", 1)[1] for p in h.paths(ACCOUNTS)] == [default]
    assert {a.account_id for a in results.values()} == {default}


# ---- admin helpers -----------------------------------------------------------------------------------

def test_an_account_round_trips_exactly_with_its_limits(h):
    limits = AccountLimits(max_position_qty=D("100"), max_order_notional=D("2500.50"), max_daily_trades=20,
                           max_position_by_class={AssetClass.CRYPTO: D("0.5")})
    h.store.put_account(T, account(limits=limits))

    assert h.store.get_account(T, "acct-a") == account(limits=limits)
    assert h.raw(f"{ACCOUNTS}/acct-a")["limits"]["max_order_notional"] == "2500.50"
    assert h.store.get_account(T, "missing") is None


def test_put_account_follows_the_status_table_and_a_closed_account_is_final(h):
    h.store.put_account(T, account())
    h.store.put_account(T, account(status=AccountStatus.HALTED, at=LATER))
    h.store.put_account(T, account(status=AccountStatus.CLOSED, at=LATER))

    for again in (account(status=AccountStatus.ACTIVE, at=LATER), account(owners=("bob",), status=AccountStatus.CLOSED)):
        with pytest.raises(InvalidInput) as err:
            h.store.put_account(T, again)
        assert err.value.field == "status"
    h.store.put_account(T, account(status=AccountStatus.CLOSED, at=LATER))  # the same write again: a no-op
    assert h.store.get_account(T, "acct-a").status is AccountStatus.CLOSED


def test_list_accounts_answers_the_tenants_accounts_by_id_or_those_of_one_owner(h):
    for acc in (account("c", ("alice",)), account("a", ("bob",)), account("b", ("alice", "bob"))):
        h.store.put_account(T, acc)
    h.store.put_account("other", account("z", ("alice",)))

    assert [a.account_id for a in h.store.list_accounts(T)] == ["a", "b", "c"]
    assert [a.account_id for a in h.store.list_accounts(T, "alice")] == ["b", "c"]
    assert [a.account_id for a in h.store.list_accounts(T, "carol")] == []
    assert [a.account_id for a in h.store.list_accounts(T, limit=2)] == ["a", "b"]


def test_set_default_account_merges_into_the_member_and_keeps_role_status_and_email(h):
    h.store.put_account(T, account("acct-a"))
    h.store.put_account(T, account("acct-b"))
    before = {"uid": "alice", "role": "tenant_admin", "status": "suspended", "default_account_id": "acct-a",
              "email": "alice@example.com", "created_at": NOW, "updated_at": NOW}
    h.put(member_path("alice"), before)

    h.store.set_default_account(T, "alice", "acct-b", at=LATER)

    assert h.raw(member_path("alice")) == {**before, "default_account_id": "acct-b", "updated_at": LATER}


def test_set_default_account_creates_a_missing_member_and_refuses_an_account_not_owned(h):
    h.store.put_account(T, account("acct-a"))
    h.store.put_account(T, account("bobs", ("bob",)))

    h.store.set_default_account(T, "alice", "acct-a", at=NOW)
    for foreign in ("bobs", "missing"):
        with pytest.raises(InvalidInput):
            h.store.set_default_account(T, "alice", foreign, at=LATER)

    assert h.raw(member_path("alice")) == account_writes.member_doc("alice", "acct-a", NOW)
