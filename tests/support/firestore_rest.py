"""The Firestore REST value codec: Python values to and from the REST API's typed ``Value`` JSON.

One codec for every REST client in the repo: the security-rules client
(``tests/support/rules_client.py``) and the local stack's end-user client
(``scripts/localstack/clients.py``). Encoding:

- ``None`` → ``nullValue``; ``bool`` → ``booleanValue`` (checked before ``int``); ``int`` →
  ``integerValue`` (a decimal string, as proto3 JSON spells int64); ``float`` → ``doubleValue``
  (non-finite ones as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``); ``str`` →
  ``stringValue``; ``Timestamp`` → ``timestampValue``; lists and tuples → ``arrayValue``;
  mappings → ``mapValue``. Anything else raises ``TypeError``: a ``Decimal`` must be sent as the
  string the backend stores.
- ``SERVER_TIMESTAMP`` fields are left out of ``encode_fields``; ``server_timestamp_paths`` names
  them so a caller can send them as ``REQUEST_TIME`` transforms, as the SDKs do.

Decoding turns ``integerValue`` back into ``int`` and maps and arrays into dicts and lists; every
other kind (strings, doubles, booleans, null, timestamps as RFC 3339 strings, references) is
returned as the REST API spells it.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any, Mapping


class ServerTimestamp:
    """Sentinel: set this field to the request time (the SDKs' ``serverTimestamp()``)."""


SERVER_TIMESTAMP = ServerTimestamp()


@dataclass(frozen=True)
class Timestamp:
    """A client-chosen timestamp value (RFC 3339, UTC)."""

    value: dt.datetime

    def rfc3339(self) -> str:
        return self.value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def encode_value(value: Any) -> dict[str, Any]:
    """A Python value as a Firestore REST ``Value``."""
    if value is None:
        return {"nullValue": None}
    if isinstance(value, bool):
        return {"booleanValue": value}
    if isinstance(value, int):
        return {"integerValue": str(value)}
    if isinstance(value, float):
        if math.isfinite(value):
            return {"doubleValue": value}
        # proto3 JSON spells non-finite doubles as strings
        return {"doubleValue": "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, Timestamp):
        return {"timestampValue": value.rfc3339()}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [encode_value(v) for v in value]}}
    if isinstance(value, Mapping):
        return {"mapValue": {"fields": encode_fields(value)}}
    raise TypeError(f"cannot encode {type(value).__name__} as a Firestore value")


def encode_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """A document's fields as REST ``Value``s; ``SERVER_TIMESTAMP`` fields are left to transforms."""
    return {k: encode_value(v) for k, v in data.items() if not isinstance(v, ServerTimestamp)}


def server_timestamp_paths(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The dotted field paths set to ``SERVER_TIMESTAMP``, nested maps included."""
    paths: list[str] = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, ServerTimestamp):
            paths.append(path)
        elif isinstance(value, Mapping):
            paths.extend(server_timestamp_paths(value, path + "."))
    return paths


def decode_value(value: Mapping[str, Any]) -> Any:
    """A Firestore REST ``Value`` as Python (timestamps stay RFC 3339 strings)."""
    (kind, inner), = value.items()
    if kind == "integerValue":
        return int(inner)
    if kind == "arrayValue":
        return [decode_value(v) for v in (inner.get("values") or [])]
    if kind == "mapValue":
        return decode_fields(inner.get("fields") or {})
    return inner  # stringValue, doubleValue, booleanValue, nullValue, timestampValue, referenceValue...


def decode_fields(fields: Mapping[str, Any] | None) -> dict[str, Any]:
    """A REST document's ``fields`` (absent on an empty document) as a dict."""
    return {k: decode_value(v) for k, v in (fields or {}).items()}
