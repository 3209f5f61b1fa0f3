"""The `thinsync` command line against real server processes: output, effects and exit codes."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.helpers.process import ADMIN_PASSWORD, THINSYNC, ServerFactory, ServerProcess

pytestmark = pytest.mark.process

# Named exit codes of src/thinsync/cli/client.py, spelled out: a renumbering must fail here.
EXIT_NOT_FOUND = 3
EXIT_REFUSED = 4
EXIT_AUTH = 5
EXIT_UNREACHABLE = 6


def thinsync(
    *args: str, server: str | None = None, password: str = ADMIN_PASSWORD, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `python -m thinsync.cli ARGS` (remote commands get `--server`); never prompts."""
    env = {k: v for k, v in os.environ.items() if k not in ("THINSYNC_SERVER", "THINSYNC_USER")}
    env["THINSYNC_PASSWORD"] = password
    command = [*THINSYNC, *args]
    if server is not None:
        command += ["--server", server]
    return subprocess.run(
        command, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=timeout, check=False
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(result).stdout)


def plain_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    """Assert exit `code` with one plain `Error: ...` line on stderr and nothing on stdout; return it."""
    assert result.returncode == code, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


@pytest.fixture
def a(servers: ServerFactory) -> ServerProcess:
    return servers.start("tm-a")


# -- init -------------------------------------------------------------------------------------------


def test_init_makes_a_data_dir_once_and_checks_the_name(tmp_path: Path) -> None:
    data = tmp_path / "node"
    first = ok(thinsync("init", "--data", str(data), "--name", "tm-a", "--admin-password", ADMIN_PASSWORD))
    assert "initialised server 'tm-a'" in first.stdout
    assert ADMIN_PASSWORD not in first.stdout and "shown once" not in first.stdout  # a given one is not echoed
    assert any(data.iterdir())

    again = thinsync("init", "--data", str(data), "--name", "tm-b", "--admin-password", ADMIN_PASSWORD)
    assert "already holds a thinsync server" in plain_error(again, EXIT_REFUSED)

    bad = tmp_path / "bad"
    refused = thinsync("init", "--data", str(bad), "--name", "bad name!", "--admin-password", ADMIN_PASSWORD)
    assert "not a valid server name" in plain_error(refused, EXIT_REFUSED)
    assert not bad.exists() or not any(bad.iterdir())


def test_init_without_a_password_prints_a_working_one(servers: ServerFactory) -> None:
    server = ServerProcess("tm-g", servers.root / "tm-g", servers.root / "tm-g.log")
    made = ok(thinsync("init", "--data", str(server.data), "--name", "tm-g"))
    match = re.search(r"admin password \(shown once\): (\S+)", made.stdout)
    assert match, made.stdout
    servers.started.append(server)
    server.start()
    ok(thinsync("terminal", "list", server=server.url, password=match.group(1)))
    plain_error(thinsync("terminal", "list", server=server.url, password=ADMIN_PASSWORD), EXIT_AUTH)


# -- configuration objects -------------------------------------------------------------------------


def test_terminal_set_creates_then_changes_only_the_given_fields(a: ServerProcess) -> None:
    created = ok(thinsync("terminal", "set", "T1", "hardware.mac=00-0B-AB-00-00-01", "description=first", server=a.url))
    assert "terminal T1 saved" in created.stdout
    stored = a.api("GET", "/api/v1/terminals/T1").json()
    assert stored["hardware"]["mac"] == "00:0b:ab:00:00:01"
    assert stored["description"] == "first"

    changed = as_json(thinsync("terminal", "set", "T1", "description=second", "--json", server=a.url))
    assert changed["description"] == "second"
    assert changed["hardware"]["mac"] == "00:0b:ab:00:00:01"  # a merge: other fields stay
    assert changed["version"] != stored["version"]
    assert a.api("GET", "/api/v1/terminals/T1").json() == changed


