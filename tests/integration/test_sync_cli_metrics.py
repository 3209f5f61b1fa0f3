"""The sync commands of the CLI and the Prometheus metrics of synchronization, against a real pair with
a conflict made by a partition: `sync status|now|conflicts|resolve` and the lag, link, conflict and repair
series on /metrics."""

from __future__ import annotations

import json
import os
import re
import subprocess

import httpx2
import pytest

from tests.helpers.cluster import wait_until
from tests.helpers.process import ADMIN_PASSWORD, THINSYNC, ServerFactory, ServerProcess
from tests.helpers.syncing import conflicts, converge, proxied_pair

pytestmark = pytest.mark.process


def cli(server: ServerProcess, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("THINSYNC_SERVER", "THINSYNC_USER")}
    env["THINSYNC_PASSWORD"] = ADMIN_PASSWORD
    done = subprocess.run(
        [*THINSYNC, *args, "--server", server.url],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert done.returncode == 0, f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    return done.stdout


def metric(server: ServerProcess, name: str, labels: str = "") -> float:
    text = httpx2.get(f"{server.url}/metrics", timeout=10).text
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+-]+)$", text, re.MULTILINE)
    assert match, f"{name}{labels} not on /metrics"
    return float(match.group(1))


def test_sync_commands_and_metrics_on_a_pair_with_a_conflict(servers: ServerFactory) -> None:
    with proxied_pair(servers) as net:
        a, b = net.a, net.b
        assert a.api("PUT", "/api/v1/display-servers/shared", json={"address": "10.0.0.1"}).status_code == 201
        converge(a, b)
        shown = json.loads(cli(a, "sync", "status", "--json"))
        assert shown["in_sync"] is True and [p["name"] for p in shown["peers"]] == ["tm-b"]
        assert metric(a, "thinsync_sync_connected", '{peer="tm-b"}') == 1
        assert metric(a, "thinsync_sync_lag_changes", '{peer="tm-b"}') == 0

        net.partition()
        assert a.api("PATCH", "/api/v1/display-servers/shared", json={"address": "10.0.0.2"}).status_code == 200
        assert b.api("PATCH", "/api/v1/display-servers/shared", json={"address": "10.0.0.3"}).status_code == 200
        wait_until(lambda: metric(a, "thinsync_sync_connected", '{peer="tm-b"}') == 0, 10, what="link down")
        assert metric(a, "thinsync_sync_lag_changes", '{peer="tm-b"}') >= 1
        net.heal()
        json.loads(cli(a, "sync", "now", "--json"))
        converge(a, b)

        listed = json.loads(cli(a, "sync", "conflicts", "--json"))
        assert [c["id"] for c in listed] == [c["id"] for c in conflicts(b)] and len(listed) == 1
        assert metric(a, "thinsync_sync_conflicts_open") == metric(b, "thinsync_sync_conflicts_open") == 1
        assert metric(a, "thinsync_sync_repairs", '{peer="tm-b"}') >= 0
        cli(b, "sync", "resolve", listed[0]["id"], "--keep", "other")
        wait_until(lambda: conflicts(a) == [] and conflicts(b) == [], 15, what="the conflict closed on both")
        converge(a, b)
        assert metric(a, "thinsync_sync_conflicts_open") == 0
        assert json.loads(cli(a, "sync", "conflicts", "--all", "--json"))[0]["state"] == "resolved"
