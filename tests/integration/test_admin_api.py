"""Tenant administration over real HTTP (issue 13 items 1, 2, 5, 6): members and roles, broker
connections and accounts, the audit log, ledger corrections.

Stack: ``functions-framework --target api`` (functions/main.py) as a child process, the official
Firestore emulator and firebase-tools' Auth emulator: every caller holds a real ID token, and every
claim the API sets is read back from a *fresh* token (a new sign-in), as an app would after
``getIdToken(true)``. The server checks the account state without caching
(``EXEC_AUTH_STATE_CACHE_SECONDS=0``) and writes credentials to a local JSON secret sink
(``EXEC_SECRET_SINK=file:…``). Every test builds its own tenant through ``POST /tenants`` as a
platform operator (claims set out of band, as in production).
"""
from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.api_stack import FunctionsServer, http_call

pytestmark = pytest.mark.slow

PASSWORD = "secret-pw-1"
SECRET_KEY = "sk-Adm1n-T3st-S3cret-value"


@pytest.fixture(scope="module")
def server(firestore_emulator, auth_emulator, tmp_path_factory):
    project = auth_emulator.project
    sink = tmp_path_factory.mktemp("sink") / "secrets.local.json"
    env = {"FIRESTORE_EMULATOR_HOST": firestore_emulator.host, "FIREBASE_AUTH_EMULATOR_HOST": auth_emulator.host,
           "GOOGLE_CLOUD_PROJECT": project, "GCLOUD_PROJECT": project, "GOOGLE_APPLICATION_CREDENTIALS": "",
           "EXEC_AUTH_STATE_CACHE_SECONDS": "0", "EXEC_SECRET_SINK": f"file:{sink}"}
    with FunctionsServer(env) as srv:
        srv.sink_path = sink
        yield srv


@dataclass
class User:
    uid: str
    email: str
    token: str


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


class Api:
    def __init__(self, server: FunctionsServer, auth: Any, db: Any):
        self.server, self.auth, self.db = server, auth, db
        self.tenant = f"t{uuid.uuid4().hex[:10]}"

    def call(self, method: str, path: str, who: User | None, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        hdrs = dict(headers or {})
        if who is not None:
            hdrs["Authorization"] = f"Bearer {who.token}"
        status, _, reply = http_call(method, self.server.url + path.replace("{t}", self.tenant), body, hdrs)
        return status, reply

    def user(self, name: str, claims: dict[str, Any] | None = None) -> User:
        email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
        uid, token = self.auth.sign_up(email, PASSWORD)
        if claims:
            self.auth.set_claims(uid, claims)
            token = self.auth.sign_in(email, PASSWORD)
        return User(uid, email, token)

    def refresh(self, user: User) -> User:
        """A new sign-in: the token an app gets from getIdToken(true), with the current claims."""
        user.token = self.auth.sign_in(user.email, PASSWORD)
        return user

    def operator(self) -> User:
        return self.user("opal", {"role": "platform_operator"})

    def new_tenant(self, admin_name: str = "ada") -> User:
        admin = self.user(admin_name)
        status, body = self.call("POST", "/tenants", self.operator(),
                                 {"tenant_id": self.tenant, "admin_uid": admin.uid})
        assert status == 201, body
        return self.refresh(admin)

    def member(self, admin: User, name: str, role: str) -> User:
        person = self.user(name)
        status, body = self.call("POST", "/tenants/{t}/members", admin, {"uid": person.uid, "role": role})
        assert status == 201, body
        return self.refresh(person)

    def audit(self, tenant: str | None = None) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.db.collection(f"tenants/{tenant or self.tenant}/audit_log").stream()]

    def doc(self, path: str) -> dict[str, Any] | None:
        snap = self.db.document(path.replace("{t}", self.tenant)).get()
        return snap.to_dict() if snap.exists else None


@pytest.fixture
def api(server, auth, db) -> Api:
    return Api(server, auth, db)


def pass_a_second() -> None:
    time.sleep(1.1)  # revocation compares whole seconds of iat


