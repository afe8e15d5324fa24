"""The group lease under contention (``FirestoreStore.take_lease``) on the official emulator.

google-cloud-firestore retries an aborted *commit* of a transaction at once (5 attempts) and does not
retry an aborted *read*: four sweepers racing for one lease on a cold emulator could all run out and
raise. ``take_lease`` retries contention itself, with jittered backoff, and an attempt whose commit
landed although its answer was lost finds the lease already its own (the owner is unique per call).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from google.api_core import exceptions as gexc

from backend.adapters import firestore_store as fs
from backend.ports.store import StoreContention

pytestmark = pytest.mark.emulator

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=timezone.utc)
UNTIL = NOW + timedelta(minutes=1)


def _group(db, group_id: str, **kw) -> None:
    db.document(f"tenants/acme/execution_groups/{group_id}").set(
        {"group_id": group_id, "uid": "alice", "status": "SUBMITTING", "_final": False, "legs": [], **kw})


class _Contended:
    """``firestore.transactional`` as the library behaves under contention: the first ``fail`` runs
    raise what it raises — its attempts exhausted (``ValueError`` from ``Aborted``) or an aborted read
    (``Aborted``) — optionally after the transaction committed (``land``: the answer is what was lost);
    later runs are the library's own."""

    def __init__(self, fail: int, *, exhausted: bool = True, land: bool = False):
        self.left, self.exhausted, self.land, self.runs = fail, exhausted, land, 0

    def __call__(self, fn):
        real = _REAL_TRANSACTIONAL(fn)

        def run(txn, *args, **kwargs):
            self.runs += 1
            if self.left <= 0:
                return real(txn, *args, **kwargs)
            self.left -= 1
            if self.land:
                real(txn, *args, **kwargs)
            if self.exhausted:
                raise ValueError("Failed to commit transaction in 5 attempts.") from gexc.Aborted("contention")
            raise gexc.Aborted("Transaction lock timeout.")

        return run


_REAL_TRANSACTIONAL = fs.firestore.transactional


@pytest.fixture
def no_backoff(monkeypatch):
    monkeypatch.setattr(fs, "_backoff", lambda attempt: None)


@pytest.mark.parametrize("exhausted", [True, False], ids=["attempts-exhausted", "read-aborted"])
def test_a_lease_is_taken_after_contention(db, no_backoff, monkeypatch, exhausted):
    _group(db, "g-lease-1", _lease_owner="w0", _lease_until=NOW)
    contended = _Contended(3, exhausted=exhausted)
    monkeypatch.setattr(fs.firestore, "transactional", contended)

    snap = fs.FirestoreStore(db).take_lease("acme", "g-lease-1", f"w-{exhausted}", NOW, UNTIL)

    assert snap is not None and snap.doc["_lease_owner"] == f"w-{exhausted}"
    assert contended.runs == 4
    db.document("tenants/acme/execution_groups/g-lease-1").update({"_lease_until": NOW})


def test_a_lease_whose_commit_landed_but_whose_answer_was_lost_is_the_callers(db, no_backoff, monkeypatch):
    _group(db, "g-lease-2", _lease_owner="w0", _lease_until=NOW)
    monkeypatch.setattr(fs.firestore, "transactional", _Contended(1, land=True))

    snap = fs.FirestoreStore(db).take_lease("acme", "g-lease-2", "w1", NOW, UNTIL)

    assert snap is not None and snap.doc["_lease_owner"] == "w1"
    # ... and a different caller still finds it held
    assert fs.FirestoreStore(db).take_lease("acme", "g-lease-2", "w2", NOW, UNTIL) is None


def test_endless_contention_is_a_store_contention_not_a_library_error(db, no_backoff, monkeypatch):
    _group(db, "g-lease-3", _lease_owner="w0", _lease_until=NOW)
    monkeypatch.setattr(fs.firestore, "transactional", _Contended(10_000))

    with pytest.raises(StoreContention):
        fs.FirestoreStore(db).take_lease("acme", "g-lease-3", "w1", NOW, UNTIL)
    assert db.document("tenants/acme/execution_groups/g-lease-3").get().to_dict()["_lease_owner"] == "w0"


def test_another_library_error_is_not_taken_for_contention(db, no_backoff, monkeypatch):
    _group(db, "g-lease-6", _lease_owner="w0", _lease_until=NOW)

    def broken(fn):
        def run(txn, *args, **kwargs):
            raise ValueError("Transaction not in progress, cannot be rolled back.")
        return run

    monkeypatch.setattr(fs.firestore, "transactional", broken)
    with pytest.raises(ValueError, match="not in progress"):
        fs.FirestoreStore(db).take_lease("acme", "g-lease-6", "w1", NOW, UNTIL)


def test_a_held_or_final_group_is_not_taken(db, no_backoff):
    _group(db, "g-lease-4", _lease_owner="w0", _lease_until=UNTIL)
    _group(db, "g-lease-5", _final=True)
    store = fs.FirestoreStore(db)

    assert store.take_lease("acme", "g-lease-4", "w1", NOW, UNTIL + timedelta(minutes=1)) is None
    assert store.take_lease("acme", "g-lease-5", "w1", NOW, UNTIL) is None
    assert store.take_lease("acme", "no-such-group", "w1", NOW, UNTIL) is None
