"""Persisted lot-book state: applying fills one at a time through a stored state document gives the
same disposals and open lots as the tax ledger over the whole history."""
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given, settings, strategies as st

from backend.tax import Fill, LotMethod, compute_lots
from backend.tax.state import (PACKED_FIELDS, apply_fill_to_state, book_from_state, book_lots, book_pending,
                               book_write_fields, pack_list, packed_count, packed_state, unpack_list)

T0 = datetime(2026, 1, 5, 15, 0, tzinfo=timezone.utc)


def run_incremental(fills, method):
    state, final = None, []
    for fill in fills:
        step = apply_fill_to_state(state, fill, method)
        state = step.state
        final.extend(step.final)
    return state, final, step.pending


@st.composite
def histories(draw):
    symbol = draw(st.sampled_from(["AAPL", "BTC/USD"]))
    fills, held, t = [], Decimal(0), T0
    for n in range(draw(st.integers(1, 25))):
        t += timedelta(days=draw(st.integers(0, 20)), minutes=1)
        price = Decimal(draw(st.integers(50, 150)))
        if held > 0 and draw(st.booleans()):
            qty = Decimal(draw(st.integers(1, int(held))))
            held -= qty
            side = "sell"
        else:
            qty = Decimal(draw(st.integers(1, 10)))
            held += qty
            side = "buy"
        fills.append(Fill(trade_id=f"t{n}", symbol=symbol, side=side, qty=qty, price=price, timestamp=t,
                          fees=Decimal("0.5")))
    return fills


@settings(max_examples=150, deadline=None)
@given(histories(), st.sampled_from(list(LotMethod)[:3]))
def test_incremental_state_equals_the_whole_history(fills, method):
    state, final, pending = run_incremental(fills, method)
    as_of = fills[-1].timestamp.date() + timedelta(days=60)
    report = compute_lots(fills, method, as_of=as_of)
    incremental = sorted(final + [p for p in pending], key=lambda d: d.disposal_id)
    whole = sorted(report.disposals, key=lambda d: d.disposal_id)
    assert [(d.disposal_id, d.quantity, d.proceeds, d.cost_basis, d.wash_disallowed) for d in incremental] == \
        [(d.disposal_id, d.quantity, d.proceeds, d.cost_basis, d.wash_disallowed) for d in whole]
    assert sorted((x["lot_id"], x["qty"], x["basis"]) for x in book_lots(state)) == \
        sorted((lot.lot_id, str(lot.qty), str(lot.basis)) for lot in report.open_lots)


def test_a_replayed_fill_is_a_no_op():
    buy = Fill(trade_id="b1", symbol="AAPL", side="buy", qty=Decimal(5), price=Decimal(100), timestamp=T0)
    first = apply_fill_to_state(None, buy)
    again = apply_fill_to_state(first.state, buy)
    assert again.duplicate and again.state == first.state


# --- the packed lists (issue 17) ----------------------------------------------------------------------
def as_list_form(state):
    """A state as a document written before issue 17 holds it: lists of maps, nothing packed."""
    out = {k: v for k, v in state.items() if k not in PACKED_FIELDS.values()}
    out.update(lots=book_lots(state), pending=book_pending(state))
    return out


@settings(max_examples=100, deadline=None)
@given(histories(), st.sampled_from(list(LotMethod)[:3]))
def test_a_packed_book_round_trips_to_identical_lots_and_continues_as_its_list_form_would(fills, method):
    state, _, _ = run_incremental(fills[:-1], method) if len(fills) > 1 else (None, [], ())
    if state is None:
        return
    old = as_list_form(state)
    assert [lot for lot in book_from_state(state, fills[0].symbol, fills[0].asset_class).lots] == \
        [lot for lot in book_from_state(old, fills[0].symbol, fills[0].asset_class).lots]  # Lot objects, exactly
    assert packed_state(old) == {k: v for k, v in state.items()}  # the list form packs to the same bytes
    from_packed, from_list = apply_fill_to_state(state, fills[-1], method), apply_fill_to_state(old, fills[-1], method)
    assert from_packed.state == from_list.state and from_packed.final == from_list.final
    assert isinstance(from_list.state["lots_packed"], str) and "lots" not in from_list.state


def test_the_packed_form_is_compact_deterministic_json_of_exact_strings():
    lots = [{"qty": "1.10", "basis": "0.1000000000000000000000000001", "seq": [3, 1], "lot_id": "a", "w": False},
            {"lot_id": "b", "basis": "2", "qty": "1", "seq": [4], "w": True},
            {"lot_id": "c", "qty": "3"}]  # other fields: a run of its own (the order of the list is kept)
    packed = pack_list(lots)
    assert packed == ('{"n":3,"runs":[{"fields":["basis","lot_id","qty","seq","w"],"rows":'
                      '[["0.1000000000000000000000000001","a","1.10",[3,1],false],["2","b","1",[4],true]]},'
                      '{"fields":["lot_id","qty"],"rows":[["c","3"]]}]}')
    assert unpack_list(packed) == lots and packed_count(packed) == 3 and packed_count(pack_list([])) == 0
    for bad in (1.5, Decimal("1.5")):
        try:
            pack_list([{"qty": bad}])
        except (TypeError, ValueError):
            continue
        raise AssertionError(f"{bad!r} was packed")


def test_an_update_of_a_list_form_document_clears_its_list_fields():
    buy = Fill(trade_id="b1", symbol="AAPL", side="buy", qty=Decimal(5), price=Decimal(100), timestamp=T0)
    state = apply_fill_to_state(None, buy).state
    old = {**as_list_form(state), "pending_disposals": []}
    fields = book_write_fields(state, old)
    assert fields["lots"] is None and fields["pending"] is None and fields["pending_disposals"] is None
    assert fields["lots_packed"] == state["lots_packed"]
    assert book_write_fields(state, None) == state and book_write_fields(state, state) == state
    assert book_lots({**old, **fields}) == book_lots(state)  # what the store holds after the update