def test_terminal_list_show_and_rm(a: ServerProcess) -> None:
    for i in (1, 2):
        r = a.api("PUT", f"/api/v1/terminals/T{i}", json={"hardware": {"mac": f"00:0b:ab:00:00:0{i}"}})
        assert r.status_code == 201, r.text

    listed = as_json(thinsync("terminal", "list", "--json", server=a.url))
    assert sorted(t["name"] for t in listed) == ["T1", "T2"]
    assert {t["hardware"]["mac"] for t in listed} == {"00:0b:ab:00:00:01", "00:0b:ab:00:00:02"}

    table = ok(thinsync("terminal", "list", server=a.url)).stdout
    assert "T1" in table and "T2" in table and "2 terminals" in table

    shown = as_json(thinsync("terminal", "show", "T1", "--json", server=a.url))
    assert shown == a.api("GET", "/api/v1/terminals/T1").json()

    ok(thinsync("terminal", "rm", "T1", server=a.url))
    assert a.api("GET", "/api/v1/terminals/T1").status_code == 404
    assert [t["name"] for t in as_json(thinsync("terminal", "list", "--json", server=a.url))] == ["T2"]


def test_display_servers_and_clients_with_references(a: ServerProcess) -> None:
    ok(thinsync("display-server", "set", "rds-1", "address=10.0.0.1", server=a.url))
    ok(thinsync("display-server", "set", "rds-2", "address=10.0.0.2", "port=3390", server=a.url))
    client = as_json(
        thinsync("display-client", "set", "hmi", 'display_servers=["rds-2","rds-1"]', "--json", server=a.url)
    )
    assert client["display_servers"] == ["rds-2", "rds-1"]
    assert as_json(thinsync("display-server", "show", "rds-2", "--json", server=a.url))["port"] == 3390

    dangling = thinsync("display-client", "set", "bad", 'display_servers=["nope"]', server=a.url)
    assert "'nope'" in plain_error(dangling, EXIT_REFUSED)
    assert a.api("GET", "/api/v1/display-clients/bad").status_code == 404

    in_use = thinsync("display-server", "rm", "rds-1", server=a.url)
    assert "still used by display client 'hmi'" in plain_error(in_use, EXIT_REFUSED)

    ok(thinsync("display-client", "set", "hmi", 'display_servers=["rds-2"]', server=a.url))
    ok(thinsync("display-server", "rm", "rds-1", server=a.url))
    names = [d["name"] for d in as_json(thinsync("display-server", "list", "--json", server=a.url))]
    assert names == ["rds-2"]


def test_settings_show_and_set(a: ServerProcess) -> None:
    before = as_json(thinsync("settings", "show", "--json", server=a.url))
    assert before["unknown_terminals"] == "refuse"

    after = as_json(thinsync("settings", "set", "unknown_terminals=auto_create", "--json", server=a.url))
    assert after["unknown_terminals"] == "auto_create"
    assert after["replacement"] == before["replacement"]
    assert as_json(thinsync("settings", "show", "--json", server=a.url)) == after

    invalid = thinsync("settings", "set", "unknown_terminals=sometimes", server=a.url)
    plain_error(invalid, EXIT_REFUSED)
    assert a.api("GET", "/api/v1/settings").json()["unknown_terminals"] == "auto_create"


def test_events_and_history(a: ServerProcess) -> None:
    ok(thinsync("terminal", "set", "T1", "hardware.mac=00:0b:ab:00:00:01", "description=first", server=a.url))
    ok(thinsync("terminal", "set", "T1", "description=second", server=a.url))
    plain_error(thinsync("terminal", "list", server=a.url, password="wrong-password"), EXIT_AUTH)

    events = as_json(thinsync("events", "--json", server=a.url))
    assert [e["id"] for e in events] == sorted((e["id"] for e in events), reverse=True)  # newest first
    assert any(e["category"] == "server" and "started" in e["message"] for e in events)
    auth = as_json(thinsync("events", "--category", "auth", "--json", server=a.url))
    assert auth and {e["category"] for e in auth} == {"auth"}
    assert any(e["level"] == "warning" and "failed log-in as 'admin'" in e["message"] for e in auth)

    history = as_json(thinsync("history", "terminals", "T1", "--json", server=a.url))
    assert [h["body"]["description"] for h in history] == ["second", "first"]
    assert {h["author"] for h in history} == {"admin"}
    assert history[0]["version"] == a.api("GET", "/api/v1/terminals/T1").json()["version"]

    plain_error(thinsync("history", "terminals", "never-was", "--json", server=a.url), EXIT_NOT_FOUND)


