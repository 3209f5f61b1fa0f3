"""Hybrid logical clock: monotonic whatever the wall clock does, and ordered after remote stamps."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from thinsync.clock import FakeClock
from thinsync.store.hlc import HLC, hlc_from_ms, hlc_ms, make_stamp, stamp_hlc, stamp_origin

# A wall clock that jumps forwards and backwards (NTP steps, a wrong BIOS clock, a VM restore).
jumps = st.lists(st.floats(min_value=-86_400, max_value=86_400, allow_nan=False), min_size=1, max_size=60)


@given(jumps)
def test_values_strictly_increase_whatever_the_wall_clock_does(moves: list[float]) -> None:
    clock = FakeClock()
    hlc = HLC(clock)
    previous = hlc.now()
    for move in moves:
        clock.set(clock.time() + move)
        value = hlc.now()
        assert value > previous
        previous = value


@given(jumps)
def test_value_is_never_behind_the_wall_clock(moves: list[float]) -> None:
    clock = FakeClock()
    hlc = HLC(clock)
    for move in moves:
        clock.set(clock.time() + move)
        assert hlc_ms(hlc.now()) >= int(clock.time() * 1000)


@given(st.integers(min_value=0, max_value=2**62), st.floats(min_value=0, max_value=2e9, allow_nan=False))
def test_after_observing_a_remote_value_the_next_local_value_is_above_it(remote: int, wall: float) -> None:
    hlc = HLC(FakeClock(wall))
    hlc.observe(remote)
    assert hlc.now() > remote


@given(st.integers(min_value=0, max_value=2**62))
def test_floor_is_respected(floor: int) -> None:
    hlc = HLC(FakeClock())
    assert hlc.now(floor) >= floor


def test_counter_advances_within_one_millisecond() -> None:
    clock = FakeClock(1_700_000_000.0)
    hlc = HLC(clock)
    values = [hlc.now() for _ in range(1000)]
    assert values == sorted(set(values))
    assert hlc_ms(values[0]) == 1_700_000_000_000
    assert values[-1] - values[0] == 999


def test_restart_continues_above_the_highest_stamp_in_the_log() -> None:
    clock = FakeClock(1_700_000_000.0)
    before = HLC(clock).now() + 5000
    clock.set(1_600_000_000.0)  # the clock went back a long way while the server was down
    restarted = HLC(clock, last=before)
    assert restarted.now() > before


@given(
    st.integers(min_value=0, max_value=2**64 - 1),
    st.integers(min_value=0, max_value=2**64 - 1),
    st.sampled_from(["a1.1", "b2.7", "ffff.10"]),
    st.sampled_from(["a1.1", "b2.7", "ffff.10"]),
)
def test_stamp_strings_order_like_hlc_then_origin(h1: int, h2: int, o1: str, o2: str) -> None:
    s1, s2 = make_stamp(h1, o1), make_stamp(h2, o2)
    assert (s1 < s2) == ((h1, o1) < (h2, o2))
    assert stamp_hlc(s1) == h1 and stamp_origin(s1) == o1


def test_ms_round_trip() -> None:
    assert hlc_ms(hlc_from_ms(123456789)) == 123456789
