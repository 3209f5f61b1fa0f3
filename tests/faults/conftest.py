"""The long fault schedules run only when asked for (`make faults`, i.e. `pytest -m faults`): they are
deselected at collection otherwise, rather than reported as skipped."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "faults" in (config.option.markexpr or ""):
        return
    kept = [item for item in items if item.get_closest_marker("faults") is None]
    dropped = [item for item in items if item.get_closest_marker("faults") is not None]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