# --------------------------------------------------------------------------------- platform operator


def test_a_platform_operator_creates_a_tenant_and_its_first_admin_whose_fresh_token_has_the_claims(api):
    admin = api.user("ada")
    operator = api.operator()
    body = {"tenant_id": api.tenant, "admin_email": admin.email}
    assert api.call("POST", "/tenants", None, body)[0] == 401
    assert api.call("POST", "/tenants", admin, body)[0] == 403  # no claims yet: no tenant, no role

    status, reply = api.call("POST", "/tenants", operator, body)

    assert status == 201, reply
    assert reply["admin"] == {**reply["admin"], "uid": admin.uid, "role": "tenant_admin", "status": "active"}
    assert claims_of(admin.token).get("role") is None  # the old token does not change...
    fresh = claims_of(api.refresh(admin).token)  # ...the next one carries the claims
    assert (fresh["tenant_id"], fresh["role"]) == (api.tenant, "tenant_admin")
    assert api.doc("tenants/{t}")["active_admin_uids"] == [admin.uid]
    [entry] = api.audit()
    assert (entry["action"], entry["actor_uid"], entry["actor_role"]) == ("tenant.create", operator.uid,
                                                                           "platform_operator")
    assert api.call("POST", "/tenants", operator, body)[0] == 200  # a retry: claims re-applied, nothing new
    assert len(api.audit()) == 1
    status, reply = api.call("POST", "/tenants", api.operator(), body)  # anyone else: the tenant exists
    assert (status, reply["error"]["code"]) == (409, "TENANT_EXISTS")
    assert api.call("POST", "/tenants", admin, {**body, "tenant_id": "other"})[0] == 403  # admins cannot
    assert api.call("GET", "/tenants/{t}/members", operator)[0] == 403  # the operator only creates tenants
    # a user who belongs to a tenant cannot become the first admin of another one
    status, reply = api.call("POST", "/tenants", operator, {"tenant_id": api.tenant + "x", "admin_uid": admin.uid})
    assert (status, reply["error"]["code"]) == (409, "MEMBER_OF_ANOTHER_TENANT")
    assert api.doc(f"tenants/{api.tenant}x") is None


# ------------------------------------------------------------------------------------------ members


def test_an_admin_adds_members_by_uid_and_email_and_their_fresh_tokens_carry_the_roles(api, firebase_admin_app):
    from firebase_admin import auth as fb_auth

    admin = api.new_tenant()
    tom = api.user("tom")
    status, reply = api.call("POST", "/tenants/{t}/members", admin, {"uid": tom.uid, "role": "trader"})
    assert status == 201 and reply["member"]["role"] == "trader", reply
    assert claims_of(api.refresh(tom).token)["role"] == "trader"
    # by e-mail, inviting a user who does not exist yet
    email = f"audrey-{uuid.uuid4().hex[:6]}@example.com"
    status, reply = api.call("POST", "/tenants/{t}/members", admin, {"email": email, "role": "auditor"})
    assert (status, reply["error"]["code"]) == (404, "USER_NOT_FOUND")
    status, reply = api.call("POST", "/tenants/{t}/members", admin,
                             {"email": email, "role": "auditor", "create_user": True})
    assert status == 201, reply
    invited = fb_auth.get_user_by_email(email, app=firebase_admin_app)
    assert invited.custom_claims == {"tenant_id": api.tenant, "role": "auditor"}
    assert reply["member"]["uid"] == invited.uid
    # a retry is answered, not duplicated; another role for an existing member is a 409
    assert api.call("POST", "/tenants/{t}/members", admin, {"uid": tom.uid, "role": "trader"})[0] == 200
    assert api.call("POST", "/tenants/{t}/members", admin, {"uid": tom.uid, "role": "auditor"})[1]["error"][
        "code"] == "MEMBER_EXISTS"
    # a role change reaches the next token; the old token is refused where it matters
    status, reply = api.call("PUT", f"/tenants/{{t}}/members/{tom.uid}/role", admin, {"role": "auditor"})
    assert status == 200 and reply["changed"] is True, reply
    assert api.call("GET", "/tenants/{t}/ledger", tom)[1]["error"]["code"] == "CLAIMS_CHANGED"
    assert claims_of(api.refresh(tom).token)["role"] == "auditor"
    assert api.call("GET", "/tenants/{t}/ledger", tom)[0] == 200
    # removal: claims dropped, sessions revoked, member document gone (the audit entry keeps it)
    pass_a_second()
    status, reply = api.call("PUT", f"/tenants/{{t}}/members/{tom.uid}/role", admin, {"role": None})
    assert status == 200 and reply["removed_uid"] == tom.uid, reply
    assert api.doc(f"tenants/{{t}}/members/{tom.uid}") is None
    assert fb_auth.get_user(tom.uid, app=firebase_admin_app).custom_claims in (None, {})
    assert api.call("GET", "/tenants/{t}/ledger", tom)[1]["error"]["code"] == "TOKEN_REVOKED"
    actions = sorted(e["action"] for e in api.audit() if e["target"] == f"member/{tom.uid}")
    assert actions == ["member.add", "member.remove", "member.role_set"]
    # members list (paged) for admins and auditors
    status, page = api.call("GET", "/tenants/{t}/members?limit=1", admin)
    assert status == 200 and len(page["items"]) == 1 and page["next_cursor"], page


