"""Rendering for people (rich tables) or scripts (--json)."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def _cell(value: Any) -> Text:
    """Cells are plain text: no markup, no emoji codes (a MAC like 00:ab:... must stay as it is)."""
    if value is None:
        return Text("")
    if isinstance(value, dict | list):
        return Text(json.dumps(value, separators=(",", ":")))
    return Text(str(value))


def _console() -> Console:
    return Console(emoji=False, highlight=False)


def table(
    rows: list[dict[str, Any]], columns: list[str], title: str | None = None, no_wrap: tuple[str, ...] = ()
) -> None:
    """`no_wrap` columns are never broken across lines (ids a reader copies); the others give way."""
    t = Table(title=title)
    for col in columns:
        t.add_column(col, no_wrap=col in no_wrap)
    for row in rows:
        t.add_row(*(_cell(row.get(col)) for col in columns))
    _console().print(t)


def show_object(obj: dict[str, Any]) -> None:
    t = Table(show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value")
    for key in sorted(obj):
        t.add_row(Text(key), _cell(obj[key]))
    _console().print(t)
