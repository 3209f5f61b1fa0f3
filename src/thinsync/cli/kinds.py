"""`thinsync terminal|display-client|... list|show|set|rm`: one command group per kind."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from thinsync.cli.client import EXIT_NOT_FOUND, Api, CliError
from thinsync.cli.output import emit_json, show_object, table
from thinsync.cli.remote import remote
from thinsync.model.registry import KINDS, KindSpec

LIST_COLUMNS = {
    "terminals": ["name", "hardware", "group", "description"],
    "display-clients": ["name", "type", "display_servers", "description"],
    "display-servers": ["name", "type", "address", "port", "priority"],
    "users": ["name", "access_groups", "description"],
    "admins": ["name", "security_groups", "disabled"],
    "security-groups": ["name", "permissions", "description"],
}


def parse_assignments(pairs: tuple[str, ...]) -> dict[str, Any]:
    """`a.b=1 c=text` -> {"a": {"b": 1}, "c": "text"}; values are JSON when they parse as JSON."""
    body: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise CliError(f"'{pair}' is not FIELD=VALUE (for example hardware.mac=aa:bb:cc:dd:ee:ff)", 2)
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        target = body
        parts = key.split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise CliError(f"'{key}' sets a field inside a value that is not an object", 2)
        target[parts[-1]] = value
    return body


def _object_path(spec: KindSpec, name: str | None) -> str:
    if spec.singleton:
        return f"/api/v1/{spec.name}"
    return f"/api/v1/{spec.name}/{quote(name or '', safe='')}"


def kind_group(spec: KindSpec) -> click.Group:
    command_name = spec.name if spec.singleton else spec.name.removesuffix("s")

    @click.group(
        name=command_name, help=f"Show or change the {spec.title}." if spec.singleton else f"Manage {spec.title}s."
    )
    def group() -> None:
        pass

    @group.command("list", help=f"List {spec.title}s.")
    @remote
    def list_cmd(api: Api, as_json: bool) -> None:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, str] = {"cursor": cursor} if cursor else {}
            page = api.request("GET", f"/api/v1/{spec.name}", params=params)
            items.extend(page["items"])
            cursor = page["next"]
            if not cursor:
                break
        if as_json:
            emit_json(items)
        else:
            table(items, LIST_COLUMNS.get(spec.name, ["name", "description"]), title=f"{len(items)} {spec.title}s")

    def name_arg(fn: Any) -> Any:
        return fn if spec.singleton else click.argument("name")(fn)

    @group.command("show", help=f"Show the {spec.title}." if spec.singleton else f"Show one {spec.title}.")
    @name_arg
    @remote
    def show_cmd(api: Api, as_json: bool, name: str | None = None) -> None:
        obj = api.request("GET", _object_path(spec, name))
        if as_json:
            emit_json(obj)
        else:
            show_object(obj)

    @group.command(
        "set",
        help=f"Create a {spec.title} or change some of its fields: FIELD=VALUE pairs (dotted for nested "
        "fields, JSON values allowed), or a whole object with --file. --replace replaces it whole.",
    )
    @name_arg
    @click.argument("assignments", nargs=-1)
    @click.option("--file", "file", type=click.Path(dir_okay=False, allow_dash=True), help="JSON object to send")
    @click.option("--replace", is_flag=True, help="replace the whole object (PUT) instead of merging (PATCH)")
    @remote
    def set_cmd(
        api: Api, as_json: bool, assignments: tuple[str, ...], file: str | None, replace: bool, name: str | None = None
    ) -> None:
        body: dict[str, Any] = {}
        if file:
            text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
            try:
                body = json.loads(text)
            except ValueError as exc:
                raise CliError(f"{file} is not valid JSON: {exc}", 2) from exc
            if not isinstance(body, dict):
                raise CliError(f"{file} must hold a JSON object", 2)
        body.update(parse_assignments(assignments))
        path = _object_path(spec, name)
        if replace:
            obj = api.request("PUT", path, json=body)
        else:
            try:
                obj = api.request("PATCH", path, json=body)
            except CliError as exc:
                if exc.exit_code != EXIT_NOT_FOUND or spec.singleton:
                    raise
                obj = api.request("PUT", path, json=body)
        if as_json:
            emit_json(obj)
        else:
            click.echo(f"{spec.title} {obj.get('name', '')} saved (version {obj['version']})".replace("  ", " "))

    if spec.singleton:
        group.commands.pop("list")
    else:

        @group.command("rm", help=f"Delete a {spec.title}.")
        @click.argument("name")
        @remote
        def rm_cmd(api: Api, as_json: bool, name: str) -> None:
            api.request("DELETE", _object_path(spec, name))
            if as_json:
                emit_json({"deleted": name})
            else:
                click.echo(f"{spec.title} {name} deleted")

    return group


def all_groups() -> list[click.Group]:
    # The server list has commands of its own (pairing needs the other server's credentials).
    return [
        kind_group(spec) for spec in KINDS.values() if not spec.internal and spec.name not in ("server-list", "license")
    ]
