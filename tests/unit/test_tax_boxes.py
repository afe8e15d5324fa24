"""Form 8949 parts and boxes (backend/tax/boxes.py): every combination of term × basis reported ×
crypto/non-crypto × tax year before/after 2025, the covered-security dates, and the per-account
settings."""
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from backend.domain.assets import AssetClass
from backend.domain.errors import InvalidInput
from backend.tax import Form8949Row, compute_lots
from backend.tax.boxes import (
    ALL_BOXES,
    BOX_PART,
    Issuer,
    ReportingProfile,
    default_issuer,
    form_8949_box,
    is_covered,
)
from backend.tax.holding import Term
from backend.tax.model import Fill

EQ, CR, OPT = AssetClass.EQUITY, AssetClass.CRYPTO, AssetClass.OPTIONS

# (term, issuer, asset class, tax year) → box. Acquired 2025-01-02 (covered for every class that has
# a covered date; crypto basis reporting starts with 2026 sales); pre-2025 rows bought 2020-01-02.
CASES = [
    # stock: A–F in every year
    (Term.SHORT, Issuer.BROKER, EQ, 2024, "A"), (Term.LONG, Issuer.BROKER, EQ, 2024, "D"),
    (Term.SHORT, Issuer.PROCEEDS_ONLY, EQ, 2024, "B"), (Term.LONG, Issuer.PROCEEDS_ONLY, EQ, 2024, "E"),
    (Term.SHORT, Issuer.NONE, EQ, 2024, "C"), (Term.LONG, Issuer.NONE, EQ, 2024, "F"),
    (Term.SHORT, Issuer.BROKER, EQ, 2026, "A"), (Term.LONG, Issuer.BROKER, EQ, 2026, "D"),
    (Term.SHORT, Issuer.PROCEEDS_ONLY, EQ, 2026, "B"), (Term.LONG, Issuer.PROCEEDS_ONLY, EQ, 2026, "E"),
    (Term.SHORT, Issuer.NONE, EQ, 2026, "C"), (Term.LONG, Issuer.NONE, EQ, 2026, "F"),
    # crypto before 2025: A–F (no digital-asset boxes yet); never covered then, so a broker's 1099-B is B/E
    (Term.SHORT, Issuer.BROKER, CR, 2024, "B"), (Term.LONG, Issuer.BROKER, CR, 2024, "E"),
    (Term.SHORT, Issuer.PROCEEDS_ONLY, CR, 2024, "B"), (Term.LONG, Issuer.PROCEEDS_ONLY, CR, 2024, "E"),
    (Term.SHORT, Issuer.NONE, CR, 2024, "C"), (Term.LONG, Issuer.NONE, CR, 2024, "F"),
    # crypto from 2025: G–L; basis reported (G/J) only for 2026+ sales of lots acquired from 2025
    (Term.SHORT, Issuer.BROKER, CR, 2026, "G"), (Term.LONG, Issuer.BROKER, CR, 2026, "J"),
    (Term.SHORT, Issuer.PROCEEDS_ONLY, CR, 2026, "H"), (Term.LONG, Issuer.PROCEEDS_ONLY, CR, 2026, "K"),
    (Term.SHORT, Issuer.NONE, CR, 2026, "I"), (Term.LONG, Issuer.NONE, CR, 2026, "L"),
    (Term.SHORT, Issuer.BROKER, CR, 2025, "H"), (Term.LONG, Issuer.BROKER, CR, 2025, "K"),
    (Term.SHORT, Issuer.NONE, CR, 2025, "I"), (Term.LONG, Issuer.NONE, CR, 2025, "L"),
]


@pytest.mark.parametrize("term, issuer, klass, year, box", CASES)
def test_box_for_every_combination(term, issuer, klass, year, box):
    acquired = date(2025, 1, 2) if year >= 2025 else date(2020, 1, 2)
    sold = date(year, 12, 1)

    found = form_8949_box(term, klass, acquired, sold, issuer)

    assert found == box
    assert BOX_PART[found] == ("I" if term is Term.SHORT else "II")


def test_every_box_is_reachable():
    assert {case[-1] for case in CASES} == set(ALL_BOXES)


@pytest.mark.parametrize("klass, acquired, sold, covered", [
    (EQ, date(2010, 12, 31), date(2024, 6, 3), False), (EQ, date(2011, 1, 3), date(2024, 6, 3), True),
    (OPT, date(2013, 12, 31), date(2014, 6, 3), False), (OPT, date(2014, 1, 2), date(2014, 6, 3), True),
    (CR, date(2024, 12, 31), date(2026, 2, 2), False), (CR, date(2025, 1, 2), date(2025, 12, 1), False),
    (CR, date(2025, 1, 2), date(2026, 1, 2), True), (AssetClass.FOREX, date(2025, 1, 2), date(2026, 1, 2), False),
])
def test_covered_security_dates(klass, acquired, sold, covered):
    assert is_covered(klass, acquired, sold) is covered


