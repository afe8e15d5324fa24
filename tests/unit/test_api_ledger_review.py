"""GET /tenants/{tenant_id}/ledger: a tenant admin's review of the ledger; filters, the indexed
combinations, cursor paging (also while rows are added), the streamed CSV export and access."""
import csv
import io
import json
from pathlib import Path

import pytest

from backend.api import ledger_review
from backend.api.history import Cursor
from backend.api.http import StreamingResponse
from tests.support.api_stack import execute_body, make_stack

ROOT = Path(__file__).resolve().parents[2]
LEDGER = "/tenants/acme/ledger"


@pytest.fixture
def stack(quiet_logs):
    stack = make_stack()
    stack.verifier.add("tok-globex-admin", uid="gus", tenant_id="globex", role="tenant_admin")
    return stack


_BODY_ID: dict[str, str] = {}  # stored intent id (per user, derived from the body's) -> the body's id


def run(stack, token, **body):
    response = stack.post("/execute", execute_body(**body), token=token)
    assert response.status == 201, response.json()
    if "intent_id" in body:
        _BODY_ID[response.json()["intent_id"]] = body["intent_id"]
    return response.json()


@pytest.fixture
def session(stack):
    """A mixed session over three UTC days (2026-01-05 .. 07), two users, two strategies, plus
    another tenant's row. Returns {intent_id: status}."""
    plan = [
        ("tok-alice", dict(intent_id="a1", strategy_id="s1", symbol="AAPL")),           # placed
        ("tok-alice", dict(intent_id="a2", strategy_id="s1", symbol="WIDE")),           # downgraded
        ("tok-bob", dict(intent_id="b1", strategy_id="s2", symbol="SPY")),              # placed
        ("tok-bob", dict(intent_id="b2", strategy_id="s2", symbol="NOQUOTE")),          # rejected
        ("tok-alice", dict(intent_id="a3", strategy_id="s2", symbol="AAPL", side="sell", qty="4")),  # placed
        ("tok-bob", dict(intent_id="b3", strategy_id="s1", symbol="AAPL", qty="9999999")),  # rejected: limit
        ("tok-zed", dict(intent_id="z1", strategy_id="s1", symbol="AAPL")),             # another tenant
    ]
    out = {}
    for index, (token, body) in enumerate(plan):
        out[body["intent_id"]] = run(stack, token, **body)["status"]
        stack.clock.advance(3600 * 20 if index % 2 else 60)
    return out


def ids(response):
    assert response.status == 200, response.json()
    return [_BODY_ID.get(row["ledger_id"], row["ledger_id"]) for row in response.json()["items"]]


def admin_get(stack, **query):
    return stack.get(LEDGER, token="tok-admin", query=query)


def put_row(stack, row_id, created_at, tenant="acme", **fields):
    row = {"trade_id": row_id, "tenant_id": tenant, "uid": "alice", "strategy_id": "s1", "symbol": "AAPL",
           "status": "placed", "kind": "order", "created_at": created_at, "trade_date": created_at[:10], **fields}
    stack.store.set_doc(f"tenants/{tenant}/ledger_trades/{row_id}", row)


# ---------------------------------------------------------------------------------- filters


def test_without_filters_every_row_of_the_tenant_newest_first(stack, session):
    assert session == {"a1": "placed", "a2": "downgraded", "b1": "placed", "b2": "rejected", "a3": "placed",
                       "b3": "rejected", "z1": "placed"}
    assert ids(admin_get(stack)) == ["b3", "a3", "b2", "b1", "a2", "a1"]


@pytest.mark.parametrize("query, expected", [
    ({"symbol": "AAPL"}, ["b3", "a3", "a1"]),
    ({"symbol": "aapl"}, ["b3", "a3", "a1"]),
    ({"strategy_id": "s2"}, ["a3", "b2", "b1"]),
    ({"status": "downgraded"}, ["a2"]),
    ({"status": "rejected"}, ["b3", "b2"]),
    ({"status": "placed"}, ["a3", "b1", "a1"]),
    ({"uid": "alice"}, ["a3", "a2", "a1"]),
    ({"status": "rejected", "uid": "bob"}, ["b3", "b2"]),
    ({"status": "placed", "symbol": "AAPL"}, ["a3", "a1"]),
    ({"status": "placed", "strategy_id": "s1"}, ["a1"]),
    ({"from": "2026-01-06"}, ["b3", "a3", "b2", "b1"]),
    ({"to": "2026-01-05"}, ["a2", "a1"]),
    ({"from": "2026-01-06", "to": "2026-01-06"}, ["b2", "b1"]),
    ({"from": "2026-01-06", "to": "2026-01-06", "status": "rejected"}, ["b2"]),
    ({"from": "2026-02-01"}, []),
    ({"uid": "zed"}, []),
])
def test_each_filter_selects_its_rows(stack, session, query, expected):
    assert ids(admin_get(stack, **query)) == expected


