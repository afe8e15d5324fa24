"""Issue 19 item 9 over real HTTP: a user's accounts, their positions and balances from the venue,
with the ledger's view beside them.

Stack as tests/integration/test_issue12_accounts.py: ``functions-framework --target api``
(functions/main.py, ``EXEC_ACCOUNTS`` strict), the official Firestore emulator, the Auth emulator
with real ID tokens, and the local Alpaca-compatible server's Broker API (one book per account)
driven by alpaca-py's ``BrokerClient`` through an ``alpaca_broker`` connection whose credentials
are in a secret source (only the reference is in Firestore). The shared set-up (the venue and server
fixtures, sign-up, connection / account / member documents) is tests/support/accounts_stack.py.
"""
from __future__ import annotations

import json
import re
import uuid
from decimal import Decimal as D

import pytest

from backend.domain.wire import RESPONSE_DECIMAL_PATTERN
from tests.support.accounts_stack import (bearer, broker_api_account, broker_api_connection, broker_api_fixtures,
                                          member_doc, sign_up)
from tests.support.api_stack import http_call

pytestmark = pytest.mark.slow

KEY, SECRET = "PKACCOUNTSHTTP01", "accounts-http-secret-Qz8-never-shown"
venue, server = broker_api_fixtures(KEY, SECRET)  # module-scoped: the local Alpaca server, the function


@pytest.fixture
def world(db, auth, venue):
    """acme: u1 owns a1, u2 owns a2 (both on one Broker API connection), adm is the tenant_admin."""

    class World:
        def __init__(self) -> None:
            self.tokens: dict[str, str] = {}
            self.uids: dict[str, str] = {}
            self.venue_ids: dict[str, str] = {}

        def user(self, name: str, role: str = "trader") -> str:
            uid, self.tokens[name] = sign_up(auth, name, "acme", role)
            self.uids[name] = uid
            db.document(f"tenants/acme/members/{uid}").set(member_doc(uid, role, None))
            return uid

        def account(self, account_id: str, owner: str) -> str:
            venue_id = venue.open_account(str(uuid.uuid4()))
            self.venue_ids[account_id] = venue_id
            uid = self.uids[owner]
            account = broker_api_account(account_id, venue_id, [uid])
            db.document(f"tenants/acme/accounts/{account_id}").set(account.to_dict())
            db.document(f"tenants/acme/members/{uid}").update({"default_account_id": account_id})
            return venue_id

    w = World()
    for name in ("u1", "u2"):
        w.user(name)
    w.user("adm", role="tenant_admin")
    db.document("tenants/acme/broker_connections/broker-1").set(broker_api_connection(venue.url).to_dict())
    w.account("a1", "u1")
    w.account("a2", "u2")
    return w


def call(server, world, who: str, method: str, path: str, body: dict | None = None, key: str | None = None):
    return http_call(method, server.url + path, body, bearer(world.tokens[who], key))


def place(server, world, who: str, symbol: str, side: str, qty: str, key: str) -> None:
    status, _, body = call(server, world, who, "POST", "/execute",
                           {"strategy_id": "s1", "symbol": symbol, "side": side, "qty": qty}, key=key)
    assert status == 201 and body["status"] == "placed", body


def test_two_users_read_their_own_positions_and_balances_over_http(server, world, venue):
    place(server, world, "u1", "SPY", "buy", "12", "k1")
    place(server, world, "u1", "SPY", "sell", "5", "k2")
    place(server, world, "u2", "SPY", "sell", "4", "k3")  # a short in the other account, same symbol

    status, _, listed = call(server, world, "u1", "GET", "/accounts")
    assert status == 200 and [(i["account_id"], i["venue"], i["is_default"]) for i in listed["items"]] == [
        ("a1", "alpaca_broker", True)]

    for who, account_id, qty in (("u1", "a1", D(7)), ("u2", "a2", D(-4))):
        status, headers, body = call(server, world, who, "GET", f"/accounts/{account_id}/positions")
        assert status == 200, body
        assert (body["venue"], body["venue_account_id"]) == ("alpaca_broker", world.venue_ids[account_id])
        assert body["in_balance"] is True and headers.get("Cache-Control") == "no-store"
        [row] = body["positions"]
        venue_position = venue.venue.get_position("SPY", account_id=world.venue_ids[account_id])
        assert row["symbol"] == "SPY" and D(row["qty"]) == qty == D(row["ledger_qty"]) == venue_position.qty
        assert D(row["avg_entry_price"]) == venue_position.avg_entry_price and D(row["difference"]) == 0
        for name in ("qty", "ledger_qty", "difference", "avg_entry_price"):
            assert isinstance(row[name], str) and re.fullmatch(RESPONSE_DECIMAL_PATTERN, row[name]), row

        status, _, balance = call(server, world, who, "GET", f"/accounts/{account_id}/balance")
        assert status == 200, balance
        figures = venue.venue.get_account(account_id=world.venue_ids[account_id])
        [entry] = balance["balances"]
        assert (D(entry["cash"]), D(entry["equity"]), D(entry["buying_power"])) == (
            figures.cash, figures.equity, figures.buying_power)
        assert all(isinstance(entry[k], str) for k in ("cash", "equity", "buying_power"))
        assert [(r["symbol"], D(r["ledger_qty"])) for r in balance["ledger_positions"]] == [("SPY", qty)]


def test_a_user_cannot_read_another_users_account_and_unknown_looks_the_same(server, world):
    answers = [call(server, world, "u2", "GET", path) for path in
               ("/accounts/a1", "/accounts/a1/positions", "/accounts/a1/balance", "/accounts/zz9",
                "/accounts/zz9/positions")]
    assert {status for status, _, _ in answers} == {403}
    assert {body["error"]["code"] for _, _, body in answers} == {"ACCOUNT_NOT_OWNED"}
    refused = call(server, world, "u2", "GET", "/accounts?uid=" + world.uids["u1"])
    assert refused[0] == 403


def test_the_tenant_admin_lists_a_members_accounts_and_reads_their_positions(server, world):
    place(server, world, "u2", "SPY", "buy", "3", "k9")

    status, _, every = call(server, world, "adm", "GET", "/accounts")
    _, _, one = call(server, world, "adm", "GET", "/accounts?uid=" + world.uids["u2"])
    _, _, positions = call(server, world, "adm", "GET", "/accounts/a2/positions")

    assert status == 200 and [i["account_id"] for i in every["items"]] == ["a1", "a2"]
    assert [(i["account_id"], i["is_default"]) for i in one["items"]] == [("a2", True)]
    assert [(r["symbol"], D(r["qty"])) for r in positions["positions"]] == [("SPY", D(3))]


def test_a_venue_that_is_down_is_503_with_retry_after_and_nothing_is_cached(server, world, venue):
    place(server, world, "u1", "SPY", "buy", "2", "k5")
    venue.inject("GET /v1/trading/accounts/*/positions", "503", times=None)
    try:
        status, headers, body = call(server, world, "u1", "GET", "/accounts/a1/positions")
    finally:
        venue.clear_faults()
    assert status == 503 and body["error"]["code"] == "BROKER_UNAVAILABLE" and int(headers["Retry-After"]) >= 1
    assert SECRET not in json.dumps(body) and KEY not in json.dumps(body)

    status, _, body = call(server, world, "u1", "GET", "/accounts/a1/positions")  # up again: read afresh
    assert status == 200 and [D(r["qty"]) for r in body["positions"]] == [D(2)]
    assert SECRET not in server.log_tail(100_000) and KEY not in server.log_tail(100_000)
