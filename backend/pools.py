"""Process-wide thread pools, one per name, made on first use (issue 17: calls sent alongside a
request's own round trip — the Firestore store's count aggregations, the token verifier's account
lookups). Made after a fork, never before it: the warm-up and requests run in the worker."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

_POOLS: dict[str, ThreadPoolExecutor] = {}
_LOCK = threading.Lock()


def shared_pool(name: str, max_workers: int) -> ThreadPoolExecutor:
    """The pool named ``name`` (its threads are named after it), made once per process."""
    pool = _POOLS.get(name)
    if pool is None:
        with _LOCK:
            pool = _POOLS.get(name)
            if pool is None:
                pool = _POOLS[name] = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name)
    return pool
