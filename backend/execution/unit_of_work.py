"""The write side as a unit of work: the core reads what a plan needs (``get_all``), computes every
write with its precondition (a ``Commit``), and a store adapter only commits it atomically.

Operations (applied all-or-nothing; a failed precondition writes nothing):

- ``Create(path, doc)``: the document must not exist.
- ``Update(path, fields, precondition)``: merges top-level fields into an existing document; with a
  token (from ``get_all``) only if the document is unchanged since it was read.
- ``Set(path, doc, merge)``: blind write; ``merge`` deep-merges maps (``Inc``/``ArrayUnion`` inside).
- ``Increment(path, {field: int})``: blind, merged integer increments (missing fields count from 0).
- ``Delete(path, precondition)``: blind, or only if unchanged since the token was read.

Field values may be sentinels: ``SERVER_TIME`` (the commit time; the in-memory store leaves such
fields out), ``Inc(n)`` and ``ArrayUnion(values)`` (transforms, inside ``Set(merge=True)``).

``Conflict`` means a precondition failed (exists already / changed / missing): the caller decides —
retry, DUPLICATE, ``LeaseLost``. ``StoreContention`` (the port's) means contention retries ran out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Union


class Conflict(Exception):
    """A precondition of a commit failed; nothing was written. ``kind``: ``EXISTS`` (a create found
    the document), ``CHANGED`` (a token no longer matches) or ``MISSING`` (an update found none)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


EXISTS_ALREADY, CHANGED, MISSING = "exists", "changed", "missing"  # Conflict kinds


class _ServerTime:
    _instance: "_ServerTime | None" = None

    def __new__(cls) -> "_ServerTime":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "SERVER_TIME"


SERVER_TIME = _ServerTime()


@dataclass(frozen=True)
class Inc:
    """An integer increment transform (a field value inside ``Set(merge=True)``)."""

    value: int


@dataclass(frozen=True)
class ArrayUnion:
    """Append the values not already in the array field (a field value inside ``Set(merge=True)``)."""

    values: tuple[Any, ...]


EXISTS = "exists"  # a precondition: the document must exist (any version)


@dataclass
class SideWrites:
    """Writes that ride the first commit of one request's execution instead of a commit of their own
    (issue 17: the rate limiter's shared counters on ``POST /execute``). Blind writes only (no
    precondition: they can never make the commit they ride fail). ``taken`` turns true once a
    commit that carried them succeeded; a request whose execution committed nothing (a replay, an
    error) leaves them to their own writer."""

    ops: tuple[Any, ...] = ()
    taken: bool = False
    tag: Any = None  # the writer's own note (the rate limiter: the counters' window)

    def pending(self) -> tuple[Any, ...]:
        return () if self.taken else self.ops


@dataclass(frozen=True)
class Create:
    path: str
    doc: Mapping[str, Any]


@dataclass(frozen=True)
class Update:
    path: str
    fields: Mapping[str, Any]
    precondition: Any = EXISTS  # EXISTS or a token from ``get_all``


@dataclass(frozen=True)
class Set:
    path: str
    doc: Mapping[str, Any]
    merge: bool = False


@dataclass(frozen=True)
class Increment:
    path: str
    fields: Mapping[str, int]


@dataclass(frozen=True)
class Delete:
    path: str
    precondition: Any = None  # None: blind; a token: only if unchanged since read


Op = Union[Create, Update, Set, Increment, Delete]


@dataclass
class Commit:
    ops: list[Op] = field(default_factory=list)

    def add(self, op: Op) -> "Commit":
        self.ops.append(op)
        return self


class CommitResult(list):
    """What an adapter's ``commit`` answers: the tokens (one per op, as before) and, issue 17, the
    values the ``Increment`` ops left (path -> {field: value after this commit}), exact and atomic
    with the commit (Firestore: the write results' transform results) — so a caller needs no read
    back of a document it just incremented. A plain list (no ``increments``) means "read it"."""

    def __init__(self, tokens: Any = (), increments: Mapping[str, Mapping[str, int]] | None = None):
        super().__init__(tokens)
        self.increments: dict[str, dict[str, int]] = {k: dict(v) for k, v in (increments or {}).items()}


# The protocol an adapter implements (``get_all``, ``list_ids``, ``commit``) is declared by the port:
# ``backend.ports.store.UnitOfWork``, part of ``Store``.

Backoff = Callable[[int], None]


def no_backoff(attempt: int) -> None:
    return None


def jitter_backoff(attempt: int) -> None:
    import random
    import time

    time.sleep(random.uniform(0.005, 0.03) * min(attempt, 6))