def test_stock_bought_before_2011_sold_through_a_broker_is_box_e_not_d():
    assert form_8949_box(Term.LONG, EQ, date(2010, 6, 1), date(2024, 6, 3), Issuer.BROKER) == "E"


def test_defaults_are_a_broker_for_securities_and_for_crypto_from_2025():
    assert default_issuer(EQ, 2020) is Issuer.BROKER and default_issuer(OPT, 2020) is Issuer.BROKER
    assert default_issuer(CR, 2024) is Issuer.NONE and default_issuer(CR, 2025) is Issuer.BROKER
    assert default_issuer(AssetClass.FOREX, 2025) is Issuer.NONE


def test_per_account_setting_overrides_the_default_for_that_book_only():
    profile = ReportingProfile({"acme:ira": {"EQUITY": "none"}, "*": {"CRYPTO": "PROCEEDS_ONLY"}})
    sale = dict(term=Term.SHORT, asset_class=EQ, acquired=date(2025, 1, 2), sold=date(2025, 3, 3))

    assert profile.box(book="acme:ira", **sale) == "C"
    assert profile.box(book="acme:main", **sale) == "A"
    assert profile.box(book="acme:main", term=Term.LONG, asset_class=CR, acquired=date(2025, 1, 2),
                       sold=date(2026, 3, 3)) == "K"


@pytest.mark.parametrize("settings", [{"acme:x": {"EQUITY": "MAYBE"}}, {"acme:x": {"SHOES": "NONE"}},
                                      {"acme:x": "NONE"}])
def test_bad_settings_are_refused_naming_the_field(settings):
    with pytest.raises(InvalidInput) as caught:
        ReportingProfile(settings)
    assert "tax_reporting" in caught.value.field


def _fill(trade_id, side, day, symbol="AAPL", klass=EQ, book=""):
    return Fill(trade_id=trade_id, symbol=symbol, side=side, qty=Decimal("1"), price=Decimal("100"),
                timestamp=datetime.fromisoformat(f"{day}T15:00:00+00:00").astimezone(timezone.utc),
                asset_class=klass, book=book)


def test_rows_from_disposals_carry_part_and_box_and_use_the_disposals_book():
    fills = [_fill("b1", "BUY", "2024-01-02"), _fill("b2", "BUY", "2025-02-03", book="acme:ira"),
             _fill("c1", "BUY", "2025-02-03", symbol="BTC/USD", klass=CR),
             _fill("s1", "SELL", "2025-06-02"), _fill("s2", "SELL", "2025-06-02", book="acme:ira"),
             _fill("c2", "SELL", "2026-06-02", symbol="BTC/USD", klass=CR)]
    profile = ReportingProfile({"acme:ira": {"EQUITY": "NONE"}})

    rows = {d.closing_trade_id: Form8949Row.from_disposal(d, profile) for d in compute_lots(fills).disposals}

    assert (rows["s1"].part, rows["s1"].box) == ("II", "D")
    assert (rows["s2"].part, rows["s2"].box) == ("I", "C")
    assert (rows["c2"].part, rows["c2"].box) == ("II", "J")
    assert rows["s1"].csv_fields()[-2:] == ["II", "D"]


def test_a_setting_changed_later_never_moves_a_past_years_rows():
    before = ReportingProfile({"acme:a": {"EQUITY": [{"issuer": "NONE", "from": "2020-01-01"}]}})
    after = ReportingProfile({"acme:a": {"EQUITY": [{"issuer": "NONE", "from": "2020-01-01"},
                                                    {"issuer": "BROKER", "from": "2026-01-01"}]}})
    sale_2025 = dict(book="acme:a", term=Term.SHORT, asset_class=EQ, acquired=date(2025, 1, 2), sold=date(2025, 6, 2))
    sale_2026 = dict(sale_2025, sold=date(2026, 6, 2))

    assert before.box(**sale_2025) == after.box(**sale_2025) == "C"
    assert after.box(**sale_2026) == "A"


@pytest.mark.parametrize("history", [[{"issuer": "NONE"}], [{"issuer": "NONE", "from": "2025-13-01"}],
                                     [{"issuer": "NONE", "from": "2025-01-01"}, {"issuer": "BROKER", "from": "2024-01-01"}]])
def test_bad_setting_histories_are_refused(history):
    with pytest.raises(InvalidInput):
        ReportingProfile({"acme:a": {"EQUITY": history}})
