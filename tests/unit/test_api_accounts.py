"""The trader's side of accounts (issue 19 item 9): GET /accounts, /accounts/{id}, its positions and
balance, on the real ApiApp + engine, the in-memory store and a ``paper`` connection (one simulated
book per account, as the venue pool builds it)."""
from __future__ import annotations

import io
import re
from datetime import datetime, timezone
from decimal import Decimal as D

import pytest

from backend import logs
from backend.domain.accounts import Account, BrokerConnection
from backend.domain.orders import BrokerError, BrokerErrorCode, OrderRequest, OrderSide
from backend.domain.assets import AssetClass
from backend.domain.wire import RESPONSE_DECIMAL_PATTERN, decimal_out
from backend.execution.broker_router import BrokerRouter
from backend.ports.accounts import AccountBinding
from tests.support.api_stack import make_stack

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def quiet():
    logs.set_stream(io.StringIO())
    yield
    logs.set_stream(None)


def _account(account_id: str, *owners: str, connection: str = "paper-1", status: str = "active") -> Account:
    return Account(account_id=account_id, connection_id=connection, venue_account_id=f"book-{account_id}",
                   owner_uids=owners, status=status, asset_classes=["EQUITY", "CRYPTO"], created_at=T0, updated_at=T0)


@pytest.fixture
def stack():
    s = make_stack(paper=True)
    s.verifier.add("tok-aud", uid="aud", tenant_id="acme", role="auditor")
    store = s.store
    store.put_connection("acme", BrokerConnection(connection_id="paper-1", venue="paper", environment="paper",
                                                  credentials_ref=None, created_at=T0, updated_at=T0))
    store.put_account("acme", _account("a-alice", "alice"))
    store.put_account("acme", _account("a-bob", "bob"))
    store.put_account("acme", _account("a-joint", "alice", "bob"))
    store.put_account("acme", _account("a-old", "alice", status="closed"))
    store.put_connection("globex", BrokerConnection(connection_id="paper-1", venue="paper", environment="paper",
                                                    credentials_ref=None, created_at=T0, updated_at=T0))
    store.put_account("globex", _account("a-zed", "zed"))
    store.set_default_account("acme", "alice", "a-alice", at=T0)
    store.set_default_account("acme", "bob", "a-joint", at=T0)  # bob's default is the joint account
    store.set_default_account("globex", "zed", "a-zed", at=T0)
    return s


def trade(stack, token: str, symbol: str, side: str, qty: str, account: str | None = None, key: str = "") -> dict:
    body = {"strategy_id": "s1", "symbol": symbol, "side": side, "qty": qty}
    if account:
        body["broker_account_id"] = account
    key = key or re.sub(r"[^A-Za-z0-9_-]", "_", f"{token}-{symbol}-{side}-{qty}-{account}")
    response = stack.post("/execute", body, token=token, headers={"Idempotency-Key": key})
    assert response.status == 201 and response.json()["status"] == "placed", response.json()
    return response.json()


def venue_of(stack, tenant: str, account_id: str):
    account = stack.store.get_account(tenant, account_id)
    binding = AccountBinding.of(account, stack.store.get_connection(tenant, account.connection_id))
    return stack.engine.venue_pool.router_for(tenant, binding).venues()[0]


def ids(body: dict) -> list[str]:
    return [item["account_id"] for item in body["items"]]


# ------------------------------------------------------------------------------------ listing


def test_a_trader_lists_own_accounts_never_another_users(stack):
    alice = stack.get("/accounts").json()
    bob = stack.get("/accounts", token="tok-bob").json()
    zed = stack.get("/accounts", token="tok-zed").json()

    assert ids(alice) == ["a-alice", "a-joint", "a-old"] and alice["next_cursor"] is None
    assert ids(bob) == ["a-bob", "a-joint"] and ids(zed) == ["a-zed"]
    by_id = {item["account_id"]: item for item in alice["items"]}
    assert by_id["a-alice"]["is_default"] is True and by_id["a-alice"]["default_for"] == ["alice"]
    # the joint account is bob's default: alice is not told about bob's default
    assert by_id["a-joint"]["is_default"] is False and by_id["a-joint"]["default_for"] == []
    assert {i["account_id"]: i["default_for"] for i in bob["items"]}["a-joint"] == ["bob"]
    assert by_id["a-alice"] == {**by_id["a-alice"], "venue": "paper", "connection_id": "paper-1",
                                "venue_account_id": "book-a-alice", "status": "active",
                                "asset_classes": ["CRYPTO", "EQUITY"], "limits": None, "owner_uids": ["alice"]}
    assert by_id["a-old"]["status"] == "closed"


