"""Validity after merge computed two ways gives the same answer: per object from the writer's transaction
(`conflicts.problems_of`, used for pages of changes) and for the whole store at once from the reference
and unique-key indexes (`conflicts.all_problems`, used for snapshot merges and large repairs). The store
holds states a merge can create but a local write refuses: references to deleted or absent objects, one
MAC or card id on several objects, dead objects still holding keys."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from thinsync import jsonfmt
from thinsync.clock import FakeClock
from thinsync.store import Store, conflicts, rows
from thinsync.store.hlc import make_stamp
from thinsync.store.stamps import State

DS = ["ds-1", "ds-2", "ds-3"]
DC = ["dc-1", "dc-2", "dc-3"]
GROUPS = ["g-1", "g-2"]
MACS = ["02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"]
CARDS = ["card-1", "card-2"]


def body_of(kind: str, draw: Any) -> dict[str, Any]:
    if kind == "display-servers":
        return {"address": "10.0.0.1"}
    if kind == "display-clients":
        return {"display_servers": draw(st.lists(st.sampled_from(DS), max_size=2))}
    if kind == "terminal-groups":
        return {"description": "g"}
    if kind == "users":
        return {"card_id": draw(st.sampled_from(CARDS))}
    hardware = {"mac": draw(st.sampled_from(MACS))}
    if draw(st.booleans()):
        hardware["secondary_mac"] = draw(st.sampled_from(MACS))
    body: dict[str, Any] = {"hardware": hardware}
    if draw(st.booleans()):
        body["screens"] = [{"display_clients": draw(st.lists(st.sampled_from(DC), min_size=1, max_size=2))}]
    if draw(st.booleans()):
        body["group"] = draw(st.sampled_from(GROUPS))
    return body


@st.composite
def stores(draw: Any) -> list[tuple[str, str, dict[str, Any], bool]]:
    """Objects as (kind, name, body, deleted): a random mix that leaves some invalid."""
    names = {
        "display-servers": DS,
        "display-clients": DC,
        "terminal-groups": GROUPS,
        "terminals": ["t-1", "t-2", "t-3", "t-4"],
        "users": ["u-1", "u-2", "u-3"],
    }
    out = []
    for kind, pool in names.items():
        for name in draw(st.lists(st.sampled_from(pool), unique=True)):
            out.append((kind, name, body_of(kind, draw), draw(st.integers(0, 4)) == 0))
    return out


def write_rows(conn: sqlite3.Connection, objects: list[tuple[str, str, dict[str, Any], bool]]) -> None:
    """Store states directly, as a merge would (no validation), with their index rows."""
    writes = rows.ObjectWrites(conn)
    stamp, later = make_stamp(1, "r0"), make_stamp(2, "r0")
    for kind, name, body, deleted in objects:
        state = State(vals=body, stamps={f: stamp for f in body}, tomb=later if deleted else None)
        writes.write(kind, name, state, stamp)
    writes.flush()


def per_object(conn: sqlite3.Connection) -> dict[tuple[str, str], list[str]]:
    lookup = rows.TxLookup(conn)
    found = {}
    for kind, name, vals, live in conn.execute("SELECT kind, name, vals, live FROM objects"):
        if live:
            problems = conflicts.problems_of(lookup, kind, name, jsonfmt.loads(vals))
            if problems:
                found[(kind, name)] = problems
    return found


@settings(max_examples=150, deadline=None)
@given(stores())
def test_the_whole_store_check_gives_what_the_per_object_check_gives(
    objects: list[tuple[str, str, dict[str, Any], bool]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "s.db", FakeClock(1_800_000_000.0), create=True)
        store.close()
        conn = sqlite3.connect(Path(tmp) / "s.db", isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            write_rows(conn, objects)
            assert conflicts.all_problems(conn) == per_object(conn)
        finally:
            conn.close()


def test_the_whole_store_check_names_each_break(tmp_path: Path) -> None:
    """A dangling reference, a reference to a deleted object and a shared MAC, worded as the console shows."""
    store = Store.open(tmp_path / "s.db", FakeClock(1_800_000_000.0), create=True)
    store.close()
    conn = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        write_rows(
            conn,
            [
                ("display-servers", "ds-1", {"address": "10.0.0.1"}, True),
                ("display-clients", "dc-1", {"display_servers": ["ds-1", "ds-2"]}, False),
                ("terminals", "t-1", {"hardware": {"mac": MACS[0]}}, False),
                ("terminals", "t-2", {"hardware": {"mac": MACS[0]}}, False),
                ("terminals", "t-3", {"hardware": {"mac": MACS[0]}}, True),
            ],
        )
        assert conflicts.all_problems(conn) == {
            ("display-clients", "dc-1"): [
                "refers to display server 'ds-1', which does not exist",
                "refers to display server 'ds-2', which does not exist",
            ],
            ("terminals", "t-1"): [f"MAC address {MACS[0]} is also used by terminal 't-2'"],
            ("terminals", "t-2"): [f"MAC address {MACS[0]} is also used by terminal 't-1'"],
        }
    finally:
        conn.close()
