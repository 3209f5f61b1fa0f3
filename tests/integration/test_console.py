"""The web console in-process: log-in and the session cookie, CSRF refusal, validation errors next to
their fields, every page answering 200 with a help page, the generic object pages, the mirrored
secondary's read-only pages, the licence banner and the live views' change counter."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx2
import pytest

from tests.helpers.api import nothing_written
from tests.helpers.inprocess import ADMIN_PASSWORD, InProcess
from thinsync.cli.demo import sample_ops
from thinsync.http.console.pages import GENERIC_KINDS, PAGES
from thinsync.store import ChangeRequest, Op

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Browser:
    """A console user: the client keeps the cookies; forms are posted with the page's CSRF token."""

    def __init__(self, node: InProcess) -> None:
        self.node = node
        self.client = node.client
        self.csrf = ""

    async def login(self, username: str = "admin", password: str = ADMIN_PASSWORD) -> httpx2.Response:
        page = await self.client.get("/console/login")
        token = CSRF.search(page.text)
        assert token, page.text
        response = await self.client.post(
            "/console/login",
            data={"username": username, "password": password, "csrf": token.group(1), "next": "/console/"},
        )
        if response.status_code == 303:
            home = await self.get("/console/")
            assert home.status_code == 200, home.text
        return response

    async def get(self, path: str, **kwargs: Any) -> httpx2.Response:
        response = await self.client.get(path, **kwargs)
        found = CSRF.search(response.text)
        if found:
            self.csrf = found.group(1)
        return response

    async def post(self, path: str, data: dict[str, Any] | None = None, **kwargs: Any) -> httpx2.Response:
        return await self.client.post(path, data={"csrf": self.csrf, **(data or {})}, **kwargs)


@pytest.fixture
async def user(inproc: InProcess) -> Browser:
    inproc.store.commit_sync(ChangeRequest("test", "sample", tuple(sample_ops())))
    browser = Browser(inproc)
    response = await browser.login()
    assert response.status_code == 303, response.text
    return browser


def field_error(html: str, field: str) -> str | None:
    """The error message shown inside the field's own block (data-field="..."), or None."""
    block = re.search(rf'<div class="field[^"]*" data-field="{re.escape(field)}">(.*?)</div>', html, re.S)
    assert block, f"no field {field} on the page"
    message = re.search(r'<p class="error" id="[^"]+-error">([^<]*)</p>', block.group(1))
    return message.group(1) if message else None


def help_of(html: str) -> str:
    found = re.search(r'<body data-help="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


# ---------------------------------------------------------------------- log-in and sessions


async def test_root_redirects_to_the_console_and_pages_need_a_login(inproc: InProcess) -> None:
    root = await inproc.client.get("/")
    assert root.status_code == 307 and root.headers["location"] == "/console/"
    for path in ("/console/", "/console/sync", "/console/k/display-servers", "/console/backups"):
        response = await inproc.client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/console/login?next=")
    polled = await inproc.client.get("/console/sync/status", headers={"HX-Request": "true"})
    assert polled.status_code == 204 and polled.headers["HX-Redirect"].startswith("/console/login")


async def test_the_session_cookie_is_httponly_strict_and_carries_a_valid_token(inproc: InProcess) -> None:
    browser = Browser(inproc)
    response = await browser.login()
    assert response.status_code == 303 and response.headers["location"] == "/console/"
    cookie = next(v for k, v in response.headers.multi_items() if k == "set-cookie" and "ts_session_" in v)
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "samesite", "path", "max-age"} <= attributes, cookie
    assert "samesite=strict" in cookie.lower() and "path=/console" in cookie.lower()
    token = cookie.split(";")[0].split("=", 1)[1]
    assert token.startswith("ts1."), "the session is an ordinary AuthService token"
    assert (await inproc.client.get("/console/")).status_code == 200


async def test_a_wrong_password_is_shown_next_to_the_password_field(inproc: InProcess) -> None:
    browser = Browser(inproc)
    response = await browser.login(password="not-the-password")
    assert response.status_code == 200
    assert "wrong user name or password" in (field_error_login(response.text, "password") or "")
    assert (await inproc.client.get("/console/")).status_code == 303
    empty = await browser.login(username="", password="")
    assert "enter your user name" in (field_error_login(empty.text, "username") or "")


def field_error_login(html: str, field: str) -> str | None:
    found = re.search(rf'<p class="error" id="f-{field}-error">([^<]*)</p>', html)
    return found.group(1) if found else None


