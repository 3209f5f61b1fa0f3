"""Backups, restore, the backup schedule and history revert, in process (DESIGN §6, the backup issue):
a round trip of every kind, every class of bad file (each changes nothing and says why), encryption,
protected kinds, retention, download/delete, revert and as_of, and the scheduler on a fake clock."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.helpers.api import MINIMAL, assert_error, nothing_written, seed
from tests.helpers.inprocess import ADMIN_PASSWORD, InProcess
from thinsync.app import Server, initialize
from thinsync.backup import archive
from thinsync.backup.schedule import local_offset
from thinsync.clock import FakeClock
from thinsync.model.registry import KINDS, PUBLIC_KINDS
from thinsync.model.validate import SINGLETON_NAME
from thinsync.settings import Settings
from thinsync.store import ChangeRequest, Op

pytestmark = pytest.mark.anyio

PASSPHRASE = "correct horse battery"
ALL_BUT_SERVER_LIST = ["admins", "security-groups", "license"]
PROTECTED = ["server-list", "admins", "security-groups", "license"]
DAY = 86400.0


# ---------------------------------------------------------------------------------------- helpers


def stored(node: InProcess, kinds: list[str] | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """Every public kind's live objects as stored (secrets' hashes included): kind -> name -> body."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for kind in kinds or PUBLIC_KINDS:
        if KINDS[kind].singleton:
            state = node.store.get(kind, SINGLETON_NAME)
            out[kind] = {SINGLETON_NAME: dict(state.vals)} if state.live else {}
        else:
            out[kind] = {name: dict(state.vals) for name, state, *_ in node.store.list_live(kind, "", 10**6)}
    return out


async def ok(response: httpx2.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text}"
    return response.json() if response.content else None


async def backup(node: InProcess, **body: Any) -> dict[str, Any]:
    return await ok(await node.call("POST", "/api/v1/backups", json=body or None), 201)  # type: ignore[no-any-return]


async def backup_ids(node: InProcess) -> list[str]:
    items = (await ok(await node.call("GET", "/api/v1/backups")))["items"]
    return [b["id"] for b in items]


async def download(node: InProcess, backup_id: str) -> bytes:
    response = await node.call("GET", f"/api/v1/backups/{backup_id}/download")
    assert response.status_code == 200, response.text
    return response.content


async def upload(node: InProcess, data: bytes, dry_run: bool = False, **fields: str) -> httpx2.Response:
    return await node.call(
        "POST",
        "/api/v1/restore",
        params={"dry_run": str(dry_run).lower()},
        files={"file": ("backup.tsb.gz", data, "application/gzip")},
        data=fields,
    )


def reencode(data: bytes, change: Callable[[dict[str, Any]], None], fix_checksum: bool) -> bytes:
    """Open a plain backup, let `change` edit the document, and write it back (checksum fixed or not)."""
    document = json.loads(gzip.decompress(data))
    change(document)
    if fix_checksum:
        document["manifest"]["sha256"] = hashlib.sha256(archive.canonical(document["objects"])).hexdigest()
    return gzip.compress(archive.canonical(document))


async def set_licence(node: InProcess, document: dict[str, Any]) -> None:
    """A licence record written straight through the store (its signature does not matter to a backup)."""
    await node.store.commit(
        ChangeRequest("test", "licence", (Op("license", SINGLETON_NAME, "put", {"document": document}),))
    )


async def build_everything(node: InProcess) -> None:
    """Seed references, one object of every collection kind (an admin with a password, a user with a
    PIN), the settings singleton, a server list that is not the default, and a licence."""
    await seed(node)
    for kind, body in MINIMAL.items():
        extra = {"pin": "4711"} if kind == "users" else {}
        await ok(await node.call("PUT", f"/api/v1/{kind}/x1", json={**body, **extra, "description": "x1"}), 201)
    await ok(await node.call("PUT", "/api/v1/settings", json={"unknown_terminals": "unassigned"}))
    await ok(
        await node.call(
            "PUT",
            "/api/v1/server-list",
            json={"auto_sync": False, "primary": {"name": "tm-test", "address": "127.0.0.1"}},
        )
    )
    await set_licence(node, {"licence": "first"})


