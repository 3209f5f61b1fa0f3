"""`thinsync demo`: a server on loopback with sample configuration."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import click

from thinsync.app import initialize, is_initialised
from thinsync.clock import SystemClock
from thinsync.logs import configure
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


def run_demo(data: str | None, port: int) -> None:
    directory = Path(data) if data else Path(tempfile.mkdtemp(prefix="thinsync-demo-"))
    settings = Settings.load(directory / "tm-a", {"listen": f"127.0.0.1:{port}"})
    configure("WARNING", settings.log_file)
    if not is_initialised(settings):
        initialize(settings, "tm-a", DEMO_PASSWORD)
        store = Store.open(settings.db_path, SystemClock())
        try:
            store.commit_sync(ChangeRequest("demo", "sample configuration", tuple(sample_ops())))
        finally:
            store.close()

    def ready(bound: int) -> None:
        click.echo(f"thinsync demo: server tm-a at http://127.0.0.1:{bound}/  (data in {directory})")
        click.echo(f"  log in as admin / {DEMO_PASSWORD}")
        click.echo(f"  try: THINSYNC_PASSWORD={DEMO_PASSWORD} thinsync terminal list --server http://127.0.0.1:{bound}")
        click.echo("  Ctrl-C stops the demo.")

    from thinsync.runtime import serve

    asyncio.run(serve(settings, on_ready=ready))
