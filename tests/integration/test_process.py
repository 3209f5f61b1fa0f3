"""A real `thinsync serve` process: ready file, health, log-in, shutdown on SIGTERM."""

from __future__ import annotations

import json

import httpx2
import pytest

from tests.helpers.process import ServerFactory

pytestmark = pytest.mark.process


def test_serve_writes_ready_file_answers_and_stops_on_sigterm(servers: ServerFactory) -> None:
    a = servers.start("tm-a")
    ready = json.loads(a.ready_file.read_text())
    assert set(ready) == {"pid", "http_port", "tftp_port", "node_id", "name"}
    assert ready["name"] == "tm-a" and ready["pid"] == a.proc.pid and ready["http_port"] > 0

    health = httpx2.get(f"{a.url}/healthz", timeout=5)
    assert health.status_code == 200
    assert health.json()["node_id"] == ready["node_id"]

    created = a.api("PUT", "/api/v1/terminals/T1", json={"hardware": {"mac": "00-0B-AB-00-00-01"}})
    assert created.status_code == 201, created.text
    assert created.json()["hardware"]["mac"] == "00:0b:ab:00:00:01"

    assert a.stop() == 0
    assert "Traceback" not in a.log_path.read_text()


def test_data_survives_restart_and_kill_9(servers: ServerFactory) -> None:
    a = servers.start("tm-a")
    acknowledged = []
    for i in range(30):
        r = a.api("PUT", f"/api/v1/display-servers/ds{i}", json={"address": f"10.0.0.{i + 1}"})
        assert r.status_code == 201
        acknowledged.append(r.json()["version"])
    a.kill()
    a.start()
    listing = a.api("GET", "/api/v1/display-servers").json()["items"]
    assert [o["version"] for o in sorted(listing, key=lambda o: int(o["name"][2:]))] == acknowledged