def test_rows_carry_the_ledger_fields_and_the_document_id(stack, session):
    row = admin_get(stack, status="downgraded").json()["items"][0]
    assert _BODY_ID[row["ledger_id"]] == "a2" and row["reason"].startswith("Spread 0.40%") and row["quote"]["bid"] == "99.80"


@pytest.mark.parametrize("query, field", [
    ({"symbol": "AAPL", "uid": "alice"}, "uid"),
    ({"strategy_id": "s1", "symbol": "AAPL"}, "symbol"),
    ({"status": "placed", "symbol": "AAPL", "uid": "alice"}, "uid"),
])
def test_filter_combinations_without_an_index_are_a_clear_400(stack, query, field):
    response = admin_get(stack, **query)
    error = response.json()["error"]
    assert response.status == 400 and error["code"] == "UNSUPPORTED_FILTER" and error["field"] == field
    assert "no index" in error["reason"]


def test_every_indexed_combination_has_its_composite_index():
    indexes = json.loads((ROOT / "firestore.indexes.json").read_text())["indexes"]
    ledger = {frozenset(f["fieldPath"] for f in ix["fields"][:-1]) for ix in indexes
              if ix["collectionGroup"] == "ledger_trades" and ix["queryScope"] == "COLLECTION"
              and ix["fields"][-1] == {"fieldPath": "created_at", "order": "DESCENDING"}
              and all(f["order"] == "ASCENDING" for f in ix["fields"][:-1])}
    needed = {combo for combo in ledger_review.INDEXED_FILTERS if combo}  # none: the single-field index
    assert needed <= ledger and len(needed) == 9


# ------------------------------------------------------------------------------- pagination