async def test_forged_and_foreign_session_cookies_are_refused(inproc: InProcess, user: Browser) -> None:
    name = next(k for k in inproc.client.cookies if k.startswith("ts_session_"))
    real = inproc.client.cookies[name]
    inproc.client.cookies.clear()
    for forged in ("ts1.forged.token", real[:-3] + "AAA", "", "x" * 5000):
        response = await inproc.client.get("/console/", headers={"Cookie": f"{name}={forged}"})
        assert response.status_code == 303 and "/console/login" in response.headers["location"], forged
    # Another server's cookie name (another node id) is not this server's session.
    response = await inproc.client.get("/console/", headers={"Cookie": f"ts_session_000000000000={real}"})
    assert response.status_code == 303
    response = await inproc.client.get("/console/", headers={"Cookie": f"{name}={real}"})
    assert response.status_code == 200


async def test_logout_ends_the_session(user: Browser) -> None:
    await user.get("/console/")
    response = await user.post("/console/logout")
    assert response.status_code == 303
    assert (await user.client.get("/console/")).status_code == 303


# ---------------------------------------------------------------------- CSRF


async def test_posts_without_the_sessions_csrf_token_are_refused_and_change_nothing(user: Browser) -> None:
    await user.get("/console/k/display-servers/+new")
    good = user.csrf
    attempts = [
        ("/console/k/display-servers/+new", {"name": "evil", "address": "10.6.6.6"}),
        ("/console/k/display-servers/rds-1", {"address": "10.6.6.6"}),
        ("/console/k/display-servers/cam-gate/delete", {}),
        ("/console/backups", {}),
        ("/console/sync/now", {}),
        ("/console/settings", {"unknown_terminals": "auto_create"}),
        ("/console/history/display-servers/rds-1/revert", {"version": "x"}),
    ]
    with nothing_written(user.node):
        for path, form in attempts:
            for token in ("", "0" * 64, good[:-1] + ("0" if good[-1] != "0" else "1")):
                response = await user.client.post(path, data={**form, "csrf": token})
                assert response.status_code == 403, (path, token, response.text[:300])
                assert "security token" in response.text
            # An htmx request with a wrong header is refused the same way (and shown in the page).
            response = await user.client.post(path, data=form, headers={"HX-Request": "true", "X-CSRF-Token": "0" * 64})
            assert response.status_code == 200 and response.headers.get("HX-Retarget") == "#flash"
            assert "security token" in response.text
    backups = await user.node.server.services.backups.list_all()
    assert backups == []


async def test_the_csrf_token_is_tied_to_the_session(inproc: InProcess, user: Browser) -> None:
    await user.get("/console/k/display-servers/+new")
    first = user.csrf
    inproc.client.cookies.clear()
    other = Browser(inproc)
    await other.login()
    await other.get("/console/k/display-servers/+new")
    assert other.csrf != first
    response = await other.client.post(
        "/console/k/display-servers/+new", data={"name": "x1", "address": "10.1.1.1", "csrf": first}
    )
    assert response.status_code == 403
    ok = await other.post("/console/k/display-servers/+new", {"name": "x1", "address": "10.1.1.1"})
    assert ok.status_code == 303
    via_header = await other.client.post(
        "/console/sync/now", headers={"HX-Request": "true", "X-CSRF-Token": other.csrf}
    )
    assert via_header.status_code == 200 and "Synchronizing now" in via_header.text


async def test_the_login_form_needs_its_own_token(inproc: InProcess) -> None:
    response = await inproc.client.post(
        "/console/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf": "x"}
    )
    assert response.status_code == 403
    assert not any(k.startswith("ts_session_") for k in inproc.client.cookies)


# ---------------------------------------------------------------------- validation next to fields


