"""A lot book's packed lists (``backend.tax.state.pack_list``) assembled row by row (issue 17):
``pack_rows`` joins rows encoded one at a time, so a fill re-encodes only the lots it made or changed
(``_packed_lots`` keeps the others' rows in the packed-lots memo). The text must stay byte for byte
what one ``json.dumps`` of the whole list wrote: stored books are compared and parsed by it."""
from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from backend.tax import Fill
from backend.tax import state as tax_state
from backend.tax.state import PACKED_LOTS, apply_fill_to_state, book_lots, pack_list, unpack_list
from tests.unit.test_tax_state import T0


def reference_pack(items):
    """``pack_list`` as it was written before rows were encoded one at a time: one ``json.dumps``."""
    runs = []
    for item in items:
        fields = sorted(item)
        if not runs or runs[-1]["fields"] != fields:
            runs.append({"fields": fields, "rows": []})
        row = [item[k] for k in fields]
        runs[-1]["rows"].append(row)
    return json.dumps({"n": len(items), "runs": runs}, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


_text = st.text(alphabet=st.sampled_from(['a', 'é', '"', '\\', '\n', '\u2028', '/', '😀', 'Z', '0']), max_size=6)
_leaf = st.one_of(st.none(), st.booleans(), st.integers(min_value=-10**15, max_value=10**15), _text,
                  st.sampled_from(["12.50", "-0.0001", "1E+3"]))
_nested_leaf = st.one_of(_leaf, st.floats(allow_nan=False, allow_infinity=False))  # a float below the top level
_value = st.one_of(_leaf, st.recursive(_nested_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(_text, inner, max_size=3)), max_leaves=8).filter(
        lambda v: type(v) is not float))
_keys = st.lists(st.sampled_from(["lot_id", "qty", "basis", "seq", "é", "Z", "a_b", "book"]), max_size=5, unique=True)


@settings(max_examples=400, deadline=None)
@given(st.lists(_keys, min_size=1, max_size=3).flatmap(
    lambda keysets: st.lists(st.sampled_from(keysets).flatmap(
        lambda keys: st.fixed_dictionaries({k: _value for k in keys})), max_size=8)))
def test_rows_assembled_one_by_one_are_the_whole_lists_json(items):
    if _has_float(items):
        with pytest.raises(TypeError, match="not float"):  # anywhere: the text could not be read back
            pack_list(items)
        return
    packed = pack_list(items)
    assert packed == reference_pack(items)
    assert unpack_list(packed) == [dict(item) for item in items]


def _has_float(value):
    if type(value) is float:
        return True
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_float(v) for v in value)
    return False


def test_the_row_encoder_is_json_dumps_with_the_packed_options():
    for value in ([None, True, 1, -2**70, "é\"\\\n\u2028😀", ["x", 0.5, [1e300]], {"b": 1, "a": {"é": [False]}}],
                  [], ["only"]):
        assert tax_state._ENCODE(value) == json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    with pytest.raises(TypeError, match="not Decimal"):
        tax_state._ENCODE([Decimal("1")])


def test_a_float_is_refused_as_before_and_a_decimal_too():
    with pytest.raises(TypeError, match="not float"):
        pack_list([{"qty": 1.5}])
    with pytest.raises(TypeError, match="not Decimal"):
        pack_list([{"qty": Decimal("1.5")}])
    with pytest.raises(TypeError, match="not float"):  # below the top level too (was packed, then unreadable)
        pack_list([{"seq": [1, {"x": [0.5]}]}])
    assert pack_list([]) == reference_pack([]) == '{"n":0,"runs":[]}'


def _book(n):
    PACKED_LOTS.clear()
    state = None
    for i in range(n):
        state = apply_fill_to_state(state, Fill(trade_id=f"b{i}", symbol="AAPL", side="buy", qty=Decimal(1),
                                                price=Decimal(100 + i % 7), timestamp=T0 + timedelta(minutes=i))).state
    return state


def test_a_fill_of_a_book_read_back_unchanged_encodes_only_the_lots_it_made_or_changed(monkeypatch):
    state = _book(50)
    encoded = []
    real = tax_state.packed_row
    monkeypatch.setattr(tax_state, "packed_row", lambda item: encoded.append(item) or real(item))

    bought = apply_fill_to_state(dict(state), Fill(trade_id="b-new", symbol="AAPL", side="buy", qty=Decimal(2),
                                                   price=Decimal(99), timestamp=T0 + timedelta(hours=3))).state
    assert [row.get("source_trade_id") for row in encoded if "lot_id" in row] == ["b-new"]  # the new lot only
    encoded.clear()
    sold = apply_fill_to_state(dict(bought), Fill(trade_id="s1", symbol="AAPL", side="sell", qty=Decimal("1.5"),
                                                  price=Decimal(120), timestamp=T0 + timedelta(hours=4))).state
    assert [row.get("qty") for row in encoded if "lot_id" in row] == ["0.5"]  # the remainder of the second lot

    PACKED_LOTS.clear()  # a process that never packed these books writes the same bytes
    again = apply_fill_to_state(dict(state), Fill(trade_id="b-new", symbol="AAPL", side="buy", qty=Decimal(2),
                                                  price=Decimal(99), timestamp=T0 + timedelta(hours=3))).state
    assert again == bought
    assert apply_fill_to_state(dict(again), Fill(trade_id="s1", symbol="AAPL", side="sell", qty=Decimal("1.5"),
                                                 price=Decimal(120), timestamp=T0 + timedelta(hours=4))).state == sold
    assert len(book_lots(sold)) == 50 and book_lots(sold)[0]["qty"] == "0.5"
