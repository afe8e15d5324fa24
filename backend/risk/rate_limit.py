"""Per-user and per-tenant rate limits for order requests (HTTP POSTs and intent documents). Pure.

Two lines, both per scope (``user`` = tenant + uid, ``tenant``):

1. **In-process token bucket** (no I/O): capacity = the per-minute limit, refilled continuously at
   limit/60 per second. It stops a burst against one instance at once.
2. **Shared per-minute counters** (``RateCounters`` port; Firestore: ``tenants/<t>/rate_counters``):
   fixed one-minute windows, each scope's count spread over ``shards`` documents that admitted
   requests increment round-robin (one batched write, never a transaction, never one hot
   document). An instance reads the shard sums of a scope (one ``get_all``) at most once per
   ``refresh_seconds`` and adds what it admitted since: instances may overshoot the limit by what
   they admit within one refresh interval, and a window boundary may admit up to twice the limit
   in a short span (the bucket still bounds each instance).

``admit`` only decides and takes local tokens; ``record`` increments the shared counters and is
called only for requests that reached the engine, so a refused (429) or invalid (400) request
writes nothing. If the counters cannot be read or written the limiter fails open on the shared
line (logged ``rate_limit.counters_unavailable``): the in-process bucket still applies, and a
limiter outage must not halt trading.
"""
from __future__ import annotations

import itertools
import math
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence

WINDOW_SECONDS = 60


@dataclass(frozen=True)
class Scope:
    """``kind`` ``"u"`` (one user in a tenant) or ``"t"`` (the whole tenant)."""

    kind: str
    tenant_id: str
    uid: str = ""

    @property
    def key(self) -> str:
        return f"u_{self.uid}" if self.kind == "u" else "t"


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    scope: str | None = None  # "user" | "tenant" when refused
    limit: int = 0
    retry_after_seconds: int = 0
    line: str | None = None  # "local" (bucket) | "shared" (counters) when refused
    # admitted on the local line with the shared counts still to read (``admit(defer_shared=True)``):
    # the caller reads ``deferred.paths`` with its own batched read and calls ``deferred.decide``
    deferred: "SharedCheck | None" = None

    @property
    def reason(self) -> str:
        return (f"RATE_LIMITED: {self.scope} limit {self.limit}/min ({self.line}); "
                f"retry after {self.retry_after_seconds}s")


class RateCounters(Protocol):
    """Storage of the shared counters (adapters: ``backend.adapters.rate_counters``)."""

    def counts(self, scopes: Sequence[Scope], window: int, shards: Mapping[Scope, int]) -> dict[Scope, int]:
        """The sum of each scope's shard documents for ``window``."""
        ...

    def increment(self, items: Sequence[tuple[Scope, int]], window: int, expires_at: float) -> None:
        """Add 1 to shard ``int`` of each scope for ``window`` (one batched write)."""
        ...

    # Optional (issue 17): ``increment_ops(items, window, expires_at)`` answers the same increments
    # as unit-of-work ops (``backend.execution.unit_of_work``) so they can ride another commit of the
    # same database; a store that cannot answers nothing (the counters are written by ``increment``).


class _Bucket:
    __slots__ = ("tokens", "at")

    def __init__(self, tokens: float, at: float):
        self.tokens = tokens
        self.at = at


