"""The function's Firestore client (``firestore_store.make_client``, issue 17): its channel reads
unary-stream RPCs (BatchGetDocuments, RunQuery, RunAggregationQuery) on the calling thread, on the
emulator and in production alike, and every kind of read still answers as the library's own client
does (official Firestore emulator)."""
from __future__ import annotations

import threading

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from backend.adapters import firestore_store
from backend.adapters.firestore_codec import batch_get


def _single_threaded(client) -> bool:
    channel = client._firestore_api._transport.grpc_channel  # noqa: SLF001 - what the option sets
    return bool(getattr(channel, "_single_threaded_unary_stream", False))


def test_the_emulator_client_reads_streams_on_the_calling_thread_and_answers_like_the_library(db, monkeypatch):
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", db.project)
    client = firestore_store.make_client()
    db.document("probe/a").set({"n": 1})
    db.document("probe/b").set({"n": 2})
    batch_get(db, ["probe/a"])  # both channels connected before counting threads
    batch_get(client, ["probe/a"])

    with _threads_started() as ours:
        got = batch_get(client, ["probe/a", "probe/b", "probe/missing"])
        listed = sorted(s.id for s in client.collection("probe").stream())
        counted = client.collection("probe").count().get()[0][0].value
    with _threads_started() as library:
        batch_get(db, ["probe/a", "probe/b", "probe/missing"])

    assert _single_threaded(client) and not _single_threaded(db)
    assert got["probe/a"][0] == {"n": 1} and got["probe/missing"][0] is None
    assert listed == ["a", "b"] and counted == 2
    assert ours == [] and library != []  # the library's default starts a spin thread per read
    client.close()


class _threads_started:
    """The names of the threads started inside the block."""

    def __init__(self):
        self.monkeypatch, self.names = pytest.MonkeyPatch(), []

    def __enter__(self):
        real = threading.Thread.start
        names = self.names

        def start(thread):
            names.append(thread.name)
            return real(thread)

        self.monkeypatch.setattr(threading.Thread, "start", start)
        return names

    def __exit__(self, *exc):
        self.monkeypatch.undo()
        return False


def test_the_production_client_gets_the_option_too(monkeypatch):
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    client = firestore_store._Client(project="demo-prod-shape", credentials=AnonymousCredentials())  # noqa: SLF001

    assert _single_threaded(client)  # built, not connected: no RPC is sent here
    assert not _single_threaded(firestore.Client(project="demo-prod-shape", credentials=AnonymousCredentials()))


@pytest.mark.parametrize("n", [1, 8])
def test_concurrent_batched_reads_on_one_client_each_answer_their_own(db, monkeypatch, n):
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", db.project)
    client = firestore_store.make_client()
    for i in range(n):
        db.document(f"conc/d{i}").set({"i": i})
    answers: dict[int, object] = {}

    def read(i: int) -> None:
        answers[i] = batch_get(client, [f"conc/d{i}"])[f"conc/d{i}"][0]

    threads = [threading.Thread(target=read, args=(i,)) for i in range(n)]
    [t.start() for t in threads]
    [t.join() for t in threads]

    assert answers == {i: {"i": i} for i in range(n)}
    client.close()


def test_a_new_client_used_by_many_threads_at_once_builds_one_channel_and_every_read_answers(db, monkeypatch):
    """A new instance's warm-up and its first request use the client at the same moment: the library
    builds its channel on first use without a lock, and a second channel replacing the first freed it
    under the other thread's single-threaded stream (``Cancelled: Channel deallocated``)."""
    import grpc

    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", db.project)
    db.document("race/a").set({"n": 1})
    real = grpc.insecure_channel
    built: list[str] = []

    def counting(*args, **kwargs):
        built.append(str(args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(grpc, "insecure_channel", counting)
    for _ in range(5):
        client = firestore_store.make_client()
        go = threading.Barrier(8)
        answers: list = []

        def read() -> None:
            go.wait()
            answers.append(batch_get(client, ["race/a"])["race/a"][0])

        threads = [threading.Thread(target=read) for _ in range(8)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert answers == [{"n": 1}] * 8
        client.close()
    assert len(built) == 5  # one channel per client
