"""The account model's pure parts: broker connections (venue × environment, base URL, credentials by
reference), accounts (status table, strict documents, venue account ids) and ``resolve_account``."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, strategies as st

from backend.domain.accounts import (
    Account,
    AccountLimits,
    AccountStatus,
    BrokerConnection,
    Environment,
    STATUS_TRANSITIONS,
    Venue,
    VENUE_ENVIRONMENTS,
    can_transition,
    resolve_account,
)
from backend.domain.assets import AssetClass
from backend.domain.errors import InvalidInput, RejectCode, Rejection
from backend.domain.secrets import Secret, SecretRef

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=timezone.utc)
T1 = T0 + timedelta(hours=1)
GSM = "projects/acme-prod/secrets/alpaca-broker/versions/latest"
UUID_A = "4f1c2d3e-1111-4a2b-9c3d-0123456789ab"
UUID_B = "9e8d7c6b-2222-4b3c-8d4e-ba9876543210"


def connection_doc(**overrides):
    doc = {"connection_id": "alpaca-main", "venue": "alpaca_broker", "environment": "sandbox",
           "base_url": None, "credentials_ref": GSM, "created_at": T0, "updated_at": T0}
    doc.update(overrides)
    return doc


def account_doc(**overrides):
    doc = {"account_id": "acc-alice", "connection_id": "alpaca-main", "venue_account_id": UUID_A,
           "owner_uids": ["alice"], "status": "active", "asset_classes": ["EQUITY", "CRYPTO"],
           "limits": None, "created_at": T0, "updated_at": T0}
    doc.update(overrides)
    return doc


def account(**overrides) -> Account:
    return Account.from_dict(account_doc(**overrides))


# ------------------------------------------------------------------------------------------------
# broker connections
# ------------------------------------------------------------------------------------------------

VALID_PAIRS = {("alpaca_broker", "sandbox"), ("alpaca_broker", "live"), ("alpaca_trading", "paper"),
               ("alpaca_trading", "live"), ("paper", "paper"), ("oanda", "paper"), ("oanda", "live")}


@pytest.mark.parametrize("venue", [v.value for v in Venue])
@pytest.mark.parametrize("environment", [e.value for e in Environment])
def test_only_the_environments_a_venue_offers_are_accepted(venue, environment):
    ref = None if venue == "paper" else GSM
    doc = connection_doc(venue=venue, environment=environment, credentials_ref=ref)

    if (venue, environment) in VALID_PAIRS:
        assert BrokerConnection.from_dict(doc).environment.value == environment
    else:
        with pytest.raises(InvalidInput) as err:
            BrokerConnection.from_dict(doc)
        assert err.value.field == "environment"


def test_the_venue_environment_table_is_the_documented_one():
    pairs = {(v.value, e.value) for v, envs in VENUE_ENVIRONMENTS.items() for e in envs}

    assert pairs == VALID_PAIRS


@pytest.mark.parametrize("environment, url", [
    ("sandbox", "http://127.0.0.1:8765"), ("sandbox", "http://localhost:9000/v1"), ("sandbox", "http://[::1]:80"),
    ("sandbox", "https://broker-api.sandbox.alpaca.markets"), ("live", "https://broker-api.alpaca.markets"),
    ("sandbox", "http://alpaca-sim.localhost:8080"),
])
def test_base_url_overrides_that_are_accepted(environment, url):
    connection = BrokerConnection.from_dict(connection_doc(environment=environment, base_url=url))

    assert connection.base_url == url


@pytest.mark.parametrize("environment, url, reason", [
    ("sandbox", "ftp://127.0.0.1", "http or https"),
    ("sandbox", "file:///etc/passwd", "http or https"),
    ("sandbox", "http://", "must name a host"),
    ("sandbox", "https://key:secret@broker-api.alpaca.markets", "user name or password"),
    ("sandbox", "https://broker-api.alpaca.markets/?token=x", "query or fragment"),
    ("sandbox", "https://broker api.alpaca.markets", "without spaces"),
    ("sandbox", "http://127.0.0.1:99999", "not a valid URL"),
    ("sandbox", "", "1-2048"),
    ("live", "http://broker-api.alpaca.markets", "must use https"),
    ("live", "https://localhost:8443", "loopback"),
    ("live", "https://127.0.0.1", "loopback"),
    ("live", "https://[::1]:8443", "loopback"),
    ("live", "https://0.0.0.0", "loopback"),
])
def test_base_url_overrides_that_are_refused(environment, url, reason):
    with pytest.raises(InvalidInput, match=reason) as err:
        BrokerConnection.from_dict(connection_doc(environment=environment, base_url=url))

    assert err.value.field == "base_url"


@pytest.mark.parametrize("venue, environment, ref, reason", [
    ("alpaca_broker", "sandbox", None, "required"),
    ("oanda", "live", None, "required"),
    ("alpaca_trading", "paper", "PKABCDEFGHIJKLMNOPQR", "a secret reference"),
    ("alpaca_trading", "paper", {"key_id": "PK", "secret_key": "x"}, "a secret reference"),
    ("paper", "paper", "env:PAPER", "takes no credentials"),
])
def test_credentials_are_a_reference_and_only_where_the_venue_needs_them(venue, environment, ref, reason):
    with pytest.raises(InvalidInput, match=reason) as err:
        BrokerConnection.from_dict(connection_doc(venue=venue, environment=environment, credentials_ref=ref))

    assert err.value.field == "credentials_ref"


def test_a_pasted_key_is_not_echoed_in_the_refusal():
    with pytest.raises(InvalidInput) as err:
        BrokerConnection.from_dict(connection_doc(credentials_ref="sk-LIVE-5ecr3t-Value"))

    assert "5ecr3t" not in str(err.value)


def test_a_connection_stores_its_reference_as_text_and_reads_it_back():
    connection = BrokerConnection.from_dict(connection_doc())

    doc = connection.to_dict()

    assert doc["credentials_ref"] == GSM and isinstance(connection.credentials_ref, SecretRef)
    assert connection.credential_fields == ("key_id", "secret_key")
    assert BrokerConnection.from_dict(doc) == connection
    assert connection.storable("tenant-1") > 0


@pytest.mark.parametrize("overrides, field", [
    ({"extra": 1}, "connection.extra"),
    ({"credentials": "x"}, "connection.credentials"),
    ({"connection_id": "a/b"}, "connection_id"),
    ({"connection_id": "__x__"}, "connection_id"),
    ({"venue": "alpaca"}, "venue"),
    ({"environment": "prod"}, "environment"),
    ({"created_at": "2026-01-05T14:30:00"}, "created_at"),
    ({"created_at": 1767623400}, "created_at"),
    ({"updated_at": T0 - timedelta(seconds=1)}, "updated_at"),
    ({"venue": None}, "venue"),
])
def test_connection_documents_are_read_strictly(overrides, field):
    with pytest.raises(InvalidInput) as err:
        BrokerConnection.from_dict(connection_doc(**overrides))

    assert err.value.field == field


def test_connection_refuses_a_missing_field():
    doc = connection_doc()
    del doc["venue"]

    with pytest.raises(InvalidInput, match="required") as err:
        BrokerConnection.from_dict(doc)

    assert err.value.field == "venue"


# ------------------------------------------------------------------------------------------------
# accounts: status table
# ------------------------------------------------------------------------------------------------

ALLOWED = {
    ("active", "reduce_only"), ("active", "halted"), ("active", "closed"),
    ("reduce_only", "active"), ("reduce_only", "halted"), ("reduce_only", "closed"),
    ("halted", "active"), ("halted", "reduce_only"), ("halted", "closed"),
}


@pytest.mark.parametrize("current", [s.value for s in AccountStatus])
@pytest.mark.parametrize("target", [s.value for s in AccountStatus])
def test_status_transitions_follow_the_table(current, target):
    start = account(status=current)

    if current == target:
        assert start.with_status(target, T1) is start  # a retried admin request is a no-op
    elif (current, target) in ALLOWED:
        moved = start.with_status(target, T1)
        assert (moved.status.value, moved.updated_at) == (target, T1)
        assert can_transition(AccountStatus(current), AccountStatus(target))
    else:
        with pytest.raises(InvalidInput, match=f"from {current} to {target}"):
            start.with_status(target, T1)


def test_closed_is_final():
    assert STATUS_TRANSITIONS[AccountStatus.CLOSED] == frozenset()


# ------------------------------------------------------------------------------------------------
# accounts: documents
# ------------------------------------------------------------------------------------------------

def test_an_account_round_trips_with_limits_as_decimal_strings():
    limits = {"max_position_qty": "100", "max_order_notional": "25000.50", "max_daily_trades": 20,
              "max_position_by_class": {"CRYPTO": "0.5", "EQUITY": "100"}}
    acct = account(limits=limits)

    doc = acct.to_dict()

    assert doc["limits"] == limits
    assert acct.limits.max_order_notional == Decimal("25000.50")
    assert acct.limits.max_position_by_class[AssetClass.CRYPTO] == Decimal("0.5")
    assert doc["asset_classes"] == ["CRYPTO", "EQUITY"]
    assert Account.from_dict(doc) == acct
    assert acct.storable("tenant-1") > 0


@pytest.mark.parametrize("overrides, field", [
    ({"extra": True}, "account.extra"),
    ({"account_id": "../x"}, "account_id"),
    ({"account_id": "__name__"}, "account_id"),
    ({"connection_id": ""}, "connection_id"),
    ({"venue_account_id": "a/b"}, "venue_account_id"),
    ({"owner_uids": []}, "owner_uids"),
    ({"owner_uids": "alice"}, "owner_uids"),
    ({"owner_uids": ["alice", "alice"]}, "owner_uids"),
    ({"owner_uids": ["alice", "__x__"]}, "owner_uids[1]"),
    ({"owner_uids": [f"u{i}" for i in range(21)]}, "owner_uids"),
    ({"status": "frozen"}, "status"),
    ({"status": "ACTIVE"}, "status"),
    ({"asset_classes": []}, "asset_classes"),
    ({"asset_classes": "EQUITY"}, "asset_classes"),
    ({"asset_classes": ["EQUITY", "EQUITY"]}, "asset_classes"),
    ({"asset_classes": ["STOCKS"]}, "asset_classes[0]"),
    ({"limits": {"max_position_qty": 100.0}}, "limits.max_position_qty"),
    ({"limits": {"max_position_qty": "0"}}, "limits.max_position_qty"),
    ({"limits": {"max_position_qty": "NaN"}}, "limits.max_position_qty"),
    ({"limits": {"max_position_qty": "1_000"}}, "limits.max_position_qty"),
    ({"limits": {"max_daily_trades": True}}, "limits.max_daily_trades"),
    ({"limits": {"max_daily_trades": -1}}, "limits.max_daily_trades"),
    ({"limits": {"max_leverage": "2"}}, "limits.max_leverage"),
    ({"limits": {"max_position_by_class": {"STOCKS": "1"}}}, "limits.max_position_by_class.STOCKS"),
    ({"limits": {"max_position_by_class": {"EQUITY": 5.5}}}, "limits.max_position_by_class.EQUITY"),
    ({"limits": "none"}, "limits"),
    ({"limits": {"max_position_by_class": []}}, "limits.max_position_by_class"),
    ({"updated_at": T0 - timedelta(days=1)}, "updated_at"),
    ({"created_at": None}, "created_at"),
])
def test_account_documents_are_read_strictly(overrides, field):
    with pytest.raises(InvalidInput) as err:
        account(**overrides)

    assert err.value.field == field


@pytest.mark.parametrize("venue, environment, venue_account_id, ok", [
    ("alpaca_broker", "sandbox", UUID_A, True),
    ("alpaca_broker", "sandbox", UUID_A.upper(), False),
    ("alpaca_broker", "sandbox", "acct0", False),
    ("alpaca_trading", "paper", UUID_B, True),
    ("alpaca_trading", "paper", "PA3ABCDEFG", False),
    ("oanda", "paper", "101-004-1234567-001", True),
    ("oanda", "paper", "101-004-123456-001", False),
    ("oanda", "paper", UUID_A, False),
    ("paper", "paper", "book-1", True),
])
def test_the_venue_account_id_has_the_venue_shape(venue, environment, venue_account_id, ok):
    ref = None if venue == "paper" else GSM
    conn = BrokerConnection.from_dict(connection_doc(venue=venue, environment=environment, credentials_ref=ref))
    classes = ["FOREX"] if venue == "oanda" else ["EQUITY"]
    doc = account_doc(venue_account_id=venue_account_id, asset_classes=classes)

    if ok:
        assert Account.from_dict(doc, conn).venue_account_id == venue_account_id
    else:
        with pytest.raises(InvalidInput) as err:
            Account.from_dict(doc, conn)
        assert err.value.field == "venue_account_id"


def test_an_account_may_enable_only_what_its_venue_trades():
    oanda = BrokerConnection.from_dict(connection_doc(connection_id="fx", venue="oanda", environment="paper"))
    doc = account_doc(connection_id="fx", venue_account_id="101-004-1234567-001",
                      asset_classes=["FOREX", "EQUITY"])

    with pytest.raises(InvalidInput, match=r"does not trade \['EQUITY'\]") as err:
        Account.from_dict(doc, oanda)

    assert err.value.field == "asset_classes"


def test_an_account_must_belong_to_the_connection_it_is_checked_against():
    other = BrokerConnection.from_dict(connection_doc(connection_id="other"))

    with pytest.raises(InvalidInput) as err:
        account().check_connection(other)

    assert err.value.field == "connection_id"


def test_a_secret_value_cannot_ride_in_an_account_document():
    with pytest.raises(InvalidInput):
        account(venue_account_id=Secret("x"))


ids = st.from_regex(r"[A-Za-z0-9_-]{1,100}", fullmatch=True).filter(lambda s: not (s.startswith("__")
                                                                                   and s.endswith("__")))
decimals = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("1e12"), allow_nan=False,
                       allow_infinity=False, places=6).filter(lambda d: d > 0)
times = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1),
                     timezones=st.just(timezone.utc))


@given(account_id=ids, connection_id=ids, venue_account_id=ids,
       owners=st.lists(ids, min_size=1, max_size=5, unique=True),
       status=st.sampled_from(list(AccountStatus)),
       classes=st.sets(st.sampled_from(list(AssetClass)), min_size=1),
       limits=st.none() | st.builds(AccountLimits, max_position_qty=st.none() | decimals,
                                    max_order_notional=st.none() | decimals,
                                    max_daily_trades=st.none() | st.integers(0, 1_000_000),
                                    max_position_by_class=st.dictionaries(st.sampled_from(list(AssetClass)),
                                                                          decimals)),
       created=times, delta=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400)))
def test_account_documents_round_trip(account_id, connection_id, venue_account_id, owners, status, classes,
                                      limits, created, delta):
    acct = Account(account_id=account_id, connection_id=connection_id, venue_account_id=venue_account_id,
                   owner_uids=tuple(owners), status=status, asset_classes=frozenset(classes), limits=limits,
                   created_at=created, updated_at=created + delta)

    doc = acct.to_dict()

    assert Account.from_dict(doc) == acct
    assert acct.storable("tenant-1") > 0


@given(connection_id=ids, pair=st.sampled_from(sorted(VALID_PAIRS)), created=times,
       base_url=st.none() | st.sampled_from(["https://broker-api.alpaca.markets", "https://example.test/v2"]))
def test_connection_documents_round_trip(connection_id, pair, created, base_url):
    venue, environment = pair
    conn = BrokerConnection(connection_id=connection_id, venue=venue, environment=environment,
                            credentials_ref=None if venue == "paper" else SecretRef.env("CREDS"),
                            base_url=base_url, created_at=created, updated_at=created)

    assert BrokerConnection.from_dict(conn.to_dict()) == conn
    assert conn.storable("tenant-1") > 0


# ------------------------------------------------------------------------------------------------
# resolve_account: every branch
# ------------------------------------------------------------------------------------------------

ALICE_MAIN = account(account_id="alice-main")
ALICE_FX = account(account_id="alice-fx", asset_classes=["FOREX"])
ALICE_CLOSED = account(account_id="alice-old", status="closed")
ALICE_HALTED = account(account_id="alice-halt", status="halted")
ALICE_REDUCE = account(account_id="alice-reduce", status="reduce_only")
BOB_MAIN = account(account_id="bob-main", owner_uids=["bob"], venue_account_id=UUID_B)
SHARED = account(account_id="joint", owner_uids=["bob", "alice"])
ALICE_SEES = [ALICE_MAIN, ALICE_FX, ALICE_CLOSED, ALICE_HALTED, ALICE_REDUCE, SHARED]


@pytest.mark.parametrize("requested, default, asset_class, expected", [
    ("alice-main", None, None, ALICE_MAIN),
    (None, "alice-main", None, ALICE_MAIN),
    ("alice-fx", "alice-main", None, ALICE_FX),           # a named account wins over the default
    ("joint", None, "EQUITY", SHARED),                    # one of several owners
    ("alice-reduce", None, None, ALICE_REDUCE),           # reduce_only binds; risk enforces it
    ("alice-main", None, AssetClass.CRYPTO, ALICE_MAIN),
])
def test_resolve_account_returns_the_callers_account(requested, default, asset_class, expected):
    assert resolve_account(requested, "alice", ALICE_SEES, default, asset_class=asset_class) is expected


@pytest.mark.parametrize("requested, default, asset_class, seen, code", [
    (None, None, None, ALICE_SEES, RejectCode.ACCOUNT_NOT_FOUND),            # nothing named, no default
    (None, "gone", None, ALICE_SEES, RejectCode.ACCOUNT_NOT_FOUND),          # default no longer exists
    (None, "bob-main", None, ALICE_SEES + [BOB_MAIN], RejectCode.ACCOUNT_NOT_OWNED),  # stale default
    ("bob-main", None, None, ALICE_SEES + [BOB_MAIN], RejectCode.ACCOUNT_NOT_OWNED),
    ("nope", "alice-main", None, ALICE_SEES, RejectCode.ACCOUNT_NOT_OWNED),  # masked not-found
    ("alice-old", None, None, ALICE_SEES, RejectCode.ACCOUNT_CLOSED),
    ("alice-halt", None, None, ALICE_SEES, RejectCode.ACCOUNT_HALTED),
    ("alice-fx", None, "EQUITY", ALICE_SEES, RejectCode.ASSET_CLASS_NOT_ENABLED),
    (None, "alice-main", AssetClass.FOREX, ALICE_SEES, RejectCode.ASSET_CLASS_NOT_ENABLED),
])
def test_resolve_account_refuses_with_a_coded_reason(requested, default, asset_class, seen, code):
    result = resolve_account(requested, "alice", seen, default, asset_class=asset_class)

    assert isinstance(result, Rejection) and result.code is code


def test_not_found_and_not_owned_are_indistinguishable_to_the_caller():
    foreign = resolve_account("bob-main", "alice", ALICE_SEES + [BOB_MAIN], None)
    missing = resolve_account("bob-main", "alice", ALICE_SEES, None)

    assert foreign == missing
    assert foreign.to_dict() == {"code": "ACCOUNT_NOT_OWNED", "detail": "account bob-main is not an account "
                                 "of this user", "text": "ACCOUNT_NOT_OWNED: account bob-main is not an "
                                 "account of this user"}


def test_admin_callers_can_tell_not_found_from_not_owned():
    foreign = resolve_account("bob-main", "alice", [BOB_MAIN], None, reveal_not_owned=True)
    missing = resolve_account("bob-main", "alice", [], None, reveal_not_owned=True)

    assert (foreign.code, missing.code) == (RejectCode.ACCOUNT_NOT_OWNED, RejectCode.ACCOUNT_NOT_FOUND)


def test_ownership_is_checked_before_status_so_nothing_about_a_foreign_account_leaks():
    bobs_closed = account(account_id="bob-old", owner_uids=["bob"], status="closed")

    result = resolve_account("bob-old", "alice", [bobs_closed], None)

    assert result.code is RejectCode.ACCOUNT_NOT_OWNED


def test_asset_class_detail_names_what_is_enabled():
    result = resolve_account("alice-fx", "alice", ALICE_SEES, None, asset_class="EQUITY")

    assert result.detail == "EQUITY is not enabled on account alice-fx (enabled: ['FOREX'])"


@pytest.mark.parametrize("requested, uid, default, field", [
    ("../x", "alice", None, "account_id"), ("a", "__x__", None, "uid"), (None, "alice", "a/b", "default_account_id"),
])
def test_resolve_account_refuses_malformed_ids_as_invalid_input(requested, uid, default, field):
    with pytest.raises(InvalidInput) as err:
        resolve_account(requested, uid, ALICE_SEES, default)

    assert err.value.field == field
