"""Request and response models of the administration API (issue 13): members, tenants, broker
connections, accounts, ledger corrections and the audit log. Same conventions as
``backend.api.models``: inputs refuse unknown fields, ids follow the one id rule, decimals are
exact; the models check shape only and the admin modules (and ``backend.domain.accounts``) decide
the rest, answering ``InvalidInput`` naming the field.

Credentials arrive as ``SecretStr`` (printed ``**********``; a validation error never echoes an
input) and leave this process only through the secret sink.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, StrictBool, model_validator

from backend.api.auth import TENANT_ROLES
from backend.api.models import Day, Id, NonNegativeDecimal, _Input, _Output, _Query, _query_int

GRANTABLE_ROLES = TENANT_ROLES  # trader, tenant_admin, auditor (platform_operator is never granted here)
MEMBER_STATUSES = ("active", "suspended")
ACCOUNT_STATUSES = ("active", "reduce_only", "halted", "closed")
VENUES = ("alpaca_broker", "alpaca_trading", "paper", "oanda")
ENVIRONMENTS = ("paper", "sandbox", "live")
ASSET_CLASSES = ("EQUITY", "CRYPTO", "OPTIONS", "FOREX", "COMMODITY")
Email = Annotated[str, Field(min_length=3, max_length=254, pattern=r"^[^@\s]{1,64}@[^@\s]{1,189}$",
                             description="An e-mail address.")]
Cursor = Annotated[str, Field(min_length=1, max_length=512)]
SecretText = Annotated[SecretStr, Field(min_length=1, max_length=4096)]
Role = Literal[GRANTABLE_ROLES]  # type: ignore[valid-type]


def _exactly_one(model: Any, first: str, second: str) -> None:
    given = [name for name in (first, second) if getattr(model, name) is not None]
    if len(given) != 1:
        raise ValueError(f"{first}: give exactly one of {first} or {second}")


# ------------------------------------------------------------------------------------- members


class AddMemberRequest(_Input):
    """POST /tenants/{tenant_id}/members: add a user of the identity provider to the caller's tenant."""

    uid: Id | None = Field(None, description="The user's Firebase uid (or give email).")
    email: Email | None = Field(None, description="The user's e-mail (or give uid).")
    role: Role = Field(description="trader, tenant_admin or auditor.")
    create_user: StrictBool = Field(False, description="With email: create the user when none has this e-mail "
                                                       "(an invitation: the app then sends a sign-in or password "
                                                       "reset e-mail). Without it an unknown e-mail is a 404.")

    @model_validator(mode="after")
    def _one_identity(self) -> "AddMemberRequest":
        _exactly_one(self, "uid", "email")
        if self.create_user and self.email is None:
            raise ValueError("create_user: only with email")
        return self


class SetRoleRequest(_Input):
    """PUT /tenants/{tenant_id}/members/{uid}/role. ``role: null`` removes the user from the tenant."""

    role: Role | None = Field(description="The new role, or null to remove the member from the tenant.")


class SetMemberStatusRequest(_Input):
    status: Literal[MEMBER_STATUSES] = Field(description="active or suspended.")  # type: ignore[valid-type]


class SetDefaultAccountRequest(_Input):
    account_id: Id | None = Field(description="An account the member owns (not closed), or null to clear.")


class CreateTenantRequest(_Input):
    """POST /tenants (platform_operator): a tenant and its first admin."""

    tenant_id: Id
    admin_uid: Id | None = None
    admin_email: Email | None = None
    create_user: StrictBool = False

    @model_validator(mode="after")
    def _one_identity(self) -> "CreateTenantRequest":
        _exactly_one(self, "admin_uid", "admin_email")
        if self.create_user and self.admin_email is None:
            raise ValueError("create_user: only with admin_email")
        return self


class MembersQuery(_Query):
    role: Literal[GRANTABLE_ROLES] | None = None  # type: ignore[valid-type]
    status: Literal[MEMBER_STATUSES] | None = None  # type: ignore[valid-type]
    limit: _query_int(1, 200) = 50
    cursor: Cursor | None = None


class MemberOut(_Output):
    uid: str
    role: str | None = None
    status: str | None = None
    email: str | None = None
    default_account_id: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class MembersPage(_Output):
    items: list[MemberOut] = Field(description="Members ordered by uid.")
    next_cursor: str | None


# --------------------------------------------------------------------------------- connections


class Credentials(_Input):
    """The connection's credentials; only the fields of its venue: alpaca_broker and alpaca_trading
    take key_id + secret_key, oanda takes token, paper none. Written to the secret sink, never stored
    in Firestore or returned."""

    key_id: SecretText | None = None
    secret_key: SecretText | None = None
    token: SecretText | None = None


class CreateConnectionRequest(_Input):
    connection_id: Id
    venue: Literal[VENUES]  # type: ignore[valid-type]
    environment: Literal[ENVIRONMENTS]  # type: ignore[valid-type]
    base_url: Annotated[str, Field(min_length=1, max_length=2048)] | None = None
    credentials_ref: Annotated[str, Field(min_length=1, max_length=600)] | None = Field(
        None, description="Where the credentials live (projects/…/secrets/…/versions/…, env:NAME, file:NAME). "
                          "With "
                          "`credentials`, where to write them (default: the sink's name for this connection).")
    credentials: Credentials | None = None


