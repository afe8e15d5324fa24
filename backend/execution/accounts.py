"""Account binding (issue 12): which account a new intent, group or signal trades.

``AccountBinder.bind`` is the one place every entry path goes through — a single order over HTTP,
a group over HTTP, an app-written intent document (single or group), a signal — before anything
is written or sent. It reads the named account (or the caller's default) and the caller's member
document in one batched read (``AccountStore.read_account_binding``), applies
``backend.domain.accounts.resolve_account`` (exists → owned → closed → halted → asset classes),
refuses a suspended member, and answers an ``AccountBinding`` (stored with the intent record / the
group document) or a coded ``Rejection``.

Work already bound never binds again: resumes, the sweeper, rollbacks and reconciliation use the
stored binding whatever the account's status (a halted account's rollback still runs).

Modes (``ExecSettings.accounts_mode``, ``EXEC_ACCOUNTS``):

- ``strict`` (the deployed API's default): only account documents written by admins count.
- ``auto`` (the library engine's default): a user with no default account gets the first account id
  they name (``main-<uid>`` when they name none) created on the ``deployment`` connection, owned by them,
  and set as their default — once. Any other id they name afterwards is refused like a foreign one
  (``ACCOUNT_NOT_OWNED``), so inventing labels can no longer multiply a position limit. On the paper
  venue each provisioned account trades its own book (``deployment_venue_account_id``).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterable

from backend.domain.accounts import Account, AccountStatus
from backend.domain.assets import AssetClass
from backend.domain.clock import Clock
from backend.domain.errors import RejectCode, Rejection
from backend.logs import log_event
from backend.ports.accounts import (DEPLOYMENT_CONNECTION_ID, MEMBER_SUSPENDED, AccountBinding, AccountRead,
                                    AccountStore)

AUTO_DEFAULT_ACCOUNT_PREFIX = "main-"  # + uid: a user's first account when they name none

# HTTP status of each binding refusal (the API maps a rejected, unwritten binding to these).
HTTP_STATUS = {
    RejectCode.ACCOUNT_NOT_OWNED: 403,
    RejectCode.MEMBER_SUSPENDED: 403,
    RejectCode.ACCOUNT_NOT_FOUND: 400,
    RejectCode.ACCOUNT_CLOSED: 400,
    RejectCode.ACCOUNT_HALTED: 400,
    RejectCode.ASSET_CLASS_NOT_ENABLED: 400,
    RejectCode.VENUE_UNAVAILABLE: 503,
}


def is_binding_rejection(rejection: Rejection | None) -> bool:
    return rejection is not None and rejection.code in HTTP_STATUS


class AccountRefused(Exception):
    """A group (or any request that answers by raising) refused by the account binding; nothing was
    written or sent. ``rejection.code`` maps to an HTTP status with ``HTTP_STATUS``."""

    def __init__(self, rejection: Rejection):
        self.rejection = rejection
        super().__init__(str(rejection))

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.rejection.code, 400)


@dataclass(frozen=True)
class Bound:
    account: Account
    binding: AccountBinding

    @property
    def account_id(self) -> str:
        return self.account.account_id


def deployment_venue_account_id(tenant_id: str, account_id: str) -> str:
    """The paper book of a provisioned deployment account: unique per (tenant, account) — a digest of
    both ids ("/" cannot occur in either), so no two pairs share a book and it is a valid id."""
    return "book-" + hashlib.sha256(f"{tenant_id}/{account_id}".encode()).hexdigest()[:32]


class AccountBinder:
    def __init__(self, store: AccountStore, clock: Clock, *, mode: str = "strict",
                 deployment_classes: Iterable[AssetClass] = tuple(AssetClass)):
        if mode not in ("auto", "strict"):
            raise ValueError(f"accounts mode {mode!r}")
        self.store = store
        self.clock = clock
        self.mode = mode
        self.deployment_classes = frozenset(deployment_classes) or frozenset(AssetClass)

    def bind(self, tenant_id: str, uid: str, requested_id: str | None,
             asset_classes: Iterable[AssetClass]) -> Bound | Rejection:
        classes = tuple(dict.fromkeys(asset_classes))
        read = self.store.read_account_binding(tenant_id, uid, requested_id)
        if read.member_status == MEMBER_SUSPENDED:
            return Rejection(RejectCode.MEMBER_SUSPENDED, f"member {uid} is suspended in this tenant")
        if self.mode == "auto" and read.default_account_id is None:
            read = self._provision(tenant_id, uid, requested_id, read)
        candidates = [a for a in (read.requested, read.default) if a is not None]
        resolved = resolve_first(requested_id, uid, candidates, read.default_account_id, classes)
        if isinstance(resolved, Rejection):
            log_event("exec.account_refused", severity="WARNING", tenant_id=tenant_id, uid=uid,
                      account_id=requested_id, rejection=resolved)
            return resolved
        if resolved.connection_id == DEPLOYMENT_CONNECTION_ID:
            return Bound(resolved, AccountBinding.of(resolved, None))
        connection = self.store.get_connection(tenant_id, resolved.connection_id)
        if connection is None:
            rejection = Rejection(RejectCode.VENUE_UNAVAILABLE,
                                  f"the connection of account {resolved.account_id} is missing")
            log_event("exec.account_refused", severity="ERROR", tenant_id=tenant_id, uid=uid,
                      account_id=resolved.account_id, rejection=rejection)
            return rejection
        return Bound(resolved, AccountBinding.of(resolved, connection))

    def _provision(self, tenant_id: str, uid: str, requested_id: str | None, read: AccountRead) -> AccountRead:
        """Auto mode, a user without a default: their first account, unless the id is taken."""
        if read.requested is not None:  # the named id exists (someone's): nothing to provision
            return read
        now = self.clock.now()
        account_id = requested_id or f"{AUTO_DEFAULT_ACCOUNT_PREFIX}{uid}"
        account = Account(account_id=account_id, connection_id=DEPLOYMENT_CONNECTION_ID,
                          venue_account_id=deployment_venue_account_id(tenant_id, account_id),
                          owner_uids=(uid,), status=AccountStatus.ACTIVE,
                          asset_classes=self.deployment_classes, created_at=now, updated_at=now)
        stored = self.store.provision_account(tenant_id, uid, account)
        log_event("exec.account_provisioned", tenant_id=tenant_id, uid=uid, account_id=stored.account_id,
                  owned=stored.is_owned_by(uid))
        return self.store.read_account_binding(tenant_id, uid, requested_id)


def resolve_first(requested_id: str | None, uid: str, candidates: list[Account], default_id: str | None,
                  classes: tuple[AssetClass, ...]) -> Account | Rejection:
    """``resolve_account`` for every asset class the request trades (a group may span several)."""
    from backend.domain.accounts import resolve_account

    resolved: Account | Rejection | None = None
    for klass in classes or (None,):
        resolved = resolve_account(requested_id, uid, candidates, default_id, asset_class=klass)
        if isinstance(resolved, Rejection):
            return resolved
    assert resolved is not None
    return resolved


def stored_binding(data: Any) -> AccountBinding | None:
    """The binding stored with an intent record / group document (None for records written before
    accounts existed: they trade the deployment's venues as they did)."""
    if not isinstance(data, dict) or not data:
        return None
    return AccountBinding.from_dict(data)
