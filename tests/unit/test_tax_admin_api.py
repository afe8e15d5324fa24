"""Issue 16 over HTTP on the in-memory store: the lot-method election writer, the tenant admin's
corporate actions, and the reconciliation's raw ``text/csv`` body.

The lot books are advanced by the store's own tax step (``InMemoryStore._apply_tax``, the code that
runs in the commit of each history row), which reads ``users/<uid>/config/tax`` as written by the
election endpoint. The stack's ManualClock is at 2026-01-05T14:30Z."""
from datetime import datetime
from decimal import Decimal

import pytest

from backend.api.http import MAX_BODY_BYTES
from backend.api.models import CorporateActionRecord, TaxElectionResponse
from backend.tax import Fill
from backend.tax.reconcile import statement_csv_from_rows
from backend.tax.state import book_lots, disposal_from_dict
from tests.support.api_stack import make_stack

ELECTION = "/portfolio/tax-lots/election"
ACTIONS = "/tenants/acme/corporate-actions"
RECONCILE = "/portfolio/tax-lots/reconcile"
A = "acme:a"


@pytest.fixture
def stack(quiet_logs):
    return make_stack()


def fill(trade_id, side, qty, price, day, symbol="AAPL", book=A, hour=15):
    return Fill(trade_id=trade_id, symbol=symbol, side=side, qty=Decimal(qty), price=Decimal(price),
                timestamp=datetime.fromisoformat(f"{day}T{hour:02d}:00:00+00:00"), asset_class="EQUITY", book=book)


def book(store, uid, *fills):
    for item in fills:
        store._apply_tax([(uid, item)])  # noqa: SLF001 - the step finish()/save_group() run


def disposals(store, uid="alice"):
    return sorted((disposal_from_dict(doc) for path, doc in store.docs.items()
                   if path.startswith(f"users/{uid}/tax_disposals/") and "disposal_id" in doc),
                  key=lambda d: (d.closed_at, d.seq))


def config(store, uid="alice"):
    return store.get(f"users/{uid}/config/tax")


# ------------------------------------------------------------------------------ the election


def test_an_election_is_recorded_from_now_and_answered_with_201(stack):
    response = stack.post(ELECTION, {"method": "HIFO"})

    assert response.status == 201, response.json()
    body = TaxElectionResponse.model_validate(response.json())
    assert body.election.method == "HIFO" and body.replayed is False
    assert body.election.effective_at == body.election.recorded_at == "2026-01-05T14:30:00+00:00"
    assert [(e["method"], e.get("account")) for e in config(stack.store)["elections"]] == [("HIFO", None)]


def test_an_account_election_names_the_tokens_tenant_and_the_account(stack):
    response = stack.post(ELECTION, {"method": "SPECIFIC", "broker_account_id": "a", "default_rule": "LIFO",
                                     "effective_at": "2026-02-01T00:00:00Z"})

    assert response.status == 201, response.json()
    assert config(stack.store)["elections"] == [
        {"method": "SPECIFIC", "account": A, "default_rule": "LIFO", "effective_at": "2026-02-01T00:00:00+00:00",
         "recorded_at": "2026-01-05T14:30:00+00:00"}]


@pytest.mark.parametrize("body, field", [
    ({"method": "HIFO", "effective_at": "2026-01-05T14:29:59+00:00"}, "effective_at"),  # a second in the past
    ({"method": "HIFO", "effective_at": "2026-01-06T00:00:00"}, "effective_at"),        # no offset
    ({"method": "HIFO", "effective_at": "2028-01-01T00:00:00+00:00"}, "effective_at"),  # > 366 days ahead
    ({"method": "AVERAGE"}, "method"),
    ({"method": "FIFO", "default_rule": "LIFO"}, "default_rule"),
    ({"method": "SPECIFIC", "default_rule": "SPECIFIC"}, "default_rule"),
    ({"method": "HIFO", "broker_account_id": "a:b"}, "broker_account_id"),
    ({"method": "HIFO", "uid": "bob"}, "uid"),
])
def test_a_back_dated_or_invalid_election_is_a_400_naming_the_field_and_writes_nothing(stack, body, field):
    response = stack.post(ELECTION, body)

    assert response.status == 400, response.json()
    assert response.json()["error"]["field"] == field
    assert config(stack.store) is None


