"""An in-process server for API tests: the real app and store, no sockets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

from thinsync.app import Server, initialize
from thinsync.settings import Settings

ADMIN_PASSWORD = "admin-password-1"


@dataclass
class InProcess:
    server: Server
    client: httpx2.AsyncClient
    tokens: dict[str, str]

    @classmethod
    def create(cls, data: Path, **flags: Any) -> InProcess:
        settings = Settings.load(data, flags)
        initialize(settings, "tm-test", ADMIN_PASSWORD)
        server = Server(settings)
        client = httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=server.app), base_url="http://testserver", timeout=30.0
        )
        return cls(server, client, {})

    @property
    def store(self):  # type: ignore[no-untyped-def]
        return self.server.services.store

    async def token(self, user: str = "admin", password: str = ADMIN_PASSWORD) -> str:
        if user not in self.tokens:
            response = await self.client.post("/api/v1/login", json={"username": user, "password": password})
            assert response.status_code == 200, response.text
            self.tokens[user] = response.json()["token"]
        return self.tokens[user]

    async def call(self, method: str, path: str, user: str = "admin", **kwargs: Any) -> httpx2.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        headers.setdefault("Authorization", f"Bearer {await self.token(user)}")
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def make_user(self, name: str, groups: list[str], password: str = "password-123") -> None:
        response = await self.call(
            "PUT", f"/api/v1/admins/{name}", json={"password": password, "security_groups": groups}
        )
        assert response.status_code == 201, response.text
        response = await self.client.post("/api/v1/login", json={"username": name, "password": password})
        assert response.status_code == 200, response.text
        self.tokens[name] = response.json()["token"]

    async def aclose(self) -> None:
        await self.client.aclose()
        self.server.close()
