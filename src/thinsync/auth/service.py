"""Log-in and per-request authentication with permissions from security groups."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import threading
from dataclasses import dataclass

from thinsync.auth import tokens
from thinsync.auth.passwords import Passwords
from thinsync.clock import Clock
from thinsync.errors import Forbidden, Unauthorized
from thinsync.store import ChangeSet, Store

WATCHED_KINDS = frozenset({"admins", "security-groups"})


@dataclass(frozen=True)
class Principal:
    name: str
    permissions: frozenset[str]

    def require(self, permission: str) -> None:
        if permission not in self.permissions:
            raise Forbidden(f"account '{self.name}' may not do this: it needs the '{permission}' permission")


@dataclass(frozen=True)
class _Account:
    fingerprint: str
    permissions: frozenset[str]
    disabled: bool


class AuthService:
    def __init__(self, store: Store, passwords: Passwords, clock: Clock, token_ttl_s: int) -> None:
        self._store = store
        self._passwords = passwords
        self._clock = clock
        self._ttl = token_ttl_s
        self._cache: dict[str, _Account | None] = {}
        self._generation = 0
        self._lock = threading.Lock()
        store.subscribe(self._on_change, kinds=WATCHED_KINDS)

    def close(self) -> None:
        self._store.unsubscribe(self._on_change)

    def _on_change(self, changes: list[ChangeSet]) -> None:
        # Called only for commits that touch WATCHED_KINDS.
        with self._lock:
            self._generation += 1
            self._cache.clear()

    def _load(self, name: str) -> _Account | None:
        with self._lock:
            if name in self._cache:
                return self._cache[name]
            generation = self._generation
        account = self._read_account(name)
        with self._lock:
            if generation == self._generation:
                self._cache[name] = account
        return account

    def _read_account(self, name: str) -> _Account | None:
        state = self._store.get("admins", name)
        if not state.live:
            return None
        permissions: set[str] = set()
        for group in state.vals.get("security_groups") or []:
            group_state = self._store.get("security-groups", group)
            if group_state.live:
                permissions.update(group_state.vals.get("permissions") or [])
        return _Account(
            tokens.password_fingerprint(state.vals["password_hash"]),
            frozenset(permissions),
            bool(state.vals.get("disabled")),
        )

    async def login(self, username: str, password: str) -> tuple[str, float]:
        """A bearer token and its expiry time for valid credentials; Unauthorized otherwise."""
        state = await asyncio.to_thread(self._store.get, "admins", username)
        stored = state.vals.get("password_hash") if state.live else None
        ok = await self._passwords.verify(stored, password)
        if not ok or stored is None:
            raise Unauthorized("wrong user name or password")
        if state.vals.get("disabled"):
            raise Unauthorized(f"account '{username}' is disabled")
        expires = self._clock.time() + self._ttl
        secret = self._store.require_identity().token_secret
        token = tokens.issue(secret, tokens.Claims(username, expires, tokens.password_fingerprint(stored)))
        return token, expires

    def sign(self, purpose: str, value: str) -> str:
        """An HMAC of `value` under this server's token secret, bound to `purpose` (e.g. a console
        session's CSRF token): only this server can make it, and it changes with the value."""
        secret = self._store.require_identity().token_secret
        return hmac.new(secret.encode(), f"{purpose}\x00{value}".encode(), hashlib.sha256).hexdigest()

    async def authenticate(self, header: str | None) -> Principal:
        """The principal behind an `Authorization: Bearer` header; Unauthorized when missing or bad."""
        if not header:
            raise Unauthorized("log in first: send 'Authorization: Bearer TOKEN' (POST /api/v1/login gives a token)")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("the Authorization header must be 'Bearer TOKEN'")
        return await self.authenticate_token(token.strip())

    async def authenticate_token(self, token: str) -> Principal:
        """The principal behind a bearer token (cached per account until accounts change)."""
        secret = self._store.require_identity().token_secret
        claims = tokens.read(secret, token, self._clock.time())
        with self._lock:
            cached = claims.username in self._cache
            account = self._cache.get(claims.username)
        if not cached:
            account = await asyncio.to_thread(self._load, claims.username)
        if account is None or account.fingerprint != claims.fingerprint:
            raise Unauthorized("the token is no longer valid (account removed or password changed); log in again")
        if account.disabled:
            raise Unauthorized(f"account '{claims.username}' is disabled")
        return Principal(claims.username, account.permissions)
