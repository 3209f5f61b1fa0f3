"""L6 runtime: run a Server under an embedded uvicorn in our own loop; own the signals."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn

from thinsync.app import Server
from thinsync.settings import Settings, parse_hostport
from thinsync.tftpd import TftpServer

log = logging.getLogger(__name__)

# Python's default collector thresholds (700, 10, 10) make a server that holds 100,000 objects
# spend most of a snapshot merge or a long catch-up in collections of its whole heap (measured:
# snapshot read 1.1 s -> 0.4 s, link framing 1.1 s -> 0.4 s); the configuration has no reference
# cycles to speak of, so collecting every 50,000 allocations costs little memory.
GC_THRESHOLDS = (50_000, 20, 20)


def tune_gc() -> None:
    """Collect once, move everything alive at start-up out of the collector's reach, and collect
    less often (see GC_THRESHOLDS)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class _Uvicorn(uvicorn.Server):
    """uvicorn re-raises the signal it caught on exit; we own SIGINT/SIGTERM instead."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def write_ready_file(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically: readers see nothing or the whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def bound_port(server: uvicorn.Server) -> int:
    for srv in server.servers:
        for sock in srv.sockets:
            return int(sock.getsockname()[1])
    raise RuntimeError("uvicorn has no listening socket")


async def serve(settings: Settings, on_ready: Callable[[int], None] | None = None) -> None:
    """Serve until SIGINT or SIGTERM, then stop in order: HTTP, streams, services, store."""
    # The data directory holds password hashes, the token secret and the cluster key: files this
    # server creates are readable by its own user only.
    os.umask(0o077)
    server = Server(settings)
    identity = server.services.store.require_identity()
    tune_gc()
    config = uvicorn.Config(
        server.app,
        host=settings.listen_host,
        port=settings.listen_port,
        log_config=None,
        access_log=False,
        lifespan="on",
        ws="websockets-sansio",
        timeout_graceful_shutdown=int(max(1, settings.graceful_shutdown_s)),
        server_header=False,
    )
    http = _Uvicorn(config)
    loop = asyncio.get_running_loop()

    def stop(signum: int) -> None:
        log.info("received %s; shutting down", signal.Signals(signum).name)
        server.services.shutdown.set()
        http.should_exit = True

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop, signum)
    tftp_server: TftpServer | None = None
    task = asyncio.create_task(http.serve())
    try:
        while not http.started:
            if task.done():
                await task  # re-raise a bind failure
                raise SystemExit(f"could not listen on {settings.listen}")
            await asyncio.sleep(0.01)
        port = bound_port(http)
        server.services.terminals.serving["port"] = port
        tftp_port = None
        if settings.tftp:
            host, wanted = parse_hostport(settings.tftp, default_port=69)
            tftp_server = TftpServer(server.services.terminals, host, wanted)
            tftp_port = await tftp_server.start()
            log.info("TFTP (read-only) on %s:%d", host, tftp_port)
        log.info("server '%s' serving on http://%s:%d", identity.name, settings.listen_host, port)
        if settings.ready_file is not None:
            write_ready_file(
                settings.ready_file,
                {
                    "pid": os.getpid(),
                    "http_port": port,
                    "tftp_port": tftp_port,
                    "node_id": identity.node_id,
                    "name": identity.name,
                },
            )
        if on_ready is not None:
            on_ready(port)
        await task
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        if tftp_server is not None:
            await tftp_server.stop()
        server.close()
