"""The per-field merge is a pure function: commutative, associative, idempotent; order never matters."""

from __future__ import annotations

import itertools
from functools import reduce

from hypothesis import given
from hypothesis import strategies as st

from thinsync.store.stamps import EMPTY, State, apply, merge, merge_change

ORIGINS = ["n1.1", "n2.1", "n3.2"]
FIELDS = ["a", "b", "c"]
stamps = st.builds(lambda h, o: f"{h:016x}.{o}", st.integers(0, 40), st.sampled_from(ORIGINS))
values = st.one_of(st.none(), st.integers(-3, 3), st.text(max_size=3), st.lists(st.integers(0, 2), max_size=2))
changes = st.tuples(stamps, st.dictionaries(st.sampled_from(FIELDS), values, max_size=3), st.booleans()).filter(
    lambda c: c[1] or c[2]
)


def state_of(change: tuple[str, dict[str, object], bool]) -> State:
    return apply(EMPTY, *change)


def canon(state: State) -> tuple[object, ...]:
    return (sorted(state.vals.items(), key=repr), sorted(state.stamps.items()), state.tomb)


@given(changes, changes)
def test_commutative(x: tuple, y: tuple) -> None:  # type: ignore[type-arg]
    a, b = state_of(x), state_of(y)
    assert canon(merge(a, b)) == canon(merge(b, a))


@given(changes, changes, changes)
def test_associative(x: tuple, y: tuple, z: tuple) -> None:  # type: ignore[type-arg]
    a, b, c = state_of(x), state_of(y), state_of(z)
    assert canon(merge(merge(a, b), c)) == canon(merge(a, merge(b, c)))


@given(changes, changes)
def test_idempotent(x: tuple, y: tuple) -> None:  # type: ignore[type-arg]
    a = merge(state_of(x), state_of(y))
    assert canon(merge(a, a)) == canon(a)
    assert canon(merge(a, state_of(y))) == canon(a)


@given(st.lists(changes, min_size=1, max_size=5))
def test_every_delivery_order_gives_the_same_state(batch: list) -> None:  # type: ignore[type-arg]
    results = {repr(canon(reduce(lambda s, c: apply(s, *c), order, EMPTY))) for order in itertools.permutations(batch)}
    assert len(results) == 1


def test_higher_stamp_wins_per_field() -> None:
    s = apply(EMPTY, "0000000000000001.n1.1", {"a": 1, "b": 1})
    s = apply(s, "0000000000000003.n2.1", {"b": 2})
    s = apply(s, "0000000000000002.n1.1", {"a": 3, "b": 3})  # late arrival: wins a, loses b
    assert dict(s.vals) == {"a": 3, "b": 2}
    assert s.version == "0000000000000003.n2.1"


def test_delete_wins_over_older_fields_and_a_later_update_revives() -> None:
    s = apply(EMPTY, "0000000000000001.n1.1", {"a": 1})
    deleted = apply(s, "0000000000000005.n2.1", {}, delete=True)
    assert not deleted.live
    stale_update = apply(deleted, "0000000000000004.n1.1", {"a": 2})
    assert not stale_update.live  # stamped before the delete: lost to it
    revived = apply(deleted, "0000000000000006.n1.1", {"a": 3})
    assert revived.live and revived.vals["a"] == 3


def test_equal_stamps_with_different_values_settle_the_same_everywhere() -> None:
    left = apply(EMPTY, "0000000000000001.n1.1", {"a": "x"})
    right = apply(EMPTY, "0000000000000001.n1.1", {"a": "y"})
    assert canon(merge(left, right)) == canon(merge(right, left))


def test_empty_state_is_not_live_and_has_no_version() -> None:
    assert not EMPTY.live and EMPTY.version == ""


@given(st.lists(changes, max_size=4), changes)
def test_merge_change_is_merge_with_the_change(history: list, change: tuple) -> None:  # type: ignore[type-arg]
    """The replication hot path's one-pass merge gives `merge`'s state, and says whether it moved."""
    before = reduce(merge, [state_of(c) for c in history], EMPTY)
    stamp, fields, delete = change
    after, changed = merge_change(before, stamp, fields, delete)
    incoming = State(vals=dict(fields), stamps={f: stamp for f in fields}, tomb=stamp if delete else None)
    expected = merge(before, incoming)
    assert after == expected
    assert changed == (expected != before)