async def test_generic_forms_show_each_error_next_to_its_field(user: Browser) -> None:
    await user.get("/console/k/display-servers/+new")
    with nothing_written(user.node):
        response = await user.post(
            "/console/k/display-servers/+new", {"name": "bad name!", "port": "abc", "priority": "5000"}
        )
        assert response.status_code == 200
        assert "letters, digits" in (field_error(response.text, "name") or "")
        assert field_error(response.text, "port") == "must be a whole number"
        response = await user.post("/console/k/display-servers/+new", {"name": "ds9", "port": "99999"})
        assert field_error(response.text, "address") == "is required"
        assert "65535" in (field_error(response.text, "port") or "")
        assert field_error(response.text, "description") is None
        # A reference to something that does not exist, and a duplicate name.
        await user.get("/console/k/display-clients/+new")
        response = await user.post("/console/k/display-clients/+new", {"name": "dc9", "display_servers": "nope"})
        assert "nope" in (field_error(response.text, "display_servers") or "")
        response = await user.post("/console/k/display-clients/+new", {"name": "hmi-line1"})
        assert "already exists" in (field_error(response.text, "name") or "")
        # The user's card id is unique: the conflict lands on the card id field.
        await user.get("/console/k/users/+new")
        response = await user.post("/console/k/users/+new", {"name": "mary", "card_id": "04A1B2C3"})
        assert "04A1B2C3" in (field_error(response.text, "card_id") or "")


async def test_the_terminal_wizard_shows_errors_next_to_the_field(user: Browser) -> None:
    page = await user.get("/console/terminal-wizard")
    state = re.search(r'name="state" value="([^"]*)"', page.text)
    assert state
    with nothing_written(user.node):
        response = await user.post(
            "/console/terminal-wizard",
            {"step": "name", "action": "next", "name": "way-too-long-terminal-name", "state": "{}"},
        )
        assert "15" in (field_error(response.text, "name") or "")
        response = await user.post(
            "/console/terminal-wizard",
            {"step": "hardware", "action": "next", "name": "T9", "state": "{}", "hardware.mac": "zz:zz"},
        )
        assert "MAC address" in (field_error(response.text, "hardware.mac") or "")
        response = await user.post(
            "/console/terminal-wizard",
            {"step": "hardware", "action": "finish", "name": "T9", "state": "{}", "hardware.mac": "00:0b:ab:00:00:01"},
        )
        assert "already used" in (field_error(response.text, "hardware.mac") or "")
        response = await user.post(
            "/console/terminal-wizard",
            {
                "step": "connection-monitor",
                "action": "next",
                "name": "T9",
                "state": "{}",
                "connection_monitor.ping_timeout_s": "0",
                "connection_monitor.ping_retry": "x",
                "connection_monitor.interval_s": "5",
            },
        )
        assert field_error(response.text, "connection_monitor.ping_retry") == "must be a whole number"


async def test_schedule_and_server_list_forms_show_errors_next_to_fields(user: Browser) -> None:
    await user.get("/console/backups")
    with nothing_written(user.node):
        response = await user.post(
            "/console/backups/schedule", {"enabled": "on", "rule": "at", "at": "25:99", "retention": "many"}
        )
        assert "whole number" in (field_error(response.text, "retention") or "")
        response = await user.post(
            "/console/backups/schedule", {"enabled": "on", "rule": "at", "at": "25:99", "retention": "3"}
        )
        assert "HH:MM" in (field_error(response.text, "at") or "")
    await user.get("/console/server-list")
    with nothing_written(user.node):
        response = await user.post(
            "/console/server-list",
            {
                "step": "sync",
                "action": "finish",
                "auto_sync": "on",
                "mode": "redundant",
                "p_name": "tm-test",
                "p_address": "127.0.0.1",
                "p_port": "x",
            },
        )
        assert response.status_code == 200
        assert "whole number" in response.text and 'id="p_port-error"' in response.text


# ---------------------------------------------------------------------- every page


def console_pages() -> list[str]:
    pages = [
        "/console/",
        "/console/sync",
        "/console/server-list",
        "/console/terminal-status",
        "/console/backups",
        "/console/manual-sync",
        "/console/settings",
        "/console/license",
        "/console/terminal-wizard",
        "/console/terminal-wizard?name=OP-01",
        "/console/history/terminals/OP-01",
        "/console/history/settings/default",
        "/console/k/display-servers/rds-1/delete",
    ]
    samples = {
        "terminal-groups": "line1",
        "display-clients": "hmi-line1",
        "display-servers": "rds-1",
        "users": "jdoe",
        "access-groups": "operators",
        "locations": "packaging",
        "admins": "admin",
        "security-groups": "viewers",
    }
    for kind in GENERIC_KINDS:
        pages.append(f"/console/k/{kind}")
        if kind != "terminals":
            pages.append(f"/console/k/{kind}/+new")
        if kind in samples:
            pages.append(f"/console/k/{kind}/{samples[kind]}")
    return pages


