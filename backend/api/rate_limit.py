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


def admit(limiter: Any, tenant_id: str, uid: str, *, source: str = "http", defer: bool = False) -> Any:
    """429 now, or admitted. ``defer`` (issue 17, ``POST /execute``): when the shared counts must be
    read, answer a ``DeferredRateCheck`` instead of reading them here — the engine reads them with its
    one batched read and calls it (the 429 then comes from there, still before anything is written)."""
    decision = limiter.admit(tenant_id, uid, defer_shared=True) if defer else limiter.admit(tenant_id, uid)
    if decision.allowed:
        deferred = getattr(decision, "deferred", None)
        return None if deferred is None else DeferredRateCheck(deferred, tenant_id, uid, source)
    raise _refusal(decision, tenant_id, uid, source)


def _refusal(decision: Any, tenant_id: str, uid: str, source: str) -> ApiError:
    log_event("api.rate_limited", severity="WARNING", source=source, tenant_id=tenant_id, uid=uid,
              scope=decision.scope, limit_per_min=decision.limit, line=decision.line,
              retry_after=decision.retry_after_seconds)
    return ApiError(429, "RATE_LIMITED", f"too many requests for this {decision.scope}; retry later",
                    reason=decision.reason, headers={"Retry-After": str(decision.retry_after_seconds)},
                    extra={"retry_after": decision.retry_after_seconds})


class DeferredRateCheck:
    """The shared line of one request, for the engine (``ExecutionContext.rate_check``): ``paths`` go
    into its batched pre-claim read; calling it with the documents read raises the same 429 the API
    would have raised (``backend.risk.rate_limit.SharedCheck``)."""

    def __init__(self, check: Any, tenant_id: str, uid: str, source: str):
        self._check, self._tenant_id, self._uid, self._source = check, tenant_id, uid, source

    @property
    def paths(self) -> list[str]:
        return self._check.paths

    def __call__(self, docs: Any) -> None:
        decision = self._check.decide(docs)
        if not decision.allowed:
            raise _refusal(decision, self._tenant_id, self._uid, self._source)


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
