"""One store fixture, two stores: every contract test runs against the in-memory fake and the
Firestore adapter on the official emulator (``tests/conftest.py``: ``db``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import pytest

from backend.adapters.memory_store import InMemoryStore


@dataclass
class Harness:
    """The store under test plus raw document access (what a reader of the database sees)."""

    kind: str
    store: Any
    raw: Callable[[str], dict[str, Any] | None]
    put: Callable[[str, Mapping[str, Any]], None]
    paths: Callable[[str], list[str]]  # document paths of one collection


def _memory() -> Harness:
    store = InMemoryStore()
    return Harness("memory", store, store.get, store.set_doc, lambda col: sorted(store.collection(col)))


def _firestore(db: Any) -> Harness:
    from backend.adapters.firestore_store import FirestoreStore

    def raw(path: str) -> dict[str, Any] | None:
        snap = db.document(path).get()
        return snap.to_dict() if snap.exists else None

    return Harness("firestore", FirestoreStore(db), raw, lambda path, doc: db.document(path).set(dict(doc)),
                   lambda col: sorted(f"{col}/{ref.id}" for ref in db.collection(col).list_documents()
                                      if ref.get().exists))


@pytest.fixture(params=["memory", "firestore"])
def h(request: pytest.FixtureRequest) -> Harness:
    if request.param == "memory":
        return _memory()
    request.node.add_marker(pytest.mark.emulator)
    return _firestore(request.getfixturevalue("db"))
