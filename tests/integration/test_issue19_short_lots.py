"""Issue 19, items 3 and 4, on the in-memory store AND the official Firestore emulator.

3. A sell beyond the long lots opens a SHORT lot (every asset class the product can short,
   ``backend.tax.state.SHORT_SELLING_CLASSES``) and a later buy covers it first: the demo pair's
   short of 5 MSFT used to be exported as a SHORTFALL row with proceeds and no basis, and a later
   buy of 3 as an open LONG lot while the net position was -2.
4. A sell's history row carries ``tax.cost_basis`` = the basis of the lots it consumed (it was
   null), written in the same commit that advances the lot book; a cover's row carries the short
   sale's ``proceeds``.
"""
from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from backend.adapters.paper_broker import PaperBroker
from backend.api.tax_export import TaxExport
from backend.domain.clock import ManualClock
from backend.tax.holding import trade_date
from backend.tax.state import book_lots
from tests.integration.test_issue11_rows import CTX, engine_on, order, world  # noqa: F401 - the fixture
from tests.support.group_harness import EQUITY_LEGS, approve, rpm_output


def quotes(symbol: str, mid: str) -> dict:
    return {"seed": 1, "symbols": {symbol: {"asset_class": "EQUITY", "mid": mid, "spread": "0.02"}}}


def equity_pair(clock) -> dict:
    legs = [dict(x) for x in EQUITY_LEGS]  # long 10 AAPL, short 5 MSFT
    return {"strategy_id": "stat_arb_01", "legs": legs, "rpm_output": rpm_output(legs, clock.now()),
            "allow_partial_fills": True, "broker_account_id": "acct"}  # the account of ``order``


def export_csv(store, clock, **kw) -> list[list[str]]:
    export = TaxExport(store, "u1", clock.now().year, trade_date(clock.now(), None))
    export.load_pending()
    chunks = export.open_lots_csv() if kw.get("open_lots") else export.disposals_csv()
    return list(csv.reader(io.StringIO(b"".join(chunks).decode())))


def test_the_demo_pairs_short_leg_opens_a_short_lot_that_a_later_buy_covers(world):
    store, _, rows = world
    clock = ManualClock()
    engine = engine_on(store, clock=clock)
    request = equity_pair(clock)
    approve(store, request)
    engine.execute_group(request, CTX, group_id="g1")
    clock.advance(60)

    engine.execute_intent(order("c1", "buy", "3", symbol="MSFT"), CTX)

    history = rows("users/u1/portfolio/history/trades")
    short_proceeds = Decimal(history["g1--leg_002"]["tax"]["proceeds"])  # 5 sold short, net of fees
    cover_cost = Decimal(history["c1"]["tax"]["cost_basis"])
    book = next(v for k, v in rows("users/u1/tax_books").items() if k.endswith("MSFT"))
    assert [(lot["position"], Decimal(lot["qty"]), Decimal(lot["basis"])) for lot in book_lots(book)] == [
        ("SHORT", 2, short_proceeds * 2 / 5)]
    disposals = [d for k, d in rows("users/u1/tax_disposals").items() if "MSFT" in k]
    assert [(d["position"], Decimal(d["quantity"]), Decimal(d["proceeds"]), Decimal(d["cost_basis"]))
            for d in disposals] == [("SHORT", 3, short_proceeds * 3 / 5, cover_cost)]
    assert Decimal(history["c1"]["tax"]["proceeds"]) == short_proceeds * 3 / 5  # the cover's short proceeds

    form = export_csv(store, clock)
    msft = [row for row in form if "MSFT" in row[0]]
    assert [row[0] for row in msft] == ["3 MSFT"] and all("SHORTFALL" not in row for row in form)
    assert msft[0][3] == f"{short_proceeds * 3 / 5:.2f}" and msft[0][4] == f"{cover_cost:.2f}"
    lots = [row for row in export_csv(store, clock, open_lots=True)[1:] if row[0] == "MSFT"]
    assert [(row[2], row[3]) for row in lots] == [("SHORT", "2")]


@pytest.mark.parametrize(("method", "consumed"), [("FIFO", "b1"), ("HIFO", "b2")])
def test_a_sells_history_row_carries_the_basis_of_the_lots_it_consumed(world, method, consumed):
    store, put, rows = world
    put("users/u1/config/tax", {"lot_method": method})
    clock = ManualClock()
    engine_on(store, broker=PaperBroker(quotes("AAPL", "100.00"), clock=clock), clock=clock).execute_intent(
        order("b1", "buy", "1"), CTX)
    clock.advance(60)
    engine = engine_on(store, broker=PaperBroker(quotes("AAPL", "120.00"), clock=clock), clock=clock)
    engine.execute_intent(order("b2", "buy", "1"), CTX)
    clock.advance(60)

    engine.execute_intent(order("s1", "sell", "1"), CTX)

    history = rows("users/u1/portfolio/history/trades")
    basis = {k: Decimal(history[k]["tax"]["cost_basis"]) for k in ("b1", "b2")}
    assert basis["b1"] < basis["b2"]
    assert Decimal(history["s1"]["tax"]["cost_basis"]) == basis[consumed]
    assert history["s1"]["tax"]["lot_method"] == method
    (disposal,) = [d for d in rows("users/u1/tax_disposals").values()]
    assert Decimal(disposal["cost_basis"]) == basis[consumed] and disposal["lot_id"] == consumed


def test_a_sell_that_only_opens_a_short_has_no_basis_until_it_is_covered(world):
    store, _, rows = world
    engine = engine_on(store)

    engine.execute_intent(order("s1", "sell", "2"), CTX)

    history = rows("users/u1/portfolio/history/trades")
    assert history["s1"]["tax"]["cost_basis"] is None and history["s1"]["tax"]["proceeds"] is not None
    assert rows("users/u1/tax_disposals") == {}
