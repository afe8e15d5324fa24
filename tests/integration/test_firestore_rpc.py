"""``firestore_rpc.FastRpc``: the order path's ``Commit`` and ``BatchGetDocuments`` sent on the
client's own channel without the GAPIC wrappers (issue 17). On the official emulator: it sends what
the library's GAPIC method sends (method, metadata, timeout), reads and writes the same documents,
raises the library's errors, hands a call the library would retry to the library, and stands aside
when the library's tracing or debug logging is on or its pieces are missing."""
from __future__ import annotations

import contextlib
import logging

import grpc
import pytest
from google.api_core import exceptions as gexc
from google.cloud.firestore_v1.types import firestore as firestore_types

from backend.adapters import firestore_rpc
from backend.adapters.firestore_codec import batch_get, write_for
from backend.adapters.firestore_rpc import FastRpc
from backend.adapters.firestore_store import FirestoreStore, _Client
from backend.execution.unit_of_work import Commit, Create, Increment, Set
from tests.support.grpc_errors import RpcError


class _Recorder(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Every call's method, metadata and timeout, as they leave for the channel."""

    def __init__(self):
        self.calls = []

    def _record(self, details):
        self.calls.append((details.method, tuple(details.metadata or ()), details.timeout))

    def intercept_unary_unary(self, continuation, details, request):
        self._record(details)
        return continuation(details, request)

    def intercept_unary_stream(self, continuation, details, request):
        self._record(details)
        return continuation(details, request)


@pytest.fixture
def recorded(firestore_env, firestore_project):
    """A store's client whose channel records what is sent on it (both paths use that channel)."""
    from google.auth.credentials import AnonymousCredentials

    recorder = _Recorder()

    class _RecordingClient(_Client):
        def _emulator_channel(self, transport):
            return grpc.intercept_channel(super()._emulator_channel(transport), recorder)

    client = _RecordingClient(project=firestore_project, credentials=AnonymousCredentials())
    try:
        yield client, recorder
    finally:
        client.close()


def _library(client, monkeypatch):
    monkeypatch.setattr(client, "_fast_rpc", False, raising=False)


def _named(calls, method):
    return [c for c in calls if c[0] in (method, method.encode())]


def test_both_paths_send_the_same_method_metadata_and_timeout(recorded, monkeypatch):
    client, recorder = recorded
    store = FirestoreStore(client)
    assert FastRpc.for_client(client) is not None

    store.commit(Commit([Set("rpc/1/c/a", {"x": 1})]))
    store.get_all(["rpc/1/c/a", "rpc/1/c/missing"])
    fast = list(recorder.calls)
    recorder.calls.clear()
    _library(client, monkeypatch)
    store.commit(Commit([Set("rpc/1/c/a", {"x": 2})]))
    store.get_all(["rpc/1/c/a", "rpc/1/c/missing"])
    library = list(recorder.calls)

    for method in (firestore_rpc.COMMIT, firestore_rpc.BATCH_GET):
        (f_method, f_md, f_timeout), = _named(fast, method)
        (l_method, l_md, l_timeout), = _named(library, method)
        assert sorted(f_md) == sorted(l_md)
        assert dict(f_md)["x-goog-request-params"].startswith("database=projects")
        assert "gapic/" in dict(f_md)["x-goog-api-client"]  # the firestore library's own client info
        assert dict(f_md)["authorization"] == "Bearer owner"  # the emulator's owner token
        # the library's timeout is its deadline's remaining time (a few ms under the default)
        assert f_timeout == pytest.approx(l_timeout, abs=1.0) and f_timeout in (60.0, 300.0)


def test_both_paths_read_the_same_documents_and_update_times(db, monkeypatch):
    store = FirestoreStore(db)
    store.commit(Commit([Create("rpc/2/c/a", {"x": 1, "m": {"k": [1, "two", None]}, "f": 1.5}),
                         Increment("rpc/2/c/n", {"n": 3})]))
    paths = ["rpc/2/c/a", "rpc/2/c/n", "rpc/2/c/missing"]

    fast = batch_get(db, paths)
    _library(db, monkeypatch)
    library = batch_get(db, paths)

    assert fast == library
    assert fast["rpc/2/c/a"][0] == {"x": 1, "m": {"k": [1, "two", None]}, "f": 1.5}
    assert fast["rpc/2/c/missing"] == (None, None)
    assert type(fast["rpc/2/c/n"][1]) is type(library["rpc/2/c/n"][1])


class _LibraryCalls:
    """The client's GAPIC API, counting the calls handed to it."""

    def __init__(self, api):
        self.api, self.commits, self.reads = api, 0, 0

    def __getattr__(self, name):
        return getattr(self.api, name)

    def commit(self, **kwargs):
        self.commits += 1
        return self.api.commit(**kwargs)

    def batch_get_documents(self, **kwargs):
        self.reads += 1
        return self.api.batch_get_documents(**kwargs)


def _fast_with(db, monkeypatch, *, commit=None, read=None):
    fast = FastRpc.for_client(db)
    library = _LibraryCalls(fast._api)  # noqa: SLF001
    monkeypatch.setattr(fast, "_api", library)
    sleeps = []
    monkeypatch.setattr(firestore_rpc.time, "sleep", sleeps.append)
    if commit is not None:
        monkeypatch.setattr(fast, "_commit", commit)
    if read is not None:
        monkeypatch.setattr(fast, "_batch_get", read)
    return fast, library, sleeps


def _failing(code, then=None, times=1):
    calls = []

    def call(request, **kwargs):
        calls.append(kwargs)
        if len(calls) <= times:
            raise RpcError(code)
        return then(request, **kwargs)
    call.calls = calls
    return call


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED])
def test_a_commit_error_the_library_retries_is_handed_to_the_library_and_lands_once(db, monkeypatch, code):
    fast, library, sleeps = _fast_with(db, monkeypatch, commit=_failing(code, times=1))
    store = FirestoreStore(db)

    answer = store.commit(Commit([Increment(f"rpc/3/c/{code.name}", {"n": 1})]))

    assert library.commits == 1 and len(fast._commit.calls) == 1  # noqa: SLF001
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= 0.1  # the library's first back-off
    assert answer.increments == {f"rpc/3/c/{code.name}": {"n": 1}}
    assert db.document(f"rpc/3/c/{code.name}").get().to_dict() == {"n": 1}


