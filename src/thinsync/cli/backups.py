"""`thinsync backup ...` (create, list, download, delete, restore, schedule) and `thinsync history ...`
(show, revert, as-of). Long transfers show a progress bar on a terminal (never with --json)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from thinsync.backup.restore import PROTECTED
from thinsync.cli.client import Api, CliError
from thinsync.cli.output import emit_json, show_object, table
from thinsync.cli.remote import remote

# Restores and backups of large configurations take a while on the server.
LONG_S = 600.0
SHOWN_NAMES = 12
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PASSPHRASE_ENV = "THINSYNC_BACKUP_PASSPHRASE"


# ---------------------------------------------------------------------------------------- helpers


def _progress(as_json: bool, transfer: bool = True) -> Progress:
    """A progress display on stderr; silent when stderr is not a terminal or the output is JSON."""
    columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
    if transfer:
        columns += [BarColumn(), DownloadColumn(), TransferSpeedColumn()]
    columns.append(TimeElapsedColumn())
    console = Console(stderr=True, emoji=False, highlight=False)
    return Progress(*columns, console=console, transient=True, disable=as_json or not sys.stderr.isatty())


@contextmanager
def _spinner(as_json: bool, what: str) -> Iterator[None]:
    with _progress(as_json, transfer=False) as progress:
        progress.add_task(what, total=None)
        yield


class _Reading:
    """A file handed to the HTTP client that moves a progress bar as the upload reads it."""

    def __init__(self, fh: IO[bytes], progress: Progress, task: TaskID, then: str) -> None:
        self._fh = fh
        self._progress = progress
        self._task = task
        self._then = then
        self.name = fh.name

    def read(self, size: int = -1) -> bytes:
        chunk = self._fh.read(size)
        if chunk:
            self._progress.advance(self._task, len(chunk))
        else:  # all sent: the server now verifies (and applies) while the spinner turns
            self._progress.update(self._task, description=self._then)
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        position = self._fh.seek(offset, whence)
        self._progress.update(self._task, completed=position)
        return position

    def tell(self) -> int:
        return self._fh.tell()

    def fileno(self) -> int:  # lets the client send a Content-Length
        return self._fh.fileno()


def _passphrase(prompt: bool, confirm: bool) -> str | None:
    """--passphrase-prompt: from THINSYNC_BACKUP_PASSPHRASE when set (scripts), else asked for."""
    if not prompt:
        return None
    value = os.environ.get(PASSPHRASE_ENV) or click.prompt(
        "backup passphrase", hide_input=True, confirmation_prompt=confirm
    )
    return str(value)


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN_NAMES])
    return shown + (f" (and {len(names) - SHOWN_NAMES} more)" if len(names) > SHOWN_NAMES else "")


def _show_diff(result: dict[str, Any]) -> None:
    for key in ("added", "changed", "removed"):
        for kind, names in sorted(result.get(key, {}).items()):
            click.echo(f"{key:8} {kind} ({len(names)}): {_names(names)}")


def _hint_passphrase(exc: CliError, passphrase: str | None) -> CliError:
    if passphrase is None and "encrypted" in exc.message:
        return CliError(f"{exc.message} (add --passphrase-prompt)", exc.exit_code)
    return exc


def _report_restore(result: dict[str, Any], as_json: bool, what: str) -> None:
    if as_json:
        emit_json(result)
        return
    source = result.get("backup")
    if source:
        click.echo(f"{what}: backup of {source.get('server')} made {source.get('created')} ({source.get('reason')})")
    _show_diff(result)
    count = result.get("objects", 0)
    if result.get("dry_run"):
        click.echo(f"dry run: {count} objects would change; nothing was changed (use --apply)")
        return
    click.echo(f"done: {count} objects changed in one change set (backup {result.get('pre_restore_backup')} first)")
    if result.get("note"):
        click.echo(f"note: {result['note']}")


# ---------------------------------------------------------------------------------------- backup


@click.group("backup", help="Backups of the configuration: create, list, download, delete, restore, schedule.")
def backup() -> None:
    pass


@backup.command("create", help="Back up the configuration now (into the server's backup directory).")
@click.option(
    "--passphrase-prompt",
    is_flag=True,
    help=f"encrypt the backup with a passphrase (asked for, or taken from {PASSPHRASE_ENV})",
)
@remote
def backup_create(api: Api, as_json: bool, passphrase_prompt: bool) -> None:
    passphrase = _passphrase(passphrase_prompt, confirm=True)
    body = {"passphrase": passphrase} if passphrase else None
    with _spinner(as_json, "backing up"):
        result = api.request("POST", "/api/v1/backups", json=body, timeout=LONG_S)
    if as_json:
        emit_json(result)
        return
    total = sum(result.get("counts", {}).values())
    encrypted = ", encrypted" if result.get("encrypted") else ""
    click.echo(f"backup {result['id']} written: {total} objects, {result['size']} bytes{encrypted}")


@backup.command("list", help="List the backups on the server, newest first.")
@remote
def backup_list(api: Api, as_json: bool) -> None:
    items = api.request("GET", "/api/v1/backups")["items"]
    if as_json:
        emit_json(items)
        return
    rows = [{**b, "objects": sum(b.get("counts", {}).values()) if "counts" in b else None} for b in items]
    columns = ["id", "reason", "objects", "size", "encrypted"]  # the id starts with the time (UTC)
    if any(b.get("damaged") for b in items):
        columns.append("damaged")
    table(rows, columns, title=f"{len(items)} backups", no_wrap=("id",))


@backup.command("download", help="Download a backup file (to ID.tsb.gz in this directory unless -o says where).")
@click.argument("backup_id", metavar="ID")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="file to write (must not exist)")
@remote
def backup_download(api: Api, as_json: bool, backup_id: str, output: str | None) -> None:
    target = Path(output or f"{backup_id}.tsb.gz")
    if target.exists():
        raise CliError(f"{target} already exists; remove it or choose another file with -o", 2)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    size = 0
    try:
        with (
            api.stream("GET", f"/api/v1/backups/{backup_id}/download", timeout=LONG_S) as response,
            _progress(as_json) as progress,
        ):
            length = response.headers.get("content-length")
            expected = int(length) if length and length.isdigit() else None
            task = progress.add_task(f"downloading {backup_id}", total=expected)
            with open(tmp, "wb") as fh:
                for chunk in response.iter_bytes():
                    fh.write(chunk)
                    size += len(chunk)
                    progress.advance(task, len(chunk))
            if expected is not None and size != expected:
                raise CliError(f"the download of {backup_id} stopped after {size} of {expected} bytes")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    if as_json:
        emit_json({"id": backup_id, "file": str(target), "size": size})
    else:
        click.echo(f"backup {backup_id} saved to {target} ({size} bytes)")


@backup.command("delete", help="Delete a backup from the server.")
@click.argument("backup_id", metavar="ID")
@remote
def backup_delete(api: Api, as_json: bool, backup_id: str) -> None:
    api.request("DELETE", f"/api/v1/backups/{backup_id}")
    emit_json({"id": backup_id, "deleted": True}) if as_json else click.echo(f"backup {backup_id} deleted")


@backup.command(
    "restore",
    help="Restore a backup on the server (ID) or a backup file (--file). Shows what would change; "
    "--apply restores, after an automatic backup, as one change set that reaches every paired server. "
    "The server list, admin accounts, security groups and the licence stay as they are unless named with --include.",
)
@click.argument("backup_id", metavar="[ID]", required=False)
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False), help="a backup file to upload")
@click.option("--apply", "apply_", is_flag=True, help="restore for real (otherwise a dry run)")
@click.option(
    "--include",
    multiple=True,
    type=click.Choice(list(PROTECTED)),
    help="also restore this protected kind (repeatable)",
)
@click.option(
    "--passphrase-prompt",
    is_flag=True,
    help=f"the backup is encrypted: ask for its passphrase (or take it from {PASSPHRASE_ENV})",
)
@remote
def backup_restore(
    api: Api,
    as_json: bool,
    backup_id: str | None,
    file: str | None,
    apply_: bool,
    include: tuple[str, ...],
    passphrase_prompt: bool,
) -> None:
    if (backup_id is None) == (file is None):
        raise CliError("give either a backup ID (see 'thinsync backup list') or --file FILE", 2)
    passphrase = _passphrase(passphrase_prompt, confirm=False)
    params = {"dry_run": "false" if apply_ else "true"}
    verb = "restoring" if apply_ else "checking"
    try:
        if file is not None:
            fields: dict[str, str] = {}
            if include:
                fields["include"] = ",".join(include)
            if passphrase:
                fields["passphrase"] = passphrase
            with open(file, "rb") as fh, _progress(as_json) as progress:
                task = progress.add_task(f"uploading {Path(file).name}", total=os.fstat(fh.fileno()).st_size)
                then = "the server is verifying and restoring" if apply_ else "the server is verifying"
                reading = _Reading(fh, progress, task, then)
                result = api.request(
                    "POST",
                    "/api/v1/restore",
                    params=params,
                    files={"file": (Path(file).name, reading, "application/gzip")},
                    data=fields,
                    timeout=LONG_S,
                )
            label = file
        else:
            body: dict[str, Any] = {"backup_id": backup_id, "include": list(include)}
            if passphrase:
                body["passphrase"] = passphrase
            with _spinner(as_json, f"{verb} backup {backup_id} on the server"):
                result = api.request("POST", "/api/v1/restore", params=params, json=body, timeout=LONG_S)
            label = f"backup {backup_id}"
    except CliError as exc:
        raise _hint_passphrase(exc, passphrase) from None
    _report_restore(result, as_json, label)


# ---------------------------------------------------------------------------------------- schedule


@backup.group("schedule", help="The backup schedule (replicated; each server runs it and keeps its own files).")
def schedule() -> None:
    pass


def _describe(obj: dict[str, Any]) -> str:
    if not obj.get("enabled"):
        return "off"
    if obj.get("every_hours"):
        when = f"every {obj['every_hours']} hours"
    else:
        days = obj.get("weekdays") or []
        on = "daily" if not days else "on " + ", ".join(WEEKDAYS[d] for d in sorted(days))
        when = f"{on} at {obj.get('at')} (server local time)"
    return f"{when}, keeping the newest {obj.get('retention')}"


@schedule.command("show", help="Show the backup schedule.")
@remote
def schedule_show(api: Api, as_json: bool) -> None:
    obj = api.request("GET", "/api/v1/backup-schedule")
    if as_json:
        emit_json(obj)
    else:
        click.echo(f"backups: {_describe(obj)}")
        show_object(obj)


def _weekdays(text: str) -> list[int]:
    if text.strip().lower() in ("", "all", "daily"):
        return []
    days = []
    for part in text.split(","):
        word = part.strip().lower()
        if word.isdigit() and 0 <= int(word) <= 6:
            days.append(int(word))
        elif word[:3] in WEEKDAYS:
            days.append(WEEKDAYS.index(word[:3]))
        else:
            raise CliError(f"'{part}' is not a weekday: use mon..sun or 0 (Monday) to 6 (Sunday), comma-separated", 2)
    return sorted(set(days))


@schedule.command(
    "set",
    help="Change the backup schedule: --every-hours N, or --at HH:MM (daily, or on --weekdays); "
    "--retention keeps that many scheduled backups. Setting a schedule turns it on unless --disable.",
)
@click.option("--every-hours", type=int, help="a backup every N hours")
@click.option("--at", "at", help="a backup at this time of day (HH:MM, the server's local time)")
@click.option("--weekdays", help="with --at: only on these days (mon,wed,fri or 0-6; 'all' for every day)")
@click.option("--retention", type=int, help="how many scheduled backups to keep")
@click.option("--enable/--disable", "enabled", default=None, help="turn scheduled backups on or off")
@remote
def schedule_set(
    api: Api,
    as_json: bool,
    every_hours: int | None,
    at: str | None,
    weekdays: str | None,
    retention: int | None,
    enabled: bool | None,
) -> None:
    if every_hours is not None and at is not None:
        raise CliError("give --every-hours or --at, not both", 2)
    current = api.request("GET", "/api/v1/backup-schedule")
    body = {k: v for k, v in current.items() if k not in ("version", "name", "problems")}
    if every_hours is not None:
        body.update(every_hours=every_hours, at=None, weekdays=[])
    if at is not None:
        body.update(at=at, every_hours=None)
    if weekdays is not None:
        body["weekdays"] = _weekdays(weekdays)
    if retention is not None:
        body["retention"] = retention
    if enabled is not None:
        body["enabled"] = enabled
    elif not current.get("version"):
        body["enabled"] = True  # the first schedule set is meant to run
    obj = api.request("PUT", "/api/v1/backup-schedule", json=body)
    emit_json(obj) if as_json else click.echo(f"backup schedule saved: {_describe(obj)}")


# ---------------------------------------------------------------------------------------- history


class _ShowByDefault(click.Group):
    """`thinsync history KIND NAME` still works: an unknown first word means `history show ...`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["show", *args]
        return super().parse_args(ctx, args)


