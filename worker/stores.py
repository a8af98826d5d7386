"""One store (engine + pool) per worker process and database URL, shared by the task and the
reaper thread, and forgotten in a forked pool child."""

from __future__ import annotations

import os
import threading

from lab.store import open_store
from lab.store.base import Store

_STORES: dict[str, Store] = {}
_STORES_LOCK = threading.Lock()


def store_for(url: str) -> Store:
    """One store (engine + pool) per process and URL, opened on first use."""
    with _STORES_LOCK:
        if url not in _STORES:
            _STORES[url] = open_store(url)
        return _STORES[url]


def _forget_inherited_stores() -> None:
    """In a forked pool child: drop the parent's pools without closing its connections (closing
    would talk on sockets the parent still uses); the child opens its own on first use."""
    global _STORES_LOCK
    _STORES_LOCK = threading.Lock()  # another parent thread may have held it at fork time
    for store in _STORES.values():
        engine = getattr(store, "engine", None)
        if engine is not None:
            engine.dispose(close=False)
    _STORES.clear()


os.register_at_fork(after_in_child=_forget_inherited_stores)
