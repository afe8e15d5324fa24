"""Issue 10 item 6: the per-strategy map of a metrics shard is capped, so no number of invented
strategy ids can grow a shard toward Firestore's 1 MiB limit (where the next finish write, after its
order filled, would fail). Totals stay exact; overflow strategies count under ``(other)``."""
from backend.adapters.memory_store import InMemoryStore
from backend.domain.storable import record_size
from backend.execution import metrics


def _attack(store, n, day="2026-01-05"):
    for i in range(n):
        row = {"kind": "order", "status": "rejected", "asset_class": "EQUITY", "trade_date": day,
               "strategy_id": f"{'s' * 90}{i:05d}"}
        store._add_metrics("acme", f"attack-{i}", row)


def test_strategy_bucket_admits_until_the_cap_then_counts_under_other():
    admitted = [f"s{i}" for i in range(metrics.MAX_STRATEGIES_PER_SHARD)]
    assert metrics.strategy_bucket("new", admitted[:-1]) == "new"
    assert metrics.strategy_bucket("s3", admitted) == "s3"  # already counted: keeps its own entry
    assert metrics.strategy_bucket("new", admitted) == metrics.OTHER_STRATEGIES


def test_five_thousand_strategy_ids_leave_every_shard_bounded_and_totals_exact():
    store = InMemoryStore()
    _attack(store, 5000)
    docs = store.read_metrics("acme", "2026-01-05", "2026-01-05")
    assert len(docs) == metrics.SHARDS
    for doc in docs:
        assert len(doc["by_strategy"]) == metrics.MAX_STRATEGIES_PER_SHARD + 1  # the cap + (other)
        assert record_size(doc) < 200_000
    summary = metrics.summarize(docs)
    assert summary["decisions"] == summary["rejected"] == 5000
    other = metrics.summarize(docs, metrics.OTHER_STRATEGIES)
    assert other["decisions"] == 5000 - metrics.SHARDS * metrics.MAX_STRATEGIES_PER_SHARD


def test_the_per_asset_class_map_has_at_most_the_enums_keys_whatever_the_rows_claim():
    store = InMemoryStore()
    classes = [*metrics.ASSET_CLASSES, "NOT_A_CLASS", "x" * 90, None]
    for i in range(400):
        row = {"kind": "order", "status": "downgraded", "asset_class": classes[i % len(classes)],
               "trade_date": "2026-01-05", "qty": "1", "arrival_mid": "10", "estimated_slippage": "0.01"}
        store._add_metrics("acme", f"row-{i}", row)
    docs = store.read_metrics("acme", "2026-01-05", "2026-01-05")

    assert all(set(doc["by_asset_class"]) <= set(metrics.ASSET_CLASSES) for doc in docs)
    assert metrics.asset_classes_present(docs) == list(metrics.ASSET_CLASSES)
    per_class = sum(metrics.summarize(docs, asset_class=k)["decisions"] for k in metrics.ASSET_CLASSES)
    assert per_class == 5 * 400 // len(classes) and metrics.summarize(docs)["decisions"] == 400
