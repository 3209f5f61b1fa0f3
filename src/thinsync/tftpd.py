"""L5 adapter: read-only TFTP serving `thinsync/{mac}.json`, the same bytes as the HTTP boot document.

The `tftp` package is young (one maintainer), so it is imported here only; if it misbehaves, this
module's inside is what gets replaced.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import tftp

from thinsync.errors import ThinsyncError
from thinsync.terminals.service import TerminalService

log = logging.getLogger(__name__)
_PATH = re.compile(r"thinsync/([0-9A-Fa-f:.\-]{12,17})\.json")


class _Bytes:
    """An async reader over an in-memory document (with its size, for the tsize option)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0
        self.size = len(data)

    async def read(self, size: int, /) -> bytes:
        chunk = self._data[self._pos : self._pos + size]
        self._pos += len(chunk)
        return chunk

    async def close(self) -> None:
        return None


class _Handler:
    def __init__(self, terminals: TerminalService) -> None:
        self._terminals = terminals

    async def open_read(self, context: Any) -> _Bytes:
        name = str(context.request.filename)
        peer = context.peer[0] if context.peer else "?"
        if ".." in name or name.startswith(("/", "\\")) or "\\" in name or "\x00" in name:
            log.warning("TFTP: refused path %r from %s", name, peer)
            raise tftp.AccessViolation(message="only thinsync/<mac>.json can be read")
        match = _PATH.fullmatch(name)
        if match is None:
            raise tftp.FileNotFound(message="only thinsync/<mac>.json can be read")
        try:
            boot = await self._terminals.boot(match.group(1), peer)
        except ThinsyncError as exc:
            raise tftp.FileNotFound(message=exc.message[:200]) from None
        return _Bytes(boot.body)

    async def open_write(self, context: Any, size: int | None) -> Any:
        peer = context.peer[0] if context.peer else "?"
        log.warning("TFTP: refused a write request from %s", peer)
        raise tftp.AccessViolation(message="this TFTP server is read-only")


class TftpServer:
    def __init__(self, terminals: TerminalService, host: str, port: int) -> None:
        self._server = tftp.AsyncTFTPServer(_Handler(terminals), listen=host, port=port, writable=False)

    async def start(self) -> int:
        await self._server.start()
        address = self._server.server_address
        return int(address[1]) if address else 0

    async def stop(self) -> None:
        await self._server.aclose()
