"""Open lots as of a past day (issue 16 item 6) on both stores, the Firestore one on the official
emulator: the lot books, disposals and corporate-action history are written by the product's own
store steps (``store_writes.tax_ops`` committed through the store, ``apply_corporate_action``), and
the reconstruction (``TaxExport.reconstruct_open_lots``: the API's reader, paged store queries)
sees nothing else. Each day's truth is the open lots of the book documents as they were stored at
the end of that day, read raw then."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

from backend.api.tax_export import TaxExport
from backend.execution import store_writes
from backend.execution.unit_of_work import Commit
from backend.tax import Fill, open_lot_rows
from backend.tax.corporate import CorporateAction
from backend.tax.state import book_lots, lot_from_dict

UID = "u-as-of"
BOOK = "acme:a"


def trade(h, day, trade_id, side, qty, price, symbol="AAPL"):
    item = Fill(trade_id=trade_id, symbol=symbol, side=side, qty=Decimal(qty), price=Decimal(price),
                timestamp=datetime.fromisoformat(f"{day}T15:00:00+00:00"), asset_class="EQUITY", book=BOOK)
    ops, _ = store_writes.tax_ops(h.store, [(UID, item)])
    h.store.commit(Commit(ops))


def stored_rows(h, day):
    """The open lots of the raw book documents now, as the export lists them (doc id, then sequence)."""
    lots = [lot_from_dict(lot) for path in h.paths(f"users/{UID}/tax_books")
            for lot in book_lots(h.raw(path))]
    return list(open_lot_rows(lots, date.fromisoformat(day)))


def reconstructed(h, day, page_size=2):
    export = TaxExport(h.store, UID, 2025, date(2025, 12, 31), page_size=page_size)  # small pages: paging is read
    export.reconstruct_open_lots(date.fromisoformat(day))
    return export.lots_as_of


def test_open_lots_of_past_days_are_reconstructed_from_the_stored_documents(h):
    snapshots = {}
    trade(h, "2025-03-03", "b1", "BUY", "10", "100")
    trade(h, "2025-03-04", "b2", "BUY", "6", "90")
    trade(h, "2025-03-04", "m1", "BUY", "3", "400", symbol="MSFT")
    snapshots["2025-03-04"] = stored_rows(h, "2025-03-04")
    trade(h, "2025-03-12", "s1", "SELL", "10", "80")  # b1 at a loss: b2 (held) replaces 6 of its 10 shares
    snapshots["2025-03-12"] = stored_rows(h, "2025-03-12")
    outcome, _ = h.store.apply_corporate_action(
        "acme", CorporateAction(action_id="split", kind="SPLIT", symbol="AAPL", effective=date(2025, 3, 17),
                                ratio=Decimal("3")), recorded_by="admin", now=datetime(2025, 3, 14, tzinfo=timezone.utc))
    assert outcome["status"] == "APPLIED"
    trade(h, "2025-03-18", "s2", "SELL", "5", "40")  # 5 of b2's 18 split shares
    snapshots["2025-03-18"] = stored_rows(h, "2025-03-18")
    trade(h, "2025-04-22", "s3", "SELL", "13", "35")
    trade(h, "2025-04-23", "s4", "SELL", "3", "420", symbol="MSFT")

    for day, then in snapshots.items():
        assert reconstructed(h, day) == then, day
    assert [(row.lot_id, row.quantity, row.cost_basis, row.wash_adjustment) for row in snapshots["2025-03-12"]] == [
        ("b2", Decimal("6"), Decimal("660"), Decimal("120")), ("m1", Decimal("3"), Decimal("1200"), Decimal("0"))]
    assert [row.quantity for row in snapshots["2025-03-18"]] == [Decimal("13"), Decimal("3")]
    assert stored_rows(h, "2025-04-23") == []  # everything is sold now: only the records tell
