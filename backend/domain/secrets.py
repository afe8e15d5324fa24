"""Secrets as values that cannot leak, and references to them that can be stored.

A broker connection stores *where* its credentials live (a ``SecretRef``), never the credentials.
The value itself is read at run time through a ``SecretSource`` (``backend/ports/secrets.py``) and
travels as a ``Secret``: its ``repr``/``str``/``format`` print ``****``, ``json.dumps`` and pickle
refuse it, and ``check_storable`` refuses it (a ``Secret`` is not a type Firestore can hold). The one
way to the text is ``reveal()``, called by an adapter at the moment it hands the key to its SDK.

These types live in the domain (not in the port) because ``BrokerConnection.credentials_ref`` is a
domain field and the domain imports nothing outside itself; ``backend.ports.secrets`` re-exports them.

Reference grammar (``SecretRef.parse``), one scheme per source:

==========  ==============================================  ==========================================
scheme      text                                            read by
==========  ==============================================  ==========================================
``gsm``     ``projects/<project>/secrets/<name>/versions/``  Google Secret Manager (production)
            ``<latest|N>``
``env``     ``env:<NAME>`` (``[A-Za-z_][A-Za-z0-9_]*``)      the process environment (emulator stack,
                                                            Cloud Functions ``SecretParam``s)
``file``    ``file:<NAME>`` (``[A-Za-z0-9_.-]``, 1-255)      an ignored local file (tests, local runs)
==========  ==============================================  ==========================================

Anything else is refused, so a raw API key pasted where a reference belongs is refused too (an
Alpaca or OANDA key matches none of the forms: every form needs its prefix).
"""
from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import Any

from backend.domain.errors import InvalidInput

MASK = "****"

_GSM = re.compile(
    r"projects/(?P<project>[a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]{1,20})"
    r"/secrets/(?P<name>[A-Za-z0-9_-]{1,255})"
    r"/versions/(?P<version>latest|[1-9][0-9]{0,18})", re.ASCII)
_ENV = re.compile(r"env:(?P<name>[A-Za-z_][A-Za-z0-9_]{0,254})", re.ASCII)
_FILE = re.compile(r"file:(?P<name>[A-Za-z0-9_.-]{1,255})", re.ASCII)
SCHEMES = ("gsm", "env", "file")
REF_DESCRIPTION = ("a secret reference: projects/<project>/secrets/<name>/versions/<latest|N>, "
                   "env:<NAME> or file:<NAME>")


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives. Safe to store, log and show: it names the secret, it is not the secret."""

    scheme: str
    name: str
    text: str

    @classmethod
    def parse(cls, value: Any, field: str = "credentials_ref") -> "SecretRef":
        """The reference ``value`` names, or ``InvalidInput`` naming ``field``. The refused text is
        never echoed (it may be a secret pasted in the wrong place)."""
        if isinstance(value, SecretRef):
            return value
        if not isinstance(value, str):
            raise InvalidInput(field, f"must be {REF_DESCRIPTION}, got {type(value).__name__}")
        for scheme, pattern in (("gsm", _GSM), ("env", _ENV), ("file", _FILE)):
            match = pattern.fullmatch(value)
            if match:
                name = value if scheme == "gsm" else match.group("name")
                return cls(scheme=scheme, name=name, text=value)
        raise InvalidInput(field, f"must be {REF_DESCRIPTION}")

    @classmethod
    def env(cls, name: str) -> "SecretRef":
        return cls.parse(f"env:{name}")

    @classmethod
    def file(cls, name: str) -> "SecretRef":
        return cls.parse(f"file:{name}")

    @classmethod
    def gsm(cls, project: str, secret: str, version: str = "latest") -> "SecretRef":
        return cls.parse(f"projects/{project}/secrets/{secret}/versions/{version}")

    def __str__(self) -> str:
        return self.text

    def to_json(self) -> str:
        return self.text


class Secret:
    """A secret value. Prints as ``****`` everywhere; ``reveal()`` is the only way to the text.

    - ``repr``/``str``/``format``/f-strings: ``Secret(****)`` / ``****``.
    - ``json.dumps``: refused (``TypeError`` naming the type only); ``backend.logs`` prints ``****``.
    - pickle/copy to another process: refused. ``check_storable``: refused (not a storable type).
    - ``==`` compares in constant time; not hashable (never a dict key or set member).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str):
        if not isinstance(value, str):
            raise TypeError("a Secret wraps a str")
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str:
        """The text, for the SDK call that needs it. Never log, store or return it."""
        return self._value

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a Secret is immutable")

    def __repr__(self) -> str:
        return f"Secret({MASK})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode("utf-8"), other._value.encode("utf-8"))

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self):  # pickle, copy.copy, multiprocessing
        raise TypeError("a Secret cannot be serialized")

    def __getstate__(self):
        raise TypeError("a Secret cannot be serialized")
