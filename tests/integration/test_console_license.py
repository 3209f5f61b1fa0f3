"""The console's licence page: the state and this server's node id, installing a signed licence
file (errors next to the field, nothing changed on a bad file) and the CSRF token it needs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.helpers.api import nothing_written
from tests.helpers.inprocess import InProcess
from tests.integration.test_console import Browser, field_error, help_of
from thinsync.licensing import document as lic
from thinsync.store import ChangeRequest, Op

pytestmark = pytest.mark.anyio
KEY = Ed25519PrivateKey.generate()
TRUSTED = lic.public_key_text(KEY.public_key())


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[InProcess]:
    server = InProcess.create(tmp_path / "data", license_issuer_keys=TRUSTED)
    try:
        yield server
    finally:
        await server.aclose()


@pytest.fixture
async def browser(node: InProcess) -> Browser:
    b = Browser(node)
    response = await b.login()
    assert response.status_code == 303, response.text
    return b


def node_id(node: InProcess) -> str:
    return str(node.store.require_identity().node_id)


def licence_for(node: InProcess, key: Ed25519PrivateKey = KEY) -> bytes:
    now = datetime.now(UTC)
    document = lic.sign(
        key,
        {
            "id": "LIC-CONSOLE-1",
            "mode": "standard",
            "terminals": 12,
            "installation_ids": [node_id(node)],
            "issued": (now - timedelta(days=1)).isoformat(),
            "expires": (now + timedelta(days=365)).isoformat(),
            "customer": "Plant 7",
        },
    )
    return json.dumps(document).encode()


async def test_the_licence_page_shows_the_state_and_this_servers_node_id(browser: Browser, node: InProcess) -> None:
    page = await browser.get("/console/license")
    assert page.status_code == 200, page.text[:500]
    assert help_of(page.text) == "license"
    assert "data-help-open" in page.text
    assert f'<code id="node-id">{node_id(node)}</code>' in page.text
    assert '<dd data-licence="state">none</dd>' in page.text
    assert 'href="/console/license"' in page.text  # in the Manage menu
    help_page = await browser.get("/console/help/license")
    assert help_page.status_code == 200 and "node id" in help_page.text
    # A licence that is not valid is loud on its own page too.
    node.store.commit_sync(
        ChangeRequest("test", "bad licence", (Op("license", "default", "put", {"document": {"format": "x"}}),))
    )
    page = await browser.get("/console/license")
    assert 'id="licence-state"' in page.text and 'role="alert"' in page.text
    assert "not a thinsync licence file" in page.text


async def test_a_file_that_is_not_json_is_refused_next_to_the_field_and_changes_nothing(
    browser: Browser, node: InProcess
) -> None:
    await browser.get("/console/license")
    with nothing_written(node):
        response = await browser.post(
            "/console/license", files={"file": ("licence.json", b"\x00not json{", "application/json")}
        )
        assert response.status_code == 200, response.text[:500]
        assert "not JSON" in (field_error(response.text, "file") or "")
        # JSON, but not a licence: the service's own message, next to the field.
        response = await browser.post("/console/license", files={"file": ("x.json", b'{"a": 1}', "application/json")})
        assert field_error(response.text, "file") == "this is not a thinsync licence file"
        # Signed by a key that is not trusted here.
        untrusted = licence_for(node, Ed25519PrivateKey.generate())
        response = await browser.post("/console/license", files={"file": ("x.json", untrusted, "application/json")})
        assert "unknown issuer" in (field_error(response.text, "file") or "")
        # No file at all.
        response = await browser.post("/console/license", files={"file": ("", b"", "application/octet-stream")})
        assert field_error(response.text, "file") == "choose a licence file to upload"
    check = node.server.services.licensing.check()
    assert check["state"] == "none" and not check["installed"]


async def test_installing_without_the_csrf_token_is_refused(browser: Browser, node: InProcess) -> None:
    await browser.get("/console/license")
    good = licence_for(node)
    with nothing_written(node):
        for token in ("", "0" * 64):
            response = await browser.client.post(
                "/console/license", data={"csrf": token}, files={"file": ("l.json", good, "application/json")}
            )
            assert response.status_code == 403, response.text[:300]
            assert "security token" in response.text
    assert node.server.services.licensing.check()["state"] == "none"


async def test_a_licence_signed_by_a_trusted_issuer_is_installed(browser: Browser, node: InProcess) -> None:
    await browser.get("/console/license")
    response = await browser.post("/console/license", files={"file": ("l.json", licence_for(node), "application/json")})
    assert response.status_code == 303, response.text[:500]
    assert response.headers["location"] == "/console/license"
    check = node.server.services.licensing.check()
    assert check["state"] == "valid" and check["id"] == "LIC-CONSOLE-1" and check["terminal_limit"] == 12
    page = await browser.get("/console/license")
    assert "installed" in page.text  # the flash
    assert '<dd data-licence="state">valid</dd>' in page.text
    assert '<dd data-licence="id">LIC-CONSOLE-1</dd>' in page.text
    assert 'role="alert"' not in page.text
