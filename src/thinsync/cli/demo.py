"""`thinsync demo`: a server on loopback with sample configuration."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import httpx2

from thinsync.app import initialize, is_initialised
from thinsync.clock import SystemClock
from thinsync.settings import Settings
from thinsync.store import ChangeRequest, Op, Store

DEMO_PASSWORD = "thinsync-demo"


def sample_ops() -> list[Op]:
    """A small plant: two HMI display servers, three display clients, a group and six terminals."""
    ops = [
        Op("display-servers", "rds-1", "put", {"address": "10.0.10.11", "description": "HMI server 1"}),
        Op("display-servers", "rds-2", "put", {"address": "10.0.10.12", "description": "HMI server 2", "priority": 50}),
        Op("display-servers", "cam-gate", "put", {"type": "camera", "address": "10.0.20.5", "port": 554}),
        Op(
            "display-clients",
            "hmi-line1",
            "put",
            {"display_servers": ["rds-1", "rds-2"], "app_link": {"program": "C:\\FTView\\DisplayClient.exe"}},
        ),
        Op("display-clients", "hmi-line2", "put", {"display_servers": ["rds-2", "rds-1"]}),
        Op("display-clients", "gate-camera", "put", {"type": "camera", "display_servers": ["cam-gate"]}),
        Op(
            "terminal-groups",
            "line1",
            "put",
            {"description": "Line 1 operator stations", "screens": [{"display_clients": ["hmi-line1"]}]},
        ),
        Op("locations", "packaging", "put", {"description": "Packaging hall", "display_clients": ["hmi-line2"]}),
        Op("access-groups", "operators", "put", {"description": "Line operators"}),
        Op("users", "jdoe", "put", {"card_id": "04A1B2C3", "access_groups": ["operators"]}),
    ]
    for i in range(1, 7):
        body: dict[str, Any] = {
            "hardware": {"model": "ACP-6000", "mac": f"00:0b:ab:00:00:{i:02x}"},
            "description": f"Operator station {i}",
        }
        if i <= 4:
            body["group"] = "line1"
        else:
            body["screens"] = [{"display_clients": ["hmi-line2", "gate-camera"]}]
        ops.append(Op("terminals", f"OP-{i:02d}", "put", body))
    return ops


def _seed(settings: Settings, name: str, with_sample: bool) -> None:
    if is_initialised(settings):
        return
    initialize(settings, name, DEMO_PASSWORD)
    if with_sample:
        store = Store.open(settings.db_path, SystemClock())
        try:
            store.commit_sync(ChangeRequest("demo", "sample configuration", tuple(sample_ops())))
        finally:
            store.close()


def _start(settings: Settings, port: int, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    ready = settings.data_dir.parent / f"{settings.data_dir.name}.ready.json"
    ready.unlink(missing_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "thinsync.cli",
                "serve",
                "--data",
                str(settings.data_dir),
                "--listen",
                f"127.0.0.1:{port}",
                "--ready-file",
                str(ready),
                "--log-level",
                "WARNING",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise click.ClickException(f"the demo server did not start; see {log}")
        time.sleep(0.05)
    return proc, int(json.loads(ready.read_text())["http_port"])


def run_demo(data: str | None, port: int) -> None:
    """A primary and a secondary on loopback, paired with automatic synchronization."""
    directory = Path(data) if data else Path(tempfile.mkdtemp(prefix="thinsync-demo-"))
    directory.mkdir(parents=True, exist_ok=True)
    a_settings = Settings.load(directory / "tm-a")
    b_settings = Settings.load(directory / "tm-b")
    fresh = not is_initialised(a_settings)
    _seed(a_settings, "tm-a", with_sample=True)
    _seed(b_settings, "tm-b", with_sample=False)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        a, a_port = _start(a_settings, port, directory / "tm-a.log")
        procs.append(a)
        b, b_port = _start(b_settings, port + 1 if port else 0, directory / "tm-b.log")
        procs.append(b)
        if fresh:
            _pair(a_port, b_port)
        click.echo(
            f"thinsync demo: primary tm-a at http://127.0.0.1:{a_port}/ , "
            f"secondary tm-b at http://127.0.0.1:{b_port}/  (data in {directory})"
        )
        click.echo(f"  log in as admin / {DEMO_PASSWORD} on either server")
        click.echo(f"  try: THINSYNC_PASSWORD={DEMO_PASSWORD} thinsync sync status --server http://127.0.0.1:{a_port}")
        click.echo("  Ctrl-C stops the demo.", nl=True)
        sys.stdout.flush()
        stop = {"now": False}

        def handler(signum: int, frame: object) -> None:
            stop["now"] = True

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        while not stop["now"] and all(p.poll() is None for p in procs):
            time.sleep(0.2)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _pair(a_port: int, b_port: int) -> None:
    base = f"http://127.0.0.1:{a_port}"
    with httpx2.Client(base_url=base, timeout=httpx2.Timeout(60.0, connect=5.0)) as client:
        token = client.post("/api/v1/login", json={"username": "admin", "password": DEMO_PASSWORD}).json()["token"]
        body = {
            "auto_sync": True,
            "mode": "redundant",
            "primary": {"name": "tm-a", "address": "127.0.0.1", "port": a_port},
            "secondary": {"name": "tm-b", "address": "127.0.0.1", "port": b_port},
            "peer_auth": {"username": "admin", "password": DEMO_PASSWORD},
        }
        response = client.put("/api/v1/server-list", json=body, headers={"Authorization": f"Bearer {token}"})
        if response.status_code != 200:
            raise click.ClickException(f"pairing the demo servers failed: {response.text}")
