"""The secret-sink port (issue 13): where the admin API writes a broker connection's credentials.

The read side is ``backend.ports.secrets.SecretSource`` (``get(ref) -> Secret``). The admin API
needs the other direction once, when a tenant admin creates or rotates a connection's credentials:
``sink.put(ref, Secret(json))`` stores the value at the reference and answers the reference to keep
in Firestore (a Secret Manager sink answers the new *version*, so the document names exactly the
credentials that were written, and the change is visible in the audit log as a new ref).

The value never comes back: there is no read in this port, responses and documents carry only the
reference, and errors (``SecretWriteFailed``) name the reference and a reason, never the value.
``default_ref(tenant_id, connection_id)`` names where a connection's credentials go when the request
names no reference.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from backend.domain.secrets import Secret, SecretRef


class SecretWriteFailed(RuntimeError):
    """A secret could not be written. The message names the reference and why; never the value."""

    def __init__(self, ref: SecretRef | str, reason: str, *, transient: bool = False):
        self.ref = str(ref)
        self.reason = reason
        self.transient = transient
        super().__init__(f"secret {self.ref} not written: {reason}")


@runtime_checkable
class SecretSink(Protocol):
    def put(self, ref: SecretRef, value: Secret) -> SecretRef:
        """Store ``value`` at ``ref``; answer the reference to store (the new version for Secret Manager).
        ``SecretWriteFailed`` when it cannot (a scheme this sink does not write, a refusal, an outage)."""

    def default_ref(self, tenant_id: str, connection_id: str) -> SecretRef:
        """Where a connection's credentials go when the request names no ``credentials_ref``."""
