"""flask ``Request`` (what ``https_fn.on_request`` receives) ↔ ``ApiRequest`` / ``ApiResponse``."""
from __future__ import annotations

from typing import Any

from backend.api.http import MAX_BODY_BYTES, ApiRequest, ApiResponse


def read_body(request: Any, limit: int = MAX_BODY_BYTES) -> bytes:
    """At most ``limit + 1`` bytes: enough for the handler to answer 413 without reading a huge body."""
    length = request.content_length
    if length is not None and length > limit:
        return b"\0" * (limit + 1)
    return request.stream.read(limit + 1) if request.stream is not None else b""


def to_api_request(request: Any) -> ApiRequest:
    query = {key: request.args.getlist(key) for key in request.args.keys()}
    return ApiRequest(method=request.method, path=request.path, headers=dict(request.headers.items()),
                      query=query, body=read_body(request))


def to_flask_response(response: ApiResponse) -> Any:
    from flask import Response

    body = response.json_bytes()
    headers = dict(response.headers)
    return Response(body, status=response.status, headers=headers,
                    mimetype="application/json" if body else None)


def serve(request: Any, secrets: dict[str, str | None] | None = None) -> Any:
    from backend.api.wiring import default_app

    return to_flask_response(default_app(secrets).handle(to_api_request(request)))
