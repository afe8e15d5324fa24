"""GET /portfolio/history: the caller's own rows, newest first, cursor pagination, strict query."""

import pytest

from backend.api.history import Cursor
from tests.support.api_stack import execute_body, make_stack


@pytest.fixture
def stack(quiet_logs):
    return make_stack()


def place(stack, n, token="tok-alice", prefix="t"):
    ids = []
    account = "acct1" if token == "tok-alice" else f"acct-{token}"  # each user trades their own account
    for i in range(n):
        response = stack.post("/execute", execute_body(intent_id=f"{prefix}{i:02d}", broker_account_id=account),
                              token=token)
        assert response.status == 201
        ids.append(response.json()["intent_id"])
        stack.clock.advance(1)
    return ids


def test_pages_walk_every_row_once_newest_first(stack):
    ids = place(stack, 7)
    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": "3"} if cursor is None else {"limit": "3", "cursor": cursor}
        response = stack.get("/portfolio/history", query=query)
        assert response.status == 200
        body = response.json()
        seen += [item["history_id"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids)) and pages == 3


def test_rows_carry_the_history_fields_as_decimal_strings(stack):
    place(stack, 1)
    item = stack.get("/portfolio/history").json()["items"][0]
    assert item["price"] == "190.01" and item["tax"]["lot_method"] == "FIFO" and item["symbol"] == "AAPL"


def test_only_the_callers_own_history_is_returned(stack):
    mine = place(stack, 2, token="tok-alice", prefix="a")
    place(stack, 3, token="tok-bob", prefix="b")
    alice = stack.get("/portfolio/history").json()["items"]
    bob = stack.get("/portfolio/history", token="tok-bob").json()["items"]
    assert [i["history_id"] for i in alice] == list(reversed(mine)) and len(bob) == 3


def test_empty_history_is_an_empty_page(stack):
    assert stack.get("/portfolio/history").json() == {"items": [], "next_cursor": None}


def test_an_exact_page_has_no_next_cursor(stack):
    place(stack, 2)
    assert stack.get("/portfolio/history", query={"limit": "2"}).json()["next_cursor"] is None


def test_rows_of_the_same_instant_are_ordered_by_id(stack):
    ids = []
    for i in range(3):
        response = stack.post("/execute", execute_body(intent_id=f"same{i}"))
        assert response.status == 201
        ids.append(response.json()["intent_id"])
    first = stack.get("/portfolio/history", query={"limit": "2"}).json()
    second = stack.get("/portfolio/history", query={"limit": "2", "cursor": first["next_cursor"]}).json()
    assert [i["history_id"] for i in first["items"] + second["items"]] == sorted(ids, reverse=True)


@pytest.mark.parametrize("query, field", [
    ({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"), ({"limit": "ten"}, "limit"), ({"limit": "-1"}, "limit"),
    ({"limit": "1.5"}, "limit"), ({"limit": ""}, "limit"), ({"cursor": "!!!"}, "cursor"),
    ({"cursor": "bm90IGpzb24"}, "cursor"), ({"cursor": Cursor("x", "a/b").encode()}, "cursor"),
    ({"cursor": "e30"}, "cursor"), ({"uid": "bob"}, "uid"), ({"limit": ["1", "2"]}, "limit"),
])
def test_bad_query_parameters_are_400_naming_the_parameter(stack, query, field):
    response = stack.get("/portfolio/history", query=query)
    assert response.status == 400 and response.json()["error"]["field"] == field


def test_cursor_round_trip():
    cursor = Cursor("2026-01-05T14:30:00+00:00", "k-abc")
    assert Cursor.decode(cursor.encode()) == cursor
