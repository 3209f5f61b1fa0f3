"""TerminalService: boot documents by MAC (cached), heartbeats and status lights, unknown terminals,
change notification, and the licensing hook on the boot path."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from thinsync.config.service import ConfigService
from thinsync.errors import BadRequest, Conflict, NotFound, ThinsyncError, TooManyRequests
from thinsync.events.log import EventLog
from thinsync.model import kinds as k
from thinsync.model.types import normalise_mac
from thinsync.model.validate import SINGLETON_NAME
from thinsync.store import ChangeSet, Op, Store
from thinsync.terminals import document
from thinsync.terminals.live import RateLimit, Seen

log = logging.getLogger(__name__)
WATCHED = frozenset({"terminals", "terminal-groups", "display-clients", "display-servers", "server-list", "settings"})
SWEEP_S = 1.0
FLUSH_S = 10.0
# The shortest silence that can turn a terminal red (connection-monitor minimums: 1 s x (0 + 1) + 1 s).
MIN_OFFLINE_S = 2.0
# Terminals resolved in one worker-thread job during a boot storm.
RESOLVE_BATCH = 256


class UnknownTerminal(ThinsyncError):
    status = 404
    code = "unknown_terminal"


class NotBootable(ThinsyncError):
    status = 409
    code = "not_bootable"


@dataclass(frozen=True)
class Boot:
    name: str
    body: bytes
    config_hash: str
    offline_after: float


# May this terminal boot? (allowed, reason). Licensing replaces the default.
BootPolicy = Callable[[str], tuple[bool, str]]


def parse_mac(text: str) -> str:
    """A MAC from a terminal's request path; a malformed one is a bad request (400), not a body error."""
    try:
        return normalise_mac(text)
    except ValueError:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise BadRequest(f"{shown!r} is not a MAC address; write it as aa:bb:cc:dd:ee:ff") from None


