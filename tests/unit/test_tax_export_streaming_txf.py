"""The TXF export stays streamed: pages are read as the body is produced, and peak Python
allocations do not grow with the number of rows (10,000 vs 1,000 rows; the 100,000-fill figure
is the bench's, README "Tax-lot export peak memory", bound 200 MB)."""
import tracemalloc
from datetime import date, timedelta

from backend.api.tax_export import TaxExport
from backend.tax.txf import write_txf

ROWS = 10_000
DAY0 = date(2025, 1, 2)


class GeneratedStore:
    """A read-only store whose year of disposals is generated page by page (nothing kept)."""

    def __init__(self, count):
        self.count = count
        self.pages = 0

    def tax_books_page(self, uid, after, limit):
        return []

    def tax_shortfalls_page(self, uid, day_from, day_to, after, limit):
        return []

    def tax_disposals_page(self, uid, sold_from, sold_to, after, limit):
        self.pages += 1
        start = 0 if after is None else int(after[1].rsplit("-", 1)[1]) + 1
        return [(f"d-{i:07d}", self._doc(i)) for i in range(start, min(start + limit, self.count))]

    @staticmethod
    def _doc(i):
        sold = DAY0 + timedelta(days=(i * 300) // ROWS)
        return {"disposal_id": f"s{i}:b{i}", "closing_trade_id": f"s{i}", "lot_id": f"b{i}",
                "opening_trade_id": f"b{i}", "symbol": "AAPL", "asset_class": "EQUITY", "position": "LONG",
                "quantity": "1", "opened_at": "2024-01-02T15:00:00+00:00", "closed_at": f"{sold}T15:00:00+00:00",
                "acquired": "2024-01-02", "sold": sold.isoformat(), "holding_start": "2024-01-02",
                "proceeds": "101.25", "cost_basis": "100.00", "gain": "1.25", "term": "LONG", "final": True}


def drain(chunks):
    count = size = 0
    for chunk in chunks:
        count += chunk.count(b"\n^\n")
        size += len(chunk)
    return count, size


def measure(count):
    store = GeneratedStore(count)
    export = TaxExport(store, "alice", 2025, date(2026, 3, 1))
    export.load_pending()
    tracemalloc.start()
    try:
        records, size = drain(export.txf_chunks(write_txf))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return store, records, size, peak


def test_txf_export_is_streamed_and_its_memory_does_not_grow_with_the_rows():
    _, _, _, small_peak = measure(ROWS // 10)

    store, records, size, peak = measure(ROWS)

    assert records == ROWS + 1  # the header ends with "^" too
    assert store.pages == ROWS // 500 + 1 and size > 500_000
    assert peak < small_peak * 1.5 + 256 * 1024, (peak, small_peak)
    assert peak < 20 * 1024 * 1024