async def test_every_console_page_answers_200_and_names_a_help_page_that_exists(user: Browser) -> None:
    seen = set()
    for path in console_pages():
        response = await user.get(path)
        assert response.status_code == 200, (path, response.text[:500])
        page = help_of(response.text)
        assert page in PAGES, (path, page)
        seen.add(page)
        assert "data-help-open" in response.text, f"{path} has no Help button"
    # The wizards' later pages and the dialogs are reached by posting; their help is checked below.
    assert {"home", "sync", "server-list", "terminal-name", "backups", "manual-sync", "history"} <= seen


async def test_every_page_has_its_help_file_and_the_help_route_serves_it(inproc: InProcess) -> None:
    for page in PAGES:
        path = ROOT / "docs" / "help" / f"{page}.md"
        assert path.is_file(), f"docs/help/{page}.md is missing"
        text = path.read_text(encoding="utf-8")
        assert text.startswith("# ") and len(text) > 150, f"docs/help/{page}.md is too thin"
        # Help needs no session: the log-in page has one too.
        response = await inproc.client.get(f"/console/help/{page}?fragment=1")
        assert response.status_code == 200 and f'data-page="{page}"' in response.text
    missing = await inproc.client.get("/console/help/nothing-here")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")


async def test_console_errors_are_html_pages_not_api_json(user: Browser) -> None:
    for path, status in (
        ("/console/nowhere", 404),
        ("/console/tree?v=abc", 400),
        ("/console/k/nope", 404),
        ("/console/k/display-servers/missing", 404),
    ):
        response = await user.client.get(path)
        assert response.status_code == status, path
        assert response.headers["content-type"].startswith("text/html") and "<h1>" in response.text


async def test_every_wizard_page_names_its_own_help(user: Browser) -> None:
    await user.get("/console/terminal-wizard")
    name = {"step": "name", "name": "T7", "state": '{"description": ""}'}
    expected = [
        "terminal-hardware",
        "terminal-display-clients",
        "terminal-options",
        "terminal-monitor-list",
        "terminal-connection-monitor",
    ]
    step = "name"
    form: dict[str, Any] = {**name, "action": "next"}
    for page in expected:
        response = await user.post("/console/terminal-wizard", form)
        assert help_of(response.text) == page, response.text[:3000]
        state = re.search(r'name="state" value="([^"]*)"', response.text)
        assert state
        step = page.removeprefix("terminal-")
        form = {
            "step": step,
            "name": "T7",
            "action": "next",
            "state": state.group(1).replace("&#34;", '"'),
            "hardware.mac": "02:00:00:00:07:07",
            "connection_monitor.ping_timeout_s": "1",
            "connection_monitor.ping_retry": "3",
            "connection_monitor.interval_s": "5",
        }
    await user.get("/console/server-list")
    response = await user.post(
        "/console/server-list",
        {
            "step": "list",
            "action": "next",
            "auto_sync": "on",
            "p_name": "tm-test",
            "p_address": "127.0.0.1",
            "p_port": "2031",
        },
    )
    assert help_of(response.text) == "server-list-sync"
    assert 'data-help="server-info"' in response.text and "Discover" in response.text
    response = await user.post(
        "/console/server-list",
        {
            "step": "sync",
            "action": "next",
            "auto_sync": "on",
            "p_name": "tm-test",
            "p_address": "127.0.0.1",
            "p_port": "2031",
            "s_name": "other",
            "s_address": "127.0.0.1",
            "s_port": "9",
        },
    )
    assert help_of(response.text) == "server-list-pair"
    assert "will be replaced" in response.text


# ---------------------------------------------------------------------- behaviour