class TerminalService:
    def __init__(
        self, store: Store, config: ConfigService, events: EventLog, serving: dict[str, Any], per_address: float
    ) -> None:
        self.store = store
        self.config = config
        self.events = events
        self.serving = serving  # this server as {"name", "address", "port"} (used only with auto-sync off)
        self.may_boot: BootPolicy = lambda name: (True, "")
        self._cache: dict[str, Boot] = {}
        # Objects many documents share (groups, display clients and servers, the server list), read
        # once per generation: a boot storm after a change then reads only each terminal's own rows.
        self._shared: dict[tuple[str, str], dict[str, Any] | None] = {}
        self._waiting: dict[str, asyncio.Future[Boot | None]] = {}
        self._resolver: asyncio.Task[None] | None = None
        self._generation = 0
        # Set (and replaced) on every configuration change; watchers wait on the current one.
        self._changed = asyncio.Event()
        self._invalidating = False
        self._stopping = asyncio.Event()
        self.seen: dict[str, Seen] = {}
        self._dirty: set[str] = set()
        self._per_mac = RateLimit(per_second=5.0, burst=10.0)
        self._per_address = RateLimit(per_second=per_address, burst=per_address)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for row in await asyncio.to_thread(self.store.load_terminal_status):
            mac, last_seen, booted_from, address, state, uptime, unassigned = row
            self.seen[mac] = Seen(last_seen, booted_from, address, state, uptime, bool(unassigned), online=False)
        self.store.subscribe(self._on_change, kinds=WATCHED)
        self._tasks = [asyncio.create_task(self._sweep()), asyncio.create_task(self._flush_loop())]

    def use_shutdown_event(self, event: asyncio.Event) -> None:
        """Watches end when `event` is set (the server's shutdown, set on SIGTERM)."""
        self._stopping = event

    async def stop(self) -> None:
        self._stopping.set()  # open watches answer now instead of holding the shutdown
        self.store.unsubscribe(self._on_change)
        for task in self._tasks:
            task.cancel()
        self._flush()

    def _on_change(self, changes: list[ChangeSet]) -> None:
        if self._loop is not None:  # called only for commits that touch WATCHED
            # A cached document must never outlive the change: drop the cache now (dict.clear is
            # atomic), and wake the loop once per burst to notify watchers.
            self._cache.clear()
            if not self._invalidating:
                self._invalidating = True
                self._loop.call_soon_threadsafe(self._invalidate)

    def _invalidate(self) -> None:
        self._invalidating = False
        self._cache.clear()
        self._shared = {}  # a new dict: a resolve still running fills the old one, never this one
        self._generation += 1

        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # ------------------------------------------------------------------ boot documents

    async def boot(self, mac_text: str, client: str | None = None) -> Boot:
        mac = parse_mac(mac_text)
        cached = self._cache.get(mac)
        if cached is not None:
            self._allow(cached.name)
            return cached
        generation = self._generation
        boot = await self._lookup(mac)
        if boot is None:
            boot = await self._unknown(mac, client)
        if generation == self._generation:
            self._cache[mac] = boot
        self._allow(boot.name)
        return boot

    async def _lookup(self, mac: str) -> Boot | None:
        """Resolve in a worker thread. Boots that arrive while a batch is being resolved are resolved
        together in the next one (a boot storm costs one thread hand-off per batch, not per terminal;
        simultaneous boots of one MAC share one resolution)."""
        waiting = self._waiting.get(mac)
        if waiting is None:
            waiting = self._waiting[mac] = asyncio.get_running_loop().create_future()
            if self._resolver is None or self._resolver.done():
                self._resolver = asyncio.create_task(self._resolve_batches())
        return await asyncio.shield(waiting)  # one boot given up on does not cancel the others'

    async def _resolve_batches(self) -> None:
        while self._waiting:
            batch = dict(itertools.islice(self._waiting.items(), RESOLVE_BATCH))
            for mac in batch:
                del self._waiting[mac]
            try:
                outcomes = await asyncio.to_thread(self._resolve_many, list(batch))
            except BaseException as exc:  # the store is closing, or this task is cancelled
                outcomes = dict.fromkeys(batch, exc)
                if not isinstance(exc, Exception):
                    for future in batch.values():
                        future.cancel()
                    raise
            for mac, future in batch.items():
                outcome = outcomes[mac]
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                    future.exception()  # retrieved here: a waiter that gave up must not leave a warning
                else:
                    future.set_result(outcome)

    def _resolve_many(self, macs: list[str]) -> dict[str, Boot | None | BaseException]:
        outcomes: dict[str, Boot | None | BaseException] = {}
        for mac in macs:
            try:
                outcomes[mac] = self._resolve(mac)
            except Exception as exc:  # NotBootable, or a store error: that terminal's answer
                outcomes[mac] = exc
        return outcomes

    def _allow(self, name: str) -> None:
        allowed, reason = self.may_boot(name)
        if not allowed:
            raise NotBootable(f"terminal {name} may not boot: {reason}")

    def _read(self, kind: str, name: str) -> dict[str, Any] | None:
        state = self.store.get(kind, name)
        return dict(state.vals) if state.live else None

    def _resolve(self, mac: str) -> Boot | None:
        name = self.store.holder_of("terminals", "MAC address", mac)
        if name is None:
            return None
        terminal = self._read("terminals", name)
        if terminal is None:
            return None
        problems = self.store.problems("terminals", name)
        if problems:
            raise NotBootable(f"terminal {name} is not bootable until an administrator fixes it: {'; '.join(problems)}")
        shared = self._shared

        def lookup(kind: str, key: str) -> dict[str, Any] | None:
            if (kind, key) not in shared:
                shared[(kind, key)] = self._read(kind, key)
            return shared[(kind, key)]

        server_list = lookup("server-list", SINGLETON_NAME) or k.ServerList().model_dump(mode="json")
        doc = document.build(name, terminal, lookup, server_list, self.serving)
        body, digest = document.finish(doc)
        return Boot(name, body, digest, document.offline_after(doc["connection_monitor"]))

    async def _unknown(self, mac: str, client: str | None) -> Boot:
        settings = await asyncio.to_thread(self._read, "settings", SINGLETON_NAME) or k.Settings().model_dump()
        policy = settings.get("unknown_terminals", "refuse")
        if policy == "auto_create":
            name = auto_name(settings.get("auto_create_name_mask", "T-{mac}"), mac)
            try:
                await self.config.write(
                    "auto-create",
                    f"auto-create terminal {name} for {mac}",
                    [Op("terminals", name, "put", {"hardware": {"mac": mac}, "description": "created automatically"})],
                    gated=False,
                )
                self.events.record("terminal", f"terminal {name} created automatically for {mac} (from {client})")
            except Conflict:
                pass  # the other server (or another request) created it first: same name, same MAC
            boot = await asyncio.to_thread(self._resolve, mac)
            if boot is not None:
                return boot
        if policy == "unassigned":
            entry = self.seen.setdefault(mac, Seen(time.time(), address=client))
            if not entry.unassigned:
                entry.unassigned = True
                self._dirty.add(mac)
                self.events.record(
                    "terminal", f"unknown terminal {mac} (from {client}) is waiting to be assigned", level="warning"
                )
            raise UnknownTerminal(
                f"terminal {mac} is not configured yet; it is listed as unassigned for an administrator to assign"
            )
        raise UnknownTerminal(f"no terminal has MAC {mac}; add it, or change the unknown-terminal policy in settings")

    # ------------------------------------------------------------------ change notification

    async def watch(self, mac_text: str, known_hash: str | None, wait_s: float) -> Boot:
        """Return as soon as the terminal's configuration hash differs from `known_hash` (or on timeout)."""
        deadline = time.monotonic() + wait_s
        while True:
            boot = await self.boot(mac_text)
            remaining = deadline - time.monotonic()
            if known_hash is None or boot.config_hash != known_hash or remaining <= 0:
                return boot
            if self._stopping.is_set():
                return boot
            waiters = [asyncio.ensure_future(self._changed.wait()), asyncio.ensure_future(self._stopping.wait())]
            try:
                await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()

    # ------------------------------------------------------------------ heartbeats and lights

    async def heartbeat(self, mac_text: str, client: str, body: dict[str, Any]) -> None:
        mac = parse_mac(mac_text)
        now = time.time()
        if not self._per_address.allow(client, now) or not self._per_mac.allow(mac, now):
            raise TooManyRequests(f"too many heartbeats from {client} for {mac}; send one per interval")
        if mac not in self._cache:
            # Not booted here since the last change: a heartbeat of an unknown MAC follows the
            # unknown-terminal policy like a boot (refused, held as unassigned, or auto-created).
            with contextlib.suppress(NotBootable):  # configured, but not bootable: its light still counts
                await self.boot(mac, client)
        entry = self.seen.get(mac)
        if entry is None:
            entry = self.seen[mac] = Seen(now, online=False)
        went_online = not entry.online
        entry.last_seen = now
        entry.online = True
        entry.address = client
        for field_name in ("booted_from", "state"):
            if isinstance(body.get(field_name), str):
                setattr(entry, field_name, body[field_name][:64])
        if isinstance(body.get("uptime_s"), int | float):
            entry.uptime_s = float(body["uptime_s"])
        known = self._cache.get(mac)
        entry.offline_after = known.offline_after if known is not None else None
        self._dirty.add(mac)
        if went_online:
            name = self._name_of(mac)
            self.events.record("terminal", f"terminal {name or mac} is online (from {client})")

    def _name_of(self, mac: str) -> str | None:
        boot = self._cache.get(mac)
        return boot.name if boot else None

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            try:
                await self._mark_offline()
            except Exception:
                log.exception("terminal status sweep failed")

    async def _mark_offline(self) -> None:
        now = time.time()
        for mac, entry in list(self.seen.items()):
            if not entry.online:
                continue
            if now - entry.last_seen <= MIN_OFFLINE_S:
                continue  # heard from too recently to be red under any timings
            limit = entry.offline_after or await self._offline_after(mac)
            if now - entry.last_seen > limit:
                entry.online = False
                self._dirty.add(mac)
                self.events.record(
                    "terminal",
                    f"terminal {self._name_of(mac) or mac} is offline (no heartbeat for {limit:.0f} s)",
                    level="warning",
                )

    async def _offline_after(self, mac: str) -> float:
        boot = self._cache.get(mac)
        if boot is None:
            generation = self._generation
            try:
                boot = await asyncio.to_thread(self._resolve, mac)
            except ThinsyncError:
                boot = None
            if boot is not None and generation == self._generation:
                self._cache[mac] = boot  # not resolved again every sweep
        if boot is None:
            return document.offline_after(k.ConnectionMonitor().model_dump())
        return boot.offline_after

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            self._flush()

    def _flush(self) -> None:
        if self._dirty:
            rows = [self.seen[m].row(m) for m in self._dirty if m in self.seen]
            self._dirty = set()
            self.store.save_terminal_status(rows)

    async def status(self) -> list[dict[str, Any]]:
        """Every configured terminal with its light, plus unassigned ones seen here."""
        items: list[dict[str, Any]] = []
        listed: set[str] = set()
        cursor = None
        while True:
            page = await self.config.list_page("terminals", cursor)
            for terminal in page["items"]:
                mac = terminal["hardware"]["mac"]
                listed.add(mac)
                items.append(self._light(terminal["name"], mac))
            cursor = page["next"]
            if not cursor:
                break
        for mac, entry in sorted(self.seen.items()):
            if entry.unassigned and mac not in listed:
                items.append({**self._light(None, mac), "unassigned": True})
        return items

    def _light(self, name: str | None, mac: str) -> dict[str, Any]:
        entry = self.seen.get(mac)
        status = "never" if entry is None else "online" if entry.online else "offline"
        return {
            "name": name,
            "mac": mac,
            "status": status,
            "last_seen": _iso(entry.last_seen) if entry else None,
            "booted_from": entry.booted_from if entry else None,
            "address": entry.address if entry else None,
            "state": entry.state if entry else None,
            "uptime_s": entry.uptime_s if entry else None,
        }

    def counts(self) -> dict[str, int]:
        online = sum(1 for e in self.seen.values() if e.online)
        return {"online": online, "offline": sum(1 for e in self.seen.values() if not e.online)}


def auto_name(mask: str, mac: str) -> str:
    """A terminal name from the MAC, the same on every server (so two servers create one object)."""
    name = mask.replace("{mac}", mac.replace(":", "").upper())
    if not re.fullmatch(r"[A-Za-z0-9-]{1,15}", name):
        name = "T-" + mac.replace(":", "").upper()
    return name


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


__all__ = ["Boot", "NotBootable", "NotFound", "TerminalService", "UnknownTerminal"]
