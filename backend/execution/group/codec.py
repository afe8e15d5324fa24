"""One declarative codec for the group documents: a field is named once, on the dataclass.

Each stored field of :class:`ExecutionLeg`, :class:`RollbackOrder` and :class:`ExecutionGroup` is
declared with :func:`stored` and a :class:`Codec` that knows three things about its values:

* ``check``: the constructor's type rule (and normalisation, e.g. timestamps to UTC);
* ``dump``: the storage form (Decimals as exact strings, datetimes ISO-8601 UTC, enums by value);
* ``load``: the inverse, raising ``InvalidInput`` that names the field (``legs[0].units``).

:func:`encode`, :func:`decode` and :func:`check_fields` walk the dataclass fields, so the storage
layout, the strict key check and the constructor type checks all come from that one declaration.

Document rules (unchanged from the hand-written pairs this replaces):

* A field whose default is ``None`` is optional in a document (absent = None); every other field is
  required, unless it declares ``missing=`` (a legacy default: ``client_id_scheme`` absent = 1).
* Unknown keys raise; ``_``-prefixed keys belong to the storage adapter and are skipped where the
  caller allows them (the group document, not request bodies).
* Derived keys (``slippage_pips``, ``avg_slippage_pips``) are written for queries and ignored on
  load (:class:`Derived`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import MISSING, dataclass
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from enum import Enum
from typing import Any, Callable, Iterable, Mapping, Sequence

from backend.domain.assets import AssetClass, AssetSpec
from backend.domain.errors import InvalidInput, RejectCode, Rejection
from backend.domain.ids import GROUP_PART_ID
from backend.domain.money import ZERO, dec_str, to_decimal

_KEY = "group_codec"
_OMIT_NONE = "group_codec_omit_none"


# --------------------------------------------------------------------------------------------
# Small shared helpers (storage and API formats)
# --------------------------------------------------------------------------------------------


def aware(dt: Any, name: str) -> datetime:
    """A timezone-aware datetime in UTC, or ``InvalidInput`` naming ``name``."""
    if not isinstance(dt, datetime):
        raise InvalidInput(name, f"expected a datetime, got {type(dt).__name__}")
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise InvalidInput(name, "naive datetime; timestamps must be timezone-aware")
    return dt.astimezone(timezone.utc)


def dt_str(dt: datetime | None) -> str | None:
    return None if dt is None else dt.astimezone(timezone.utc).isoformat()


def parse_dt(value: Any, name: str) -> datetime:
    if isinstance(value, datetime):
        return aware(value, name)
    if not isinstance(value, str):
        raise InvalidInput(name, f"expected an ISO-8601 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(name, f"not ISO-8601: {value!r}") from None
    return aware(parsed, name)


def check_keys(data: Any, required: Iterable[str], optional: Iterable[str], where: str, *,
               allow_private: bool = False) -> None:
    """Strict field check. ``allow_private``: stored documents may carry ``_``-prefixed fields that
    belong to the storage adapter (a lease, a version); request bodies may not."""
    if not isinstance(data, Mapping):
        raise InvalidInput(where, f"expected an object, got {type(data).__name__}")
    required, optional = set(required), set(optional)
    keys = {k for k in data if not (allow_private and isinstance(k, str) and k.startswith("_"))}
    missing = required - keys
    if missing:
        raise InvalidInput(where, f"missing fields {sorted(missing)}")
    unknown = keys - required - optional
    if unknown:
        raise InvalidInput(where, f"unknown fields {sorted(unknown)}")


def fmt(value: Decimal, places: str | None = None) -> str:
    """A Decimal for a rejection's detail text (``0.0001``-style ``places`` rounds half-even)."""
    if places is not None:
        value = value.quantize(Decimal(places), rounding=ROUND_HALF_EVEN)
    return dec_str(value) or ""


# --------------------------------------------------------------------------------------------
# Codecs: one per kind of value
# --------------------------------------------------------------------------------------------


def _same(value: Any, *_: Any) -> Any:
    return value


@dataclass(frozen=True)
class Codec:
    """A kind of stored value. ``check(value, name)``: the constructor's type rule (raises
    ``InvalidInput``; returns the value, normalised); ``dump(value)``: the storage form;
    ``load(raw, name, decoded)``: its inverse (``decoded``: the fields decoded so far)."""

    check: Callable[[Any, str], Any] = _same
    dump: Callable[[Any], Any] = _same
    load: Callable[[Any, str, Mapping[str, Any]], Any] = _same


