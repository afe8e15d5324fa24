"""Tenant administration on the in-memory stack (fast): role gates, the last-admin rule under a
concurrent change, audit entries, and the local-file secret sink. The same endpoints run over real
HTTP with the Auth and Firestore emulators in tests/integration/test_admin_api.py."""
from __future__ import annotations

import json
import os
import stat

import pytest

from backend.adapters.secret_sink import LocalFileSecretSink, RoutingSecretSink, sink_from_env
from backend.adapters.secrets import LocalFileSecretSource
from backend.api.admin_members import UserInfo
from backend.domain.errors import InvalidInput
from backend.domain.secrets import Secret, SecretRef
from backend.ports.secret_sink import SecretWriteFailed
from tests.support.api_stack import execute_body, make_stack


class RecordingIdentityAdmin:
    """A hand-written IdentityAdmin: users in a dict, every call recorded."""

    def __init__(self) -> None:
        self.users: dict[str, UserInfo] = {}
        self.calls: list[tuple[str, str]] = []

    def add(self, uid: str, claims: dict | None = None) -> None:
        self.users[uid] = UserInfo(uid, f"{uid}@example.com", dict(claims or {}))

    def get_user(self, uid):
        return self.users.get(uid)

    def get_user_by_email(self, email):
        return next((u for u in self.users.values() if u.email == email), None)

    def create_user(self, email):
        uid = f"new{len(self.users)}"
        self.users[uid] = UserInfo(uid, email, {})
        self.calls.append(("create_user", uid))
        return self.users[uid]

    def set_claims(self, uid, claims):
        self.users[uid] = UserInfo(uid, self.users[uid].email, dict(claims))
        self.calls.append(("set_claims", uid))

    def revoke_refresh_tokens(self, uid):
        self.calls.append(("revoke", uid))


@pytest.fixture
def stack(quiet_logs):
    stack = make_stack()
    idp = RecordingIdentityAdmin()
    stack.app._identity_admin_factory = lambda: idp
    stack.idp = idp
    for uid, role in (("carol", "tenant_admin"), ("alice", "trader"), ("bob", "trader")):
        idp.add(uid, {"tenant_id": "acme", "role": role})
    stack.verifier.add("tok-op", uid="opal", tenant_id=None, role="platform_operator")
    stack.verifier.add("tok-aud", uid="aud", tenant_id="acme", role="auditor")
    stack.verifier.add("tok-dan", uid="dan", tenant_id="acme", role="tenant_admin")
    assert stack.post("/tenants", {"tenant_id": "acme", "admin_uid": "carol"}, token="tok-op").status == 201
    return stack


def put(stack, path, body, token="tok-admin"):
    return stack.request("PUT", path, body, token=token)


def audit(stack):
    return [d for p, d in stack.store.docs.items() if p.startswith("tenants/acme/audit_log/")]


def test_a_platform_operator_token_reaches_only_the_tenant_route(stack):
    for method, path, body in (("POST", "/execute", execute_body()), ("GET", "/groups", None),
                               ("GET", "/tenants/acme/members", None), ("GET", "/portfolio/history", None)):
        response = stack.request(method, path, body, token="tok-op")
        assert response.status == 403, (path, response.json())
    assert stack.post("/tenants", {"tenant_id": "globex", "admin_uid": "bob"}, token="tok-admin").status == 403


def test_the_auditor_reads_the_tenant_and_is_refused_on_every_write(stack):
    for path in ("/tenants/acme/members", "/tenants/acme/audit-log", "/tenants/acme/ledger", "/groups",
                 "/tenants/acme/accounts", "/tenants/acme/connections"):
        assert stack.get(path, token="tok-aud").status == 200, path
    docs = dict(stack.store.docs)
    for method, path in (("POST", "/execute"), ("POST", "/signals"), ("POST", "/tenants/acme/members"),
                         ("PUT", "/tenants/acme/members/alice/role"), ("POST", "/risk/approvals")):
        response = stack.request(method, path, {"role": "trader"}, token="tok-aud")
        assert response.status == 403 and response.json()["error"]["reason"] == "the auditor role is read-only"
    assert stack.store.docs == docs


def test_adding_members_sets_claims_and_writes_one_audit_entry_each(stack):
    assert stack.post("/tenants/acme/members", {"uid": "alice", "role": "trader"}, token="tok-admin").status == 201
    response = stack.post("/tenants/acme/members", {"email": "zoe@example.com", "role": "auditor",
                                                    "create_user": True}, token="tok-admin")
    assert response.status == 201
    uid = response.json()["member"]["uid"]
    assert stack.idp.users[uid].claims == {"tenant_id": "acme", "role": "auditor"}
    assert sorted(e["target"] for e in audit(stack) if e["action"] == "member.add") == ["member/alice", f"member/{uid}"]
    # a retry writes nothing new
    before = len(audit(stack))
    assert stack.post("/tenants/acme/members", {"uid": "alice", "role": "trader"}, token="tok-admin").status == 200
    assert len(audit(stack)) == before


