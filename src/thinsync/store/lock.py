"""One server per data directory: an exclusive lock held while a server runs on it."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from thinsync.errors import StoreError


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "thinsync.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(
                f"another thinsync server is already running on {self.path.parent}; stop it first "
                "(two servers must never share a data directory)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