def rule(check: Callable[[Any, str], Any]) -> Codec:
    """A value stored as it is (a string, an int), checked by ``check`` (its result is ignored)."""
    def checked(value: Any, name: str) -> Any:
        check(value, name)
        return value

    return Codec(check=checked)


def dec(*, positive: bool = False, non_negative: bool = False) -> Codec:
    """A finite Decimal, stored as its exact string."""
    def check(value: Any, name: str) -> Decimal:
        if not isinstance(value, Decimal) or not value.is_finite():
            raise InvalidInput(name, f"expected a finite Decimal, got {value!r}")
        if (positive and value <= ZERO) or (non_negative and value < ZERO):
            raise InvalidInput(name, f"must {'be positive' if positive else 'not be negative'}, got {value}")
        return value

    return Codec(check, dec_str, lambda raw, name, _: to_decimal(raw, name))


def enum_of(enum: type[Enum], parse: Callable[[Any, str], Enum] | None = None) -> Codec:
    """An enum stored by value (``parse``: a lenient reader, e.g. ``AssetClass.parse``)."""
    def check(value: Any, name: str) -> Enum:
        if not isinstance(value, enum):
            raise InvalidInput(name, f"expected a {enum.__name__}, got {value!r}")
        return value

    def load(raw: Any, name: str, _: Any) -> Enum:
        if parse is not None:
            return parse(raw, name)
        try:
            return enum(raw)
        except ValueError:
            raise InvalidInput(name, f"unknown {enum.__name__} {raw!r}") from None

    return Codec(check, lambda value: value.value, load)


def list_of(cls: type) -> Codec:
    """A tuple of stored dataclasses (legs, rollback orders), stored as a list of documents."""
    def check(value: Any, name: str) -> tuple:
        value = tuple(value)
        if not all(isinstance(item, cls) for item in value):
            raise InvalidInput(name, f"expected {cls.__name__} values")
        return value

    def load(raw: Any, name: str, _: Any) -> tuple:
        if raw is None:
            return ()
        if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)):
            raise InvalidInput(name, "expected a list")
        return tuple(cls.from_dict(item, f"{name}[{i}]") for i, item in enumerate(raw))

    return Codec(check, lambda value: [item.to_dict() for item in value], load)


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(name, f"expected a boolean, got {value!r}")
    return value


def _check_rejection(value: Any, name: str) -> Rejection:
    if not isinstance(value, Rejection):
        raise InvalidInput(name, "expected a Rejection")
    return value


def _load_rejection(raw: Any, name: str, _: Any) -> Rejection:
    check_keys(raw, {"code", "detail"}, {"text"}, name)  # text is derived (code: detail)
    try:
        code = RejectCode(raw["code"])
    except ValueError:
        raise InvalidInput(f"{name}.code", f"unknown reject code {raw['code']!r}") from None
    if not isinstance(raw["detail"], str):
        raise InvalidInput(f"{name}.detail", "expected a string")
    return Rejection(code, raw["detail"])


def _check_spec(value: Any, name: str) -> AssetSpec:
    if not isinstance(value, AssetSpec):
        raise InvalidInput(name, "asset spec missing or for another asset class")
    return value


_SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(AssetSpec) if f.name != "asset_class")


def _load_spec(raw: Any, name: str, decoded: Mapping[str, Any]) -> AssetSpec:
    """The leg's asset spec snapshot; its class is the leg's ``asset_class`` (decoded before it)."""
    check_keys(raw, _SPEC_FIELDS, (), name)
    return AssetSpec(asset_class=decoded["asset_class"], **{k: to_decimal(raw[k], f"{name}.{k}") for k in _SPEC_FIELDS})


def _check_str_tuple(value: Any, name: str) -> tuple:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise InvalidInput(name, f"expected a list of strings, got {value!r}")
    return tuple(value)


