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


# --------------------------------------------------------------------------------------------
# Issue 11: the layers' import boundaries
# --------------------------------------------------------------------------------------------

COMPOSITION_ROOT = "backend/bootstrap.py"
# Modules outside the adapters and the composition root that may still import an adapter, and why.
ADAPTER_IMPORT_EXCEPTIONS = {
    "backend/api/history.py": "the Firestore history reader (moves behind the store's read model, issue 11)",
}


def all_imports(source: str):
    """Every absolute import, at any depth (lazy imports inside functions count too)."""
    return imported_modules(source)


def python_files(*tops: str):
    for top in tops:
        for path in sorted((ROOT / top).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("rel", list(python_files("backend/domain")))
def test_the_domain_imports_nothing_outside_the_domain(rel):
    outside = [m for m in all_imports((ROOT / rel).read_text())
               if m.startswith("backend") and not m.startswith("backend.domain")]
    assert outside == [], f"{rel} imports {outside}: the domain depends on nothing but itself"


@pytest.mark.parametrize("rel", [r for r in python_files("backend", "functions")
                                 if not r.startswith("backend/adapters/") and r != COMPOSITION_ROOT])
def test_adapters_are_imported_only_by_the_composition_root(rel):
    adapters = [m for m in all_imports((ROOT / rel).read_text()) if m.startswith("backend.adapters")]
    if rel in ADAPTER_IMPORT_EXCEPTIONS:
        return
    assert adapters == [], (f"{rel} imports {adapters}: build adapters in {COMPOSITION_ROOT} "
                            "(scripts/, bench/ and tests/ are programs of their own and may)")


def test_every_adapter_import_exception_is_still_needed():
    stale = [rel for rel in ADAPTER_IMPORT_EXCEPTIONS
             if (ROOT / rel).exists()
             and not any(m.startswith("backend.adapters") for m in all_imports((ROOT / rel).read_text()))]
    assert stale == [], f"remove from ADAPTER_IMPORT_EXCEPTIONS: {stale}"
