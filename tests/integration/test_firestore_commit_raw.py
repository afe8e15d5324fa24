"""``FirestoreStore.commit`` sends its writes through the GAPIC method with a raw request protobuf and
reads the raw write results (issue 17: ~0.2 ms of CPU per commit). On the official emulator: the same
ops committed by the library's ``WriteBatch.commit`` and by the store leave the same documents and
answer the same update times and increments; a refused precondition is the same ``Conflict``; a
contention abort is retried, then ``StoreContention``, and a precondition failure is not retried —
on both ways a commit is sent (``firestore_rpc``'s bare call and the library's GAPIC method)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from google.api_core import exceptions as gexc
from proto.datetime_helpers import DatetimeWithNanoseconds

from backend.adapters.firestore_codec import write_for
from backend.adapters.firestore_rpc import FastRpc
from backend.adapters.firestore_store import FirestoreStore, _increments_after
from backend.execution.unit_of_work import (CHANGED, EXISTS_ALREADY, MISSING, SERVER_TIME, ArrayUnion, Commit, Conflict,
                                            Create, Delete, Inc, Increment, Set, Update)
from backend.ports.store import StoreContention
from tests.support.grpc_errors import RpcError


def _ops(root: str) -> list:
    return [
        Create(f"{root}/c/a", {"n": 1, "at": SERVER_TIME, "m": {"x": "1", "y": [1, 2, {"z": None}], "e": {}},
                               "when": datetime(2026, 12, 7, 15, 0, tzinfo=timezone.utc)}),
        Set(f"{root}/c/b", {"s": "é", "count": Inc(3), "tags": ArrayUnion(["t1"])}, merge=True),
        Increment(f"{root}/c/tally", {"trades": 2, "orders": 1}),
        Update(f"{root}/c/u", {"status": "done", "seen": SERVER_TIME}),
        Delete(f"{root}/c/gone"),
    ]


def _library_commit(db, ops):
    """The reference: the library's own batch, its writes built the way the store builds them."""
    batch = db.batch()
    for op in ops:
        batch._add_write_pbs([write_for(op, db.document(op.path)._document_path)])  # noqa: SLF001
    writes = list(batch._write_pbs)  # noqa: SLF001
    results = batch.commit()
    return [getattr(r, "update_time", None) for r in results], _increments_after(writes, results)


def _seed(db, root: str) -> None:
    db.document(f"{root}/c/u").set({"status": "new"})
    db.document(f"{root}/c/gone").set({"x": 1})
    db.document(f"{root}/c/tally").set({"trades": 5})


def _stored(db, root: str) -> dict:
    out = {}
    for name in ("a", "b", "tally", "u", "gone"):
        doc = db.document(f"{root}/c/{name}").get().to_dict()
        if doc is not None:
            doc = {k: ("<time>" if k in ("at", "seen") else v) for k, v in doc.items()}
        out[name] = doc
    return out


def test_the_store_and_the_library_batch_write_and_answer_the_same(db):
    _seed(db, "raw/1")
    _seed(db, "lib/1")
    store = FirestoreStore(db)

    answer = store.commit(Commit(_ops("raw/1")))
    times, increments = _library_commit(db, _ops("lib/1"))

    assert _stored(db, "raw/1") == _stored(db, "lib/1")
    assert [type(t) for t in answer] == [type(t) for t in times]
    assert all(isinstance(t, DatetimeWithNanoseconds) for t in answer[:4])
    # each token is its document's update time (converted once per distinct time of the answer)
    for name, token in zip(("a", "b", "tally", "u"), answer):
        assert token == db.document(f"raw/1/c/{name}").get().update_time
    assert [t is None for t in answer] == [t is None for t in times]
    assert answer.increments == {k.replace("lib/1", "raw/1"): v for k, v in increments.items()}
    assert answer.increments["raw/1/c/tally"] == {"orders": 1, "trades": 7}
    assert answer.increments["raw/1/c/b"] == {"count": 3}
    # a token it answered is the document's update time: a conditional update on it lands
    store.commit(Commit([Update("raw/1/c/a", {"n": 2}, answer[0])]))
    assert db.document("raw/1/c/a").get().to_dict()["n"] == 2


@pytest.mark.parametrize("op, reason", [
    (lambda: Create("raw/2/c/u", {"x": 1}), EXISTS_ALREADY),
    (lambda: Update("raw/2/c/missing", {"x": 1}), MISSING),
    (lambda: Update("raw/2/c/u", {"x": 1}, DatetimeWithNanoseconds(2001, 1, 1, tzinfo=timezone.utc)), CHANGED),
])
def test_a_refused_precondition_is_the_same_conflict_and_writes_nothing(db, op, reason):
    db.document("raw/2/c/u").set({"status": "new"})
    store = FirestoreStore(db)

    with pytest.raises(Conflict) as caught:
        store.commit(Commit([Set("raw/2/c/other", {"x": 1}), op()]))

    assert caught.value.kind == reason
    assert db.document("raw/2/c/other").get().exists is False  # atomic: nothing of the commit landed
    assert db.document("raw/2/c/u").get().to_dict() == {"status": "new"}