def test_an_admin_cannot_add_a_user_of_another_tenant(api):
    admin = api.new_tenant()
    other = Api(api.server, api.auth, api.db)
    other_admin = other.new_tenant("bea")
    status, reply = api.call("POST", "/tenants/{t}/members", admin, {"uid": other_admin.uid, "role": "trader"})
    assert (status, reply["error"]["code"]) == (409, "MEMBER_OF_ANOTHER_TENANT")
    assert claims_of(other.refresh(other_admin).token)["tenant_id"] == other.tenant
    assert api.doc(f"tenants/{{t}}/members/{other_admin.uid}") is None


def test_the_last_active_admin_cannot_be_demoted_removed_or_suspended(api):
    ada = api.new_tenant()
    before = len(api.audit())
    for path, body in (("role", {"role": "trader"}), ("role", {"role": None}), ("status", {"status": "suspended"})):
        status, reply = api.call("PUT", f"/tenants/{{t}}/members/{ada.uid}/{path}", ada, body)
        assert (status, reply["error"]["code"]) == (409, "LAST_ADMIN"), (path, body, reply)
    assert len(api.audit()) == before  # nothing written
    bob = api.member(ada, "bob", "tenant_admin")
    assert sorted(api.doc("tenants/{t}")["active_admin_uids"]) == sorted([ada.uid, bob.uid])
    # with a second admin, ada may step down; then bob is the last one
    assert api.call("PUT", f"/tenants/{{t}}/members/{ada.uid}/role", bob, {"role": "trader"})[0] == 200
    assert api.doc("tenants/{t}")["active_admin_uids"] == [bob.uid]
    assert api.call("PUT", f"/tenants/{{t}}/members/{bob.uid}/status", bob, {"status": "suspended"})[1]["error"][
        "code"] == "LAST_ADMIN"
    assert claims_of(api.refresh(ada).token)["role"] == "trader"
    assert api.call("GET", "/tenants/{t}/members", ada)[0] == 403


