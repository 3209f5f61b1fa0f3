"""The configuration API of DESIGN §8, in process: CRUD for every kind, If-Match, paging, MACs,
references, singletons, history, and the system routes (/healthz, /metrics, OpenAPI)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.api import MINIMAL, assert_error, seed, snapshot
from tests.helpers.inprocess import InProcess
from thinsync.errors import Invalid
from thinsync.model.registry import COLLECTIONS, KINDS, PUBLIC_KINDS, SINGLETONS
from thinsync.store import ChangeRequest, Op

pytestmark = pytest.mark.anyio

MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


def test_minimal_bodies_cover_every_collection_kind() -> None:
    assert set(MINIMAL) == set(COLLECTIONS)
    assert set(COLLECTIONS) | set(SINGLETONS) == set(PUBLIC_KINDS)


@pytest.mark.parametrize("kind", sorted(MINIMAL))
async def test_every_kind_put_patch_delete_lifecycle(inproc: InProcess, kind: str) -> None:
    path = f"/api/v1/{kind}/obj-1"
    body = MINIMAL[kind]

    created = await inproc.call("PUT", path, json=body)
    assert created.status_code == 201, created.text
    obj = created.json()
    assert obj["name"] == "obj-1" and isinstance(obj["version"], str) and obj["version"]
    assert created.headers["etag"] == f'"{obj["version"]}"'

    read = await inproc.call("GET", path)
    assert read.status_code == 200 and read.json() == obj

    replaced = await inproc.call("PUT", path, json={**body, "description": "replaced"})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["description"] == "replaced" and replaced.json()["version"] > obj["version"]

    patched = await inproc.call("PATCH", path, json={"description": "patched"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["description"] == "patched"

    listed = await inproc.call("GET", f"/api/v1/{kind}")
    assert listed.status_code == 200
    assert "obj-1" in [item["name"] for item in listed.json()["items"]]

    deleted = await inproc.call("DELETE", path)
    assert deleted.status_code == 204 and deleted.content == b""
    assert_error(await inproc.call("GET", path), 404, "not_found", "obj-1")
    listed = await inproc.call("GET", f"/api/v1/{kind}")
    assert "obj-1" not in [item["name"] for item in listed.json()["items"]]

    again = await inproc.call("PUT", path, json=body)
    assert again.status_code == 201, again.text


async def test_terminal_needs_only_name_and_mac_and_gets_defaults(inproc: InProcess) -> None:
    response = await inproc.call("PUT", "/api/v1/terminals/T1", json={"hardware": {"mac": "aa:bb:cc:dd:ee:01"}})
    assert response.status_code == 201, response.text
    obj = response.json()
    assert obj["name"] == "T1"
    assert obj["hardware"] == {"model": "", "mac": "aa:bb:cc:dd:ee:01", "secondary_mac": None}
    assert obj["description"] == "" and obj["group"] is None and obj["screens"] is None
    # Only replicated data plus the version: nothing node-local.
    assert set(obj) == {"name", "version", *KINDS["terminals"].fields}


@pytest.mark.parametrize(
    "spelling",
    [
        "AA:BB:CC:DD:EE:0F",
        "aa-bb-cc-dd-ee-0f",
        "AA-BB-CC-DD-EE-0F",
        "aabb.ccdd.ee0f",
        "AABBCCDDEE0F",
        " aa:bb:cc:dd:ee:0f ",
    ],
)
async def test_mac_in_any_common_spelling_is_stored_canonically(inproc: InProcess, spelling: str) -> None:
    body = {"hardware": {"mac": spelling, "secondary_mac": spelling.replace("0f", "10").replace("0F", "10")}}
    response = await inproc.call("PUT", "/api/v1/terminals/T1", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["hardware"]["mac"] == "aa:bb:cc:dd:ee:0f"
    assert response.json()["hardware"]["secondary_mac"] == "aa:bb:cc:dd:ee:10"
    stored = inproc.store.get("terminals", "T1").vals["hardware"]
    assert stored["mac"] == "aa:bb:cc:dd:ee:0f" and stored["secondary_mac"] == "aa:bb:cc:dd:ee:10"


@pytest.mark.parametrize("name", ["A", "T-1", "123456789012345", "lobby-east-07"])
async def test_terminal_names_up_to_15_letters_digits_dashes(inproc: InProcess, name: str) -> None:
    response = await inproc.call("PUT", f"/api/v1/terminals/{name}", json={"hardware": {"mac": "02:00:00:00:00:01"}})
    assert response.status_code == 201, response.text
    assert response.json()["name"] == name


async def test_put_replaces_the_whole_object(inproc: InProcess) -> None:
    full = {"hardware": {"mac": "aa:bb:cc:dd:ee:01", "model": "T600"}, "description": "lobby", "firmware": "1.2"}
    assert (await inproc.call("PUT", "/api/v1/terminals/T1", json=full)).status_code == 201
    replaced = await inproc.call("PUT", "/api/v1/terminals/T1", json={"hardware": {"mac": "aa:bb:cc:dd:ee:01"}})
    assert replaced.status_code == 200
    assert replaced.json()["description"] == "" and replaced.json()["firmware"] is None
    assert replaced.json()["hardware"]["model"] == ""


async def test_put_with_identical_body_is_200_and_writes_nothing(inproc: InProcess) -> None:
    body = {"hardware": {"mac": "aa:bb:cc:dd:ee:01"}, "description": "same"}
    first = await inproc.call("PUT", "/api/v1/terminals/T1", json=body)
    before = snapshot(inproc)
    # Sending back what was read (name and version included) is the same object.
    second = await inproc.call("PUT", "/api/v1/terminals/T1", json=first.json())
    assert second.status_code == 200 and second.json() == first.json()
    assert snapshot(inproc) == before


async def test_successful_write_appends_one_change_set(inproc: InProcess) -> None:
    before = snapshot(inproc)
    response = await inproc.call("PUT", "/api/v1/display-servers/ds1", json={"address": "10.0.0.1"})
    assert response.status_code == 201
    after = snapshot(inproc)
    assert after.changes == before.changes + 1 and after != before
    assert after.objects["display-servers"]["ds1"][0] == response.json()["version"]
    change = inproc.store.changes_since(before.last_change)[-1]
    assert [(i.kind, i.name) for i in change.items] == [("display-servers", "ds1")] and change.author == "admin"


@pytest.mark.parametrize("content_type", ["application/json", "application/merge-patch+json"])
async def test_patch_is_a_json_merge_patch(inproc: InProcess, content_type: str) -> None:
    body = {"hardware": {"mac": "aa:bb:cc:dd:ee:01", "model": "T600"}, "description": "lobby", "firmware": "1.2"}
    await inproc.call("PUT", "/api/v1/terminals/T1", json=body)
    patch = {"hardware": {"model": "T700"}, "firmware": None, "options": {"allow_shadow": False}}
    response = await inproc.call("PATCH", "/api/v1/terminals/T1", json=patch, headers={"Content-Type": content_type})
    assert response.status_code == 200, response.text
    obj = response.json()
    assert obj["hardware"] == {"model": "T700", "mac": "aa:bb:cc:dd:ee:01", "secondary_mac": None}
    assert obj["firmware"] is None and obj["description"] == "lobby"
    assert obj["options"] == {"replaceable": True, "allow_shadow": False, "enforce_boot_priority": False}
    assert (await inproc.call("GET", "/api/v1/terminals/T1")).json() == obj


@pytest.mark.parametrize("style", ["quoted", "bare", "weak"])
async def test_if_match_with_current_version_succeeds(inproc: InProcess, style: str) -> None:
    created = await inproc.call("PUT", "/api/v1/display-servers/ds1", json={"address": "10.0.0.1"})
    version = created.json()["version"]
    header = {"quoted": f'"{version}"', "bare": version, "weak": f'W/"{version}"'}[style]
    got = await inproc.call("GET", "/api/v1/display-servers/ds1")
    assert got.headers["etag"] == f'"{version}"'

    put = await inproc.call(
        "PUT", "/api/v1/display-servers/ds1", json={"address": "10.0.0.2"}, headers={"If-Match": header}
    )
    assert put.status_code == 200, put.text
    version = put.json()["version"]
    header = {"quoted": f'"{version}"', "bare": version, "weak": f'W/"{version}"'}[style]
    patch = await inproc.call("PATCH", "/api/v1/display-servers/ds1", json={"port": 3390}, headers={"If-Match": header})
    assert patch.status_code == 200, patch.text
    version = patch.json()["version"]
    header = {"quoted": f'"{version}"', "bare": version, "weak": f'W/"{version}"'}[style]
    delete = await inproc.call("DELETE", "/api/v1/display-servers/ds1", headers={"If-Match": header})
    assert delete.status_code == 204, delete.text


async def test_list_pages_with_limit_and_cursor(inproc: InProcess) -> None:
    names = [f"ds{i:02d}" for i in range(25)]
    for name in reversed(names):
        assert (
            await inproc.call("PUT", f"/api/v1/display-servers/{name}", json={"address": "10.0.0.1"})
        ).status_code == 201
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        response = await inproc.call("GET", "/api/v1/display-servers", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"items", "next"}
        assert len(page["items"]) <= 10
        seen += [item["name"] for item in page["items"]]
        pages += 1
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == names and pages == 3


async def test_list_default_page_is_1000_items(inproc: InProcess) -> None:
    ops = [Op("access-groups", f"ag{i:04d}", "put", {}) for i in range(1001)]
    await inproc.server.services.config.write("test", "bulk", ops)
    first = (await inproc.call("GET", "/api/v1/access-groups")).json()
    assert len(first["items"]) == 1000 and first["next"] == "ag0999"
    second = (await inproc.call("GET", "/api/v1/access-groups", params={"cursor": first["next"]})).json()
    assert [item["name"] for item in second["items"]] == ["ag1000"] and second["next"] is None


async def test_references_must_exist_and_block_deletes_in_use(inproc: InProcess) -> None:
    await seed(inproc)
    terminal = (await inproc.call("GET", "/api/v1/terminals/T1")).json()
    assert terminal["screens"][0]["display_clients"] == ["dc1"] and terminal["group"] == "g1"

    assert_error(await inproc.call("DELETE", "/api/v1/display-clients/dc1"), 409, "conflict", "T1")
    assert_error(await inproc.call("DELETE", "/api/v1/display-servers/ds1"), 409, "conflict", "dc1")
    assert_error(await inproc.call("DELETE", "/api/v1/terminal-groups/g1"), 409, "conflict", "T1")

    # Once nothing refers to them they can go, in dependency order.
    assert (await inproc.call("PATCH", "/api/v1/terminals/T1", json={"screens": None})).status_code == 200
    assert (await inproc.call("DELETE", "/api/v1/display-clients/dc1")).status_code == 204
    assert (await inproc.call("DELETE", "/api/v1/display-servers/ds1")).status_code == 204


async def test_settings_singleton_get_put_patch(inproc: InProcess) -> None:
    fresh = await inproc.call("GET", "/api/v1/settings")
    assert fresh.status_code == 200
    assert fresh.json() == {
        "unknown_terminals": "refuse",
        "auto_create_name_mask": "T-{mac}",
        "replacement": "manual",
        "version": "",
    }
    put = await inproc.call("PUT", "/api/v1/settings", json={"unknown_terminals": "auto_create"})
    assert put.status_code == 200, put.text
    assert put.json()["unknown_terminals"] == "auto_create" and put.json()["version"]
    patch = await inproc.call("PATCH", "/api/v1/settings", json={"replacement": "automatic"}, headers=MERGE_PATCH)
    assert patch.status_code == 200, patch.text
    got = (await inproc.call("GET", "/api/v1/settings")).json()
    assert got["unknown_terminals"] == "auto_create" and got["replacement"] == "automatic"
    assert got["version"] == patch.json()["version"] > put.json()["version"]
    stale = await inproc.call("PUT", "/api/v1/settings", json={}, headers={"If-Match": put.json()["version"]})
    assert_error(stale, 412, "precondition_failed")
    current = await inproc.call("PUT", "/api/v1/settings", json={}, headers={"If-Match": f'"{got["version"]}"'})
    assert current.status_code == 200 and current.json()["unknown_terminals"] == "refuse"


async def test_server_list_singleton_get_put_patch(inproc: InProcess) -> None:
    fresh = (await inproc.call("GET", "/api/v1/server-list")).json()
    assert fresh["auto_sync"] is False and fresh["servers"] == [] and fresh["version"] == ""
    body = {
        "auto_sync": False,
        "mode": "mirrored",
        "primary": {"name": "tm-a", "address": "10.0.0.1"},
        "secondary": {"name": "tm-b", "address": "10.0.0.2", "port": 2032},
    }
    put = await inproc.call("PUT", "/api/v1/server-list", json=body)
    assert put.status_code == 200, put.text
    obj = put.json()
    assert obj["primary"] == {"name": "tm-a", "address": "10.0.0.1", "port": 2031}
    assert obj["secondary"]["port"] == 2032 and obj["servers"] == [] and obj["mode"] == "mirrored"
    patch = await inproc.call("PATCH", "/api/v1/server-list", json={"mode": "redundant"})
    assert patch.status_code == 200 and patch.json()["mode"] == "redundant"
    assert patch.json()["primary"]["name"] == "tm-a"


async def test_history_lists_versions_newest_first(inproc: InProcess) -> None:
    versions = [
        (await inproc.call("PUT", "/api/v1/display-servers/ds1", json={"address": "10.0.0.1"})).json()["version"]
    ]
    for port in (3390, 3391):
        patched = await inproc.call("PATCH", "/api/v1/display-servers/ds1", json={"port": port})
        versions.append(patched.json()["version"])
    assert (await inproc.call("DELETE", "/api/v1/display-servers/ds1")).status_code == 204

    response = await inproc.call("GET", "/api/v1/history", params={"kind": "display-servers", "name": "ds1"})
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert len(items) == 4
    assert [i["version"] for i in items] == sorted((i["version"] for i in items), reverse=True)
    assert [i["version"] for i in items[1:]] == list(reversed(versions))
    for item in items:
        assert {"version", "time", "author", "server", "body"} <= set(item)
        assert item["author"] == "admin" and item["server"] == "tm-test" and item["time"].endswith("Z")
    assert items[0]["body"] is None
    assert [i["body"]["port"] for i in items[1:]] == [3391, 3390, 3389]

    settings = await inproc.call("GET", "/api/v1/history", params={"kind": "settings"})
    assert_error(settings, 404, "not_found")
    await inproc.call("PUT", "/api/v1/settings", json={"replacement": "automatic"})
    settings = await inproc.call("GET", "/api/v1/history", params={"kind": "settings"})
    assert settings.status_code == 200 and settings.json()["items"][0]["body"]["replacement"] == "automatic"


async def test_healthz_needs_no_token(inproc: InProcess) -> None:
    response = await inproc.client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["name"] == "tm-test"
    assert body["node_id"] == inproc.store.require_identity().node_id


async def test_metrics_count_http_requests(inproc: InProcess) -> None:
    await inproc.call("GET", "/api/v1/terminals")
    await inproc.call("GET", "/api/v1/terminals/nope")
    text = (await inproc.client.get("/metrics")).text
    assert "thinsync_http_requests" in text
    assert 'thinsync_http_requests_total{method="GET",status="404"} 1.0' in text
    assert 'thinsync_objects{kind="admins"} 1.0' in text


async def test_openapi_document_has_paths_for_every_kind(inproc: InProcess) -> None:
    response = await inproc.client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.json()
    paths = document["paths"]
    for kind in COLLECTIONS:
        assert set(paths[f"/api/v1/{kind}"]) == {"get"}
        assert set(paths[f"/api/v1/{kind}/{{name}}"]) == {"get", "put", "patch", "delete"}
    for kind in SINGLETONS:
        # A licence is installed whole (PUT), never patched.
        expected = {"get", "put"} if kind == "license" else {"get", "put", "patch"}
        assert set(paths[f"/api/v1/{kind}"]) == expected
    for path in ("/api/v1/login", "/api/v1/history", "/healthz", "/metrics"):
        assert path in paths
    assert "TerminalInput" in document["components"]["schemas"]


async def test_bulk_change_request_is_atomic(inproc: InProcess) -> None:
    """One request with a broken op writes none of its ops (the store's one write path)."""
    before = snapshot(inproc)
    ops = [Op("access-groups", "ok-1", "put", {}), Op("users", "u9", "put", {"access_groups": ["missing"]})]
    with pytest.raises(Invalid, match="does not exist"):
        await inproc.store.commit(ChangeRequest("test", "bulk", tuple(ops)))
    assert snapshot(inproc) == before
