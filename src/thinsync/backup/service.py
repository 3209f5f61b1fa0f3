"""BackupService: backups on demand and on schedule, retention, restore, history and undo."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from thinsync.backup import archive
from thinsync.backup import restore as planner
from thinsync.backup.schedule import due, local_offset
from thinsync.clock import Clock
from thinsync.config.service import ConfigService, kind_spec, public
from thinsync.errors import Conflict, Invalid, NotFound
from thinsync.events.log import EventLog
from thinsync.model.validate import SINGLETON_NAME
from thinsync.settings import Settings
from thinsync.store import Op, State, Store
from thinsync.store.hlc import hlc_from_ms

log = logging.getLogger(__name__)
TICK_S = 30.0
LAST_SUCCESS = "backup.last_success"
END_OF_TIME = 2**63 - 1  # an HLC after every stamp: states_as_of(END_OF_TIME) replays the whole log


def _replays_to(replayed: State | None, body: dict[str, Any] | None) -> bool:
    """The log replays to this stored body (None: the object does not exist)."""
    if replayed is None or not replayed.live:
        return body is None
    return body is not None and dict(replayed.vals) == body


def _same(replayed: State, stored: State) -> bool:
    """The log replays to what is stored (same liveness and values): the object's history is whole."""
    return replayed.live == stored.live and (not stored.live or dict(replayed.vals) == dict(stored.vals))