class RateLimiter:
    def __init__(self, *, user_per_min: int, tenant_per_min: int, counters: RateCounters | None = None,
                 shards: int = 8, refresh_seconds: float = 1.0, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic, on_error: Callable[[Exception], None] | None = None,
                 max_buckets: int = 50_000):
        self.user_per_min = int(user_per_min)
        self.tenant_per_min = int(tenant_per_min)
        self.counters = counters
        self.shards = max(1, int(shards))
        self.refresh_seconds = float(refresh_seconds)
        self._wall = wall
        self._mono = monotonic
        self._on_error = on_error
        self._max_buckets = max_buckets
        self._lock = threading.Lock()
        self._buckets: dict[Scope, _Bucket] = {}
        # scope → (window, count read, read at (monotonic), admitted here since the read)
        self._seen: dict[Scope, list[float]] = {}
        self._rr = itertools.count(random.randrange(1 << 16))

    # --- configuration -----------------------------------------------------------------------
    def limit(self, scope: Scope) -> int:
        return self.user_per_min if scope.kind == "u" else self.tenant_per_min

    def shard_count(self, scope: Scope) -> int:
        """Tenant scopes use every shard; a user's count needs only enough documents for its own
        limit (about one write per second per document sustained)."""
        if scope.kind == "t":
            return self.shards
        return max(1, min(self.shards, math.ceil(self.limit(scope) / WINDOW_SECONDS)))

    def scopes(self, tenant_id: str, uid: str | None) -> list[Scope]:
        out = []
        if uid and self.user_per_min > 0:
            out.append(Scope("u", tenant_id, uid))
        if self.tenant_per_min > 0:
            out.append(Scope("t", tenant_id))
        return out

    # --- the decision ------------------------------------------------------------------------
    def admit(self, tenant_id: str, uid: str | None, *, defer_shared: bool = False) -> RateDecision:
        """``defer_shared`` (issue 17): when the shared counts must be read and the counters can name
        their documents (``count_paths``), admit on the local line and answer the read as
        ``RateDecision.deferred`` instead of making it here — the engine reads those documents with
        its own one batched read and decides there, before anything is written."""
        scopes = self.scopes(tenant_id, uid)
        if not scopes:
            return RateDecision(True)
        now = self._mono()
        with self._lock:
            for scope in scopes:  # 1. the local bucket (peek)
                bucket = self._bucket(scope, now)
                if bucket.tokens < 1:
                    rate = self.limit(scope) / WINDOW_SECONDS
                    return self._refused(scope, math.ceil((1 - bucket.tokens) / rate), "local")
        window, remaining = self._window()
        if self.counters is not None:  # 2. the shared counters
            stale = self._stale(scopes, window, now)
            name_paths = getattr(self.counters, "count_paths", None)
            if stale and defer_shared and name_paths is not None:
                paths = name_paths(stale, window, {s: self.shard_count(s) for s in stale})
                refused = self._shared_refusal(scopes, window, remaining, skip=stale)
                if refused is not None:
                    return refused
                with self._lock:
                    for scope in scopes:
                        self._buckets[scope].tokens -= 1
                return RateDecision(True, deferred=SharedCheck(self, scopes, stale, window, remaining, now, paths))
            if stale:
                try:
                    read = self.counters.counts(stale, window, {s: self.shard_count(s) for s in stale})
                except Exception as exc:  # noqa: BLE001 - fail open on the shared line, logged
                    self._error(exc)
                    read = None
                if read is not None:
                    with self._lock:
                        for scope in stale:
                            self._seen[scope] = [window, float(read.get(scope, 0)), now, 0.0]
            refused = self._shared_refusal(scopes, window, remaining)
            if refused is not None:
                return refused
        with self._lock:
            for scope in scopes:
                self._buckets[scope].tokens -= 1
        return RateDecision(True)

    def _shared_refusal(self, scopes: Sequence[Scope], window: int, remaining: int,
                        skip: Sequence[Scope] = ()) -> RateDecision | None:
        """The shared line on this instance's view of the counts (scopes in ``skip``: not yet read)."""
        with self._lock:
            for scope in scopes:
                seen = self._seen.get(scope)
                if scope not in skip and seen is not None and seen[0] == window \
                        and seen[1] + seen[3] >= self.limit(scope):
                    return self._refused(scope, remaining, "shared")
        return None

    def record(self, tenant_id: str, uid: str | None) -> None:
        """Count one admitted request in the shared counters (call only once it reached the engine)."""
        planned = self._plan(tenant_id, uid)
        if planned is None:
            return
        items, window, expires_at = planned
        self.recorded(tenant_id, uid, window)
        try:
            self.counters.increment(items, window, expires_at)  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001
            self._error(exc)

    def record_ops(self, tenant_id: str, uid: str | None) -> tuple[tuple[Any, ...], int]:
        """The increments ``record`` would write, as store ops that can ride the engine's first commit
        of the request (issue 17: no commit of their own on the order path), and their window. Empty
        when there is nothing to count or the counters cannot give ops: then call ``record``. Writes
        nothing; once the commit carrying them succeeded, call ``recorded``."""
        planned = self._plan(tenant_id, uid)
        build = getattr(self.counters, "increment_ops", None)
        if planned is None or build is None:
            return (), 0
        items, window, expires_at = planned
        return tuple(build(items, window, expires_at) or ()), window

    def recorded(self, tenant_id: str, uid: str | None, window: int) -> None:
        """This instance's view of the shared counts after one recorded request of ``window``."""
        with self._lock:
            for scope in self.scopes(tenant_id, uid):
                seen = self._seen.get(scope)
                if seen is not None and seen[0] == window:
                    seen[3] += 1

    def _plan(self, tenant_id: str, uid: str | None) -> tuple[list[tuple[Scope, int]], int, float] | None:
        scopes = self.scopes(tenant_id, uid)
        if not scopes or self.counters is None:
            return None
        window, remaining = self._window()
        n = next(self._rr)
        return [(scope, n % self.shard_count(scope)) for scope in scopes], window, self._wall() + remaining + 3600

    # --- helpers -----------------------------------------------------------------------------
    def _window(self) -> tuple[int, int]:
        wall = self._wall()
        window = int(wall // WINDOW_SECONDS)
        return window, max(1, math.ceil((window + 1) * WINDOW_SECONDS - wall))

    def _stale(self, scopes: Sequence[Scope], window: int, now: float) -> list[Scope]:
        with self._lock:
            return [s for s in scopes if (seen := self._seen.get(s)) is None or seen[0] != window
                    or now - seen[2] >= self.refresh_seconds]

    def _bucket(self, scope: Scope, now: float) -> _Bucket:
        capacity = float(self.limit(scope))
        bucket = self._buckets.get(scope)
        if bucket is None:
            if len(self._buckets) >= self._max_buckets:
                full = [k for k, b in self._buckets.items()
                        if b.tokens + (now - b.at) * self.limit(k) / WINDOW_SECONDS >= self.limit(k)]
                for key in full or list(self._buckets)[: len(self._buckets) // 2]:
                    self._buckets.pop(key, None)
                    self._seen.pop(key, None)
            bucket = self._buckets[scope] = _Bucket(capacity, now)
        else:
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.at) * capacity / WINDOW_SECONDS)
            bucket.at = now
        return bucket

    def _refused(self, scope: Scope, retry_after: float, line: str) -> RateDecision:
        return RateDecision(False, "user" if scope.kind == "u" else "tenant", self.limit(scope),
                            int(min(max(math.ceil(retry_after), 1), WINDOW_SECONDS)), line)

    def _error(self, exc: Exception) -> None:
        if self._on_error is not None:
            self._on_error(exc)


