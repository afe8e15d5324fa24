"""Firestore documents to and from raw protobufs for the store's hot paths (issue 17): the core's
unit-of-work ops as ``Write`` protobufs (``write_for``), and a batched read decoded straight from
the response protobufs (``batch_get``).

Why: ``WriteBatch.create/update/set`` encode every field through proto-plus wrappers
(``_helpers.encode_value`` makes one ``document.Value`` wrapper per value, then copies it into its
parent), ~5 µs per value. A placed trade commits ~10 documents and ~600 values (the lot book grows
with the user's open lots), which made the encoding ~5 ms of a request's ~18 ms of CPU. Here each
value is written in place into its parent message (upb, no wrapper, no copy): the same protobufs
for a quarter of the CPU.

Exactly the library's protobufs: ``tests/unit/test_firestore_codec.py`` compares the deterministic
serialization of every write built here with the one google-cloud-firestore's own
``pbs_for_create`` / ``pbs_for_set_no_merge`` / ``pbs_for_set_with_merge`` / ``pbs_for_update`` /
``pb_for_delete`` build for the same op (nested maps, empty maps, lists of maps, every sentinel,
keys that need quoting, datetimes, preconditions). What this module does not know is left to the
library: a value of another type is encoded by ``_helpers.encode_value`` (datetimes, bytes,
subclasses of the plain types), and an op shape it does not handle (an ``Update`` whose field
names are not simple identifiers, or an empty one) answers ``None`` so the caller adds it through
the library's batch methods.

Reads: ``Client.get_all`` wraps each response in proto-plus, decodes it into a ``DocumentSnapshot``
that deep-copies the data, and ``to_dict`` deep-copies it again. ``batch_get`` sends the same
``BatchGetDocuments`` request through the same GAPIC method (same retry and timeout defaults) and
decodes each found document once from the raw protobuf: plain values here, everything else
(timestamps, bytes, references, geo points, and any map with a ``__``-prefixed key — the library
turns some of those into vectors or BSON values) by ``_helpers.decode_value`` / ``decode_dict``, so
the values are the library's (compared in the same test file).

The rules mirrored from the library (google-cloud-firestore 2.x ``_helpers.DocumentExtractor``):
a map's transform leaves (server time, increment, array union) leave the document and become
``update_transforms`` sorted by field path; a nested map whose leaves are all transforms is left out
of the document (an empty map stays, as an empty map); ``set(merge=True)`` masks every data leaf,
``update`` masks every top-level name that is not itself a transform; a create requires the
document not to exist, an update that it exists (or its update time).
"""
from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from google.cloud.firestore_v1 import _helpers
from google.cloud.firestore_v1.field_path import render_field_path
from google.cloud.firestore_v1.types import common, document, firestore as firestore_types, write as write_types

from backend.adapters.firestore_rpc import FastRpc
from backend.execution.unit_of_work import (EXISTS, SERVER_TIME, ArrayUnion, Create, Delete, Inc, Increment, Set,
                                            Update)

_Write = write_types.Write.pb()
_BatchRequest = firestore_types.BatchGetDocumentsRequest.pb()
_REQUEST_TIME = int(write_types.DocumentTransform.FieldTransform.ServerValue.REQUEST_TIME)
_ArrayValue = document.ArrayValue.pb()
_SIMPLE = __import__("re").compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
_TRANSFORMS = (Inc, ArrayUnion)
_SCALARS = frozenset({str, int, float, bool, type(None)})  # exact types: fill_value's own branches


@lru_cache(maxsize=4096)
def _field_path(path: tuple[str, ...]) -> str:
    """``render_field_path`` of a field-name tuple (the same few hundred names recur on every order)."""
    return render_field_path(path)


def fill_value(target: Any, value: Any) -> None:
    """Write ``value`` into the empty ``Value`` message ``target`` (as ``_helpers.encode_value``)."""
    kind = type(value)
    if value is None:
        target.null_value = 0
    elif kind is bool:
        target.boolean_value = value
    elif kind is int:
        target.integer_value = value
    elif kind is float:
        target.double_value = value
    elif kind is str:
        target.string_value = value
    elif kind is dict:
        mapped = target.map_value
        mapped.SetInParent()
        fields = mapped.fields
        for key, item in value.items():
            fill_value(fields[key], item)
    elif kind is list or kind is tuple:
        array = target.array_value
        array.SetInParent()
        values = array.values
        for item in value:
            fill_value(values.add(), item)
    else:  # datetimes, bytes, subclasses, sentinels in a list (the library raises for those)...
        target.CopyFrom(_helpers.encode_value(value)._pb)


def _is_transform(value: Any) -> bool:
    return value is SERVER_TIME or isinstance(value, _TRANSFORMS)


def _walk(fields: Any, data: Mapping[str, Any], parts: tuple[str, ...], transforms: list[tuple[tuple[str, ...], Any]],
          leaves: list[tuple[str, ...]] | None) -> bool:
    """Fill the map ``fields`` with ``data``'s data leaves; collect transforms (and the data leaf
    paths when ``leaves`` is a list). Answers whether anything was written into ``fields``."""
    wrote = False
    for key, value in data.items():
        path = (*parts, key)
        if type(value) in _SCALARS:  # most leaves: no Mapping (ABC) or transform check needed
            fill_value(fields[key], value)
            if leaves is not None:
                leaves.append(path)
            wrote = True
        elif type(value) is dict or isinstance(value, Mapping):
            if not value:  # an empty map is a leaf: stored as an empty map
                fields[key].map_value.SetInParent()
                if leaves is not None:
                    leaves.append(path)
                wrote = True
                continue
            entry = fields[key]
            mapped = entry.map_value
            if _walk(mapped.fields, value, path, transforms, leaves):
                wrote = True
            else:  # all transforms: the map is not part of the document
                del fields[key]
        elif _is_transform(value):
            transforms.append((path, value))
        else:
            fill_value(fields[key], value)
            if leaves is not None:
                leaves.append(path)
            wrote = True
    return wrote