@pytest.mark.parametrize("code, error", [(grpc.StatusCode.DEADLINE_EXCEEDED, gexc.DeadlineExceeded),
                                         (grpc.StatusCode.INTERNAL, gexc.InternalServerError),
                                         (grpc.StatusCode.PERMISSION_DENIED, gexc.PermissionDenied)])
def test_a_commit_error_the_library_does_not_retry_is_its_error_and_nothing_else_is_sent(db, monkeypatch, code,
                                                                                        error):
    fast, library, sleeps = _fast_with(db, monkeypatch, commit=_failing(code, times=1))

    with pytest.raises(error) as caught:
        fast.commit(_commit_request(db, "rpc/4/c/a"))

    assert isinstance(caught.value.__cause__, grpc.RpcError)
    assert library.commits == 0 and sleeps == [] and db.document("rpc/4/c/a").get().exists is False


def test_a_real_refusal_from_the_emulator_is_the_library_error(db):
    db.document("rpc/5/c/a").set({"x": 1})
    fast = FastRpc.for_client(db)

    with pytest.raises(gexc.GoogleAPICallError) as fast_error:
        fast.commit(_commit_request(db, "rpc/5/c/a"))
    batch = db.batch()
    batch.create(db.document("rpc/5/c/a"), {"y": 1})
    with pytest.raises(gexc.GoogleAPICallError) as library_error:
        batch.commit()

    assert type(fast_error.value) is type(library_error.value) is gexc.AlreadyExists
    assert db.document("rpc/5/c/a").get().to_dict() == {"x": 1}


def _commit_request(db, path):
    request = firestore_types.CommitRequest.pb()(database=db._database_string)  # noqa: SLF001
    request.writes.append(write_for(Create(path, {"y": 1}), db.document(path)._document_path))  # noqa: SLF001
    return request


