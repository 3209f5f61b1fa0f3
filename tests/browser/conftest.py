"""Browser fixtures of our own (no pytest-playwright next to the anyio plugin): one headless Debian
Chromium for the session, real `thinsync serve` processes, pages that fail the test on any console
error, and screenshots saved as test artifacts."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Error, Page, sync_playwright

from tests.helpers.cluster import in_sync, pair, wait_until
from tests.helpers.process import ADMIN_PASSWORD, ServerFactory, ServerProcess
from thinsync.cli.demo import sample_ops

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "tests" / "artifacts" / "screenshots"
CHROMIUM = os.environ.get("THINSYNC_CHROMIUM", "/usr/bin/chromium")
# ENGINEERING.md's flags: no sandbox or GPU in containers, and nothing that phones home.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
DESKTOP = {"width": 1280, "height": 800}
TABLET = {"width": 768, "height": 1024}


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Site:
    """Two servers the tests pair through the console (tm-a and the secondary named `localhost`, so
    that Discover can resolve its name anywhere), plus a standalone tm-c without synchronization."""

    factory: ServerFactory
    a: ServerProcess
    b: ServerProcess
    c: ServerProcess | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def standalone(self) -> ServerProcess:
        if self.c is None:
            self.c = self.factory.start("tm-c")
            seed(self.c)
        return self.c

    def ensure_paired(self) -> None:
        """Pair through the API when the wizard test did not run (a test picked with -k)."""
        for server in (self.a, self.b):
            if server.proc is None or server.proc.poll() is not None:
                server.start()
        status = self.a.api("GET", "/api/v1/sync/status").json()
        if not status["auto_sync"]:
            pair(self.a, self.b)
            self.b._token = None
        wait_until(lambda: in_sync(self.a, self.b), 30, what="the pair in sync")


def seed(server: ServerProcess) -> None:
    with server.client() as client:
        for op in sample_ops():
            response = client.put(f"/api/v1/{op.kind}/{op.name}", json=op.body)
            assert response.status_code in (200, 201), response.text


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    factory = ServerFactory(tmp_path_factory.mktemp("browser"))
    failed = False
    try:
        a = factory.start("tm-a")
        b = factory.start("localhost")
        seed(a)
        yield Site(factory, a, b)
    except BaseException:
        failed = True
        raise
    finally:
        factory.stop_all(report=failed)


@dataclass
class Pages:
    """Opens pages in one browser context (cookies are per server: their names carry the node id)
    and records every console error and uncaught exception of every page it opened."""

    context: BrowserContext
    errors: list[str] = field(default_factory=list)

    def open(self, url: str | None = None) -> Page:
        page = self.context.new_page()
        page.on("console", lambda msg, p=page: self._console(msg, p))
        page.on("pageerror", lambda exc, p=page: self.errors.append(f"{p.url}: uncaught {exc}"))
        page.set_default_timeout(15_000)
        if url:
            page.goto(url)
        return page

    def _console(self, message: ConsoleMessage, page: Page) -> None:
        if message.type == "error":
            self.errors.append(f"{page.url}: console error: {message.text}")

    def login(self, server: ServerProcess, path: str = "/console/") -> Page:
        page = self.open(server.url + path)
        if "/console/login" in page.url:
            page.fill("#f-username", "admin")
            page.fill("#f-password", ADMIN_PASSWORD)
            page.press("#f-password", "Enter")
            page.wait_for_url(lambda url: "/console/login" not in url)
        return page


@pytest.fixture
def pages(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Pages]:
    viewport = getattr(request, "param", DESKTOP)
    context = browser.new_context(viewport=viewport)
    opened = Pages(context)
    try:
        yield opened
    finally:
        with contextlib.suppress(Error):
            context.close()
    assert not opened.errors, "the browser console showed errors:\n" + "\n".join(opened.errors)


@pytest.fixture
def shoot() -> Callable[[Page, str], Path]:
    """Save a screenshot of the page as tests/artifacts/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def save(page: Page, name: str, full_page: bool = False) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    return save
