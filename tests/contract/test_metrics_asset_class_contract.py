"""Per-asset-class metrics counters (``by_asset_class`` of a shard-day document) are written in the
same commit as the ledger row, on both stores: a FOREX and an EQUITY trade land in their classes
with their slippage and cost-savings counters, and the tenant totals stay their sum."""
from __future__ import annotations

from backend.execution import metrics
from backend.ports.store import Finish
from tests.contract.test_store_contract import DAY, ledger_row


def finish(intent_id, klass, symbol, **ledger):
    return Finish(tenant_id="acme", intent_id=intent_id, uid="alice", record={"status": ledger["status"]},
                  ledger_id=f"L-{intent_id}", ledger=ledger_row(f"L-{intent_id}", asset_class=klass, symbol=symbol,
                                                                **ledger),
                  history_id=f"L-{intent_id}", history={"created_at": "2026-03-02T15:00:00Z", "tenant_id": "acme",
                                                        "broker_account_id": "acct1", "symbol": symbol})


def by_class(docs, klass, name):
    return sum((d.get("by_asset_class") or {}).get(klass, {}).get(name, 0) for d in docs)


def test_a_forex_and_an_equity_trade_land_in_their_classes(h):
    h.store.finish(finish("fx", "FOREX", "EUR/USD", status="placed", side="buy", qty="1000", arrival_mid="1.1",
                          estimated_slippage="0.0001", filled_qty="1000", filled_avg_price="1.1002",
                          actual_slippage_pct="0.00018"))
    h.store.finish(finish("eq", "EQUITY", "WIDE", status="downgraded", side="buy", qty="10", arrival_mid="100",
                          estimated_slippage="0.005", strategy="s2"))

    docs = h.store.read_metrics("acme", DAY, DAY)

    assert by_class(docs, "FOREX", "decisions") == by_class(docs, "FOREX", "status_placed") == 1
    assert by_class(docs, "FOREX", "actual_slippage_sum_pico") == 180_000_000  # 0.00018 x 1e12
    assert by_class(docs, "FOREX", "est_slippage_sum_pico") == 100_000_000
    assert by_class(docs, "FOREX", "cost_savings_micro") == 0
    assert by_class(docs, "EQUITY", "status_downgraded") == 1
    assert by_class(docs, "EQUITY", "cost_savings_micro") == 5_000_000  # 10 x 100 x 0.005
    assert by_class(docs, "EQUITY", "fills") == 0
    assert all(set(d.get("by_asset_class") or {}) <= set(metrics.ASSET_CLASSES) for d in docs)
    assert all(not k.startswith(("decisions_", "placed_")) for d in docs for m in d["by_asset_class"].values()
               for k in m)
    forex, equity = (metrics.summarize(docs, asset_class=k) for k in ("FOREX", "EQUITY"))
    assert forex["tca"]["avg_actual_slippage"] == "0.00018" and forex["avg_estimated_slippage"] == "0.0001"
    assert equity["cost_savings"] == metrics.summarize(docs)["cost_savings"] == "5"


def test_a_row_without_a_known_class_counts_in_the_totals_only(h):
    h.store.finish(finish("g", None, "AAPL", status="rejected"))

    (doc,) = h.store.read_metrics("acme", DAY, DAY)

    assert doc["decisions"] == 1 and "by_asset_class" not in doc
