"""The unit of work (backend/execution/unit_of_work.py): ``get_all`` and ``commit`` behave the same on
the in-memory store and on Firestore (emulator) — each operation, each precondition failure, and
all-or-nothing commits. The port's write operations (store_writes) are built only from these."""
from __future__ import annotations

import pytest

from backend.execution.unit_of_work import (SERVER_TIME, ArrayUnion, Commit, Conflict, Create, Delete, Inc, Increment,
                                            Set, Update)

A = "tenants/acme/uow/a"
B = "tenants/acme/uow/b"


def read(h, path):
    return h.store.get_all([path])[path]


def test_get_all_answers_every_path_with_none_for_missing_documents(h):
    h.put(A, {"x": 1})

    docs = h.store.get_all([A, B])

    assert docs[A][0] == {"x": 1} and docs[A][1] is not None
    assert docs[B] == (None, None)


def test_create_writes_a_new_document_and_conflicts_when_it_exists(h):
    h.store.commit(Commit([Create(A, {"x": 1, "at": SERVER_TIME})]))

    with pytest.raises(Conflict):
        h.store.commit(Commit([Create(A, {"x": 2})]))

    assert h.raw(A)["x"] == 1


def test_update_merges_top_level_fields_of_an_existing_document(h):
    h.put(A, {"x": 1, "m": {"k": 1}, "keep": True})

    h.store.commit(Commit([Update(A, {"x": 2, "m": {"j": 2}})]))

    doc = h.raw(A)
    assert doc["x"] == 2 and doc["m"] == {"j": 2} and doc["keep"] is True


def test_update_conflicts_when_the_document_is_missing(h):
    with pytest.raises(Conflict):
        h.store.commit(Commit([Update(A, {"x": 1})]))

    assert h.raw(A) is None


def test_update_on_a_token_conflicts_once_the_document_changed(h):
    h.put(A, {"x": 1})
    _, token = read(h, A)
    h.store.commit(Commit([Update(A, {"x": 2}, token)]))

    with pytest.raises(Conflict):
        h.store.commit(Commit([Update(A, {"x": 3}, token)]))

    assert h.raw(A)["x"] == 2


def test_set_replaces_and_set_merge_merges_maps_with_transforms(h):
    h.put(A, {"old": 1})
    h.put(B, {"n": 1, "by": {"s1": {"n": 1}, "s2": {"n": 5}}, "tags": ["a"]})

    h.store.commit(Commit([Set(A, {"new": 1}),
                           Set(B, {"n": Inc(2), "by": {"s1": {"n": Inc(3)}}, "tags": ArrayUnion(("a", "b"))},
                               merge=True)]))

    assert h.raw(A) == {"new": 1}
    assert h.raw(B) == {"n": 3, "by": {"s1": {"n": 4}, "s2": {"n": 5}}, "tags": ["a", "b"]}


def test_increment_creates_missing_fields_from_zero_and_adds_blindly(h):
    h.store.commit(Commit([Increment(A, {"p": 5, "q": -2})]))
    h.store.commit(Commit([Increment(A, {"p": 1})]))

    assert h.raw(A) == {"p": 6, "q": -2}


def test_delete_is_blind_without_a_token_and_conflicts_on_a_stale_one(h):
    h.put(A, {"x": 1})
    h.put(B, {"x": 1})
    _, token = read(h, B)
    h.store.commit(Commit([Update(B, {"x": 2})]))

    h.store.commit(Commit([Delete(A), Delete("tenants/acme/uow/never")]))
    with pytest.raises(Conflict):
        h.store.commit(Commit([Delete(B, token)]))

    assert h.raw(A) is None and h.raw(B) == {"x": 2}


def test_delete_on_the_current_token_removes_the_document(h):
    h.put(A, {"x": 1})
    _, token = read(h, A)

    h.store.commit(Commit([Delete(A, token)]))

    assert read(h, A) == (None, None)


@pytest.mark.parametrize("failing", ["create_exists", "update_missing", "update_stale"])
def test_a_commit_with_one_failing_precondition_writes_nothing(h, failing):
    h.put(A, {"x": 1})
    _, token = read(h, A)
    h.store.commit(Commit([Update(A, {"x": 2})]))  # the token is stale now
    bad = {"create_exists": Create(A, {"x": 9}), "update_missing": Update("tenants/acme/uow/none", {"x": 9}),
           "update_stale": Update(A, {"x": 9}, token)}[failing]

    with pytest.raises(Conflict):
        h.store.commit(Commit([Create(B, {"y": 1}), Increment("tenants/acme/uow/c", {"n": 1}), bad,
                               Set("tenants/acme/uow/d", {"z": 1})]))

    assert h.raw(B) is None and h.raw("tenants/acme/uow/c") is None and h.raw("tenants/acme/uow/d") is None
    assert h.raw(A) == {"x": 2}


def test_commit_answers_a_new_token_per_written_document(h):
    h.put(A, {"x": 1})
    _, before = read(h, A)

    tokens = h.store.commit(Commit([Update(A, {"x": 2}, before), Create(B, {"y": 1})]))

    assert tokens[0] == read(h, A)[1] != before
    assert tokens[1] == read(h, B)[1]


@pytest.mark.parametrize("case, kind", [("create_exists", "exists"), ("update_missing", "missing"),
                                        ("update_stale", "changed")])
def test_a_conflict_names_its_kind_so_the_caller_can_tell_a_taken_slot_from_a_moved_document(h, case, kind):
    h.put(A, {"x": 1})
    _, token = read(h, A)
    h.store.commit(Commit([Update(A, {"x": 2})]))
    op = {"create_exists": Create(A, {}), "update_missing": Update(B, {"x": 1}),
          "update_stale": Update(A, {"x": 3}, token)}[case]

    with pytest.raises(Conflict) as caught:
        h.store.commit(Commit([op]))

    assert caught.value.kind == kind


def test_list_ids_answers_the_document_ids_of_one_collection_up_to_the_limit(h):
    for n in (0, 1, 2):
        h.put(f"tenants/acme/uow_slots/{n}", {"n": n})

    assert sorted(h.store.list_ids("tenants/acme/uow_slots", 10)) == ["0", "1", "2"]
    assert len(h.store.list_ids("tenants/acme/uow_slots", 2)) == 2
    assert h.store.list_ids("tenants/acme/none", 10) == []