class UpdateConnectionRequest(_Input):
    """PATCH /tenants/{tenant_id}/connections/{connection_id}: the fields given change (venue never does)."""

    environment: Literal[ENVIRONMENTS] | None = None  # type: ignore[valid-type]
    base_url: Annotated[str, Field(min_length=1, max_length=2048)] | None = Field(
        None, description="null clears the override.")
    credentials_ref: Annotated[str, Field(min_length=1, max_length=600)] | None = None
    credentials: Credentials | None = Field(None, description="New credentials (rotation): a new secret version.")


class ConnectionOut(_Output):
    connection_id: str
    venue: str
    environment: str
    base_url: str | None
    credentials_ref: str | None
    created_at: str
    updated_at: str


class ConnectionsPage(_Output):
    items: list[ConnectionOut]
    next_cursor: str | None


# ------------------------------------------------------------------------------------ accounts


class CreateAccountRequest(_Input):
    account_id: Id
    connection_id: Id = Field(description="A broker connection of the tenant, or `deployment` (the venues this "
                                          "deployment is configured with).")
    venue_account_id: Id = Field(description="The venue's account id (Broker API account UUID, OANDA "
                                             "NNN-NNN-NNNNNNN-NNN, a paper book id).")
    owner_uids: list[Id] = Field(min_length=1, max_length=20, description="Members of the tenant.")
    asset_classes: list[Literal[ASSET_CLASSES]] = Field(min_length=1, max_length=5)  # type: ignore[valid-type]
    status: Literal[ACCOUNT_STATUSES] = "active"  # type: ignore[valid-type]


class UpdateAccountRequest(_Input):
    owner_uids: list[Id] | None = Field(None, min_length=1, max_length=20)
    asset_classes: list[Literal[ASSET_CLASSES]] | None = Field(  # type: ignore[valid-type]
        None, min_length=1, max_length=5)

    @model_validator(mode="after")
    def _something(self) -> "UpdateAccountRequest":
        if self.owner_uids is None and self.asset_classes is None:
            raise ValueError("owner_uids: give owner_uids and/or asset_classes")
        return self


class SetAccountStatusRequest(_Input):
    status: Literal[ACCOUNT_STATUSES]  # type: ignore[valid-type]


class AccountsQuery(_Query):
    owner_uid: Id | None = None
    status: Literal[ACCOUNT_STATUSES] | None = None  # type: ignore[valid-type]
    limit: _query_int(1, 200) = 50
    cursor: Cursor | None = None

    @model_validator(mode="after")
    def _one_filter(self) -> "AccountsQuery":
        if self.owner_uid is not None and self.status is not None:
            raise ValueError("status: filter on owner_uid or status, not both")
        return self


class PageQuery(_Query):
    limit: _query_int(1, 200) = 50
    cursor: Cursor | None = None


class AccountOut(_Output):
    account_id: str
    connection_id: str
    venue_account_id: str
    owner_uids: list[str]
    status: str
    asset_classes: list[str]
    limits: dict[str, Any] | None
    created_at: str
    updated_at: str


class AccountsPage(_Output):
    items: list[AccountOut]
    next_cursor: str | None


# --------------------------------------------------------------------------- ledger corrections

CORRECTABLE_DECIMALS = ("qty", "filled_qty", "filled_avg_price", "notional", "fees")


class CorrectedValues(_Input):
    """The values the original row should have had (each optional; exact decimals ≥ 0)."""

    qty: NonNegativeDecimal | None = None
    filled_qty: NonNegativeDecimal | None = None
    filled_avg_price: NonNegativeDecimal | None = None
    notional: NonNegativeDecimal | None = None
    fees: NonNegativeDecimal | None = None
    side: Literal["buy", "sell"] | None = None


class LedgerCorrectionRequest(_Input):
    reason: Annotated[str, Field(min_length=3, max_length=500)] = Field(description="Why (kept verbatim).")
    corrected: CorrectedValues | None = Field(None, description="Corrected values; omit for a note-only "
                                                                "correction.")


# ----------------------------------------------------------------------------------- audit log


class AuditQuery(_Query):
    action: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z_.]+$")] | None = None
    actor_uid: Id | None = None
    target: Annotated[str, Field(min_length=3, max_length=200, pattern=r"^[a-z_]+/[A-Za-z0-9_-]{1,100}$")] | None = \
        Field(None, description="<target_type>/<id>, e.g. member/uid123, account/acct-1.")
    from_: Day | None = Field(None, alias="from")
    to: Day | None = None
    limit: _query_int(1, 500) = 100
    cursor: Cursor | None = None


class AuditEntryOut(_Output):
    audit_id: str
    tenant_id: str
    actor_uid: str
    actor_role: str
    action: str
    target_type: str
    target_id: str
    target: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    request_id: str | None
    created_at: str
    created_day: str


class AuditPage(_Output):
    items: list[AuditEntryOut] = Field(description="Newest first (created_at, then audit_id).")
    next_cursor: str | None


OPENAPI_MODELS = (
    (AddMemberRequest, "validation"), (SetRoleRequest, "validation"), (SetMemberStatusRequest, "validation"),
    (SetDefaultAccountRequest, "validation"), (CreateTenantRequest, "validation"), (MemberOut, "serialization"),
    (MembersPage, "serialization"), (CreateConnectionRequest, "validation"), (UpdateConnectionRequest, "validation"),
    (ConnectionOut, "serialization"), (ConnectionsPage, "serialization"), (CreateAccountRequest, "validation"),
    (UpdateAccountRequest, "validation"), (SetAccountStatusRequest, "validation"), (AccountOut, "serialization"),
    (AccountsPage, "serialization"), (LedgerCorrectionRequest, "validation"), (AuditPage, "serialization"),
)
