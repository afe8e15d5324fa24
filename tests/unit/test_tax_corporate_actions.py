"""Corporate actions (backend/tax/corporate.py): splits, reverse splits and symbol changes adjust
open lots without a taxable event, in the streaming ledger and in a stored lot-book state."""
from datetime import date, datetime
from decimal import Decimal

import pytest

from backend.domain.errors import InvalidInput
from backend.tax import Form8949Row, TaxLedger
from backend.tax.corporate import CorporateAction, apply_action_to_state
from backend.tax.holding import Term
from backend.tax.model import Fill
from backend.tax.state import apply_fill_to_state, book_lots, disposal_to_dict, lot_from_dict


def fill(trade_id, side, qty, price, day, symbol="AAPL"):
    return Fill(trade_id=trade_id, symbol=symbol, side=side, qty=Decimal(qty), price=Decimal(price),
                timestamp=datetime.fromisoformat(f"{day}T15:00:00+00:00"), asset_class="EQUITY")


def split(ratio, effective="2025-03-03", symbol="AAPL", action_id="split-1"):
    return CorporateAction(action_id=action_id, kind="SPLIT", symbol=symbol, effective=date.fromisoformat(effective),
                           ratio=Decimal(ratio))


def test_two_for_one_split_between_buy_and_sale_doubles_qty_halves_unit_basis_keeps_gain_and_holding():
    ledger = TaxLedger()
    ledger.apply(fill("b1", "BUY", "10", "100", "2024-06-03"))

    changed = ledger.apply_corporate_action(split("2"))
    lot = ledger.open_lots("AAPL")[0]
    sale = ledger.apply(fill("s1", "SELL", "20", "55", "2025-07-01")).disposals[0]

    assert [(b.qty, a.qty) for b, a in changed] == [(Decimal("10"), Decimal("20"))]
    assert lot.qty == Decimal("20") and lot.basis == Decimal("1000") and lot.cost_per_unit == Decimal("50")
    assert lot.acquired == date(2024, 6, 3) and lot.holding_start == date(2024, 6, 3)
    # without the split: sell 10 @ 110 → proceeds 1100, basis 1000, gain 100, long-term
    assert (sale.quantity, sale.proceeds, sale.cost_basis, sale.gain) == (Decimal("20"), Decimal("1100"),
                                                                          Decimal("1000"), Decimal("100"))
    assert sale.acquired == date(2024, 6, 3) and sale.term is Term.LONG
    assert Form8949Row.from_disposal(sale).description == "20 AAPL"


def test_reverse_split_one_for_ten_divides_qty_and_multiplies_unit_basis():
    ledger = TaxLedger()
    ledger.apply(fill("b1", "BUY", "100", "2", "2025-01-06"))

    ledger.apply_corporate_action(split("0.1"))
    lot = ledger.open_lots("AAPL")[0]

    assert (lot.qty, lot.basis, lot.cost_per_unit) == (Decimal("10.0"), Decimal("200"), Decimal("20"))


def test_lots_bought_on_or_after_the_ex_date_are_not_split():
    ledger = TaxLedger()
    ledger.apply(fill("b1", "BUY", "10", "100", "2025-02-03"))
    ledger.apply(fill("b2", "BUY", "5", "50", "2025-03-03"))

    ledger.apply_corporate_action(split("2", effective="2025-03-03"))

    assert [(lot.lot_id, lot.qty) for lot in ledger.open_lots("AAPL")] == [("b1", Decimal("20")), ("b2", Decimal("5"))]


def test_symbol_change_carries_lots_over_and_later_sales_use_the_new_symbol():
    ledger = TaxLedger()
    ledger.apply(fill("b1", "BUY", "10", "100", "2024-06-03", symbol="FB"))

    ledger.apply_corporate_action(CorporateAction(action_id="rename-1", kind="SYMBOL_CHANGE", symbol="FB",
                                                  effective=date(2025, 6, 9), new_symbol="META"))
    sale = ledger.apply(fill("s1", "SELL", "10", "120", "2025-07-01", symbol="META")).disposals[0]

    assert ledger.open_lots("FB") == () and sale.symbol == "META"
    assert (sale.cost_basis, sale.gain, sale.acquired, sale.term) == (Decimal("1000"), Decimal("200"),
                                                                      date(2024, 6, 3), Term.LONG)


def test_an_action_dated_before_the_last_fill_is_refused():
    ledger = TaxLedger()
    ledger.apply(fill("b1", "BUY", "10", "100", "2025-04-01"))

    with pytest.raises(InvalidInput) as caught:
        ledger.apply_corporate_action(split("2", effective="2025-03-03"))
    assert caught.value.field == "effective"


@pytest.mark.parametrize("kwargs, field", [
    (dict(kind="SPLIT", ratio=Decimal("1")), "ratio"), (dict(kind="SPLIT", ratio=Decimal("-2")), "ratio"),
    (dict(kind="SPLIT", ratio=2.0), "ratio"), (dict(kind="MERGE", ratio=Decimal("2")), "kind"),
    (dict(kind="SYMBOL_CHANGE", new_symbol="AAPL"), "new_symbol"),
    (dict(kind="SYMBOL_CHANGE", new_symbol="X", ratio=Decimal("2")), "ratio"),
])
def test_bad_actions_are_refused_naming_the_field(kwargs, field):
    with pytest.raises(InvalidInput) as caught:
        CorporateAction(action_id="x", symbol="AAPL", effective=date(2025, 1, 2), **kwargs)
    assert caught.value.field == field


def test_stored_book_split_is_recorded_in_history_kept_by_later_fills_and_idempotent():
    state = apply_fill_to_state(None, fill("b1", "BUY", "10", "100", "2024-06-03")).state

    step = apply_action_to_state(state, split("2"))
    again = apply_action_to_state(step.state, split("2"))
    after_sale = apply_fill_to_state(step.state, fill("s1", "SELL", "20", "55", "2025-07-01"))

    assert [lot_from_dict(x).qty for x in book_lots(step.state)] == [Decimal("20")]
    assert step.entry["lots"] == [{"lot_id": "b1", "book": "", "qty_before": "10", "qty_after": "20",
                                   "basis": "1000"}]
    assert again.entry is None and again.state == step.state
    assert after_sale.state["corporate_actions"] == step.state["corporate_actions"]
    sold = disposal_to_dict(after_sale.final[0])
    assert (sold["quantity"], sold["cost_basis"], sold["gain"], sold["term"]) == ("20", "1000", "100", "LONG")


def test_stored_symbol_change_moves_the_state_and_refuses_a_merge():
    state = apply_fill_to_state(None, fill("b1", "BUY", "10", "100", "2024-06-03", symbol="FB")).state
    rename = CorporateAction(action_id="r1", kind="SYMBOL_CHANGE", symbol="FB", effective=date(2025, 6, 9),
                             new_symbol="META")
    occupied = apply_fill_to_state(None, fill("m1", "BUY", "1", "500", "2025-01-02", symbol="META")).state

    step = apply_action_to_state(state, rename)

    assert step.symbol == "META" and step.state["symbol"] == "META"
    assert [x["symbol"] for x in book_lots(step.state)] == ["META"]
    with pytest.raises(InvalidInput):
        apply_action_to_state(state, rename, target_state=occupied)