def test_an_election_before_an_existing_one_is_refused(stack):
    assert stack.post(ELECTION, {"method": "LIFO", "effective_at": "2026-03-01T00:00:00+00:00"}).status == 201

    response = stack.post(ELECTION, {"method": "HIFO", "effective_at": "2026-02-01T00:00:00+00:00"})

    assert response.status == 400 and response.json()["error"]["field"] == "effective_at"
    assert [e["method"] for e in config(stack.store)["elections"]] == ["LIFO"]


def test_a_retry_with_the_same_key_is_answered_again_and_another_body_is_a_409(stack):
    first = stack.post(ELECTION, {"method": "HIFO"}, headers={"Idempotency-Key": "el-1"})
    stack.clock.advance(60)

    again = stack.post(ELECTION, {"method": "HIFO"}, headers={"Idempotency-Key": "el-1"})
    other = stack.post(ELECTION, {"method": "LIFO"}, headers={"Idempotency-Key": "el-1"})

    assert first.status == 201 and again.status == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["election"] == first.json()["election"] and again.json()["replayed"] is True
    assert other.status == 409 and other.json()["error"]["field"] == "Idempotency-Key"
    assert len(config(stack.store)["elections"]) == 1


def test_repeating_the_latest_election_without_a_key_changes_nothing(stack):
    stack.post(ELECTION, {"method": "HIFO"})
    stack.clock.advance(3600)

    again = stack.post(ELECTION, {"method": "HIFO"})
    changed = stack.post(ELECTION, {"method": "FIFO"})

    assert again.status == 200 and again.json()["replayed"] is True
    assert changed.status == 201
    assert [e["method"] for e in config(stack.store)["elections"]] == ["HIFO", "FIFO"]


def test_a_legacy_lot_method_is_kept_for_the_past_when_the_first_election_is_made(stack):
    stack.store.set_doc("users/alice/config/tax", {"lot_method": "LIFO"})

    assert stack.post(ELECTION, {"method": "HIFO"}).status == 201

    doc = config(stack.store)
    assert [(e["method"], e["effective_at"]) for e in doc["elections"]] == [
        ("LIFO", "1900-01-01T00:00:00+00:00"), ("HIFO", "2026-01-05T14:30:00+00:00")]
    assert doc["lot_method"] == "LIFO"


def test_sales_before_and_after_a_mid_year_election_use_the_method_in_force(stack):
    # two lots (100, then 120); a sale before the election (FIFO: the 100 lot), HIFO from now on
    book(stack.store, "alice", fill("b1", "BUY", "10", "100", "2026-01-02"),
         fill("b2", "BUY", "10", "120", "2026-01-02"), fill("s1", "SELL", "2", "130", "2026-01-05", hour=14))
    assert stack.post(ELECTION, {"method": "HIFO"}).status == 201

    book(stack.store, "alice", fill("s2", "SELL", "2", "130", "2026-01-06"))

    sold = disposals(stack.store)
    assert [(d.closing_trade_id, d.lot_method, d.cost_basis) for d in sold] == [
        ("s1", "FIFO", Decimal("200")), ("s2", "HIFO", Decimal("240"))]


# ------------------------------------------------------------------------------ corporate actions


def split(action_id="split-1", ratio="2", effective="2026-01-05", symbol="AAPL"):
    return {"action_id": action_id, "kind": "SPLIT", "symbol": symbol, "effective": effective, "ratio": ratio}


def lots(store, uid="alice", symbol="AAPL"):
    return [(lot["qty"], lot["basis"], lot["acquired"]) for lot in
            book_lots(store.get(f"users/{uid}/tax_books/{symbol}"))]


def test_only_a_tenant_admin_of_the_tenant_records_a_corporate_action(stack):
    book(stack.store, "alice", fill("b1", "BUY", "10", "100", "2026-01-02"))

    trader = stack.post(ACTIONS, split(), token="tok-alice")
    other = stack.post("/tenants/globex/corporate-actions", split(), token="tok-admin")

    assert trader.status == 403 and other.status == 403
    assert lots(stack.store) == [("10", "1000", "2026-01-02")]
    assert not stack.store.collection("tenants/acme/corporate_actions")


def test_a_two_for_one_split_between_a_buy_and_a_sale_keeps_gain_and_holding_period(stack):
    book(stack.store, "alice", fill("b1", "BUY", "10", "100", "2025-01-02"))

    response = stack.post(ACTIONS, split(), token="tok-admin")
    book(stack.store, "alice", fill("s1", "SELL", "20", "55", "2026-01-06"))

    assert response.status == 201, response.json()
    record = CorporateActionRecord.model_validate(response.json())
    assert record.status == "APPLIED" and record.books.applied == 1 and record.books.refused == 0
    [sold] = disposals(stack.store)
    assert (sold.quantity, sold.cost_basis, sold.proceeds, sold.gain) == (Decimal("20"), Decimal("1000"),
                                                                          Decimal("1100"), Decimal("100"))
    assert sold.acquired.isoformat() == "2025-01-02" and sold.term.value == "LONG"  # held since 2025-01-02
    history = stack.store.get("users/alice/tax_books/AAPL")["corporate_actions"]
    assert [(h["action_id"], h["lots"][0]["qty_before"], h["lots"][0]["qty_after"]) for h in history] == [
        ("acme/split-1", "10", "20")]


