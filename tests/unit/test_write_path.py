"""The one write path: a failed change leaves no trace; the log always replays to the object tables."""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from thinsync.clock import FakeClock, SystemClock
from thinsync.errors import Conflict, Invalid, ThinsyncError
from thinsync.model.registry import KINDS
from thinsync.model.validate import ref_targets, unique_keys
from thinsync.store import ChangeRequest, Op, Store
from thinsync.store.stamps import EMPTY, State, apply


@contextmanager
def fresh_store(clock: Any = None) -> Iterator[Store]:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "t.db", clock or SystemClock(), create=True)
        store.create_identity("tm-test")
        try:
            yield store
        finally:
            store.close()


def snapshot(store: Store) -> dict[str, Any]:
    def read(conn: Any) -> dict[str, Any]:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3").fetchall()
            for table in ("objects", "refs", "uniques", "changes", "change_objects")
        }

    return store.read(read)


def replay(store: Store) -> dict[tuple[str, str], State]:
    states: dict[tuple[str, str], State] = {}
    for change in store.changes_since(0, limit=100_000):
        for item in change.items:
            key = (item.kind, item.name)
            states[key] = apply(states.get(key, EMPTY), change.stamp, item.set, item.delete)
    return states


def check_invariants(store: Store) -> None:
    rows = store.read(lambda c: c.execute("SELECT kind, name, vals, stamps, tomb, live FROM objects").fetchall())
    replayed = replay(store)
    assert len(rows) == len(replayed)
    live: dict[tuple[str, str], dict[str, Any]] = {}
    for kind, name, vals, stamps, tomb, is_live in rows:
        state = replayed[(kind, name)]
        assert json.loads(vals) == dict(state.vals) and json.loads(stamps) == dict(state.stamps)
        assert tomb == state.tomb and bool(is_live) == state.live
        if is_live:
            live[(kind, name)] = json.loads(vals)
    # references resolve and unique keys are unique among live objects, at every step
    expected_refs, expected_uniques = set(), set()
    seen_keys: dict[tuple[str, str, str], str] = {}
    for (kind, name), body in live.items():
        for target in ref_targets(KINDS[kind], body):
            assert target in live or target == (kind, name), f"{kind}/{name} -> {target}"
            expected_refs.add((target[0], target[1], kind, name))
        for label, value in unique_keys(KINDS[kind], body):
            assert (kind, label, value) not in seen_keys, f"{value} used twice"
            seen_keys[(kind, label, value)] = name
            expected_uniques.add((kind, label, value, name))
    assert set(store.read(lambda c: c.execute("SELECT * FROM refs").fetchall())) == expected_refs
    assert set(store.read(lambda c: c.execute("SELECT * FROM uniques").fetchall())) == expected_uniques


MACS = ["00:00:00:00:00:01", "00-00-00-00-00-02", "000000000003", "not-a-mac"]
names = st.sampled_from(["a", "b", "c"])
put_server = st.builds(
    lambda n, ip: Op("display-servers", f"ds-{n}", "put", {"address": f"10.0.0.{ip}"}), names, st.integers(1, 3)
)
put_client = st.builds(
    lambda n, ds: Op("display-clients", f"dc-{n}", "put", {"display_servers": [f"ds-{d}" for d in ds]}),
    names,
    st.lists(names, max_size=2, unique=True),
)
put_terminal = st.builds(
    lambda n, mac, dcs: Op(
        "terminals",
        f"t-{n}",
        "put",
        {"hardware": {"mac": mac}, "screens": [{"display_clients": [f"dc-{d}" for d in dcs]}]},
    ),
    names,
    st.sampled_from(MACS),
    st.lists(names, max_size=2, unique=True),
)
patch_terminal = st.builds(
    lambda n, d: Op("terminals", f"t-{n}", "patch", {"description": d}), names, st.text(max_size=5)
)
delete = st.builds(
    lambda kind, n: Op(
        kind, f"{ {'display-servers': 'ds', 'display-clients': 'dc', 'terminals': 't'}[kind] }-{n}", "delete"
    ),
    st.sampled_from(["display-servers", "display-clients", "terminals"]),
    names,
)
ops = st.one_of(put_server, put_client, put_terminal, patch_terminal, delete)
requests = st.lists(st.lists(ops, min_size=1, max_size=3), min_size=1, max_size=25)


@settings(max_examples=60)
@given(requests)
def test_failed_changes_leave_no_trace_and_the_log_replays_to_the_tables(batch: list[list[Op]]) -> None:
    with fresh_store() as store:
        for ops_ in batch:
            before = snapshot(store)
            try:
                result = store.commit_sync(ChangeRequest("test", "step", tuple(ops_)))
            except ThinsyncError as exc:
                event(f"refused: {type(exc).__name__}")
                assert snapshot(store) == before
            else:
                after = snapshot(store)
                event("committed" if result.change else "no change")
                if result.change is None:
                    assert after == before
                else:
                    assert len(after["changes"]) == len(before["changes"]) + 1
                    assert {(i.kind, i.name) for i in result.change.items} <= {(o.kind, o.name) for o in ops_}
            check_invariants(store)


def test_a_change_set_fails_whole_when_its_last_item_is_invalid() -> None:
    with fresh_store() as store:
        request = ChangeRequest(
            "test",
            "two objects, the second breaks a reference",
            (
                Op("display-servers", "ds-1", "put", {"address": "10.0.0.1"}),
                Op("display-clients", "dc-1", "put", {"display_servers": ["ds-1", "ds-missing"]}),
            ),
        )
        before = snapshot(store)
        with pytest.raises(Invalid, match="ds-missing"):
            store.commit_sync(request)
        assert snapshot(store) == before


