"""The account port (issue 12): what the core reads to bind a request to an account, and the
venue of a bound account.

- ``AccountBinding`` — what an intent record and a group document store once bound, and what every
  later step (resume, sweeper, rollback, reconciliation) uses without re-checking ownership: the
  tenant's account id, its connection, the venue and the venue's own account id.
- ``AccountRead`` — one read of the documents a binding needs: the named account (whoever owns
  it), the caller's member document (default account, member status) and the default account.
- ``AccountStore`` — the store side (both stores implement it): ``read_account_binding`` (batched),
  ``get_connection`` and ``provision_account`` (the embedded auto mode's create-if-absent).
- ``VenueResolver`` — the venues of a binding: a ``BrokerRouter`` whose brokers trade exactly that
  venue account (``backend/adapters/venue_pool.py``); ``VenueUnavailable`` (coded
  ``VENUE_UNAVAILABLE``) when that venue cannot be built (connection missing, credentials unreadable).

Documents (docs/ARCHITECTURE.md, "Accounts"):
``tenants/{t}/broker_connections/{connection_id}`` (``BrokerConnection.to_dict``),
``tenants/{t}/accounts/{account_id}`` (``Account.to_dict``),
``tenants/{t}/members/{uid}`` (``MEMBER_FIELDS``: uid, role, status, default_account_id, email,
created_at, updated_at — the binding reads ``status`` and ``default_account_id``).

The connection id ``deployment`` is reserved: it names the venues this deployment is configured
with (``EXEC_BROKER_ROUTES``; the embedded paper venue by default) and has no document. Accounts on
it are what the embedded auto mode provisions; on the paper venue each has its own book.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol

from backend.domain.accounts import Account, BrokerConnection
from backend.domain.errors import InvalidInput, RejectCode, Rejection
from backend.domain.ids import check_id

DEPLOYMENT_CONNECTION_ID = "deployment"
DEPLOYMENT_VENUE = "deployment"

MEMBER_FIELDS = ("uid", "role", "status", "default_account_id", "email", "created_at", "updated_at")
MEMBER_ACTIVE = "active"
MEMBER_SUSPENDED = "suspended"


def member_path(tenant_id: str, uid: str) -> str:
    return f"tenants/{check_id(tenant_id, 'tenant_id')}/members/{check_id(uid, 'uid')}"


@dataclass(frozen=True)
class AccountBinding:
    """The account an intent or group trades, as stored with it (field ``account`` of the intent
    record and the group document)."""

    account_id: str
    connection_id: str
    venue: str  # a ``Venue`` value, or ``deployment``
    venue_account_id: str

    def __post_init__(self) -> None:
        for name in ("account_id", "connection_id", "venue", "venue_account_id"):
            check_id(getattr(self, name), f"account.{name}")

    @classmethod
    def of(cls, account: Account, connection: BrokerConnection | None) -> "AccountBinding":
        if connection is None:
            if account.connection_id != DEPLOYMENT_CONNECTION_ID:
                raise InvalidInput("connection_id", f"connection {account.connection_id} is missing")
            return cls(account.account_id, DEPLOYMENT_CONNECTION_ID, DEPLOYMENT_VENUE, account.venue_account_id)
        return cls(account.account_id, connection.connection_id, connection.venue.value, account.venue_account_id)

    def to_dict(self) -> dict[str, str]:
        return {"account_id": self.account_id, "connection_id": self.connection_id, "venue": self.venue,
                "venue_account_id": self.venue_account_id}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AccountBinding":
        if not isinstance(data, Mapping):
            raise InvalidInput("account", "must be an object")
        return cls(**{k: data.get(k) for k in ("account_id", "connection_id", "venue", "venue_account_id")})


@dataclass(frozen=True)
class AccountRead:
    requested: Account | None  # the named account's document, whoever owns it (None: absent or none named)
    member: Mapping[str, Any] | None  # tenants/{t}/members/{uid} as stored (None: absent)
    default: Account | None  # the member's default account when none was named (None: absent/unset)

    @property
    def default_account_id(self) -> str | None:
        value = (self.member or {}).get("default_account_id")
        return value if isinstance(value, str) and value else None

    @property
    def member_status(self) -> str:
        value = (self.member or {}).get("status")
        return value if isinstance(value, str) and value else MEMBER_ACTIVE


class AccountStore(Protocol):
    def read_account_binding(self, tenant_id: str, uid: str, account_id: str | None) -> AccountRead:
        """The named account (if any), the member document and, when none was named, the default
        account — batched (``get_all``); a second round trip only for the default account."""

    def get_connection(self, tenant_id: str, connection_id: str) -> BrokerConnection | None:
        """``tenants/{t}/broker_connections/{id}`` parsed, or None when absent."""

    def provision_account(self, tenant_id: str, uid: str, account: Account) -> Account:
        """Create ``account`` if its document is absent and make it the member's default if the
        member has none — one atomic commit; returns the account as stored afterwards (the existing
        one when it was already there, whoever owns it: the caller re-checks ownership). A member
        who has a default already gets no new account: the default account is returned instead (a
        concurrent provision of another id won; ``backend.execution.account_writes.provision``)."""


class AccountAdmin(Protocol):
    """Admin-side account writes and reads (issue 13's API, tests, the run command); both stores
    implement them (``backend.execution.account_writes``)."""

    def put_connection(self, tenant_id: str, connection: BrokerConnection) -> BrokerConnection:
        """Write the connection document (``deployment`` is reserved: ``InvalidInput``)."""

    def put_account(self, tenant_id: str, account: Account) -> Account:
        """Create or replace the account document; a closed account is final and a status change
        must be one ``STATUS_TRANSITIONS`` allows (``InvalidInput`` otherwise)."""

    def get_account(self, tenant_id: str, account_id: str) -> Account | None:
        """The account document parsed strictly, or None when absent."""

    def list_accounts(self, tenant_id: str, owner_uid: str | None = None, *, limit: int = 500) -> list[Account]:
        """The tenant's accounts by id (only those ``owner_uid`` owns, when given), at most ``limit``."""

    def set_default_account(self, tenant_id: str, uid: str, account_id: str, *, at: Any = None) -> None:
        """Make an account ``uid`` owns their default: merged into the member document (role,
        status, email kept; created when absent)."""


class VenueResolver(Protocol):
    def router_for(self, tenant_id: str, binding: AccountBinding) -> Any:
        """A ``BrokerRouter`` whose brokers trade ``binding.venue_account_id`` only (cached per
        process per connection and account)."""


class VenueUnavailable(RuntimeError):
    """The venue of a binding cannot be reached as configured: its connection document is missing,
    its credentials cannot be read, or the binding no longer matches the connection. Raised by a
    ``VenueResolver`` before anything is sent; coded ``VENUE_UNAVAILABLE``. The message names the
    connection and the reason, never a credential (a ``SecretUnavailable`` reason names only the
    reference)."""

    code = RejectCode.VENUE_UNAVAILABLE

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason

    @property
    def rejection(self) -> Rejection:
        return Rejection(RejectCode.VENUE_UNAVAILABLE, self.reason)

    def __repr__(self) -> str:
        return f"VenueUnavailable({self.reason!r})"