def test_a_trader_may_not_list_another_members_accounts(stack):
    refused = stack.get("/accounts", query={"uid": ["bob"]})
    own = stack.get("/accounts", query={"uid": ["alice"]})

    assert refused.status == 403 and refused.json()["error"]["field"] == "uid"
    assert own.status == 200 and ids(own.json()) == ["a-alice", "a-joint", "a-old"]


def test_an_admin_or_auditor_lists_every_account_or_one_members(stack):
    every = stack.get("/accounts", token="tok-admin").json()
    bobs = stack.get("/accounts", token="tok-aud", query={"uid": ["bob"]}).json()

    assert ids(every) == ["a-alice", "a-bob", "a-joint", "a-old"]  # the tenant's only, never globex's
    assert {i["account_id"]: (i["is_default"], i["default_for"]) for i in every["items"]} == {
        "a-alice": (None, ["alice"]), "a-bob": (None, []), "a-joint": (None, ["bob"]), "a-old": (None, [])}
    assert ids(bobs) == ["a-bob", "a-joint"]
    assert [i["is_default"] for i in bobs["items"]] == [False, True]


def test_the_list_pages_with_a_cursor(stack):
    first = stack.get("/accounts", token="tok-admin", query={"limit": ["3"]}).json()
    second = stack.get("/accounts", token="tok-admin", query={"limit": ["3"], "cursor": [first["next_cursor"]]}).json()

    assert ids(first) == ["a-alice", "a-bob", "a-joint"] and ids(second) == ["a-old"]
    assert second["next_cursor"] is None
    assert stack.get("/accounts", query={"limit": ["0"]}).status == 400
    assert stack.get("/accounts", query={"cursor": ["not-a-cursor!"]}).status == 400


# ---------------------------------------------------------------------- one account: access


@pytest.mark.parametrize("suffix", ["", "/positions", "/balance"])
def test_foreign_and_unknown_accounts_get_the_same_403(stack, suffix):
    foreign = stack.get(f"/accounts/a-bob{suffix}")
    unknown = stack.get(f"/accounts/a-nope{suffix}")
    other_tenant = stack.get(f"/accounts/a-alice{suffix}", token="tok-zed")

    for response, account_id in ((foreign, "a-bob"), (unknown, "a-nope"), (other_tenant, "a-alice")):
        assert response.status == 403
        error = response.json()["error"]
        assert (error["code"], error["field"], error["reason"]) == (
            "ACCOUNT_NOT_OWNED", "account_id", "not an account of the caller")
        assert error["message"] == f"account {account_id} is not an account of the caller"


def test_an_owner_reads_their_account_and_a_co_owner_the_joint_one(stack):
    own = stack.get("/accounts/a-alice")
    joint = stack.get("/accounts/a-joint", token="tok-bob")

    assert own.status == 200 and own.json()["account"]["is_default"] is True
    assert joint.status == 200 and joint.json()["account"]["default_for"] == ["bob"]


def test_an_admin_reads_any_account_of_the_tenant_and_unknown_is_404(stack):
    assert stack.get("/accounts/a-bob", token="tok-admin").json()["account"]["owner_uids"] == ["bob"]
    assert stack.get("/accounts/a-nope", token="tok-admin").status == 404
    assert stack.get("/accounts/a-zed", token="tok-admin").status == 404  # another tenant's id is not here


def test_a_suspended_admin_is_refused(stack):
    path = "tenants/acme/members/carol"
    stack.store.docs[path] = {"uid": "carol", "role": "tenant_admin", "status": "suspended",
                              "default_account_id": None, "email": None, "created_at": T0, "updated_at": T0}

    response = stack.get("/accounts", token="tok-admin")

    assert response.status == 403 and response.json()["error"]["code"] == "MEMBER_SUSPENDED"