class _Flaky:
    """The client's GAPIC API with its first ``fail`` commits aborted (contention) or refused."""

    def __init__(self, api, fail: int, error=gexc.Aborted):
        self.api, self.fail, self.error, self.calls = api, fail, error, 0

    def __getattr__(self, name):
        return getattr(self.api, name)

    def commit(self, request=None, **kwargs):
        self.calls += 1
        if self.calls <= self.fail:
            raise self.error("simulated")
        return self.api.commit(request=request, **kwargs)


class _FlakyStub:
    """The fast path's bare ``Commit`` callable with its first ``fail`` calls answered by an error."""

    def __init__(self, stub, fail: int, error=gexc.Aborted):
        self.stub, self.fail, self.calls = stub, fail, 0
        self.code = error.grpc_status_code

    def __call__(self, request, **kwargs):
        self.calls += 1
        if self.calls <= self.fail:
            raise RpcError(self.code)
        return self.stub(request, **kwargs)


@pytest.fixture(params=["fast", "library"])
def path(request):
    """Both ways a commit is sent: the bare call on the client's channel (``firestore_rpc``) and the
    library's GAPIC method (used when tracing or debug logging is on, or the fast path is missing)."""
    return request.param


def _flaky_store(db, monkeypatch, path: str, fail: int, error=gexc.Aborted):
    monkeypatch.setattr("time.sleep", lambda seconds: None)
    if path == "fast":
        fast = FastRpc.for_client(db)
        assert fast is not None
        flaky = _FlakyStub(fast._commit, fail, error)  # noqa: SLF001
        monkeypatch.setattr(fast, "_commit", flaky)
        return FirestoreStore(db), flaky
    monkeypatch.setattr(db, "_fast_rpc", False, raising=False)
    flaky = _Flaky(db._firestore_api, fail, error)  # noqa: SLF001
    monkeypatch.setattr(type(db), "_firestore_api", property(lambda self: flaky))
    return FirestoreStore(db), flaky


def test_contention_is_retried_then_lands_once(db, monkeypatch, path):
    store, flaky = _flaky_store(db, monkeypatch, path, fail=2)

    answer = store.commit(Commit([Increment(f"raw/3{path}/c/t", {"n": 1})]))

    assert flaky.calls == 3 and answer.increments == {f"raw/3{path}/c/t": {"n": 1}}
    assert db.document(f"raw/3{path}/c/t").get().to_dict() == {"n": 1}


def test_contention_that_never_ends_is_store_contention_after_eight_attempts(db, monkeypatch, path):
    store, flaky = _flaky_store(db, monkeypatch, path, fail=100)

    with pytest.raises(StoreContention):
        store.commit(Commit([Increment(f"raw/4{path}/c/t", {"n": 1})]))

    assert flaky.calls == 8 and db.document(f"raw/4{path}/c/t").get().exists is False


def test_a_precondition_failure_is_an_answer_not_retried(db, monkeypatch, path):
    store, flaky = _flaky_store(db, monkeypatch, path, fail=100, error=gexc.FailedPrecondition)

    with pytest.raises(Conflict) as caught:
        store.commit(Commit([Increment(f"raw/5{path}/c/t", {"n": 1})]))

    assert caught.value.kind == CHANGED and flaky.calls == 1


def _named(name):
    try:
        return name()
    except ValueError as exc:
        return ("ValueError", str(exc))


@pytest.mark.parametrize("path", ["tenants/t1/order_intents/i-1", "a/b", "users/u/portfolio/history/trades/x.y",
                                  "a/b/c", "a//b/c", "/a/b", "a/b/", "a", "a/b//"])
def test_a_write_names_its_document_as_the_library_does(db, path):
    """The documents prefix + the path where that is the library's answer; the library's own answer
    (or its error) for any other path."""
    store = FirestoreStore(db)
    assert _named(lambda: store._document_name(path)) == _named(lambda: db.document(path)._document_path)  # noqa: SLF001


@pytest.mark.parametrize("path", ["a/b/c", "a"])
def test_a_malformed_path_is_refused_before_anything_is_sent(db, path):
    store = FirestoreStore(db)
    with pytest.raises(ValueError):
        store.commit(Commit([Set("raw/3/c/before", {"x": 1}), Set(path, {"x": 1})]))
    assert db.document("raw/3/c/before").get().exists is False
