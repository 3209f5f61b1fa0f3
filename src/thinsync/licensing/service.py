"""LicenseService: install and check the licence, decide which terminals may boot, and refuse
turning synchronization off (or the wrong mode) under a licence that requires it."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from thinsync import __version__
from thinsync.clock import Clock
from thinsync.config.service import ConfigService
from thinsync.errors import Conflict
from thinsync.events.log import EventLog
from thinsync.licensing import document as lic
from thinsync.model.validate import SINGLETON_NAME
from thinsync.settings import Settings
from thinsync.store import ChangeSet, Op, Store

log = logging.getLogger(__name__)
# Kinds whose changes can change what the licence allows.
WATCHED = frozenset({"terminals", "license", "server-list"})
CHECK_S = 3600.0
SINCE_KEY = "license.problem_since"


class LicenseService:
    def __init__(self, store: Store, config: ConfigService, events: EventLog, settings: Settings, clock: Clock) -> None:
        self.store = store
        self.config = config
        self.events = events
        self.settings = settings
        self.clock = clock
        self.trusted = [k.strip() for k in settings.license_issuer_keys.split(",") if k.strip()]
        self._allowed: set[str] | None = None
        self._refused_noted: set[str] = set()  # terminals whose refusal is in the event log already
        self._state: str | None = None
        self._task: asyncio.Task[None] | None = None
        # Set by the assembly: node ids of the other servers of the pair (as known here).
        self.peer_ids: Any = list

    async def start(self) -> None:
        self.store.subscribe(self._on_change, kinds=WATCHED)
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        self.store.unsubscribe(self._on_change)
        if self._task is not None:
            self._task.cancel()

    def _on_change(self, changes: list[ChangeSet]) -> None:
        # Called only for commits that touch WATCHED.
        self._allowed = None

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.check)
            except Exception:
                log.exception("licence check failed")
            await asyncio.sleep(CHECK_S)

    # ------------------------------------------------------------------ reading

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.time(), UTC)

    def _stored(self) -> dict[str, Any] | None:
        state = self.store.get("license", SINGLETON_NAME)
        return dict(state.vals["document"]) if state.live and state.vals.get("document") else None

    def _server_list(self) -> dict[str, Any]:
        state = self.store.get("server-list", SINGLETON_NAME)
        return dict(state.vals) if state.live else {}

    def current(self) -> lic.License | None:
        doc = self._stored()
        if doc is None:
            return None
        try:
            return lic.parse(doc, self.trusted)
        except lic.BadLicense:
            return None

    def _problems(self, licence: lic.License, server_list: dict[str, Any]) -> list[str]:
        identity = self.store.require_identity()
        return lic.problems(
            licence,
            self._now(),
            identity.node_id,
            list(self.peer_ids()),
            bool(server_list.get("auto_sync")),
            __version__,
        )

    def check(self) -> dict[str, Any]:
        """The licence's state here, recording when a problem started (for the grace period)."""
        doc = self._stored()
        if doc is None:
            return {"mode": "standard", "installed": False, "state": "none", "terminal_limit": None, "problems": []}
        licence: lic.License | None = None
        try:
            licence = lic.parse(doc, self.trusted)
        except lic.BadLicense as exc:
            problems = [exc.message]
        if licence is not None:
            problems = self._problems(licence, self._server_list())
        since_text = self.store.node_value(SINCE_KEY)
        if problems and not since_text:
            start = (lic.expiry_start(licence, self._now()) if licence else None) or self._now()
            self.store.set_node_values({SINCE_KEY: start.isoformat()})
            since_text = start.isoformat()
        elif not problems and since_text:
            self.store.set_node_values({SINCE_KEY: None})
            since_text = None
        grace_until = None
        state = "valid"
        if problems:
            since = datetime.fromisoformat(since_text) if since_text else self._now()
            grace_until = since + timedelta(days=self.settings.license_grace_days)
            state = "grace" if self._now() < grace_until else "invalid"
        if state != self._state:
            if self._state is not None or state != "valid":
                level = "info" if state == "valid" else "error" if state == "invalid" else "warning"
                detail = "; ".join(problems) if problems else "the licence is valid"
                self.events.record("license", f"licence {state}: {detail}", level=level)
            self._state = state
            self._allowed = None
        view = licence.view() if licence else {"mode": "standard"}
        return {
            **view,
            "installed": True,
            "state": state,
            "problems": problems,
            "grace_until": grace_until.isoformat() if grace_until else None,
            "refusing": state == "invalid",
            "terminal_limit": licence.terminals if licence else None,
        }

    # ------------------------------------------------------------------ installing

    async def install(self, document: Any, author: str) -> dict[str, Any]:
        """Check a licence file and install it (it replicates with the configuration); a bad one
        changes nothing and the current licence stays in force."""
        licence = lic.parse(document, self.trusted)
        server_list = await asyncio.to_thread(self._server_list)
        problems = await asyncio.to_thread(self._problems, licence, server_list)
        if problems:
            raise lic.BadLicense("the licence cannot be installed: " + "; ".join(problems), problems=problems)
        ops = [Op("license", SINGLETON_NAME, "put", {"document": document})]
        if licence.mode == "mirrored" and server_list.get("auto_sync") and server_list.get("mode") != "mirrored":
            ops.append(Op("server-list", SINGLETON_NAME, "put", {**server_list, "mode": "mirrored"}))
        await self.config.write(author, f"install {licence.mode} licence {licence.id}", ops)
        self.events.record(
            "license",
            f"{author} installed {licence.mode} licence {licence.id} "
            f"({licence.terminals if licence.terminals is not None else 'unlimited'} terminals)",
        )
        self._allowed = None
        return await asyncio.to_thread(self.check)

    # ------------------------------------------------------------------ effects

    def may_boot(self, name: str) -> tuple[bool, str]:
        """Terminals beyond the licensed count (first N by creation stamp, the same on every server)
        and every terminal once an invalid licence's grace period is over are refused."""
        if self._allowed is None:
            self._refused_noted = set()
            self._allowed = self._compute_allowed()
        if self._allowed == {"*"}:
            return True, ""
        if self._state == "invalid":
            return False, "the licence is not valid and its grace period is over (see the licence page)"
        if name in self._allowed:
            return True, ""
        licence = self.current()
        count = licence.terminals if licence else 0
        if name not in self._refused_noted:  # once, not on every retry of a refused terminal
            self._refused_noted.add(name)
            self.events.record(
                "license", f"terminal {name} refused: beyond the licensed {count} terminals", level="warning"
            )
        return False, f"the licence covers {count} terminals and this one is beyond them"

    def _compute_allowed(self) -> set[str]:
        status = self.check()
        if not status["installed"] or status["terminal_limit"] is None:
            return {"*"} if status["state"] != "invalid" else set()
        return set(self.store.first_created("terminals", int(status["terminal_limit"])))

    def refuse_turn_off(self) -> None:
        licence = self.current()
        if licence is not None and licence.mode in lic.NEEDS_SYNC:
            raise Conflict(
                f"the installed {licence.mode} licence requires automatic synchronization; "
                "it cannot be turned off while that licence is installed"
            )

    def refuse_mode(self, mode: str) -> None:
        licence = self.current()
        if licence is not None and licence.mode == "mirrored" and mode != "mirrored":
            raise Conflict(
                "the installed mirrored licence implies mirrored mode; a redundant pair needs a redundant licence"
            )
