"""Link frames, chunked messages and the JSON encoding underneath them."""

from __future__ import annotations

import json
import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st

from thinsync import jsonfmt
from thinsync.errors import Invalid
from thinsync.model.registry import KINDS
from thinsync.model.validate import SINGLETON_NAME, validate_body
from thinsync.sync import protocol as p

KEY = secrets.token_hex(32)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_jsonfmt_reads_back_what_it_writes_and_matches_the_standard_library(value: object) -> None:
    text = jsonfmt.dumps(value, sort_keys=True)
    assert jsonfmt.loads(text) == json.loads(text) == json.loads(json.dumps(value))
    assert json.loads(text) == value or value != value  # noqa: PLR0124 (floats compare by value)


def test_jsonfmt_falls_back_for_what_orjson_refuses() -> None:
    odd = {"s": "x\ud800y", 1: "non-string key"}
    assert jsonfmt.loads(jsonfmt.dumps(odd)) == {"s": "x\ud800y", "1": "non-string key"}
    assert jsonfmt.dumpb({"n": 10**30}) == b'{"n":1000000000000000000000000000000}'
    with pytest.raises(ValueError):
        jsonfmt.loads("{not json")


@given(json_values)
def test_encoded_json_is_embedded_as_the_text_it_holds(value: object) -> None:
    text = jsonfmt.dumps(value, sort_keys=True)
    assert jsonfmt.dumps({"v": jsonfmt.Encoded(text)}) == '{"v":' + text + "}"
    # the standard library's fallback (a value orjson refuses next to it) reads the text
    assert json.loads(jsonfmt.dumps({"v": jsonfmt.Encoded(text), "n": 10**30})) == {"v": json.loads(text), "n": 10**30}


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**40])
def test_integers_beyond_64_bits_never_enter_the_configuration(value: int) -> None:
    spec = KINDS["license"]
    with pytest.raises(Invalid, match="within ±2\\^63") as caught:
        validate_body(spec, SINGLETON_NAME, {"document": {"limits": {"terminals": value}}})
    assert caught.value.details["fields"] == [
        {"field": "document.limits.terminals", "message": "numbers must lie within ±2^63"}
    ]
    assert validate_body(spec, SINGLETON_NAME, {"document": {"limits": {"terminals": 2**63 - 1}}})


def pair() -> tuple[p.FrameCodec, p.FrameCodec]:
    return p.FrameCodec(KEY, "conn-1", "c"), p.FrameCodec(KEY, "conn-1", "s")


def test_frames_round_trip_in_order_and_refuse_replay_tampering_and_other_connections() -> None:
    client, server = pair()
    first = client.encode({"t": "ping", "time": 1.5, "name": "tm-ä"})
    second = client.encode({"t": "ping", "time": 2.5})
    assert server.decode(first) == {"t": "ping", "time": 1.5, "name": "tm-ä"}
    with pytest.raises(p.FrameError, match="out of order"):
        server.decode(first)  # replayed
    assert server.decode(second)["time"] == 2.5
    client2, server2 = pair()
    frame = client2.encode({"t": "ping", "time": 3})
    with pytest.raises(p.FrameError, match="signature"):
        server2.decode(frame.replace('"time":3', '"time":4'))
    other = p.FrameCodec(KEY, "conn-2", "s")
    with pytest.raises(p.FrameError, match="signature"):
        other.decode(p.FrameCodec(KEY, "conn-1", "c").encode({"t": "ping"}))


def test_large_messages_travel_in_chunks_and_are_put_back_together() -> None:
    sets = [{"origin": "n", "seq": i, "summary": "änderung " * 40, "items": [{"k": i}]} for i in range(6000)]
    message = {"t": "changes", "sets": sets}
    bodies = p.chunks(message)
    assert len(bodies) > 1 and all(len(b) <= p.CHUNK_BYTES * 2 for b in bodies)
    client, server = pair()
    assembler = p.Assembler()
    results = [assembler.feed(server.decode(client.encode_json(body))) for body in bodies]
    assert results[:-1] == [None] * (len(bodies) - 1)
    assert results[-1] == message


def test_small_messages_are_one_frame_and_chunks_out_of_order_are_refused() -> None:
    assert p.chunks({"t": "ping"}) == [b'{"t":"ping"}']
    bodies = p.chunks({"t": "changes", "sets": ["x" * p.CHUNK_BYTES]})
    assembler = p.Assembler()
    with pytest.raises(p.FrameError, match="out of order"):
        assembler.feed(jsonfmt.loads(bodies[1]))
