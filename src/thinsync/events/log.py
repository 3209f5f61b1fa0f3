"""Event log: what happened on this server, for operators. Node-local, never replicated."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from thinsync.errors import Invalid
from thinsync.store import Store

CATEGORIES = ("server", "auth", "config", "sync", "terminal", "backup", "license")
LEVELS = ("info", "warning", "error")
log = logging.getLogger("thinsync.events")


class EventLog:
    def __init__(self, store: Store, retention: int) -> None:
        self._store = store
        self._retention = retention

    def record(self, category: str, message: str, level: str = "info", **data: Any) -> None:
        """Write an event (fire and forget) and log it."""
        if category not in CATEGORIES or level not in LEVELS:
            raise ValueError(f"unknown event category/level {category}/{level}")
        log.log(
            logging.WARNING if level == "warning" else logging.ERROR if level == "error" else logging.INFO,
            "[%s] %s",
            category,
            message,
        )
        self._store.add_event(category, level, message, data, self._retention)

    async def list(self, category: str | None = None, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first."""
        if category is not None and category not in CATEGORIES:
            raise Invalid(f"unknown event category '{category}'; categories are: {', '.join(CATEGORIES)}")
        if not 1 <= limit <= 1000:
            raise Invalid("limit must be between 1 and 1000")
        return await asyncio.to_thread(self._store.events, category, after, limit)
