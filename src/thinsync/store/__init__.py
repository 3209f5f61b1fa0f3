"""L2: SQLite (the only importer of sqlite3): schema, migrations, change log, HLC, stamps."""

from thinsync.store.changes import ChangeRequest, ChangeSet, CommitResult, Item, Op, OpResult
from thinsync.store.hlc import wall_iso
from thinsync.store.stamps import State
from thinsync.store.store import Identity, Store

__all__ = [
    "ChangeRequest",
    "ChangeSet",
    "CommitResult",
    "Identity",
    "Item",
    "Op",
    "OpResult",
    "State",
    "Store",
    "wall_iso",
]
