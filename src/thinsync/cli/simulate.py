"""`thinsync terminal simulate` and `thinsync terminal status`."""

from __future__ import annotations

import asyncio
import json
import os

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table

from thinsync.cli.client import Api
from thinsync.cli.output import emit_json, table
from thinsync.cli.remote import remote
from thinsync.terminals.simulator import Simulator, create_terminals


@click.command("simulate", help="Run N virtual terminals: boot from the first reachable server, heartbeat to all.")
@click.option("--servers", required=True, help="comma-separated server URLs, in boot order")
@click.option("--count", default=10, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--interval", default=5.0, show_default=True, help="seconds between heartbeats")
@click.option("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
@click.option(
    "--create",
    is_flag=True,
    help="first configure SIM-nnnnn terminals with the simulated MACs (admin password from THINSYNC_PASSWORD)",
)
@click.option("--user", default="admin", show_default=True)
@click.option("--no-watch", is_flag=True, help="do not wait for configuration changes")
@click.option("--json", "as_json", is_flag=True, help="print a JSON summary at the end")
def simulate(
    servers: str,
    count: int,
    interval: float,
    duration: float | None,
    create: bool,
    user: str,
    no_watch: bool,
    as_json: bool,
) -> None:
    urls = [s.strip() for s in servers.split(",") if s.strip()]
    asyncio.run(_simulate(urls, count, interval, duration, create, user, not no_watch, as_json))


async def _simulate(
    urls: list[str],
    count: int,
    interval: float,
    duration: float | None,
    create: bool,
    user: str,
    watch: bool,
    as_json: bool,
) -> None:
    if create:
        password = os.environ.get("THINSYNC_PASSWORD") or click.prompt(f"password for {user}", hide_input=True)
        made = await create_terminals(urls[0], user, password, count)
        if not as_json:
            click.echo(f"configured {made} new simulated terminals on {urls[0]}")
    sim = Simulator(urls, count, interval, watch=watch)
    console = Console(emoji=False, highlight=False)
    task = asyncio.create_task(sim.run(duration))
    try:
        if as_json:
            await task
        else:
            with Live(_render(sim), console=console, refresh_per_second=2) as live:
                while not task.done():
                    await asyncio.sleep(0.5)
                    live.update(_render(sim))
                await task
    except (KeyboardInterrupt, asyncio.CancelledError):
        task.cancel()
    finally:
        await sim.close()
    if as_json:
        click.echo(json.dumps(sim.stats.summary()))


def _render(sim: Simulator) -> Table:
    t = Table(title=f"{len(sim.terminals)} simulated terminals")
    for key in (
        "booted",
        "failed",
        "fallbacks",
        "heartbeats",
        "heartbeat_errors",
        "refetches",
        "boot_p50_ms",
        "boot_p99_ms",
        "all_booted_s",
        "last_error",
    ):
        t.add_row(key, str(sim.stats.summary()[key]))
    return t


@click.command("status", help="Show every terminal's status light as the server sees it.")
@remote
def status(api: Api, as_json: bool) -> None:
    items = api.request("GET", "/api/v1/terminal-status")["items"]
    if as_json:
        emit_json(items)
    else:
        table(items, ["name", "mac", "status", "last_seen", "booted_from", "address"])
