"""POST /portfolio/tax-lots/reconcile: the broker's 1099-B statement against the caller's
disposals, through the API (the lot books built by the store's own tax step)."""
from datetime import datetime
from decimal import Decimal

from backend.api.models import TaxReconciliation
from backend.tax import Fill, Form8949Row
from backend.tax.reconcile import statement_csv_from_rows
from backend.tax.state import disposal_from_dict
from tests.unit.test_api_tax_export import book, stack  # noqa: F401

RECONCILE = "/portfolio/tax-lots/reconcile"
A, B = "acme:a", "acme:b"


def fill(trade_id, side, qty, price, day, symbol="AAPL", account=A):
    return Fill(trade_id=trade_id, symbol=symbol, side=side, qty=Decimal(qty), price=Decimal(price),
                timestamp=datetime.fromisoformat(f"{day}T15:00:00+00:00"), asset_class="EQUITY", book=account)


def cross_account_wash(store, uid="alice"):
    book(store, uid,
         fill("a1", "BUY", "10", "100", "2025-01-06"), fill("a2", "SELL", "4", "110", "2025-02-10"),
         fill("m1", "BUY", "10", "100", "2025-02-03", symbol="MSFT"),
         fill("m2", "SELL", "10", "90", "2025-03-03", symbol="MSFT"),
         fill("m3", "BUY", "10", "95", "2025-03-10", symbol="MSFT", account=B))


def statement_for(store, uid="alice", account=A):
    docs = [disposal_from_dict(d) for p, d in sorted(store.docs.items())
            if p.startswith(f"users/{uid}/tax_disposals/") and d.get("book") == account]
    return statement_csv_from_rows((d, Form8949Row.from_disposal(d)) for d in docs)


def post(stack, body, token="tok-alice"):
    return stack.post(RECONCILE, body, token=token)


def test_our_own_disposals_reconcile_with_zero_differences(stack):
    cross_account_wash(stack.store)

    response = post(stack, {"year": 2025, "account": A, "csv": statement_for(stack.store)})

    assert response.status == 200, response.json()
    body = response.json()
    TaxReconciliation.model_validate(body)
    assert [row["status"] for row in body["rows"]] == ["MATCHED", "MATCHED"]
    assert body["totals"]["with_differences"] == 0 and set(body["totals"]["difference"].values()) == {"0.00"}


def test_the_cross_account_wash_sale_is_the_one_named_difference(stack):
    cross_account_wash(stack.store)
    text = statement_for(stack.store).replace("1000.00,100.00,SHORT", "1000.00,0.00,SHORT")  # the broker's view

    body = post(stack, {"year": 2025, "account": A, "csv": text}).json()

    different = [row for row in body["rows"] if row["status"] != "MATCHED"]
    assert [(row["ours"]["description"], row["reasons"], row["differences"]) for row in different] == [
        ("10 MSFT", ["WASH_SALE_ACROSS_ACCOUNTS"], {"wash_sale_disallowed": "100.00"})]
    assert body["totals"]["difference"] == {"proceeds": "0.00", "cost_basis": "0.00", "wash_sale_disallowed": "100.00"}


def test_another_users_disposals_are_never_candidates(stack):
    cross_account_wash(stack.store, uid="bob")
    text = statement_for(stack.store, uid="bob")

    body = post(stack, {"year": 2025, "csv": text}).json()

    assert {row["reasons"][0] for row in body["rows"]} == {"NOT_IN_LEDGER"}


def test_a_malformed_statement_is_a_400_naming_line_and_column(stack):
    response = post(stack, {"year": 2025, "csv": "description,date_sold,proceeds\n1 AAPL,2025-13-01,1\n"})

    assert response.status == 400
    assert response.json()["error"]["field"] == "csv" and "line 2, date_sold" in response.json()["error"]["reason"]


def test_unknown_body_fields_and_a_bad_account_are_refused(stack):
    assert post(stack, {"year": 2025, "csv": "x", "uid": "bob"}).status == 400
    assert post(stack, {"year": 2025, "csv": "x", "account": "no-colon"}).json()["error"]["field"] == "account"