# -- errors and exit codes ------------------------------------------------------------------------


def test_wrong_password_exits_5_with_a_plain_message(a: ServerProcess) -> None:
    result = thinsync("terminal", "list", "--json", server=a.url, password="not-the-password")
    message = plain_error(result, EXIT_AUTH)
    assert "wrong user name or password" in message
    assert "{" not in message and "401" not in message  # a sentence, not the HTTP body or status


def test_unknown_object_exits_3(a: ServerProcess) -> None:
    assert "'nope'" in plain_error(thinsync("terminal", "show", "nope", server=a.url), EXIT_NOT_FOUND)
    plain_error(thinsync("terminal", "rm", "nope", server=a.url), EXIT_NOT_FOUND)
    plain_error(thinsync("display-client", "show", "nope", "--json", server=a.url), EXIT_NOT_FOUND)


def test_refused_write_exits_4(a: ServerProcess) -> None:
    ok(thinsync("terminal", "set", "T1", "hardware.mac=00:0b:ab:00:00:01", server=a.url))
    duplicate = thinsync("terminal", "set", "T2", "hardware.mac=00-0b-ab-00-00-01", server=a.url)
    message = plain_error(duplicate, EXIT_REFUSED)
    assert "00:0b:ab:00:00:01" in message and "'T1'" in message
    assert a.api("GET", "/api/v1/terminals/T2").status_code == 404


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound (so nobody else takes it) but not listening: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_unreachable_server_exits_6(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    message = plain_error(thinsync("terminal", "list", server=url), EXIT_UNREACHABLE)
    assert f"cannot reach the thinsync server at {url}" in message


# -- serve and demo -------------------------------------------------------------------------------


def test_serve_initialises_a_new_data_dir_and_prints_the_password_once(servers: ServerFactory) -> None:
    server = servers.start("fresh", init=False)
    shown = re.findall(r"account 'admin', password \(shown once\): (\S+)", server.log_path.read_text())
    assert len(shown) == 1, server.log_tail()
    password = shown[0]
    assert password != ADMIN_PASSWORD and len(password) >= 12
    ok(thinsync("terminal", "list", server=server.url, password=password))

    assert server.stop() == 0
    server.start()
    log = server.log_path.read_text()
    assert log.count("shown once") == 1 and log.count(password) == 1
    ok(thinsync("terminal", "list", server=server.url, password=password))


def test_demo_prints_url_and_login_serves_sample_data_and_stops_on_sigterm(tmp_path: Path) -> None:
    out, err = tmp_path / "demo.out", tmp_path / "demo.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [*THINSYNC, "demo", "--port", "0", "--data", str(tmp_path / "demo")],
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            text = out.read_text()
            url_match = re.search(r"(http://127\.0\.0\.1:(\d+))/", text)
            login = re.search(r"log in as (\S+) / (\S+)", text)
            if url_match and login:
                break
            assert proc.poll() is None, f"demo exited with {proc.returncode}: {text} {err.read_text()}"
            assert time.monotonic() < deadline, f"demo printed no URL and login in 30 s: {text} {err.read_text()}"
            time.sleep(0.05)
        assert int(url_match.group(2)) > 0, text
        url, (user, password) = url_match.group(1), login.groups()

        health = httpx2.get(f"{url}/healthz", timeout=5)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        token = httpx2.post(f"{url}/api/v1/login", json={"username": user, "password": password}, timeout=10)
        assert token.status_code == 200, token.text
        headers = {"Authorization": f"Bearer {token.json()['token']}"}
        terminals = httpx2.get(f"{url}/api/v1/terminals", headers=headers, timeout=10).json()["items"]
        assert len(terminals) >= 2 and all(t["hardware"]["mac"] for t in terminals)
        listed = as_json(thinsync("terminal", "list", "--json", server=url, password=password))
        assert {t["name"] for t in listed} == {t["name"] for t in terminals}

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0, err.read_text()
        assert "Traceback" not in err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