@click.group(
    "history",
    cls=_ShowByDefault,
    help="Past versions of the configuration: show one object's, revert it, or revert everything to a time.",
)
def history() -> None:
    pass


@history.command("show", help="Show the versions of one object, newest first (KIND as in the API: terminals, ...).")
@click.argument("kind")
@click.argument("name", required=False, default="default")
@remote
def history_show(api: Api, as_json: bool, kind: str, name: str) -> None:
    items = api.request("GET", "/api/v1/history", params={"kind": kind, "name": name})["items"]
    if as_json:
        emit_json(items)
        return
    # One block per version (a table of long versions and times does not fit a terminal's width).
    click.echo(f"{kind} {name}: {len(items)} versions, newest first")
    for item in items:
        fields = ", ".join(item.get("changed_fields") or [])
        what = "deleted" if item.get("deleted") else (f"changed {fields}" if fields else "no field changed")
        click.echo(f"\n{item['version']}  {item['time']}  by {item['author']} on {item['server']}")
        click.echo(f"  {item.get('summary', '')}: {what}")


@history.command("revert", help="Put one object back as it was at VERSION (see 'thinsync history show').")
@click.argument("kind")
@click.argument("name")
@click.argument("version")
@remote
def history_revert(api: Api, as_json: bool, kind: str, name: str, version: str) -> None:
    body = {"kind": kind, "name": name, "version": version}
    result = api.request("POST", "/api/v1/history/revert", json=body)
    if as_json:
        emit_json(result)
    elif result.get("changed"):
        click.echo(f"{kind} {name} reverted to version {version}")
    else:
        click.echo(f"{kind} {name} is already as it was at version {version}: nothing changed")


@history.command(
    "as-of",
    help="Put the whole configuration back as it was at TIME (ISO 8601, e.g. 2026-11-25T08:00:00Z). "
    "Shows what would change; --apply reverts (after an automatic backup, as one change set).",
)
@click.argument("when", metavar="TIME")
@click.option("--apply", "apply_", is_flag=True, help="revert for real (otherwise a dry run)")
@click.option(
    "--include",
    multiple=True,
    type=click.Choice(list(PROTECTED)),
    help="also revert this protected kind (repeatable)",
)
@remote
def history_as_of(api: Api, as_json: bool, when: str, apply_: bool, include: tuple[str, ...]) -> None:
    body = {"as_of": when, "dry_run": not apply_, "include": list(include)}
    with _spinner(as_json, f"{'reverting' if apply_ else 'comparing'} to {when}"):
        result = api.request("POST", "/api/v1/history/revert", json=body, timeout=LONG_S)
    _report_restore(result, as_json, f"as of {when}")


def commands() -> list[click.Command]:
    return [backup, history]
