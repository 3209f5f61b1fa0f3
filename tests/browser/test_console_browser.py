"""The web console in headless Chromium against real servers: log in, pair two servers with the
Server List wizard (Discover, Finish), see an edit on A appear on B's pages without a reload, watch
the Synchronization tab go green and then red when the peer is killed, resolve a conflict from the
inbox, walk the Terminal Configuration Wizard with and without its monitor list page, restore a
backup after its diff, open help with F1, and load every page at desktop and tablet width without
a console error. The tests share one pair of servers and run in file order."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import DESKTOP, TABLET, Pages, Site
from tests.helpers.cluster import in_sync, wait_until
from tests.helpers.process import ADMIN_PASSWORD

pytestmark = pytest.mark.browser
Shoot = Callable[..., Path]


def active_id(page: Page) -> str:
    return str(page.evaluate("document.activeElement && document.activeElement.id"))


def test_login_with_the_keyboard(site: Site, pages: Pages, shoot: Shoot) -> None:
    page = pages.open(site.a.url + "/")
    expect(page).to_have_url(re.compile(r"/console/login\?next="))
    expect(page.locator("h1")).to_contain_text("tm-a")
    shoot(page, "login")
    assert active_id(page) == "f-username", "the user name field has the focus"
    page.keyboard.type("admin")
    page.keyboard.press("Tab")
    assert active_id(page) == "f-password"
    page.keyboard.type("wrong-password")
    page.keyboard.press("Enter")
    expect(page.locator("#f-password-error")).to_contain_text("wrong user name or password")
    page.fill("#f-password", ADMIN_PASSWORD)
    page.press("#f-password", "Enter")
    expect(page).to_have_url(site.a.url + "/console/")
    expect(page.locator("h1")).to_have_text("Overview of tm-a")
    expect(page.locator("#tree")).to_contain_text("OP-01")
    shoot(page, "overview")


def test_server_list_wizard_discovers_the_secondary_and_pairs(site: Site, pages: Pages, shoot: Shoot) -> None:
    page = pages.login(site.a)
    page.click("#manage-menu summary")
    page.click("#manage-menu >> text=Server List")
    expect(page.locator("#wizard-title")).to_have_text("Server List")
    for label in ("< Back", "Next >", "Finish", "Cancel", "Help"):
        expect(page.get_by_role("button", name=label, exact=True)).to_be_visible()
    page.check("#f-auto_sync")
    page.check("input[name=mode][value=redundant]")
    page.get_by_role("button", name="Next >").click()
    expect(page.locator("#wizard-title")).to_have_text("Auto-synchronization Configuration")
    expect(page.locator('[data-show="p_name"]')).to_have_text("tm-a")

    # Escape cancels the dialog and leaves the secondary as it was.
    page.click("[data-edit-server=s]")
    dialog = page.locator("#server-dialog")
    expect(dialog).to_be_visible()
    assert active_id(page) == "dlg-name"
    page.keyboard.type("not-this-one")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.locator('[data-show="s_name"]')).to_have_text("–")

    # Enter Server Information: the name, Discover fills in the address, Enter means OK.
    page.click("[data-edit-server=s]")
    page.fill("#dlg-name", "localhost")
    page.fill("#dlg-port", str(site.b.port))
    page.click("#discover-button")
    expect(page.locator("#discover-message")).to_contain_text("A thinsync server answers")
    expect(page.locator("#discover-message")).to_contain_text("localhost")
    expect(page.locator("#dlg-address")).to_have_value("127.0.0.1")
    shoot(page, "server-list-wizard")
    page.press("#dlg-name", "Enter")
    expect(dialog).to_be_hidden()
    expect(page.locator('[data-show="s_name"]')).to_have_text("localhost")
    expect(page.locator('[data-show="s_address"]')).to_have_text("127.0.0.1")

    page.get_by_role("button", name="Finish").click()
    expect(page.locator("#wizard-title")).to_have_text("Finish: pair the servers")
    expect(page.locator("#replace-warning")).to_contain_text("The secondary's configuration will be replaced")
    page.fill("#f-peer_password", "wrong-password")
    page.get_by_role("button", name="Finish").click()
    expect(page.locator("#f-peer_password-error")).to_contain_text("refused to pair")
    page.fill("#f-peer_password", ADMIN_PASSWORD)
    page.get_by_role("button", name="Finish").click()
    expect(page.locator("#wizard-result")).to_contain_text("Automatic synchronization is on", timeout=60_000)
    shoot(page, "server-list-result")
    site.b._token = None  # pairing gave the secondary the primary's accounts
    wait_until(lambda: in_sync(site.a, site.b), 30, what="the pair in sync after the wizard")


def test_an_edit_on_a_appears_on_b_without_a_reload(site: Site, pages: Pages, shoot: Shoot) -> None:
    site.ensure_paired()
    on_b = pages.login(site.b, "/console/k/display-servers")
    expect(on_b.locator("#rows-display-servers")).to_contain_text("rds-1")
    on_b.evaluate("window.__notReloaded = true")
    on_a = pages.login(site.a, "/console/k/display-servers/rds-1")
    on_a.fill("#f-description", "HMI server 1 (edited on tm-a)")
    on_a.get_by_role("button", name="Save").click()
    expect(on_a.locator("#flash")).to_contain_text("saved")
    row = on_b.locator('#rows-display-servers tr[data-name="rds-1"]')
    expect(row).to_contain_text("edited on tm-a", timeout=15_000)
    assert on_b.evaluate("window.__notReloaded === true"), "B's page was reloaded"
    # The tree on B follows too: a display server created on A shows up there.
    site.a.api("PUT", "/api/v1/display-servers/rds-live", json={"address": "10.0.10.99"})
    expect(on_b.locator("#tree")).to_contain_text("rds-live", timeout=15_000)
    assert on_b.evaluate("window.__notReloaded === true")
    shoot(on_b, "live-update-on-b")


def test_synchronization_tab_green_then_red_when_the_peer_is_killed(site: Site, pages: Pages, shoot: Shoot) -> None:
    site.ensure_paired()
    page = pages.login(site.a, "/console/sync")
    peer = page.locator('#sync-servers tr[data-server="localhost"]')
    expect(peer).to_have_attribute("data-connected", "true")
    expect(peer.locator(".light")).to_have_class(re.compile("green"))
    expect(page.locator("#sync-summary")).to_contain_text("In sync", timeout=20_000)
    expect(peer).to_contain_text("match")
    expect(page.locator("svg.chart")).to_be_visible()
    page.get_by_role("button", name="Synchronize now").click()
    expect(page.locator("#flash")).to_contain_text("Synchronizing now")
    shoot(page, "sync-tab")
    site.b.kill()
    expect(peer).to_have_attribute("data-connected", "false", timeout=15_000)
    expect(peer.locator(".light")).to_have_class(re.compile("red"))
    expect(peer).to_contain_text("peer-unreachable", timeout=15_000)
    expect(page.locator("#sync-summary")).to_contain_text("Not in sync")
    shoot(page, "sync-peer-down")
    page.close()


def test_a_conflict_is_resolved_from_the_inbox(site: Site, pages: Pages, shoot: Shoot) -> None:
    site.ensure_paired()
    a, b = site.a, site.b
    # Concurrent edits of one field while the servers cannot see each other: B down while A edits,
    # then A down while B edits; when both run again the link records the conflict on both.
    b.kill()
    assert a.api("PATCH", "/api/v1/display-servers/rds-2", json={"description": "set on tm-a"}).status_code == 200
    a.stop()
    b.start()
    b._token = None
    assert b.api("PATCH", "/api/v1/display-servers/rds-2", json={"description": "set on localhost"}).status_code == 200
    a.start()
    a._token = None

    def open_conflicts() -> list[dict[str, object]]:
        items = a.api("GET", "/api/v1/sync/conflicts").json()["items"]
        return [c for c in items if c["name"] == "rds-2"]

    wait_until(open_conflicts, 30, what="the conflict recorded on tm-a")
    page = pages.login(a, "/console/sync")
    conflict = page.locator("article.conflict").filter(has_text="rds-2")
    expect(conflict).to_be_visible()
    expect(conflict.locator(".version.winner")).to_be_visible()
    expect(conflict.locator(".version.other")).to_be_visible()
    expect(conflict).to_contain_text("set on tm-a")
    expect(conflict).to_contain_text("set on localhost")
    shoot(page, "conflict-inbox")
    other = conflict.locator(".version.other pre").inner_text().strip()
    conflict.locator(".version.other button").click()
    expect(page.locator("article.conflict").filter(has_text="rds-2")).to_have_count(0, timeout=15_000)
    wait_until(lambda: not open_conflicts(), 20, what="the conflict closed on tm-a")
    wait_until(
        lambda: b.api("GET", "/api/v1/display-servers/rds-2").json()["description"] == other, 20, what="B took it"
    )
    assert a.api("GET", "/api/v1/display-servers/rds-2").json()["description"] == other
    wait_until(lambda: in_sync(a, b), 30, what="the pair in sync again")


def walk_terminal_wizard(page: Page, name: str, mac: str, monitor_list: bool) -> list[str]:
    page.click("text=New terminal…")
    steps = page.locator("ol.steps li").all_inner_texts()
    expect(page.locator("#wizard-title")).to_have_text("Terminal Name")
    page.fill("#f-name", name)
    page.fill("#f-description", "made in the wizard")
    page.keyboard.press("Enter")  # Enter means Next
    expect(page.locator("#wizard-title")).to_have_text("Terminal Hardware")
    page.fill("#f-hardware-mac", "not-a-mac")
    page.get_by_role("button", name="Next >").click()
    expect(page.locator("#f-hardware-mac-error")).to_contain_text("MAC address")
    page.fill("#f-hardware-mac", mac)
    page.get_by_role("button", name="Next >").click()
    expect(page.locator("#wizard-title")).to_have_text("Display Client Selection")
    page.check("input[name=screen1][value=hmi-line1]")
    page.get_by_role("button", name="Next >").click()
    expect(page.locator("#wizard-title")).to_have_text("Terminal Options")
    page.get_by_role("button", name="Next >").click()
    if monitor_list:
        expect(page.locator("#wizard-title")).to_have_text("Server Monitor List")
        page.check("#f-monitor_list-specify")
        page.fill("#f-monitor_list-servers", "tm-c\ntm-a")
        page.get_by_role("button", name="< Back").click()
        expect(page.locator("#wizard-title")).to_have_text("Terminal Options")
        page.get_by_role("button", name="Next >").click()
        expect(page.locator("#f-monitor_list-servers")).to_have_value("tm-c\ntm-a")
        page.get_by_role("button", name="Next >").click()
    expect(page.locator("#wizard-title")).to_have_text("Connection Monitor")
    page.fill("#f-connection_monitor-interval_s", "10")
    return steps


def test_terminal_wizard_without_the_monitor_list_page_while_auto_sync_is_on(
    site: Site, pages: Pages, shoot: Shoot
) -> None:
    site.ensure_paired()
    page = pages.login(site.a, "/console/k/terminals")
    steps = walk_terminal_wizard(page, "OP-20", "02:00:00:00:20:20", monitor_list=False)
    assert "Server Monitor List" not in steps and len(steps) == 5
    shoot(page, "terminal-wizard")
    page.get_by_role("button", name="Finish").click()
    expect(page.locator("#flash")).to_contain_text("Terminal OP-20 saved")
    terminal = wait_until(
        lambda: (
            site.b.api("GET", "/api/v1/terminals/OP-20").json()
            if site.b.api("GET", "/api/v1/terminals/OP-20").status_code == 200
            else None
        ),
        15,
        what="OP-20 on the secondary",
    )
    assert terminal["hardware"]["mac"] == "02:00:00:00:20:20"
    assert terminal["screens"][0]["display_clients"] == ["hmi-line1"]
    assert terminal["connection_monitor"]["interval_s"] == 10


def test_terminal_wizard_with_the_monitor_list_page_while_auto_sync_is_off(
    site: Site, pages: Pages, shoot: Shoot
) -> None:
    c = site.standalone()
    page = pages.login(c, "/console/k/terminals")
    steps = walk_terminal_wizard(page, "OP-30", "02:00:00:00:30:30", monitor_list=True)
    assert "Server Monitor List" in steps and len(steps) == 6
    page.get_by_role("button", name="Finish").click()
    expect(page.locator("#flash")).to_contain_text("Terminal OP-30 saved")
    terminal = c.api("GET", "/api/v1/terminals/OP-30").json()
    assert terminal["monitor_list"] == {"specify": True, "servers": ["tm-c", "tm-a"]}


def test_synchronize_configurations_copies_from_another_server_after_its_diff(
    site: Site, pages: Pages, shoot: Shoot
) -> None:
    site.ensure_paired()
    c = site.standalone()
    body = {
        "auto_sync": False,
        "mode": "redundant",
        "primary": {"name": "tm-c", "address": "127.0.0.1", "port": c.port},
        "secondary": {"name": "tm-a", "address": "127.0.0.1", "port": site.a.port},
    }
    assert c.api("PUT", "/api/v1/server-list", json=body).status_code == 200
    site.a.api("PUT", "/api/v1/display-servers/only-on-a", json={"address": "10.0.0.77"})
    page = pages.login(c, "/console/manual-sync")
    expect(page.locator("#wizard-title")).to_have_text("Synchronize Configurations")
    expect(page.locator("#f-source")).to_have_value("tm-a")
    page.get_by_role("button", name="Next >").click()
    expect(page.locator("#f-password-error")).to_contain_text("enter its password")
    page.fill("#f-password", ADMIN_PASSWORD)
    page.get_by_role("button", name="Next >").click()
    expect(page.locator("#wizard-title")).to_have_text("Check the changes")
    expect(page.locator(".diff")).to_contain_text("only-on-a")
    shoot(page, "manual-sync-diff")
    assert c.api("GET", "/api/v1/display-servers/only-on-a").status_code == 404, "the dry run wrote"
    page.get_by_role("button", name="Finish").click()
    expect(page.locator("#wizard-title")).to_have_text("Configuration copied")
    assert c.api("GET", "/api/v1/display-servers/only-on-a").status_code == 200


def test_restore_shows_its_diff_and_asks_for_a_confirmation(site: Site, pages: Pages, shoot: Shoot) -> None:
    site.ensure_paired()
    page = pages.login(site.a, "/console/backups")
    page.click("#backup-now")
    expect(page.locator("#flash")).to_contain_text("written")
    newest = page.locator("#backup-list tbody tr").first
    assert site.a.api("DELETE", "/api/v1/users/jdoe").status_code == 204
    wait_until(lambda: site.b.api("GET", "/api/v1/users/jdoe").status_code == 404, 15, what="jdoe gone on B")
    newest.get_by_role("link", name="Restore…").click()
    diff = page.locator(".diff")
    expect(diff).to_contain_text("jdoe")
    expect(diff.locator("tr", has_text="users").locator("td.added")).to_contain_text("jdoe")
    page.click("#restore-button")
    expect(page.locator("#f-confirm-error")).to_contain_text("tick this box")
    shoot(page, "restore-diff")
    page.check("#f-confirm")
    page.click("#restore-button")
    expect(page.locator("#restore-result")).to_contain_text("A backup of the configuration before the restore")
    wait_until(lambda: site.b.api("GET", "/api/v1/users/jdoe").status_code == 200, 15, what="jdoe back on B")


def test_f1_and_help_buttons_open_the_help_of_the_page(site: Site, pages: Pages, shoot: Shoot) -> None:
    site.ensure_paired()
    page = pages.login(site.a, "/console/sync")
    help_dialog = page.locator("#help-dialog")
    page.keyboard.press("F1")
    expect(help_dialog).to_be_visible()
    expect(help_dialog.locator("article.help")).to_have_attribute("data-page", "sync")
    expect(help_dialog).to_contain_text("Conflict inbox")
    assert active_id(page) == "help-close"
    shoot(page, "help-sync")
    page.keyboard.press("Escape")
    expect(help_dialog).to_be_hidden()
    # A wizard page's Help button, and F1 inside the Enter Server Information dialog.
    page.goto(site.a.url + "/console/server-list")
    page.get_by_role("button", name="Help", exact=True).last.click()
    expect(help_dialog.locator("article.help")).to_have_attribute("data-page", "server-list")
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Next >").click()
    page.click("[data-edit-server=p]")
    page.keyboard.press("F1")
    expect(help_dialog.locator("article.help")).to_have_attribute("data-page", "server-info")
    expect(help_dialog).to_contain_text("Discover")
    page.keyboard.press("Escape")
    expect(help_dialog).to_be_hidden()
    expect(page.locator("#server-dialog")).to_be_visible()
    page.keyboard.press("Escape")
    # The log-in page has help too.
    other = pages.open(site.b.url + "/console/login")
    other.keyboard.press("F1")
    expect(other.locator("#help-dialog article.help")).to_have_attribute("data-page", "login")


def test_terminal_status_lights_turn_green_live(site: Site, pages: Pages, shoot: Shoot) -> None:
    site.ensure_paired()
    page = pages.login(site.a, "/console/terminal-status")
    card = page.locator('li[data-terminal="OP-01"]')
    expect(card).to_have_attribute("data-status", re.compile("never|offline"))
    response = httpx2.post(
        f"{site.a.url}/terminal/v1/00:0b:ab:00:00:01/status", json={"booted_from": "tm-a"}, timeout=10
    )
    assert response.status_code == 204
    expect(card).to_have_attribute("data-status", "online", timeout=10_000)
    expect(card.locator(".light")).to_have_class(re.compile("green"))
    expect(card).to_contain_text("booted from: tm-a")
    shoot(page, "terminal-status")


MAIN_PAGES = [
    "/console/",
    "/console/sync",
    "/console/terminal-status",
    "/console/k/terminals",
    "/console/k/display-clients",
    "/console/k/display-clients/hmi-line1",
    "/console/k/display-servers/+new",
    "/console/k/users",
    "/console/k/locations",
    "/console/k/admins",
    "/console/k/security-groups/operators",
    "/console/server-list",
    "/console/manual-sync",
    "/console/backups",
    "/console/settings",
    "/console/terminal-wizard?name=OP-02",
    "/console/history/terminals/OP-01",
]


@pytest.mark.parametrize("pages", [DESKTOP, TABLET], ids=["1280x800", "tablet"], indirect=True)
def test_every_page_loads_without_console_errors_and_fits_the_width(
    site: Site, pages: Pages, shoot: Shoot, request: pytest.FixtureRequest
) -> None:
    site.ensure_paired()
    page = pages.login(site.a)
    width = page.viewport_size["width"] if page.viewport_size else 0
    for path in MAIN_PAGES:
        response = page.goto(site.a.url + path)
        assert response is not None and response.status == 200, path
        expect(page.locator("h1").first).to_be_visible()
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{path} is {overflow}px wider than the {width}px window"
    if width < 1000:
        page.goto(site.a.url + "/console/sync")
        shoot(page, "sync-tablet")
    page.goto(site.a.url + "/console/k/display-servers/+new")
    page.fill("#f-name", "ds-x")
    page.fill("#f-port", "not-a-port")
    page.get_by_role("button", name="Create").click()
    expect(page.locator('[data-field="address"] .error')).to_have_text("is required")
    expect(page.locator('[data-field="port"] .error')).to_have_text("must be a whole number")
    expect(page.locator("#f-port")).to_have_attribute("aria-invalid", "true")
