"""The account model (issue 12): broker connections, accounts, and which account a request trades.

- ``BrokerConnection`` — ``tenants/{t}/broker_connections/{connection_id}``: a venue, its
  environment, an optional base-URL override, and a *reference* to its credentials
  (``credentials_ref``, a ``SecretRef``). Never the credentials: they resolve at run time through
  the secret-source port (``backend/ports/secrets.py``).
- ``Account`` — ``tenants/{t}/accounts/{account_id}``: its connection, the venue's own account id,
  its owners, a status with an explicit transition table, the asset classes it may trade and
  optional per-account limits (exact decimals).
- ``resolve_account`` — the binding rule: a request names an account its caller owns, or names
  none and gets the caller's default; otherwise a coded ``Rejection``.

Everything here is pure. ``from_dict`` is strict (unknown keys refused, ids by ``backend.domain.ids``,
decimals as ASCII strings, never floats) because the same documents can be written by an admin
client; ``to_dict`` writes what ``from_dict`` reads; ``storable`` runs ``check_storable`` on it.

Venue × environment (what each venue actually offers):

==================  ===============  =============================================================
venue               environments     notes
==================  ===============  =============================================================
``alpaca_broker``   sandbox, live    Alpaca Broker API: one connection, many end-user accounts
``alpaca_trading``  paper, live      Alpaca Trading API: one account per key pair
``paper``           paper            the in-process simulated venue; no credentials
``oanda``           paper, live      OANDA v20 ``practice`` is ``paper`` here, ``live`` is ``live``
==================  ===============  =============================================================

Account status transitions (``closed`` is final; setting the current status again is a no-op, so
an admin request can be retried):

=================  ==========================================  =====================================
from               to                                          meaning
=================  ==========================================  =====================================
``active``         reduce_only, halted, closed                 everything allowed
``reduce_only``    active, halted, closed                      only orders that shrink a position
``halted``         active, reduce_only, closed                 nothing new (rollbacks of work in
                                                               flight still run)
``closed``         —                                           final: the id is never reused
=================  ==========================================  =====================================
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

from backend.domain.assets import AssetClass
from backend.domain.errors import InvalidInput, RejectCode, Rejection
from backend.domain.ids import ID, check_id
from backend.domain.money import dec_str, to_decimal
from backend.domain.secrets import SecretRef
from backend.domain.storable import check_storable

MAX_OWNERS = 20
MAX_BASE_URL_CHARS = 2048


class Venue(str, Enum):
    ALPACA_BROKER = "alpaca_broker"
    ALPACA_TRADING = "alpaca_trading"
    PAPER = "paper"
    OANDA = "oanda"


class Environment(str, Enum):
    PAPER = "paper"
    SANDBOX = "sandbox"
    LIVE = "live"


VENUE_ENVIRONMENTS: Mapping[Venue, frozenset[Environment]] = {
    Venue.ALPACA_BROKER: frozenset({Environment.SANDBOX, Environment.LIVE}),
    Venue.ALPACA_TRADING: frozenset({Environment.PAPER, Environment.LIVE}),
    Venue.PAPER: frozenset({Environment.PAPER}),
    Venue.OANDA: frozenset({Environment.PAPER, Environment.LIVE}),
}

# The fields of the JSON object a connection's credential secret holds (read_credentials).
CREDENTIAL_FIELDS: Mapping[Venue, tuple[str, ...]] = {
    Venue.ALPACA_BROKER: ("key_id", "secret_key"),
    Venue.ALPACA_TRADING: ("key_id", "secret_key"),
    Venue.PAPER: (),
    Venue.OANDA: ("token",),
}

# What each venue can trade (mirrors the adapters' SUPPORTED_ASSET_CLASSES).
VENUE_ASSET_CLASSES: Mapping[Venue, frozenset[AssetClass]] = {
    Venue.ALPACA_BROKER: frozenset({AssetClass.EQUITY, AssetClass.CRYPTO, AssetClass.OPTIONS}),
    Venue.ALPACA_TRADING: frozenset({AssetClass.EQUITY, AssetClass.CRYPTO, AssetClass.OPTIONS}),
    Venue.PAPER: frozenset(AssetClass),
    Venue.OANDA: frozenset({AssetClass.FOREX, AssetClass.COMMODITY}),
}

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII)
_OANDA_ACCOUNT = re.compile(r"[0-9]{3}-[0-9]{3}-[0-9]{7}-[0-9]{3}", re.ASCII)
VENUE_ACCOUNT_ID_RULES: Mapping[Venue, tuple[re.Pattern[str] | None, str]] = {
    Venue.ALPACA_BROKER: (_UUID, "an Alpaca Broker API account id (a lowercase UUID)"),
    Venue.ALPACA_TRADING: (_UUID, "the Alpaca trading account's id (a lowercase UUID)"),
    Venue.PAPER: (None, "a paper book id"),
    Venue.OANDA: (_OANDA_ACCOUNT, "an OANDA account id NNN-NNN-NNNNNNN-NNN"),
}


def _enum(kind: type[Enum], value: Any, field_name: str) -> Any:
    if isinstance(value, kind):
        return value
    try:
        return kind(value)
    except (ValueError, TypeError):
        shown = value[:40] if isinstance(value, str) else type(value).__name__
        raise InvalidInput(field_name, f"must be one of {[k.value for k in kind]}, got {shown!r}") from None


def _refuse_unknown(data: Any, allowed: Iterable[str], what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise InvalidInput(what, f"must be an object, got {type(data).__name__}")
    unknown = sorted(str(k)[:80] for k in data if k not in allowed)
    if unknown:
        raise InvalidInput(f"{what}.{unknown[0]}", "unknown field")
    return data


def _required(data: Mapping[str, Any], key: str, what: str) -> Any:
    if key not in data or data[key] is None:
        raise InvalidInput(f"{what}.{key}" if what else key, "required")
    return data[key]


def _timestamp(value: Any, field_name: str) -> datetime:
    """An aware datetime (Firestore returns one), or ISO-8601 text with an offset (JSON callers)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidInput(field_name, "must be an ISO-8601 timestamp with a UTC offset") from None
    if not isinstance(value, datetime):
        raise InvalidInput(field_name, f"must be a timestamp, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(field_name, "must carry a UTC offset")
    return value


def _check_times(created_at: datetime, updated_at: datetime) -> None:
    if updated_at < created_at:
        raise InvalidInput("updated_at", "must not be before created_at")


def _positive_decimal(value: Any, field_name: str) -> Decimal:
    if isinstance(value, float):  # stored limits are exact strings; a float is a client bug
        raise InvalidInput(field_name, "must be a decimal string such as \"100\", not a float")
    if not isinstance(value, (str, Decimal)):
        raise InvalidInput(field_name, f"must be a decimal string, got {type(value).__name__}")
    dec = to_decimal(value, field_name)
    if dec <= 0:
        raise InvalidInput(field_name, "must be positive")
    return dec


# ------------------------------------------------------------------------------------------------
# broker connections
# ------------------------------------------------------------------------------------------------

def _is_loopback(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def base_url_problem(url: Any, environment: Environment) -> str | None:
    """Why ``url`` cannot be a connection's base-URL override; None when it can.

    http(s) only, a host, no user:password (credentials never live in a document), no query or
    fragment. Loopback hosts (localhost, 127.0.0.0/8, ::1, *.localhost: the local servers) only for
    paper/sandbox; live needs https to a non-loopback host."""
    if not isinstance(url, str):
        return f"must be a URL string, got {type(url).__name__}"
    if not url or len(url) > MAX_BASE_URL_CHARS:
        return f"must be 1-{MAX_BASE_URL_CHARS} characters"
    if not url.isascii() or any(ch.isspace() or ord(ch) < 32 for ch in url):
        return "must be ASCII without spaces or control characters"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https"):
        return "must be an http or https URL"
    if not host:
        return "must name a host"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "must not contain a user name or password (credentials go in credentials_ref)"
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return "must not have a query or fragment"
    if environment is Environment.LIVE:
        if parts.scheme != "https":
            return "a live connection must use https"
        if _is_loopback(host):
            return "a live connection cannot point at a loopback host"
    return None


@dataclass(frozen=True)
class BrokerConnection:
    """``tenants/{t}/broker_connections/{connection_id}``. Written by tenant admins (server API)."""

    connection_id: str
    venue: Venue
    environment: Environment
    credentials_ref: SecretRef | None
    created_at: datetime
    updated_at: datetime
    base_url: str | None = None

    FIELDS = ("connection_id", "venue", "environment", "base_url", "credentials_ref", "created_at", "updated_at")

    def __post_init__(self) -> None:
        check_id(self.connection_id, "connection_id")
        venue = _enum(Venue, self.venue, "venue")
        environment = _enum(Environment, self.environment, "environment")
        object.__setattr__(self, "venue", venue)
        object.__setattr__(self, "environment", environment)
        if environment not in VENUE_ENVIRONMENTS[venue]:
            allowed = sorted(e.value for e in VENUE_ENVIRONMENTS[venue])
            raise InvalidInput("environment", f"the {venue.value} venue offers {allowed}, not {environment.value!r}")
        if self.base_url is not None:
            problem = base_url_problem(self.base_url, environment)
            if problem is not None:
                raise InvalidInput("base_url", problem)
        if CREDENTIAL_FIELDS[venue]:
            if self.credentials_ref is None:
                raise InvalidInput("credentials_ref", f"required for the {venue.value} venue")
            object.__setattr__(self, "credentials_ref", SecretRef.parse(self.credentials_ref, "credentials_ref"))
        elif self.credentials_ref is not None:
            raise InvalidInput("credentials_ref", f"the {venue.value} venue takes no credentials")
        object.__setattr__(self, "created_at", _timestamp(self.created_at, "created_at"))
        object.__setattr__(self, "updated_at", _timestamp(self.updated_at, "updated_at"))
        _check_times(self.created_at, self.updated_at)

    @property
    def credential_fields(self) -> tuple[str, ...]:
        return CREDENTIAL_FIELDS[self.venue]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BrokerConnection":
        data = _refuse_unknown(data, cls.FIELDS, "connection")
        ref = data.get("credentials_ref")
        return cls(
            connection_id=_required(data, "connection_id", ""),
            venue=_required(data, "venue", ""),
            environment=_required(data, "environment", ""),
            base_url=data.get("base_url"),
            credentials_ref=None if ref is None else SecretRef.parse(ref, "credentials_ref"),
            created_at=_required(data, "created_at", ""),
            updated_at=_required(data, "updated_at", ""),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "connection_id": self.connection_id,
            "venue": self.venue.value,
            "environment": self.environment.value,
            "base_url": self.base_url,
            "credentials_ref": None if self.credentials_ref is None else self.credentials_ref.text,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    def storable(self, tenant_id: str) -> int:
        """``check_storable`` of the document at its path; ``InvalidInput`` if Firestore would refuse it."""
        return check_storable(self.to_dict(), connection_path(tenant_id, self.connection_id))


def connection_path(tenant_id: str, connection_id: str) -> str:
    return f"tenants/{check_id(tenant_id, 'tenant_id')}/broker_connections/{check_id(connection_id, 'connection_id')}"


# ------------------------------------------------------------------------------------------------
# accounts
# ------------------------------------------------------------------------------------------------

class AccountStatus(str, Enum):
    ACTIVE = "active"
    REDUCE_ONLY = "reduce_only"
    HALTED = "halted"
    CLOSED = "closed"


STATUS_TRANSITIONS: Mapping[AccountStatus, frozenset[AccountStatus]] = {
    AccountStatus.ACTIVE: frozenset({AccountStatus.REDUCE_ONLY, AccountStatus.HALTED, AccountStatus.CLOSED}),
    AccountStatus.REDUCE_ONLY: frozenset({AccountStatus.ACTIVE, AccountStatus.HALTED, AccountStatus.CLOSED}),
    AccountStatus.HALTED: frozenset({AccountStatus.ACTIVE, AccountStatus.REDUCE_ONLY, AccountStatus.CLOSED}),
    AccountStatus.CLOSED: frozenset(),  # final: a closed account's id is never reopened or reused
}


def can_transition(current: AccountStatus, target: AccountStatus) -> bool:
    return target in STATUS_TRANSITIONS[current]


@dataclass(frozen=True)
class AccountLimits:
    """Optional per-account limits, applied in addition to the tenant's (the stricter wins)."""

    max_position_qty: Decimal | None = None
    max_order_notional: Decimal | None = None
    max_daily_trades: int | None = None
    max_position_by_class: Mapping[AssetClass, Decimal] = field(default_factory=dict)

    FIELDS = ("max_position_qty", "max_order_notional", "max_daily_trades", "max_position_by_class")

    def __post_init__(self) -> None:
        for name in ("max_position_qty", "max_order_notional"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _positive_decimal(value, f"limits.{name}"))
        trades = self.max_daily_trades
        if trades is not None and (isinstance(trades, bool) or not isinstance(trades, int)
                                   or not 0 <= trades <= 1_000_000):
            raise InvalidInput("limits.max_daily_trades", "must be an integer 0..1000000")
        by_class = _refuse_unknown(self.max_position_by_class, [c.value for c in AssetClass] + list(AssetClass),
                                   "limits.max_position_by_class")
        object.__setattr__(self, "max_position_by_class", {
            AssetClass(k): _positive_decimal(v, f"limits.max_position_by_class.{AssetClass(k).value}")
            for k, v in by_class.items()})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AccountLimits":
        data = _refuse_unknown(data, cls.FIELDS, "limits")
        return cls(max_position_qty=data.get("max_position_qty"),
                   max_order_notional=data.get("max_order_notional"),
                   max_daily_trades=data.get("max_daily_trades"),
                   max_position_by_class={} if data.get("max_position_by_class") is None
                   else data["max_position_by_class"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_position_qty": dec_str(self.max_position_qty),
            "max_order_notional": dec_str(self.max_order_notional),
            "max_daily_trades": self.max_daily_trades,
            "max_position_by_class": {k.value: dec_str(v) for k, v in sorted(
                self.max_position_by_class.items(), key=lambda kv: kv[0].value)},
        }


def venue_account_id_problem(venue: Venue, value: Any) -> str | None:
    """Why ``value`` is not an account id of ``venue``; None when it is."""
    pattern, description = VENUE_ACCOUNT_ID_RULES[_enum(Venue, venue, "venue")]
    if not ID.is_valid(value) or (pattern is not None and not pattern.fullmatch(value)):
        return f"must be {description}"
    return None


@dataclass(frozen=True)
class Account:
    """``tenants/{t}/accounts/{account_id}``. Written by the server (tenant admins through the API);
    read by its owners and by ``firestore.rules`` (``get()`` for app-written intents)."""

    account_id: str
    connection_id: str
    venue_account_id: str
    owner_uids: tuple[str, ...]
    status: AccountStatus
    asset_classes: frozenset[AssetClass]
    created_at: datetime
    updated_at: datetime
    limits: AccountLimits | None = None

    FIELDS = ("account_id", "connection_id", "venue_account_id", "owner_uids", "status", "asset_classes",
              "limits", "created_at", "updated_at")

    def __post_init__(self) -> None:
        check_id(self.account_id, "account_id")
        check_id(self.connection_id, "connection_id")
        check_id(self.venue_account_id, "venue_account_id")
        owners = self.owner_uids
        if isinstance(owners, (str, bytes)) or not isinstance(owners, (list, tuple)):
            raise InvalidInput("owner_uids", "must be a list of uids")
        if not 1 <= len(owners) <= MAX_OWNERS:
            raise InvalidInput("owner_uids", f"must list 1-{MAX_OWNERS} uids")
        for i, uid in enumerate(owners):
            check_id(uid, f"owner_uids[{i}]")
        if len(set(owners)) != len(owners):
            raise InvalidInput("owner_uids", "must not repeat a uid")
        object.__setattr__(self, "owner_uids", tuple(owners))
        object.__setattr__(self, "status", _enum(AccountStatus, self.status, "status"))
        classes = self.asset_classes
        if isinstance(classes, (str, bytes)) or not isinstance(classes, (list, tuple, set, frozenset)):
            raise InvalidInput("asset_classes", "must be a list of asset classes")
        parsed = [_enum(AssetClass, c, f"asset_classes[{i}]") for i, c in enumerate(classes)]
        if not parsed:
            raise InvalidInput("asset_classes", "must enable at least one asset class")
        if len(set(parsed)) != len(parsed):
            raise InvalidInput("asset_classes", "must not repeat an asset class")
        object.__setattr__(self, "asset_classes", frozenset(parsed))
        if self.limits is not None and not isinstance(self.limits, AccountLimits):
            raise InvalidInput("limits", "must be an AccountLimits")
        object.__setattr__(self, "created_at", _timestamp(self.created_at, "created_at"))
        object.__setattr__(self, "updated_at", _timestamp(self.updated_at, "updated_at"))
        _check_times(self.created_at, self.updated_at)

    def is_owned_by(self, uid: str) -> bool:
        return uid in self.owner_uids

    def with_status(self, target: AccountStatus | str, at: datetime) -> "Account":
        """This account in ``target`` status (``InvalidInput`` for a transition the table refuses);
        the same account when ``target`` is the current status (a retried admin request)."""
        target = _enum(AccountStatus, target, "status")
        if target is self.status:
            return self
        if not can_transition(self.status, target):
            raise InvalidInput("status", f"an account cannot go from {self.status.value} to {target.value}")
        return replace(self, status=target, updated_at=at)

    def check_connection(self, connection: BrokerConnection) -> None:
        """The cross-document rules: the same connection, an account id of that venue's shape, only
        asset classes that venue trades. ``InvalidInput`` naming the field otherwise."""
        if connection.connection_id != self.connection_id:
            raise InvalidInput("connection_id", f"is {self.connection_id!r}, the connection is "
                                                f"{connection.connection_id!r}")
        problem = venue_account_id_problem(connection.venue, self.venue_account_id)
        if problem is not None:
            raise InvalidInput("venue_account_id", problem)
        unsupported = sorted(c.value for c in self.asset_classes - VENUE_ASSET_CLASSES[connection.venue])
        if unsupported:
            raise InvalidInput("asset_classes", f"the {connection.venue.value} venue does not trade {unsupported}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], connection: BrokerConnection | None = None) -> "Account":
        """Strict: unknown keys refused. With ``connection``, ``check_connection`` runs too."""
        data = _refuse_unknown(data, cls.FIELDS, "account")
        limits = data.get("limits")
        account = cls(
            account_id=_required(data, "account_id", ""),
            connection_id=_required(data, "connection_id", ""),
            venue_account_id=_required(data, "venue_account_id", ""),
            owner_uids=_required(data, "owner_uids", ""),
            status=_required(data, "status", ""),
            asset_classes=_required(data, "asset_classes", ""),
            limits=None if limits is None else AccountLimits.from_dict(limits),
            created_at=_required(data, "created_at", ""),
            updated_at=_required(data, "updated_at", ""),
        )
        if connection is not None:
            account.check_connection(connection)
        return account

    def to_dict(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "connection_id": self.connection_id,
            "venue_account_id": self.venue_account_id,
            "owner_uids": list(self.owner_uids),
            "status": self.status.value,
            "asset_classes": sorted(c.value for c in self.asset_classes),
            "limits": None if self.limits is None else self.limits.to_dict(),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    def storable(self, tenant_id: str) -> int:
        """``check_storable`` of the document at its path; ``InvalidInput`` if Firestore would refuse it."""
        return check_storable(self.to_dict(), account_path(tenant_id, self.account_id))


def account_path(tenant_id: str, account_id: str) -> str:
    return f"tenants/{check_id(tenant_id, 'tenant_id')}/accounts/{check_id(account_id, 'account_id')}"


# ------------------------------------------------------------------------------------------------
# binding: which account a request trades
# ------------------------------------------------------------------------------------------------

def resolve_account(requested_id: str | None, uid: str, accounts_of_user: Iterable[Account],
                    default_account_id: str | None, *, asset_class: AssetClass | str | None = None,
                    reveal_not_owned: bool = False) -> Account | Rejection:
    """The account a new intent, group or signal of ``uid`` trades, or a coded ``Rejection``.

    ``accounts_of_user``: the accounts the caller's store read found — the user's own (a query on
    ``owner_uids``) and, when an id was named, that document if it exists (whoever owns it).
    ``requested_id`` None means "my default" (``default_account_id``; there is no implicit default).

    Order of checks, so nothing about another user's account leaks: exists → owned → closed →
    halted → asset class enabled. ``reduce_only`` accounts are returned (the risk layer lets only
    position-shrinking orders through).

    Not found vs. not owned: with ``reveal_not_owned=False`` (what the HTTP API and the trigger use)
    a named account that does not exist is answered exactly like one owned by someone else —
    ``ACCOUNT_NOT_OWNED`` with the same detail — so a user cannot probe which account ids exist in
    the tenant, and the answer agrees with ``firestore.rules``, where a ``get()`` of a missing and of
    a foreign account both end in PERMISSION_DENIED. ``ACCOUNT_NOT_FOUND`` is kept for the caller's
    own data: no account named and no default set, or a default that no longer exists. Admin and
    diagnostic callers pass ``reveal_not_owned=True`` to tell the two apart.

    Rollbacks, the sweeper and reconciliation do not call this: work already bound to an account
    keeps its stored binding whatever the account's status (a halted account's rollback still runs).
    """
    check_id(uid, "uid")
    if requested_id is not None:
        check_id(requested_id, "account_id")
    if default_account_id is not None:
        check_id(default_account_id, "default_account_id")
    by_id: dict[str, Account] = {}
    for account in accounts_of_user:
        by_id.setdefault(account.account_id, account)

    if requested_id is None:
        if default_account_id is None:
            return Rejection(RejectCode.ACCOUNT_NOT_FOUND, "no account_id given and the user has no default account")
        target = default_account_id
    else:
        target = requested_id
    not_owned = Rejection(RejectCode.ACCOUNT_NOT_OWNED, f"account {target} is not an account of this user")

    account = by_id.get(target)
    if account is None:
        if requested_id is None:
            return Rejection(RejectCode.ACCOUNT_NOT_FOUND, f"the default account {target} does not exist")
        if reveal_not_owned:
            return Rejection(RejectCode.ACCOUNT_NOT_FOUND, f"account {target} does not exist")
        return not_owned
    if not account.is_owned_by(uid):
        return not_owned
    if account.status is AccountStatus.CLOSED:
        return Rejection(RejectCode.ACCOUNT_CLOSED, f"account {target} is closed")
    if account.status is AccountStatus.HALTED:
        return Rejection(RejectCode.ACCOUNT_HALTED, f"account {target} is halted")
    if asset_class is not None:
        klass = AssetClass.parse(asset_class)
        if klass not in account.asset_classes:
            enabled = sorted(c.value for c in account.asset_classes)
            return Rejection(RejectCode.ASSET_CLASS_NOT_ENABLED,
                             f"{klass.value} is not enabled on account {target} (enabled: {enabled})")
    return account