def _check_object(value: Any, name: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise InvalidInput(name, "expected an object")
    return value


PLAIN = Codec()
BOOL = Codec(_check_bool)
TIMESTAMP = Codec(aware, dt_str, lambda raw, name, _: parse_dt(raw, name))
REJECTION = Codec(_check_rejection, lambda value: value.to_dict(), _load_rejection)
SPEC = Codec(_check_spec, lambda spec: {k: dec_str(getattr(spec, k)) for k in _SPEC_FIELDS}, _load_spec)
ASSET_CLASS = enum_of(AssetClass, AssetClass.parse)  # stored by value; the seed alias FX is read too
STR_TUPLE = Codec(_check_str_tuple, list, lambda raw, name, _: _check_str_tuple(raw, name))  # execution_priority
OBJECT = Codec(_check_object, dict)  # a JSON object kept as received (rpm_output)


# --------------------------------------------------------------------------------------------
# Field rules shared by the group types
# --------------------------------------------------------------------------------------------


def check_part_id(value: Any, name: str) -> None:
    """Ids inside a group (group and leg ids): the one ``GROUP_PART_ID`` rule (no ``__x__``)."""
    GROUP_PART_ID.check(value, name)


def check_text(value: Any, name: str) -> None:
    """Tenant and uid values (from verified tokens): non-empty, <= 128 characters, no ``/``."""
    if not isinstance(value, str) or not value.strip() or len(value) > 128 or "/" in value:
        raise InvalidInput(name, f"expected a non-empty string of <= 128 characters without '/', got {value!r}")


# --------------------------------------------------------------------------------------------
# Declaring fields and walking them
# --------------------------------------------------------------------------------------------


def stored(codec: Codec, default: Any = MISSING, *, missing: Any = MISSING, kw_only: bool = False,
           omit_none: bool = False) -> Any:
    """A dataclass field stored with ``codec``. ``default=None`` makes it nullable (and optional in a
    document); ``missing`` is the value of a legacy document that lacks the key. Keys are written in
    field order; ``kw_only`` lets a defaulted field stand before required ones to keep that order.
    ``omit_none``: a None value is not written at all (a field added later, e.g. a leg's
    ``stop_loss``, so documents without it serialize exactly as before)."""
    return dataclasses.field(default=default, kw_only=kw_only, metadata={_KEY: (codec, missing), _OMIT_NONE: omit_none})


@dataclass(frozen=True)
class Derived:
    """A key written from the object (for queries) right after field ``after``; ignored on load."""

    key: str
    after: str
    value: Callable[[Any], Any]


def _fields(cls: type) -> list[tuple[dataclasses.Field, Codec, Any]]:
    cached = cls.__dict__.get("_codec_fields")
    if cached is None:
        cached = [(f, *f.metadata[_KEY]) for f in dataclasses.fields(cls) if _KEY in f.metadata]
        setattr(cls, "_codec_fields", cached)
    return cached


def _nullable(f: dataclasses.Field) -> bool:
    return f.default is None


def check_fields(obj: Any, prefix: str = "") -> None:
    """Constructor-time type checks of every stored field (``prefix`` goes before the field name in
    errors); normalised values (UTC timestamps, tuples) are written back."""
    for f, codec, _ in _fields(type(obj)):
        value = getattr(obj, f.name)
        if value is None and _nullable(f):
            continue
        checked = codec.check(value, prefix + f.name)
        if checked is not value:
            object.__setattr__(obj, f.name, checked)


def encode(obj: Any, derived: Sequence[Derived] = ()) -> dict[str, Any]:
    """The storage form: every stored field by its codec, derived keys after their anchor."""
    after: dict[str, list[Derived]] = {}
    for d in derived:
        after.setdefault(d.after, []).append(d)
    out: dict[str, Any] = {}
    for f, codec, _ in _fields(type(obj)):
        value = getattr(obj, f.name)
        if value is None and f.metadata.get(_OMIT_NONE):
            continue
        out[f.name] = None if value is None else codec.dump(value)
        for d in after.get(f.name, ()):
            out[d.key] = d.value(obj)
    return out


def decode(cls: type, data: Any, where: str, *, derived: Sequence[Derived] = (), extra: Iterable[str] = (),
           allow_private: bool = False, prefix: str | None = None) -> Any:
    """Inverse of :func:`encode`: a strict key check (``where`` names the document), then every field
    by its codec (errors name ``<prefix><field>``; ``prefix`` defaults to ``where.``). ``extra``: more
    required keys that the caller reads itself (``schema_version``)."""
    fields = _fields(cls)
    required = {f.name for f, _, missing in fields if not _nullable(f) and missing is MISSING} | set(extra)
    optional = {f.name for f, _, missing in fields if _nullable(f) or missing is not MISSING}
    check_keys(data, required, optional | {d.key for d in derived}, where, allow_private=allow_private)
    prefix = f"{where}." if prefix is None else prefix
    kwargs: dict[str, Any] = {}
    for f, codec, missing in fields:
        if f.name not in data:
            kwargs[f.name] = None if missing is MISSING else missing
            continue
        value = data[f.name]
        kwargs[f.name] = None if value is None and _nullable(f) else codec.load(value, prefix + f.name, kwargs)
    return cls(**kwargs)