def test_the_same_action_id_twice_is_applied_once_and_another_action_under_it_is_a_409(stack):
    book(stack.store, "alice", fill("b1", "BUY", "10", "100", "2026-01-02"))

    first = stack.post(ACTIONS, split(), token="tok-admin")
    again = stack.post(ACTIONS, split(), token="tok-admin")
    other = stack.post(ACTIONS, split(ratio="3"), token="tok-admin")

    assert first.status == 201 and again.status == 200 and again.json()["replayed"] is True
    assert other.status == 409 and other.json()["error"]["field"] == "action_id"
    assert lots(stack.store) == [("20", "1000", "2026-01-02")]


def test_a_reverse_split_divides_quantity_and_keeps_total_basis(stack):
    book(stack.store, "alice", fill("b1", "BUY", "30", "10", "2026-01-02"))

    response = stack.post(ACTIONS, split(ratio="0.1"), token="tok-admin")

    assert response.status == 201
    assert lots(stack.store) == [("3.0", "300", "2026-01-02")]


def test_books_of_other_tenants_and_mixed_books_are_left_alone(stack):
    book(stack.store, "alice", fill("b1", "BUY", "10", "100", "2026-01-02"))
    book(stack.store, "bob", fill("b2", "BUY", "10", "100", "2026-01-02"),
         fill("b3", "BUY", "5", "100", "2026-01-02", book="globex:x"))
    book(stack.store, "zed", fill("b4", "BUY", "10", "100", "2026-01-02", book="globex:z"))

    body = stack.post(ACTIONS, split(), token="tok-admin").json()

    assert body["books"] == {"applied": 1, "refused": 1}
    assert [(r["uid"], r["reason"].split(":")[0]) for r in body["refusals"]] == [("bob", "MIXED_BOOK")]
    assert lots(stack.store, "alice") == [("20", "1000", "2026-01-02")]
    assert lots(stack.store, "bob") == [("10", "1000", "2026-01-02"), ("5", "500", "2026-01-02")]
    assert lots(stack.store, "zed") == [("10", "1000", "2026-01-02")]


def test_the_same_split_under_another_id_is_refused_not_applied_twice(stack):
    book(stack.store, "alice", fill("b1", "BUY", "10", "100", "2026-01-02"))
    stack.post(ACTIONS, split(), token="tok-admin")

    body = stack.post(ACTIONS, split(action_id="split-again"), token="tok-admin").json()

    assert body["books"] == {"applied": 0, "refused": 1}
    assert body["refusals"][0]["reason"].startswith("DUPLICATE_ACTION: already applied as acme/split-1")
    assert lots(stack.store) == [("20", "1000", "2026-01-02")]


def test_a_book_with_fills_on_or_after_the_ex_date_is_refused(stack):
    book(stack.store, "alice", fill("b1", "BUY", "10", "100", "2026-01-02"), fill("b2", "BUY", "1", "50", "2026-01-05"))

    body = stack.post(ACTIONS, split(), token="tok-admin").json()

    assert body["refusals"][0]["reason"].startswith("FILLS_AFTER_EX_DATE")
    assert lots(stack.store) == [("10", "1000", "2026-01-02"), ("1", "50", "2026-01-05")]


def test_a_symbol_change_carries_the_lots_to_the_new_symbol(stack):
    book(stack.store, "alice", fill("b1", "BUY", "10", "100", "2026-01-02", symbol="FB"))

    response = stack.post(ACTIONS, {"action_id": "fb-meta", "kind": "SYMBOL_CHANGE", "symbol": "FB",
                                    "effective": "2026-01-05", "new_symbol": "META"}, token="tok-admin")
    book(stack.store, "alice", fill("s1", "SELL", "10", "120", "2026-01-06", symbol="META"))

    assert response.status == 201 and response.json()["books"]["applied"] == 1
    assert stack.store.get("users/alice/tax_books/FB") is None
    [sold] = disposals(stack.store)
    assert (sold.symbol, sold.cost_basis, sold.gain, sold.acquired.isoformat()) == (
        "META", Decimal("1000"), Decimal("200"), "2026-01-02")


