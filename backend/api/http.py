"""Framework-free request/response values and the API's error type."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Iterable, Iterator, Mapping, Sequence

MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True)
class ApiRequest:
    """One HTTP request. Header names are matched case-insensitively; a query parameter may repeat."""

    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, Sequence[str] | str] = field(default_factory=dict)
    body: bytes = b""

    def __post_init__(self) -> None:
        put = object.__setattr__
        put(self, "method", self.method.upper())
        put(self, "headers", {str(k).lower(): str(v) for k, v in self.headers.items()})
        put(self, "query", {str(k): ([v] if isinstance(v, str) else [str(x) for x in v])
                            for k, v in self.query.items()})

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class ApiResponse:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def json_bytes(self) -> bytes:
        if self.body is None:
            return b""
        return dumps(self.body).encode()

    def json(self) -> Any:
        """The body as a client would decode it (tests)."""
        raw = self.json_bytes()
        return json.loads(raw) if raw else None


@dataclass
class StreamingResponse(ApiResponse):
    """A response whose body is produced while it is sent (large CSV/JSON exports).

    ``chunks`` yields bytes; nothing runs until the server iterates it, so every check (identity,
    parameters) must have passed before the handler returns one. An error while streaming cannot
    become an error status any more: the server aborts the chunked body, so the client sees a
    truncated transfer, never a complete-looking file. ``read()`` joins the chunks (tests)."""

    chunks: Iterable[bytes] = ()
    media_type: str = "application/json"
    _consumed: bytes | None = field(default=None, repr=False)

    def iter_bytes(self) -> Iterator[bytes]:
        if self._consumed is not None:
            yield self._consumed
            return
        for chunk in self.chunks:
            data = chunk.encode() if isinstance(chunk, str) else chunk
            if data:  # an empty chunk would end a chunked transfer early
                yield data

    def read(self) -> bytes:
        if self._consumed is None:
            self._consumed = b"".join(self.iter_bytes())
        return self._consumed

    def json_bytes(self) -> bytes:
        return self.read()

    def text(self) -> str:
        return self.read().decode()


def _default(value: Any) -> Any:
    # Money leaves the API as exact decimal strings, never as binary floats.
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def dumps(value: Any) -> str:
    return json.dumps(value, default=_default, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class ApiError(Exception):
    """An HTTP error with the API's error body ``{"error": {code, message, field, reason, errors}}``.

    ``errors`` lists every field error of the request as ``{field, reason}`` (all of a body's
    validation errors at once); ``field``/``reason`` are its first entry. An error that names no
    input (a bad token, a conflict) has an empty list."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None,
                 reason: str | None = None, headers: Mapping[str, str] | None = None,
                 extra: Mapping[str, Any] | None = None, errors: Sequence[Mapping[str, Any]] | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.reason = reason
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        if errors is None:
            errors = [{"field": field, "reason": reason}] if field is not None else []
        self.errors = [{"field": e.get("field"), "reason": e.get("reason")} for e in errors]

    def to_response(self, request_id: str | None = None) -> ApiResponse:
        body: dict[str, Any] = {"error": {"code": self.code, "message": self.message,
                                          "field": self.field, "reason": self.reason,
                                          "errors": [dict(e) for e in self.errors]}}
        if request_id:
            body["error"]["request_id"] = request_id
        body.update(self.extra)
        return ApiResponse(self.status, body, dict(self.headers))


def bad_request(field: str | None, reason: str, code: str = "INVALID_REQUEST") -> ApiError:
    message = f"{field}: {reason}" if field else reason
    return ApiError(400, code, message, field=field, reason=reason)
