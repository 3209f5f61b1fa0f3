"""`thinsync server-list`, `discover` and `sync ...` commands."""

from __future__ import annotations

import os
from typing import Any

import click
from rich.console import Console

from thinsync.cli.client import Api, CliError
from thinsync.cli.output import emit_json, show_object, table
from thinsync.cli.remote import remote
from thinsync.settings import parse_hostport


def _server(text: str) -> dict[str, Any]:
    """NAME=HOST[:PORT] -> {"name", "address", "port"}."""
    name, sep, where = text.partition("=")
    if not sep or not name or not where:
        raise CliError(f"'{text}' is not NAME=ADDRESS[:PORT] (for example tm-a=10.0.0.1:2031)", 2)
    try:
        host, port = parse_hostport(where)
    except Exception as exc:
        raise CliError(f"'{text}': {exc}", 2) from exc
    return {"name": name, "address": host, "port": port}


@click.group("server-list", help="Show or change the server list (turning auto-sync on pairs the servers).")
def server_list() -> None:
    pass


@server_list.command("show", help="Show the server list.")
@remote
def server_list_show(api: Api, as_json: bool) -> None:
    obj = api.request("GET", "/api/v1/server-list")
    if as_json:
        emit_json(obj)
    else:
        show_object(obj)


@server_list.command(
    "set",
    help="Change the server list. With --auto-sync the other server is paired: give its "
    "admin password (prompted, or THINSYNC_PEER_PASSWORD) or --pairing-code.",
)
@click.option("--auto-sync/--no-auto-sync", default=None, help="turn automatic synchronization on or off")
@click.option("--mode", type=click.Choice(["redundant", "mirrored"]))
@click.option("--primary", help="NAME=ADDRESS[:PORT]")
@click.option("--secondary", help="NAME=ADDRESS[:PORT]")
@click.option("--server", "servers", multiple=True, help="extra server NAME=ADDRESS[:PORT] (repeatable)")
@click.option("--peer-user", default="admin", show_default=True, help="admin account on the other server")
@click.option("--pairing-code", help="a pairing code shown by the other server instead of a password")
@remote
def server_list_set(
    api: Api,
    as_json: bool,
    auto_sync: bool | None,
    mode: str | None,
    primary: str | None,
    secondary: str | None,
    servers: tuple[str, ...],
    peer_user: str,
    pairing_code: str | None,
) -> None:
    body = api.request("GET", "/api/v1/server-list")
    body.pop("version", None)
    was_on = bool(body.get("auto_sync"))
    if auto_sync is not None:
        body["auto_sync"] = auto_sync
    if mode:
        body["mode"] = mode
    if primary:
        body["primary"] = _server(primary)
    if secondary:
        body["secondary"] = _server(secondary)
    if servers:
        body["servers"] = [_server(s) for s in servers]
    if body.get("auto_sync") and (not was_on or primary or secondary or servers):
        if pairing_code:
            body["peer_auth"] = {"pairing_code": pairing_code}
        else:
            password = os.environ.get("THINSYNC_PEER_PASSWORD") or click.prompt(
                f"password of {peer_user} on the other server", hide_input=True
            )
            body["peer_auth"] = {"username": peer_user, "password": password}
    obj = api.request("PUT", "/api/v1/server-list", json=body, timeout=120)
    if as_json:
        emit_json(obj)
    else:
        click.echo(
            "server list saved"
            + (" — servers paired, automatic synchronization on" if obj.get("auto_sync") and not was_on else "")
        )


@click.command("discover", help="Resolve a server name and check that a thinsync server answers there.")
@click.argument("name")
@click.option("--port", default=2031, show_default=True)
@remote
def discover(api: Api, as_json: bool, name: str, port: int) -> None:
    found = api.request("POST", "/api/v1/discover", json={"name": name, "port": port})
    if as_json:
        emit_json(found)
        return
    server = found.get("thinsync")
    answer = f"thinsync {server['version']} (node {server['node_id']})" if server else "no thinsync server answers"
    click.echo(f"{found['name']} -> {found['address']}:{found['port']}: {answer}")


@click.group("sync", help="Automatic synchronization: status, conflicts, promote.")
def sync() -> None:
    pass


