"""L6 assembly: build the store, services and HTTP app from Settings; start and stop them in order."""

from __future__ import annotations

import logging
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp

from thinsync import __version__
from thinsync.auth.passwords import Passwords, password_problem
from thinsync.auth.service import AuthService
from thinsync.backup.service import BackupService
from thinsync.clock import Clock, SystemClock
from thinsync.config.service import ConfigService
from thinsync.errors import Invalid
from thinsync.events.log import EventLog
from thinsync.http.app import create_app, serving_stack
from thinsync.http.context import Services
from thinsync.licensing.service import LicenseService
from thinsync.metrics import Metrics
from thinsync.settings import Settings
from thinsync.store import ChangeRequest, Identity, Op, Store
from thinsync.store.lock import DataDirLock
from thinsync.sync.service import SyncService
from thinsync.terminals.service import TerminalService

log = logging.getLogger(__name__)

BUILTIN_GROUPS = {
    "administrators": {"description": "Everything, including accounts", "permissions": ["read", "write", "admin"]},
    "operators": {"description": "Read and change the configuration", "permissions": ["read", "write"]},
    "viewers": {"description": "Read only", "permissions": ["read"]},
}


@dataclass
class Initialised:
    identity: Identity
    password: str
    generated: bool


def _passwords(settings: Settings) -> Passwords:
    return Passwords(settings.password_memory_kib, settings.password_time_cost)


def initialize(
    settings: Settings, name: str, admin_password: str | None = None, clock: Clock | None = None
) -> Initialised:
    """Make a data dir: node identity, built-in security groups, and the `admin` account."""
    from thinsync.model.types import valid_name

    if not valid_name(name):
        raise Invalid(f"'{name}' is not a valid server name: use letters, digits, '-', '_' or '.'")
    generated = admin_password is None
    password = admin_password if admin_password is not None else secrets.token_urlsafe(12)
    problem = password_problem(password)
    if problem:
        raise Invalid(problem)
    clock = clock or SystemClock(settings.clock_offset_s)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store.open(settings.db_path, clock, create=True)
    try:
        identity = store.create_identity(name)
        ops = [Op("security-groups", group, "put", body) for group, body in BUILTIN_GROUPS.items()]
        password_hash = _passwords(settings).hash_sync(password)
        ops.append(
            Op(
                "admins",
                "admin",
                "put",
                {
                    "description": "First administrator",
                    "password_hash": password_hash,
                    "security_groups": ["administrators"],
                },
            )
        )
        store.commit_sync(ChangeRequest("thinsync init", "initial accounts", tuple(ops)))
        store.add_event(
            "server", "info", f"data directory initialised as server '{name}'", {}, settings.event_retention
        )
    finally:
        store.close()
    return Initialised(identity, password, generated)


def is_initialised(settings: Settings) -> bool:
    return settings.db_path.exists()


class Server:
    """One assembled thinsync server: services plus the ASGI app that serves them."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        clock = clock or SystemClock(settings.clock_offset_s)
        self._lock = DataDirLock(settings.data_dir)
        self._lock.acquire()
        try:
            store = Store.open(settings.db_path, clock)
        except BaseException:
            self._lock.release()
            raise
        identity = store.require_identity()
        passwords = _passwords(settings)
        metrics = Metrics()
        metrics.add_stats(store.stats)
        events = EventLog(store, settings.event_retention)
        config = ConfigService(store, passwords)
        auth = AuthService(store, passwords, clock, settings.token_ttl_s)
        self.services = Services(
            settings=settings,
            store=store,
            config=config,
            auth=auth,
            events=events,
            metrics=metrics,
            sync=SyncService(store, config, auth, events, settings),
            backups=BackupService(store, config, events, settings, clock),
            licensing=LicenseService(store, config, events, settings, clock),
            terminals=TerminalService(
                store,
                config,
                events,
                {"name": identity.name, "address": _reachable(settings.listen_host), "port": settings.listen_port},
                settings.heartbeats_per_address,
            ),
        )
        # Open terminal watches answer as soon as shutdown begins, not after the graceful timeout.
        self.services.terminals.use_shutdown_event(self.services.shutdown)
        self.services.sync.register_metrics(metrics)
        licensing = self.services.licensing
        sync_service = self.services.sync
        self.services.terminals.may_boot = licensing.may_boot
        licensing.peer_ids = lambda: sorted(
            {p.node_id for p in sync_service.peers.values() if p.node_id} | set(store.peers())
        )
        sync_service.check_server_list = _licence_rules(licensing)
        sync = self.services.sync
        self.services.backups.peer_links = lambda: {p.name: p.connected for p in sync.peers.values()}
        backups = self.services.backups
        metrics.add_gauges(
            "thinsync_backup_last_success_timestamp",
            "Time of the last successful backup",
            [],
            lambda: [([], backups.last_success or 0.0)],
        )
        terminals = self.services.terminals
        metrics.add_gauges(
            "thinsync_terminals",
            "Terminals by status light as seen here",
            ["status"],
            lambda: [([s], float(n)) for s, n in terminals.counts().items()],
        )
        store.subscribe(lambda changes: metrics.changes.inc(sum(1 for c in changes if c.origin == identity.origin)))
        # `api` is the FastAPI application (routes, OpenAPI); `app` is what is served: `api` behind the
        # limits and the plain-ASGI hot paths.
        self.api: FastAPI = create_app(self.services, lifespan=self._lifespan)
        self.app: ASGIApp = serving_stack(self.api, self.services)

    @asynccontextmanager
    async def _lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        identity = self.services.store.require_identity()
        self.services.events.record("server", f"server '{identity.name}' started (thinsync {__version__})")
        await self.services.sync.start()
        await self.services.terminals.start()
        await self.services.backups.start()
        await self.services.licensing.start()
        try:
            yield
        finally:
            self.services.shutdown.set()
            await self.services.licensing.stop()
            await self.services.backups.stop()
            await self.services.terminals.stop()
            await self.services.sync.stop()

    def close(self) -> None:
        """Stop the services in reverse order of start (after the HTTP server has stopped)."""
        self.services.shutdown.set()
        self.services.events.record("server", "server stopped")
        self.services.auth.close()
        self.services.store.close()
        self._lock.release()


def _licence_rules(licensing: LicenseService) -> Any:
    """Server-list changes a licence forbids: turning auto-sync off, or redundant mode under a mirrored one."""

    def check(current: dict[str, Any], new: dict[str, Any]) -> None:
        if current.get("auto_sync") and not new.get("auto_sync"):
            licensing.refuse_turn_off()
        if new.get("auto_sync"):
            licensing.refuse_mode(new.get("mode", "redundant"))

    return check


def _reachable(host: str) -> str:
    """An address terminals can use for this server: the listen address, or the host name when it
    listens on every interface (used in boot documents only while auto-sync is off)."""
    return socket.gethostname() if host in ("0.0.0.0", "::", "") else host
