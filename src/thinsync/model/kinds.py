"""Every replicated configuration kind as a pydantic model (DESIGN §3)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from thinsync.model.types import Host, Mac, Name, Port, Strict, TerminalName, Text


class Monitor(Strict):
    width: int = Field(1920, ge=320, le=16384)
    height: int = Field(1080, ge=200, le=16384)
    refresh: int = Field(60, ge=1, le=480)
    rotation: Literal[0, 90, 180, 270] = 0


class Screen(Strict):
    monitors: list[Monitor] = Field(default_factory=lambda: [Monitor()], max_length=16)
    display_clients: list[Name] = Field(default_factory=list, max_length=64)


class Hardware(Strict):
    model: Text = ""
    mac: Mac
    secondary_mac: Mac | None = None

    @model_validator(mode="after")
    def _distinct(self) -> Hardware:
        if self.secondary_mac is not None and self.secondary_mac == self.mac:
            raise ValueError("secondary_mac must differ from mac")
        return self


class TerminalOptions(Strict):
    replaceable: bool = True
    allow_shadow: bool = True
    enforce_boot_priority: bool = False


class MonitorList(Strict):
    specify: bool = False
    servers: list[Host] = Field(default_factory=list, max_length=16)


class ConnectionMonitor(Strict):
    ping_timeout_s: int = Field(1, ge=1, le=60)
    ping_retry: int = Field(3, ge=0, le=20)
    interval_s: int = Field(5, ge=1, le=3600)


class _TerminalBlocks(Strict):
    """Blocks a terminal group sets for its terminals; a terminal inherits those it leaves unset."""

    description: Text = ""
    firmware: Text | None = None
    screens: list[Screen] | None = Field(None, max_length=8)
    options: TerminalOptions | None = None
    monitor_list: MonitorList | None = None
    connection_monitor: ConnectionMonitor | None = None


class Terminal(_TerminalBlocks):
    name: TerminalName
    group: Name | None = None
    location: Name | None = None
    hardware: Hardware


class TerminalGroup(_TerminalBlocks):
    name: Name


class AppLink(Strict):
    program: Text
    args: Text = ""
    dir: Text = ""


class Resolution(Strict):
    width: int = Field(ge=320, le=16384)
    height: int = Field(ge=200, le=16384)


class DisplayClientOptions(Strict):
    instant_failover: bool = False
    auto_logon: bool = False
    share_session: bool = False


class DisplayClient(Strict):
    name: Name
    description: Text = ""
    type: Literal["rds", "vnc", "camera", "web", "shadow"] = "rds"
    display_servers: list[Name] = Field(default_factory=list, max_length=64)
    options: DisplayClientOptions = Field(default_factory=DisplayClientOptions)
    app_link: AppLink | None = None
    resolution: Resolution | None = None

    @field_validator("display_servers")
    @classmethod
    def _no_repeats(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a display server may appear only once in the failover order")
        return value


class DisplayServer(Strict):
    name: Name
    description: Text = ""
    type: Literal["rds", "vnc", "camera", "web"] = "rds"
    address: Host
    port: Port = 3389
    credentials: Name | None = None
    priority: int = Field(100, ge=0, le=1000)


class User(Strict):
    """A terminal user (badge or PIN log-in at a terminal), not a console administrator."""

    name: Name
    description: Text = ""
    card_id: Text | None = None
    pin_hash: Text | None = None
    access_groups: list[Name] = Field(default_factory=list, max_length=64)
    location: Name | None = None


class AccessGroup(Strict):
    name: Name
    description: Text = ""


class Location(Strict):
    name: Name
    description: Text = ""
    display_clients: list[Name] = Field(default_factory=list, max_length=64)


PERMISSIONS = ("read", "write", "admin")
Permission = Literal["read", "write", "admin"]


def _read_only() -> list[Permission]:
    return ["read"]


class SecurityGroup(Strict):
    name: Name
    description: Text = ""
    permissions: list[Permission] = Field(default_factory=_read_only)

    @field_validator("permissions")
    @classmethod
    def _sorted_unique(cls, value: list[str]) -> list[str]:
        return sorted(set(value), key=PERMISSIONS.index)


class Admin(Strict):
    """A console/API account; replicated so one login works on every server."""

    name: Name
    description: Text = ""
    password_hash: str = Field(min_length=20, max_length=512)
    security_groups: list[Name] = Field(default_factory=list, max_length=32)
    disabled: bool = False


_HHMM = re.compile(r"([01]\d|2[0-3]):[0-5]\d")


class Schedule(Strict):
    name: Name
    description: Text = ""
    action: Literal["backup"] = "backup"
    enabled: bool = True
    every_hours: int | None = Field(None, ge=1, le=24 * 31)
    at: str | None = None
    weekdays: list[int] = Field(default_factory=list, max_length=7)
    retention: int = Field(7, ge=1, le=1000)

    @model_validator(mode="after")
    def _one_rule(self) -> Schedule:
        if (self.every_hours is None) == (self.at is None):
            raise ValueError("set exactly one of every_hours (an interval) or at (a time of day, HH:MM)")
        if self.at is not None and not _HHMM.fullmatch(self.at):
            raise ValueError(f"at '{self.at}' is not a time of day in HH:MM (24-hour)")
        if any(not 0 <= day <= 6 for day in self.weekdays):
            raise ValueError("weekdays are numbers 0 (Monday) to 6 (Sunday)")
        if self.weekdays and self.at is None:
            raise ValueError("weekdays go with at (a time of day), not with every_hours")
        return self


class Settings(Strict):
    """Site-wide policies (singleton)."""

    unknown_terminals: Literal["refuse", "unassigned", "auto_create"] = "refuse"
    # The MAC takes 12 of a terminal name's 15 characters: the prefix has at most 3.
    auto_create_name_mask: str = Field("T-{mac}", pattern=r"^[A-Za-z0-9-]{0,3}\{mac\}$")
    replacement: Literal["manual", "automatic"] = "manual"


class ServerEntry(Strict):
    name: Name
    address: Host
    port: Port = 2031


class ServerList(Strict):
    """Which servers synchronize, and how (singleton)."""

    auto_sync: bool = False
    mode: Literal["mirrored", "redundant"] = "redundant"
    primary: ServerEntry | None = None
    secondary: ServerEntry | None = None
    servers: list[ServerEntry] = Field(default_factory=list, max_length=8)

    @model_validator(mode="after")
    def _complete(self) -> ServerList:
        if self.auto_sync and (self.primary is None or self.secondary is None):
            raise ValueError("automatic synchronization needs both a primary and a secondary server")
        entries = [e for e in (self.primary, self.secondary, *self.servers) if e is not None]
        names = [e.name for e in entries]
        if len(set(names)) != len(names):
            raise ValueError("each server of the list needs its own name")
        return self


class ConflictClosed(Strict):
    state: Literal["resolved", "superseded", "fixed"]
    at: str
    by: str = ""


class Conflict(Strict):
    """A recorded conflict (replicated, so every server shows the same inbox). Written by sync only."""

    name: str = Field(pattern=r"^[0-9a-f]{16}$")
    target_kind: str
    target_name: str
    field: str
    entries: list[dict[str, Any]] = Field(default_factory=list, max_length=8)
    winner: str | None = None
    loser: str | None = None
    closed: ConflictClosed | None = None


class LicenseRecord(Strict):
    """The installed licence (singleton), replicated so both servers hold the same signed file."""

    document: dict[str, Any]
