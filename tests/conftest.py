"""Shared fixtures. Password hashing is made cheap for tests through the real setting."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx2
import pytest
from hypothesis import HealthCheck, settings

# Two shared cores make per-example timings meaningless: no deadlines, no "too slow" health check.
settings.register_profile("thinsync", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "thinsync"))

# argon2 with 64 MiB per hash makes hundreds of log-ins slow; the cost is a setting, lowered here
# for every server the tests start (in-process and child processes inherit the environment).
os.environ.setdefault("THINSYNC_PASSWORD_MEMORY_KIB", "256")
os.environ.setdefault("THINSYNC_PASSWORD_TIME_COST", "1")

from tests.helpers.inprocess import ADMIN_PASSWORD, InProcess  # noqa: E402
from tests.helpers.process import ServerFactory  # noqa: E402


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def servers(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ServerFactory]:
    """Start real `thinsync serve` processes: `servers.start("tm-a")`; all stopped afterwards."""
    factory = ServerFactory(tmp_path)
    try:
        yield factory
    finally:
        failed = getattr(request.node, "rep_call", None)
        factory.stop_all(report=bool(failed and failed.failed))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
async def inproc(tmp_path: Path) -> AsyncIterator[InProcess]:
    """A server assembled in this process, reached through httpx2's ASGI transport."""
    server = InProcess.create(tmp_path / "data")
    try:
        yield server
    finally:
        await server.aclose()


__all__ = ["ADMIN_PASSWORD", "httpx2"]
