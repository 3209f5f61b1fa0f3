"""Every bad-input class gets a 4xx with our `{"error", "message"}` body, and nothing is written:
the change log and every object stay exactly as they were (checked with a snapshot each time)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.api import assert_error, nothing_written, seed, snapshot
from tests.helpers.inprocess import InProcess

pytestmark = pytest.mark.anyio

JSON = {"Content-Type": "application/json"}
MIB = 1024 * 1024
T1, T2, T9 = "/api/v1/terminals/T1", "/api/v1/terminals/T2", "/api/v1/terminals/T9"
DS9, DC9, EVE, U9 = (
    "/api/v1/display-servers/ds9",
    "/api/v1/display-clients/dc9",
    "/api/v1/admins/eve",
    "/api/v1/users/u9",
)
LOGIN, SETTINGS, SERVERS = "/api/v1/login", "/api/v1/settings", "/api/v1/server-list"
MAC9 = {"hardware": {"mac": "aa:bb:cc:dd:ee:09"}}
CODES = {
    400: "bad_request",
    404: "not_found",
    409: "conflict",
    412: "precondition_failed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
}


def raw(data: bytes, content_type: str = "application/json") -> dict[str, Any]:
    return {"content": data, "headers": {"Content-Type": content_type}}


def j(body: Any) -> dict[str, Any]:
    return {"json": body}


def mac(value: Any, **more: Any) -> dict[str, Any]:
    return j({"hardware": {"mac": value, **more}})


def case(case_id: str, method: str, path: str, request: dict[str, Any], status: int, *words: str) -> Any:
    """One bad request: the status it must get and words its message must contain."""
    return pytest.param(method, path, request, status, words, id=case_id)


CASES = [
    # malformed JSON, or not JSON at all
    case("json-truncated", "PUT", T9, raw(b'{"hardware": '), 400, "JSON"),
    case("json-nan", "PUT", T9, raw(b'{"hardware": {"mac": NaN}}'), 400, "JSON"),
    case("json-empty", "PUT", T9, raw(b""), 400, "body"),
    case("json-not-utf8", "PUT", T9, raw(b"\xff\xfe{}"), 400, "JSON"),
    case("json-too-deep", "PUT", T9, raw(b"[" * 100_000), 400, "JSON"),
    case("json-patch", "PATCH", T1, raw(b"{'single': 'quotes'}"), 400, "JSON"),
    case("json-singleton", "PUT", SETTINGS, raw(b"{,}"), 400, "JSON"),
    case("json-login", "POST", LOGIN, raw(b'{"username": "admin", '), 400, "JSON"),
    case("type-text-plain", "PUT", T9, raw(b'{"hardware": {"mac": "aa:bb:cc:dd:ee:09"}}', "text/plain"), 415, "json"),
    case("type-merge-on-put", "PUT", T9, raw(b"{}", "application/merge-patch+json"), 415, "application/json"),
    # wrong types
    case("type-array-body", "PUT", T9, j([MAC9]), 422, "JSON object"),
    case("type-patch-array", "PATCH", T1, j(["x"]), 422, "object"),
    case("type-hardware", "PUT", T9, j({"hardware": "aa:bb:cc:dd:ee:09"}), 422, "hardware"),
    case("type-description", "PUT", T9, j({**MAC9, "description": 5}), 422, "description"),
    case("type-port-string", "PUT", DS9, j({"address": "h", "port": "3389"}), 422, "port"),
    case("type-port-bool", "PUT", DS9, j({"address": "h", "port": True}), 422, "port"),
    case("type-port-float", "PUT", DS9, j({"address": "h", "port": 3389.5}), 422, "port"),
    case("type-port-range", "PUT", DS9, j({"address": "h", "port": 70000}), 422, "port"),
    case("type-bool-string", "PUT", T9, j({**MAC9, "options": {"replaceable": "yes"}}), 422, "options.replaceable"),
    case("type-list-string", "PUT", DC9, j({"display_servers": "ds1"}), 422, "display_servers"),
    case("type-enum", "PUT", DC9, j({"type": "telnet"}), 422, "type"),
    case("type-rotation", "PUT", T9, j({**MAC9, "screens": [{"monitors": [{"rotation": 45}]}]}), 422, "rotation"),
    case("type-singleton", "PATCH", SERVERS, j({"auto_sync": "false"}), 422, "auto_sync"),
    case("type-settings", "PUT", SETTINGS, j({"replacement": 5}), 422, "replacement"),
    case("type-login", "POST", LOGIN, j({"username": 5, "password": "x"}), 422, "username"),
    case("text-too-long", "PUT", T9, j({**MAC9, "description": "x" * 1025}), 422, "description"),
    # unknown, missing and write-only fields
    case("unknown-top", "PUT", T9, j({**MAC9, "colour": "red"}), 422, "colour", "not a known field"),
    case("unknown-nested", "PUT", T9, mac("aa:bb:cc:dd:ee:09", vendor="x"), 422, "hardware.vendor"),
    case("unknown-patch", "PATCH", T1, j({"colour": "red"}), 422, "colour"),
    case("unknown-singleton", "PUT", SETTINGS, j({"colour": "red"}), 422, "colour"),
    case("unknown-login", "POST", LOGIN, j({"username": "admin", "password": "x", "otp": 1}), 422, "otp"),
    case("stored-secret", "PUT", EVE, j({"password_hash": "$argon2id$" + "x" * 40}), 422, "set 'password'"),
    case("missing-mac", "PUT", T9, j({"description": "no hardware"}), 422, "hardware", "required"),
    case("missing-password", "PUT", EVE, j({"security_groups": ["viewers"]}), 422, "password: is required"),
    case("short-password", "PUT", EVE, j({"password": "short"}), 422, "password"),
    case("bad-pin", "PUT", U9, j({"pin": "12ab"}), 422, "PIN"),
    # invalid names
    case("name-16-chars", "PUT", "/api/v1/terminals/abcdefghijklmnop", j(MAC9), 422, "15"),
    case("name-underscore", "PUT", "/api/v1/terminals/T_9", j(MAC9), 422, "terminal name"),
    case("name-dot", "PUT", "/api/v1/terminals/T.9", j(MAC9), 422, "terminal name"),
    case("name-space", "PUT", "/api/v1/terminals/T%209", j(MAC9), 422, "name"),
    case("name-unicode", "PUT", "/api/v1/display-servers/caf%C3%A9", j({"address": "h"}), 422, "name"),
    case("name-dash-first", "PUT", "/api/v1/display-servers/-ds", j({"address": "h"}), 422, "name"),
    case("name-64-chars", "PUT", "/api/v1/access-groups/" + "a" * 64, j({}), 422, "63"),
    case("name-rename", "PUT", T1, j({"name": "T7", **MAC9}), 422, "renamed"),
    case("name-in-ref", "PUT", DC9, j({"display_servers": ["bad name"]}), 422, "display_servers"),
    case("name-host", "PUT", DS9, j({"address": "no spaces allowed"}), 422, "address"),
    # invalid MACs
    case("mac-short", "PUT", T9, mac("aa:bb:cc:dd:ee"), 422, "MAC"),
    case("mac-long", "PUT", T9, mac("aa:bb:cc:dd:ee:ff:00"), 422, "MAC"),
    case("mac-not-hex", "PUT", T9, mac("gg:hh:ii:jj:kk:ll"), 422, "MAC"),
    case("mac-mixed-separators", "PUT", T9, mac("aa:bb-cc:dd:ee:ff"), 422, "MAC"),
    case("mac-empty", "PUT", T9, mac(""), 422, "MAC"),
    case("mac-number", "PUT", T9, mac(187723572702975), 422, "hardware.mac"),
    case("mac-secondary", "PUT", T9, mac("aa:bb:cc:dd:ee:09", secondary_mac="zz"), 422, "secondary_mac"),
    case("mac-patch", "PATCH", T1, mac("aa:bb:cc"), 422, "MAC"),
    # broken references
    case("ref-screen", "PUT", T9, j({**MAC9, "screens": [{"display_clients": ["nope"]}]}), 422, "'nope'", "not exist"),
    case("ref-group", "PUT", T9, j({**MAC9, "group": "nope"}), 422, "terminal group 'nope'"),
    case("ref-location", "PUT", T9, j({**MAC9, "location": "nope"}), 422, "location 'nope'"),
    case("ref-server", "PUT", DC9, j({"display_servers": ["ds1", "nope"]}), 422, "display server 'nope'"),
    case("ref-patch", "PATCH", T1, j({"screens": [{"display_clients": ["dc1", "nope"]}]}), 422, "'nope'"),
    case("ref-access-group", "PUT", U9, j({"access_groups": ["nope"]}), 422, "access group 'nope'"),
    case("ref-security-group", "PUT", EVE, j({"password": "password-123", "security_groups": ["x"]}), 422, "group 'x'"),
    case("ref-delete-client", "DELETE", "/api/v1/display-clients/dc1", {}, 409, "terminal 'T1'"),
    case("ref-delete-server", "DELETE", "/api/v1/display-servers/ds1", {}, 409, "display client 'dc1'"),
    case("ref-delete-group", "DELETE", "/api/v1/terminal-groups/g1", {}, 409, "terminal 'T1'"),
    # duplicate names and MACs
    case("dup-mac", "PUT", T9, mac("AA-BB-CC-DD-EE-01"), 409, "aa:bb:cc:dd:ee:01", "T1"),
    case("dup-mac-secondary", "PUT", T9, mac("aa:bb:cc:dd:ee:09", secondary_mac="aabb.ccdd.ee02"), 409, "'T2'"),
    case("dup-mac-patch", "PATCH", T2, mac("aabbccddee01"), 409, "already used"),
    case("dup-mac-own", "PUT", T9, mac("aa:bb:cc:dd:ee:09", secondary_mac="AA:BB:CC:DD:EE:09"), 422, "differ"),
    case("dup-card", "PUT", U9, j({"card_id": "card-1"}), 409, "card-1", "'u1'"),
    case("dup-failover", "PUT", DC9, j({"display_servers": ["ds1", "ds1"]}), 422, "only once"),
    case(
        "dup-server-names",
        "PUT",
        SERVERS,
        j({"primary": {"name": "tm-a", "address": "a"}, "secondary": {"name": "tm-a", "address": "b"}}),
        422,
        "own name",
    ),
    # objects that are not there, and what a singleton cannot be
    case("missing-get", "GET", T9, {}, 404, "T9"),
    case("missing-patch", "PATCH", T9, j({"description": "x"}), 404, "T9"),
    case("missing-delete", "DELETE", T9, {}, 404, "T9"),
    case("auto-sync-alone", "PUT", SERVERS, j({"auto_sync": True}), 422, "primary"),
]


@pytest.fixture
async def seeded(inproc: InProcess) -> AsyncIterator[InProcess]:
    await seed(inproc)
    yield inproc


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "words"), CASES)
async def test_bad_input_is_refused_and_nothing_is_written(
    seeded: InProcess, method: str, path: str, kwargs: dict[str, Any], status: int, words: tuple[str, ...]
) -> None:
    with nothing_written(seeded):
        if path == LOGIN:
            response = await seeded.client.request(method, path, **kwargs)
        else:
            response = await seeded.call(method, path, **kwargs)
    assert_error(response, status, CODES[status], *words)


def test_case_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("header", ['"0000000000000000.0.1"', "0000000000000000.0.1", 'W/"stale"'])
async def test_stale_if_match_is_412_for_put_patch_delete(seeded: InProcess, header: str) -> None:
    current = (await seeded.call("GET", T2)).json()["version"]
    stale = {"If-Match": header}
    with nothing_written(seeded):
        put = await seeded.call("PUT", T2, json=MAC9, headers=stale)
        patch = await seeded.call("PATCH", T2, json={"description": "x"}, headers=stale)
        delete = await seeded.call("DELETE", T2, headers=stale)
        missing = await seeded.call("PUT", T9, json=MAC9, headers={"If-Match": current})
        singleton = await seeded.call("PATCH", "/api/v1/settings", json={"replacement": "automatic"}, headers=stale)
    for response in (put, patch, delete):
        assert_error(response, 412, "precondition_failed", "T2", current)
    assert_error(missing, 412, "precondition_failed", "does not exist")
    assert_error(singleton, 412, "precondition_failed")


async def test_if_match_goes_stale_after_another_write(seeded: InProcess) -> None:
    read = await seeded.call("GET", T2)
    await seeded.call("PATCH", T2, json={"description": "someone else"})
    with nothing_written(seeded):
        response = await seeded.call("PUT", T2, json=read.json(), headers={"If-Match": read.headers["etag"]})
    assert_error(response, 412, "precondition_failed", "changed since you read it")


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/api/v1/nope", {}, 404),
        ("GET", "/api/v1/terminals/T1/extra", {}, 404),
        ("GET", "/no/such/page", {}, 404),
        ("PATCH", "/api/v1/terminals", {"json": {}}, 405),
        ("POST", "/api/v1/terminals/T1", {"json": MAC9}, 405),
        ("DELETE", "/api/v1/settings", {}, 405),
        ("POST", "/healthz", {}, 405),
        ("PUT", "/api/v1/history", {"json": {}}, 405),
        ("GET", "/api/v1/login", {}, 405),
        ("GET", "/api/v1/terminals?limit=0", {}, 422),
        ("GET", "/api/v1/terminals?limit=1001", {}, 422),
        ("GET", "/api/v1/terminals?limit=ten", {}, 422),
        ("GET", "/api/v1/terminals?cursor=" + "x" * 300, {}, 422),
        ("GET", "/api/v1/history", {}, 422),
        ("GET", "/api/v1/history?kind=nope&name=x", {}, 404),
        ("GET", "/api/v1/history?kind=terminals&name=never", {}, 404),
        ("GET", "/api/v1/events?limit=0", {}, 422),
    ],
)
async def test_routing_and_query_errors_use_our_error_shape(
    seeded: InProcess, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    with nothing_written(seeded):
        response = await seeded.call(method, path, **kwargs)
    body = assert_error(response, status)
    assert "detail" not in body
    if status == 422:
        assert body["error"] == "invalid" and body["fields"], body
        assert any(f["field"].startswith("query.") for f in body["fields"])
    if status == 405:
        assert body["error"] == "method_not_allowed" and method in body["message"]


@pytest.mark.parametrize("path", [T9, LOGIN, SETTINGS])
async def test_bodies_over_1_mib_get_413(seeded: InProcess, path: str) -> None:
    padding = b"{" + b" " * (MIB - 1) + b"}"  # 1 MiB + 1 byte of valid JSON
    method = "POST" if path.endswith("login") else "PUT"
    with nothing_written(seeded):
        response = await seeded.call(method, path, content=padding, headers=JSON)
    assert_error(response, 413, "too_large", "limit")


async def test_streamed_body_without_length_over_the_limit_gets_413(seeded: InProcess) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"description": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'", "hardware": {"mac": "aa:bb:cc:dd:ee:09"}}'

    with nothing_written(seeded):
        response = await seeded.call("PUT", T9, content=chunks(), headers=JSON)
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "too_large")


async def test_body_of_exactly_1_mib_is_read(seeded: InProcess) -> None:
    body = b'{"hardware": {"mac": "aa:bb:cc:dd:ee:09"}}'
    padded = body + b" " * (MIB - len(body))
    response = await seeded.call("PUT", T9, content=padded, headers=JSON)
    assert response.status_code == 201, response.text


async def test_body_limit_is_a_setting(tmp_path: Path) -> None:
    node = InProcess.create(tmp_path / "data", max_body_bytes=200)
    try:
        small = await node.call("PUT", "/api/v1/access-groups/ag1", json={"description": "x" * 100})
        assert small.status_code == 201, small.text
        with nothing_written(node):
            big = await node.call("PUT", "/api/v1/access-groups/ag2", json={"description": "x" * 200})
        assert_error(big, 413, "too_large", "200 bytes")
    finally:
        await node.aclose()


async def test_nothing_written_notices_a_write(seeded: InProcess) -> None:
    """The snapshot helper itself can fail: a successful write changes it."""
    before = snapshot(seeded)
    await seeded.call("PATCH", T2, json={"description": "changed"})
    after = snapshot(seeded)
    assert after != before and after.changes == before.changes + 1
    with pytest.raises(AssertionError, match="change log"), nothing_written(seeded):
        await seeded.call("PATCH", T2, json={"description": "changed again"})
