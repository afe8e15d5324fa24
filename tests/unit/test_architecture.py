"""The functional core imports nothing from Firebase, Google Cloud or alpaca-py; only adapters do."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("firebase_admin", "firebase_functions", "google.cloud", "google.api_core", "google.auth", "alpaca")
ADAPTER_DIRS = ("backend/adapters/",)
ADAPTER_FILES = ("backend/api/firebase_auth.py",)


def core_files():
    for path in sorted((ROOT / "backend").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(ADAPTER_DIRS) or rel in ADAPTER_FILES:
            continue
        yield rel


def imported_modules(source: str):
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


@pytest.mark.parametrize("rel", list(core_files()))
def test_core_module_imports_no_framework(rel):
    bad = [m for m in imported_modules((ROOT / rel).read_text()) if m.startswith(FORBIDDEN)]
    assert bad == [], f"{rel} imports {bad}: move that code into backend/adapters/"


def test_adapters_are_not_imported_at_core_module_top_level():
    """Core modules may reach an adapter only lazily (inside a function), e.g. the default paper broker."""
    for rel in core_files():
        tree = ast.parse((ROOT / rel).read_text())
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("backend.adapters"):
                raise AssertionError(f"{rel} imports {node.module} at module level")
