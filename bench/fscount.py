"""Count Firestore RPCs and documents at the client's RPC layer.

``instrument(client, log)`` puts a counting proxy in front of the google-cloud-firestore client's
GAPIC API object (``client._firestore_api``), so every path the library offers — batches,
transactions, ``DocumentReference.get``, ``Client.get_all``, query ``stream``/``get``,
aggregation ``count().get()`` — is seen exactly once, as the RPC it really sends:

    commit                  one commit (batch or transaction); its writes by kind and collection
    batch_get_documents     documents found / missing (``get``, ``get_all``, reads in a transaction)
    run_query               documents returned (``stream``, ``get``, collection-group queries)
    run_aggregation_query   the count returned
    begin_transaction / rollback

``CountingStore`` wraps the public methods of ``FirestoreStore`` to label each RPC with the store
operation that sent it (the outermost one: ``finish`` calling ``get_intent`` is ``finish``).

Billing model used for ``billed_reads`` (Firestore pricing): one read per document returned by a
get or a query; one read per requested document that does not exist; a query that returns nothing
costs one read; a count aggregation costs one read per 1,000 index entries matched (minimum one).
Writes and deletes are one each per document; field transforms ride on their write for free.
"""
from __future__ import annotations

import math
import time
from collections import Counter
from typing import Any, Iterable, Iterator


def _get(request: Any, key: str, default: Any = None) -> Any:
    if isinstance(request, dict):
        return request.get(key, default)
    return getattr(request, key, default)


def _pb(message: Any) -> Any:
    return getattr(message, "_pb", message)


def _collection_of(path: str) -> str:
    """'projects/p/databases/d/documents/tenants/t/ledger_trades/x' -> 'tenants/*/ledger_trades'."""
    rel = path.split("/documents/", 1)[-1]
    parts = rel.split("/")
    coll = [parts[i] for i in range(0, len(parts), 2)]
    return "/*/".join(coll)


def _write_kind(write: Any) -> tuple[str, str]:
    pb = _pb(write)
    op = pb.WhichOneof("operation")
    if op == "delete":
        return "delete", _collection_of(pb.delete)
    if op == "transform":
        return "transform", _collection_of(pb.transform.document)
    kind = "set"
    if pb.HasField("current_document"):
        cond = pb.current_document.WhichOneof("condition_type")
        if cond == "exists":
            kind = "update" if pb.current_document.exists else "create"
        elif cond == "update_time":
            kind = "update_if_unchanged"
    if pb.HasField("update_mask") and kind == "set":
        kind = "merge"
    return kind, _collection_of(pb.update.name)


class RpcLog:
    """Every RPC the instrumented client sent, with the store operation that sent it."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._ops: list[str] = []

    @property
    def op(self) -> str:
        return self._ops[0] if self._ops else "-"

    def push(self, op: str) -> None:
        self._ops.append(op)

    def pop(self) -> None:
        self._ops.pop()

    def record(self, **event: Any) -> dict[str, Any]:
        event["op"] = self.op
        event["t0"] = event["t1"] = time.perf_counter()
        self.events.append(event)
        return event

    def mark(self) -> int:
        return len(self.events)

    def since(self, mark: int) -> list[dict[str, Any]]:
        return self.events[mark:]


def summarize(events: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Totals of a list of events (see the module docstring for the billing model)."""
    out: Counter[str] = Counter()
    writes_by_kind: Counter[str] = Counter()
    for ev in events:
        rpc = ev["rpc"]
        out["rpcs"] += 1
        if rpc == "commit":
            out["commits"] += 1
            out["commits_in_transaction"] += int(ev["transaction"])
            out["commits_failed"] += int(not ev["ok"])
            for kind, _ in ev["writes"]:
                writes_by_kind[kind] += 1
                if kind == "delete":
                    out["deletes"] += 1
                else:
                    out["writes"] += 1
        elif rpc == "batch_get_documents":
            out["lookups"] += 1
            out["docs_found"] += ev["found"]
            out["docs_missing"] += ev["missing"]
            out["billed_reads"] += ev["found"] + ev["missing"]
        elif rpc == "run_query":
            out["queries"] += 1
            out["query_docs"] += ev["docs"]
            out["billed_reads"] += max(1, ev["docs"])
        elif rpc == "run_aggregation_query":
            out["aggregations"] += 1
            out["billed_reads"] += max(1, math.ceil(ev["count"] / 1000))
        elif rpc in ("begin_transaction", "rollback"):
            out[rpc] += 1
    result = {key: out.get(key, 0) for key in (
        "commits", "commits_in_transaction", "commits_failed", "writes", "deletes", "billed_reads", "lookups",
        "docs_found", "docs_missing", "queries", "query_docs", "aggregations", "begin_transaction", "rollback",
        "rpcs")}
    result["writes_by_kind"] = dict(sorted(writes_by_kind.items()))
    return result


