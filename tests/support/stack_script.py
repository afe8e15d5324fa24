"""scripts/stack.py loaded as a module (it is a script, not a package), once per test process."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from tests.support.emulators import REPO_ROOT


def load_stack() -> ModuleType:
    if "exec_stack" in sys.modules:
        return sys.modules["exec_stack"]
    spec = importlib.util.spec_from_file_location("exec_stack", Path(REPO_ROOT) / "scripts/stack.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["exec_stack"] = module
    spec.loader.exec_module(module)
    return module
