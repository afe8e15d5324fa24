"""The HTTP face of the rate limiter (``backend.risk.rate_limit``): 429 with ``Retry-After``.

Every authenticated POST is admitted (or refused) after the identity is verified and before the
body is parsed; a refused request writes nothing. The shared counters are incremented only for a
request that reached the engine (its response is a success, a recorded decision, or a pending
429/503 from the broker), so neither a 429 nor a 400 writes anything. Each refusal logs
``api.rate_limited`` (WARNING) — a storm of them is what the runbook's alert counts.
"""
from __future__ import annotations

from typing import Any

from backend.api.http import ApiError
from backend.logs import log_event


def admit(limiter: Any, tenant_id: str, uid: str, *, source: str = "http") -> None:
    decision = limiter.admit(tenant_id, uid)
    if decision.allowed:
        return
    log_event("api.rate_limited", severity="WARNING", source=source, tenant_id=tenant_id, uid=uid,
              scope=decision.scope, limit_per_min=decision.limit, line=decision.line,
              retry_after=decision.retry_after_seconds)
    raise ApiError(429, "RATE_LIMITED", f"too many requests for this {decision.scope}; retry later",
                   reason=decision.reason, headers={"Retry-After": str(decision.retry_after_seconds)},
                   extra={"retry_after": decision.retry_after_seconds})


def reached_engine(status: int) -> bool:
    """Whether a POST's response means the engine ran (and may have written)."""
    return status < 400 or status in (429, 503)


def side_writes(limiter: Any, tenant_id: str, uid: str) -> Any:
    """The shared counters' increments of this request as writes that ride the engine's first commit
    (issue 17: no commit of their own on ``POST /execute``), or None when the counters cannot give
    them (the in-memory counters): ``record`` then writes them as before."""
    ops, window = limiter.record_ops(tenant_id, uid)
    if not ops:
        return None
    from backend.execution.unit_of_work import SideWrites

    return SideWrites(ops, tag=window)


def record(limiter: Any, tenant_id: str, uid: str, side: Any) -> None:
    """Count a request that reached the engine once: in the engine's commit that carried its writes
    (``side.taken``), else by a commit of the counters' own."""
    if side is not None and side.taken:
        limiter.recorded(tenant_id, uid, side.tag)
    else:
        limiter.record(tenant_id, uid)