async def change_everything(node: InProcess) -> None:
    """Change, delete and add objects of every kind, protected kinds included."""
    for kind in MINIMAL:
        await ok(await node.call("DELETE", f"/api/v1/{kind}/x1"), 204)
        await ok(await node.call("PUT", f"/api/v1/{kind}/new1", json=MINIMAL[kind]), 201)
    await ok(await node.call("DELETE", "/api/v1/terminals/T1"), 204)
    await ok(await node.call("PATCH", "/api/v1/terminals/T2", json={"description": "changed"}))
    await ok(await node.call("PATCH", "/api/v1/display-servers/ds1", json={"address": "10.1.1.1"}))
    await ok(await node.call("PATCH", "/api/v1/users/u1", json={"pin": "999999"}))
    await ok(await node.call("PATCH", "/api/v1/security-groups/viewers", json={"description": "changed"}))
    await ok(await node.call("PATCH", "/api/v1/admins/admin", json={"description": "changed"}))
    await ok(await node.call("PUT", "/api/v1/settings", json={"unknown_terminals": "refuse"}))
    await ok(
        await node.call(
            "PUT",
            "/api/v1/server-list",
            json={"auto_sync": False, "primary": {"name": "tm-other", "address": "127.0.0.2"}},
        )
    )
    await set_licence(node, {"licence": "second"})


# ---------------------------------------------------------------------------------------- round trip


async def test_round_trip_of_every_kind(inproc: InProcess) -> None:
    await build_everything(inproc)
    before = stored(inproc)
    assert all(before[kind] for kind in PUBLIC_KINDS), [k for k, v in before.items() if not v]
    assert before["users"]["x1"]["pin_hash"] and before["admins"]["x1"]["password_hash"]
    made = await backup(inproc)
    assert made["format"] == "thinsync-backup" and made["format_version"] == archive.FORMAT_VERSION
    assert made["server"] == "tm-test" and made["node_id"] == inproc.store.require_identity().node_id
    assert made["counts"]["terminals"] == 3 and made["counts"]["admins"] == 2
    assert made["digest"] == (await ok(await inproc.call("GET", "/api/v1/sync/status")))["digest"]
    assert made["id"] in await backup_ids(inproc)

    await change_everything(inproc)
    changed = stored(inproc)
    assert changed != before

    with nothing_written(inproc):
        dry = await ok(
            await inproc.call(
                "POST",
                "/api/v1/restore",
                params={"dry_run": "true"},
                json={"backup_id": made["id"], "include": ALL_BUT_SERVER_LIST},
            )
        )
    assert dry["dry_run"] is True
    for kind in MINIMAL:
        assert "x1" in dry["added"][kind] and "new1" in dry["removed"][kind], kind
    assert dry["added"]["terminals"] == ["T1", "x1"]
    assert dry["changed"]["terminals"] == ["T2"] and dry["changed"]["users"] == ["u1"]
    assert dry["changed"]["settings"] == [SINGLETON_NAME]
    assert dry["changed"]["admins"] == ["admin"] and dry["changed"]["security-groups"] == ["viewers"]
    assert dry["changed"]["license"] == [SINGLETON_NAME]
    assert "server-list" not in dry["changed"]
    assert dry["objects"] == sum(len(n) for group in ("added", "changed", "removed") for n in dry[group].values())

    ids_before = set(await backup_ids(inproc))
    changes_before = len(inproc.store.changes_since(0, 10**9))
    done = await ok(
        await inproc.call("POST", "/api/v1/restore", json={"backup_id": made["id"], "include": ALL_BUT_SERVER_LIST})
    )
    assert done["dry_run"] is False and done["objects"] == dry["objects"]
    assert "note" not in done  # no peers, nothing to say
    # One pre-restore backup, and the restore is one change set.
    assert set(await backup_ids(inproc)) == ids_before | {done["pre_restore_backup"]}
    assert len(inproc.store.changes_since(0, 10**9)) == changes_before + 1

    after = stored(inproc)
    for kind in PUBLIC_KINDS:
        if kind != "server-list":
            assert after[kind] == before[kind], kind
    assert after["server-list"] == changed["server-list"]  # not asked for: left as it was
    # The restored secrets work: the admin's password and the user's PIN hash came back.
    login = await inproc.client.post("/api/v1/login", json={"username": "x1", "password": "password-123"})
    assert login.status_code == 200, login.text

    # Restoring the same backup again changes nothing (but still says what it did).
    again = await ok(
        await inproc.call("POST", "/api/v1/restore", json={"backup_id": made["id"], "include": ALL_BUT_SERVER_LIST})
    )
    assert again["objects"] == 0 and again["added"] == again["changed"] == again["removed"] == {}


async def test_pre_restore_backup_undoes_a_restore(inproc: InProcess) -> None:
    await seed(inproc)
    old = await backup(inproc)
    await ok(await inproc.call("PUT", "/api/v1/terminals/T9", json={"hardware": {"mac": "02:00:00:00:00:09"}}), 201)
    current = stored(inproc)
    done = await ok(await inproc.call("POST", "/api/v1/restore", json={"backup_id": old["id"]}))
    assert "T9" not in stored(inproc)["terminals"]
    await ok(await inproc.call("POST", "/api/v1/restore", json={"backup_id": done["pre_restore_backup"]}))
    assert stored(inproc) == current


