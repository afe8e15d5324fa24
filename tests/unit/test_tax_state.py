"""Persisted lot-book state: applying fills one at a time through a stored state document gives the
same disposals and open lots as the tax ledger over the whole history."""
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given, settings, strategies as st

from backend.tax import Fill, LotMethod, compute_lots
from backend.tax.state import apply_fill_to_state

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
    assert sorted((x["lot_id"], x["qty"], x["basis"]) for x in state["lots"]) == \
        sorted((lot.lot_id, str(lot.qty), str(lot.basis)) for lot in report.open_lots)


def test_a_replayed_fill_is_a_no_op():
    buy = Fill(trade_id="b1", symbol="AAPL", side="buy", qty=Decimal(5), price=Decimal(100), timestamp=T0)
    first = apply_fill_to_state(None, buy)
    again = apply_fill_to_state(first.state, buy)
    assert again.duplicate and again.state == first.state
