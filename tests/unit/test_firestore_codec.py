"""``backend.adapters.firestore_codec`` builds exactly the protobufs google-cloud-firestore builds.

Every op is built twice — by ``write_for`` (raw protobufs, issue 17) and by the library's own batch
methods (``FirestoreStore._add_op_library``: ``create`` / ``update`` / ``set`` / ``delete``) — and the
two deterministic serializations must be byte-identical. Hand-picked shapes (every sentinel, empty
maps, maps of transforms only, lists of maps, keys that need quoting, datetimes, preconditions) and
seeded random documents. No emulator needed: building a write makes no call.
"""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest
from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from backend.adapters.firestore_store import FirestoreStore
from backend.adapters.firestore_codec import write_for
from backend.execution.unit_of_work import EXISTS, SERVER_TIME, ArrayUnion, Create, Delete, Inc, Increment, Set, Update


@pytest.fixture(scope="module")
def store() -> FirestoreStore:
    return FirestoreStore(firestore.Client(project="demo-writes", credentials=AnonymousCredentials()))


def _library(store: FirestoreStore, op) -> list[bytes]:
    batch = store.db.batch()
    store._add_op_library(batch, store.db.document(op.path), op)  # noqa: SLF001
    return [getattr(w, "_pb", w).SerializeToString(deterministic=True) for w in batch._write_pbs]  # noqa: SLF001


def _ours(store: FirestoreStore, op) -> list[bytes]:
    write = write_for(op, store.db.document(op.path)._document_path)  # noqa: SLF001
    return [] if write is None else [write.SerializeToString(deterministic=True)]


def _same(store: FirestoreStore, op) -> None:
    ours = _ours(store, op)
    assert ours, f"write_for left {op!r} to the library"
    assert ours == _library(store, op), op


TOKEN = DatetimeWithNanoseconds(2026, 12, 7, 9, 30, 1, 123456, tzinfo=timezone.utc)
WHEN = datetime(2026, 12, 7, 9, 30, 1, 654321, tzinfo=timezone.utc)

DOCS = [
    {},
    {"a": 1},
    {"s": "x", "i": -3, "f": 1.5, "b": True, "n": None, "big": 2 ** 62, "neg0": -0.0},
    {"when": WHEN, "naive_list": [WHEN, "x"], "bytes": b"\x00\x01"},
    {"nested": {"deep": {"deeper": {"x": 1}}, "y": [1, 2, {"z": "w"}]}},
    {"empty_map": {}, "empty_list": [], "nested": {"empty": {}}},
    {"only_transforms": {"at": SERVER_TIME}, "x": 1},
    {"at": SERVER_TIME, "n": Inc(2), "u": ArrayUnion(("a", "b")), "data": {"c": Inc(-1), "d": "e"}},
    {"weird key": 1, "a.b": {"c-d": 2, "`q`": 3, "back\\slash": 4, "1st": 5}, "ünï": "x"},
    {"lots": [{"lot_id": f"L{i}", "qty": "1.5", "seq": [i, 0], "wash": False, "basis": "100.25"} for i in range(5)]},
    {"tuple": (1, "a"), "float_int": 3.0, "unicode": "€ ✓", "long": "x" * 2000},
    {"by_strategy": {"s1": {"decisions": Inc(1), "placed": Inc(0)}, "s 2": {"x": Inc(3)}}, "day": "2026-12-07"},
]


@pytest.mark.parametrize("doc", DOCS)
def test_create_set_and_merge_are_the_librarys(store, doc) -> None:
    _same(store, Create("tenants/t1/ledger_trades/x1", doc))
    _same(store, Set("tenants/t1/metrics/2026-12-07__3", doc, merge=False))
    _same(store, Set("tenants/t1/metrics/2026-12-07__3", doc, merge=True))


@pytest.mark.parametrize("doc", [d for d in DOCS if d and all(k.isidentifier() and k.isascii() for k in d)])
def test_updates_are_the_librarys(store, doc) -> None:
    _same(store, Update("tenants/t1/order_intents/i1", doc))
    _same(store, Update("tenants/t1/order_intents/i1", doc, TOKEN))