async def test_create_edit_and_delete_through_the_generic_pages(user: Browser, inproc: InProcess) -> None:
    await user.get("/console/k/display-servers/+new")
    created = await user.post(
        "/console/k/display-servers/+new", {"name": "rds-9", "address": "10.0.0.9", "port": "3390", "type": "rds"}
    )
    assert created.status_code == 303
    obj = await inproc.server.services.config.get("display-servers", "rds-9")
    assert (obj["address"], obj["port"], obj["priority"]) == ("10.0.0.9", 3390, 100)
    edit = await user.get("/console/k/display-servers/rds-9")
    version = re.search(r'name="version" value="([^"]+)"', edit.text)
    assert version
    saved = await user.post(
        "/console/k/display-servers/rds-9",
        {"address": "10.0.0.10", "port": "3390", "type": "rds", "priority": "7", "version": version.group(1)},
    )
    assert saved.status_code == 303
    assert (await inproc.server.services.config.get("display-servers", "rds-9"))["priority"] == 7
    stale = await user.post(
        "/console/k/display-servers/rds-9", {"address": "10.0.0.11", "port": "1", "version": version.group(1)}
    )
    assert "someone changed" in stale.text
    page = await user.get("/console/k/display-servers/rds-9/delete")
    assert page.status_code == 200
    deleted = await user.post("/console/k/display-servers/rds-9/delete")
    assert deleted.status_code == 303
    listing = await user.get("/console/k/display-servers")
    assert "Display server rds-9 deleted." in listing.text and 'data-name="rds-9"' not in listing.text
    history = await user.get("/console/history/display-servers/rds-9")
    versions = re.findall(r'name="version" value="([^"]+)"', history.text)
    assert len(versions) >= 2
    reverted = await user.post("/console/history/display-servers/rds-9/revert", {"version": versions[0]})
    assert reverted.status_code == 303
    assert (await inproc.server.services.config.get("display-servers", "rds-9"))["priority"] == 7


async def test_a_referenced_object_cannot_be_deleted_and_says_why(user: Browser) -> None:
    await user.get("/console/k/display-servers/rds-1/delete")
    with nothing_written(user.node):
        response = await user.post("/console/k/display-servers/rds-1/delete")
    assert response.status_code == 200 and "still used by" in response.text


async def test_live_views_answer_no_content_until_the_configuration_changes(user: Browser, inproc: InProcess) -> None:
    page = await user.get("/console/k/display-servers")
    generation = re.search(r"\+rows\?v=(\d+)", page.text)
    assert generation
    unchanged = await user.client.get(f"/console/k/display-servers/+rows?v={generation.group(1)}")
    assert unchanged.status_code == 204
    await inproc.server.services.config.put("test", "display-servers", "rds-7", {"address": "10.7.7.7"})
    changed = await user.client.get(f"/console/k/display-servers/+rows?v={generation.group(1)}")
    assert changed.status_code == 200 and 'data-name="rds-7"' in changed.text
    tree = await user.client.get(f"/console/tree?v={generation.group(1)}")
    assert tree.status_code == 200 and "rds-7" in tree.text


async def test_a_mirrored_secondary_disables_edits_and_names_the_primary(user: Browser, inproc: InProcess) -> None:
    sync = inproc.server.services.sync
    sync._server_list = {
        "auto_sync": True,
        "mode": "mirrored",
        "primary": {"name": "tm-main", "address": "10.1.2.3", "port": 2031},
        "secondary": {"name": "tm-test", "address": "127.0.0.1", "port": 2031},
        "servers": [],
    }
    page = await user.get("/console/k/display-servers/rds-1")
    assert 'id="readonly-banner"' in page.text and "tm-main" in page.text and "10.1.2.3" in page.text
    assert re.search(r'<fieldset class="plain"\s+disabled>', page.text)
    assert re.search(r'<button type="submit" class="primary"\s+disabled>Save', page.text)
    listing = await user.get("/console/k/display-servers")
    assert "/+new" not in listing.text
    with nothing_written(user.node):
        response = await user.post("/console/k/display-servers/rds-1", {"address": "10.9.9.9"})
    assert "mirrored secondary" in response.text


async def test_a_licence_that_is_not_valid_is_shown_loudly(user: Browser, inproc: InProcess) -> None:
    page = await user.get("/console/")
    assert 'id="licence-banner"' not in page.text
    inproc.store.commit_sync(
        ChangeRequest("test", "bad licence", (Op("license", "default", "put", {"document": {"format": "x"}}),))
    )
    page = await user.get("/console/")
    assert 'id="licence-banner"' in page.text and 'role="alert"' in page.text


async def test_the_terminal_wizard_leaves_out_the_monitor_list_while_auto_sync_is_on(
    user: Browser, inproc: InProcess
) -> None:
    page = await user.get("/console/terminal-wizard")
    assert "Server Monitor List" in page.text
    inproc.server.services.sync._server_list = {
        "auto_sync": True,
        "mode": "redundant",
        "primary": {"name": "tm-test", "address": "127.0.0.1", "port": 2031},
        "secondary": {"name": "tm-b", "address": "127.0.0.1", "port": 2032},
        "servers": [],
    }
    page = await user.get("/console/terminal-wizard")
    assert "Server Monitor List" not in page.text