def test_bad_ids_and_query_parameters_are_400(stack):
    assert stack.get("/accounts/__x__").status == 400
    refused = stack.get("/accounts/a-alice/positions", query={"fresh": ["1"]})
    assert refused.status == 400 and refused.json()["error"]["field"] == "fresh"
    assert stack.request("POST", "/accounts/a-alice/positions", {}).status == 405


# -------------------------------------------------------------------- positions and balance


def test_positions_after_trades_equal_the_ledger_view_per_account(stack):
    trade(stack, "tok-alice", "AAPL", "buy", "10")  # alice's default: a-alice
    trade(stack, "tok-alice", "AAPL", "sell", "4")
    trade(stack, "tok-alice", "BTC/USD", "buy", "0.125")
    trade(stack, "tok-bob", "AAPL", "sell", "3")  # bob's default: the joint account
    trade(stack, "tok-alice", "AAPL", "buy", "2", account="a-joint")

    alice = stack.get("/accounts/a-alice/positions").json()
    joint = stack.get("/accounts/a-joint/positions", token="tok-bob").json()

    assert (alice["account_id"], alice["venue"], alice["venue_account_id"]) == ("a-alice", "paper", "book-a-alice")
    assert alice["in_balance"] is True and alice["differences"] == 0 and alice["ledger_fill_rows"] == 3
    rows = {row["symbol"]: row for row in alice["positions"]}
    assert sorted(rows) == ["AAPL", "BTC/USD"]
    aapl = rows["AAPL"]
    assert D(aapl["qty"]) == D(6) and aapl["qty"] == aapl["ledger_qty"] and D(aapl["difference"]) == 0
    btc = rows["BTC/USD"]
    assert D(btc["qty"]) == D("0.125") == D(btc["ledger_qty"])
    # the venue's own numbers, as exact strings
    venue = {p.symbol: p for p in venue_of(stack, "acme", "a-alice").get_positions()}
    assert aapl["qty"] == decimal_out(venue["AAPL"].qty, "quantity")
    assert aapl["avg_entry_price"] == decimal_out(venue["AAPL"].avg_entry_price, "price")
    # the venue's valuation (qty x mid x multiplier on the paper venue), never recomputed here
    assert venue["AAPL"].market_value is not None and D(aapl["market_value"]) == venue["AAPL"].market_value
    for row in alice["positions"]:
        for name in ("qty", "ledger_qty", "difference", "avg_entry_price"):
            assert re.fullmatch(RESPONSE_DECIMAL_PATTERN, row[name]), (name, row[name])
    # the joint account holds only its own trades: -3 + 2
    assert [(r["symbol"], D(r["qty"]), D(r["ledger_qty"])) for r in joint["positions"]] == [("AAPL", D(-1), D(-1))]
    assert stack.get("/accounts/a-bob/positions", token="tok-bob").json()["positions"] == []


def test_a_difference_between_venue_and_ledger_is_shown_not_hidden(stack):
    trade(stack, "tok-alice", "AAPL", "buy", "5")
    venue = venue_of(stack, "acme", "a-alice")
    venue.submit_order(OrderRequest(client_order_id="outside-1", symbol="AAPL", asset_class=AssetClass.EQUITY,
                                    side=OrderSide.BUY, qty=D(2)))  # traded at the venue, never booked

    body = stack.get("/accounts/a-alice/positions").json()

    row = body["positions"][0]
    assert (D(row["qty"]), D(row["ledger_qty"]), D(row["difference"])) == (D(7), D(5), D(2))
    assert body["in_balance"] is False and body["differences"] == 1


def test_a_symbol_only_in_the_ledger_is_listed_with_venue_qty_zero(stack):
    trade(stack, "tok-alice", "AAPL", "buy", "5")
    venue = venue_of(stack, "acme", "a-alice")
    venue.close_position("AAPL", AssetClass.EQUITY)  # flattened at the venue behind the ledger's back

    row = stack.get("/accounts/a-alice/positions").json()["positions"][0]

    assert (row["symbol"], row["qty"], D(row["ledger_qty"]), D(row["difference"])) == ("AAPL", "0", D(5), D(-5))
    assert row["venue_name"] is None and row["avg_entry_price"] is None


