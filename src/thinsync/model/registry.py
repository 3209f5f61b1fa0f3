"""The kinds as data: one KindSpec per kind says its model, references and unique keys.

Sync, history, backup and the API work on these specs generically; adding a kind means adding
a model and a spec here, nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from thinsync.model import kinds as k

Body = dict[str, Any]


@dataclass(frozen=True)
class Ref:
    """Names in `field` must be live objects of kind `target`."""

    field: str
    target: str
    extract: Callable[[Body], Iterable[str]]


@dataclass(frozen=True)
class Unique:
    """Values `extract` returns may belong to one object of the kind only."""

    label: str
    extract: Callable[[Body], Iterable[str]]


@dataclass(frozen=True)
class Index:
    """Values `extract` returns are looked up quickly (not a uniqueness rule)."""

    label: str
    extract: Callable[[Body], Iterable[str]]


@dataclass(frozen=True)
class Secret:
    """A write-only input field (`input`) stored hashed in `stored`; the hash is never shown."""

    input: str
    stored: str


@dataclass(frozen=True)
class KindSpec:
    name: str
    model: type[BaseModel]
    title: str
    singleton: bool = False
    refs: tuple[Ref, ...] = ()
    uniques: tuple[Unique, ...] = ()
    secrets: tuple[Secret, ...] = ()
    indexes: tuple[Index, ...] = ()
    # Internal kinds are replicated like the others but written only by the server itself
    # (no generic API routes or CLI commands, not restored from backups).
    internal: bool = False
    fields: tuple[str, ...] = field(default=())

    def hidden_fields(self) -> set[str]:
        return {s.stored for s in self.secrets}


def _one(name: str) -> Callable[[Body], list[str]]:
    return lambda body: [body[name]] if body.get(name) else []


def _many(name: str) -> Callable[[Body], list[str]]:
    return lambda body: list(body.get(name) or [])


def _screen_clients(body: Body) -> list[str]:
    return [dc for screen in body.get("screens") or [] for dc in screen.get("display_clients") or []]


def _macs(body: Body) -> list[str]:
    hw = body.get("hardware") or {}
    return [m for m in (hw.get("mac"), hw.get("secondary_mac")) if m]


OPEN_LOSER = "open-loser"


def open_loser_key(body: Body) -> str:
    """Index key of an open field conflict: the object, field and losing stamp it is about."""
    return "\x00".join(
        [body.get("target_kind", ""), body.get("target_name", ""), body.get("field", ""), body.get("loser") or ""]
    )


_TERMINAL_REFS = (Ref("screens.display_clients", "display-clients", _screen_clients),)

_SPECS = [
    KindSpec(
        "terminals",
        k.Terminal,
        "terminal",
        refs=(
            Ref("group", "terminal-groups", _one("group")),
            Ref("location", "locations", _one("location")),
            *_TERMINAL_REFS,
        ),
        uniques=(Unique("MAC address", _macs),),
    ),
    KindSpec("terminal-groups", k.TerminalGroup, "terminal group", refs=_TERMINAL_REFS),
    KindSpec(
        "display-clients",
        k.DisplayClient,
        "display client",
        refs=(Ref("display_servers", "display-servers", _many("display_servers")),),
    ),
    KindSpec("display-servers", k.DisplayServer, "display server"),
    KindSpec(
        "users",
        k.User,
        "user",
        refs=(
            Ref("access_groups", "access-groups", _many("access_groups")),
            Ref("location", "locations", _one("location")),
        ),
        uniques=(Unique("card id", _one("card_id")),),
        secrets=(Secret("pin", "pin_hash"),),
    ),
    KindSpec("access-groups", k.AccessGroup, "access group"),
    KindSpec(
        "locations",
        k.Location,
        "location",
        refs=(Ref("display_clients", "display-clients", _many("display_clients")),),
    ),
    KindSpec(
        "admins",
        k.Admin,
        "admin account",
        refs=(Ref("security_groups", "security-groups", _many("security_groups")),),
        secrets=(Secret("password", "password_hash"),),
    ),
    KindSpec("security-groups", k.SecurityGroup, "security group"),
    KindSpec("schedules", k.Schedule, "schedule"),
    KindSpec("settings", k.Settings, "settings", singleton=True),
    KindSpec("license", k.LicenseRecord, "licence", singleton=True),
    KindSpec(
        "conflicts",
        k.Conflict,
        "conflict",
        internal=True,
        indexes=(Index(OPEN_LOSER, lambda b: [] if b.get("closed") else [open_loser_key(b)]),),
    ),
    KindSpec("server-list", k.ServerList, "server list", singleton=True),
]

KINDS: dict[str, KindSpec] = {
    spec.name: KindSpec(**{**spec.__dict__, "fields": tuple(n for n in spec.model.model_fields if n != "name")})
    for spec in _SPECS
}
COLLECTIONS = [name for name, spec in KINDS.items() if not spec.singleton and not spec.internal]
SINGLETONS = [name for name, spec in KINDS.items() if spec.singleton]
PUBLIC_KINDS = [name for name, spec in KINDS.items() if not spec.internal]
# Kinds whose writes need the "admin" permission (account management), not just "write".
ACCOUNT_KINDS = frozenset({"admins", "security-groups"})


def spec_for(kind: str) -> KindSpec:
    """The spec of `kind`, or KeyError."""
    return KINDS[kind]


def referrers_of(target: str) -> list[tuple[KindSpec, Ref]]:
    """Every (kind, ref) that may point at objects of kind `target`."""
    return [(spec, ref) for spec in KINDS.values() for ref in spec.refs if ref.target == target]
