"""`thinsync backup ...` and `thinsync history ...` against a real server process: output, effects, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.helpers.process import ADMIN_PASSWORD, THINSYNC, ServerFactory, ServerProcess
from tests.integration.test_cli import EXIT_NOT_FOUND, EXIT_REFUSED, as_json, ok, plain_error

pytestmark = pytest.mark.process

PASSPHRASE = "correct horse battery"


def thinsync(
    *args: str, server: str | None = None, passphrase: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI without a terminal (so no progress bars, no prompts)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("THINSYNC_") or k.startswith("THINSYNC_PASSWORD_")}
    env["THINSYNC_PASSWORD"] = ADMIN_PASSWORD
    if passphrase is not None:
        env["THINSYNC_BACKUP_PASSPHRASE"] = passphrase
    command = [*THINSYNC, *args] + (["--server", server] if server else [])
    return subprocess.run(
        command, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=120, check=False, cwd=cwd
    )


@pytest.fixture
def a(servers: ServerFactory) -> ServerProcess:
    server = servers.start("tm-a")
    for name, mac in (("T1", "02:00:00:00:00:01"), ("T2", "02:00:00:00:00:02")):
        assert server.api("PUT", f"/api/v1/terminals/{name}", json={"hardware": {"mac": mac}}).status_code == 201
    return server


def test_backup_create_list_download_delete(a: ServerProcess, tmp_path: Path) -> None:
    made = as_json(thinsync("backup", "create", "--json", server=a.url))
    assert made["counts"]["terminals"] == 2 and made["encrypted"] is False
    text = ok(thinsync("backup", "create", server=a.url)).stdout
    assert text.startswith("backup ") and "written" in text and "objects" in text

    listed = as_json(thinsync("backup", "list", "--json", server=a.url))
    assert made["id"] in [b["id"] for b in listed] and len(listed) == 2
    assert made["id"] in ok(thinsync("backup", "list", server=a.url)).stdout

    saved = as_json(thinsync("backup", "download", made["id"], "--json", server=a.url, cwd=tmp_path))
    path = tmp_path / f"{made['id']}.tsb.gz"
    assert saved == {"id": made["id"], "file": f"{made['id']}.tsb.gz", "size": made["size"]}
    assert path.read_bytes() == (a.data / "backups" / f"{made['id']}.tsb.gz").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no partial file left behind"
    other = tmp_path / "copy.tsb.gz"
    ok(thinsync("backup", "download", made["id"], "-o", str(other), server=a.url))
    assert other.read_bytes() == path.read_bytes()
    refused = thinsync("backup", "download", made["id"], "-o", str(other), server=a.url)
    assert "already exists" in plain_error(refused, 2)

    ok(thinsync("backup", "delete", made["id"], server=a.url))
    assert made["id"] not in [b["id"] for b in as_json(thinsync("backup", "list", "--json", server=a.url))]
    plain_error(thinsync("backup", "delete", made["id"], server=a.url), EXIT_NOT_FOUND)
    missing = thinsync("backup", "download", made["id"], "-o", str(tmp_path / "x"), server=a.url)
    plain_error(missing, EXIT_NOT_FOUND)
    assert not (tmp_path / "x").exists()


def test_backup_restore_dry_run_then_apply_by_id_and_file(a: ServerProcess, tmp_path: Path) -> None:
    made = as_json(thinsync("backup", "create", "--json", server=a.url))
    assert a.api("DELETE", "/api/v1/terminals/T1").status_code == 204
    assert a.api("PUT", "/api/v1/terminals/T3", json={"hardware": {"mac": "02:00:00:00:00:03"}}).status_code == 201

    dry = ok(thinsync("backup", "restore", made["id"], server=a.url)).stdout
    assert "added    terminals (1): T1" in dry and "removed  terminals (1): T3" in dry
    assert "dry run" in dry and "nothing was changed" in dry
    assert a.api("GET", "/api/v1/terminals/T1").status_code == 404

    done = ok(thinsync("backup", "restore", made["id"], "--apply", server=a.url)).stdout
    assert "done: 2 objects changed" in done and "backup 20" in done
    assert a.api("GET", "/api/v1/terminals/T1").status_code == 200
    assert a.api("GET", "/api/v1/terminals/T3").status_code == 404

    # The same through an uploaded file, with --json.
    ok(thinsync("backup", "download", made["id"], "-o", str(tmp_path / "b.tsb.gz"), server=a.url))
    assert a.api("DELETE", "/api/v1/terminals/T2").status_code == 204
    result = as_json(thinsync("backup", "restore", "--file", str(tmp_path / "b.tsb.gz"), "--json", server=a.url))
    assert result["dry_run"] is True and result["added"] == {"terminals": ["T2"]}
    assert a.api("GET", "/api/v1/terminals/T2").status_code == 404
    args = ("backup", "restore", "--file", str(tmp_path / "b.tsb.gz"), "--apply", "--include", "admins", "--json")
    result = as_json(thinsync(*args, server=a.url))
    assert result["dry_run"] is False and result["added"] == {"terminals": ["T2"]}
    assert a.api("GET", "/api/v1/terminals/T2").status_code == 200

    # Bad input: a plain message and nothing changed.
    bad = tmp_path / "bad.tsb.gz"
    bad.write_bytes((tmp_path / "b.tsb.gz").read_bytes()[:100])
    count = len(a.api("GET", "/api/v1/backups").json()["items"])
    error = plain_error(thinsync("backup", "restore", "--file", str(bad), "--apply", server=a.url), EXIT_REFUSED)
    assert "truncated" in error
    assert len(a.api("GET", "/api/v1/backups").json()["items"]) == count
    assert "either a backup ID" in plain_error(thinsync("backup", "restore", server=a.url), 2)
    plain_error(thinsync("backup", "restore", "no-such-backup", server=a.url), EXIT_NOT_FOUND)


def test_encrypted_backup_with_the_cli(a: ServerProcess) -> None:
    made = as_json(thinsync("backup", "create", "--passphrase-prompt", "--json", server=a.url, passphrase=PASSPHRASE))
    assert made["encrypted"] is True
    assert (a.data / "backups" / f"{made['id']}.tsb.gz").read_bytes().startswith(b"TSBE1\n")
    error = plain_error(thinsync("backup", "restore", made["id"], server=a.url), EXIT_REFUSED)
    assert "encrypted" in error and "--passphrase-prompt" in error
    wrong = thinsync("backup", "restore", made["id"], "--passphrase-prompt", server=a.url, passphrase="not it at all")
    assert "wrong passphrase" in plain_error(wrong, EXIT_REFUSED)
    right = thinsync(
        "backup", "restore", made["id"], "--passphrase-prompt", "--json", server=a.url, passphrase=PASSPHRASE
    )
    assert as_json(right)["objects"] == 0


def test_backup_schedule_show_and_set(a: ServerProcess) -> None:
    assert "backups: off" in ok(thinsync("backup", "schedule", "show", server=a.url)).stdout
    saved = ok(thinsync("backup", "schedule", "set", "--at", "02:30", "--weekdays", "mon,fri", server=a.url)).stdout
    assert "on mon, fri at 02:30" in saved and "keeping the newest 7" in saved
    shown = as_json(thinsync("backup", "schedule", "show", "--json", server=a.url))
    assert shown["enabled"] is True and shown["weekdays"] == [0, 4] and shown["every_hours"] is None
    assert shown == a.api("GET", "/api/v1/schedules/backup").json()

    changed = as_json(
        thinsync("backup", "schedule", "set", "--every-hours", "6", "--retention", "3", "--json", server=a.url)
    )
    assert (changed["every_hours"], changed["at"], changed["weekdays"], changed["retention"]) == (6, None, [], 3)
    off = as_json(thinsync("backup", "schedule", "set", "--disable", "--json", server=a.url))
    assert off["enabled"] is False and off["every_hours"] == 6
    assert "backups: off" in ok(thinsync("backup", "schedule", "show", server=a.url)).stdout

    assert "not a weekday" in plain_error(thinsync("backup", "schedule", "set", "--weekdays", "xyz", server=a.url), 2)
    refused = thinsync("backup", "schedule", "set", "--at", "25:00", server=a.url)
    assert "25:00" in plain_error(refused, EXIT_REFUSED)
    assert a.api("GET", "/api/v1/backup-schedule").json() == off


def test_history_show_revert_and_as_of(a: ServerProcess) -> None:
    time.sleep(0.05)
    moment = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    time.sleep(0.05)
    for text in ("one", "two"):
        assert a.api("PATCH", "/api/v1/terminals/T1", json={"description": text}).status_code == 200

    old_usage = as_json(thinsync("history", "terminals", "T1", "--json", server=a.url))
    shown = as_json(thinsync("history", "show", "terminals", "T1", "--json", server=a.url))
    assert old_usage == shown and [h["body"]["description"] for h in shown] == ["two", "one", ""]
    table = ok(thinsync("history", "show", "terminals", "T1", server=a.url)).stdout
    assert "description" in table and "admin" in table

    done = as_json(thinsync("history", "revert", "terminals", "T1", shown[1]["version"], "--json", server=a.url))
    assert done["changed"] is True and done["object"]["description"] == "one"
    text = ok(thinsync("history", "revert", "terminals", "T1", shown[1]["version"], server=a.url)).stdout
    assert "nothing changed" in text
    missing = thinsync("history", "revert", "terminals", "T1", "0.none", server=a.url)
    assert "has no version" in plain_error(missing, EXIT_NOT_FOUND)
    assert a.api("GET", "/api/v1/terminals/T1").json()["description"] == "one"

    dry = ok(thinsync("history", "as-of", moment, server=a.url)).stdout
    assert "changed  terminals (1): T1" in dry and "dry run" in dry
    assert a.api("GET", "/api/v1/terminals/T1").json()["description"] == "one"
    result = as_json(thinsync("history", "as-of", moment, "--apply", "--json", server=a.url))
    assert result["changed"] == {"terminals": ["T1"]} and result["pre_restore_backup"]
    assert a.api("GET", "/api/v1/terminals/T1").json()["description"] == ""
    assert "ISO 8601" in plain_error(thinsync("history", "as-of", "yesterday", server=a.url), EXIT_REFUSED)


def test_json_output_is_json_only(a: ServerProcess) -> None:
    """--json prints one JSON document on stdout and nothing on stderr (no progress output)."""
    result = thinsync("backup", "create", "--json", server=a.url)
    json.loads(ok(result).stdout)
    assert result.stderr == ""
