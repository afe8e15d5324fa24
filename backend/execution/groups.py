"""Multi-leg execution groups (seed 000): kept as the import path of the ``backend.execution.group``
package, which holds the domain one module per concern (see its docstring). Every name importers
use (``from backend.execution import groups as g``, ``from backend.execution.groups import ...``)
is re-exported here unchanged."""
from __future__ import annotations

from backend.execution.group import *  # noqa: F401,F403  (the package's public names)
from backend.execution.group import __all__  # noqa: F401
