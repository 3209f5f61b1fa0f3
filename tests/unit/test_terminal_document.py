"""The boot document is a pure function of replicated data: inheritance block by block, defaults,
display servers in failover order, the monitor list rules, canonical bytes and hash; plus the iPXE
script, offline timing, MAC-derived names and the heartbeat rate limit."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from thinsync.model import kinds as k
from thinsync.model.types import normalise_mac
from thinsync.terminals import document
from thinsync.terminals.live import RateLimit
from thinsync.terminals.service import auto_name

MAC = "aa:bb:cc:dd:ee:01"
SERVING_A = {"name": "tm-a", "address": "10.0.0.1", "port": 2031}
SERVING_B = {"name": "tm-b", "address": "10.0.0.2", "port": 2032}
PAIRED = k.ServerList(
    auto_sync=True,
    primary=k.ServerEntry(name="tm-a", address="10.0.0.1"),
    secondary=k.ServerEntry(name="tm-b", address="10.0.0.2", port=2032),
    servers=[k.ServerEntry(name="tm-c", address="tm-c.plant", port=2040)],
).model_dump(mode="json")
ALONE = k.ServerList().model_dump(mode="json")


def terminal(**fields: Any) -> dict[str, Any]:
    """A terminal as stored: validated by the real model, dumped to JSON (without its name)."""
    body = k.Terminal(name="T1", hardware=k.Hardware(mac=MAC), **fields).model_dump(mode="json")
    del body["name"]
    return body


def group(**fields: Any) -> dict[str, Any]:
    body = k.TerminalGroup(name="line-1", **fields).model_dump(mode="json")
    del body["name"]
    return body


class Objects:
    """A lookup over in-memory objects, as the service's store lookup behaves (None when absent)."""

    def __init__(self, **kinds: Mapping[str, Mapping[str, Any]]) -> None:
        self.kinds = {kind.replace("_", "-"): dict(objs) for kind, objs in kinds.items()}
        self.asked: list[tuple[str, str]] = []

    def __call__(self, kind: str, name: str) -> Mapping[str, Any] | None:
        self.asked.append((kind, name))
        return self.kinds.get(kind, {}).get(name)


def display_server(name: str, address: str, priority: int = 100, **fields: Any) -> dict[str, Any]:
    body = k.DisplayServer(name=name, address=address, priority=priority, **fields).model_dump(mode="json")
    del body["name"]
    return body


def display_client(name: str, servers: list[str], **fields: Any) -> dict[str, Any]:
    body = k.DisplayClient(name=name, display_servers=servers, **fields).model_dump(mode="json")
    del body["name"]
    return body