class SharedCheck:
    """The shared line of one admitted request, decided on documents its caller read (issue 17: the
    counts ride the engine's one batched read instead of a read round trip of their own). ``paths``:
    the shard documents to read; ``decide(docs)`` (path -> (document or None, token)) records the
    counts as this instance's view and answers the decision — a refusal gives the request's local
    tokens back, as a refusal before them would not have taken them."""

    def __init__(self, limiter: RateLimiter, scopes: Sequence[Scope], stale: Sequence[Scope], window: int,
                 remaining: int, now: float, paths: Mapping[str, Scope]):
        self.limiter, self.scopes, self.stale = limiter, list(scopes), list(stale)
        self.window, self.remaining, self.now, self._paths = window, remaining, now, dict(paths)

    @property
    def paths(self) -> list[str]:
        return list(self._paths)

    def decide(self, docs: Mapping[str, tuple[Any, Any]]) -> RateDecision:
        counts = {scope: 0.0 for scope in self.stale}
        for path, scope in self._paths.items():
            doc = (docs.get(path) or (None, None))[0] or {}
            value = doc.get("n")
            if isinstance(value, int) and not isinstance(value, bool):
                counts[scope] += value
        limiter = self.limiter
        with limiter._lock:  # noqa: SLF001 - the limiter's own state, updated as admit would
            for scope, count in counts.items():
                limiter._seen[scope] = [self.window, float(count), self.now, 0.0]  # noqa: SLF001
        refused = limiter._shared_refusal(self.scopes, self.window, self.remaining)  # noqa: SLF001
        if refused is not None:
            with limiter._lock:  # noqa: SLF001
                for scope in self.scopes:
                    bucket = limiter._buckets.get(scope)  # noqa: SLF001
                    if bucket is not None:
                        bucket.tokens = min(float(limiter.limit(scope)), bucket.tokens + 1)
            return refused
        return RateDecision(True)
