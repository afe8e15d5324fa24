"""The account store's reads and writes (issue 12), decided once in the core over the unit of work
(``backend.execution.unit_of_work``), as ``store_writes`` does for intents and groups: both adapters
(Firestore, in-memory) delegate here and keep only I/O, so what a binding reads and what a
provision writes cannot drift between them.

Documents (``backend.ports.accounts``): ``tenants/{t}/accounts/{id}`` (``Account.to_dict``),
``tenants/{t}/broker_connections/{id}`` (``BrokerConnection.to_dict``) and
``tenants/{t}/members/{uid}`` (``MEMBER_FIELDS``).

Reads parse strictly (``Account.from_dict`` / ``BrokerConnection.from_dict``: unknown keys, floats
where exact decimals belong, a document whose id field disagrees with its path are all refused with
``InvalidInput``): these documents can be written by an admin client, and a malformed one must stop
the request, never be half-read.

- ``read_binding``: one ``get_all`` of [the named account, the member]; a second read only for the
  member's default account when no id was named.
- ``provision``: the embedded auto mode's create-if-absent — the account (``Create``: never over
  anyone's account) and the member's default (member ``Create``, or ``Update`` on the version read)
  in ONE commit; a ``Conflict`` re-reads and decides again. A user gets at most one default: once
  the member has a default, another id is never created for them here.
- Admin helpers (issue 13's API and tests): ``put_account`` (a closed account is final, status
  changes follow ``STATUS_TRANSITIONS``, conditional on the version read), ``put_connection``,
  ``get_account``, ``get_connection``, ``set_default_account`` (merge: role, status, email kept).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping

from backend.domain.accounts import (Account, AccountStatus, BrokerConnection, account_path, can_transition,
                                     connection_path)
from backend.domain.errors import InvalidInput
from backend.domain.ids import check_id
from backend.execution.unit_of_work import Commit, Conflict, Create, Op, Set, Update
from backend.ports.accounts import DEPLOYMENT_CONNECTION_ID, MEMBER_ACTIVE, AccountRead, member_path
from backend.ports.store import StoreContention, UnitOfWork

ATTEMPTS = 5  # a conflict means another writer moved the member or the account: re-read, decide again


# --- parsing ---------------------------------------------------------------------------------------
def parse_account(doc: Mapping[str, Any] | None, account_id: str) -> Account | None:
    """The stored account document, strictly parsed; None when absent. ``InvalidInput`` when it is
    malformed or its ``account_id`` field is not its document id."""
    if doc is None:
        return None
    account = Account.from_dict(doc)
    if account.account_id != account_id:
        raise InvalidInput("account.account_id", f"is {account.account_id!r}, stored as document {account_id!r}")
    return account


def parse_connection(doc: Mapping[str, Any] | None, connection_id: str) -> BrokerConnection | None:
    if doc is None:
        return None
    connection = BrokerConnection.from_dict(doc)
    if connection.connection_id != connection_id:
        raise InvalidInput("connection.connection_id",
                           f"is {connection.connection_id!r}, stored as document {connection_id!r}")
    return connection


def _default_id(member: Mapping[str, Any] | None) -> str | None:
    """The member's default account id (checked: it becomes a document path), or None."""
    default = AccountRead(None, member, None).default_account_id
    return None if default is None else check_id(default, "member.default_account_id")


def member_doc(uid: str, default_account_id: str | None, at: datetime) -> dict[str, Any]:
    """A new member document (``MEMBER_FIELDS``): no role yet (the admin API sets it), active."""
    return {"uid": uid, "role": None, "status": MEMBER_ACTIVE, "default_account_id": default_account_id,
            "email": None, "created_at": at, "updated_at": at}


