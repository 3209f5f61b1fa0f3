"""The lookups read once (`rows.LoadedLookup`, used for large snapshot merges) answer as the per-query
lookups of the writer's transaction do, dead objects and all, for the kinds it loads and the others."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from thinsync.clock import FakeClock
from thinsync.store import ChangeRequest, Op, Store, rows

MAC = "02:00:00:00:00:01"


def test_loaded_lookup_answers_like_the_transaction_lookup(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.db", FakeClock(1_800_000_000.0), create=True)
    store.create_identity("tm-a")
    try:
        store.commit_sync(
            ChangeRequest(
                "t",
                "setup",
                (
                    Op("display-servers", "ds-1", "put", {"address": "10.0.0.1"}),
                    Op("display-servers", "ds-2", "put", {"address": "10.0.0.2"}),
                    Op("display-clients", "dc-1", "put", {"display_servers": ["ds-1"]}),
                    Op("terminals", "t-1", "put", {"hardware": {"mac": MAC}}),
                ),
            )
        )
        store.commit_sync(ChangeRequest("t", "delete", (Op("display-servers", "ds-2", "delete"),)))

        def compare(conn: sqlite3.Connection) -> None:
            # display servers are loaded up front, the other kinds looked up one at a time
            per_query, loaded = rows.TxLookup(conn), rows.LoadedLookup(conn, {"display-servers"})
            for key in [
                ("display-servers", "ds-1"),
                ("display-servers", "ds-2"),
                ("display-servers", "nope"),
                ("display-clients", "dc-1"),
                ("terminals", "t-1"),
            ]:
                assert loaded.exists(*key) == per_query.exists(*key), key
            assert [loaded.exists(*k) for k in [("display-servers", "ds-1"), ("display-servers", "ds-2")]] == [
                True,
                False,
            ]
            for value in (MAC, "02:00:00:00:00:99"):
                assert loaded.holders("terminals", "MAC address", value) == per_query.holders(
                    "terminals", "MAC address", value
                )
            assert loaded.holders("terminals", "MAC address", MAC) == ["t-1"]

        store.read(compare)
    finally:
        store.close()
