"""What the HTTP adapters are given by the assembly (app.py): the services, never globals."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from thinsync.auth.service import AuthService
from thinsync.backup.service import BackupService
from thinsync.config.service import ConfigService
from thinsync.events.log import EventLog
from thinsync.licensing.service import LicenseService
from thinsync.metrics import Metrics
from thinsync.settings import Settings
from thinsync.store import Store
from thinsync.sync.service import SyncService
from thinsync.terminals.service import TerminalService


@dataclass
class Services:
    settings: Settings
    store: Store
    config: ConfigService
    auth: AuthService
    events: EventLog
    metrics: Metrics
    sync: SyncService
    terminals: TerminalService
    backups: BackupService
    licensing: LicenseService
    shutdown: asyncio.Event = field(default_factory=asyncio.Event)