async def test_restore_from_an_uploaded_file(inproc: InProcess) -> None:
    await seed(inproc)
    made = await backup(inproc)
    data = await download(inproc, made["id"])
    await ok(await inproc.call("DELETE", "/api/v1/terminals/T2"), 204)
    with nothing_written(inproc):
        dry = await ok(await upload(inproc, data, dry_run=True))
    assert dry["added"] == {"terminals": ["T2"]} and dry["removed"] == {} and dry["changed"] == {}
    assert dry["backup"]["digest"] == made["digest"]
    done = await ok(await upload(inproc, data))
    assert done["added"] == {"terminals": ["T2"]}
    assert (await ok(await inproc.call("GET", "/api/v1/terminals/T2")))["hardware"]["mac"] == "aa:bb:cc:dd:ee:02"


async def test_restore_leaves_server_list_and_admins_alone_unless_asked(inproc: InProcess) -> None:
    await build_everything(inproc)
    made = await backup(inproc)
    await change_everything(inproc)
    changed = stored(inproc, PROTECTED)

    done = await ok(await inproc.call("POST", "/api/v1/restore", json={"backup_id": made["id"]}))
    for group in ("added", "changed", "removed"):
        assert not set(PROTECTED) & set(done[group]), done
    assert done["changed"]["terminals"] == ["T2"]  # the rest was restored
    assert stored(inproc, PROTECTED) == changed

    before_list = (await ok(await inproc.call("GET", "/api/v1/server-list")))["primary"]["name"]
    assert before_list == "tm-other"
    done = await ok(
        await inproc.call("POST", "/api/v1/restore", json={"backup_id": made["id"], "include": ["server-list"]})
    )
    assert done["changed"] == {"server-list": [SINGLETON_NAME]}
    assert (await ok(await inproc.call("GET", "/api/v1/server-list")))["primary"]["name"] == "tm-test"
    assert stored(inproc, ["admins", "security-groups", "license"]) == {
        k: changed[k] for k in ("admins", "security-groups", "license")
    }


async def test_include_names_only_protected_kinds(inproc: InProcess) -> None:
    made = await backup(inproc)
    with nothing_written(inproc):
        assert_error(
            await inproc.call("POST", "/api/v1/restore", json={"backup_id": made["id"], "include": ["terminals"]}),
            422,
            "invalid",
            "include",
        )
        for include in ([1], {"admins": True}, ["admins", "robots"]):
            assert_error(
                await inproc.call("POST", "/api/v1/restore", json={"backup_id": made["id"], "include": include}),
                422,
                "invalid",
            )
        assert_error(await inproc.call("POST", "/api/v1/restore", json={"backup_id": "nope"}), 404, "not_found")
        assert_error(await inproc.call("POST", "/api/v1/restore", json={"id": made["id"]}), 400)
        assert_error(
            await inproc.call("POST", "/api/v1/restore", json={"backup_id": made["id"], "extra": 1}), 422, "invalid"
        )


# ---------------------------------------------------------------------------------------- bad files


def _future(document: dict[str, Any]) -> None:
    document["manifest"]["format_version"] = archive.FORMAT_VERSION + 1


def _wrong_format(document: dict[str, Any]) -> None:
    document["manifest"]["format"] = "someone-elses-backup"


def _tampered(document: dict[str, Any]) -> None:
    for obj in document["objects"]:
        if obj["kind"] == "display-servers":
            obj["body"]["address"] = "10.66.66.66"


def _invalid_object(document: dict[str, Any]) -> None:
    for obj in document["objects"]:
        if obj["kind"] == "terminals" and obj["name"] == "T2":
            obj["body"]["hardware"]["mac"] = "not a mac"


def _broken_reference(document: dict[str, Any]) -> None:
    document["objects"] = [o for o in document["objects"] if o["kind"] != "display-clients"]


def _unknown_kind(document: dict[str, Any]) -> None:
    document["objects"].append({"kind": "robots", "name": "r1", "body": {}})


def _duplicate(document: dict[str, Any]) -> None:
    document["objects"].append(next(o for o in document["objects"] if o["kind"] == "terminals"))


def _no_objects(document: dict[str, Any]) -> None:
    del document["objects"]


def _corrupt(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 8]) + data[middle + 8 :]