def test_suspension_revokes_sessions_and_a_suspended_admin_changes_nothing(api, firebase_admin_app):
    from firebase_admin import auth as fb_auth

    ada = api.new_tenant()
    sam = api.member(ada, "sam", "tenant_admin")
    tom = api.member(ada, "tom", "trader")
    pass_a_second()
    assert api.call("PUT", f"/tenants/{{t}}/members/{sam.uid}/status", ada, {"status": "suspended"})[0] == 200
    assert fb_auth.get_user(sam.uid, app=firebase_admin_app).tokens_valid_after_timestamp > 0
    # the old token is refused at once; a new sign-in is refused by the member document
    assert api.call("GET", "/tenants/{t}/members", sam)[1]["error"]["code"] == "TOKEN_REVOKED"
    api.refresh(sam)
    status, reply = api.call("PUT", f"/tenants/{{t}}/members/{tom.uid}/role", sam, {"role": "auditor"})
    assert (status, reply["error"]["code"]) == (403, "MEMBER_SUSPENDED")
    assert api.call("GET", "/tenants/{t}/ledger", sam)[1]["error"]["code"] == "MEMBER_SUSPENDED"
    assert api.doc(f"tenants/{{t}}/members/{tom.uid}")["role"] == "trader"
    assert api.doc("tenants/{t}")["active_admin_uids"] == [ada.uid]
    # back to active: works again with a fresh token
    assert api.call("PUT", f"/tenants/{{t}}/members/{sam.uid}/status", ada, {"status": "active"})[0] == 200
    assert api.call("GET", "/tenants/{t}/members", api.refresh(sam))[0] == 200
    assert sorted(api.doc("tenants/{t}")["active_admin_uids"]) == sorted([ada.uid, sam.uid])


# ----------------------------------------------------------------------------- who may call what


WRITES = [
    ("POST", "/tenants/{t}/members", {"uid": "{new}", "role": "trader"}),
    ("PUT", "/tenants/{t}/members/{new}/role", {"role": "auditor"}),
    ("PUT", "/tenants/{t}/members/{new}/status", {"status": "suspended"}),
    ("PUT", "/tenants/{t}/members/{tom}/default-account", {"account_id": "acct-tom"}),
    ("POST", "/tenants/{t}/connections", {"connection_id": "paper2", "venue": "paper", "environment": "paper"}),
    ("PATCH", "/tenants/{t}/connections/paper1", {"base_url": "http://127.0.0.1:9"}),
    ("POST", "/tenants/{t}/accounts", {"account_id": "acct-2", "connection_id": "paper1",
                                       "venue_account_id": "book-2", "owner_uids": ["{tom}"],
                                       "asset_classes": ["EQUITY"]}),
    ("PATCH", "/tenants/{t}/accounts/acct-tom", {"asset_classes": ["EQUITY", "CRYPTO"]}),
    ("PUT", "/tenants/{t}/accounts/acct-tom/status", {"status": "closed"}),
    ("POST", "/tenants/{t}/ledger/lt-1/corrections", {"reason": "fee was booked twice", "corrected": {"fees": "0"}}),
]
READS = ["/tenants/{t}/members", "/tenants/{t}/connections", "/tenants/{t}/accounts", "/tenants/{t}/audit-log",
         "/tenants/{t}/ledger", "/groups"]


def _fill(value: Any, tom: User, new: User) -> Any:
    return json.loads(json.dumps(value).replace("{tom}", tom.uid).replace("{new}", new.uid))