# --- reads -----------------------------------------------------------------------------------------
def read_binding(uow: UnitOfWork, tenant_id: str, uid: str, account_id: str | None) -> AccountRead:
    """What ``AccountBinder.bind`` needs: the named account (whoever owns it), the member document
    and, when no id was named, the member's default account. One ``get_all``; a second one only for
    the default account."""
    mp = member_path(tenant_id, uid)
    ap = None if account_id is None else account_path(tenant_id, account_id)
    docs = uow.get_all([p for p in (ap, mp) if p is not None])
    member = docs[mp][0]
    requested = None if ap is None else parse_account(docs[ap][0], account_id)  # type: ignore[arg-type]
    default = None
    if account_id is None:
        default_id = _default_id(member)
        if default_id is not None:
            dp = account_path(tenant_id, default_id)
            default = parse_account(uow.get_all([dp])[dp][0], default_id)
    return AccountRead(requested=requested, member=member, default=default)


def get_account(uow: UnitOfWork, tenant_id: str, account_id: str) -> Account | None:
    path = account_path(tenant_id, account_id)
    return parse_account(uow.get_all([path])[path][0], account_id)


def get_connection(uow: UnitOfWork, tenant_id: str, connection_id: str) -> BrokerConnection | None:
    """The connection document parsed; None when absent. The reserved ``deployment`` id has no
    document (it names the deployment's configured venues): None without a read."""
    if check_id(connection_id, "connection_id") == DEPLOYMENT_CONNECTION_ID:
        check_id(tenant_id, "tenant_id")
        return None
    path = connection_path(tenant_id, connection_id)
    return parse_connection(uow.get_all([path])[path][0], connection_id)


# --- provisioning (the embedded auto mode) ---------------------------------------------------------
def provision_plan(tenant_id: str, uid: str, account: Account, stored: Account | None,
                   member: Mapping[str, Any] | None, member_token: Any) -> list[Op]:
    """The ops of one provision attempt given what was read (empty: nothing to write).

    - the account exists (anyone's): never written; it becomes the member's default only if the
      member owns it and has none;
    - the account is absent and the member has no default: created, and made the default;
    - the account is absent and the member has a default: nothing (one default per user; the auto
      mode refuses any other id like a foreign one)."""
    at = account.updated_at
    mp = member_path(tenant_id, uid)
    default_id = _default_id(member)
    ops: list[Op] = []
    if stored is None:
        if default_id is not None:
            return []
        ops.append(Create(account_path(tenant_id, account.account_id), account.to_dict()))
    elif not stored.is_owned_by(uid) or default_id is not None:
        return []
    if member is None:
        ops.append(Create(mp, member_doc(uid, account.account_id, at)))
    else:
        ops.append(Update(mp, {"default_account_id": account.account_id, "updated_at": at}, member_token))
    return ops


def provision(uow: UnitOfWork, tenant_id: str, uid: str, account: Account) -> Account:
    """Create ``account`` (owned by ``uid``) if absent and make it the member's default if they have
    none — one atomic commit. Answers the account stored at ``account.account_id`` afterwards (the
    existing one, whoever owns it: the caller re-checks ownership); when the member got another
    default meanwhile (a concurrent provision of another id won), nothing is created and the
    member's default account is answered instead (the caller's re-read then refuses the id)."""
    check_id(uid, "uid")
    if not account.is_owned_by(uid):
        raise InvalidInput("owner_uids", f"a provisioned account is owned by the user it is for ({uid})")
    account.storable(tenant_id)
    ap, mp = account_path(tenant_id, account.account_id), member_path(tenant_id, uid)
    for _ in range(ATTEMPTS):
        docs = uow.get_all([ap, mp])
        stored = parse_account(docs[ap][0], account.account_id)
        member, member_token = docs[mp]
        ops = provision_plan(tenant_id, uid, account, stored, member, member_token)
        if not ops:
            if stored is not None:
                return stored
            default_id = _default_id(member)
            default = None if default_id is None else get_account(uow, tenant_id, default_id)
            if default is None:
                raise StoreContention(f"member {uid}: the default account {default_id} is missing")
            return default
        try:
            uow.commit(Commit(ops))
        except Conflict:
            continue  # the member or the account was written meanwhile: read again
        return account if stored is None else stored
    raise StoreContention(f"account {account.account_id}: could not be provisioned")


