"""Issue 12 over real HTTP: accounts are real, every order lands in the caller's own account.

Stack: ``functions-framework --target api`` (functions/main.py) with the deployed default
(``EXEC_ACCOUNTS`` unset = strict: only admin-written account documents count), the official
Firestore emulator, firebase-tools' Auth emulator with real ID tokens, and the local
Alpaca-compatible server's Broker API routes driven by the real alpaca-py ``BrokerClient``. The
connection's credentials live in a secret source (an environment variable of the function holding
a JSON object) and only its reference is in Firestore; the test checks that the secret never shows
up in any document, log line, error body or the OpenAPI document. The shared set-up (the venue and
server fixtures, sign-up, connection / account / member documents) is tests/support/accounts_stack.py.
"""
from __future__ import annotations

import json
import uuid
from decimal import Decimal as D

import pytest

from tests.support.accounts_stack import (bearer, broker_api_account, broker_api_connection, broker_api_fixtures,
                                          member_doc, sign_up)
from tests.support.api_stack import http_call

pytestmark = pytest.mark.slow

KEY, SECRET = "PKISSUE12KEY0001", "issue12-broker-secret-Vb3-never-shown"
venue, server = broker_api_fixtures(KEY, SECRET)  # module-scoped: the local Alpaca server, the function


@pytest.fixture
def world(db, auth, venue):
    """Two tenants; acme has a Broker API connection with accounts for u1 and u2 (and a joint one),
    beta one for its user. Documents written with admin credentials, as the admin API would."""

    class World:
        def __init__(self) -> None:
            self.tokens: dict[str, str] = {}
            self.uids: dict[str, str] = {}
            self.venue_ids: dict[tuple[str, str], str] = {}

        def user(self, name: str, tenant: str) -> str:
            uid, self.tokens[name] = sign_up(auth, name, tenant, "trader")
            self.uids[name] = uid
            return uid

        def connection(self, tenant: str) -> None:
            db.document(f"tenants/{tenant}/broker_connections/broker-1").set(broker_api_connection(venue.url).to_dict())

        def account(self, tenant: str, account_id: str, *owners: str, status: str = "active",
                    default: bool = True) -> str:
            venue_id = venue.open_account(str(uuid.uuid4()))
            self.venue_ids[(tenant, account_id)] = venue_id
            uids = [self.uids[o] for o in owners]
            account = broker_api_account(account_id, venue_id, uids, status)
            db.document(f"tenants/{tenant}/accounts/{account_id}").set(account.to_dict())
            if default:
                for uid in uids:
                    db.document(f"tenants/{tenant}/members/{uid}").set(member_doc(uid, "trader", account_id))
            return venue_id

        def net(self, tenant: str, account_id: str, symbol: str = "SPY") -> D:
            return venue.venue.net_position(symbol, account_id=self.venue_ids[(tenant, account_id)])

        def ledger(self, tenant: str) -> list[dict]:
            return [d.to_dict() for d in db.collection(f"tenants/{tenant}/ledger_trades").stream()]

    w = World()
    for name, tenant in (("u1", "acme"), ("u2", "acme"), ("u9", "beta")):
        w.user(name, tenant)
    w.connection("acme")
    w.connection("beta")
    w.account("acme", "a1", "u1")
    w.account("acme", "a2", "u2")
    w.account("beta", "a1", "u9")  # the same account id in another tenant
    return w


class Reply:
    def __init__(self, status: int, body) -> None:
        self.status, self.body = status, body

    def json(self):
        return self.body


def post(server, world, who: str, path: str, body: dict, key: str | None = None) -> Reply:
    status, _, payload = http_call("POST", server.url + path, body, bearer(world.tokens[who], key))
    return Reply(status, payload)


def order(symbol="SPY", side="buy", qty="10", account: str | None = None) -> dict:
    body = {"strategy_id": "s1", "symbol": symbol, "side": side, "qty": qty}
    if account is not None:
        body["broker_account_id"] = account
    return body


