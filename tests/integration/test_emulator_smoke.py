"""The test fixtures work against the official Firestore emulator and firebase-tools' Auth emulator.

These pin down the emulator behaviours the persistence and auth code rely on.
"""

from __future__ import annotations

import threading

import pytest
from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from tests.support.emulators import FirestoreEmulator, http

# ---- Firestore -------------------------------------------------------------------------------


def test_create_fails_when_the_document_already_exists(db):
    ref = db.collection("intents").document("intent-1")
    ref.create({"status": "new"})

    with pytest.raises(gexc.AlreadyExists):
        ref.create({"status": "other"})

    assert ref.get().to_dict() == {"status": "new"}


def test_transaction_reads_then_writes_atomically(db):
    ref = db.collection("accounts").document("acct-1")
    ref.set({"balance_cents": 10_000, "version": 0})

    @firestore.transactional
    def debit(transaction, cents):
        snap = ref.get(transaction=transaction)
        transaction.update(ref, {"balance_cents": snap.get("balance_cents") - cents,
                                 "version": snap.get("version") + 1})

    debit(db.transaction(), 3_000)

    assert ref.get().to_dict() == {"balance_cents": 7_000, "version": 1}


def test_transaction_that_raises_writes_nothing(db):
    ref = db.collection("accounts").document("acct-2")
    ref.set({"balance": 1})

    @firestore.transactional
    def failing(transaction):
        ref.get(transaction=transaction)
        transaction.update(ref, {"balance": 2})
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        failing(db.transaction())

    assert ref.get().get("balance") == 1


def test_concurrent_transactions_on_different_documents_all_commit(db):
    refs = [db.collection("counters").document(f"c{i}") for i in range(4)]
    for ref in refs:
        ref.set({"n": 0})

    @firestore.transactional
    def bump(transaction, ref):
        transaction.update(ref, {"n": ref.get(transaction=transaction).get("n") + 1})

    def worker(ref):
        for _ in range(5):
            bump(db.transaction(), ref)

    threads = [threading.Thread(target=worker, args=(ref,)) for ref in refs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert [ref.get().get("n") for ref in refs] == [5, 5, 5, 5]


def test_batch_of_500_writes_commits(db):
    batch = db.batch()
    for i in range(500):
        batch.set(db.collection("fills").document(f"f{i:03d}"), {"i": i})

    batch.commit()

    assert db.collection("fills").count().get()[0][0].value == 500


def test_collection_group_query_spans_parents(db):
    db.document("users/u1/orders/o1").set({"status": "open"})
    db.document("users/u2/orders/o2").set({"status": "open"})
    db.document("users/u2/orders/o3").set({"status": "filled"})
    db.document("archive/a/orders/o4").set({"status": "open"})

    query = db.collection_group("orders").where(filter=FieldFilter("status", "==", "open"))

    assert sorted(s.id for s in query.stream()) == ["o1", "o2", "o4"]


def test_count_aggregation_with_filter(db):
    for i in range(7):
        db.collection("trades").document(f"t{i}").set({"side": "buy" if i % 2 else "sell"})

    query = db.collection("trades").where(filter=FieldFilter("side", "==", "buy"))

    assert query.count(alias="n").get()[0][0].value == 3


def test_server_timestamp_and_delete_field(db):
    ref = db.collection("intents").document("ts")
    ref.set({"created_at": firestore.SERVER_TIMESTAMP, "tmp": 1})
    ref.update({"tmp": firestore.DELETE_FIELD})

    data = ref.get().to_dict()

    assert set(data) == {"created_at"}
    assert data["created_at"].year >= 2024


def test_reset_deletes_every_document(db, firestore_emulator, firestore_project):
    db.document("a/b/c/d").set({"x": 1})
    db.collection("a").document("e").set({"x": 2})

    firestore_emulator.reset(firestore_project)

    assert list(db.collection_group("c").stream()) == []
    assert list(db.collection("a").stream()) == []


@pytest.mark.parametrize("run", [1, 2])
def test_each_test_starts_with_an_empty_database(db, run):
    assert list(db.collection("isolation").stream()) == []

    db.collection("isolation").document(f"run-{run}").set({"run": run})


def test_env_points_new_clients_at_the_emulator(firestore_env, firestore_project, db):
    db.collection("env").document("d").set({"ok": True})

    other = firestore.Client()  # project and host from the environment

    assert other.project == firestore_project
    assert other.collection("env").document("d").get().get("ok") is True
    other.close()


def test_rules_file_is_enforced_for_end_user_requests(tmp_path, firestore_project):
    rules = tmp_path / "firestore.rules"
    rules.write_text(
        "rules_version = '2';\n"
        "service cloud.firestore { match /databases/{database}/documents {\n"
        "  match /public/{doc} { allow read: if true; }\n"
        "  match /{document=**} { allow read, write: if false; }\n"
        "} }\n"
    )
    with FirestoreEmulator(rules_path=rules) as emulator:
        docs = emulator.documents_url(firestore_project).replace("/emulator/v1/", "/v1/")
        admin = {"Authorization": "Bearer owner"}  # what server SDKs send to the emulator
        assert http("PATCH", f"{docs}/private/p", {"fields": {}}, headers=admin)[0] == 200
        assert http("PATCH", f"{docs}/public/p", {"fields": {}}, headers=admin)[0] == 200

        assert http("GET", f"{docs}/public/p")[0] == 200
        assert http("GET", f"{docs}/private/p")[0] == 403
        assert http("PATCH", f"{docs}/public/p", {"fields": {}})[0] == 403


# ---- Auth ------------------------------------------------------------------------------------


def test_emulator_token_is_accepted_by_firebase_admin(auth, firebase_admin_app):
    from firebase_admin import auth as admin_auth

    uid, token = auth.sign_up("trader@example.com", "s3cret-pw")

    claims = admin_auth.verify_id_token(token, app=firebase_admin_app)

    assert claims["uid"] == uid
    assert claims["email"] == "trader@example.com"
    assert claims["aud"] == auth.project


def test_custom_claims_appear_after_signing_in_again(auth, firebase_admin_app):
    from firebase_admin import auth as admin_auth

    uid, first = auth.sign_up("claims@example.com", "s3cret-pw")
    auth.set_claims(uid, {"role": "trader", "tenant": "t1"})
    admin_auth.set_custom_user_claims(uid, {"role": "admin", "tenant": "t1"}, app=firebase_admin_app)

    second = auth.sign_in("claims@example.com", "s3cret-pw")

    assert "role" not in admin_auth.verify_id_token(first, app=firebase_admin_app)
    claims = admin_auth.verify_id_token(second, app=firebase_admin_app)
    assert (claims["role"], claims["tenant"]) == ("admin", "t1")


def test_rest_set_claims_appear_after_signing_in_again(auth, firebase_admin_app):
    from firebase_admin import auth as admin_auth

    uid, _ = auth.sign_up("rest-claims@example.com", "s3cret-pw")
    auth.set_claims(uid, {"role": "trader"})

    token = auth.sign_in("rest-claims@example.com", "s3cret-pw")

    assert admin_auth.verify_id_token(token, app=firebase_admin_app)["role"] == "trader"


def test_garbage_token_is_rejected(auth, firebase_admin_app):
    from firebase_admin import auth as admin_auth

    with pytest.raises(admin_auth.InvalidIdTokenError):
        admin_auth.verify_id_token("not-a-token", app=firebase_admin_app)


def test_users_are_deleted_between_tests(auth):
    auth.sign_up("trader@example.com", "s3cret-pw")  # also created by an earlier test

    auth.reset()

    auth.sign_up("trader@example.com", "s3cret-pw")
