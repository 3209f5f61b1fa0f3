"""HTTP client for the remote commands: log in, call the API, turn errors into CLI errors."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
import httpx2

# Named exit codes (documented in docs/user-guide.md).
EXIT_ERROR = 1
EXIT_NOT_FOUND = 3
EXIT_REFUSED = 4
EXIT_AUTH = 5
EXIT_UNREACHABLE = 6


class CliError(click.ClickException):
    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]


def exit_code_for(status: int) -> int:
    if status in (401, 403):
        return EXIT_AUTH
    if status == 404:
        return EXIT_NOT_FOUND
    if 400 <= status < 500:
        return EXIT_REFUSED
    return EXIT_ERROR


class Api:
    """A logged-in session with one server."""

    def __init__(self, server: str, user: str, password: str | None, timeout: float = 30.0) -> None:
        self.server = server.rstrip("/")
        self._client = httpx2.Client(
            base_url=self.server,
            timeout=httpx2.Timeout(timeout, connect=5.0),
            limits=httpx2.Limits(max_connections=4),
        )
        self._user = user
        self._password = password
        self._token: str | None = None

    def close(self) -> None:
        self._client.close()

    def _login(self) -> None:
        password = self._password
        if password is None:
            password = os.environ.get("THINSYNC_PASSWORD")
        if password is None:
            password = click.prompt(f"password for {self._user} at {self.server}", hide_input=True)
        body = self.request("POST", "/api/v1/login", json={"username": self._user, "password": password}, auth=False)
        self._token = body["token"]

    def _prepare(self, auth: bool, kwargs: dict[str, Any]) -> dict[str, Any]:
        headers = dict(kwargs.pop("headers", {}) or {})
        if "timeout" in kwargs:
            kwargs["timeout"] = httpx2.Timeout(kwargs["timeout"], connect=5.0)
        if auth:
            if self._token is None:
                self._login()
            headers["Authorization"] = f"Bearer {self._token}"
        return {**kwargs, "headers": headers}

    def _unreachable(self, exc: Exception) -> CliError:
        return CliError(f"cannot reach the thinsync server at {self.server}: {exc}", EXIT_UNREACHABLE)

    @staticmethod
    def _raise_for(response: httpx2.Response) -> None:
        if response.status_code >= 400:
            try:
                message = response.json().get("message") or response.text
            except ValueError:
                message = response.text or response.reason_phrase
            raise CliError(message, exit_code_for(response.status_code))

    @contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx2.Response]:
        """A streamed response (for downloads); CliError on an error, like `request`."""
        try:
            with self._client.stream(method, path, **self._prepare(True, kwargs)) as response:
                if response.status_code >= 400:
                    response.read()
                self._raise_for(response)
                yield response
        except httpx2.TransportError as exc:
            raise self._unreachable(exc) from exc

    def request(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> Any:
        """Send a request; return the decoded JSON (None for 204); raise CliError on an error."""
        kwargs = self._prepare(auth, kwargs)
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx2.TransportError as exc:
            raise self._unreachable(exc) from exc
        self._raise_for(response)
        if response.status_code == 204 or not response.content:
            return None
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text