def test_every_admin_endpoint_answers_only_its_callers(api):
    ada = api.new_tenant()
    tom = api.member(ada, "tom", "trader")
    aud = api.member(ada, "aud", "auditor")
    sam = api.member(ada, "sam", "tenant_admin")
    newbie = api.user("newbie")
    other = Api(api.server, api.auth, api.db)
    bea = other.new_tenant("bea")
    assert api.call("POST", "/tenants/{t}/connections", ada,
                    {"connection_id": "paper1", "venue": "paper", "environment": "paper"})[0] == 201
    assert api.call("POST", "/tenants/{t}/accounts", ada, {
        "account_id": "acct-tom", "connection_id": "paper1", "venue_account_id": "book-1", "owner_uids": [tom.uid],
        "asset_classes": ["EQUITY"]})[0] == 201
    api.db.document(f"tenants/{api.tenant}/ledger_trades/lt-1").set(LEDGER_ROW)
    pass_a_second()
    assert api.call("PUT", f"/tenants/{{t}}/members/{sam.uid}/status", ada, {"status": "suspended"})[0] == 200
    sam_old = User(sam.uid, sam.email, sam.token)
    api.refresh(sam)
    entries = len(api.audit())

    for method, path, body in WRITES:
        path, body = _fill(path, tom, newbie), _fill(body, tom, newbie)
        refused = {"none": api.call(method, path, None, body), "trader": api.call(method, path, tom, body),
                   "auditor": api.call(method, path, aud, body), "other-admin": api.call(method, path, bea, body),
                   "suspended-old-token": api.call(method, path, sam_old, body),
                   "suspended-fresh-token": api.call(method, path, sam, body)}
        assert {who: s for who, (s, _) in refused.items()} == {
            "none": 401, "trader": 403, "auditor": 403, "other-admin": 403, "suspended-old-token": 401,
            "suspended-fresh-token": 403}, (method, path, refused)
        assert refused["suspended-fresh-token"][1]["error"]["code"] == "MEMBER_SUSPENDED"
        assert len(api.audit()) == entries, (method, path)  # refused: nothing written
        status, reply = api.call(method, path, ada, body)
        assert status in (200, 201), (method, path, reply)
        assert len(api.audit()) == entries + 1, (method, path)  # one entry per change
        entries += 1

    for path in READS:
        got = {who: api.call("GET", path, user)[0] for who, user in
               (("admin", ada), ("auditor", aud), ("other-admin", bea), ("suspended", sam), ("none", None))}
        assert got == {"admin": 200, "auditor": 200, "other-admin": 403 if path != "/groups" else 200,
                       "suspended": 403 if path != "/groups" else 200, "none": 401}, (path, got)
        if path != "/groups":
            assert api.call("GET", path, tom)[0] == 403, path


# ---------------------------------------------------------------------------- connections, accounts


def test_credentials_go_to_the_secret_sink_and_only_their_reference_is_stored_or_returned(api, server):
    ada = api.new_tenant()
    tom = api.member(ada, "tom", "trader")
    body = {"connection_id": "broker1", "venue": "alpaca_broker", "environment": "sandbox",
            "base_url": "http://127.0.0.1:9999", "credentials": {"key_id": "CK-ADMIN", "secret_key": SECRET_KEY}}
    status, reply = api.call("POST", "/tenants/{t}/connections", ada, body)

    assert status == 201, reply
    ref = reply["connection"]["credentials_ref"]
    assert ref == f"file:connection.{api.tenant}.broker1"
    assert SECRET_KEY not in json.dumps(reply)
    stored = json.loads(json.loads(server.sink_path.read_text())[ref.removeprefix("file:")])
    assert stored == {"key_id": "CK-ADMIN", "secret_key": SECRET_KEY}
    assert api.doc("tenants/{t}/broker_connections/broker1")["credentials_ref"] == ref
    # wrong fields for the venue, or a reference the sink cannot write: 400, nothing stored
    for bad, field in (({"token": "x"}, "credentials.token"), ({"key_id": "k"}, "credentials.secret_key")):
        status, reply = api.call("POST", "/tenants/{t}/connections", ada, {**body, "connection_id": "b2",
                                                                           "credentials": bad})
        assert (status, reply["error"]["field"]) == (400, field), reply
    status, reply = api.call("POST", "/tenants/{t}/connections", ada, {**body, "connection_id": "b3",
                                                                       "credentials_ref": "env:ALPACA_KEYS"})
    assert (status, reply["error"]["field"]) == (400, "credentials_ref"), reply
    assert api.doc("tenants/{t}/broker_connections/b2") is None and api.doc("tenants/{t}/broker_connections/b3") is None
    # rotation writes the new value under the same reference
    status, reply = api.call("PATCH", "/tenants/{t}/connections/broker1", ada,
                             {"credentials": {"key_id": "CK-ADMIN", "secret_key": SECRET_KEY + "-2"}})
    assert status == 200 and reply["changed"] is True, reply
    assert json.loads(json.loads(server.sink_path.read_text())[ref.removeprefix("file:")])["secret_key"] == \
        SECRET_KEY + "-2"
    # accounts on the connection: the venue's rules apply
    account = {"account_id": "acct-1", "connection_id": "broker1",
               "venue_account_id": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "owner_uids": [tom.uid],
               "asset_classes": ["EQUITY", "CRYPTO"]}
    assert api.call("POST", "/tenants/{t}/accounts", ada, {**account, "asset_classes": ["FOREX"]})[1]["error"][
        "field"] == "asset_classes"
    assert api.call("POST", "/tenants/{t}/accounts", ada, {**account, "venue_account_id": "not-a-uuid"})[1]["error"][
        "field"] == "venue_account_id"
    assert api.call("POST", "/tenants/{t}/accounts", ada, {**account, "owner_uids": ["stranger"]})[1]["error"][
        "field"] == "owner_uids[0]"
    assert api.call("POST", "/tenants/{t}/accounts", ada, account)[0] == 201
    assert api.call("POST", "/tenants/{t}/accounts", ada, account)[1]["error"]["code"] == "ACCOUNT_EXISTS"
    # nowhere in the tenant's documents, nor in the server's log
    for collection in ("broker_connections", "accounts", "members", "audit_log"):
        for snap in api.db.collection(f"tenants/{api.tenant}/{collection}").stream():
            assert SECRET_KEY not in json.dumps(snap.to_dict(), default=str), (collection, snap.id)
    assert SECRET_KEY not in server.log_tail(100000)
    status, page = api.call("GET", "/tenants/{t}/connections", ada)
    assert status == 200 and [c["connection_id"] for c in page["items"]] == ["broker1"]
    assert SECRET_KEY not in json.dumps(page)


