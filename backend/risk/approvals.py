"""Risk approvals (``rpm_output``) issued by the backend, never by the trader they are for.

Choice (issue 10 item 3): *backend-issued approvals for a separate risk role*, not signed tokens.
A user whose verified token carries ``role: risk_manager`` calls ``POST /risk/approvals``; the backend
writes the server-only document ``tenants/{tenant}/rpm_approvals/{decision_id}`` (firestore.rules deny
every client read and write there). A group's ``rpm_output`` then only *references* a decision id:
the seed's shape is still accepted for parsing, but nothing in it is trusted. Before the first leg
and again before every submit, the group executor checks the stored approval it loaded by
``decision_id`` (:func:`check_stored_approval`): same tenant (the path), issued for the group's uid, not
issued by that uid, approved, not expired, and every leg approved (symbol, direction, units <= max).
It loads the document once per run (in the validation's batched read) and re-checks it, expiry against
the clock, before each submit: the document is server-only and create-only, so it cannot change while
a group runs (see ``GroupExecutor._rpm``).
No stored approval → ``RPM_NOT_AUTHORIZED``. An approval is required for every group (as before:
``check_rpm_authorization`` refused a group without rpm_output); single orders need none.

Library use (no HTTP): :func:`issue_approval` writes the same document through the store.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Mapping, Sequence

from backend.domain.errors import InvalidInput, RejectCode, Rejection
from backend.domain.group_rules import MAX_LEGS
from backend.domain.money import ZERO, dec_str, to_decimal

ROLE = "risk_manager"
_LEG_KEYS = {"leg_id", "symbol", "direction", "max_units"}


def decision_id_of(rpm_output: Any) -> str | None:
    """The decision id a group's ``rpm_output`` references (the only field that is read)."""
    if isinstance(rpm_output, Mapping) and isinstance(rpm_output.get("decision_id"), str):
        value = rpm_output["decision_id"].strip()
        return value or None
    return None


def build_approval(*, decision_id: str, for_uid: str, issuer_uid: str, legs: Sequence[Mapping[str, Any]],
                   expires_at: datetime, now: datetime) -> dict[str, Any]:
    """The stored approval document; ``InvalidInput`` (HTTP 400) when malformed."""
    from backend.domain.assets import normalize_symbol
    from backend.domain.ids import GROUP_PART_ID, check_id

    check_id(decision_id, "decision_id")
    check_id(for_uid, "for_uid")
    if for_uid == issuer_uid:
        raise InvalidInput("for_uid", "a risk manager cannot approve their own trades")
    if expires_at.tzinfo is None:
        raise InvalidInput("expires_at", "must carry a UTC offset")
    if expires_at <= now:
        raise InvalidInput("expires_at", "must be in the future")
    if isinstance(legs, (str, bytes, Mapping)) or not isinstance(legs, Sequence) or not 1 <= len(legs) <= MAX_LEGS:
        raise InvalidInput("legs", f"expected a list of 1..{MAX_LEGS} approved legs")
    out, seen = [], set()
    for i, leg in enumerate(legs):
        where = f"legs[{i}]"
        if not isinstance(leg, Mapping) or set(leg) != _LEG_KEYS:
            raise InvalidInput(where, f"expected exactly {sorted(_LEG_KEYS)}")
        leg_id = GROUP_PART_ID.check(leg["leg_id"], f"{where}.leg_id")
        if leg_id in seen:
            raise InvalidInput(f"{where}.leg_id", "duplicate")
        seen.add(leg_id)
        direction = leg["direction"]
        if isinstance(direction, bool) or direction not in (1, -1):
            raise InvalidInput(f"{where}.direction", "must be 1 or -1")
        units = to_decimal(leg["max_units"], f"{where}.max_units")
        if units <= ZERO:
            raise InvalidInput(f"{where}.max_units", "must be positive")
        out.append({"leg_id": leg_id, "symbol": normalize_symbol(leg["symbol"], f"{where}.symbol"),
                    "direction": direction, "max_units": dec_str(units)})
    return {"decision_id": decision_id, "for_uid": for_uid, "issuer_uid": issuer_uid, "approved": True,
            "approved_legs": out, "expires_at": expires_at.isoformat(), "issued_at": now.isoformat()}


def issue_approval(store: Any, tenant_id: str, **fields: Any) -> dict[str, Any]:
    """Write an approval through the store (create-only). The library's equivalent of
    ``POST /risk/approvals``: ``issue_approval(store, "acme", decision_id=..., for_uid=..., issuer_uid=...,
    legs=[{leg_id, symbol, direction, max_units}], expires_at=..., now=...)``."""
    doc = build_approval(**fields)
    if not store.put_rpm_approval(tenant_id, doc["decision_id"], doc):
        raise InvalidInput("decision_id", "already issued")
    return doc


def as_rpm_output(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A stored approval in the seed's ``rpm_output`` shape, for ``groups.check_rpm_authorization``."""
    return {"decision_id": doc["decision_id"], "approved": bool(doc.get("approved")), "expires_at": doc["expires_at"],
            "approved_legs": [{k: leg[k] for k in ("leg_id", "max_units", "symbol", "direction")}
                              for leg in doc.get("approved_legs") or ()]}


def check_stored_approval(group: Any, stored: Mapping[str, Any] | None, now: datetime) -> Rejection | None:
    """RPM_NOT_AUTHORIZED unless the stored approval the group references is for this group's user,
    was not issued by them, and approves every leg now (see ``groups.check_rpm_authorization``)."""
    from backend.execution.groups import check_rpm_authorization

    decision_id = decision_id_of(group.rpm_output)
    if decision_id is None:
        return Rejection(RejectCode.RPM_NOT_AUTHORIZED, "rpm_output names no decision_id")
    if stored is None:
        return Rejection(RejectCode.RPM_NOT_AUTHORIZED, f"decision={decision_id} was not issued by a risk manager")
    if stored.get("decision_id") != decision_id or stored.get("for_uid") != group.uid:
        return Rejection(RejectCode.RPM_NOT_AUTHORIZED, f"decision={decision_id} is not for this user")
    if stored.get("issuer_uid") == group.uid:
        return Rejection(RejectCode.RPM_NOT_AUTHORIZED, f"decision={decision_id} was issued by the trader")
    try:
        rpm = as_rpm_output(stored)
    except (KeyError, TypeError):
        return Rejection(RejectCode.RPM_NOT_AUTHORIZED, f"decision={decision_id} is malformed")
    return check_rpm_authorization(group, rpm, now)


def approval_for_legs(decision_id: str, legs: Sequence[Mapping[str, Any]],
                      units: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Approved legs for exactly the request's legs (``units`` overrides max_units per leg id)."""
    return [{"leg_id": leg["leg_id"], "symbol": leg["symbol"], "direction": leg["direction"],
             "max_units": str(Decimal(str((units or {}).get(leg["leg_id"], leg["units"]))))} for leg in legs]