def test_two_users_and_two_tenants_trade_one_symbol_into_their_own_venue_accounts(server, world):
    assert post(server, world, "u1", "/execute", order(qty="30")).status == 201  # u1's default: a1
    assert post(server, world, "u2", "/execute", order(side="sell", qty="20", account="a2")).status == 201
    assert post(server, world, "u9", "/execute", order(qty="7", account="a1")).status == 201  # beta's a1

    assert world.net("acme", "a1") == D(30) and world.net("acme", "a2") == D(-20) and world.net("beta", "a1") == D(7)
    for tenant, account, qty in (("acme", "a1", D(30)), ("acme", "a2", D(-20)), ("beta", "a1", D(7))):
        rows = [r for r in world.ledger(tenant) if r["broker_account_id"] == account and r["status"] == "placed"]
        net = sum(D(r["filled_qty"]) * (1 if r["side"] == "buy" else -1) for r in rows)
        assert net == qty  # ledger net position = venue position, per account
        assert {r["venue_account_id"] for r in rows} == {world.venue_ids[(tenant, account)]}


def test_the_label_bypass_is_refused_with_a_coded_reason_and_nothing_written(server, world):
    responses = [post(server, world, "u1", "/execute", order(qty="100", account=f"acct{i}")) for i in range(5)]
    assert {r.status for r in responses} == {403}
    assert {r.json()["error"]["code"] for r in responses} == {"ACCOUNT_NOT_OWNED"}
    assert responses[0].json()["error"]["field"] == "broker_account_id"
    assert world.ledger("acme") == [] and world.net("acme", "a1") == 0


def test_a_user_cannot_trade_another_users_account_single_signal_or_group(server, world):
    stolen = post(server, world, "u2", "/execute", order(account="a1"))
    assert stolen.status == 403 and stolen.json()["error"]["code"] == "ACCOUNT_NOT_OWNED"
    signal = {"strategy_id": "s1", "broker_account_id": "a1", "signal_type": "BUY", "symbol": "SPY", "qty": "1",
              "confidence": 0.9, "market_data": {"bid": "100.00", "ask": "100.01"}}
    assert post(server, world, "u2", "/signals", signal).status == 403
    group = {"strategy_id": "pair", "broker_account_id": "a1", "max_group_slippage_pips": 10.0,
             "allow_partial_fills": False,
             "legs": [{"leg_id": "leg_001", "symbol": "SPY", "direction": 1, "units": 5, "asset_class": "EQUITY"},
                      {"leg_id": "leg_002", "symbol": "MSFT", "direction": -1, "units": 5, "asset_class": "EQUITY"}],
             "rpm_output": {"decision_id": "rpm-1", "approved": True, "expires_at": "2099-01-01T00:00:00+00:00",
                            "approved_legs": {"leg_001": 5, "leg_002": 5}}}
    refused = post(server, world, "u2", "/execute/multi-leg", group)
    assert refused.status == 403 and refused.json()["error"]["code"] == "ACCOUNT_NOT_OWNED", refused.json()
    # another tenant's user naming acme's account id trades nothing of acme's
    assert post(server, world, "u9", "/execute", order(account="a2")).status == 403
    assert world.ledger("acme") == [] and world.net("acme", "a1") == 0 and world.net("acme", "a2") == 0


def test_a_closed_account_is_400_and_halted_is_400(server, world, db):
    world.account("acme", "old", "u1", status="closed", default=False)
    world.account("acme", "paused", "u1", status="halted", default=False)
    closed = post(server, world, "u1", "/execute", order(account="old"))
    halted = post(server, world, "u1", "/execute", order(account="paused"))
    assert (closed.status, closed.json()["error"]["code"]) == (400, "ACCOUNT_CLOSED")
    assert (halted.status, halted.json()["error"]["code"]) == (400, "ACCOUNT_HALTED")
    assert world.ledger("acme") == []


def test_the_connection_secret_is_in_no_document_log_error_or_openapi(server, world, db):
    post(server, world, "u1", "/execute", order(qty="1"))
    post(server, world, "u2", "/execute", order(account="a1"))  # an error body

    def walk(collection):
        for ref in collection.list_documents():  # parents that hold only subcollections too
            snapshot = ref.get()
            if snapshot.exists:
                yield json.dumps(snapshot.to_dict(), default=str)
            for sub in ref.collections():
                yield from walk(sub)

    dumped = "\n".join(text for top in db.collections() for text in walk(top))
    assert "broker-1" in dumped and SECRET not in dumped and KEY not in dumped
    assert SECRET not in server.log_tail(100_000) and KEY not in server.log_tail(100_000)
    _, _, openapi = http_call("GET", server.url + "/openapi.json", None, {})
    assert "paths" in openapi and SECRET not in json.dumps(openapi) and KEY not in json.dumps(openapi)
