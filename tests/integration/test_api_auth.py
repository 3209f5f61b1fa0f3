"""Log-in, bearer tokens (missing, forged, expired, revoked) and permissions from security groups:
viewers read only, operators change the configuration but not accounts, the last admin stays."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.helpers.api import MINIMAL, assert_error, nothing_written, seed
from tests.helpers.inprocess import ADMIN_PASSWORD, InProcess
from thinsync.app import Server, initialize
from thinsync.auth import tokens
from thinsync.clock import FakeClock
from thinsync.model.registry import ACCOUNT_KINDS, COLLECTIONS, SINGLETONS
from thinsync.settings import Settings

pytestmark = pytest.mark.anyio

# One route of each shape; every one needs a valid token.
PROTECTED = [
    ("GET", "/api/v1/terminals", None),
    ("GET", "/api/v1/terminals/T1", None),
    ("PUT", "/api/v1/terminals/T9", {"hardware": {"mac": "aa:bb:cc:dd:ee:09"}}),
    ("PATCH", "/api/v1/terminals/T1", {"description": "x"}),
    ("DELETE", "/api/v1/terminals/T2", None),
    ("GET", "/api/v1/settings", None),
    ("PUT", "/api/v1/settings", {"replacement": "automatic"}),
    ("PATCH", "/api/v1/server-list", {"mode": "mirrored"}),
    ("PUT", "/api/v1/admins/eve", {"password": "password-123", "security_groups": ["administrators"]}),
    ("GET", "/api/v1/history?kind=terminals&name=T1", None),
    ("GET", "/api/v1/events", None),
    ("GET", "/api/v1/session", None),
]


async def request_all(node: InProcess, headers: dict[str, str]) -> list[httpx2.Response]:
    return [await node.client.request(m, p, json=b, headers=headers) for m, p, b in PROTECTED]


def admin_claims(node: InProcess, expires: float, username: str = "admin") -> tokens.Claims:
    password_hash = node.store.get("admins", "admin").vals["password_hash"]
    return tokens.Claims(username, expires, tokens.password_fingerprint(password_hash))


def secret(node: InProcess) -> str:
    return str(node.store.require_identity().token_secret)


async def test_login_gives_a_token_that_opens_the_api(inproc: InProcess) -> None:
    response = await inproc.client.post("/api/v1/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert response.status_code == 200, response.text
    token = response.json()["token"]
    assert isinstance(token, str) and token.startswith("ts1.")
    session = await inproc.client.get("/api/v1/session", headers={"Authorization": f"Bearer {token}"})
    assert session.status_code == 200
    assert session.json() == {"name": "admin", "permissions": ["admin", "read", "write"]}


@pytest.mark.parametrize(
    ("username", "password"), [("admin", "wrong-password"), ("nobody", ADMIN_PASSWORD), ("ADMIN", ADMIN_PASSWORD)]
)
async def test_wrong_credentials_are_401_with_one_message(inproc: InProcess, username: str, password: str) -> None:
    with nothing_written(inproc):
        response = await inproc.client.post("/api/v1/login", json={"username": username, "password": password})
    assert_error(response, 401, "unauthorized", "wrong user name or password")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic YWRtaW46YWRtaW4tcGFzc3dvcmQtMQ==",
        "Bearer not-a-token",
        "Bearer ts1.e30.AAAA",
        "Bearer ts1..",
        "Bearer ts2.x.y",
    ],
)
async def test_missing_or_malformed_token_is_401_everywhere(inproc: InProcess, header: str | None) -> None:
    await seed(inproc)
    headers = {} if header is None else {"Authorization": header}
    with nothing_written(inproc):
        responses = await request_all(inproc, headers)
    for (method, path, _), response in zip(PROTECTED, responses, strict=True):
        body = assert_error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer", (method, path, body)


async def test_forged_tokens_are_401(inproc: InProcess) -> None:
    await seed(inproc)
    good = await inproc.token()
    prefix, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "root"
    other_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    far_future = time.time() + 10**6
    forged = {
        "flipped signature": f"{prefix}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}",
        "changed payload, old signature": f"{prefix}.{other_payload}.{signature}",
        "signed with another secret": tokens.issue("0" * 64, admin_claims(inproc, far_future)),
        "right secret, wrong password": tokens.issue(secret(inproc), tokens.Claims("admin", far_future, "0" * 16)),
        "right secret, unknown user": tokens.issue(secret(inproc), admin_claims(inproc, far_future, "ghost")),
    }
    for label, token in forged.items():
        with nothing_written(inproc):
            responses = await request_all(inproc, {"Authorization": f"Bearer {token}"})
        for response in responses:
            assert response.status_code == 401, (label, response.request.url, response.text)
            assert_error(response, 401, "unauthorized")
    # The genuine token still works, so the 401s above come from the forgery.
    assert (await inproc.call("GET", "/api/v1/session")).status_code == 200


async def test_token_with_past_expiry_is_401(inproc: InProcess) -> None:
    await seed(inproc)
    expired = tokens.issue(secret(inproc), admin_claims(inproc, time.time() - 1))
    valid = tokens.issue(secret(inproc), admin_claims(inproc, time.time() + 60))
    with nothing_written(inproc):
        responses = await request_all(inproc, {"Authorization": f"Bearer {expired}"})
    for response in responses:
        assert_error(response, 401, "unauthorized", "expired")
    ok = await inproc.client.get("/api/v1/session", headers={"Authorization": f"Bearer {valid}"})
    assert ok.status_code == 200


@pytest.fixture
async def clocked(tmp_path: Path) -> AsyncIterator[tuple[InProcess, FakeClock]]:
    """A server with a 60 s token lifetime and a clock the test moves."""
    settings = Settings.load(tmp_path / "data", {"token_ttl_s": 60})
    initialize(settings, "tm-clock", ADMIN_PASSWORD)
    clock = FakeClock(time.time())
    server = Server(settings, clock)
    client = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=server.app), base_url="http://testserver")
    node = InProcess(server, client, {})
    try:
        yield node, clock
    finally:
        await node.aclose()


async def test_token_expires_after_token_ttl_s(clocked: tuple[InProcess, FakeClock]) -> None:
    node, clock = clocked
    assert (await node.call("GET", "/api/v1/session")).status_code == 200
    clock.advance(59)
    assert (await node.call("GET", "/api/v1/session")).status_code == 200
    clock.advance(2)
    with nothing_written(node):
        response = await node.call("PUT", "/api/v1/access-groups/ag1", json={})
    assert_error(response, 401, "unauthorized", "expired")


async def test_password_change_disable_and_delete_revoke_tokens(inproc: InProcess) -> None:
    for name in ("ann", "bea", "cal"):
        await inproc.make_user(name, ["operators"])
    new = {"password": "a-new-password", "security_groups": ["operators"]}
    assert (await inproc.call("PUT", "/api/v1/admins/ann", json=new)).status_code == 200
    assert (await inproc.call("PATCH", "/api/v1/admins/bea", json={"disabled": True})).status_code == 200
    assert (await inproc.call("DELETE", "/api/v1/admins/cal")).status_code == 204
    for name, words in (("ann", "log in again"), ("bea", "disabled"), ("cal", "log in again")):
        with nothing_written(inproc):
            response = await inproc.call("PUT", "/api/v1/access-groups/ag1", user=name, json={})
        assert_error(response, 401, "unauthorized", words)
    old = await inproc.client.post("/api/v1/login", json={"username": "ann", "password": "password-123"})
    assert_error(old, 401, "unauthorized")
    fresh = await inproc.client.post("/api/v1/login", json={"username": "ann", "password": "a-new-password"})
    assert fresh.status_code == 200
    disabled = await inproc.client.post("/api/v1/login", json={"username": "bea", "password": "password-123"})
    assert_error(disabled, 401, "unauthorized", "disabled")


async def test_viewer_gets_403_on_every_write_and_200_on_every_read(inproc: InProcess) -> None:
    await seed(inproc)
    for kind in COLLECTIONS:
        assert (await inproc.call("PUT", f"/api/v1/{kind}/obj-1", json=MINIMAL[kind])).status_code == 201
    await inproc.make_user("vera", ["viewers"])

    with nothing_written(inproc):
        writes: list[tuple[str, str, Any]] = []
        for kind in COLLECTIONS:
            writes += [
                ("PUT", f"/api/v1/{kind}/obj-1", MINIMAL[kind]),
                ("PUT", f"/api/v1/{kind}/obj-2", MINIMAL[kind]),
                ("PATCH", f"/api/v1/{kind}/obj-1", {"description": "viewer was here"}),
                ("DELETE", f"/api/v1/{kind}/obj-1", None),
            ]
        for kind in SINGLETONS:
            writes.append(("PUT", f"/api/v1/{kind}", {}))
            if kind != "license":  # a licence is installed whole, never patched
                writes.append(("PATCH", f"/api/v1/{kind}", {"mode": "mirrored"}))
        for method, path, body in writes:
            response = await inproc.call(method, path, user="vera", json=body)
            assert_error(response, 403, "forbidden", "vera")

    reads = [f"/api/v1/{kind}" for kind in (*COLLECTIONS, *SINGLETONS)]
    reads += [f"/api/v1/{kind}/obj-1" for kind in COLLECTIONS]
    reads += ["/api/v1/history?kind=terminals&name=T1", "/api/v1/events", "/api/v1/session"]
    for path in reads:
        response = await inproc.call("GET", path, user="vera")
        assert response.status_code == 200, (path, response.text)


async def test_operator_writes_configuration_but_not_accounts(inproc: InProcess) -> None:
    await inproc.make_user("otto", ["operators"])
    for method, path, body, status in [
        ("PUT", "/api/v1/display-servers/ds1", {"address": "10.0.0.1"}, 201),
        ("PATCH", "/api/v1/display-servers/ds1", {"port": 3390}, 200),
        ("PUT", "/api/v1/settings", {"replacement": "automatic"}, 200),
        ("DELETE", "/api/v1/display-servers/ds1", None, 204),
    ]:
        response = await inproc.call(method, path, user="otto", json=body)
        assert response.status_code == status, (method, path, response.text)
    # The server list decides which servers share the configuration (pairing): admins only.
    with nothing_written(inproc):
        response = await inproc.call("PATCH", "/api/v1/server-list", user="otto", json={"mode": "mirrored"})
        assert_error(response, 403, "forbidden", "'admin' permission")

    assert (await inproc.call("GET", "/api/v1/admins", user="otto")).status_code == 200
    with nothing_written(inproc):
        for kind in sorted(ACCOUNT_KINDS):
            for method, path, body in [
                ("PUT", f"/api/v1/{kind}/new-one", MINIMAL[kind]),
                ("PUT", f"/api/v1/{kind}/otto", MINIMAL[kind]),
                ("PATCH", f"/api/v1/{kind}/otto", {"security_groups": ["administrators"]}),
                ("PATCH", f"/api/v1/{kind}/operators", {"permissions": ["read", "write", "admin"]}),
                ("DELETE", f"/api/v1/{kind}/admin", None),
            ]:
                response = await inproc.call(method, path, user="otto", json=body)
                assert_error(response, 403, "forbidden", "'admin' permission")


async def test_last_admin_cannot_be_removed(inproc: InProcess) -> None:
    with nothing_written(inproc):
        for method, path, body in [
            ("PATCH", "/api/v1/admins/admin", {"security_groups": ["operators"]}),
            ("PUT", "/api/v1/admins/admin", {"security_groups": []}),
            ("PATCH", "/api/v1/admins/admin", {"disabled": True}),
            ("DELETE", "/api/v1/admins/admin", None),
            ("PATCH", "/api/v1/security-groups/administrators", {"permissions": ["read", "write"]}),
            ("DELETE", "/api/v1/security-groups/administrators", None),
        ]:
            response = await inproc.call(method, path, json=body)
            assert_error(response, 409, "conflict", "admin")
    # With a second administrator the first one can go.
    await inproc.make_user("root2", ["administrators"])
    response = await inproc.call("PATCH", "/api/v1/admins/admin", json={"security_groups": ["viewers"]})
    assert response.status_code == 200, response.text
    with nothing_written(inproc):
        response = await inproc.call("DELETE", "/api/v1/admins/root2", user="root2")
    assert_error(response, 409, "conflict", "no enabled admin account")


async def test_passwords_and_pins_never_appear_in_output(inproc: InProcess) -> None:
    await inproc.make_user("vera", ["viewers"])
    await inproc.call("PUT", "/api/v1/users/u1", json={"pin": "4321"})
    await inproc.call("PATCH", "/api/v1/admins/vera", json={"password": "another-password"})
    outputs = [
        await inproc.call("GET", "/api/v1/admins"),
        await inproc.call("GET", "/api/v1/admins/admin"),
        await inproc.call("GET", "/api/v1/admins/vera"),
        await inproc.call("GET", "/api/v1/users/u1"),
        await inproc.call("GET", "/api/v1/history", params={"kind": "admins", "name": "vera"}),
        await inproc.call("PUT", "/api/v1/admins/vera", json={"security_groups": ["viewers"]}),
        await inproc.call("GET", "/api/v1/openapi.json"),
    ]
    for response in outputs[:-1]:
        assert response.status_code == 200, response.text
        for secret_text in ("password", "pin_hash", "$argon2", "4321", ADMIN_PASSWORD):
            assert secret_text not in response.text, (secret_text, response.request.url)
    listing = outputs[0].json()["items"]
    assert {item["name"] for item in listing} == {"admin", "vera"}
    assert all(set(item) == {"name", "description", "security_groups", "disabled", "version"} for item in listing)
    # A PUT without a password keeps the old one.
    assert (
        await inproc.client.post("/api/v1/login", json={"username": "vera", "password": "another-password"})
    ).status_code == 200
    # The API documents the password as write-only.
    admin_schema = outputs[-1].json()["components"]["schemas"]["AdminInput"]["properties"]
    assert admin_schema["password"]["writeOnly"] is True and "password_hash" not in admin_schema
