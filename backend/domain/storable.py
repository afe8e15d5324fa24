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

from datetime import date, datetime
from typing import Any, Mapping

from backend.domain.errors import InvalidInput
from backend.domain.ids import firestore_name_problem

FIRESTORE_MAX_DOC_BYTES = 1_048_576
MAX_RECORD_BYTES = FIRESTORE_MAX_DOC_BYTES // 2
MAX_DEPTH = 20
_INT64 = (-(2 ** 63), 2 ** 63 - 1)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _size(value: Any, path: str, depth: int) -> int:
    if depth > MAX_DEPTH:
        raise InvalidInput(path or "document", f"nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise InvalidInput(path, "integer out of the 64-bit range")
        return 8
    if isinstance(value, float):
        return 8
    if isinstance(value, str):
        try:
            return len(value.encode("utf-8")) + 1
        except UnicodeEncodeError:
            raise InvalidInput(path, "text is not valid UTF-8") from None
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, (datetime, date)):
        return 8
    if isinstance(value, Mapping):
        total = 0
        for key, item in value.items():
            problem = firestore_name_problem(key)
            shown = _join(path, str(key)[:80])
            if problem is not None:
                raise InvalidInput(shown, f"not a storable field name: {problem}")
            total += len(key.encode("utf-8")) + 1 + _size(item, shown, depth + 1)
        return total
    if isinstance(value, (list, tuple)):
        return sum(_size(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))
    raise InvalidInput(path or "document", f"a {type(value).__name__} cannot be stored (use an exact string)")


def record_size(doc: Mapping[str, Any], doc_path: str = "") -> int:
    """Firestore's storage-size estimate of ``doc`` at ``doc_path``; ``InvalidInput`` when it cannot
    be stored at all (a reserved name, an unsupported type, too deep)."""
    name = sum(len(part.encode("utf-8")) + 1 for part in doc_path.split("/") if part) + 16
    return name + 32 + _size(doc, "", 0)


def check_storable(doc: Mapping[str, Any], doc_path: str = "", *, limit: int = MAX_RECORD_BYTES) -> int:
    """Raise ``InvalidInput`` unless ``doc`` can be written at ``doc_path`` with room to spare.
    Every document id along ``doc_path`` must be a storable name too. Returns the estimated size."""
    parts = [p for p in doc_path.split("/")]
    if doc_path:
        for part in parts:
            problem = firestore_name_problem(part)
            if problem is not None:
                raise InvalidInput("document id", f"{part[:80]!r} {problem}")
    size = record_size(doc, doc_path)
    if size > limit:
        raise InvalidInput("document", f"about {size} bytes; at most {limit} (Firestore's limit is "
                                       f"{FIRESTORE_MAX_DOC_BYTES})")
    return size
