"""Read model: the caller's portfolio history, newest first, one page at a time.

Rows live at ``users/<uid>/portfolio/history/trades/<id>`` (written by the engine's ``finish``).
Order: ``created_at`` (ISO-8601 UTC, sortable as text) descending, then the document id
descending. The cursor is the last row's (created_at, id), base64url JSON: it only seeks inside
the caller's own collection, so it needs no signature, but it is parsed strictly (400 on junk).

A user's rows are theirs wherever they were recorded (a user who moved tenants keeps the older
rows: they need them for taxes). Every row is labelled with the ``tenant_id`` and the
``broker_account_id`` it was recorded in (``default`` when the row names none), and a page can be
limited to one tenant and/or one account (equality filters; Firestore serves them with the
composite indexes in firestore.indexes.json). Rows that carry no ``broker_account_id`` (group fills
until groups record their account) match ``broker_account_id=default`` only in the in-memory
reader; on Firestore a missing field matches no equality filter.
"""
from __future__ import annotations

import base64
import binascii
import json
import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

from backend.api.http import bad_request
from backend.domain.ids import firestore_name_problem


@dataclass(frozen=True)
class Cursor:
    created_at: str
    doc_id: str

    def encode(self) -> str:
        raw = json.dumps({"c": self.created_at, "i": self.doc_id}, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> "Cursor":
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            data = json.loads(raw)
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise bad_request("cursor", "not a cursor returned by this endpoint") from None
        if (not isinstance(data, dict) or set(data) != {"c", "i"} or not isinstance(data["c"], str)
                or len(data["c"]) > 64 or not data["c"].isascii()  # a timestamp; no lone surrogates
                or not isinstance(data["i"], str) or not data["i"] or len(data["i"]) > 200
                or firestore_name_problem(data["i"]) is not None):  # "/", "..", "__x__": no Firestore 500
            raise bad_request("cursor", "not a cursor returned by this endpoint")
        return cls(data["c"], data["i"])


@dataclass(frozen=True)
class Page:
    items: Sequence[Mapping[str, Any]]
    next_cursor: str | None


DEFAULT_ACCOUNT = "default"


class HistoryReader(Protocol):
    def page(self, uid: str, *, limit: int, after: Cursor | None, tenant_id: str | None = None,
             broker_account_id: str | None = None) -> Page: ...


def labelled(doc_id: str, doc: Mapping[str, Any]) -> dict[str, Any]:
    """A row as the API shows it: with its id, tenant and account labels."""
    return {"history_id": doc_id, **doc, "tenant_id": doc.get("tenant_id"),
            "broker_account_id": doc.get("broker_account_id") or DEFAULT_ACCOUNT}


def _matches(doc: Mapping[str, Any], tenant_id: str | None, account: str | None) -> bool:
    return ((tenant_id is None or doc.get("tenant_id") == tenant_id)
            and (account is None or (doc.get("broker_account_id") or DEFAULT_ACCOUNT) == account))


def _page(rows: list[tuple[str, str, Mapping[str, Any]]], limit: int) -> Page:
    """rows: (created_at, doc_id, doc) sorted newest first, at most limit + 1 of them."""
    more = len(rows) > limit
    rows = rows[:limit]
    items = [labelled(doc_id, doc) for _, doc_id, doc in rows]
    nxt = Cursor(rows[-1][0], rows[-1][1]).encode() if (more and rows) else None
    return Page(items, nxt)


class MemoryHistoryReader:
    """Over ``InMemoryStore`` documents (unit tests, library use)."""

    def __init__(self, store: Any):
        self.store = store

    def page(self, uid: str, *, limit: int, after: Cursor | None, tenant_id: str | None = None,
             broker_account_id: str | None = None) -> Page:
        docs = self.store.collection(f"users/{uid}/portfolio/history/trades")
        rows = sorted(((str(d.get("created_at") or ""), path.rsplit("/", 1)[1], d) for path, d in docs.items()
                       if _matches(d, tenant_id, broker_account_id)),
                      key=lambda r: (r[0], r[1]), reverse=True)
        if after is not None:
            rows = [r for r in rows if (r[0], r[1]) < (after.created_at, after.doc_id)]
        return _page(rows[: limit + 1], limit)


class FirestoreHistoryReader:
    """One ordered query per page (created_at desc, __name__ desc) with ``start_after``."""

    def __init__(self, client: Any):
        self.db = client

    def page(self, uid: str, *, limit: int, after: Cursor | None, tenant_id: str | None = None,
             broker_account_id: str | None = None) -> Page:
        # Plain strings for the direction and the document-id path keep this module free of SDK
        # imports (the client object is passed in): "DESCENDING" is Query.DESCENDING, "__name__"
        # is FieldPath.document_id().
        col = (self.db.collection("users").document(uid).collection("portfolio").document("history")
               .collection("trades"))
        query = col
        for name, value in (("tenant_id", tenant_id), ("broker_account_id", broker_account_id)):
            if value is not None:
                # the positional form (no FieldFilter import, see above); the SDK only warns about style
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    query = query.where(name, "==", value)
        query = query.order_by("created_at", direction="DESCENDING").order_by("__name__", direction="DESCENDING")
        if after is not None:
            query = query.start_after({"created_at": after.created_at, "__name__": col.document(after.doc_id)})
        snaps = list(query.limit(limit + 1).stream())
        rows = [(str((s.to_dict() or {}).get("created_at") or ""), s.id, s.to_dict() or {}) for s in snaps]
        return _page(rows, limit)
