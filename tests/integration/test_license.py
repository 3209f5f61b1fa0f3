"""Licensing against a real pair of `thinsync serve` processes with real Ed25519-signed licence files:
no licence (standard, no limit), a terminal count decided the same way on both servers, licences that
require automatic synchronization (and refuse turning it off, or the wrong mode), every kind of bad
file refused while the current licence stays, the grace period after expiry, and the CLI's
keygen/issue/install/show as a site that issues its own licences would use them."""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.helpers.cluster import entry, in_sync, pair, wait_until
from tests.helpers.process import ADMIN_PASSWORD, THINSYNC, ServerFactory, ServerProcess
from thinsync import __version__
from thinsync.licensing import document

pytestmark = pytest.mark.process

ISSUER = Ed25519PrivateKey.generate()
ISSUER_PUBLIC = document.public_key_text(ISSUER.public_key())
STRANGER_KEY = Ed25519PrivateKey.generate()
ENV = {"THINSYNC_LICENSE_ISSUER_KEYS": ISSUER_PUBLIC}
SYNC_S = 30.0


# ---------------------------------------------------------------------------- helpers


def start_pair(
    servers: ServerFactory, env: dict[str, str] | None = None, mode: str = "redundant"
) -> tuple[ServerProcess, ServerProcess]:
    a = servers.start("tm-a", env=env if env is not None else ENV)
    b = servers.start("tm-b", env=env if env is not None else ENV)
    pair(a, b, mode=mode)
    b._token = None  # pairing replaced B's accounts with A's
    synced(a, b)
    return a, b


def synced(*servers: ServerProcess) -> None:
    wait_until(lambda: in_sync(*servers), SYNC_S, 0.05, what="the pair in sync")


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def licence(
    mode: str = "standard",
    terminals: int | None = None,
    ids: list[str] | None = None,
    *,
    key: Ed25519PrivateKey = ISSUER,
    issued: datetime | None = None,
    expires: datetime | None | str = "in-a-year",
    licence_id: str = "LIC-1",
    max_version: str = "",
) -> dict[str, Any]:
    """A real signed licence file, as `thinsync license issue` writes it (with dates of our choosing)."""
    return document.sign(
        key,
        {
            "id": licence_id,
            "mode": mode,
            "terminals": terminals,
            "installation_ids": ids or [],
            "issued": (issued or now() - timedelta(hours=1)).isoformat(),
            "expires": (now() + timedelta(days=365)).isoformat()
            if expires == "in-a-year"
            else (expires.isoformat() if isinstance(expires, datetime) else None),
            "max_version": max_version,
            "customer": "Plant 7",
        },
    )


def both_ids(a: ServerProcess, b: ServerProcess) -> list[str]:
    assert a.node_id and b.node_id and a.node_id != b.node_id
    return [a.node_id, b.node_id]


def install(server: ServerProcess, body: Any) -> httpx2.Response:
    return server.api("PUT", "/api/v1/license", json=body, timeout=30)


def installed(server: ServerProcess, body: Any) -> dict[str, Any]:
    response = install(server, body)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def get_license(server: ServerProcess) -> dict[str, Any]:
    response = server.api("GET", "/api/v1/license")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def sync_status(server: ServerProcess) -> dict[str, Any]:
    response = server.api("GET", "/api/v1/sync/status")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def shows(server: ServerProcess, licence_id: str) -> dict[str, Any] | None:
    status = get_license(server)
    return status if status.get("id") == licence_id else None


def valid(server: ServerProcess, licence_id: str) -> bool:
    return (shows(server, licence_id) or {}).get("state") == "valid"


def in_mode(server: ServerProcess, mode: str) -> bool:
    return sync_status(server)["mode"] == mode


def make_terminal(server: ServerProcess, name: str, mac: str) -> None:
    response = server.api("PUT", f"/api/v1/terminals/{name}", json={"hardware": {"mac": mac}})
    assert response.status_code in (200, 201), response.text


def boot(server: ServerProcess, mac: str) -> httpx2.Response:
    """A terminal's boot request: no admin token."""
    return httpx2.get(f"{server.url}/terminal/v1/{mac}/config", timeout=15)


def boots(server: ServerProcess, mac: str) -> bool:
    return boot(server, mac).status_code == 200


def license_events(server: ServerProcess) -> list[str]:
    response = server.api("GET", "/api/v1/events", params={"category": "license", "limit": 1000})
    assert response.status_code == 200, response.text
    return [e["message"] for e in response.json()["items"]]