def test_balance_is_the_venues_cash_equity_and_buying_power_exactly(stack):
    trade(stack, "tok-alice", "AAPL", "buy", "3")

    body = stack.get("/accounts/a-alice/balance").json()

    figures = venue_of(stack, "acme", "a-alice").get_account()
    assert body["balances"] == [{"venue_name": "paper", "currency": figures.currency,
                                 "cash": decimal_out(figures.cash, "money"),
                                 "equity": decimal_out(figures.equity, "money"),
                                 "buying_power": decimal_out(figures.buying_power, "money")}]
    assert body["in_balance"] is True and [D(r["ledger_qty"]) for r in body["ledger_positions"]] == [D(3)]
    untouched = stack.get("/accounts/a-bob/balance", token="tok-bob").json()["balances"][0]
    assert D(untouched["cash"]) > D(body["balances"][0]["cash"])  # bob's book paid for nothing


def test_an_admin_and_an_auditor_read_a_members_positions(stack):
    trade(stack, "tok-bob", "AAPL", "sell", "3")

    for token in ("tok-admin", "tok-aud"):
        rows = stack.get("/accounts/a-joint/positions", token=token).json()["positions"]
        assert [(r["symbol"], D(r["qty"])) for r in rows] == [("AAPL", D(-3))]


def test_nothing_is_cached_between_requests(stack):
    trade(stack, "tok-alice", "AAPL", "buy", "1")
    first = stack.get("/accounts/a-alice/positions").json()["positions"][0]["qty"]
    trade(stack, "tok-alice", "AAPL", "buy", "2")
    second = stack.get("/accounts/a-alice/positions").json()["positions"][0]["qty"]

    assert (D(first), D(second)) == (D(1), D(3))


def test_reads_write_nothing(stack):
    trade(stack, "tok-alice", "AAPL", "buy", "1")
    before = repr(sorted(stack.store.docs.items(), key=lambda kv: kv[0]))
    for path in ("/accounts", "/accounts/a-alice", "/accounts/a-alice/positions", "/accounts/a-alice/balance"):
        assert stack.get(path).status == 200
    assert repr(sorted(stack.store.docs.items(), key=lambda kv: kv[0])) == before


# ------------------------------------------------------------------------------ venue failures


class _FailingVenue:
    name = "failing"

    def __init__(self, code: BrokerErrorCode, retry_after: float | None = None):
        self.code, self.retry_after = code, retry_after

    def supports(self, asset_class) -> bool:  # noqa: ANN001
        return True

    def get_positions(self):
        raise BrokerError(self.code, "venue says no (secret-free)", retry_after=self.retry_after)

    get_account = get_positions


@pytest.mark.parametrize("code, status, api_code, retry", [
    (BrokerErrorCode.UNAVAILABLE, 503, "BROKER_UNAVAILABLE", "5"),
    (BrokerErrorCode.RATE_LIMITED, 429, "BROKER_RATE_LIMITED", "7"),
    (BrokerErrorCode.NOT_FOUND, 502, "VENUE_ERROR", None),
])
@pytest.mark.parametrize("suffix", ["/positions", "/balance"])
def test_a_venue_failure_is_coded_with_retry_after(stack, monkeypatch, code, status, api_code, retry, suffix):
    venue = _FailingVenue(code, retry_after=7 if code is BrokerErrorCode.RATE_LIMITED else None)
    monkeypatch.setattr(stack.engine.venue_pool, "router_for", lambda tenant, binding: BrokerRouter.single(venue))

    response = stack.get(f"/accounts/a-alice{suffix}")

    assert response.status == status and response.json()["error"]["code"] == api_code
    assert response.headers.get("Retry-After") == retry
    assert "venue says no" not in str(response.json())  # only the venue's code, never its text


def test_a_missing_connection_is_503_venue_unavailable(stack):
    stack.store.put_account("acme", _account("a-lost", "alice", connection="gone"))

    response = stack.get("/accounts/a-lost/positions")

    assert response.status == 503 and response.json()["error"]["code"] == "VENUE_UNAVAILABLE"
    assert response.headers["Retry-After"] == "30"
    assert stack.get("/accounts/a-lost").json()["account"]["venue"] is None  # the listing still answers