async def test_restore_shows_the_diff_and_needs_a_confirmation(user: Browser, inproc: InProcess) -> None:
    svc = inproc.server.services
    manifest = await svc.backups.create("test")
    await svc.config.delete("test", "users", "jdoe")
    page = await user.get(f"/console/restore?backup={manifest['id']}")
    assert page.status_code == 200 and 'class="diff"' in page.text and "jdoe" in page.text
    with nothing_written(user.node):
        response = await user.post("/console/restore", {"backup": manifest["id"], "action": "restore"})
    assert "tick this box" in response.text
    response = await user.post("/console/restore", {"backup": manifest["id"], "action": "restore", "confirm": "on"})
    assert 'id="restore-result"' in response.text
    assert (await svc.config.get("users", "jdoe"))["card_id"] == "04A1B2C3"


class FormFields(HTMLParser):
    """The values a browser would post for the page's object form (inputs, checked boxes, selects,
    text areas), like a user pressing Save without changing anything."""

    def __init__(self, form: str = "object-form") -> None:
        super().__init__()
        self.form = form
        self.values: list[tuple[str, str]] = []
        self._in_form = False
        self._select: str | None = None
        self._textarea: str | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and self.form in (a.get("id", ""), *a.get("class", "").split()):
            self._in_form = True
        if not self._in_form or "name" not in a and tag != "option":
            return
        if tag == "input":
            kind = a.get("type", "text")
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            if kind != "submit":
                self.values.append((a["name"], a.get("value", "on" if kind == "checkbox" else "")))
        elif tag == "select":
            self._select = a["name"]
        elif tag == "option" and self._select and "selected" in a:
            self.values.append((self._select, a.get("value", "")))
        elif tag == "textarea":
            self._textarea, self._text = a["name"], ""

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "textarea" and self._textarea:
            self.values.append((self._textarea, self._text))
            self._textarea = None
        elif tag == "form":
            self._in_form = False


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("terminal-groups", "line1"),
        ("display-clients", "hmi-line1"),
        ("display-servers", "rds-2"),
        ("users", "jdoe"),
        ("locations", "packaging"),
        ("admins", "admin"),
        ("security-groups", "operators"),
        ("access-groups", "operators"),
    ],
)
async def test_saving_an_unchanged_form_keeps_the_object_as_it_was(
    user: Browser, inproc: InProcess, kind: str, name: str
) -> None:
    config = inproc.server.services.config
    before = await config.get(kind, name)
    page = await user.get(f"/console/k/{kind}/{name}")
    parser = FormFields()
    parser.feed(page.text)
    assert ("csrf", user.csrf) in parser.values
    response = await user.client.post(
        f"/console/k/{kind}/{name}",
        content=urlencode(parser.values),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 303, response.text[-3000:]
    after = await config.get(kind, name)
    assert after == before, "an unchanged form changed the object"


async def test_finishing_the_terminal_wizard_unchanged_keeps_the_terminal(user: Browser, inproc: InProcess) -> None:
    config = inproc.server.services.config
    for name in ("OP-01", "OP-05"):  # one in a group, one with its own screens
        before = await config.get("terminals", name)
        page = await user.get(f"/console/terminal-wizard?name={name}")
        parser = FormFields("terminal-wizard")
        parser.feed(page.text)
        response = await user.client.post(
            "/console/terminal-wizard",
            content=urlencode([*parser.values, ("action", "finish")]),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 303, response.text[-3000:]
        assert await config.get("terminals", name) == before


async def test_walking_every_wizard_page_of_a_terminal_changes_nothing(user: Browser, inproc: InProcess) -> None:
    config = inproc.server.services.config
    for name in ("OP-01", "OP-05"):
        before = await config.get("terminals", name)
        page = await user.get(f"/console/terminal-wizard?name={name}")
        for _ in range(10):
            parser = FormFields("terminal-wizard")
            parser.feed(page.text)
            last = 'value="next" disabled' in page.text
            page = await user.client.post(
                "/console/terminal-wizard",
                content=urlencode([*parser.values, ("action", "finish" if last else "next")]),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            if page.status_code == 303:
                break
            assert page.status_code == 200 and 'id="form-errors"' not in page.text, page.text[-3000:]
        assert page.status_code == 303
        assert await config.get("terminals", name) == before, name
