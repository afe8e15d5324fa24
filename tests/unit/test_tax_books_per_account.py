"""Issue 10 item 9: lots are matched within the account (tenant:account book) that holds them;
wash sales span every book of the taxpayer. Tables through the persisted state (``plan_books``),
as the stores apply fills."""
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from backend.tax import Fill
from backend.tax.state import apply_fill_to_state, book_label, disposal_from_dict, lot_from_dict, plan_books, \
    scoped_fills
from backend.tax.state import book_lots

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=timezone.utc)
A = book_label("acme", "acct1")
B = book_label("globex", "acct1")


def fill(trade_id, side, qty, price, *, book, days=0):
    return Fill(trade_id=trade_id, symbol="AAPL", side=side, qty=Decimal(qty), price=Decimal(price),
                timestamp=T0 + timedelta(days=days), book=book)


def run(*fills):
    """Apply fills one commit at a time, as the stores do; return (state, disposals, shortfalls)."""
    state, disposals, shortfalls = None, [], []
    for f in fills:
        plan = plan_books({("u1", "AAPL"): state}, [("u1", f)], {})
        state = plan.states[("u1", "AAPL")]
        for _, doc_id, doc in plan.disposals:
            (shortfalls if doc.get("code") == "LOT_SHORTFALL" else disposals).append((doc_id, doc))
    return state, disposals, shortfalls


def test_a_sale_in_one_book_never_consumes_a_lot_bought_in_another():
    state, disposals, shortfalls = run(fill("b1", "buy", 10, 100, book=A), fill("s1", "sell", 4, 120, book=B, days=1))

    # issue 19: the sale opens a SHORT lot in its own book (it was a shortfall before short lots)
    assert disposals == [] and shortfalls == []
    lots = [lot_from_dict(x) for x in book_lots(state)]
    assert [(lot.book, lot.position.value, lot.qty, lot.basis) for lot in lots] == [
        (A, "LONG", Decimal(10), Decimal(1000)), (B, "SHORT", Decimal(4), Decimal(480))]  # A's basis intact


def test_each_book_matches_its_own_lots_first_in_first_out():
    state, disposals, _ = run(fill("a1", "buy", 5, 100, book=A), fill("b1", "buy", 5, 200, book=B, days=1),
                              fill("a2", "buy", 5, 110, book=A, days=2), fill("s1", "sell", 6, 150, book=B, days=3))

    # B holds 5 (bought at 200): 5 are sold from B's lot, 1 opens a SHORT lot in B (issue 19; it was
    # a shortfall); A's lots are untouched
    assert [(d["book"], d["lot_id"], d["quantity"], d["cost_basis"]) for _, d in disposals] == [(B, "b1", "5", "1000")]
    assert sorted((x["book"], x["lot_id"], x["position"], x["qty"]) for x in book_lots(state)) == [
        (A, "a1", "LONG", "5"), (A, "a2", "LONG", "5"), (B, "s1", "SHORT", "1")]


def test_a_loss_in_one_account_is_washed_by_a_purchase_in_another():
    _, disposals, _ = run(fill("a1", "buy", 10, 100, book=A), fill("s1", "sell", 10, 80, book=A, days=40),
                          fill("b1", "buy", 10, 85, book=B, days=50))

    (_, loss), = disposals
    assert loss["book"] == A and loss["gain"] == "-200" and loss["wash_disallowed"] == "200"
    assert loss["adjustment_code"] == "W"


def test_the_replacement_in_the_other_account_carries_the_disallowed_loss():
    state, _, _ = run(fill("a1", "buy", 10, 100, book=A), fill("s1", "sell", 10, 80, book=A, days=40),
                      fill("b1", "buy", 10, 85, book=B, days=50))

    (lot,) = [lot_from_dict(x) for x in book_lots(state)]
    assert lot.book == B and lot.basis == Decimal(1050) and lot.wash_adjustment == Decimal(200)


