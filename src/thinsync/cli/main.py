"""The `thinsync` command: local administration (init, serve, demo) and remote commands."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path
from typing import Any

import click

from thinsync import __version__
from thinsync.app import initialize, is_initialised
from thinsync.cli.backups import commands as backup_commands
from thinsync.cli.client import Api, CliError
from thinsync.cli.kinds import all_groups
from thinsync.cli.license import license_group
from thinsync.cli.output import emit_json, table
from thinsync.cli.remote import remote
from thinsync.cli.simulate import simulate
from thinsync.cli.simulate import status as terminal_status
from thinsync.cli.sync import commands as sync_commands
from thinsync.errors import ThinsyncError
from thinsync.logs import configure
from thinsync.settings import Settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="thinsync")
def cli() -> None:
    """thinsync: thin-client management server with automatic synchronization."""


def _settings(data: str, **flags: Any) -> Settings:
    try:
        return Settings.load(Path(data), flags)
    except ThinsyncError as exc:
        raise CliError(exc.message, 2) from exc


@cli.command()
@click.option("--data", required=True, type=click.Path(file_okay=False), help="data directory to create")
@click.option("--name", required=True, help="this server's name (as on the server list)")
@click.option("--admin-password", help="password of the first account 'admin' (random and printed when left out)")
def init(data: str, name: str, admin_password: str | None) -> None:
    """Make a data directory: server identity and the first admin account."""
    settings = _settings(data)
    if is_initialised(settings):
        raise CliError(f"{data} already holds a thinsync server; use another directory", 4)
    try:
        result = initialize(settings, name, admin_password)
    except ThinsyncError as exc:
        raise CliError(exc.message, 4) from exc
    click.echo(f"initialised server '{name}' (node id {result.identity.node_id}) in {data}")
    if result.generated:
        click.echo(f"admin password (shown once): {result.password}")


@cli.command()
@click.option("--data", required=True, type=click.Path(file_okay=False), help="data directory")
@click.option("--listen", help="HOST:PORT for HTTP (port 0 picks a free port)  [default: 0.0.0.0:2031]")
@click.option("--tftp", help="HOST:PORT to serve TFTP on (off unless given)")
@click.option("--ready-file", type=click.Path(dir_okay=False), help="write JSON here once the server answers")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def serve(data: str, listen: str | None, tftp: str | None, ready_file: str | None, log_level: str | None) -> None:
    """Run a server on a data directory (initialising it first when it is new)."""
    settings = _settings(data, listen=listen, tftp=tftp, ready_file=ready_file, log_level=log_level)
    configure(settings.log_level, settings.log_file)
    if not is_initialised(settings):
        result = initialize(settings, _default_name())
        click.echo(
            f"new data directory: server '{result.identity.name}', account 'admin', "
            f"password (shown once): {result.password}",
            err=True,
        )
    try:
        _run(_serve(settings))
    except ThinsyncError as exc:
        raise CliError(exc.message) from exc


async def _serve(settings: Settings) -> None:
    from thinsync.runtime import serve as run

    await run(settings)


def _run(coro: Any) -> None:
    """Run on uvloop when the `speed` extra is installed (uvicorn then also picks httptools)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def _default_name() -> str:
    host = socket.gethostname().split(".")[0]
    cleaned = "".join(c for c in host if c.isalnum() or c in "-_")[:63]
    return cleaned or "thinsync"


@cli.command()
@click.option(
    "--data", type=click.Path(file_okay=False), help="where to keep the demo data (a temporary directory by default)"
)
@click.option(
    "--port",
    default=2031,
    show_default=True,
    help="HTTP port of the primary; the secondary takes the next (0: free ports)",
)
def demo(data: str | None, port: int) -> None:
    """Start a paired primary and secondary on loopback with sample configuration; Ctrl-C stops them."""
    from thinsync.cli.demo import run_demo

    run_demo(data, port)


@cli.command()
@click.option("--category", help="server, auth, config, sync, terminal, backup or license")
@click.option("--limit", default=50, show_default=True)
@remote
def events(api: Api, as_json: bool, category: str | None, limit: int) -> None:
    """Show this server's event log, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if category:
        params["category"] = category
    items = api.request("GET", "/api/v1/events", params=params)["items"]
    if as_json:
        emit_json(items)
    else:
        for item in items:
            from datetime import datetime

            when = datetime.fromtimestamp(item["time"]).strftime("%Y-%m-%d %H:%M:%S")
            item["when"] = when
        table(items, ["when", "category", "level", "message"])


for _group in [*all_groups(), *sync_commands(), *backup_commands(), license_group]:
    cli.add_command(_group)
_terminal = cli.commands["terminal"]
assert isinstance(_terminal, click.Group)
_terminal.add_command(simulate)
_terminal.add_command(terminal_status)


def main() -> None:
    try:
        cli.main(standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)
