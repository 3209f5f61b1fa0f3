"""The change-stream lane reads `after` by the route's rules; anything else goes to the route."""

from __future__ import annotations

import pytest

from thinsync.http.changestream import MAX_AFTER, parse_after


@pytest.mark.parametrize(
    ("query", "last_id", "expected"),
    [
        ("", None, (True, None)),
        ("after=0", None, (True, 0)),
        ("after=42", "7", (True, 42)),
        ("", "7", (True, 7)),
        ("", "seven", (True, None)),
        (f"after={MAX_AFTER}", None, (True, MAX_AFTER)),
        (f"after={MAX_AFTER + 1}", None, (False, None)),
        ("after=-1", None, (False, None)),
        ("after=abc", None, (False, None)),
        ("after=", None, (False, None)),
        ("after=1&after=2", None, (False, None)),
        ("other=1", None, (False, None)),
        ("after=%D9%A3", None, (False, None)),  # an Arabic-Indic digit: not ASCII
    ],
)
def test_parse_after(query: str, last_id: str | None, expected: tuple[bool, int | None]) -> None:
    assert parse_after(query, last_id) == expected