def plain_error(response: httpx2.Response, status_code: int, code: str, *words: str) -> str:
    assert response.status_code == status_code, f"{response.status_code}: {response.text}"
    body = response.json()
    assert body["error"] == code, body
    message = body["message"]
    assert isinstance(message, str) and 10 < len(message) < 400 and "Traceback" not in message, body
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not in {message!r}"
    return message  # type: ignore[no-any-return]


def server_list_body(a: ServerProcess, b: ServerProcess, auto_sync: bool, mode: str) -> dict[str, Any]:
    return {"auto_sync": auto_sync, "mode": mode, "primary": entry(a), "secondary": entry(b), "servers": []}


def mac(i: int) -> str:
    return f"aa:bb:cc:10:00:{i:02x}"


def thinsync(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("THINSYNC_SERVER", "THINSYNC_USER")}
    env["THINSYNC_PASSWORD"] = ADMIN_PASSWORD
    return subprocess.run(
        [*THINSYNC, *args], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=timeout
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout


# ---------------------------------------------------------------------------- no licence


def test_without_a_licence_the_pair_runs_standard_and_every_terminal_boots(servers: ServerFactory) -> None:
    a, b = start_pair(servers)
    for server in (a, b):
        status = get_license(server)
        assert status["mode"] == "standard" and status["installed"] is False and status["state"] == "none"
        assert status["terminal_limit"] is None and status["problems"] == []
        assert sync_status(server)["license"] == {
            "mode": "standard",
            "state": "none",
            "problems": [],
            "grace_until": None,
        }
    for i in range(6):
        make_terminal(a if i % 2 else b, f"FREE-{i}", mac(i))
    synced(a, b)
    for server in (a, b):
        for i in range(6):
            response = boot(server, mac(i))
            assert response.status_code == 200, f"{server.name} FREE-{i}: {response.text}"
    assert license_events(a) == [] and license_events(b) == []


# ---------------------------------------------------------------------------- terminal count


def test_a_standard_licence_lets_the_first_n_created_terminals_boot_on_both_servers(servers: ServerFactory) -> None:
    a, b = start_pair(servers)
    # Creation order differs from name order, and the third one is made on B.
    make_terminal(a, "Z-FIRST", mac(1))
    make_terminal(a, "A-SECOND", mac(2))
    synced(a, b)
    make_terminal(b, "M-THIRD", mac(3))
    synced(a, b)

    # Installed on B; the licence replicates to A with the configuration.
    # A licence "up to 0.1" covers every 0.1.x release.
    this_release = ".".join(__version__.split(".")[:2])
    status = installed(b, licence("standard", 2, both_ids(a, b), licence_id="STD-2", max_version=this_release))
    assert status["state"] == "valid" and status["terminal_limit"] == 2 and status["refusing"] is False
    wait_until(lambda: shows(a, "STD-2"), SYNC_S, 0.05, what="A to show the licence installed on B")
    synced(a, b)
    for server in (a, b):
        status = get_license(server)
        assert status["mode"] == "standard" and status["terminals"] == 2 and status["state"] == "valid"
        assert status["installation_ids"] == both_ids(a, b) and status["issuer"] == ISSUER_PUBLIC

    documents: dict[int, set[bytes]] = {}
    for server in (a, b):
        for i in (1, 2):
            response = boot(server, mac(i))
            assert response.status_code == 200, f"{server.name} terminal {i}: {response.text}"
            documents.setdefault(i, set()).add(response.content)
        refused = boot(server, mac(3))
        plain_error(refused, 409, "not_bootable", "M-THIRD", "licence covers 2 terminals", "beyond")
        # A second attempt (served from the boot cache) is refused just the same.
        plain_error(boot(server, mac(3)), 409, "not_bootable", "licence covers 2 terminals")
        events = license_events(server)
        noted = [m for m in events if "terminal M-THIRD refused" in m]
        assert len(noted) == 1 and "beyond the licensed 2 terminals" in noted[0], events  # once, not per retry
        assert not any("Z-FIRST" in m or "A-SECOND" in m for m in events), events
    assert all(len(bodies) == 1 for bodies in documents.values()), "both servers serve the same documents"

    # Deleting one of the first two lets the third in, on both servers.
    response = a.api("DELETE", "/api/v1/terminals/Z-FIRST")
    assert response.status_code in (200, 204), response.text
    synced(a, b)
    for server in (a, b):
        wait_until(partial(boots, server, mac(3)), 10, 0.1, what=f"M-THIRD boots on {server.name}")
        assert boot(server, mac(2)).status_code == 200

    # A fourth terminal is beyond the count again.
    make_terminal(a, "B-FOURTH", mac(4))
    synced(a, b)
    for server in (a, b):
        plain_error(boot(server, mac(4)), 409, "not_bootable", "B-FOURTH", "licence covers 2 terminals")


# ---------------------------------------------------------------------------- sync-required modes


def test_a_mirrored_licence_issued_with_the_cli_replicates_and_forces_mirrored_mode(
    servers: ServerFactory, tmp_path: Path
) -> None:
    # A site that runs its own issuer: make a key pair, trust the public key on both servers.
    key_file = tmp_path / "issuer.pem"
    out = ok(thinsync("license", "keygen", "--out", str(key_file)))
    public = out.strip().splitlines()[-1].strip()
    assert key_file.stat().st_mode & 0o777 == 0o600
    env = {"THINSYNC_LICENSE_ISSUER_KEYS": f"{ISSUER_PUBLIC}, {public}"}
    a, b = start_pair(servers, env=env)

    # The installation ids, as the documentation says to read them.
    a_id = json.loads(ok(thinsync("sync", "status", "--json", "--server", a.url)))["node"]["node_id"]
    b_id = httpx2.get(f"{b.url}/healthz", timeout=10).json()["node_id"]
    assert [a_id, b_id] == both_ids(a, b)

    file = tmp_path / "mirrored.json"
    ok(
        thinsync(
            "license", "issue", "--key", str(key_file), "--mode", "mirrored", "--terminals", "25",
            "--installation-id", a_id, "--installation-id", b_id, "--days", "365",
            "--customer", "Plant 7", "--id", "MIR-1", "--out", str(file),
        )
    )  # fmt: skip
    printed = ok(thinsync("license", "install", str(file), "--server", a.url))
    assert "MIR-1" in printed and "mirrored" in printed and "valid" in printed

    shown = wait_until(lambda: shows(b, "MIR-1"), SYNC_S, 0.05, what="B to show the licence installed on A")
    assert shown["mode"] == "mirrored" and shown["state"] == "valid" and shown["terminals"] == 25
    assert shown["issuer"] == public and shown["customer"] == "Plant 7"
    cli_view = json.loads(ok(thinsync("license", "show", "--json", "--server", b.url)))
    assert cli_view["id"] == "MIR-1" and cli_view["state"] == "valid"

    # The licence implies mirrored mode: the pair was redundant and is now mirrored, on both servers.
    for server in (a, b):
        wait_until(partial(in_mode, server, "mirrored"), SYNC_S, 0.05, what=f"{server.name} mirrored")
        assert sync_status(server)["license"] == {
            "mode": "mirrored",
            "state": "valid",
            "problems": [],
            "grace_until": None,
        }
    assert any("installed mirrored licence MIR-1" in m for m in license_events(a))

    # Turning auto-sync off is refused, saying why; so is going back to redundant mode.
    off = a.api("PUT", "/api/v1/server-list", json=server_list_body(a, b, False, "mirrored"))
    plain_error(off, 409, "conflict", "mirrored licence requires automatic synchronization", "cannot be turned off")
    redundant = a.api("PUT", "/api/v1/server-list", json=server_list_body(a, b, True, "redundant"))
    plain_error(redundant, 409, "conflict", "mirrored licence implies mirrored mode")
    for server in (a, b):
        status = sync_status(server)
        assert status["auto_sync"] is True and status["mode"] == "mirrored"
        assert get_license(server)["id"] == "MIR-1"

    # The mirrored secondary takes no edits, a licence included; B's licence is A's.
    refused = install(b, licence("mirrored", 50, [a_id, b_id], licence_id="MIR-2"))
    plain_error(refused, 409, "read_only", "mirrored secondary")
    assert get_license(b)["id"] == "MIR-1"

    # The CLI refuses a file that is not JSON, and a changed one, plainly; the licence stays.
    junk = tmp_path / "junk.json"
    junk.write_text("this is not a licence\n")
    result = thinsync("license", "install", str(junk), "--server", a.url)
    assert result.returncode == 2 and "not a licence file" in result.stderr and "Traceback" not in result.stderr
    changed = json.loads(file.read_text())
    changed["license"]["terminals"] = 2500
    file.write_text(json.dumps(changed))
    result = thinsync("license", "install", str(file), "--server", a.url)
    assert result.returncode == 4, result
    assert "signature is not valid" in result.stderr and "Traceback" not in result.stderr
    assert get_license(a)["terminals"] == 25


def test_a_redundant_licence_needs_auto_sync_on_and_then_keeps_it_on(servers: ServerFactory) -> None:
    a = servers.start("tm-a", env=ENV)
    b = servers.start("tm-b", env=ENV)
    ids = both_ids(a, b)
    redundant = licence("redundant", 10, ids, licence_id="RED-1")

    # Auto-sync is off: refused, saying so, and nothing is installed.
    message = plain_error(install(a, redundant), 422, "bad_license", "requires automatic synchronization", "off")
    assert "cannot be installed" in message
    assert get_license(a)["installed"] is False
    # A licence naming only one server cannot be a redundant one either.
    plain_error(install(a, licence("enterprise", 10, [a.node_id])), 422, "bad_license", "name both servers")

    # A standard licence for A alone is fine on A ...
    installed(a, licence("standard", 10, [a.node_id], licence_id="STD-A"))
    pair(a, b)
    b._token = None
    synced(a, b)
    # ... but replicated to B it is not B's: shown loudly on B, in the grace period, terminals still boot.
    status = wait_until(lambda: shows(b, "STD-A"), SYNC_S, 0.05, what="B to show A's licence")
    assert status["state"] == "grace" and status["refusing"] is False and status["grace_until"]
    assert any("not this server" in p and b.node_id in p for p in status["problems"]), status
    assert sync_status(b)["license"]["state"] == "grace"
    assert sync_status(a)["license"]["state"] == "valid"
    assert any("licence grace" in m for m in license_events(b)), license_events(b)
    make_terminal(a, "RED-T1", mac(1))
    synced(a, b)
    assert boot(b, mac(1)).status_code == 200

    # With auto-sync on and both ids, the very same redundant licence installs, and both are valid.
    status = installed(a, redundant)
    assert status["state"] == "valid" and status["mode"] == "redundant"
    for server in (a, b):
        wait_until(partial(valid, server, "RED-1"), SYNC_S, 0.05, what=f"RED-1 valid on {server.name}")
        assert sync_status(server)["license"]["state"] == "valid"
        assert sync_status(server)["mode"] == "redundant"  # only a mirrored licence implies a mode
    assert any("licence valid" in m for m in license_events(b)), license_events(b)

    off = a.api("PUT", "/api/v1/server-list", json=server_list_body(a, b, False, "redundant"))
    plain_error(off, 409, "conflict", "redundant licence requires automatic synchronization")
    assert sync_status(a)["auto_sync"] is True and sync_status(b)["auto_sync"] is True


# ---------------------------------------------------------------------------- bad input


def test_every_kind_of_bad_licence_is_refused_and_the_current_one_stays(servers: ServerFactory) -> None:
    a, b = start_pair(servers)
    ids = both_ids(a, b)
    installed(a, licence("standard", 3, ids, licence_id="GOOD-1"))
    wait_until(lambda: shows(b, "GOOD-1"), SYNC_S, 0.05, what="B to show the licence")
    synced(a, b)
    before = {s.name: get_license(s) for s in (a, b)}
    events_before = {s.name: license_events(s) for s in (a, b)}

    tampered = licence("standard", 3, ids, licence_id="BAD-SIG")
    tampered["license"]["terminals"] = 300
    future = licence("standard", 3, ids, licence_id="FUTURE")
    future["format_version"] = document.FORMAT_VERSION + 1
    unsigned = licence("standard", 3, ids, licence_id="UNSIGNED")
    del unsigned["signature"]
    bad_mode = licence("platinum", 3, ids, licence_id="PLATINUM")
    cases: list[tuple[str, Any, int, str, tuple[str, ...]]] = [
        ("bad signature", tampered, 422, "bad_license", ("signature is not valid",)),
        (
            "unknown issuer",
            licence("standard", 3, ids, key=STRANGER_KEY, licence_id="STRANGER"),
            422,
            "bad_license",
            ("unknown issuer",),
        ),
        (
            "wrong installation ids",
            licence("standard", 3, ["node-elsewhere-1", "node-elsewhere-2"], licence_id="ELSEWHERE"),
            422,
            "bad_license",
            ("not this server", "{me}"),
        ),
        (
            "sync mode without the partner",
            lambda me, partner: licence("enterprise", 3, [me.node_id, "node-elsewhere-2"], licence_id="ENT-1"),
            422,
            "bad_license",
            ("must name both servers", "{partner}"),
        ),
        (
            "expired",
            licence("standard", 3, ids, issued=now() - timedelta(days=60), expires=now() - timedelta(days=1)),
            422,
            "bad_license",
            ("expired on",),
        ),
        (
            "not yet valid",
            licence("standard", 3, ids, issued=now() + timedelta(days=2)),
            422,
            "bad_license",
            ("not valid before",),
        ),
        ("version not covered", licence("standard", 3, ids, max_version="0.0.1"), 422, "bad_license", ("covers",)),
        ("future format", future, 422, "bad_license", ("format version 2", "reads up to 1")),
        ("incomplete", unsigned, 422, "bad_license", ("incomplete",)),
        ("unknown mode", bad_mode, 422, "bad_license", ("platinum",)),
        ("not a licence", {"hello": "world"}, 422, "bad_license", ("not a thinsync licence",)),
        ("a list", [1, 2, 3], 422, "bad_license", ("not a thinsync licence",)),
    ]
    for what, body, status_code, code, words in cases:
        for server, partner in ((a, b), (b, a)):
            said = [w.format(me=server.node_id, partner=partner.node_id) for w in words]
            sent = body(server, partner) if callable(body) else body
            plain_error(install(server, sent), status_code, code, *said)
            assert get_license(server) == before[server.name], f"{what} changed the licence on {server.name}"

    # Malformed bodies never reach the licence check.
    for server in (a, b):
        with server.client() as client:
            not_json = client.put(
                "/api/v1/license", content=b'{"format": "thinsync-lic', headers={"Content-Type": "application/json"}
            )
            plain_error(not_json, 400, "bad_request", "not valid JSON")
            empty = client.put("/api/v1/license", content=b"", headers={"Content-Type": "application/json"})
            plain_error(empty, 400, "bad_request", "no body")
            text = client.put("/api/v1/license", content=b"licence", headers={"Content-Type": "text/plain"})
            assert text.status_code == 415, text.text
        # Only administrators install licences.
        anonymous = httpx2.put(f"{server.url}/api/v1/license", json=licence("standard", 3, ids), timeout=10)
        assert anonymous.status_code == 401, anonymous.text

    synced(a, b)
    for server in (a, b):
        assert get_license(server) == before[server.name]
        assert license_events(server) == events_before[server.name]


# ---------------------------------------------------------------------------- grace period


def test_an_expired_licence_is_in_grace_then_invalid_when_the_grace_period_is_over(servers: ServerFactory) -> None:
    a, b = start_pair(servers)
    ids = both_ids(a, b)
    for i in (1, 2):
        make_terminal(a, f"GR-{i}", mac(i))
    synced(a, b)
    expires = now() + timedelta(seconds=6)
    status = installed(a, licence("standard", None, ids, expires=expires, licence_id="SHORT"))
    assert status["state"] == "valid", status
    wait_until(lambda: shows(b, "SHORT"), SYNC_S, 0.05, what="B to show the licence")
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.5)

    grace_until = (expires + timedelta(days=7)).isoformat()
    for server in (a, b):
        status = get_license(server)
        assert status["state"] == "grace", status
        assert status["problems"] == [f"the licence expired on {expires.date().isoformat()}"]
        assert status["grace_until"] == grace_until and status["refusing"] is False
        assert sync_status(server)["license"] == {
            "mode": "standard",
            "state": "grace",
            "problems": status["problems"],
            "grace_until": grace_until,
        }
        for i in (1, 2):
            response = boot(server, mac(i))
            assert response.status_code == 200, f"{server.name} GR-{i} during grace: {response.text}"
        assert any("licence grace" in m and "expired" in m for m in license_events(server))

    # With no grace period the expired licence is invalid from the start, and terminals are refused.
    for server in (a, b):
        server.stop()
    for server in (a, b):
        server.env = {**ENV, "THINSYNC_LICENSE_GRACE_DAYS": "0"}
        server.start()
    for server in (a, b):
        status = get_license(server)
        assert status["state"] == "invalid" and status["refusing"] is True, status
        assert status["grace_until"] == expires.isoformat()
        assert sync_status(server)["license"]["state"] == "invalid"
        for i in (1, 2):
            plain_error(boot(server, mac(i)), 409, "not_bootable", f"GR-{i}", "licence is not valid", "grace period")
        assert any("licence invalid" in m and "expired" in m for m in license_events(server))

    # A new, valid licence ends the refusals at once, on both servers.
    installed(a, licence("standard", None, ids, licence_id="RENEWED"))
    for server in (a, b):
        wait_until(partial(valid, server, "RENEWED"), SYNC_S, 0.05, what=f"RENEWED valid on {server.name}")
        assert get_license(server)["grace_until"] is None
        for i in (1, 2):
            assert boot(server, mac(i)).status_code == 200
