"""Execution-quality metrics, maintained incrementally.

Every ledger row (a decision or a fill) is turned into integer increments (pure function here) that
the store adds, in the same commit, to one of ``SHARDS`` documents of the day:
``tenants/<t>/metrics/<YYYY-MM-DD>__<shard>``; the shard is chosen from the row id, so concurrent
trades of one tenant spread over several documents (Firestore's ~1 write/s per document).
A metrics request reads days × shards documents — never the ledger.

Integers keep increments exact: money in micro-units (1e-6), ratios in pico-units (1e-12).
Per strategy the same counters live under ``by_strategy.<strategy_id>``, for at most
``MAX_STRATEGIES_PER_SHARD`` strategies per shard document (listed in its ``strategies`` array, in
the order they first traded that day); later strategies of that shard-day are counted under
``by_strategy."(other)"`` (``OTHER_STRATEGIES``, not a valid strategy id, so it cannot collide).
So a shard document's size does not depend on how many strategy ids a tenant's users invent
(issue 10 item 6: 5,000 ids once grew a shard to Firestore's 1 MiB limit and the next finish
write failed after its order had filled); the tenant totals stay exact either way.

Per asset class the same counters (minus the ``decisions_<class>``/``placed_<class>`` names, which
would repeat the key) live under ``by_asset_class.<class>``, written in the same commit. The keys
are the ``AssetClass`` enum values (``ASSET_CLASSES``), so the map has at most five entries whatever
the traffic; a row without a known class (a ``group_decision`` row: a group may span classes) adds
to the tenant totals only. Shards written before these counters existed have no such map, so a
period that starts earlier shows per-class figures from the day they were first written.

Metrics (``summarize``):
- downgrade_rate = downgraded / decisions; rejection_rate likewise;
- avg_estimated_slippage (share of price) over routed decisions;
- cost_savings: for downgraded intents, qty × mid × estimated slippage — the spread cost avoided;
- asset-class distribution of decisions and of placed trades;
- post-trade TCA per fill: avg actual slippage (share of arrival mid) vs avg estimated;
  implementation shortfall = Σ (fill − arrival mid) × direction × qty (money, positive = cost);
- legging cost of groups: Σ slippage ticks over group leg fills / number of leg fills;
- a multi-leg group is one decision of its strategy (its ``group_decision`` row: ``decisions``,
  ``status_<final status>``, ``group_decisions``); its leg and rollback fills count as fills only.
"""
from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any, Collection, Iterable, Mapping

from backend.domain.assets import AssetClass

SHARDS = 8
ASSET_CLASSES = tuple(klass.value for klass in AssetClass)  # the bounded keys of ``by_asset_class``
MAX_STRATEGIES_PER_SHARD = 100
OTHER_STRATEGIES = "(other)"
MICRO = Decimal("1e6")
PICO = Decimal("1e12")


def shard_for(key: str) -> int:
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % SHARDS


def strategy_bucket(strategy_id: str, admitted: Collection[str], cap: int = MAX_STRATEGIES_PER_SHARD) -> str:
    """The ``by_strategy`` key for a row of ``strategy_id`` in a shard that already admitted
    ``admitted``: its own while the shard has room (or already counts it), else ``OTHER_STRATEGIES``."""
    if strategy_id in admitted or len(admitted) < cap:
        return strategy_id
    return OTHER_STRATEGIES


def asset_class_bucket(row: Mapping[str, Any]) -> str | None:
    """The ``by_asset_class`` key of a ledger row: its asset class when it is one of ``ASSET_CLASSES``."""
    klass = row.get("asset_class")
    return klass if klass in ASSET_CLASSES else None


def asset_class_increments(inc: Mapping[str, int]) -> dict[str, int]:
    """``increments`` of a row as counted under its class (the per-class distribution names dropped)."""
    return {k: v for k, v in inc.items() if not k.startswith(("decisions_", "placed_"))}


def _d(value: Any) -> Decimal | None:
    return None if value in (None, "") else Decimal(str(value))


def _scaled(value: Decimal, unit: Decimal) -> int:
    return int((value * unit).to_integral_value())