def test_a_purchase_held_in_another_account_before_the_loss_washes_it():
    _, disposals, _ = run(fill("a1", "buy", 10, 100, book=A), fill("b1", "buy", 10, 90, book=B, days=35),
                          fill("s1", "sell", 10, 80, book=A, days=40))

    (_, loss), = disposals
    assert loss["book"] == A and loss["wash_disallowed"] == "200"


def test_the_same_trade_id_in_two_tenants_is_two_fills_not_a_replay():
    first = apply_fill_to_state(None, fill("i1", "buy", 5, 100, book=A))
    second = apply_fill_to_state(first.state, fill("i1", "buy", 3, 100, book=B))

    assert not second.duplicate
    assert sorted((x["book"], x["qty"]) for x in book_lots(second.state)) == [(A, "5"), (B, "3")]
    assert apply_fill_to_state(second.state, fill("i1", "buy", 3, 100, book=B)).duplicate


def test_fills_are_booked_in_the_tenant_and_account_their_ledger_row_names():
    plain = fill("i1", "buy", 1, 100, book="")
    scoped = scoped_fills([("u1", plain, {"tenant_id": "acme", "broker_account_id": "acct9"}),
                           ("u1", plain, {"tenant_id": "acme"}),  # a group fill names no account yet
                           ("u1", plain), ("u1", None, {"tenant_id": "acme"})])

    assert [f.book for _, f in scoped] == ["acme:acct9", "acme:default", ""]


def test_unnamed_books_and_stored_documents_without_a_book_keep_working():
    state, disposals, _ = run(fill("b1", "buy", 10, 100, book=""), fill("s1", "sell", 10, 120, book="", days=1))

    (_, doc), = disposals
    assert "book" not in doc and disposal_from_dict(doc).book == ""


# --------------------------------------------------------------- through the API (in memory)


def test_history_labels_and_filters_rows_by_tenant_and_account_and_books_stay_apart():
    import io

    from backend import logs
    from tests.support.api_stack import execute_body, make_stack

    logs.set_stream(io.StringIO())
    try:
        stack = make_stack()
        stack.verifier.add("tok-mo-a", uid="mo", tenant_id="acme")
        stack.verifier.add("tok-mo-b", uid="mo", tenant_id="globex")
        assert stack.post("/execute", execute_body(qty="3", broker_account_id="acct1"), token="tok-mo-a").status == 201
        stack.clock.advance(60)
        assert stack.post("/execute", execute_body(side="sell", qty="2", broker_account_id="acct2"),
                          token="tok-mo-b").status == 201

        both = stack.get("/portfolio/history", token="tok-mo-b").json()["items"]
        only_b = stack.get("/portfolio/history", token="tok-mo-b", query={"tenant_id": "globex"}).json()["items"]
        acct1 = stack.get("/portfolio/history", token="tok-mo-b", query={"broker_account_id": "acct1"}).json()["items"]
        export = stack.get("/portfolio/tax-lots/export", token="tok-mo-b",
                           query={"year": str(stack.clock.now().year)}).json()
    finally:
        logs.set_stream(None)

    assert sorted((r["tenant_id"], r["broker_account_id"]) for r in both) == [("acme", "acct1"), ("globex", "acct2")]
    assert [r["tenant_id"] for r in only_b] == ["globex"] and [r["tenant_id"] for r in acct1] == ["acme"]
    book = stack.store.get("users/mo/tax_books/AAPL")
    # issue 19: the sale in globex:acct2 opens a SHORT lot there (it was a shortfall before short lots)
    assert [(lot["book"], lot["position"], Decimal(lot["qty"])) for lot in book_lots(book)] == [
        ("acme:acct1", "LONG", 3), ("globex:acct2", "SHORT", 2)]
    assert [d for p, d in stack.store.docs.items() if p.startswith("users/mo/tax_disposals/")] == []
    assert [(lot["account"], lot["position"]) for lot in export["open_lots"]] == [("acme:acct1", "LONG"),
                                                                                  ("globex:acct2", "SHORT")]
    assert export["shortfalls"] == []