class BackupService:
    def __init__(self, store: Store, config: ConfigService, events: EventLog, settings: Settings, clock: Clock) -> None:
        self.store = store
        self.config = config
        self.events = events
        self.settings = settings
        self.clock = clock
        # Time of the last backup written here (kept in a node value, so the metric survives a restart).
        last = store.node_value(LAST_SUCCESS)
        self.last_success: float | None = float(last) if last else None
        self._task: asyncio.Task[None] | None = None
        # Set by the assembly to the sync service's view of the peers (name -> connected).
        self.peer_links: Callable[[], dict[str, bool]] = dict

    # ------------------------------------------------------------------ backups

    async def create(self, reason: str, passphrase: str | None = None) -> dict[str, Any]:
        return await self._write(await asyncio.to_thread(archive.snapshot, self.store), reason, passphrase)

    async def _write(self, snap: archive.Snapshot, reason: str, passphrase: str | None = None) -> dict[str, Any]:
        manifest = await asyncio.to_thread(
            archive.write, snap, self.settings.backups, reason, self.clock.time(), passphrase
        )
        self.last_success = self.clock.time()
        await asyncio.to_thread(self.store.set_node_values, {LAST_SUCCESS: repr(self.last_success)})
        self.events.record("backup", f"backup {manifest['id']} written ({reason})")
        return manifest

    async def list_all(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(archive.list_backups, self.settings.backups)

    def path(self, backup_id: str) -> Any:
        return archive.path_of(self.settings.backups, backup_id)

    async def delete(self, backup_id: str, who: str) -> None:
        await asyncio.to_thread(archive.delete, self.settings.backups, backup_id)
        self.events.record("backup", f"{who} deleted backup {backup_id}")

    # ------------------------------------------------------------------ schedule

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("scheduled backup failed")
            await asyncio.sleep(TICK_S)

    async def tick(self) -> list[str]:
        """Run every schedule that is due now (including runs missed while the server was down)."""
        ran = []
        page = await self.config.list_page("schedules")
        for schedule in page["items"]:
            if schedule.get("action") != "backup":
                continue
            key = f"schedule.{schedule['name']}.last_run"
            last = await asyncio.to_thread(self.store.node_value, key)
            now = self.clock.time()
            if not due(schedule, float(last) if last else None, now, local_offset()):
                continue
            reason = f"schedule {schedule['name']}"
            try:
                manifest = await self.create(reason)
                removed = await asyncio.to_thread(
                    archive.prune, self.settings.backups, int(schedule.get("retention", 7)), reason
                )
                if removed:
                    self.events.record("backup", f"retention of {schedule['name']}: removed {len(removed)} old backups")
                ran.append(manifest["id"])
            except Exception as exc:
                self.events.record("backup", f"scheduled backup {schedule['name']} failed: {exc}", level="error")
            await asyncio.to_thread(self.store.set_node_values, {key: repr(now)})
        return ran

    # ------------------------------------------------------------------ restore

    async def _current(self) -> tuple[archive.Snapshot, planner.Objects]:
        """The configuration now, read once: compared with what a restore wants, and (unchanged) what
        its pre-restore backup holds."""
        snap = await asyncio.to_thread(archive.snapshot, self.store)
        current: planner.Objects = {}
        for obj in snap.objects:
            current.setdefault(obj["kind"], {})[obj["name"]] = obj["body"]
        return snap, current

    async def restore(
        self, data: bytes, passphrase: str | None, dry_run: bool, include: list[str], author: str, label: str
    ) -> dict[str, Any]:
        """Verify the whole file, then (unless a dry run) back up and apply it as one change set."""
        manifest, objects = await asyncio.to_thread(archive.decode, data, passphrase)
        kinds = planner.restorable(include)
        snap, current = await self._current()
        wanted = await asyncio.to_thread(planner.verify, objects, kinds, current)
        return await self._apply(wanted, snap, current, dry_run, author, f"restore of {label}", manifest)

    async def _apply(
        self,
        wanted: planner.Objects,
        snap: archive.Snapshot,
        current: planner.Objects,
        dry_run: bool,
        author: str,
        what: str,
        manifest: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        changes = await asyncio.to_thread(planner.diff, wanted, current)
        result: dict[str, Any] = {**changes, "dry_run": dry_run, "objects": planner.count(changes)}
        if manifest is not None:
            result["backup"] = {k: manifest.get(k) for k in ("server", "created", "reason", "counts", "digest")}
        if dry_run:
            return result
        before = await self._write(snap, f"before {what}")
        ops = planner.ops(wanted, current, changes)
        if ops:
            await self.config.write(author, what, ops)
        peers_down = self._peers_down()
        self.events.record(
            "backup", f"{author}: {what} applied ({len(ops)} objects changed, backup {before['id']} taken first)"
        )
        result["pre_restore_backup"] = before["id"]
        if peers_down:
            result["note"] = (
                f"{', '.join(peers_down)} cannot be reached now; the restore reaches them when they are back"
            )
        return result

    def _peers_down(self) -> list[str]:
        return [name for name, connected in self.peer_links().items() if not connected]

    # ------------------------------------------------------------------ history and undo

    async def revert(self, kind: str, name: str, version: str, author: str) -> dict[str, Any]:
        spec = kind_spec(kind)
        key = SINGLETON_NAME if spec.singleton else name
        entries = await asyncio.to_thread(self.store.history, spec.name, key)
        match = next((state for change, state in entries if change.stamp == version), None)
        if match is None:
            raise NotFound(f"{spec.title} '{name}' has no version {version}; see GET /api/v1/history")
        current = await asyncio.to_thread(self.store.get, spec.name, key)
        if not _same(entries[-1][1], current):
            # The log replays to something else than what is stored: the object came whole (pairing,
            # a snapshot, a digest repair) before this server's log starts, so its versions here hold
            # only the fields changed since. Putting one back would lose the others.
            raise Conflict(
                f"the history of {spec.title} '{name}' on this server does not reach back to the object's "
                "beginning (it came with pairing or a repair); revert it on the server that has its whole "
                "history (the one that was primary at pairing)"
            )
        if match.live:
            ops = [Op(spec.name, key, "put", dict(match.vals))]
        else:
            if not current.live:
                return {"kind": spec.name, "name": name, "reverted_to": version, "changed": False}
            ops = [Op(spec.name, key, "delete")]
        result = await self.config.write(author, f"revert {spec.title} {name} to {version}", ops)
        self.events.record("config", f"{author} reverted {spec.title} {name} to version {version}")
        state = result.results[0].state
        return {
            "kind": spec.name,
            "name": name,
            "reverted_to": version,
            "changed": result.change is not None,
            "object": public(spec, name, state) if state.live else None,
        }

    async def revert_as_of(self, when: str, dry_run: bool, include: list[str], author: str) -> dict[str, Any]:
        """The whole configuration as it was at `when` (ISO 8601), through the same path as a restore."""
        try:
            moment = datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise Invalid(f"as_of '{when}' is not an ISO 8601 time such as 2026-11-25T08:00:00Z") from None
        limit = hlc_from_ms(int(moment * 1000) + 1)
        kinds = planner.restorable(include)
        states, replayed, (snap, current) = await asyncio.gather(
            asyncio.to_thread(self.store.states_as_of, limit),
            asyncio.to_thread(self.store.states_as_of, END_OF_TIME),
            self._current(),
        )
        wanted: planner.Objects = {k: {} for k in kinds}
        for (kind, name), state in states.items():
            if kind in wanted and state.live:
                wanted[kind][name] = dict(state.vals)
        # Objects whose log does not replay to what is stored came whole before this server's log
        # starts (pairing, a snapshot, a repair): their past is unknown here, so they stay as they are.
        partial: dict[str, list[str]] = {}
        for kind in kinds:
            names = set(current.get(kind, {})) | {n for (k, n), st in replayed.items() if k == kind and st.live}
            for name in sorted(names):
                now = current.get(kind, {}).get(name)
                if _replays_to(replayed.get((kind, name)), now):
                    continue
                partial.setdefault(kind, []).append(name)
                if now is None:
                    wanted[kind].pop(name, None)
                else:
                    wanted[kind][name] = now
        result = await self._apply(wanted, snap, current, dry_run, author, f"revert to {when}")
        if partial:
            count = sum(len(n) for n in partial.values())
            result["partial_history"] = partial
            left = (
                f"{count} objects came to this server whole (with pairing or a repair) before its change log "
                "starts; their past is not known here and they were left as they are. Revert on the server "
                "that has their whole history (the one that was primary at pairing)."
            )
            result["note"] = f"{result['note']} {left}" if result.get("note") else left
        return result
