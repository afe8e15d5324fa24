"""GET /portfolio/tax-lots/export: Form 8949 part/box on every row, totals per box (Schedule D),
the per-account 1099 setting, and ``format=txf``."""
import csv
import io

from backend.api.models import TaxExport
from backend.tax.txf import parse_txf
from tests.unit.test_api_tax_export import EXPORT, book, export, fill, hand_example, stack  # noqa: F401


def mixed_year(store, uid="alice"):
    book(store, uid,
         fill("b0", "BUY", "2", "50", "2024-01-02", symbol="MSFT"),
         fill("s0", "SELL", "2", "60", "2025-02-03", symbol="MSFT"),                   # long-term: D
         fill("c1", "BUY", "0.5", "40000", "2025-01-05", symbol="BTC/USD", asset_class="CRYPTO"),
         fill("c2", "SELL", "0.5", "42000", "2025-06-05", symbol="BTC/USD", asset_class="CRYPTO"))  # H
    hand_example(store, uid)                                                           # short-term: A


def test_rows_carry_part_and_box_and_totals_are_given_per_box(stack):
    mixed_year(stack.store)

    body = export(stack).json()
    records = list(csv.DictReader(io.StringIO(export(stack, format="csv").text())))

    TaxExport.model_validate(body)
    assert sorted((d["description"], d["part"], d["box"]) for d in body["disposals"]) == [
        ("0.5 BTC", "I", "H"), ("2 MSFT", "II", "D"), ("4 AAPL", "I", "A")]
    assert sorted((r["Description of property"], r["Part"], r["Box"]) for r in records) == [
        ("0.5 BTC", "I", "H"), ("2 MSFT", "II", "D"), ("4 AAPL", "I", "A")]
    boxes = body["totals"]["boxes"]
    assert boxes["A"] == {"part": "I", "count": 1, "proceeds": "439.00", "cost_basis": "400.40",
                          "adjustment_amount": "0.00", "gain_or_loss": "38.60"}
    assert boxes["D"]["gain_or_loss"] == "20.00" and boxes["H"]["gain_or_loss"] == "1000.00"
    assert set(boxes) == {"A", "D", "H"}


def test_an_account_set_to_no_1099_files_its_rows_under_box_c(stack, monkeypatch):
    hand_example(stack.store)
    monkeypatch.setattr(stack.store, "tax_reporting_settings", lambda uid: {"*": {"EQUITY": "NONE"}},
                        raising=False)

    body = export(stack).json()

    assert [(d["part"], d["box"]) for d in body["disposals"]] == [("I", "C")]


def test_txf_export_is_v042_and_parses_back_into_the_json_rows(stack):
    mixed_year(stack.store)

    response = export(stack, format="txf", digital_assets="omit")
    body = export(stack).json()
    parsed = parse_txf(response.text())

    assert response.media_type.startswith("text/plain")
    assert 'filename="form-8949-2025.txf"' in response.headers["Content-Disposition"]
    assert response.text().startswith("V042\n")
    back = sorted((r.description, str(r.proceeds), str(r.cost_basis), str(r.gain_or_loss), r.box) for r in parsed.rows)
    # the digital-asset row (H) has no V042 number: left out on request, and counted in a header
    assert back == sorted((d["description"], d["proceeds"], d["cost_basis"], d["gain_or_loss"], d["box"])
                          for d in body["disposals"] if d["box"] not in "GHIJKL")
    assert response.headers["X-Omitted-Digital-Asset-Rows"] == "1"


def test_txf_of_a_year_with_digital_asset_rows_is_refused_naming_them(stack):
    mixed_year(stack.store)

    response = stack.get(EXPORT, token="tok-alice", query={"year": "2025", "format": "txf"})

    error = response.json()["error"]
    assert response.status == 400 and error["field"] == "format"
    assert "G-L" in error["reason"] and "1 row(s)" in error["reason"] and "digital_assets=omit" in error["reason"]


def test_section_with_txf_is_refused(stack):
    response = stack.get(EXPORT, token="tok-alice", query={"year": "2025", "format": "txf", "section": "open_lots"})

    assert response.status == 400 and response.json()["error"]["field"] == "section"