class _Stream:
    """A server stream that answers ``answers`` and then fails with ``code`` (if any)."""

    def __init__(self, answers, code=None):
        self.answers, self.code = list(answers), code

    def __iter__(self):
        return self

    def __next__(self):
        if self.answers:
            return self.answers.pop(0)
        if self.code is not None:
            raise RpcError(self.code)
        raise StopIteration


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL,
                                  grpc.StatusCode.DEADLINE_EXCEEDED])
def test_a_read_whose_first_answer_fails_retryably_is_read_by_the_library(db, monkeypatch, code):
    db.document("rpc/6/c/a").set({"x": 1})
    read_calls = []

    def stream(request, **kwargs):
        read_calls.append(kwargs)
        return _Stream([], code)
    fast, library, sleeps = _fast_with(db, monkeypatch, read=stream)

    got = batch_get(db, ["rpc/6/c/a", "rpc/6/c/b"])

    assert got["rpc/6/c/a"][0] == {"x": 1} and got["rpc/6/c/b"] == (None, None)
    assert len(read_calls) == 1 and library.reads == 1 and len(sleeps) == 1


def test_a_read_failing_after_its_first_answer_raises_the_library_error_and_is_not_retried(db, monkeypatch):
    db.document("rpc/7/c/a").set({"x": 1})
    real = FastRpc.for_client(db)._batch_get  # noqa: SLF001

    def stream(request, **kwargs):
        first = next(iter(real(request, **kwargs)))
        return _Stream([first], grpc.StatusCode.INTERNAL)
    fast, library, sleeps = _fast_with(db, monkeypatch, read=stream)

    with pytest.raises(gexc.InternalServerError):
        batch_get(db, ["rpc/7/c/a", "rpc/7/c/b"])
    assert library.reads == 0 and sleeps == []


def test_a_read_error_the_library_does_not_retry_is_raised(db, monkeypatch):
    fast, library, sleeps = _fast_with(
        db, monkeypatch, read=lambda request, **kw: _Stream([], grpc.StatusCode.PERMISSION_DENIED))

    with pytest.raises(gexc.PermissionDenied):
        batch_get(db, ["rpc/8/c/a"])
    assert library.reads == 0 and sleeps == []


def test_debug_logging_of_the_library_sends_every_call_through_it(db, monkeypatch):
    fast, library, _ = _fast_with(db, monkeypatch, commit=_failing(grpc.StatusCode.INTERNAL, times=99),
                                  read=lambda request, **kw: _Stream([], grpc.StatusCode.INTERNAL))
    monkeypatch.setattr(fast._transport_log, "isEnabledFor", lambda level: level == logging.DEBUG)  # noqa: SLF001

    FirestoreStore(db).commit(Commit([Set("rpc/9/c/a", {"x": 1})]))
    got = batch_get(db, ["rpc/9/c/a"])

    assert library.commits == 1 and library.reads == 1 and got["rpc/9/c/a"][0] == {"x": 1}
    assert fast._commit.calls == []  # noqa: SLF001


def test_a_traced_client_or_missing_library_pieces_use_the_library_path(db, monkeypatch, capsys):
    transport = db._firestore_api._transport  # noqa: SLF001
    method = transport._wrapped_methods[transport.commit]  # noqa: SLF001
    monkeypatch.setattr(method, "_start_span_fn", contextlib.nullcontext)
    assert FastRpc.for_client(db) is None
    logged = capsys.readouterr().out
    assert '"event":"firestore_rpc.library_path"' in logged and "traces its calls" in logged
    FirestoreStore(db).commit(Commit([Set("rpc/10/c/a", {"x": 1})]))  # the library's path
    assert batch_get(db, ["rpc/10/c/a"])["rpc/10/c/a"][0] == {"x": 1}

    class _Bare:
        _database_string = db._database_string  # noqa: SLF001
        _firestore_api = object()  # no transport: a library without the pieces read here
    assert FastRpc.for_client(_Bare()) is None


def test_the_warm_up_builds_and_uses_the_calls_orders_make(recorded):
    client, recorder = recorded
    store = FirestoreStore(client)

    store.warm_connection()

    assert isinstance(client.__dict__.get("_fast_rpc"), FastRpc)
    methods = [c[0] if isinstance(c[0], str) else c[0].decode() for c in recorder.calls]
    assert methods == [firestore_rpc.BATCH_GET, firestore_rpc.COMMIT]  # one read, one empty commit