def test_increments_deletes_and_preconditions_are_the_librarys(store) -> None:
    _same(store, Increment("tenants/t1/exposure/a1__SPY", {"position": 10, "reserved_long": 0, "reserved_short": -3}))
    _same(store, Increment("tenants/t1/exposure/a1__SPY", {"odd name": 1, "f": 0.5}))
    _same(store, Delete("tenants/t1/risk_days/2026-12-07/trade_slots/4"))
    _same(store, Delete("tenants/t1/risk_days/2026-12-07/trade_slots/4", TOKEN))
    _same(store, Update("users/u1/tax_books/SPY", {"lots": [], "pending": None, "next_seq": 3}, EXISTS))


def test_shapes_left_to_the_library(store) -> None:
    """Dotted or quoted update names (the library splits them into paths) and an empty update or
    increment are not built here: the library's rules and errors apply."""
    assert write_for(Update("a/b", {"x.y": 1}), "n") is None
    assert write_for(Update("a/b", {"two words": 1}), "n") is None
    assert write_for(Update("a/b", {}), "n") is None
    assert write_for(Increment("a/b", {}), "n") is None


def _random_value(rng: random.Random, depth: int, transforms: bool):
    kind = rng.choice(["s", "i", "f", "b", "n", "dt", "l", "m", "m", "t"] if depth < 3 else ["s", "i", "f", "b", "n"])
    if kind == "s":
        return rng.choice(["", "x", "SPY", "a b", "€"]) + str(rng.randrange(100))
    if kind == "i":
        return rng.randrange(-2 ** 40, 2 ** 40)
    if kind == "f":
        return rng.uniform(-1e6, 1e6)
    if kind == "b":
        return rng.random() < 0.5
    if kind == "n":
        return None
    if kind == "dt":
        return WHEN + timedelta(microseconds=rng.randrange(10 ** 9))
    if kind == "l":
        return [_random_value(rng, depth + 1, False) for _ in range(rng.randrange(4))]
    if kind == "m":
        return _random_map(rng, depth + 1, transforms)
    if not transforms:
        return "t"
    return rng.choice([SERVER_TIME, Inc(rng.randrange(-5, 5)), ArrayUnion(("a", rng.randrange(3)))])


def _random_map(rng: random.Random, depth: int, transforms: bool) -> dict:
    keys = ["a", "b", "c_1", "x y", "k.k", "_u", "Z9"]
    return {rng.choice(keys) + str(i % 3): _random_value(rng, depth, transforms) for i in range(rng.randrange(5))}


def test_random_documents_are_the_librarys(store) -> None:
    rng = random.Random(17)
    for n in range(400):
        doc = _random_map(rng, 0, transforms=True)
        _same(store, Create("tenants/t/ledger_trades/r", doc))
        _same(store, Set("tenants/t/metrics/r", doc, merge=bool(n % 2)))
        simple = {k.replace(" ", "_").replace(".", "_"): v for k, v in doc.items()}
        if simple:
            _same(store, Update("tenants/t/order_intents/r", simple, TOKEN if n % 3 else EXISTS))


# ----------------------------------------------------------------------------------------- reads

def _decoded_both(store: FirestoreStore, doc: dict) -> tuple[object, object]:
    from google.cloud.firestore_v1 import _helpers

    from backend.adapters.firestore_codec import decode_fields

    fields = write_for(Create("a/b", doc), "projects/demo-writes/databases/(default)/documents/a/b").update.fields
    return decode_fields(fields, store.db), _helpers.decode_dict(fields, store.db)


def _typed(value):
    """Values with their types (True == 1 and 1.0 == 1 in Python: the decoders must agree on types)."""
    if isinstance(value, dict):
        return ("map", {k: _typed(v) for k, v in value.items()})
    if isinstance(value, list):
        return ("list", [_typed(v) for v in value])
    return (type(value).__name__, value)


def test_reads_decode_as_the_library(store) -> None:
    special = [{"__oid__": "507f1f77bcf86cd799439011"}, {"__type__": "__vector__", "value": [1.0, 2.0]},
               {"__int__": 5}, {"x": {"__max__": None}}]
    rng = random.Random(29)
    docs = [d for d in DOCS if all(not isinstance(v, (Inc, ArrayUnion)) and v is not SERVER_TIME for v in d.values())]
    docs += special + [_random_map(rng, 0, transforms=False) for _ in range(300)]
    for doc in docs:
        ours, library = _decoded_both(store, doc)
        assert _typed(ours) == _typed(library), doc
