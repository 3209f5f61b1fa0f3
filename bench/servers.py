"""Real `thinsync serve` processes for the benchmarks: start, stop and kill by PID, log in, pair.

Every wait is bounded in time; every process a benchmark starts is stopped by its PID (callers
use `try/finally: server.stop()`, or `ServerGroup` as a context manager).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2

REPO = Path(__file__).resolve().parent.parent
ADMIN_PASSWORD = "bench-admin-password-1"
SERVER_READY_TIMEOUT_S = 60.0


def server_python() -> str:
    """The interpreter that runs the server: BENCH_SERVER_PYTHON (e.g. a venv with the `speed`
    extra) or this one."""
    return os.environ.get("BENCH_SERVER_PYTHON") or sys.executable


def server_runtime(python: str) -> dict[str, Any]:
    """Which optional speed-ups uvicorn will pick up in the server's interpreter."""
    probe = (
        "import importlib.util as u, json, platform; "
        "print(json.dumps({m: u.find_spec(m) is not None for m in ('uvloop', 'httptools')} "
        "| {'python': platform.python_version()}))"
    )
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=30, check=False)
    try:
        info: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        info = {"probe_error": done.stderr[-500:]}
    info["interpreter"] = python
    return info


class ServerUnderTest:
    """A `thinsync serve` child process on 127.0.0.1 (port 0 unless told); stopped by PID, killed if it
    will not stop. The data dir is `<root>/<name>`; `init()` runs once, `start()` may run many times."""

    def __init__(
        self, root: Path, python: str | None = None, name: str = "tm-a", env: dict[str, str] | None = None
    ) -> None:
        self.python = python or server_python()
        self.name = name
        self.env = dict(env or {})
        self.data = root / name
        self.ready = root / f"{name}.ready.json"
        self.log_path = root / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.pid = 0
        self.node_id = ""
        self._token: str | None = None
        self._client: httpx2.Client | None = None
        # perf_counter at the last exec and at the last ready file (for restart timings).
        self.exec_at = 0.0
        self.ready_at = 0.0

    def _cmd(self, *args: str) -> list[str]:
        return [self.python, "-m", "thinsync.cli", *args]

    @property
    def db_path(self) -> Path:
        return self.data / "thinsync.db"

    @property
    def initialised(self) -> bool:
        return self.db_path.exists()

    def init(self) -> None:
        subprocess.run(
            self._cmd("init", "--data", str(self.data), "--name", self.name, "--admin-password", ADMIN_PASSWORD),
            check=True,
            capture_output=True,
            timeout=120,
            cwd=REPO,
            env={**os.environ, **self.env},
        )

    def spawn(self, port: int | None = None, env: dict[str, str] | None = None) -> None:
        """Exec the server (initialising the data dir first if needed) without waiting for it."""
        if not self.initialised:
            self.init()
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"server {self.name} is already running (pid {self.proc.pid})")
        self.ready.unlink(missing_ok=True)
        self._token = None
        self.close_client()
        listen = f"127.0.0.1:{self.port if port is None else port}"
        with open(self.log_path, "ab") as log:
            self.exec_at = time.perf_counter()
            self.proc = subprocess.Popen(
                self._cmd(
                    "serve",
                    "--data",
                    str(self.data),
                    "--listen",
                    listen,
                    "--ready-file",
                    str(self.ready),
                    "--log-level",
                    "WARNING",
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env={**os.environ, **self.env, **(env or {})},
            )
        self.pid = self.proc.pid

    def wait_ready(self, timeout: float = SERVER_READY_TIMEOUT_S) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while not self.ready.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"server {self.name} not ready after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.005)
        self.ready_at = time.perf_counter()
        info = json.loads(self.ready.read_text())
        self.port = int(info["http_port"])
        self.pid = int(info["pid"])
        self.node_id = str(info.get("node_id", ""))

    def start(self, port: int | None = None, env: dict[str, str] | None = None) -> ServerUnderTest:
        """Exec and wait for the ready file. `port` None: the last port (0 the first time)."""
        self.spawn(port, env)
        self.wait_ready()
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def login(self) -> str:
        timeout = httpx2.Timeout(60.0, connect=5.0)
        with httpx2.Client(base_url=self.url, timeout=timeout, trust_env=False) as client:
            response = client.post("/api/v1/login", json={"username": "admin", "password": ADMIN_PASSWORD})
            response.raise_for_status()
            return str(response.json()["token"])

    def token(self) -> str:
        if self._token is None:
            self._token = self.login()
        return self._token

    def forget_token(self) -> None:
        """Pairing replaces a secondary's accounts (and token secret) with the primary's: log in again."""
        self._token = None
        self.close_client()

    def api(self, method: str, path: str, timeout: float = 30.0, **kwargs: Any) -> httpx2.Response:
        """One API call with the admin token (logs in again once on 401)."""
        for attempt in range(2):
            if self._client is None:
                self._client = httpx2.Client(
                    base_url=self.url,
                    headers={"Authorization": f"Bearer {self.token()}"},
                    timeout=httpx2.Timeout(timeout, connect=5.0),
                    trust_env=False,
                )
            response = self._client.request(method, path, timeout=timeout, **kwargs)
            if response.status_code != 401 or attempt:
                return response
            self.forget_token()
        raise AssertionError("unreachable")

    def status(self) -> dict[str, Any]:
        response = self.api("GET", "/api/v1/sync/status")
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def close_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM by PID and wait; SIGKILL if it does not stop in time."""
        self.close_client()
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def kill(self) -> None:
        """kill -9 by PID."""
        self.close_client()
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def vector_on_disk(self) -> dict[str, int]:
        """The version vector read straight from the database file (read-only; costs the server nothing)."""
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            return {str(o): int(s) for o, s in conn.execute("SELECT origin, seq FROM origins")}
        finally:
            conn.close()


@contextmanager
def stopping(*servers: ServerUnderTest, log: Callable[[str], Any] = print) -> Iterator[None]:
    """Stop every server by PID on the way out, whatever happened (log tails of those that crashed)."""
    try:
        yield
    finally:
        for server in servers:
            try:
                server.stop()
            except Exception as exc:  # keep stopping the others
                log(f"could not stop {server.name} (pid {server.pid}): {exc}")
                server.kill()
            if server.proc is not None and server.proc.returncode not in (0, None, -signal.SIGKILL):
                log(f"{server.name} exit code {server.proc.returncode}; log tail:\n{server.log_tail()}")


def wait_until(check: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = "") -> Any:
    """Poll `check` until it returns something truthy (exceptions count as not yet); bounded in time."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except Exception as exc:  # a server may be restarting
            last = exc
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what or check}: last {last!r}")
        time.sleep(interval)


