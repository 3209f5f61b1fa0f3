"""The documentation stays true to the code: every command, option, setting, route and metric is documented."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from fastapi import FastAPI
from starlette.routing import Mount

from thinsync.app import Server, initialize
from thinsync.cli import client
from thinsync.cli.main import cli
from thinsync.settings import Settings, setting_names

ROOT = Path(__file__).resolve().parents[2]
USER_GUIDE = "docs/user-guide.md"
OPERATIONS = "docs/operations.md"


def read(name: str) -> str:
    path = ROOT / name
    assert path.is_file(), f"{name} is missing"
    return path.read_text(encoding="utf-8")


def mentions(text: str, term: str) -> bool:
    """True when `term` appears whole: `/api/v1/terminals` is not found inside `/api/v1/terminals/{name}`,
    `--to` not inside `--tftp`, `thinsync terminal` not inside `thinsync terminal-group`."""
    return re.search(rf"(?<![\w/.-]){re.escape(term)}(?![\w/{{-])", text) is not None


def commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, click.Command]]:
    """Every command and subcommand under `group`, as ("terminal list", command)."""
    for name, command in sorted(group.commands.items()):
        path = (*prefix, name)
        yield " ".join(path), command
        if isinstance(command, click.Group):
            yield from commands(command, path)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    """The real application, assembled in this process as `thinsync serve` does (no sockets)."""
    settings = Settings.load(tmp_path_factory.mktemp("docs") / "data")
    initialize(settings, "tm-docs", "docs-password-1")
    server = Server(settings)
    try:
        yield server.api
    finally:
        server.close()


def routes(app: FastAPI) -> list[tuple[str, list[str]]]:
    """(path as written in the app, methods) of every route; WebSocket routes have no methods."""
    found: dict[str, set[str]] = {}

    def walk(entries: list[Any], prefix: str) -> None:
        for route in entries:
            # FastAPI keeps an included router as one entry holding the router's own routes.
            inner = getattr(route, "original_router", None)
            if inner is not None:
                walk(inner.routes, prefix + getattr(getattr(route, "include_context", None), "prefix", ""))
                continue
            if isinstance(route, Mount):
                # A mounted sub-application is the web console (HTML pages with their own help), not API.
                continue
            path = getattr(route, "path", None)
            # FastAPI adds this page for its interactive docs' OAuth flow; it is not part of our API.
            if path is None or path == app.swagger_ui_oauth2_redirect_url:
                continue
            methods = set(getattr(route, "methods", None) or ()) - {"HEAD"}
            found.setdefault(prefix + path, set()).update(methods)

    walk(app.routes, "")
    # The walk must see at least what the OpenAPI document lists.
    for path, operations in app.openapi()["paths"].items():
        assert path in found, f"walking the app's routes missed {path}"
        assert {m.upper() for m in operations} <= found[path], f"walking the app's routes missed methods of {path}"
    return sorted((path, sorted(methods)) for path, methods in found.items())


def test_every_cli_command_is_in_the_user_guide() -> None:
    guide = read(USER_GUIDE)
    names = [name for name, _ in commands(cli)]
    assert len(names) > 20, "walking the click tree found too few commands"
    missing = [f"thinsync {name}" for name in names if not mentions(guide, f"thinsync {name}")]
    assert not missing, f"{USER_GUIDE} does not mention these commands: {missing}"


def test_every_cli_option_is_in_the_user_guide() -> None:
    guide = read(USER_GUIDE)
    missing = set()
    for name, command in [("", cli), *commands(cli)]:
        # `command.params`, not `get_params()`: the latter warns about duplicate options (see the docs).
        for param in command.params:
            if not isinstance(param, click.Option):
                continue
            for option in [*param.opts, *param.secondary_opts]:
                if option.startswith("--") and not mentions(guide, option):
                    missing.add(f"thinsync {name} {option}".replace("  ", " "))
    assert not missing, f"{USER_GUIDE} does not mention these options: {sorted(missing)}"


def test_every_exit_code_is_in_the_user_guide() -> None:
    guide = read(USER_GUIDE)
    codes = [value for name, value in vars(client).items() if name.startswith("EXIT_")]
    assert codes, "no EXIT_ constants found in thinsync.cli.client"
    missing = [code for code in codes if not re.search(rf"^\| {code} \|", guide, re.MULTILINE)]
    assert not missing, f"{USER_GUIDE} has no row in its exit code table for: {missing}"


def test_every_setting_is_in_the_operations_guide() -> None:
    operations = read(OPERATIONS)
    names = setting_names()
    assert "listen" in names
    missing = [name for name in names if f"`{name}`" not in operations]
    assert not missing, f"{OPERATIONS} does not document these settings (as `name`): {missing}"


def test_every_route_is_in_the_user_guide(app: FastAPI) -> None:
    guide = read(USER_GUIDE)
    lines = guide.splitlines()
    found = routes(app)
    assert any(path == "/api/v1/terminals/{name}" for path, _ in found), "the app has no kind routes"
    missing = []
    for path, methods in found:
        holding = [line for line in lines if mentions(line, path)]
        if not holding:
            missing.append(path)
            continue
        for method in methods:
            if not any(re.search(rf"\b{method}\b", line) for line in holding):
                missing.append(f"{method} {path}")
    assert not missing, f"{USER_GUIDE} does not list these routes (method on the same line as the path): {missing}"


def test_every_metric_is_in_the_operations_guide(app: FastAPI) -> None:
    operations = read(OPERATIONS)
    exposition = app.state.services.metrics.render().decode()
    names = {
        line.split()[2]
        for line in exposition.splitlines()
        if line.startswith("# TYPE ") and not line.split()[2].endswith("_created")
    }
    assert "thinsync_http_requests_total" in names
    missing = sorted(name for name in names if f"`{name}`" not in operations)
    assert not missing, f"{OPERATIONS} does not list these metrics: {missing}"


def test_the_readme_gives_the_two_set_up_commands() -> None:
    readme = read("README.md")
    for command in ("make demo", "make test"):
        assert command in readme, f"README.md does not give `{command}`"


def test_mentions_matches_whole_terms_only() -> None:
    text = "see `GET /api/v1/terminals/{name}` and `thinsync terminal-group rm` with --tftp"
    assert mentions(text, "/api/v1/terminals/{name}")
    assert not mentions(text, "/api/v1/terminals")
    assert mentions(text, "thinsync terminal-group rm")
    assert not mentions(text, "thinsync terminal")
    assert not mentions(text, "--to")
    assert mentions("`GET /` shows a page", "/")