def test_a_demotion_racing_another_admin_change_writes_nothing(stack):
    """Two admins demoting each other: the roster precondition lets only one commit through."""
    assert stack.post("/tenants/acme/members", {"uid": "bob", "role": "tenant_admin"}, token="tok-admin").status == 201
    store = stack.store
    real_commit = store.commit

    def racing_commit(commit):
        store.commit = real_commit
        # another request demotes bob between this request's read and its commit
        assert put(stack, "/tenants/acme/members/bob/role", {"role": "trader"}).status == 200
        return real_commit(commit)

    store.commit = racing_commit
    before = len(audit(stack))
    response = put(stack, "/tenants/acme/members/carol/role", {"role": "trader"}, token="tok-dan")
    assert (response.status, response.json()["error"]["code"]) == (409, "CONCURRENT_CHANGE")
    assert store.get("tenants/acme/members/carol")["role"] == "tenant_admin"
    assert store.get("tenants/acme")["active_admin_uids"] == ["carol"]
    assert len(audit(stack)) == before + 1  # only bob's demotion
    # retried, the rule answers
    response = put(stack, "/tenants/acme/members/carol/role", {"role": "trader"}, token="tok-dan")
    assert (response.status, response.json()["error"]["code"]) == (409, "LAST_ADMIN")


def test_suspending_revokes_and_suspended_admins_are_refused(stack):
    assert stack.post("/tenants/acme/members", {"uid": "bob", "role": "tenant_admin"}, token="tok-admin").status == 201
    stack.verifier.add("tok-bob-admin", uid="bob", tenant_id="acme", role="tenant_admin")
    assert put(stack, "/tenants/acme/members/bob/status", {"status": "suspended"}).status == 200
    assert ("revoke", "bob") in stack.idp.calls
    response = stack.get("/tenants/acme/members", token="tok-bob-admin")
    assert (response.status, response.json()["error"]["code"]) == (403, "MEMBER_SUSPENDED")


def test_a_ledger_correction_keeps_the_one_row_schema(stack):
    from backend.execution.records import LEDGER_FIELDS

    stack.post("/execute", execute_body(), headers={"Idempotency-Key": "k1"})
    row_id = next(p.rsplit("/", 1)[1] for p in stack.store.docs if p.startswith("tenants/acme/ledger_trades/"))
    response = stack.post(f"/tenants/acme/ledger/{row_id}/corrections",
                          {"reason": "wrong side booked", "corrected": {"side": "sell"}}, token="tok-admin")
    assert response.status == 201, response.json()
    row = stack.store.get(f"tenants/acme/ledger_trades/{response.json()['correction']['ledger_id']}")
    assert set(row) - {"recorded_at"} == set(LEDGER_FIELDS)
    assert row["corrects"] == row_id and row["correction"]["fields"] == {"side": {"from": "buy", "to": "sell"}}
    assert row["qty"] is None and row["filled_qty"] is None  # not a fill: totals unchanged


# ------------------------------------------------------------------------------------- secret sink


def test_the_local_file_sink_writes_what_the_local_file_source_reads(tmp_path):
    path = tmp_path / "secrets.local"
    sink = LocalFileSecretSink(path)
    ref = sink.default_ref("acme", "broker1")
    value = json.dumps({"key_id": "k", "secret_key": "s3cret"})

    assert sink.put(ref, Secret(value)) == ref
    assert LocalFileSecretSource(path).get(ref).reveal() == value
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    sink.put(SecretRef.file("other"), Secret("x"))  # other entries are kept
    assert LocalFileSecretSource(path).get(ref).reveal() == value


def test_the_sinks_refuse_what_they_cannot_write_without_showing_the_value(tmp_path):
    dotenv = tmp_path / "env.local"
    dotenv.write_text("A=1\n")
    with pytest.raises(SecretWriteFailed) as err:
        LocalFileSecretSink(dotenv).put(SecretRef.file("A"), Secret("s3cret-value"))
    assert "s3cret-value" not in str(err.value)
    routing = RoutingSecretSink({"file": LocalFileSecretSink(tmp_path / "s.json")}, "file")
    with pytest.raises(SecretWriteFailed):
        routing.put(SecretRef.env("KEYS"), Secret("s3cret-value"))
    assert sink_from_env({}) is None and sink_from_env({"EXEC_SECRET_SINK": "none"}) is None
    with pytest.raises(InvalidInput):
        sink_from_env({"EXEC_SECRET_SINK": "vault:x"})
