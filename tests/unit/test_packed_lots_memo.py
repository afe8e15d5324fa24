"""The packed-lots memo (issue 17, ``backend.tax.state.PACKED_LOTS``): a fill of a book this process
packed last takes its lots from the memo instead of parsing and formatting every lot again — and the
states it writes are byte for byte the ones a process without the memo writes."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from hypothesis import given, settings

from backend.tax import state as tax_state
from backend.tax.state import PACKED_LOTS, _PackedLots, apply_fill_to_state, book_lots
from tests.unit.test_tax_state import T0, histories, run_incremental
from backend.tax import Fill, LotMethod


def _states(fills, method, *, memo: bool):
    states, state = [], None
    for fill in fills:
        if not memo:
            PACKED_LOTS.clear()
        state = apply_fill_to_state(state, fill, method).state
        states.append(state)
    return states


@settings(max_examples=120, deadline=None)
@given(histories())
def test_every_state_is_byte_identical_with_and_without_the_memo(fills):
    for method in (LotMethod.FIFO, LotMethod.LIFO, LotMethod.HIFO):
        PACKED_LOTS.clear()
        with_memo = _states(fills, method, memo=True)
        without = _states(fills, method, memo=False)
        assert with_memo == without


def test_a_book_read_back_unchanged_is_not_parsed_again(monkeypatch):
    PACKED_LOTS.clear()
    state = None
    for n in range(40):
        buy = Fill(trade_id=f"b{n}", symbol="AAPL", side="buy", qty=Decimal(1), price=Decimal(100 + n),
                   timestamp=T0 + timedelta(minutes=n))
        state = apply_fill_to_state(state, buy).state
    parsed, formatted = [], []
    real_parse, real_format = tax_state.lot_from_dict, tax_state._lot_to_dict
    monkeypatch.setattr(tax_state, "lot_from_dict", lambda d: parsed.append(d) or real_parse(d))
    monkeypatch.setattr(tax_state, "_lot_to_dict", lambda lot: formatted.append(lot) or real_format(lot))

    sell = Fill(trade_id="s1", symbol="AAPL", side="sell", qty=Decimal(3), price=Decimal(150),
                timestamp=T0 + timedelta(hours=2))
    after = apply_fill_to_state(dict(state), sell).state

    assert parsed == [] and formatted == []  # three whole lots closed: nothing else changed
    assert len(book_lots(after)) == 37
    PACKED_LOTS.clear()  # a process that never packed it parses every lot, and formats none again
    cold = apply_fill_to_state(dict(state), sell).state
    assert len(parsed) == 40 and formatted == []
    assert cold == after


def test_a_new_process_formats_only_the_lot_a_buy_opens(monkeypatch):
    PACKED_LOTS.clear()
    state = None
    for n in range(30):
        state = apply_fill_to_state(state, Fill(trade_id=f"b{n}", symbol="AAPL", side="buy", qty=Decimal(1),
                                                price=Decimal(100 + n), timestamp=T0 + timedelta(minutes=n))).state
    buy = Fill(trade_id="b-last", symbol="AAPL", side="buy", qty=Decimal(1), price=Decimal(99),
               timestamp=T0 + timedelta(hours=1))
    warm = apply_fill_to_state(dict(state), buy).state
    PACKED_LOTS.clear()
    formatted = []
    real_format = tax_state._lot_to_dict
    monkeypatch.setattr(tax_state, "_lot_to_dict", lambda lot: formatted.append(lot) or real_format(lot))

    cold = apply_fill_to_state(dict(state), buy).state

    assert [lot.source_trade_id for lot in formatted] == ["b-last"]
    assert cold == warm  # byte for byte what the process that packed the book writes


def test_a_stored_row_in_an_older_shape_is_kept_and_still_reads_as_its_lot():
    """A row is kept as stored (not formatted again): one written without the fields later versions
    add (``book``, ``wash_replacement``, ``wash_adjustment``) stays so, and every lot reads back the
    same as from a book whose rows were all formatted anew."""
    PACKED_LOTS.clear()
    state = None
    for n in range(3):
        state = apply_fill_to_state(state, Fill(trade_id=f"b{n}", symbol="AAPL", side="buy", qty=Decimal(2),
                                                price=Decimal(100 + n), timestamp=T0 + timedelta(minutes=n))).state
    older = [{k: v for k, v in lot.items() if k not in ("book", "wash_replacement", "wash_adjustment")}
             for lot in book_lots(state)]
    stored = {**{k: v for k, v in state.items() if k != "lots_packed"}, "lots_packed": tax_state.pack_list(older)}
    PACKED_LOTS.clear()
    sell = Fill(trade_id="s1", symbol="AAPL", side="sell", qty=Decimal(1), price=Decimal(150),
                timestamp=T0 + timedelta(hours=1))

    after = apply_fill_to_state(stored, sell).state

    kept = book_lots(after)
    assert kept[1:] == older[1:]  # the untouched lots' rows as stored
    assert "wash_adjustment" in kept[0]  # the partly closed lot: formatted anew
    PACKED_LOTS.clear()
    anew = apply_fill_to_state(state, sell).state
    assert [tax_state.lot_from_dict(m) for m in kept] == [tax_state.lot_from_dict(m) for m in book_lots(anew)]


def test_a_partly_closed_lot_is_formatted_again_and_the_rest_reused(monkeypatch):
    PACKED_LOTS.clear()
    state = None
    for n in range(5):
        state = apply_fill_to_state(state, Fill(trade_id=f"b{n}", symbol="AAPL", side="buy", qty=Decimal(2),
                                                price=Decimal(100), timestamp=T0 + timedelta(minutes=n))).state
    formatted = []
    real_format = tax_state._lot_to_dict
    monkeypatch.setattr(tax_state, "_lot_to_dict", lambda lot: formatted.append(lot) or real_format(lot))

    apply_fill_to_state(state, Fill(trade_id="s1", symbol="AAPL", side="sell", qty=Decimal(1), price=Decimal(150),
                                    timestamp=T0 + timedelta(hours=1)))

    assert [lot.qty for lot in formatted] == [Decimal(1)]  # the remainder of the first lot, only


def test_the_memo_is_bounded_by_entries_and_by_packed_text():
    memo = _PackedLots(max_entries=3, max_chars=100)
    for n in range(5):
        memo.put(f"k{n}" * 5, (), ())
    assert [memo.get(f"k{n}" * 5) is not None for n in range(5)] == [False, False, True, True, True]
    memo.put("x" * 90, (), ())
    assert memo.get("x" * 90) is not None and memo.get("k2" * 5) is None  # 100 chars at most
    memo.put("y" * 101, (), ())
    assert memo.get("y" * 101) is None  # larger than the whole budget: never kept
    assert memo.get(None) is None and memo.get(["not", "a", "string"]) is None


def test_incremental_books_still_equal_the_whole_history_through_the_memo():
    PACKED_LOTS.clear()
    fills = [Fill(trade_id=f"t{n}", symbol="AAPL", side="buy" if n % 3 else "sell", qty=Decimal(2 if n % 3 else 1),
                  price=Decimal(90 + (n * 7) % 20), timestamp=T0 + timedelta(days=n)) for n in range(1, 30)]
    state, final, pending = run_incremental(fills, LotMethod.FIFO)
    PACKED_LOTS.clear()
    again, final_again, pending_again = run_incremental(fills, LotMethod.FIFO)
    assert state == again and final == final_again and pending == pending_again


def test_a_book_still_in_the_list_form_is_formatted_whole_once():
    """A book written before issue 17 (its lots as a list field): every lot is formatted anew on its
    first packed write, as before (its maps are not kept as they were stored)."""
    PACKED_LOTS.clear()
    state = None
    for n in range(3):
        state = apply_fill_to_state(state, Fill(trade_id=f"b{n}", symbol="AAPL", side="buy", qty=Decimal(2),
                                                price=Decimal(100 + n), timestamp=T0 + timedelta(minutes=n))).state
    older = [{k: v for k, v in lot.items() if k != "wash_adjustment"} for lot in book_lots(state)]
    listed = {**{k: v for k, v in state.items() if k != "lots_packed"}, "lots": older}
    PACKED_LOTS.clear()

    after = apply_fill_to_state(listed, Fill(trade_id="b9", symbol="AAPL", side="buy", qty=Decimal(1),
                                             price=Decimal(99), timestamp=T0 + timedelta(hours=1))).state

    assert all("wash_adjustment" in lot for lot in book_lots(after))
