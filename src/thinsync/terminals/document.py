"""A terminal's boot document: its effective configuration as canonical JSON. Pure.

The document holds only replicated data (and, with auto-sync on, every server of the list), so two
servers holding the same configuration produce byte-identical documents; `config_hash` is the
SHA-256 of the document without the hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from thinsync.model import kinds as k

FORMAT = 1
BLOCKS = ("firmware", "screens", "options", "monitor_list", "connection_monitor")
Lookup = Callable[[str, str], Mapping[str, Any] | None]


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def effective_blocks(terminal: Mapping[str, Any], group: Mapping[str, Any] | None) -> dict[str, Any]:
    """Each block from the terminal, else from its group, else the default."""
    out: dict[str, Any] = {}
    for block in BLOCKS:
        value = terminal.get(block)
        if value is None and group is not None:
            value = group.get(block)
        out[block] = value
    out["options"] = out["options"] or k.TerminalOptions().model_dump(mode="json")
    out["connection_monitor"] = out["connection_monitor"] or k.ConnectionMonitor().model_dump(mode="json")
    out["screens"] = out["screens"] or []
    out["firmware"] = out["firmware"] or ""
    return out


def monitor_list(
    blocks: Mapping[str, Any], server_list: Mapping[str, Any], serving: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """With auto-sync on: every server of the list. Off: the terminal's own list, else this server."""
    if server_list.get("auto_sync"):
        entries = [server_list.get("primary"), server_list.get("secondary"), *(server_list.get("servers") or [])]
        return [{"name": e["name"], "address": e["address"], "port": e["port"]} for e in entries if e]
    own = blocks.get("monitor_list") or {}
    if own.get("specify") and own.get("servers"):
        return [{"name": host, "address": host, "port": 2031} for host in own["servers"]]
    return [dict(serving)]


def build(
    name: str,
    terminal: Mapping[str, Any],
    lookup: Lookup,
    server_list: Mapping[str, Any],
    serving: Mapping[str, Any],
) -> dict[str, Any]:
    """The boot document of terminal `name` (without its hash)."""
    group = lookup("terminal-groups", terminal["group"]) if terminal.get("group") else None
    blocks = effective_blocks(terminal, group)
    screens = []
    for screen in blocks["screens"]:
        clients = []
        for client_name in screen.get("display_clients") or []:
            client = lookup("display-clients", client_name) or {}
            servers = []
            for server_name in client.get("display_servers") or []:
                server = lookup("display-servers", server_name)
                if server is not None:
                    servers.append(
                        {
                            "name": server_name,
                            **{f: server.get(f) for f in ("type", "address", "port", "priority", "credentials")},
                        }
                    )
            clients.append(
                {
                    "name": client_name,
                    "type": client.get("type"),
                    "options": client.get("options"),
                    "app_link": client.get("app_link"),
                    "resolution": client.get("resolution"),
                    "display_servers": servers,
                }
            )
        screens.append({"monitors": screen.get("monitors") or [], "display_clients": clients})
    hardware = terminal["hardware"]
    return {
        "format": FORMAT,
        "terminal": {
            "name": name,
            "mac": hardware["mac"],
            "secondary_mac": hardware.get("secondary_mac"),
            "model": hardware.get("model", ""),
            "description": terminal.get("description", ""),
            "group": terminal.get("group"),
            "location": terminal.get("location"),
        },
        "firmware": blocks["firmware"],
        "options": blocks["options"],
        "screens": screens,
        "connection_monitor": blocks["connection_monitor"],
        "monitor_list": monitor_list(blocks, server_list, serving),
    }


def finish(document: dict[str, Any]) -> tuple[bytes, str]:
    """The canonical bytes of the document with its `config_hash`, and the hash."""
    digest = hashlib.sha256(canonical(document)).hexdigest()
    return canonical({**document, "config_hash": digest}), digest


def ipxe_script(mac: str, name: str, config_hash: str) -> bytes:
    """An iPXE script leading to the configuration; paths are relative to the server that served it,
    so the script is the same bytes on every server."""
    return (
        "#!ipxe\n"
        f"# thinsync: terminal {name} ({mac})\n"
        f"set thinsync-terminal {name}\n"
        f"set thinsync-config-hash {config_hash}\n"
        f"imgfetch --name thinsync.json /terminal/v1/{mac}/config || goto failed\n"
        "echo thinsync: configuration loaded\n"
        "exit 0\n"
        ":failed\n"
        "echo thinsync: cannot load the configuration; retrying in 10 s\n"
        "sleep 10\n"
        "reboot\n"
    ).encode()


def offline_after(connection_monitor: Mapping[str, Any]) -> float:
    """Seconds without a heartbeat after which a terminal shows red."""
    interval = float(connection_monitor.get("interval_s", 5))
    retry = int(connection_monitor.get("ping_retry", 3))
    timeout = float(connection_monitor.get("ping_timeout_s", 1))
    return interval * (retry + 1) + timeout
