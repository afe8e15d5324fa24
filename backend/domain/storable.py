"""Can this record be stored? A pure check, run before an order is sent.

Firestore refuses a write whose field names are reserved (``__.*__``, see ``backend.domain.ids``),
whose values are of a type it cannot hold (a ``Decimal``, a set), whose maps nest deeper than 20
levels, or whose document exceeds 1 MiB. Each of those is deterministic: if the record that
will record a fill would be refused, it must be refused before the order reaches the venue, not by
the write after it (a filled order with no ledger row, a reservation held forever).

``check_storable`` walks a record as the store will write it and raises ``InvalidInput`` naming
the first offending path. The size is Firestore's documented storage-size estimate (strings and
field names count their UTF-8 bytes + 1, numbers and timestamps 8, booleans and nulls 1, the
document name and 32 bytes of overhead), which must stay under ``MAX_RECORD_BYTES`` — half of the
1 MiB limit, so what the store adds later (server timestamps, fills, rollback orders) has room.
"""
from __future__ import annotations

from collections.abc import Mapping  # isinstance on typing.Mapping takes typing's slow path (issue 17)
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from backend.domain.errors import InvalidInput
from backend.domain.ids import firestore_name_problem

FIRESTORE_MAX_DOC_BYTES = 1_048_576
MAX_RECORD_BYTES = FIRESTORE_MAX_DOC_BYTES // 2
MAX_DEPTH = 20
_INT64 = (-(2 ** 63), 2 ** 63 - 1)


class _Unstorable(Exception):
    """Raised deep in the walk; each level adds its key on the way out, so the happy path builds no
    path strings at all (this check runs on every order)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
        self.parts: list[str] = []  # innermost first

    def field(self) -> str:
        out = ""
        for part in reversed(self.parts):
            out = out + part if part.startswith("[") else (f"{out}.{part}" if out else part)
        return out or "document"


@lru_cache(maxsize=4096)
def _key_problem(key: str) -> str | None:
    """Field names of records are mostly the same few hundred constants: decide each once."""
    return firestore_name_problem(key)


def _size(value: Any, depth: int) -> int:
    if depth > MAX_DEPTH:
        raise _Unstorable(f"nested deeper than {MAX_DEPTH} levels")
    kind = type(value)  # the plain types first, by identity (issue 17: this walk runs on every record)
    if kind is str:
        return _text_size(value)
    if kind is dict:
        return _map_size(value, depth)
    if kind is list:
        return _seq_size(value, depth)
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise _Unstorable("integer out of the 64-bit range")
        return 8
    if isinstance(value, float):
        return 8
    if isinstance(value, str):
        return _text_size(value)
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, (datetime, date)):
        return 8
    if isinstance(value, Mapping):
        return _map_size(value, depth)
    if isinstance(value, (list, tuple)):
        return _seq_size(value, depth)
    raise _Unstorable(f"a {type(value).__name__} cannot be stored (use an exact string)")


def _text_size(value: str) -> int:
    try:
        return len(value.encode("utf-8")) + 1
    except UnicodeEncodeError:
        raise _Unstorable("text is not valid UTF-8") from None


def _map_size(value: Mapping[Any, Any], depth: int) -> int:
    total = 0
    for key, item in value.items():
        problem = _key_problem(key) if isinstance(key, str) else firestore_name_problem(key)
        if problem is not None:
            bad = _Unstorable(f"not a storable field name: {problem}")
            bad.parts.append(str(key)[:80])
            raise bad
        try:
            total += len(key.encode("utf-8")) + 1 + _size(item, depth + 1)
        except _Unstorable as bad:
            bad.parts.append(key[:80])
            raise
    return total


def _seq_size(value: Any, depth: int) -> int:
    total = 0
    for i, item in enumerate(value):
        try:
            total += _size(item, depth + 1)
        except _Unstorable as bad:
            bad.parts.append(f"[{i}]")
            raise
    return total


def record_size(doc: Mapping[str, Any], doc_path: str = "") -> int:
    """Firestore's storage-size estimate of ``doc`` at ``doc_path``; ``InvalidInput`` when it cannot
    be stored at all (a reserved name, an unsupported type, too deep)."""
    name = sum(len(part.encode("utf-8")) + 1 for part in doc_path.split("/") if part) + 16
    try:
        return name + 32 + _size(doc, 0)
    except _Unstorable as bad:
        raise InvalidInput(bad.field(), bad.reason) from None


def check_storable(doc: Mapping[str, Any], doc_path: str = "", *, limit: int = MAX_RECORD_BYTES) -> int:
    """Raise ``InvalidInput`` unless ``doc`` can be written at ``doc_path`` with room to spare.
    Every document id along ``doc_path`` must be a storable name too. Returns the estimated size."""
    if doc_path:
        for part in doc_path.split("/"):
            problem = _key_problem(part)
            if problem is not None:
                raise InvalidInput("document id", f"{part[:80]!r} {problem}")
    size = record_size(doc, doc_path)
    if size > limit:
        raise InvalidInput("document", f"about {size} bytes; at most {limit} (Firestore's limit is "
                                       f"{FIRESTORE_MAX_DOC_BYTES})")
    return size
