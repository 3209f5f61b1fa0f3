"""Reusable field types: names, MAC addresses, hosts."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

_MAC_HEX = re.compile(r"[0-9a-f]{12}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_TERMINAL_NAME = re.compile(r"[A-Za-z0-9-]{1,15}")
_HOST = re.compile(r"[A-Za-z0-9_.:\[\]-]{1,253}")


def normalise_mac(value: str) -> str:
    """Accept aa:bb:.., AA-BB-.., aabb.ccdd.eeff or aabbccddeeff; return aa:bb:cc:dd:ee:ff."""
    if not isinstance(value, str):
        raise ValueError("a MAC address must be a string such as aa:bb:cc:dd:ee:ff")
    raw = value.strip().lower()
    hex_only = re.sub(r"[:\-.]", "", raw)
    if not _MAC_HEX.fullmatch(hex_only) or not _mac_separators_ok(raw):
        raise ValueError(f"'{value}' is not a MAC address; write it as aa:bb:cc:dd:ee:ff")
    return ":".join(hex_only[i : i + 2] for i in range(0, 12, 2))


def _mac_separators_ok(raw: str) -> bool:
    if len(raw) == 12:
        return True
    if len(raw) == 17:
        return raw[2] in ":-" and all(raw[i] == raw[2] for i in range(2, 17, 3))
    if len(raw) == 14:
        return raw[4] == "." and raw[9] == "."
    return False


def _check_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(
            f"'{value}' is not a valid name: use 1 to 63 letters, digits, '-', '_' or '.', "
            "starting with a letter or digit"
        )
    return value


def _check_terminal_name(value: str) -> str:
    if not _TERMINAL_NAME.fullmatch(value):
        raise ValueError(f"'{value}' is not a valid terminal name: use 1 to 15 letters, digits or '-'")
    return value


def _check_host(value: str) -> str:
    if not _HOST.fullmatch(value):
        raise ValueError(f"'{value}' is not a host name or IP address")
    return value


Name = Annotated[str, AfterValidator(_check_name)]
TerminalName = Annotated[str, AfterValidator(_check_terminal_name)]
Mac = Annotated[str, AfterValidator(normalise_mac)]
Host = Annotated[str, AfterValidator(_check_host)]
Text = Annotated[str, Field(max_length=1024)]
Port = Annotated[int, Field(ge=1, le=65535)]


def valid_name(value: str) -> bool:
    """True when `value` is a valid object name (for URL paths before a body is read)."""
    return bool(_NAME.fullmatch(value))


class Strict(BaseModel):
    """Inbound models refuse unknown fields and wrong JSON types (no "3389" -> 3389, true -> 1)."""

    model_config = ConfigDict(extra="forbid", strict=True)
