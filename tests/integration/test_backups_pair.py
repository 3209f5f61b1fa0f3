"""Restore, revert and as_of on a pair of real servers: each is one ordinary change set, so it reaches
the other server (now, or when it is back), and both end with the same objects and digests."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.helpers.cluster import in_sync, objects, pair, status, wait_until
from tests.helpers.process import ServerFactory, ServerProcess

pytestmark = pytest.mark.process

CONVERGE_S = 30.0


def call(server: ServerProcess, method: str, path: str, status_code: int = 200, **kwargs: Any) -> Any:
    response = server.api(method, path, timeout=60, **kwargs)
    assert response.status_code == status_code, f"{server.name} {method} {path}: {response.status_code} {response.text}"
    return response.json() if response.content else None


def paired(servers: ServerFactory) -> tuple[ServerProcess, ServerProcess]:
    a, b = servers.start("tm-a"), servers.start("tm-b")
    pair(a, b)
    b._token = None  # pairing gave the secondary the primary's accounts: log in again
    wait_until(lambda: in_sync(a, b), CONVERGE_S, 0.1, "in sync after pairing")
    return a, b


def configure(server: ServerProcess) -> None:
    call(server, "PUT", "/api/v1/display-servers/ds1", 201, json={"address": "10.0.0.1"})
    call(server, "PUT", "/api/v1/display-clients/dc1", 201, json={"display_servers": ["ds1"]})
    for i in range(1, 6):
        body = {"hardware": {"mac": f"02:00:00:00:00:0{i}"}, "screens": [{"display_clients": ["dc1"]}]}
        call(server, "PUT", f"/api/v1/terminals/T{i}", 201, json=body)
    call(server, "PUT", "/api/v1/users/u1", 201, json={"card_id": "c1", "pin": "1234"})
    call(server, "PUT", "/api/v1/settings", json={"unknown_terminals": "unassigned"})


def converged(a: ServerProcess, b: ServerProcess) -> dict[str, Any]:
    """Wait until the pair is in sync with equal digests; return the (equal) objects."""
    wait_until(lambda: in_sync(a, b), CONVERGE_S, 0.1, f"{a.name} and {b.name} in sync")
    on_a, on_b = objects(a), objects(b)
    assert on_a == on_b
    assert status(a)["digest"] == status(b)["digest"]
    return on_a


def scrub(snapshot: dict[str, Any]) -> dict[str, Any]:
    """Objects without their versions (a restore writes new versions of the same content)."""

    def clean(obj: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in obj.items() if k != "version"}

    return {
        kind: clean(found) if kind in ("settings", "server-list") else {n: clean(o) for n, o in found.items()}
        for kind, found in snapshot.items()
    }


def test_a_restore_on_one_server_reaches_the_other(servers: ServerFactory) -> None:
    a, b = paired(servers)
    configure(a)
    saved = scrub(converged(a, b))
    made = call(a, "POST", "/api/v1/backups", 201)

    # Change everything on B: it replicates to A.
    call(b, "DELETE", "/api/v1/terminals/T1", 204)
    call(b, "PATCH", "/api/v1/terminals/T2", json={"description": "changed on B"})
    call(b, "PUT", "/api/v1/terminals/T9", 201, json={"hardware": {"mac": "02:00:00:00:00:99"}})
    call(b, "PUT", "/api/v1/settings", json={"unknown_terminals": "refuse"})
    call(b, "PATCH", "/api/v1/admins/admin", json={"description": "changed on B"})
    assert scrub(converged(a, b)) != saved

    result = call(a, "POST", "/api/v1/restore", json={"backup_id": made["id"]})
    assert result["added"] == {"terminals": ["T1"]} and result["removed"] == {"terminals": ["T9"]}
    assert result["changed"] == {"settings": ["default"], "terminals": ["T2"]}
    assert "note" not in result, result  # the peer is connected: nothing to warn about
    restored = scrub(converged(a, b))
    expected = {**saved, "admins": restored["admins"]}  # admins are left alone by default
    assert restored == expected
    assert restored["admins"]["admin"]["description"] == "changed on B"
    # B wrote no pre-restore backup of its own: the restore reached it as a replicated change.
    reasons = [x.get("reason", "") for x in call(b, "GET", "/api/v1/backups")["items"]]
    assert not [r for r in reasons if r.startswith("before restore")], reasons
    assert [r for r in (x.get("reason", "") for x in call(a, "GET", "/api/v1/backups")["items"])].count(
        f"before restore of backup {made['id']}"
    ) == 1


def test_a_restore_while_the_peer_is_down_says_so_and_reaches_it_later(servers: ServerFactory) -> None:
    a, b = paired(servers)
    configure(a)
    saved = scrub(converged(a, b))
    made = call(a, "POST", "/api/v1/backups", 201)
    call(a, "DELETE", "/api/v1/terminals/T5", 204)
    call(a, "PATCH", "/api/v1/display-servers/ds1", json={"address": "10.0.0.9"})
    converged(a, b)

    b.stop()
    wait_until(lambda: not status(a)["peers"][0]["connected"], 15, 0.1, "A sees B gone")
    result = call(a, "POST", "/api/v1/restore", json={"backup_id": made["id"]})
    assert result["added"] == {"terminals": ["T5"]} and result["changed"] == {"display-servers": ["ds1"]}
    assert "tm-b" in result["note"] and "reach" in result["note"], result
    assert call(a, "GET", "/api/v1/terminals/T5")["name"] == "T5"

    b.start()
    b._token = None
    assert scrub(converged(a, b)) == saved


def test_revert_of_one_object_on_b_reaches_a(servers: ServerFactory) -> None:
    a, b = paired(servers)
    call(a, "PUT", "/api/v1/terminals/T1", 201, json={"hardware": {"mac": "02:00:00:00:00:01"}})
    call(a, "PATCH", "/api/v1/terminals/T1", json={"description": "one"})
    call(a, "PATCH", "/api/v1/terminals/T1", json={"description": "two"})
    converged(a, b)

    history = call(b, "GET", "/api/v1/history", params={"kind": "terminals", "name": "T1"})["items"]
    assert [h["body"]["description"] for h in history] == ["two", "one", ""]
    assert {h["server"] for h in history} == {"tm-a"}, "the origin server is named, also on the other server"
    assert history == call(a, "GET", "/api/v1/history", params={"kind": "terminals", "name": "T1"})["items"]

    before = call(a, "GET", "/api/v1/terminals/T1")
    missing = call(
        b, "POST", "/api/v1/history/revert", 404, json={"kind": "terminals", "name": "T1", "version": "0.no"}
    )
    assert missing["error"] == "not_found"
    assert call(b, "GET", "/api/v1/terminals/T1") == before

    done = call(
        b, "POST", "/api/v1/history/revert", json={"kind": "terminals", "name": "T1", "version": history[1]["version"]}
    )
    assert done["changed"] is True
    converged(a, b)
    assert call(a, "GET", "/api/v1/terminals/T1")["description"] == "one"
    newest = call(a, "GET", "/api/v1/history", params={"kind": "terminals", "name": "T1"})["items"][0]
    assert newest["server"] == "tm-b" and newest["summary"].startswith("revert")


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_as_of_on_a_reaches_b(servers: ServerFactory) -> None:
    a, b = paired(servers)
    configure(a)
    then = scrub(converged(a, b))
    time.sleep(0.05)
    moment = time.time()
    time.sleep(0.05)
    call(b, "DELETE", "/api/v1/terminals/T3", 204)
    call(a, "PATCH", "/api/v1/terminals/T4", json={"description": "later"})
    call(b, "PUT", "/api/v1/terminals/T8", 201, json={"hardware": {"mac": "02:00:00:00:00:88"}})
    converged(a, b)

    dry = call(a, "POST", "/api/v1/history/revert", json={"as_of": iso(moment), "dry_run": True})
    assert (dry["added"], dry["changed"], dry["removed"]) == (
        {"terminals": ["T3"]},
        {"terminals": ["T4"]},
        {"terminals": ["T8"]},
    )
    assert scrub(objects(b)) != then, "a dry run changes nothing"

    done = call(a, "POST", "/api/v1/history/revert", json={"as_of": iso(moment)})
    assert done["objects"] == 3 and done["pre_restore_backup"]
    assert scrub(converged(a, b)) == then


def test_the_replicated_schedule_runs_on_each_server_and_a_missed_run_at_start(servers: ServerFactory) -> None:
    a, b = paired(servers)
    schedule = call(a, "PUT", "/api/v1/backup-schedule", json={"every_hours": 12, "retention": 2})
    wait_until(lambda: call(b, "GET", "/api/v1/backup-schedule") == schedule, CONVERGE_S, 0.1, "schedule on B")

    def scheduled(server: ServerProcess) -> list[str]:
        items = call(server, "GET", "/api/v1/backups")["items"]
        return [x["id"] for x in items if x.get("reason") == "schedule backup"]

    def last_success(server: ServerProcess) -> float:
        lines = server.api("GET", "/metrics").text.splitlines()
        return float(next(x for x in lines if x.startswith("thinsync_backup_last_success_timestamp ")).split()[-1])

    # Each server runs the schedule itself, into its own backup directory: at start (the first tick is
    # at once), and then every 12 hours.
    for server in (a, b):
        server.stop()
        server.start()
        server._token = None
        wait_until(lambda s=server: len(scheduled(s)) == 1, 15, 0.1, f"a scheduled backup on {server.name}")
        assert last_success(server) > time.time() - 120
    first = scheduled(b)
    b.stop()
    b.start()
    b._token = None
    time.sleep(1.0)
    assert scheduled(b) == first, "a restart within the 12 hours runs nothing"

    # B is down for 13 hours (its clock jumps ahead): the missed run happens when it starts.
    b.stop()
    b.env["THINSYNC_CLOCK_OFFSET_S"] = str(13 * 3600)
    b.start()
    b._token = None
    wait_until(lambda: len(scheduled(b)) == 2, 15, 0.1, "the missed run on B")
    assert last_success(b) > time.time() + 12 * 3600
    assert len(scheduled(a)) == 1, "A's schedule is its own"


def test_a_secondary_does_not_guess_history_from_before_pairing(servers: ServerFactory) -> None:
    """The secondary installed the primary's objects whole at pairing and has no log for them: an
    as_of there leaves them as they are (and says so) instead of deleting them, and a revert of such an
    object is refused; on the primary, which has the whole history, both work."""
    a, b = servers.start("tm-a"), servers.start("tm-b")
    configure(a)
    pair(a, b)
    b._token = None
    converged(a, b)
    time.sleep(0.05)
    moment = iso(time.time())
    time.sleep(0.05)
    call(a, "PATCH", "/api/v1/terminals/T1", json={"description": "later"})
    before = converged(a, b)

    on_b = call(b, "POST", "/api/v1/history/revert", json={"as_of": moment, "dry_run": True})
    assert on_b["removed"] == {} and on_b["added"] == {} and on_b["changed"] == {}, on_b
    assert on_b["partial_history"]["terminals"] == ["T1", "T2", "T3", "T4", "T5"]
    assert "left as they are" in on_b["note"]
    applied = call(b, "POST", "/api/v1/history/revert", json={"as_of": moment})
    assert applied["objects"] == 0
    version = call(b, "GET", "/api/v1/history", params={"kind": "terminals", "name": "T1"})["items"][0]["version"]
    refused = call(
        b, "POST", "/api/v1/history/revert", 409, json={"kind": "terminals", "name": "T1", "version": version}
    )
    assert "whole history" in refused["message"]
    assert converged(a, b) == before

    on_a = call(a, "POST", "/api/v1/history/revert", json={"as_of": moment})
    assert on_a["changed"] == {"terminals": ["T1"]} and "partial_history" not in on_a
    assert converged(a, b)["terminals"]["T1"]["description"] == ""
