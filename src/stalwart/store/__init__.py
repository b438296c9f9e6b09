"""The message store: every message and its life cycle, in SQLite or PostgreSQL.

Public face: :class:`Store` (open, write), :class:`Persister` (the persistence
subscriber), the read API in :mod:`stalwart.store.queries`, and
:func:`upgrade` (migrations). Tables are in :mod:`stalwart.store.schema`.
"""

from stalwart.store._store import Store, StoreDataError
from stalwart.store.migrate import current_revision, head_revision, upgrade
from stalwart.store.persist import PERSIST_QUEUE, Persister, PersistOptions, PersistStats

__all__ = [
    "PERSIST_QUEUE",
    "PersistOptions",
    "PersistStats",
    "Persister",
    "Store",
    "StoreDataError",
    "current_revision",
    "head_revision",
    "upgrade",
]
