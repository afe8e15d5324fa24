"""Storage of the rate limiter's shared counters (``backend.risk.rate_limit.RateCounters``).

Firestore: ``tenants/<tenant>/rate_counters/<scope>-<window>-<shard>`` with fields ``n`` (an
``Increment``), ``scope`` (``t`` or ``u_<uid>``), ``window`` (epoch minute), ``shard`` and
``expires_at`` (a timestamp for a TTL policy on the collection group ``rate_counters``; see
docs/RUNBOOK.md). Admitted requests increment one shard per scope in one batched write (no
transaction, no read); instances read a scope's shards with one ``get_all``. The uid in a document
id is an identity claim or a rules-checked document field that passed ``validate_id``; the ``u_`` /
``t`` prefix keeps every id clear of Firestore's reserved ``__…__`` names.
"""
from __future__ import annotations

import threading
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from backend.risk.rate_limit import Scope

COLLECTION = "rate_counters"


def doc_id(scope: Scope, window: int, shard: int) -> str:
    return f"{scope.key}-{window}-{shard}"


class FirestoreRateCounters:
    def __init__(self, db: Any):
        self.db = db

    def _ref(self, scope: Scope, window: int, shard: int) -> Any:
        return (self.db.collection("tenants").document(scope.tenant_id).collection(COLLECTION)
                .document(doc_id(scope, window, shard)))

    def counts(self, scopes: Sequence[Scope], window: int, shards: Mapping[Scope, int]) -> dict[Scope, int]:
        refs: dict[str, Scope] = {}
        for scope in scopes:
            for shard in range(shards[scope]):
                refs[self._ref(scope, window, shard).path] = scope
        out = {scope: 0 for scope in scopes}
        if not refs:
            return out
        ref_objs = [self.db.document(path) for path in refs]
        for snap in self.db.get_all(ref_objs, field_paths=["n"]):
            if snap.exists:
                value = snap.get("n")
                if isinstance(value, int):
                    out[refs[snap.reference.path]] += value
        return out

    def increment(self, items: Sequence[tuple[Scope, int]], window: int, expires_at: float) -> None:
        from google.cloud import firestore

        batch = self.db.batch()
        expires = datetime.fromtimestamp(expires_at, tz=timezone.utc)
        for scope, shard in items:
            batch.set(self._ref(scope, window, shard),
                      {"n": firestore.Increment(1), "scope": scope.key, "window": window, "shard": shard,
                       "expires_at": expires}, merge=True)
        batch.commit()


    def count_paths(self, scopes: Sequence[Scope], window: int, shards: Mapping[Scope, int]) -> dict[str, Scope]:
        """The shard documents ``counts`` reads, by path (issue 17: another batched read can fetch them)."""
        return {f"tenants/{scope.tenant_id}/{COLLECTION}/{doc_id(scope, window, shard)}": scope
                for scope in scopes for shard in range(shards[scope])}

    def increment_ops(self, items: Sequence[tuple[Scope, int]], window: int, expires_at: float) -> list[Any]:
        """``increment``'s writes as unit-of-work ops (issue 17: they ride the engine's claim or
        decision commit of the same request instead of a commit of their own)."""
        from backend.execution.unit_of_work import Inc, Set

        expires = datetime.fromtimestamp(expires_at, tz=timezone.utc)
        return [Set(f"tenants/{scope.tenant_id}/{COLLECTION}/{doc_id(scope, window, shard)}",
                    {"n": Inc(1), "scope": scope.key, "window": window, "shard": shard, "expires_at": expires},
                    merge=True)
                for scope, shard in items]


class MemoryRateCounters:
    """The same contract in memory (unit tests, the in-memory stack)."""

    def __init__(self) -> None:
        self.docs: dict[tuple[str, str], int] = defaultdict(int)
        self.writes = 0
        self._lock = threading.Lock()

    def counts(self, scopes: Sequence[Scope], window: int, shards: Mapping[Scope, int]) -> dict[Scope, int]:
        with self._lock:
            return {scope: sum(self.docs.get((scope.tenant_id, doc_id(scope, window, s)), 0)
                               for s in range(shards[scope])) for scope in scopes}

    def increment(self, items: Sequence[tuple[Scope, int]], window: int, expires_at: float) -> None:
        with self._lock:
            self.writes += 1
            for scope, shard in items:
                self.docs[(scope.tenant_id, doc_id(scope, window, shard))] += 1
