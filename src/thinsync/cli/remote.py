"""Options shared by every command that talks to a server over HTTP."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from thinsync.cli.client import Api

DEFAULT_SERVER = "http://127.0.0.1:2031"


def remote(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add --server/--user/--json and pass a logged-in `api` (closed afterwards)."""

    @click.option(
        "--server",
        envvar="THINSYNC_SERVER",
        default=DEFAULT_SERVER,
        show_default=True,
        help="URL of the thinsync server",
    )
    @click.option("--user", envvar="THINSYNC_USER", default="admin", show_default=True, help="admin account")
    @click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
    @functools.wraps(fn)
    def wrapper(server: str, user: str, as_json: bool, **kwargs: Any) -> Any:
        api = Api(server, user, None)
        try:
            return fn(api=api, as_json=as_json, **kwargs)
        finally:
            api.close()

    return wrapper