def _add_transforms(write: Any, transforms: list[tuple[tuple[str, ...], Any]]) -> None:
    for path, value in sorted(transforms, key=lambda item: item[0]):
        transform = write.update_transforms.add()
        transform.field_path = _field_path(path)
        if value is SERVER_TIME:
            transform.set_to_server_value = _REQUEST_TIME
        elif isinstance(value, Inc):
            fill_value(transform.increment, value.value)
        else:  # ArrayUnion
            transform.append_missing_elements.SetInParent()
            values = transform.append_missing_elements.values
            for item in value.values:
                fill_value(values.add(), item)


def _update_time(write: Any, token: Any) -> None:
    write.current_document.CopyFrom(common.Precondition(update_time=token)._pb)


def write_for(op: Any, name: str) -> Any | None:
    """The ``Write`` protobuf of one op on the document named ``name`` (the full resource name),
    or ``None`` for an op shape the caller must hand to the library (see the module docstring)."""
    if isinstance(op, Delete):
        write = _Write(delete=name)
        if op.precondition is not None:
            _update_time(write, op.precondition)
        return write
    transforms: list[tuple[tuple[str, ...], Any]] = []
    write = _Write()
    write.update.name = name
    if isinstance(op, Create):
        _walk(write.update.fields, op.doc, (), transforms, None)
        write.current_document.exists = False
    elif isinstance(op, Set):
        leaves: list[tuple[str, ...]] | None = [] if op.merge else None
        _walk(write.update.fields, op.doc, (), transforms, leaves)
        if leaves is not None:
            write.update_mask.SetInParent()
            write.update_mask.field_paths.extend(_field_path(p) for p in sorted(leaves))
    elif isinstance(op, Increment):
        if not op.fields:
            return None
        transforms = [((key,), Inc(value)) for key, value in op.fields.items()]
        write.update_mask.SetInParent()  # set(merge=True) of transforms only: an empty mask
    elif isinstance(op, Update):
        keys = list(op.fields)
        if not keys or not all(_SIMPLE.fullmatch(key) for key in keys):
            return None  # dotted or quoted names, an empty update: the library's rules apply
        _walk(write.update.fields, op.fields, (), transforms, None)
        write.update_mask.SetInParent()
        write.update_mask.field_paths.extend(key for key in sorted(keys) if not _is_transform(op.fields[key]))
        if op.precondition is EXISTS:
            write.current_document.exists = True
        else:
            _update_time(write, op.precondition)
    else:
        return None
    if transforms:
        _add_transforms(write, transforms)
    return write


# --------------------------------------------------------------------------------------- reads

def decode_value(value: Any, client: Any) -> Any:
    """A ``Value`` protobuf as the library's ``_helpers.decode_value`` answers it."""
    kind = value.WhichOneof("value_type")
    if kind == "string_value":
        return value.string_value
    if kind == "integer_value":
        return value.integer_value
    if kind == "map_value":
        return decode_fields(value.map_value.fields, client)
    if kind == "null_value":
        return None
    if kind == "boolean_value":
        return value.boolean_value
    if kind == "double_value":
        return value.double_value
    if kind == "array_value":
        return [decode_value(item, client) for item in value.array_value.values]
    return _helpers.decode_value(value, client)  # timestamps, bytes, references, geo points


def decode_fields(fields: Any, client: Any) -> Any:
    """A map of ``Value`` protobufs as ``_helpers.decode_dict`` answers it (a map with a
    ``__``-prefixed key goes to the library: vectors and BSON wire maps)."""
    for key in fields:
        if key.startswith("__"):
            return _helpers.decode_dict(fields, client)
    return {key: decode_value(item, client) for key, item in fields.items()}


def batch_get(client: Any, paths: list[str]) -> dict[str, tuple[dict[str, Any] | None, Any]]:
    """One ``BatchGetDocuments`` round trip: path -> (document or None, update time), as
    ``FirestoreStore.get_all`` answered it from ``Client.get_all`` (see the module docstring)."""
    from google.api_core.datetime_helpers import DatetimeWithNanoseconds

    database = client._database_string  # noqa: SLF001
    prefix = f"{database}/documents/"  # what DocumentReference uses
    names = [prefix + p for p in paths]
    fast = FastRpc.for_client(client)
    if fast is not None:
        responses = fast.batch_get(_BatchRequest(database=database, documents=names))
    else:
        responses = client._firestore_api.batch_get_documents(  # noqa: SLF001
            request={"database": database, "documents": names}, metadata=client._rpc_metadata)  # noqa: SLF001
    out: dict[str, tuple[dict[str, Any] | None, Any]] = {}
    for response in responses:
        raw = getattr(response, "_pb", response)
        kind = raw.WhichOneof("result")
        if kind == "found":
            found = raw.found
            out[found.name[len(prefix):]] = (decode_fields(found.fields, client),
                                             DatetimeWithNanoseconds.from_timestamp_pb(found.update_time))
        elif kind == "missing":
            out[raw.missing[len(prefix):]] = (None, None)
        else:  # pragma: no cover - the library raises the same
            raise ValueError(f"unexpected BatchGetDocuments result {kind!r}")
    return out