# --- admin helpers -----------------------------------------------------------------------------------
def put_account(uow: UnitOfWork, tenant_id: str, account: Account) -> Account:
    """Write ``account`` (create, or replace the version read). A closed account is final (its id is
    never reused) and a status change must be one ``STATUS_TRANSITIONS`` allows: ``InvalidInput``."""
    account.storable(tenant_id)
    path = account_path(tenant_id, account.account_id)
    for _ in range(ATTEMPTS):
        doc, token = uow.get_all([path])[path]
        stored = parse_account(doc, account.account_id)
        if stored is not None and stored.status is not account.status \
                and not can_transition(stored.status, account.status):
            raise InvalidInput("status", f"account {account.account_id} cannot go from {stored.status.value} "
                                         f"to {account.status.value}")
        if stored is not None and stored.status is AccountStatus.CLOSED and account != stored:
            raise InvalidInput("status", f"account {account.account_id} is closed")
        op: Op = Create(path, account.to_dict()) if doc is None else Update(path, account.to_dict(), token)
        try:
            uow.commit(Commit([op]))
        except Conflict:
            continue
        return account
    raise StoreContention(f"account {account.account_id}: could not be written")


def put_connection(uow: UnitOfWork, tenant_id: str, connection: BrokerConnection) -> BrokerConnection:
    """Write the connection document (a credentials *reference* only; ``deployment`` is reserved)."""
    if connection.connection_id == DEPLOYMENT_CONNECTION_ID:
        raise InvalidInput("connection_id", f"{DEPLOYMENT_CONNECTION_ID!r} is reserved for the deployment's venues")
    connection.storable(tenant_id)
    uow.commit(Commit([Set(connection_path(tenant_id, connection.connection_id), connection.to_dict())]))
    return connection


def set_default_account(uow: UnitOfWork, tenant_id: str, uid: str, account_id: str,
                        at: datetime | None = None) -> None:
    """Make ``account_id`` the member's default: merged into the member document (role, status,
    email kept), or a new member document. The account must exist and list ``uid`` among its owners
    (``InvalidInput`` otherwise)."""
    at = at or datetime.now(timezone.utc)
    ap, mp = account_path(tenant_id, account_id), member_path(tenant_id, uid)
    for _ in range(ATTEMPTS):
        docs = uow.get_all([ap, mp])
        account = parse_account(docs[ap][0], account_id)
        if account is None or not account.is_owned_by(uid):
            raise InvalidInput("account_id", f"account {account_id} is not an account of {uid}")
        member, token = docs[mp]
        op: Op = (Create(mp, member_doc(uid, account_id, at)) if member is None
                  else Update(mp, {"default_account_id": account_id, "updated_at": at}, token))
        try:
            uow.commit(Commit([op]))
        except Conflict:
            continue
        return
    raise StoreContention(f"member {uid}: the default account could not be set")


def check_list(tenant_id: str, owner_uid: str | None, limit: int) -> None:
    """The arguments of ``list_accounts``, checked before any query is built from them."""
    check_id(tenant_id, "tenant_id")
    if owner_uid is not None:
        check_id(owner_uid, "owner_uid")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise InvalidInput("limit", "must be an integer 1..1000")


def list_filter(accounts: list[tuple[str, Mapping[str, Any]]], owner_uid: str | None) -> list[Account]:
    """Parse listed account documents (id, doc) and keep those ``owner_uid`` owns (all when None),
    ordered by account id — what both adapters' ``list_accounts`` answer after their query."""
    parsed = [parse_account(doc, doc_id) for doc_id, doc in sorted(accounts, key=lambda item: item[0])]
    return [a for a in parsed if a is not None and (owner_uid is None or a.is_owned_by(owner_uid))]
