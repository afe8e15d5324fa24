"""Read model: the caller's portfolio history, newest first, one page at a time.

Rows live at ``users/<uid>/portfolio/history/trades/<id>`` (written by the engine's ``finish``).
Order: ``created_at`` (ISO-8601 UTC, sortable as text) descending, then the document id
descending. The cursor is the last row's (created_at, id), base64url JSON: it only seeks inside
the caller's own collection, so it needs no signature, but it is parsed strictly (400 on junk).

A user's rows are theirs wherever they were recorded (a user who moved tenants keeps the older
rows: they need them for taxes). Every row is labelled with the ``tenant_id`` and the
``broker_account_id`` it was recorded in (``default`` when the row names none), and a page can be
limited to one tenant and/or one account (equality filters; Firestore serves them with the
composite indexes in firestore.indexes.json). A row that carries no ``broker_account_id`` is shown
as ``default`` but matches no account filter (a missing field matches no Firestore equality
filter, and the in-memory store is a faithful fake of that). The query itself lives in the store
adapters (``history_page`` of the read model, ``backend.ports.store.ReadModel``).
"""
from __future__ import annotations

import base64
import binascii
import json
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


def _page(rows: Sequence[tuple[str, Mapping[str, Any]]], limit: int) -> Page:
    """rows: (doc_id, doc) newest first, at most limit + 1 of them."""
    more = len(rows) > limit
    rows = list(rows[:limit])
    items = [labelled(doc_id, doc) for doc_id, doc in rows]
    nxt = Cursor(str(rows[-1][1].get("created_at") or ""), rows[-1][0]).encode() if (more and rows) else None
    return Page(items, nxt)


class StoreHistoryReader:
    """Pages of the store's read model (``backend.ports.store.ReadModel.history_page``): one
    ordered, bounded query per page on Firestore, the same order and pages on the in-memory store."""

    def __init__(self, store: Any):
        self.store = store

    def page(self, uid: str, *, limit: int, after: Cursor | None, tenant_id: str | None = None,
             broker_account_id: str | None = None) -> Page:
        equals = {name: value for name, value in (("tenant_id", tenant_id), ("broker_account_id", broker_account_id))
                  if value is not None}
        rows = self.store.history_page(uid, equals=equals, limit=limit + 1,
                                       after=None if after is None else (after.created_at, after.doc_id))
        return _page(rows, limit)


class MemoryHistoryReader(StoreHistoryReader):
    """Old name: the reader over an ``InMemoryStore``."""


class FirestoreHistoryReader(StoreHistoryReader):
    """Old name and constructor: the reader over a ``FirestoreStore`` (or its Firestore client)."""

    def __init__(self, store_or_client: Any):
        if not hasattr(store_or_client, "history_page"):
            from backend.adapters.firestore_store import FirestoreStore  # lazily: the API imports no SDK

            store_or_client = FirestoreStore(store_or_client)
        super().__init__(store_or_client)