def test_accounts_bind_to_members_and_closing_is_final(api):
    ada = api.new_tenant()
    tom = api.member(ada, "tom", "trader")
    amy = api.member(ada, "amy", "trader")
    assert api.call("POST", "/tenants/{t}/connections", ada,
                    {"connection_id": "paper1", "venue": "paper", "environment": "paper"})[0] == 201
    for account_id, owners in (("acct-tom", [tom.uid]), ("acct-joint", [tom.uid, amy.uid])):
        assert api.call("POST", "/tenants/{t}/accounts", ada, {
            "account_id": account_id, "connection_id": "paper1", "venue_account_id": account_id,
            "owner_uids": owners, "asset_classes": ["EQUITY"]})[0] == 201
    # a default must be an account the member owns
    assert api.call("PUT", f"/tenants/{{t}}/members/{amy.uid}/default-account", ada,
                    {"account_id": "acct-tom"})[1]["error"]["field"] == "account_id"
    assert api.call("PUT", f"/tenants/{{t}}/members/{tom.uid}/default-account", ada, {"account_id": "acct-joint"})[0] \
        == 200
    member = api.doc(f"tenants/{{t}}/members/{tom.uid}")
    assert (member["default_account_id"], member["role"]) == ("acct-joint", "trader")
    status, page = api.call("GET", f"/tenants/{{t}}/accounts?owner_uid={amy.uid}", ada)
    assert status == 200 and [a["account_id"] for a in page["items"]] == ["acct-joint"]
    # a role change never clobbers the default account
    assert api.call("PUT", f"/tenants/{{t}}/members/{tom.uid}/role", ada, {"role": "auditor"})[0] == 200
    assert api.doc(f"tenants/{{t}}/members/{tom.uid}")["default_account_id"] == "acct-joint"
    # removing tom from the account clears his default in the same commit
    assert api.call("PATCH", "/tenants/{t}/accounts/acct-joint", ada, {"owner_uids": [amy.uid]})[0] == 200
    assert api.doc(f"tenants/{{t}}/members/{tom.uid}")["default_account_id"] is None
    # the lifecycle: trading states belong to PUT …/trading-state (venue suspension); closed is final
    # (and clears defaults); a retry is a no-op
    assert api.call("PUT", f"/tenants/{{t}}/members/{amy.uid}/default-account", ada, {"account_id": "acct-joint"})[0] \
        == 200
    for target, expected in (("halted", 400), ("closed", 200), ("closed", 200), ("active", 409)):
        status, reply = api.call("PUT", "/tenants/{t}/accounts/acct-joint/status", ada, {"status": target})
        assert status == expected, (target, reply)
    assert api.doc("tenants/{t}/accounts/acct-joint")["status"] == "closed"
    assert api.doc(f"tenants/{{t}}/members/{amy.uid}")["default_account_id"] is None
    statuses = [e["after"]["status"] for e in api.audit() if e["action"] == "account.status_set"]
    assert statuses == ["closed"]  # once: the retry changed nothing
    assert api.call("PATCH", "/tenants/{t}/accounts/acct-joint", ada, {"owner_uids": [tom.uid]})[0] == 400


