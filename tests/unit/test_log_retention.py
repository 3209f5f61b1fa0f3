"""Log retention drops old change sets every member holds, and nothing else."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from thinsync.clock import FakeClock
from thinsync.store import ChangeRequest, Op, Store


def test_truncating_keeps_objects_and_vector_and_only_drops_covered_old_changes() -> None:
    clock = FakeClock(1_800_000_000.0)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "t.db", clock, create=True)
        store.create_identity("tm-a")
        try:
            for i in range(5):
                store.commit_sync(ChangeRequest("t", "old", (Op("access-groups", f"g{i}", "put", {}),)))
            clock.advance(10 * 86400)
            store.commit_sync(ChangeRequest("t", "new", (Op("access-groups", "g0", "put", {"description": "x"}),)))
            vector = store.vector()
            objects_before = store.export()[0]
            origin = next(iter(vector))
            # A member that holds only the first three old change sets limits what may go.
            dropped = asyncio.run(store.truncate_log(clock.time() - 86400, {origin: 3}))
            assert dropped == 3
            assert store.export()[0] == objects_before and store.vector() == vector
            assert [c.seq for c in store.changes_since(0, 100)] == [4, 5, 6]
            assert len(store.history("access-groups", "g0")) == 1  # only the new change is left
            assert store.lacks_history({}) and not store.lacks_history({origin: 3})
        finally:
            store.close()