@pytest.mark.parametrize("body, field", [
    ({**split(), "ratio": "1"}, "ratio"),
    ({**split(), "ratio": "-2"}, "ratio"),
    ({k: v for k, v in split().items() if k != "ratio"}, "ratio"),
    ({**split(), "new_symbol": "X"}, "new_symbol"),
    ({**split(), "effective": "2026-02-30"}, "effective"),
    ({**split(), "action_id": "__x__"}, "action_id"),
    ({"action_id": "c", "kind": "SYMBOL_CHANGE", "symbol": "FB", "effective": "2026-01-05"}, "new_symbol"),
    ({"action_id": "c", "kind": "SYMBOL_CHANGE", "symbol": "FB", "effective": "2026-01-05", "new_symbol": "fb"},
     "new_symbol"),
    ({**split(), "kind": "MERGER"}, "kind"),
])
def test_an_invalid_corporate_action_is_a_400_naming_the_field_and_writes_nothing(stack, body, field):
    book(stack.store, "alice", fill("b1", "BUY", "10", "100", "2026-01-02", symbol="FB"),
         fill("b2", "BUY", "10", "100", "2026-01-02"))

    response = stack.post(ACTIONS, body, token="tok-admin")

    assert response.status == 400, response.json()
    assert response.json()["error"]["field"] == field
    assert not stack.store.collection("tenants/acme/corporate_actions")
    assert lots(stack.store) == [("10", "1000", "2026-01-02")]


# ------------------------------------------------------------------------------ reconcile as text/csv


def statement(store, uid="alice"):
    from backend.tax import Form8949Row

    return statement_csv_from_rows((d, Form8949Row.from_disposal(d)) for d in disposals(store, uid))


def sold_2025(store):
    book(store, "alice", fill("b1", "BUY", "10", "100", "2025-01-06"), fill("s1", "SELL", "4", "110", "2025-02-10"))


def post_csv(stack, text, query=None, content_type="text/csv; charset=utf-8"):
    return stack.post(RECONCILE, raw=text if isinstance(text, bytes) else text.encode(),
                      headers={"Content-Type": content_type},
                      query={"year": "2025", "account": A} if query is None else query)


def test_a_raw_csv_statement_reconciles_like_the_json_body(stack):
    sold_2025(stack.store)
    text = statement(stack.store)

    as_csv = post_csv(stack, "\ufeff" + text)  # a BOM is allowed
    as_json = stack.post(RECONCILE, {"year": 2025, "account": A, "csv": text})

    assert as_csv.status == 200, as_csv.json()
    assert as_csv.json() == as_json.json()
    assert [row["status"] for row in as_csv.json()["rows"]] == ["MATCHED"]


@pytest.mark.parametrize("query, field", [({}, "year"), ({"year": "25"}, "year"),
                                          ({"year": "2025", "account": "nocolon"}, "account"),
                                          ({"year": "2025", "extra": "1"}, "extra")])
def test_a_csv_body_needs_a_valid_year_in_the_query(stack, query, field):
    response = post_csv(stack, "description,date_sold,proceeds\n", query=query)

    assert response.status == 400 and response.json()["error"]["field"] == field


def test_a_csv_body_over_the_limit_is_a_413_naming_it(stack):
    response = post_csv(stack, "x" * (MAX_BODY_BYTES + 1))

    assert response.status == 413
    assert str(MAX_BODY_BYTES) in response.json()["error"]["message"]


@pytest.mark.parametrize("raw, reason", [(b"\xff\xfe\x00", "not UTF-8"), (b"  \n", "empty")])
def test_an_unreadable_csv_body_is_a_400(stack, raw, reason):
    response = post_csv(stack, raw)

    assert response.status == 400 and response.json()["error"]["field"] == "body"
    assert reason in response.json()["error"]["reason"]


def test_a_query_with_a_json_body_and_other_media_types_are_still_refused(stack):
    with_query = stack.post(RECONCILE, {"year": 2025, "csv": "x"}, query={"year": "2025"})
    plain = post_csv(stack, "a,b\n", content_type="text/plain")
    elsewhere = stack.post(ELECTION, raw=b"method\nHIFO\n", headers={"Content-Type": "text/csv"})

    assert with_query.status == 400 and with_query.json()["error"]["field"] == "year"
    assert plain.status == 415 and "text/csv" in plain.json()["error"]["message"]
    assert elsewhere.status == 415
