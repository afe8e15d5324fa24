"""Lot method elected before the sale (backend/tax/election.py): the method in force at each sale
is the one applied, stored on the disposal and the history row; elections only go forward."""
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from backend.domain.errors import InvalidInput
from backend.tax.election import add_election, method_for_fill, method_in_force
from backend.tax.model import Fill, LotMethod
from backend.tax.state import plan_books

UTC = timezone.utc


def at(day):
    return datetime.fromisoformat(f"{day}T15:00:00+00:00")


def fill(trade_id, side, qty, price, day, book="", lot_ids=None):
    return Fill(trade_id=trade_id, symbol="AAPL", side=side, qty=Decimal(qty), price=Decimal(price),
                timestamp=at(day), asset_class="EQUITY", book=book, lot_ids=lot_ids)


def test_election_changed_mid_year_applies_to_sales_after_it_only():
    config = add_election(None, "FIFO", now=at("2025-01-01"))
    config = add_election(config, "HIFO", now=at("2025-05-01"), effective_at=at("2025-06-01"))
    fills = [fill("b1", "BUY", "10", "100", "2025-01-06"), fill("b2", "BUY", "10", "150", "2025-02-03"),
             fill("s1", "SELL", "5", "160", "2025-05-15"),     # FIFO: from b1 (100)
             fill("s2", "SELL", "5", "160", "2025-06-16")]     # HIFO: from b2 (150)

    plan = plan_books({}, [("alice", f) for f in fills], {"alice": config})

    sold = {doc["closing_trade_id"]: doc for _, _, doc in plan.disposals}
    assert (sold["s1"]["lot_id"], sold["s1"]["lot_method"]) == ("b1", "FIFO")
    assert (sold["s2"]["lot_id"], sold["s2"]["lot_method"]) == ("b2", "HIFO")
    assert plan.applied_methods["s1"] == "FIFO" and plan.applied_methods["s2"] == "HIFO"  # the history rows


def test_a_later_election_never_rewrites_past_disposals():
    config = add_election(None, "FIFO", now=at("2025-01-01"))
    fills = [fill("b1", "BUY", "10", "100", "2025-01-06"), fill("b2", "BUY", "10", "150", "2025-02-03"),
             fill("s1", "SELL", "5", "160", "2025-05-15")]
    first = plan_books({}, [("alice", f) for f in fills], {"alice": config})

    later = add_election(config, "LIFO", now=at("2025-07-01"))
    again = plan_books({}, [("alice", f) for f in fills], {"alice": later})

    assert first.disposals == again.disposals
    with pytest.raises(InvalidInput) as caught:
        add_election(later, "HIFO", now=at("2025-08-01"), effective_at=at("2025-05-01"))
    assert caught.value.field == "effective_at"


def test_per_account_election_wins_for_its_account_only():
    config = add_election(None, "FIFO", now=at("2025-01-01"))
    config = add_election(config, "LIFO", now=at("2025-01-01"), account="acme:ira")

    assert method_in_force(config, at("2025-03-03"), "acme:ira")[0] is LotMethod.LIFO
    assert method_in_force(config, at("2025-03-03"), "acme:main")[0] is LotMethod.FIFO


def test_specific_election_uses_named_lots_or_its_default_rule():
    config = add_election(None, "SPECIFIC", now=at("2025-01-01"), default_rule="HIFO")

    assert method_for_fill(config, fill("s1", "SELL", "1", "1", "2025-03-03")) is LotMethod.HIFO
    named = fill("s2", "SELL", "1", "1", "2025-03-03", lot_ids={"b1": Decimal("1")})
    assert method_for_fill(config, named) is LotMethod.SPECIFIC


def test_legacy_lot_method_keeps_applying_and_becomes_the_first_election():
    legacy = {"lot_method": "HIFO"}

    converted = add_election(legacy, "LIFO", now=at("2025-06-01"))

    assert method_for_fill(legacy, fill("s", "SELL", "1", "1", "2025-03-03")) is LotMethod.HIFO
    assert method_in_force(converted, at("2025-03-03"))[0] is LotMethod.HIFO   # before the change: unchanged
    assert method_in_force(converted, at("2025-06-02"))[0] is LotMethod.LIFO
    assert method_for_fill("FIFO", fill("s", "SELL", "1", "1", "2025-03-03")) is LotMethod.FIFO


@pytest.mark.parametrize("kwargs, field", [
    (dict(method="NEWEST"), "method"), (dict(method="FIFO", default_rule="HIFO"), "default_rule"),
    (dict(method="SPECIFIC", default_rule="SPECIFIC"), "default_rule"),
    (dict(method="FIFO", account="no-colon"), "account"),
    (dict(method="FIFO", effective_at=datetime(2025, 1, 1)), "effective_at"),
])
def test_bad_elections_are_refused_naming_the_field(kwargs, field):
    with pytest.raises(InvalidInput) as caught:
        add_election(None, now=datetime(2024, 12, 1, tzinfo=UTC), **kwargs)
    assert caught.value.field == field
