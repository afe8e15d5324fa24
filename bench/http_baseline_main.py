"""The function of ``functions/main.py`` with the read path as it was before issue 17, for the HTTP
benchmark's same-run comparison (``bench/http_latency.py --baseline``). Not deployed.

What it turns off, nothing else: the engine's batched pre-claim read (the engine falls back to its
sequential reads when the store offers no ``read_pre_claim``: ``get_intent``, the account binding's
``get_all`` (+ the default account, + the connection), the risk documents, then the slot count —
each its own round trip), and with it the claim's and the finish's use of documents already read.
``risk_snapshot`` goes back to a ``get_all`` followed by the count.
"""
from __future__ import annotations

import sys
from pathlib import Path

_FUNCTIONS = Path(__file__).resolve().parents[1] / "functions"
if str(_FUNCTIONS) not in sys.path:
    sys.path.insert(0, str(_FUNCTIONS))

from backend.adapters import firestore_store as _fs  # noqa: E402  (through functions/backend, as deployed)


def _sequential_risk_snapshot(self, tenant_id, account_key, trade_day, account_id=None):  # noqa: ANN001, ANN202
    paths = ["ops/execution", f"tenants/{tenant_id}/config/risk", self._exposure_ref(tenant_id, account_key).path]
    docs = self.get_all(paths)
    ops, cfg, exp = (docs[p][0] for p in paths)
    trades = self._count_slots(tenant_id, trade_day)
    account_trades = None if account_id is None else self._count_account_slots(tenant_id, trade_day, account_id)
    return _fs.snapshot_from_docs(ops or {}, cfg, trades_today=trades, exposure=_fs._exposure(exp or {}),
                                  account_trades_today=account_trades)


_fs.FirestoreStore.read_pre_claim = None  # the engine's check: not callable -> the sequential path
_fs.FirestoreStore.risk_snapshot = _sequential_risk_snapshot

from main import api  # noqa: E402,F401  (functions/main.py: the same function)
