"""The order path's two Firestore RPCs, ``Commit`` and ``BatchGetDocuments``, sent straight on the
client's own gRPC channel (issue 17).

Why: the GAPIC method (``FirestoreClient.commit``) wraps each call in a retry object, a deadline
object, a tracing context manager, an error-remapping closure and a logging interceptor, and
converts the request and response through proto-plus: ~0.2 ms of CPU per call, three calls per
placed trade. Here the same request protobuf goes to the same channel (the transport's
``grpc_channel``: production's credentials, the emulator's owner token) with the metadata the
GAPIC method would send (computed once from the method itself), its default timeout, and its
answer or error as the library would raise it (``google.api_core.exceptions.from_grpc_error``).

Retries stay the library's: an error its default retry would retry (commit: ``ResourceExhausted``,
``ServiceUnavailable``; batched read: its predicate, probed) hands the call, after the retry's
first back-off, to the GAPIC method with its default retry — what the library would have done
from its second attempt on (its deadline then starts at the hand-over: a call whose first attempt
failed only at its timeout can take one timeout longer than through the library alone — a hung
first attempt, not a refused one). A ``Commit`` retried after an error may have landed the first time,
exactly as with the library: every write on the order path carries a precondition (creates,
update-time tokens), so a second landing is refused, not doubled.

Left to the library: when OpenTelemetry tracing of the client is on (the GAPIC method made a span
factory) or its debug request logging is enabled, and whenever building the fast path fails
(a google-api-core without the private pieces read here): then every call goes through GAPIC.
``tests/integration/test_firestore_rpc.py`` compares both paths on the emulator: the metadata each
sends, the documents written, the answers, the errors, the retry hand-over.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Iterator

from backend.logs import log_event

COMMIT = "/google.firestore.v1.Firestore/Commit"
BATCH_GET = "/google.firestore.v1.Firestore/BatchGetDocuments"


class FastRpc:
    """Bare ``Commit`` / ``BatchGetDocuments`` calls for one client (see the module docstring).
    ``for_client`` answers ``None`` when the library's path must be used."""

    def __init__(self, client: Any):
        import grpc
        from google.api_core import exceptions as gexc, gapic_v1
        from google.cloud.firestore_v1.services.firestore.transports import grpc as transport_module
        from google.cloud.firestore_v1.types import firestore as firestore_types

        self._grpc, self._gexc, self._client = grpc, gexc, client
        self._api = client._firestore_api  # noqa: SLF001 - the library's GAPIC client
        transport = self._api._transport  # noqa: SLF001
        self._transport_log = transport_module._LOGGER  # noqa: SLF001 - its debug request logging
        self._commit_request = firestore_types.CommitRequest
        self._batch_request = firestore_types.BatchGetDocumentsRequest
        commit_method = transport._wrapped_methods[transport.commit]  # noqa: SLF001
        batch_method = transport._wrapped_methods[transport.batch_get_documents]  # noqa: SLF001
        if getattr(commit_method, "_start_span_fn", None) is not None \
                or getattr(batch_method, "_start_span_fn", None) is not None:
            raise RuntimeError("the client traces its calls: the library's path keeps its spans")
        database = client._database_string  # noqa: SLF001
        self._commit_md = _metadata(commit_method, client, database, gapic_v1)
        self._batch_md = _metadata(batch_method, client, database, gapic_v1)
        self._commit_timeout = _timeout(commit_method)
        self._batch_timeout = _timeout(batch_method)
        self._commit_retry = commit_method._retry  # noqa: SLF001 - the method's default retry
        self._batch_retry = batch_method._retry  # noqa: SLF001
        channel = transport.grpc_channel
        self._commit = channel.unary_unary(COMMIT, request_serializer=firestore_types.CommitRequest.pb().SerializeToString,
                                           response_deserializer=firestore_types.CommitResponse.pb().FromString)
        self._batch_get = channel.unary_stream(
            BATCH_GET, request_serializer=firestore_types.BatchGetDocumentsRequest.pb().SerializeToString,
            response_deserializer=firestore_types.BatchGetDocumentsResponse.pb().FromString)

    @classmethod
    def for_client(cls, client: Any) -> FastRpc | None:
        found = getattr(client, "_fast_rpc", None)
        if found is None:
            try:
                found = cls(client)
            except Exception as exc:  # noqa: BLE001 - any gap in the library's pieces: its own path
                log_event("firestore_rpc.library_path", severity="WARNING", error_type=type(exc).__name__,
                          error=str(exc)[:300])
                found = False
            try:
                client._fast_rpc = found  # noqa: SLF001
            except AttributeError:  # pragma: no cover - a client without a __dict__
                pass
        return found or None

    def _library_path(self) -> bool:
        return self._transport_log.isEnabledFor(logging.DEBUG)

    # ----------------------------------------------------------------------------------- commit

    def commit(self, request: Any) -> Any:
        """The raw ``CommitResponse`` of a raw ``CommitRequest``; errors as the library raises them."""
        if self._library_path():
            return self._library_commit(request)
        try:
            return self._commit(request, timeout=self._commit_timeout, metadata=self._commit_md)
        except self._grpc.RpcError as exc:
            self._raise_or_back_off(self._commit_retry, exc)
        return self._library_commit(request)

    def _library_commit(self, request: Any) -> Any:
        response = self._api.commit(request=self._commit_request.wrap(request),
                                    metadata=self._client._rpc_metadata)  # noqa: SLF001
        return getattr(response, "_pb", response)

    # ------------------------------------------------------------------------------ batched read

    def batch_get(self, request: Any) -> Iterator[Any]:
        """The raw ``BatchGetDocumentsResponse``s of a raw request. The first answer is awaited here,
        as the GAPIC method awaits it inside its retry; an error after it is raised as the library's
        stream raises it (mapped, not retried)."""
        if self._library_path():
            return self._library_batch_get(request)
        stream = self._batch_get(request, timeout=self._batch_timeout, metadata=self._batch_md)
        try:
            first = next(stream, None)
        except self._grpc.RpcError as exc:
            self._raise_or_back_off(self._batch_retry, exc)
            return self._library_batch_get(request)
        return self._rest(first, stream)

    def _rest(self, first: Any, stream: Any) -> Iterator[Any]:
        if first is None:
            return
        yield first
        try:
            yield from stream
        except self._grpc.RpcError as exc:
            raise self._gexc.from_grpc_error(exc) from exc

    def _library_batch_get(self, request: Any) -> Iterator[Any]:
        for response in self._api.batch_get_documents(request=self._batch_request.wrap(request),
                                                      metadata=self._client._rpc_metadata):  # noqa: SLF001
            yield getattr(response, "_pb", response)

    # ---------------------------------------------------------------------------------- retries

    def _raise_or_back_off(self, retry: Any, exc: Exception) -> None:
        """Raise the library's error for ``exc`` unless the method's default ``retry`` would retry it;
        then sleep that retry's first back-off (the caller hands the call to the library's method)."""
        from google.api_core.retry import exponential_sleep_generator

        error = self._gexc.from_grpc_error(exc)
        predicate = getattr(retry, "_predicate", None)  # noqa: SLF001 - the retry's own predicate
        if predicate is None or not predicate(error):
            raise error from exc
        time.sleep(next(exponential_sleep_generator(retry._initial, retry._maximum,  # noqa: SLF001
                                                    retry._multiplier)))  # noqa: SLF001


def _metadata(method: Any, client: Any, database: str, gapic_v1: Any) -> tuple[tuple[str, str], ...]:
    """What the GAPIC method sends for a call from ``FirestoreClient``: the client's metadata and the
    routing header (``FirestoreClient.commit`` adds it), merged with the method's own
    ``x-goog-api-client`` by the method itself."""
    routing = gapic_v1.routing_header.to_grpc_metadata((("database", database),))
    kwargs: dict[str, Any] = {"metadata": (*client._rpc_metadata, routing)}  # noqa: SLF001
    default = gapic_v1.method.DEFAULT
    method._prepare_call(default, default, default, kwargs)  # noqa: SLF001 - fills kwargs["metadata"]
    metadata = tuple((str(k), str(v)) for k, v in kwargs["metadata"])
    if "compression" in kwargs:
        raise RuntimeError("the method compresses its calls")
    return metadata


def _timeout(method: Any) -> float:
    timeout = method._timeout  # noqa: SLF001 - the method's default timeout (seconds)
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise RuntimeError(f"unexpected default timeout {timeout!r}")
    return float(timeout)