def test_a_job_that_dies_mid_transaction_leaves_no_trace() -> None:
    with fresh_store() as store:
        before = snapshot(store)

        def half_written(conn: Any) -> None:
            conn.execute(
                "INSERT INTO objects (kind, name, vals, stamps, version, live, created) "
                "VALUES ('terminals', 'x', '{}', '{}', 'v', 1, 'v')"
            )
            conn.execute(
                "INSERT INTO changes (origin, seq, hlc, author, summary, items, applied_at) "
                "VALUES ('o', 1, 1, 'a', 's', '[]', 0)"
            )
            raise RuntimeError("power cut")

        with pytest.raises(RuntimeError):
            store.writer.run(half_written)
        assert snapshot(store) == before


def test_group_commit_keeps_each_change_atomic() -> None:
    with fresh_store() as store:
        futures = []
        for i in range(60):
            mac = "00:00:00:00:00:01" if i % 3 == 0 else f"00:00:00:00:01:{i:02x}"
            op = Op("terminals", f"t{i}", "put", {"hardware": {"mac": mac}})
            futures.append(store.writer.submit(lambda conn, op=op: store._commit(conn, ChangeRequest("t", "s", (op,)))))
        outcomes = [f.exception() is None for f in futures]
        # t0 takes the shared MAC; t3, t6, ... are refused; everything else is written
        assert outcomes == [i == 0 or i % 3 != 0 for i in range(60)]
        assert store.writer.commits < 60  # they really were batched
        assert store.count("terminals") == sum(outcomes)
        check_invariants(store)


def test_concurrent_writers_cannot_both_pass_a_uniqueness_check() -> None:
    with fresh_store() as store:
        errors: list[Exception] = []

        def claim(name: str) -> None:
            try:
                store.commit_sync(
                    ChangeRequest("t", "s", (Op("terminals", name, "put", {"hardware": {"mac": "aa:aa:aa:aa:aa:aa"}}),))
                )
            except Conflict as exc:
                errors.append(exc)

        threads = [threading.Thread(target=claim, args=(f"t{i}",)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert store.count("terminals") == 1 and len(errors) == 15


def test_local_write_is_stamped_above_the_object_even_when_the_clock_went_back() -> None:
    clock = FakeClock(1_800_000_000.0)
    with fresh_store(clock) as store:
        first = store.commit_sync(ChangeRequest("t", "s", (Op("access-groups", "g", "put", {"description": "1"}),)))
        clock.set(1_700_000_000.0)
        second = store.commit_sync(ChangeRequest("t", "s", (Op("access-groups", "g", "put", {"description": "2"}),)))
        assert first.change and second.change
        assert second.change.stamp > first.change.stamp
        assert store.get("access-groups", "g").vals["description"] == "2"


def test_unchanged_put_writes_nothing_and_changed_put_stamps_only_changed_fields() -> None:
    with fresh_store() as store:
        body = {"address": "10.0.0.1", "description": "x"}
        store.commit_sync(ChangeRequest("t", "s", (Op("display-servers", "d", "put", body),)))
        again = store.commit_sync(ChangeRequest("t", "s", (Op("display-servers", "d", "put", body),)))
        assert again.change is None
        changed = store.commit_sync(
            ChangeRequest("t", "s", (Op("display-servers", "d", "put", {**body, "description": "y"}),))
        )
        assert changed.change and changed.change.items[0].set == {"description": "y"}
        stamps = store.get("display-servers", "d").stamps
        assert stamps["description"] > stamps["address"]


def test_delete_then_recreate_is_live_with_only_new_values() -> None:
    with fresh_store() as store:
        store.commit_sync(ChangeRequest("t", "s", (Op("access-groups", "g", "put", {"description": "old"}),)))
        store.commit_sync(ChangeRequest("t", "s", (Op("access-groups", "g", "delete"),)))
        assert not store.get("access-groups", "g").live
        store.commit_sync(ChangeRequest("t", "s", (Op("access-groups", "g", "put", {}),)))
        state = store.get("access-groups", "g")
        assert state.live and state.vals["description"] == ""
        assert len(store.history("access-groups", "g")) == 3


def test_the_same_object_twice_in_one_change_is_refused() -> None:
    with fresh_store() as store:
        op = Op("access-groups", "g", "put", {})
        with pytest.raises(Invalid, match="twice"):
            store.commit_sync(ChangeRequest("t", "s", (op, op)))


def test_a_subscriber_that_names_kinds_hears_only_commits_touching_them() -> None:
    with fresh_store() as store:
        everything: list[list[str]] = []
        servers: list[list[str]] = []
        store.subscribe(lambda changes: everything.append([i.name for c in changes for i in c.items]))
        store.subscribe(
            lambda changes: servers.append([i.name for c in changes for i in c.items]), kinds=("display-servers",)
        )
        store.commit_sync(ChangeRequest("t", "user", (Op("users", "u-1", "put", {}),)))
        store.commit_sync(
            ChangeRequest(
                "t",
                "both",
                (Op("users", "u-2", "put", {}), Op("display-servers", "ds-1", "put", {"address": "10.0.0.1"})),
            )
        )
        assert everything == [["u-1"], ["u-2", "ds-1"]]
        assert servers == [["u-2", "ds-1"]]  # the whole commit, once it touches a watched kind