READ_RPCS = ("batch_get_documents", "run_query", "run_aggregation_query")


def round_trips(events: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Sequential round trips: RPCs whose [sent, last response] intervals overlap were in flight
    together (e.g. a ``get_all`` and a count aggregation sent concurrently) and count as one wave.
    A wave is a commit round trip if it holds a commit, a read round trip if it holds only reads,
    else "other" (begin_transaction / rollback). ``sequence`` lists the waves in order."""
    evs = sorted((ev for ev in events if "t0" in ev), key=lambda ev: ev["t0"])
    waves: list[list[dict[str, Any]]] = []
    end = -math.inf
    for ev in evs:
        if waves and ev["t0"] < end:
            waves[-1].append(ev)
            end = max(end, ev["t1"])
        else:
            waves.append([ev])
            end = ev["t1"]
    out = {"read_round_trips": 0, "commit_round_trips": 0, "other_round_trips": 0, "sequence": []}
    for wave in waves:
        rpcs = [ev["rpc"] for ev in wave]
        kind = "commit" if "commit" in rpcs else "read" if all(r in READ_RPCS for r in rpcs) else "other"
        out[f"{kind}_round_trips"] += 1
        label = "+".join(f"{ev['op']}:{_short(ev)}" for ev in wave)
        out["sequence"].append(f"{kind}[{label}]")
    out["round_trips"] = len(waves)
    return out


def _short(ev: dict[str, Any]) -> str:
    rpc = ev["rpc"]
    if rpc == "batch_get_documents":
        return f"get_all({ev['requested']})"
    if rpc == "run_aggregation_query":
        return "count"
    if rpc == "run_query":
        return "query"
    return rpc


def by_op(events: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per store operation: the RPCs it sent, in order, as short strings."""
    ops: dict[str, list[str]] = {}
    for ev in events:
        ops.setdefault(ev["op"], []).append(describe(ev))
    return ops


def describe(ev: dict[str, Any]) -> str:
    rpc = ev["rpc"]
    if rpc == "commit":
        kinds = Counter(f"{kind} {coll}" for kind, coll in ev["writes"])
        body = ", ".join(f"{n}× {k}" if n > 1 else k for k, n in kinds.items())
        return f"commit{' (txn)' if ev['transaction'] else ''}{'' if ev['ok'] else ' FAILED'} [{body}]"
    if rpc == "batch_get_documents":
        return (f"get {ev['requested']} doc(s) {sorted(set(ev['collections']))}"
                f"{' (txn)' if ev['transaction'] else ''}: {ev['found']} found, {ev['missing']} missing")
    if rpc == "run_query":
        return f"query {ev['collection']}: {ev['docs']} doc(s)"
    if rpc == "run_aggregation_query":
        return f"count {ev['collection']} = {ev['count']}"
    return rpc


class _CountingApi:
    """Stands in for the GAPIC FirestoreClient; anything not counted passes straight through."""

    def __init__(self, api: Any, log: RpcLog):
        self._api = api
        self._log = log

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)

    def commit(self, request: Any = None, **kwargs: Any) -> Any:
        writes = [_write_kind(w) for w in (_get(request, "writes") or [])]
        event = self._log.record(rpc="commit", writes=writes, transaction=bool(_get(request, "transaction")), ok=False)
        try:
            response = self._api.commit(request=request, **kwargs)
        finally:
            event["t1"] = time.perf_counter()
        event["ok"] = True
        return response

    def batch_get_documents(self, request: Any = None, **kwargs: Any) -> Iterator[Any]:
        docs = list(_get(request, "documents") or [])
        event = self._log.record(rpc="batch_get_documents", requested=len(docs),
                                 collections=[_collection_of(d) for d in docs],
                                 transaction=bool(_get(request, "transaction") or _get(request, "new_transaction")),
                                 found=0, missing=0)
        return self._count_batch_get(self._api.batch_get_documents(request=request, **kwargs), event)

    @staticmethod
    def _count_batch_get(stream: Iterator[Any], event: dict[str, Any]) -> Iterator[Any]:
        for response in stream:
            which = _pb(response).WhichOneof("result")
            if which == "found":
                event["found"] += 1
            elif which == "missing":
                event["missing"] += 1
            event["t1"] = time.perf_counter()
            yield response
        event["t1"] = time.perf_counter()

    def run_query(self, request: Any = None, **kwargs: Any) -> Iterator[Any]:
        query = _pb(_get(request, "structured_query"))
        source = query.from_[0] if len(query.from_) else None
        coll = (("**/" if source.all_descendants else "") + source.collection_id) if source is not None else "?"
        event = self._log.record(rpc="run_query", collection=coll, docs=0,
                                 transaction=bool(_get(request, "transaction")))
        return self._count_query(self._api.run_query(request=request, **kwargs), event)

    @staticmethod
    def _count_query(stream: Iterator[Any], event: dict[str, Any]) -> Iterator[Any]:
        for response in stream:
            if _pb(response).HasField("document"):
                event["docs"] += 1
            event["t1"] = time.perf_counter()
            yield response
        event["t1"] = time.perf_counter()

    def run_aggregation_query(self, request: Any = None, **kwargs: Any) -> Iterator[Any]:
        agg = _pb(_get(request, "structured_aggregation_query"))
        source = agg.structured_query.from_[0] if len(agg.structured_query.from_) else None
        coll = (("**/" if source.all_descendants else "") + source.collection_id) if source is not None else "?"
        event = self._log.record(rpc="run_aggregation_query", collection=coll, count=0)
        return self._count_aggregation(self._api.run_aggregation_query(request=request, **kwargs), event)

    @staticmethod
    def _count_aggregation(stream: Iterator[Any], event: dict[str, Any]) -> Iterator[Any]:
        for response in stream:
            pb = _pb(response)
            if pb.HasField("result"):
                for value in pb.result.aggregate_fields.values():
                    event["count"] = max(event["count"], int(value.integer_value))
            event["t1"] = time.perf_counter()
            yield response
        event["t1"] = time.perf_counter()

    def begin_transaction(self, request: Any = None, **kwargs: Any) -> Any:
        event = self._log.record(rpc="begin_transaction")
        try:
            return self._api.begin_transaction(request=request, **kwargs)
        finally:
            event["t1"] = time.perf_counter()

    def rollback(self, request: Any = None, **kwargs: Any) -> Any:
        event = self._log.record(rpc="rollback")
        try:
            return self._api.rollback(request=request, **kwargs)
        finally:
            event["t1"] = time.perf_counter()


