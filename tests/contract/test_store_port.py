"""The store port is complete: whatever the core and the API call on a store is declared by the
write-side protocol (``Store``), the read model (``ReadModel``) or the account port (``AccountStore``,
``AccountAdmin``: backend/ports/accounts.py), and both adapters implement every declared method with
the same parameters."""
from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from backend.adapters.firestore_store import FirestoreStore
from backend.adapters.memory_store import InMemoryStore
from backend.ports.accounts import AccountAdmin, AccountStore
from backend.ports.store import ReadModel, Store

ROOT = Path(__file__).resolve().parents[2]
# attributes named ``store`` that are not the store port: ``firestore.transactional`` and the like
NOT_PORT = {"db", "transactional", "indexes", "rules", "py"}


PORT_MODULES = ("backend.ports.store", "backend.ports.accounts")
PROTOCOLS = (Store, ReadModel, AccountStore, AccountAdmin)


def declared(protocol: type) -> set[str]:
    return {name for cls in protocol.__mro__ if cls.__module__ in PORT_MODULES
            for name, value in vars(cls).items() if callable(value) and not name.startswith("_")}


PORT = set().union(*(declared(p) for p in PROTOCOLS))


def store_calls() -> set[tuple[str, str]]:
    """(module, attribute) for every ``store.<attr>`` / ``self.store.<attr>`` outside the adapters."""
    found = set()
    for path in sorted([*(ROOT / "backend").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("backend/adapters/") or rel in ("backend/ports/store.py", "backend/ports/accounts.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute) or node.attr.startswith("_") or node.attr in NOT_PORT:
                continue
            owner = node.value
            name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", None)
            if name == "store":
                found.add((rel, node.attr))
    return found


def test_every_store_method_the_core_and_api_call_is_declared_by_the_port():
    undeclared = sorted((rel, attr) for rel, attr in store_calls() if attr not in PORT)

    assert undeclared == []


@pytest.mark.parametrize("adapter", [InMemoryStore, FirestoreStore])
@pytest.mark.parametrize("name", sorted(PORT))
def test_both_adapters_implement_every_port_method_with_its_parameters(adapter, name):
    protocol = next(p for p in PROTOCOLS if name in declared(p))
    want = list(inspect.signature(getattr(protocol, name)).parameters)
    got = list(inspect.signature(getattr(adapter, name)).parameters)

    assert got == want
