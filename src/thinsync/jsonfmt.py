"""Compact JSON for the store and the peer protocol, through orjson (several times faster than the
standard library on the write and replication paths).

The text is the standard library's `separators=(",", ":"), ensure_ascii=False` form (keys sorted
when asked). Values orjson refuses (integers beyond 64 bits, lone surrogates, non-string keys) fall
back to the standard library with non-ASCII escaped, so the text is valid UTF-8 whatever the value.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any, sort_keys: bool = False) -> str:
    """Compact JSON text."""
    return dumpb(value, sort_keys).decode()


def dumpb(value: Any, sort_keys: bool = False) -> bytes:
    """Compact JSON as UTF-8 bytes."""
    try:
        return orjson.dumps(value, default=_embed, option=orjson.OPT_SORT_KEYS if sort_keys else 0)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), sort_keys=sort_keys, default=_unfragment).encode()


class Encoded:
    """JSON text that `dumps`/`dumpb` embed as it is, neither parsed nor encoded again; the text is
    trusted to be valid JSON (it must come from `dumps`)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _embed(value: Any) -> Any:
    if isinstance(value, Encoded):
        return orjson.Fragment(value.text)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _unfragment(value: Any) -> Any:
    if isinstance(value, Encoded):
        return json.loads(value.text)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def loads(text: str | bytes) -> Any:
    """Parse JSON text; raises ValueError on malformed input.

    orjson reads an integer beyond 64 bits as a float: validation keeps such numbers out of the
    configuration (`thinsync.model.validate`), so what the store and the link read is what was written."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        # A str holding lone surrogates is not UTF-8 for orjson; the standard library reads it.
        if isinstance(text, bytes):
            raise
        return json.loads(text)
