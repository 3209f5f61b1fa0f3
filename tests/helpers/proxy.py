"""A controllable TCP proxy for fault tests: partitions, one-way loss, delay, blackholes, flapping.

Runs its own asyncio loop in a background thread; the test drives it with plain method calls.
Put one in front of each server and give the server list the proxies' ports: every byte between
the servers then passes through a proxy the test controls.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import Future
from typing import Any


class FaultProxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.target_port = target_port
        self.port = 0
        self.mode = "pass"  # pass | refuse | blackhole
        self.drop_to_client = False  # one-way loss: the server's answers (acks) are lost
        self.drop_to_server = False
        self.delay_s = 0.0
        self._conns: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="fault-proxy")
        self._server: asyncio.AbstractServer | None = None
        self._thread.start()
        self._call(self._start()).result(10)

    def _call(self, coro: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "refuse":
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.close()
            return
        self._conns.update({writer, up_writer})
        with contextlib.suppress(asyncio.CancelledError):  # close() cancels handlers; end them quietly
            await asyncio.gather(
                self._pipe(reader, up_writer, to_server=True),
                self._pipe(up_reader, writer, to_server=False),
                return_exceptions=True,
            )
        self._conns.difference_update({writer, up_writer})

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, to_server: bool) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if self.mode == "blackhole":
                    continue  # swallowed: the connection looks alive but nothing arrives
                if (to_server and self.drop_to_server) or (not to_server and self.drop_to_client):
                    continue
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _cut(self) -> None:
        for writer in list(self._conns):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._conns.clear()

    # ---------------------------------------------------------------- controls

    def partition(self) -> None:
        """Cut every connection and refuse new ones."""
        self.mode = "refuse"
        self._call(self._cut()).result(5)

    def blackhole(self) -> None:
        """Keep connections open but deliver nothing (a silent network failure)."""
        self.mode = "blackhole"

    def heal(self) -> None:
        self.mode = "pass"
        self.drop_to_client = self.drop_to_server = False
        self.delay_s = 0.0

    def cut(self) -> None:
        """Drop the current connections once (they reconnect)."""
        self._call(self._cut()).result(5)

    def close(self) -> None:
        async def stop() -> None:
            await self._cut()
            if self._server is not None:
                self._server.close()
            # Finish the connection handlers, so no task is left pending when the loop closes.
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self._call(stop()).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()  # its self-pipe sockets, else a ResourceWarning (an error here) at collection