def increments(row: Mapping[str, Any]) -> dict[str, int]:
    """Counter increments for one ledger row (flat names; the store nests them per strategy)."""
    out: dict[str, int] = {}
    kind = row.get("kind", "order")
    status = row.get("status")
    asset = row.get("asset_class", "UNKNOWN")

    def add(name: str, value: int) -> None:
        if value:
            out[name] = out.get(name, 0) + value

    if kind == "order":
        add("decisions", 1)
        add(f"status_{status}", 1)
        add(f"decisions_{asset}", 1)
        est = _d(row.get("estimated_slippage"))
        if est is not None:
            add("est_slippage_count", 1)
            add("est_slippage_sum_pico", _scaled(est, PICO))
        mid = _d(row.get("arrival_mid"))
        qty = _d(row.get("qty"))
        if status == "downgraded" and est is not None and mid is not None and qty is not None:
            add("cost_savings_micro", _scaled(qty * mid * est, MICRO))
        if status == "placed":
            add(f"placed_{asset}", 1)
    elif kind == "group_decision":  # a group is one decision of its strategy; its fill rows add fills only
        add("decisions", 1)
        add(f"status_{status}", 1)
        add("group_decisions", 1)
    filled = _d(row.get("filled_qty")) or Decimal(0)
    price = _d(row.get("filled_avg_price"))
    if filled > 0 and price is not None:
        add("fills", 1)
        actual = _d(row.get("actual_slippage_pct"))
        if actual is not None:
            add("actual_slippage_count", 1)
            add("actual_slippage_sum_pico", _scaled(actual, PICO))
            est = _d(row.get("estimated_slippage"))
            if est is not None:
                add("paired_est_slippage_sum_pico", _scaled(est, PICO))
        mid = _d(row.get("arrival_mid"))
        if mid is not None:
            direction = 1 if row.get("side") == "buy" else -1
            add("shortfall_micro", _scaled((price - mid) * direction * filled, MICRO))
        if kind == "group_fill":
            ticks = _d(row.get("actual_slippage_ticks"))
            if ticks is not None:
                add("group_leg_fills", 1)
                add("legging_ticks_sum_pico", _scaled(ticks, PICO))
    return out


def merge(totals: dict[str, int], doc: Mapping[str, Any]) -> None:
    for key, value in doc.items():
        if isinstance(value, int) and not isinstance(value, bool):
            totals[key] = totals.get(key, 0) + value


def summarize(docs: Iterable[Mapping[str, Any]], strategy_id: str | None = None,
              asset_class: str | None = None) -> dict[str, Any]:
    """The summary of the tenant's totals, of one strategy's (``by_strategy``) or of one asset
    class's (``by_asset_class``; at most one of the two)."""
    if strategy_id and asset_class:
        raise ValueError("summarize: strategy_id or asset_class, not both")
    totals: dict[str, int] = {}
    for doc in docs:
        if strategy_id:
            merge(totals, (doc.get("by_strategy") or {}).get(strategy_id, {}))
        elif asset_class:
            merge(totals, (doc.get("by_asset_class") or {}).get(asset_class, {}))
        else:
            merge(totals, doc)
    return summary_from_totals(totals)


def asset_classes_present(docs: Iterable[Mapping[str, Any]]) -> list[str]:
    """The asset classes with per-class counters in ``docs``, in ``ASSET_CLASSES`` order."""
    seen = {name for doc in docs for name in (doc.get("by_asset_class") or {})}
    return [name for name in ASSET_CLASSES if name in seen]


def _ratio(num: int, den: int, unit: Decimal = Decimal(1)) -> str | None:
    if not den:
        return None
    return format((Decimal(num) / unit / Decimal(den)).quantize(Decimal("1e-10")).normalize(), "f")


def _money(micro: int) -> str:
    return format((Decimal(micro) / MICRO).normalize() + 0, "f")


_GROUP_ONLY_STATUSES = ("filled", "partially_filled", "rolled_back", "failed_needs_attention")


def summary_from_totals(t: Mapping[str, int]) -> dict[str, Any]:
    decisions = t.get("decisions", 0)
    classes = sorted({k.split("_", 1)[1] for k in t if k.startswith("decisions_")})
    return {
        "decisions": decisions,
        "placed": t.get("status_placed", 0),
        "downgraded": t.get("status_downgraded", 0),
        "rejected": t.get("status_rejected", 0),
        "dry_run": t.get("status_dry_run", 0),
        "group_decisions": t.get("group_decisions", 0),
        "group_statuses": {name: t.get(f"status_{name}", 0) for name in _GROUP_ONLY_STATUSES},
        "downgrade_rate": _ratio(t.get("status_downgraded", 0), decisions),
        "rejection_rate": _ratio(t.get("status_rejected", 0), decisions),
        "avg_estimated_slippage": _ratio(t.get("est_slippage_sum_pico", 0), t.get("est_slippage_count", 0), PICO),
        "cost_savings": _money(t.get("cost_savings_micro", 0)),
        "asset_class_distribution": {c: {"decisions": t.get(f"decisions_{c}", 0), "placed": t.get(f"placed_{c}", 0)}
                                     for c in classes},
        "tca": {
            "fills": t.get("fills", 0),
            "avg_actual_slippage": _ratio(t.get("actual_slippage_sum_pico", 0), t.get("actual_slippage_count", 0), PICO),
            "avg_estimated_slippage_of_filled": _ratio(t.get("paired_est_slippage_sum_pico", 0),
                                                       t.get("actual_slippage_count", 0), PICO),
            "implementation_shortfall": _money(t.get("shortfall_micro", 0)),
            "group_leg_fills": t.get("group_leg_fills", 0),
            "avg_legging_cost_ticks": _ratio(t.get("legging_ticks_sum_pico", 0), t.get("group_leg_fills", 0), PICO),
        },
    }