@sync.command("status", help="Show the synchronization status of this server and its peers.")
@remote
def sync_status(api: Api, as_json: bool) -> None:
    status = api.request("GET", "/api/v1/sync/status")
    if as_json:
        emit_json(status)
        return
    console = Console(emoji=False, highlight=False)
    flag = "[green]in sync[/green]" if status["in_sync"] else "[red]not in sync[/red]"
    console.print(
        f"{status['node']['name']}: role {status['role']}, mode {status['mode']}, "
        f"auto-sync {'on' if status['auto_sync'] else 'off'}, {flag}, {status['conflicts_open']} open conflicts"
    )
    rows = [{**p, "state": f"{p['state']} {p.get('detail') or ''}".strip()} for p in status["peers"]]
    table(
        rows,
        [
            "name",
            "role",
            "state",
            "connected",
            "lag_changes",
            "lag_seconds",
            "clock_offset_ms",
            "last_sync",
            "last_error",
        ],
    )


@sync.command("now", help="Push pending changes and compare digests now.")
@remote
def sync_now(api: Api, as_json: bool) -> None:
    status = api.request("POST", "/api/v1/sync/now")
    emit_json(status) if as_json else click.echo("synchronizing; see 'thinsync sync status'")


@sync.command("conflicts", help="List open conflicts (--all: closed ones too).")
@click.option("--all", "show_all", is_flag=True)
@remote
def sync_conflicts(api: Api, as_json: bool, show_all: bool) -> None:
    items = api.request("GET", "/api/v1/sync/conflicts", params={"all": str(show_all).lower()})["items"]
    if as_json:
        emit_json(items)
        return
    rows = [{**c, "values": "; ".join(f"{v['server']}: {v['value']!r}" for v in c["values"])} for c in items]
    table(rows, ["id", "kind", "name", "field", "values", "state"], title=f"{len(items)} conflicts")


@sync.command("resolve", help="Resolve a conflict, keeping the winning value or the other one.")
@click.argument("conflict_id")
@click.option("--keep", type=click.Choice(["winner", "other"]), required=True)
@remote
def sync_resolve(api: Api, as_json: bool, conflict_id: str, keep: str) -> None:
    result = api.request("POST", f"/api/v1/sync/conflicts/{conflict_id}/resolve", json={"keep": keep})
    emit_json(result) if as_json else click.echo(f"conflict {conflict_id} resolved (kept the {keep})")


@sync.command("promote", help="Make this (mirrored secondary) server the primary.")
@remote
def sync_promote(api: Api, as_json: bool) -> None:
    result = api.request("POST", "/api/v1/sync/promote")
    emit_json(result) if as_json else click.echo(f"this server is now the primary: {result['primary']['name']}")


@sync.command(
    "manual",
    help="Copy the whole configuration from another server of the list to this one "
    "(only while auto-sync is off). Shows the diff first; --apply copies.",
)
@click.option("--from", "source", required=True, help="server to copy from (its name on the server list)")
@click.option("--to", "target", required=True, help="server to copy to: the one --server points at")
@click.option("--apply", "apply_", is_flag=True, help="copy for real (after an automatic backup)")
@click.option("--peer-user", default="admin", show_default=True)
@remote
def sync_manual(api: Api, as_json: bool, source: str, target: str, apply_: bool, peer_user: str) -> None:
    password = os.environ.get("THINSYNC_PEER_PASSWORD") or click.prompt(
        f"password of {peer_user} on {source}", hide_input=True
    )
    body = {
        "from": source,
        "to": target,
        "dry_run": not apply_,
        "peer_auth": {"username": peer_user, "password": password},
    }
    result = api.request("POST", "/api/v1/sync/manual", json=body, timeout=300)
    if as_json:
        emit_json(result)
        return
    for key in ("added", "changed", "removed"):
        for kind, names in result["diff"][key].items():
            click.echo(f"{key:8} {kind}: {', '.join(names)}")
    click.echo(
        "dry run: nothing changed (use --apply)"
        if result["dry_run"]
        else f"copied {result['changed_objects']} objects (backup {result['backup']} first)"
    )


@sync.command("pairing-code", help="Show a one-time code another server can pair with (instead of a password).")
@remote
def pairing_code(api: Api, as_json: bool) -> None:
    result = api.request("POST", "/api/v1/pairing-code")
    emit_json(result) if as_json else click.echo(result["pairing_code"])


def commands() -> list[click.Command]:
    return [server_list, discover, sync]
