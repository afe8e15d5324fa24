"""One rule per kind of identifier, and the names Firestore refuses.

Every identifier a client chooses ends up as a Firestore document id (``order_intents/<id>``,
``execution_groups/<id>``, ``legs/<leg_id>``), a map key (``by_strategy.<strategy_id>`` of the
metrics shards, metadata keys) or a part of one (``exposure/<account>__<symbol>``). Firestore
refuses some names outright — ``.`` and ``..``, anything containing ``/``, anything matching
``__.*__``, more than 1,500 bytes — and a refusal discovered by the write that records a fill comes
after the order reached the venue. So every kind of id is checked here, once, at the edge (pydantic
models call ``check``) and again in the domain constructors (library callers and intent documents).

Kinds:

=================  =====================================  =============================================
``ID``             ``[A-Za-z0-9_-]{1,100}``                tenant, uid, strategy, broker account, intent,
                                                           group and Idempotency-Key values
``GROUP_PART_ID``  ``[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}``   ids inside a group (leg ids; group ids stored
                                                           by the group domain)
``METADATA_KEY``   ``[A-Za-z0-9_.-]{1,64}``                keys of an intent's ``metadata``
``LOT_ID``         ``[A-Za-z0-9_.:-]{1,300}``              keys of ``metadata.lot_ids`` (lot ids are trade
                                                           ids, ``<group>--<leg>``, ``…-W1``)
=================  =====================================  =============================================

Each refuses every name ``firestore_name_problem`` refuses (``__rt__``, ``.``, ``..``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from backend.domain.errors import InvalidInput

RESERVED_NAME = re.compile(r"__.*__", re.DOTALL)
MAX_NAME_BYTES = 1500


def firestore_name_problem(name: Any) -> str | None:
    """Why ``name`` cannot be a Firestore document id or field name; None when it can."""
    if not isinstance(name, str):
        return f"must be a string, got {type(name).__name__}"
    if not name:
        return "must not be empty"
    if name in (".", ".."):
        return f"{name!r} is reserved by Firestore"
    if "/" in name:
        return "must not contain '/'"
    if RESERVED_NAME.fullmatch(name):
        return "names of the form __…__ are reserved by Firestore"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "must be valid UTF-8"
    if size > MAX_NAME_BYTES:
        return f"at most {MAX_NAME_BYTES} bytes"
    return None


@dataclass(frozen=True)
class IdKind:
    """A charset/length rule (``pattern``, a fullmatch) plus Firestore's reserved names."""

    pattern: str
    description: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regex", re.compile(self.pattern))

    @property
    def json_pattern(self) -> str:
        return f"^{self.pattern}$"

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, str) or not self._regex.fullmatch(value):  # type: ignore[attr-defined]
            return f"must be {self.description}"
        reserved = firestore_name_problem(value)
        return None if reserved is None else f"{reserved} (must be {self.description})"

    def is_valid(self, value: Any) -> bool:
        return self.problem(value) is None

    def check(self, value: Any, field: str) -> str:
        """``value`` when it is a valid id of this kind, else ``InvalidInput`` naming ``field``."""
        problem = self.problem(value)
        if problem is not None:
            raise InvalidInput(field, problem)
        return value


ID = IdKind(r"[A-Za-z0-9_-]{1,100}", "1-100 characters of A-Z a-z 0-9 _ -, not of the form __…__")
GROUP_PART_ID = IdKind(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}",
                       "1-128 characters [A-Za-z0-9_.:-] starting with a letter or digit")
METADATA_KEY = IdKind(r"[A-Za-z0-9_.-]{1,64}", "1-64 characters of A-Z a-z 0-9 _ . -, not '.', '..' or __…__")
LOT_ID = IdKind(r"[A-Za-z0-9_.:\-]{1,300}", "a lot id: 1-300 characters [A-Za-z0-9_.:-]")


def check_id(value: Any, field: str) -> str:
    """The ``ID`` rule (tenant, uid, strategy, account, intent, group, idempotency key)."""
    return ID.check(value, field)


def pydantic_check(kind: IdKind):
    """An ``AfterValidator`` body: the same rule as the domain, raising ``ValueError`` for pydantic."""

    def check(value: str) -> str:
        problem = kind.problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    return check
