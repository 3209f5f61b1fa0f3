"""One frozen Settings object: flags > THINSYNC_* environment > thinsync.toml in the data dir > defaults."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from thinsync.errors import Invalid

DEFAULT_PORT = 2031
CONFIG_FILE = "thinsync.toml"


def parse_hostport(value: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """Split HOST:PORT (IPv6 in brackets); a bare host takes the default port."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    else:
        host, port_text = value, ""
    if not host:
        raise Invalid(f"'{value}' has no host; write HOST:PORT, for example 127.0.0.1:2031")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise Invalid(f"'{value}' has no valid port; write HOST:PORT with a port from 0 to 65535")
    return host, int(port_text)


@dataclass(frozen=True)
class Settings:
    """Every tunable of a server. Built once at start and passed in; never a global."""

    data_dir: Path
    listen: str = f"0.0.0.0:{DEFAULT_PORT}"
    tftp: str | None = None
    ready_file: Path | None = None
    log_level: str = "INFO"
    # Bearer tokens and console sessions expire after this long.
    token_ttl_s: int = 8 * 3600
    # Request bodies above this get 413; backup uploads have their own limit.
    max_body_bytes: int = 1024 * 1024
    max_upload_bytes: int = 512 * 1024 * 1024
    # argon2id memory cost in KiB (RFC 9106 low-memory profile: 64 MiB). Tests lower it.
    password_memory_kib: int = 65536
    password_time_cost: int = 3
    # A remote stamp further ahead of our clock than this is not applied (sync).
    max_clock_skew_s: float = 60.0
    # Seconds between digest comparisons with each peer (also compared after every catch-up).
    digest_interval_s: float = 30.0
    # Where backups are written (node-local); default: <data dir>/backups.
    backup_dir: Path | None = None
    # Heartbeats accepted per second from one network address (each terminal is also limited to 5/s).
    heartbeats_per_address: float = 5000.0
    # Days of change history kept (0: everything). Older change sets that every server of the list
    # holds are dropped; their objects stay, only their history and "as of" reverts reach back less.
    log_retention_days: float = 0.0
    # Trusted licence issuers: comma-separated base64 Ed25519 public keys.
    license_issuer_keys: str = ""
    # Days an expired or non-compliant licence keeps working before terminals are refused.
    license_grace_days: float = 7.0
    # Event log rows kept (oldest dropped first).
    event_retention: int = 100_000
    # Shift this server's wall clock (fault tests that simulate a skewed server).
    clock_offset_s: float = 0.0
    # Seconds uvicorn waits for open streams to finish on shutdown.
    graceful_shutdown_s: float = 3.0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def listen_host(self) -> str:
        return parse_hostport(self.listen)[0]

    @property
    def listen_port(self) -> int:
        return parse_hostport(self.listen)[1]

    @property
    def db_path(self) -> Path:
        return self.data_dir / "thinsync.db"

    @property
    def backups(self) -> Path:
        return self.backup_dir or self.data_dir / "backups"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "logs" / "thinsync.log"

    @classmethod
    def load(
        cls, data_dir: Path | str, flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
    ) -> Settings:
        """Merge the sources in precedence order and check every value's type."""
        data_dir = Path(data_dir)
        known = {f.name: f for f in fields(cls) if f.name not in ("data_dir", "extra")}
        merged: dict[str, Any] = {}
        config_file = data_dir / CONFIG_FILE
        if config_file.exists():
            try:
                file_values = tomllib.loads(config_file.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise Invalid(f"{config_file} is not valid TOML: {exc}") from exc
            for key, value in file_values.items():
                if key not in known:
                    raise Invalid(f"{config_file}: unknown setting '{key}'")
                merged[key] = value
        environ = os.environ if env is None else env
        for name in known:
            env_key = f"THINSYNC_{name.upper()}"
            if env_key in environ:
                merged[name] = environ[env_key]
        for key, value in (flags or {}).items():
            if value is None:
                continue
            if key not in known:
                raise Invalid(f"unknown setting '{key}'")
            merged[key] = value
        converted = {key: _convert(key, known[key].type, value) for key, value in merged.items()}
        settings = cls(data_dir=data_dir, **converted)
        parse_hostport(settings.listen)
        if settings.tftp:
            parse_hostport(settings.tftp, default_port=69)
        return settings

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _convert(name: str, type_text: Any, value: Any) -> Any:
    text = str(type_text)
    try:
        if "Path" in text:
            return None if value in (None, "") else Path(value)
        if text.startswith("int"):
            return int(value)
        if text.startswith("float"):
            return float(value)
        if "str" in text:
            return None if value is None else str(value)
    except (TypeError, ValueError) as exc:
        wanted = "a whole number" if text.startswith("int") else "a number"
        raise Invalid(f"setting '{name}' must be {wanted}, not {value!r}") from exc
    return value


def setting_names() -> list[str]:
    """Every user-facing setting (the docs test checks each is documented)."""
    return [f.name for f in fields(Settings) if f.name not in ("data_dir", "extra")]
