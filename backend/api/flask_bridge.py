"""flask ``Request`` (what ``https_fn.on_request`` receives) ↔ ``ApiRequest`` / ``ApiResponse``.

A ``StreamingResponse`` becomes a flask response over its chunk iterator: werkzeug sends it with
chunked transfer encoding as the chunks are produced (Cloud Functions 2nd gen / Cloud Run stream
such bodies), so an export is never held whole in memory."""
from __future__ import annotations

from typing import Any

from backend.api.http import MAX_BODY_BYTES, ApiRequest, ApiResponse, StreamingResponse


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

    if isinstance(response, StreamingResponse):
        return Response(response.iter_bytes(), status=response.status, headers=dict(response.headers),
                        content_type=response.media_type)
    body = response.json_bytes()
    headers = dict(response.headers)
    return Response(body, status=response.status, headers=headers,
                    mimetype="application/json" if body else None)


def serve(request: Any, secrets: dict[str, str | None] | None = None) -> Any:
    from backend.api.wiring import default_app

    return to_flask_response(default_app(secrets).handle(to_api_request(request)))
