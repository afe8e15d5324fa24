"""Read model: execution-quality metrics of a tenant, ``GET /tenants/{tenant_id}/metrics``.

Who: a ``tenant_admin`` of ``tenant_id`` (anyone else: 403, before the parameters are read).

What: ``backend.execution.metrics.summarize`` over the sharded day counters
``tenants/<t>/metrics/<day>__<shard>`` with ``from <= day <= to`` (trade days, YYYY-MM-DD, both
inclusive; ``store.read_metrics``). The ledger is never scanned: the cost is at most
days x ``SHARDS`` small documents, and the period is capped at ``MAX_DAYS`` so it stays bounded.

Without ``strategy_id`` the body also has ``by_strategy``: one summary per strategy present in the
shards' ``by_strategy`` maps of the period, and ``by_asset_class``: one summary per asset class
present in their ``by_asset_class`` maps (at most the five ``AssetClass`` values; slippage
estimated vs actual and cost savings per class). With it, ``summary`` is that strategy's and both
breakdowns are null (the per-class counters are the tenant's, not split per strategy).
"""
from __future__ import annotations

from typing import Any

from backend.api.auth import Identity
from backend.api.http import ApiRequest, ApiResponse
from backend.api.ledger_review import check_day_range, require_tenant_admin, single_valued

MAX_DAYS = 366


def handle(request: ApiRequest, identity: Identity, store: Any, tenant_id: str) -> ApiResponse:
    from backend.api.app import parse_model
    from backend.api.models import MetricsQuery, MetricsResponse
    from backend.execution.metrics import asset_classes_present, summarize

    require_tenant_admin(identity, tenant_id)
    query = parse_model(MetricsQuery, single_valued(request.query))
    check_day_range(query.from_, query.to, max_days=MAX_DAYS)
    docs = store.read_metrics(tenant_id, query.from_, query.to)
    by_strategy = by_asset_class = None
    if query.strategy_id is None:
        names = sorted({name for doc in docs for name in (doc.get("by_strategy") or {})})
        by_strategy = {name: summarize(docs, name) for name in names}
        by_asset_class = {klass: summarize(docs, asset_class=klass) for klass in asset_classes_present(docs)}
    body = MetricsResponse.model_validate({
        "tenant_id": tenant_id, "from": query.from_, "to": query.to, "strategy_id": query.strategy_id,
        "shard_documents": len(docs), "summary": summarize(docs, query.strategy_id), "by_strategy": by_strategy,
        "by_asset_class": by_asset_class})
    return ApiResponse(200, body.model_dump(mode="json", by_alias=True))