# -------------------------------------------------------------------------------------- audit log


def test_the_audit_log_records_each_change_once_and_pages_like_the_ledger(api):
    ada = api.new_tenant()
    tom = api.member(ada, "tom", "trader")
    aud = api.member(ada, "aud", "auditor")
    status, _ = api.call("PUT", f"/tenants/{{t}}/members/{tom.uid}/role", ada, {"role": "auditor"},
                         headers={"X-Request-Id": "req-role-change-1"})
    assert status == 200
    assert api.call("PUT", f"/tenants/{{t}}/members/{tom.uid}/role", ada, {"role": "auditor"})[1]["changed"] is False

    status, page = api.call("GET", f"/tenants/{{t}}/audit-log?target=member/{tom.uid}", aud)

    assert status == 200, page
    assert [e["action"] for e in page["items"]] == ["member.role_set", "member.add"]  # newest first, once each
    change = page["items"][0]
    assert (change["actor_uid"], change["actor_role"], change["request_id"]) == (ada.uid, "tenant_admin",
                                                                                  "req-role-change-1")
    assert (change["before"]["role"], change["after"]["role"]) == ("trader", "auditor")
    walked, cursor = [], None
    while True:
        status, page = api.call("GET", "/tenants/{t}/audit-log?limit=2" + (f"&cursor={cursor}" if cursor else ""), ada)
        assert status == 200, page
        walked += [e["audit_id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(walked) == sorted(e["audit_id"] for e in api.audit()) and len(walked) == len(set(walked)) == 4
    status, page = api.call("GET", "/tenants/{t}/audit-log?action=member.add", ada)
    assert status == 200 and {e["target"] for e in page["items"]} == {f"member/{tom.uid}", f"member/{aud.uid}"}
    status, reply = api.call("GET", f"/tenants/{{t}}/audit-log?action=member.add&actor_uid={ada.uid}", ada)
    assert (status, reply["error"]["code"]) == (400, "UNSUPPORTED_FILTER")
    assert api.call("GET", "/tenants/{t}/audit-log", tom)[0] == 401  # tom's role changed: refresh first
    assert api.call("GET", "/tenants/{t}/audit-log", api.refresh(tom))[0] == 200  # now an auditor


# ------------------------------------------------------------------------------- ledger corrections

LEDGER_ROW = {"schema_version": 1, "kind": "fill", "trade_id": "lt-1", "intent_id": "i-1", "group_id": None,
              "leg_id": None, "tenant_id": "x", "uid": "u-1", "strategy_id": "s1", "broker_account_id": "acct-1",
              "symbol": "SPY", "asset_class": "EQUITY", "side": "buy", "qty": "10", "status": "fill",
              "filled_qty": "10", "filled_avg_price": "520.01", "fees": "1.00",
              "created_at": "2026-12-01T15:00:00+00:00", "trade_date": "2026-12-01"}


def test_a_correction_is_a_new_row_that_references_the_original_and_shows_in_review_and_csv(api):
    ada = api.new_tenant()
    aud = api.member(ada, "aud", "auditor")
    api.db.document(f"tenants/{api.tenant}/ledger_trades/lt-1").set(LEDGER_ROW)
    body = {"reason": "the venue charged no fee", "corrected": {"fees": "0", "filled_avg_price": "520.00"}}
    key = {"Idempotency-Key": "fix-lt-1"}

    status, reply = api.call("POST", "/tenants/{t}/ledger/lt-1/corrections", ada, body, headers=key)

    assert status == 201, reply
    row = reply["correction"]
    assert (row["kind"], row["status"], row["corrects"], row["reason"]) == ("correction", "correction", "lt-1",
                                                                            body["reason"])
    assert row["correction"]["fields"] == {"fees": {"from": "1.00", "to": "0"},
                                           "filled_avg_price": {"from": "520.01", "to": "520.00"}}
    assert api.doc("tenants/{t}/ledger_trades/lt-1") == LEDGER_ROW  # the original is immutable
    assert api.call("POST", "/tenants/{t}/ledger/lt-1/corrections", ada, body, headers=key)[0] == 200  # replay
    assert api.call("POST", "/tenants/{t}/ledger/lt-1/corrections", ada, {**body, "reason": "another story"},
                    headers=key)[0] == 409
    assert api.call("POST", f"/tenants/{{t}}/ledger/{row['ledger_id']}/corrections", ada, body)[1]["error"][
        "field"] == "ledger_id"
    assert api.call("POST", "/tenants/{t}/ledger/nope/corrections", ada, body)[0] == 404
    status, page = api.call("GET", "/tenants/{t}/ledger?status=correction", aud)
    assert status == 200 and [r["corrects"] for r in page["items"]] == ["lt-1"]
    status, page = api.call("GET", "/tenants/{t}/ledger", ada)
    assert [r["ledger_id"] for r in page["items"]] == [row["ledger_id"], "lt-1"]
    status, _, csv_text = http_call("GET", f"{api.server.url}/tenants/{api.tenant}/ledger?format=csv", None,
                                    {"Authorization": f"Bearer {aud.token}"})
    assert status == 200
    header, first = csv_text.splitlines()[:2]
    assert header.split(",")[-3:] == ["corrects", "correction_reason", "correction_fields"]
    assert first.startswith(row["ledger_id"]) and "lt-1,the venue charged no fee," in first
    assert "fees: 1.00 -> 0; filled_avg_price: 520.01 -> 520.00" in first
    [entry] = [e for e in api.audit() if e["action"] == "ledger.correction"]
    assert (entry["target"], entry["after"]["ledger_id"]) == ("ledger/lt-1", row["ledger_id"])


# ------------------------------------------------------------------- the admin's setup, as a trader sees it


def test_an_account_the_admin_binds_is_traded_by_default_and_suspension_refuses_orders(api):
    """The account binding (backend/execution/accounts.py, strict mode) reads what this API writes: the
    member's default account, and the member's status."""
    ada = api.new_tenant()
    tom = api.member(ada, "tom", "trader")
    order = {"strategy_id": "s1", "symbol": "SPY", "side": "buy", "qty": "1"}
    status, reply = api.call("POST", "/execute", tom, order)
    assert (status, reply["error"]["code"]) == (400, "ACCOUNT_NOT_FOUND"), reply  # no account yet
    assert api.call("POST", "/tenants/{t}/accounts", ada, {
        "account_id": "tom-main", "connection_id": "deployment", "venue_account_id": "tom-book",
        "owner_uids": [tom.uid], "asset_classes": ["EQUITY"]})[0] == 201
    assert api.call("PUT", f"/tenants/{{t}}/members/{tom.uid}/default-account", ada, {"account_id": "tom-main"})[0] \
        == 200

    status, reply = api.call("POST", "/execute", tom, order)

    assert status == 201, reply
    pass_a_second()
    assert api.call("PUT", f"/tenants/{{t}}/members/{tom.uid}/status", ada, {"status": "suspended"})[0] == 200
    assert api.call("POST", "/execute", tom, order)[1]["error"]["code"] == "TOKEN_REVOKED"
    status, reply = api.call("POST", "/execute", api.refresh(tom), order)
    assert (status, reply["error"]["code"]) == (403, "MEMBER_SUSPENDED"), reply