class _FastAsApi:
    """``firestore_rpc.FastRpc``'s two calls in the GAPIC client's shape, for ``_CountingApi``."""

    def __init__(self, fast: Any):
        self._fast = fast

    def commit(self, request: Any = None, **kwargs: Any) -> Any:
        return self._fast.commit(request)

    def batch_get_documents(self, request: Any = None, **kwargs: Any) -> Iterator[Any]:
        return self._fast.batch_get(request)


class _CountingFast:
    """The order path's bare calls (``firestore_rpc``), counted like the GAPIC client's."""

    def __init__(self, fast: Any, log: RpcLog):
        self._counting = _CountingApi(_FastAsApi(fast), log)

    def commit(self, request: Any) -> Any:
        return self._counting.commit(request=request)

    def batch_get(self, request: Any) -> Iterator[Any]:
        return self._counting.batch_get_documents(request=request)


def instrument(client: Any, log: RpcLog) -> Any:
    """Route ``client``'s RPCs through the counter (in place; returns the client): the GAPIC client's
    and the bare ``Commit`` / ``BatchGetDocuments`` the store sends on the order path."""
    from backend.adapters.firestore_rpc import FastRpc

    api = client._firestore_api  # creates the GAPIC client on first access
    if not isinstance(api, _CountingApi):
        client._firestore_api_internal = _CountingApi(api, log)
        client.__dict__.pop("_fast_rpc", None)  # rebuilt on the counter: its hand-overs are counted too
    fast = FastRpc.for_client(client)
    if fast is not None and not isinstance(fast, _CountingFast):
        client._fast_rpc = _CountingFast(fast, log)
    return client


def counting_store_class() -> type:
    """``FirestoreStore`` whose public methods label the RPCs they send (import deferred)."""
    from backend.adapters.firestore_store import FirestoreStore

    class CountingStore(FirestoreStore):
        def __init__(self, client: Any, log: RpcLog):
            super().__init__(client)
            self.rpc_log = log
            for name in dir(FirestoreStore):
                if name.startswith("_") or name in ("from_env",):
                    continue
                attr = getattr(FirestoreStore, name)
                if callable(attr) and not name.endswith("_ref"):
                    setattr(self, name, self._labelled(name, getattr(self, name)))

        def _labelled(self, name: str, method: Any) -> Any:
            log = self.rpc_log

            def call(*args: Any, **kwargs: Any) -> Any:
                log.push(name)
                try:
                    return method(*args, **kwargs)
                finally:
                    log.pop()

            call.__name__ = name
            return call

    return CountingStore