def entry(server: ServerUnderTest, port: int | None = None) -> dict[str, Any]:
    return {"name": server.name, "address": "127.0.0.1", "port": port or server.port}


def pair(
    a: ServerUnderTest, b: ServerUnderTest, mode: str = "redundant", ports: dict[str, int] | None = None
) -> dict[str, Any]:
    """Auto-sync on at `a` (primary) with `b` (secondary) through PUT /api/v1/server-list with peer_auth.

    `ports` maps a server name to the port its peer should use (a fault proxy in front of it)."""
    ports = ports or {}
    body = {
        "auto_sync": True,
        "mode": mode,
        "primary": entry(a, ports.get(a.name)),
        "secondary": entry(b, ports.get(b.name)),
        "servers": [],
        "peer_auth": {"username": "admin", "password": ADMIN_PASSWORD},
    }
    response = a.api("PUT", "/api/v1/server-list", json=body, timeout=120)
    if response.status_code != 200:
        raise RuntimeError(f"pairing {a.name} with {b.name} failed: {response.status_code} {response.text}")
    b.forget_token()
    return response.json()  # type: ignore[no-any-return]


def in_sync(*servers: ServerUnderTest) -> bool:
    """Every server says in_sync (connected, nothing queued, digests compared equal) and the digests agree."""
    statuses = [s.status() for s in servers]
    return all(s["in_sync"] for s in statuses) and len({s["digest"] for s in statuses}) == 1


def vectors_equal(*servers: ServerUnderTest) -> bool:
    vectors = [s.vector_on_disk() for s in servers]
    return all(v == vectors[0] for v in vectors[1:])


def start_pair(
    a: ServerUnderTest,
    b: ServerUnderTest,
    ports: Callable[[], dict[str, int]] | None = None,
    timeout: float = 90.0,
) -> None:
    """Start `a` and `b` (initialising their data dirs), pair them (`a` primary) and wait until in sync.

    `ports`, called once both run, gives the ports each peer must use (fault proxies in front of them).
    The caller stops both (see `stopping`)."""
    a.start()
    b.start()
    pair(a, b, ports=ports() if ports else None)
    wait_until(lambda: in_sync(a, b), timeout, 0.1, what=f"{a.name} and {b.name} in sync after pairing")