BAD_FILES: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "truncated": (lambda d: d[: len(d) // 2], "truncated"),
    "truncated-to-nothing": (lambda d: b"", "empty"),
    "corrupted": (_corrupt, "not a thinsync backup"),
    "not-gzip": (lambda d: b"hello, I am a text file\n" * 20, "not a thinsync backup"),
    "gzip-not-json": (lambda d: gzip.compress(b"\x00\x01 not json"), "not valid JSON"),
    "json-without-manifest": (lambda d: gzip.compress(b'{"objects": []}'), "no manifest"),
    "wrong-format": (lambda d: reencode(d, _wrong_format, True), "not a thinsync backup"),
    "future-format": (lambda d: reencode(d, _future, True), "newer than this thinsync"),
    "tampered": (lambda d: reencode(d, _tampered, False), "checksum"),
    "no-object-list": (lambda d: reencode(d, _no_objects, False), "no object list"),
    "invalid-object": (lambda d: reencode(d, _invalid_object, True), "not a mac"),
    "broken-reference": (lambda d: reencode(d, _broken_reference, True), "refers to"),
    "unknown-kind": (lambda d: reencode(d, _unknown_kind, True), "unknown kind 'robots'"),
    "duplicate-object": (lambda d: reencode(d, _duplicate, True), "appears twice"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
async def test_a_bad_file_changes_nothing_and_says_why(inproc: InProcess, case: str) -> None:
    await seed(inproc)
    made = await backup(inproc)
    good = await download(inproc, made["id"])
    damage, words = BAD_FILES[case]
    bad = damage(good)
    assert bad != good
    await ok(await inproc.call("PUT", "/api/v1/terminals/T9", json={"hardware": {"mac": "02:00:00:00:00:09"}}), 201)
    ids = await backup_ids(inproc)
    for dry_run in (True, False):
        with nothing_written(inproc):
            body = assert_error(await upload(inproc, bad, dry_run=dry_run), 422, "bad_backup")
        assert words.lower() in body["message"].lower(), body["message"]
    assert await backup_ids(inproc) == ids, "a refused restore must not even take its pre-restore backup"
    # The same file saved in the backup directory and restored by id is refused the same way.
    (inproc.server.settings.backups / f"99990101T000000-000-bad{archive.SUFFIX}").write_bytes(bad)
    with nothing_written(inproc):
        assert_error(
            await inproc.call("POST", "/api/v1/restore", json={"backup_id": "99990101T000000-000-bad"}),
            422,
            "bad_backup",
        )
    listed = {b["id"]: b for b in (await ok(await inproc.call("GET", "/api/v1/backups")))["items"]}
    if case not in ("invalid-object", "broken-reference", "unknown-kind", "duplicate-object"):
        assert listed["99990101T000000-000-bad"].get("damaged"), listed["99990101T000000-000-bad"]


async def test_the_good_file_of_the_bad_file_test_restores(inproc: InProcess) -> None:
    """The bad-file cases start from a file that does restore: so each refusal is the damage's doing."""
    await seed(inproc)
    good = await download(inproc, (await backup(inproc))["id"])
    unchanged = reencode(good, lambda d: None, True)
    await ok(await inproc.call("DELETE", "/api/v1/terminals/T2"), 204)
    assert (await ok(await upload(inproc, unchanged)))["added"] == {"terminals": ["T2"]}


# ---------------------------------------------------------------------------------------- encryption


async def test_encrypted_backup_round_trip_and_wrong_passphrase(inproc: InProcess) -> None:
    await seed(inproc)
    before = stored(inproc)
    made = await backup(inproc, passphrase=PASSPHRASE)
    assert made["encrypted"] is True
    data = await download(inproc, made["id"])
    assert data.startswith(archive.ENCRYPTED_MAGIC)
    assert b"aa:bb:cc:dd:ee:01" not in data and b"card-1" not in data
    header = json.loads(data[len(archive.ENCRYPTED_MAGIC) :].split(b"\n", 1)[0])
    assert header["kdf"] == "scrypt" and header["cipher"] == "aes-256-gcm"
    listed = next(b for b in (await ok(await inproc.call("GET", "/api/v1/backups")))["items"] if b["id"] == made["id"])
    assert listed["encrypted"] is True and "damaged" not in listed

    await ok(await inproc.call("DELETE", "/api/v1/terminals/T2"), 204)
    for passphrase, words in ((None, "encrypted"), ("wrong passphrase!", "wrong passphrase")):
        fields = {"passphrase": passphrase} if passphrase else {}
        with nothing_written(inproc):
            body = assert_error(await upload(inproc, data, **fields), 422, "bad_backup")
            assert words in body["message"]
            by_id = {"backup_id": made["id"], **fields}
            assert_error(await inproc.call("POST", "/api/v1/restore", json=by_id), 422, "bad_backup", words)
    # A changed byte in the ciphertext, or in the (authenticated) header, is refused too.
    flipped = data[:-5] + bytes([data[-5] ^ 1]) + data[-4:]
    header_changed = data.replace(b'"p":1', b'"p":2', 1)
    assert header_changed != data
    for bad in (flipped, header_changed, data[: len(data) - 20]):
        with nothing_written(inproc):
            assert_error(await upload(inproc, bad, passphrase=PASSPHRASE), 422, "bad_backup")

    done = await ok(await upload(inproc, data, passphrase=PASSPHRASE))
    assert done["added"] == {"terminals": ["T2"]}
    assert stored(inproc) == before
    done = await ok(
        await inproc.call("POST", "/api/v1/restore", json={"backup_id": made["id"], "passphrase": PASSPHRASE})
    )
    assert done["objects"] == 0


async def test_backup_body_is_checked(inproc: InProcess) -> None:
    ids = await backup_ids(inproc)
    for body in ({"passphrase": "short"}, {"passphrase": 12345678}, {"other": 1}, [1]):
        assert_error(await inproc.call("POST", "/api/v1/backups", json=body), 422, "invalid")
    assert await backup_ids(inproc) == ids


# ---------------------------------------------------------------------------------------- list, download, delete


async def test_list_download_and_delete(inproc: InProcess) -> None:
    await seed(inproc)
    first = await backup(inproc)
    await asyncio.sleep(0.01)
    second = await backup(inproc)
    assert second["id"] != first["id"]
    items = (await ok(await inproc.call("GET", "/api/v1/backups")))["items"]
    assert [b["id"] for b in items][:2] == [second["id"], first["id"]]  # newest first
    assert items[0]["size"] == second["size"] and items[0]["sha256"] == second["sha256"]

    data = await download(inproc, first["id"])
    assert data == (inproc.server.settings.backups / f"{first['id']}{archive.SUFFIX}").read_bytes()
    manifest, objects = archive.decode(data)
    assert manifest["sha256"] == first["sha256"] and len(objects) == sum(first["counts"].values())

    await ok(await inproc.call("DELETE", f"/api/v1/backups/{first['id']}"), 204)
    assert first["id"] not in await backup_ids(inproc)
    assert_error(await inproc.call("GET", f"/api/v1/backups/{first['id']}/download"), 404, "not_found")
    assert_error(await inproc.call("DELETE", f"/api/v1/backups/{first['id']}"), 404, "not_found")
    assert_error(await inproc.call("GET", "/api/v1/backups/..%2Fthinsync.db/download"), 404)
    assert_error(await inproc.call("DELETE", "/api/v1/backups/%2E%2E"), 404)
    assert (inproc.server.settings.data_dir / "thinsync.db").exists()
    assert await backup_ids(inproc) == [second["id"]]


async def test_two_backups_in_the_same_millisecond_are_both_kept(inproc: InProcess) -> None:
    directory = inproc.server.settings.backups
    now = time.time()
    one = await asyncio.to_thread(archive.create, inproc.store, directory, "same", now)
    two = await asyncio.to_thread(archive.create, inproc.store, directory, "same", now)
    assert one["id"] != two["id"]
    assert {one["id"], two["id"]} <= set(await backup_ids(inproc))


async def test_viewers_cannot_download_delete_or_restore(inproc: InProcess) -> None:
    made = await backup(inproc)
    await inproc.make_user("viewer", ["viewers"])
    with nothing_written(inproc):
        for method, path, kwargs in (
            ("POST", "/api/v1/backups", {}),
            ("GET", f"/api/v1/backups/{made['id']}/download", {}),
            ("DELETE", f"/api/v1/backups/{made['id']}", {}),
            ("POST", "/api/v1/restore", {"json": {"backup_id": made["id"]}}),
            ("POST", "/api/v1/history/revert", {"json": {"as_of": "2020-01-01T00:00:00Z"}}),
        ):
            assert_error(await inproc.call(method, path, user="viewer", **kwargs), 403)
    assert await backup_ids(inproc) == [made["id"]]


async def test_operators_revert_configuration_but_not_accounts(inproc: InProcess) -> None:
    await seed(inproc)
    await ok(await inproc.call("PATCH", "/api/v1/terminals/T2", json={"description": "one"}))
    await ok(await inproc.call("PATCH", "/api/v1/admins/admin", json={"description": "changed"}))
    await inproc.make_user("operator", ["operators"])
    terminal = (await ok(await inproc.call("GET", "/api/v1/history", params={"kind": "terminals", "name": "T2"})))[
        "items"
    ][-1]["version"]
    account = (await ok(await inproc.call("GET", "/api/v1/history", params={"kind": "admins", "name": "admin"})))[
        "items"
    ][-1]["version"]
    with nothing_written(inproc):
        for body in (
            {"kind": "admins", "name": "admin", "version": account},
            {"as_of": "2020-01-01T00:00:00Z", "include": ["admins"], "dry_run": True},
        ):
            assert_error(await inproc.call("POST", "/api/v1/history/revert", user="operator", json=body), 403)
    body = {"kind": "terminals", "name": "T2", "version": terminal}
    done = await ok(await inproc.call("POST", "/api/v1/history/revert", user="operator", json=body))
    assert done["changed"] is True
    body = {"kind": "admins", "name": "admin", "version": account}
    assert (await ok(await inproc.call("POST", "/api/v1/history/revert", json=body)))["changed"] is True


# ---------------------------------------------------------------------------------------- history and undo


async def test_history_lists_versions_with_diffs_and_revert_brings_one_back(inproc: InProcess) -> None:
    await seed(inproc)
    await ok(await inproc.call("PATCH", "/api/v1/terminals/T2", json={"description": "one"}))
    await ok(await inproc.call("PATCH", "/api/v1/terminals/T2", json={"description": "two"}))
    items = (await ok(await inproc.call("GET", "/api/v1/history", params={"kind": "terminals", "name": "T2"})))["items"]
    assert [i["body"]["description"] for i in items] == ["two", "one", ""]
    assert items[0]["author"] == "admin" and items[0]["server"] == "tm-test" and items[0]["time"]
    assert items[0]["diff"] == {"description": {"from": "one", "to": "two"}}
    one = items[1]["version"]

    done = await ok(
        await inproc.call("POST", "/api/v1/history/revert", json={"kind": "terminals", "name": "T2", "version": one})
    )
    assert done["changed"] is True and done["object"]["description"] == "one"
    assert (await ok(await inproc.call("GET", "/api/v1/terminals/T2")))["description"] == "one"

    # A deleted object comes back from a version it had.
    await ok(await inproc.call("DELETE", "/api/v1/terminals/T2"), 204)
    await ok(
        await inproc.call("POST", "/api/v1/history/revert", json={"kind": "terminals", "name": "T2", "version": one})
    )
    assert (await ok(await inproc.call("GET", "/api/v1/terminals/T2")))["description"] == "one"
    newest = (await ok(await inproc.call("GET", "/api/v1/history", params={"kind": "terminals", "name": "T2"})))[
        "items"
    ][0]
    assert newest["summary"].startswith("revert") and newest["author"] == "admin"


async def test_revert_to_a_version_that_does_not_exist_changes_nothing(inproc: InProcess) -> None:
    await seed(inproc)
    real = (await ok(await inproc.call("GET", "/api/v1/terminals/T1")))["version"]
    other = (await ok(await inproc.call("GET", "/api/v1/terminals/T2")))["version"]
    with nothing_written(inproc):
        for body, status in (
            ({"kind": "terminals", "name": "T1", "version": "0000000000000000.nope"}, 404),
            ({"kind": "terminals", "name": "T1", "version": other}, 404),  # a version of another object
            ({"kind": "terminals", "name": "never-was", "version": real}, 404),
            ({"kind": "robots", "name": "T1", "version": real}, 404),
            ({"kind": "terminals", "name": "T1"}, 422),
            ({"kind": "terminals", "name": "T1", "version": 3}, 422),
            ({"as_of": "yesterday"}, 422),
            ({"as_of": "2020-01-01T00:00:00Z", "include": ["terminals"]}, 422),
        ):
            assert_error(await inproc.call("POST", "/api/v1/history/revert", json=body), status)


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def test_as_of_dry_run_and_real(inproc: InProcess) -> None:
    await seed(inproc)
    await asyncio.sleep(0.01)
    moment = time.time()
    then = stored(inproc)
    await asyncio.sleep(0.01)
    await ok(await inproc.call("PATCH", "/api/v1/terminals/T2", json={"description": "later"}))
    await ok(await inproc.call("PUT", "/api/v1/terminals/T9", json={"hardware": {"mac": "02:00:00:00:00:09"}}), 201)
    await ok(await inproc.call("DELETE", "/api/v1/users/u1"), 204)
    await ok(await inproc.call("PATCH", "/api/v1/admins/admin", json={"description": "later"}))

    with nothing_written(inproc):
        dry = await ok(
            await inproc.call("POST", "/api/v1/history/revert", json={"as_of": iso(moment), "dry_run": True})
        )
    assert dry["dry_run"] is True
    assert (dry["added"], dry["changed"], dry["removed"]) == (
        {"users": ["u1"]},
        {"terminals": ["T2"]},
        {"terminals": ["T9"]},
    )

    done = await ok(await inproc.call("POST", "/api/v1/history/revert", json={"as_of": iso(moment)}))
    assert done["objects"] == 3 and done["pre_restore_backup"] in await backup_ids(inproc)
    now = stored(inproc)
    for kind in PUBLIC_KINDS:
        if kind != "admins":
            assert now[kind] == then[kind], kind
    assert now["admins"]["admin"]["description"] == "later"  # admins only when asked

    done = await ok(
        await inproc.call("POST", "/api/v1/history/revert", json={"as_of": iso(moment), "include": ["admins"]})
    )
    assert done["changed"] == {"admins": ["admin"]}
    assert stored(inproc) == then


# ---------------------------------------------------------------------------------------- schedule


class Node:
    """An in-process server on a fake clock (the scheduler's tests drive time)."""

    def __init__(self, data: Path, clock: FakeClock) -> None:
        self.server = Server(Settings.load(data), clock=clock)
        self.client = httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=self.server.app), base_url="http://testserver", timeout=30.0
        )

    @property
    def backups(self):  # type: ignore[no-untyped-def]
        return self.server.services.backups

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx2.Response:
        login = await self.client.post("/api/v1/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['token']}"}
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def scheduled(self) -> list[str]:
        return [b["id"] for b in await self.backups.list_all() if str(b.get("reason", "")).startswith("schedule")]

    async def aclose(self) -> None:
        await self.backups.stop()
        await self.client.aclose()
        self.server.close()


@pytest.fixture
async def fake_clock_node(tmp_path: Path) -> AsyncIterator[tuple[Node, FakeClock, Path]]:
    data = tmp_path / "data"
    clock = FakeClock(1_767_268_800.0)  # 2026-01-01T12:00:00Z
    initialize(Settings.load(data), "tm-test", ADMIN_PASSWORD, clock=clock)
    node = Node(data, clock)
    try:
        yield node, clock, data
    finally:
        await node.aclose()


def at_local(moment: float) -> str:
    """HH:MM of `moment` in this server's local time (what a schedule's `at` means)."""
    local = moment + local_offset()
    return time.strftime("%H:%M", time.gmtime(local))


async def test_schedule_get_and_put(fake_clock_node: tuple[Node, FakeClock, Path]) -> None:
    node, _, _ = fake_clock_node
    default = await ok(await node.call("GET", "/api/v1/backup-schedule"))
    assert default["enabled"] is False and default["version"] == ""
    put = await ok(await node.call("PUT", "/api/v1/backup-schedule", json={"at": "02:30", "retention": 3}))
    assert put["name"] == "backup" and put["at"] == "02:30" and put["retention"] == 3 and put["version"]
    assert await ok(await node.call("GET", "/api/v1/backup-schedule")) == put
    assert (await ok(await node.call("GET", "/api/v1/schedules/backup")))["version"] == put["version"]
    for bad in ({"at": "25:00"}, {"every_hours": 0}, {"every_hours": 6, "at": "02:00"}, {"weekdays": [1]}, {}):
        assert_error(await node.call("PUT", "/api/v1/backup-schedule", json=bad), 422, "invalid")
    assert await ok(await node.call("GET", "/api/v1/backup-schedule")) == put


def last_success(metrics: str) -> float:
    line = next(x for x in metrics.splitlines() if x.startswith("thinsync_backup_last_success_timestamp "))
    return float(line.split()[-1])


async def test_daily_schedule_runs_once_a_day_and_a_missed_run_at_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    clock = FakeClock(1_767_268_800.0)  # 2026-01-01T12:00:00Z
    initialize(Settings.load(data), "tm-test", ADMIN_PASSWORD, clock=clock)
    node = Node(data, clock)
    try:
        slot = at_local(clock.time() - 3600)  # today's slot was an hour ago
        await ok(await node.call("PUT", "/api/v1/backup-schedule", json={"at": slot, "retention": 2}))
        assert last_success((await node.client.get("/metrics")).text) == 0.0

        assert len(await node.backups.tick()) == 1, "first tick: never ran, so due"
        assert len(await node.scheduled()) == 1
        clock.advance(600)
        assert await node.backups.tick() == [], "again the same day: not due"
        clock.advance(DAY - 3600 - 600 - 60)  # a minute before tomorrow's slot
        assert await node.backups.tick() == []
        clock.advance(120)  # a minute after it
        assert len(await node.backups.tick()) == 1
        assert await node.backups.tick() == []
        succeeded = clock.time()
        assert last_success((await node.client.get("/metrics")).text) == succeeded
        events = node.server.services.store.events("backup", 0, 100)
        assert sum("schedule backup" in e["message"] and e["level"] == "info" for e in events) == 2, events
    finally:
        await node.aclose()

    # The server is down across two slots; at start the missed run happens (once).
    clock.advance(2 * DAY)
    node = Node(data, clock)
    try:
        assert last_success((await node.client.get("/metrics")).text) == succeeded, "kept across a restart"
        assert len(await node.scheduled()) == 2
        await node.backups.start()  # what the server does at start: the first tick runs at once
        for _ in range(400):  # at most 20 s
            if last_success((await node.client.get("/metrics")).text) != succeeded:
                break
            await asyncio.sleep(0.05)
        await node.backups.stop()
        kept = await node.scheduled()
        assert len(kept) == 2, "retention 2: the missed run is written and the oldest removed"
        assert kept[0].startswith(time.strftime("%Y%m%dT%H%M%S", time.gmtime(clock.time())))
        assert last_success((await node.client.get("/metrics")).text) == clock.time()
        assert await node.backups.tick() == [], "one missed run, not one per missed slot"
    finally:
        await node.aclose()


async def test_interval_schedule_retention_and_weekdays(fake_clock_node: tuple[Node, FakeClock, Path]) -> None:
    node, clock, _ = fake_clock_node
    manual = await node.backups.create("by admin")
    await ok(await node.call("PUT", "/api/v1/backup-schedule", json={"every_hours": 6, "retention": 3}))
    ran = []
    for _ in range(5):
        ran += await node.backups.tick()
        assert await node.backups.tick() == []
        clock.advance(6 * 3600)
    assert len(ran) == 5
    assert await node.scheduled() == sorted(ran, reverse=True)[:3]
    assert manual["id"] in [b["id"] for b in await node.backups.list_all()], "retention keeps other backups"

    # Disabled: nothing runs.
    await ok(await node.call("PUT", "/api/v1/backup-schedule", json={"every_hours": 6, "enabled": False}))
    clock.advance(7 * DAY)
    assert await node.backups.tick() == []

    # Weekly on one weekday: only on that day.
    today = time.gmtime(clock.time() + local_offset()).tm_wday
    tomorrow = (today + 1) % 7
    await ok(
        await node.call(
            "PUT", "/api/v1/backup-schedule", json={"at": at_local(clock.time() + 60), "weekdays": [tomorrow]}
        )
    )
    # The slot on that weekday six days ago passed after the last run (a week ago): a missed run.
    assert len(await node.backups.tick()) == 1
    clock.advance(120)
    assert await node.backups.tick() == [], "not today"
    clock.advance(DAY)
    assert len(await node.backups.tick()) == 1, "tomorrow, after the slot"
    clock.advance(DAY)
    assert await node.backups.tick() == [], "the day after: not its weekday"


async def test_each_schedule_keeps_its_own_retention(fake_clock_node: tuple[Node, FakeClock, Path]) -> None:
    node, clock, _ = fake_clock_node
    await ok(await node.call("PUT", "/api/v1/schedules/backup", json={"every_hours": 1, "retention": 1}), 201)
    await ok(await node.call("PUT", "/api/v1/schedules/backup2", json={"every_hours": 1, "retention": 2}), 201)
    for _ in range(3):
        assert len(await node.backups.tick()) == 2
        clock.advance(3600)
    reasons = [b["reason"] for b in await node.backups.list_all()]
    assert sorted(reasons) == ["schedule backup", "schedule backup2", "schedule backup2"]


async def test_a_failed_scheduled_run_goes_to_the_event_log(fake_clock_node: tuple[Node, FakeClock, Path]) -> None:
    node, clock, data = fake_clock_node
    await ok(await node.call("PUT", "/api/v1/backup-schedule", json={"every_hours": 1}))
    blocker = node.server.settings.backups
    blocker.mkdir(parents=True, exist_ok=True)
    blocker.rmdir()
    blocker.write_text("a file where the backup directory should be")
    try:
        assert await node.backups.tick() == []
    finally:
        blocker.unlink()
    events = node.server.services.store.events("backup", 0, 100)
    assert any(e["level"] == "error" and "failed" in e["message"] for e in events), events
    assert last_success((await node.client.get("/metrics")).text) == 0.0
