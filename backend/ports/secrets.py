"""The secret-source port: credentials are resolved at run time, by reference.

Firestore holds a broker connection's ``credentials_ref`` (a ``SecretRef``), never the credentials.
When an adapter needs them it asks a ``SecretSource``: ``source.get(ref) -> Secret``. The value
comes back wrapped (``Secret``: prints ``****``, refuses JSON/pickle/Firestore) and is unwrapped
with ``reveal()`` only where the SDK client is built. (The port returns ``Secret``, not ``str``, so
that a value cannot reach a log line, an error body or a document by accident.)

Adapters (``backend/adapters/secrets.py``): environment variables (``env:``), an ignored local file
(``file:``), Google Secret Manager (``projects/…``), a ``RoutingSecretSource`` that dispatches by
scheme, and ``CachedSecretSource`` (TTL + bounded stale grace) around any of them.

Errors: every failure is ``SecretUnavailable``; its message names the reference and a reason, never
the value. ``transient`` says whether trying again later may help (a timeout, a 5xx) as opposed to a
decision (not found, permission denied, disabled): only transient failures may be answered from a
stale cached value.

A credential secret holds a JSON object of named fields (``{"key_id": "…", "secret_key": "…"}`` for
Alpaca, ``{"token": "…"}`` for OANDA): one reference per connection, one rotation per connection.
``read_credentials`` reads and checks it.
"""
from __future__ import annotations

import json
from typing import Iterable, Protocol, runtime_checkable

from backend.domain.secrets import MASK, Secret, SecretRef

__all__ = ["MASK", "Secret", "SecretRef", "SecretSource", "SecretUnavailable", "read_credentials"]


class SecretUnavailable(RuntimeError):
    """A secret could not be read. The message names the reference and why; never the value."""

    def __init__(self, ref: SecretRef | str, reason: str, *, transient: bool = False):
        self.ref = str(ref)
        self.reason = reason
        self.transient = transient
        super().__init__(f"secret {self.ref} unavailable: {reason}")


@runtime_checkable
class SecretSource(Protocol):
    def get(self, ref: SecretRef) -> Secret:
        """The current value of ``ref``; ``SecretUnavailable`` when it cannot be read."""


def read_credentials(source: SecretSource, ref: SecretRef, fields: Iterable[str]) -> dict[str, Secret]:
    """The named credential fields of the JSON object stored at ``ref``, each a ``Secret``.

    Refuses (``SecretUnavailable``, not transient) a value that is not a JSON object, a missing or
    empty field, or a field that is not a string; the message names the fields, never a value."""
    wanted = tuple(fields)
    secret = source.get(ref)
    try:
        data = json.loads(secret.reveal())
    except ValueError:  # JSONDecodeError carries the document: never chain it
        data = None
    if not isinstance(data, dict):
        raise SecretUnavailable(ref, f"must hold a JSON object with the fields {list(wanted)}")
    out: dict[str, Secret] = {}
    for name in wanted:
        value = data.get(name)
        if not isinstance(value, str) or not value:
            raise SecretUnavailable(ref, f"field {name!r} is missing or not a non-empty string")
        out[name] = Secret(value)
    return out