def walk(stack, between=None, **query):
    seen, cursor, pages = [], None, 0
    while True:
        params = dict(query) if cursor is None else {**query, "cursor": cursor}
        body = admin_get(stack, **params).json()
        seen += [row["ledger_id"] for row in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return seen, pages
        if between is not None:
            between(pages)


def seed_rows(stack, n=23):
    """Rows over a few instants, several sharing one created_at (ties broken by id)."""
    expected = []
    for i in range(n):
        created = f"2026-01-05T10:{i // 4:02d}:00+00:00"
        put_row(stack, f"r{i:03d}", created, status="rejected" if i % 3 == 0 else "placed")
        expected.append((created, f"r{i:03d}"))
    return [row_id for _, row_id in sorted(expected, reverse=True)]


def test_pages_walk_every_row_once_in_order(stack):
    expected = seed_rows(stack)
    seen, pages = walk(stack, limit="4")
    assert seen == expected and pages == 6


def test_paging_while_new_rows_are_added_has_no_gaps_or_repeats(stack):
    expected = seed_rows(stack)
    added = []

    def add_rows(page):
        for j in range(3):  # the ledger only gets rows created now, i.e. newer than any cursor
            run(stack, "tok-alice", intent_id=f"new{page}{j}")
            added.append(f"new{page}{j}")
        stack.clock.advance(1)

    seen, _ = walk(stack, between=add_rows, limit="5")
    assert seen == expected and len(set(seen)) == len(seen)
    assert set(ids(admin_get(stack, limit="500"))) == set(expected) | set(added)


def test_paging_with_a_filter_uses_the_same_cursor(stack):
    expected = [r for r in seed_rows(stack) if int(r[1:]) % 3 == 0]
    seen, _ = walk(stack, limit="2", status="rejected")
    assert seen == expected


def test_an_exact_last_page_has_no_cursor_and_limits_are_honoured(stack):
    seed_rows(stack, 10)
    assert admin_get(stack, limit="10").json()["next_cursor"] is None
    assert len(admin_get(stack).json()["items"]) == 10
    assert admin_get(stack, limit="9").json()["next_cursor"] is not None


# ------------------------------------------------------------------------------------- CSV


def test_csv_export_streams_every_matching_row_over_all_pages(stack, session, monkeypatch):
    monkeypatch.setattr(ledger_review, "PAGE_SIZE", 2)

    response = admin_get(stack, format="csv")
    chunks = list(response.iter_bytes())
    rows = list(csv.DictReader(io.StringIO(b"".join(chunks).decode())))

    assert isinstance(response, StreamingResponse) and response.media_type.startswith("text/csv")
    assert response.headers["Content-Disposition"] == 'attachment; filename="ledger-acme.csv"'
    assert len(chunks) == 3  # header + first page, then one chunk per page of 2 (the empty last page: none)
    assert [_BODY_ID[r["ledger_id"]] for r in rows] == ["b3", "a3", "b2", "b1", "a2", "a1"]
    assert list(rows[0]) == list(ledger_review.CSV_COLUMNS)
    downgraded = next(r for r in rows if _BODY_ID[r["ledger_id"]] == "a2")
    assert downgraded["status"] == "downgraded" and downgraded["quote_bid"] == "99.80"
    assert downgraded["limit_price"] == ""


def test_csv_export_applies_the_filters(stack, session):
    rows = list(csv.DictReader(io.StringIO(admin_get(stack, format="csv", status="rejected").text())))
    assert [(_BODY_ID[r["ledger_id"]], r["reason_code"]) for r in rows] == [("b3", "POSITION_LIMIT"),
                                                                  ("b2", "MARKET_DATA_UNAVAILABLE")]


def test_csv_cells_a_spreadsheet_would_evaluate_are_neutralized(stack):
    put_row(stack, "x1", "2026-01-05T10:00:00+00:00", reason="=HYPERLINK(\"http://x\")", qty="-1.5",
            strategy_id="-s1")
    row = next(csv.DictReader(io.StringIO(admin_get(stack, format="csv").text())))
    assert row["reason"] == "'=HYPERLINK(\"http://x\")" and row["qty"] == "-1.5" and row["strategy_id"] == "'-s1"


@pytest.mark.parametrize("query, field", [({"format": "csv", "limit": "10"}, "limit"),
                                          ({"format": "csv", "cursor": Cursor("x", "y").encode()}, "cursor")])
def test_csv_takes_no_limit_or_cursor(stack, query, field):
    response = admin_get(stack, **query)
    assert response.status == 400 and response.json()["error"]["field"] == field


# ------------------------------------------------------------------------------------ access


@pytest.mark.parametrize("token, path", [
    ("tok-alice", LEDGER),                        # a trader of the tenant
    ("tok-admin", "/tenants/globex/ledger"),      # an admin of acme on globex
    ("tok-globex-admin", LEDGER),                 # an admin of globex on acme
])
def test_only_an_admin_of_that_tenant_may_review(stack, session, token, path):
    response = stack.get(path, token=token, query={"status": "bogus"})  # refused before the parameters are read
    assert response.status == 403 and response.json()["error"]["code"] == "FORBIDDEN"


def test_the_other_tenants_admin_sees_only_their_own_ledger(stack, session):
    response = stack.get("/tenants/globex/ledger", token="tok-globex-admin")
    assert ids(response) == ["z1"]


def test_a_token_is_required(stack):
    assert stack.get(LEDGER, token=None).status == 401


@pytest.mark.parametrize("query, field", [
    ({"from": "2026-13-01"}, "from"), ({"from": "2026-02-30"}, "from"), ({"from": "yesterday"}, "from"),
    ({"to": "2026-1-5"}, "to"), ({"from": "2026-01-06", "to": "2026-01-05"}, "to"),
    ({"limit": "0"}, "limit"), ({"limit": "501"}, "limit"), ({"limit": "ten"}, "limit"), ({"limit": "-1"}, "limit"),
    ({"status": "bogus"}, "status"), ({"status": "PLACED"}, "status"), ({"uid": "a/b"}, "uid"),
    ({"strategy_id": ""}, "strategy_id"), ({"symbol": "A B"}, "symbol"), ({"cursor": "!!!"}, "cursor"),
    ({"cursor": "e30"}, "cursor"), ({"format": "xlsx"}, "format"), ({"tenant_id": "globex"}, "tenant_id"),
    ({"status": ["placed", "rejected"]}, "status"), ({"sort": "asc"}, "sort"),
])
def test_bad_parameters_are_400_naming_the_parameter(stack, query, field):
    response = admin_get(stack, **query)
    assert response.status == 400 and response.json()["error"]["field"] == field, response.json()
