"""Real `thinsync serve` processes on loopback: port 0, ready file, log file, stop by PID."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2

ADMIN_PASSWORD = "admin-password-1"
THINSYNC = [sys.executable, "-m", "thinsync.cli"]


@dataclass
class ServerProcess:
    name: str
    data: Path
    log_path: Path
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    node_id: str = ""
    _token: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ready_file(self) -> Path:
        return self.data.parent / f"{self.name}.ready.json"

    def init(self) -> None:
        subprocess.run(
            [*THINSYNC, "init", "--data", str(self.data), "--name", self.name, "--admin-password", ADMIN_PASSWORD],
            check=True,
            capture_output=True,
            env={**os.environ, **self.env},
            timeout=60,
        )

    def start(self, timeout: float = 20.0) -> ServerProcess:
        self.ready_file.unlink(missing_ok=True)
        listen = f"127.0.0.1:{self.port}" if self.port else "127.0.0.1:0"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    *THINSYNC,
                    "serve",
                    "--data",
                    str(self.data),
                    "--listen",
                    listen,
                    "--ready-file",
                    str(self.ready_file),
                    *self.extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
            )
        deadline = time.monotonic() + timeout
        while not self.ready_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"server {self.name} not ready after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.02)
        ready = json.loads(self.ready_file.read_text())
        self.port = ready["http_port"]
        self.node_id = ready["node_id"]
        return self

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise

    def kill(self) -> None:
        """kill -9."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def token(self, user: str = "admin", password: str = ADMIN_PASSWORD) -> str:
        if self._token is None or user != "admin":
            response = httpx2.post(
                f"{self.url}/api/v1/login", json={"username": user, "password": password}, timeout=10
            )
            response.raise_for_status()
            token = response.json()["token"]
            if user != "admin":
                return str(token)
            self._token = token
        return self._token

    def client(self) -> httpx2.Client:
        return httpx2.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token()}"}, timeout=10)

    def api(self, method: str, path: str, **kwargs: Any) -> httpx2.Response:
        with self.client() as c:
            return c.request(method, path, **kwargs)


class ServerFactory:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[ServerProcess] = []

    def start(
        self,
        name: str = "tm-a",
        *,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        init: bool = True,
    ) -> ServerProcess:
        server = ServerProcess(name, self.root / name, self.root / f"{name}.log", extra_args or [], env or {})
        if init:
            server.init()
        self.started.append(server)
        return server.start()

    def stop_all(self, report: bool = False) -> None:
        for server in self.started:
            if report:
                sys.stderr.write(f"\n--- log of {server.name} ---\n{server.log_tail()}\n")
            try:
                server.stop()
            except Exception:
                server.kill()
