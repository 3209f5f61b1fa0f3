"""argon2id hashing in a worker thread, one hash at a time (each takes tens of MiB)."""

from __future__ import annotations

import asyncio
import threading

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_PASSWORD = 8
MAX_PASSWORD = 1024


class Passwords:
    def __init__(self, memory_kib: int = 65536, time_cost: int = 3) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)
        self._lock = threading.Lock()
        # Verified against when the user does not exist, so timing does not reveal account names.
        self._dummy = self._hasher.hash("thinsync-no-such-user")

    def hash_sync(self, password: str) -> str:
        with self._lock:
            return self._hasher.hash(password)

    def verify_sync(self, stored: str | None, password: str) -> bool:
        with self._lock:
            try:
                return bool(self._hasher.verify(stored or self._dummy, password)) and stored is not None
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hash_sync, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        return await asyncio.to_thread(self.verify_sync, stored, password)


def password_problem(password: object) -> str | None:
    """Why a new password is not acceptable, or None."""
    if not isinstance(password, str):
        return "the password must be a string"
    if len(password) < MIN_PASSWORD:
        return f"the password must have at least {MIN_PASSWORD} characters"
    if len(password) > MAX_PASSWORD:
        return f"the password may have at most {MAX_PASSWORD} characters"
    return None