def build(
    term: dict[str, Any],
    lookup: Any = None,
    server_list: dict[str, Any] | None = None,
    serving: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return document.build(
        "T1", term, lookup or Objects(), server_list if server_list is not None else PAIRED, serving or SERVING_A
    )


# ---------------------------------------------------------------------------- inheritance and defaults


def test_a_terminal_without_blocks_or_group_gets_the_defaults() -> None:
    doc = build(terminal())
    assert doc["firmware"] == ""
    assert doc["screens"] == []
    assert doc["options"] == k.TerminalOptions().model_dump(mode="json")
    assert doc["options"] == {"replaceable": True, "allow_shadow": True, "enforce_boot_priority": False}
    assert doc["connection_monitor"] == {"interval_s": 5, "ping_retry": 3, "ping_timeout_s": 1}
    assert doc["terminal"] == {
        "name": "T1",
        "mac": MAC,
        "secondary_mac": None,
        "model": "",
        "description": "",
        "group": None,
        "location": None,
    }
    assert doc["format"] == document.FORMAT


def test_every_block_the_terminal_leaves_unset_comes_from_its_group() -> None:
    lookup = Objects(
        terminal_groups={
            "line-1": group(
                firmware="fw-7",
                screens=[{"monitors": [{"width": 1280, "height": 1024}], "display_clients": []}],
                options={"replaceable": False, "allow_shadow": False, "enforce_boot_priority": True},
                monitor_list={"specify": True, "servers": ["10.9.9.9"]},
                connection_monitor={"interval_s": 2, "ping_retry": 0, "ping_timeout_s": 4},
            )
        }
    )
    doc = build(terminal(group="line-1"), lookup, server_list=ALONE)
    assert doc["firmware"] == "fw-7"
    assert doc["screens"] == [
        {"monitors": [{"width": 1280, "height": 1024, "refresh": 60, "rotation": 0}], "display_clients": []}
    ]
    assert doc["options"] == {"replaceable": False, "allow_shadow": False, "enforce_boot_priority": True}
    assert doc["connection_monitor"] == {"interval_s": 2, "ping_retry": 0, "ping_timeout_s": 4}
    assert doc["monitor_list"] == [{"name": "10.9.9.9", "address": "10.9.9.9", "port": 2031}]
    assert doc["terminal"]["group"] == "line-1"
    assert ("terminal-groups", "line-1") in lookup.asked


def test_inheritance_is_block_by_block_a_set_block_wins_whole() -> None:
    """A block the terminal sets replaces the group's block entirely (no field-by-field merge);
    the blocks it leaves unset still come from the group."""
    lookup = Objects(
        terminal_groups={
            "line-1": group(
                firmware="fw-group",
                options={"replaceable": False, "allow_shadow": False, "enforce_boot_priority": True},
                connection_monitor={"interval_s": 9, "ping_retry": 9, "ping_timeout_s": 9},
            )
        }
    )
    own = terminal(group="line-1", options={"allow_shadow": False}, firmware="fw-own")
    doc = build(own, lookup)
    # The terminal's options block: its own value plus the model's defaults, not the group's fields.
    assert doc["options"] == {"replaceable": True, "allow_shadow": False, "enforce_boot_priority": False}
    assert doc["firmware"] == "fw-own"
    # ... and what it left unset is the group's.
    assert doc["connection_monitor"] == {"interval_s": 9, "ping_retry": 9, "ping_timeout_s": 9}


def test_a_block_neither_sets_falls_back_to_the_default() -> None:
    lookup = Objects(terminal_groups={"line-1": group(firmware="fw-group")})
    doc = build(terminal(group="line-1"), lookup)
    assert doc["firmware"] == "fw-group"
    assert doc["options"] == k.TerminalOptions().model_dump(mode="json")
    assert doc["connection_monitor"] == k.ConnectionMonitor().model_dump(mode="json")
    assert doc["screens"] == []


def test_an_explicitly_empty_screen_list_on_the_terminal_is_not_inherited() -> None:
    lookup = Objects(terminal_groups={"line-1": group(screens=[{"display_clients": []}])})
    assert build(terminal(group="line-1"), lookup)["screens"] != []
    assert build(terminal(group="line-1", screens=[]), lookup)["screens"] == []


def test_a_missing_group_gives_the_defaults() -> None:
    doc = build(terminal(group="gone"), Objects())
    assert doc["options"] == k.TerminalOptions().model_dump(mode="json")
    assert doc["terminal"]["group"] == "gone"


def test_effective_blocks_directly() -> None:
    blocks = document.effective_blocks({"firmware": "x"}, {"firmware": "y", "screens": [{"a": 1}]})
    assert blocks["firmware"] == "x"
    assert blocks["screens"] == [{"a": 1}]
    assert blocks["monitor_list"] is None
    assert set(blocks) == set(document.BLOCKS)


# ---------------------------------------------------------------------------- screens and display servers


def screens_lookup() -> Objects:
    return Objects(
        display_clients={
            "hmi": display_client(
                "hmi",
                ["ds-low", "ds-high", "ds-gone", "ds-mid"],
                type="rds",
                app_link={"program": "C:/hmi.exe", "args": "-k"},
                resolution={"width": 1280, "height": 720},
                options={"instant_failover": True},
            ),
            "cam": display_client("cam", ["ds-cam"], type="camera"),
        },
        display_servers={
            # Priorities and names deliberately disagree with the failover order.
            "ds-low": display_server("ds-low", "10.1.0.3", priority=1, port=3390),
            "ds-high": display_server("ds-high", "10.1.0.1", priority=900, credentials="svc"),
            "ds-mid": display_server("ds-mid", "10.1.0.2", priority=500),
            "ds-cam": display_server("ds-cam", "10.2.0.1", type="camera", port=554),
        },
    )


def test_display_servers_are_kept_in_the_clients_failover_order() -> None:
    term = terminal(
        screens=[
            {"monitors": [{"width": 1920, "height": 1080}, {"width": 1024, "height": 768}], "display_clients": ["hmi"]},
            {"display_clients": ["cam", "hmi"]},
        ]
    )
    doc = build(term, screens_lookup())
    first, second = doc["screens"]
    assert [m["width"] for m in first["monitors"]] == [1920, 1024]
    (hmi,) = first["display_clients"]
    # The client's order, not priority or name order; a display server that does not exist is left out.
    assert [s["name"] for s in hmi["display_servers"]] == ["ds-low", "ds-high", "ds-mid"]
    assert hmi["display_servers"][0] == {
        "name": "ds-low",
        "type": "rds",
        "address": "10.1.0.3",
        "port": 3390,
        "priority": 1,
        "credentials": None,
    }
    assert hmi["display_servers"][1]["credentials"] == "svc"
    assert hmi["type"] == "rds"
    assert hmi["app_link"] == {"program": "C:/hmi.exe", "args": "-k", "dir": ""}
    assert hmi["resolution"] == {"width": 1280, "height": 720}
    assert hmi["options"]["instant_failover"] is True
    # Clients keep the screen's order too.
    assert [c["name"] for c in second["display_clients"]] == ["cam", "hmi"]
    assert second["display_clients"][0]["display_servers"][0]["port"] == 554


def test_screens_come_from_the_group_with_the_groups_clients() -> None:
    lookup = screens_lookup()
    lookup.kinds["terminal-groups"] = {"line-1": group(screens=[{"display_clients": ["hmi"]}])}
    doc = build(terminal(group="line-1"), lookup)
    assert [s["name"] for s in doc["screens"][0]["display_clients"][0]["display_servers"]] == [
        "ds-low",
        "ds-high",
        "ds-mid",
    ]


def test_a_missing_display_client_is_named_with_no_servers() -> None:
    doc = build(terminal(screens=[{"display_clients": ["nope"]}]), Objects())
    assert doc["screens"][0]["display_clients"] == [
        {"name": "nope", "type": None, "options": None, "app_link": None, "resolution": None, "display_servers": []}
    ]


# ---------------------------------------------------------------------------- monitor list


def test_with_auto_sync_on_the_monitor_list_is_every_server_of_the_list_in_order() -> None:
    doc = build(terminal(), server_list=PAIRED)
    assert doc["monitor_list"] == [
        {"name": "tm-a", "address": "10.0.0.1", "port": 2031},
        {"name": "tm-b", "address": "10.0.0.2", "port": 2032},
        {"name": "tm-c", "address": "tm-c.plant", "port": 2040},
    ]


def test_with_auto_sync_on_the_terminals_own_list_is_not_used() -> None:
    own = {"specify": True, "servers": ["192.168.5.5", "elsewhere"]}
    from_terminal = build(terminal(monitor_list=own), server_list=PAIRED)
    lookup = Objects(terminal_groups={"line-1": group(monitor_list=own)})
    from_group = build(terminal(group="line-1"), lookup, server_list=PAIRED)
    plain = build(terminal(), server_list=PAIRED)
    assert from_terminal["monitor_list"] == from_group["monitor_list"] == plain["monitor_list"]
    assert "192.168.5.5" not in json.dumps(from_terminal)
    # ... and the served document does not carry the unused list at all.
    assert document.finish(from_terminal)[0] == document.finish(plain)[0]


def test_with_auto_sync_on_the_serving_server_does_not_matter() -> None:
    a = build(terminal(), server_list=PAIRED, serving=SERVING_A)
    b = build(terminal(), server_list=PAIRED, serving=SERVING_B)
    assert document.finish(a) == document.finish(b)


def test_with_auto_sync_off_the_terminals_own_list_is_used() -> None:
    doc = build(terminal(monitor_list={"specify": True, "servers": ["10.5.0.1", "hmi-srv"]}), server_list=ALONE)
    assert doc["monitor_list"] == [
        {"name": "10.5.0.1", "address": "10.5.0.1", "port": 2031},
        {"name": "hmi-srv", "address": "hmi-srv", "port": 2031},
    ]


@pytest.mark.parametrize(
    "own",
    [None, {"specify": False, "servers": ["10.5.0.1"]}, {"specify": True, "servers": []}],
    ids=["none", "not-specified", "specified-but-empty"],
)
def test_with_auto_sync_off_and_no_list_the_serving_server_alone(own: dict[str, Any] | None) -> None:
    fields = {} if own is None else {"monitor_list": own}
    assert build(terminal(**fields), server_list=ALONE, serving=SERVING_B)["monitor_list"] == [SERVING_B]


def test_monitor_list_function_directly() -> None:
    assert document.monitor_list({}, {"auto_sync": False}, SERVING_A) == [SERVING_A]
    # A returned entry is a copy: changing it does not change the service's own record.
    entry = document.monitor_list({}, {"auto_sync": False}, SERVING_A)[0]
    entry["port"] = 1
    assert SERVING_A["port"] == 2031


# ---------------------------------------------------------------------------- canonical bytes and hash


def test_canonical_bytes_are_sorted_compact_utf8() -> None:
    assert (
        document.canonical({"b": 1, "a": [1, {"d": None, "c": "é"}]}) == '{"a":[1,{"c":"é","d":null}],"b":1}'.encode()
    )


def test_finish_adds_the_sha256_of_the_document_without_the_hash() -> None:
    doc = build(terminal())
    body, digest = document.finish(doc)
    parsed = json.loads(body)
    assert parsed["config_hash"] == digest
    without = {key: value for key, value in parsed.items() if key != "config_hash"}
    assert hashlib.sha256(document.canonical(without)).hexdigest() == digest
    assert body == document.canonical(parsed)  # canonical: re-encoding gives the same bytes
    assert b" " not in body and b"\n" not in body
    assert "config_hash" not in doc  # the input is not changed


def test_the_same_input_gives_the_same_bytes_every_time() -> None:
    term = terminal(screens=[{"display_clients": ["hmi"]}], description="line 1, left")
    first = document.finish(build(term, screens_lookup()))
    for _ in range(3):
        assert document.finish(build(json.loads(json.dumps(term)), screens_lookup())) == first


def shuffled(value: Any, rng: random.Random) -> Any:
    """The same JSON value with every object's keys in another insertion order."""
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {key: shuffled(value[key], rng) for key in keys}
    if isinstance(value, list):
        return [shuffled(item, rng) for item in value]
    return value


@given(st.integers(0, 2**32))
def test_equal_inputs_in_any_key_order_give_equal_bytes(seed: int) -> None:
    rng = random.Random(seed)
    term = terminal(
        group="line-1",
        screens=[{"display_clients": ["hmi", "cam"]}],
        connection_monitor={"interval_s": 3, "ping_retry": 2, "ping_timeout_s": 2},
    )
    lookup = screens_lookup()
    lookup.kinds["terminal-groups"] = {"line-1": group(firmware="fw")}
    expected = document.finish(build(term, lookup))
    other = Objects()
    other.kinds = shuffled(lookup.kinds, rng)
    got = document.finish(build(shuffled(term, rng), other, server_list=shuffled(PAIRED, rng)))
    assert got == expected


@pytest.mark.parametrize(
    "change",
    [
        lambda t, o: t.update(description="changed"),
        lambda t, o: t.update(connection_monitor={"interval_s": 6}),
        lambda t, o: o.kinds["display-servers"]["ds-mid"].update(address="10.1.0.99"),
        lambda t, o: o.kinds["display-clients"]["hmi"].update(display_servers=["ds-high", "ds-low"]),
    ],
    ids=["description", "timings", "display-server-address", "failover-order"],
)
def test_any_change_to_what_the_terminal_uses_changes_the_hash(change: Any) -> None:
    term = terminal(screens=[{"display_clients": ["hmi"]}])
    lookup = screens_lookup()
    _, before = document.finish(build(term, lookup))
    change(term, lookup)
    _, after = document.finish(build(term, lookup))
    assert after != before


def test_a_change_to_the_server_list_changes_the_hash_only_with_auto_sync_on() -> None:
    term = terminal()
    moved = json.loads(json.dumps(PAIRED))
    moved["secondary"]["address"] = "10.0.0.99"
    assert document.finish(build(term, server_list=moved))[1] != document.finish(build(term))[1]
    # With auto-sync off the list is not in the document: moving a server changes nothing.
    off, moved_off = {**PAIRED, "auto_sync": False}, {**moved, "auto_sync": False}
    assert document.finish(build(term, server_list=off)) == document.finish(build(term, server_list=moved_off))


# ---------------------------------------------------------------------------- iPXE script


def test_ipxe_script_starts_with_the_shebang_and_leads_to_the_configuration() -> None:
    body, digest = document.finish(build(terminal()))
    script = document.ipxe_script(MAC, "T1", digest).decode()
    lines = script.splitlines()
    assert lines[0] == "#!ipxe"
    assert f"/terminal/v1/{MAC}/config" in script
    assert digest in script and "T1" in script
    # Nothing server-specific: no scheme, host or port, so every server serves the same bytes.
    for specific in ("http://", "https://", "10.0.0.1", "127.0.0.1", "2031", "tm-a", "tm-b"):
        assert specific not in script, specific
    fetch = next(line for line in lines if line.startswith("imgfetch"))
    assert " /terminal/v1/" in fetch  # a path relative to the server that served the script
    assert document.ipxe_script(MAC, "T1", digest) == document.ipxe_script(MAC, "T1", digest)


# ---------------------------------------------------------------------------- offline timing


@pytest.mark.parametrize(
    ("monitor", "seconds"),
    [
        ({}, 21.0),
        (k.ConnectionMonitor().model_dump(), 21.0),
        ({"interval_s": 1, "ping_retry": 1, "ping_timeout_s": 1}, 3.0),
        ({"interval_s": 10, "ping_retry": 0, "ping_timeout_s": 5}, 15.0),
        ({"interval_s": 2, "ping_retry": 4, "ping_timeout_s": 3}, 13.0),
    ],
)
def test_offline_after_is_the_lapsed_connection_monitor_timings(monitor: dict[str, Any], seconds: float) -> None:
    assert document.offline_after(monitor) == seconds


# ---------------------------------------------------------------------------- MAC-derived names


@pytest.mark.parametrize(
    ("mask", "name"),
    [
        ("T-{mac}", "T-AABBCCDDEE01"),
        ("{mac}", "AABBCCDDEE01"),
        ("TC{mac}", "TCAABBCCDDEE01"),
        ("LN-{mac}", "LN-AABBCCDDEE01"),
        # Too long for a terminal name (15 at most): the default mask instead.
        ("PLANT-{mac}", "T-AABBCCDDEE01"),
        ("KIOSK123{mac}", "T-AABBCCDDEE01"),
    ],
)
def test_auto_name_is_derived_from_the_mac(mask: str, name: str) -> None:
    assert auto_name(mask, MAC) == name


@given(st.binary(min_size=6, max_size=6), st.sampled_from(["T-{mac}", "{mac}", "AB{mac}", "ABCDEFGH{mac}"]))
def test_auto_name_is_a_valid_terminal_name_the_same_for_every_spelling_of_the_mac(raw: bytes, mask: str) -> None:
    colon = ":".join(f"{b:02x}" for b in raw)
    spellings = [colon, colon.upper().replace(":", "-"), raw.hex(), f"{raw.hex()[:4]}.{raw.hex()[4:8]}.{raw.hex()[8:]}"]
    names = {auto_name(mask, normalise_mac(s)) for s in spellings}
    assert len(names) == 1
    (name,) = names
    k.Terminal(name=name, hardware=k.Hardware(mac=colon))  # a valid terminal name (the model would refuse otherwise)
    assert raw.hex().upper() in name


def test_distinct_macs_give_distinct_names() -> None:
    names = {auto_name("T-{mac}", normalise_mac(f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}")) for i in range(2000)}
    assert len(names) == 2000


# ---------------------------------------------------------------------------- rate limit


def test_rate_limit_allows_a_burst_then_refuses() -> None:
    limit = RateLimit(per_second=5.0, burst=10.0)
    allowed = [limit.allow("10.0.0.1", 100.0) for _ in range(15)]
    assert allowed == [True] * 10 + [False] * 5


def test_rate_limit_refills_at_the_rate() -> None:
    limit = RateLimit(per_second=5.0, burst=10.0)
    for _ in range(10):
        assert limit.allow("x", 100.0)
    assert not limit.allow("x", 100.0)
    assert not limit.allow("x", 100.1)  # half a token
    assert limit.allow("x", 100.25)  # 0.5 + 0.75 tokens
    assert not limit.allow("x", 100.25)
    # A long pause refills up to the burst, never beyond it.
    assert sum(limit.allow("x", 1000.0) for _ in range(20)) == 10


def test_rate_limit_keys_are_independent() -> None:
    limit = RateLimit(per_second=1.0, burst=2.0)
    assert limit.allow("a", 0.0) and limit.allow("a", 0.0)
    assert not limit.allow("a", 0.0)
    assert limit.allow("b", 0.0)  # another address still gets through


def test_a_steady_sender_within_the_rate_is_never_refused() -> None:
    limit = RateLimit(per_second=5.0, burst=10.0)
    assert all(limit.allow("mac", 1000.0 + i * 0.2) for i in range(500))


def test_refused_requests_do_not_spend_tokens_and_the_bucket_still_refills() -> None:
    limit = RateLimit(per_second=1.0, burst=1.0)
    assert limit.allow("a", 0.0)
    # Hammering without pause keeps it closed; the first token returns a second after the last grant.
    assert not any(limit.allow("a", t / 100) for t in range(1, 100))
    assert limit.allow("a", 1.0)


def test_rate_limit_memory_is_bounded() -> None:
    limit = RateLimit(per_second=1.0, burst=1.0)
    for i in range(100_050):
        limit.allow(f"k{i}", 0.0)
    assert len(limit._buckets) <= 100_001
